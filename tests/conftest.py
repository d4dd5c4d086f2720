"""Shared test fixtures: where the real GLUE data and the vocab live."""

import functools
import os
import re
import subprocess
import sys

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
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

# Test modules by their measured time, slowest first (a clean-clone CI run,
# 2 workers on 2 cores, 2026-12-01: test_first_run's fixture 334 s, the
# benchmark smoke 165 s, ...). pytest-xdist hands out whole modules in
# collection order (pytest.ini: --dist loadscope --no-loadscope-reorder), so
# the slowest start first and the end of the run is not one worker alone on
# a long module. Order only: a module missing here runs after these, and a
# stale order costs minutes, not results.
SLOWEST_FIRST = (
    "test_first_run", "test_benchmark", "test_resume", "test_reproduce",
    "test_any_filesystem", "test_export", "test_encoders", "test_student_run",
    "test_tfds_source", "test_ownership", "test_restored_run",
    "test_preemption", "test_init_from", "test_eval_mode", "test_multi_worker",
    "test_bad_input", "test_distribution", "test_tokenization",
    "test_user_task_run", "test_published_results", "test_recipe", "test_features",
    "test_terminal")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def run_classifier_process(args, timeout=900) -> subprocess.CompletedProcess:
  """run_classifier.py in a fresh process, whatever its exit code (stdout
  and stderr together in .stdout)."""
  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py")] + args,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=timeout, cwd=REPO_ROOT)


def run_classifier(args, timeout=900) -> str:
  """run_classifier.py in a fresh process; its output (asserts success)."""
  proc = run_classifier_process(args, timeout)
  assert proc.returncode == 0, proc.stdout[-4000:]
  return proc.stdout


def finish(proc, timeout=900):
  """(exit code, output) of a run_classifier.py Popen."""
  out = proc.communicate(timeout=timeout)[0]
  return proc.returncode, out


def comparable_results(model_dir):
  """results.json without what legitimately differs between two runs of
  the same command: times and the config's paths."""
  from bam_tf.common import files  # pylint: disable=g-import-not-at-top
  results = files.read_json(os.path.join(model_dir, "results.json"))
  for trial in results["trials"]:
    for key in [k for k in trial if "seconds" in k or "time" in k]:
      del trial[key]
  results.pop("config", None)
  return results


def assert_same_dev_predictions(ref_dir, run_dir, tasks, trial=0):
  """Every array of each task's dev predictions (trial `trial`) equal,
  bit for bit, in two run dirs."""
  for task in tasks:
    name = os.path.join(f"trial_{trial}", "predictions", f"{task}_dev.npz")
    a = np.load(os.path.join(ref_dir, name))
    b = np.load(os.path.join(run_dir, name))
    assert sorted(a.files) == sorted(b.files), name
    for key in a.files:
      np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


def tiny_rte_sts_model(optimizer=None):
  """A one-layer, 16-wide MultiTaskModel over RTE and STS-B (seed 0),
  compiled: for in-process training tests that need no real encoder."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from official.nlp.modeling import networks  # pylint: disable=g-import-not-at-top
  from bam_tf.modeling.multitask_model import MultiTaskModel  # pylint: disable=g-import-not-at-top
  from bam_tf.tasks import glue  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(0)
  encoder = networks.BertEncoder(
      vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=16, dict_outputs=True)
  model = MultiTaskModel(encoder, [glue.GLUE_TASKS["rte"],
                                   glue.GLUE_TASKS["sts"]])
  model.compile(optimizer=optimizer or tf_keras.optimizers.SGD(1e-3))
  return model


def tiny_rte_sts_batch(n=4):
  """A batch for tiny_rte_sts_model: tasks alternate RTE, STS-B."""
  return {"input_word_ids": np.ones((n, 5), np.int32),
          "input_mask": np.ones((n, 5), np.int32),
          "input_type_ids": np.zeros((n, 5), np.int32),
          "task_id": np.arange(n, dtype=np.int32) % 2,
          "label_id": np.zeros(n, np.int32),
          "label_value": np.full(n, 0.5, np.float32)}


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


# What TensorFlow and its libraries print when not silenced: absl's format
# (`I1201 12:54:20.518433 1404868 functional_saver.py:440] ...`),
# TensorFlow's C++ format (`2026-12-01 12:54:12.499360: E external/...`),
# Python warnings and the known chatter.
FRAMEWORK_NOISE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ |"
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |"
    r"Warning:|WARNING:|retracing|cuInit|Sharding callback|"
    r"untraced functions|gradient_clip_norm|oneDNN|absl::")


def noise_lines(output: str):
  """The lines of a run's terminal output that TensorFlow and its libraries
  printed (tests/test_terminal.py checks the pattern)."""
  return [line for line in output.splitlines()
          if FRAMEWORK_NOISE.search(line)]
