"""tf.data input: per-task featurised TFRecords -> mixed, padded batches.

Training batches mix examples of all tasks: each task's records are repeated
and shuffled, then `sample_from_datasets` draws from them with the sampling
plan's probabilities. Batches are padded to their longest example (dynamic
padding) or to max_seq_length; the attention mask makes both give the same
results.
"""

from typing import Dict, List, Optional

import tensorflow as tf

from bam_tf.data import features as features_lib

SHUFFLE_BUFFER = 10000


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
          max_seq_length: int, drop_remainder: bool = False):
  """Pads token fields to the batch's longest example (or max_seq_length)."""
  seq_len = None if dynamic_padding else max_seq_length
  return dataset.padded_batch(
      batch_size, padded_shapes=_padded_shapes(dataset.element_spec, seq_len),
      drop_remainder=drop_remainder)


def task_dataset(record_path: str) -> tf.data.Dataset:
  return features_lib.load_dataset(record_path).map(
      _finalize, num_parallel_calls=tf.data.AUTOTUNE)


def train_dataset(record_paths: List[str], probabilities: List[float],
                  batch_size: int, seed: int, dynamic_padding: bool,
                  max_seq_length: int,
                  extra_fields_fn=None) -> tf.data.Dataset:
  """Infinite stream of mixed-task training batches.

  `extra_fields_fn` lets distillation join teacher outputs into records
  before they are mixed.
  """
  per_task = []
  for i, path in enumerate(record_paths):
    ds = task_dataset(path)
    if extra_fields_fn is not None:
      ds = extra_fields_fn(i, ds)
    ds = ds.cache().shuffle(SHUFFLE_BUFFER, seed=seed + 7919 * i,
                            reshuffle_each_iteration=True).repeat()
    per_task.append(ds)
  if len(per_task) == 1:
    mixed = per_task[0]
  else:
    mixed = tf.data.Dataset.sample_from_datasets(
        per_task, weights=probabilities, seed=seed,
        stop_on_empty_dataset=False)
  mixed = batch(mixed, batch_size, dynamic_padding, max_seq_length,
                drop_remainder=True)
  return mixed.prefetch(tf.data.AUTOTUNE)


def eval_dataset(record_path: str, batch_size: int, dynamic_padding: bool,
                 max_seq_length: int) -> tf.data.Dataset:
  """Every example once, in file order."""
  ds = batch(task_dataset(record_path), batch_size, dynamic_padding,
             max_seq_length)
  return ds.prefetch(tf.data.AUTOTUNE)


def options_deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
  opts = tf.data.Options()
  opts.deterministic = True
  return ds.with_options(opts)


def describe(plan_probabilities: Dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.3f}" for k, v in plan_probabilities.items())
