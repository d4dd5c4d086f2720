"""tf.distribute strategies and mixed precision for a run (--strategy,
--tpu, --mixed_precision).

Batches are global: --train_batch_size examples per step whatever the
number of replicas; Keras `fit` splits each batch across replicas. The train
step's loss is the SUM over a replica's examples and the optimizer
all-reduces gradients with SUM, so the aggregated gradient is the gradient of
the sum over the global batch: exactly what one device computes
(tests/test_distribution.py checks the loss trajectories agree).

Everything that creates variables (encoder, model, optimizer) must be built
under `strategy.scope()`; the runner does this.
"""

import contextlib
import json
import os
from typing import Optional, Sequence

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras
from absl import logging

from bam_tf import configure


def make_strategy(config, devices: Optional[Sequence[str]] = None
                  ) -> tf.distribute.Strategy:
  """The strategy --strategy names.

  one_device is TensorFlow's default strategy (one replica, ops placed as
  without a strategy: the first GPU when there is one). `devices` (mirrored
  only) overrides the devices, e.g. two logical CPUs in tests.
  """
  kind = config.strategy
  if kind == "one_device":
    return tf.distribute.get_strategy()
  if kind == "mirrored":
    return tf.distribute.MirroredStrategy(
        devices=list(devices) if devices else None)
  if kind == "multi_worker_mirrored":
    # Reads the cluster from TF_CONFIG; must be created before other TF ops.
    return tf.distribute.MultiWorkerMirroredStrategy()
  if kind == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=config.tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise configure.ConfigError(f"--strategy: unknown strategy {kind!r}")


def check_batch_sizes(config, num_replicas: int):
  """Global batches must split evenly across replicas."""
  for flag in ("train_batch_size", "eval_batch_size"):
    value = getattr(config, flag)
    if value % num_replicas:
      raise configure.ConfigError(
          f"--{flag}: {value} is not divisible by the {num_replicas} "
          f"replicas of --strategy={config.strategy} (it is the global "
          "batch, split evenly across replicas)")


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


@contextlib.contextmanager
def precision_policy(config):
  """Sets the Keras global policy for --mixed_precision while building (and
  restores the previous one after, so later models in this process are not
  affected). Layers read the policy when they are created."""
  previous = tf_keras.mixed_precision.global_policy()
  name = "float32" if config.mixed_precision == "none" else (
      config.mixed_precision)
  tf_keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, config):
  """mixed_float16: dynamic loss scaling around the layer-wise optimizer
  (its apply_gradients is still what updates the variables; clipping by
  global norm happens there on the unscaled, aggregated gradients)."""
  if config.mixed_precision != "mixed_float16":
    return optimizer
  logging.info("mixed_float16: dynamic loss scaling")
  return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)


def inner_optimizer(optimizer):
  """The layer-wise optimizer, unwrapped from loss scaling if wrapped."""
  return getattr(optimizer, "inner_optimizer", optimizer)
