"""files.atomic_path: the one way bam_tf writes a file, and its users.

A reader must find the old file or the new one, never a half-written one;
a crashed writer must leave no temporary file behind; the bytes written are
exactly what a plain write gives (cache keys and results depend on them).
"""

import ast
import contextlib
import json
import os
import stat

import numpy as np
import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.common import files
from bam_tf.data import features
from bam_tf.data import train_pool
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.distill import teacher_outputs as to
from bam_tf.tasks import glue
from bam_tf.tasks.task import Example
from conftest import REPO_ROOT

RTE = glue.GLUE_TASKS["rte"]


class Boom(Exception):
  pass


def _temps(folder):
  return [n for n in os.listdir(folder) if n.startswith(".tmp_")]


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def _example(eid):
  return tf.train.Example(features=tf.train.Features(feature={
      "eid": tf.train.Feature(int64_list=tf.train.Int64List(value=[eid])),
  })).SerializeToString()


def test_target_untouched_until_exit(tmp_path):
  path = tmp_path / "results.json"
  path.write_bytes(b"old")
  with files.atomic_path(str(path)) as tmp:
    assert os.path.dirname(tmp) == str(tmp_path)  # same folder: rename is
    assert os.path.basename(tmp).startswith(".tmp_results.json.")  # atomic
    with open(tmp, "wb") as f:
      f.write(b"new, half")
    assert path.read_bytes() == b"old"
    with open(tmp, "ab") as f:
      f.write(b" and whole")
    assert path.read_bytes() == b"old"
  assert path.read_bytes() == b"new, half and whole"
  assert not _temps(tmp_path)


def test_body_raising_keeps_old_file_and_removes_temp(tmp_path):
  path = tmp_path / "results.json"
  path.write_bytes(b"old")
  with pytest.raises(Boom):
    with files.atomic_path(str(path)) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"partial")
      raise Boom()
  assert path.read_bytes() == b"old"
  assert not _temps(tmp_path)
  # Nothing there before: nothing there after.
  with pytest.raises(Boom):
    with files.atomic_path(str(tmp_path / "sub" / "new.json")):
      raise Boom()
  assert os.listdir(tmp_path / "sub") == []


def test_failed_rename_removes_temp(tmp_path, monkeypatch):
  path = tmp_path / "a.txt"
  path.write_bytes(b"old")

  def dying_replace(src, dst):
    raise Boom()

  monkeypatch.setattr(files.os, "replace", dying_replace)
  with pytest.raises(Boom):
    files.write_text_atomic(str(path), "new")
  monkeypatch.undo()
  assert path.read_bytes() == b"old" and not _temps(tmp_path)


def test_files_get_the_umask_mode_not_mkstemps(tmp_path):
  want = 0o666 & ~files._UMASK  # pylint: disable=protected-access
  files.write_bytes_atomic(str(tmp_path / "a.bin"), b"x")
  features.write_records_atomic(str(tmp_path / "b.tfrecord"), [_example(1)])
  assert _mode(tmp_path / "a.bin") == want
  assert _mode(tmp_path / "b.tfrecord") == want


def test_bytes_are_those_of_a_plain_write(tmp_path):
  obj = {"b": [1, 2.5, None], "a": "é"}
  files.write_json_atomic(str(tmp_path / "a.json"), obj)
  assert (tmp_path / "a.json").read_bytes() == (
      json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
  records = [_example(i) for i in range(5)]
  with tf.io.TFRecordWriter(str(tmp_path / "plain.tfrecord")) as w:
    for r in records:
      w.write(r)
  n = features.write_records_atomic(str(tmp_path / "atomic.tfrecord"),
                                    iter(records))
  assert n == 5
  assert (tmp_path / "atomic.tfrecord").read_bytes() == (
      tmp_path / "plain.tfrecord").read_bytes()


def test_crash_mid_tfrecord_leaves_old_file_and_no_temp(tmp_path):
  path = str(tmp_path / "f.tfrecord")
  features.write_records_atomic(path, [_example(1)])
  old = open(path, "rb").read()

  def dying():
    yield _example(2)
    yield _example(3)
    raise Boom()

  with pytest.raises(Boom):
    features.write_records_atomic(path, dying())
  assert open(path, "rb").read() == old
  assert not _temps(tmp_path)


@pytest.fixture
def atomic_calls(monkeypatch):
  """Paths written through files.atomic_path while the test runs."""
  calls = []
  real = files.atomic_path

  @contextlib.contextmanager
  def counting(path):
    calls.append(os.path.basename(path))
    with real(path) as tmp:
      yield tmp

  monkeypatch.setattr(files, "atomic_path", counting)
  return calls


def test_bam_files_are_written_through_atomic_path(tmp_path, minilm_vocab,
                                                   atomic_calls):
  """Feature cache, teacher outputs, a student's joined file and a train
  pool, each records + manifest."""
  tok = InGraphTokenizer(minilm_vocab, True, 32)
  exs = [Example(i, "rte", "a cat sat %d" % i, "a dog ran",
                 RTE.label_list[i % 2]) for i in range(6)]
  path, manifest = features.build_or_load_features(
      exs, RTE, 0, "train", None, tok, str(tmp_path / "cache"))
  assert atomic_calls == [os.path.basename(path),
                          os.path.basename(path)[:-len(".tfrecord")] + ".json"]

  del atomic_calls[:]
  eids = to.feature_eids(path)
  logits = np.random.RandomState(0).normal(size=(6, 2)).astype(np.float32)
  model_dir = str(tmp_path / "teacher")
  to.write_teacher_outputs(
      to.teacher_outputs_dir(model_dir, 0), RTE, "train",
      {"eid": eids, "logits": logits},
      {"data_sha256": manifest["key_parts"]["data_sha256"]})
  assert atomic_calls == ["rte_train.tfrecord", "rte_train.json"]

  del atomic_calls[:]
  targets = to.load_teacher_targets([model_dir], 0, RTE, "train", eids,
                                    manifest["key_parts"]["data_sha256"])
  to.join_teacher_targets(path, targets, str(tmp_path / "student.tfrecord"))
  assert atomic_calls == ["student.tfrecord", "student.json"]

  del atomic_calls[:]
  train_pool.write_pool([path], [2], 4, 0, str(tmp_path / "pool.tfrecord"),
                        pad_task_id=1)
  assert atomic_calls == ["pool.tfrecord"]
  for folder, _, names in os.walk(tmp_path):
    assert not _temps(folder), (folder, names)


# -------------------------------------- one module touches the filesystem

# Calls that open, rename, list, stat or delete files directly. Anything
# bam_tf does with files goes through bam_tf/common/files.py (which picks
# the OS or tf.io.gfile by the path), so every path may be gs:// or ram://.
_FILE_CALLS = {
    "open", "io.open", "os.open", "os.listdir", "os.scandir", "os.walk",
    "os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir",
    "os.makedirs", "os.mkdir", "os.stat", "os.lstat", "os.access",
    "os.statvfs", "os.chmod", "os.path.exists", "os.path.lexists",
    "os.path.isfile", "os.path.isdir", "os.path.islink",
    "os.path.getsize", "os.path.getmtime", "os.path.samefile",
    "os.path.realpath", "glob.glob",
}
_FILE_MODULES = ("shutil.", "tempfile.", "pathlib.", "fcntl.")
FILES_MODULE = os.path.join("bam_tf", "common", "files.py")


def _dotted(node):
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    parts.append(node.id)
    return ".".join(reversed(parts))
  return ""


def direct_file_calls(root):
  """(file:line, call) of every direct filesystem call in root's modules,
  bam_tf/common/files.py aside."""
  found = []
  for folder, _, names in os.walk(root):
    for name in sorted(names):
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, os.path.dirname(root))
      if not name.endswith(".py") or rel == FILES_MODULE:
        continue
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.Call):
          call = _dotted(node.func)
          if call in _FILE_CALLS or call.startswith(_FILE_MODULES):
            found.append((rel, node.lineno, call))
  return [(f"{rel}:{line}", call) for rel, line, call in sorted(found)]


def test_only_the_files_module_touches_the_filesystem():
  """bam_tf and the experiment tools that read its runs (a TPU run's
  model_dir is in a bucket, and so may a report's --out_dir be)."""
  found = [call for package in ("bam_tf", "bam_tf_experiments")
           for call in direct_file_calls(os.path.join(REPO_ROOT, package))]
  assert not found, ("use bam_tf.common.files instead of "
                     f"{found[:10]} ({len(found)} calls)")


def test_the_scan_finds_direct_calls(tmp_path):
  pkg = tmp_path / "bam_tf"
  (pkg / "common").mkdir(parents=True)
  (pkg / "common" / "files.py").write_text("import os\nos.remove('x')\n")
  (pkg / "bad.py").write_text(
      "import os, shutil\nwith open('a') as f: pass\nos.path.exists('b')\n"
      "shutil.rmtree('c')\nos.path.join('d', 'e')\n")
  assert direct_file_calls(str(pkg)) == [
      ("bam_tf/bad.py:2", "open"), ("bam_tf/bad.py:3", "os.path.exists"),
      ("bam_tf/bad.py:4", "shutil.rmtree")]
