"""BAM! Born-Again Multi-Task Networks: train, evaluate, predict, export.

  python run_classifier.py --flagfile=official_configs/demo.cfg [--flag=value]

Flags after --flagfile override it. Every flag and path is checked before
anything is written: bad input and a full disk end with one line
`error: ...` and exit code 2. (This file is the thin entry point: flags are
declared in bam_tf/configure.py, the work is done by bam_tf/runner.py.)
"""

import sys

import bam_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags

from bam_tf import configure
from bam_tf.common import console
from bam_tf.common import errors

configure.define_flags()
# --helpfull lists them too, under this module.
flags.adopt_module_key_flags(configure)

# What `--help` prints instead of absl's module-by-module listing.
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def parse_flags(argv):
  """absl's own answer to a bad flag is two lines and exit 1 (and a stray
  word, the whole help): here it is one line and exit 2, as any bad input."""
  try:
    rest = flags.FLAGS(argv)
    if len(rest) > 1:
      raise flags.Error(f"unexpected arguments {rest[1:]} (every flag is "
                        "--name=value)")
    return rest
  except flags.Error as e:
    # absl starts a flagfile's error with its own "ERROR:: ".
    print(f"error: {str(e).replace('ERROR:: ', '', 1)}", file=sys.stderr)
    sys.exit(errors.USER_ERROR_EXIT)


def main(argv):
  del argv  # parse_flags refuses any besides the program
  console.setup(verbose=flags.FLAGS["verbosity"].present)
  return errors.run_command(_run)


def _run() -> int:
  config = configure.config_from_flags()
  configure.check_paths(config)
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  return runner.run(config)


if __name__ == "__main__":
  if any(a in HELP_ARGS for a in sys.argv[1:]):
    print(configure.help_text(__doc__))
    sys.exit(0)
  app.run(main, flags_parser=parse_flags)
