"""Checks the optimiser against the original BAM update rule, by hand in numpy."""
import bam_tf  # noqa: F401  (must precede TensorFlow)
import tensorflow as tf

# Two logical CPUs for the MirroredStrategy test: configured in
# tests/conftest.py (the test skips if that was too late).

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bam_tf.modeling import encoders
from bam_tf.training import optimization  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

N_LAYERS = 2
DECAY = 0.8
BASE_LR = 1e-2
WD = 0.01
B1, B2, EPS = 0.9, 0.999, 1e-6

# name -> depth, mimicking the encoder's variable names.
NAMES = {
    "word_embeddings/embeddings": 0,
    "embeddings/layer_norm/gamma": 0,
    "transformer/layer_0/self_attention/query/kernel": 1,
    "transformer/layer_0/self_attention/query/bias": 1,
    "transformer/layer_1/output/kernel": 2,
    "transformer/layer_1/output_layer_norm/beta": 2,
    "pooler_transform/kernel": 3,
    "heads/rte/kernel": 4,
    "heads/rte/bias": 4,
}


def _depth_fn(name):
  return encoders.variable_depth(name, N_LAYERS)


def _make(total=100, warmup=0, clip_norm=None, decay=DECAY, wd=WD,
          bias_correction=False):
  return optimization.create_optimizer(
      learning_rate=BASE_LR, num_train_steps=total, warmup_steps=warmup,
      weight_decay_rate=wd, layerwise_lr_decay=decay, num_layers=N_LAYERS,
      depth_fn=_depth_fn, clip_norm=clip_norm,
      bias_correction=bias_correction)


def _vars(rng):
  return {n: tf.Variable(rng.normal(size=(3, 2)).astype(np.float32), name=n)
          for n in NAMES}


def _set_state(opt, variables, rng, step):
  """Creates slots and gives them a known non-zero state."""
  opt._create_all_weights(list(variables.values()))  # pylint: disable=protected-access
  state = {}
  for n, var in variables.items():
    m = rng.normal(size=(3, 2)).astype(np.float32) * 0.1
    v = rng.uniform(0.01, 0.1, size=(3, 2)).astype(np.float32)
    opt.get_slot(var, "m").assign(m)
    opt.get_slot(var, "v").assign(v)
    state[n] = (m, v)
  opt.iterations.assign(step)
  return state


def _expected_update(w, g, m, v, lr, mult, decay_w, t=None):
  """The original AdamWeightDecayOptimizer (no bias correction); with
  ``t`` (1-based update count) the bias-corrected Adam of Keras/PyTorch."""
  m1 = B1 * m + (1 - B1) * g
  v1 = B2 * v + (1 - B2) * g * g
  if t is None:
    upd = m1 / (np.sqrt(v1) + EPS)
  else:
    upd = (m1 / (1 - B1**t)) / (np.sqrt(v1 / (1 - B2**t)) + EPS)
  if decay_w:
    upd = upd + WD * w
  return lr * mult * upd, m1, v1


def test_default_depths():
  for name, depth in NAMES.items():
    assert _depth_fn(name + ":0") == depth
  assert _depth_fn("bert/transformer/layer_1/x/kernel/replica_1:0") == 2
  # Anything outside the encoder is a task head: full learning rate.
  assert _depth_fn("head_rte/kernel:0") == N_LAYERS + 2


def test_layerwise_update_matches_hand_computation():
  rng = np.random.default_rng(0)
  variables = _vars(rng)
  opt = _make(total=100, warmup=10)
  step = 40
  state = _set_state(opt, variables, rng, step)
  lr_t = BASE_LR * (1 - step / 100)
  before = {n: v.numpy() for n, v in variables.items()}
  grads = {n: rng.normal(size=(3, 2)).astype(np.float32) for n in NAMES}
  opt.apply_gradients([(tf.constant(grads[n]), variables[n]) for n in NAMES])
  assert int(opt.iterations.numpy()) == step + 1
  for n, depth in NAMES.items():
    decays = not ("bias" in n or "layer_norm" in n)
    mult = DECAY ** (N_LAYERS + 2 - depth)
    assert opt.lr_multiplier(n) == pytest.approx(mult)
    exp_upd, m1, v1 = _expected_update(before[n], grads[n], *state[n], lr_t,
                                       mult, decays)
    got_upd = before[n] - variables[n].numpy()
    # atol: w is rounded to float32 twice (the decay, then the fused Adam
    # kernel); |w| < 2 gives at most 2 ulp = 2.4e-7.
    np.testing.assert_allclose(got_upd, exp_upd, rtol=2e-4, atol=2.5e-7,
                               err_msg=n)
    np.testing.assert_allclose(opt.get_slot(variables[n], "m").numpy(), m1,
                               rtol=1e-5)
    np.testing.assert_allclose(opt.get_slot(variables[n], "v").numpy(), v1,
                               rtol=1e-5)


@pytest.mark.parametrize("step", [0, 40])
def test_bias_corrected_update_matches_hand_computation(step):
  rng = np.random.default_rng(1)
  variables = _vars(rng)
  opt = _make(total=100, warmup=0, bias_correction=True)
  state = _set_state(opt, variables, rng, step)
  if step == 0:  # fresh moments, as at the start of fine-tuning
    state = {n: (np.zeros((3, 2), np.float32),) * 2 for n in NAMES}
    for n, var in variables.items():
      opt.get_slot(var, "m").assign(state[n][0])
      opt.get_slot(var, "v").assign(state[n][1])
  lr_t = BASE_LR * (1 - step / 100)
  before = {n: v.numpy() for n, v in variables.items()}
  grads = {n: rng.normal(size=(3, 2)).astype(np.float32) for n in NAMES}
  opt.apply_gradients([(tf.constant(grads[n]), variables[n]) for n in NAMES])
  for n, depth in NAMES.items():
    decays = not ("bias" in n or "layer_norm" in n)
    mult = DECAY ** (N_LAYERS + 2 - depth)
    exp_upd, _, _ = _expected_update(before[n], grads[n], *state[n], lr_t,
                                     mult, decays, t=step + 1)
    # atol: float32 rounding of w - update (|w| ~ 1, ulp ~ 1e-7).
    np.testing.assert_allclose(before[n] - variables[n].numpy(), exp_upd,
                               rtol=2e-4, atol=5e-8, err_msg=n)
    if step == 0:  # first corrected step: |Adam part| = lr*mult (to eps)
      adam = exp_upd / (lr_t * mult) - (WD * before[n] if decays else 0)
      np.testing.assert_allclose(np.abs(adam), 1.0, rtol=1e-4)
    # ...and it differs from the original's uncorrected update.
    unc, _, _ = _expected_update(before[n], grads[n], *state[n], lr_t, mult,
                                 decays)
    assert not np.allclose(unc, exp_upd, rtol=1e-2), n


def test_ratio_between_depths_is_decay_power():
  """Same gradient and state at every depth: updates differ by decay**k.

  A gradient scaling would be normalised away by Adam (ratio ~1), so this
  shows the multiplier acts on the update.
  """
  names = ["word_embeddings/bias", "transformer/layer_0/a/bias",
           "transformer/layer_1/a/bias", "pooler_transform/bias",
           "heads/rte/bias"]
  variables = {n: tf.Variable(np.ones((4,), np.float32), name=n)
               for n in names}
  opt = _make(total=100, warmup=0)
  opt._create_all_weights(list(variables.values()))  # pylint: disable=protected-access
  g = np.array([0.3, -0.2, 0.5, 1e-3], np.float32)
  opt.apply_gradients([(tf.constant(g), variables[n]) for n in names])
  upd = {n: 1.0 - variables[n].numpy() for n in names}
  head = upd["heads/rte/bias"]
  # first step, lr = BASE_LR: update = lr * m/(sqrt(v)+eps), m=0.1g, v=.001g^2
  np.testing.assert_allclose(
      head, BASE_LR * 0.1 * g / (np.sqrt(0.001) * np.abs(g) + EPS), rtol=1e-4)
  for depth, n in enumerate(names):
    np.testing.assert_allclose(upd[n] / head,
                               DECAY ** (N_LAYERS + 2 - depth), rtol=1e-5)


def test_layerwise_rates_need_a_depth_fn():
  """No default depth_fn: training does not import modeling for one."""
  with pytest.raises(ValueError, match="depth_fn"):
    optimization.create_optimizer(
        learning_rate=BASE_LR, num_train_steps=10, warmup_steps=0,
        layerwise_lr_decay=DECAY, num_layers=N_LAYERS)
  # Off, it is not needed.
  opt = optimization.create_optimizer(
      learning_rate=BASE_LR, num_train_steps=10, warmup_steps=0,
      layerwise_lr_decay=1.0)
  assert opt.lr_multiplier("transformer/layer_0/a/kernel:0") == 1.0


def test_optimization_does_not_import_modeling():
  code = ("import sys; from bam_tf.training import optimization; "
          "print(sorted(m for m in sys.modules if m.startswith('bam_tf')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, cwd=REPO_ROOT).stdout
  assert "bam_tf.modeling" not in out, out


def test_layerwise_off():
  opt = _make(decay=1.0)
  assert opt.lr_multiplier("word_embeddings/embeddings:0") == 1.0
  assert opt.lr_multiplier("anything/at/all:0") == 1.0


def test_weight_decay_exclusion():
  opt = _make()
  for n in NAMES:
    excluded = "bias" in n or "layer_norm" in n
    assert opt._do_use_weight_decay(n) is (not excluded), n  # pylint: disable=protected-access
  assert not opt._do_use_weight_decay("x/LayerNorm/gamma")  # pylint: disable=protected-access
  # Zero gradient and zero moments: the only change is the decay term.
  w0 = np.full((2,), 2.0, np.float32)
  variables = {n: tf.Variable(w0, name=n) for n in
               ["heads/a/kernel", "heads/a/bias", "heads/a_layer_norm/gamma"]}
  opt.apply_gradients([(tf.zeros(2), v) for v in variables.values()])
  np.testing.assert_allclose(variables["heads/a/kernel"].numpy(),
                             w0 - BASE_LR * WD * w0, rtol=1e-6)
  np.testing.assert_array_equal(variables["heads/a/bias"].numpy(), w0)
  np.testing.assert_array_equal(variables["heads/a_layer_norm/gamma"].numpy(),
                                w0)


@pytest.mark.parametrize("step,expected", [
    (0, 0.0),                      # first update has lr 0
    (5, BASE_LR * 5 / 10),         # mid-warmup: base * step / warmup
    (9, BASE_LR * 9 / 10),         # last warmup step
    (10, BASE_LR * (1 - 10 / 100)),  # end of warmup: decay branch takes over
    (55, BASE_LR * (1 - 55 / 100)),  # middle of decay
    (99, BASE_LR * (1 - 99 / 100)),  # last step
    (100, 0.0),
    (150, 0.0),
])
def test_schedule(step, expected):
  sched = optimization.lr_schedule(BASE_LR, 100, 10)
  assert float(sched(step)) == pytest.approx(expected, abs=1e-12, rel=1e-5)


def test_schedule_no_warmup_and_proportion():
  sched = optimization.lr_schedule(BASE_LR, 100, 0)
  assert float(sched(0)) == pytest.approx(BASE_LR)
  assert optimization.warmup_steps_from_proportion(1001, 0.1) == 100


def test_global_norm_clipping():
  """The optimiser clips all gradients together (global norm 10 -> 1): the
  same step as the grads / 10 with clipping off; the state (v large) makes
  the step scale-sensitive."""
  g = [tf.constant([6.0, 0.0]), tf.constant([0.0, 8.0])]  # global norm 10

  def run(grads, clip_norm):
    opt = _make(clip_norm=clip_norm, wd=0.0)
    vs = [tf.Variable([1.0, 1.0], name="heads/a/kernel"),
          tf.Variable([1.0, 1.0], name="heads/b/kernel")]
    opt._create_all_weights(vs)  # pylint: disable=protected-access
    for var in vs:
      opt.get_slot(var, "v").assign([1.0, 1.0])
    opt.apply_gradients(zip(grads, vs))
    return np.concatenate([var.numpy() for var in vs])

  clipped_run = run(g, 1.0)
  np.testing.assert_allclose(clipped_run, run([x / 10 for x in g], None),
                             rtol=1e-6)
  assert not np.allclose(clipped_run, run(g, None))


def test_fused_update_in_a_graph_matches_the_rule_over_steps():
  """The default (uncorrected) update runs through TF's fused Adam kernel
  after the weight decay; inside a tf.function, over several steps, it must
  follow the original's rule step by step (decay from the pre-update w)."""
  rng = np.random.default_rng(3)
  variables = _vars(rng)
  opt = _make(total=10, warmup=0)
  grads = [{n: rng.normal(size=(3, 2)).astype(np.float32) for n in NAMES}
           for _ in range(5)]

  @tf.function
  def step(g):
    opt.apply_gradients([(g[n], variables[n]) for n in NAMES])

  w = {n: v.numpy().astype(np.float64) for n, v in variables.items()}
  m = {n: np.zeros((3, 2)) for n in NAMES}
  v = {n: np.zeros((3, 2)) for n in NAMES}
  for t, g in enumerate(grads):
    step({n: tf.constant(x) for n, x in g.items()})
    for n, depth in NAMES.items():
      decays = not ("bias" in n or "layer_norm" in n)
      upd, m[n], v[n] = _expected_update(
          w[n], g[n], m[n], v[n], BASE_LR * (1 - t / 10),
          DECAY ** (N_LAYERS + 2 - depth), decays)
      w[n] = w[n] - upd
  for n in NAMES:
    # atol: 5 updates of about lr = 1e-2, each exact to ~1e-4 in float32;
    # a lost weight decay (lr * wd * w = 1e-4 a step) is far outside it.
    np.testing.assert_allclose(variables[n].numpy(), w[n], rtol=1e-5,
                               atol=5e-6, err_msg=n)
    np.testing.assert_allclose(opt.get_slot(variables[n], "v").numpy(),
                               v[n], rtol=1e-4, err_msg=n)


def test_sparse_gradient_is_densified():
  """IndexedSlices: all rows decay (moments + weight decay), as original."""
  opt = _make(wd=WD, decay=1.0)
  var = tf.Variable(np.ones((3, 2), np.float32), name="word_embeddings/emb")
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.gather(var, [0, 0]))
  grad = tape.gradient(loss, var)
  assert isinstance(grad, tf.IndexedSlices)
  opt.apply_gradients([(grad, var)])
  g = np.zeros((3, 2), np.float32)
  g[0] = 2.0
  exp, _, _ = _expected_update(np.ones((3, 2)), g, 0.0, 0.0, BASE_LR, 1.0,
                               True)
  np.testing.assert_allclose(var.numpy(), 1.0 - exp, rtol=1e-6)


def test_checkpoint_slots_roundtrip(tmp_path):
  opt = _make()
  var = tf.Variable([1.0, 2.0], name="heads/a/kernel")
  opt.apply_gradients([(tf.constant([0.5, -0.5]), var)])
  ckpt = tf.train.Checkpoint(optimizer=opt, var=var)
  path = ckpt.save(str(tmp_path / "ckpt"))
  m_saved = opt.get_slot(var, "m").numpy()

  opt2 = _make()
  var2 = tf.Variable([0.0, 0.0], name="heads/a/kernel")
  tf.train.Checkpoint(optimizer=opt2, var=var2).restore(path)
  opt2._create_all_weights([var2])  # pylint: disable=protected-access
  np.testing.assert_allclose(opt2.get_slot(var2, "m").numpy(), m_saved)
  assert int(opt2.iterations.numpy()) == 1


def test_mirrored_strategy_clips_aggregated_gradient():
  from conftest import two_cpu_strategy  # pylint: disable=g-import-not-at-top
  strategy = two_cpu_strategy()
  if strategy is None:
    pytest.skip("needs 2 logical CPUs (runtime initialised earlier)")
  with strategy.scope():
    opt = _make(clip_norm=1.0, wd=0.0)
    var = tf.Variable([1.0, 1.0], name="heads/a/kernel")
    opt._create_all_weights([var])  # pylint: disable=protected-access
    for comp in var.values:
      opt.get_slot(comp, "v").assign([1.0, 1.0])

  # Replica grads [3, 0] and [0, 4]: summed norm 5 -> [0.6, 0.8]. Clipping
  # each replica before summing would give [1, 1] instead.
  per_replica = [tf.constant([3.0, 0.0]), tf.constant([0.0, 4.0])]

  @tf.function
  def step():
    def fn():
      ctx = tf.distribute.get_replica_context()
      g = tf.switch_case(ctx.replica_id_in_sync_group,
                         [lambda: per_replica[0], lambda: per_replica[1]])
      opt.apply_gradients([(g, var)])
    strategy.run(fn)
  step()

  g = np.array([0.6, 0.8])
  exp, _, _ = _expected_update(1.0, g, 0.0, 1.0, BASE_LR, 1.0, False)
  for comp in var.values:
    np.testing.assert_allclose(comp.numpy(), 1.0 - exp, rtol=1e-6)
