"""The multi-task Keras model: one shared encoder, one head per task.

Every head runs on every example; the train step takes each example's loss
from its own task's head only (a one-hot mask on task_id), so padding
examples (task_id = number of tasks) contribute nothing. The loss is summed
over the batch, as the original does.
"""

from typing import Dict, List

import tensorflow as tf
import tf_keras

from bam_tf.distill import schedule as schedule_lib
from bam_tf.tasks.task import TaskSpec

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


def head_name(task: TaskSpec) -> str:
  return f"head_{task.name}"


def model_inputs(features):
  """The model's own inputs out of a batch that also carries labels."""
  return {k: features[k] for k in INPUT_KEYS + ("task_id",)}


class MultiTaskModel(tf_keras.Model):
  """Functional multi-task model with the BAM train step.

  Built with `build_multitask_model`; `configure_bam` attaches the tasks and
  loss weights, `configure_distillation` the teacher-annealing schedule (the
  batch then carries `teacher_probs`, the teacher's probabilities, and
  `teacher_value`, its scaled prediction for regression tasks).
  """

  def configure_bam(self, tasks: List[TaskSpec], loss_weights: Dict[str,
                                                                   float],
                    regression_head: str, loss_divisor: float = 1.0):
    """`loss_divisor`: the objective is the batch's summed loss divided by
    it (1 = the original's sum; the global batch size = a mean)."""
    self.tasks = list(tasks)
    self.loss_divisor = float(loss_divisor)
    self.task_loss_weights = tf.constant(
        [float(loss_weights.get(t.name, 1.0)) for t in tasks], tf.float32)
    self.regression_head = regression_head
    # train_step returns logs already reduced over replicas.
    self.distribute_reduction_method = "first"
    self.distill_schedule = None
    self.teacher_tasks = frozenset()
    # lambda of teacher annealing; 1.0 = gold labels only.
    self.distill_lambda = tf.Variable(1.0, trainable=False, dtype=tf.float32,
                                      name="distill_lambda")

  def configure_distillation(self, schedule, teacher_tasks):
    """Blends teacher outputs into the targets of `teacher_tasks`."""
    self.distill_schedule = schedule
    self.teacher_tasks = frozenset(teacher_tasks)

  def _target(self, task, features, gold):
    if task.name not in self.teacher_tasks:
      return gold
    if task.is_regression:
      teacher = tf.cast(features["teacher_value"], tf.float32)
    else:
      teacher = tf.cast(features["teacher_probs"], tf.float32)
      teacher = teacher[:, :task.num_labels]
    return schedule_lib.blend(self.distill_lambda, gold, teacher)

  def task_predictions(self, task_index: int, logits: tf.Tensor) -> tf.Tensor:
    """Regression prediction on the scaled label space."""
    del task_index
    pred = tf.squeeze(logits, -1)
    if self.regression_head == "sigmoid":
      pred = tf.sigmoid(pred)
    return pred

  def per_example_losses(self, features, outputs) -> tf.Tensor:
    """[batch, num_tasks] losses of each head on each example (unmasked)."""
    columns = []
    for i, task in enumerate(self.tasks):
      logits = tf.cast(outputs[task.name], tf.float32)
      if task.is_regression:
        pred = self.task_predictions(i, logits)
        target = self._target(task, features,
                              tf.cast(features["label_value"], tf.float32))
        columns.append(tf.square(pred - target))
      else:
        target = self._target(task, features, tf.one_hot(
            tf.cast(features["label_id"], tf.int32), task.num_labels,
            dtype=tf.float32))
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        columns.append(-tf.reduce_sum(target * log_probs, axis=-1))
    return tf.stack(columns, axis=-1)

  def bam_loss(self, features, outputs):
    """Total loss (sum over the batch) and per-task mean losses for logs."""
    losses = self.per_example_losses(features, outputs)
    task_id = tf.cast(features["task_id"], tf.int32)
    mask = tf.one_hot(task_id, len(self.tasks), dtype=tf.float32)
    weighted = losses * mask * self.task_loss_weights[tf.newaxis, :]
    total = tf.reduce_sum(weighted)
    counts = tf.reduce_sum(mask, axis=0)
    per_task = tf.math.divide_no_nan(tf.reduce_sum(losses * mask, axis=0),
                                     counts)
    return total, per_task, counts

  def train_step(self, features):
    if self.distill_schedule is not None:
      self.distill_lambda.assign(
          self.distill_schedule.lam(self.optimizer.iterations))
    # mixed_float16: the optimizer is a LossScaleOptimizer around the
    # layer-wise one (bam_tf.training.distribution.wrap_optimizer).
    scaling = isinstance(self.optimizer,
                         tf_keras.mixed_precision.LossScaleOptimizer)
    with tf.GradientTape() as tape:
      outputs = self(model_inputs(features), training=True)
      total, per_task, counts = self.bam_loss(features, outputs)
      objective = total / self.loss_divisor
      scaled = (self.optimizer.get_scaled_loss(objective) if scaling
                else objective)
    variables = self.trainable_variables
    grads = tape.gradient(scaled, variables)
    if scaling:
      grads = self.optimizer.get_unscaled_gradients(grads)
    # The loss is this replica's SUM; apply_gradients all-reduces gradients
    # with SUM, which gives the gradient of the global batch's sum.
    # Global-norm clipping happens inside the optimizer, after cross-replica
    # aggregation (bam_tf.training.optimization).
    self.optimizer.apply_gradients(zip(grads, variables))
    # Logged values over the global batch: every replica returns the same
    # all-reduced logs, and Keras keeps the first (configure_bam sets
    # distribute_reduction_method; its default would sum them).
    task_sums = per_task * counts
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      total, counts, task_sums = ctx.all_reduce(
          tf.distribute.ReduceOp.SUM, [total, counts, task_sums])
      per_task = tf.math.divide_no_nan(task_sums, counts)
    n = tf.maximum(tf.reduce_sum(counts), 1.0)
    logs = {"loss": total / n, "lambda": tf.identity(self.distill_lambda)}
    for i, task in enumerate(self.tasks):
      logs[f"loss_{task.name}"] = per_task[i]
      logs[f"count_{task.name}"] = counts[i]
    return logs


def build_multitask_model(tasks: List[TaskSpec], encoder_layer,
                          head_dropout: float = 0.1) -> MultiTaskModel:
  """Wires inputs -> shared encoder -> pooled [CLS] -> per-task heads.

  Heads are initialised as the original's `tf.layers.dense`: Glorot-uniform
  kernel, zero bias.
  """
  inputs = {k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k)
            for k in INPUT_KEYS}
  inputs["task_id"] = tf_keras.Input(shape=(), dtype=tf.int32, name="task_id")
  encoder_outputs = encoder_layer(
      {k: inputs[k] for k in INPUT_KEYS})
  pooled = encoder_outputs["pooled_output"]
  outputs = {}
  for task in tasks:
    x = tf_keras.layers.Dropout(head_dropout,
                                name=f"dropout_{task.name}")(pooled)
    outputs[task.name] = tf_keras.layers.Dense(
        task.num_labels, name=head_name(task),
        # float32 heads under a mixed precision policy (logits, softmax and
        # losses in float32).
        dtype="float32",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros")(x)
  # task_id is part of the signature so that serving and the train step see
  # the same inputs; the heads themselves do not read it.
  return MultiTaskModel(inputs=inputs, outputs=outputs, name="bam_multitask")
