"""A distilled run's last table: every task's teacher beside the student.

BAM's claim is that the multi-task student matches or beats its single-task
teachers. This puts the two side by side on the dev split, with the score of
a model that ignores its input (the best constant prediction: the majority
label for accuracy, 0 for correlations and MCC), so that a task that did not
learn shows as such. The teacher's score is computed from the dev outputs
the teacher wrote for the student (an ensemble's averaged outputs), i.e.
exactly the teacher the student learned from; the student's is the median
of its trials.
"""

import io
import os
from typing import Dict, List

import numpy as np

from bam_tf.common import files
from bam_tf.distill import teacher_outputs
from bam_tf.evaluation import metrics

COMPARISON_JSON = "comparison.json"
COMPARISON_TXT = "comparison.txt"


def constant_baseline(task, gold: np.ndarray) -> float:
  """The best headline score of one prediction for every example."""
  if task.is_regression:
    return 0.0  # a constant has no correlation with anything
  return max(metrics.metric_value(task, task.metric, gold,
                                  np.full_like(gold, label))
             for label in range(task.num_labels))


def teacher_dev_score(config, task, eids: np.ndarray, gold: np.ndarray,
                      key_parts: Dict) -> float:
  """The headline score of the teacher outputs (an ensemble's mean) on the
  student's dev examples (`key_parts`: their features manifest's)."""
  targets = teacher_outputs.load_teacher_targets(
      config.teacher_dirs[task.name], config.teacher_trial, task,
      task.dev_split, eids, key_parts["data_sha256"],
      temperature=config.distill_temperature,
      student_examples_sha256=key_parts.get("examples_sha256"))
  if task.is_regression:
    predictions = task.unscale(targets.values)
  else:
    predictions = np.argmax(targets.probs, axis=-1)
  return metrics.metric_value(task, task.metric, gold, predictions)


def compare(config, dev_key_parts: Dict[str, Dict],
            summary: Dict) -> List[Dict]:
  """One row per task with a teacher: baseline, teacher, student (median
  over trials). `dev_key_parts`: each task's dev features manifest's;
  `summary`: results.json's. Dev predictions are read from the first
  trial's predictions/ (every trial has the same dev set)."""
  rows = []
  for task in config.tasks:
    if not config.teacher_dirs.get(task.name):
      continue
    path = os.path.join(config.trial_dir(0), "predictions",
                        f"{task.name}_{task.dev_split}.npz")
    preds = np.load(io.BytesIO(files.read_bytes(path)))
    gold = preds["gold"]
    rows.append({
        "task": task.name, "metric": task.metric,
        "teachers": len(config.teacher_dirs[task.name]),
        "baseline": constant_baseline(task, gold),
        "teacher": teacher_dev_score(config, task, preds["eid"], gold,
                                     dev_key_parts[task.name]),
        "student": summary[task.name]["score"]["median"],
        "student_trials": summary[task.name]["score"]["n"]})
  return rows


def render(rows: List[Dict]) -> str:
  header = ["task", "metric", "baseline", "teacher", "student",
            "student - teacher"]
  table = [header]
  for r in rows:
    table.append([r["task"], r["metric"], f"{r['baseline']:.2f}",
                  f"{r['teacher']:.2f}", f"{r['student']:.2f}",
                  f"{r['student'] - r['teacher']:+.2f}"])
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  fmt = lambda row: " | ".join(
      c.ljust(w) if i < 2 else c.rjust(w)
      for i, (c, w) in enumerate(zip(row, widths)))
  lines = [fmt(table[0]), "-+-".join("-" * w for w in widths)]
  lines += [fmt(row) for row in table[1:]]
  trials = {r["student_trials"] for r in rows}
  ensembles = [f"{r['task']} ({r['teachers']})" for r in rows
               if r["teachers"] > 1]
  notes = ["Dev scores x100. baseline: the best constant prediction "
           "(majority label; 0 for correlations).",
           "teacher: the single-task teacher the student learned from"
           + (f"; ensembles averaged: {', '.join(ensembles)}" if ensembles
              else "") + ".",
           f"student: the multi-task student, median of "
           f"{'/'.join(str(t) for t in sorted(trials))} trial(s)."]
  return ("Teachers vs the BAM student\n" + "\n".join(lines) + "\n\n" +
          "\n".join(notes) + "\n")


def write(model_dir: str, rows: List[Dict]) -> str:
  """comparison.json and comparison.txt in model_dir; returns the text."""
  text = render(rows)
  files.write_json_atomic(os.path.join(model_dir, COMPARISON_JSON),
                          {"tasks": rows})
  files.write_text_atomic(os.path.join(model_dir, COMPARISON_TXT), text)
  return text
