"""GLUE leaderboard files: names, label strings, clipping, counts, zip."""

import zipfile

import numpy as np
import pytest

from bam_tf.common.errors import BamError
from bam_tf.outputs import glue_submission
from bam_tf.tasks import glue
from bam_tf.tasks import readers


def test_files_and_zip(tmp_path, glue_dir):
  rte, sts = glue.GLUE_TASKS["rte"], glue.GLUE_TASKS["sts"]
  n_rte = len(readers.read_examples(rte, glue_dir, "test"))
  n_sts = len(readers.read_examples(sts, glue_dir, "test"))
  rng = np.random.default_rng(0)
  rte_pred = {"eid": rng.permutation(n_rte),
              "prediction": rng.integers(0, 2, n_rte)}
  sts_pred = {"eid": np.arange(n_sts),
              "prediction": rng.uniform(-1, 6, n_sts)}
  written = glue_submission.write_submission(
      str(tmp_path), [(rte, "test", rte_pred), (sts, "test", sts_pred)])
  assert written == {"RTE.tsv": 3000, "STS-B.tsv": 1379}
  lines = (tmp_path / "RTE.tsv").read_text().splitlines()
  assert lines[0] == "index\tprediction" and len(lines) == 3001
  first = int(np.where(rte_pred["eid"] == 0)[0][0])
  assert lines[1] == f"0\t{rte.label_list[rte_pred['prediction'][first]]}"
  scores = [float(l.split("\t")[1]) for l in
            (tmp_path / "STS-B.tsv").read_text().splitlines()[1:]]
  assert min(scores) == 0.0 and max(scores) == 5.0
  with zipfile.ZipFile(tmp_path / "glue_submission.zip") as zf:
    assert sorted(zf.namelist()) == ["RTE.tsv", "STS-B.tsv"]
    assert zf.read("RTE.tsv").decode() == (tmp_path / "RTE.tsv").read_text()


def test_a_count_other_than_the_leaderboards_is_refused(tmp_path, glue_dir):
  """The real test files have the public release's rows; a file one row
  short (or a --debug run's first 50 rows) would be rejected, or scored
  against the wrong ids: refused before anything is written."""
  rte, sts = glue.GLUE_TASKS["rte"], glue.GLUE_TASKS["sts"]
  real = [(t, "test", len(readers.read_examples(t, glue_dir, "test")))
          for t in (rte, sts)]
  glue_submission.check_counts(real)
  with pytest.raises(BamError, match=r"^STS-B.tsv: the sts test file has "
                     r"1378 rows, the GLUE leaderboard's has 1379; refusing "
                     r"to write a submission it would reject$"):
    glue_submission.check_counts(real[:1] + [(sts, "test", 1378)])
  with pytest.raises(BamError, match=r"^RTE.tsv: the rte test file has 50 "
                     r"rows, the GLUE leaderboard's has 3000"):
    glue_submission.write_submission(
        str(tmp_path), [(rte, "test", {"eid": np.arange(50),
                                       "prediction": np.zeros(50, int)})])
  assert list(tmp_path.iterdir()) == []


def test_every_glue_test_split_has_a_file():
  for name, task in glue.GLUE_TASKS.items():
    for split in task.splits:
      if split.startswith("test") or split == "diagnostic":
        assert (name, split) in glue_submission.SUBMISSION_FILES
        # ... and the public release's row count, which predict checks.
        assert task.official_counts[split] > 0, (name, split)
