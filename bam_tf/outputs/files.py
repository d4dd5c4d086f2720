"""Atomic file writing: a reader finds the old file or the new one, never half.

Everything bam_tf writes (checkpoints aside, which TensorFlow manages) goes
through here: write to a temporary name in the same folder, fsync, rename.
"""

import hashlib
import json
import os
import tempfile


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: str, data: bytes):
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".",
                             dir=folder)
  try:
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; keep usual modes
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


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
