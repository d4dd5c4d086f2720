"""Entry point: python run_classifier.py --flagfile=official_configs/...

Thin on purpose: flags are defined and validated in bam_tf.configure, the
work is done by bam_tf.runner.
"""

import sys

import bam_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import logging

from bam_tf import configure
from bam_tf.common.errors import BamError

configure.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  try:
    config = configure.config_from_flags()
    from bam_tf import runner  # pylint: disable=g-import-not-at-top
    return runner.run(config)
  except (BamError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  app.run(main)
