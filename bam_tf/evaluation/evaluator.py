"""Runs a trained model over a split and scores it."""

from typing import Dict

import numpy as np
import tensorflow as tf

from bam_tf.evaluation import metrics
from bam_tf.modeling.multitask_model import model_inputs
from bam_tf.tasks.task import TaskSpec


def _predict_step(model, task_index: int, task: TaskSpec):
  """One traced function per (model, task), reused across splits."""
  cache = model.__dict__.setdefault("_bam_predict_steps", {})
  if task_index not in cache:

    @tf.function(reduce_retracing=True)
    def step(features):
      logits = tf.cast(model(model_inputs(features),
                             training=False)[task.name], tf.float32)
      if task.is_regression:
        return logits, model.task_predictions(task_index, logits)
      return logits, tf.nn.softmax(logits, axis=-1)

    cache[task_index] = step
  return cache[task_index]


def predict_task(model, task_index: int, task: TaskSpec,
                 dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
  """Per-example outputs of one task's head, in file order.

  Returns eids, gold label ids / values, and logits + probabilities
  (classification) or the prediction on the original label scale
  (regression).
  """
  step = _predict_step(model, task_index, task)
  eids, label_ids, label_values, logits_all, outs = [], [], [], [], []
  for features in dataset:
    logits, out = step(features)
    eids.append(features["eid"].numpy())
    label_ids.append(features["label_id"].numpy())
    label_values.append(features["label_value"].numpy())
    logits_all.append(logits.numpy())
    outs.append(out.numpy())
  result = {"eid": np.concatenate(eids), "logits": np.concatenate(logits_all),
            "label_id": np.concatenate(label_ids),
            "label_value": np.concatenate(label_values)}
  if task.is_regression:
    result["scaled_prediction"] = np.concatenate(outs)
    result["prediction"] = task.unscale(result["scaled_prediction"])
    result["gold"] = task.unscale(result["label_value"])
  else:
    result["probabilities"] = np.concatenate(outs)
    result["prediction"] = np.argmax(result["probabilities"], axis=-1)
    result["gold"] = result["label_id"]
  return result


def score(task: TaskSpec, predictions: Dict[str, np.ndarray]):
  return metrics.task_metrics(task, predictions["gold"],
                              predictions["prediction"])
