"""The multi-task Keras model: one shared encoder, one head per task.

Every head runs on every example; the train step takes each example's loss
from its own task's head only (a one-hot mask on task_id), so padding
examples (task_id = number of tasks) contribute nothing. The loss is summed
over the batch, as the original does.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras

from bam_tf.data import pipeline
from bam_tf.modeling import teacher_annealing
from bam_tf.tasks.task import TaskSpec

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
REGRESSION_HEADS = ("linear", "sigmoid")


def head_name(task: TaskSpec) -> str:
  return f"head_{task.name}"


def model_inputs(features):
  """The model's own inputs out of a batch that also carries labels."""
  return {k: features[k] for k in INPUT_KEYS + ("task_id",)}


class MultiTaskModel(tf_keras.Model):
  """Functional multi-task model with the BAM train step.

  One constructor builds the whole graph, as keras-hub's task models do:
  inputs -> shared `encoder` -> pooled [CLS] -> dropout -> one dense head
  per task. Heads are initialised as the original's `tf.layers.dense`
  (Glorot-uniform kernel, zero bias) and stay float32 under a mixed
  precision policy.

  Args:
    encoder: a layer called on dict(input_word_ids, input_mask,
      input_type_ids) that returns at least 'pooled_output'.
    tasks: the TaskSpecs, in task_id order.
    loss_weights: task name -> weight of its loss (default 1.0 each).
    regression_head: 'linear' (original code) or 'sigmoid' (paper).
    loss_divisor: the objective is the batch's summed loss divided by it
      (1 = the original's sum; the global batch size = a mean).
    head_dropout: dropout before each head.
    distill_schedule: a teacher_annealing.DistillSchedule (or its config);
      with it the batch carries `teacher_probs` (teacher probabilities) and
      `teacher_value` (its scaled prediction for regression tasks), blended
      into the targets of `teacher_tasks`.
    teacher_tasks: names of the tasks that have a teacher.
    length_sorted_part_size: the train step runs each (per-replica) batch
      in parts of at most this many examples of similar length, each padded
      to its own longest example, with one gradient over them all
      (bam_tf.data.pipeline.split_by_length): the same batch and summed
      loss, less padding. 0: the batch whole.
  """

  def __init__(self, encoder, tasks: Sequence[TaskSpec], *,
               loss_weights: Optional[Dict[str, float]] = None,
               regression_head: str = "linear", loss_divisor: float = 1.0,
               head_dropout: float = 0.1, distill_schedule=None,
               teacher_tasks: Sequence[str] = (),
               length_sorted_part_size: int = 0, **kwargs):
    tasks = [t if isinstance(t, TaskSpec) else TaskSpec.from_config(t)
             for t in tasks]
    names = [t.name for t in tasks]
    loss_weights = dict(loss_weights or {})
    unknown = (set(loss_weights) | set(teacher_tasks)) - set(names)
    if unknown:
      raise ValueError(f"loss weights or teachers for tasks {sorted(unknown)} "
                       f"that are not among the model's tasks {names}")
    if regression_head not in REGRESSION_HEADS:
      raise ValueError(f"regression_head must be one of {REGRESSION_HEADS}, "
                       f"got {regression_head!r}")
    if isinstance(distill_schedule, dict):
      distill_schedule = teacher_annealing.DistillSchedule(**distill_schedule)

    inputs = {k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k)
              for k in INPUT_KEYS}
    # task_id is part of the signature so that serving and the train step
    # see the same inputs; the heads themselves do not read it.
    inputs["task_id"] = tf_keras.Input(shape=(), dtype=tf.int32,
                                       name="task_id")
    pooled = encoder({k: inputs[k] for k in INPUT_KEYS})["pooled_output"]
    outputs = {}
    for task in tasks:
      x = tf_keras.layers.Dropout(head_dropout,
                                  name=f"dropout_{task.name}")(pooled)
      outputs[task.name] = tf_keras.layers.Dense(
          task.num_labels, name=head_name(task), dtype="float32",
          kernel_initializer="glorot_uniform", bias_initializer="zeros")(x)
    kwargs.setdefault("name", "bam_multitask")
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    self.encoder = encoder
    self.tasks = tasks
    self.regression_head = regression_head
    self.loss_divisor = float(loss_divisor)
    self.head_dropout = float(head_dropout)
    self.task_loss_weights = tf.constant(
        [float(loss_weights.get(name, 1.0)) for name in names], tf.float32)
    self.distill_schedule = distill_schedule
    self.teacher_tasks = frozenset(teacher_tasks)
    self.length_sorted_part_size = int(length_sorted_part_size)
    # train_step returns logs already reduced over replicas.
    self.distribute_reduction_method = "first"
    # lambda of teacher annealing; 1.0 = gold labels only.
    self.distill_lambda = tf.Variable(1.0, trainable=False, dtype=tf.float32,
                                      name="distill_lambda")

  def get_config(self):
    weights = self.task_loss_weights.numpy().tolist()
    return {
        "name": self.name,
        "encoder": tf_keras.layers.serialize(self.encoder),
        "tasks": [t.get_config() for t in self.tasks],
        "loss_weights": {t.name: w for t, w in zip(self.tasks, weights)},
        "regression_head": self.regression_head,
        "loss_divisor": self.loss_divisor,
        "head_dropout": self.head_dropout,
        "distill_schedule": (None if self.distill_schedule is None
                             else self.distill_schedule.get_config()),
        "teacher_tasks": sorted(self.teacher_tasks),
        "length_sorted_part_size": self.length_sorted_part_size,
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
    from bam_tf.modeling import hub_export  # pylint: disable=g-import-not-at-top
    objects = {"KerasLayer": hub.KerasLayer,
               "exact_gelu": hub_export.exact_gelu}
    objects.update(custom_objects or {})
    config = dict(config)
    config["encoder"] = tf_keras.layers.deserialize(config["encoder"],
                                                   custom_objects=objects)
    return cls(**config)

  def _target(self, task, features, gold):
    if task.name not in self.teacher_tasks:
      return gold
    if task.is_regression:
      teacher = tf.cast(features["teacher_value"], tf.float32)
    else:
      teacher = tf.cast(features["teacher_probs"], tf.float32)
      teacher = teacher[:, :task.num_labels]
    return teacher_annealing.blend(self.distill_lambda, gold, teacher)

  def regression_output(self, logits: tf.Tensor) -> tf.Tensor:
    """A regression head's prediction on the scaled label space."""
    pred = tf.squeeze(logits, -1)
    if self.regression_head == "sigmoid":
      pred = tf.sigmoid(pred)
    return pred

  def per_example_losses(self, features, outputs) -> tf.Tensor:
    """[batch, num_tasks] losses of each head on each example (unmasked)."""
    columns = []
    for task in self.tasks:
      logits = tf.cast(outputs[task.name], tf.float32)
      if task.is_regression:
        pred = self.regression_output(logits)
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
      # One part unless --length_sorted_part_size: the parts' losses add up to
      # the batch's (each example's loss depends on that example alone).
      losses = [self.bam_loss(part, self(model_inputs(part), training=True))
                for part in pipeline.split_by_length(
                    features, self.length_sorted_part_size)]
      total, per_task, counts = losses[0]
      if len(losses) > 1:
        total = tf.add_n([part[0] for part in losses])
        counts = tf.add_n([part[2] for part in losses])
        per_task = tf.math.divide_no_nan(
            tf.add_n([part[1] * part[2] for part in losses]), counts)
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
    # all-reduced logs, and Keras keeps the first (the constructor sets
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
