"""results.json (every trial, machine-readable) and results.txt (a table).

Trials are appended as they finish, so a run killed after trial 2 keeps
trials 0-2 and a rerun skips them. results.json is the record; results.txt
is made from it, and made again by a rerun if a kill left it behind.
"""

import json
import os
import statistics
from typing import Dict, List, Optional

from absl import logging

from bam_tf.common import files

RESULTS_JSON = "results.json"
RESULTS_TXT = "results.txt"
# What a training run records of its data and its user tasks' declarations,
# beside config.json (written by bam_tf.runner.claim_model_dir).
FINGERPRINT_JSON = "data_fingerprint.json"


def load(model_dir: str) -> Dict:
  path = os.path.join(model_dir, RESULTS_JSON)
  if files.exists(path):
    return files.read_json(path)
  return {"trials": []}


def read_fingerprint(model_dir: str) -> Optional[Dict]:
  """The run's recorded data fingerprint ("data": each split's digests,
  "tasks": its user tasks' declarations, bam_tf.tasks.registry
  .task_declarations); None for a run from before runs recorded them."""
  path = os.path.join(model_dir, FINGERPRINT_JSON)
  return files.read_json(path) if files.exists(path) else None


def finished_trials(model_dir: str) -> Dict[int, Dict]:
  return {t["trial"]: t for t in load(model_dir)["trials"]}


def summarize(trials: List[Dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
  """Median, mean, std, min, max and count of every metric over trials."""
  values: Dict[str, Dict[str, List[float]]] = {}
  for trial in trials:
    rows = dict(trial["tasks"])
    rows["average"] = trial.get("averages", {})
    for task, metrics in rows.items():
      for name, v in metrics.items():
        if name == "num_examples":
          continue
        values.setdefault(task, {}).setdefault(name, []).append(float(v))
  summary = {}
  for task, by_metric in values.items():
    summary[task] = {}
    for name, vs in by_metric.items():
      summary[task][name] = {
          "median": statistics.median(vs), "mean": statistics.fmean(vs),
          "std": statistics.pstdev(vs) if len(vs) > 1 else 0.0,
          "min": min(vs), "max": max(vs), "n": len(vs)}
  return summary


_NOT_METRICS = ("score", "glue_score", "num_examples")


def _columns(available: Dict, headline: str = None) -> List[str]:
  """A task's table columns: `score` (its headline metric), then every other
  metric it reports. Runs recorded before results.json named the headline
  metric keep their old columns (score, accuracy and F1 where F1 is
  reported, Pearson)."""
  if headline is None:
    names = ["score"] + (["accuracy"] if "f1" in available else [])
    names += [n for n in ("f1", "pearson") if n in available]
    return [n for n in names if n in available]
  return ["score"] + [n for n in available
                      if n not in _NOT_METRICS and n != headline]


def _table(trials: List[Dict], summary: Dict, task_names: List[str],
           headlines: Dict[str, str]) -> str:
  metric_cols = []
  for task in task_names:
    available = summary.get(task, {})
    metric_cols += [(task, n) for n in
                    _columns(available, headlines.get(task))]
  metric_cols += [("average", n) for n in ("paper_average", "glue_average")
                  if n in summary.get("average", {})]
  header = ["trial", "seed"] + [f"{t}/{n}" for t, n in metric_cols]
  rows = []
  for trial in trials:
    row = [str(trial["trial"]), str(trial["seed"])]
    for task, name in metric_cols:
      src = trial.get("averages", {}) if task == "average" else \
          trial["tasks"].get(task, {})
      row.append(f"{src[name]:.2f}" if name in src else "-")
    rows.append(row)
  for stat in ("median", "mean", "std"):
    rows.append([stat, ""] + [f"{summary[t][n][stat]:.2f}"
                              for t, n in metric_cols])
  widths = [max(len(r[i]) for r in [header] + rows)
            for i in range(len(header))]
  fmt = lambda r: " | ".join(c.rjust(w) for c, w in zip(r, widths))
  lines = [fmt(header), "-+-".join("-" * w for w in widths)]
  lines += [fmt(r) for r in rows]
  return "\n".join(lines)


def render_text(data: Dict) -> str:
  """results.txt for a results.json's content."""
  trials = data["trials"]
  task_names = data.get("config", {}).get("task_names", [])
  headlines = data.get("headline_metrics", {})
  if headlines:
    legend = "score = " + ", ".join(f"{headlines[t]} {t}" for t in task_names
                                    if t in headlines)
  else:
    legend = ("score = the paper's metric (MCC CoLA, Spearman STS-B, "
              "accuracy otherwise)")
  return (f"BAM results: {', '.join(task_names)}  "
          f"({len(trials)} trial{'s' if len(trials) != 1 else ''})\n"
          f"Scores x100. {legend}.\n\n" +
          _table(trials, summarize(trials), task_names, headlines) + "\n" +
          settings_note(trials))


def settings_note(trials: List[Dict]) -> str:
  """Lines naming the rerun-safe settings (each trial's `train_settings`)
  that differ between trials or within one resumed trial: they move the
  numbers by float rounding and dropout draws, and the config above is
  only the latest command's. Empty when all trained alike."""
  seen = [seg for t in trials for seg in t.get("train_settings", [])]
  keys = sorted({k for seg in seen for k in seg if k != "from_step"})
  varying = [k for k in keys
             if len({json.dumps(seg.get(k)) for seg in seen}) > 1]
  if not varying:
    return ""
  lines = ["\nTrials trained under different settings (they move the numbers "
           "by float rounding and dropout draws):"]
  for t in trials:
    segments = t.get("train_settings", [])
    parts = [", ".join(f"{k}={seg.get(k)}" for k in varying) +
             (f" from step {seg['from_step']}" if len(segments) > 1 else "")
             for seg in segments]
    lines.append(f"  trial {t['trial']}: "
                 f"{'; '.join(parts) if parts else 'not recorded'}")
  return "\n".join(lines) + "\n"


def record_trial(model_dir: str, config_dict: Dict, trial_result: Dict,
                 headline_metrics: Dict[str, str] = None):
  """Adds (or replaces) one trial and rewrites both files atomically:
  results.json first (the record; complete_outputs makes results.txt from
  it if a kill lands between the two). `headline_metrics`: {task: the
  metric its `score` is}."""
  data = load(model_dir)
  trials = [t for t in data["trials"] if t["trial"] != trial_result["trial"]]
  trials.append(trial_result)
  trials.sort(key=lambda t: t["trial"])
  data = {"config": config_dict, "trials": trials,
          "summary": summarize(trials)}
  if headline_metrics:
    data["headline_metrics"] = dict(headline_metrics)
  files.write_json_atomic(os.path.join(model_dir, RESULTS_JSON), data)
  text = render_text(data)
  files.write_text_atomic(os.path.join(model_dir, RESULTS_TXT), text)
  return text


def record_evaluation(out_dir: str, config_dict: Dict, trial_result: Dict,
                      headline_metrics: Dict[str, str], weights: Dict):
  """--mode=eval's results.json and results.txt in `out_dir`: a run's
  layout with the one evaluated trial (so what reads a run's results reads
  these), plus `weights` (what was evaluated: final weights or which
  checkpoint, at which step). Returns the text."""
  data = {"config": config_dict, "trials": [trial_result],
          "summary": summarize([trial_result]),
          "headline_metrics": dict(headline_metrics),
          "weights": dict(weights)}
  files.write_json_atomic(os.path.join(out_dir, RESULTS_JSON), data)
  step = weights.get("step")
  text = (f"Evaluation of trial {trial_result['trial']}: "
          f"{weights['name']} weights"
          + (f" (step {step})" if step is not None else "") + "\n"
          + render_text(data))
  files.write_text_atomic(os.path.join(out_dir, RESULTS_TXT), text)
  return text


def complete_outputs(model_dir: str) -> bool:
  """Rewrites results.txt from results.json where it is missing or behind
  (a run killed between the two writes of record_trial, whose rerun finds
  every trial finished and records none); returns whether it did."""
  if not files.exists(os.path.join(model_dir, RESULTS_JSON)):
    return False
  data = load(model_dir)
  if not data.get("trials"):
    return False
  text = render_text(data)
  path = os.path.join(model_dir, RESULTS_TXT)
  if files.exists(path) and files.read_text(path) == text:
    return False
  logging.info("%s is missing or older than %s; writing it again", path,
               RESULTS_JSON)
  files.write_text_atomic(path, text)
  return True
