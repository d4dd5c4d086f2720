"""Nothing half-written, and a non-finite loss stops training cleanly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from bam_tf.tasks import glue
from bam_tf.training import callbacks as callbacks_lib
from conftest import REPO_ROOT
from conftest import tiny_rte_sts_batch
from conftest import tiny_rte_sts_model

_WRITER = """
import sys
sys.path.insert(0, {root!r})
from bam_tf.common import files
i = 0
while True:
  i += 1
  files.write_bytes_atomic({path!r}, bytes([i % 251]) * {size})
"""


def test_killed_writer_leaves_old_or_new_file_never_partial(tmp_path):
  path = str(tmp_path / "results.json")
  size = 8 << 20  # 8 MiB per write: a kill lands mid-write most of the time
  for attempt in range(3):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(
        root=REPO_ROOT, path=path, size=size)])
    time.sleep(1.5 + 0.7 * attempt)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = open(path, "rb").read()
    assert len(data) == size, "a partial file is visible under the real name"
    assert data == data[:1] * size, "mixed content from two writes"
  leftovers = [n for n in os.listdir(tmp_path) if n != "results.json"]
  # Temporary files of killed writers may remain, but never under the name.
  assert all(n.startswith(".tmp_results.json.") for n in leftovers)


def test_non_finite_loss_stops_with_step_and_task(tmp_path):
  model = tiny_rte_sts_model()
  tasks = [glue.GLUE_TASKS["rte"], glue.GLUE_TASKS["sts"]]
  good = tiny_rte_sts_batch()
  bad = dict(good, label_value=np.array([0, np.nan, 0, 0.5], np.float32))
  ds = tf.data.Dataset.from_tensors(good).repeat(2).concatenate(
      tf.data.Dataset.from_tensors(bad)).repeat()
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=5)
  stopper = callbacks_lib.StopOnNonFinite([t.name for t in tasks])
  saver = callbacks_lib.CheckpointEveryN(manager, 1, 10,
                                         str(tmp_path / "progress.json"))
  model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0,
            callbacks=[stopper, saver])
  assert stopper.error == ("non-finite loss nan at step 3 (task: sts); the "
                           "last good checkpoint is kept")
  assert manager.latest_checkpoint.endswith("ckpt-2")
