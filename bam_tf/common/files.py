"""Atomic file writing: a reader finds the old file or the new one, never half.

Every file bam_tf writes (checkpoints aside, which TensorFlow manages) goes
through `atomic_path`: written under a temporary name in the same folder,
fsynced, then renamed onto its name. Two writers stage whole folders instead
and rename them (bam_tf.modeling.minilm's converted encoder, and
bam_tf.serving.export's SavedModel).

Local paths only: every folder bam_tf writes to is made with os.makedirs (a
gs:// model_dir is not supported anywhere), and os.replace is what makes the
write atomic.
"""

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync(path: str):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path` that becomes `path` on exit.

  The body writes the temporary file by any means (open, a TFRecordWriter)
  and closes it. On a normal exit the file is fsynced and renamed onto
  `path`, then the folder is fsynced so the rename survives a power cut too;
  until then `path` is untouched. If the body raises, the temporary file is
  removed. The file gets the usual mode (0o666 minus the umask), not
  mkstemp's 0600.
  """
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
  try:
    _fsync(folder)
  except OSError:  # folders cannot be opened or fsynced on some platforms
    pass


def write_bytes_atomic(path: str, data: bytes):
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text_atomic(path: str, text: str):
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj):
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def file_sha256(path: str) -> str:
  """Hex sha256 of a file's bytes (cache keys depend on content, not names)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()
