"""Every file a run reads or writes goes through tf.io.gfile for a path that
is not local, so a model_dir and a cache in a gs:// bucket work as on disk.
Checked on TensorFlow's in-memory filesystem (ram://, one per process, so
the runs are in this process): a --debug teacher, a student distilled from
it, --mode=predict and --mode=export give what the same commands give on
local disk."""

import json
import os
import sys
import uuid

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from bam_tf.common import files
from bam_tf.common.errors import BamError
from conftest import REPO_ROOT
from conftest import comparable_results

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position


def _run(args):
  flags.FLAGS.unparse_flags()
  try:
    code = run_classifier.main(flags.FLAGS(["run_classifier"] + args))
  finally:
    flags.FLAGS.unparse_flags()
  assert code in (0, None), args


def _commands(base, glue_dir):
  common = ["--debug", "--deterministic", "--train_batch_size=8",
            "--eval_batch_size=8", f"--cache_dir={base}/cache",
            f"--data_dir={glue_dir}"]
  return [
      common + ["--task_names=rte", f"--model_dir={base}/teacher",
                "--max_train_steps=3"],
      common + ["--task_names=rte,sts", "--distill",
                f"--teachers=rte:{base}/teacher", f"--model_dir={base}/student",
                "--max_train_steps=4", "--teacher_output_trials="],
      [f"--model_dir={base}/student", "--mode=predict",
       f"--data_dir={glue_dir}", "--eval_batch_size=8"],
      [f"--model_dir={base}/student", "--mode=export",
       f"--export_dir={base}/export"],
  ]


def _serve(export_dir):
  model = tf.saved_model.load(export_dir)
  out = model.signatures["rte"](
      text_a=tf.constant(["A man is playing.", "Nobody came."]),
      text_b=tf.constant(["Someone plays.", "Everyone came."]))
  return out["rte_probabilities"].numpy()


@pytest.fixture(scope="module")
def both(glue_dir, tmp_path_factory):
  local = str(tmp_path_factory.mktemp("local"))
  ram = f"ram://bam_tf_test_{uuid.uuid4().hex[:8]}"
  for base in (local, ram):
    for args in _commands(base, glue_dir):
      _run(args)
  return local, ram


def test_runs_on_ram_match_local_disk(both):
  local, ram = both
  assert not files.is_local(ram)
  assert tf.io.gfile.exists(f"{ram}/student/results.json")
  assert not os.path.exists(ram.replace("ram://", ""))  # nothing on disk
  for run in ("teacher", "student"):
    assert comparable_results(f"{ram}/{run}") == comparable_results(
        f"{local}/{run}")
  for task in ("rte", "sts"):
    a = np.load(os.path.join(local, "student", "trial_0", "predictions",
                             f"{task}_dev.npz"))
    b = np.load(files.open_file(f"{ram}/student/trial_0/predictions/"
                                f"{task}_dev.npz", "rb"))
    for key in a.files:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  # Teacher outputs, features cache and checkpoints were written there.
  assert files.listdir(f"{ram}/teacher/teacher_outputs/trial_0")
  assert files.listdir(f"{ram}/cache/features")
  assert tf.train.latest_checkpoint(f"{ram}/student/trial_0/checkpoints")


def test_predict_and_export_on_ram_match_local_disk(both):
  local, ram = both
  folder = "student/test_predictions/trial_0"
  names = files.listdir(f"{local}/{folder}")
  assert names == ["rte_test.tsv", "sts_test.tsv"]
  assert files.listdir(f"{ram}/{folder}") == names
  for name in names:
    assert files.read_text(f"{ram}/{folder}/{name}") == files.read_text(
        f"{local}/{folder}/{name}")
  # A --debug run's test predictions cover the first 50 rows: no GLUE
  # submission (the leaderboard scores every row).
  assert "glue_submission" not in files.listdir(f"{local}/student")
  assert "glue_submission" not in files.listdir(f"{ram}/student")
  # The export is version 1 of the base, moved in file by file on ram://.
  assert files.isfile(f"{ram}/export/1/saved_model.pb")
  np.testing.assert_allclose(_serve(f"{ram}/export/1"),
                             _serve(f"{local}/export/1"), rtol=0, atol=0)
  # Nothing half-done is left beside the export or the run.
  assert files.listdir(ram) == ["cache", "export", "student", "teacher"]
  assert files.listdir(f"{ram}/export") == ["1"]


def _record(pid, host):
  import json  # pylint: disable=g-import-not-at-top
  return (json.dumps({"pid": pid, "host": host, "started": "x"}) + "\n"
          ).encode("utf-8")


def test_lock_on_a_filesystem_without_flock():
  import socket  # pylint: disable=g-import-not-at-top
  from bam_tf.common import lock  # pylint: disable=g-import-not-at-top
  folder = f"ram://bam_tf_lock_{uuid.uuid4().hex[:8]}/run"
  record = f"{folder}/{lock.LOCK_FILE}"
  held = lock.lock_dir(folder)
  assert files.read_json(record)["pid"] == os.getpid()
  assert lock.lock_dir(folder) is held  # re-entrant in this process
  held.release()
  held.release()
  assert not files.exists(record)  # a clean end deletes the record
  # A record left on this host by a process that is gone is taken over.
  files.write_bytes_atomic(record, _record(2 ** 22 + 7, socket.gethostname()))
  lock.lock_dir(folder).release()
  # One from another host cannot be checked: refused, saying what to do.
  files.write_bytes_atomic(record, _record(1, "other-host"))
  with pytest.raises(lock.FolderInUseError,
                     match=r"in use by another run \(PID 1 on other-host, "
                     r"started x\); .*; if that run is over \(killed on another "
                     r"host\), delete ram://.*/run/\.lock$"):
    lock.lock_dir(folder)


def test_two_runs_taking_a_bucket_folder_together_do_not_both_get_it(
    monkeypatch):
  """Without flock, finding no record and writing one are two requests: a
  rival that found none too writes its record while ours settles (done
  here in the settle time, so nothing depends on timing); the read-back
  sees it and this run refuses, leaving the rival's record in force."""
  import socket  # pylint: disable=g-import-not-at-top
  from bam_tf.common import lock  # pylint: disable=g-import-not-at-top
  folder = f"ram://bam_tf_lock_{uuid.uuid4().hex[:8]}/run"
  record = f"{folder}/{lock.LOCK_FILE}"
  rival = _record(1, "other-host")
  waits = []

  def settle(seconds):
    waits.append(seconds)
    files.write_bytes_atomic(record, rival)

  monkeypatch.setattr(lock.time, "sleep", settle)
  with pytest.raises(lock.FolderInUseError, match=(
      r"in use by another run \(PID 1 on other-host, started x\); .* \(it "
      r"started at the same moment as this one\)$")):
    lock.lock_dir(folder)
  assert waits == [lock.RECORD_SETTLE_S]
  assert files.read_bytes(record) == rival
  # Alone, the record read back is its own.
  monkeypatch.setattr(lock.time, "sleep", waits.append)
  files.remove(record)
  held = lock.lock_dir(folder)
  assert files.read_json(record)["host"] == socket.gethostname()
  held.release()


def test_reproduce_locks_an_out_dir_in_a_bucket():
  from bam_tf_experiments import reproduce  # pylint: disable=g-import-not-at-top
  out = f"ram://bam_tf_out_{uuid.uuid4().hex[:8]}/table1"
  held = reproduce.out_dir_lock(out).acquire()
  assert files.read_json(f"{out}/{reproduce.LOCK_FILE}")["pid"] == os.getpid()
  with pytest.raises(BamError, match=(
      r"^--out_dir: ram://.*/table1 is in use by another reproduce run "
      r"\(PID \d+ on .*; if that reproduce run is over \(killed, its PID "
      r"now another process's\), delete ram://.*/table1/\.reproduce\.lock$"
  )):
    reproduce.out_dir_lock(out).acquire()
  held.release()
  assert files.listdir(out) == []  # the record is deleted on release


def test_a_report_of_runs_in_a_bucket_matches_local_disk(both):
  """The report (and its plots) reads run dirs and writes --out_dir
  through bam_tf.common.files: a TPU run's model_dir is in a bucket."""
  from bam_tf_experiments import report  # pylint: disable=g-import-not-at-top
  local, ram = both
  written = {}
  for base, out in ((local, f"{local}_report"), (ram, f"{ram}_report")):
    assert report.main([
        f"--runs=Teacher:{base}/teacher,Student:{base}/student",
        "--baselines=Teacher", "--test=both", "--n_resamples=200",
        f"--out_dir={out}"]) == 0
    written[base] = {name: files.read_bytes(f"{out}/{name}")
                     for name in files.listdir(out)}
  assert not os.path.exists(f"{ram}_report")  # not a local "ram:" folder
  assert sorted(written[ram]) == sorted(written[local])
  assert "curves_Student_student.png" in written[ram]  # event files read
  def text(base, name):  # only the run dirs' paths differ
    return written[base][name].decode().replace(base, "BASE")

  for name in written[ram]:
    if name.endswith(".png"):
      assert written[ram][name][:8] == b"\x89PNG\r\n\x1a\n", name
  for name in ("table.csv", "comparisons.csv"):
    assert text(ram, name) == text(local, name), name
  # The same trials, seeds and steps; their seconds are each run's own.
  assert ([row.split(",")[:6] for row in text(ram, "compute.csv").split()] ==
          [row.split(",")[:6] for row in text(local, "compute.csv").split()])
  saved = {base: json.loads(text(base, "report.json")) for base in written}
  for key in ("cells", "trial_scores", "tests", "stats", "notes"):
    assert saved[ram][key] == saved[local][key], key
  assert saved[ram]["tests"]["bootstrap"]["comparisons"]  # read the npz
