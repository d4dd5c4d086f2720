"""Runs the fit loop of one trial: restore, train with callbacks, checkpoint.

The model's own `train_step` (bam_tf.modeling.multitask_model) does the BAM
work; this module owns the loop around it: resuming from the last complete
checkpoint, progress lines, TensorBoard and periodic checkpoints.
"""

import os

import tensorflow as tf
from absl import logging

from bam_tf.training import callbacks as callbacks_lib


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss."""


def checkpoint_manager(model, trial_dir: str, max_to_keep: int,
                       extra=None) -> tf.train.CheckpointManager:
  items = dict(model=model, optimizer=model.optimizer)
  items.update(extra or {})
  ckpt = tf.train.Checkpoint(**items)
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
        config, lr_fn, extra_scalars_fn=None, extra_checkpoint_items=None):
  """Trains to `total_steps`, resuming if the trial has checkpoints."""
  manager = checkpoint_manager(model, trial_dir, config.keep_checkpoint_max,
                               extra_checkpoint_items)
  start = restore_latest(manager)
  remaining = total_steps - start
  if remaining <= 0:
    logging.info("Training already finished (%d steps)", start)
    return manager
  if start:
    # Same seed, same stream: skip the batches already trained on.
    train_ds = train_ds.skip(start)
  stopper = callbacks_lib.StopOnNonFinite([t.name for t in model.tasks])
  progress = callbacks_lib.ProgressLogger(
      total_steps, config.log_every_steps, lr_fn, [t.name for t in
                                                   model.tasks],
      summary_dir=os.path.join(trial_dir, "tensorboard"),
      extra_scalars_fn=extra_scalars_fn)
  saver = callbacks_lib.CheckpointEveryN(manager,
                                         config.save_checkpoints_steps,
                                         total_steps)
  model.fit(train_ds, steps_per_epoch=remaining, epochs=1, verbose=0,
            callbacks=[stopper, progress, saver])
  if stopper.error:
    raise NonFiniteLossError(stopper.error)
  return manager
