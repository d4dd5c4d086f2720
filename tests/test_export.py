"""The raw-text SavedModel export of a finished run.

Why these checks: a server loads the export without bam_tf, so it must
(1) load with tensorflow + tensorflow_text only, from another folder,
(2) give exactly what the in-memory model gives on the same text, and what
the run itself predicted on dev (proof the trained weights were restored),
(3) advertise string signatures a client can discover with saved_model_cli,
(4) appear as a new numbered version of the base TF Serving watches, only
once complete, never replacing an existing version.

One real --debug run (3 train steps) on RTE (pairs, 2 labels), STS-B (pairs,
regression) and SST-2 (single sentences) is made once for the module.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.common import files
from bam_tf.serving import export
from bam_tf.tasks import readers

from conftest import GLUE_DIR, REPO_ROOT  # noqa: E402

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position

TASKS = ("rte", "sts", "sst")
ROWS = 50          # the --debug run reads the first 50 rows of each file
TOL = 1e-5         # export vs in-memory model, same padding
RUN_TOL = 1e-4     # export vs the run's own dev predictions (other padding)
PY = sys.executable
SAVED_MODEL_CLI = os.path.join(os.path.dirname(PY), "saved_model_cli")

# Runs in a fresh interpreter: nothing of bam_tf, tf_keras or Model Garden
# may be needed.
LOADER = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

base, calls_file, out_file = sys.argv[1:4]
# What TF Serving does with a base: serve the highest numbered folder.
version = max((n for n in os.listdir(base) if n.isdigit()), key=int)
loaded = tf.saved_model.load(os.path.join(base, version))
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
out["version"] = np.array(version)
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
def export_base(run_dir, restored, tmp_path_factory):
  """A base with two versions: 1 serves STS-B only, 2 every task (the
  newest: what a server serves)."""
  _, model, tokenizer = restored
  base = str(tmp_path_factory.mktemp("exports") / "bam")
  first = export.export_saved_model(model, tokenizer, ["sts"], base)
  second = export.export_saved_model(model, tokenizer, None, base,
                                     extra_metadata={"source": run_dir})
  assert first == os.path.join(os.path.abspath(base), "1")
  assert second == os.path.join(os.path.abspath(base), "2")
  return os.path.abspath(base)


@pytest.fixture(scope="module")
def export_dir(export_base):
  return os.path.join(export_base, "2")


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


def test_fresh_process_matches_model_and_run(run_dir, restored, export_base,
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

  # Loaded from a copy of the base elsewhere (the vocab must travel as an
  # asset), given only the base, as TF Serving is.
  moved = str(tmp_path / "moved")
  shutil.copytree(export_base, moved)
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
  assert str(got["version"]) == "2"  # the newest, with every task

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
  with open(os.path.join(moved, "2", "assets", export.METADATA_FILE)) as f:
    assert json.load(f) == meta
  assert os.path.isfile(os.path.join(moved, "2", "assets", "vocab.txt"))


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


def test_restore_errors_are_clear(run_dir, restored, tmp_path):
  _, model, tokenizer = restored
  with pytest.raises(export.ExportError, match=(
      r"^--trial: trial 5 of .* has not finished \(.*trial_5/final/"
      r"encoder_and_heads.index not found\); finished trials: 0$")):
    export.restore_run(run_dir, trial=5)
  with pytest.raises(export.ExportError, match="config.json"):
    export.restore_run(str(tmp_path))
  with pytest.raises(export.ExportError, match="^--tasks: task 'cola' is "
                     "not one of"):
    export.export_saved_model(model, tokenizer, ["cola"],
                              str(tmp_path / "x"))


  assert not os.path.exists(tmp_path / "x")  # refused before writing
  with pytest.raises(export.ExportError, match="must be >= 0"):
    export.export_saved_model(model, tokenizer, None, str(tmp_path / "x"),
                              version=-1)


# ---------------------------------------------------------------------------
# The versioned layout TF Serving watches.


def _tree(folder):
  """Every path under folder with its size and mtime: any write shows."""
  out = {}
  for root, dirs, names in os.walk(folder):
    for name in dirs + names:
      path = os.path.join(root, name)
      st = os.lstat(path)
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
  return out


def _provenance(version_dir):
  with open(os.path.join(version_dir, export.PROVENANCE_DIR,
                         export.METADATA_FILE)) as f:
    return json.load(f)


def _cli(args, capsys):
  """run_classifier.py in this process: (exit code, stdout, stderr)."""
  flags.FLAGS.unparse_flags()
  try:
    code = run_classifier.main(flags.FLAGS(["run_classifier"] + args))
  finally:
    flags.FLAGS.unparse_flags()
  out = capsys.readouterr()
  return code, out.out, out.err


def test_layout_is_numbered_versions_with_provenance(export_base, tmp_path):
  # Nothing but the versions: no staging folder left behind.
  assert sorted(os.listdir(export_base)) == ["1", "2"]
  for number in (1, 2):
    path = os.path.join(export_base, str(number))
    for name in ("saved_model.pb", "variables/variables.index",
                 f"assets/{export.METADATA_FILE}", "assets/vocab.txt"):
      assert os.path.isfile(os.path.join(path, name)), (number, name)
    record = _provenance(path)
    assert record["version"] == number
    assert record["format"] == export.EXPORT_FORMAT
    assert record["tensorflow"] == tf.__version__
    assert time.time() - time.mktime(time.strptime(
        record["exported_at"][:19], "%Y-%m-%dT%H:%M:%S")) < 2 * 86400
    commit = record["bam_tf_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit), commit
  with open(os.path.join(export_base, "1", "assets",
                         export.METADATA_FILE)) as f:
    assert [t["name"] for t in json.load(f)["tasks"]] == ["sts"]
  assert export.versions(export_base) == {
      1: os.path.join(export_base, "1"), 2: os.path.join(export_base, "2")}
  assert export.latest_version(export_base) == os.path.join(export_base, "2")
  assert export.latest_version(str(tmp_path / "none")) is None
  # A numbered folder without saved_model.pb (an object-store move that was
  # killed) is not served by latest_version, and its number is not reused.
  copy = str(tmp_path / "copy")
  shutil.copytree(export_base, copy)
  os.makedirs(os.path.join(copy, "3", "variables"))
  assert export.latest_version(copy) == os.path.join(copy, "2")
  assert export._next_version(copy) == 4  # pylint: disable=protected-access


def test_command_lines_write_the_next_version(run_dir, capsys):
  """run_classifier.py --mode=export (default base model_dir/export), then
  the module's command line: versions 1 and 2, provenance naming the
  run."""
  base = os.path.join(run_dir, "export")
  code, out, err = _cli([f"--model_dir={run_dir}", "--mode=export"], capsys)
  assert code in (0, None), err[-3000:]
  assert f"exported SavedModel version 1 to {base}/1" in out
  assert export.main([f"--model_dir={run_dir}", f"--export_dir={base}",
                      "--tasks=rte"]) == 0
  out = capsys.readouterr().out
  assert out.strip().endswith(f"exported SavedModel version 2 to {base}/2")
  assert sorted(os.listdir(base)) == ["1", "2"]
  record = _provenance(os.path.join(base, "2"))
  assert record["model_dir"] == run_dir and record["trial"] == 0
  assert record["version"] == 2
  assert export.latest_version(base) == os.path.join(base, "2")


def test_existing_version_is_refused_with_one_line(run_dir, restored,
                                                   export_base, capsys):
  _, model, tokenizer = restored
  before = _tree(export_base)
  message = (f"--export_version: 1 already exists in {export_base} "
             "(versions are never replaced: TF Serving may be serving it; "
             "choose another or delete it)")
  with pytest.raises(export.ExportError) as e:
    export.export_saved_model(model, tokenizer, None, export_base, version=1)
  assert str(e.value) == message
  with pytest.raises(export.ExportError, match="2 already exists"):
    export.export_run(run_dir, export_base, version=2)
  assert export.main([f"--model_dir={run_dir}", f"--export_dir={export_base}",
                      "--export_version=1"]) == 2
  assert capsys.readouterr().err.strip() == f"error: {message}"
  # run_classifier.py: checked with the flags, before the run is loaded;
  # --overwrite does not make a version replaceable (export refuses it).
  for extra, line in (([], message), (["--overwrite"], (
      "--overwrite: --mode=export does not read it (the run's config.json "
      "holds False); drop the flag"))):
    code, out, err = _cli([f"--model_dir={run_dir}", "--mode=export",
                           f"--export_dir={export_base}",
                           "--export_version=1"] + extra, capsys)
    assert code == 2, out + err
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert lines == [f"error: {line}"], err
  assert _tree(export_base) == before


class _Killed(BaseException):
  """Ends the export where a kill would (not an Exception: nothing in the
  export may catch it)."""


def test_killed_export_leaves_no_version_and_next_cleans_up(
    restored, export_base, tmp_path, monkeypatch):
  """Killed at the last instant (the SavedModel complete in its staging
  folder, not yet renamed): what the kill leaves holds no new version, a
  server still finds version 2, and the next export gives 3 and deletes
  the staging folder."""
  _, model, tokenizer = restored
  base = str(tmp_path / "serving" / "bam")
  shutil.copytree(export_base, base)
  killed = str(tmp_path / "killed")
  real_rename = files.rename

  def rename(src, dst, *args, **kwargs):
    if os.path.dirname(dst) == base and os.path.basename(dst).isdigit():
      shutil.copytree(base, killed)  # what a kill at this instant leaves
      raise _Killed()
    return real_rename(src, dst, *args, **kwargs)

  with monkeypatch.context() as patch:
    patch.setattr(files, "rename", rename)
    with pytest.raises(_Killed):
      export.export_saved_model(model, tokenizer, ["sts"], base)
  assert sorted(os.listdir(base)) == ["1", "2"]  # an error cleans up itself

  names = sorted(os.listdir(killed))
  assert [n for n in names if n.isdigit()] == ["1", "2"]
  staging = [n for n in names if not n.isdigit()]
  assert len(staging) == 1 and staging[0].startswith(".tmp-"), names
  assert os.path.isfile(os.path.join(killed, staging[0], "saved_model.pb"))
  assert export.latest_version(killed) == os.path.join(killed, "2")

  path = export.export_saved_model(model, tokenizer, ["sts"], killed)
  assert path == os.path.join(killed, "3")
  assert sorted(os.listdir(killed)) == ["1", "2", "3"]
  assert tf.saved_model.load(path).signatures["sts"] is not None


def test_only_staging_folders_of_no_running_export_are_removed(tmp_path):
  base = tmp_path / "bam"
  (base / "1").mkdir(parents=True)
  now = int(time.time())
  old = now - export.STALE_AFTER_S - 60
  here = export._host_tag()  # pylint: disable=protected-access
  elsewhere = "00000000" if here != "00000000" else "ffffffff"
  done = subprocess.Popen(["true"])
  done.wait()
  alive = subprocess.Popen(["sleep", "120"])
  try:
    names = {
        "dead_here": (now, here, done.pid, True),
        "alive_here": (now, here, alive.pid, False),
        "alive_here_but_old": (old, here, alive.pid, True),
        "this_process_not_exporting": (now, here, os.getpid(), True),
        "other_host": (now, elsewhere, 1, False),
        "other_host_old": (old, elsewhere, 1, True),
    }
    folders = {}
    for key, (started, host, pid, _) in names.items():
      name = f".tmp-{started}-{host}-{pid}-{key[:8]}"
      (base / name).mkdir()
      folders[key] = name
    (base / ".tmp-notours").mkdir()  # not an export's name: left alone
    removed = export.remove_stale_staging(str(base))
  finally:
    alive.kill()
    alive.wait()
  expected = {key for key, spec in names.items() if spec[3]}
  assert sorted(removed) == sorted(str(base / folders[k]) for k in expected)
  assert sorted(os.listdir(base)) == sorted(
      ["1", ".tmp-notours"] + [folders[k] for k in names if k not in expected])


def test_an_export_base_that_cannot_serve_is_refused_before_loading(
    tmp_path, capsys):
  """One line, before the run is loaded: a base that is a file, a base
  that is a served version or inside one (versions would nest, `1/1`,
  where TF Serving never looks), and a run whose config.json is cut."""
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text('{"task_names": ["rte"], "mod')
  version = tmp_path / "served" / "1"
  (version / "variables").mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"")
  afile = tmp_path / "afile"
  afile.write_text("x")
  before = _tree(tmp_path)
  for base, message in [
      (afile, f"--export_dir: {afile} is a file, not a folder"),
      (version, f"--export_dir: {version} is the SavedModel {version}; give "
                f"the base that holds the numbered versions (e.g. "
                f"{version.parent})"),
      (version / "variables", f"--export_dir: {version}/variables is inside "
                              f"the SavedModel {version}; give the base"),
      (tmp_path / "new", f"--model_dir: {run}/config.json:1: not valid JSON"),
      (tmp_path / "new", "--trial: must be >= 0, got -1"),
      # The run's own folder: versions among trial_N/ and its records.
      (run, f"--export_dir: {run} is a run's folder (it holds config.json); "
            f"export into a base of its own, e.g. {run}/export"),
      (f"{run}/", f"--export_dir: {run}/ is a run's folder"),
      # "," named no task and exported every one.
      (tmp_path / "new", "--tasks: ',' names no task"),
  ]:
    extra = (["--trial=-1"] if "--trial" in message else
             ["--tasks=,"] if "--tasks" in message else [])
    assert export.main([f"--model_dir={run}", f"--export_dir={base}"]
                       + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
  assert _tree(tmp_path) == before
