"""Keras callbacks for long runs: progress lines, TensorBoard, checkpoints."""

import time

import tensorflow as tf
import tf_keras
from absl import logging

from bam_tf.outputs import files


def _fmt_seconds(s: float) -> str:
  s = int(max(s, 0))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


class ProgressLogger(tf_keras.callbacks.Callback):
  """Every N steps: step, %, loss, per-task loss, lr, lambda, s/step, ETA.

  Also writes the same scalars to TensorBoard.
  """

  def __init__(self, total_steps: int, every: int, lr_fn, task_names,
               summary_dir: str = ""):
    super().__init__()
    self.total_steps = total_steps
    self.every = every
    self.lr_fn = lr_fn
    self.task_names = list(task_names)
    self.writer = (tf.summary.create_file_writer(summary_dir)
                   if summary_dir else None)
    self._t0 = None
    self._s0 = 0

  def on_train_begin(self, logs=None):
    self._t0 = time.time()
    self._s0 = int(self.model.optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every and step != self.total_steps:
      return
    logs = logs or {}
    lr = float(self.lr_fn(step))
    scalars = {"loss": float(logs.get("loss", float("nan"))),
               "learning_rate": lr}
    for name in self.task_names:
      if f"loss_{name}" in logs:
        scalars[f"loss/{name}"] = float(logs[f"loss_{name}"])
    if getattr(self.model, "distill_schedule", None) is not None:
      scalars["lambda"] = float(logs.get("lambda", float("nan")))
    done = step - self._s0
    elapsed = time.time() - self._t0
    per_step = elapsed / done if done else 0.0
    eta = per_step * (self.total_steps - step)
    tasks = " ".join(f"{n} {scalars[f'loss/{n}']:.3f}" for n in
                     self.task_names if f"loss/{n}" in scalars)
    extra = "".join(f" | {k} {v:.3f}" for k, v in scalars.items()
                    if k not in ("loss", "learning_rate")
                    and not k.startswith("loss/"))
    logging.info("step %d/%d (%.1f%%) | loss %.4f | %s | lr %.3g%s | "
                 "%.2f s/step | ETA %s", step, self.total_steps,
                 100.0 * step / self.total_steps, scalars["loss"], tasks, lr,
                 extra, per_step, _fmt_seconds(eta))
    if self.writer is not None:
      with self.writer.as_default(step=step):
        for k, v in scalars.items():
          tf.summary.scalar(k, v)
      self.writer.flush()


class CheckpointEveryN(tf_keras.callbacks.Callback):
  """Saves the tf.train.CheckpointManager every N steps and at the end, and
  beside it the training time so far (so resumed runs report the total)."""

  def __init__(self, manager: tf.train.CheckpointManager, every: int,
               total_steps: int, progress_path: str,
               seconds_before: float = 0.0):
    super().__init__()
    self.manager = manager
    self.every = every
    self.total_steps = total_steps
    self.progress_path = progress_path
    self.seconds_before = seconds_before
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
    if step % self.every == 0 or step == self.total_steps:
      self.manager.save(checkpoint_number=step)
      files.write_json_atomic(self.progress_path, {
          "step": step, "train_seconds": round(self.train_seconds, 1)})


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
