"""Optimiser and learning-rate schedule reproducing the original BAM code.

The original (``bam/bert/optimization.py``, TF1) does, per training step:

* ``grads = clip_by_global_norm(grads, 1.0)`` over all gradients together;
* learning rate (``step`` = global step *before* this update, starting at 0)::

      warmup_steps = int(num_train_steps * warmup_proportion)
      lr(step) = base * step / warmup_steps            if step < warmup_steps
               = base * (1 - min(step, total) / total) otherwise

  i.e. the warmup branch *replaces* the linear decay (BERT style; it is not
  multiplied with it as in ELECTRA), so the first update has lr 0 and at
  ``step == warmup_steps`` the lr is ``base * (1 - warmup/total)``;
* layer-wise rates: a variable at depth d uses ``lr(step) * decay**(n+2-d)``
  (0 = embeddings, i+1 = transformer layer i, n+1 = pooler, n+2 = heads);
* ``AdamWeightDecayOptimizer``: Adam *without bias correction*::

      m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g**2
      update = m / (sqrt(v) + eps) + wd * w     (wd term not for LayerNorm/bias)
      w -= lr_var * update

  The per-variable rate multiplies the whole update, weight decay included.
  Scaling the *gradients* per layer would not do this (Adam normalises the
  scale away), so the multiplier is applied inside the update.

Model Garden pieces used: ``legacy_adamw.AdamWeightDecay`` (slots m/v, the
LayerNorm/bias exclusion regexes, config) as base class with the update kernel
replaced (Model Garden's uses the bias-corrected Keras Adam kernel, which the
original did not; the uncorrected default runs through TF's fused
``ResourceApplyAdam`` kernel with beta powers 0, which is exactly that rule),
``official.nlp.optimization.WarmUp`` +
``tf_keras`` ``PolynomialDecay`` for the schedule (the exact BERT schedule).

Clipping: the legacy Keras optimizer's ``global_clipnorm`` is used; it clips
in ``apply_gradients`` *after* cross-replica aggregation (so under
MirroredStrategy it clips the global gradient, as on one device), before the
update. Model Garden's own pre-aggregation clipping is switched off.

Adam moments live in optimizer slots (checkpointed with the optimizer via
``tf.train.Checkpoint``); when initialising from a pre-trained checkpoint,
restore only the model, so the moments start at zero as in the original.
"""
import re
from typing import Callable, Dict, Iterable, Optional

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras
from official.modeling.optimization import legacy_adamw
from official.nlp import optimization as nlp_optimization

EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")

_REPLICA_SUFFIX = re.compile(r"/replica_\d+(?=:\d+$|$)")


def canonical_name(var_name: str) -> str:
  """Drops MirroredStrategy's '/replica_k' component suffix."""
  return _REPLICA_SUFFIX.sub("", var_name)


def warmup_steps_from_proportion(num_train_steps: int,
                                 warmup_proportion: float) -> int:
  """``int(total * proportion)``: the original truncates, not rounds (the
  ``warmup_steps`` to give ``create_optimizer``)."""
  return int(num_train_steps * warmup_proportion)


def lr_schedule(learning_rate: float, num_train_steps: int,
                warmup_steps: int
                ) -> tf_keras.optimizers.schedules.LearningRateSchedule:
  """The original BERT/BAM schedule (see module docstring); callable on step."""
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(
      initial_learning_rate=learning_rate,
      decay_steps=num_train_steps,
      end_learning_rate=0.0,
      power=1.0)
  if warmup_steps:
    schedule = nlp_optimization.WarmUp(
        initial_learning_rate=learning_rate,
        decay_schedule_fn=schedule,
        warmup_steps=warmup_steps)
  return schedule


class LayerwiseAdamWeightDecay(legacy_adamw.AdamWeightDecay):
  """The original AdamWeightDecayOptimizer with layer-wise learning rates."""

  def __init__(self,
               learning_rate,
               weight_decay_rate: float = 0.01,
               beta_1: float = 0.9,
               beta_2: float = 0.999,
               epsilon: float = 1e-6,
               exclude_from_weight_decay: Iterable[str] = EXCLUDE_FROM_WEIGHT_DECAY,
               layerwise_lr_decay: float = 1.0,
               num_layers: Optional[int] = None,
               depth_fn: Optional[Callable[[str], int]] = None,
               clip_norm: Optional[float] = 1.0,
               bias_correction: bool = False,
               name: str = "AdamWeightDecay",
               **kwargs):
    if clip_norm:
      kwargs["global_clipnorm"] = clip_norm
    super().__init__(
        learning_rate=learning_rate,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        amsgrad=False,
        weight_decay_rate=weight_decay_rate,
        exclude_from_weight_decay=list(exclude_from_weight_decay),
        gradient_clip_norm=0.0,  # clip post-aggregation via global_clipnorm
        name=name,
        **kwargs)
    self.layerwise_lr_decay = layerwise_lr_decay
    self.num_layers = num_layers
    self.bias_correction = bias_correction
    if self._layerwise_on():
      # Required rather than defaulted to the encoder's variable_depth, so
      # that training does not import modeling.
      if num_layers is None or depth_fn is None:
        raise ValueError("num_layers and depth_fn are required for "
                         "layer-wise lr decay")
    self._depth_fn = depth_fn
    self._multipliers: Dict[str, float] = {}

  def _layerwise_on(self) -> bool:
    return bool(self.layerwise_lr_decay) and self.layerwise_lr_decay > 0 and (
        self.layerwise_lr_decay != 1.0)

  def lr_multiplier(self, var_name: str) -> float:
    """decay**(n + 2 - depth) for this variable (1.0 when decay is off)."""
    name = canonical_name(var_name)
    if name not in self._multipliers:
      if not self._layerwise_on():
        mult = 1.0
      else:
        depth = int(self._depth_fn(name))
        if not 0 <= depth <= self.num_layers + 2:
          raise ValueError(f"depth {depth} out of range for {var_name}")
        mult = float(self.layerwise_lr_decay) ** (self.num_layers + 2 - depth)
      self._multipliers[name] = mult
    return self._multipliers[name]

  def _resource_apply_dense(self, grad, var, apply_state=None):
    var_dtype = var.dtype.base_dtype
    lr_t, _ = self._get_lr(var.device, var_dtype, apply_state)
    lr = lr_t * tf.cast(self.lr_multiplier(var.name), var_dtype)
    beta_1 = tf.cast(self._get_hyper("beta_1"), var_dtype)
    beta_2 = tf.cast(self._get_hyper("beta_2"), var_dtype)
    eps = tf.cast(self.epsilon, var_dtype)
    m = self.get_slot(var, "m")
    v = self.get_slot(var, "v")
    decays = self._do_use_weight_decay(canonical_name(var.name))
    if not self.bias_correction:
      return self._fused_update(grad, var, m, v, lr, beta_1, beta_2, eps,
                                decays)
    # Keras/PyTorch Adam: m/(1-b1^t), v/(1-b2^t), eps after the square root
    # of the corrected v (which TF's fused kernel cannot express).
    next_m = beta_1 * m + (1.0 - beta_1) * grad
    next_v = beta_2 * v + (1.0 - beta_2) * tf.square(grad)
    t = tf.cast(self.iterations + 1, var_dtype)
    update = (next_m / (1.0 - tf.pow(beta_1, t))) / (
        tf.sqrt(next_v / (1.0 - tf.pow(beta_2, t))) + eps)
    if decays:
      update += tf.cast(self.weight_decay_rate, var_dtype) * var
    return tf.group(
        var.assign_sub(lr * update, use_locking=self._use_locking),
        m.assign(next_m, use_locking=self._use_locking),
        v.assign(next_v, use_locking=self._use_locking))

  def _fused_update(self, grad, var, m, v, lr, beta_1, beta_2, eps, decays):
    """The original's uncorrected update through TF's fused Adam kernel.

    ResourceApplyAdam with beta powers 0 is exactly the uncorrected rule
    (its lr * sqrt(1 - b2^t) / (1 - b1^t) is lr; eps is added after the
    square root): one pass over each variable instead of about a dozen
    elementwise ops. The weight decay, lr * wd * w from the pre-update w,
    is subtracted first, which gives the original's
    w - lr * (adam + wd * w).
    """
    zero = tf.zeros([], var.dtype.base_dtype)
    with tf.control_dependencies(
        [var.assign_sub(lr * tf.cast(self.weight_decay_rate,
                                     var.dtype.base_dtype) * var,
                        use_locking=self._use_locking)] if decays else []):
      return tf.raw_ops.ResourceApplyAdam(
          var=var.handle, m=m.handle, v=v.handle, beta1_power=zero,
          beta2_power=zero, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=eps,
          grad=grad, use_locking=self._use_locking, use_nesterov=False)

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    # The original densified IndexedSlices (its update is tf.multiply on the
    # gradient): every row's moments decay and every row is weight-decayed.
    dense_grad = tf.math.unsorted_segment_sum(
        grad, indices, tf.shape(var, out_type=indices.dtype)[0])
    return self._resource_apply_dense(dense_grad, var, apply_state)

  def get_config(self):
    config = super().get_config()
    config.update({
        "layerwise_lr_decay": self.layerwise_lr_decay,
        "num_layers": self.num_layers,
        "bias_correction": self.bias_correction,
    })
    return config


def create_optimizer(learning_rate: float,
                     num_train_steps: int,
                     warmup_steps: int,
                     weight_decay_rate: float = 0.01,
                     layerwise_lr_decay: float = 0.9,
                     num_layers: Optional[int] = None,
                     depth_fn: Optional[Callable[[str], int]] = None,
                     clip_norm: Optional[float] = 1.0,
                     bias_correction: bool = False
                     ) -> LayerwiseAdamWeightDecay:
  """The original BAM optimiser: AdamW (0.9, 0.999, 1e-6), clip 1.0, BERT lr.

  ``layerwise_lr_decay`` 1.0 (or <= 0) switches layer-wise rates off.
  ``bias_correction`` True gives the bias-corrected Adam of Keras/PyTorch
  (not the original, whose early updates are up to ~6x larger; see
  docs/RESULTS.md for what it does to short fine-tunes).
  ``depth_fn(var_name) -> depth`` (e.g. the encoder's ``variable_depth``)
  and ``num_layers`` are required when layer-wise rates are on.
  ``optimizer.learning_rate`` is the schedule; ``optimizer.learning_rate(
  optimizer.iterations)`` is the base lr of the next update (for logging).
  """
  return LayerwiseAdamWeightDecay(
      learning_rate=lr_schedule(learning_rate, num_train_steps, warmup_steps),
      weight_decay_rate=weight_decay_rate,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
      layerwise_lr_decay=layerwise_lr_decay,
      num_layers=num_layers,
      depth_fn=depth_fn,
      clip_norm=clip_norm,
      bias_correction=bias_correction)
