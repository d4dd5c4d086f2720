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
      str(tmp_path), [(rte, "test", rte_pred), (sts, "test", sts_pred)],
      {("rte", "test"): n_rte, ("sts", "test"): n_sts})
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


def test_count_mismatch_is_refused(tmp_path):
  rte = glue.GLUE_TASKS["rte"]
  with pytest.raises(BamError, match="RTE.tsv: 2 predictions but the rte "
                     "test file has 3000 rows"):
    glue_submission.write_submission(
        str(tmp_path), [(rte, "test", {"eid": np.arange(2),
                                       "prediction": np.zeros(2, int)})],
        {("rte", "test"): 3000})


def test_every_glue_test_split_has_a_file():
  for name, task in glue.GLUE_TASKS.items():
    for split in task.splits:
      if split.startswith("test") or split == "diagnostic":
        assert (name, split) in glue_submission.SUBMISSION_FILES
