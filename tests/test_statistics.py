"""Significance tests of the reports: known answers, scipy agreement, speed.

Pure numpy/scipy; seconds."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bam_tf.evaluation import metrics
from bam_tf.tasks.glue import GLUE_TASKS
from bam_tf_experiments import statistics as st


# ------------------------------------------------------------ Holm

def test_holm_textbook_example():
  # Sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> max(.06,.04)=.06.
  p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
  adjusted, reject = st.holm_bonferroni(p, alpha=0.05)
  assert list(adjusted) == ["a", "b", "c", "d"]
  np.testing.assert_allclose([adjusted[k] for k in "abcd"],
                             [0.03, 0.06, 0.06, 0.02])
  assert [reject[k] for k in "abcd"] == [True, False, False, True]


def test_holm_capped_monotone_and_strict():
  adjusted, reject = st.holm_bonferroni({0: 0.5, 1: 0.6, 2: 0.001})
  assert adjusted == {0: 1.0, 1: 1.0, 2: pytest.approx(0.003)}
  assert reject == {0: False, 1: False, 2: True}
  # Exactly alpha after correction is not "p < 0.05".
  _, reject = st.holm_bonferroni({"x": 0.025, "y": 0.5}, alpha=0.05)
  assert reject == {"x": False, "y": False}
  assert st.holm_bonferroni({}) == ({}, {})
  with pytest.raises(st.StatisticsError):
    st.holm_bonferroni({"x": 1.5})


# ---------------------------------------------------- Mann-Whitney

def test_mann_whitney_hand_example():
  # Every B beats every A: U = 3*3 = 9; exact P(U >= 9) = 1 / C(6,3) = 0.05.
  r = st.mann_whitney_test([1, 2, 3], [4, 5, 6])
  assert r["u_statistic"] == 9.0
  assert r["p_value"] == pytest.approx(1 / 20)
  # The reverse direction: U = 0, P(U >= 0) = 1.
  r = st.mann_whitney_test([4, 5, 6], [1, 2, 3])
  assert r["u_statistic"] == 0.0 and r["p_value"] == pytest.approx(1.0)


def _u(b, a):
  return sum((x > y) + 0.5 * (x == y) for x in b for y in a)


def _exact_mann_whitney(a, b):
  """Every split of the pooled scores into |a| and |b|, ties kept: the
  one-sided P(U >= u) and the two-sided 2 * min(P(U >= u), P(U <= u))."""
  pooled, u = list(a) + list(b), _u(b, a)
  us = []
  for idx in itertools.combinations(range(len(pooled)), len(b)):
    bb = [pooled[i] for i in idx]
    aa = [pooled[i] for i in range(len(pooled)) if i not in idx]
    us.append(_u(bb, aa))
  us = np.array(us)
  greater, less = np.mean(us >= u - 1e-9), np.mean(us <= u + 1e-9)
  return greater, min(1.0, 2 * min(greater, less))


def test_mann_whitney_is_exact_with_ties_at_table_trial_counts():
  # Stage 2's RTE, Single against Single->Multi: a tie inside B. The normal
  # approximation scipy falls back to on ties says 0.038, below the 0.05
  # that no split of 3 against 3 can go under; the exact answer is 0.05.
  a, b = [59.21, 58.84, 57.40], [62.82, 62.45, 62.45]
  assert stats.mannwhitneyu(b, a, alternative="greater").pvalue < 0.04
  assert st.mann_whitney_test(a, b)["p_value"] == pytest.approx(0.05)
  assert st.mann_whitney_smallest_p(3, 3) == pytest.approx(0.05)
  # Ties across the two sides too, 5 against 5 and 4 against 6: the
  # enumeration above is the reference.
  rng = np.random.default_rng(7)
  for n_a, n_b in [(5, 5), (4, 6), (3, 3)]:
    for _ in range(5):
      a = rng.choice([61.0, 61.5, 62.0, 62.5, 63.0], n_a).tolist()
      b = rng.choice([61.5, 62.0, 62.5, 63.0, 63.5], n_b).tolist()
      greater, two_sided = _exact_mann_whitney(a, b)
      assert st.mann_whitney_test(a, b)["p_value"] == pytest.approx(greater)
      assert st.mann_whitney_test(a, b, "two-sided")["p_value"] == (
          pytest.approx(two_sided))


def test_mann_whitney_matches_scipy():
  # Beyond the exact range (20 against 20), scipy's default: with ties the
  # normal approximation, accurate at this size.
  rng = np.random.default_rng(3)
  a = np.round(rng.normal(80, 1, 20), 1)
  b = np.round(rng.normal(80.7, 1, 20), 1)
  ours = st.mann_whitney_test(a, b)
  ref = stats.mannwhitneyu(b, a, alternative="greater")
  assert ours["u_statistic"] == ref.statistic
  assert ours["p_value"] == pytest.approx(ref.pvalue)
  with pytest.raises(st.StatisticsError):
    st.mann_whitney_test([], [1.0])


# ---------------------------------------------------- batched metrics

@pytest.mark.parametrize("task,metric", [("sst", "accuracy"),
                                         ("mrpc", "f1"), ("cola", "mcc"),
                                         ("sts", "spearman"),
                                         ("sts", "pearson")])
def test_batched_metrics_match_metrics_module(task, metric):
  rng = np.random.default_rng(0)
  spec = GLUE_TASKS[task]
  n = 60
  if spec.is_regression:
    gold = np.round(rng.uniform(0, 5, n), 1)        # ties in gold
    pred = np.round(gold + rng.normal(0, 1, n), 0)  # many ties in preds
  else:
    gold = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.7, gold, 1 - gold)
  idx = rng.integers(0, n, size=(7, n))
  idx[0] = 0  # a constant resample: undefined correlations / MCC -> 0
  scorer = st.batched_metric_for(spec, metric)
  got = scorer(gold[idx], pred[idx])
  want = [metrics.task_metrics(spec, gold[i], pred[i])[metric] for i in idx]
  np.testing.assert_allclose(got, want, atol=1e-9)


def test_headline_metric_names():
  assert st.headline_metric_name(GLUE_TASKS["cola"]) == "mcc"
  assert st.headline_metric_name(GLUE_TASKS["sts"]) == "spearman"
  assert st.headline_metric_name(GLUE_TASKS["mrpc"]) == "accuracy"


# ----------------------------------------------------------- bootstrap

def test_bootstrap_identical_systems_p_is_one():
  rng = np.random.default_rng(1)
  gold = rng.integers(0, 2, 100)
  pred = rng.integers(0, 2, 100)
  for task in ("sst", "cola", "mrpc"):
    r = st.paired_bootstrap_test(GLUE_TASKS[task], gold, pred, pred.copy(),
                                 n_resamples=500)
    assert r["delta"] == 0.0 and r["p_value"] == 1.0
  g = rng.uniform(0, 5, 100)
  p = g + rng.normal(0, 1, 100)
  r = st.paired_bootstrap_test(GLUE_TASKS["sts"], g, p, p.copy(),
                               n_resamples=500)
  assert r["p_value"] == 1.0
  r = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, pred, pred,
                               n_resamples=500, pvalue="shifted")
  assert r["p_value"] == 1.0


def test_bootstrap_better_everywhere_p_is_zero():
  gold = np.array([0, 1] * 50)
  worse, better = 1 - gold, gold.copy()
  for pvalue in st.PVALUE_METHODS:
    r = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, worse, better,
                                 n_resamples=1000, pvalue=pvalue)
    assert r["delta"] == 100.0 and r["p_value"] == 0.0


def test_bootstrap_one_of_n_better_matches_analytic():
  # B fixes k of n examples, same elsewhere: delta* <= 0 exactly when none
  # of the k is drawn in n draws with replacement: ((n - k) / n) ** n.
  for n, k in ((20, 1), (10, 2)):
    gold = np.zeros(n, dtype=int)
    a = np.zeros(n, dtype=int)
    a[:k] = 1
    b = np.zeros(n, dtype=int)
    r = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, a, b,
                                 n_resamples=20000, seed=5)
    want = ((n - k) / n) ** n
    se = math.sqrt(want * (1 - want) / 20000)
    assert abs(r["p_value"] - want) < 5 * se, (n, k, r["p_value"], want)


def test_bootstrap_one_each_way_matches_multinomial():
  # Example 0 favours B, example 1 favours A. With draw counts c0, c1:
  # delta* <= 0 iff c0 <= c1; by symmetry P = (1 + P(c0 == c1)) / 2 with
  # P(c0 == c1) = sum_j n! / (j! j! (n-2j)!) (1/n)^(2j) ((n-2)/n)^(n-2j).
  n = 12
  gold = np.zeros(n, dtype=int)
  a = np.zeros(n, dtype=int)
  b = np.zeros(n, dtype=int)
  a[0], b[1] = 1, 1
  eq = sum(math.factorial(n) / (math.factorial(j) ** 2
                                * math.factorial(n - 2 * j))
           * (1 / n) ** (2 * j) * ((n - 2) / n) ** (n - 2 * j)
           for j in range(n // 2 + 1))
  want = (1 + eq) / 2
  r = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, a, b,
                               n_resamples=20000, seed=2)
  assert r["delta"] == 0.0
  assert abs(r["p_value"] - want) < 5 * math.sqrt(want * (1 - want) / 20000)


def test_bootstrap_shifted_pvalue_definition():
  deltas = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 5.0])
  assert st.bootstrap_pvalue(1.0, deltas, "nonpositive") == 2 / 6
  assert st.bootstrap_pvalue(1.0, deltas, "shifted") == 2 / 6  # > 2
  assert st.bootstrap_pvalue(-1.0, deltas, "shifted") == 1.0
  with pytest.raises(st.StatisticsError):
    st.bootstrap_pvalue(1.0, deltas, "twosided")


def test_bootstrap_is_seeded_and_checks_lengths():
  rng = np.random.default_rng(0)
  gold = rng.integers(0, 2, 50)
  a, b = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
  r1 = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, a, b, 300, seed=7)
  r2 = st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, a, b, 300, seed=7)
  assert r1 == r2
  with pytest.raises(st.StatisticsError):
    st.paired_bootstrap_test(GLUE_TASKS["sst"], gold, a[:-1], b, 10)


def test_bootstrap_chunks_bound_memory_not_results(monkeypatch):
  """Resamples are drawn in chunks of _CHUNK_ELEMENTS indices (10000 x 1500
  at once would hold 120 MB of indices); the chunk size changes nothing.
  Its speed is benchmarks/report_statistics.py's."""
  rng = np.random.default_rng(0)
  n = 300
  gold = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < 0.8, gold, 1 - gold)
  b = np.where(rng.random(n) < 0.8, gold, 1 - gold)
  whole = st.bootstrap_deltas(st.batched_mcc, gold, a, b, 1000, seed=3)
  per_task = [(GLUE_TASKS["cola"], gold, np.stack([a, b]), np.stack([b]))]
  hier_whole = st.hierarchical_deltas(per_task, 1000, seed=3)
  monkeypatch.setattr(st, "_CHUNK_ELEMENTS", 7 * n)  # 7 resamples a chunk
  chunked = st.bootstrap_deltas(st.batched_mcc, gold, a, b, 1000, seed=3)
  assert chunked[0] == whole[0]
  np.testing.assert_array_equal(chunked[1], whole[1])
  hier_chunked = st.hierarchical_deltas(per_task, 1000, seed=3)
  np.testing.assert_array_equal(hier_chunked[1], hier_whole[1])


def test_stratified_average_identical_and_dominant():
  rng = np.random.default_rng(4)
  g1, g2 = rng.integers(0, 2, 40), rng.uniform(0, 5, 30)
  p1, p2 = rng.integers(0, 2, 40), g2 + rng.normal(0, 1, 30)
  same = [(GLUE_TASKS["sst"], g1, p1, p1), (GLUE_TASKS["sts"], g2, p2, p2)]
  assert st.stratified_bootstrap_average_test(same, 300)["p_value"] == 1.0
  better = [(GLUE_TASKS["sst"], g1, 1 - g1, g1),
            (GLUE_TASKS["cola"], g1, 1 - g1, g1)]
  r = st.stratified_bootstrap_average_test(better, 300)
  assert r["p_value"] == 0.0 and r["delta"] == pytest.approx(150.0)


def test_median_trial():
  assert st.median_trial({0: 3.0, 1: 1.0, 2: 2.0}) == 2
  assert st.median_trial({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}) == 1
  assert st.median_trial({5: 7.0}) == 5


# ------------------------------------------------- hierarchical bootstrap

def _flips(gold, wrong):
  """gold with the first `wrong` examples flipped."""
  p = gold.copy()
  p[:wrong] = 1 - p[:wrong]
  return p


@pytest.mark.parametrize("task", ["sst", "cola", "sts"])
def test_hierarchical_without_seed_noise_is_the_paired_bootstrap(task):
  """Identical trials within each method: drawing trials changes nothing,
  so the resampled deltas are the paired bootstrap's on the same examples."""
  rng = np.random.default_rng(3)
  spec = GLUE_TASKS[task]
  if spec.is_regression:
    gold = rng.uniform(0, 5, 200)
    a, b = gold + rng.normal(0, 1.5, 200), gold + rng.normal(0, 1.2, 200)
  else:
    gold = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.7, gold, 1 - gold)
    b = np.where(rng.random(200) < 0.75, gold, 1 - gold)
  obs, deltas = st.hierarchical_deltas(
      [(spec, gold, np.stack([a] * 3), np.stack([b] * 4))], 700, seed=9)
  want_obs, want = st.bootstrap_deltas(st.batched_metric_for(spec), gold, a,
                                       b, 700, st.resample_seed(9, spec.name))
  assert obs == pytest.approx(want_obs)
  np.testing.assert_allclose(deltas, want, atol=1e-9)


def test_hierarchical_sees_seed_noise_the_example_bootstrap_cannot():
  """B's trials are A's, each with 6 more dev examples right, but the
  trials of each method lie 15 accuracy points apart: the median trials'
  paired bootstrap finds B better (p ~ 0.01), the two-level bootstrap does
  not (the trial draw decides: p = P(B's draw mean <= A's) ~ 0.4)."""
  gold = np.array([0, 1] * 200)
  a = np.stack([_flips(gold, w) for w in (140, 80, 20)])  # acc 65, 80, 95
  b = np.stack([_flips(gold, w - 6) for w in (140, 80, 20)])
  spec = GLUE_TASKS["sst"]
  example = st.paired_bootstrap_test(spec, gold, a[1], b[1], 4000, seed=1)
  both = st.hierarchical_bootstrap_test([(spec, gold, a, b)], 4000, seed=1)
  assert example["delta"] == pytest.approx(1.5)
  assert both["delta"] == pytest.approx(1.5)
  assert example["p_value"] < 0.05
  # The trial means of 3 draws from {65, 80, 95} per side: B's exceeds A's
  # by 1.5 plus their difference; P(diff <= -1.5) = P(diff < 0) = (1 -
  # P(tie)) / 2 with P(tie) = sum over the 10 mean values of P(mean)^2.
  counts = {}
  for i in range(3):
    for j in range(3):
      for k in range(3):
        counts[i + j + k] = counts.get(i + j + k, 0) + 1
  tie = sum((c / 27) ** 2 for c in counts.values())
  want = (1 - tie) / 2
  assert abs(both["p_value"] - want) < 0.03, (both["p_value"], want)
  assert (both["n_trials_a"], both["n_trials_b"]) == (3, 3)


def test_hierarchical_average_draws_trials_once_for_all_tasks():
  """A multi-task trial is one model: its tasks rise and fall together.
  B's two trials are +10 and -6 points against A on both tasks (mean +2):
  the trial draw alone gives Avg deltas of +10, +2 or -6 with probabilities
  1/4, 1/2, 1/4 (std sqrt(32) = 5.66); drawing trials per task would give
  4.0. The example draws add a little (measured: 5.86 against 4.33 with
  per-task trial draws)."""
  gold = np.array([0, 1] * 50)
  a = _flips(gold, 30)                                # accuracy 70
  b = np.stack([_flips(gold, 20), _flips(gold, 36)])  # 80, 64
  a_all = np.stack([a, a])
  spec = GLUE_TASKS["sst"]
  obs, deltas = st.hierarchical_deltas(
      [(spec, gold, a_all, b), (GLUE_TASKS["mrpc"], gold, a_all, b)], 8000,
      seed=4)
  assert obs == pytest.approx(2.0)
  assert 5.3 < np.std(deltas) < 6.6, np.std(deltas)
  r = st.hierarchical_bootstrap_test(
      [(spec, gold, a_all, b), (GLUE_TASKS["mrpc"], gold, a_all, b)], 8000,
      seed=4)
  assert r["metric"] == "average" and r["n_examples"] == 200


def test_hierarchical_checks_shapes():
  gold = np.array([0, 1, 0, 1])
  spec = GLUE_TASKS["sst"]
  with pytest.raises(st.StatisticsError, match=r"\[trials, 4\]"):
    st.hierarchical_deltas([(spec, gold, gold, np.stack([gold]))], 10)
  with pytest.raises(st.StatisticsError, match="2 and 1 trials"):
    st.hierarchical_deltas(
        [(spec, gold, np.stack([gold, gold]), np.stack([gold])),
         (spec, gold, np.stack([gold]), np.stack([gold]))], 10)
  with pytest.raises(st.StatisticsError, match="at least one task"):
    st.hierarchical_deltas([], 10)
