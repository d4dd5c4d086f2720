"""Keras callbacks for long runs: progress lines, TensorBoard, checkpoints,
dev evaluation every N steps."""

import collections
import signal
import time
from typing import Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from bam_tf.common import durations
from bam_tf.common import files


class ProgressLogger(tf_keras.callbacks.Callback):
  """Every N steps: step, %, loss, per-task loss, lr, lambda, s/step, ETA.

  Losses are means over the examples of the steps since the last line (one
  batch is too noisy, and with task sampling or length bucketing a batch may
  hold no example of a task: such a task shows '-' and gets no TensorBoard
  point rather than a false 0). Also writes the scalars to TensorBoard.

  s/step and ETA come from the last RATE_WINDOW lines' steps, not the mean
  since the start: after a pause (a suspended job, a busy machine) or the
  slow first steps the ETA recovers within a few lines instead of staying
  wrong for the rest of the run.
  """

  RATE_WINDOW = 5

  def __init__(self, total_steps: int, every: int, lr_fn, task_names,
               summary_dir: str = ""):
    super().__init__()
    self.total_steps = total_steps
    self.every = every
    self.lr_fn = lr_fn
    self.task_names = list(task_names)
    self.writer = (tf.summary.create_file_writer(summary_dir)
                   if summary_dir else None)
    self._marks = collections.deque(maxlen=self.RATE_WINDOW + 1)
    self._reset()

  def _reset(self):
    self._sums = {n: 0.0 for n in self.task_names}
    self._counts = {n: 0.0 for n in self.task_names}
    self._loss_sum = self._loss_count = 0.0
    self._last_loss = float("nan")

  def _accumulate(self, logs):
    """Example-weighted sums of this batch's losses (logs hold batch means
    and per-task example counts)."""
    self._last_loss = float(logs.get("loss", float("nan")))
    total = 0.0
    for name in self.task_names:
      count = logs.get(f"count_{name}")
      loss = logs.get(f"loss_{name}")
      if count is None or loss is None:
        continue
      count = float(count)
      if count > 0:
        self._sums[name] += float(loss) * count
        self._counts[name] += count
        total += count
    if total > 0:
      self._loss_sum += self._last_loss * total
      self._loss_count += total

  def on_train_begin(self, logs=None):
    self._marks.clear()
    self._marks.append((time.time(),
                        int(self.model.optimizer.iterations.numpy())))
    self._reset()

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    self._accumulate(logs)
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every and step != self.total_steps:
      return
    lr = float(self.lr_fn(step))
    loss = (self._loss_sum / self._loss_count if self._loss_count
            else self._last_loss)
    scalars = {"loss": loss, "learning_rate": lr}
    for name in self.task_names:
      if self._counts[name] > 0:
        scalars[f"loss/{name}"] = self._sums[name] / self._counts[name]
    if getattr(self.model, "distill_schedule", None) is not None:
      scalars["lambda"] = float(logs.get("lambda", float("nan")))
    self._reset()
    now = time.time()
    self._marks.append((now, step))
    t_first, s_first = self._marks[0]
    per_step = (now - t_first) / (step - s_first) if step > s_first else 0.0
    eta = per_step * (self.total_steps - step)
    tasks = " ".join(
        f"{n} {scalars[f'loss/{n}']:.3f}" if f"loss/{n}" in scalars
        else f"{n} -" for n in self.task_names)
    extra = "".join(f" | {k} {v:.3f}" for k, v in scalars.items()
                    if k not in ("loss", "learning_rate")
                    and not k.startswith("loss/"))
    logging.info("step %d/%d (%.1f%%) | loss %.4f | %s | lr %.3g%s | "
                 "%.2f s/step | ETA %s", step, self.total_steps,
                 100.0 * step / self.total_steps, scalars["loss"], tasks, lr,
                 extra, per_step, durations.format_duration(eta))
    if self.writer is not None:
      with self.writer.as_default(step=step):
        for k, v in scalars.items():
          tf.summary.scalar(k, v)
      self.writer.flush()


class StopRequest:
  """Records a stop signal (SIGTERM) for CheckpointEveryN to act on.

  A Python signal handler runs between any two bytecodes of the main
  thread, possibly in the middle of a save or a log line, so it only
  records the signal; the callback saves and stops at the next step
  boundary, where the model's state is consistent.
  """

  def __init__(self):
    self.signum = None

  def handler(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = signum

  @property
  def received(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.received else ""


class CheckpointEveryN(tf_keras.callbacks.Callback):
  """Saves the tf.train.CheckpointManager every N steps and at the end, and
  beside it the training time so far (so resumed runs report the total).

  With a `stop_request` that has received a signal, it also saves at the
  step just finished, whatever N, and stops training (`stopped_at`): a
  preempted run loses no step, and the checkpoint is the same state a
  periodic one at that step would be (weights, optimizer, dropout streams,
  progress), so the rerun resumes exactly.
  """

  def __init__(self, manager: tf.train.CheckpointManager, every: int,
               total_steps: int, progress_path: str,
               seconds_before: float = 0.0,
               stop_request: Optional[StopRequest] = None,
               settings: Optional[List[Dict]] = None):
    super().__init__()
    self.settings = settings  # trainer.settings_segments, kept beside
    self.manager = manager
    self.every = every
    self.total_steps = total_steps
    self.progress_path = progress_path
    self.seconds_before = seconds_before
    self.stop_request = stop_request
    self.stopped_at = None  # the step saved and stopped at on a request
    self._t0 = time.time()

  @property
  def train_seconds(self) -> float:
    return self.seconds_before + time.time() - self._t0

  def on_train_begin(self, logs=None):
    self._t0 = time.time()

  def on_train_batch_end(self, batch, logs=None):
    if self.model.stop_training:  # a non-finite loss: keep the last good one
      return
    step = int(self.model.optimizer.iterations.numpy())
    stop = self.stop_request is not None and self.stop_request.received
    if stop or step % self.every == 0 or step == self.total_steps:
      self.manager.save(checkpoint_number=step)
      progress = {"step": step, "train_seconds": round(self.train_seconds, 1)}
      if self.settings is not None:
        progress["settings"] = self.settings
      files.write_json_atomic(self.progress_path, progress)
    if stop:
      self.stopped_at = step
      self.model.stop_training = True


class StopOnNonFinite(tf_keras.callbacks.Callback):
  """Stops training on a NaN/inf loss, naming the step and the task."""

  def __init__(self, task_names):
    super().__init__()
    self.task_names = list(task_names)
    self.error = None

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    loss = logs.get("loss")
    if loss is None or tf.math.is_finite(float(loss)):
      return
    step = int(self.model.optimizer.iterations.numpy())
    bad = [n for n in self.task_names
           if not tf.math.is_finite(float(logs.get(f"loss_{n}", 0.0)))]
    self.error = (f"non-finite loss {loss} at step {step}"
                  f" (task{'s' if len(bad) != 1 else ''}: "
                  f"{', '.join(bad) or 'unknown'}); the last good checkpoint "
                  "is kept")
    self.model.stop_training = True


class ValidationLog:
  """One evaluation of the dev splits during training: an `eval at step`
  line, and `validation/` TensorBoard scalars (a folder beside the training
  ones) at the global step: `<task>/<metric>` for every metric of every
  task and `average/<name>` for the averages.

  `metrics`: {task or "average": {metric: value}}; `num_examples` and the
  headline aliases (`score`, `glue_score`) are not curves of their own.
  Without a summary_dir (a worker other than the chief) only the line is
  logged.
  """

  SKIPPED = ("num_examples", "score", "glue_score")

  def __init__(self, total_steps: int, summary_dir: str = ""):
    self.total_steps = total_steps
    self.writer = (tf.summary.create_file_writer(summary_dir)
                   if summary_dir else None)

  def record(self, step: int, metrics):
    groups = [(group, {k: float(v) for k, v in values.items()
                       if k not in self.SKIPPED})
              for group, values in metrics.items()]
    groups = [(g, values) for g, values in groups if values]
    logging.info("eval at step %d/%d | %s", step, self.total_steps,
                 " | ".join(f"{g} " + " ".join(f"{k} {v:.2f}" for k, v in
                                               values.items())
                            for g, values in groups))
    if self.writer is None:
      return
    with self.writer.as_default(step=step):
      for group, values in groups:
        for name, value in values.items():
          tf.summary.scalar(f"{group}/{name}", value)
    self.writer.flush()

  def close(self):
    if self.writer is not None:
      self.writer.close()


class PeriodicEvaluation(tf_keras.callbacks.Callback):
  """Calls `evaluate_fn(step)` every N global steps while training.

  Not at the last step: the end-of-training evaluation that follows is that
  one (the caller records it), so the final weights are evaluated once.
  Nor after a step that stopped training (a non-finite loss, SIGTERM): put
  after CheckpointEveryN, the checkpoint of a step is saved before its
  evaluation starts. A resumed run continues at the next multiple of N.
  Evaluation runs the model in inference mode on its own datasets: the
  training data order and dropout streams are not touched.
  """

  def __init__(self, every: int, total_steps: int, evaluate_fn):
    super().__init__()
    self.every = every
    self.total_steps = total_steps
    self.evaluate_fn = evaluate_fn

  def on_train_batch_end(self, batch, logs=None):
    if self.model.stop_training:
      return
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every == 0 and step < self.total_steps:
      self.evaluate_fn(step)
