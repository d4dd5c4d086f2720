"""Bad input through the command line: run_classifier exits non-zero with one
line naming the file and line (or the flag) and what was expected, and
leaves nothing in --model_dir. Each case starts from real GLUE files made
bad in one way. (Teacher-file problems: tests/test_teacher_outputs.py; a
non-finite loss: tests/test_reliability.py; a batch not divisible by the
replicas: tests/test_distribution.py.)"""

import errno
import json
import os
import re
import shutil
import sys

import pytest
from absl import flags

from conftest import REPO_ROOT, run_classifier_process

sys.path.insert(0, REPO_ROOT)
import run_classifier  # noqa: E402  pylint: disable=wrong-import-position
from bam_tf.common import errors  # noqa: E402  pylint: disable=wrong-import-position


def _copy(glue_dir, dst, *dir_names):
  for name in dir_names:
    shutil.copytree(os.path.join(glue_dir, name), os.path.join(dst, name))


def _edit_line(path, line_no, fn):
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  lines[line_no - 1] = fn(lines[line_no - 1])
  with open(path, "wb") as f:
    f.write(b"\n".join(lines))


def _run(args, capsys):
  flags.FLAGS.unparse_flags()
  try:
    argv = flags.FLAGS(["run_classifier"] + args)
    code = run_classifier.main(argv)
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


def _one_error(err):
  lines = [l for l in err.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, err
  return lines[0]


def _drop_header(path):
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  with open(path, "wb") as f:
    f.write(b"\n".join(lines[1:]))


def _truncate(path):
  open(path, "wb").close()


# name -> (task, folders to copy, how to break them, expected message)
DATA_CASES = {
    "missing_data_dir": ("rte", [], None, r"--data_dir"),
    "missing_task_folder": ("cola", ["RTE"], None,
                            r"task folder .*CoLA is missing"),
    "missing_split_file": ("rte", ["RTE"],
                           lambda d: os.remove(f"{d}/RTE/dev.tsv"),
                           r"RTE/dev.tsv"),
    "empty_file": ("rte", ["RTE"], lambda d: _truncate(f"{d}/RTE/train.tsv"),
                   r"RTE/train.tsv: the file is empty"),
    "wrong_column_count": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 5, lambda l: l + b"\textra"),
                           r"RTE/train.tsv:5: 5 columns, expected 4"),
    "unknown_label": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 7, lambda l: l.rsplit(b"\t", 1)[0] + b"\tmaybe"),
                      r"RTE/train.tsv:7: unknown label 'maybe'"),
    "non_utf8": ("rte", ["RTE"], lambda d: _edit_line(
        f"{d}/RTE/train.tsv", 3, lambda l: l.replace(b"the", b"th\xff\xfe")),
                 r"RTE/train.tsv:3: bytes that are not UTF-8"),
    "sts_score_out_of_range": ("sts", ["STS-B"], lambda d: _edit_line(
        f"{d}/STS-B/train.tsv", 4,
        lambda l: l.rsplit(b"\t", 1)[0] + b"\t7.5"),
                               r"STS-B/train.tsv:4: score 7.5 is outside "
                               r"\[0.0, 5.0\]"),
    "missing_header": ("rte", ["RTE"], lambda d: _drop_header(
        f"{d}/RTE/dev.tsv"), r"RTE/dev.tsv:1: the first row looks like data"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_file(case, glue_dir, tmp_path, capsys):
  task, folders, breaker, message = DATA_CASES[case]
  data = tmp_path / "glue"
  data.mkdir()
  _copy(glue_dir, str(data), *folders)
  if breaker:
    breaker(str(data))
  if case == "missing_data_dir":
    data = tmp_path / "nope"
  model_dir = tmp_path / "run"
  code, err = _run([f"--task_names={task}", f"--data_dir={data}",
                    f"--model_dir={model_dir}", "--debug",
                    f"--cache_dir={tmp_path / 'cache'}"], capsys)
  assert code != 0
  line = _one_error(err)
  assert re.search(message, line), line
  assert not model_dir.exists()


@pytest.mark.parametrize("args,message", [
    (["--task_names=rtee"], r"--task_names: unknown task 'rtee'"),
    (["--task_names=rte", "--max_seq_length=600"],
     r"--max_seq_length: 600 is above the encoder's 512 position"),
])
def test_bad_flags(args, message, glue_dir, tmp_path, capsys):
  model_dir = tmp_path / "run"
  code, err = _run(args + [f"--data_dir={glue_dir}",
                           f"--model_dir={model_dir}", "--debug",
                           f"--cache_dir={tmp_path / 'cache'}"], capsys)
  assert code != 0
  assert re.search(message, err), err
  assert not model_dir.exists()


@pytest.fixture(scope="module")
def embedded_export():
  from bam_tf.modeling import minilm  # pylint: disable=g-import-not-at-top
  return minilm.export_embedded_encoder()


def test_hub_path_that_is_not_a_bert_encoder(embedded_export, glue_dir,
                                             tmp_path, capsys):
  # A real TF-Hub SavedModel, but the preprocessor, not an encoder.
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}",
                    f"--hub_module_url={embedded_export['preprocessor']}"],
                   capsys)
  assert code != 0
  assert "does not look like a TF-Hub BERT encoder" in err, err
  assert "--hub_module_url must point to a BERT encoder" in err
  assert not model_dir.exists()


def test_vocab_that_does_not_match_the_encoder(embedded_export, glue_dir,
                                               tmp_path, capsys):
  vocab = tmp_path / "vocab.txt"
  with open(embedded_export["vocab_file"], encoding="utf-8") as f:
    vocab.write_text("".join(f.readlines()[:20000]), encoding="utf-8")
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}",
                    f"--hub_module_url={embedded_export['encoder']}",
                    f"--vocab_file={vocab}"], capsys)
  assert code != 0
  assert (f"--vocab_file {vocab}: 20000 tokens, but the encoder" in err
          and "embeds 30522 word ids" in err), err
  assert not model_dir.exists()


def test_a_batch_larger_than_a_pass_is_refused(glue_dir, tmp_path, capsys):
  """--train_batch_size=1e12 (a typo for 1e2, say) ended in numpy's
  MemoryError allocating the pool's padding rows, after the run's folder
  was made. Known only once the data is read: before the claim."""
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}", "--debug",
                    f"--cache_dir={tmp_path / 'cache'}",
                    "--train_batch_size=1000000000000"], capsys)
  assert code == 2, err
  assert _one_error(err) == (
      "error: --train_batch_size: 1,000,000,000,000 is more than the 50 "
      "training examples of one pass over rte (each batch would be mostly "
      "padding); use at most 50")
  assert not model_dir.exists()


# Checked before anything is written (issue 25): each case below fails in
# configure, before --model_dir is created or touched, so a corrected rerun
# is never refused because of the failed one.


def _tree(path):
  """Every file (its bytes) and folder (None) under `path`; None if absent."""
  path = str(path)
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    with open(path, "rb") as f:
      return {".": f.read()}
  out = {}
  for root, dirs, names in os.walk(path):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), path)] = None
    for n in names:
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), path)] = f.read()
  return out


def _refused(args, message, tmp_path, capsys, model_dir=None):
  """Runs the CLI; asserts exit 2, one `error:` line matching `message`, and
  that neither --model_dir nor the cache changed."""
  model_dir = model_dir or tmp_path / "run"
  cache = tmp_path / "cache"
  before = _tree(model_dir)
  # A short training run; the other modes read the run's own settings.
  train = [] if any(a.startswith("--mode=") and a != "--mode=train"
                    for a in args) else ["--debug", "--max_train_steps=1"]
  code, err = _run([f"--model_dir={model_dir}", f"--cache_dir={cache}"]
                   + train + args, capsys)
  assert code == 2, err
  line = _one_error(err)
  assert re.search(message, line), line
  assert _tree(model_dir) == before
  assert not cache.exists()
  return line


@pytest.mark.parametrize("args,message", [
    (["--seed=-1"], r"^error: --seed: must be in \[0, 2\^32\), got -1$"),
    ([f"--seed={2 ** 32}"], r"--seed: must be in \[0, 2\^32\)"),
    ([f"--seed={2 ** 32 - 2}", "--num_trials=3"],
     r"--seed: trial t uses --seed \+ t: 4294967294 \+ 2"),
    (["--num_train_epochs=inf"], r"--num_train_epochs: must be > 0 and "
     r"finite, got inf"),
    (["--num_train_epochs=nan"], r"--num_train_epochs: .* got nan"),
    (["--learning_rate=inf"], r"--learning_rate: must be > 0 and finite"),
    (["--keep_checkpoint_max=0"], r"--keep_checkpoint_max: must be >= 1, "
     "got 0"),
    (["--sampling_exponent=inf"], r"--sampling_exponent: must be >= 0 and "
     r"finite, got inf"),
    (["--sampling_exponent=nan"], r"--sampling_exponent: .* got nan"),
    (["--sampling_exponent=-0.5"], r"--sampling_exponent: .* got -0.5"),
    (["--teacher_trial=-1"], r"--teacher_trial: must be >= 0"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_values_refused_before_anything_is_written(args, message,
                                                       glue_dir, tmp_path,
                                                       capsys):
  _refused(["--task_names=rte", f"--data_dir={glue_dir}"] + args, message,
           tmp_path, capsys)


def test_init_from_missing_or_unfinished(glue_dir, tmp_path, capsys):
  base = ["--task_names=rte", f"--data_dir={glue_dir}"]
  _refused(base + [f"--init_from={tmp_path / 'nope'}"],
           r"--init_from: .*nope is not a folder", tmp_path, capsys)
  # A run killed before its trial finished: checkpoints, no final weights.
  source = tmp_path / "multi"
  (source / "trial_0" / "checkpoints").mkdir(parents=True)
  (source / "config.json").write_text("{}")
  _refused(base + [f"--init_from={source}"],
           r"--init_from: .*multi holds no final weights of trial 0 "
           r"\(.*trial_0/final/encoder_and_heads.index missing\)",
           tmp_path, capsys)
  (source / "trial_0" / "final").mkdir()
  (source / "trial_0" / "final" / "encoder_and_heads.index").write_bytes(b"")
  _refused(base + [f"--init_from={source}", "--teacher_trial=1"],
           r"holds no final weights of trial 1", tmp_path, capsys)


def test_model_dir_that_is_a_file_or_holds_a_cut_config(glue_dir, tmp_path,
                                                        capsys):
  base = ["--task_names=rte", f"--data_dir={glue_dir}"]
  a_file = tmp_path / "run.txt"
  a_file.write_text("not a folder")
  _refused(base, r"^error: --model_dir: .*run.txt is a file, not a folder$",
           tmp_path, capsys, model_dir=a_file)
  _refused(base, r"--model_dir: .*run.txt is a file, not a folder, so "
           r".*run.txt/sub cannot be made", tmp_path, capsys,
           model_dir=a_file / "sub")
  # A config.json cut short (e.g. a full disk before atomic writes).
  model_dir = tmp_path / "cut"
  model_dir.mkdir()
  (model_dir / "config.json").write_text('{\n  "adam_bias_correction": fa')
  _refused(base, r"^error: --model_dir: .*cut/config.json:2: not valid JSON "
           r"\(.*\); --overwrite deletes the run in --model_dir",
           tmp_path, capsys, model_dir=model_dir)
  (model_dir / "config.json").write_text("[]")
  _refused(base, r"config.json: not a JSON object", tmp_path, capsys,
           model_dir=model_dir)
  # Modes that read a finished run say it holds none.
  (model_dir / "config.json").write_text('{"mode": "tr')
  _refused(["--mode=export"], r"--model_dir: .*config.json:1: not valid "
           r"JSON .*; --model_dir holds no finished run", tmp_path, capsys,
           model_dir=model_dir)


def test_model_dir_not_writable_as_os_access_reports(glue_dir, tmp_path,
                                                      capsys, monkeypatch):
  """What a read-only folder looks like to the check (also as root, where
  the real case below cannot be made)."""
  parent = tmp_path / "ro"
  parent.mkdir()
  real_access = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: (
      False if os.path.abspath(p) == str(parent) else real_access(p, mode)))
  _refused(["--task_names=rte", f"--data_dir={glue_dir}"],
           r"^error: --model_dir: .*ro is not writable, so .*ro/run cannot "
           r"be made$", tmp_path, capsys, model_dir=parent / "run")


def test_read_only_model_dir(glue_dir, tmp_path, capsys):
  if os.geteuid() == 0:
    pytest.skip("running as root: root writes into a 0o555 folder anyway, "
                "so no read-only folder can be made here (see the os.access "
                "case above)")
  parent = tmp_path / "ro"
  parent.mkdir()
  parent.chmod(0o555)
  try:
    _refused(["--task_names=rte", f"--data_dir={glue_dir}"],
             r"--model_dir: .*ro is not writable", tmp_path, capsys,
             model_dir=parent / "run")
  finally:
    parent.chmod(0o755)


def _custom_data(tmp_path):
  """A user task's files: a CSV with a header (id, review, stars)."""
  data = tmp_path / "data"
  (data / "Reviews").mkdir(parents=True)
  rows = ["id,review,stars"] + [f"{i},{'great' if i % 2 else 'awful'} "
                                f"phone,{'pos' if i % 2 else 'neg'}"
                                for i in range(40)]
  for split in ("train", "dev"):
    (data / "Reviews" / f"{split}.csv").write_text("\n".join(rows) + "\n")
  return data


def _declaration(**changes):
  split = {"text_a_col": "review", "label_col": "stars", "delimiter": ","}
  d = {"name": "reviews", "dir_name": "Reviews", "kind": "classification",
       "label_list": ["neg", "pos"],
       "splits": {"train": dict(split, file="train.csv"),
                  "dev": dict(split, file="dev.csv")}}
  for key, value in changes.items():
    if key in split or key == "file":
      d["splits"]["train"][key] = value
    else:
      d[key] = value
  return d


@pytest.mark.parametrize("changes,message", [
    (dict(name="../../x"), r"task name '../../x' must be a file name"),
    (dict(name=".hidden"), r"task name '.hidden' must be a file name"),
    (dict(name="all"), r"task name 'all' is reserved"),
    (dict(dir_name="../Reviews"), r"dir_name '../Reviews' leaves "
     r"--data_dir"),
    (dict(file="../../train.csv"), r"split 'train': file '../../train.csv' "
     r"leaves the task folder"),
    (dict(label_list=["neg", "pos", "neg"]), r"label_list names a label "
     "twice"),
    (dict(label_list=[0, 1]), r"label_list must be a list of strings"),
    (dict(label_list="neg,pos"), r"label_list must be a list of strings"),
    (dict(text_a_col=5), r"^error: --custom_tasks: .*Reviews/train.csv:1: "
     r"text_a_col is column 5, but the header has 3 columns"),
    (dict(label_col=-4), r"train.csv:1: label_col is column -4"),
    (dict(delimiter=",,"), r"split 'train': delimiter must be one "
     "character"),
    (dict(delimiter=""), r"delimiter must be one character"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_bad_custom_task(changes, message, tmp_path, capsys):
  data = _custom_data(tmp_path)
  decl = tmp_path / "tasks.json"
  decl.write_text(json.dumps(_declaration(**changes)))
  name = changes.get("name", "reviews")
  _refused([f"--task_names={name}", f"--data_dir={data}",
            f"--custom_tasks={decl}"], message, tmp_path, capsys)


def test_custom_tasks_file_missing_and_teachers_twice(glue_dir, tmp_path,
                                                      capsys):
  _refused(["--task_names=rte", f"--data_dir={glue_dir}",
            f"--custom_tasks={tmp_path / 'my_tasks.json'}"],
           r"^error: --custom_tasks: file .*my_tasks.json not found",
           tmp_path, capsys)
  bad = tmp_path / "bad.json"
  bad.write_text('{"name": "x",\n "kind": }')
  _refused(["--task_names=rte", f"--data_dir={glue_dir}",
            f"--custom_tasks={bad}"], r"^error: .*bad.json:2: not valid "
           "JSON", tmp_path, capsys)
  teacher = tmp_path / "teacher"
  _refused(["--task_names=rte", f"--data_dir={glue_dir}", "--distill",
            f"--teachers=rte:{teacher},RTE:{teacher}"],
           r"^error: --teachers: task 'rte' is given twice", tmp_path,
           capsys)


def test_full_disk_one_line_and_last_checkpoint_kept(glue_dir, tmp_path,
                                                     capsys, monkeypatch):
  """The disk fills while the dev predictions are written (after training
  checkpointed): one line naming the file, its partial temp file removed,
  the checkpoints intact, and the same command then finishes the run."""
  from bam_tf.common import files  # pylint: disable=g-import-not-at-top
  real_open = open

  class FullDisk:
    """A file that takes half of what is written, then reports ENOSPC."""

    def __init__(self, f):
      self._f = f

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self._f.close()

    def write(self, data):
      self._f.write(data[:len(data) // 2])
      self._f.flush()
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def full_disk_open(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    if os.path.basename(path).startswith(".tmp_rte_dev.npz."):
      return FullDisk(f)
    return f

  monkeypatch.setattr(files, "open", full_disk_open, raising=False)
  model_dir = tmp_path / "run"
  args = ["--task_names=rte", f"--data_dir={glue_dir}",
          f"--model_dir={model_dir}", f"--cache_dir={tmp_path / 'cache'}",
          "--debug", "--max_train_steps=2", "--save_checkpoints_steps=1",
          "--teacher_output_trials="]
  code, err = _run(args, capsys)
  assert code == 2, err
  assert _one_error(err) == ("error: no space left on device writing "
                      f"{model_dir}/trial_0/predictions/rte_dev.npz"), err
  left = [os.path.join(r, n) for r, _, names in os.walk(model_dir)
          for n in names if n.startswith(".tmp_")]
  assert not left
  assert not (model_dir / "trial_0" / "predictions" / "rte_dev.npz").exists()
  ckpts = model_dir / "trial_0" / "checkpoints"
  state = (ckpts / "checkpoint").read_text()
  newest = re.search(r'^model_checkpoint_path: "(.*)"', state, re.M).group(1)
  assert (ckpts / f"{os.path.basename(newest)}.index").exists(), state
  monkeypatch.undo()
  code, err = _run(args, capsys)
  assert code == 0, err
  assert (model_dir / "results.json").exists()
  assert (model_dir / "trial_0" / "predictions" / "rte_dev.npz").exists()



def _records(path, n):
  """n featurised-cache records of 3..10 tokens (pipeline.task_dataset)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def i64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=v))
  with tf.io.TFRecordWriter(str(path)) as w:
    for i in range(n):
      length = 3 + i % 8
      w.write(tf.train.Example(features=tf.train.Features(feature={
          "eid": i64([i]), "task_id": i64([0]),
          "input_word_ids": i64([5] * length),
          "input_type_ids": i64([0] * length), "label_id": i64([0]),
          "label_value": tf.train.Feature(
              float_list=tf.train.FloatList(value=[0.0])),
          "num_tokens": i64([length])})).SerializeToString())


@pytest.mark.parametrize("replicas,static_shapes,expected", [
    (2, False, 50), (1, True, 50), (4, False, 52), (1, False, 50)])
def test_eval_batch_far_above_the_split_is_capped(tmp_path, monkeypatch,
                                                  replicas, static_shapes,
                                                  expected):
  """--eval_batch_size=100000 on a 50-row dev set: where replicas need
  equal shares (or a TPU one shape) the last batch is padded to the full
  batch and computed whole: 100000 rows (a --strategy=mirrored debug run
  over two CPUs was killed at 6 GB, on its way to 22 GB; one device does
  not pad: 1.2 GB either way). The batch is capped at the split's size
  rounded up to the replicas."""
  import types  # pylint: disable=g-import-not-at-top
  from bam_tf import runner  # pylint: disable=g-import-not-at-top
  from bam_tf.tasks import glue  # pylint: disable=g-import-not-at-top
  path = tmp_path / "dev.tfrecord"
  _records(path, 50)
  shapes = []
  monkeypatch.setattr(
      runner.evaluator, "predict_task",
      lambda model, task, ds, strategy, progress: shapes.append(
          [b["eid"].shape[0] for b in ds]))
  config = types.SimpleNamespace(
      tasks=[glue.GLUE_TASKS["rte"]], eval_batch_size=100000,
      use_dynamic_padding=not static_shapes, max_seq_length=16,
      static_shapes=static_shapes)
  data = runner.PreparedData({"rte": {"dev": str(path)}},
                             {"rte": {"dev": {"count": 50}}})
  runner.predict(config, None, data, config.tasks[0], "dev",
                 types.SimpleNamespace(num_replicas_in_sync=replicas))
  sizes = shapes[0]
  if replicas > 1 or static_shapes:  # every batch padded to the cap
    assert set(sizes) == {expected}, sizes
  else:
    assert sum(sizes) == 50, sizes


def test_full_disk_errors_as_one_line():
  """Real ENOSPC errors (/dev/full), from Python and from TensorFlow's file
  system (checkpoints and TFRecords are written through it)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full on this system")
  with pytest.raises(OSError) as python_error:
    with open("/dev/full", "wb") as f:
      f.write(b"x" * 100000)
  # A write names no file (files.atomic_path adds the one it writes).
  assert errors.disk_full_message(python_error.value) == (
      "no space left on device")
  python_error.value.filename = "/dev/full"
  assert errors.disk_full_message(python_error.value) == (
      "no space left on device writing /dev/full")
  with pytest.raises(tf.errors.OpError) as tf_error:
    with tf.io.gfile.GFile("/dev/full", "wb") as f:
      f.write(b"x" * 100000)
  assert errors.disk_full_message(tf_error.value) == (
      "no space left on device writing /dev/full")
  assert errors.disk_full_message(ValueError("x")) is None
  assert errors.disk_full_message(
      tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")) is (
          None)


def _write_to_full_disk(*args, **kwargs):
  """A real ENOSPC from Python's file system, as a tool's writer meets it."""
  del args, kwargs
  with open("/dev/full", "wb") as f:
    f.write(b"x" * 100000)


# Every command line's main, the function its work runs in, and its flags.
TOOLS = [
    ("bam_tf.serving.export", "export_run",
     ["--model_dir=run", "--export_dir=served"]),
    ("bam_tf.tools.demo_data", "write_demo_data", ["--out_dir=demo"]),
    ("bam_tf.tools.tfds_glue", "prepare",
     [f"--glue_dir={REPO_ROOT}", "--tfds_data_dir=tfds", "--configs=cola"]),
    ("bam_tf_experiments.report", "build_report", ["--runs=A:a"]),
    ("bam_tf_experiments.paired_trials", "build",
     ["--runs=A:a,B:b", "--baseline=A"]),
    ("bam_tf_experiments.reproduce", "reproduce",
     ["--methods=A:a.cfg", "--out_dir=out"]),
]


@pytest.mark.parametrize("module,work,argv", TOOLS,
                         ids=[t[0].rsplit(".", 1)[1] for t in TOOLS])
def test_every_tool_ends_on_a_full_disk_with_one_line_and_exit_2(
    module, work, argv, monkeypatch, capsys, tmp_path):
  """The export tool, the data tools and the experiment drivers end as
  run_classifier.py does (a full disk while writing: one line, exit 2);
  an unexpected error keeps its traceback."""
  import importlib  # pylint: disable=g-import-not-at-top
  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full on this system")
  monkeypatch.chdir(tmp_path)
  tool = importlib.import_module(module)
  monkeypatch.setattr(tool, work, _write_to_full_disk)
  if module.endswith("reproduce"):
    monkeypatch.setattr(tool, "parse_methods", lambda _: [("A", "a.cfg")])
  if module.endswith("paired_trials"):
    monkeypatch.setattr(tool.rp, "parse_runs", lambda _: {})
  if module.endswith("report"):
    monkeypatch.setattr(tool, "parse_runs", lambda _: {})
  assert tool.main(argv) == errors.USER_ERROR_EXIT
  assert capsys.readouterr().err.splitlines() == [
      "error: no space left on device"]

  def bug(*args, **kwargs):
    raise KeyError("a bug")
  monkeypatch.setattr(tool, work, bug)
  with pytest.raises(KeyError, match="a bug"):
    tool.main(argv)


# --------------------------------------------------------------- TFDS, metrics


@pytest.mark.parametrize("args,message", [
    (["--task_names=rte", "--data_source=tfds"],
     r"^error: --tfds_data_dir: .*empty_tfds holds no prepared glue/rte "
     r"\(looked for .*glue/rte/.*\); prepare it with `tfds build glue"),
    (["--task_names=spam", "--data_source=tfds",
      '--custom_tasks={"name": "spam", "kind": "classification", '
      '"label_list": ["a", "b"], "splits": {"train": {"file": "t.tsv", '
      '"text_a_col": 0, "label_col": 1}, "dev": {"file": "d.tsv", '
      '"text_a_col": 0, "label_col": 1}}}'],
     r"^error: --data_source=tfds: task 'spam' is not a GLUE task"),
])
def test_bad_tfds_source(args, message, tmp_path, capsys):
  (tmp_path / "empty_tfds").mkdir()
  _refused(args + [f"--tfds_data_dir={tmp_path / 'empty_tfds'}"], message,
           tmp_path, capsys)
  assert not (tmp_path / "run").exists()
  assert os.listdir(tmp_path / "empty_tfds") == []


def test_unknown_metric_names_file_and_field(glue_dir, tmp_path, capsys):
  decl = tmp_path / "tasks.json"
  decl.write_text(json.dumps({
      "name": "rte2", "dir_name": "RTE", "kind": "classification",
      "label_list": ["entailment", "not_entailment"], "metric": "auc",
      "splits": {"train": {"file": "train.tsv", "text_a_col": 1,
                           "label_col": 3},
                 "dev": {"file": "dev.tsv", "text_a_col": 1,
                         "label_col": 3}}}))
  _refused(["--task_names=rte2", f"--custom_tasks={decl}",
            f"--data_dir={glue_dir}"],
           rf"^error: {re.escape(str(decl))} \(task 0\): metric: a "
           r"classification task's metrics are accuracy, f1, macro_f1, mcc; "
           r"got 'auc'$", tmp_path, capsys)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config,message", [
    (None, r"^error: --hf_checkpoint_dir: .*hf: config.json is missing"),
    ({"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768,
      "num_hidden_layers": 12, "num_attention_heads": 12,
      "intermediate_size": 3072},
     r"^error: --hf_checkpoint_dir: .*hf/config.json: model_type 'roberta' "
     r"is not supported"),
])
def test_bad_hf_checkpoint_dir(config, message, glue_dir, tmp_path, capsys):
  folder = tmp_path / "hf"
  folder.mkdir()
  if config is not None:
    (folder / "config.json").write_text(json.dumps(config))
  model_dir = tmp_path / "run"
  code, err = _run(["--task_names=rte", f"--data_dir={glue_dir}",
                    f"--model_dir={model_dir}", f"--hf_checkpoint_dir={folder}",
                    f"--cache_dir={tmp_path / 'cache'}"], capsys)
  assert code == 2
  assert re.search(message, _one_error(err)), err
  assert not model_dir.exists()
  assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------- --mode=eval


def _finished_run(tmp_path, data_dir, name="run", extra=()):
  """What --mode=eval checks of a run before reading it: config.json, trial
  0's final weights and its checkpoint ckpt-2 (empty files)."""
  from bam_tf import configure  # pylint: disable=g-import-not-at-top
  from conftest import resolve_flags  # pylint: disable=g-import-not-at-top
  run = tmp_path / name
  trial = run / "trial_0"
  (trial / "checkpoints").mkdir(parents=True)
  (trial / "final").mkdir()
  for path in (trial / "checkpoints" / "ckpt-2.index",
               trial / "checkpoints" / "ckpt-2.data-00000-of-00001",
               trial / "final" / "encoder_and_heads.index"):
    path.write_bytes(b"")
  configure.save_config(resolve_flags([
      "--task_names=rte", f"--data_dir={data_dir}", f"--model_dir={run}",
      "--debug", *extra]), str(run / "config.json"))
  return run


def test_bad_eval_checkpoint_or_trial(glue_dir, tmp_path, capsys):
  run = _finished_run(tmp_path, glue_dir)
  other = _finished_run(tmp_path, glue_dir, "other")
  ckpts = run / "trial_0" / "checkpoints"
  (run / "trial_1" / "checkpoints").mkdir(parents=True)

  def refused(args, message):
    return _refused(["--mode=eval"] + args, message, tmp_path, capsys,
                    model_dir=run)

  def not_ours(trial):
    return (rf" is not a checkpoint of trial {trial} of .*/run \(those are "
            rf".*/run/trial_{trial}/checkpoints/ckpt-N, or that folder for "
            r"the latest; --trial picks the trial\)$")

  refused([f"--checkpoint={other}/trial_0/checkpoints/ckpt-2"],
          r"^error: --checkpoint: .*/other/trial_0/checkpoints/ckpt-2"
          + not_ours(0))
  refused([f"--checkpoint={tmp_path / 'nope' / 'ckpt-2'}"],
          r"^error: --checkpoint: .*/nope/ckpt-2" + not_ours(0))
  refused([f"--checkpoint={run}"], r"^error: --checkpoint: .*/run"
          + not_ours(0))  # the run's folder, not its checkpoints'
  refused([f"--checkpoint={ckpts}/model.ckpt"], not_ours(0))
  refused([f"--checkpoint={ckpts}/ckpt-2", "--trial=1"],
          r"trial_0/checkpoints/ckpt-2" + not_ours(1))
  refused([f"--checkpoint={ckpts}/ckpt-3"], r"^error: --checkpoint: "
          r".*/run/trial_0/checkpoints/ckpt-3 not found \(trial 0's "
          r"checkpoints: ckpt-2\)$")
  refused([f"--checkpoint={run}/trial_1/checkpoints", "--trial=1"],
          r"^error: --checkpoint: .*/run/trial_1/checkpoints holds no "
          r"complete checkpoint$")
  refused(["--trial=1"], r"^error: --trial: trial 1 of .*/run has no final "
          r"weights \(.*/run/trial_1/final/encoder_and_heads.index "
          r"missing\): has it finished\? \(--checkpoint evaluates one of its "
          r"checkpoints\)$")
  refused([f"--data_dir={tmp_path / 'gone'}"],
          r"^error: --data_dir: '.*/gone' is not a directory$")
  _refused(["--task_names=rte", f"--data_dir={glue_dir}",
            f"--checkpoint={ckpts}/ckpt-2"],
           r"^error: --checkpoint: given without --mode=eval$", tmp_path,
           capsys, model_dir=tmp_path / "new")
  # The data the run was trained on has moved, and no flag says where.
  data = tmp_path / "data"
  data.mkdir()
  moved = _finished_run(tmp_path, data, "moved")
  data.rmdir()
  for mode, split in (("eval", "dev"), ("predict", "test")):
    _refused([f"--mode={mode}"], r"^error: --data_dir: '.*/data' is not a "
             r"directory \(the run's own data; --data_dir or "
             rf"--data_source=tfds read its {split} data from elsewhere\)$",
             tmp_path, capsys, model_dir=moved)


def test_flags_a_mode_does_not_read_are_refused(glue_dir, tmp_path, capsys):
  """--mode=eval, predict and export read the finished run's settings: a
  flag they would ignore is refused when its value is not the run's own
  (--task_names=cola on an rte run would evaluate rte without a word), and
  passes when it is (a flagfile of the run itself)."""
  from bam_tf import configure  # pylint: disable=g-import-not-at-top
  run = _finished_run(tmp_path, glue_dir)

  def refused(args, message):
    return _refused(args, message, tmp_path, capsys, model_dir=run)

  refused(["--mode=eval", "--task_names=cola"],
          r"^error: --task_names: --mode=eval uses the run's own tasks "
          r"\(rte\); drop the flag$")
  refused(["--mode=predict", "--learning_rate=0.001"],
          r"^error: --learning_rate: --mode=predict does not read it \(the "
          r"run's config.json holds 5e-05\); drop the flag$")
  refused(["--mode=export", "--strategy=mirrored"],
          r"^error: --strategy: --mode=export does not read it")
  refused(["--mode=export", "--overwrite"],
          r"^error: --overwrite: --mode=export does not read it")
  refused(["--mode=predict", "--export_dir=/tmp/x"],
          r"^error: --export_dir: --mode=predict does not read it")
  # The run's own values (any spelling) and what the mode reads pass.
  config = configure.config_from_args([
      "--mode=eval", f"--model_dir={run}", "--task_names=RTE", "--debug",
      "--learning_rate=5e-5", "--eval_batch_size=16", f"--data_dir={glue_dir}"])
  assert config.task_names == ["rte"] and config.eval_batch_size == 16
  assert configure.eval_run_config(config).eval_batch_size == 16
  # The run's batch (32 here) unless one is given, the default too.
  small = _finished_run(tmp_path, glue_dir, "small", ["--eval_batch_size=32"])
  for given, batch in (([], 32), (["--eval_batch_size=128"], 128)):
    config = configure.config_from_args(
        ["--mode=eval", f"--model_dir={small}", f"--data_dir={glue_dir}"]
        + given)
    assert configure.eval_run_config(config).eval_batch_size == batch


def test_outputs_of_predict_and_inspect_data_that_cannot_be_folders(
    glue_dir, tmp_path, capsys):
  """A file where --mode=predict or inspect_data writes its folder is one
  line before any work, not a traceback after it."""
  run = _finished_run(tmp_path, glue_dir)
  (run / "test_predictions").write_text("not a folder")
  _refused(["--mode=predict", f"--data_dir={glue_dir}"],
           r"^error: --model_dir: .*/run/test_predictions is a file, not a "
           r"folder, so .*/run/test_predictions/trial_0 cannot be made$",
           tmp_path, capsys, model_dir=run)
  afile = tmp_path / "afile"
  afile.write_text("x")
  _refused(["--mode=inspect_data", "--task_names=rte",
            f"--data_dir={glue_dir}"],
           r"^error: --model_dir: .*/afile is a file, not a folder$",
           tmp_path, capsys, model_dir=afile)


@pytest.mark.parametrize("args,line", [
    (["--flagfile={missing}"], r"^error: Unable to open flagfile: .*"
     r"No such file or directory: '.*missing\.cfg'$"),
    (["--nosuchflag"], r"^error: Unknown command line flag 'nosuchflag'$"),
    (["--max_seq_length=abc"], r"^error: flag --max_seq_length=abc: "),
    (["--debug", "true"], r"^error: unexpected arguments \['true'\] \(every "
     r"flag is --name=value\)$"),
])
def test_flags_absl_cannot_parse_end_in_one_line(args, line, tmp_path):
  # absl printed two lines and exited 1 for these (a stray word: the whole
  # help first).
  proc = run_classifier_process(
      [a.format(missing=tmp_path / "missing.cfg") for a in args], timeout=300)
  assert proc.returncode == 2, proc.stdout[-2000:]
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1 and re.search(line, lines[0]), proc.stdout[-2000:]
