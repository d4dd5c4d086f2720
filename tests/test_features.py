"""TFRecord feature cache: reuse, rebuild on key change, round trip, atomicity."""

import csv
import os
import time

import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.data import features
from bam_tf.data import pipeline
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.tasks.task import (CLASSIFICATION, REGRESSION, Example,
                               SplitLayout, TaskSpec)

from conftest import GLUE_DIR  # noqa: E402

MRPC = TaskSpec(
    name="mrpc", dir_name="MRPC", kind=CLASSIFICATION,
    splits={"train": SplitLayout("train.tsv", 3, 4, 0)},
    label_list=("0", "1"), double_unordered=True)
STS = TaskSpec(
    name="sts", dir_name="STS-B", kind=REGRESSION,
    splits={"train": SplitLayout("train.tsv", -3, -2, -1)},
    label_range=(0.0, 5.0), double_unordered=True, metric="spearman")
SST = TaskSpec(
    name="sst", dir_name="SST-2", kind=CLASSIFICATION,
    splits={"dev": SplitLayout("dev.tsv", 0, None, 1)},
    label_list=("0", "1"))


def slice_file(task_dir, split, n, dest):
  """Copies header + first n rows of a real GLUE file into dest."""
  src = os.path.join(GLUE_DIR, task_dir, split + ".tsv")
  if not os.path.exists(src):
    pytest.fail("GLUE data missing: " + src)
  with open(src, encoding="utf-8") as f:
    lines = [next(f) for _ in range(n + 1)]
  dest.write_text("".join(lines), encoding="utf-8")
  return str(dest)


def read(spec, split, path):
  """Minimal stand-in for the reader: header, no quoting, eid = row index."""
  lay = spec.splits[split]
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
  out = []
  for i, r in enumerate(rows):
    label = r[lay.label_col]
    out.append(Example(i, spec.name, r[lay.text_a_col],
                       None if lay.text_b_col is None else r[lay.text_b_col],
                       float(label) if spec.is_regression else label))
  return out


@pytest.fixture(scope="module")
def vocab_file(minilm_vocab):
  return minilm_vocab


@pytest.fixture(scope="module")
def tok(vocab_file):
  return InGraphTokenizer(vocab_file, True, 32)


@pytest.fixture
def mrpc(tmp_path):
  path = slice_file("MRPC", "train", 60, tmp_path / "mrpc_train.tsv")
  return path, read(MRPC, "train", path)


def listing(d):
  return sorted(os.listdir(os.path.join(d, "features")))


def test_reuse_does_not_rewrite(tmp_path, tok, mrpc):
  data_file, exs = mrpc
  cache = str(tmp_path / "cache")
  p1, m1 = features.build_or_load_features(exs, MRPC, 2, "train", data_file,
                                           tok, cache)
  mtime = os.stat(p1).st_mtime_ns
  time.sleep(0.05)
  p2, m2 = features.build_or_load_features(exs, MRPC, 2, "train", data_file,
                                           tok, cache)
  assert p1 == p2 and m1 == m2 and os.stat(p2).st_mtime_ns == mtime
  assert os.path.basename(p1).startswith("mrpc_train_")
  assert p1.endswith(".tfrecord") and len(listing(cache)) == 2


def test_rebuild_on_key_change(tmp_path, vocab_file, tok, mrpc):
  data_file, exs = mrpc
  cache = str(tmp_path / "cache")
  base, _ = features.build_or_load_features(exs, MRPC, 0, "train", data_file,
                                            tok, cache)
  paths = {base}
  # max_seq_length
  tok16 = InGraphTokenizer(vocab_file, True, 16)
  p, m = features.build_or_load_features(exs, MRPC, 0, "train", data_file,
                                         tok16, cache)
  assert m["key_parts"]["max_seq_length"] == 16
  paths.add(p)
  # casing
  cased = InGraphTokenizer(vocab_file, False, 32)
  p, m = features.build_or_load_features(exs, MRPC, 0, "train", data_file,
                                         cased, cache)
  assert m["key_parts"]["do_lower_case"] is False
  paths.add(p)
  # data file content (same path, one edited sentence)
  with open(data_file, encoding="utf-8") as f:
    text = f.read()
  edited = text.replace(exs[0].text_a, exs[0].text_a + " Really.", 1)
  assert edited != text
  with open(data_file, "w", encoding="utf-8") as f:
    f.write(edited)
  exs2 = read(MRPC, "train", data_file)
  p, m = features.build_or_load_features(exs2, MRPC, 0, "train", data_file,
                                         tok, cache)
  paths.add(p)
  # data file content changed but examples identical (e.g. a comment row
  # edited elsewhere): the data-file hash alone forces a rebuild.
  with open(data_file, "a", encoding="utf-8") as f:
    f.write("\n")
  p, _ = features.build_or_load_features(exs2, MRPC, 0, "train", data_file,
                                         tok, cache)
  paths.add(p)
  assert len(paths) == 5
  assert len(listing(cache)) == 10   # 5 record files + 5 manifests
  # Records of the edited file carry the new tokens.
  first = next(iter(features.load_dataset(p)))
  want = tok.tokenize_unpadded(tf.constant([exs2[0].text_a]),
                               tf.constant([exs2[0].text_b]))
  assert first["input_word_ids"].numpy().tolist() == \
      want["input_word_ids"].to_list()[0]


def test_round_trip_classification(tmp_path, tok, mrpc):
  data_file, exs = mrpc
  path, man = features.build_or_load_features(
      exs, MRPC, 3, "train", data_file, tok, str(tmp_path / "c"))
  want = tok.tokenize_unpadded(tf.constant([e.text_a for e in exs]),
                               tf.constant([e.text_b for e in exs]))
  ids = want["input_word_ids"].to_list()
  types = want["input_type_ids"].to_list()
  nums = want["num_tokens"].numpy().tolist()
  got = list(features.load_dataset(path).as_numpy_iterator())
  assert len(got) == len(exs) == man["count"]
  for i, (g, e) in enumerate(zip(got, exs)):
    assert g["eid"] == e.eid and g["task_id"] == 3
    assert g["input_word_ids"].tolist() == ids[i]
    assert g["input_type_ids"].tolist() == types[i]
    assert g["input_mask"].tolist() == [1] * len(ids[i])
    assert g["num_tokens"] == nums[i]
    assert g["label_id"] == MRPC.label_list.index(e.label)
    assert g["label_value"] == 0.0
  assert man["num_truncated"] == sum(n > len(x) for n, x in zip(nums, ids))
  assert man["num_truncated"] > 0   # max_seq_length 32 truncates MRPC


def test_round_trip_regression_and_single(tmp_path, tok):
  sts_file = slice_file("STS-B", "train", 40, tmp_path / "sts.tsv")
  exs = read(STS, "train", sts_file)
  path, man = features.build_or_load_features(
      exs, STS, 1, "train", sts_file, tok, str(tmp_path / "c"))
  got = list(features.load_dataset(path).as_numpy_iterator())
  assert [g["eid"] for g in got] == [e.eid for e in exs]
  for g, e in zip(got, exs):
    assert g["label_id"] == 0
    assert g["label_value"] == pytest.approx(e.label / 5.0, abs=1e-6)
  sst_file = slice_file("SST-2", "dev", 30, tmp_path / "sst.tsv")
  exs = read(SST, "dev", sst_file)
  path, man = features.build_or_load_features(
      exs, SST, 0, "dev", sst_file, tok, str(tmp_path / "c"))
  got = list(features.load_dataset(path).as_numpy_iterator())
  want = tok.tokenize_unpadded(tf.constant([e.text_a for e in exs]))
  assert [g["input_word_ids"].tolist() for g in got] == \
      want["input_word_ids"].to_list()
  assert all(g["input_type_ids"].sum() == 0 for g in got)
  # Padded batches equal the tokenizer's own padded output.
  batch = next(iter(pipeline.batch(features.load_dataset(path), 30,
                                   dynamic_padding=False, max_seq_length=32)))
  padded = tok(tf.constant([e.text_a for e in exs]))
  for k in ("input_word_ids", "input_mask", "input_type_ids"):
    assert batch[k].numpy().tolist() == padded[k].numpy().tolist()


def test_shuffled_write_keeps_records(tmp_path, tok, mrpc):
  data_file, exs = mrpc
  path, _ = features.build_or_load_features(
      exs, MRPC, 0, "train", data_file, tok, str(tmp_path / "c"),
      shuffle_seed=7)
  eids = [g["eid"] for g in features.load_dataset(path).as_numpy_iterator()]
  assert sorted(eids) == [e.eid for e in exs] and eids != sorted(eids)


def test_atomic_write_and_manifest(tmp_path, tok, mrpc, monkeypatch):
  data_file, exs = mrpc
  cache = str(tmp_path / "c")
  path, man = features.build_or_load_features(exs, MRPC, 0, "train",
                                              data_file, tok, cache)
  names = listing(cache)
  assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
  assert man["count"] == sum(1 for _ in tf.data.TFRecordDataset(path))
  assert man["key_parts"]["feature_format_version"] == \
      features.FEATURE_FORMAT_VERSION
  assert man["key_parts"]["vocab_sha256"] == tok.vocab_sha256
  # A writer killed mid-file leaves neither a record file nor a manifest,
  # and no temp file.
  other = InGraphTokenizer(tok.vocab_file, True, 24)

  class Boom(Exception):
    pass

  def dying_replace(src, dst):
    raise Boom()

  monkeypatch.setattr(features.os, "replace", dying_replace)
  with pytest.raises(Boom):
    features.build_or_load_features(exs, MRPC, 0, "train", data_file, other,
                                    cache)
  monkeypatch.undo()
  assert listing(cache) == names
  # A record file without its manifest (killed between the two) is rebuilt.
  os.remove(path[:-len(".tfrecord")] + ".json")
  mtime = os.stat(path).st_mtime_ns
  time.sleep(0.05)
  path2, man2 = features.build_or_load_features(exs, MRPC, 0, "train",
                                                data_file, tok, cache)
  assert path2 == path and os.stat(path).st_mtime_ns != mtime
  assert man2["count"] == len(exs)


def test_bad_label_and_mixed_pairs(tmp_path, tok):
  exs = [Example(0, "mrpc", "a", "b", "2")]
  with pytest.raises(ValueError, match="not in"):
    features.build_or_load_features(exs, MRPC, 0, "train", None, tok,
                                    str(tmp_path))
  exs = [Example(0, "mrpc", "a", "b", "1"), Example(1, "mrpc", "a", None, "1")]
  with pytest.raises(ValueError, match="mixed"):
    features.build_or_load_features(exs, MRPC, 0, "train", None, tok,
                                    str(tmp_path))
