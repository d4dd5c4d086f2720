"""One command for a whole BAM recipe: teachers first, then the student.

Teachers named by flagfile in --teachers are trained unless their teacher
outputs already exist, in this process (no second TensorFlow start-up and
encoder load per teacher) and exactly as `run_classifier.py --flagfile=...`
with the logged flags would train them; finished trials and checkpoints make
every stage resumable, so rerunning the recipe after a kill continues where
it stopped. A teacher trial that results.json records as finished but whose
outputs are gone (a fresh machine with only the committed run records) is
trained again with its own seed (--retrain_trials), which on CPU repeats it
exactly.
"""

from typing import Any, Callable, List, Tuple

from absl import logging

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.distill import teacher_outputs
from bam_tf.outputs import results as results_lib

# Flags of the student's command line that its teachers inherit, so that a
# recipe run on other data or as a smoke run stays consistent.
INHERITED_FLAGS = ("data_dir", "data_source", "tfds_data_dir", "cache_dir",
                   "debug", "max_train_steps",
                   "strategy", "tpu", "mixed_precision")

# (model_dir, run_classifier.py args) -> [(setting, value in the run there,
# value the args give)] for each setting that differs, rerun-safe ones aside.
Differences = Callable[[str, List[str]], List[Tuple[str, Any, Any]]]


def has_outputs(model_dir: str, trial: int) -> bool:
  """The teacher's trial finished with its outputs: a trial writes them
  before results.json records it, so a run killed part-way through
  writing them (one task's files there, another's not) is not finished."""
  out = teacher_outputs.teacher_outputs_dir(model_dir, trial)
  return (trial in results_lib.finished_trials(model_dir)
          and files.isdir(out)
          and any(n.endswith("_train.json") for n in files.listdir(out)))


def teacher_command(config, flagfile: str) -> List[str]:
  """The run_classifier.py command line the recipe trains `flagfile`'s
  teacher with: its flagfile, the output trials the student reads and the
  student's INHERITED_FLAGS."""
  # The teacher writes outputs for the trial the student reads as well as
  # its own (a flagfile's default is trial 0 only); the flag is rerun-safe.
  trials = config.teacher_flagfile_output_trials(flagfile)
  cmd = [f"--flagfile={flagfile}",
         f"--teacher_output_trials={','.join(map(str, trials))}"]
  for flag in INHERITED_FLAGS:
    value = getattr(config, flag)
    if flag == "debug":
      cmd.append("--debug" if value else "--nodebug")
    elif value:
      cmd.append(f"--{flag}={value}")
  return cmd


def check_teacher_run(model_dir: str, cmd: List[str],
                      differences: Differences):
  """A teacher run already in model_dir is used only if it is the run `cmd`
  would train: a student smoke run (--debug --max_train_steps=1) trains its
  flagfile teachers with those flags, in the flagfiles' own model_dirs, and
  a later full student would otherwise distil from that 1-step teacher
  because its outputs are present. The same rule as a model_dir's own
  resume: every setting but the rerun-safe ones."""
  try:
    diff = differences(model_dir, cmd)
  except BamError as e:  # its config.json unreadable, the flagfile bad
    raise BamError(f"--teachers: the teacher run in {model_dir}: {e}"
                   ) from e
  if diff:
    values = "; ".join(f"{k}: {there!r} there, {here!r} here"
                       for k, there, here in diff)
    raise BamError(
        f"--teachers: {model_dir} holds a teacher run trained with other "
        f"settings than this recipe's ({values}). To use that run as it "
        "is, name its folder in --teachers instead of the flagfile; to "
        "replace it, train it again with: python run_classifier.py "
        f"{' '.join(cmd)} --overwrite")


def ensure_teachers(config, train: Callable[[List[str]], None],
                    differences: Differences):
  """Trains each flagfile teacher whose outputs are missing: `train(args)`
  runs the run_classifier.py command line `args` (the runner's
  train_teacher). A teacher run trained with other settings is refused
  (check_teacher_run), whether its outputs are there or not;
  `differences(model_dir, args)` lists them (configure.run_differences)."""
  for model_dir, flagfile in sorted(config.teacher_flagfiles.items()):
    cmd = teacher_command(config, flagfile)
    check_teacher_run(model_dir, cmd, differences)
    if has_outputs(model_dir, config.teacher_trial):
      logging.info("Teacher %s: outputs present, skipping", model_dir)
      continue
    if config.teacher_trial in results_lib.finished_trials(model_dir):
      logging.warning(
          "Teacher %s: trial %d is finished (results.json) but its teacher "
          "outputs are missing; training it again with the same seed",
          model_dir, config.teacher_trial)
      cmd.insert(2, f"--retrain_trials={config.teacher_trial}")
    logging.info("Teacher %s: training (run_classifier.py %s)", model_dir,
                 " ".join(cmd))
    try:
      train(cmd)
    except BamError as e:
      raise BamError(f"--teachers: the teacher run {flagfile}: {e}") from e
    if not has_outputs(model_dir, config.teacher_trial):
      raise BamError(f"--teachers: {flagfile} finished without teacher "
                     f"outputs for trial {config.teacher_trial} (check its "
                     "--teacher_output_trials)")
