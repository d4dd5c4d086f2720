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
import os
from typing import Optional, Sequence

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras
from absl import logging

from bam_tf.common.errors import ConfigError


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
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    configure_coordination(resolver, config.worker_timeout_s)
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver)
  if kind == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=config.tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ConfigError(f"--strategy: unknown strategy {kind!r}")


def describe_devices(config, strategy: tf.distribute.Strategy) -> str:
  """One line for the run's start: what computes, under which strategy."""
  accelerators = [d for d in tf.config.list_logical_devices()
                  if d.device_type in ("GPU", "TPU")]
  if accelerators:
    kinds = sorted({d.device_type for d in accelerators})
    where = ", ".join(
        f"{sum(d.device_type == k for d in accelerators)} {k}(s)"
        for k in kinds)
  else:
    where = f"CPU ({os.cpu_count()} cores)"
  replicas = strategy.num_replicas_in_sync
  return (f"Running on {where}: --strategy={config.strategy}, {replicas} "
          f"replica{'s' if replicas != 1 else ''}")


def configure_coordination(resolver, timeout_s: int):
  """The coordination service MultiWorkerMirroredStrategy would set up, with
  patient timeouts (--worker_timeout_s).

  Why by hand: TensorFlow has no public setting for it. The strategy
  configures the service itself only when nothing has (the same call, with
  the service's defaults: a 10 s heartbeat timeout, which workers of a loaded
  2-core host missed: "Deadline Exceeded ... CoordinationService/Heartbeat").
  Must run before the strategy and any other TensorFlow work.
  """
  # pylint: disable=g-import-not-at-top
  from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
  from tensorflow.python.distribute import multi_worker_util
  from tensorflow.python.eager import context
  # pylint: enable=g-import-not-at-top
  cluster = resolver.cluster_spec()
  if resolver.task_type not in ("chief", "worker") or not cluster.jobs:
    return  # not a coordinated job: the strategy decides
  if context.context().coordination_service is not None:
    return  # already configured in this process
  jobs = [coordination_config_pb2.CoordinatedJob(
      name=job, num_tasks=cluster.num_tasks(job))
          for job in ("chief", "worker") if job in cluster.jobs]
  timeout_ms = int(timeout_s) * 1000
  context.context().configure_coordination_service(
      service_type="standalone",
      service_leader=multi_worker_util.coordination_leader(cluster),
      cluster_register_timeout_in_ms=timeout_ms,
      heartbeat_timeout_in_ms=timeout_ms,
      shutdown_barrier_timeout_in_ms=timeout_ms,
      coordinated_jobs=jobs)
  logging.info("multi-worker: heartbeat and barrier timeouts %d s "
               "(--worker_timeout_s)", timeout_s)


def check_batch_sizes(config, num_replicas: int):
  """Global batches must split evenly across replicas."""
  for flag in ("train_batch_size", "eval_batch_size"):
    value = getattr(config, flag)
    if value % num_replicas:
      raise ConfigError(
          f"--{flag}: {value} is not divisible by the {num_replicas} "
          f"replicas of --strategy={config.strategy} (it is the global "
          "batch, split evenly across replicas)")


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
