"""Kill -9 at three points of a run, rerun the same command: the resumed run
ends with the same results as an unbroken one, bit for bit (CPU, same seed).

Real subprocesses at --debug size. The kills are placed by a wrapper that
patches the process it runs in: at a training step drawn at random, while a
checkpoint is half-written (data file truncated, `checkpoint` state not yet
updated) and in the middle of writing a teacher-output TFRecord.
"""

import os
import random
import subprocess
import sys

import tensorflow as tf

from conftest import REPO_ROOT
from conftest import assert_same_dev_predictions
from conftest import comparable_results
from conftest import finish

TOTAL_STEPS = 16
EVERY = 4

_WRAPPER = r"""
import os, signal, sys
sys.path.insert(0, {root!r})
import bam_tf
point, arg = sys.argv[1].split(":")
sys.argv = [os.path.join({root!r}, "run_classifier.py")] + sys.argv[2:]

def die():
  sys.stdout.flush(); sys.stderr.flush()
  os.kill(os.getpid(), signal.SIGKILL)

if point == "step":
  from bam_tf.training import callbacks
  orig_step = callbacks.ProgressLogger.on_train_batch_end
  def on_step(self, batch, logs=None):
    orig_step(self, batch, logs)
    if int(self.model.optimizer.iterations.numpy()) == int(arg):
      die()
  callbacks.ProgressLogger.on_train_batch_end = on_step
elif point == "checkpoint":
  from tensorflow.python.checkpoint import checkpoint_management as cm
  orig_record = cm.CheckpointManager._record_state
  def record(self):
    path = self._latest_checkpoint
    if path.endswith("-" + arg):
      data = path + ".data-00000-of-00001"
      with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
      die()  # data half there, the state file still names the previous one
    orig_record(self)
  cm.CheckpointManager._record_state = record
elif point == "teacher_outputs":
  from bam_tf.data import features
  orig_write = features.write_records_atomic  # every TFRecord bam_tf writes
  calls = []
  def write(path, records):
    if os.sep + "teacher_outputs" + os.sep not in path:
      return orig_write(path, records)
    calls.append(path)
    if len(calls) == int(arg):
      def half():
        for i, r in enumerate(records):
          if i == 20:
            die()
          yield r
      return orig_write(path, half())
    return orig_write(path, records)
  features.write_records_atomic = write

from absl import app
import run_classifier
app.run(run_classifier.main)
"""


def _args(glue_dir, model_dir):
  return ["--task_names=rte,sts", f"--data_dir={glue_dir}",
          f"--model_dir={model_dir}", "--debug", "--deterministic",
          f"--max_train_steps={TOTAL_STEPS}", "--train_batch_size=8",
          "--eval_batch_size=8", f"--save_checkpoints_steps={EVERY}",
          "--keep_checkpoint_max=5", "--log_every_steps=1"]


def _run(args, kill_at=None):
  cmd = [sys.executable]
  if kill_at:
    cmd += ["-c", _WRAPPER.format(root=REPO_ROOT), kill_at]
  else:
    cmd += [os.path.join(REPO_ROOT, "run_classifier.py")]
  return subprocess.Popen(cmd + args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _latest(model_dir):
  path = tf.train.latest_checkpoint(
      os.path.join(model_dir, "trial_0", "checkpoints"))
  return int(path.rsplit("-", 1)[1]) if path else 0


def _teacher_files(model_dir):
  """Each teacher TFRecord as its records' feature values (the serialised
  bytes may order a proto map differently from process to process)."""
  out = os.path.join(model_dir, "teacher_outputs", "trial_0")
  files = {}
  for name in sorted(os.listdir(out)):
    if name.endswith(".tfrecord"):
      records = []
      for raw in tf.data.TFRecordDataset(os.path.join(out, name)):
        example = tf.train.Example.FromString(raw.numpy())
        records.append({k: list(getattr(v, v.WhichOneof("kind")).value)
                        for k, v in example.features.feature.items()})
      files[name] = records
  return files


def test_killed_three_times_resumes_to_identical_results(tmp_path, glue_dir):
  ref_dir, ref2_dir, run_dir = (str(tmp_path / n)
                                for n in ("ref", "ref2", "run"))
  refs = [_run(_args(glue_dir, d)) for d in (ref_dir, ref2_dir)]
  # Between checkpoints (a kill at a checkpoint step lands before its save).
  kill_step = random.Random().choice(
      [s for s in range(EVERY + 1, 3 * EVERY) if s % EVERY])
  print(f"killing at step {kill_step}")

  # 1. A kill at a random step between checkpoints.
  code, out = finish(_run(_args(glue_dir, run_dir), f"step:{kill_step}"))
  assert code == -9, out[-3000:]
  resumed_from = kill_step // EVERY * EVERY
  assert _latest(run_dir) == resumed_from

  # 2. Rerun; killed while writing the next checkpoint.
  half_written = resumed_from + EVERY
  code, out = finish(_run(_args(glue_dir, run_dir),
                           f"checkpoint:{half_written}"))
  assert code == -9, out[-3000:]
  assert f"ckpt-{resumed_from} (step {resumed_from})" in out
  assert _latest(run_dir) == resumed_from  # the torn one is not used

  # 3. Rerun; trains to the end, killed writing the 2nd teacher file.
  code, out = finish(_run(_args(glue_dir, run_dir), "teacher_outputs:2"))
  assert code == -9, out[-3000:]
  assert f"ckpt-{resumed_from} (step {resumed_from})" in out
  assert _latest(run_dir) == TOTAL_STEPS
  assert not os.path.exists(os.path.join(run_dir, "results.json"))

  # 4. Rerun to the end.
  code, out = finish(_run(_args(glue_dir, run_dir)))
  assert code == 0, out[-3000:]
  assert "Training already finished (16 steps)" in out

  for proc in refs:
    code, out = finish(proc)
    assert code == 0, out[-3000:]
  # The same seed twice gives the same results, and so does the killed run.
  assert comparable_results(ref_dir) == comparable_results(ref2_dir)
  assert comparable_results(run_dir) == comparable_results(ref_dir)
  assert_same_dev_predictions(ref_dir, run_dir, ["rte", "sts"])
  assert _teacher_files(run_dir) == _teacher_files(ref_dir)
  assert len(_teacher_files(run_dir)) == 6  # train, dev, test x 2 tasks
