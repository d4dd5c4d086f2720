"""Every flagfile in official_configs/ resolves to a valid configuration."""

import glob
import os

import pytest

from bam_tf import configure
from conftest import REPO_ROOT, resolve_flags

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "official_configs", "**",
                                        "*.cfg"), recursive=True))


def _resolve(path, glue_dir):
  return resolve_flags([f"--flagfile={path}", f"--data_dir={glue_dir}"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(
    p, os.path.join(REPO_ROOT, "official_configs")))
def test_flagfile_resolves(path, glue_dir, monkeypatch):
  monkeypatch.chdir(REPO_ROOT)  # teacher flagfiles are repo-relative
  config = _resolve(path, glue_dir)
  assert config.model_dir.startswith("runs/")
  if config.distill:
    assert set(config.teacher_dirs) == set(config.task_names)
    for model_dir, flagfile in config.teacher_flagfiles.items():
      assert configure.flagfile_value(flagfile, "model_dir") == model_dir


def test_paper_rows_are_present():
  names = {os.path.relpath(p, os.path.join(REPO_ROOT, "official_configs"))
           for p in CONFIGS}
  for row in ["single_rte", "multi", "single_to_single_rte",
              "multi_to_multi", "single_to_multi",
              "single_multi_single_multi", "multi_then_single_rte",
              "single_to_multi_no_layerwise_lr",
              "single_to_multi_no_task_sampling", "single_to_multi_lambda0",
              "single_to_multi_lambda05", "table5_rte_mnli",
              "table5_rte_qqp_cola_sst"]:
    assert f"bert_large/{row}.cfg" in names, row
  for row in ["single_cola", "single_mrpc", "single_sts", "single_rte",
              "multi", "single_to_multi", "single_to_multi_lambda0"]:
    assert f"small/{row}.cfg" in names, row
