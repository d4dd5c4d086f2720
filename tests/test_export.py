"""The raw-text SavedModel export of a finished run.

Why these checks: a server loads the export without bam_tf, so it must
(1) load with tensorflow + tensorflow_text only, from another folder,
(2) give exactly what the in-memory model gives on the same text, and what
the run itself predicted on dev (proof the trained weights were restored),
(3) advertise string signatures a client can discover with saved_model_cli,
(4) never clobber an existing export by accident.

One real --debug run (3 train steps) on RTE (pairs, 2 labels), STS-B (pairs,
regression) and SST-2 (single sentences) is made once for the module.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.serving import export
from bam_tf.tasks import readers

from conftest import GLUE_DIR, REPO_ROOT  # noqa: E402

TASKS = ("rte", "sts", "sst")
ROWS = 50          # the --debug run reads the first 50 rows of each file
TOL = 1e-5         # export vs in-memory model, same padding
RUN_TOL = 1e-4     # export vs the run's own dev predictions (other padding)
PY = sys.executable
SAVED_MODEL_CLI = os.path.join(os.path.dirname(PY), "saved_model_cli")

# Runs in a fresh interpreter: nothing of bam_tf, tf_keras or Model Garden
# may be needed.
LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

export_dir, calls_file, out_file = sys.argv[1:4]
loaded = tf.saved_model.load(export_dir)
with open(calls_file) as f:
  calls = json.load(f)
out = {}
for name, call in calls.items():
  fn = loaded.signatures[call["signature"]]
  kwargs = {k: tf.constant(v, tf.string) for k, v in call["inputs"].items()}
  for key, value in fn(**kwargs).items():
    value = value.numpy()
    if value.dtype == object:
      value = np.array([v.decode("utf-8") for v in value])
    out[name + "/" + key] = value
meta = loaded.metadata()["metadata_json"].numpy().decode("utf-8")
out["metadata"] = np.array(meta)
out["modules"] = np.array(sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("bam_tf", "tf_keras", "official")))
np.savez(out_file, **out)
"""


def dev_rows(task):
  examples = readers.read_examples(task, GLUE_DIR, task.dev_split,
                                   max_rows=ROWS)
  return ([e.eid for e in examples], [e.text_a for e in examples],
          [e.text_b for e in examples])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, glue_dir):
  model_dir = str(tmp_path_factory.mktemp("export_run") / "run")
  cmd = [PY, "run_classifier.py", f"--task_names={','.join(TASKS)}",
         f"--data_dir={glue_dir}", f"--model_dir={model_dir}", "--debug",
         "--num_train_epochs=1", "--max_train_steps=3",
         "--teacher_output_trials=", "--eval_batch_size=32"]
  proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return model_dir


@pytest.fixture(scope="module")
def restored(run_dir):
  config, model, tokenizer, bundle = export.restore_run(run_dir, trial=0)
  del bundle
  return config, model, tokenizer


@pytest.fixture(scope="module")
def export_dir(run_dir, restored, tmp_path_factory):
  _, model, tokenizer = restored
  out = str(tmp_path_factory.mktemp("exports") / "bam")
  path = export.export_saved_model(model, tokenizer, None, out,
                                   extra_metadata={"source": run_dir})
  assert path == os.path.abspath(out)
  return path


def in_memory(model, tokenizer, task, text_a, text_b):
  """The model's own outputs, computed without the serving code."""
  single = text_b is None or text_b[0] is None
  inputs = tokenizer(tf.constant(text_a),
                     None if single else tf.constant(text_b))
  inputs["task_id"] = tf.zeros([len(text_a)], tf.int32)
  logits = model(inputs, training=False)[task.name]
  if task.is_regression:
    scaled = model.regression_output(logits)
    return {"score": task.unscale(scaled.numpy())}
  return {"probabilities": tf.nn.softmax(logits, axis=-1).numpy()}


def test_fresh_process_matches_model_and_run(run_dir, restored, export_dir,
                                             tmp_path):
  config, model, tokenizer = restored
  assert [t.name for t in config.tasks] == list(TASKS)
  tasks = {t.name: t for t in config.tasks}
  rows = {name: dev_rows(tasks[name]) for name in TASKS}
  assert rows["sst"][2][0] is None and rows["rte"][2][0] is not None

  calls = {}
  for name, task in tasks.items():
    _, a, b = rows[name]
    calls[name] = {"signature": name, "inputs": {"text_a": a}}
    if export.is_pair_task(task):
      calls[name]["inputs"]["text_b"] = b
  # serving_default: all pairs, all singles ("" text_b), and a mixed batch.
  _, rte_a, rte_b = rows["rte"]
  _, sst_a, _ = rows["sst"]
  calls["default_pairs"] = {"signature": "serving_default",
                            "inputs": {"text_a": rte_a, "text_b": rte_b}}
  calls["default_singles"] = {"signature": "serving_default",
                              "inputs": {"text_a": sst_a,
                                         "text_b": [""] * len(sst_a)}}
  mixed_a = [x for pair in zip(rte_a, sst_a) for x in pair]
  mixed_b = [x for pair in zip(rte_b, [""] * len(sst_a)) for x in pair]
  calls["default_mixed"] = {"signature": "serving_default",
                            "inputs": {"text_a": mixed_a, "text_b": mixed_b}}

  # Loaded from a copy elsewhere: the vocab must travel as an asset.
  moved = str(tmp_path / "moved")
  shutil.copytree(export_dir, moved)
  (tmp_path / "loader.py").write_text(LOADER)
  (tmp_path / "calls.json").write_text(json.dumps(calls))
  # Without bam_tf's TF_USE_LEGACY_KERAS, so tf_keras is not even loaded
  # (TensorFlow itself imports Keras 3, which the export does not use).
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
  proc = subprocess.run(
      [PY, "loader.py", moved, "calls.json", "out.npz"], cwd=tmp_path,
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  got = dict(np.load(tmp_path / "out.npz"))
  assert got["modules"].size == 0, got["modules"]

  expected = {}
  for name, task in tasks.items():
    _, a, b = rows[name]
    expected[name] = in_memory(model, tokenizer, task, a, b)

  for name, task in tasks.items():
    eids = rows[name][0]
    saved = np.load(os.path.join(run_dir, "trial_0", "predictions",
                                 f"{name}_{task.dev_split}.npz"))
    order = {int(e): k for k, e in enumerate(saved["eid"])}
    idx = [order[e] for e in eids]
    if task.is_regression:
      score = got[f"{name}/{name}_score"]
      assert score.dtype == np.float32 and score.shape == (len(eids),)
      np.testing.assert_allclose(score, expected[name]["score"], rtol=0,
                                 atol=TOL)
      np.testing.assert_allclose(score, saved["prediction"][idx], rtol=0,
                                 atol=RUN_TOL)
      continue
    probs = got[f"{name}/{name}_probabilities"]
    labels = got[f"{name}/{name}_label"]
    assert probs.dtype == np.float32
    assert probs.shape == (len(eids), len(task.label_list))
    np.testing.assert_allclose(probs, expected[name]["probabilities"],
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(probs, saved["probabilities"][idx], rtol=0,
                               atol=RUN_TOL)
    assert set(labels) <= set(task.label_list)
    assert list(labels) == [task.label_list[k]
                            for k in np.argmax(probs, axis=-1)]

  # serving_default gives each head what its own signature gives.
  np.testing.assert_allclose(got["default_pairs/rte_probabilities"],
                             got["rte/rte_probabilities"], rtol=0, atol=TOL)
  assert list(got["default_pairs/rte_label"]) == list(got["rte/rte_label"])
  sts_task = tasks["sts"]
  np.testing.assert_allclose(
      got["default_pairs/sts_score"],
      in_memory(model, tokenizer, sts_task, rte_a, rte_b)["score"],
      rtol=0, atol=TOL)
  np.testing.assert_allclose(got["default_singles/sst_probabilities"],
                             got["sst/sst_probabilities"], rtol=0, atol=TOL)
  mixed = got["default_mixed/rte_probabilities"]
  np.testing.assert_allclose(mixed[0::2], got["rte/rte_probabilities"],
                             rtol=0, atol=TOL)
  np.testing.assert_allclose(got["default_mixed/sst_probabilities"][1::2],
                             got["sst/sst_probabilities"], rtol=0, atol=TOL)

  meta = json.loads(str(got["metadata"]))
  assert meta["format"] == export.EXPORT_FORMAT
  assert meta["source"] == run_dir
  assert [t["name"] for t in meta["tasks"]] == list(TASKS)
  for info in meta["tasks"]:
    task = tasks[info["name"]]
    assert info["label_list"] == list(task.label_list)
    assert info["pair"] == export.is_pair_task(task)
  assert meta["tokenizer"]["vocab_sha256"] == tokenizer.vocab_sha256
  with open(os.path.join(moved, "assets", export.METADATA_FILE)) as f:
    assert json.load(f) == meta
  assert os.path.isfile(os.path.join(moved, "assets", "vocab.txt"))


def _signature_blocks(text):
  parts = re.split(r"^signature_def\['([^']+)'\]:", text, flags=re.M)
  return dict(zip(parts[1::2], parts[2::2]))


def test_saved_model_cli_lists_string_signatures(export_dir):
  proc = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir",
                         export_dir], capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  blocks = _signature_blocks(proc.stdout)
  assert set(TASKS) | {"serving_default"} <= set(blocks), sorted(blocks)

  def string_input(block, name):
    return re.search(rf"inputs\['{name}'\] tensor_info:\s*dtype: DT_STRING"
                     r"\s*shape: \(-1\)", block) is not None

  for sig in ("rte", "sts", "serving_default"):
    assert string_input(blocks[sig], "text_a"), blocks[sig]
    assert string_input(blocks[sig], "text_b"), blocks[sig]
  assert string_input(blocks["sst"], "text_a")
  assert "inputs['text_b']" not in blocks["sst"]
  default = blocks["serving_default"]
  for out, dtype, shape in (("rte_label", "DT_STRING", r"\(-1\)"),
                            ("rte_probabilities", "DT_FLOAT", r"\(-1, 2\)"),
                            ("sts_score", "DT_FLOAT", r"\(-1\)"),
                            ("sst_label", "DT_STRING", r"\(-1\)"),
                            ("sst_probabilities", "DT_FLOAT", r"\(-1, 2\)")):
    assert re.search(rf"outputs\['{out}'\] tensor_info:\s*dtype: {dtype}"
                     rf"\s*shape: {shape}", default), (out, default)


def test_export_refuses_existing_dir_and_overwrites_on_request(
    run_dir, restored, export_dir, tmp_path):
  _, model, tokenizer = restored
  before = sorted(os.listdir(export_dir))
  with pytest.raises(export.ExportError, match="already exists"):
    export.export_saved_model(model, tokenizer, None, export_dir)
  with pytest.raises(export.ExportError, match="already exists"):
    export.export_run(run_dir, export_dir)
  assert sorted(os.listdir(export_dir)) == before
  assert export.main([f"--model_dir={run_dir}",
                      f"--export_dir={export_dir}"]) == 1

  copy = str(tmp_path / "bam")
  shutil.copytree(export_dir, copy)
  export.export_saved_model(model, tokenizer, ["sts"], copy, overwrite=True)
  with open(os.path.join(copy, "assets", export.METADATA_FILE)) as f:
    assert [t["name"] for t in json.load(f)["tasks"]] == ["sts"]
  assert os.listdir(tmp_path) == ["bam"]  # no temp folders left behind
  leftovers = [n for n in os.listdir(os.path.dirname(export_dir))
               if n.startswith(".")]
  assert not leftovers


def test_restore_errors_are_clear(run_dir, restored, tmp_path):
  _, model, tokenizer = restored
  with pytest.raises(export.ExportError, match="trial 5"):
    export.restore_run(run_dir, trial=5)
  with pytest.raises(export.ExportError, match="config.json"):
    export.restore_run(str(tmp_path))
  with pytest.raises(export.ExportError, match="not one of"):
    export.export_saved_model(model, tokenizer, ["cola"],
                              str(tmp_path / "x"))


# ---------------------------------------------------------------------------
# Replacing an export (--overwrite) while a server watches the path.


class _Killed(BaseException):
  """Ends the export where a kill would (not an Exception: nothing in the
  export may catch it)."""


def _complete(path):
  """The export's metadata if `path` holds a complete SavedModel, else
  None."""
  meta = os.path.join(path, "assets", export.METADATA_FILE)
  if not (os.path.isfile(os.path.join(path, "saved_model.pb"))
          and os.path.isfile(os.path.join(path, "variables",
                                          "variables.index"))
          and os.path.isfile(meta)):
    return None
  with open(meta) as f:
    return json.load(f)


def _kill_after_first_change(monkeypatch, target, snapshot):
  """Patches os.rename and export.exchange_paths: after the first call that
  moves `target` (the export path), the folder holding it is copied to
  `snapshot` (what a kill at that instant leaves on disk) and the export
  ends there."""
  real_rename = os.rename
  real_exchange = getattr(export, "exchange_paths", None)

  def after(src, dst):
    if target in (os.path.abspath(src), os.path.abspath(dst)):
      shutil.copytree(os.path.dirname(target), snapshot, symlinks=True)
      raise _Killed()

  def rename(src, dst, *args, **kwargs):
    real_rename(src, dst, *args, **kwargs)
    after(src, dst)

  def exchange(a, b):
    real_exchange(a, b)
    after(a, b)

  monkeypatch.setattr(os, "rename", rename)
  if real_exchange is not None:
    monkeypatch.setattr(export, "exchange_paths", exchange)


def _replace_until_killed(monkeypatch, restored, target, killed):
  """`--overwrite` export of an STS-B-only model (export_version 2) over
  `target`, ended where a kill would be after the first change to the
  path; what that kill leaves on disk is copied to `killed`."""
  _, model, tokenizer = restored
  _kill_after_first_change(monkeypatch, target, killed)
  with pytest.raises(_Killed):
    export.export_saved_model(model, tokenizer, ["sts"], target,
                              overwrite=True,
                              extra_metadata={"export_version": 2})


def _old_export(export_dir, tmp_path):
  """A copy of the module's export (all three tasks) as the one in place."""
  parent = tmp_path / "serving"
  parent.mkdir()
  target = str(parent / "bam")
  shutil.copytree(export_dir, target)
  return target


def _dot_files(folder):
  return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_overwrite_killed_mid_replacement_leaves_a_complete_export(
    restored, export_dir, tmp_path, monkeypatch):
  _, model, tokenizer = restored
  target = _old_export(export_dir, tmp_path)
  killed = str(tmp_path / "killed")
  with monkeypatch.context() as patch:
    _replace_until_killed(patch, restored, target, killed)
  # At the instant the path first changed it already held a complete model:
  # the new one (atomic exchange); the old one waits under a staging name.
  at_kill = os.path.join(killed, "bam")
  meta = _complete(at_kill)
  assert meta is not None, os.listdir(killed)
  assert meta["export_version"] == 2
  assert [t["name"] for t in meta["tasks"]] == ["sts"]
  loaded = tf.saved_model.load(at_kill)
  assert json.loads(loaded.metadata()["metadata_json"].numpy()) == meta
  assert _dot_files(killed), "expected the replaced export aside"

  # The next export to that path deletes the leftovers.
  export.export_saved_model(model, tokenizer, ["sts"], at_kill,
                            overwrite=True,
                            extra_metadata={"export_version": 3})
  assert _complete(at_kill)["export_version"] == 3
  assert os.listdir(killed) == ["bam"]


def test_fallback_replacement_killed_between_renames_is_restored(
    restored, export_dir, tmp_path, monkeypatch):
  """Without an atomic exchange (another OS or filesystem) the old export is
  renamed aside first; killed then, the next export puts it back before
  anything else, then removes the leftovers."""
  _, model, tokenizer = restored
  target = _old_export(export_dir, tmp_path)
  killed = str(tmp_path / "killed")

  def no_exchange(a, b):
    raise OSError(22, "Invalid argument", a, None, b)  # EINVAL

  with monkeypatch.context() as patch:
    patch.setattr(export, "exchange_paths", no_exchange, raising=False)
    _replace_until_killed(patch, restored, target, killed)
  at_kill = os.path.join(killed, "bam")
  assert not os.path.exists(at_kill)
  aside = [n for n in _dot_files(killed) if n.startswith(".bam.old-")]
  assert len(aside) == 1, os.listdir(killed)
  assert _complete(os.path.join(killed, aside[0], "bam")) is not None
  leftover_staging = os.path.join(killed, ".bam.tmp-abcd1234")
  os.mkdir(leftover_staging)  # a staging folder of an earlier kill

  # Without --overwrite: the old export is back, so it refuses to replace.
  with pytest.raises(export.ExportError, match="already exists"):
    export.export_saved_model(model, tokenizer, ["sts"], at_kill)
  meta = _complete(at_kill)
  assert meta is not None
  assert [t["name"] for t in meta["tasks"]] == list(TASKS)  # the old one
  assert "export_version" not in meta
  assert os.listdir(killed) == ["bam"]
  assert export.recover_export_dir(at_kill) is False  # settled
