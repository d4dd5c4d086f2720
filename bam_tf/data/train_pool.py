"""The original's multi-task train file, rebuilt per trial.

The original wrote ONE train file for a run: every task's train examples
with their dataset multiples (copies), then padding examples up to a
multiple of the train batch, the whole list shuffled once with
`random.shuffle` and read with `repeat()` and a shuffle buffer of 100. So
each pass over the file holds every example exactly its task's number of
copies, and every batch is a random draw that mixes tasks and lengths.

Hand-written because no library builds this: tf.data's shuffle buffers only
shuffle locally (a file sorted by label or genre, like STS-B's, would reach
the model in order), and `sample_from_datasets` only matches the copies in
expectation. The pool is a TFRecord of the per-task featurised records (or a
student's records with teacher outputs joined), in an order drawn with the
trial's seed; it is written at the start of a trial's training and removed
when training ends (it is fully determined by its inputs and the seed, so a
resumed trial writes the same file again).
"""

import os
from typing import List, Sequence

import numpy as np

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf

from bam_tf.common import files
from bam_tf.data import features as features_lib

POOL_FILE = "train_pool.tfrecord"
# The original read its shuffled file with a shuffle buffer of 100.
READ_SHUFFLE_BUFFER = 100
_READ_CHUNK = 4096


def padding_count(num_examples: int, batch_size: int) -> int:
  """Padding examples that complete the last batch of a pass."""
  return -num_examples % batch_size


def pool_order(sizes: Sequence[int], copies: Sequence[int], batch_size: int,
               seed: int) -> np.ndarray:
  """[N, 2] int64 rows (source, record) in pool order; padding rows are
  (-1, -1). N = sum(sizes * copies) + padding, a multiple of batch_size."""
  parts = []
  for source, (size, n) in enumerate(zip(sizes, copies)):
    rows = np.tile(np.arange(size, dtype=np.int64), int(n))
    parts.append(np.stack([np.full_like(rows, source), rows], axis=1))
  total = int(sum(len(p) for p in parts))
  parts.append(np.full((padding_count(total, batch_size), 2), -1, np.int64))
  order = np.concatenate(parts, axis=0)
  # The whole list shuffled once, as the original's random.shuffle.
  return order[np.random.default_rng(seed).permutation(len(order))]


def padding_record(pad_task_id: int) -> bytes:
  """A padding example: task_id = number of tasks, so no head's loss counts
  it (the original's padding InputFeatures); one [PAD] token."""
  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  feats = {"eid": ints([-1]), "task_id": ints([pad_task_id]),
           "input_word_ids": ints([0]), "input_type_ids": ints([0]),
           "label_id": ints([0]), "num_tokens": ints([0]),
           "label_value": tf.train.Feature(
               float_list=tf.train.FloatList(value=[0.0]))}
  return tf.train.Example(features=tf.train.Features(
      feature=feats)).SerializeToString()


def read_serialized(path: str) -> np.ndarray:
  """Every record of a TFRecord file as an object array of bytes."""
  chunks = [c.numpy() for c in
            tf.data.TFRecordDataset(path).batch(_READ_CHUNK)]
  if not chunks:
    return np.zeros([0], object)
  return np.concatenate(chunks)


def write_pool(sources: Sequence[str], copies: Sequence[int], batch_size: int,
               seed: int, out_path: str, pad_task_id: int) -> dict:
  """Writes the shuffled pool of `sources` (one TFRecord file per task, in
  task order) to `out_path` atomically; returns its counts."""
  records = [read_serialized(p) for p in sources]
  order = pool_order([len(r) for r in records], copies, batch_size, seed)
  pad = padding_record(pad_task_id)
  features_lib.write_records_atomic(
      out_path, (pad if source < 0 else records[source][row]
                 for source, row in order))
  return {"records": int(len(order)),
          "padding": int(np.sum(order[:, 0] < 0)),
          "per_source": [int(np.sum(order[:, 0] == s))
                         for s in range(len(sources))]}


def parse_fn(teacher_width: int = 0):
  """Parses pool records; with `teacher_width` every record also gets
  `teacher_probs` [width] and `teacher_value` [] (zeros where the record has
  no teacher output: tasks without a teacher, padding), so records of all
  tasks share one structure in a batch."""
  spec = {"teacher_probs": tf.io.VarLenFeature(tf.float32),
          "teacher_value": tf.io.VarLenFeature(tf.float32)}

  def parse(serialized):
    out = features_lib.parse_fn(serialized)
    if teacher_width:
      extra = tf.io.parse_single_example(serialized, spec)
      probs = tf.sparse.to_dense(extra["teacher_probs"])
      probs = tf.pad(probs, [[0, teacher_width - tf.size(probs)]])
      out["teacher_probs"] = tf.ensure_shape(probs, [teacher_width])
      out["teacher_value"] = tf.reduce_sum(
          tf.sparse.to_dense(extra["teacher_value"]))
    return out
  return parse


def pool_dataset(path: str, seed: int, teacher_width: int = 0
                 ) -> tf.data.Dataset:
  """Endless parsed records of a pool: each pass reads the file in its
  shuffled order through a buffer of 100 (the original's), shuffled within
  the pass so every pass still holds each example its copies' times."""
  ds = tf.data.TFRecordDataset(path)
  ds = ds.shuffle(READ_SHUFFLE_BUFFER, seed=seed,
                  reshuffle_each_iteration=True).repeat()
  return ds.map(parse_fn(teacher_width), num_parallel_calls=tf.data.AUTOTUNE)


def pool_path(folder: str, task_name: str = "") -> str:
  """Where a trial keeps its pool (one per task for the sampler)."""
  name = f"train_pool_{task_name}.tfrecord" if task_name else POOL_FILE
  return os.path.join(folder, name)


def remove_pools(paths: List[str]):
  for path in paths:
    files.remove(path)
