"""Teacher outputs: written by a trained model, read (and checked) by a student.

Why a file format of our own: a born-again student trains on its teacher's
predictions for every train example, possibly days later and from another
run. Each (task, split) gets a TFRecord keyed by example id plus a JSON
manifest saying what produced it (task, labels, data file hash, vocab...).
The student refuses, with one line naming the file, any teacher output that
does not match its own data exactly -- a silently misaligned teacher would
just train a worse model.

Layout: <model_dir>/teacher_outputs/trial_<trial>/<task>_<split>.tfrecord
and .json beside it. Records: `eid` int64, `logits` float list
(classification: the head's n_labels logits; regression: [the prediction on
the scaled (y - min) / max label space]) and `probabilities` float list
(softmax at T=1; classification only, for people reading the file).

The student's joined train file (`join_teacher_targets`) holds the featurised
records unchanged plus `teacher_probs` (classification) or `teacher_value`
(regression); `load_student_dataset` yields both keys for every record so
tasks of both kinds can be mixed in one tf.data stream.
"""

import dataclasses
import datetime
import hashlib
import math
import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

import bam_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.data import features as features_lib
from bam_tf.tasks.task import CLASSIFICATION, REGRESSION, TaskSpec

# Bump when the record layout or its meaning changes; readers refuse others.
TEACHER_FORMAT_VERSION = 1
STUDENT_FORMAT_VERSION = 1
_READ_BATCH = 8192
_SHOW_IDS = 5


class TeacherError(BamError):
  """A teacher output that cannot be used for this student (one clear line)."""


@dataclasses.dataclass
class TeacherTargets:
  """Per-example teacher targets, aligned with the student's example ids.

  `probs` [N, n_labels] (classification: mean over teachers of
  softmax(logits / T)) or `values` [N] (regression: mean over teachers of the
  scaled prediction); the other is None.
  """
  task: str
  kind: str
  eids: np.ndarray                      # int64 [N], student order
  probs: Optional[np.ndarray] = None    # float32 [N, n_labels]
  values: Optional[np.ndarray] = None   # float32 [N]
  sources: List[str] = dataclasses.field(default_factory=list)
  temperature: float = 1.0

  @property
  def targets(self) -> np.ndarray:
    return self.values if self.kind == REGRESSION else self.probs

  def sha256(self) -> str:
    """Digest of what the student learns from (example ids and targets):
    a resumed student checks that its teachers did not change under it."""
    h = hashlib.sha256()
    for array in (self.eids.astype("<i8"), self.targets.astype("<f4")):
      h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------- writing


def teacher_outputs_dir(model_dir: str, trial: int) -> str:
  return os.path.join(model_dir, "teacher_outputs", "trial_%d" % int(trial))


def teacher_paths(out_dir: str, task_name: str, split: str
                  ) -> Tuple[str, str]:
  """(records, manifest) paths of one task's split."""
  stem = os.path.join(out_dir, "%s_%s" % (task_name, split))
  return stem + ".tfrecord", stem + ".json"


def _float_feature(values) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _int64_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _softmax(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  x = x - np.max(x, axis=-1, keepdims=True)
  e = np.exp(x)
  return e / np.sum(e, axis=-1, keepdims=True)


def _utc_now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _teacher_outputs_array(task: TaskSpec, predictions: Mapping
                           ) -> np.ndarray:
  """[N, width] float32 values for the `logits` field.

  Regression: the scaled prediction. `scaled_prediction` if the caller gives
  it; else re-scaled from `prediction` (evaluator.predict_task's original
  scale; exact for any head); else the raw head output (linear heads only).
  """
  if not task.is_regression:
    return np.asarray(predictions["logits"], np.float32).reshape(
        len(predictions["eid"]), -1)
  if predictions.get("scaled_prediction") is not None:
    vals = np.asarray(predictions["scaled_prediction"], np.float64)
  elif predictions.get("prediction") is not None:
    vals = task.scale_label(np.asarray(predictions["prediction"], np.float64))
  else:
    vals = np.asarray(predictions["logits"], np.float64)
  return vals.astype(np.float32).reshape(-1, 1)


def write_teacher_outputs(out_dir: str, task: TaskSpec, split: str,
                          predictions: Mapping[str, np.ndarray],
                          manifest_extra: Optional[Dict] = None
                          ) -> Tuple[str, Dict]:
  """Writes <task>_<split>.tfrecord then its .json manifest; (path, manifest).

  `predictions` is evaluator.predict_task's dict (optionally with
  `scaled_prediction` for regression). `manifest_extra` should carry
  data_sha256, examples_sha256, vocab_sha256, do_lower_case, max_seq_length,
  model_dir and trial (missing ones are recorded as None). Records are
  written first and the manifest last, both atomically, so a manifest always
  means a complete records file. NaN/inf or duplicate ids are refused:
  a student must never train on them.
  """
  eids = np.asarray(predictions["eid"], np.int64).reshape(-1)
  values = _teacher_outputs_array(task, predictions)
  width = task.num_labels
  if values.shape != (len(eids), width):
    raise ValueError("%s %s: teacher outputs have shape %s, expected (%d, %d)"
                     % (task.name, split, values.shape, len(eids), width))
  bad = ~np.all(np.isfinite(values), axis=1)
  if bad.any():
    raise TeacherError(
        "refusing to write teacher outputs for %s %s to %s: NaN or inf in %d "
        "of %d examples (first eids: %s)" % (
            task.name, split, out_dir, int(bad.sum()), len(eids),
            eids[bad][:_SHOW_IDS].tolist()))
  uniq, counts = np.unique(eids, return_counts=True)
  if (counts > 1).any():
    raise ValueError("%s %s: duplicate example ids %s" % (
        task.name, split, uniq[counts > 1][:_SHOW_IDS].tolist()))
  probs = None if task.is_regression else _softmax(values)

  def records():
    for i in range(len(eids)):
      feats = {"eid": _int64_feature([int(eids[i])]),
               "logits": _float_feature(values[i])}
      if probs is not None:
        feats["probabilities"] = _float_feature(probs[i])
      yield tf.train.Example(features=tf.train.Features(
          feature=feats)).SerializeToString()

  path, manifest_path = teacher_paths(out_dir, task.name, split)
  count = features_lib.write_records_atomic(path, records())
  manifest = {key: None for key in (
      "data_sha256", "examples_sha256", "vocab_sha256", "do_lower_case",
      "max_seq_length", "model_dir", "trial")}
  manifest.update(manifest_extra or {})
  manifest.update({
      "task": task.name,
      "split": split,
      "kind": task.kind,
      "count": int(count),
      "label_list": list(task.label_list),
      "num_labels": int(width),
      "label_range": list(task.label_range),
      "regression_scale": "(y - min) / max" if task.is_regression else None,
      "records": os.path.basename(path),
      "written": _utc_now(),
      "format_version": TEACHER_FORMAT_VERSION,
  })
  files.write_json_atomic(manifest_path, manifest)
  return path, manifest


# ---------------------------------------------------- reading + validation


def _op_message(err: "tf.errors.OpError") -> str:
  """TF's error text without its graph-function noise."""
  msg = re.sub(r"\{\{.*?\}\}\s*", "", err.message).split(" [Op:")[0]
  return msg.strip().splitlines()[0] if msg.strip() else type(err).__name__


def _ids(a: np.ndarray) -> str:
  return ", ".join(str(int(x)) for x in a[:_SHOW_IDS]) + (
      ", ..." if len(a) > _SHOW_IDS else "")


def _locate(model_dir: str, trial: int, task: TaskSpec, split: str
            ) -> Tuple[str, str]:
  if not files.isdir(model_dir):
    raise TeacherError("teacher model_dir %s does not exist" % model_dir)
  out_dir = teacher_outputs_dir(model_dir, trial)
  if not files.isdir(out_dir):
    raise TeacherError(
        "teacher %s has no teacher outputs for trial %d (%s is missing; only "
        "trials trained with teacher outputs on write them)" % (
            model_dir, trial, out_dir))
  path, manifest_path = teacher_paths(out_dir, task.name, split)
  if not files.exists(path):
    raise TeacherError("teacher file %s is missing: teacher %s has no %s "
                       "predictions for task %r" % (
                           path, model_dir, split, task.name))
  if not files.exists(manifest_path):
    raise TeacherError("teacher file %s has no manifest %s: it was not "
                       "completely written" % (path, manifest_path))
  return path, manifest_path


def _floats(values) -> Optional[List[float]]:
  try:
    return [float(v) for v in values]
  except (TypeError, ValueError):
    return None


def _check_manifest(path: str, manifest_path: str, task: TaskSpec,
                    split: str, student_data_sha256: Optional[str],
                    student_examples_sha256: Optional[str] = None) -> Dict:
  """The manifest of a teacher file that fits the student's task and data:
  made from the same data file, or from the same examples (a TSV teacher
  and a TFDS student, see bam_tf.tasks.sources)."""
  try:
    m = files.read_json(manifest_path)
  except (OSError, ValueError) as e:
    raise TeacherError("teacher file %s: manifest %s is unreadable (%s)" % (
        path, manifest_path, e)) from None
  if not isinstance(m, dict):
    raise TeacherError("teacher file %s: manifest %s is not a JSON object"
                       % (path, manifest_path))
  if m.get("format_version") != TEACHER_FORMAT_VERSION:
    raise TeacherError(
        "teacher file %s: format version %r, this code reads %d; rewrite the "
        "teacher outputs" % (path, m.get("format_version"),
                             TEACHER_FORMAT_VERSION))
  if m.get("task") != task.name or m.get("split") != split:
    raise TeacherError(
        "teacher file %s holds outputs for task %r split %r, not the "
        "requested task %r split %r" % (path, m.get("task"), m.get("split"),
                                        task.name, split))
  if m.get("kind") != task.kind:
    raise TeacherError("teacher file %s holds %s outputs, but task %r is %s"
                       % (path, m.get("kind"), task.name, task.kind))
  if list(m.get("label_list") or []) != list(task.label_list):
    raise TeacherError(
        "teacher file %s: its label_list %r differs from the label_list of "
        "task %r, %r (its logits would mean other labels)" % (
            path, m.get("label_list"), task.name, list(task.label_list)))
  if task.is_regression and _floats(m.get("label_range")) != _floats(
      task.label_range):
    raise TeacherError(
        "teacher file %s: its label_range %r differs from the label_range "
        "of task %r, %r (its scores were scaled by (y - min) / max over "
        "another range)" % (path, m.get("label_range"), task.name,
                            list(task.label_range)))
  if m.get("data_sha256") != student_data_sha256 and not (
      student_examples_sha256 and
      m.get("examples_sha256") == student_examples_sha256):
    raise TeacherError(
        "stale teacher: teacher file %s was made from a %s data file with "
        "data_sha256 %s, the student's is %s; re-run the teacher on the "
        "current data" % (path, split, m.get("data_sha256"),
                          student_data_sha256))
  if not isinstance(m.get("count"), int):
    raise TeacherError("teacher file %s: manifest has no record count" % path)
  return m


def _read_records(path: str, width: int) -> Tuple[np.ndarray, np.ndarray]:
  """(eids int64 [N], logits float32 [N, width]) of a teacher file."""
  spec = {"eid": tf.io.FixedLenFeature([], tf.int64),
          "logits": tf.io.VarLenFeature(tf.float32)}
  ds = tf.data.TFRecordDataset(path).batch(_READ_BATCH).map(
      lambda s: tf.io.parse_example(s, spec))
  eids, logits = [], []
  try:
    for batch in ds:
      e = batch["eid"].numpy()
      sp = batch["logits"]
      rows = sp.indices.numpy()[:, 0]
      counts = np.bincount(rows, minlength=len(e))
      if (counts != width).any():
        i = int(np.argmax(counts != width))
        raise TeacherError(
            "teacher file %s: record for eid %d has %d logits, expected %d"
            % (path, int(e[i]), int(counts[i]), width))
      eids.append(e)
      logits.append(sp.values.numpy().reshape(len(e), width))
  except tf.errors.DataLossError as err:
    raise TeacherError("teacher file %s is truncated or corrupt (%s)" % (
        path, _op_message(err))) from None
  except tf.errors.InvalidArgumentError as err:
    raise TeacherError("teacher file %s has a malformed record (%s)" % (
        path, _op_message(err))) from None
  if not eids:
    return np.zeros([0], np.int64), np.zeros([0, width], np.float32)
  return (np.concatenate(eids).astype(np.int64),
          np.concatenate(logits).astype(np.float32))


def _align(path: str, teacher_eids: np.ndarray, student_eids: np.ndarray
           ) -> np.ndarray:
  """Index into the teacher's rows for each student eid, or TeacherError."""
  uniq, counts = np.unique(teacher_eids, return_counts=True)
  if (counts > 1).any():
    dup = uniq[counts > 1]
    raise TeacherError("teacher file %s has %d duplicate example ids "
                       "(first: %s)" % (path, len(dup), _ids(dup)))
  order = np.argsort(teacher_eids, kind="stable")
  sorted_eids = teacher_eids[order]
  pos = np.searchsorted(sorted_eids, student_eids)
  pos_c = np.minimum(pos, max(len(sorted_eids) - 1, 0))
  found = (pos < len(sorted_eids)) & (
      sorted_eids[pos_c] == student_eids if len(sorted_eids) else False)
  if not np.all(found):
    missing = student_eids[~found]
    raise TeacherError(
        "teacher file %s is missing %d of the student's %d example ids "
        "(first: %s)" % (path, len(missing), len(student_eids), _ids(missing)))
  extra = np.setdiff1d(teacher_eids, student_eids)
  if len(extra):
    raise TeacherError(
        "teacher file %s has %d extra example ids not in the student's data "
        "(first: %s)" % (path, len(extra), _ids(extra)))
  return order[pos]


def read_teacher_file(model_dir: str, trial: int, task: TaskSpec, split: str,
                      student_eids: np.ndarray,
                      student_data_sha256: Optional[str],
                      student_examples_sha256: Optional[str] = None
                      ) -> Tuple[str, Dict, np.ndarray]:
  """One teacher, fully checked: (path, manifest, logits [N, w] aligned)."""
  path, manifest_path = _locate(model_dir, trial, task, split)
  manifest = _check_manifest(path, manifest_path, task, split,
                             student_data_sha256, student_examples_sha256)
  t_eids, logits = _read_records(path, task.num_labels)
  if len(t_eids) != manifest["count"]:
    raise TeacherError(
        "teacher file %s has %d records but its manifest says %d: the file "
        "is truncated or was changed after writing" % (
            path, len(t_eids), manifest["count"]))
  bad = ~np.all(np.isfinite(logits), axis=1)
  if bad.any():
    raise TeacherError("teacher file %s has NaN or inf values in %d records "
                       "(first eids: %s)" % (path, int(bad.sum()),
                                             _ids(t_eids[bad])))
  idx = _align(path, t_eids, student_eids)
  return path, manifest, logits[idx]


def load_teacher_targets(teacher_dirs: List[str], trial: int, task: TaskSpec,
                         split: str, student_eids: np.ndarray,
                         student_data_sha256: Optional[str],
                         temperature: float = 1.0,
                         student_examples_sha256: Optional[str] = None
                         ) -> TeacherTargets:
  """Targets for the student's examples, in `student_eids` order.

  Several dirs form an ensemble: the mean of their softmax(logits / T)
  (classification) or of their scaled predictions (regression; T unused).
  `student_data_sha256` is the student's features manifest
  key_parts['data_sha256']; a teacher made from another file is stale,
  unless made from the same examples (`student_examples_sha256`).
  """
  if not teacher_dirs:
    raise TeacherError("no teacher model_dir given for task %r" % task.name)
  if not (temperature > 0 and math.isfinite(temperature)):
    raise TeacherError("distillation temperature must be > 0, got %r"
                       % temperature)
  student_eids = np.asarray(student_eids, np.int64).reshape(-1)
  if len(np.unique(student_eids)) != len(student_eids):
    raise TeacherError("the student's %s %s data has duplicate example ids"
                       % (task.name, split))
  total = np.zeros([len(student_eids), task.num_labels], np.float64)
  sources = []
  for model_dir in teacher_dirs:
    path, _, logits = read_teacher_file(model_dir, trial, task, split,
                                        student_eids, student_data_sha256,
                                        student_examples_sha256)
    if task.is_regression:
      total += logits
    else:
      total += _softmax(logits.astype(np.float64) / temperature)
    sources.append(files.absolute(path))
  mean = (total / len(teacher_dirs)).astype(np.float32)
  if task.is_regression:
    return TeacherTargets(task.name, REGRESSION, student_eids,
                          values=mean[:, 0], sources=sources,
                          temperature=temperature)
  return TeacherTargets(task.name, CLASSIFICATION, student_eids, probs=mean,
                        sources=sources, temperature=temperature)


def feature_eids(features_path: str) -> np.ndarray:
  """Example ids of a featurised TFRecord, in file order (for student_eids)."""
  spec = {"eid": tf.io.FixedLenFeature([], tf.int64)}
  ds = tf.data.TFRecordDataset(features_path).batch(_READ_BATCH).map(
      lambda s: tf.io.parse_example(s, spec)["eid"])
  parts = [b.numpy() for b in ds]
  return (np.concatenate(parts) if parts else np.zeros([0])).astype(np.int64)


# ----------------------------------------------------------------- joining


def student_manifest_path(out_path: str) -> str:
  return os.path.splitext(out_path)[0] + ".json"


def join_teacher_targets(features_path: str, targets: TeacherTargets,
                         out_path: str) -> Dict:
  """Student train file = featurised records + teacher target, by eid.

  `targets` is load_teacher_targets' result. Every record keeps all its
  fields and its position; classification records gain `teacher_probs`
  (float list), regression ones `teacher_value` (one float). Written
  atomically, manifest (student_manifest_path) last. Every record needs a
  target and every target a record.
  """
  kind = targets.kind
  values = np.asarray(targets.targets, np.float32)
  if values.ndim == 1:  # regression: one value per example
    values = values[:, None]
  width = values.shape[1]
  table = {int(e): v for e, v in zip(targets.eids, values)}
  field = "teacher_value" if kind == REGRESSION else "teacher_probs"
  try:
    eids = feature_eids(features_path)
  except tf.errors.OpError as err:
    raise TeacherError("%s: cannot read features (%s)" % (
        features_path, _op_message(err))) from None
  uniq, counts = np.unique(eids, return_counts=True)
  if (counts > 1).any():
    raise TeacherError("%s: duplicate example ids (first: %s)" % (
        features_path, _ids(uniq[counts > 1])))
  known = np.fromiter(table.keys(), np.int64, len(table))
  missing = np.setdiff1d(eids, known)
  if len(missing):
    raise TeacherError(
        "%s: no teacher target for %d example ids (first: %s; targets from "
        "%s)" % (features_path, len(missing), _ids(missing),
                 ", ".join(targets.sources) or "no teacher file"))
  unused = np.setdiff1d(known, eids)
  if len(unused):
    raise TeacherError("%d teacher targets have no record in %s (first: %s)"
                       % (len(unused), features_path, _ids(unused)))

  def records():
    for raw in tf.data.TFRecordDataset(features_path):
      ex = tf.train.Example.FromString(raw.numpy())
      eid = int(ex.features.feature["eid"].int64_list.value[0])
      ex.features.feature[field].float_list.value[:] = table[eid].tolist()
      yield ex.SerializeToString()

  # Drop an old manifest first so a crash between the two renames never
  # pairs new records with it; the manifest is written last.
  manifest_path = student_manifest_path(out_path)
  files.remove(manifest_path)
  count = features_lib.write_records_atomic(out_path, records())
  manifest = {
      "count": int(count),
      "kind": kind,
      "num_labels": int(width),
      "target_field": field,
      "features_path": files.absolute(features_path),
      "features_sha256": files.file_sha256(features_path),
      "written": _utc_now(),
      "format_version": STUDENT_FORMAT_VERSION,
  }
  manifest.update({"task": targets.task, "sources": list(targets.sources),
                   "temperature": targets.temperature})
  files.write_json_atomic(manifest_path, manifest)
  return manifest


def load_student_dataset(path: str, probs_width: Optional[int] = None
                         ) -> tf.data.Dataset:
  """features.load_dataset's dicts plus `teacher_probs` and `teacher_value`.

  Both keys are in every element so that classification and regression
  tasks can be mixed (tf.data needs one structure):
    classification: teacher_probs float32 [W] (the targets, zero-padded to
      W = probs_width, default n_labels), teacher_value 0.0;
    regression: teacher_value float32 [] (scaled prediction), teacher_probs
      zeros [W] (W = probs_width, default 1).
  Pass probs_width = the largest num_labels of the student's tasks for a
  fixed shape across tasks.
  """
  manifest_path = student_manifest_path(path)
  if not files.exists(path) or not files.exists(manifest_path):
    raise TeacherError("student file %s or its manifest %s is missing (not "
                       "completely written)" % (path, manifest_path))
  m = files.read_json(manifest_path)
  if m.get("format_version") != STUDENT_FORMAT_VERSION:
    raise TeacherError("student file %s: format version %r, expected %d" % (
        path, m.get("format_version"), STUDENT_FORMAT_VERSION))
  n = int(m["num_labels"])
  regression = m["kind"] == REGRESSION
  width = probs_width or (1 if regression else n)
  if not regression and width < n:
    raise TeacherError("probs_width %d < %d labels of %s" % (width, n, path))
  if regression:
    spec = {"teacher_value": tf.io.FixedLenFeature([1], tf.float32)}
  else:
    spec = {"teacher_probs": tf.io.FixedLenFeature([n], tf.float32)}

  def parse(serialized):
    out = features_lib.parse_fn(serialized)
    extra = tf.io.parse_single_example(serialized, spec)
    if regression:
      out["teacher_value"] = extra["teacher_value"][0]
      out["teacher_probs"] = tf.zeros([width], tf.float32)
    else:
      out["teacher_probs"] = tf.pad(extra["teacher_probs"], [[0, width - n]])
      out["teacher_value"] = tf.constant(0.0, tf.float32)
    return out

  return tf.data.TFRecordDataset(path).map(
      parse, num_parallel_calls=tf.data.AUTOTUNE)
