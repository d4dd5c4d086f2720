"""Work is not lost or corrupted by how runs meet a model_dir (issue 25):
two runs in one model_dir, a resume onto data that changed, a student whose
model_dir is a run it reads, a kill between results.json and results.txt.

Real subprocesses at --debug size; refusals that come before any training
also run through `run_classifier.main` in this process (as
tests/test_bad_input.py does). A run is held mid-training by a wrapper that
blocks right after a checkpoint: no timing is assumed.
"""

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from absl import flags

from conftest import REPO_ROOT
from conftest import run_classifier as _run

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position

HOST = socket.gethostname()

# Runs run_classifier with the flags after argv[1:3]; once the checkpoint of
# step argv[2] is saved it writes its pid to argv[1] and waits to be killed.
_HOLD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
import bam_tf
marker, hold_at = sys.argv[1], int(sys.argv[2])
sys.argv = [os.path.join({root!r}, "run_classifier.py")] + sys.argv[3:]
from bam_tf.training import callbacks
orig = callbacks.CheckpointEveryN.on_train_batch_end
def on_step(self, batch, logs=None):
  orig(self, batch, logs)
  if int(self.model.optimizer.iterations.numpy()) == hold_at:
    with open(marker + ".tmp", "w") as f:
      f.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    time.sleep(3600)
callbacks.CheckpointEveryN.on_train_batch_end = on_step
from absl import app
import run_classifier
app.run(run_classifier.main)
"""


def _args(data_dir, model_dir, steps, *extra):
  return ["--task_names=rte", f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", "--debug", f"--max_train_steps={steps}",
          "--train_batch_size=8", "--eval_batch_size=8",
          "--save_checkpoints_steps=2", "--log_every_steps=1"] + list(extra)


def _start_held(args, marker, hold_at=2):
  """A run that trains to `hold_at` (checkpoint saved) and stays there."""
  proc = subprocess.Popen(
      [sys.executable, "-c", _HOLD.format(root=REPO_ROOT), str(marker),
       str(hold_at)] + args,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 900
  while not os.path.exists(marker):
    if proc.poll() is not None:
      pytest.fail("the held run ended early:\n" + proc.stdout.read()[-4000:])
    if time.time() > deadline:
      proc.kill()
      pytest.fail("the held run did not reach its checkpoint in 900 s")
    time.sleep(0.5)
  return proc


def _cli(args, timeout=900):
  """run_classifier.py in a fresh process: (exit code, stdout, stderr)."""
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_classifier.py")] + args,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      timeout=timeout, cwd=REPO_ROOT)
  return proc.returncode, proc.stdout, proc.stderr


def _main(args, capsys):
  """run_classifier.main in this process: (exit code, stderr)."""
  capsys.readouterr()
  flags.FLAGS.unparse_flags()
  try:
    code = run_classifier.main(flags.FLAGS(["run_classifier"] + args))
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


def _error_line(err):
  lines = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, err[-4000:]
  return lines[0]


def _listing(folder, skip=("tensorboard", ".lock")):
  """{path: (size, mtime)} of everything under folder: what a refused run
  must leave as it was (TensorBoard files of a held run may still flush; the
  lock file is checked on its own)."""
  out = {}
  for root, dirs, names in os.walk(folder):
    dirs[:] = [d for d in dirs if d not in skip]
    for name in names:
      if name in skip:
        continue
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
  return out


# 1. Two processes, one model_dir.


def test_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(
    tmp_path, glue_dir):
  model_dir = tmp_path / "run"
  marker = tmp_path / "held"
  args = _args(glue_dir, model_dir, 6, "--teacher_output_trials=")
  first = _start_held(args, marker)
  try:
    before = _listing(model_dir)
    code, _, err = _cli(args)  # the same command again
    assert code == 2, err[-4000:]
    line = _error_line(err)
    assert f"--model_dir: {model_dir} is in use by another run (PID " \
           f"{first.pid} on {HOST}, started " in line, line
    assert _listing(model_dir) == before  # nothing written
  finally:
    first.kill()  # SIGKILL: the lock file still names it
    first.wait()
  holder = json.loads((model_dir / ".lock").read_text())
  assert holder["pid"] == first.pid and holder["host"] == HOST
  # A save killed half-way leaves its shards folder (removed on resume).
  torn = model_dir / "trial_0" / "checkpoints" / "ckpt-4_temp"
  torn.mkdir()
  (torn / "part-00000-of-00001.index").write_bytes(b"torn")

  out = _run(args)
  assert f"Taking over the lock of {model_dir} left by PID {first.pid} on " \
         f"{HOST}" in out, out[-4000:]
  assert "ckpt-2 (step 2)" in out  # resumed where the killed run was
  assert "step 6/6" in out
  assert not torn.exists()
  assert (model_dir / ".lock").read_text() == ""  # released on exit


def test_overwrite_keeps_the_lock_file_locked(tmp_path):
  """--overwrite clears a model_dir but its lock file: deleting that would
  let another run lock a new file while this one holds the old."""
  from bam_tf.common import lock  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "run"
  held = lock.lock_dir(str(folder))
  try:
    (folder / "trial_0").mkdir()
    (folder / "config.json").write_text("{}")
    lock.clear_folder(str(folder))
    assert os.listdir(folder) == [".lock"]
    fd = os.open(folder / ".lock", os.O_RDWR)
    try:
      with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file
    finally:
      os.close(fd)
    assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
  finally:
    held.release()
  assert (folder / ".lock").read_text() == ""


# 2. Resume after the data changed.


def _flip_labels(path, rows=10):
  """Swaps entailment / not_entailment on the first `rows` data rows."""
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  for i in range(1, rows + 1):
    head, label = lines[i].rsplit(b"\t", 1)
    flipped = (b"entailment" if label.strip() == b"not_entailment"
               else b"not_entailment")
    lines[i] = head + b"\t" + flipped + label[len(label.rstrip()):]
  with open(path, "wb") as f:
    f.write(b"\n".join(lines))


def test_resume_onto_changed_training_data_is_refused(tmp_path, glue_dir,
                                                      capsys):
  data = tmp_path / "glue"
  shutil.copytree(os.path.join(glue_dir, "RTE"), data / "RTE")
  model_dir = tmp_path / "run"
  args = _args(data, model_dir, 4, "--teacher_output_trials=")
  first = _start_held(args, tmp_path / "held")
  first.kill()  # killed after ckpt-2
  first.wait()
  train = data / "RTE" / "train.tsv"
  was = hashlib.sha256(train.read_bytes()).hexdigest()
  _flip_labels(train)
  now = hashlib.sha256(train.read_bytes()).hexdigest()

  before = _listing(model_dir)
  code, err = _main(args, capsys)
  assert code == 2, err[-4000:]
  line = _error_line(err)
  assert line == (f"error: --data_dir: {train} changed since this run started "
                  f"training in {model_dir} (its sha256 was {was[:12]}..., "
                  f"now {now[:12]}...); use --overwrite to start over, or "
                  "another --model_dir"), line
  assert _listing(model_dir) == before  # nothing written, nothing resumed
  recorded = json.loads((model_dir / "data_fingerprint.json").read_text())
  assert recorded["data"]["rte"]["train"]["data_sha256"] == was
  assert set(recorded["data"]["rte"]) == {"train", "dev"}
  assert recorded["encoder"]["do_lower_case"] is True

  out = _run(args + ["--overwrite"])
  assert f"--overwrite: deleting {model_dir} (--data_dir: {train} changed" \
         in out, out[-4000:]
  assert "Resumed from" not in out
  after = json.loads((model_dir / "data_fingerprint.json").read_text())
  assert after["data"]["rte"]["train"]["data_sha256"] == now
  assert after["data"]["rte"]["dev"] == recorded["data"]["rte"]["dev"]


def test_a_run_spelled_otherwise_or_moved_resumes(tmp_path, glue_dir,
                                                 capsys):
  """Paths compare by where they point: a --model_dir or --data_dir with a
  trailing slash, '//' or '.' was 'another configuration (differs in:
  model_dir)', which invites --overwrite. A run folder copied elsewhere is
  the same run: it resumes from its checkpoint there."""
  model_dir = tmp_path / "run"
  first = _start_held(_args(glue_dir, model_dir, 4,
                            "--teacher_output_trials="), tmp_path / "held")
  first.kill()  # killed after ckpt-2
  first.wait()
  moved = tmp_path / "moved" / "run"
  shutil.copytree(model_dir, moved)
  spelled = f"{tmp_path}/moved/./run/"
  out = _run(_args(f"{glue_dir}//", spelled, 4, "--teacher_output_trials="))
  assert f"Resumed from {spelled}trial_0/checkpoints/ckpt-2 (step 2)" in out, (
      out[-4000:])
  results = json.loads((moved / "results.json").read_text())
  assert [t["trial"] for t in results["trials"]] == [0]
  assert json.loads((moved / "config.json").read_text())["model_dir"] == (
      spelled)
  # What is trained still counts.
  code, err = _main(_args(glue_dir, moved, 4, "--teacher_output_trials=",
                          "--learning_rate=1e-3"), capsys)
  assert code == 2, err[-4000:]
  assert _error_line(err) == (
      f"error: --model_dir: {moved} holds a run with another configuration "
      "(differs in: learning_rate); use another --model_dir, or --overwrite "
      "to delete it"), err[-4000:]


def test_resume_onto_changed_teacher_outputs_is_refused(tmp_path):
  """A teacher trained again in the same folder gives the student other
  targets under the same flags: the student's fingerprint records their
  digest, so its resume is refused like one onto changed data."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  from bam_tf.distill.teacher_outputs import TeacherTargets  # pylint: disable=g-import-not-at-top
  from bam_tf.tasks.task import CLASSIFICATION, REGRESSION  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(50, 2))
  probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
  source = str(tmp_path / "teacher/teacher_outputs/trial_0/rte_train.tfrecord")

  def fingerprint(p):
    rte = TeacherTargets("rte", CLASSIFICATION, np.arange(50), probs=p,
                         sources=[source])
    sts = TeacherTargets("sts", REGRESSION, np.arange(9),
                         values=np.linspace(0, 1, 9), sources=["sts.tfrecord"])
    return {"data": {}, "encoder": {"vocab_sha256": "v", "do_lower_case": True,
                                    "max_seq_length": 128},
            "teachers": runner.teachers_fingerprint({"sts": sts, "rte": rte})}

  saved = fingerprint(probs.astype(np.float32))
  assert list(saved["teachers"]) == ["rte", "sts"]
  # Read again (float64 from another reader): the same targets.
  assert runner.fingerprint_change(saved, fingerprint(probs), "run") == ""
  retrained = probs.copy()
  retrained[7] = retrained[7, ::-1]
  assert runner.fingerprint_change(saved, fingerprint(retrained), "run") == (
      f"--teachers: the outputs of rte's teacher ({source}) changed since "
      "this run started training in run")
  # A run recorded before teachers were fingerprinted resumes as before.
  del saved["teachers"]
  assert runner.fingerprint_change(saved, fingerprint(retrained), "run") == ""


# 3. A model_dir that is, contains or lies inside a run it reads.


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, glue_dir):
  """A finished teacher run (checkpoints, results, teacher outputs) at
  <tmp>/runs/teacher."""
  model_dir = tmp_path_factory.mktemp("own") / "runs" / "teacher"
  _run(_args(glue_dir, model_dir, 2))
  return model_dir


@pytest.mark.parametrize("case", ["same_overwrite", "inside", "contains",
                                  "symlink", "flagfile", "init_from"])
def test_model_dir_overlapping_a_run_it_reads_is_refused(
    case, finished_run, glue_dir, tmp_path, capsys):
  teacher = finished_run
  student = {"same_overwrite": teacher, "inside": teacher / "student",
             "contains": teacher.parent, "symlink": tmp_path / "alias",
             "flagfile": teacher, "init_from": teacher}[case]
  relation = {"inside": "lies inside",
              "contains": "contains"}.get(case, "is the same folder as")
  if case == "symlink":
    os.symlink(teacher, student)
  source, flag = str(teacher), "--teachers"
  extra = ["--distill", f"--teachers=rte:{teacher}"]
  if case == "flagfile":
    source = str(tmp_path / "teacher.cfg")
    with open(source, "w") as f:
      f.write("\n".join(_args(glue_dir, teacher, 2)) + "\n")
    extra = ["--distill", f"--teachers=rte:{source}"]
    source = str(teacher)  # the model_dir the flagfile names
  if case == "init_from":
    flag, extra = "--init_from", [f"--init_from={teacher}"]
  before = _listing(teacher)
  code, err = _main(_args(glue_dir, student, 2, "--overwrite", *extra),
                    capsys)
  assert code == 2
  line = _error_line(err)
  assert line.startswith(f"error: --model_dir and {flag}: {student} "
                         f"{relation} {source}, the run {flag} reads "
                         "from"), line
  assert _listing(teacher) == before
  assert not (teacher / "student").exists()
  assert (teacher / "teacher_outputs" / "trial_0" /
          "rte_train.tfrecord").exists()


# 4. A kill between results.json and results.txt; an older model_dir.


def test_rerun_completes_what_a_kill_after_results_json_left(
    finished_run, glue_dir):
  model_dir = finished_run
  text = (model_dir / "results.txt").read_text()
  (model_dir / "results.txt").unlink()
  # A model_dir written before runs recorded their data: accepted, recorded.
  fingerprint = model_dir / "data_fingerprint.json"
  recorded = fingerprint.read_text() if fingerprint.exists() else None
  fingerprint.unlink(missing_ok=True)
  out = _run(_args(glue_dir, model_dir, 2))
  assert "Trial 0 already finished; skipping" in out
  assert (model_dir / "results.txt").exists(), "results.txt not written"
  assert (model_dir / "results.txt").read_text() == text
  assert "results.txt is missing or older than results.json; writing it " \
         "again" in out, out[-4000:]
  assert f"{model_dir} has no data_fingerprint.json" in out
  assert fingerprint.read_text() == recorded
