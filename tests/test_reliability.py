"""Nothing half-written, and a non-finite loss stops training cleanly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.tasks import glue
from bam_tf.training import callbacks as callbacks_lib
from conftest import REPO_ROOT

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
  tf_keras.utils.set_random_seed(0)
  encoder = networks.BertEncoder(
      vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=16, dict_outputs=True)
  tasks = [glue.GLUE_TASKS["rte"], glue.GLUE_TASKS["sts"]]
  model = MultiTaskModel(encoder, tasks)
  model.compile(optimizer=tf_keras.optimizers.SGD(1e-3))
  n = 4
  good = {"input_word_ids": np.ones((n, 5), np.int32),
          "input_mask": np.ones((n, 5), np.int32),
          "input_type_ids": np.zeros((n, 5), np.int32),
          "task_id": np.array([0, 1, 0, 1], np.int32),
          "label_id": np.zeros(n, np.int32),
          "label_value": np.full(n, 0.5, np.float32)}
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
