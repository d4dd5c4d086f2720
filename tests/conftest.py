"""Shared test fixtures: where the real GLUE data and the vocab live."""

import os

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
