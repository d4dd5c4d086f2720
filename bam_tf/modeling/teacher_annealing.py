"""Teacher annealing: how much of the target is gold label vs teacher.

It lives beside the model's loss (multitask_model.py), which is its only
user: the train step blends each task's target with `blend` at the lambda
the schedule gives for the step.

target = lambda * gold + (1 - lambda) * teacher. The original anneals lambda
linearly from 0 to 1 over training (step / total steps, read before the
update), so the student starts by imitating its teacher and ends learning
from the gold labels alone.
"""

import dataclasses

import tensorflow as tf

SCHEDULES = ("annealing", "fixed", "pure")


@dataclasses.dataclass(frozen=True)
class DistillSchedule:
  """annealing: lambda = step / total_steps (default, the paper's method);
  fixed: lambda = 1 - distill_weight, i.e. target = (1 - w) gold + w teacher;
  pure: lambda = 0 (teacher only, the paper's ablation)."""
  kind: str
  total_steps: int
  distill_weight: float = 0.5

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"schedule must be one of {SCHEDULES}, got "
                       f"{self.kind!r}")

  def get_config(self):
    return dataclasses.asdict(self)

  def lam(self, step):
    """lambda at a (0-based) global step; works on ints and tensors."""
    if self.kind == "annealing":
      step = tf.cast(step, tf.float32)
      return tf.minimum(step / float(max(self.total_steps, 1)), 1.0)
    if self.kind == "fixed":
      return tf.constant(1.0 - self.distill_weight, tf.float32)
    return tf.constant(0.0, tf.float32)


def blend(lam, gold, teacher):
  """lambda * gold + (1 - lambda) * teacher (distributions or values)."""
  return lam * gold + (1.0 - lam) * teacher
