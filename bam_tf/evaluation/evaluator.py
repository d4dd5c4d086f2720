"""Runs a trained model over a split and scores it."""

import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from bam_tf.common import durations
from bam_tf.common import replicas
from bam_tf.evaluation import metrics
from bam_tf.modeling.multitask_model import model_inputs
from bam_tf.tasks.task import TaskSpec


_FIELDS = ("eid", "label_id", "label_value")


def _replica_fn(model, task: TaskSpec):
  """Per-replica outputs plus the features that identify the rows."""

  def fn(features):
    logits = tf.cast(model(model_inputs(features),
                           training=False)[task.name], tf.float32)
    if task.is_regression:
      out = model.regression_output(logits)
    else:
      out = tf.nn.softmax(logits, axis=-1)
    result = {k: features[k] for k in _FIELDS}
    result.update(logits=logits, out=out)
    if "example_mask" in features:
      result["example_mask"] = features["example_mask"]
    else:
      result["example_mask"] = tf.ones_like(features["task_id"])
    return result

  return fn


def _relaxed_signature(element_spec):
  """The batch's spec with every dimension unknown: one trace serves every
  batch and sequence length (no retracing per shape)."""
  return [{k: tf.TensorSpec([None] * v.shape.rank, v.dtype)
           for k, v in element_spec.items()}]


def _predict_step(model, task: TaskSpec, strategy, element_spec):
  """One traced function per (model, task, strategy, batch fields), reused
  across splits.

  Runs the replica function with `strategy.run` and gathers every replica's
  rows (in replica order, i.e. the order of the global batch). On one
  device it is traced once for any batch shape; a multi-replica strategy
  gets batches of one size (padded) and relaxes shapes as it retraces.
  """
  cache = model.__dict__.setdefault("_bam_predict_steps", {})
  key = (task.name, id(strategy), tuple(sorted(element_spec)))
  if key not in cache:
    fn = _replica_fn(model, task)

    def step(features):
      per_replica = strategy.run(fn, args=(features,))
      return tf.nest.map_structure(
          lambda v: replicas.gather(strategy, v), per_replica)

    if strategy.num_replicas_in_sync == 1 and not isinstance(
        strategy, tf.distribute.TPUStrategy):
      cache[key] = tf.function(
          step, input_signature=_relaxed_signature(element_spec))
    else:
      cache[key] = tf.function(step, reduce_retracing=True)
  return cache[key]


class Progress:
  """Progress lines for a long prediction (a teacher predicting a large
  train split takes minutes): at most one every EVERY_S seconds, so a
  short one prints nothing, and a last line when one was printed."""

  EVERY_S = 15.0

  def __init__(self, what: str, total: int):
    self.what, self.total = what, max(int(total), 1)
    self.count, self.start = 0, time.time()
    self.last = self.start
    self.printed = False

  def update(self, rows: int):
    self.count += rows
    now = time.time()
    if now - self.last < self.EVERY_S:
      return
    self.last, self.printed = now, True
    rate = self.count / max(now - self.start, 1e-9)
    eta = (self.total - self.count) / max(rate, 1e-9)
    logging.info("predicting %s: %s/%s examples (%.0f%%) | %.0f examples/s "
                 "| ETA %s", self.what, f"{self.count:,}", f"{self.total:,}",
                 100.0 * self.count / self.total, rate,
                 durations.format_duration(eta))

  def done(self):
    if self.printed:
      logging.info("predicted %s: %s examples in %s", self.what,
                   f"{self.count:,}",
                   durations.format_duration(time.time() - self.start))


def predict_task(model, task: TaskSpec, dataset: tf.data.Dataset,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 progress: Optional["Progress"] = None
                 ) -> Dict[str, np.ndarray]:
  """Per-example outputs of one task's head, in file order.

  Returns eids, gold label ids / values, and logits + probabilities
  (classification) or the prediction on the original label scale
  (regression). Under a strategy the dataset's global batches are split
  across replicas; batches padded by `pipeline.eval_dataset(pad_task_id=...)`
  carry `example_mask`, and padding rows are dropped here, so every example
  is counted exactly once.
  """
  strategy = strategy or tf.distribute.get_strategy()
  step = _predict_step(model, task, strategy, dataset.element_spec)
  dataset = replicas.for_strategy(dataset, strategy)
  dist_ds = strategy.experimental_distribute_dataset(dataset)
  parts = {k: [] for k in _FIELDS + ("logits", "out")}
  for features in dist_ds:
    out = step(features)
    keep = out["example_mask"].numpy().astype(bool)
    for k in parts:
      parts[k].append(out[k].numpy()[keep])
    if progress:
      progress.update(int(keep.sum()))
  if progress:
    progress.done()
  # Length-bucketed batches come out of file order; eids are row numbers.
  order = np.argsort(np.concatenate(parts["eid"]), kind="stable")
  result = {k: np.concatenate(parts[k])[order]
            for k in _FIELDS + ("logits",)}
  outs = np.concatenate(parts["out"])[order]
  if task.is_regression:
    result["scaled_prediction"] = outs
    result["prediction"] = task.unscale(result["scaled_prediction"])
    result["gold"] = task.unscale(result["label_value"])
  else:
    result["probabilities"] = outs
    result["prediction"] = np.argmax(result["probabilities"], axis=-1)
    result["gold"] = result["label_id"]
  return result


def score(task: TaskSpec, predictions: Dict[str, np.ndarray]):
  return metrics.task_metrics(task, predictions["gold"],
                              predictions["prediction"])
