"""--strategy / --mixed_precision: distributed training and evaluation.

Why these checks:
(a) the train step's loss is a per-replica SUM and apply_gradients
    all-reduces with SUM, so MirroredStrategy over 2 replicas must follow the
    same loss trajectory as one device for the same global batch and seed;
(b) distributed evaluation must count every dev example exactly once
    (padded last batch, padding rows dropped) with one device's values;
(c) a global batch that does not split across replicas is refused, naming
    the flag;
(d) mixed precision runs, keeps the heads and the loss float32, and with
    mixed_float16 still reaches the layer-wise optimizer's update;
(e) TPU-style settings (no dynamic padding, drop_remainder, padded eval)
    give fully static shapes.

Two logical CPUs are configured in conftest.py. The encoder is a tiny Model
Garden BertEncoder with dropout 0, so one device vs two replicas differ only
by float summation order.
"""

import types

import numpy as np
import pytest

import bam_tf  # noqa: F401
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from bam_tf import configure
from bam_tf import runner
from bam_tf.data import pipeline
from bam_tf.evaluation import evaluator
from bam_tf.modeling import encoders
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.tasks import registry
from bam_tf.training import distribution
from bam_tf.training import optimization

from conftest import two_cpu_strategy  # noqa: E402

VOCAB, SEQ, LAYERS = 50, 12, 1
TRAIN_BATCH, STEPS = 8, 5
# One device vs 2 replicas: same math, other float summation order. Measured
# max relative difference of the 5 losses: ~1e-7; bound with margin.
LOSS_RTOL = 1e-5
PRED_ATOL = 1e-5


def _two_cpus():
  strategy = two_cpu_strategy()
  if strategy is None:
    pytest.skip("needs 2 logical CPUs (runtime initialised before conftest)")
  return strategy


def _tasks():
  return registry.get_tasks(["rte", "sts"])


def _config(**kw):
  base = dict(strategy="one_device", tpu="", mixed_precision="none",
              worker_timeout_s=600,
              train_batch_size=TRAIN_BATCH, eval_batch_size=4)
  base.update(kw)
  return types.SimpleNamespace(**base)


def _build(strategy, config=None, seed=7, part_size=0):
  """Tiny encoder + heads + BAM optimizer under the strategy and policy."""
  config = config or _config()
  tasks = _tasks()
  tf_keras.utils.set_random_seed(seed)
  with strategy.scope(), distribution.precision_policy(config):
    encoder = networks.BertEncoder(
        vocab_size=VOCAB, hidden_size=16, num_layers=LAYERS,
        num_attention_heads=2, inner_dim=32, max_sequence_length=SEQ,
        dropout_rate=0.0, attention_dropout_rate=0.0, dict_outputs=True)
    model = MultiTaskModel(encoder, tasks,
                           loss_weights={"rte": 1.0, "sts": 2.0},
                           head_dropout=0.0,
                           length_sorted_part_size=part_size)
    opt = optimization.create_optimizer(
        learning_rate=1e-3, num_train_steps=20, warmup_steps=2,
        layerwise_lr_decay=0.9, num_layers=LAYERS,
        depth_fn=lambda n: encoders.variable_depth(n, LAYERS), clip_norm=1.0)
    model.compile(optimizer=distribution.wrap_optimizer(opt, config))
  return model


def _examples(n, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(4, SEQ + 1, n)
  ids = np.zeros((n, SEQ), np.int32)
  for i, length in enumerate(lengths):
    ids[i, :length] = rng.integers(1, VOCAB, length)
  task_id = rng.integers(0, 2, n).astype(np.int32)
  return {
      "eid": np.arange(100, 100 + n, dtype=np.int64),
      "task_id": task_id,
      "input_word_ids": ids,
      "input_mask": (ids > 0).astype(np.int32),
      "input_type_ids": np.zeros_like(ids),
      "label_id": np.where(task_id == 0, rng.integers(0, 2, n),
                           0).astype(np.int32),
      "label_value": np.where(task_id == 1, rng.random(n),
                              0).astype(np.float32),
      "lengths": lengths,
  }


def _write_records(path, ex):
  """Featurised-cache-format TFRecords (what pipeline.task_dataset reads)."""
  def i64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))
  with tf.io.TFRecordWriter(path) as w:
    for i in range(len(ex["eid"])):
      length = int(ex["lengths"][i])
      feats = {
          "eid": i64([ex["eid"][i]]), "task_id": i64([ex["task_id"][i]]),
          "input_word_ids": i64(ex["input_word_ids"][i, :length]),
          "input_type_ids": i64(ex["input_type_ids"][i, :length]),
          "label_id": i64([ex["label_id"][i]]),
          "label_value": tf.train.Feature(float_list=tf.train.FloatList(
              value=[float(ex["label_value"][i])])),
          "num_tokens": i64([length])}
      w.write(tf.train.Example(features=tf.train.Features(
          feature=feats)).SerializeToString())


def _train_ds(n=64):
  ex = _examples(n)
  ex.pop("lengths")
  return (tf.data.Dataset.from_tensor_slices(ex)
          .batch(TRAIN_BATCH, drop_remainder=True).repeat())


class _Losses(tf_keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.losses = []

  def on_train_batch_end(self, batch, logs=None):
    self.losses.append(float(logs["loss"]))


def _fit(model, steps=STEPS):
  rec = _Losses()
  model.fit(_train_ds(), steps_per_epoch=steps, epochs=1, verbose=0,
            callbacks=[rec])
  return rec.losses


@pytest.mark.parametrize("part_size", [0, 2])
def test_mirrored_matches_one_device_loss_trajectory(monkeypatch, part_size):
  """Also with --length_sorted_part_size: each replica cuts its own half of
  the batch (4 examples, 2 parts), and the trajectory is the whole batch's
  on one device."""
  mirrored = _two_cpus()
  one = _build(tf.distribute.get_strategy())
  two = _build(mirrored, part_size=part_size)
  for a, b in zip(one.get_weights(), two.get_weights()):
    np.testing.assert_array_equal(a, b)
  cuts = []
  split = pipeline.split_by_length

  def counting_split(features, size):
    parts = split(features, size)
    cuts.append(len(parts))
    return parts
  monkeypatch.setattr(pipeline, "split_by_length", counting_split)
  l1, l2 = _fit(one), _fit(two)
  # Traced once per model (and per replica for the mirrored one).
  assert set(cuts) == ({1} if not part_size else {1, 2})
  assert len(l1) == len(l2) == STEPS
  assert len(set(np.round(l1, 6))) > 1  # the model actually trains
  print("max relative loss difference:",
        np.max(np.abs(np.array(l2) - l1) / np.abs(l1)))
  np.testing.assert_allclose(l2, l1, rtol=LOSS_RTOL)
  for a, b in zip(one.get_weights(), two.get_weights()):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  assert int(two.optimizer.iterations.numpy()) == STEPS


@pytest.mark.parametrize("dynamic_padding,bucketing",
                         [(True, False), (False, False), (True, True)])
def test_distributed_eval_counts_every_example_once(tmp_path,
                                                    dynamic_padding,
                                                    bucketing):
  mirrored = _two_cpus()
  n, batch = 13, 4  # 13 is not a multiple of the 4-example global batch
  ex = _examples(n, seed=1)
  path = str(tmp_path / "dev.tfrecord")
  _write_records(path, ex)
  tasks = _tasks()
  one, two = _build(tf.distribute.get_strategy()), _build(mirrored)

  def run(model, strategy, task_index, pad, dynamic=dynamic_padding,
          buckets=bucketing):
    ds = pipeline.eval_dataset(path, batch, dynamic, SEQ,
                               pad_task_id=len(tasks) if pad else None,
                               length_bucketing=buckets)
    return evaluator.predict_task(model, tasks[task_index], ds, strategy)

  if bucketing:  # the batches really are grouped by length
    ds = pipeline.eval_dataset(path, batch, True, SEQ, length_bucketing=True)
    eids = np.concatenate([b["eid"].numpy() for b in ds])
    assert sorted(eids) == list(ex["eid"]) and list(eids) != list(ex["eid"])
  for i in range(len(tasks)):
    # Reference: one device, fixed max_seq_length, file order, no padding.
    plain = run(one, None, i, pad=False, dynamic=False, buckets=False)
    padded_one = run(one, None, i, pad=True)
    dist = run(two, mirrored, i, pad=True)
    for preds in (plain, padded_one, dist):
      assert len(preds["eid"]) == n
      np.testing.assert_array_equal(preds["eid"], ex["eid"])  # order, once
      np.testing.assert_array_equal(preds["label_id"], ex["label_id"])
    np.testing.assert_allclose(padded_one["logits"], plain["logits"],
                               atol=PRED_ATOL)
    np.testing.assert_allclose(dist["logits"], plain["logits"],
                               atol=PRED_ATOL)
    np.testing.assert_array_equal(dist["prediction"].shape,
                                  plain["prediction"].shape)


def test_batch_not_divisible_by_replicas_names_the_flag():
  mirrored = _two_cpus()
  with pytest.raises(configure.ConfigError, match="--train_batch_size"):
    runner.make_strategy(_config(strategy="mirrored", train_batch_size=7),
                         mirrored)
  with pytest.raises(configure.ConfigError, match="--eval_batch_size"):
    runner.make_strategy(_config(strategy="mirrored", eval_batch_size=5),
                         mirrored)
  runner.make_strategy(_config(strategy="mirrored"), mirrored)  # 8 and 4


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_smoke(policy):
  config = _config(mixed_precision=policy)
  model = _build(tf.distribute.get_strategy(), config)
  assert tf_keras.mixed_precision.global_policy().name == "float32"  # reset
  encoder_dense = [l for l in model.layers if "encoder" in l.name.lower()]
  assert encoder_dense and encoder_dense[0].compute_dtype != "float32"
  if policy == "mixed_float16":
    assert isinstance(model.optimizer,
                      tf_keras.mixed_precision.LossScaleOptimizer)
  before = [w.copy() for w in model.get_weights()]
  # mixed_float16 starts at a loss scale of 2^15 and skips the steps whose
  # scaled gradients overflow (halving the scale each time): give it room.
  steps = 12 if policy == "mixed_float16" else 3
  losses = _fit(model, steps=steps)
  assert all(np.isfinite(losses))
  inner = distribution.inner_optimizer(model.optimizer)
  assert isinstance(inner, optimization.LayerwiseAdamWeightDecay)
  assert int(inner.iterations.numpy()) == steps
  if policy == "mixed_float16":
    assert float(model.optimizer.loss_scale) < 2.0 ** 15
  changed = [not np.array_equal(a, b)
             for a, b in zip(before, model.get_weights())]
  assert sum(changed) > len(changed) // 2  # updates reached the variables
  ex = _examples(4)
  outputs = model({k: tf.constant(ex[k]) for k in (
      "input_word_ids", "input_mask", "input_type_ids", "task_id")},
                  training=False)
  for out in outputs.values():
    assert out.dtype == tf.float32


def test_tpu_style_settings_give_static_shapes(tmp_path):
  config = configure.BamConfig(
      **{f.name: getattr(_DEFAULTS, f.name) for f in _FIELDS})
  assert config.static_shapes and not config.use_dynamic_padding
  assert not config.use_length_bucketing  # asked for, but shapes vary
  assert config.train_part_size == 0  # the same
  ex = _examples(13, seed=2)
  path = str(tmp_path / "train.tfrecord")
  _write_records(path, ex)
  train = pipeline.train_dataset(
      [pipeline.task_dataset(path)], [1.0], TRAIN_BATCH, seed=1,
      dynamic_padding=config.use_dynamic_padding, max_seq_length=SEQ,
      length_bucketing=config.use_length_bucketing)
  for spec in train.element_spec.values():
    assert spec.shape.is_fully_defined(), spec
  evals = pipeline.eval_dataset(path, 4, config.use_dynamic_padding, SEQ,
                                pad_task_id=2,
                                length_bucketing=config.use_length_bucketing)
  for spec in evals.element_spec.values():
    assert spec.shape.is_fully_defined(), spec
  batches = list(evals)
  assert all(b["input_word_ids"].shape == (4, SEQ) for b in batches)
  masks = np.concatenate([b["example_mask"].numpy() for b in batches])
  assert masks.sum() == 13 and len(masks) == 16
  last = batches[-1]
  np.testing.assert_array_equal(last["task_id"].numpy()[1:], [2, 2, 2])
  np.testing.assert_array_equal(last["eid"].numpy()[1:], [-1, -1, -1])


def test_strategy_flags_are_validated(tmp_path):
  def cfg(**kw):
    values = {f.name: getattr(_DEFAULTS, f.name) for f in _FIELDS}
    values.update(kw)
    return configure.BamConfig(**values)
  with pytest.raises(configure.ConfigError, match="--tpu"):
    configure.validate(cfg(strategy="mirrored", tpu="my-tpu"))
  with pytest.raises(configure.ConfigError, match="--mixed_precision"):
    configure.validate(cfg(strategy="tpu", mixed_precision="mixed_float16"))
  with pytest.raises(configure.ConfigError, match="--strategy"):
    configure.validate(cfg(strategy="gpus"))
  # Runs saved before these flags existed compare equal on their defaults.
  saved = cfg(strategy="one_device", mixed_precision="none").to_json_dict()
  for key in ("strategy", "tpu", "mixed_precision"):
    saved.pop(key)
  assert not configure.config_differences(
      saved, cfg(strategy="mirrored", mixed_precision="none"))
  assert configure.config_differences(
      saved, cfg(mixed_precision="mixed_bfloat16")) == ["mixed_precision"]


_FIELDS = [f for f in configure.dataclasses.fields(configure.BamConfig)
           if f.name not in ("tasks", "teacher_dirs", "teacher_flagfiles")]
_DEFAULTS = types.SimpleNamespace(
    mode="export", task_names=["rte"], data_dir="", data_source="tsv",
    tfds_data_dir="", model_dir="", cache_dir="", hub_module_url="",
    hub_preprocessor_url="", vocab_file="", do_lower_case=None,
    bert_checkpoint_dir="", hf_checkpoint_dir="", debug=True,
    max_seq_length=SEQ, double_unordered=True, dynamic_padding=True,
    task_sampling="proportional", sampling_exponent=0.75, learning_rate=1e-4,
    num_train_epochs=1.0, train_batch_size=TRAIN_BATCH, eval_batch_size=4,
    warmup_proportion=0.1, weight_decay_rate=0.01, layerwise_lr_decay=0.9,
    clip_norm=1.0, head_dropout=0.1, regression_head="linear", num_trials=1,
    seed=1, save_checkpoints_steps=10, keep_checkpoint_max=1,
    log_every_steps=10, max_train_steps=0, teacher_output_trials=[],
    retrain_trials=[], distill=False, teachers="", teacher_trial=0,
    distill_schedule="annealing", distill_weight=0.5, distill_temperature=1.0,
    init_from="", trial=0, export_dir="", export_version=0, overwrite=False,
    checkpoint="", eval_every_steps=0,
    custom_tasks="",
    strategy="tpu", tpu="", worker_timeout_s=600,
    mixed_precision="mixed_bfloat16",
    length_bucketing=True, length_sorted_part_size=8, deterministic=False,
    jit_compile=False,
    loss_reduction="sum", adam_bias_correction=False)


def test_inference_groups_by_length_and_traces_once(tmp_path):
  """runner.predict groups batches by length and pads nothing on one
  device: predictions equal one-example batches in file order, the order is
  restored, and one trace serves every batch shape and split."""
  model = _build(tf.distribute.get_strategy())
  tasks = _tasks()
  ex = _examples(150, seed=3)
  path = str(tmp_path / "dev.tfrecord")
  _write_records(path, ex)
  small = str(tmp_path / "small.tfrecord")
  _write_records(small, {k: v[:7] for k, v in ex.items()})
  config = types.SimpleNamespace(
      tasks=tasks, eval_batch_size=16, use_dynamic_padding=True,
      max_seq_length=SEQ, static_shapes=False)
  data = runner.PreparedData({"rte": {"dev": path, "small": small}}, {})
  got = runner.predict(config, model, data, tasks[0], "dev")
  reference = evaluator.predict_task(
      model, tasks[0], pipeline.eval_dataset(path, 1, True, SEQ))
  np.testing.assert_array_equal(got["eid"], ex["eid"])
  np.testing.assert_allclose(got["logits"], reference["logits"],
                             atol=PRED_ATOL)
  # The batches really were grouped: rows left the pipeline out of order.
  grouped = pipeline.eval_dataset(path, 16, True, SEQ, length_bucketing=True)
  eids = np.concatenate([b["eid"].numpy() for b in grouped])
  assert list(eids) != list(ex["eid"])
  runner.predict(config, model, data, tasks[0], "small")
  steps = [f for k, f in model._bam_predict_steps.items()  # pylint: disable=protected-access
           if k[0] == "rte" and "example_mask" not in k[2]]
  assert len(steps) == 1
  assert steps[0].experimental_get_tracing_count() == 1
