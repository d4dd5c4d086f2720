"""SIGTERM (the notice before a preemption) and what killed saves leave.

SIGTERM: the run writes a checkpoint at the step it is at, whatever
--save_checkpoints_steps says, exits with one line, and the rerun resumes
from it to the same results as an unbroken run (CPU, same seed; each batch
in length-sorted parts, whose dropout draws must continue too). Checked
through a real run_classifier.py process signalled from outside, and in
process (the line, the checkpoint, the handler put back).

Stale temp folders: a save killed half-way leaves TensorFlow's
`ckpt-N_temp/` (and possibly `checkpoint.tmp<hex>`); the next fit removes
them.
"""

import json
import os
import re
import signal
import subprocess
import sys
import types

import pytest
import tensorflow as tf

from bam_tf.common import files
from bam_tf.training import trainer
from conftest import REPO_ROOT
from conftest import assert_same_dev_predictions
from conftest import comparable_results
from conftest import finish
from conftest import tiny_rte_sts_batch
from conftest import tiny_rte_sts_model

TOTAL_STEPS = 40
SIGNAL_AFTER = 3  # SIGTERM once a progress line shows this step
LINE = re.compile(r"^error: SIGTERM at step (\d+): checkpoint ckpt-(\d+) "
                  r"written; rerun the same command to resume$", re.M)

# run_classifier.py, paced to >= 0.3 s a step: a --debug step takes a few
# milliseconds, and on a busy machine the run could otherwise end before
# the signal arrives. Pacing changes no computation.
_PACED = r"""
import sys, time
sys.path.insert(0, {root!r})
import bam_tf
from bam_tf.training import callbacks
orig = callbacks.ProgressLogger.on_train_batch_end
def on_step(self, batch, logs=None):
  orig(self, batch, logs)
  time.sleep(0.3)
callbacks.ProgressLogger.on_train_batch_end = on_step
sys.argv[0] = "run_classifier.py"
from absl import app
import run_classifier
app.run(run_classifier.main)
"""


def _args(glue_dir, model_dir):
  # No periodic checkpoint is due before the end.
  return ["--task_names=rte,sts", f"--data_dir={glue_dir}",
          f"--model_dir={model_dir}", "--debug", "--deterministic",
          f"--max_train_steps={TOTAL_STEPS}", "--train_batch_size=8",
          "--eval_batch_size=8", "--save_checkpoints_steps=1000",
          "--log_every_steps=1", "--teacher_output_trials=",
          "--length_sorted_part_size=4"]


def _start(args, paced=False):
  if paced:
    cmd = [sys.executable, "-c", _PACED.format(root=REPO_ROOT)]
  else:
    cmd = [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py")]
  return subprocess.Popen(cmd + args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)


def _checkpoints(model_dir):
  folder = os.path.join(model_dir, "trial_0", "checkpoints")
  return sorted(int(m.group(1)) for m in (
      re.match(r"^ckpt-(\d+)\.index$", n) for n in os.listdir(folder)) if m)


def test_sigterm_checkpoints_current_step_and_resumes_exactly(tmp_path,
                                                              glue_dir):
  ref_dir, run_dir = str(tmp_path / "ref"), str(tmp_path / "run")
  ref = _start(_args(glue_dir, ref_dir))
  proc = _start(_args(glue_dir, run_dir), paced=True)
  lines = []
  progress = re.compile(rf"step (\d+)/{TOTAL_STEPS} ")
  for line in proc.stdout:  # until a progress line shows step >= k
    lines.append(line)
    m = progress.search(line)
    if m and int(m.group(1)) >= SIGNAL_AFTER:
      proc.send_signal(signal.SIGTERM)
      break
  code, rest = finish(proc)
  out = "".join(lines) + rest
  assert code == 2, out[-3000:]
  m = LINE.search(out)
  assert m, out[-3000:]
  step = int(m.group(1))
  assert int(m.group(2)) == step
  assert SIGNAL_AFTER <= step < TOTAL_STEPS, out[-3000:]
  # Saved though no periodic checkpoint was due; training stopped there,
  # nothing was evaluated.
  assert _checkpoints(run_dir) == [step]
  progress_json = files.read_json(
      os.path.join(run_dir, "trial_0", trainer.PROGRESS_JSON))
  assert progress_json["step"] == step
  assert not os.path.exists(os.path.join(run_dir, "results.json"))
  assert "Traceback" not in out

  code, out = finish(_start(_args(glue_dir, run_dir)))
  assert code == 0, out[-3000:]
  assert f"ckpt-{step} (step {step})" in out
  code, ref_out = finish(ref)
  assert code == 0, ref_out[-3000:]
  assert comparable_results(run_dir) == comparable_results(ref_dir)
  assert_same_dev_predictions(ref_dir, run_dir, ["rte", "sts"])


# --------------------------------------------------------------- in process


def _dataset():
  return tf.data.Dataset.from_tensors(tiny_rte_sts_batch()).repeat()


def _config(every):
  return types.SimpleNamespace(keep_checkpoint_max=5, log_every_steps=1,
                               save_checkpoints_steps=every)


def _sigterm_at(step):
  """An lr_fn (called by the progress line after every step) that sends
  this process SIGTERM after `step`."""
  def lr_fn(current):
    if current == step:
      signal.raise_signal(signal.SIGTERM)
    return 1e-3
  return lr_fn


def test_sigterm_in_fit_saves_stops_and_restores_handler(tmp_path):
  calls = []

  def previous(signum, frame):  # the handler fit must put back
    calls.append(signum)

  before = signal.signal(signal.SIGTERM, previous)
  try:
    with pytest.raises(trainer.PreemptedError) as info:
      trainer.fit(tiny_rte_sts_model(), _dataset(), 10, str(tmp_path), _config(100),
                  lr_fn=_sigterm_at(3))
    assert str(info.value) == ("SIGTERM at step 3: checkpoint ckpt-3 "
                               "written; rerun the same command to resume")
    assert signal.getsignal(signal.SIGTERM) is previous
    assert not calls  # fit's own handler took the signal
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest.endswith("ckpt-3")
    assert files.read_json(str(tmp_path / trainer.PROGRESS_JSON))[
        "step"] == 3

    # The rerun resumes at step 3 and finishes.
    model = tiny_rte_sts_model()
    trainer.fit(model, _dataset(), 10, str(tmp_path), _config(100),
                lr_fn=lambda step: 1e-3)
    assert int(model.optimizer.iterations.numpy()) == 10
    assert signal.getsignal(signal.SIGTERM) is previous

    # Multi-worker runs leave SIGTERM alone (saving there is collective).
    with trainer.stop_on_sigterm(enabled=False) as request:
      assert signal.getsignal(signal.SIGTERM) is previous
    assert not request.received
  finally:
    signal.signal(signal.SIGTERM, before)


def test_stale_checkpoint_temp_folders_removed_on_resume(tmp_path):
  folder = tmp_path / "checkpoints"
  trainer.fit(tiny_rte_sts_model(), _dataset(), 4, str(tmp_path), _config(2),
              lr_fn=lambda step: 1e-3)
  assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-4")
  # What a save killed half-way leaves: TF writes the shards of ckpt-N
  # into ckpt-N_temp/ before merging them, and the state file through a
  # temporary name.
  temp = folder / "ckpt-3_temp"
  temp.mkdir()
  (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 64)
  (temp / "part-00000-of-00001.index").write_bytes(b"x" * 8)
  state_tmp = folder / ("checkpoint.tmp" + "0123456789abcdef" * 2)
  state_tmp.write_text("model_checkpoint_path: \"ckpt-\"\n")
  kept = sorted(os.listdir(folder))

  model = tiny_rte_sts_model()
  trainer.fit(model, _dataset(), 8, str(tmp_path), _config(2),
              lr_fn=lambda step: 1e-3)
  assert int(model.optimizer.iterations.numpy()) == 8
  names = sorted(os.listdir(folder))
  assert "ckpt-3_temp" not in names and state_tmp.name not in names, names
  assert not [n for n in names if n.endswith("_temp")], names
  assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-8")
  assert set(kept) - set(names) == {"ckpt-3_temp", state_tmp.name}


def test_a_trial_resumed_or_added_under_other_settings_records_them(
    tmp_path, glue_dir):
  """--length_sorted_part_size (like the strategy, XLA, determinism) is
  rerun-safe but moves the numbers: each trial records the settings of each
  stretch of its steps, and results.txt names the ones that differ, since
  config.json holds only the latest command's."""
  run_dir = str(tmp_path / "run")
  proc = _start(_args(glue_dir, run_dir), paced=True)
  progress = re.compile(rf"step (\d+)/{TOTAL_STEPS} ")
  for line in proc.stdout:
    m = progress.search(line)
    if m and int(m.group(1)) >= SIGNAL_AFTER:
      proc.send_signal(signal.SIGTERM)
      break
  code, out = finish(proc)
  assert code == 2, out[-3000:]
  step = _checkpoints(run_dir)[-1]

  other = [a for a in _args(glue_dir, run_dir)
           if not a.startswith("--length_sorted_part_size")]
  code, out = finish(_start(other + ["--length_sorted_part_size=0"]))
  assert code == 0, out[-3000:]
  assert (f"This trial resumes at step {step} with other settings than its "
          "earlier steps (length_sorted_part_size 4 -> 0)") in out, out[-3000:]
  code, out = finish(_start(other + ["--num_trials=2"]))
  assert code == 0, out[-3000:]

  with open(os.path.join(run_dir, "results.json")) as f:
    trials = json.load(f)["trials"]
  same = {"strategy": "one_device", "replicas": 1, "jit_compile": False,
          "deterministic": True}
  assert trials[0]["train_settings"] == [
      dict(from_step=0, length_sorted_part_size=4, **same),
      dict(from_step=step, length_sorted_part_size=0, **same)]
  assert trials[1]["train_settings"] == [
      dict(from_step=0, length_sorted_part_size=0, **same)]
  with open(os.path.join(run_dir, "results.txt")) as f:
    text = f.read()
  assert text.endswith(
      "Trials trained under different settings (they move the numbers by "
      "float rounding and dropout draws):\n"
      f"  trial 0: length_sorted_part_size=4 from step 0; "
      f"length_sorted_part_size=0 from step {step}\n"
      "  trial 1: length_sorted_part_size=0\n"), text
