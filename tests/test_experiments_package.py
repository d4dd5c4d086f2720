"""The old reproduce entry point says where the driver went.

(That bam_tf never imports bam_tf_experiments is tests/test_import_order.py's
job.) No TensorFlow; seconds."""

import os
import subprocess
import sys

from conftest import REPO_ROOT

MOVED = ("error: bam_tf.tools.reproduce moved to bam_tf_experiments.reproduce:"
         " run python -m bam_tf_experiments.reproduce <same flags>")


def test_old_reproduce_entry_point_points_to_the_new_one():
  assert not os.path.exists(os.path.join(REPO_ROOT, "bam_tf", "reports"))
  proc = subprocess.run(
      [sys.executable, "-m", "bam_tf.tools.reproduce",
       "--preset=small_table1", "--trials=3"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
      cwd=REPO_ROOT)
  assert proc.returncode == 2
  assert proc.stdout == ""
  assert proc.stderr.splitlines() == [MOVED]
