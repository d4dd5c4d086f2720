"""A teacher run restored on a fresh machine from its committed records
alone (results.json, configs; no checkpoints, no teacher outputs) still
serves a student: the recipe trains the lost teacher trial again with its
own seed, and on CPU that repeats it exactly (same metrics, same per-example
predictions, same teacher outputs), while the teacher's other trials are
left as they are."""

import os
import shutil

import numpy as np

from bam_tf.outputs import results as results_lib
from conftest import run_classifier as _run

STEPS = 3


def _npz(path):
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def _records(path):
  """{eid: (logits, probabilities)} of a teacher outputs file."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
    f = tf.train.Example.FromString(raw).features.feature
    out[f["eid"].int64_list.value[0]] = (
        tuple(f["logits"].float_list.value),
        tuple(f["probabilities"].float_list.value))
  return out


def test_student_retrains_a_teacher_trial_whose_outputs_were_lost(
    tmp_path, glue_dir):
  teacher = str(tmp_path / "teacher")
  common = [f"--data_dir={glue_dir}", "--debug", "--eval_batch_size=8",
            f"--max_train_steps={STEPS}"]
  cfg = tmp_path / "teacher.cfg"
  cfg.write_text("\n".join(["--task_names=rte", "--train_batch_size=8",
                            "--num_trials=2", f"--model_dir={teacher}"] +
                           common) + "\n")
  _run([f"--flagfile={cfg}"])
  before = results_lib.load(teacher)["trials"]
  preds_path = os.path.join(teacher, "trial_0", "predictions", "rte_dev.npz")
  outputs = os.path.join(teacher, "teacher_outputs", "trial_0")
  preds_before = _npz(preds_path)
  records_before = _records(os.path.join(outputs, "rte_train.tfrecord"))

  # What a fresh clone holds: the records, not the weights or the outputs.
  shutil.rmtree(outputs)
  for t in (0, 1):
    for folder in ("checkpoints", "final"):
      shutil.rmtree(os.path.join(teacher, f"trial_{t}", folder))
  os.remove(preds_path)

  out = _run(common + ["--task_names=rte", "--train_batch_size=8",
                       f"--model_dir={tmp_path / 'student'}", "--distill",
                       f"--teachers=rte:{cfg}", "--teacher_output_trials="])
  assert "trial 0 is finished (results.json) but its teacher outputs are " \
         "missing" in out
  assert "Trial 1 already finished; skipping" in out
  assert "Trial 0: --retrain_trials; training it again with seed 1" in out

  after = results_lib.load(teacher)["trials"]
  assert [t["trial"] for t in after] == [0, 1]
  assert after[1] == before[1]  # untouched
  for key in ("seed", "train_steps", "tasks", "averages"):
    assert after[0][key] == before[0][key], key
  preds_after = _npz(preds_path)
  for key, value in preds_before.items():
    np.testing.assert_array_equal(preds_after[key], value)
  records_after = _records(os.path.join(outputs, "rte_train.tfrecord"))
  assert records_after == records_before
  assert len(records_after) == len(records_before) > 0
  student = results_lib.load(str(tmp_path / "student"))["trials"]
  assert [t["trial"] for t in student] == [0]
