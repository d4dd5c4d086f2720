"""The published tables are what the committed records and code give.

docs/RESULTS.md quotes the reports under docs/results/; each final one is
rebuilt here from the run records committed under runs/ (scores and
per-example dev predictions), with the settings it was written with, and
must match: a changed or lost record, or a change to the statistics that
moves a published number, fails here until the table is written again.
A stage's report written with --first_trials keeps its trials when later
ones land, so it is rebuilt too. (The older *_trial1 / *_trial2 reports
are snapshots written when the runs had fewer trials; they are not
rebuilt.)"""

import json
import os

import pytest

from bam_tf_experiments import paired_trials
from bam_tf_experiments import report as rp
from conftest import REPO_ROOT

# Where the reports are published and the records they are built from.
PUBLISHED = os.path.join(REPO_ROOT, "docs", "results")
RECORDS = os.path.join(REPO_ROOT, "runs")
REPORTS = ["small/table1", "small/table4_lambda0", "small_exact/bucketing",
           "small_exact/table1_stage2", "small_exact/table1_stage3",
           "small_exact/table4_lambda0"]
PAIRED = ["small_exact/bucketing"]
COMPARED = ("method", "baseline", "column", "delta", "p_value", "p_adjusted",
            "significant")


def assert_same(got, want, where="result"):
  """Nested equality; floats to 1e-9 (rebuilt on another BLAS or CPU)."""
  if isinstance(want, dict):
    assert isinstance(got, dict) and sorted(got) == sorted(want), where
    for k in want:
      assert_same(got[k], want[k], f"{where}[{k!r}]")
  elif isinstance(want, list):
    assert isinstance(got, list) and len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want)):
      assert_same(g, w, f"{where}[{i}]")
  elif isinstance(want, float) and not isinstance(got, bool):
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9), where
  else:
    assert got == want, where


def _published(folder, name, monkeypatch):
  """(the published JSON, its settings), run dirs resolving from the root."""
  monkeypatch.chdir(REPO_ROOT)
  with open(os.path.join(PUBLISHED, folder, name)) as f:
    saved = json.load(f)
  return saved, saved["settings"]


def _committed(dirs):
  """The run dirs, checked to be records committed under runs/."""
  dirs = list(dirs)
  for d in dirs:
    assert os.path.abspath(d).startswith(RECORDS + os.sep), d
  return dirs


@pytest.mark.parametrize("folder", REPORTS)
def test_published_report_is_rebuilt_from_the_committed_records(
    folder, monkeypatch):
  saved, s = _published(folder, "report.json", monkeypatch)
  rebuilt = rp.jsonable(rp.build_report(
      {m: _committed(v["dirs"]) for m, v in saved["methods"].items()},
      s["baselines"], test=s["test"], alpha=s["alpha"],
      n_resamples=s["n_resamples"],
      seed=s["seed"], bootstrap_pvalue=s["bootstrap_pvalue"], plots=False,
      tested=s.get("tested"), first_trials=s.get("first_trials")))
  assert_same(rebuilt["trial_scores"], saved["trial_scores"], folder)
  assert_same(rebuilt["cells"], saved["cells"], folder)
  assert sorted(rebuilt["tests"]) == sorted(saved["tests"])  # JSON sorts keys
  for test, res in saved["tests"].items():
    assert_same([{k: c[k] for k in COMPARED}
                 for c in rebuilt["tests"][test]["comparisons"]],
                [{k: c[k] for k in COMPARED} for c in res["comparisons"]],
                f"{folder} {test}")


@pytest.mark.parametrize("folder", PAIRED)
def test_published_paired_comparison_is_rebuilt_from_the_committed_records(
    folder, monkeypatch):
  saved, s = _published(folder, "paired.json", monkeypatch)
  methods = {m: _committed(by_task[t] for t in sorted(by_task))
             for m, by_task in saved["runs"].items()}
  rebuilt = rp.jsonable(paired_trials.build(
      methods, saved["baseline"], alpha=s["alpha"],
      n_resamples=s["n_resamples"], seed=s["seed"],
      first_trials=s.get("first_trials")))
  assert rebuilt["within_noise_everywhere"] == saved[
      "within_noise_everywhere"]
  assert_same(rebuilt["tasks"], saved["tasks"], folder)
