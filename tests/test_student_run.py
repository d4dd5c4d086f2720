"""End to end through the command line at --debug size: a teacher run writes
its outputs, an annealed student learns from them (lambda rising in the
progress lines; each batch of 8 in two length-sorted parts), and the student's
model_dir exports a SavedModel that
serves raw text in a fresh process (TensorFlow + tensorflow_text only) with
the same probabilities the student's own dev evaluation recorded."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from bam_tf.tasks import glue
from bam_tf.tasks import readers
from conftest import run_classifier as _run
from conftest import run_classifier_process

STEPS = 4

_SERVE = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
assert "bam_tf" not in sys.modules
model = tf.saved_model.load(sys.argv[1])
rows = json.loads(sys.argv[2])
out = model.signatures["rte"](text_a=tf.constant([r[0] for r in rows]),
                              text_b=tf.constant([r[1] for r in rows]))
print(json.dumps({"probs": out["rte_probabilities"].numpy().tolist(),
                  "labels": [x.decode() for x in out["rte_label"].numpy()],
                  "signatures": sorted(model.signatures)}))
"""


def test_teacher_student_export(tmp_path, glue_dir):
  teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
  common = [f"--data_dir={glue_dir}", "--debug", "--train_batch_size=8",
            "--eval_batch_size=8", "--log_every_steps=1"]
  _run(common + ["--task_names=rte", f"--model_dir={teacher}",
                 "--max_train_steps=3"])
  out = _run(common + ["--task_names=rte,sts", f"--model_dir={student}",
                       "--distill", f"--teachers=rte:{teacher}",
                       f"--max_train_steps={STEPS}",
                       "--teacher_output_trials=",
                       "--length_sorted_part_size=4"])
  # A teacher without dev outputs (the comparison reads them at the end) is
  # refused before the student trains or writes anything.
  partial = str(tmp_path / "partial_teacher")
  shutil.copytree(teacher, partial)
  for name in os.listdir(os.path.join(partial, "teacher_outputs", "trial_0")):
    if name.startswith("rte_dev."):
      os.remove(os.path.join(partial, "teacher_outputs", "trial_0", name))
  refused = str(tmp_path / "refused_student")
  proc = run_classifier_process(common + [
      "--task_names=rte", f"--model_dir={refused}", "--distill",
      f"--teachers=rte:{partial}", "--max_train_steps=1"])
  assert proc.returncode == 2, proc.stdout[-3000:]
  assert proc.stdout.strip().splitlines()[-1].startswith("error: teacher "
                                                         "file "), proc.stdout
  assert "rte_dev" in proc.stdout and "step 1/1" not in proc.stdout
  assert not os.path.exists(refused)
  # Teacher annealing: lambda = step / total at the start of each step.
  for step in range(1, STEPS + 1):
    assert f"step {step}/{STEPS} " in out
    line = [l for l in out.splitlines() if f"step {step}/{STEPS} " in l][0]
    assert f"lambda {(step - 1) / STEPS:.3f}" in line, line
  results = json.loads(open(os.path.join(student, "results.json")).read())
  assert set(results["trials"][0]["tasks"]) == {"rte", "sts"}
  config = json.loads(open(os.path.join(student, "config.json")).read())
  assert config["length_sorted_part_size"] == 4

  export_base = str(tmp_path / "export")
  out = _run([f"--model_dir={student}", "--mode=export",
              f"--export_dir={export_base}"])
  export_dir = os.path.join(export_base, "1")  # the first version
  assert f"exported SavedModel version 1 to {export_dir}" in out
  dev = readers.read_examples(glue.GLUE_TASKS["rte"], glue_dir, "dev",
                              max_rows=6)
  rows = [[e.text_a, e.text_b] for e in dev]
  served = subprocess.run(
      [sys.executable, "-c", _SERVE, export_dir, json.dumps(rows)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
  assert served.returncode == 0, served.stderr[-3000:]
  got = json.loads(served.stdout.strip().splitlines()[-1])
  assert {"rte", "sts"} <= set(got["signatures"])
  recorded = np.load(os.path.join(student, "trial_0", "predictions",
                                  "rte_dev.npz"))
  want = recorded["probabilities"][:len(rows)]
  np.testing.assert_allclose(np.array(got["probs"]), want, atol=1e-5)
  labels = glue.GLUE_TASKS["rte"].label_list
  assert got["labels"] == [labels[i] for i in want.argmax(-1)]
