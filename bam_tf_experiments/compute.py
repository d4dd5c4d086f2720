"""What each method of a report cost to train, from its runs' results.json.

A method's trial costs the sum of its run dirs' trials (Single = one run
per task). A distilled run also needs its teachers, trained once and shared
by every student trial (the student's config names them: teacher_dirs,
teacher_trial); they are counted once, so "Single->Multi from scratch" =
teachers + one student trial. Seconds are the ones the runs recorded:
`train_seconds` is the wall time of the training loop (a paused or
throttled process shows up in it), `eval_seconds` the dev evaluation.
"""

import os
import statistics as pystats
from typing import Dict, List, Optional

from bam_tf.common import durations
from bam_tf.common import files

COST_KEYS = ("seed", "train_steps", "train_seconds", "eval_seconds")


def trial_seconds(trial: Dict) -> Optional[float]:
  """train + eval seconds a results.json trial recorded (None: untimed)."""
  if trial.get("train_seconds") is None:
    return None
  return float(trial["train_seconds"]) + float(trial.get("eval_seconds") or 0)


def _teacher_costs(config: Dict, seen: set, notes: List[str], where: str):
  """(costs of the teacher trials a distilled run learned from, how many
  of them could not be read). A teacher dir already in `seen` (one teacher
  for several tasks, or shared by a method's runs) is skipped."""
  teacher_dirs = config.get("teacher_dirs") or {}
  trial = int(config.get("teacher_trial", 0))
  out, missing = [], 0
  for task in sorted(teacher_dirs):
    for path in teacher_dirs[task]:
      if path in seen:
        continue
      seen.add(path)
      results = os.path.join(path, "results.json")
      found = None
      try:
        found = next((t for t in files.read_json(results).get("trials", [])
                      if int(t.get("trial", -1)) == trial), None)
      except (OSError, ValueError):  # missing or unreadable: noted below
        pass
      if found is None:
        notes.append(f"{where}: teacher {path} trial {trial} has no "
                     f"readable results.json entry here; its cost is left "
                     "out")
        missing += 1
        continue
      out.append({"path": path, "trial": trial,
                  **{k: found.get(k) for k in COST_KEYS}})
  return out, missing


def method_costs(method_runs: Dict[str, List], notes: List[str]) -> Dict:
  """{method: {"runs": [...], "teachers": [...], per-trial and total
  seconds}} from {method: [RunDir]} (each RunDir has .path, .config and
  .trial_info {trial: {seed, train_steps, train_seconds, eval_seconds}})."""
  costs = {}
  for name, runs in method_runs.items():
    teachers, seen, missing = [], set(), 0
    for run in runs:
      found, unread = _teacher_costs(run.config, seen, notes,
                                     f"{name} ({run.path})")
      teachers += found
      missing += unread
    common = sorted(set.intersection(*(set(r.trial_info) for r in runs)))
    per_trial = {}
    for i in common:
      parts = [trial_seconds(r.trial_info[i]) for r in runs]
      per_trial[i] = None if None in parts else sum(parts)
    known = [v for v in per_trial.values() if v is not None]
    teacher_parts = [trial_seconds(t) for t in teachers]
    # A teacher without a readable cost makes every from-scratch figure
    # unknown rather than too small (no teachers: 0.0).
    teacher_seconds = (None if None in teacher_parts or missing
                       else float(sum(teacher_parts)))
    median = pystats.median(known) if known else None
    costs[name] = {
        "runs": [{"path": r.path,
                  "trials": {str(i): dict(r.trial_info[i])
                             for i in sorted(r.trial_info)}}
                 for r in runs],
        "teachers": teachers,
        "teacher_seconds": teacher_seconds,
        "trial_seconds": {str(i): v for i, v in per_trial.items()},
        "median_trial_seconds": median,
        "one_model_seconds": (None if median is None or teacher_seconds is None
                              else median + teacher_seconds),
        # Unknown rather than too small when a trial was not timed.
        "all_trials_seconds": (sum(known) + teacher_seconds
                               if known and len(known) == len(per_trial)
                               and teacher_seconds is not None else None),
    }
  return costs


def render_markdown(costs: Dict) -> List[str]:
  fmt = durations.format_duration
  lines = ["## Compute (from results.json: training-loop wall time + dev "
           "evaluation; teachers counted once)", ""]
  lines += ["| Method | trials | per trial (median) | teachers (once) | one "
            "model from scratch | all trials + teachers |",
            "|---|---|---|---|---|---|"]
  for name, c in costs.items():
    no_teachers = not c["teachers"] and c["teacher_seconds"] == 0.0
    lines.append(f"| {name} | {len(c['trial_seconds'])} | "
                 f"{fmt(c['median_trial_seconds'])} | "
                 f"{'-' if no_teachers else fmt(c['teacher_seconds'])} | "
                 f"{fmt(c['one_model_seconds'])} | "
                 f"{fmt(c['all_trials_seconds'])} |")
  lines += ["", "| Method | run dir | trial | seed | steps | train | eval |",
            "|---|---|---|---|---|---|---|"]
  for name, role, path, trial, t in _trial_rows(costs):
    label = name if role == "run" else f"{name} ({role})"
    lines.append(
        f"| {label} | {path} | {trial} | {t.get('seed', '-')} | "
        f"{t.get('train_steps', '-')} | {fmt(t.get('train_seconds'))} | "
        f"{fmt(t.get('eval_seconds'))} |")
  lines.append("")
  return lines


def _trial_rows(costs: Dict):
  """(method, role run / teacher, run dir, trial, its costs) per trial."""
  for name, c in costs.items():
    for run in c["runs"]:
      for i, t in run["trials"].items():
        yield name, "run", run["path"], i, t
    for t in c["teachers"]:
      yield name, "teacher", t["path"], t["trial"], t


def csv_rows(costs: Dict) -> List[List]:
  """One row per run trial and per teacher trial (role run / teacher)."""
  return [["method", "role", "run_dir", "trial"] + list(COST_KEYS)] + [
      [name, role, path, trial]
      + ["" if t.get(k) is None else t[k] for k in COST_KEYS]
      for name, role, path, trial, t in _trial_rows(costs)]
