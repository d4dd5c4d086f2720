"""BAM! Born-Again Multi-Task Networks: train, evaluate, predict, export.

  python run_classifier.py --flagfile=official_configs/demo.cfg [--flag=value]

Flags after --flagfile override it. Every flag and path is checked before
anything is written: bad input and a full disk end with one line
`error: ...` and exit code 2. (This file is the thin entry point: flags are
declared in bam_tf/configure.py, the work is done by bam_tf/runner.py.)
"""

import errno
import sys

import bam_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags

from bam_tf import configure
from bam_tf.common import console
from bam_tf.common.errors import BamError

configure.define_flags()
# --helpfull lists them too, under this module.
flags.adopt_module_key_flags(configure)

# What `--help` prints instead of absl's module-by-module listing.
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(e: BaseException):
  """'no space left on device writing PATH' for a full disk or quota (an
  OSError, or TensorFlow's error from a checkpoint or TFRecord write), else
  None."""
  if isinstance(e, OSError) and e.errno in _DISK_FULL:
    what = ("no space left on device" if e.errno == errno.ENOSPC
            else "disk quota exceeded")
    path = e.filename or e.filename2
    return f"{what} writing {path}" if path else what
  # TensorFlow's file systems raise ResourceExhaustedError("PATH; No space
  # left on device") (a checkpoint, a TFRecord).
  if type(e).__module__.startswith("tensorflow"):
    for what in ("No space left on device", "Disk quota exceeded"):
      path, sep, _ = str(e).partition(f"; {what}")
      if sep:
        return f"{what[0].lower()}{what[1:]} writing {path.strip()}"
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.setup(verbose=flags.FLAGS["verbosity"].present)
  try:
    config = configure.config_from_flags()
    configure.check_paths(config)
    from bam_tf import runner  # pylint: disable=g-import-not-at-top
    return runner.run(config)
  except (BamError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except PermissionError as e:
    print(f"error: permission denied: {e.filename or e}", file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except
    message = disk_full_message(e)
    if message is None:
      raise
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  if any(a in HELP_ARGS for a in sys.argv[1:]):
    print(configure.help_text(__doc__))
    sys.exit(0)
  app.run(main)
