"""The seed-by-seed comparison of two recipes on synthetic run dirs.

No model is trained: results.json and the prediction .npz files are written
here and scored with the project's own metric functions, so every delta has
a known value."""

import json
import os

import numpy as np
import pytest

from bam_tf.evaluation import metrics
from bam_tf.tasks.glue import GLUE_TASKS
from bam_tf_experiments import paired_trials as pt
from bam_tf_experiments import report as rp
from bam_tf_experiments import statistics as st

N_EX = 150
SEEDS = (1, 2, 3)
RESAMPLES = 2000


def _gold(task):
  rng = np.random.default_rng({"cola": 1, "sts": 3, "rte": 4}[task])
  if GLUE_TASKS[task].is_regression:
    return np.round(rng.uniform(0, 5, N_EX), 2)
  return rng.integers(0, 2, N_EX)


def _noisy(task, seed, skill=0.0):
  """A seed's predictions: right on ~65% (+skill) of examples."""
  gold = _gold(task)
  rng = np.random.default_rng(1000 * seed + len(task))
  if GLUE_TASKS[task].is_regression:
    return gold + rng.normal(0, max(0.05, 1.2 - 4 * skill), N_EX)
  return np.where(rng.random(N_EX) < 0.65 + skill, gold, 1 - gold)


def _write_run(path, task, preds_by_seed, trial_of_seed=None):
  """One single-task run dir; trial_of_seed reorders trials (pairing must
  follow seeds, not trial numbers)."""
  spec = GLUE_TASKS[task]
  trial_of_seed = trial_of_seed or {s: i for i, s in enumerate(preds_by_seed)}
  trials = []
  for seed, pred in preds_by_seed.items():
    t = trial_of_seed[seed]
    gold = _gold(task)
    eid = np.arange(N_EX, dtype=np.int64)[::-1].copy()  # unsorted on disk
    d = os.path.join(path, f"trial_{t}", "predictions")
    os.makedirs(d, exist_ok=True)
    np.savez(os.path.join(d, f"{task}_{spec.dev_split}.npz"), eid=eid,
             gold=gold[eid], prediction=pred[eid])
    trials.append({"trial": t, "seed": seed,
                   "tasks": {task: metrics.task_metrics(spec, gold, pred)}})
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"config": {"task_names": [task]},
               "trials": sorted(trials, key=lambda x: x["trial"])}, f)
  return path


def _score(task, pred):
  return metrics.task_metrics(GLUE_TASKS[task], _gold(task), pred)["score"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Base: 3 seeds per task. Changed: same on RTE, much better on CoLA,
  much worse on STS-B (a two-sided question), trials in another order."""
  root = tmp_path_factory.mktemp("runs")
  base, changed = [], []
  for task in ("cola", "sts", "rte"):
    preds = {s: _noisy(task, s) for s in SEEDS}
    base.append(_write_run(str(root / f"base_{task}"), task, preds))
    skill = {"cola": 0.3, "sts": -0.25, "rte": 0.0}[task]
    other = ({s: _noisy(task, s) for s in SEEDS} if skill == 0 else
             {s: _noisy(task, s + 10, skill) for s in SEEDS})
    changed.append(_write_run(str(root / f"changed_{task}"), task, other,
                              trial_of_seed={1: 2, 2: 0, 3: 1}))
  return {"Base": base, "Changed": changed}


def _by_task(result):
  return {r["task"]: r for r in result["tasks"]}


def test_pairs_by_seed_and_scores_every_delta_exactly(runs):
  result = pt.build(runs, "Base", n_resamples=RESAMPLES)
  by = _by_task(result)
  assert list(by) == ["cola", "sts", "rte"]  # GLUE order
  for task in by:
    skill = {"cola": 0.3, "sts": -0.25, "rte": 0.0}[task]
    for p in by[task]["per_seed"]:
      s = p["seed"]
      base = _score(task, _noisy(task, s))
      other = _score(task, _noisy(task, s) if skill == 0 else
                     _noisy(task, s + 10, skill))
      assert p["baseline"] == pytest.approx(base)
      assert p["other"] == pytest.approx(other)
      assert p["delta"] == pytest.approx(other - base, abs=1e-9)
    assert [p["seed"] for p in by[task]["per_seed"]] == list(SEEDS)
    # Changed's trials are stored in another order: seed 1 is its trial 2.
    assert by[task]["per_seed"][0]["trials"] == [0, 2]
    assert by[task]["pooled"]["delta"] == pytest.approx(
        np.mean([p["delta"] for p in by[task]["per_seed"]]))
    assert len(by[task]["same_recipe"]) == 3  # seed pairs (1,2) (1,3) (2,3)


def test_differences_either_way_are_found_identical_runs_are_not(runs):
  result = pt.build(runs, "Base", n_resamples=RESAMPLES)
  by = _by_task(result)
  # RTE: identical predictions seed by seed -> every delta 0, p = 1.
  assert all(p["delta"] == 0 and p["p_value"] == 1.0
             for p in by["rte"]["per_seed"])
  assert by["rte"]["pooled"]["p_value"] == 1.0 and by["rte"]["within_noise"]
  # CoLA much better, STS-B much worse: both differ (two-sided), after Holm.
  assert by["cola"]["pooled"]["delta"] > 20
  assert by["sts"]["pooled"]["delta"] < -15
  for task in ("cola", "sts"):
    assert by[task]["pooled"]["significant"] and not by[task]["within_noise"]
    assert by[task]["pooled"]["p_adjusted"] < 0.05
  assert not result["within_noise_everywhere"]
  # 3 against 3 trials: Mann-Whitney's smallest two-sided p is 0.1, reached
  # where the sides are fully separated, never significant.
  assert by["cola"]["mannwhitney"]["p_value"] == pytest.approx(0.1)
  assert by["cola"]["mannwhitney"]["smallest_p"] == pytest.approx(0.1)
  assert not any(r["mannwhitney"]["significant"] for r in result["tasks"])
  md = pt.render_markdown(result)
  assert "not within noise of Base on CoLA, STS-B." in md
  assert "smallest two-sided p is 0.1" in md


def test_pooled_resamples_the_same_examples_for_every_seed(tmp_path):
  """Three copies of one seed pair: the pooled test is that pair's test. With
  independent resamples per seed the mean of three deltas would spread less
  and its p would move."""
  task = "cola"
  a, b = _noisy(task, 1), _noisy(task, 2, 0.05)
  for name, pred in (("a", a), ("b", b)):
    _write_run(str(tmp_path / name), task, {s: pred for s in SEEDS})
  result = pt.build({"A": [str(tmp_path / "a")], "B": [str(tmp_path / "b")]},
                    "A", n_resamples=RESAMPLES)
  r = result["tasks"][0]
  ps = {p["p_value"] for p in r["per_seed"]}
  assert len(ps) == 1 and 0.001 < ps.pop() < 0.999
  assert r["pooled"]["p_value"] == r["per_seed"][0]["p_value"]
  # And that p is the two-sided bootstrap of the one pair, drawn here.
  _, deltas = st.bootstrap_deltas(st.batched_metric_for(GLUE_TASKS[task]),
                                  _gold(task), a, b, RESAMPLES,
                                  st.resample_seed(st.DEFAULT_SEED, task))
  assert r["pooled"]["p_value"] == st.two_sided_bootstrap_pvalue(deltas)


def test_seeds_without_a_twin_are_named_and_feed_only_the_yardstick(
    tmp_path):
  task = "rte"
  _write_run(str(tmp_path / "a"), task, {s: _noisy(task, s) for s in SEEDS})
  _write_run(str(tmp_path / "b"), task, {s: _noisy(task, s + 10)
                                         for s in (2, 3, 7)})
  result = pt.build({"A": [str(tmp_path / "a")], "B": [str(tmp_path / "b")]},
                    "A", n_resamples=RESAMPLES)
  r = result["tasks"][0]
  assert [p["seed"] for p in r["per_seed"]] == [2, 3]
  assert r["mannwhitney"]["n_a"] == r["mannwhitney"]["n_b"] == 2
  assert [c["seeds"] for c in r["same_recipe"]] == [[1, 2], [1, 3], [2, 3]]
  assert r["unpaired_seeds"] == {"A": [1], "B": [7]}
  md = pt.render_markdown(result)
  assert "RTE: A's seed(s) 1 have no twin" in md
  assert "RTE: B's seed(s) 7 have no twin" in md


def test_first_trials_is_the_comparison_of_a_stage(tmp_path):
  """--first_trials=3: seeds 4-5 trained later change neither the yardstick
  nor the unpaired-seed list; the result is the three-seed one."""
  task = "rte"
  seeds = {s: _noisy(task, s) for s in (1, 2, 3, 4, 5)}
  _write_run(str(tmp_path / "five"), task, seeds)
  _write_run(str(tmp_path / "three"), task, {s: seeds[s] for s in SEEDS})
  _write_run(str(tmp_path / "b"), task, {s: _noisy(task, s + 10)
                                         for s in SEEDS})
  b = [str(tmp_path / "b")]
  want = pt.build({"A": [str(tmp_path / "three")], "B": b}, "A",
                  n_resamples=RESAMPLES)
  got = pt.build({"A": [str(tmp_path / "five")], "B": b}, "A",
                 n_resamples=RESAMPLES, first_trials=3)
  assert got["tasks"] == want["tasks"]
  assert got["settings"]["first_trials"] == 3
  assert "Trials 1-3 of every run" in pt.render_markdown(got)
  every = pt.build({"A": [str(tmp_path / "five")], "B": b}, "A",
                   n_resamples=RESAMPLES)["tasks"][0]
  assert len(every["same_recipe"]) == 10  # the five seeds' pairs
  assert every["unpaired_seeds"]["A"] == [4, 5]
  with pytest.raises(rp.ReportError,
                     match=r"--first_trials=4: .*b/results.json has not "
                           r"finished trial\(s\) \[3\]"):
    pt.build({"A": [str(tmp_path / "five")], "B": b}, "A",
             n_resamples=RESAMPLES, first_trials=4)
  with pytest.raises(rp.ReportError, match=r"^--alpha must be a level "
                     r"between 0 and 1 \(e.g. 0.05\), got 5$"):
    pt.build({"A": [str(tmp_path / "five")], "B": b}, "A", alpha=5)


def test_holm_families_are_tasks_and_tasks_by_seeds(runs):
  result = pt.build(runs, "Base", n_resamples=RESAMPLES)
  for family, size in (("pooled", 3), ("mannwhitney", 3), ("per_seed", 9),
                       ("same_recipe", 9)):
    members = []
    for r in result["tasks"]:
      members += r[family] if isinstance(r[family], list) else [r[family]]
    assert len(members) == size
    # Resampled p-values of 0 enter as their two-sided bound, 2 / n.
    floor = 0.0 if family == "mannwhitney" else 2 / RESAMPLES
    adjusted, _ = st.holm_bonferroni(
        {i: max(c["p_value"], floor) for i, c in enumerate(members)})
    assert [c["p_adjusted"] for c in members] == [
        adjusted[i] for i in range(size)]


def test_cli_writes_three_files(runs, tmp_path, capsys):
  spec = ",".join(f"{name}:{'+'.join(dirs)}" for name, dirs in runs.items())
  out = tmp_path / "out"
  assert pt.main([f"--runs={spec}", "--baseline=Base", f"--out_dir={out}",
                  f"--n_resamples={RESAMPLES}"]) == 0
  printed = capsys.readouterr().out
  assert "## Verdict: is Changed within noise of Base?" in printed
  saved = json.load(open(out / "paired.json"))
  assert saved["baseline"] == "Base" and saved["other"] == "Changed"
  assert not saved["within_noise_everywhere"]
  assert (out / "paired.md").read_text() == saved["markdown"]
  rows = (out / "paired.csv").read_text().splitlines()
  # 3 tasks x (3 seeds + pooled + Mann-Whitney + seed-level + 3 seed
  # pairs) + header
  assert len(rows) == 1 + 3 * 9
  assert rows[0].startswith("task,family,seeds,delta,p_value")


def test_bad_input_one_line_each(runs, tmp_path, capsys):
  spec = ",".join(f"{name}:{'+'.join(dirs)}" for name, dirs in runs.items())
  unseeded = tmp_path / "unseeded"
  _write_run(str(unseeded), "rte", {1: _noisy("rte", 1)})
  data = json.load(open(unseeded / "results.json"))
  del data["trials"][0]["seed"]
  json.dump(data, open(unseeded / "results.json", "w"))
  other_seeds = _write_run(str(tmp_path / "s9"), "rte",
                           {9: _noisy("rte", 9)})
  base_rte = [d for d in runs["Base"] if d.endswith("rte")][0]
  # Two trials of one seed (a run resumed with another --seed): one of them
  # would be dropped from every test without a word.
  twice = _write_run(str(tmp_path / "twice"), "rte",
                     {1: _noisy("rte", 1), 2: _noisy("rte", 2)})
  data = json.load(open(os.path.join(twice, "results.json")))
  data["trials"][1]["seed"] = 1
  json.dump(data, open(os.path.join(twice, "results.json"), "w"))
  cases = [
      ([f"--runs={spec}", "--baseline=Nope"], "--baseline: 'Nope'"),
      ([f"--runs={spec},Third:{base_rte}", "--baseline=Base"],
       "give exactly two methods"),
      ([f"--runs=Base:{base_rte},U:{unseeded}", "--baseline=Base"],
       "record no seed"),
      ([f"--runs=Base:{base_rte},N:{other_seeds}", "--baseline=Base"],
       "share no seed"),
      ([f"--runs=Base:{base_rte},T:{twice}", "--baseline=Base"],
       "trials 0 and 1 both record seed 1"),
      ([f"--runs={spec}", "--baseline=Base", f"--out_dir={unseeded}/results.json"],
       "results.json is a file, not a folder"),
  ]
  for argv, message in cases:
    assert pt.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("n_a,n_b", [(3, 3), (5, 5), (2, 4)])
def test_mann_whitney_smallest_p_is_scipys_for_separated_samples(n_a, n_b):
  a = list(range(n_a))
  b = [10 + i for i in range(n_b)]
  for alternative in ("greater", "two-sided"):
    got = st.mann_whitney_test(a, b, alternative)["p_value"]
    assert got == pytest.approx(
        st.mann_whitney_smallest_p(n_a, n_b, alternative))


def test_two_sided_bootstrap_pvalue():
  assert st.two_sided_bootstrap_pvalue(np.zeros(10)) == 1.0
  assert st.two_sided_bootstrap_pvalue(np.arange(1, 11)) == 0.0
  # P*(d <= 0) = 2/10, doubled.
  assert st.two_sided_bootstrap_pvalue(np.arange(-1, 9)) == pytest.approx(0.4)
  # Symmetric in the sign of the deltas.
  d = np.random.default_rng(0).normal(0.3, 1, 500)
  assert st.two_sided_bootstrap_pvalue(d) == st.two_sided_bootstrap_pvalue(-d)


def test_seed_level_bootstrap_sees_seeds_that_disagree(tmp_path):
  """Seeds 1 and 2 of B gain 30 accuracy points on A, seed 3 loses 20:
  pooled over the examples the mean gain (+13.3) is sure (p < 0.001), but
  drawing the three seed pairs again gives two or three seed-3 draws (mean
  -3.3 or -20) with probability 7/27, so the seed-level two-sided p is
  about 2 x 7/27 = 0.52 (example noise moves it a little). With identical
  seeds it is the pooled p exactly."""
  task = "rte"
  gold = _gold(task)

  def flipped(wrong):
    p = gold.copy()
    p[:wrong] = 1 - p[:wrong]
    return p
  _write_run(str(tmp_path / "a"), task, {s: flipped(60) for s in SEEDS})
  _write_run(str(tmp_path / "b"), task, {1: flipped(15), 2: flipped(15),
                                         3: flipped(90)})
  r = pt.build({"A": [str(tmp_path / "a")], "B": [str(tmp_path / "b")]},
               "A", n_resamples=4000)["tasks"][0]
  assert r["pooled"]["delta"] == pytest.approx(40 / 3)
  assert r["pooled"]["p_value"] < 0.001 and r["pooled"]["significant"]
  assert 0.35 < r["seeds"]["p_value"] < 0.7, r["seeds"]["p_value"]
  assert not r["seeds"]["significant"]
  assert r["seeds"]["delta"] == r["pooled"]["delta"]

  _write_run(str(tmp_path / "c"), task, {s: flipped(50) for s in SEEDS})
  same = pt.build({"A": [str(tmp_path / "a")], "C": [str(tmp_path / "c")]},
                  "A", n_resamples=2000)["tasks"][0]
  assert same["seeds"]["p_value"] == same["pooled"]["p_value"]
  assert 0.0 < same["pooled"]["p_value"] < 1.0
