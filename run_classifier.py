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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
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
  app.run(main)
