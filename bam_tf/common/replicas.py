"""Which process and replica is which, and gathering across replicas.

Used by training (chief-only writing, sharded input) and by evaluation
(gathering per-replica predictions); neither owns the other, so these live
at the bottom.
"""

import json
import os

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf


def _is_default(strategy) -> bool:
  return type(strategy).__name__ == "_DefaultDistributionStrategy"


def is_multi_worker(strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_info(strategy):
  """(task_type, task_id) of this process; (None, None) when single-worker."""
  if not is_multi_worker(strategy):
    return None, None
  resolver = strategy.cluster_resolver
  return resolver.task_type, resolver.task_id


def is_chief(strategy) -> bool:
  """Whether this process writes checkpoints and results."""
  task_type, task_id = worker_info(strategy)
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def dataset_options() -> tf.data.Options:
  """Shard data across workers by element, not by file (each worker builds
  the same seeded stream; a featurised split is one file)."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return options


def for_strategy(dataset: tf.data.Dataset, strategy) -> tf.data.Dataset:
  if is_multi_worker(strategy):
    return dataset.with_options(dataset_options())
  return dataset


def gather(strategy, value):
  """Per-replica tensors -> one tensor, concatenated along the batch in
  replica order (every worker's replicas under multi-worker)."""
  if _is_default(strategy):
    return value
  if is_multi_worker(strategy):
    return strategy.gather(value, axis=0)
  return tf.concat(strategy.experimental_local_results(value), axis=0)
