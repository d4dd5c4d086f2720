"""Shared test fixtures: where the real GLUE data and the vocab live."""

import functools
import os
import subprocess
import sys

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import pytest
import tensorflow as tf

# Two logical CPUs, for the MirroredStrategy tests (test_distribution,
# test_optimization). Only possible before the TensorFlow runtime
# initialises, so it is done here, when pytest imports conftest (before any
# test module runs a TF op). One-device code keeps using /cpu:0.
try:
  _cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      _cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
except (RuntimeError, IndexError, ValueError):
  pass


@functools.lru_cache(maxsize=None)
def two_cpu_strategy():
  """One MirroredStrategy over the two logical CPUs for the whole session
  (None if they could not be configured). Shared on purpose: separate
  MirroredStrategy objects over the same devices reuse collective instance
  keys, and eager collectives of one then clash with another's."""
  cpus = tf.config.list_logical_devices("CPU")
  if len(cpus) < 2:
    return None
  return tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_classifier(args, timeout=900) -> str:
  """run_classifier.py in a fresh process; its output (asserts success)."""
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py")] + args,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=timeout, cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stdout[-4000:]
  return proc.stdout
GLUE_DIR = os.environ.get(
    "BAM_TF_GLUE_DIR",
    os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "glue_data")))
SHARED_TASKS = ("cola", "sst", "mrpc", "sts", "rte")


@pytest.fixture(scope="session")
def glue_dir():
  if not os.path.isdir(GLUE_DIR):
    pytest.fail(f"GLUE data not found at {GLUE_DIR} (../shared/glue_data "
                "beside the checkout, or set BAM_TF_GLUE_DIR)")
  return GLUE_DIR


@pytest.fixture(scope="session")
def minilm_vocab():
  from bam_tf.modeling import minilm  # pylint: disable=g-import-not-at-top
  return minilm.find_minilm_files()[1]


def resolve_flags(args):
  """BamConfig from command-line flags (absl's global FLAGS, reset after)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from bam_tf import configure  # pylint: disable=g-import-not-at-top
  configure.define_flags()
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["prog"] + list(args))
    return configure.config_from_flags()
  finally:
    flags.FLAGS.unparse_flags()
