"""tf.data input: per-task featurised TFRecords -> mixed, padded batches.

Training batches are random draws from the run's shuffled pool of all tasks'
examples (bam_tf.data.train_pool), as the original's; with the
'proportional' scheme, `sample_from_datasets` mixes per-task streams
instead. Batches are padded to their longest example (dynamic
padding) or to max_seq_length; the attention mask makes both give the same
results. With length bucketing, batches are drawn from buckets of similar
length, so little of a batch is padding: on a mix of short (CoLA) and long
(RTE) examples a random batch is padded to its one long example.
"""

from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from bam_tf.data import features as features_lib


def _finalize(record):
  """int32 ids for the model and the train step (records store int64)."""
  out = dict(record)
  out["task_id"] = tf.cast(record["task_id"], tf.int32)
  out["label_id"] = tf.cast(record["label_id"], tf.int32)
  return out


def _padded_shapes(element_spec, seq_len: Optional[int]):
  shapes = {}
  for key, spec in element_spec.items():
    if spec.shape.rank == 1 and key.startswith("input_"):
      shapes[key] = [seq_len]
    else:
      shapes[key] = spec.shape
  return shapes


def batch(dataset: tf.data.Dataset, batch_size: int, dynamic_padding: bool,
          max_seq_length: int, drop_remainder: bool = False,
          length_bucketing: bool = False):
  """Pads token fields to the batch's longest example (or max_seq_length);
  with `length_bucketing` (needs dynamic padding) from length buckets."""
  if length_bucketing and dynamic_padding:
    return bucket_batch(dataset, batch_size, max_seq_length, drop_remainder)
  seq_len = None if dynamic_padding else max_seq_length
  return dataset.padded_batch(
      batch_size, padded_shapes=_padded_shapes(dataset.element_spec, seq_len),
      drop_remainder=drop_remainder)


def length_buckets(max_seq_length: int) -> List[int]:
  """Bucket upper bounds (exclusive): at 1/8, 1/4, 3/8, 1/2 and 3/4 of
  max_seq_length (16, 32, 48, 64, 96 for 128): short sequences are common
  and cheap, so they get the finer buckets."""
  bounds = {max(1, int(max_seq_length * f))
            for f in (1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4)}
  return [b + 1 for b in sorted(bounds) if b < max_seq_length]


def bucket_batch(dataset: tf.data.Dataset, batch_size: int,
                 max_seq_length: int, drop_remainder: bool,
                 boundaries: Optional[Sequence[int]] = None):
  """Batches of `batch_size` examples of similar length, each padded to its
  longest. Finite datasets end with each bucket's remainder (kept unless
  `drop_remainder`); rows leave in bucket order, not input order."""
  boundaries = list(boundaries or length_buckets(max_seq_length))
  spec = dataset.element_spec
  return dataset.bucket_by_sequence_length(
      lambda x: tf.shape(x["input_word_ids"])[0],
      bucket_boundaries=boundaries,
      bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
      padded_shapes=_padded_shapes(spec, None),
      drop_remainder=drop_remainder)


def split_by_length(features: Dict[str, tf.Tensor],
                    part_size: int) -> List[Dict[str, tf.Tensor]]:
  """One batch as parts of at most `part_size` examples of similar length:
  its examples sorted by length (stable) and cut into the fewest runs of
  equal size (within one), each part's token fields cut to its own longest
  example.

  For --length_sorted_part_size: the train step runs the parts under one
  gradient tape, so a step still trains on the batch as it was drawn (the
  original's random batches) and sums the same per-example losses, with
  far less padding. Hand-written because tf.data's bucketing forms batches
  out of the stream instead, which changes which examples share a step.
  `part_size` 0, or a batch whose size is unknown while tracing: the batch
  whole.
  """
  size = features["input_mask"].shape[0]
  if not part_size or size is None or size <= part_size:
    return [features]
  count = -(-size // part_size)
  lengths = tf.reduce_sum(tf.cast(features["input_mask"], tf.int32), axis=1)
  order = tf.argsort(lengths, stable=True)
  ordered = {k: tf.gather(v, order) for k, v in features.items()}
  lengths = tf.gather(lengths, order)
  bounds = [size * i // count for i in range(count + 1)]
  parts = []
  for start, stop in zip(bounds[:-1], bounds[1:]):
    # At least 1: a part of padding examples alone (all-zero masks).
    width = tf.maximum(tf.reduce_max(lengths[start:stop]), 1)
    part = {}
    for key, value in ordered.items():
      value = value[start:stop]
      if key.startswith("input_") and value.shape.rank == 2:
        value = value[:, :width]
      part[key] = value
    parts.append(part)
  return parts


def task_dataset(record_path: str, loader=None) -> tf.data.Dataset:
  """One task's records, ready for batching; `loader(path)` reads them
  (default: the featurised cache)."""
  loader = loader or features_lib.load_dataset
  return loader(record_path).map(_finalize,
                                 num_parallel_calls=tf.data.AUTOTUNE)


def train_dataset(streams: List[tf.data.Dataset],
                  probabilities: Optional[List[float]], batch_size: int,
                  seed: int, dynamic_padding: bool, max_seq_length: int,
                  length_bucketing: bool = False) -> tf.data.Dataset:
  """Endless training batches from endless record streams.

  One stream (the multi-task pool of bam_tf.data.train_pool, already in
  its shuffled order) is batched as it comes: random batches that mix tasks
  and lengths, as the original's. Several streams (one per task,
  --task_sampling=proportional) are mixed by `sample_from_datasets` with
  `probabilities`. `length_bucketing` (needs dynamic padding) batches the
  stream by length instead: every example is still drawn as before, only
  the batching differs.
  """
  streams = [s.map(_finalize, num_parallel_calls=tf.data.AUTOTUNE)
             for s in streams]
  if len(streams) == 1:
    mixed = streams[0]
  else:
    mixed = tf.data.Dataset.sample_from_datasets(
        streams, weights=probabilities, seed=seed,
        stop_on_empty_dataset=False)
  mixed = batch(mixed, batch_size, dynamic_padding, max_seq_length,
                drop_remainder=True, length_bucketing=length_bucketing)
  return mixed.prefetch(tf.data.AUTOTUNE)


def eval_dataset(record_path: str, batch_size: int, dynamic_padding: bool,
                 max_seq_length: int, pad_task_id: Optional[int] = None,
                 length_bucketing: bool = False) -> tf.data.Dataset:
  """Every example once; in file order unless `length_bucketing` (then in
  bucket order: the evaluator puts predictions back in eid order).

  With `pad_task_id` (the number of tasks), every batch has exactly
  `batch_size` rows: the last one is completed with padding examples
  (task_id = pad_task_id, eid = -1, zero inputs) and every batch carries
  `example_mask` (1 real, 0 padding), so replicas get equal shares and a TPU
  sees one shape. Drop rows with example_mask 0 from the outputs.
  """
  ds = batch(task_dataset(record_path), batch_size, dynamic_padding,
             max_seq_length, length_bucketing=length_bucketing)
  if pad_task_id is not None:
    ds = ds.map(lambda b: pad_batch(b, batch_size, pad_task_id))
  return ds.prefetch(tf.data.AUTOTUNE)


def pad_batch(features: Dict[str, tf.Tensor], batch_size: int,
              pad_task_id: int) -> Dict[str, tf.Tensor]:
  """Completes a (last, smaller) batch to `batch_size` rows of padding."""
  n = tf.shape(features["task_id"])[0]
  missing = batch_size - n
  out = {}
  for key, value in features.items():
    paddings = [[0, missing]] + [[0, 0]] * (value.shape.rank - 1)
    fill = {"task_id": pad_task_id, "eid": -1}.get(key, 0)
    padded = tf.pad(value, paddings, constant_values=tf.cast(fill,
                                                             value.dtype))
    out[key] = tf.ensure_shape(padded, [batch_size] + value.shape[1:])
  out["example_mask"] = tf.ensure_shape(
      tf.cast(tf.range(batch_size) < n, tf.int32), [batch_size])
  return out
