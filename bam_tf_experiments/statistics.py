"""Significance tests of the paper's reporting: paired bootstrap over dev
examples (Table 1), Mann-Whitney U over trial scores (Tables 3-5) and the
Holm-Bonferroni correction for the many comparisons a table makes.

Pure numpy/scipy (no TensorFlow), so reports run anywhere in seconds.

Bootstrap conventions (chosen once, used everywhere):
  * Paired: each resample draws dev example indices with replacement and
    scores *both* systems on the same indices, so example difficulty cancels.
  * Several trials: each system is represented by the per-example
    predictions of its median-scoring trial (`median_trial`). Why: the table
    cell is the median over trials, so the test compares the very runs the
    table describes; pooling trials would pair trial i of A with trial i of B
    although trials of different methods are not matched, and would mix
    between-trial variance into a test about examples (that variance is what
    the Mann-Whitney test over trials is for).
  * Both sources at once: `hierarchical_bootstrap_test` resamples the
    trials of each method and the dev examples in every resample, and
    compares trial means: does the difference survive another draw of seeds
    as well as of examples?
  * p-value: by default the fraction of resamples with
    metric(B) - metric(A) <= 0 ("nonpositive"; B identical to A gives p = 1,
    B better on every example gives p = 0, meaning p < 1 / n_resamples).
    `pvalue="shifted"` gives Berg-Kirkpatrick et al. (2012): the fraction of
    resamples with delta* > 2 * delta (the bootstrap distribution shifted to
    mean 0 under H0); it is 1 when the observed delta <= 0.
"""

import math
import zlib
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from bam_tf.common.errors import BamError
from bam_tf.evaluation import metrics as metrics_lib
from bam_tf.tasks.task import TaskSpec

DEFAULT_RESAMPLES = 10000
DEFAULT_SEED = 0
PVALUE_METHODS = ("nonpositive", "shifted")
# Mann-Whitney is exact over every split of the trials up to this many
# splits (C(16, 8) = 12,870: 8 against 8 trials), ties included.
EXACT_MANN_WHITNEY_ORDERINGS = 20_000
# Resamples gathered at once: bounds memory at ~chunk * n * 8 bytes.
_CHUNK_ELEMENTS = 4_000_000


class StatisticsError(BamError):
  """Inputs a test cannot use (mismatched examples, too few values)."""


# ---------------------------------------------------------------- metrics
# Batched metrics: row r of `labels`/`preds` ([R, n]) is one resample; each
# returns [R] scores x100 that match bam_tf.evaluation.metrics exactly
# (MCC and correlations are 0 where undefined, as there).

def batched_accuracy(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  return 100.0 * np.mean(labels == preds, axis=1)


def _batched_confusion(labels, preds):
  pos_l, pos_p = labels == 1, preds == 1
  neg_l, neg_p = labels == 0, preds == 0
  tp = np.sum(pos_p & pos_l, axis=1, dtype=np.float64)
  tn = np.sum(neg_p & neg_l, axis=1, dtype=np.float64)
  fp = np.sum(pos_p & neg_l, axis=1, dtype=np.float64)
  fn = np.sum(neg_p & pos_l, axis=1, dtype=np.float64)
  return tp, tn, fp, fn


def batched_f1(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  tp, _, fp, fn = _batched_confusion(labels, preds)
  denom = 2 * tp + fp + fn
  return 100.0 * np.divide(2 * tp, denom, out=np.zeros_like(tp),
                           where=denom > 0)


def batched_mcc(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  tp, tn, fp, fn = _batched_confusion(labels, preds)
  denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return 100.0 * np.divide(tp * tn - fp * fn, denom,
                           out=np.zeros_like(tp), where=denom > 0)


def _batched_pearson_raw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  x = x - x.mean(axis=1, keepdims=True)
  y = y - y.mean(axis=1, keepdims=True)
  sxy = np.sum(x * y, axis=1)
  sxx, syy = np.sum(x * x, axis=1), np.sum(y * y, axis=1)
  denom = np.sqrt(sxx * syy)
  # metrics.correlations returns 0 when either side is constant.
  ok = (sxx > 1e-12 * x.shape[1]) & (syy > 1e-12 * x.shape[1]) & (denom > 0)
  return 100.0 * np.divide(sxy, denom, out=np.zeros_like(sxy), where=ok)


def batched_pearson(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  return _batched_pearson_raw(labels.astype(np.float64),
                              preds.astype(np.float64))


def _codes(x: np.ndarray) -> np.ndarray:
  """Order-preserving dense integer codes (Spearman is invariant to them)."""
  return np.unique(np.asarray(x), return_inverse=True)[1].reshape(
      np.shape(x)).astype(np.int64)


def _average_ranks(codes: np.ndarray) -> np.ndarray:
  """Row-wise average ranks (ties share their mean rank) of [R, n] integer
  codes via counting, no per-row sort: rank = #smaller + (#equal + 1) / 2."""
  r = codes.shape[0]
  k = int(codes.max()) + 1 if codes.size else 1
  flat = (codes + (np.arange(r, dtype=np.int64) * k)[:, None]).ravel()
  counts = np.bincount(flat, minlength=r * k).reshape(r, k).astype(np.float64)
  below = np.cumsum(counts, axis=1) - counts
  return np.take_along_axis(below + (counts + 1.0) / 2.0, codes, axis=1)


def _spearman_from_codes(label_codes: np.ndarray, pred_codes: np.ndarray,
                         label_ranks: Optional[np.ndarray] = None
                         ) -> np.ndarray:
  const = ((np.ptp(label_codes, axis=1) == 0)
           | (np.ptp(pred_codes, axis=1) == 0))
  if label_ranks is None:
    label_ranks = _average_ranks(label_codes)
  out = _batched_pearson_raw(label_ranks, _average_ranks(pred_codes))
  out[const] = 0.0
  return out


def _spearman_delta_from_codes(label_codes, codes_a, codes_b):
  """spearman(B) - spearman(A), ranking the shared gold resample once."""
  ranks = _average_ranks(label_codes)
  return (_spearman_from_codes(label_codes, codes_b, ranks)
          - _spearman_from_codes(label_codes, codes_a, ranks))


def batched_spearman(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  """Pearson of average ranks per row (scipy.stats.spearmanr's definition);
  constant rows score 0 as in metrics.correlations. The bootstrap encodes
  values once (`prepare`) and gathers codes, so ranking needs no sort."""
  return _spearman_from_codes(_codes(labels), _codes(preds))


def _spearman_trials_from_codes(label_codes, trial_codes, idx):
  """[R, k] Spearman of k trials' predictions ([k, n] codes) gathered at
  idx [R, n], against the gold resample label_codes [R, n], ranked once."""
  ranks = _average_ranks(label_codes)
  return np.stack([_spearman_from_codes(label_codes, c[idx], ranks)
                   for c in trial_codes], axis=1)


batched_spearman.prepare = _codes
batched_spearman.on_prepared = _spearman_from_codes
batched_spearman.paired_delta = _spearman_delta_from_codes
batched_spearman.trials_on_prepared = _spearman_trials_from_codes


BATCHED_METRICS: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": batched_accuracy, "f1": batched_f1, "mcc": batched_mcc,
    "pearson": batched_pearson, "spearman": batched_spearman,
}


def headline_metric_name(task: TaskSpec) -> str:
  """The metric behind task_metrics(...)["score"]."""
  return task.metric


def _batched_form_applies(task: TaskSpec, name: str) -> bool:
  """The batched F1 and MCC are binary with label index 1 positive."""
  if name == "mcc":
    return task.num_labels == 2
  if name == "f1":
    return task.num_labels == 2 and task.positive_index == 1
  return name in BATCHED_METRICS


def batched_metric_for(task: TaskSpec, metric: Optional[str] = None):
  """[R, n] x [R, n] -> [R] scorer of `metric` (default: the headline one).

  Falls back to looping metrics.metric_value over rows where no batched
  form applies (multi-class MCC, macro-F1, another positive label), so every
  metric works (slowly)."""
  name = metric or headline_metric_name(task)
  if _batched_form_applies(task, name):
    return BATCHED_METRICS[name]

  def looped(labels, preds):
    return np.array([metrics_lib.metric_value(task, name, l, p)
                     for l, p in zip(labels, preds)], dtype=np.float64)
  return looped


# -------------------------------------------------------------- bootstrap

def resample_seed(seed: int, key: str = "") -> int:
  """A stable per-key seed (zlib.crc32, not hash(): that is salted)."""
  return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % 2**32


def resampled_indices(n: int, n_resamples: int, seed: int):
  """Yields (rows, idx): the resample rows of a chunk and their [r, n] dev
  example indices drawn with replacement. One stream per seed, so every
  test drawing with the same seed resamples the same examples; chunked so
  10000 x 1500 never holds more than a few million indices at once."""
  rng = np.random.default_rng(seed)
  chunk = max(1, _CHUNK_ELEMENTS // n)
  for start in range(0, n_resamples, chunk):
    r = min(chunk, n_resamples - start)
    yield slice(start, start + r), rng.integers(0, n, size=(r, n))


def bootstrap_deltas(scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     gold: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                     n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED) -> Tuple[float, np.ndarray]:
  """(observed metric(B) - metric(A), [n_resamples] resampled deltas).

  Both systems are scored on the same resampled indices (paired), drawn by
  `resampled_indices`."""
  gold, pred_a, pred_b = (np.asarray(x) for x in (gold, pred_a, pred_b))
  n = len(gold)
  if n == 0 or len(pred_a) != n or len(pred_b) != n:
    raise StatisticsError(
        f"bootstrap needs equal, non-empty example sets (gold {n}, "
        f"A {len(pred_a)}, B {len(pred_b)})")
  if n_resamples < 1:
    raise StatisticsError(f"n_resamples must be >= 1, got {n_resamples}")
  prepare = getattr(scorer, "prepare", None)
  delta_fn = lambda g, a, b: scorer(g, b) - scorer(g, a)
  if prepare is not None:  # e.g. Spearman: rank codes once, not per resample
    gold, pred_a, pred_b = prepare(gold), prepare(pred_a), prepare(pred_b)
    delta_fn = scorer.paired_delta
    scorer = scorer.on_prepared
  observed = float(scorer(gold[None], pred_b[None])[0]
                   - scorer(gold[None], pred_a[None])[0])
  deltas = np.empty(n_resamples, dtype=np.float64)
  for rows, idx in resampled_indices(n, n_resamples, seed):
    deltas[rows] = delta_fn(gold[idx], pred_a[idx], pred_b[idx])
  return observed, deltas


def bootstrap_pvalue(observed: float, deltas: np.ndarray,
                     pvalue: str = "nonpositive") -> float:
  """p of "B improves over A" from resampled deltas (see module doc)."""
  deltas = np.asarray(deltas)
  if pvalue == "nonpositive":
    return float(np.mean(deltas <= 0))
  if pvalue == "shifted":
    if observed <= 0:
      return 1.0
    return float(np.mean(deltas > 2 * observed))
  raise StatisticsError(f"bootstrap p-value method must be one of "
                        f"{PVALUE_METHODS}, got {pvalue!r}")


def resampling_floor(n_resamples: int, sides: str = "one-sided") -> float:
  """The smallest p above 0 that n_resamples can show (2 / n two-sided).
  A p of 0 means "below this", so a correction multiplies this bound, not
  0: with --n_resamples=100, a 0 over 10 comparisons is p < 0.1, no mark."""
  return (2.0 if sides == "two-sided" else 1.0) / n_resamples


def two_sided_bootstrap_pvalue(deltas: np.ndarray) -> float:
  """p of "B differs from A", either way: twice the smaller tail of the
  resampled deltas around 0, capped at 1 (B identical to A gives 1)."""
  deltas = np.asarray(deltas)
  return float(min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))))


def paired_bootstrap_test(task: TaskSpec, gold, pred_a, pred_b,
                          n_resamples: int = DEFAULT_RESAMPLES,
                          seed: int = DEFAULT_SEED,
                          pvalue: str = "nonpositive",
                          metric: Optional[str] = None) -> Dict:
  """Paired bootstrap test that B beats A on `task`'s metric.

  Returns {"metric", "score_a", "score_b", "delta", "p_value",
  "n_examples", "n_resamples", "seed", "pvalue_method"}."""
  scorer = batched_metric_for(task, metric)
  gold, pred_a, pred_b = (np.asarray(x) for x in (gold, pred_a, pred_b))
  observed, deltas = bootstrap_deltas(scorer, gold, pred_a, pred_b,
                                      n_resamples, seed)
  return {
      "metric": metric or headline_metric_name(task),
      "score_a": float(scorer(gold[None], pred_a[None])[0]),
      "score_b": float(scorer(gold[None], pred_b[None])[0]),
      "delta": observed,
      "p_value": bootstrap_pvalue(observed, deltas, pvalue),
      "n_examples": int(len(gold)), "n_resamples": int(n_resamples),
      "seed": int(seed), "pvalue_method": pvalue,
  }


def stratified_bootstrap_average_test(
    per_task: Sequence[Tuple[TaskSpec, np.ndarray, np.ndarray, np.ndarray]],
    n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    pvalue: str = "nonpositive") -> Dict:
  """Bootstrap test of the average over tasks (the table's Avg column).

  Each task's examples are resampled independently (strata = tasks, each
  with its own seed derived from `seed` and the task name) and the per-task
  deltas are averaged per resample, exactly as the Avg is a mean of task
  scores."""
  if not per_task:
    raise StatisticsError("average test needs at least one task")
  observed, total = 0.0, np.zeros(n_resamples)
  for task, gold, pred_a, pred_b in per_task:
    obs, deltas = bootstrap_deltas(batched_metric_for(task), gold, pred_a,
                                   pred_b, n_resamples,
                                   resample_seed(seed, task.name))
    observed += obs
    total += deltas
  observed /= len(per_task)
  total /= len(per_task)
  return {"metric": "average", "delta": observed,
          "p_value": bootstrap_pvalue(observed, total, pvalue),
          "n_examples": int(sum(len(g) for _, g, _, _ in per_task)),
          "n_resamples": int(n_resamples), "seed": int(seed),
          "pvalue_method": pvalue}


def _trial_scorer(scorer):
  """(prepare or None, f(gold resample [R, n], trials [k, n], idx [R, n])
  -> [R, k] scores), gathering one trial at a time to bound memory."""
  prepare = getattr(scorer, "prepare", None)
  if prepare is not None:  # e.g. Spearman: rank codes once, not per resample
    return prepare, scorer.trials_on_prepared
  return None, lambda g, trials, idx: np.stack(
      [scorer(g, t[idx]) for t in trials], axis=1)


def hierarchical_deltas(
    per_task: Sequence[Tuple[TaskSpec, np.ndarray, np.ndarray, np.ndarray]],
    n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Tuple[float, np.ndarray]:
  """(observed, [n_resamples] resampled) difference of trial means, B - A,
  averaged over tasks, with both sources of noise in every resample.

  per_task: (task, gold [n], A's predictions [k_a, n], B's [k_b, n]), the
  trials in the same order in every task. Each resample draws k_a of A's
  trials and k_b of B's with replacement (once for all tasks, since a
  trial's Avg is one model's, or one seed's, scores), and each task's dev
  examples with replacement (shared by A and B; per task the same
  `resampled_indices` as `bootstrap_deltas` with that task's seed). Hand-written: no
  library resamples two nested levels of paired data."""
  if not per_task:
    raise StatisticsError("hierarchical bootstrap needs at least one task")
  if n_resamples < 1:
    raise StatisticsError(f"n_resamples must be >= 1, got {n_resamples}")
  k_a, k_b = (len(per_task[0][i]) for i in (2, 3))
  trial_rng = np.random.default_rng(resample_seed(seed, "trials"))
  draws_a = trial_rng.integers(0, k_a, size=(n_resamples, k_a))
  draws_b = trial_rng.integers(0, k_b, size=(n_resamples, k_b))
  observed, total = 0.0, np.zeros(n_resamples)
  for task, gold, preds_a, preds_b in per_task:
    gold = np.asarray(gold)
    preds_a, preds_b = np.asarray(preds_a), np.asarray(preds_b)
    n = len(gold)
    if (n == 0 or preds_a.ndim != 2 or preds_b.ndim != 2
        or preds_a.shape != (k_a, n) or preds_b.shape != (k_b, n)):
      raise StatisticsError(
          f"{task.name}: hierarchical bootstrap needs [trials, {n}] "
          f"predictions with {k_a} and {k_b} trials in every task (A "
          f"{preds_a.shape}, B {preds_b.shape})")
    prepare, score = _trial_scorer(batched_metric_for(task))
    if prepare is not None:
      gold = prepare(gold)
      preds_a = np.stack([prepare(p) for p in preds_a])
      preds_b = np.stack([prepare(p) for p in preds_b])
    whole = np.arange(n)[None]
    observed += float(np.mean(score(gold[None], preds_b, whole))
                      - np.mean(score(gold[None], preds_a, whole)))
    for rows, idx in resampled_indices(n, n_resamples,
                                       resample_seed(seed, task.name)):
      g = gold[idx]
      mean_a = np.take_along_axis(score(g, preds_a, idx), draws_a[rows],
                                  axis=1).mean(axis=1)
      mean_b = np.take_along_axis(score(g, preds_b, idx), draws_b[rows],
                                  axis=1).mean(axis=1)
      total[rows] += mean_b - mean_a
  return observed / len(per_task), total / len(per_task)


def hierarchical_bootstrap_test(
    per_task: Sequence[Tuple[TaskSpec, np.ndarray, np.ndarray, np.ndarray]],
    n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    pvalue: str = "nonpositive") -> Dict:
  """Two-level bootstrap test that B's mean over trials beats A's, over
  trials and dev examples at once (one task: a column; several: the Avg).

  The paired bootstrap compares two trials and sees only which dev examples
  were drawn; Mann-Whitney sees only which seeds were drawn, and with 5
  trials a side it needs every trial of B above every trial of A. This one
  asks whether the difference survives both draws. With few trials it is
  slightly optimistic: resampling k trials with replacement shrinks their
  variance by (k - 1) / k."""
  observed, deltas = hierarchical_deltas(per_task, n_resamples, seed)
  return {"metric": (headline_metric_name(per_task[0][0])
                     if len(per_task) == 1 else "average"),
          "delta": observed,
          "p_value": bootstrap_pvalue(observed, deltas, pvalue),
          "n_trials_a": int(len(per_task[0][2])),
          "n_trials_b": int(len(per_task[0][3])),
          "n_examples": int(sum(len(g) for _, g, _, _ in per_task)),
          "n_resamples": int(n_resamples), "seed": int(seed),
          "pvalue_method": pvalue}


def median_trial(scores: Mapping[int, float]) -> int:
  """The trial whose score is the median; with an even count, the lower of
  the two middle trials (deterministic; ties broken by trial number)."""
  if not scores:
    raise StatisticsError("no trials to pick a median trial from")
  ordered = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))
  return ordered[(len(ordered) - 1) // 2][0]


# ----------------------------------------------------------- Mann-Whitney

def mann_whitney_test(scores_a: Sequence[float],
                      scores_b: Sequence[float],
                      alternative: str = "greater") -> Dict:
  """Mann-Whitney U test that B's trial scores exceed A's (alternative
  "greater", one-sided) or differ from them ("two-sided").

  U is B's statistic (pairs (b, a) with b > a, ties count 1/2). Up to
  EXACT_MANN_WHITNEY_ORDERINGS splits of the pooled scores (8 against 8
  trials), p is exact over every split, ties included: scipy's default
  switches to the normal approximation as soon as two scores tie, and at
  the trial counts of a table that is anti-conservative (3 against 3 with
  a tie inside one side gives 0.038, below the 0.05 no split can reach;
  accuracies on a small dev set tie often). Beyond that, and with a single
  trial on a side, scipy's default (exact without ties, else normal)."""
  a = np.asarray(scores_a, dtype=np.float64)
  b = np.asarray(scores_b, dtype=np.float64)
  if len(a) == 0 or len(b) == 0:
    raise StatisticsError(f"Mann-Whitney needs trial scores on both sides "
                          f"(A has {len(a)}, B has {len(b)})")
  if alternative not in ("greater", "two-sided"):
    raise StatisticsError(f"Mann-Whitney alternative must be 'greater' or "
                          f"'two-sided', got {alternative!r}")
  # n_resamples=inf makes scipy enumerate every split: exact, no random
  # draw. scipy's permutation test needs two trials a side; one trial
  # against k can reach no p below 1 / (k + 1) anyway.
  exact = (min(len(a), len(b)) >= 2 and math.comb(len(a) + len(b), len(a))
           <= EXACT_MANN_WHITNEY_ORDERINGS)
  method = stats.PermutationMethod(n_resamples=np.inf) if exact else "auto"
  res = stats.mannwhitneyu(b, a, alternative=alternative, method=method)
  return {"u_statistic": float(res.statistic), "p_value": float(res.pvalue),
          "n_a": int(len(a)), "n_b": int(len(b)),
          "median_a": float(np.median(a)), "median_b": float(np.median(b)),
          "delta": float(np.median(b) - np.median(a)),
          "alternative": alternative}


def mann_whitney_smallest_p(n_a: int, n_b: int,
                            alternative: str = "greater") -> float:
  """The smallest p the exact test can give n_a against n_b trials (one
  ordering of C(n_a + n_b, n_a); ties only raise it): 3 against 3 cannot go
  below 0.05 one-sided, 0.1 two-sided."""
  p = 1.0 / math.comb(n_a + n_b, n_a)
  return min(1.0, 2 * p) if alternative == "two-sided" else p


# -------------------------------------------------------- Holm-Bonferroni

def holm_bonferroni(p_values: Mapping, alpha: float = 0.05
                    ) -> Tuple[Dict, Dict]:
  """Holm's step-down correction of a family of p-values.

  Sorted ascending p_(1..m): adjusted p_(i) = max_{j<=i} min(1,
  (m - j + 1) p_(j)) (monotone, capped at 1). Reject where adjusted
  p < alpha (strict, matching "p < 0.05"). Returns ({key: adjusted},
  {key: reject}) in the input's keys."""
  keys = list(p_values)
  m = len(keys)
  for k in keys:
    p = p_values[k]
    if p is None or not (0.0 <= float(p) <= 1.0) or math.isnan(float(p)):
      raise StatisticsError(f"p-value of {k!r} is not in [0, 1]: {p!r}")
  order = sorted(keys, key=lambda k: float(p_values[k]))
  adjusted, running = {}, 0.0
  for i, k in enumerate(order):
    running = max(running, min(1.0, (m - i) * float(p_values[k])))
    adjusted[k] = running
  adjusted = {k: adjusted[k] for k in keys}
  reject = {k: adjusted[k] < alpha for k in keys}
  return adjusted, reject
