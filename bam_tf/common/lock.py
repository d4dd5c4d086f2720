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

On a filesystem with no flock (a gs:// bucket) the lock is the holder
record alone: written when the run starts, deleted when it ends. A record
left by a run that died is taken over when it names this host and a
process that is gone; one naming another host cannot be checked from here,
and the refusal says to delete the file once that run is known to be over.
Checking for a record and writing one are two requests, so two runs started
together could both find none: each reads its record back RECORD_SETTLE_S
after writing it, and the one that finds the other's (the storage keeps the
last write; gs:// reads are strongly consistent) refuses.
"""

import datetime
import json
import os
import socket
import time
from typing import Dict, Optional

from absl import logging

from bam_tf.common import files
from bam_tf.common.errors import BamError

LOCK_FILE = ".lock"
# Seconds a holder record is left to settle before it is read back (see the
# module docstring): far above one request's latency, small beside a run.
RECORD_SETTLE_S = 2.0


class FolderInUseError(BamError):
  """Another live process holds the folder's lock."""


def _describe(holder: Optional[Dict]) -> str:
  if not holder:
    return "a process that has not recorded itself yet"
  return (f"PID {holder.get('pid')} on {holder.get('host')}, started "
          f"{holder.get('started')}")


def _parse(raw: bytes) -> Optional[Dict]:
  """The holder record; None for none, or one in another form (a bare pid,
  as reproduce's lock file held before it used this lock)."""
  try:
    holder = json.loads(raw.decode("utf-8")) if raw.strip() else None
  except ValueError:
    return None
  return holder if isinstance(holder, dict) else None


def _me() -> bytes:
  me = {"pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc)
                   .isoformat(timespec="seconds")}
  return (json.dumps(me) + "\n").encode("utf-8")


def _gone(holder: Optional[Dict]) -> bool:
  """Whether a holder record names a process of this host that is gone."""
  if not holder or holder.get("host") != socket.gethostname():
    return False
  try:
    os.kill(int(holder["pid"]), 0)
  except (ProcessLookupError, KeyError, TypeError, ValueError):
    return True
  except PermissionError:
    return False
  return False


def _in_use(flag: str, user: str, folder: str, holder: Optional[Dict],
            hint: str = ""):
  return FolderInUseError(
      f"{flag}: {folder} is in use by another {user} ({_describe(holder)})"
      f"; wait for it to end, or use another {flag}{hint}")


class DirLock:
  """The lock on one folder; re-entrant within the process (a count), so
  code that claims a folder it already holds does not refuse itself.
  `lock_file`, `flag` and `user` name the file and, in the refusal, the
  flag that gave the folder and what holds it (bam_tf_experiments.reproduce
  locks its --out_dir with its own file)."""

  def __init__(self, folder: str, lock_file: str = LOCK_FILE,
               flag: str = "--model_dir", user: str = "run"):
    self.folder = folder
    self.path = files.join(folder, lock_file)
    self.flag, self.user = flag, user
    self.file: Optional[files.LockFile] = None  # local folders
    self.record = False                          # elsewhere: our record
    self.count = 0

  def _still_ours(self) -> bool:
    if self.file is not None:
      return self.file.still_at_path()
    return self.record and files.exists(self.path)

  def acquire(self) -> "DirLock":
    """Takes the lock (creating the folder); FolderInUseError naming the
    holder if another process has it."""
    if (self.file is not None or self.record) and self._still_ours():
      self.count += 1
      return self
    self._close()
    files.makedirs(self.folder)
    if files.is_local(self.folder):
      previous = self._lock_local()
    else:
      previous = self._lock_record()
    if previous:  # emptied on release: its run died holding the lock
      logging.warning("Taking over the lock of %s left by %s, which is gone "
                      "(killed?)", self.folder, _describe(previous))
    self.count = 1
    return self

  def _lock_local(self) -> Optional[Dict]:
    while True:
      lock_file = files.LockFile(self.path)
      if not lock_file.try_lock():
        holder = _parse(lock_file.read())
        lock_file.close()
        raise _in_use(self.flag, self.user, self.folder, holder) from None
      self.file = lock_file
      if self.file.still_at_path():
        break
      self._close()  # the file was replaced between open and lock: again
    previous = _parse(self.file.read())
    self.file.write(_me())
    return previous

  def _lock_record(self) -> Optional[Dict]:
    previous = None
    if files.exists(self.path):
      previous = _parse(files.read_bytes(self.path))
      if previous and not _gone(previous):
        # A live PID of this host may be one reused after the run died.
        how = ("killed, its PID now another process's" if
               previous.get("host") == socket.gethostname() else
               "killed on another host")
        raise _in_use(self.flag, self.user, self.folder, previous,
                      f"; if that {self.user} is over ({how}), delete "
                      f"{self.path}")
    me = _me()
    files.write_bytes_atomic(self.path, me)
    # A rival that found no record before ours was written writes its own
    # within this time (one request): then the later write is the lock.
    time.sleep(RECORD_SETTLE_S)
    now = files.read_bytes(self.path) if files.exists(self.path) else b""
    if now != me:
      raise _in_use(self.flag, self.user, self.folder, _parse(now),
                    " (it started at the same moment as this one)")
    self.record = True
    return previous

  def release(self):
    """Undoes one acquire; the last empties (or deletes) the record and
    unlocks."""
    if self.file is None and not self.record:
      return
    self.count -= 1
    if self.count > 0:
      return
    try:
      if self.file is not None and self.file.still_at_path():
        self.file.write(b"")
      elif self.record:
        files.remove(self.path)
    finally:
      self._close()
      key = files.resolve(self.folder)
      if _HELD.get(key) is self:  # not another lock of the same folder
        del _HELD[key]

  def _close(self):
    if self.file is not None:
      self.file.close()
      self.file = None
    self.record = False
    self.count = 0


_HELD: Dict[str, DirLock] = {}


def lock_dir(folder: str) -> DirLock:
  """Acquires (or re-enters) the lock on `folder`; pair with release()."""
  key = files.resolve(folder)
  lock = _HELD.get(key) or DirLock(folder)
  lock.acquire()
  _HELD[key] = lock
  return lock


def clear_folder(folder: str):
  """Deletes everything in `folder` but its lock file (--overwrite)."""
  for name in files.listdir(folder):
    if name != LOCK_FILE:
      files.remove(files.join(folder, name))
