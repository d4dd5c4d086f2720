"""--init_from (the paper's Table 3: fine-tune from another run's final
weights): the warm start carries the source's encoder and shared heads, and
a source trained with another encoder is one line before anything is
written (it was a traceback after config.json, which then refused the
corrected rerun)."""

import os
import re
import shutil

import numpy as np
import pytest

from conftest import run_classifier, run_classifier_process

SMALL = ["--task_names=rte", "--max_train_steps=3", "--train_batch_size=8",
         "--eval_batch_size=32", "--max_seq_length=64",
         "--teacher_output_trials="]


@pytest.fixture(scope="module")
def source(tmp_path_factory, glue_dir):
  """A finished RTE run on the embedded MiniLM encoder."""
  root = tmp_path_factory.mktemp("init_from")
  run_classifier(SMALL + [f"--data_dir={glue_dir}",
                          f"--model_dir={root / 'source'}"])
  return root


def _dev(model_dir):
  return np.load(os.path.join(model_dir, "trial_0", "predictions",
                              "rte_dev.npz"))


def test_warm_start_carries_the_source_weights(source, glue_dir):
  # One step at a learning rate of 1e-9 leaves the source's weights: the
  # dev predictions are the source's own, which a fresh head is not.
  target = source / "target"
  out = run_classifier(SMALL + [
      f"--data_dir={glue_dir}", f"--model_dir={target}",
      f"--init_from={source / 'source'}", "--max_train_steps=1",
      "--learning_rate=1e-9"])
  assert "Initialised encoder, head_rte from" in out
  want, got = _dev(source / "source"), _dev(target)
  np.testing.assert_array_equal(got["prediction"], want["prediction"])
  np.testing.assert_allclose(got["probabilities"], want["probabilities"],
                             atol=1e-4)


def test_a_source_of_another_encoder_is_refused_before_anything_is_written(
    source, glue_dir):
  target = source / "debug_target"
  proc = run_classifier_process(SMALL + [
      f"--data_dir={glue_dir}", f"--model_dir={target}", "--debug",
      f"--init_from={source / 'source'}"])
  assert proc.returncode == 2, proc.stdout[-3000:]
  errors = [l for l in proc.stdout.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stdout[-3000:]
  assert errors[0].startswith(
      f"error: --init_from: {source / 'source'}/trial_0/final/"
      "encoder_and_heads does not fit this run's encoder ("), errors[0]
  assert re.search(r"encoder \(\d+ of its objects have no value there\); "
                   r"was it trained with another encoder\?$", errors[0]), (
                       errors[0])
  assert not target.exists()


def test_a_source_trained_again_since_is_refused(source, glue_dir, tmp_path):
  """Adding trials to a warm-started run after its source was trained
  again would mix starting points under the same --init_from: the
  fingerprint records the source's final weights."""
  src = tmp_path / "source"
  shutil.copytree(source / "source", src)
  target = tmp_path / "target"
  args = SMALL + [f"--data_dir={glue_dir}", f"--model_dir={target}",
                  f"--init_from={src}", "--max_train_steps=1"]
  run_classifier(args)
  run_classifier(SMALL + [f"--data_dir={glue_dir}", f"--model_dir={src}",
                          "--learning_rate=1e-4", "--overwrite"])
  proc = run_classifier_process(args + ["--num_trials=2"])
  assert proc.returncode == 2, proc.stdout[-3000:]
  errors = [l for l in proc.stdout.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, proc.stdout[-3000:]
  match = re.fullmatch(
      re.escape(f"error: --init_from: the final weights {src}/trial_0/final/"
                "encoder_and_heads.index changed since this run started "
                f"training in {target} (their index's sha256 was ") +
      r"([0-9a-f]{12})\.\.\., now ([0-9a-f]{12})\.\.\.\); use --overwrite to "
      r"start over, or another --model_dir", errors[0])
  assert match and match.group(1) != match.group(2), errors[0]
  assert not (target / "trial_1").exists()
