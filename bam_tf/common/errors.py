"""The user-facing errors, and how every command ends on one.

Every command line (run_classifier.py, the export tool, the data tools and
the experiment drivers) runs its work through `run_command`: bad input, a
missing or unreadable path and a full disk end with one line `error: ...`
on stderr and exit code 2; any other exception is a bug and keeps its
traceback.
"""

import errno
import sys
from typing import Callable, Optional

# The exit code of every user-facing error, in every command.
USER_ERROR_EXIT = 2

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class BamError(ValueError):
  """Bad input: a flag, a data file, an encoder or a teacher output."""


class ConfigError(BamError):
  """A flag value that cannot be used; the message names the flag."""


def disk_full_message(e: BaseException) -> Optional[str]:
  """'no space left on device writing PATH' for a full disk or quota (an
  OSError, or TensorFlow's error from a checkpoint or TFRecord write), else
  None."""
  if isinstance(e, OSError) and e.errno in _DISK_FULL:
    what = ("no space left on device" if e.errno == errno.ENOSPC
            else "disk quota exceeded")
    path = e.filename or e.filename2
    return f"{what} writing {path}" if path else what
  # TensorFlow's file systems raise ResourceExhaustedError("PATH; No space
  # left on device") (a checkpoint, a TFRecord). Matched by module name, so
  # that this module does not import TensorFlow.
  if type(e).__module__.startswith("tensorflow"):
    for what in ("No space left on device", "Disk quota exceeded"):
      path, sep, _ = str(e).partition(f"; {what}")
      if sep:
        return f"{what[0].lower()}{what[1:]} writing {path.strip()}"
  return None


def user_error_line(e: BaseException) -> Optional[str]:
  """The line `error: ...` a command prints for e when the user can act on
  it, else None."""
  if isinstance(e, (BamError, FileNotFoundError)):
    message = str(e)
  elif isinstance(e, PermissionError):
    message = f"permission denied: {e.filename or e}"
  else:
    message = disk_full_message(e)
  return None if message is None else f"error: {message}"


def run_command(work: Callable[[], int]) -> int:
  """work()'s exit code; a user-facing error prints its one line and gives
  USER_ERROR_EXIT, anything else propagates with its traceback."""
  try:
    return work()
  except Exception as e:  # pylint: disable=broad-except
    line = user_error_line(e)
    if line is None:
      raise
    print(line, file=sys.stderr)
    return USER_ERROR_EXIT
