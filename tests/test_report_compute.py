"""The report's compute section: per-trial seconds summed over a method's
run dirs, and a distilled run's teachers counted once (synthetic runs with
known seconds; no model is trained)."""

import csv
import json
import os

import pytest

from bam_tf_experiments import report as rp


def _run(path, tasks, seconds, config_extra=None):
  """results.json with trial i trained seconds[i] = (train, eval)."""
  os.makedirs(path, exist_ok=True)
  trials = [{"trial": i, "seed": i + 1, "train_steps": 10 * (i + 1),
             "train_seconds": tr, "eval_seconds": ev,
             "tasks": {t: {"score": 50.0 + i} for t in tasks}}
            for i, (tr, ev) in enumerate(seconds)]
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"config": {"task_names": list(tasks), **(config_extra or {})},
               "trials": trials}, f)
  return path


@pytest.fixture
def runs(tmp_path, monkeypatch):
  # Teacher dirs are recorded relative to where the student ran.
  monkeypatch.chdir(tmp_path)
  cola = _run("runs/single_cola", ["cola"], [(100, 10), (300, 10), (200, 10)])
  rte = _run("runs/single_rte", ["rte"], [(50, 5), (70, 5), (60, 5)])
  student = _run(
      "runs/student", ["cola", "rte"], [(1000, 20), (1200, 20)],
      {"teacher_dirs": {"cola": [cola], "rte": [rte]}, "teacher_trial": 1})
  return {"Single": [cola, rte], "Student": [student]}


def test_costs_per_trial_and_teachers_once(runs, tmp_path):
  out = str(tmp_path / "rep")
  report = rp.build_report(runs, ["Single"], out_dir=out,
                           test="mannwhitney", plots=False)
  single, student = report["compute"]["Single"], report["compute"]["Student"]
  # Single: trial i = cola trial i + rte trial i, train + eval.
  assert single["trial_seconds"] == {"0": 165.0, "1": 385.0, "2": 275.0}
  assert single["median_trial_seconds"] == 275.0
  assert single["teachers"] == [] and single["one_model_seconds"] == 275.0
  assert single["all_trials_seconds"] == 825.0
  # Student: its teachers' trial 1 (--teacher_trial), counted once.
  assert [(t["path"], t["trial"]) for t in student["teachers"]] == [
      ("runs/single_cola", 1), ("runs/single_rte", 1)]
  assert student["teacher_seconds"] == 310.0 + 75.0
  assert student["median_trial_seconds"] == 1120.0  # median of 1020, 1220
  assert student["one_model_seconds"] == 1120.0 + 385.0
  assert student["all_trials_seconds"] == 1020 + 1220 + 385.0

  md = open(os.path.join(out, "table.md")).read()
  assert "| Student | 2 | 18m40s | 6m25s | 25m05s | 43m45s |" in md
  assert "| Student (teacher) | runs/single_cola | 1 | 2 | 20 | 5m00s |" in md
  with open(os.path.join(out, "compute.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 + 3 + 2 + 2  # Single trials, student, teachers
  teacher = [r for r in rows if r["role"] == "teacher"]
  assert [float(r["train_seconds"]) for r in teacher] == [300.0, 70.0]
  assert json.load(open(os.path.join(out, "report.json")))["compute"][
      "Student"]["teacher_seconds"] == 385.0


def test_missing_teacher_and_seconds_are_noted_not_invented(runs, tmp_path):
  os.remove(os.path.join(runs["Single"][1], "results.json"))
  with open(os.path.join(runs["Single"][0], "results.json"), "a") as f:
    f.write("}")  # cut short / corrupted: also noted, not a crash
  old = _run("runs/old", ["sts"], [(None, None)])  # no timings recorded
  report = rp.build_report({"Student": runs["Student"], "Old": [old]},
                           test="mannwhitney", plots=False)
  student = report["compute"]["Student"]
  # Unknown, not too small: no from-scratch figure without the teachers.
  assert student["teachers"] == [] and student["teacher_seconds"] is None
  assert student["median_trial_seconds"] == 1120.0
  assert student["one_model_seconds"] is None
  assert student["all_trials_seconds"] is None
  assert "| Student | 2 | 18m40s | - | - | - |" in report["markdown"]
  for path in ("runs/single_cola", "runs/single_rte"):
    assert any(f"teacher {path} trial 1" in n and "left out" in n
               for n in report["notes"])
  assert report["compute"]["Old"]["median_trial_seconds"] is None
  assert "| Old | 1 | - | - | - | - |" in report["markdown"]


def test_all_trials_is_unknown_when_a_trial_was_not_timed(tmp_path):
  """Two of three trials timed: the sum of the two is not the cost of all
  three (the table shows 3 trials)."""
  run = _run(str(tmp_path / "multi"), ["rte"],
             [(100, 10), (None, None), (120, 10)])
  c = rp.build_report({"Multi": [run]}, test="mannwhitney",
                      plots=False)["compute"]["Multi"]
  assert c["trial_seconds"] == {"0": 110.0, "1": None, "2": 130.0}
  assert c["median_trial_seconds"] == 120.0  # of the timed ones
  assert c["all_trials_seconds"] is None
