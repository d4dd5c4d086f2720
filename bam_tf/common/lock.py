"""One run per model_dir: an exclusive lock held for the life of a run.

Two runs in one model_dir (the same command started twice) would train into
the same checkpoints until one restores a checkpoint the other swept away.
The lock is `fcntl.flock` on `model_dir/.lock`: the kernel releases it when
the process ends, however it ends, so a lock left by a crash is never in
force. The file holds who took it (pid, host, start time) for the refusal
message; it is emptied on a clean release, so a non-empty file found by the
next run that gets the lock was left by a run that died holding it, and that
run says so in a log line.

The lock file is written in place (never renamed: a rename would swap the
inode the lock is on), the one file of a model_dir that does not go through
files.atomic_path; and it is never deleted (deleting it would let a second
run lock a fresh file while the first still holds the old one): whoever
clears a model_dir keeps it (`clear_folder`).
"""

import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
from typing import Dict, Optional

from absl import logging

from bam_tf.common.errors import BamError

LOCK_FILE = ".lock"


class ModelDirInUseError(BamError):
  """Another live process holds the model_dir's lock."""


def _describe(holder: Optional[Dict]) -> str:
  if not holder:
    return "a process that has not recorded itself yet"
  return (f"PID {holder.get('pid')} on {holder.get('host')}, started "
          f"{holder.get('started')}")


def _read_holder(fd: int) -> Optional[Dict]:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16)
    return json.loads(raw.decode("utf-8")) if raw.strip() else None
  except (OSError, ValueError):
    return None


class DirLock:
  """The lock on one folder; re-entrant within the process (a count), so
  code that claims a folder it already holds does not refuse itself."""

  def __init__(self, folder: str):
    self.folder = folder
    self.path = os.path.join(folder, LOCK_FILE)
    self.fd: Optional[int] = None
    self.count = 0

  def _still_ours(self) -> bool:
    """Whether the held descriptor is still the file at self.path (a folder
    deleted and made again by hand has a new lock file)."""
    try:
      return os.fstat(self.fd).st_ino == os.stat(self.path).st_ino
    except OSError:
      return False

  def acquire(self) -> "DirLock":
    """Takes the lock (creating the folder); ModelDirInUseError naming the
    holder if another process has it."""
    if self.fd is not None and self._still_ours():
      self.count += 1
      return self
    self._close()
    os.makedirs(self.folder, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        holder = _read_holder(fd)
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
          raise
        raise ModelDirInUseError(
            f"--model_dir: {self.folder} is in use by another run "
            f"({_describe(holder)}); wait for it to end, or use another "
            "--model_dir") from None
      self.fd = fd
      if self._still_ours():
        break
      self._close()  # the file was replaced between open and lock: again
    previous = _read_holder(self.fd)
    if previous:  # emptied on release: its run died holding the lock
      logging.warning("Taking over the lock of %s left by %s, which is gone "
                      "(killed?)", self.folder, _describe(previous))
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc)
                     .isoformat(timespec="seconds")}
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
    os.fsync(self.fd)
    self.count = 1
    return self

  def release(self):
    """Undoes one acquire; the last empties the file and unlocks."""
    if self.fd is None:
      return
    self.count -= 1
    if self.count > 0:
      return
    try:
      if self._still_ours():
        os.ftruncate(self.fd, 0)
    finally:
      self._close()
      _HELD.pop(os.path.realpath(self.folder), None)

  def _close(self):
    if self.fd is not None:
      os.close(self.fd)  # closing the last descriptor releases the flock
      self.fd = None
    self.count = 0


_HELD: Dict[str, DirLock] = {}


def lock_dir(folder: str) -> DirLock:
  """Acquires (or re-enters) the lock on `folder`; pair with release()."""
  key = os.path.realpath(folder)
  lock = _HELD.get(key) or DirLock(folder)
  lock.acquire()
  _HELD[key] = lock
  return lock


def clear_folder(folder: str):
  """Deletes everything in `folder` but its lock file (--overwrite)."""
  for name in os.listdir(folder):
    if name == LOCK_FILE:
      continue
    path = os.path.join(folder, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)
