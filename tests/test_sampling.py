"""Sampling plans against independently written formulas and tf.data draws."""
import bam_tf  # noqa: F401  (must precede TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from bam_tf.data import sampling

GLUE = sampling.GLUE_TRAIN_SIZES
TASKS = sorted(GLUE)
SIZES = np.array([GLUE[t] for t in TASKS], dtype=np.float64)


def _as_array(d):
  return np.array([d[t] for t in TASKS])


@pytest.mark.parametrize("exponent", [0.0, 0.5, 0.75, 1.0])
def test_proportional(exponent):
  plan = sampling.sampling_plan(GLUE, "proportional", exponent)
  expected = SIZES ** exponent / np.sum(SIZES ** exponent)
  np.testing.assert_allclose(_as_array(plan.probabilities), expected)
  assert set(plan.loss_weights.values()) == {1.0}
  assert set(plan.multiples.values()) == {1}
  # The sampler trains as many examples as the original's recipe would.
  reference = sampling.sampling_plan(GLUE, "multiples", exponent)
  assert plan.examples_per_epoch == reference.examples_per_epoch
  no_multiples = sampling.sampling_plan(GLUE, "proportional", exponent,
                                        recipe_scheme="loss_weights")
  assert no_multiples.examples_per_epoch == int(SIZES.sum())


def test_exponent_one_means_plain_mixing():
  """The Table 4 "no task sampling" ablation: exponent 1 gives one copy of
  every task and equal loss weights, so examples mix by dataset size."""
  plan = sampling.sampling_plan(GLUE, "multiples", 1.0)
  assert set(plan.multiples.values()) == {1}
  np.testing.assert_allclose(_as_array(plan.loss_weights), 1.0)
  np.testing.assert_allclose(_as_array(plan.probabilities),
                             SIZES / SIZES.sum())
  with pytest.raises(ValueError):
    sampling.sampling_plan(GLUE, "nope")


def test_multiples_full_glue():
  plan = sampling.sampling_plan(GLUE, "multiples", 0.75)
  # Literal values for the original's GLUE table (hand-checked: the multiple
  # is round((|D_mnli| / |D_t|) ** 0.25), e.g. rte (392702/2490)**.25 = 3.54).
  assert plan.multiples == {"cola": 3, "mnli": 1, "mrpc": 3, "qnli": 1,
                            "qqp": 1, "sst": 2, "sts": 2, "rte": 4}
  # Independent closed form: tgt_t / |D_t| = (|D_mnli| / |D_t|)^(1 - e).
  mnli = GLUE["mnli"]
  mult = np.maximum(1, np.round((mnli / SIZES) ** 0.25))
  np.testing.assert_array_equal(_as_array(plan.multiples), mult)
  # loss weight ∝ |D_t|^e / (|D_t| m_t) = |D_t|^(e-1) / m_t; sum = #tasks.
  raw = SIZES ** -0.25 / mult
  expected = raw / raw.sum() * len(TASKS)
  np.testing.assert_allclose(_as_array(plan.loss_weights), expected,
                             rtol=1e-12)
  assert sum(plan.loss_weights.values()) == pytest.approx(len(TASKS))
  literal = {"cola": 0.86345, "mnli": 0.99505, "mrpc": 0.89717,
             "qnli": 1.37268, "qqp": 1.01421, "sst": 0.77312, "sts": 1.20275,
             "rte": 0.88156}
  for task, weight in literal.items():
    assert plan.loss_weights[task] == pytest.approx(weight, abs=1e-5), task
  assert plan.examples_per_epoch == int(np.sum(SIZES * mult)) == 1080322
  np.testing.assert_allclose(_as_array(plan.probabilities),
                             SIZES * mult / np.sum(SIZES * mult))
  # Effective per-example emphasis (p_t * weight_t) is ∝ |D_t|^0.75.
  eff = _as_array(plan.probabilities) * _as_array(plan.loss_weights)
  target = SIZES ** 0.75 / np.sum(SIZES ** 0.75)
  np.testing.assert_allclose(eff / eff.sum(), target, rtol=1e-12)


def test_subset_keeps_the_full_table_weights():
  """A subset run takes its copies and weights from the fixed eight-task
  table (MNLI reference), so its weights need not sum to its task count."""
  sizes = {"cola": 8551, "mrpc": 7336, "sts": 11498, "rte": 2490}
  plan = sampling.sampling_plan(sizes, "multiples", 0.75)
  full = sampling.sampling_plan(GLUE, "multiples", 0.75)
  for task in sizes:
    assert plan.multiples[task] == full.multiples[task]
    assert plan.loss_weights[task] == full.loss_weights[task]
  assert plan.multiples == {"cola": 3, "mrpc": 3, "sts": 2, "rte": 4}
  assert sum(plan.loss_weights.values()) == pytest.approx(3.8450, abs=1e-4)
  assert plan.examples_per_epoch == 8551 * 3 + 7336 * 3 + 11498 * 2 + 2490 * 4


def test_user_task_joins_the_table():
  """A task outside the GLUE table is added to it with its own size; the
  formula is then the same over nine tasks."""
  sizes = {"rte": 2490, "mytask": 1200}
  plan = sampling.sampling_plan(sizes, "multiples", 0.75)
  table = dict(GLUE, mytask=1200)
  names = sorted(table)
  s = np.array([table[t] for t in names], np.float64)
  w = s ** 0.75 / np.sum(s ** 0.75)
  mnli = names.index("mnli")
  mult = np.maximum(1, np.round((w * s[mnli] / w[mnli] + 0.01) / s))
  raw = w / (s * mult)
  weights = raw / raw.sum() * len(names)
  for task in sizes:
    i = names.index(task)
    assert plan.multiples[task] == mult[i]
    assert plan.loss_weights[task] == pytest.approx(weights[i], rel=1e-12)
  assert plan.multiples["mytask"] == round((392702 / 1200) ** 0.25) == 4


def test_loss_weights_without_multiples():
  plan = sampling.sampling_plan(GLUE, "loss_weights", 0.75)
  w = 1.0 / SIZES ** 0.25
  w = w / np.sum(w * SIZES / SIZES.sum())
  np.testing.assert_allclose(_as_array(plan.loss_weights), w, rtol=1e-12)
  # Expected weight of a uniformly drawn example is 1.
  assert np.sum(_as_array(plan.loss_weights) * SIZES) / SIZES.sum() == (
      pytest.approx(1.0))
  np.testing.assert_allclose(_as_array(plan.probabilities), SIZES / SIZES.sum())
  neg = sampling.sampling_plan(GLUE, "loss_weights", -1.0)
  assert set(neg.loss_weights.values()) == {1.0}


def test_realised_frequencies_tf_data():
  sizes = {"cola": 8551, "mrpc": 7336, "rte": 2490, "sst": 67349}
  plan = sampling.sampling_plan(sizes, "proportional", 0.75)
  names = sorted(sizes)
  datasets = [tf.data.Dataset.from_tensors(i).repeat()
              for i in range(len(names))]
  weights = [plan.probabilities[t] for t in names]
  mixed = tf.data.Dataset.sample_from_datasets(datasets, weights=weights,
                                               seed=1234)
  n = 20000
  draws = next(iter(mixed.batch(n).take(1))).numpy()  # one batch: fast
  freq = np.bincount(draws, minlength=len(names)) / n
  p = np.array(weights)
  stderr = np.sqrt(p * (1 - p) / n)
  assert np.all(np.abs(freq - p) < 4 * stderr), (freq, p)


def test_length_bucketing_keeps_task_proportions_and_groups_lengths():
  """Bucketing batches the sampled stream by length: the tasks' shares stay
  the plan's, batches stay full, and each batch's lengths share a bucket."""
  from bam_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  # Task 0 short (CoLA-like), task 1 long (RTE-like), task 2 in between.
  ranges = [(5, 20), (40, 129), (15, 60)]
  per_task = []
  for task_id, (lo, hi) in enumerate(ranges):
    lengths = rng.integers(lo, hi, 500)
    per_task.append(tf.data.Dataset.from_generator(
        lambda lengths=lengths, t=task_id: (
            {"input_word_ids": np.ones(n, np.int32), "task_id": np.int32(t),
             "label_id": np.int32(0)}
            for n in lengths),
        output_signature={"input_word_ids": tf.TensorSpec([None], tf.int32),
                          "task_id": tf.TensorSpec([], tf.int32),
                          "label_id": tf.TensorSpec([], tf.int32)}).repeat())
  probs = [0.5, 0.2, 0.3]
  batch, steps = 32, 300
  ds = pipeline.train_dataset(per_task, probs, batch, seed=3,
                              dynamic_padding=True, max_seq_length=128,
                              length_bucketing=True)
  bounds = [0] + pipeline.length_buckets(128) + [129]
  assert bounds[1:-1] == [17, 33, 49, 65, 97]
  counts = np.zeros(3)
  for b in ds.take(steps):
    ids = b["input_word_ids"].numpy()
    lengths = ids.sum(axis=1)
    assert ids.shape[0] == batch and ids.shape[1] == lengths.max()
    bucket = np.searchsorted(bounds, lengths, side="right")
    assert len(set(bucket)) == 1, lengths  # one bucket per batch
    counts += np.bincount(b["task_id"].numpy(), minlength=3)
  freq = counts / counts.sum()
  n = counts.sum()
  stderr = np.sqrt(np.array(probs) * (1 - np.array(probs)) / n)
  # Batches leave their buckets in a different order than drawn, so a few
  # examples wait in buckets at the end: allow that plus sampling noise.
  assert np.all(np.abs(freq - probs) < 4 * stderr + 3 * 6 * batch / n), (
      freq, probs)
