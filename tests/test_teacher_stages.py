"""The one-command recipe's teacher stages (bam_tf.distill.recipe): which
teachers train again, and with which flags. A fake `train` stands in for
run_classifier; it writes what a teacher run writes, in the same order
(teacher outputs task by task, then the trial in results.json)."""

import functools
import json
import os
import types

import pytest

from bam_tf import configure
from bam_tf.common.errors import BamError
from bam_tf.distill import recipe


def _config(flagfiles, teacher_trial=0):
  """The student's config as ensure_teachers reads it; the flagfiles are
  written (a teacher's own flags), and which trials write outputs is
  configure's real answer."""
  for model_dir, flagfile in flagfiles.items():
    if not os.path.exists(flagfile):
      with open(flagfile, "w") as f:
        f.write(f"--model_dir={model_dir}\n--task_names=rte\n")
  values = {flag: "" for flag in recipe.INHERITED_FLAGS}
  values.update(debug=False, teacher_flagfiles=flagfiles,
                teacher_trial=teacher_trial)
  config = types.SimpleNamespace(**values)
  config.teacher_flagfile_output_trials = functools.partial(
      configure.BamConfig.teacher_flagfile_output_trials, config)
  return config


def _ensure(config, train):
  """The recipe's teacher stages with configure's real comparison of a
  teacher run's config.json (as the runner calls them)."""
  recipe.ensure_teachers(config, train, configure.run_differences)


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
  flagfile = str(tmp_path / "teacher.cfg")
  _write_outputs(teacher, 0, ["cola"])
  assert not recipe.has_outputs(teacher, 0)
  calls = []
  _ensure(
      _config({teacher: flagfile}),
      lambda args: (calls.append(args), _write_outputs(teacher, 0,
                                                       ["cola", "mnli"]),
                    _finish(teacher, 0)))
  assert calls == [[f"--flagfile={flagfile}", "--teacher_output_trials=0",
                    "--nodebug"]]
  assert recipe.has_outputs(teacher, 0)
  # Finished with its outputs: skipped.
  _ensure(_config({teacher: flagfile}),
                         lambda args: calls.append(args))
  assert len(calls) == 1


def test_the_teacher_writes_outputs_for_the_students_trial(tmp_path):
  # --teacher_trial=2 of a flagfile whose --teacher_output_trials is the
  # default (0): the teacher is asked for trial 2's outputs too, and a trial 2
  # already finished without them is trained again for them.
  teacher = str(tmp_path / "teacher")
  for trial in range(3):
    _finish(teacher, trial)
  _write_outputs(teacher, 0, ["rte"])
  calls = []
  _ensure(
      _config({teacher: str(tmp_path / "t.cfg")}, teacher_trial=2),
      lambda args: (calls.append(args), _write_outputs(teacher, 2, ["rte"])))
  assert calls == [[f"--flagfile={tmp_path}/t.cfg",
                    "--teacher_output_trials=0,2", "--retrain_trials=2",
                    "--nodebug"]]
  # A teacher that still writes none: one line naming the flagfile.
  other = str(tmp_path / "other")
  _finish(other, 0)
  with pytest.raises(BamError, match=r"^--teachers: .*o.cfg finished "
                     "without teacher outputs for trial 0"):
    _ensure(_config({other: str(tmp_path / "o.cfg")}),
                           lambda args: None)


@pytest.mark.parametrize("flag,teacher_trial,asked", [
    ("", 0, "0"),                               # the default: trial 0
    ("", 2, "0,2"),                             # ... and the student's
    ("--teacher_output_trials=0,1\n", 2, "0,1,2"),
    ("--teacher_output_trials=1\n", 1, "1"),
    ("--teacher_output_trials=\n", 1, "1"),     # none of its own
])
def test_the_teacher_keeps_writing_its_own_output_trials(
    tmp_path, flag, teacher_trial, asked):
  """A teacher flagfile that writes outputs for other students' trials
  still writes them when the recipe trains it for this student."""
  teacher = str(tmp_path / "teacher")
  flagfile = str(tmp_path / "t.cfg")
  with open(flagfile, "w") as f:
    f.write(f"--model_dir={teacher}\n{flag}")
  calls = []
  _ensure(
      _config({teacher: flagfile}, teacher_trial=teacher_trial),
      lambda args: (calls.append(args),
                    _write_outputs(teacher, teacher_trial, ["rte"]),
                    _finish(teacher, teacher_trial)))
  assert calls == [[f"--flagfile={flagfile}",
                    f"--teacher_output_trials={asked}", "--nodebug"]]


def test_a_teacher_trained_with_other_settings_is_not_used(tmp_path,
                                                           glue_dir):
  """A student smoke run (--debug --max_train_steps=1) trains its flagfile
  teachers with those flags in the flagfiles' own model_dirs. The full
  student after it must not distil from that 1-step teacher because its
  outputs are there: refused, naming the settings and both ways out."""
  teacher = str(tmp_path / "teacher")
  flagfile = str(tmp_path / "t.cfg")
  with open(flagfile, "w") as f:
    f.write(f"--mode=train\n--task_names=rte\n--data_dir={glue_dir}\n"
            f"--model_dir={teacher}\n")
  smoke = _config({teacher: flagfile})
  smoke.data_dir, smoke.debug, smoke.max_train_steps = glue_dir, True, 1

  def smoke_teacher(args):  # what the smoke run's teacher leaves behind
    os.makedirs(teacher)
    configure.save_config(configure.config_from_args(args),
                          os.path.join(teacher, "config.json"))
    _write_outputs(teacher, 0, ["rte"])
    _finish(teacher, 0)

  _ensure(smoke, smoke_teacher)
  assert recipe.has_outputs(teacher, 0)
  _ensure(smoke, lambda args: pytest.fail("trained again"))

  full = _config({teacher: flagfile})
  full.data_dir = glue_dir
  with pytest.raises(BamError) as e:
    _ensure(full, lambda args: pytest.fail("trained"))
  message = str(e.value)
  assert message.startswith(f"--teachers: {teacher} holds a teacher run "
                            "trained with other settings")
  assert ("debug: True there, False here; max_train_steps: 1 there, "
          "0 here" in message)
  assert message.endswith(f"--flagfile={flagfile} --teacher_output_trials=0 "
                          f"--data_dir={glue_dir} --nodebug --overwrite")
  assert "\n" not in message
  # A config.json cut short: one line naming the file, nothing trained.
  with open(os.path.join(teacher, "config.json"), "w") as f:
    f.write('{"task_names": ["rte"], "mod')
  with pytest.raises(BamError, match=(
      rf"^--teachers: the teacher run in {teacher}: --model_dir: "
      rf"{teacher}/config.json:1: not valid JSON .*; delete it to train "
      "that run again$")):
    _ensure(full, lambda args: pytest.fail("trained"))
