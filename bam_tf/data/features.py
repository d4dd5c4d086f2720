"""Featurise one (task, split) into a TFRecord cache, and read it back.

Why a cache: tokenising every GLUE task on each run (and each trial) is
wasted time, and the original serialised features once and re-used them. The
cache file name carries a hash of everything that decides its content, so a
changed vocab, casing, max_seq_length, data file, label space or format
version builds a new file instead of silently reading a stale one.

Records hold UNPADDED ids (the mask is all ones and implied); `load_dataset`
adds `input_mask`; bam_tf.data.pipeline batches and pads them.
"""

import datetime
import hashlib
import json
import os
import random
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf

from bam_tf.common import files
from bam_tf.common.files import file_sha256
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.tasks.task import Example, TaskSpec

# Bump whenever the record layout or featurisation semantics change: every
# cache built before then is ignored and rebuilt.
FEATURE_FORMAT_VERSION = 2   # 2: original C* deletion, 200-char words,
                             # empty text_b packed as a single sentence
TOKENIZE_BATCH = 1024


def label_fields(example: Example, task_spec: TaskSpec) -> Tuple[int, float]:
  """(label_id, label_value): class index or 0, scaled target or 0.0."""
  if task_spec.is_regression:
    return 0, float(task_spec.scale_label(float(example.label)))
  try:
    return task_spec.label_list.index(str(example.label)), 0.0
  except ValueError:
    raise ValueError("%s example %s: label %r not in %r" % (
        task_spec.name, example.eid, example.label, task_spec.label_list))


def examples_sha256(examples: Sequence[Example]) -> str:
  """Digest of the examples themselves (a debug subset of a file differs)."""
  h = hashlib.sha256()
  for ex in examples:
    h.update(json.dumps([ex.eid, ex.text_a, ex.text_b, str(ex.label)],
                        ensure_ascii=False).encode("utf-8"))
    h.update(b"\n")
  return h.hexdigest()


def cache_key_parts(examples: Sequence[Example], task_spec: TaskSpec,
                    task_id: int, split: str, data_file: Optional[str],
                    tokenizer: InGraphTokenizer,
                    shuffle_seed: Optional[int] = None) -> Dict:
  """Everything that decides the records' content."""
  parts = {
      "task": task_spec.name,
      "split": split,
      "task_id": int(task_id),
      "data_sha256": file_sha256(data_file) if data_file else None,
      "examples_sha256": examples_sha256(examples),
      "double_unordered": bool(task_spec.double_unordered),
      "kind": task_spec.kind,
      "label_list": list(task_spec.label_list),
      "label_range": list(task_spec.label_range),
      "feature_format_version": FEATURE_FORMAT_VERSION,
      "shuffle_seed": shuffle_seed,
  }
  parts.update(tokenizer.config())
  return parts


def cache_key(parts: Dict) -> str:
  return hashlib.sha256(
      json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def cache_paths(cache_dir: str, task_name: str, split: str,
                key: str) -> Tuple[str, str]:
  stem = os.path.join(cache_dir, "features",
                      "%s_%s_%s" % (task_name, split, key[:16]))
  return stem + ".tfrecord", stem + ".json"


def _int64(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _tokenized_batches(examples: Sequence[Example],
                       tokenizer: InGraphTokenizer, batch_size: int):
  """Yields numpy (values, row_splits, type_values, num_tokens) per batch.

  tf.data batches the strings; each batch is tokenised by the tokenizer's
  signature-bound tf.function, traced once per tokenizer and re-used for
  every (task, split) -- a map() would re-trace and re-optimise the large
  tf_text graph (seconds) for every file.

  A pair task's row whose text_b gives no wordpieces ("", or e.g. " ") is
  packed as a single sentence, [CLS] a [SEP] with segment ids 0, by
  `tokenize_pair` itself, row by row, as the original `featurize` does
  (`if example.text_b:` ... `if tokens_b:`). A split that mixes None and
  strings as text_b is a reader bug and refused.
  """
  pair = examples[0].text_b is not None
  if any((ex.text_b is not None) != pair for ex in examples):
    raise ValueError("mixed single-sentence and pair examples in one split")
  texts = {"a": [ex.text_a for ex in examples]}
  if pair:
    texts["b"] = [ex.text_b for ex in examples]
  ds = tf.data.Dataset.from_tensor_slices(texts).batch(batch_size).prefetch(2)
  for batch in ds:
    if pair:
      out = tokenizer.tokenize_pair(batch["a"], batch["b"])
    else:
      out = tokenizer.tokenize_single(batch["a"])
    ids, types = out["input_word_ids"], out["input_type_ids"]
    yield (ids.flat_values.numpy(), ids.row_splits.numpy(),
           types.flat_values.numpy(), out["num_tokens"].numpy())


def write_records_atomic(path: str, records: Iterable[bytes]) -> int:
  """Writes serialised records as a TFRecord at `path` atomically (see
  files.atomic_path); returns how many. Every TFRecord bam_tf writes (feature
  caches, teacher outputs, students' joined files, train pools) goes here."""
  n = 0
  with files.atomic_path(path) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for r in records:
        writer.write(r)
        n += 1
  return n


def write_features(examples: Sequence[Example], task_spec: TaskSpec,
                   task_id: int, tokenizer: InGraphTokenizer, path: str,
                   shuffle_seed: Optional[int] = None,
                   batch_size: int = TOKENIZE_BATCH) -> Dict:
  """Tokenises and writes records to `path` atomically; returns stats.

  With `shuffle_seed` the record order is shuffled at write time (as the
  original did for train files); otherwise it is the examples' order.
  """
  labels = [label_fields(ex, task_spec) for ex in examples]
  order = list(range(len(examples)))
  if shuffle_seed is not None:
    random.Random(shuffle_seed).shuffle(order)
  records: List[Optional[bytes]] = [None] * len(examples)
  num_truncated = 0
  max_num_tokens = 0
  start = 0
  if examples:
    for values, splits, types, num in _tokenized_batches(
        examples, tokenizer, batch_size):
      for j in range(len(num)):
        i = start + j
        ex = examples[i]
        lo, hi = splits[j], splits[j + 1]
        n = int(num[j])
        num_truncated += n > hi - lo
        max_num_tokens = max(max_num_tokens, n)
        label_id, label_value = labels[i]
        feats = {
            "eid": _int64([ex.eid]),
            "task_id": _int64([task_id]),
            "input_word_ids": _int64(values[lo:hi]),
            "input_type_ids": _int64(types[lo:hi]),
            "label_id": _int64([label_id]),
            "label_value": tf.train.Feature(
                float_list=tf.train.FloatList(value=[label_value])),
            "num_tokens": _int64([n]),
        }
        records[i] = tf.train.Example(
            features=tf.train.Features(feature=feats)).SerializeToString()
      start += len(num)
  assert start == len(examples)
  write_records_atomic(path, (records[i] for i in order))
  return {"count": len(examples), "num_truncated": int(num_truncated),
          "max_num_tokens": int(max_num_tokens)}


def build_or_load_features(examples: Sequence[Example], task_spec: TaskSpec,
                           task_id: int, split: str, data_file: Optional[str],
                           tokenizer: InGraphTokenizer, cache_dir: str,
                           shuffle_seed: Optional[int] = None
                           ) -> Tuple[str, Dict]:
  """Returns (tfrecord_path, manifest), building the cache only if needed.

  The manifest is written after the records, so a present manifest with the
  right key means a complete file; anything else is rebuilt.
  `num_tokens` in records is the packed length BEFORE truncation.
  """
  parts = cache_key_parts(examples, task_spec, task_id, split, data_file,
                          tokenizer, shuffle_seed)
  key = cache_key(parts)
  path, manifest_path = cache_paths(cache_dir, task_spec.name, split, key)
  if files.exists(path) and files.exists(manifest_path):
    try:
      manifest = files.read_json(manifest_path)
      if manifest.get("key") == key:
        return path, manifest
    except (OSError, ValueError):
      pass
  files.makedirs(os.path.dirname(path))
  stats = write_features(examples, task_spec, task_id, tokenizer, path,
                         shuffle_seed)
  manifest = dict(stats)
  manifest.update({
      "key": key,
      "key_parts": parts,
      "path": files.absolute(path),
      "data_file": files.absolute(data_file) if data_file else None,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
  })
  files.write_json_atomic(manifest_path, manifest)
  return path, manifest


_FEATURES = {
    "eid": tf.io.FixedLenFeature([], tf.int64),
    "task_id": tf.io.FixedLenFeature([], tf.int64),
    "input_word_ids": tf.io.VarLenFeature(tf.int64),
    "input_type_ids": tf.io.VarLenFeature(tf.int64),
    "label_id": tf.io.FixedLenFeature([], tf.int64),
    "label_value": tf.io.FixedLenFeature([], tf.float32),
    "num_tokens": tf.io.FixedLenFeature([], tf.int64),
}


def parse_fn(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """One serialised record -> dict; ids int32 [len] plus input_mask ones."""
  ex = tf.io.parse_single_example(serialized, _FEATURES)
  out = dict(ex)
  for k in ("input_word_ids", "input_type_ids"):
    out[k] = tf.cast(tf.sparse.to_dense(ex[k]), tf.int32)
  out["input_mask"] = tf.ones_like(out["input_word_ids"])
  return out


def load_dataset(path: str) -> tf.data.Dataset:
  """Records as a dataset of variable-length dicts (see `parse_fn`)."""
  return tf.data.TFRecordDataset(path).map(
      parse_fn, num_parallel_calls=tf.data.AUTOTUNE)

