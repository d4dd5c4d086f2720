"""Metrics against independent computations and worked examples."""

import numpy as np
import pytest
from scipy import stats

from bam_tf.evaluation import metrics
from bam_tf.tasks import glue


def test_binary_metrics_worked_example():
  labels = [1, 1, 1, 0, 0, 0, 0, 1]
  preds = [1, 0, 1, 0, 1, 0, 0, 1]
  # tp=3 fn=1 fp=1 tn=3
  assert metrics.accuracy(labels, preds) == pytest.approx(75.0)
  assert metrics.f1(labels, preds) == pytest.approx(100 * 6 / 8)
  assert metrics.mcc(labels, preds) == pytest.approx(100 * (9 - 1) / 16)


def test_f1_counts_gold_positives_from_labels():
  # The original's defect: gold positives counted from predictions. Here all
  # predictions are positive: precision 0.5, recall 1 -> F1 = 2/3.
  assert metrics.f1([1, 0, 1, 0], [1, 1, 1, 1]) == pytest.approx(200 / 3)


def test_mcc_matches_pearson_of_binary_vectors():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 500)
  preds = np.where(rng.random(500) < 0.7, labels, 1 - labels)
  expected = 100 * stats.pearsonr(labels, preds)[0]
  assert metrics.mcc(labels, preds) == pytest.approx(expected, abs=1e-9)


def test_task_metrics_and_averages():
  rng = np.random.default_rng(1)
  gold = rng.uniform(0, 5, 200)
  pred = gold + rng.normal(0, 1, 200)
  sts = metrics.task_metrics(glue.GLUE_TASKS["sts"], gold, pred)
  assert sts["spearman"] == pytest.approx(100 * stats.spearmanr(gold,
                                                                pred)[0])
  assert sts["score"] == sts["spearman"]
  mrpc = metrics.task_metrics(glue.GLUE_TASKS["mrpc"], [1, 0, 1, 1],
                              [1, 0, 0, 1])
  assert mrpc["score"] == 75.0 and mrpc["f1"] == pytest.approx(80.0)
  assert mrpc["glue_score"] == pytest.approx(77.5)
  cola = metrics.task_metrics(glue.GLUE_TASKS["cola"], [1, 0, 1, 0],
                              [1, 0, 1, 0])
  assert cola["score"] == pytest.approx(100.0)
  wnli = metrics.task_metrics(glue.GLUE_TASKS["wnli"], [1, 0], [0, 0])
  tasks = [glue.GLUE_TASKS[n] for n in ("sts", "mrpc", "cola", "wnli")]
  avg = metrics.averages(tasks, {"sts": sts, "mrpc": mrpc, "cola": cola,
                                 "wnli": wnli})
  assert avg["paper_average"] == pytest.approx(
      (sts["spearman"] + 75.0 + 100.0) / 3)
  assert avg["glue_average"] == pytest.approx(
      ((sts["spearman"] + sts["pearson"]) / 2 + 77.5 + 100.0) / 3)
