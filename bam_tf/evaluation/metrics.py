"""Dev-set metrics of any task, and the two averages the paper and GLUE report.

Scores are x100. Every classification metric comes from one confusion
matrix over the task's declared labels, so binary and multi-class tasks
share the code:
  * accuracy;
  * f1: binary F1 of the task's positive label (default the second label,
    "1" in GLUE's MRPC and QQP); the original's F1 counted gold positives
    from the predictions: not copied;
  * macro_f1: the unweighted mean of per-label F1 over the labels that occur
    in the gold labels or the predictions (scikit-learn's f1_score
    average="macro": a label absent from both says nothing about the model);
  * mcc: Matthews correlation, for more than two labels Gorodkin's (2004)
    R_K generalisation (scikit-learn's matthews_corrcoef); for two labels it
    is the usual binary MCC.
Regression tasks get Pearson and Spearman (scipy). Where a metric is
undefined (a constant predictor's correlation or MCC, F1 with no positive
predicted or gold) it is 0, as scikit-learn's default.

Hand-written rather than scikit-learn: scikit-learn is not a dependency of
bam_tf (tests compare against it), and the bootstrap in bam_tf_experiments
needs the same definitions batched over resamples.
"""

from typing import Dict, Sequence

import numpy as np
from scipy import stats

from bam_tf.tasks import glue
from bam_tf.tasks.task import TaskSpec


def confusion_matrix(labels, preds, num_labels: int) -> np.ndarray:
  """[gold, predicted] counts over label indices 0..num_labels-1."""
  labels = np.asarray(labels, dtype=np.int64)
  preds = np.asarray(preds, dtype=np.int64)
  flat = labels * num_labels + preds
  return np.bincount(flat, minlength=num_labels * num_labels).reshape(
      num_labels, num_labels).astype(np.float64)


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
  labels, preds = np.asarray(labels), np.asarray(preds)
  return 100.0 * float(np.mean(labels == preds)) if labels.size else 0.0


def _per_label_f1(cm: np.ndarray) -> np.ndarray:
  tp = np.diag(cm)
  denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2tp + fp + fn
  return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def f1(labels, preds, positive: int = 1, num_labels: int = 2) -> float:
  """F1 of label index `positive`: 2tp / (2tp + fp + fn)."""
  cm = confusion_matrix(labels, preds, num_labels)
  return 100.0 * float(_per_label_f1(cm)[positive])


def macro_f1(labels, preds, num_labels: int) -> float:
  """Mean F1 over the labels present in gold or predictions."""
  cm = confusion_matrix(labels, preds, num_labels)
  present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
  if not present.any():
    return 0.0
  return 100.0 * float(np.mean(_per_label_f1(cm)[present]))


def mcc(labels, preds, num_labels: int = 2) -> float:
  """Matthews correlation over K labels (Gorodkin's R_K):
  (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2)), with c
  the correct count, s the total, p_k / t_k predicted / gold counts."""
  cm = confusion_matrix(labels, preds, num_labels)
  s, c = cm.sum(), np.trace(cm)
  p, t = cm.sum(axis=0), cm.sum(axis=1)
  denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
  return 100.0 * float((c * s - p @ t) / denom) if denom > 0 else 0.0


def correlations(labels, preds) -> Dict[str, float]:
  labels = np.asarray(labels, dtype=np.float64)
  preds = np.asarray(preds, dtype=np.float64)
  if labels.size < 2 or np.std(preds) == 0 or np.std(labels) == 0:
    return {"pearson": 0.0, "spearman": 0.0}
  return {"pearson": 100.0 * float(stats.pearsonr(labels, preds)[0]),
          "spearman": 100.0 * float(stats.spearmanr(labels, preds)[0])}


def metric_value(task: TaskSpec, name: str, labels, preds) -> float:
  """One metric (a name of task.reported_metrics) of gold label indices /
  values against predicted ones."""
  if name in ("pearson", "spearman"):
    return correlations(labels, preds)[name]
  k = task.num_labels
  if name == "accuracy":
    return accuracy(labels, preds)
  if name == "f1":
    return f1(labels, preds, task.positive_index, k)
  if name == "macro_f1":
    return macro_f1(labels, preds, k)
  if name == "mcc":
    return mcc(labels, preds, k)
  raise ValueError(f"task {task.name}: unknown metric {name!r}")


def task_metrics(task: TaskSpec, labels, preds) -> Dict[str, float]:
  """Every metric the task reports; `score` is its headline metric (the
  paper's number) and `glue_score` GLUE's (the mean of accuracy and F1 for
  MRPC and QQP, of Pearson and Spearman for STS-B)."""
  if task.is_regression:
    m = correlations(labels, preds)
  else:
    m = {name: metric_value(task, name, labels, preds)
         for name in task.reported_metrics}
  m["score"] = m[task.metric]
  glue_names = glue.GLUE_SCORE_METRICS.get(task.name, (task.metric,))
  m["glue_score"] = float(np.mean([m[n] for n in glue_names]))
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
