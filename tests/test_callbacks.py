"""The progress line and TensorBoard losses: example-weighted means over the
steps since the last line; a task absent from those steps gets '-' and no
TensorBoard point (not a false 0)."""

import glob
import logging
import types

import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from bam_tf.training import callbacks


def _batch(a=None, b=None):
  """Logs as MultitaskModel.train_step returns them: per-task mean losses and
  counts, and the batch mean over all its examples (task weights 1)."""
  logs, total, n = {}, 0.0, 0.0
  for name, val in (("a", a), ("b", b)):
    loss, count = val if val else (0.0, 0.0)
    logs[f"loss_{name}"], logs[f"count_{name}"] = loss, count
    total += loss * count
    n += count
  logs["loss"] = total / max(n, 1.0)
  return logs


def _events(logdir):
  points = {}
  for path in glob.glob(f"{logdir}/events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        points.setdefault(v.tag, {})[event.step] = float(
            tf.make_ndarray(v.tensor))
  return points


def _started_logger(total_steps, task_names, summary_dir=""):
  """A ProgressLogger (a line every 2 steps) on a stand-in model, begun."""
  iterations = tf.Variable(0, dtype=tf.int64)
  model = types.SimpleNamespace(
      optimizer=types.SimpleNamespace(iterations=iterations),
      distill_schedule=None)
  logger = callbacks.ProgressLogger(total_steps=total_steps, every=2,
                                    lr_fn=lambda step: 1e-3,
                                    task_names=task_names,
                                    summary_dir=summary_dir)
  logger.set_model(model)
  logger.on_train_begin()
  return logger, iterations


@pytest.fixture
def absl_info():
  """Earlier in-process runs (run_classifier.main) may leave absl at
  WARNING; the progress line is an INFO record."""
  before = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  yield
  absl_logging.set_verbosity(before)


def test_means_since_last_line_and_absent_tasks(tmp_path, caplog, absl_info):
  logger, iterations = _started_logger(4, ["a", "b"], str(tmp_path))
  batches = [_batch(a=(1.0, 2)), _batch(a=(2.0, 1), b=(4.0, 1)),
             _batch(a=(0.5, 4)), _batch(a=(1.5, 4))]
  with caplog.at_level(logging.INFO):
    for i, logs in enumerate(batches):
      iterations.assign(i + 1)
      logger.on_train_batch_end(i, logs)
  lines = [r.getMessage() for r in caplog.records if "step " in
           r.getMessage()]
  assert len(lines) == 2
  # Steps 1-2: a = (1*2 + 2*1) / 3, b = 4, all = (1*2 + 3*2) / 4 = 2.
  assert "step 2/4" in lines[0] and "loss 2.0000" in lines[0]
  assert "a 1.333 b 4.000" in lines[0]
  # Steps 3-4: only task a: (0.5*4 + 1.5*4) / 8 = 1.0; b shows '-'.
  assert "loss 1.0000" in lines[1] and "a 1.000 b -" in lines[1]
  logger.writer.flush()
  points = _events(str(tmp_path))
  np.testing.assert_allclose(points["loss/a"][2], 4.0 / 3.0, rtol=1e-6)
  assert points["loss/b"] == {2: 4.0}  # no point at step 4
  np.testing.assert_allclose([points["loss"][2], points["loss"][4]],
                             [2.0, 1.0])


def test_rate_and_eta_follow_recent_steps_after_a_pause(monkeypatch, caplog,
                                                        absl_info):
  """Two slow steps (a paused job) then 1 s/step: the mean since the start
  would say ~4 s/step forever; the windowed rate says 1 s/step once the
  slow steps have left the window."""
  clock = {"now": 1000.0}
  monkeypatch.setattr(callbacks.time, "time", lambda: clock["now"])
  logger, iterations = _started_logger(40, ["a"])
  with caplog.at_level(logging.INFO):
    for step in range(1, 41):
      clock["now"] += 50.0 if step <= 2 else 1.0
      iterations.assign(step)
      logger.on_train_batch_end(step - 1, {"loss": 1.0, "loss_a": 1.0,
                                           "count_a": 1.0})
  lines = {int(m.split()[1].split("/")[0]): m
           for m in (r.getMessage() for r in caplog.records)
           if m.startswith("step ")}
  assert "50.00 s/step | ETA 31m40s" in lines[2]  # 38 steps x 50 s
  # Step 6: window = steps 0-6, (100 + 4) s / 6 steps.
  assert "17.33 s/step" in lines[6]
  # From step 12 on the window (5 lines = 10 steps) holds only 1 s steps.
  assert "1.00 s/step | ETA 0m28s" in lines[12]
  assert "1.00 s/step | ETA 0m00s" in lines[40]
