"""--mode=inspect_data: counts against the official ones, bad files fail."""

import json
import os
import shutil
import types

import pytest

from bam_tf.data import inspect
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.tasks import glue


@pytest.fixture(scope="module")
def tokenizer(minilm_vocab):
  return InGraphTokenizer(minilm_vocab, True, 128)


def _config(tasks, data_dir, model_dir=""):
  return types.SimpleNamespace(tasks=[glue.GLUE_TASKS[t] for t in tasks],
                               data_dir=data_dir, data_source="tsv",
                               tfds_data_dir="", max_seq_length=128,
                               model_dir=model_dir)


def test_shared_tasks_match_official_counts(glue_dir, tokenizer, capsys,
                                            tmp_path):
  code = inspect.inspect(_config(["rte", "mrpc", "qnli"], glue_dir,
                                 str(tmp_path)), tokenizer)
  out = capsys.readouterr().out
  assert code == 0
  with open(tmp_path / "data_report.json", encoding="utf-8") as f:
    rows = {(r["task"], r["split"]): r for r in json.load(f)}
  assert rows[("rte", "train")]["count"] == 2490
  assert rows[("rte", "train")]["status"] == "ok"
  assert rows[("mrpc", "dev")]["count"] == 408
  assert 10 < rows[("rte", "dev")]["truncated_pct"] < 15  # long premises
  assert rows[("mrpc", "train")]["truncated_pct"] == 0
  # A task absent here is listed with its official count, not an error.
  assert rows[("qnli", "train")]["status"] == "missing"
  assert "104743" in out and "missing: task folder" in out
  # The same table as printed, for people reading the model_dir.
  table = (tmp_path / "data_report.txt").read_text(encoding="utf-8")
  assert table.splitlines()[0] in out


def test_malformed_file_exits_non_zero(glue_dir, tokenizer, tmp_path,
                                       capsys):
  dst = tmp_path / "RTE"
  shutil.copytree(os.path.join(glue_dir, "RTE"), dst)
  os.chmod(dst, 0o755)
  path = dst / "dev.tsv"
  os.chmod(path, 0o644)
  lines = path.read_text(encoding="utf-8").split("\n")
  lines[9] = lines[9] + "\tstray"
  path.write_text("\n".join(lines), encoding="utf-8")
  code = inspect.inspect(_config(["rte"], str(tmp_path)), tokenizer)
  out = capsys.readouterr().out
  assert code == 1
  assert "dev.tsv:10: 5 columns, expected 4" in out
