"""GLUE leaderboard files: one TSV per test set (index, prediction) + a zip.

File names and label strings follow the GLUE server's expectations; STS-B
scores are clipped to [0, 5]; the MNLI head also labels the diagnostic set
(AX.tsv).
"""

import io
import os
import zipfile
from typing import Dict, List, Tuple

import numpy as np

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.tasks.task import TaskSpec

# (task, split) -> leaderboard file name.
SUBMISSION_FILES = {
    ("cola", "test"): "CoLA.tsv", ("sst", "test"): "SST-2.tsv",
    ("mrpc", "test"): "MRPC.tsv", ("sts", "test"): "STS-B.tsv",
    ("qqp", "test"): "QQP.tsv", ("mnli", "test_matched"): "MNLI-m.tsv",
    ("mnli", "test_mismatched"): "MNLI-mm.tsv", ("qnli", "test"): "QNLI.tsv",
    ("rte", "test"): "RTE.tsv", ("wnli", "test"): "WNLI.tsv",
    ("mnli", "diagnostic"): "AX.tsv",
}
ZIP_NAME = "glue_submission.zip"


def test_splits(task: TaskSpec):
  return [split for (name, split) in SUBMISSION_FILES if name == task.name]


def format_predictions(task: TaskSpec, predictions: Dict[str, np.ndarray]
                       ) -> str:
  """index<TAB>prediction lines, in example-id order."""
  order = np.argsort(predictions["eid"])
  eids = predictions["eid"][order]
  pred = predictions["prediction"][order]
  lines = ["index\tprediction"]
  if task.is_regression:
    lo, hi = task.label_range
    lines += [f"{int(i)}\t{float(np.clip(p, lo, hi)):.3f}"
              for i, p in zip(eids, pred)]
  else:
    lines += [f"{int(i)}\t{task.label_list[int(p)]}"
              for i, p in zip(eids, pred)]
  return "\n".join(lines) + "\n"


def check_counts(per_split: List[Tuple[TaskSpec, str, int]]):
  """Refuses, before anything is written, a test split whose row count is
  not the public GLUE release's: the leaderboard rejects such a file (or
  scores rows against the wrong ids). per_split: [(task, split, rows)]."""
  for task, split, n in per_split:
    want = task.official_counts.get(split)
    if n != want:
      raise BamError(
          f"{SUBMISSION_FILES[(task.name, split)]}: the {task.name} {split} "
          f"file has {n} rows, the GLUE leaderboard's has {want}; refusing "
          "to write a submission it would reject")


def write_submission(out_dir: str, per_split: List[Tuple]) -> Dict[str, int]:
  """Writes every file plus the zip. per_split: [(task_spec, split,
  predictions)], each with one prediction per row of the public GLUE test
  file (checked again here)."""
  check_counts([(task, split, len(preds["eid"]))
                for task, split, preds in per_split])
  written, buf = {}, io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
    for task, split, preds in per_split:
      name = SUBMISSION_FILES[(task.name, split)]
      text = format_predictions(task, preds)
      files.write_text_atomic(os.path.join(out_dir, name), text)
      zf.writestr(name, text)
      written[name] = len(preds["eid"])
  files.write_bytes_atomic(os.path.join(out_dir, ZIP_NAME), buf.getvalue())
  return written
