"""Runs a whole comparison (e.g. the paper's Table 1) trial by trial, then
reports it.

    python -m bam_tf_experiments.reproduce --preset=small_table1 --trials=3

Each method is one or more flagfiles (a "Single" method joins one flagfile
per task). Stages go trial-major: trial 1 of every flagfile, then trial 2 of
every flagfile, ..., so a machine that stops early leaves every method with
the same number of trials. A stage is `run_classifier.py --flagfile=F
--num_trials=K` in its own process; stages whose K trials are already in
the run's results.json are skipped, and a killed stage resumes from its
checkpoint, so rerunning the same command after a kill (or in the next
session) continues where it stopped. Each stage's wall time, training and
evaluation seconds go to `stages.json` and `stages.md` in --out_dir as it
finishes; when every stage is done the report (bam_tf_experiments.report) is
written to --out_dir (a preset may add reports of some of its methods in
subfolders: small_table1's Table 4), and with --paired_baseline the
seed-by-seed comparison of two recipes (bam_tf_experiments.paired_trials).

With --retrain_missing_predictions, finished trials whose per-example dev
predictions are gone (a run dir restored from results.json alone) are then
trained again with their own seed (`--retrain_trials`): the paired bootstrap
compares the median trials' predictions and cannot test without them, so
those go first, cheapest per task unlocked, and the order is planned again
after each one (a new draw can move a median). Under
the same code, on CPU, that repeats a trial exactly; under other code it is
a new draw that replaces the old record, so the stage log keeps the scores
before and after.
"""

import argparse
import dataclasses
import datetime
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import flags

from bam_tf.common import durations
from bam_tf.common import errors
from bam_tf.common import files
from bam_tf.common import lock
from bam_tf.common.errors import BamError
from bam_tf.outputs import results as results_lib
from bam_tf_experiments import compute
from bam_tf_experiments import paired_trials
from bam_tf_experiments import report
from bam_tf_experiments import statistics as st

ENTRY_POINT = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "run_classifier.py")

_SMALL = "official_configs/small/"
PRESETS = {
    # Table 1 (and Table 4's lambda = 0 row) at small scale: the embedded
    # MiniLM encoder on the shared GLUE tasks CoLA, MRPC, STS-B and RTE.
    "small_table1": {
        "methods": [
            ("Single", [_SMALL + f"single_{t}.cfg"
                        for t in ("cola", "mrpc", "sts", "rte")]),
            ("Multi", [_SMALL + "multi.cfg"]),
            ("Single->Multi", [_SMALL + "single_to_multi.cfg"]),
            ("Single->Multi lambda=0", [_SMALL +
                                        "single_to_multi_lambda0.cfg"]),
        ],
        "baselines": ["Single", "Multi"],
        "out_dir": "docs/results/small_exact/table1",
        # Both tests the issue asks for, over dev examples and over trials,
        # and the one that draws both at once (seed noise moves a single
        # trial's dev score by points here). The Holm family is Table 1's question, as the paper marks it:
        # Single->Multi against Single and against Multi (2 x 5 columns).
        # Over every method's 30 comparisons Mann-Whitney could mark nothing
        # even at 5 trials against 5 (30 x 1/252 > 0.05). Table 4's lambda =
        # 0 question is its own report, below.
        "report_flags": ["--test=all", "--tested=Single->Multi"],
        # Table 4: does Single->Multi beat itself without teacher annealing?
        # (its own Holm family, 5 comparisons; written to out_dir/table4)
        "extra_reports": [{
            "name": "table4",
            "methods": ["Single->Multi", "Single->Multi lambda=0"],
            "baselines": ["Single->Multi lambda=0"],
            "report_flags": ["--test=all", "--tested=Single->Multi"]}],
    },
    # Does --length_bucketing change the teachers' dev scores? Each task's
    # teacher with random and with length-bucketed batches, same seeds.
    "small_bucketing": {
        "methods": [
            ("Single", [_SMALL + f"single_{t}.cfg"
                        for t in ("cola", "mrpc", "sts", "rte")]),
            ("Single bucketed", [_SMALL + f"single_{t}_bucketed.cfg"
                                 for t in ("cola", "mrpc", "sts", "rte")]),
        ],
        "baselines": ["Single"],
        "out_dir": "docs/results/small_exact/bucketing",
        "report_flags": ["--test=both"],
        # The question is two-sided and the seeds are shared: also compare
        # seed by seed (bam_tf_experiments.paired_trials).
        "paired_baseline": "Single",
    },
}

STAGES_JSON = "stages.json"
STAGES_MD = "stages.md"
LOCK_FILE = ".reproduce.lock"


class ReproduceError(BamError):
  """A flagfile, method list or lock this command cannot use."""


@dataclasses.dataclass(frozen=True)
class Stage:
  """Bring one flagfile's run up to `trials` finished trials, or (retrain
  set) train its finished trial `retrain` again for its dev predictions."""
  methods: tuple
  flagfile: str
  model_dir: str
  trials: int
  retrain: Optional[int] = None
  median_of: tuple = ()  # retrain: tasks whose median trial this is

  @property
  def name(self) -> str:
    if self.retrain is not None:
      return (f"{os.path.basename(self.flagfile)} trial {self.retrain + 1} "
              "again")
    return f"{os.path.basename(self.flagfile)} trial {self.trials}"

  @property
  def trial_index(self) -> int:
    """The trial this stage trains (0-based)."""
    return self.trials - 1 if self.retrain is None else self.retrain


# ---------------------------------------------------------------- planning

def parse_methods(spec: str) -> List[tuple]:
  """'Name:a.cfg+b.cfg,Name2:c.cfg' -> [(name, [flagfiles])], order kept."""
  return list(report.parse_runs(spec, "--methods", "FLAGFILE").items())


def model_dir_of(flagfile: str, stage_flags: Sequence[str] = ()) -> str:
  """The --model_dir a stage writes: the flagfile's (nested flagfiles
  expanded the way absl does), unless --stage_flags overrides it."""
  if not files.isfile(flagfile):
    raise ReproduceError(f"flagfile {flagfile}: no such file")
  try:
    args = flags.FlagValues().read_flags_from_files(
        [f"--flagfile={flagfile}"], force_gnu=True)
  except flags.Error as e:
    raise ReproduceError(f"flagfile {flagfile}: {e}") from e
  model_dir = None
  for arg in stage_flags:
    # Only --model_dir=DIR is followed here; these forms would move a
    # stage's run dir behind the driver's back.
    if arg.startswith(("--flagfile", "-flagfile")) or arg in (
        "--model_dir", "-model_dir"):
      raise ReproduceError(
          f"--stage_flags: {arg!r}: give a stage's run dir as "
          "--model_dir=DIR, and other flagfiles through --methods")
  for arg in list(args) + list(stage_flags):
    if arg.startswith("--model_dir="):
      model_dir = arg.split("=", 1)[1]
  if not model_dir:
    raise ReproduceError(
        f"flagfile {flagfile}: no --model_dir=... line (each stage needs its "
        "own run directory to be resumable)")
  return model_dir


def plan_stages(methods: List[tuple], trials: int,
                stage_flags: Sequence[str] = ()) -> List[Stage]:
  """Trial-major order; a flagfile shared by several methods runs once."""
  if trials < 1:
    raise ReproduceError(f"--trials: {trials}; expected >= 1")
  by_flagfile: Dict[str, List[str]] = {}
  for name, cfgs in methods:
    for cfg in cfgs:
      by_flagfile.setdefault(cfg, []).append(name)
  dirs = {cfg: model_dir_of(cfg, stage_flags) for cfg in by_flagfile}
  owners: Dict[str, str] = {}
  for cfg, d in dirs.items():
    if "," in d or "+" in d:  # the report's --runs is split on them
      raise ReproduceError(f"flagfile {cfg}: --model_dir={d} has a ',' or "
                           "'+', which --runs (the report's) splits on")
    key = files.resolve(d)
    if key in owners:
      raise ReproduceError(
          f"flagfiles {owners[key]} and {cfg} both write --model_dir={d}")
    owners[key] = cfg
  return [Stage(tuple(by_flagfile[cfg]), cfg, dirs[cfg], k)
          for k in range(1, trials + 1) for cfg in by_flagfile]


def _missing_predictions(model_dir: str) -> Dict[int, List[str]]:
  if not results_lib.finished_trials(model_dir):
    return {}
  return report.RunDir(model_dir).missing_predictions()


def other_runs(stages: List[Stage], stage_flags: Sequence[str]
               ) -> Dict[str, str]:
  """{flagfile: why} for each stage's run dir that holds a run with other
  settings than the stage trains (run_classifier would refuse it): a smoke
  run of the flagfile (--debug --max_train_steps=1) leaves finished trials
  there that are not the stage's, which counted as done."""
  out = {}
  for s in {s.flagfile: s for s in stages}.values():
    if not files.isfile(os.path.join(s.model_dir, "config.json")):
      continue
    # Lazily: configure loads TensorFlow, needed only once a run exists.
    from bam_tf import configure  # pylint: disable=g-import-not-at-top
    try:
      diff = configure.run_differences(
          s.model_dir, [f"--flagfile={s.flagfile}", *stage_flags])
    except BamError:
      continue  # e.g. its --init_from not trained yet: the stage says so
    if diff:
      out[s.flagfile] = (
          f"{s.model_dir} holds a run with other settings ("
          + "; ".join(f"{k}: {there!r} there, {here!r} here"
                      for k, there, here in diff) + ")")
  return out


def is_done(stage: Stage) -> bool:
  done = results_lib.finished_trials(stage.model_dir)
  if stage.retrain is not None:
    return (stage.retrain in done and
            stage.retrain not in _missing_predictions(stage.model_dir))
  return all(t in done for t in range(stage.trials))


def median_trials(run: report.RunDir) -> Dict[int, List[str]]:
  """{trial: tasks it is the median-scoring trial of}: the trials whose dev
  predictions the report's paired bootstrap reads."""
  out: Dict[int, List[str]] = {}
  for task, scores in run.scores.items():
    if scores:
      out.setdefault(st.median_trial(scores), []).append(task)
  return out


def plan_retrains(stages: List[Stage]) -> List[Stage]:
  """A stage per finished trial (of those the plan covers) whose dev
  predictions are missing. The bootstrap reads only each task's median
  trial, so those go first, cheapest first per task they unlock (the
  trial's recorded seconds / its median tasks), then the rest, cheapest
  first: a driver stopped part-way has unlocked as many tests as it could."""
  last = {}
  for s in stages:
    last[s.flagfile] = s  # the one with the most trials
  keyed = []
  for order, s in enumerate(last.values()):
    if not results_lib.finished_trials(s.model_dir):
      continue
    run = report.RunDir(s.model_dir)  # one read for all three questions
    medians = median_trials(run)
    for trial in run.missing_predictions():
      if trial < s.trials:
        cost = compute.trial_seconds(run.trial_info[trial])
        stage = dataclasses.replace(
            s, retrain=trial, median_of=tuple(medians.get(trial, ())))
        per_task = (float("inf") if cost is None
                    else cost / max(1, len(stage.median_of)))
        keyed.append(((not stage.median_of, per_task, trial, order), stage))
  return [stage for _, stage in sorted(keyed, key=lambda kv: kv[0])]


# ------------------------------------------------------------- stage log

def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%SZ")


def load_stage_log(out_dir: str) -> List[Dict]:
  """The stage records so far (checked before any stage runs)."""
  path = os.path.join(out_dir, STAGES_JSON)
  if not files.exists(path):
    return []
  try:
    stages = files.read_json(path)["stages"]
    if not (isinstance(stages, list) and
            all(isinstance(r, dict) for r in stages)):
      raise TypeError("its \"stages\" is not a list of records")
  except (ValueError, OSError, TypeError, KeyError) as e:
    raise ReproduceError(
        f"{path}: not a stage log ({type(e).__name__}: {e}); move it away "
        "to start a new one (the runs' results are in their run dirs)"
    ) from None
  return stages


def _score_changes(before: Dict[str, float], after: Dict[str, float]) -> str:
  """'cola 26.61 -> 24.32, ...' (x100 scores; 2 decimals as the tables)."""
  def fmt(v):
    return "-" if v is None else f"{v:.2f}"
  return ", ".join(f"{t} {fmt(before[t])} -> {fmt(after.get(t))}"
                   for t in before)


def write_stage_log(out_dir: str, records: List[Dict]):
  files.write_json_atomic(os.path.join(out_dir, STAGES_JSON),
                          {"stages": records})
  fmt = durations.format_duration
  lines = ["| stage | methods | started (UTC) | wall | train s | eval s | "
           "exit |", "|---|---|---|---|---|---|---|"]
  for r in records:
    what = (f"trial {r['retrained_trial'] + 1} again" if "retrained_trial"
            in r else f"trial {r['trials']}")
    lines.append(
        f"| {r['flagfile']} {what} | {', '.join(r['methods'])} "
        f"| {r['started']} | {fmt(r['wall_seconds'])} | "
        f"{r.get('train_seconds', '-')} | {r.get('eval_seconds', '-')} | "
        f"{r['returncode']} |")
  changed = [r for r in records if r.get("scores_before") and
             r.get("scores_after") != r["scores_before"]]
  if changed:
    lines += ["", "Trials trained again whose scores changed (another draw "
              "than the original; the record was replaced):", ""]
    for r in changed:
      lines.append(f"- {r['flagfile']} trial {r['retrained_trial'] + 1}: "
                   f"{_score_changes(r['scores_before'], r['scores_after'])}")
  files.write_text_atomic(os.path.join(out_dir, STAGES_MD),
                          "\n".join(lines) + "\n")


def _trial_seconds(model_dir: str, trial_index: int) -> Dict:
  trial = results_lib.finished_trials(model_dir).get(trial_index)
  if not trial:
    return {}
  return {k: trial[k] for k in ("train_seconds", "eval_seconds")
          if k in trial}


def _stage_seconds(record: Dict) -> float:
  """A finished stage's cost: its wall time, or its trial's train + eval
  seconds where larger. A stage resumed from a checkpoint times only its
  last segment; the trial's seconds count every segment's training."""
  trial = compute.trial_seconds(record)
  return max(record["wall_seconds"], trial or 0.0)


def estimate_seconds(stage: Stage, records: List[Dict]) -> Optional[float]:
  """Mean cost of earlier finished stages of the same flagfile; before
  any, the mean train + eval seconds of the trials its run dir already
  holds (run before this driver, or by hand), a slight underestimate."""
  costs = [_stage_seconds(r) for r in records
           if r["flagfile"] == stage.flagfile and r["returncode"] == 0]
  if not costs:
    costs = [c for c in map(compute.trial_seconds, results_lib.finished_trials(
        stage.model_dir).values()) if c is not None]
  return sum(costs) / len(costs) if costs else None


def _eta(remaining: List[Stage], records: List[Dict]) -> str:
  """Estimate from the stage log: mean cost of each flagfile's earlier
  stages (stages never timed are counted as unknown)."""
  eta = [estimate_seconds(s, records) for s in remaining]
  known = [e for e in eta if e is not None]
  if not known:
    return "no timings yet for an ETA"
  unknown = len(eta) - len(known)
  this = ("this stage not yet timed" if eta[0] is None else
          f"this stage ~{durations.format_duration(eta[0])}")
  return (f"{this}, all remaining ~{durations.format_duration(sum(known))}"
          + (f" + {unknown} stage(s) not yet timed" if unknown else ""))


# ------------------------------------------------------------------- lock

def out_dir_lock(out_dir: str) -> lock.DirLock:
  """One reproduce process per --out_dir (two would train the same run
  directories at once): the model_dir lock's kind (bam_tf.common.lock), an
  flock on a local disk, so a killed run's lock is never in force, and a
  holder record in a bucket. Pair acquire() with release()."""
  return lock.DirLock(out_dir, lock_file=LOCK_FILE, flag="--out_dir",
                      user="reproduce run")


# -------------------------------------------------------------------- run

def run_stage(stage: Stage, stage_flags: Sequence[str],
              log_dir: Optional[str]) -> int:
  """One run_classifier process. A SIGTERM to us is passed on to it, so a
  rerun never finds an orphan still training the same run directory; Ctrl-C
  reaches it from the terminal directly (we wait for it to stop)."""
  cmd = [sys.executable, ENTRY_POINT, f"--flagfile={stage.flagfile}",
         f"--num_trials={stage.trials}"]
  if stage.retrain is not None:
    cmd.append(f"--retrain_trials={stage.retrain}")
  cmd += list(stage_flags)
  out = None
  if log_dir:
    files.makedirs(log_dir)
    stem = os.path.splitext(os.path.basename(stage.flagfile))[0]
    out = files.open_file(os.path.join(log_dir, f"{stem}.log"), "ab")
  print(f"  $ {' '.join(cmd)}", flush=True)
  proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT
                          if out else None)
  previous = {
      signal.SIGTERM: signal.signal(
          signal.SIGTERM, lambda signum, _: proc.send_signal(signum)),
      signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
  try:
    return proc.wait()
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
    if out:
      out.close()


def _scores(model_dir: str, trial: int) -> Dict[str, float]:
  record = results_lib.finished_trials(model_dir).get(trial, {})
  return {t: m["score"] for t, m in record.get("tasks", {}).items()
          if "score" in m}


def _run_stages(pending: List[Stage], records: List[Dict], out_dir: str,
                stage_flags: Sequence[str], log_dir: Optional[str],
                replan: Optional[Callable[[], List[Stage]]] = None):
  """Run `pending` in order; with `replan`, the rest is planned again after
  each stage (a retrained trial can be a new draw that moves a median)."""
  i = 0
  while pending:
    stage, i = pending[0], i + 1
    print(f"[{_now()}] stage {i}/{i + len(pending) - 1}: {stage.name} "
          f"({', '.join(stage.methods)}); {_eta(pending, records)}",
          flush=True)
    record = {"flagfile": stage.flagfile, "methods": list(stage.methods),
              "model_dir": stage.model_dir, "trials": stage.trials,
              "started": _now()}
    if stage.retrain is not None:
      record.update(retrained_trial=stage.retrain,
                    scores_before=_scores(stage.model_dir, stage.retrain))
    t0 = time.time()
    rc = run_stage(stage, stage_flags, log_dir)
    record.update(ended=_now(), wall_seconds=round(time.time() - t0, 1),
                  returncode=rc,
                  **_trial_seconds(stage.model_dir, stage.trial_index))
    if stage.retrain is not None:
      record["scores_after"] = _scores(stage.model_dir, stage.retrain)
    records.append(record)
    write_stage_log(out_dir, records)
    if rc != 0 or not is_done(stage):
      where = f" (output in {log_dir})" if log_dir else ""
      raise ReproduceError(
          f"stage {stage.name} failed with exit code {rc}{where}; rerun "
          "this command to resume it")
    print(f"[{_now()}] done {stage.name} in "
          f"{durations.format_duration(record['wall_seconds'])}", flush=True)
    before = record.get("scores_before")
    if before is not None and record["scores_after"] != before:
      print(f"  trial {stage.retrain + 1} scores changed (another draw): "
            f"{_score_changes(before, record['scores_after'])}", flush=True)
    pending = replan() if replan else pending[1:]


def reproduce(methods: List[tuple], trials: int, out_dir: str,
              baselines: Sequence[str] = (), stage_flags: Sequence[str] = (),
              log_dir: Optional[str] = None, dry_run: bool = False,
              report_args: Sequence[str] = (),
              retrain_missing_predictions: bool = False,
              paired_baseline: Optional[str] = None,
              extra_reports: Sequence[Dict] = ()) -> int:
  stages = plan_stages(methods, trials, stage_flags)
  out = files.resolve(out_dir)
  for s in stages:
    run = files.resolve(s.model_dir)
    if out == run or files.lies_inside(out, run):
      # A stage's --overwrite would clear the stage log and the lock.
      raise ReproduceError(f"--out_dir: {out_dir} is in {s.flagfile}'s run "
                           f"dir {s.model_dir}; give a folder of its own")
  others = other_runs(stages, stage_flags)
  pending = [s for s in stages if s.flagfile in others or not is_done(s)]
  print(f"{len(stages)} stages ({len(methods)} methods x {trials} trials), "
        f"{len(stages) - len(pending)} already done, {len(pending)} to run",
        flush=True)
  if dry_run:
    retrains = plan_retrains(stages) if retrain_missing_predictions else []
    for s in stages + retrains:
      state = ("blocked" if s.flagfile in others else
               "done" if s not in pending + retrains else "to run")
      why = (f"; median trial of {', '.join(s.median_of)}" if s.median_of
             else "")
      print(f"  {s.name:<40} {state:<7} -> {s.model_dir}  "
            f"({', '.join(s.methods)}{why})")
    for flagfile, why in others.items():
      print(f"blocked: {flagfile}: {why}; delete it, or train it with "
            "--overwrite in --stage_flags")
    if retrains:
      print(f"then {len(retrains)} finished trial(s) trained again for "
            "their missing dev predictions")
    return 0
  if others:
    flagfile, why = next(iter(others.items()))
    raise ReproduceError(f"flagfile {flagfile}: {why}; delete it, or train "
                         "it with --overwrite in --stage_flags")
  out_lock = out_dir_lock(out_dir).acquire()
  try:
    records = load_stage_log(out_dir)
    _run_stages(pending, records, out_dir, stage_flags, log_dir)
    if retrain_missing_predictions:
      retrains = plan_retrains(stages)
      print(f"{len(retrains)} finished trial(s) to train again for their "
            "missing dev predictions", flush=True)
      _run_stages(retrains, records, out_dir, stage_flags, log_dir,
                  replan=lambda: plan_retrains(stages))
  finally:
    out_lock.release()
  model_dirs = {s.flagfile: s.model_dir for s in stages}
  runs_of = lambda names: ",".join(
      name + ":" + "+".join(model_dirs[c] for c in cfgs)
      for name, cfgs in methods if name in names)
  names = [name for name, _ in methods]
  rc = _report(runs_of(names), out_dir, baselines, report_args)
  for extra in extra_reports:
    if rc:
      break
    missing = [m for m in extra["methods"] if m not in names]
    if missing:
      print(f"report {extra['name']}: skipped (no method {missing})",
            flush=True)
      continue
    rc = _report(runs_of(extra["methods"]),
                 os.path.join(out_dir, extra["name"]), extra["baselines"],
                 extra["report_flags"])
  if rc or not paired_baseline:
    return rc
  argv = ["--runs", runs_of(names), "--baseline", paired_baseline,
          "--out_dir", out_dir]
  print("seed by seed: python -m bam_tf_experiments.paired_trials "
        f"{shlex.join(argv)}", flush=True)
  return paired_trials.main(argv)


def _report(runs: str, out_dir: str, baselines: Sequence[str],
            report_args: Sequence[str]) -> int:
  argv = ["--runs", runs, "--out_dir", out_dir] + list(report_args)
  if baselines:
    argv += ["--baselines", ",".join(baselines)]
  print(f"report: python -m bam_tf_experiments.report {shlex.join(argv)}",
        flush=True)
  return report.main(argv)


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      prog="python -m bam_tf_experiments.reproduce",
      description="Run every method's flagfiles trial by trial (resumable), "
                  "log each stage's wall time, then write the report.")
  p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                 help="a built-in comparison (methods, baselines, out_dir)")
  p.add_argument("--methods", default="",
                 help="NAME:FLAGFILE[+FLAGFILE...][,NAME:...]; overrides "
                      "the preset's methods")
  p.add_argument("--trials", type=int, default=3)
  p.add_argument("--baselines", default=None,
                 help="comma-separated method names (default: the preset's)")
  p.add_argument("--out_dir", default="",
                 help="stage log and report (default: the preset's)")
  p.add_argument("--log_dir", default="",
                 help="append each stage's output to LOG_DIR/<flagfile>.log "
                      "(default: this terminal)")
  p.add_argument("--stage_flags", default="",
                 help="extra run_classifier flags for every stage, space-"
                      "separated (e.g. '--data_dir=/data/glue')")
  p.add_argument("--retrain_missing_predictions", action="store_true",
                 help="after the plan's stages, train again (same seed) "
                      "every finished trial whose dev predictions are "
                      "missing, so the paired bootstrap can test it")
  p.add_argument("--dry_run", action="store_true",
                 help="list the stages and which are done; run nothing")
  p.add_argument("--paired_baseline", default=None,
                 help="with two methods trained on the same seeds: also "
                      "compare them seed by seed, two-sided, against this "
                      "one (bam_tf_experiments.paired_trials; default: the "
                      "preset's)")
  p.add_argument("--report_flags", default="",
                 help="extra bam_tf_experiments.report flags, space-separated "
                      "(after the preset's)")
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  return errors.run_command(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
  """main's work: the plan from the flags, checked, then run."""
  preset = PRESETS.get(args.preset, {}) if args.preset else {}
  if args.methods:
    methods = parse_methods(args.methods)
  elif preset:
    methods = preset["methods"]
  else:
    raise ReproduceError("give --preset or --methods")
  if args.baselines is None:
    baselines = preset.get("baselines", [])
  else:
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
  names = [m for m, _ in methods]
  for b in baselines:
    if b not in names:
      raise ReproduceError(f"--baselines: {b!r} is not one of {names}")
  paired = (args.paired_baseline if args.paired_baseline is not None
            else preset.get("paired_baseline"))
  if paired and (paired not in names or len(names) != 2):
    raise ReproduceError(f"--paired_baseline: {paired!r} must be one of "
                         f"exactly two methods (the methods are {names})")
  out_dir = args.out_dir or preset.get("out_dir")
  if not out_dir:
    raise ReproduceError("--out_dir: required without --preset")
  if args.log_dir and not files.is_local(args.log_dir):
    raise ReproduceError(
        f"--log_dir: {args.log_dir} is not on this machine's disk; each "
        "stage's process writes its output there as it runs: give a local "
        "folder (--out_dir and the run dirs may be in a bucket)")
  report.check_out_dir(out_dir)
  report.check_out_dir(args.log_dir, "--log_dir")
  return reproduce(methods, args.trials, out_dir, baselines,
                   args.stage_flags.split(), args.log_dir or None,
                   args.dry_run,
                   preset.get("report_flags", []) + args.report_flags.split(),
                   args.retrain_missing_predictions, paired or None,
                   preset.get("extra_reports", ()))


if __name__ == "__main__":
  sys.exit(main())
