"""Moved: the reproduce driver is now bam_tf_experiments.reproduce.

    python -m bam_tf_experiments.reproduce --preset=small_table1 --trials=3

A pointer for one release. It imports nothing from bam_tf_experiments: the
library never imports the experiment tools (they depend on it, not the
reverse). Run as `python -m bam_tf.tools.reproduce ...`, it says where the
driver went and exits 2.
"""

import sys

MOVED = ("error: bam_tf.tools.reproduce moved to bam_tf_experiments.reproduce:"
         " run python -m bam_tf_experiments.reproduce <same flags>")


def main(argv=None) -> int:
  del argv  # The flags are not read: they belong to the new module.
  print(MOVED, file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
