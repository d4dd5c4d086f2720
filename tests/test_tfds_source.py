"""GLUE through tensorflow-datasets (--data_source=tfds) gives exactly the
TSV readers' examples, and a student reading TFDS learns from a teacher
trained on the TSV files as a TSV student does.

The TFDS datasets are prepared here, offline, from the shared GLUE TSVs by
TFDS's own GLUE builder and writer (bam_tf.tools.tfds_glue), then read back
through tfds.builder like any prepared TFDS dataset.
"""

import os

import numpy as np
import pytest

from bam_tf.common import files
from bam_tf.tasks import glue
from bam_tf.tasks import readers
from bam_tf.tasks import tfds_glue
from bam_tf.tools import tfds_glue as prepare_tool
from conftest import assert_same_dev_predictions
from conftest import comparable_results
from conftest import run_classifier

TASKS = {"cola": "cola", "sst": "sst2", "mrpc": "mrpc", "sts": "stsb",
         "rte": "rte"}


@pytest.fixture(scope="module")
def tfds_dir(glue_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("tfds"))
  prepare_tool.prepare(glue_dir, out, list(TASKS.values()))
  return out


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_split_gives_the_tsv_examples(name, glue_dir, tfds_dir):
  task = glue.GLUE_TASKS[name]
  assert tfds_glue.tfds_splits(task) == ["train", "dev", "test"]
  for split in ("train", "dev", "test"):
    want = readers.read_examples(task, glue_dir, split)
    got = tfds_glue.read_examples(task, tfds_dir, split)
    assert len(got) == len(want) == task.official_counts[split] * (
        2 if split == "train" and task.double_unordered else 1)
    diff = [(w, g) for w, g in zip(want, got) if w != g]
    assert not diff, (split, len(diff), diff[:3])
  first = tfds_glue.read_examples(task, tfds_dir, "dev", max_rows=7)
  assert first == readers.read_examples(task, glue_dir, "dev", max_rows=7)


def test_mrpc_ids_are_tsv_rows_not_tfds_idx(tfds_dir):
  # TFDS numbers MRPC's train and dev rows together (one Microsoft file):
  # its dev idx values start after the train rows; ours are row numbers.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("glue/mrpc", data_dir=tfds_dir)
  idx = [int(x["idx"]) for x in tfds.as_numpy(builder.as_dataset(
      split="validation"))]
  assert min(idx) == 3668
  dev = tfds_glue.read_examples(glue.GLUE_TASKS["mrpc"], tfds_dir, "dev")
  assert [e.eid for e in dev] == list(range(408))


def test_tfds_student_learns_from_a_tsv_teacher_as_a_tsv_student(
    tmp_path, glue_dir, tfds_dir):
  teacher = str(tmp_path / "teacher")
  common = ["--debug", "--train_batch_size=8", "--eval_batch_size=8",
            f"--cache_dir={tmp_path / 'cache'}"]
  run_classifier(common + ["--task_names=rte", f"--data_dir={glue_dir}",
                           f"--model_dir={teacher}", "--max_train_steps=3"])
  student = common + ["--task_names=rte,sts", "--distill",
                      f"--teachers=rte:{teacher}", "--max_train_steps=4",
                      "--teacher_output_trials="]
  tsv_dir, tfds_run = str(tmp_path / "tsv"), str(tmp_path / "tfds")
  run_classifier(student + [f"--data_dir={glue_dir}",
                            f"--model_dir={tsv_dir}"])
  out = run_classifier(student + ["--data_source=tfds",
                                  f"--tfds_data_dir={tfds_dir}",
                                  f"--model_dir={tfds_run}"])
  assert "Traceback" not in out
  assert comparable_results(tfds_run) == comparable_results(tsv_dir)
  assert_same_dev_predictions(tsv_dir, tfds_run, ["rte", "sts"])
  scores = [comparable_results(tfds_run)["trials"][0]["tasks"][t]["score"]
            for t in ("rte", "sts")]
  assert all(np.isfinite(scores))
  # The fingerprint names the TFDS dataset it read.
  data = files.read_json(os.path.join(tfds_run, "data_fingerprint.json"))[
      "data"]
  assert data["rte"]["dev"]["file"].startswith("tfds:glue/rte:validation@")
