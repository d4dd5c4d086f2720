"""Metrics against independent computations and worked examples."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sklearn_metrics

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


# ------------------------------------------- every metric against sklearn


def _task(num_labels, metric="accuracy", positive=None):
  from bam_tf.tasks import registry  # pylint: disable=g-import-not-at-top
  labels = [f"l{i}" for i in range(num_labels)]
  metrics_list = ["accuracy", "macro_f1", "mcc"] + (
      ["f1"] if num_labels == 2 else [])
  decl = {"name": "t", "kind": "classification", "label_list": labels,
          "metric": metric, "metrics": metrics_list,
          "splits": {s: {"file": f"{s}.tsv", "text_a_col": 0,
                         "label_col": 1} for s in ("train", "dev")}}
  if positive is not None:
    decl["positive_label"] = labels[positive]
  return registry.custom_task_from_dict(decl, "test")


def _cases(num_labels, rng):
  """(gold, predicted) label indices: random, mostly right, a constant
  predictor, one class never predicted, one class never gold, all right."""
  n = int(rng.integers(5, 120))
  gold = rng.integers(0, num_labels, n)
  yield gold, rng.integers(0, num_labels, n)
  yield gold, np.where(rng.random(n) < 0.7, gold, rng.integers(0,
                                                               num_labels, n))
  yield gold, np.full(n, int(rng.integers(0, num_labels)))
  never = int(rng.integers(0, num_labels))
  pred = rng.integers(0, num_labels, n)
  yield gold, np.where(pred == never, (never + 1) % num_labels, pred)
  yield np.where(gold == never, (never + 1) % num_labels, gold), pred
  yield gold, gold.copy()


@pytest.mark.parametrize("num_labels", [2, 3, 5])
def test_classification_metrics_match_sklearn(num_labels):
  rng = np.random.default_rng(num_labels)
  task = _task(num_labels)
  checked = 0
  for _ in range(30):
    for gold, pred in _cases(num_labels, rng):
      got = metrics.task_metrics(task, gold, pred)
      every = list(range(num_labels))
      np.testing.assert_allclose(
          got["accuracy"], 100 * sklearn_metrics.accuracy_score(gold, pred),
          atol=1e-9)
      np.testing.assert_allclose(
          got["mcc"], 100 * sklearn_metrics.matthews_corrcoef(gold, pred),
          atol=1e-9, err_msg=f"{gold} {pred}")
      np.testing.assert_allclose(
          got["macro_f1"], 100 * sklearn_metrics.f1_score(
              gold, pred, average="macro", zero_division=0), atol=1e-9)
      if num_labels == 2:
        np.testing.assert_allclose(
            got["f1"], 100 * sklearn_metrics.f1_score(
                gold, pred, labels=every, pos_label=1, average="binary",
                zero_division=0), atol=1e-9)
      checked += 1
  assert checked == 180


@pytest.mark.parametrize("positive", [0, 1])
def test_binary_f1_of_the_declared_positive_label(positive):
  rng = np.random.default_rng(7)
  task = _task(2, metric="f1", positive=positive)
  assert task.positive_index == positive
  for gold, pred in _cases(2, rng):
    got = metrics.task_metrics(task, gold, pred)
    want = 100 * sklearn_metrics.f1_score(gold, pred, pos_label=positive,
                                          zero_division=0)
    np.testing.assert_allclose(got["f1"], want, atol=1e-9)
    assert got["score"] == got["f1"]


def test_the_issue_examples():
  # A user task declaring F1: 87.5 accuracy, 66.7 F1 (one of two positives
  # found, nothing else wrong).
  task = _task(2, metric="f1")
  gold = [0, 0, 0, 0, 0, 0, 1, 1]
  pred = [0, 0, 0, 0, 0, 0, 1, 0]
  got = metrics.task_metrics(task, gold, pred)
  assert got["accuracy"] == pytest.approx(87.5)
  assert got["score"] == got["f1"] == pytest.approx(200 / 3)
  # Three labels: the multi-class MCC, not a binary one of label 1.
  gold = [0, 0, 1, 1, 2, 2]
  pred = [0, 1, 1, 2, 2, 0]
  want = 100 * sklearn_metrics.matthews_corrcoef(gold, pred)
  assert metrics.task_metrics(_task(3), gold, pred)["mcc"] == pytest.approx(
      want)
  assert want == pytest.approx(25.0)


def test_correlations_match_scipy_with_ties_and_constants():
  rng = np.random.default_rng(3)
  sts = glue.GLUE_TASKS["sts"]
  for _ in range(50):
    n = int(rng.integers(3, 200))
    gold = np.round(rng.uniform(0, 5, n), 1)          # ties in gold
    pred = np.round(gold + rng.normal(0, 1.5, n), 0)  # many ties in preds
    if np.std(pred) == 0:
      continue
    got = metrics.task_metrics(sts, gold, pred)
    np.testing.assert_allclose(got["pearson"],
                               100 * stats.pearsonr(gold, pred)[0], atol=1e-9)
    np.testing.assert_allclose(got["spearman"],
                               100 * stats.spearmanr(gold, pred)[0],
                               atol=1e-9)
  # A constant predictor has no correlation (scipy: nan); scored 0.
  got = metrics.task_metrics(sts, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
  assert got["pearson"] == got["spearman"] == 0.0
