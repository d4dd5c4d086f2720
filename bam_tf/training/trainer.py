"""Runs the fit loop of one trial: restore, train with callbacks, checkpoint.

The model's own `train_step` (bam_tf.modeling.multitask_model) does the BAM
work; this module owns the loop around it: resuming from the last complete
checkpoint, progress lines, TensorBoard and periodic checkpoints.
"""

import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.training import callbacks as callbacks_lib
from bam_tf.training import rng_state

PROGRESS_JSON = "train_progress.json"


class NonFiniteLossError(BamError):
  """Training produced a NaN/inf loss (reported like bad input: one line,
  naming the step and the task; the last good checkpoint is kept)."""


def checkpoint_manager(model, trial_dir: str,
                       max_to_keep: int) -> tf.train.CheckpointManager:
  # Dropout streams too (rng_state), so that a resumed run continues them.
  rng = tf.train.Checkpoint(**rng_state.random_generators(model))
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, rng=rng)
  return tf.train.CheckpointManager(
      ckpt, os.path.join(trial_dir, "checkpoints"), max_to_keep=max_to_keep)


def restore_latest(manager: tf.train.CheckpointManager) -> int:
  """Restores the newest complete checkpoint; returns its step (0 if none)."""
  if not manager.latest_checkpoint:
    return 0
  manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
  step = int(manager.checkpoint.optimizer.iterations.numpy())
  logging.info("Resumed from %s (step %d)", manager.latest_checkpoint, step)
  return step


def fit(model, train_ds: tf.data.Dataset, total_steps: int, trial_dir: str,
        config, lr_fn, chief: bool = True) -> float:
  """Trains to `total_steps`, resuming if the trial has checkpoints.

  `chief`: whether this process owns trial_dir. Under multi-worker training
  every worker restores from trial_dir/checkpoints and takes part in saving
  (checkpointing distributed variables is collective), but only the chief
  writes there: the others save to a temporary folder that is deleted, and
  write no TensorBoard or progress files.

  Returns the training time in seconds, summed over resumed sessions.
  """
  manager = checkpoint_manager(model, trial_dir, config.keep_checkpoint_max)
  start = restore_latest(manager)
  progress_path = os.path.join(trial_dir, PROGRESS_JSON)
  seconds_before = 0.0
  if start and os.path.exists(progress_path):
    seconds_before = float(files.read_json(progress_path)["train_seconds"])
  remaining = total_steps - start
  if remaining <= 0:
    logging.info("Training already finished (%d steps)", start)
    return seconds_before
  if start:
    # Same seed, same stream: skip the batches already trained on.
    train_ds = train_ds.skip(start)
  scratch = None
  if not chief:
    scratch = tempfile.mkdtemp(prefix="bam_tf_worker_")
    manager = tf.train.CheckpointManager(
        manager.checkpoint, os.path.join(scratch, "checkpoints"),
        max_to_keep=1)
    progress_path = os.path.join(scratch, PROGRESS_JSON)
  stopper = callbacks_lib.StopOnNonFinite([t.name for t in model.tasks])
  progress = callbacks_lib.ProgressLogger(
      total_steps, config.log_every_steps, lr_fn, [t.name for t in
                                                   model.tasks],
      summary_dir=(os.path.join(trial_dir, "tensorboard") if chief
                   else None))
  saver = callbacks_lib.CheckpointEveryN(manager,
                                         config.save_checkpoints_steps,
                                         total_steps, progress_path,
                                         seconds_before)
  try:
    model.fit(train_ds, steps_per_epoch=remaining, epochs=1, verbose=0,
              callbacks=[stopper, progress, saver])
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
  if stopper.error:
    raise NonFiniteLossError(stopper.error)
  return saver.train_seconds
