"""Teacher outputs: write/read round trip, temperature, ensembles, the join
into the student's train file, and every refusal of a bad teacher file.

Teacher files are real (written by write_teacher_outputs for real featurised
GLUE examples); only the predictions are made up, so the expected targets
can be computed by hand.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

import bam_tf  # noqa: F401
import tensorflow as tf

from bam_tf.data import features
from bam_tf.data import pipeline
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.distill import teacher_outputs as to
from bam_tf.tasks import glue, readers

from conftest import GLUE_DIR  # noqa: E402

RTE = glue.GLUE_TASKS["rte"]
STS = glue.GLUE_TASKS["sts"]


def softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class Student:
  """One task's featurised train file and what the student knows of it."""

  def __init__(self, task, path, manifest):
    self.task = task
    self.path = path
    self.manifest = manifest
    self.sha = manifest["key_parts"]["data_sha256"]
    self.eids = to.feature_eids(path)


def _featurise(task, tok, cache_dir, rows):
  exs = readers.read_examples(task, GLUE_DIR, "train", max_rows=rows)
  data_file = readers.split_path(task, GLUE_DIR, "train")
  path, manifest = features.build_or_load_features(
      exs, task, 0, "train", data_file, tok, str(cache_dir), shuffle_seed=3)
  return Student(task, path, manifest)


@pytest.fixture(scope="module")
def students(tmp_path_factory, minilm_vocab):
  tok = InGraphTokenizer(minilm_vocab, True, 32)
  cache = tmp_path_factory.mktemp("cache")
  return {"rte": _featurise(RTE, tok, cache, 24),
          "sts": _featurise(STS, tok, cache, 10)}


def fake_predictions(student, seed, order=None):
  """predict_task-like dict with known logits; `order` permutes rows."""
  rng = np.random.RandomState(seed)
  eids = np.array(student.eids)
  if order is not None:
    eids = eids[order]
  n = len(eids)
  if student.task.is_regression:
    scaled = rng.uniform(0, 1, n).astype(np.float32)
    return {"eid": eids, "logits": scaled[:, None] * 2 - 5,  # not linear
            "scaled_prediction": scaled,
            "prediction": STS.unscale(scaled), "label_id": np.zeros(n),
            "label_value": np.zeros(n, np.float32)}
  logits = rng.normal(0, 2, (n, RTE.num_labels)).astype(np.float32)
  return {"eid": eids, "logits": logits, "probabilities": softmax(logits),
          "prediction": logits.argmax(-1), "label_id": np.zeros(n),
          "label_value": np.zeros(n, np.float32)}


def make_teacher(root, name, student, seed=0, trial=0, order=None,
                 split="train", **extra):
  model_dir = os.path.join(str(root), name)
  preds = fake_predictions(student, seed, order)
  manifest_extra = {"data_sha256": student.sha,
                    "examples_sha256": student.manifest["key_parts"][
                        "examples_sha256"],
                    "vocab_sha256": "v", "do_lower_case": True,
                    "max_seq_length": 32, "model_dir": model_dir,
                    "trial": trial}
  manifest_extra.update(extra)
  path, manifest = to.write_teacher_outputs(
      to.teacher_outputs_dir(model_dir, trial), student.task, split, preds,
      manifest_extra)
  return model_dir, path, manifest, preds


def by_eid(eids, rows):
  return {int(e): np.asarray(r) for e, r in zip(eids, rows)}


def load(student, dirs, temperature=1.0, split="train"):
  return to.load_teacher_targets(dirs, 0, student.task, split, student.eids,
                                 student.sha, temperature)


def write_raw(path, eids, logits):
  """A teacher TFRecord written directly (bypasses the writer's checks)."""
  with tf.io.TFRecordWriter(path) as w:
    for e, row in zip(eids, logits):
      w.write(tf.train.Example(features=tf.train.Features(feature={
          "eid": tf.train.Feature(int64_list=tf.train.Int64List(value=[e])),
          "logits": tf.train.Feature(float_list=tf.train.FloatList(
              value=list(row)))})).SerializeToString())


def edit_manifest(path, **changes):
  mpath = os.path.splitext(path)[0] + ".json"
  with open(mpath) as f:
    m = json.load(f)
  m.update(changes)
  with open(mpath, "w") as f:
    json.dump(m, f)


# ------------------------------------------------------------- round trips


def test_write_round_trip(tmp_path, students):
  st = students["rte"]
  model_dir, path, manifest, preds = make_teacher(tmp_path, "t", st)
  assert path == os.path.join(model_dir, "teacher_outputs", "trial_0",
                              "rte_train.tfrecord")
  on_disk = json.load(open(os.path.splitext(path)[0] + ".json"))
  assert on_disk == manifest
  assert manifest["count"] == len(st.eids)
  assert manifest["label_list"] == list(RTE.label_list)
  assert manifest["data_sha256"] == st.sha
  assert manifest["kind"] == "classification" and manifest["trial"] == 0
  for key in ("examples_sha256", "vocab_sha256", "do_lower_case",
              "max_seq_length", "model_dir", "written", "format_version"):
    assert key in manifest
  raw = [tf.train.Example.FromString(r.numpy())
         for r in tf.data.TFRecordDataset(path)]
  assert [r.features.feature["eid"].int64_list.value[0] for r in raw] == \
      preds["eid"].tolist()
  got = np.array([r.features.feature["probabilities"].float_list.value
                  for r in raw])
  np.testing.assert_allclose(got, softmax(preds["logits"]), rtol=1e-5)

  t = load(st, [model_dir])
  assert t.kind == "classification" and t.values is None
  np.testing.assert_array_equal(t.eids, st.eids)
  np.testing.assert_allclose(t.probs, softmax(preds["logits"]), rtol=1e-5)
  assert t.probs.dtype == np.float32 and t.eids.dtype == np.int64
  assert t.sources == [os.path.abspath(path)]


def test_temperature(tmp_path, students):
  st = students["rte"]
  model_dir, _, _, preds = make_teacher(tmp_path, "t", st)
  t = load(st, [model_dir], temperature=2.5)
  np.testing.assert_allclose(t.probs, softmax(preds["logits"] / 2.5),
                             rtol=1e-5)
  with pytest.raises(to.TeacherError, match="temperature"):
    load(st, [model_dir], temperature=0.0)


def test_ensemble_is_mean_of_softmaxes(tmp_path, students):
  st = students["rte"]
  rev = np.arange(len(st.eids))[::-1]
  d1, _, _, p1 = make_teacher(tmp_path, "t1", st, seed=1)
  d2, _, _, p2 = make_teacher(tmp_path, "t2", st, seed=2, order=rev)
  t = load(st, [d1, d2], temperature=2.0)
  a, b = by_eid(p1["eid"], softmax(p1["logits"] / 2)), by_eid(
      p2["eid"], softmax(p2["logits"] / 2))
  want = np.array([(a[e] + b[e]) / 2 for e in st.eids.tolist()])
  np.testing.assert_allclose(t.probs, want, rtol=1e-5)
  assert len(t.sources) == 2


def test_regression_mean_of_scaled_predictions(tmp_path, students):
  st = students["sts"]
  assert len(st.eids) == 20  # 10 rows + swapped copies
  d1, p1path, m1, p1 = make_teacher(tmp_path, "t1", st, seed=1)
  # A writer given only the original-scale prediction stores it scaled.
  p2 = fake_predictions(st, 2)
  del p2["scaled_prediction"]
  d2 = os.path.join(str(tmp_path), "t2")
  to.write_teacher_outputs(to.teacher_outputs_dir(d2, 0), STS, "train", p2,
                           {"data_sha256": st.sha, "model_dir": d2})
  assert m1["kind"] == "regression" and m1["label_list"] == []
  t = load(st, [d1, d2], temperature=3.0)  # T does not apply to regression
  assert t.kind == "regression" and t.probs is None
  scaled2 = STS.scale_label(p2["prediction"])
  want = (by_eid(p1["eid"], p1["scaled_prediction"]),
          by_eid(p2["eid"], scaled2))
  np.testing.assert_allclose(
      t.values, [(want[0][e] + want[1][e]) / 2 for e in st.eids.tolist()],
      rtol=1e-5)
  assert t.values.shape == (20,) and t.values.dtype == np.float32


def test_writer_refuses_nan_and_inf(tmp_path, students):
  st = students["rte"]
  preds = fake_predictions(st, 0)
  preds["logits"][3, 1] = np.nan
  with pytest.raises(to.TeacherError, match="NaN or inf"):
    to.write_teacher_outputs(str(tmp_path), RTE, "train", preds, {})
  preds = fake_predictions(students["sts"], 0)
  preds["scaled_prediction"][0] = np.inf
  with pytest.raises(to.TeacherError, match="NaN or inf"):
    to.write_teacher_outputs(str(tmp_path), STS, "train", preds, {})
  assert not os.listdir(str(tmp_path))


# ------------------------------------------------------------------ joining


def _records(path):
  return [{k: v.numpy() for k, v in r.items()}
          for r in features.load_dataset(path)]


def test_join_classification_by_eid(tmp_path, students):
  st = students["rte"]
  perm = np.random.RandomState(0).permutation(len(st.eids))
  d, _, _, preds = make_teacher(tmp_path, "t", st, order=perm)
  t = load(st, [d], temperature=2.0)
  out = str(tmp_path / "student" / "rte_train.tfrecord")
  m = to.join_teacher_targets(st.path, t, out)
  assert m["count"] == len(st.eids) and m["target_field"] == "teacher_probs"
  assert m["sources"] == t.sources and m["num_labels"] == 2
  want = by_eid(preds["eid"], softmax(preds["logits"] / 2.0))
  plain = _records(st.path)
  joined = [{k: v.numpy() for k, v in r.items()}
            for r in to.load_student_dataset(out)]
  assert [r["eid"] for r in joined] == st.eids.tolist()  # order kept
  for p, j in zip(plain, joined):
    for k, v in p.items():
      np.testing.assert_array_equal(j[k], v)
    np.testing.assert_allclose(j["teacher_probs"], want[int(j["eid"])],
                               rtol=1e-5)
    assert j["teacher_value"] == 0.0
  # Fixed width across tasks: zero-padded.
  wide = next(iter(to.load_student_dataset(out, probs_width=3)))
  assert wide["teacher_probs"].shape == (3,)
  assert wide["teacher_probs"].numpy()[2] == 0.0


def test_join_regression(tmp_path, students):
  st = students["sts"]
  d, _, _, preds = make_teacher(tmp_path, "t", st,
                                order=np.arange(len(st.eids))[::-1])
  out = str(tmp_path / "sts_student.tfrecord")
  m = to.join_teacher_targets(st.path, load(st, [d]), out)
  assert m["kind"] == "regression" and m["target_field"] == "teacher_value"
  want = by_eid(preds["eid"], preds["scaled_prediction"])
  ds = to.load_student_dataset(out)
  assert ds.element_spec["teacher_value"].shape == ()
  got = [(int(r["eid"]), float(r["teacher_value"]),
          r["teacher_probs"].numpy().tolist()) for r in ds]
  assert [g[0] for g in got] == st.eids.tolist()
  for e, v, p in got:
    assert v == pytest.approx(float(want[e]), rel=1e-6)
    assert p == [0.0]


def test_joined_tasks_of_both_kinds_mix(tmp_path, students):
  """One tf.data stream can mix classification and regression students."""
  outs = []
  for name in ("rte", "sts"):
    st = students[name]
    d, _, _, _ = make_teacher(tmp_path, name, st)
    out = str(tmp_path / ("%s_student.tfrecord" % name))
    to.join_teacher_targets(st.path, load(st, [d]), out)
    outs.append(to.load_student_dataset(out, probs_width=2))
  mixed = tf.data.Dataset.sample_from_datasets(outs, seed=1)
  b = next(iter(pipeline.batch(mixed, 16, True, 32)))
  assert b["teacher_probs"].shape == (16, 2)
  assert b["teacher_value"].shape == (16,)
  is_reg = np.all(b["teacher_probs"].numpy() == 0, axis=1)
  assert np.all(b["teacher_value"].numpy()[~is_reg] == 0)
  np.testing.assert_allclose(b["teacher_probs"].numpy()[~is_reg].sum(-1), 1,
                             rtol=1e-5)


def test_join_refuses_missing_and_unused_targets(tmp_path, students):
  st = students["rte"]
  d, _, _, _ = make_teacher(tmp_path, "t", st)
  full = load(st, [d])
  e0 = int(full.eids[0])
  out = str(tmp_path / "s.tfrecord")
  with pytest.raises(to.TeacherError,
                     match=r"no teacher target for 1 example ids.*%d" % e0):
    to.join_teacher_targets(st.path, dataclasses.replace(
        full, eids=full.eids[1:], probs=full.probs[1:]), out)
  with pytest.raises(to.TeacherError, match="1 teacher targets have no "
                     "record.*99999"):
    to.join_teacher_targets(st.path, dataclasses.replace(
        full, eids=np.append(full.eids, 99999),
        probs=np.vstack([full.probs, [[0.5, 0.5]]]).astype(np.float32)), out)
  assert not os.path.exists(out)
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp_")]
  assert to.join_teacher_targets(st.path, full, out)["count"] == len(st.eids)


# ------------------------------------------------------ validation failures


def _expect(st, dirs, *patterns, split="train"):
  with pytest.raises(to.TeacherError) as info:
    load(st, dirs, split=split)
  msg = str(info.value)
  for p in patterns:
    assert p in msg, msg
  return msg


def test_nonexistent_dir(tmp_path, students):
  d = str(tmp_path / "nope")
  _expect(students["rte"], [d], d, "does not exist")


def test_no_outputs_for_trial(tmp_path, students):
  st = students["rte"]
  d, _, _, _ = make_teacher(tmp_path, "t", st, trial=1)
  _expect(st, [d], d, "no teacher outputs for trial 0", "trial_0")


def test_no_train_file(tmp_path, students):
  st = students["rte"]
  d, path, _, _ = make_teacher(tmp_path, "t", st, split="dev")
  want = path.replace("rte_dev", "rte_train")
  _expect(st, [d], want, "no train predictions", "missing")


def test_wrong_task_or_split_in_manifest(tmp_path, students):
  st = students["rte"]
  d, path, _, _ = make_teacher(tmp_path, "t", st)
  edit_manifest(path, task="mrpc")
  _expect(st, [d], path, "task 'mrpc'", "not the requested task 'rte'")
  edit_manifest(path, task="rte", split="dev")
  _expect(st, [d], path, "split 'dev'", "requested task 'rte' split "
          "'train'")


def test_label_list_differs(tmp_path, students):
  st = students["rte"]
  d, path, _, _ = make_teacher(tmp_path, "t", st)
  edit_manifest(path, label_list=["not_entailment", "entailment"])
  _expect(st, [d], path, "label_list", "differs")


def test_regression_label_range_differs(tmp_path, students):
  """A teacher trained on another score range stored (y - min) / max over
  that range: the student's gold would mean something else."""
  st = students["sts"]
  other = Student(dataclasses.replace(STS, label_range=(1.0, 5.0)), st.path,
                  st.manifest)
  d, path, _, _ = make_teacher(tmp_path, "t", other)
  _expect(st, [d], path, "label_range [1.0, 5.0] differs", "'sts', [0.0, "
          "5.0]")
  d2, _, _, _ = make_teacher(tmp_path, "t2", st)
  assert load(st, [d2]).values.shape == (len(st.eids),)


def test_stale_data_sha256(tmp_path, students):
  st = students["rte"]
  d, path, _, _ = make_teacher(tmp_path, "t", st, data_sha256="0" * 64)
  _expect(st, [d], path, "stale teacher", "data_sha256", "0" * 64, st.sha)


def test_missing_ids(tmp_path, students):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  write_raw(path, preds["eid"][1:], preds["logits"][1:])  # delete a record
  edit_manifest(path, count=len(st.eids) - 1)
  _expect(st, [d], path, "missing 1 of the student's %d example ids"
          % len(st.eids), "first: %d" % preds["eid"][0])


def test_extra_ids(tmp_path, students):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  write_raw(path, list(preds["eid"]) + [7777],
            list(preds["logits"]) + [[0.0, 1.0]])
  edit_manifest(path, count=len(st.eids) + 1)
  _expect(st, [d], path, "1 extra example ids", "7777")


def test_duplicate_ids(tmp_path, students):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  eids = list(preds["eid"])
  eids[1] = eids[0]
  write_raw(path, eids, preds["logits"])
  _expect(st, [d], path, "1 duplicate example ids", "first: %d" % eids[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_values(tmp_path, students, bad):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  logits = np.array(preds["logits"])
  logits[2, 0] = bad
  write_raw(path, preds["eid"], logits)
  _expect(st, [d], path, "NaN or inf", "first eids: %d" % preds["eid"][2])


def test_truncated_file(tmp_path, students):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  # Cut at a record boundary: fewer records than the manifest says.
  write_raw(path, preds["eid"][:-3], preds["logits"][:-3])
  _expect(st, [d], path, "%d records but its manifest says %d"
          % (len(st.eids) - 3, len(st.eids)), "truncated")
  # Cut in the middle of a record.
  d2, path2, _, _ = make_teacher(tmp_path, "t2", st)
  size = os.path.getsize(path2)
  with open(path2, "r+b") as f:
    f.truncate(size - 7)
  msg = _expect(st, [d2], path2, "truncated or corrupt")
  assert "{{" not in msg and "[Op:" not in msg, msg


def test_wrong_logit_width(tmp_path, students):
  st = students["rte"]
  d, path, _, preds = make_teacher(tmp_path, "t", st)
  write_raw(path, preds["eid"], [list(r) + [0.0] for r in preds["logits"]])
  _expect(st, [d], path, "has 3 logits, expected 2")


def test_ensemble_error_names_the_bad_teacher(tmp_path, students):
  st = students["rte"]
  good, _, _, _ = make_teacher(tmp_path, "good", st)
  bad, path, _, _ = make_teacher(tmp_path, "bad", st, data_sha256="x")
  _expect(st, [good, bad], path, "stale teacher")
