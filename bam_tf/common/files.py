"""Every file operation of bam_tf: any filesystem TensorFlow supports, and a
reader finds the old file or the new one, never half.

On Cloud TPU the data, the cache and the model_dir live in gs:// buckets, so
every read, write, listing and rename goes through this module (a test
fails if a module under bam_tf/ does it with os, open or shutil). Local
paths use the OS directly: exact POSIX semantics (fsync, an atomic rename,
flock) and no TensorFlow import for the
tools that only read results. Any other path ("gs://", "ram://", "hdfs://",
...) goes through tf.io.gfile.

Every file bam_tf writes (checkpoints aside, which TensorFlow manages) goes
through `atomic_path`: written under a temporary name in the same folder,
then renamed onto its name (locally also fsynced). On an object store a
rename is a copy and a delete, which is as close to atomic as it offers.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from typing import Iterator, List

_UMASK = os.umask(0)
os.umask(_UMASK)


def is_local(path: str) -> bool:
  """A path of the local filesystem (no scheme, or file://)."""
  return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
  return path[len("file://"):] if path.startswith("file://") else path


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def join(*parts: str) -> str:
  return os.path.join(*parts)


def absolute(path: str) -> str:
  """os.path.abspath for a local path; any other path is already one."""
  return os.path.abspath(path) if is_local(path) else path


# ------------------------------------------------------------------ queries

def exists(path: str) -> bool:
  if is_local(path):
    return os.path.lexists(_local(path))
  return _gfile().exists(path)


def isdir(path: str) -> bool:
  if is_local(path):
    return os.path.isdir(_local(path))
  return _gfile().isdir(path)


def isfile(path: str) -> bool:
  if is_local(path):
    return os.path.isfile(_local(path))
  return _gfile().exists(path) and not _gfile().isdir(path)


def listdir(path: str) -> List[str]:
  """Sorted entry names (no trailing '/' for folders on object stores)."""
  if is_local(path):
    return sorted(os.listdir(_local(path)))
  return sorted(n.rstrip("/") for n in _gfile().listdir(path))


def walk_files(root: str) -> List[str]:
  """Every file under root, at any depth, as sorted paths ([] for a root
  that does not exist)."""
  if is_local(root):
    walked = os.walk(_local(root))
  else:
    walked = _gfile().walk(root)
  return sorted(join(folder, name.rstrip("/"))
                for folder, _, names in walked for name in names)


def getsize(path: str) -> int:
  if is_local(path):
    return os.path.getsize(_local(path))
  return int(_gfile().stat(path).length)


def getmtime(path: str) -> float:
  if is_local(path):
    return os.path.getmtime(_local(path))
  return _gfile().stat(path).mtime_nsec / 1e9


def resolve(path: str) -> str:
  """An absolute, normalised form of a path for comparing locations."""
  if is_local(path):
    return os.path.realpath(_local(path))
  scheme, rest = path.split("://", 1)
  return f"{scheme}://{os.path.normpath('/' + rest).lstrip('/')}"


def lies_inside(path: str, folder: str) -> bool:
  """Whether `path` is strictly below `folder`; both `resolve`d."""
  return path.startswith(folder.rstrip("/") + "/")


# ---------------------------------------------------------- reads, writes

def open_file(path: str, mode: str = "r"):
  """A file object: built-in open locally (text as UTF-8), tf.io.gfile.GFile
  elsewhere."""
  if is_local(path):
    if "b" in mode:
      return open(_local(path), mode)  # pylint: disable=unspecified-encoding
    return open(_local(path), mode, encoding="utf-8")
  return _gfile().GFile(path, mode)


def read_bytes(path: str) -> bytes:
  """A file's bytes; a missing file is FileNotFoundError on every
  filesystem (tf.io.gfile raises its own NotFoundError)."""
  try:
    with open_file(path, "rb") as f:
      return f.read()
  except _not_found_error() as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise FileNotFoundError(errno.ENOENT, "No such file", path) from None


def read_text(path: str) -> str:
  return read_bytes(path).decode("utf-8")


def read_json(path: str):
  return json.loads(read_text(path))


def read_first_line(path: str) -> bytes:
  with open_file(path, "rb") as f:
    return f.readline()


def file_sha256(path: str) -> str:
  """Hex sha256 of a file's bytes (cache keys depend on content, not names)."""
  h = hashlib.sha256()
  with open_file(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _fsync(path: str):
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:  # folders cannot be fsynced on some platforms
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path` that becomes `path` on exit.

  The body writes the temporary file by any means (open_file, a
  TFRecordWriter) and closes it. On a normal exit it is renamed onto `path`
  (locally: fsynced first, and the folder after, so the rename survives a
  power cut); until then `path` is untouched. If the body raises, the
  temporary file is removed. A local file gets the usual mode (0o666 minus
  the umask), not mkstemp's 0600.
  """
  if not is_local(path):
    folder = os.path.dirname(path)
    _gfile().makedirs(folder)
    tmp = join(folder, f".tmp_{os.path.basename(path)}.{uuid.uuid4().hex}")
    try:
      yield tmp
      _gfile().rename(tmp, path, overwrite=True)
    except BaseException:
      with contextlib.suppress(Exception):
        _gfile().remove(tmp)
      raise
    return
  path = _local(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".",
                             dir=folder)
  try:
    try:
      os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
      os.close(fd)
    yield tmp
    _fsync(tmp)
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    if isinstance(e, OSError) and e.filename in (None, tmp):
      e.filename = path  # e.g. a full disk: name the file, not its temp name
    raise
  _fsync(folder)


def write_bytes_atomic(path: str, data: bytes):
  with atomic_path(path) as tmp:
    with open_file(tmp, "wb") as f:
      f.write(data)


def write_text_atomic(path: str, text: str):
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj):
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------- folders, moves

def makedirs(path: str):
  if is_local(path):
    os.makedirs(_local(path), exist_ok=True)
  else:
    _gfile().makedirs(path)


def remove(path: str, missing_ok: bool = True):
  """Deletes a file (a folder with everything in it)."""
  try:
    if is_local(path):
      local = _local(path)
      if os.path.isdir(local) and not os.path.islink(local):
        shutil.rmtree(local)
      else:
        os.remove(local)
    elif _gfile().isdir(path):
      _gfile().rmtree(path)
    else:
      _gfile().remove(path)
  except (FileNotFoundError, _not_found_error()):
    if not missing_ok:
      raise


def _not_found_error():
  if "tensorflow" in sys.modules:
    return sys.modules["tensorflow"].errors.NotFoundError
  return FileNotFoundError


def rename(src: str, dst: str, overwrite: bool = False):
  """Moves a file (locally also a folder); an existing dst is an error
  unless overwrite."""
  if is_local(src) and is_local(dst):
    src, dst = _local(src), _local(dst)
    if overwrite:
      os.replace(src, dst)
    elif os.path.lexists(dst):
      raise FileExistsError(errno.EEXIST, "file exists", dst)
    else:
      os.rename(src, dst)
  else:
    _gfile().rename(src, dst, overwrite=overwrite)


def move_tree(src: str, dst: str, last: str = ""):
  """Moves a folder's files to dst (made here) one by one, `last` (a file
  name) after the others: what a watcher of dst needs to see complete is
  then there first. For filesystems with no folder rename (object stores)."""
  makedirs(dst)
  later = []
  for name in listdir(src):
    s, d = join(src, name), join(dst, name)
    if isdir(s):
      move_tree(s, d)
    elif name == last:
      later.append((s, d))
    else:
      rename(s, d, overwrite=True)
  for s, d in later:
    rename(s, d, overwrite=True)
  remove(src)


def make_temp_dir(parent: str, prefix: str) -> str:
  """A new empty folder in `parent` named prefix + 8 random characters of
  [a-z0-9_] (locally mode 0755, not mkdtemp's 0700)."""
  if is_local(parent):
    parent = _local(parent)
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, 0o777 & ~_UMASK)
    return path
  path = join(parent, prefix + uuid.uuid4().hex[:8])
  _gfile().makedirs(path)
  return path


def scratch_dir(prefix: str) -> str:
  """A new folder on this machine's temporary disk (worker scratch)."""
  return tempfile.mkdtemp(prefix=prefix)


def fsync_tree(root: str):
  """Files, then folders bottom-up (local only; a no-op elsewhere): a
  folder is on disk before it is renamed into place."""
  if not is_local(root):
    return
  for folder, _, names in os.walk(_local(root), topdown=False):
    for name in names:
      _fsync(os.path.join(folder, name))
    _fsync(folder)


def fsync_dir(path: str):
  if is_local(path):
    _fsync(_local(path))


def folder_problem(path: str) -> str:
  """Why `path` cannot be written into as a folder ('' when it is one or
  can be made one): the nearest existing folder at or above it must be
  writable, checked without writing anything. On an object store only a
  file in the way is found here; access shows when writing."""
  if not is_local(path):
    if exists(path) and not isdir(path):
      return f"{path} is a file, not a folder"
    return ""
  path = os.path.abspath(_local(path))
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  so = "" if existing == path else f", so {path} cannot be made"
  if not os.path.isdir(existing):
    return f"{existing} is a file, not a folder{so}"
  problem = writable_problem(existing)
  return f"{existing} is {problem}{so}" if problem else ""


def writable_problem(path: str) -> str:
  """Why a local folder cannot be written ('' when it can, or when the path
  is not local: an object store is only known by trying)."""
  if not is_local(path):
    return ""
  path = _local(path)
  if not os.path.isdir(path):
    return "not a folder"
  if os.access(path, os.W_OK | os.X_OK):
    return ""
  try:
    if os.statvfs(path).f_flag & os.ST_RDONLY:
      return "on a read-only file system"
  except OSError:
    pass
  return "not writable"


# ----------------------------------------------------------------- locks

class LockFile:
  """An exclusive flock on a local file, held while the object is open
  (the kernel releases it when the process ends, however it ends), holding
  a short text (who holds it). Hand-written: no library offers flock plus
  an in-place record readable by the next taker."""

  def __init__(self, path: str):
    self.path = _local(path)
    self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

  def try_lock(self) -> bool:
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except OSError as e:
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return False
      raise

  def still_at_path(self) -> bool:
    """Whether the open file is still the one at `path` (a folder deleted
    and made again has a new one)."""
    try:
      return os.fstat(self.fd).st_ino == os.stat(self.path).st_ino
    except OSError:
      return False

  def read(self) -> bytes:
    os.lseek(self.fd, 0, os.SEEK_SET)
    return os.read(self.fd, 1 << 16)

  def write(self, data: bytes):
    """Replaces the content in place (never renamed: the lock is on the
    inode)."""
    os.ftruncate(self.fd, 0)
    if data:
      os.pwrite(self.fd, data, 0)
    os.fsync(self.fd)

  def close(self):
    if self.fd is not None:
      os.close(self.fd)  # closing the last descriptor releases the flock
      self.fd = None
