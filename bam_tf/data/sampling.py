"""Task sampling probabilities, dataset multiples and loss weights.

The BAM paper samples an example of task t with probability proportional to
|D_t|^0.75. The original code approximated that with "dataset multiples"
(copies of small train sets in one shuffled multi-task set) plus per-task loss
weights (``bam/data/task_weighting.py``). Both are reproduced here so runs can
use either; the formulas are in each scheme's docstring below.

Pure Python (no TensorFlow); the input pipeline turns ``probabilities`` into
``tf.data.Dataset.sample_from_datasets`` weights, or repeats each train set
``multiples[t]`` times, and scales each example's loss by ``loss_weights[t]``.
"""
import dataclasses
from typing import Dict, Mapping

# Train-set sizes the original hard-coded (mrpc and sts with both sentence
# orders).
GLUE_TRAIN_SIZES = {
    "cola": 8551,
    "mnli": 392702,
    "mrpc": 7336,
    "qnli": 108436,
    "qqp": 363869,
    "sst": 67349,
    "sts": 11498,
    "rte": 2490,
}

SCHEMES = ("proportional", "uniform_tasks", "uniform_examples", "multiples",
           "loss_weights")


@dataclasses.dataclass
class SamplingPlan:
  """How often each task is drawn and how its loss is weighted.

  probabilities: chance that the next training example comes from task t.
  multiples: copies of the task's train set per epoch (1 unless 'multiples').
  loss_weights: per-example loss multiplier for the task.
  examples_per_epoch: training examples in one epoch (after multiples);
    train steps = examples_per_epoch / batch_size * epochs.
  """
  probabilities: Dict[str, float]
  multiples: Dict[str, int]
  loss_weights: Dict[str, float]
  examples_per_epoch: int


def _normalize(d: Mapping[str, float]) -> Dict[str, float]:
  total = float(sum(d.values()))
  return {k: v / total for k, v in d.items()}


def multiples_and_weights(sizes: Mapping[str, int], exponent: float = 0.75,
                          reference_task: str = None):
  """The original's dataset multiples and loss weights.

  w_t = |D_t|^exponent normalised; tgt_t = w_t * |D_r| / w_r for the reference
  task r; multiple_t = round((tgt_t + 0.01) / |D_t|) (at least 1); loss weight
  proportional to w_t / (|D_t| * multiple_t), normalised then multiplied by the
  number of tasks (so the weights sum to the number of tasks).

  The original always computed this over the fixed full-GLUE size table
  (``GLUE_TRAIN_SIZES``) with r = mnli, whatever tasks a run trained on, so
  the weights of a subset run do not sum to its number of tasks there. Here
  ``sizes`` is whatever the caller passes (pass ``GLUE_TRAIN_SIZES`` to get the
  original's numbers) and r defaults to mnli when present, else the largest
  task (mnli is the largest GLUE task, so this is the same rule). Python 3
  ``round`` (half to even) is used; exact .5 ties do not occur for real sizes.
  """
  if reference_task is None:
    reference_task = ("mnli" if "mnli" in sizes else
                      max(sizes, key=lambda t: (sizes[t], t)))
  weights = _normalize({t: float(s) ** exponent for t, s in sizes.items()})
  correction = sizes[reference_task] / weights[reference_task]
  targets = {t: w * correction for t, w in weights.items()}
  multiples = {t: max(1, int(round((targets[t] + 0.01) / sizes[t])))
               for t in sizes}
  loss_weights = _normalize(
      {t: weights[t] / (sizes[t] * multiples[t]) for t in sizes})
  loss_weights = {t: w * len(sizes) for t, w in loss_weights.items()}
  return multiples, loss_weights


def size_loss_weights(sizes: Mapping[str, int],
                      exponent: float = 0.75) -> Dict[str, float]:
  """The original's weights without multiples (examples drawn uniformly).

  weight_t = 1 / |D_t|^(1 - exponent), divided by its expected value per
  example, sum_t weight_t * |D_t| / N, so the mean example weight is 1. A
  negative exponent means all weights 1.
  """
  if exponent < 0:
    return {t: 1.0 for t in sizes}
  n = float(sum(sizes.values()))
  weights = {t: 1.0 / (float(s) ** (1.0 - exponent)) for t, s in sizes.items()}
  expected = sum(weights[t] * sizes[t] / n for t in sizes)
  return {t: w / expected for t, w in weights.items()}


def sampling_plan(sizes: Mapping[str, int], scheme: str = "proportional",
                  exponent: float = 0.75) -> SamplingPlan:
  """Builds the plan for ``scheme``:

  * 'proportional' (paper): p_t proportional to |D_t|^exponent, loss weights
    1. exponent 1 = examples uniformly, 0 = tasks uniformly.
  * 'uniform_tasks': 'proportional' with exponent 0.
  * 'uniform_examples': p_t proportional to |D_t| (concatenate and shuffle),
    loss weights 1.
  * 'multiples' (the original code's default): train set t repeated
    multiple_t times and shuffled together, so p_t is proportional to
    |D_t| * multiple_t; loss weights as in ``multiples_and_weights``.
  * 'loss_weights' (original without multiples): p_t proportional to |D_t|,
    loss weights from ``size_loss_weights``.

  examples_per_epoch is sum |D_t| (* multiple_t for 'multiples').
  """
  if not sizes:
    raise ValueError("no tasks")
  if any(s <= 0 for s in sizes.values()):
    raise ValueError(f"train-set sizes must be positive: {dict(sizes)}")
  ones = {t: 1.0 for t in sizes}
  single = {t: 1 for t in sizes}
  n = int(sum(sizes.values()))
  if scheme == "uniform_tasks":
    scheme, exponent = "proportional", 0.0
  if scheme == "proportional":
    probs = _normalize({t: float(s) ** exponent for t, s in sizes.items()})
    return SamplingPlan(probs, single, ones, n)
  if scheme == "uniform_examples":
    return SamplingPlan(_normalize(sizes), single, ones, n)
  if scheme == "multiples":
    multiples, weights = multiples_and_weights(sizes, exponent)
    counts = {t: sizes[t] * multiples[t] for t in sizes}
    return SamplingPlan(_normalize(counts), multiples, weights,
                        int(sum(counts.values())))
  if scheme == "loss_weights":
    return SamplingPlan(_normalize(sizes), single,
                        size_loss_weights(sizes, exponent), n)
  raise ValueError(f"unknown sampling scheme {scheme!r}; one of {SCHEMES}")
