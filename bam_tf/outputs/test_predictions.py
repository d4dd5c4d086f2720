"""Test-split predictions of any task as TSV: one row per example with its
id, the predicted label (or value) and, for classification, every class
probability, for users whose tasks have no leaderboard format.

Which splits: a GLUE task's leaderboard splits (glue_submission); a user
task's every declared split other than train and dev.
"""

import os
from typing import Dict, List, Tuple

import numpy as np

from bam_tf.common import files
from bam_tf.outputs import glue_submission
from bam_tf.tasks import glue
from bam_tf.tasks.task import TaskSpec


def prediction_splits(task: TaskSpec) -> List[str]:
  if task.name in glue.GLUE_TASKS:
    return glue_submission.test_splits(task)
  return [s for s in task.splits if s not in ("train", task.dev_split)]


def file_name(task: TaskSpec, split: str) -> str:
  return f"{task.name}_{split}.tsv"


def format_rows(task: TaskSpec, predictions: Dict[str, np.ndarray]) -> str:
  """id<TAB>prediction[<TAB>prob_<label>...] lines in example-id order.
  The id is the example's row number in its file (after the header), the
  GLUE index; probabilities have 6 decimals, values 4."""
  order = np.argsort(predictions["eid"], kind="stable")
  eids = predictions["eid"][order]
  pred = predictions["prediction"][order]
  if task.is_regression:
    lines = ["id\tprediction"]
    lines += [f"{int(i)}\t{float(p):.4f}" for i, p in zip(eids, pred)]
  else:
    probs = predictions["probabilities"][order]
    lines = ["\t".join(["id", "prediction"] +
                       [f"prob_{label}" for label in task.label_list])]
    lines += ["\t".join([str(int(i)), task.label_list[int(p)]] +
                        [f"{float(x):.6f}" for x in row])
              for i, p, row in zip(eids, pred, probs)]
  return "\n".join(lines) + "\n"


def write(out_dir: str, per_split: List[Tuple]) -> Dict[str, int]:
  """per_split: [(task_spec, split, predictions)]; {file name: rows}."""
  written = {}
  for task, split, preds in per_split:
    name = file_name(task, split)
    files.write_text_atomic(os.path.join(out_dir, name),
                            format_rows(task, preds))
    written[name] = len(preds["eid"])
  return written
