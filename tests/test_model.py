"""The multi-task train step: masking, loss weights, summed loss."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from bam_tf.data import pipeline
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.modeling.teacher_annealing import DistillSchedule
from bam_tf.tasks import registry


def _model(loss_weights, regression_head="linear"):
  tf_keras.utils.set_random_seed(3)
  encoder = networks.BertEncoder(
      vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=16, dict_outputs=True)
  tasks = registry.get_tasks(["mnli", "sts", "rte"])
  model = MultiTaskModel(encoder, tasks, loss_weights=loss_weights,
                         regression_head=regression_head, head_dropout=0.1)
  return model, tasks


def _encoder_without_dropout(num_layers):
  """A tiny encoder drawn from seed 3, for like-for-like steps."""
  tf_keras.utils.set_random_seed(3)
  return networks.BertEncoder(
      vocab_size=50, hidden_size=16, num_layers=num_layers,
      num_attention_heads=2, inner_dim=32, max_sequence_length=32,
      dict_outputs=True, dropout_rate=0.0, attention_dropout_rate=0.0)


def _batch():
  rng = np.random.default_rng(0)
  return {
      "input_word_ids": tf.constant(rng.integers(1, 50, (5, 6)), tf.int32),
      "input_mask": tf.constant([[1] * 6, [1] * 4 + [0] * 2, [1] * 6,
                                 [1] * 3 + [0] * 3, [1] * 6], tf.int32),
      "input_type_ids": tf.zeros((5, 6), tf.int32),
      # the last example is padding: task_id == number of tasks
      "task_id": tf.constant([0, 1, 2, 1, 3], tf.int32),
      "label_id": tf.constant([2, 0, 1, 0, 0], tf.int32),
      "label_value": tf.constant([0.0, 0.8, 0.0, 0.1, 0.0], tf.float32),
  }


@pytest.mark.parametrize("head", ["linear", "sigmoid"])
def test_loss_takes_each_example_from_its_own_head(head):
  weights = {"mnli": 0.5, "sts": 2.0, "rte": 1.5}
  model, _ = _model(weights, head)
  batch = _batch()
  outputs = model({k: batch[k] for k in ("input_word_ids", "input_mask",
                                         "input_type_ids", "task_id")},
                  training=False)
  total, per_task, counts = model.bam_loss(batch, outputs)
  out = {k: v.numpy() for k, v in outputs.items()}

  def xent(logits, label):
    logits = logits - logits.max()
    return -(logits[label] - np.log(np.exp(logits).sum()))

  def reg(x):
    return 1 / (1 + np.exp(-x)) if head == "sigmoid" else x

  expected = [0.5 * xent(out["mnli"][0], 2),
              2.0 * (reg(out["sts"][1, 0]) - 0.8) ** 2,
              1.5 * xent(out["rte"][2], 1),
              2.0 * (reg(out["sts"][3, 0]) - 0.1) ** 2]
  np.testing.assert_allclose(total.numpy(), sum(expected), rtol=1e-5)
  np.testing.assert_allclose(counts.numpy(), [1, 2, 1])
  np.testing.assert_allclose(per_task.numpy()[1],
                             (expected[1] + expected[3]) / 2 / 2.0,
                             rtol=1e-5)


def test_padding_examples_get_no_gradient():
  model, _ = _model({})
  batch = _batch()
  only_padding = dict(batch, task_id=tf.fill([5], 3))
  with tf.GradientTape() as tape:
    outputs = model({k: only_padding[k] for k in (
        "input_word_ids", "input_mask", "input_type_ids", "task_id")},
                    training=True)
    total, _, _ = model.bam_loss(only_padding, outputs)
  grads = tape.gradient(total, model.trainable_variables)
  assert total.numpy() == 0.0
  assert all(g is None or np.all(tf.convert_to_tensor(g).numpy() == 0)
             for g in grads)


def test_every_head_runs_on_every_example():
  model, tasks = _model({})
  batch = _batch()
  outputs = model({k: batch[k] for k in ("input_word_ids", "input_mask",
                                         "input_type_ids", "task_id")})
  assert {k: tuple(v.shape) for k, v in outputs.items()} == {
      "mnli": (5, 3), "sts": (5, 1), "rte": (5, 2)}


def test_mean_loss_reduction_divides_the_update_by_the_batch():
  """--loss_reduction=mean: the objective is the summed loss over the
  global batch size, so a plain SGD step moves each weight by exactly
  1/batch of the summed-loss step (dropout off for a like-for-like step)."""
  deltas = []
  for divisor in (1.0, 5.0):
    encoder = _encoder_without_dropout(num_layers=1)
    tasks = registry.get_tasks(["mnli", "sts", "rte"])
    model = MultiTaskModel(encoder, tasks, loss_divisor=divisor,
                           head_dropout=0.0)
    # A large step: the weight deltas stand well above float32 rounding.
    model.compile(optimizer=tf_keras.optimizers.SGD(100.0))
    before = [w.numpy().copy() for w in model.trainable_variables]
    logs = model.train_step(_batch())
    deltas.append([w.numpy() - b for w, b in
                   zip(model.trainable_variables, before)])
    assert np.isfinite(float(logs["loss"]))
  moved = 0
  for d_sum, d_mean in zip(*deltas):
    np.testing.assert_allclose(d_mean * 5.0, d_sum, rtol=1e-3, atol=2e-5)
    moved += int(np.any(d_sum != 0))
  assert moved > 10


def test_get_config_rebuilds_the_same_model():
  """One constructor, with get_config: from_config (through JSON) builds a
  model with the same heads, loss weights, schedule and teacher tasks, and,
  given the same weights, the same outputs."""
  import json  # pylint: disable=g-import-not-at-top
  from bam_tf.modeling import encoders  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(3)
  # bam_tf's own encoder layer (exact GELU by name): Model Garden's default
  # activation is a lambda, which Keras cannot serialise.
  encoder = encoders.bert_encoder_layer(
      vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
      intermediate_size=32, max_sequence_length=16)
  tasks = registry.get_tasks(["mnli", "sts", "rte"])
  model = MultiTaskModel(encoder, tasks, loss_weights={"sts": 2.0},
                         regression_head="sigmoid", loss_divisor=4.0,
                         head_dropout=0.2,
                         distill_schedule=DistillSchedule("fixed", 7, 0.3),
                         teacher_tasks=["sts"])
  config = json.loads(json.dumps(model.get_config()))
  assert config["loss_weights"] == {"mnli": 1.0, "sts": 2.0, "rte": 1.0}
  assert config["teacher_tasks"] == ["sts"]
  rebuilt = MultiTaskModel.from_config(config)
  assert json.loads(json.dumps(rebuilt.get_config())) == config
  assert [t.name for t in rebuilt.tasks] == ["mnli", "sts", "rte"]
  assert rebuilt.tasks[1] == tasks[1]  # TaskSpecs survive the round trip
  assert rebuilt.distill_schedule == DistillSchedule("fixed", 7, 0.3)
  assert rebuilt.get_layer("dropout_rte").rate == 0.2
  rebuilt.set_weights(model.get_weights())
  inputs = {k: v for k, v in _batch().items()
            if k not in ("label_id", "label_value")}
  want, got = model(inputs), rebuilt(inputs)
  for name in want:
    np.testing.assert_array_equal(want[name].numpy(), got[name].numpy())


def test_constructor_refuses_unknown_tasks_and_heads():
  encoder = networks.BertEncoder(
      vocab_size=50, hidden_size=16, num_layers=1, num_attention_heads=2,
      inner_dim=32, max_sequence_length=16, dict_outputs=True)
  tasks = registry.get_tasks(["rte"])
  with pytest.raises(ValueError, match=r"\['mrpc'\]"):
    MultiTaskModel(encoder, tasks, teacher_tasks=["mrpc"])
  with pytest.raises(ValueError, match="regression_head"):
    MultiTaskModel(encoder, tasks, regression_head="tanh")


def _mixed_length_batch(n=12, width=20):
  """Examples of 2..width tokens in random order, of every task and
  padding, with teacher fields."""
  rng = np.random.default_rng(1)
  lengths = rng.integers(2, width + 1, n)
  lengths[3] = width
  mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
  second = (np.arange(width)[None] >= lengths[:, None] // 2).astype(np.int32)
  return {
      "input_word_ids": tf.constant(rng.integers(1, 50, (n, width)) * mask,
                                    tf.int32),
      "input_mask": tf.constant(mask),
      "input_type_ids": tf.constant(second * mask),
      "task_id": tf.constant(rng.integers(0, 4, n), tf.int32),
      "label_id": tf.constant(rng.integers(0, 2, n), tf.int32),
      "label_value": tf.constant(rng.random(n), tf.float32),
      "teacher_probs": tf.constant(rng.dirichlet(np.ones(3), n), tf.float32),
      "teacher_value": tf.constant(rng.random(n), tf.float32),
      "eid": tf.range(n, dtype=tf.int64),
  }


def test_length_sorted_parts_hold_every_example_once_cut_to_its_longest():
  batch = _mixed_length_batch()
  lengths = batch["input_mask"].numpy().sum(1)
  assert pipeline.split_by_length(batch, 0) == [batch]
  assert pipeline.split_by_length(batch, 12) == [batch]
  parts = pipeline.split_by_length(batch, 3)  # 4 parts of 3
  assert [len(p["eid"]) for p in parts] == [3, 3, 3, 3]
  assert [len(p["eid"]) for p in pipeline.split_by_length(batch, 5)] == [
      4, 4, 4]  # the fewest parts of at most 5, as equal as can be
  assert [len(p["eid"]) for p in pipeline.split_by_length(batch, 7)] == [
      6, 6]
  eids = np.concatenate([p["eid"].numpy() for p in parts])
  assert sorted(eids) == list(range(12))
  assert list(lengths[eids]) == sorted(lengths)  # shortest first
  for part in parts:
    rows = part["eid"].numpy()
    width = part["input_mask"].shape[1]
    assert width == lengths[rows].max()
    for key, value in part.items():
      want = tf.gather(batch[key], rows).numpy()
      if key.startswith("input_"):
        np.testing.assert_array_equal(want[:, width:], 0)  # only padding cut
        want = want[:, :width]
      np.testing.assert_array_equal(value.numpy(), want)
  widths = [p["input_mask"].shape[1] for p in parts]
  assert widths == sorted(widths) and widths[0] < widths[-1] == 20
  assert [len(p["eid"]) for p in pipeline.split_by_length(batch, 1)] == [
      1] * 12


def test_length_sorted_parts_train_the_same_step():
  """--length_sorted_part_size: the parts' summed losses are the batch's, so
  one step (dropout off) moves every weight as the whole batch does, up to
  float rounding, and logs the same losses."""
  batch = _mixed_length_batch()
  steps = {}
  for part_size in (0, 3):
    encoder = _encoder_without_dropout(num_layers=2)
    model = MultiTaskModel(
        encoder, registry.get_tasks(["mnli", "sts", "rte"]),
        loss_weights={"sts": 2.0}, head_dropout=0.0,
        distill_schedule=DistillSchedule("fixed", 7, 0.5),
        teacher_tasks=["mnli", "sts"], length_sorted_part_size=part_size)
    model.compile(optimizer=tf_keras.optimizers.SGD(1.0))
    before = [w.numpy().copy() for w in model.trainable_variables]
    logs = tf.function(model.train_step)(batch)
    steps[part_size] = ([w.numpy() - b for w, b in
                         zip(model.trainable_variables, before)],
                        {k: float(v) for k, v in logs.items()})
  (whole, whole_logs), (parts, parts_logs) = steps[0], steps[3]
  assert whole_logs.keys() == parts_logs.keys()
  for key in whole_logs:
    np.testing.assert_allclose(parts_logs[key], whole_logs[key], rtol=1e-6)
  moved = 0
  for d_whole, d_parts in zip(whole, parts):
    np.testing.assert_allclose(d_parts, d_whole, rtol=1e-4, atol=1e-6)
    moved += int(np.abs(d_whole).max() > 1e-3)
  assert moved > 20
