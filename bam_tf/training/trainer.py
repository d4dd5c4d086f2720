"""Runs the fit loop of one trial: restore, train with callbacks, checkpoint.

The model's own `train_step` (bam_tf.modeling.multitask_model) does the BAM
work; this module owns the loop around it: resuming from the last complete
checkpoint, progress lines, TensorBoard, periodic checkpoints, and a
checkpoint at the current step on SIGTERM (the notice a TPU VM or a
scheduler gives before preemption), so a preempted run loses no step.

SIGTERM is honoured in single-process runs (one device, or Mirrored over
the local devices). Under multi-worker training saving is collective: a
worker that saved alone on its own SIGTERM would wait for the others
forever. There the default action stays (the process ends) and the rerun
resumes from the last periodic checkpoint; coordinating it would take
tf.distribute's PreemptionCheckpointHandler, which this project does not
use.
"""

import contextlib
import os
import re
import signal
import threading
from typing import Dict, List, NamedTuple, Optional

import tensorflow as tf
from absl import logging

from bam_tf.common import files
from bam_tf.common import replicas
from bam_tf.common.errors import BamError
from bam_tf.training import callbacks as callbacks_lib
from bam_tf.training import rng_state

PROGRESS_JSON = "train_progress.json"


class NonFiniteLossError(BamError):
  """Training produced a NaN/inf loss (reported like bad input: one line,
  naming the step and the task; the last good checkpoint is kept)."""


class PreemptedError(BamError):
  """SIGTERM during training: a checkpoint at the current step was written
  and training stopped without evaluating; rerunning the same command
  resumes from it (reported as one line, exit code 2)."""


# What a save killed half-way leaves in the checkpoint folder: TensorFlow
# writes a checkpoint's shards into `ckpt-N_temp/` and merges them into
# ckpt-N.* (deleting the folder), and the `checkpoint` state file through
# `checkpoint.tmp<hex>`.
_STALE = re.compile(r"^(?:ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32})$")


def checkpoint_manager(model, trial_dir: str,
                       max_to_keep: int) -> tf.train.CheckpointManager:
  # Dropout streams too (rng_state), so that a resumed run continues them.
  rng = tf.train.Checkpoint(**rng_state.random_generators(model))
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, rng=rng)
  return tf.train.CheckpointManager(
      ckpt, os.path.join(trial_dir, "checkpoints"), max_to_keep=max_to_keep)


def remove_stale_temp(directory: str):
  """Deletes the temporary files and folders of saves that were killed.

  Called before training (re)starts, when nothing is saving into the folder:
  every such leftover is dead, and resuming never reads them (it reads the
  checkpoint the state file names, complete by construction). Left alone, a
  `ckpt-N_temp/` would sit there for good, or be mixed into the next save of
  step N.
  """
  if not files.isdir(directory):
    return
  for name in files.listdir(directory):
    if not _STALE.match(name):
      continue
    path = os.path.join(directory, name)
    logging.info("Removing %s (left by a save that was killed)", path)
    files.remove(path)


@contextlib.contextmanager
def stop_on_sigterm(enabled: bool = True):
  """Yields a StopRequest that a SIGTERM sets while the block runs; the
  previous handler is put back afterwards.

  Not enabled (a multi-worker run, see the module docstring) or off the main
  thread (where Python cannot install handlers), SIGTERM keeps its previous
  handling and the request is never set.
  """
  request = callbacks_lib.StopRequest()
  if not enabled or threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous = signal.signal(signal.SIGTERM, request.handler)
  try:
    yield request
  finally:
    # None: a handler installed outside Python, which cannot be put back.
    signal.signal(signal.SIGTERM,
                  signal.SIG_DFL if previous is None else previous)


def restore_latest(manager: tf.train.CheckpointManager) -> int:
  """Restores the newest complete checkpoint; returns its step (0 if none)."""
  if not manager.latest_checkpoint:
    return 0
  manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
  step = int(manager.checkpoint.optimizer.iterations.numpy())
  logging.info("Resumed from %s (step %d)", manager.latest_checkpoint, step)
  return step


class Fitted(NamedTuple):
  """What `fit` reports: the training time summed over resumed sessions,
  and the settings each stretch of steps trained under (`settings`
  segments, oldest first, each with the step it started from)."""
  train_seconds: float
  settings: List[Dict]


def settings_segments(before: List[Dict], start: int,
                      settings: Optional[Dict]) -> List[Dict]:
  """The trial's settings segments once it (re)starts at `start`: a
  resume under other settings than the steps before it adds a segment
  (warned: the trial's numbers then come from both)."""
  segments = list(before)
  if settings is None:
    return segments
  last = ({k: v for k, v in segments[-1].items() if k != "from_step"}
          if segments else None)
  if last == settings:
    return segments
  if last is not None:
    changed = ", ".join(f"{k} {last.get(k)!r} -> {v!r}"
                        for k, v in settings.items() if last.get(k) != v)
    logging.warning("This trial resumes at step %d with other settings than "
                    "its earlier steps (%s); its record in results.json "
                    "lists both", start, changed)
  return segments + [dict(from_step=start, **settings)]


def fit(model, train_ds: tf.data.Dataset, total_steps: int, trial_dir: str,
        config, lr_fn, chief: bool = True, evaluate_fn=None,
        settings: Optional[Dict] = None) -> Fitted:
  """Trains to `total_steps`, resuming if the trial has checkpoints.

  `chief`: whether this process owns trial_dir. Under multi-worker training
  every worker restores from trial_dir/checkpoints and takes part in saving
  (checkpointing distributed variables is collective), but only the chief
  writes there: the others save to a temporary folder that is deleted, and
  write no TensorBoard or progress files.

  On SIGTERM (single-worker runs) the step in flight finishes, a
  checkpoint is saved at it and PreemptedError is raised: the run stops
  without evaluating, and rerunning it resumes from that step.

  `evaluate_fn(step)`: with --eval_every_steps=N, called every N steps
  before the last (callbacks.PeriodicEvaluation); on every worker, since
  predicting under a multi-worker strategy is collective.

  `settings`: how this session trains (rerun-safe settings that move the
  numbers, e.g. --length_sorted_part_size); kept in the progress file per
  stretch of steps, so a trial resumed under other ones says so.
  """
  manager = checkpoint_manager(model, trial_dir, config.keep_checkpoint_max)
  if chief:
    remove_stale_temp(manager.directory)
  start = restore_latest(manager)
  progress_path = os.path.join(trial_dir, PROGRESS_JSON)
  seconds_before, segments = 0.0, []
  if start and files.exists(progress_path):
    before = files.read_json(progress_path)
    seconds_before = float(before["train_seconds"])
    segments = before.get("settings", [])
  remaining = total_steps - start
  if remaining <= 0:
    logging.info("Training already finished (%d steps)", start)
    return Fitted(seconds_before, segments)
  segments = settings_segments(segments, start, settings)
  if start:
    # Same seed, same stream: skip the batches already trained on.
    train_ds = train_ds.skip(start)
  scratch = None
  if not chief:
    scratch = files.scratch_dir("bam_tf_worker_")
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
  multi_worker = replicas.is_multi_worker(model.distribute_strategy)
  try:
    with stop_on_sigterm(enabled=not multi_worker) as request:
      saver = callbacks_lib.CheckpointEveryN(
          manager, config.save_checkpoints_steps, total_steps, progress_path,
          seconds_before, stop_request=request, settings=segments)
      callbacks = [stopper, progress, saver]
      if evaluate_fn is not None and config.eval_every_steps:
        # After the saver: a step's checkpoint is written before its
        # evaluation, and a stopped step is not evaluated.
        callbacks.append(callbacks_lib.PeriodicEvaluation(
            config.eval_every_steps, total_steps, evaluate_fn))
      model.fit(train_ds, steps_per_epoch=remaining, epochs=1, verbose=0,
                callbacks=callbacks)
  finally:
    if scratch:
      files.remove(scratch)
  if stopper.error:
    raise NonFiniteLossError(stopper.error)
  if request.received:
    # After the last step's callbacks the signal is still honoured (the
    # scheduler wants the process gone); that step's checkpoint is saved.
    step = (saver.stopped_at if saver.stopped_at is not None
            else int(model.optimizer.iterations.numpy()))
    raise PreemptedError(
        f"{request.name} at step {step}: checkpoint ckpt-{step} written; "
        "rerun the same command to resume")
  return Fitted(saver.train_seconds, segments)
