"""The one-command recipe's teacher stages (bam_tf.distill.recipe): which
teachers train again, and with which flags. A fake `train` stands in for
run_classifier; it writes what a teacher run writes, in the same order
(teacher outputs task by task, then the trial in results.json)."""

import json
import os
import types

import pytest

from bam_tf.common.errors import BamError
from bam_tf.distill import recipe


def _config(flagfiles, teacher_trial=0):
  values = {flag: "" for flag in recipe.INHERITED_FLAGS}
  values.update(debug=False, teacher_flagfiles=flagfiles,
                teacher_trial=teacher_trial)
  return types.SimpleNamespace(**values)


def _write_outputs(model_dir, trial, tasks):
  out = os.path.join(model_dir, "teacher_outputs", f"trial_{trial}")
  os.makedirs(out, exist_ok=True)
  for task in tasks:
    for split in ("train", "dev"):
      with open(os.path.join(out, f"{task}_{split}.json"), "w") as f:
        json.dump({"task": task, "split": split}, f)


def _finish(model_dir, trial):
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, "results.json")
  trials = (json.load(open(path))["trials"] if os.path.exists(path) else [])
  with open(path, "w") as f:
    json.dump({"trials": trials + [{"trial": trial}]}, f)


def test_outputs_cut_short_are_not_finished(tmp_path):
  # Killed while predicting mnli's train set: cola's files are there, the
  # trial is not in results.json. The rerun trains (resumes) the teacher.
  teacher = str(tmp_path / "teacher")
  _write_outputs(teacher, 0, ["cola"])
  assert not recipe.has_outputs(teacher, 0)
  calls = []
  recipe.ensure_teachers(
      _config({teacher: "teacher.cfg"}),
      lambda args: (calls.append(args), _write_outputs(teacher, 0,
                                                       ["cola", "mnli"]),
                    _finish(teacher, 0)))
  assert calls == [["--flagfile=teacher.cfg", "--teacher_output_trials=0",
                    "--nodebug"]]
  assert recipe.has_outputs(teacher, 0)
  # Finished with its outputs: skipped.
  recipe.ensure_teachers(_config({teacher: "teacher.cfg"}),
                         lambda args: calls.append(args))
  assert len(calls) == 1


def test_the_teacher_writes_outputs_for_the_students_trial(tmp_path):
  # --teacher_trial=2 of a flagfile whose --teacher_output_trials is the
  # default (0): the teacher is asked for trial 2's outputs, and a trial 2
  # already finished without them is trained again for them.
  teacher = str(tmp_path / "teacher")
  for trial in range(3):
    _finish(teacher, trial)
  _write_outputs(teacher, 0, ["rte"])
  calls = []
  recipe.ensure_teachers(
      _config({teacher: "t.cfg"}, teacher_trial=2),
      lambda args: (calls.append(args), _write_outputs(teacher, 2, ["rte"])))
  assert calls == [["--flagfile=t.cfg", "--teacher_output_trials=2",
                    "--retrain_trials=2", "--nodebug"]]
  # A teacher that still writes none: one line naming the flagfile.
  other = str(tmp_path / "other")
  _finish(other, 0)
  with pytest.raises(BamError, match=r"^--teachers: o.cfg finished without "
                     "teacher outputs for trial 0"):
    recipe.ensure_teachers(_config({other: "o.cfg"}), lambda args: None)
