"""bam_tf_experiments.reproduce: the trial-major plan, skipping of finished
trials, its errors and lock, and a real two-method comparison at --debug
size that runs, logs its stages, reports, does nothing when rerun, and
trains a trial whose dev predictions were lost again, exactly."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bam_tf.common import lock
from bam_tf.outputs import results as results_lib
from bam_tf_experiments import report
from bam_tf_experiments import reproduce
from conftest import REPO_ROOT


def _flagfile(path, *lines):
  path.write_text("# a comment\n" + "\n".join(lines) + "\n")
  return str(path)


def _finish_trials(model_dir, n):
  for t in range(n):
    results_lib.record_trial(str(model_dir), {"task_names": ["rte"]}, {
        "trial": t, "seed": t + 1, "tasks": {"rte": {"score": 50.0 + t}},
        "averages": {}})


def test_plan_is_trial_major_skips_finished_and_expands_nested(tmp_path):
  base = _flagfile(tmp_path / "base.cfg", f"--model_dir={tmp_path}/base_dir",
                   "--task_names=rte")
  a = _flagfile(tmp_path / "a.cfg", f"--flagfile={base}",
                f"--model_dir={tmp_path}/a")  # later line wins, as in absl
  b = _flagfile(tmp_path / "b.cfg", f"--flagfile={base}")  # inherits
  methods = reproduce.parse_methods(f"Single:{a}+{b}, Both:{b}")
  assert methods == [("Single", [a, b]), ("Both", [b])]
  stages = reproduce.plan_stages(methods, trials=3)
  # b is shared by two methods: one stage per trial, owned by both.
  assert [(os.path.basename(s.flagfile), s.trials) for s in stages] == [
      ("a.cfg", 1), ("b.cfg", 1), ("a.cfg", 2), ("b.cfg", 2),
      ("a.cfg", 3), ("b.cfg", 3)]
  assert stages[1].methods == ("Single", "Both")
  assert stages[0].model_dir == f"{tmp_path}/a"
  assert stages[1].model_dir == f"{tmp_path}/base_dir"
  # --stage_flags overrides the flagfile's run directory.
  assert reproduce.model_dir_of(a, ["--model_dir=elsewhere"]) == "elsewhere"

  _finish_trials(tmp_path / "a", 2)
  _finish_trials(tmp_path / "base_dir", 1)
  done = [reproduce.is_done(s) for s in stages]
  assert done == [True, True, True, False, False, False]
  # A gap (trial 1 finished, trial 0 not) is not "2 trials done".
  results_lib.record_trial(str(tmp_path / "gap"), {"task_names": ["rte"]}, {
      "trial": 1, "seed": 2, "tasks": {"rte": {"score": 1.0}},
      "averages": {}})
  gap = reproduce.Stage(("x",), a, str(tmp_path / "gap"), 2)
  assert not reproduce.is_done(gap)

  # ETA: mean wall of the flagfile's earlier successful stages.
  log = [{"flagfile": a, "wall_seconds": w, "returncode": rc}
         for w, rc in ((100, 0), (200, 0), (5, 1))]
  assert reproduce._eta(stages[4:], log) == (  # pylint: disable=protected-access
      "this stage ~2m30s, all remaining ~2m30s + 1 stage(s) not yet timed")
  assert reproduce._eta(stages[5:], log) == (  # pylint: disable=protected-access
      "no timings yet for an ETA")
  assert reproduce._eta([stages[5], stages[4]], log) == (  # pylint: disable=protected-access
      "this stage not yet timed, all remaining ~2m30s + 1 stage(s) not yet "
      "timed")
  # Before any stage of a flagfile is logged: its run dir's trial seconds.
  results_lib.record_trial(str(tmp_path / "base_dir"), {
      "task_names": ["rte"]}, {"trial": 1, "seed": 2, "tasks": {
          "rte": {"score": 1.0}}, "averages": {}, "train_seconds": 590.0,
          "eval_seconds": 10.0})
  assert reproduce._eta(stages[5:], log) == (  # pylint: disable=protected-access
      "this stage ~10m00s, all remaining ~10m00s")
  # A stage resumed from a checkpoint: its wall is the last segment only,
  # its trial's train + eval seconds count every segment.
  log.append({"flagfile": a, "wall_seconds": 60, "returncode": 0,
              "train_seconds": 1140.0, "eval_seconds": 60.0})
  assert reproduce._eta(stages[4:5], log) == (  # pylint: disable=protected-access
      "this stage ~8m20s, all remaining ~8m20s")


def test_retrain_plan_covers_finished_trials_without_predictions(tmp_path):
  a = _flagfile(tmp_path / "a.cfg", f"--model_dir={tmp_path}/a")
  b = _flagfile(tmp_path / "b.cfg", f"--model_dir={tmp_path}/b")
  stages = reproduce.plan_stages([("A", [a]), ("B", [b])], trials=2)
  _finish_trials(tmp_path / "a", 3)  # trial 2 is beyond the plan
  _finish_trials(tmp_path / "b", 1)  # b's trial 1 is not finished
  pred = tmp_path / "a" / "trial_1" / "predictions" / "rte_dev.npz"
  pred.parent.mkdir(parents=True)
  np.savez(pred, eid=np.arange(3), gold=np.zeros(3), prediction=np.ones(3))
  retrains = reproduce.plan_retrains(stages)
  # b's trial 0 is its rte median (the bootstrap reads it): first. a's
  # median (trial 1 of 50, 51, 52) has its predictions; a's trial 0 next.
  assert [(os.path.basename(s.flagfile), s.retrain, s.trials, s.median_of)
          for s in retrains] == [("b.cfg", 0, 2, ("rte",)),
                                 ("a.cfg", 0, 2, ())]
  assert retrains[1].name == "a.cfg trial 1 again"
  assert retrains[1].trial_index == 0 and stages[-1].trial_index == 1
  assert not any(reproduce.is_done(s) for s in retrains)
  (tmp_path / "a" / "trial_0" / "predictions").mkdir(parents=True)
  shutil.copy(pred, tmp_path / "a" / "trial_0" / "predictions")
  assert reproduce.is_done(retrains[1]) and not reproduce.is_done(retrains[0])
  assert [(os.path.basename(s.flagfile), s.retrain)
          for s in reproduce.plan_retrains(stages)] == [("b.cfg", 0)]
  # A retrained trial that came out differently (other code than the
  # original's) is listed with its scores before and after.
  record = {"flagfile": a, "methods": ["A"], "trials": 2, "started": "t",
            "wall_seconds": 60, "returncode": 0, "retrained_trial": 1,
            "scores_before": {"rte": 51.0}, "scores_after": {"rte": 52.5}}
  reproduce.write_stage_log(str(tmp_path / "out"), [record])
  md = (tmp_path / "out" / reproduce.STAGES_MD).read_text()
  assert f"| {a} trial 2 again | A |" in md
  assert f"- {a} trial 2: rte 51.00 -> 52.50" in md


def test_retrain_order_median_trials_first_then_cheapest(tmp_path):
  c = _flagfile(tmp_path / "c.cfg", f"--model_dir={tmp_path}/c")
  for t, (score, seconds) in enumerate(((60.0, 100.0), (50.0, 10.0),
                                        (55.0, 300.0), (40.0, 1.0))):
    results_lib.record_trial(str(tmp_path / "c"), {"task_names": ["rte"]}, {
        "trial": t, "seed": t + 1, "tasks": {"rte": {"score": score}},
        "averages": {}, "train_seconds": seconds, "eval_seconds": 5.0})
  # The report's median of 4 trials is the lower middle one: 50.0, trial 1.
  assert reproduce.median_trials(
      report.RunDir(str(tmp_path / "c"))) == {1: ["rte"]}
  stages = reproduce.plan_stages([("C", [c])], trials=3)
  retrains = reproduce.plan_retrains(stages)
  # Trial 3 is beyond the plan; the median first, then 105 s before 305 s.
  assert [(s.retrain, s.median_of) for s in retrains] == [
      (1, ("rte",)), (0, ()), (2, ())]
  # Among median trials: seconds per task unlocked (a 2-task median trial
  # of 300 s goes before a 1-task one of 200 s).
  m = _flagfile(tmp_path / "m.cfg", f"--model_dir={tmp_path}/m")
  s1 = _flagfile(tmp_path / "s1.cfg", f"--model_dir={tmp_path}/s1")
  results_lib.record_trial(str(tmp_path / "m"), {"task_names": ["rte", "cola"]},
                           {"trial": 0, "seed": 1, "averages": {},
                            "tasks": {"rte": {"score": 1.0},
                                      "cola": {"score": 2.0}},
                            "train_seconds": 300.0})
  results_lib.record_trial(str(tmp_path / "s1"), {"task_names": ["rte"]}, {
      "trial": 0, "seed": 1, "tasks": {"rte": {"score": 1.0}},
      "averages": {}, "train_seconds": 200.0})
  stages = reproduce.plan_stages([("S", [s1]), ("M", [m])], trials=1)
  assert [(os.path.basename(s.flagfile), s.median_of)
          for s in reproduce.plan_retrains(stages)] == [
              ("m.cfg", ("rte", "cola")), ("s1.cfg", ("rte",))]


def test_dry_run_lists_stages_and_runs_nothing(tmp_path, capsys):
  a = _flagfile(tmp_path / "a.cfg", f"--model_dir={tmp_path}/a")
  _finish_trials(tmp_path / "a", 1)
  rc = reproduce.main([f"--methods=M:{a}", "--trials=2",
                       f"--out_dir={tmp_path}/out", "--dry_run"])
  out = capsys.readouterr().out
  assert rc == 0
  assert "2 stages (1 methods x 2 trials), 1 already done, 1 to run" in out
  assert "a.cfg trial 1" in out and "a.cfg trial 2" in out
  assert not os.path.exists(tmp_path / "out" / reproduce.STAGES_JSON)


def test_a_smoke_run_left_in_a_stage_dir_is_not_done(tmp_path, glue_dir,
                                                   capsys):
  """`run_classifier.py --flagfile=a.cfg --debug --max_train_steps=1` left
  finished trials in a.cfg's run dir: they are not the stage's (its run
  would be refused as another configuration), so the dry run says blocked,
  not done, and the driver stops before any stage, naming the settings."""
  from bam_tf import configure  # pylint: disable=g-import-not-at-top
  a = _flagfile(tmp_path / "a.cfg", "--mode=train", "--task_names=rte",
                f"--data_dir={glue_dir}", f"--model_dir={tmp_path}/a")
  smoke = configure.config_from_args([f"--flagfile={a}", "--debug",
                                      "--max_train_steps=1"])
  os.makedirs(tmp_path / "a")
  configure.save_config(smoke, str(tmp_path / "a" / "config.json"))
  _finish_trials(tmp_path / "a", 1)
  args = [f"--methods=M:{a}", "--trials=1", f"--out_dir={tmp_path}/out"]
  assert reproduce.main(args + ["--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "1 stages (1 methods x 1 trials), 0 already done, 1 to run" in out
  assert re.search(r"a\.cfg trial 1 +blocked", out), out
  why = (f"{tmp_path}/a holds a run with other settings (debug: True there, "
         "False here; max_train_steps: 1 there, 0 here); delete it, or train "
         "it with --overwrite in --stage_flags")
  assert f"blocked: {a}: {why}" in out, out
  assert reproduce.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: flagfile {a}: {why}"], err
  assert not os.path.exists(tmp_path / "out" / reproduce.STAGES_JSON)


@pytest.mark.parametrize("args, message", [
    (["--methods=M:{tmp}/missing.cfg"], "missing.cfg: no such file"),
    (["--methods=M:{tmp}/nodir.cfg"], "nodir.cfg: no --model_dir"),
    (["--methods=M:{tmp}/a.cfg+{tmp}/a2.cfg"], "both write --model_dir"),
    (["--methods=M {tmp}/a.cfg"], "is not NAME:FLAGFILE"),
    (["--methods=M:{tmp}/a.cfg,M:{tmp}/a.cfg"], "given twice"),
    (["--methods=M:{tmp}/a.cfg", "--baselines=Multi"], "'Multi' is not one"),
    (["--methods=M:{tmp}/a.cfg", "--trials=0"], "--trials: 0"),
    (["--trials=1"], "give --preset or --methods"),
    (["--methods=M:{tmp}/a.cfg", "--paired_baseline=M"],
     "--paired_baseline: 'M' must be one of exactly two methods"),
    (["--methods=M:{tmp}/a.cfg", "--log_dir=gs://bucket/logs"],
     "--log_dir: gs://bucket/logs is not on this machine's disk"),
    (["--methods=M:{tmp}/a.cfg", "--log_dir={tmp}/a.cfg"],
     "a.cfg is a file, not a folder"),
    (["--methods=M:{tmp}/a.cfg", "--stage_flags=--flagfile={tmp}/a2.cfg"],
     "--stage_flags: '--flagfile="),
    (["--methods=M:{tmp}/a.cfg", "--stage_flags=--model_dir {tmp}/b"],
     "--stage_flags: '--model_dir': give a stage's run dir as"),
    (["--methods=M:{tmp}/comma.cfg"], "has a ',' or '+'"),
    (["--methods=M:{tmp}/a.cfg", "--out_dir={tmp}/a/report"],
     "a/report is in {tmp}/a.cfg's run dir {tmp}/a; give a folder"),
])
def test_bad_input_names_what_is_wrong(tmp_path, capsys, args, message):
  _flagfile(tmp_path / "a.cfg", f"--model_dir={tmp_path}/a")
  _flagfile(tmp_path / "a2.cfg", f"--model_dir={tmp_path}/a/")
  _flagfile(tmp_path / "nodir.cfg", "--task_names=rte")
  _flagfile(tmp_path / "comma.cfg", f"--model_dir={tmp_path}/a,b")
  args = [a.format(tmp=tmp_path) for a in args]
  rc = reproduce.main([f"--out_dir={tmp_path}/out"] + args + ["--dry_run"])
  assert rc == 2
  err = capsys.readouterr().err
  assert message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1
  assert not os.path.exists(tmp_path / "out")


def test_a_damaged_stage_log_is_named_before_any_stage(tmp_path, capsys):
  flagfile = _flagfile(tmp_path / "a.cfg", f"--model_dir={tmp_path}/run_a")
  _finish_trials(tmp_path / "run_a", 1)
  out = tmp_path / "out"
  out.mkdir()
  for content in ('{"stages": [', "[]", '{"stages": [1]}'):
    (out / reproduce.STAGES_JSON).write_text(content)
    assert reproduce.main([f"--methods=A:{flagfile}", f"--out_dir={out}",
                           "--trials=1"]) == 2
    err = capsys.readouterr().err
    assert f"{out}/stages.json: not a stage log" in err, err
    assert len(err.splitlines()) == 1


def test_lock_refuses_a_live_holder_and_is_free_once_it_is_killed(tmp_path):
  """The --out_dir lock is the model_dir's kind (flock): a second holder is
  refused naming the first's pid, in this process or another, and a holder
  killed with SIGKILL (no cleanup ran) leaves it free; the record it left
  behind is not a lock."""
  out = str(tmp_path / "out")
  path = os.path.join(out, reproduce.LOCK_FILE)
  held = reproduce.out_dir_lock(out).acquire()
  with pytest.raises(lock.FolderInUseError, match=(
      rf"^--out_dir: {re.escape(out)} is in use by another reproduce run "
      rf"\(PID {os.getpid()} on .*\); wait for it to end, or use another "
      "--out_dir$")):
    reproduce.out_dir_lock(out).acquire()
  held.release()
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; from bam_tf_experiments import reproduce; "
       f"reproduce.out_dir_lock({out!r}).acquire(); "
       "print('held', flush=True); time.sleep(120)"],
      stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.FolderInUseError,
                       match=rf"\(PID {holder.pid} on "):
      reproduce.out_dir_lock(out).acquire()
  finally:
    holder.kill()
    holder.wait()
  with open(path) as f:
    assert json.load(f)["pid"] == holder.pid  # what the killed run left
  held = reproduce.out_dir_lock(out).acquire()
  with open(path) as f:
    assert json.load(f)["pid"] == os.getpid()
  held.release()
  with open(path) as f:
    assert f.read() == ""  # emptied, not deleted, on release
  # Taking and releasing the --out_dir lock of a folder whose --model_dir
  # lock this process holds leaves the latter held, and re-entrant.
  model_lock = lock.lock_dir(out)
  reproduce.out_dir_lock(out).acquire().release()
  assert lock.lock_dir(out) is model_lock
  model_lock.release()
  model_lock.release()
  # A lock file in the form reproduce's lock had before (a bare pid) left
  # by a run that is gone is taken over.
  with open(path, "w") as f:
    f.write("12345\n")
  reproduce.out_dir_lock(out).acquire().release()
  # reproduce itself refuses while another holds it, before any stage.
  flagfile = _flagfile(tmp_path / "a.cfg", f"--model_dir={tmp_path}/run_a")
  held = reproduce.out_dir_lock(out).acquire()
  try:
    assert reproduce.main([f"--methods=A:{flagfile}", f"--out_dir={out}",
                           "--trials=1"]) == 2
  finally:
    held.release()
  assert not os.path.exists(f"{tmp_path}/run_a")


def test_two_methods_end_to_end_then_nothing_to_redo(tmp_path, glue_dir,
                                                    capsys):
  """Real run_classifier stages at --debug size (4 processes)."""
  common = ["--task_names=rte", "--debug", "--max_train_steps=2",
            "--train_batch_size=8", "--eval_batch_size=8",
            "--teacher_output_trials=", f"--data_dir={glue_dir}"]
  a = _flagfile(tmp_path / "a.cfg", *common, f"--model_dir={tmp_path}/a")
  b = _flagfile(tmp_path / "b.cfg", *common, "--learning_rate=1e-3",
                f"--model_dir={tmp_path}/b")
  out_dir = str(tmp_path / "report")
  args = [f"--methods=A:{a},B:{b}", "--trials=2", "--baselines=A",
          f"--out_dir={out_dir}", f"--log_dir={tmp_path}/logs",
          "--report_flags=--n_resamples=200 --no_plots",
          "--paired_baseline=A"]
  assert reproduce.main(args) == 0
  printed = capsys.readouterr().out
  assert "stage 4/4: b.cfg trial 2" in printed
  stages = json.load(open(os.path.join(out_dir, reproduce.STAGES_JSON)))
  runs = [(os.path.basename(r["flagfile"]), r["trials"], r["returncode"])
          for r in stages["stages"]]
  assert runs == [("a.cfg", 1, 0), ("b.cfg", 1, 0), ("a.cfg", 2, 0),
                  ("b.cfg", 2, 0)]
  for r in stages["stages"]:
    assert r["wall_seconds"] > r["train_seconds"] > 0
    assert r["eval_seconds"] > 0
  md = open(os.path.join(out_dir, reproduce.STAGES_MD)).read()
  assert md.count("| 0 |") == 4
  # Each stage's output went to its flagfile's log, trial by trial.
  log_a = open(tmp_path / "logs" / "a.log").read()
  assert log_a.count("Trial 1 (seed") == 1 and "Trial 0 already" in log_a
  for d in ("a", "b"):
    trials = results_lib.load(str(tmp_path / d))["trials"]
    assert [t["trial"] for t in trials] == [0, 1]
  # The report covers both methods, 2 trials each, with the runs' scores,
  # and compares B with the baseline A.
  report = json.load(open(os.path.join(out_dir, "report.json")))
  assert os.path.exists(os.path.join(out_dir, "table.md"))
  for name, d in (("A", "a"), ("B", "b")):
    scores = {str(t["trial"]): t["tasks"]["rte"]["score"]
              for t in results_lib.load(str(tmp_path / d))["trials"]}
    assert report["trial_scores"][name]["rte"] == scores
    assert report["stats"][name]["rte"]["n"] == 2
  comps = report["tests"]["bootstrap"]["comparisons"]
  assert {(c["baseline"], c["method"]) for c in comps} == {("A", "B")}
  # Same seeds on both sides: B is also compared with A seed by seed.
  paired = json.load(open(os.path.join(out_dir, "paired.json")))
  per_seed = paired["tasks"][0]["per_seed"]
  seeds = {d: {t["seed"]: t["tasks"]["rte"]["score"]
               for t in results_lib.load(str(tmp_path / d))["trials"]}
           for d in ("a", "b")}
  assert [p["seed"] for p in per_seed] == sorted(seeds["a"]) == sorted(
      seeds["b"])
  for p in per_seed:
    assert p["delta"] == pytest.approx(
        seeds["b"][p["seed"]] - seeds["a"][p["seed"]], abs=1e-6)

  # Rerun: every stage is done, nothing runs, the stage log is unchanged.
  assert reproduce.main(args) == 0
  assert "0 to run" in capsys.readouterr().out
  again = json.load(open(os.path.join(out_dir, reproduce.STAGES_JSON)))
  assert again == stages

  # A's trial 1 loses its dev predictions (a run dir restored from
  # results.json): the report cannot bootstrap it; the retrain stage trains
  # it again with its seed and gets the same predictions and scores.
  pred_dir = tmp_path / "a" / "trial_0" / "predictions"
  with np.load(pred_dir / "rte_dev.npz") as z:
    original = {k: z[k] for k in z.files}
  shutil.rmtree(pred_dir)
  trials_before = results_lib.load(str(tmp_path / "a"))["trials"]
  assert reproduce.main(args + ["--retrain_missing_predictions",
                                "--dry_run"]) == 0
  printed = capsys.readouterr().out
  assert "a.cfg trial 1 again" in printed and "b.cfg trial 1 again" not in (
      printed)
  assert reproduce.main(args + ["--retrain_missing_predictions"]) == 0
  printed = capsys.readouterr().out
  assert "1 finished trial(s) to train again" in printed
  assert "scores changed" not in printed
  with np.load(pred_dir / "rte_dev.npz") as z:
    for k, v in original.items():
      np.testing.assert_array_equal(z[k], v, err_msg=k)
  trials_after = results_lib.load(str(tmp_path / "a"))["trials"]
  assert [t["tasks"] for t in trials_after] == [
      t["tasks"] for t in trials_before]
  record = json.load(open(os.path.join(out_dir, reproduce.STAGES_JSON))
                     )["stages"][-1]
  assert record["retrained_trial"] == 0 and record["returncode"] == 0
  assert record["scores_before"] == record["scores_after"] == {
      "rte": trials_before[0]["tasks"]["rte"]["score"]}
  md = open(os.path.join(out_dir, reproduce.STAGES_MD)).read()
  assert "a.cfg trial 1 again" in md and "scores changed" not in md
  assert reproduce.main(args + ["--retrain_missing_predictions"]) == 0
  assert "0 finished trial(s) to train again" in capsys.readouterr().out


def test_extra_reports_test_their_own_methods_in_their_own_folder(
    tmp_path, capsys):
  """Every stage already done: the driver only reports, the main report over
  every method and each extra one (a preset's Table 4) over its methods."""
  cfgs = {}
  for name in ("a", "b", "c"):
    cfgs[name] = _flagfile(tmp_path / f"{name}.cfg",
                           f"--model_dir={tmp_path}/{name}")
    _finish_trials(tmp_path / name, 2)
  methods = [("A", [cfgs["a"]]), ("B", [cfgs["b"]]), ("C", [cfgs["c"]])]
  flags = ["--test=mannwhitney", "--no_plots"]
  out = tmp_path / "report"
  rc = reproduce.reproduce(
      methods, 2, str(out), ["A"], report_args=flags,
      extra_reports=[
          {"name": "b_vs_c", "methods": ["B", "C"], "baselines": ["C"],
           "report_flags": flags + ["--tested=B"]},
          {"name": "needs_z", "methods": ["B", "Z"], "baselines": ["Z"],
           "report_flags": flags}])
  assert rc == 0
  printed = capsys.readouterr().out
  assert "report needs_z: skipped (no method ['Z'])" in printed
  main = json.load(open(out / "report.json"))
  assert set(main["methods"]) == {"A", "B", "C"}
  assert {(c["method"], c["baseline"]) for c in
          main["tests"]["mannwhitney"]["comparisons"]} == {("B", "A"),
                                                           ("C", "A")}
  extra = json.load(open(out / "b_vs_c" / "report.json"))
  assert set(extra["methods"]) == {"B", "C"}
  comps = extra["tests"]["mannwhitney"]["comparisons"]
  assert {(c["method"], c["baseline"]) for c in comps} == {("B", "C")}
  assert not (out / "needs_z").exists()


def test_small_table1_preset_resolves_to_the_small_flagfiles(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  preset = reproduce.PRESETS["small_table1"]
  stages = reproduce.plan_stages(preset["methods"], trials=3)
  assert len(stages) == 21  # 7 flagfiles x 3 trials
  assert {s.model_dir for s in stages} == {
      f"runs/small_exact/{n}" for n in (
          "single_cola", "single_mrpc", "single_sts", "single_rte", "multi",
          "single_to_multi", "single_to_multi_lambda0")}
  assert set(preset["baselines"]) <= {m for m, _ in preset["methods"]}
  # Table 1's Holm family: Single->Multi against both baselines.
  assert "--tested=Single->Multi" in preset["report_flags"]
  # Table 4 is its own report: Single->Multi against lambda = 0.
  (table4,) = preset["extra_reports"]
  assert table4["baselines"] == ["Single->Multi lambda=0"]
  assert "--tested=Single->Multi" in table4["report_flags"]
  assert set(table4["methods"]) <= {m for m, _ in preset["methods"]}
  # Every test, the seed-aware one among them, in both reports.
  for flags in (preset["report_flags"], table4["report_flags"]):
    args = report.parse_args(["--runs=A:x"] + flags)
    assert report.TEST_GROUPS[args.test] == report.TESTS


def test_small_bucketing_preset_pairs_each_teacher_with_its_bucketed_twin(
    monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  preset = reproduce.PRESETS["small_bucketing"]
  stages = reproduce.plan_stages(preset["methods"], trials=3)
  assert len(stages) == 24  # 8 flagfiles x 3 trials
  assert preset["paired_baseline"] == "Single"  # same seeds, two-sided
  tasks = ("cola", "mrpc", "sts", "rte")
  assert {s.model_dir for s in stages} == (
      {f"runs/small_exact/single_{t}" for t in tasks}
      | {f"runs/small_exact/single_{t}_bucketed" for t in tasks})
  for t in tasks:  # the twins differ in --length_bucketing and model_dir only
    plain = open(f"official_configs/small/single_{t}.cfg").read().split()
    twin = open(f"official_configs/small/single_{t}_bucketed.cfg").read().split()
    flags_of = lambda words: {w for w in words if w.startswith("--")}
    assert flags_of(twin) - flags_of(plain) == {
        "--length_bucketing", f"--model_dir=runs/small_exact/single_{t}_bucketed",
        "--num_trials=3"}
    assert flags_of(plain) - flags_of(twin) == {
        f"--model_dir=runs/small_exact/single_{t}", "--num_trials=5"}
