"""Dev-set metrics of GLUE and the two averages the paper and GLUE report.

Scores are x100. MCC and F1 are computed from the confusion matrix (the
original's F1 counted gold positives from the predictions: not copied).
"""

import math
from typing import Dict, Sequence

import numpy as np
from scipy import stats

from bam_tf.tasks.task import TaskSpec


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
  labels, preds = np.asarray(labels), np.asarray(preds)
  return 100.0 * float(np.mean(labels == preds))


def _confusion(labels, preds):
  labels, preds = np.asarray(labels), np.asarray(preds)
  tp = float(np.sum((preds == 1) & (labels == 1)))
  tn = float(np.sum((preds == 0) & (labels == 0)))
  fp = float(np.sum((preds == 1) & (labels == 0)))
  fn = float(np.sum((preds == 0) & (labels == 1)))
  return tp, tn, fp, fn


def f1(labels, preds) -> float:
  """F1 of the positive class (label index 1): 2tp / (2tp + fp + fn)."""
  tp, _, fp, fn = _confusion(labels, preds)
  denom = 2 * tp + fp + fn
  return 100.0 * (2 * tp / denom if denom else 0.0)


def mcc(labels, preds) -> float:
  """Matthews correlation of a binary task (0 when undefined)."""
  tp, tn, fp, fn = _confusion(labels, preds)
  denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return 100.0 * ((tp * tn - fp * fn) / denom if denom else 0.0)


def correlations(labels, preds) -> Dict[str, float]:
  labels = np.asarray(labels, dtype=np.float64)
  preds = np.asarray(preds, dtype=np.float64)
  if np.std(preds) == 0 or np.std(labels) == 0:
    return {"pearson": 0.0, "spearman": 0.0}
  return {"pearson": 100.0 * float(stats.pearsonr(labels, preds)[0]),
          "spearman": 100.0 * float(stats.spearmanr(labels, preds)[0])}


def task_metrics(task: TaskSpec, labels, preds) -> Dict[str, float]:
  """All metrics of a task; `score` is the paper's headline number."""
  if task.is_regression:
    m = correlations(labels, preds)
    m["score"] = m["spearman"]
    m["glue_score"] = (m["pearson"] + m["spearman"]) / 2
    m["num_examples"] = len(labels)
    return m
  m = {"accuracy": accuracy(labels, preds)}
  if task.name in ("mrpc", "qqp"):
    m["f1"] = f1(labels, preds)
  if task.name == "cola" or task.metric == "mcc":
    m["mcc"] = mcc(labels, preds)
  m["score"] = m.get(task.metric, m["accuracy"])
  m["glue_score"] = ((m["accuracy"] + m["f1"]) / 2 if "f1" in m
                     else m["score"])
  m["num_examples"] = len(labels)
  return m


def averages(tasks: Sequence[TaskSpec],
             per_task: Dict[str, Dict[str, float]]) -> Dict[str, float]:
  """The paper's average (headline scores, WNLI out) and GLUE-style average
  (F1/acc mean for MRPC and QQP, Pearson/Spearman mean for STS-B)."""
  used = [t for t in tasks if t.in_average and t.name in per_task]
  if not used:
    return {}
  return {
      "paper_average": float(np.mean([per_task[t.name]["score"]
                                      for t in used])),
      "glue_average": float(np.mean([per_task[t.name]["glue_score"]
                                     for t in used])),
  }
