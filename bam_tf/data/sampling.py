"""Task mixing: the original's dataset multiples and loss weights, or a
sampler; and how many training steps a recipe takes.

The BAM paper says an example of task t is drawn with probability
proportional to |D_t|^0.75. The original code never samples: by default it
approximates that with "dataset multiples" (copies of the smaller train sets
in one shuffled multi-task train file) plus per-task loss weights, computed
over a FIXED table of the eight GLUE train sizes with MNLI as reference,
whichever subset of tasks a run trains (``bam/data/task_weighting.py``).
That is the default here for multi-task runs; single-task and debug runs use
no multiples (the original turns them off there). A real sampler
('proportional') is an option, and trains the step count the original's
recipe would, so switching schemes never changes training length.

Pure Python (no TensorFlow): bam_tf.data.train_pool writes the multiples
pool, bam_tf.data.pipeline turns 'proportional' probabilities into
``tf.data.Dataset.sample_from_datasets`` weights.
"""
import dataclasses
from typing import Dict, Mapping, Optional

# Train-set sizes the original hard-coded (mrpc and sts with both sentence
# orders). A task not in this table (a user's task, WNLI) is added to it with
# its own train size when multiples and weights are computed.
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
REFERENCE_TASK = "mnli"

# multiples: the original's default for multi-task runs (copies + weights);
# loss_weights: the original with multiples off (each train set once, losses
#   weighted 1/|D|^(1-exponent)); what single-task and debug runs use;
# proportional: the paper's wording, a real sampler p ~ |D|^exponent.
SCHEMES = ("multiples", "loss_weights", "proportional")


@dataclasses.dataclass
class SamplingPlan:
  """How a run mixes its tasks.

  scheme: one of SCHEMES.
  probabilities: share of task t among the examples trained on.
  multiples: copies of each train example per pass over the pool (1 unless
    'multiples').
  loss_weights: per-example loss multiplier of each task.
  examples_per_epoch: train examples in one pass, copies included and
    padding excluded; for 'proportional' the pool the original's recipe
    would have built for this run (so it trains the same number of steps).
  """
  scheme: str
  probabilities: Dict[str, float]
  multiples: Dict[str, int]
  loss_weights: Dict[str, float]
  examples_per_epoch: int

  @property
  def uses_pool(self) -> bool:
    """Whether training reads one shuffled pool (the original's file)."""
    return self.scheme != "proportional"

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches per pass: the pool is padded up to a multiple of the batch
    with padding examples (no task's loss counts them), as the original."""
    return -(-self.examples_per_epoch // batch_size)

  def train_steps(self, batch_size: int, epochs: float) -> int:
    """The original's count: (examples + padding) // batch * epochs."""
    return max(1, int(self.steps_per_epoch(batch_size) * epochs))


def _normalize(d: Mapping[str, float]) -> Dict[str, float]:
  total = float(sum(d.values()))
  return {k: v / total for k, v in d.items()}


def size_table(sizes: Mapping[str, int]) -> Dict[str, int]:
  """The original's fixed GLUE table plus any task of `sizes` not in it."""
  table = dict(GLUE_TRAIN_SIZES)
  for task, size in sizes.items():
    table.setdefault(task, int(size))
  return table


def multiples_and_weights(sizes: Mapping[str, int], exponent: float = 0.75):
  """The original's dataset multiples and loss weights for the tasks of
  `sizes`, computed over ``size_table(sizes)`` (the fixed GLUE table).

  w_t = |D_t|^exponent normalised over the table; tgt_t = w_t * |D_mnli| /
  w_mnli; multiple_t = round((tgt_t + 0.01) / |D_t|) (at least 1); loss
  weight proportional to w_t / (|D_t| * multiple_t), normalised over the
  table and multiplied by its number of tasks. The weights of a subset run
  therefore do not sum to its task count, exactly as in the original.
  Python 3 ``round`` (half to even); exact .5 ties do not occur for real
  sizes.
  """
  table = size_table(sizes)
  weights = _normalize({t: float(s) ** exponent for t, s in table.items()})
  correction = table[REFERENCE_TASK] / weights[REFERENCE_TASK]
  multiples = {t: max(1, int(round((weights[t] * correction + 0.01)
                                   / table[t])))
               for t in table}
  loss_weights = _normalize(
      {t: weights[t] / (table[t] * multiples[t]) for t in table})
  return ({t: multiples[t] for t in sizes},
          {t: loss_weights[t] * len(table) for t in sizes})


def size_loss_weights(sizes: Mapping[str, int],
                      exponent: float = 0.75) -> Dict[str, float]:
  """The original's weights without multiples (each train set once).

  weight_t = 1 / |D_t|^(1 - exponent), divided by its expected value per
  example, sum_t weight_t * |D_t| / N, so the mean example weight is 1
  (a single task: 1). A negative exponent means all weights 1.
  """
  if exponent < 0:
    return {t: 1.0 for t in sizes}
  n = float(sum(sizes.values()))
  weights = {t: 1.0 / (float(s) ** (1.0 - exponent)) for t, s in sizes.items()}
  expected = sum(weights[t] * sizes[t] / n for t in sizes)
  return {t: w / expected for t, w in weights.items()}


def sampling_plan(sizes: Mapping[str, int], scheme: str = "multiples",
                  exponent: float = 0.75,
                  recipe_scheme: Optional[str] = None) -> SamplingPlan:
  """The plan of `scheme` for train sets of `sizes` (actual counts, swapped
  pairs included).

  * 'multiples': train set t copied multiple_t times into the pool, so
    p_t is proportional to |D_t| * multiple_t; loss weights as in
    ``multiples_and_weights``.
  * 'loss_weights': each train set once, p_t proportional to |D_t|, loss
    weights from ``size_loss_weights``.
  * 'proportional': p_t proportional to |D_t|^exponent, loss weights 1,
    and as many examples per epoch as `recipe_scheme`'s pool (the run's
    default scheme, 'multiples' unless given).
  """
  if not sizes:
    raise ValueError("no tasks")
  if any(s <= 0 for s in sizes.values()):
    raise ValueError(f"train-set sizes must be positive: {dict(sizes)}")
  single = {t: 1 for t in sizes}
  if scheme == "multiples":
    multiples, weights = multiples_and_weights(sizes, exponent)
    counts = {t: sizes[t] * multiples[t] for t in sizes}
    return SamplingPlan(scheme, _normalize(counts), multiples, weights,
                        int(sum(counts.values())))
  if scheme == "loss_weights":
    return SamplingPlan(scheme, _normalize(sizes), single,
                        size_loss_weights(sizes, exponent),
                        int(sum(sizes.values())))
  if scheme == "proportional":
    reference = recipe_scheme or "multiples"
    if reference == "proportional":
      raise ValueError("recipe_scheme must be a pool scheme")
    pool = sampling_plan(sizes, reference, exponent)
    probs = _normalize({t: float(s) ** exponent for t, s in sizes.items()})
    return SamplingPlan(scheme, probs, single, {t: 1.0 for t in sizes},
                        pool.examples_per_epoch)
  raise ValueError(f"unknown sampling scheme {scheme!r}; one of {SCHEMES}")


def describe(plan: SamplingPlan) -> str:
  """One line per task: copies, loss weight and share of the examples."""
  lines = []
  for task in plan.probabilities:
    lines.append(f"  {task}: {plan.multiples[task]} "
                 f"{'copy' if plan.multiples[task] == 1 else 'copies'}, "
                 f"loss weight {plan.loss_weights[task]:.4f}, "
                 f"{100 * plan.probabilities[task]:.1f}% of examples")
  return "\n".join(lines)
