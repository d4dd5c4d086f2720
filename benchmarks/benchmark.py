"""Throughput, memory and FLOP/s of bam_tf's training, input, eval, serving.

  python benchmarks/benchmark.py                        # embedded MiniLM
  python benchmarks/benchmark.py --hub_module_url=PATH  # any TF-Hub encoder
  python benchmarks/benchmark.py --debug --bench_repeats=1 --bench_steps=1

Takes run_classifier's flags (encoder, tasks, --data_dir, batch size,
--max_seq_length, --jit_compile, --mixed_precision) plus --bench_*. Every
time is the median of --bench_repeats timed runs of --bench_steps steps after
a warm-up; the ratios (BAM / multi-task step, dynamic / fixed padding) are
taken between runs interleaved in one process. Prints a table; writes JSON
to --bench_output (default: benchmarks/results/<encoder>.json).

Model FLOPs per training step = 6 x non-embedding parameters x tokens
+ 12 x layers x batch x seq^2 x hidden (attention scores and mixing, forward
and backward), counted over padded tokens; compared with this machine's
fp32 matmul peak measured here.
"""

import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bam_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from bam_tf import configure  # noqa: E402
from bam_tf import runner  # noqa: E402
from bam_tf.common import console  # noqa: E402
from bam_tf.common import files  # noqa: E402
from bam_tf.data import pipeline  # noqa: E402
from bam_tf.data import sampling  # noqa: E402
from bam_tf.modeling import encoders  # noqa: E402
from bam_tf.modeling import multitask_model  # noqa: E402
from bam_tf.tasks import readers  # noqa: E402
from bam_tf.training import distribution  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
configure.define_flags()
flags.DEFINE_integer("bench_repeats", 3, "Timed runs per figure (median).")
flags.DEFINE_integer("bench_steps", 3, "Steps (batches) per timed run.")
flags.DEFINE_string("bench_output", "", "JSON results file (default "
                    "benchmarks/results/<encoder>.json).")
flags.DEFINE_list("bench_variants", ["xla", "mixed_bfloat16"],
                  "Step variants compared with the plain multi-task step "
                  "(xla, mixed_bfloat16, mixed_float16, keras_encoder, "
                  "xla_keras_encoder: the encoder rebuilt in Python, "
                  "without / with XLA).")
flags.DEFINE_integer("bench_infer_examples", 1024, "inference phase: "
                     "examples predicted per split.")
flags.DEFINE_list("bench_infer_batches", ["32", "64", "128"], "inference "
                  "phase: inference batch sizes to time.")
flags.DEFINE_list("bench_part_sizes", ["16", "8", "4"], "parts phase: "
                  "--length_sorted_part_size values timed against each "
                  "other and against the batch whole (0).")
flags.DEFINE_list("bench_phases", ["peak", "fixed", "breakdown", "mix",
                                   "input", "eval", "variants"],
                  "Which parts to run (also: inference, the teacher-output "
                  "pass against training; profile, the train step by op "
                  "type; fusion, EinsumDense vs fusable MatMul; optimizer, the "
                  "fused Adam kernel vs elementwise ops; recipe, the "
                  "small Single->Multi recipe stage by stage, projected from "
                  "timed steps, with its floor at the matmul peak; parts, "
                  "each recipe stage's random batches trained whole and in "
                  "--length_sorted_part_size parts).")


def set_benchmark_defaults():
  """The benchmark's own defaults for run_classifier flags; called only when
  run as a script, so importing this module changes no one's flags."""
  FLAGS.set_default("task_names", ["cola", "mrpc", "sts", "rte"])
  FLAGS.set_default("data_dir", os.path.join(REPO, "..", "shared",
                                             "glue_data"))
  FLAGS.set_default("train_batch_size", 32)
  FLAGS.set_default("eval_batch_size", 32)
  FLAGS.set_default("model_dir", os.path.join(tempfile.gettempdir(),
                                              "bam_tf_benchmark"))


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats: int, warmup: int = 1):
  """Median wall seconds of fn() over `repeats` calls after `warmup`."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), times


# ---------------------------------------------------------------------------
# The machine's own peak.

def _gemm_gflops(m: int, k: int, n: int, repeats: int) -> float:
  a = tf.random.normal([m, k])
  b = tf.random.normal([k, n])
  f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  med, _ = timed(lambda: f().numpy(), max(repeats, 5))
  return 2.0 * m * k * n / med / 1e9


PEAK_SIZES = (1024, 2048, 3072)
# --debug is a smoke run of every phase: small squares, same code.
DEBUG_PEAK_SIZES = (256, 512, 1024)


def matmul_peak(repeats: int, tokens: int = 0, hidden: int = 0,
                sizes=PEAK_SIZES) -> dict:
  """fp32 matmul GFLOP/s: the best of a few square sizes (the peak), and
  the encoder's own GEMM shapes ([tokens, hidden] x [hidden, hidden or
  4 hidden]) for what its matmuls can reach at best."""
  square = {str(n): _gemm_gflops(n, n, n, repeats) for n in sizes}
  out = {"gflops_by_size": square, "peak_gflops": max(square.values())}
  if tokens and hidden:
    out["model_gemm_gflops"] = {
        f"{tokens}x{k}x{n}": _gemm_gflops(tokens, k, n, repeats)
        for k, n in ((hidden, hidden), (hidden, 4 * hidden),
                     (4 * hidden, hidden))}
  return out


# ---------------------------------------------------------------------------
# Models and batches.

def sub_config(config, tasks, **changes):
  return dataclasses.replace(config, tasks=list(tasks),
                             task_names=[t.name for t in tasks], **changes)


def make_model(config, bundle, distill: bool):
  plan = sampling.sampling_plan({t.name: 1000 for t in config.tasks},
                                config.task_sampling,
                                config.sampling_exponent,
                                recipe_scheme=config.recipe_scheme)
  if distill:  # every task learns from a teacher, annealed
    config = dataclasses.replace(
        config, distill=True, distill_schedule="annealing",
        teacher_dirs={t.name: ["(benchmark)"] for t in config.tasks})
  with distribution.precision_policy(config):
    return runner.build_model(config, bundle, plan, total_steps=10 ** 6)


def non_embedding_params(model, num_layers: int) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables
                 if encoders.variable_depth(v.name, num_layers) != 0))


def step_flops(params: int, layers: int, hidden: int, batch: int,
               seq: int) -> float:
  return 6.0 * params * batch * seq + 12.0 * layers * batch * seq ** 2 * hidden


def synthetic_batch(tasks, batch: int, seq: int, vocab: int, teacher: bool):
  rng = np.random.default_rng(0)
  width = max(t.num_labels for t in tasks)
  feats = {
      "input_word_ids": rng.integers(1000, vocab, (batch, seq)).astype(
          np.int32),
      "input_mask": np.ones((batch, seq), np.int32),
      "input_type_ids": (np.arange(seq) >= seq // 2).astype(np.int32)[None]
                        .repeat(batch, 0),
      "task_id": (np.arange(batch) % len(tasks)).astype(np.int32),
      "label_id": rng.integers(0, 2, batch).astype(np.int32),
      "label_value": rng.random(batch).astype(np.float32),
      "eid": np.arange(batch, dtype=np.int64),
  }
  if teacher:
    feats["teacher_probs"] = np.full((batch, width), 1.0 / width, np.float32)
    feats["teacher_value"] = np.full(batch, 0.5, np.float32)
  return feats


class StepTimer:
  """Runs a model's BAM train_step on a dataset's batches, timing the steps
  (the input pipeline keeps prefetching meanwhile, as in training) and
  counting real (mask) and padded tokens."""

  def __init__(self, model, dataset, jit_compile: bool = False, fn=None):
    """`fn(batch) -> {"loss": ...}`: what to time (default: train_step)."""
    self.it = iter(dataset)
    # One trace for every batch length (dynamic padding): [batch, None].
    self.step = tf.function(fn or model.train_step, jit_compile=jit_compile,
                            input_signature=[dataset.element_spec])

  def run(self, steps: int):
    real = padded = 0
    seconds = 0.0
    for _ in range(steps):
      batch = next(self.it)
      real += int(tf.reduce_sum(batch["input_mask"]))
      padded += int(tf.size(batch["input_mask"]))
      t0 = time.perf_counter()
      logs = self.step(batch)
      float(logs["loss"])  # wait for the step
      seconds += time.perf_counter() - t0
    return seconds, real, padded


def measure(timers, steps: int, repeats: int, batch: int):
  """Interleaves the timers' runs (so a ratio compares like with like);
  returns per timer medians of s/step, seq/s, real and padded tokens/s."""
  for t in timers.values():
    t.run(2)  # trace (a second shape relaxes it) and warm up
  runs = {k: [] for k in timers}
  for _ in range(repeats):
    for k, t in timers.items():
      runs[k].append(t.run(steps))
  out = {}
  for k, rs in runs.items():
    out[k] = {
        "s_per_step": statistics.median(s / steps for s, _, _ in rs),
        "seq_per_s": statistics.median(batch * steps / s for s, _, _ in rs),
        "real_tok_per_s": statistics.median(r / s for s, r, _ in rs),
        "padded_tok_per_s": statistics.median(p / s for s, _, p in rs),
        "padding_fraction": 1 - sum(r for _, r, _ in rs) / sum(
            p for _, _, p in rs),
        "runs_s": [round(s, 4) for s, _, _ in rs],
    }
  return out


def paired_ratio(res, a: str, b: str) -> float:
  """Median over repeats of time(a) / time(b), each pair run back to back:
  robust to the machine's drift between repeats."""
  return statistics.median(x / y for x, y in zip(res[a]["runs_s"],
                                                  res[b]["runs_s"]))


# ---------------------------------------------------------------------------
# Phases.

def fixed_shape_phase(config, bundle, peak, steps, repeats, vocab):
  tasks = config.tasks
  b, l = config.train_batch_size, config.max_seq_length
  timers, flops = {}, {}
  for name, subset, distill in (("single", tasks[:1], False),
                                ("multi", tasks, False),
                                ("bam", tasks, True)):
    cfg = sub_config(config, subset)
    model = make_model(cfg, bundle, distill)
    ds = tf.data.Dataset.from_tensors(
        synthetic_batch(subset, b, l, vocab, distill)).repeat()
    timers[name] = StepTimer(model, ds, jit_compile=cfg.jit_compile)
    params = non_embedding_params(model, bundle.num_layers)
    flops[name] = step_flops(params, bundle.num_layers, bundle.hidden_size,
                             b, l)
  res = measure(timers, steps, repeats, b)
  for name in res:
    res[name]["model_gflop_per_step"] = flops[name] / 1e9
    res[name]["achieved_gflops"] = flops[name] / res[name]["s_per_step"] / 1e9
    res[name]["fraction_of_peak"] = (res[name]["achieved_gflops"] /
                                     peak if peak else None)
  res["bam_over_multi"] = paired_ratio(res, "bam", "multi")
  return res


def breakdown_phase(config, bundle, gemm_gflops, steps, repeats, vocab):
  """Where a fixed-shape multi-task step's time goes: the step is timed
  whole and in nested prefixes (forward without dropout, forward with
  dropout, forward + backward), interleaved; the differences are the
  dropout, backward and optimizer shares. The matmul floor is the model's
  GEMM FLOPs at the rate this machine reaches on the encoder's own GEMM
  shapes, so step - floor is the time spent outside matmuls' best case."""
  b, l = config.train_batch_size, config.max_seq_length
  model = make_model(config, bundle, distill=False)
  ds = tf.data.Dataset.from_tensors(
      synthetic_batch(config.tasks, b, l, vocab, False)).repeat()

  def forward(training):
    def fn(features):
      outputs = model(multitask_model.model_inputs(features),
                      training=training)
      return {"loss": model.bam_loss(features, outputs)[0]}
    return fn

  def forward_backward(features):
    with tf.GradientTape() as tape:
      outputs = model(multitask_model.model_inputs(features), training=True)
      total = model.bam_loss(features, outputs)[0]
    grads = tape.gradient(total, model.trainable_variables)
    # Depend on every gradient so none is pruned from the graph.
    return {"loss": total + 0.0 * tf.linalg.global_norm(grads)}

  timers = {
      "forward_no_dropout": StepTimer(model, ds, fn=forward(False)),
      "forward_dropout": StepTimer(model, ds, fn=forward(True)),
      "forward_backward": StepTimer(model, ds, fn=forward_backward),
      "train_step": StepTimer(model, ds),
  }
  res = measure(timers, steps, repeats, b)
  t = {k: res[k]["s_per_step"] for k in timers}
  params = non_embedding_params(model, bundle.num_layers)
  flops = step_flops(params, bundle.num_layers, bundle.hidden_size, b, l)
  floor = flops / (gemm_gflops * 1e9) if gemm_gflops else None
  parts = {
      "forward (no dropout)": t["forward_no_dropout"],
      "dropout (forward)": t["forward_dropout"] - t["forward_no_dropout"],
      "backward": t["forward_backward"] - t["forward_dropout"],
      "optimizer (clip + AdamW, all variables)": (t["train_step"] -
                                                  t["forward_backward"]),
  }
  out = {"seconds": t, "parts_s": parts,
         "parts_share": {k: v / t["train_step"] for k, v in parts.items()},
         "elementwise_fwd_bwd_s": elementwise_costs(
             b, l, bundle.hidden_size, _num_heads(bundle),
             bundle.num_layers, repeats)}
  if floor:
    out["matmul_floor_s"] = floor
    out["matmul_floor_share"] = floor / t["train_step"]
    out["gemm_gflops_used"] = gemm_gflops
  return out


def _trace_op_times(logdir: str):
  """{op type: seconds} summed over the TF op events of a profiler trace
  (events named "op_name:OpType" on the executor's tf_Compute threads;
  function-call ops, which span the ops inside them, are left out). Fused
  kernels appear under their own type, e.g. _FusedMatMul, so the table
  shows what grappler fused."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  path = max(tf.io.gfile.glob(os.path.join(logdir, "plugins", "profile", "*",
                                           "*.xplane.pb")))
  space = xplane_pb2.XSpace()
  space.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
  calls = {"PartitionedCall", "StatefulPartitionedCall"}
  times = {}
  for plane in space.planes:
    names = {k: m.name for k, m in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = names.get(event.metadata_id, "")
        parts = name.split(":")
        if len(parts) != 2 or not parts[1] or parts[1] in calls:
          continue
        times[parts[1]] = (times.get(parts[1], 0.0) +
                           event.duration_ps * 1e-12)
  return times


def profile_phase(config, bundle, steps, vocab):
  """Op types of the fixed-shape multi-task train step, by time, from a TF
  profiler trace of `steps` steps (after a warm-up step): which matmuls,
  bias adds, GELUs, layer norms, softmaxes and dropouts ran fused and which
  as separate ops. On 2 cores two ops may overlap, so the op times can sum
  to more than the wall time."""
  b, l = config.train_batch_size, config.max_seq_length
  model = make_model(config, bundle, distill=False)
  ds = tf.data.Dataset.from_tensors(
      synthetic_batch(config.tasks, b, l, vocab, False)).repeat()
  timer = StepTimer(model, ds)
  timer.run(1)
  logdir = tempfile.mkdtemp(prefix="bam_tf_profile_")
  tf.profiler.experimental.start(logdir)
  t0 = time.perf_counter()
  timer.run(steps)
  wall = (time.perf_counter() - t0) / steps
  tf.profiler.experimental.stop()
  times = _trace_op_times(logdir)
  total = sum(times.values())
  top = sorted(times.items(), key=lambda kv: -kv[1])[:25]
  return {"wall_s_per_step": wall, "op_s_per_step": total / steps,
          "by_op_type_s_per_step": {k: v / steps for k, v in top},
          "by_op_type_share": {k: v / total for k, v in top}}


def fusion_phase(config, bundle, repeats):
  """The feed-forward block's first half at the encoder's shapes (tokens of
  a [batch, max_seq_length] step x hidden -> 4 hidden, bias, exact GELU),
  forward and forward + backward, in two formulations of the same math:
  Model Garden's EinsumDense (what the exported encoder runs) and a 2-D
  MatMul + BiasAdd + GELU (which grappler's remapper may fuse into one
  oneDNN kernel). Reports seconds per call and the op types each ran."""
  b, l, h = config.train_batch_size, config.max_seq_length, bundle.hidden_size
  inter = 4 * h
  rng = np.random.default_rng(0)
  x3 = tf.Variable(rng.standard_normal((b, l, h)).astype(np.float32))
  w = tf.Variable((rng.standard_normal((h, inter)) * 0.02).astype(np.float32))
  bias = tf.Variable(np.zeros(inter, np.float32))

  def einsum_form():
    return tf.nn.gelu(tf.einsum("abc,cd->abd", x3, w) + bias,
                      approximate=False)

  def matmul_form():
    y = tf.nn.bias_add(tf.matmul(tf.reshape(x3, [b * l, h]), w), bias)
    return tf.reshape(tf.nn.gelu(y, approximate=False), [b, l, inter])

  def with_grads(fn):
    def run():
      with tf.GradientTape() as tape:
        y = fn()
        loss = tf.reduce_sum(y * y)
      grads = tape.gradient(loss, [x3, w, bias])
      return loss + sum(tf.reduce_sum(g) for g in grads)
    return run

  funcs = {"einsum_forward": tf.function(einsum_form),
           "matmul_forward": tf.function(matmul_form),
           "einsum_fwd_bwd": tf.function(with_grads(einsum_form)),
           "matmul_fwd_bwd": tf.function(with_grads(matmul_form))}
  np.testing.assert_allclose(funcs["einsum_forward"]().numpy(),
                             funcs["matmul_forward"]().numpy(), atol=1e-4)
  res = {k: [] for k in funcs}
  for f in funcs.values():
    f()
  for _ in range(repeats):
    for k, f in funcs.items():
      t0 = time.perf_counter()
      for _ in range(5):
        f().numpy()
      res[k].append((time.perf_counter() - t0) / 5)
  out = {k: statistics.median(v) for k, v in res.items()}
  for k, f in funcs.items():
    logdir = tempfile.mkdtemp(prefix="bam_tf_fusion_")
    tf.profiler.experimental.start(logdir)
    f().numpy()
    tf.profiler.experimental.stop()
    out[k + "_ops"] = ", ".join(sorted(_trace_op_times(logdir)))
  return out


def elementwise_costs(b: int, l: int, hidden: int, heads: int, layers: int,
                      repeats: int) -> dict:
  """Seconds per training step of the encoder's big non-matmul ops, forward
  + backward at the model's shapes, times their count per step: exact-erf
  GELU on the FFN, softmax and dropout on the attention probabilities, the
  two layer norms per layer."""
  tokens = b * l
  ln = tf_keras.layers.LayerNormalization(epsilon=1e-12)
  seed = tf.Variable([1, 2], dtype=tf.int64)  # not foldable, as in training
  ln.build([tokens, hidden])
  ops = {
      "gelu_erf [tokens, 4h]": ([tokens, 4 * hidden], layers,
                                lambda x: tf.nn.gelu(x, approximate=False)),
      "softmax [b, heads, l, l]": ([b, heads, l, l], layers, tf.nn.softmax),
      "dropout 0.1 [b, heads, l, l]": (
          [b, heads, l, l], layers,
          lambda x: tf.nn.experimental.stateless_dropout(
              x, 0.1, seed=seed.read_value())),
      "layer_norm [tokens, h]": ([tokens, hidden], 2 * layers, ln),
  }
  out = {}
  for name, (shape, count, op) in ops.items():
    # A variable, not a constant: grappler would fold ops on constants.
    var = tf.Variable(tf.random.normal(shape))

    @tf.function
    def fwd_bwd(var=var, op=op):
      with tf.GradientTape() as tape:
        x = tf.identity(var)
        tape.watch(x)
        y = op(x)
      return tf.reduce_sum(tape.gradient(y, x))
    med, _ = timed(lambda f=fwd_bwd: f().numpy(), max(repeats, 5))
    out[name] = med * count
  return out


def _num_heads(bundle) -> int:
  """From the encoder's query kernel ([hidden, heads, head_size] in Model
  Garden's attention); BERT's 64-wide heads when it has none such."""
  for v in bundle.layer.weights:
    if "query/kernel" in v.name and len(v.shape) == 3:
      return int(v.shape[1])
  return max(1, bundle.hidden_size // 64)


def python_encoder_like(bundle, vocab_size: int):
  """A Model Garden BertEncoder built in Python with the bundle's shapes
  (random weights: timing does not depend on them). XLA sees through a
  Python-built Keras graph, while a SavedModel reaches it as opaque
  restored functions; this variant separates the two causes."""
  inner = [int(v.shape[-1]) for v in bundle.layer.weights
           if "intermediate/kernel" in v.name]
  positions = [int(v.shape[0]) for v in bundle.layer.weights
               if "position_embedding" in v.name and len(v.shape) == 2]
  layer = encoders.bert_encoder_layer(
      vocab_size=vocab_size, hidden_size=bundle.hidden_size,
      num_layers=bundle.num_layers, num_attention_heads=_num_heads(bundle),
      intermediate_size=inner[0] if inner else 4 * bundle.hidden_size,
      max_sequence_length=positions[0] if positions else 512)
  return dataclasses.replace(
      bundle, layer=layer, hub_path="",
      description=f"{bundle.description}, rebuilt in Python")


def _vocab_size(bundle) -> int:
  with open(bundle.vocab_file, encoding="utf-8") as f:
    return sum(1 for _ in f)


def prepared_data(config, tokenizer):
  return runner.featurize(config, tokenizer, lambda t: ["train",
                                                        t.dev_split])


def mix_dataset(config, data, tasks, dynamic, bucketing, teacher):
  """The training stream a run of `tasks` reads: the trial's shuffled pool
  (bam_tf.runner.train_streams), with teacher fields when `teacher`."""
  cfg = sub_config(config, tasks, distill=teacher)
  plan = sampling.sampling_plan(data.train_sizes(tasks), cfg.task_sampling,
                                cfg.sampling_exponent,
                                recipe_scheme=cfg.recipe_scheme)
  folder = tempfile.mkdtemp(prefix="bam_tf_bench_pool_")
  streams, probabilities, _ = runner.train_streams(
      cfg, plan, [data.records[t.name]["train"] for t in tasks], cfg.seed,
      folder)
  return pipeline.train_dataset(
      streams, probabilities, config.train_batch_size, config.seed, dynamic,
      config.max_seq_length, length_bucketing=bucketing)


def mix_phase(config, bundle, data, steps, repeats):
  """The real mix of the configured tasks' train sets."""
  tasks = config.tasks
  variants = {
      "multi_fixed": (tasks, False, False, False),
      "multi_dynamic": (tasks, True, False, False),
      "multi_bucketed": (tasks, True, True, False),
      "single_bucketed": (tasks[:1], True, True, False),
      "bam_bucketed": (tasks, True, True, True),
  }
  timers = {}
  for name, (subset, dynamic, bucketing, teacher) in variants.items():
    cfg = sub_config(config, subset)
    model = make_model(cfg, bundle, teacher)
    timers[name] = StepTimer(model, mix_dataset(cfg, data, subset, dynamic,
                                                bucketing, teacher),
                             jit_compile=cfg.jit_compile)
  res = measure(timers, steps, repeats, config.train_batch_size)
  fixed = res["multi_fixed"]["real_tok_per_s"]
  res["dynamic_over_fixed_real_tokens"] = (
      res["multi_dynamic"]["real_tok_per_s"] / fixed)
  res["bucketed_over_fixed_real_tokens"] = (
      res["multi_bucketed"]["real_tok_per_s"] / fixed)
  res["bam_over_multi_bucketed"] = paired_ratio(res, "bam_bucketed",
                                                "multi_bucketed")
  return res


def input_phase(config, tokenizer, data, repeats, consumed_seq_per_s):
  """The input pipeline alone: in-graph tokenisation of raw text, and
  TFRecord reading + sampling + batching, against what the model takes."""
  res = {}
  texts = []
  for task in config.tasks:
    examples = readers.read_examples(task, config.data_dir, "train",
                                     max_rows=config.debug_max_rows)
    texts.append([(e.text_a, e.text_b) for e in examples[:2048]])
  pairs = [p for t in texts for p in t]
  a = tf.constant([p[0] for p in pairs])
  b = tf.constant([p[1] or "" for p in pairs])
  tokenizer.tokenize_pair(a[:8], b[:8])  # trace

  def tokenize():
    for i in range(0, len(pairs), 256):
      tokenizer.tokenize_pair(a[i:i + 256], b[i:i + 256])["input_word_ids"
                                                            ].flat_values.numpy()
  med, _ = timed(tokenize, repeats)
  res["tokenize_examples_per_s"] = len(pairs) / med
  n_batches = 200
  for bucketing in (False, True):
    ds = mix_dataset(config, data, config.tasks, True, bucketing, False)

    def read(ds=ds):
      for _ in ds.take(n_batches):
        pass
    med, _ = timed(read, repeats)
    key = "records_to_batches_seq_per_s" + ("_bucketed" if bucketing else "")
    res[key] = n_batches * config.train_batch_size / med
  if consumed_seq_per_s:
    res["model_consumes_seq_per_s"] = consumed_seq_per_s
    res["pipeline_over_model"] = (res["records_to_batches_seq_per_s_bucketed"]
                                  / consumed_seq_per_s)
  return res


def eval_phase(config, bundle, tokenizer, data, repeats):
  """Dev-set prediction (what evaluation runs) and the exported SavedModel
  served from raw text."""
  from bam_tf.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
  res = {}
  model = make_model(config, bundle, False)
  for bucketing in (False, True):
    def evaluate(bucketing=bucketing):
      n = 0
      for task in config.tasks:
        ds = pipeline.eval_dataset(
            data.records[task.name][task.dev_split], config.eval_batch_size,
            True, config.max_seq_length, pad_task_id=len(config.tasks),
            length_bucketing=bucketing)
        # At most 16 batches a task: enough for a rate, not a whole dev set.
        n += len(evaluator.predict_task(model, task, ds.take(16))["eid"])
      return n
    counted = []
    med, _ = timed(lambda f=evaluate: counted.append(f()), repeats)
    res["eval_seq_per_s" + ("_bucketed" if bucketing else "")] = (
        counted[-1] / med)
  with tempfile.TemporaryDirectory() as tmp:
    path = export.export_saved_model(model, tokenizer, config.tasks,
                                     os.path.join(tmp, "export"))
    served = tf.saved_model.load(path)
    task = config.tasks[-1]
    examples = readers.read_examples(task, config.data_dir, task.dev_split,
                                     max_rows=config.debug_max_rows)
    fn = served.signatures[task.name]
    bs = config.eval_batch_size
    batches = []
    for i in range(0, min(len(examples), 8 * bs), bs):
      chunk = examples[i:i + bs]
      kwargs = {"text_a": tf.constant([e.text_a for e in chunk])}
      if export.is_pair_task(task):
        kwargs["text_b"] = tf.constant([e.text_b or "" for e in chunk])
      batches.append((len(chunk), kwargs))

    def serve():
      for _, kwargs in batches:
        list(fn(**kwargs).values())[0].numpy()
    med, _ = timed(serve, repeats)
    res["serving_task"] = task.name
    res["serving_seq_per_s"] = sum(c for c, _ in batches) / med
  return res


def _head_records(path: str, n: int, folder: str) -> str:
  """The first n records of a featurised file, as a file of their own."""
  out = os.path.join(folder, os.path.basename(path))
  with tf.io.TFRecordWriter(out) as writer:
    for raw in tf.data.TFRecordDataset(path).take(n):
      writer.write(raw.numpy())
  return out


def inference_phase(config, bundle, data, steps, repeats):
  """The teacher-output pass against training, for the first task alone.

  Training: the single-task recipe's real batches (the trial's pool, random
  batches of config.train_batch_size), s/step, and the recipe's 3-epoch
  training time from it. Inference: up to --bench_infer_examples examples
  of each featurised split, predicted the old way (batches of 32 in file
  order, each padded to its longest and the last completed to 32) and the
  current way (runner.predict: length-grouped batches, nothing padded on
  one device, one trace for every shape) at several batch sizes. The
  teacher-output pass predicts every split once (dev doubles as the
  evaluation), so its time = all examples / seq/s.
  """
  from bam_tf.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  task = config.tasks[0]
  cfg = sub_config(config, [task], task_sampling="loss_weights")
  model = make_model(cfg, bundle, False)
  sizes = {split: int(m["count"]) for split, m in
           data.manifests[task.name].items()}
  plan = sampling.sampling_plan({task.name: sizes["train"]}, "loss_weights")
  recipe_steps = plan.train_steps(cfg.train_batch_size, 3.0)
  timer = StepTimer(model, mix_dataset(cfg, data, [task], True, False,
                                       False))
  train = measure({"train": timer}, steps, repeats, cfg.train_batch_size)
  train = train["train"]
  res = {"task": task.name, "split_sizes": sizes,
         "train_s_per_step": train["s_per_step"],
         "train_seq_per_s": train["seq_per_s"],
         "recipe_steps_3_epochs": recipe_steps,
         "train_3_epochs_s": recipe_steps * train["s_per_step"]}
  n = FLAGS.bench_infer_examples
  folder = tempfile.mkdtemp(prefix="bam_tf_bench_infer_")
  subset = {split: _head_records(path, n, folder)
            for split, path in data.records[task.name].items()}
  counted = {split: min(n, c) for split, c in sizes.items()}
  sub_data = runner.PreparedData({task.name: subset}, data.manifests)

  def old_way():
    for path in subset.values():
      ds = pipeline.eval_dataset(path, 32, True, cfg.max_seq_length,
                                 pad_task_id=1)
      evaluator.predict_task(model, task, ds)

  def new_way(batch):
    def run():
      c = dataclasses.replace(cfg, eval_batch_size=batch)
      for split in subset:
        runner.predict(c, model, sub_data, task, split)
    return run

  variants = {"old_batch32_file_order": old_way}
  for batch in FLAGS.bench_infer_batches:
    variants[f"grouped_batch{batch}"] = new_way(int(batch))
  runs = {k: [] for k in variants}
  for fn in variants.values():
    fn()  # trace and warm up
  for _ in range(repeats):
    for k, fn in variants.items():
      t0 = time.perf_counter()
      fn()
      runs[k].append(time.perf_counter() - t0)
  total = sum(sizes.values())
  for k, times in runs.items():
    seq_per_s = sum(counted.values()) / statistics.median(times)
    res[k] = {"seq_per_s": seq_per_s,
              "over_training_seq_per_s": seq_per_s / train["seq_per_s"],
              "teacher_pass_s": total / seq_per_s,
              "teacher_pass_share_of_3_epochs":
                  total / seq_per_s / res["train_3_epochs_s"]}
  return res


def _elementwise_adam(optimizer):
  """`optimizer` updating through the elementwise ops bam_tf used before
  the fused kernel (the reference side of the optimizer phase)."""

  def update(grad, var, m, v, lr, beta_1, beta_2, eps, decays):
    next_m = beta_1 * m + (1.0 - beta_1) * grad
    next_v = beta_2 * v + (1.0 - beta_2) * tf.square(grad)
    upd = next_m / (tf.sqrt(next_v) + eps)
    if decays:
      upd += tf.cast(optimizer.weight_decay_rate, var.dtype.base_dtype) * var
    return tf.group(var.assign_sub(lr * upd), m.assign(next_m),
                    v.assign(next_v))
  optimizer._fused_update = update  # pylint: disable=protected-access
  return optimizer


def optimizer_phase(config, bundle, steps, repeats, vocab):
  """The multi-task fixed-shape step with the optimizer's fused Adam kernel
  against the same update as elementwise ops, interleaved (the two models
  share the encoder, as every phase here: same shapes, same work)."""
  b, l = config.train_batch_size, config.max_seq_length
  ds = tf.data.Dataset.from_tensors(
      synthetic_batch(config.tasks, b, l, vocab, False)).repeat()
  timers, models = {}, {}
  for name in ("elementwise", "fused"):
    tf_keras.utils.set_random_seed(config.seed)
    models[name] = make_model(config, bundle, False)
    if name == "elementwise":
      _elementwise_adam(distribution.inner_optimizer(
          models[name].optimizer))
    timers[name] = StepTimer(models[name], ds, jit_compile=config.jit_compile)
  res = measure(timers, steps, repeats, b)
  res["fused_over_elementwise"] = paired_ratio(res, "fused", "elementwise")
  # The update alone (fixed gradients, every trainable variable, the word
  # embeddings' as IndexedSlices like the real step's): what the kernel
  # changes, without the rest of the step's noise around it.
  def update_fn(model):
    variables = model.trainable_variables
    grads = [tf.IndexedSlices(tf.ones([b * l, v.shape[1]]),
                              tf.zeros([b * l], tf.int32),
                              tf.constant(v.shape.as_list()))
             if "word_embeddings" in v.name else tf.ones(v.shape) * 1e-3
             for v in variables]
    @tf.function
    def update():
      model.optimizer.apply_gradients(zip(grads, variables))
    return update
  updates = {name: update_fn(model) for name, model in models.items()}
  runs = {k: [] for k in updates}
  for fn in updates.values():
    fn()
  for _ in range(repeats):
    for k, fn in updates.items():
      t0 = time.perf_counter()
      for _ in range(steps):
        fn()
      float(models[k].optimizer.iterations.numpy())
      runs[k].append((time.perf_counter() - t0) / steps)
  res["update_alone_s"] = {k: statistics.median(v) for k, v in runs.items()}
  res["update_alone_fused_over_elementwise"] = statistics.median(
      f / e for f, e in zip(runs["fused"], runs["elementwise"]))
  return res


def _pass_tokens(dataset, batches: int, flops_fn):
  """Real tokens, padded tokens and model FLOPs of `batches` batches."""
  real = padded = 0
  flops = 0.0
  for batch in dataset.take(batches):
    b, seq = batch["input_mask"].shape
    real += int(tf.reduce_sum(batch["input_mask"]))
    padded += b * seq
    flops += flops_fn(b, seq)
  return real, padded, flops


def recipe_stages(config, data):
  """(name, config, distill, batches per pass, steps) of each stage of the
  small Single->Multi recipe: a single-task teacher per task (3 epochs of
  batches of 32), then the annealed multi-task student (the original's
  multiples, 6 epochs of batches of 128)."""
  stages = [(f"teacher_{t.name}", [t], configure.SINGLE_TASK_DEFAULTS,
             False) for t in config.tasks]
  stages.append(("student", config.tasks, configure.MULTI_TASK_DEFAULTS,
                 True))
  for name, tasks, defaults, distill in stages:
    cfg = sub_config(config, tasks, distill=distill,
                     train_batch_size=defaults["train_batch_size"],
                     num_train_epochs=defaults["num_train_epochs"],
                     learning_rate=defaults["learning_rate"],
                     task_sampling=("multiples" if len(tasks) > 1
                                    else "loss_weights"))
    plan = sampling.sampling_plan(data.train_sizes(tasks), cfg.task_sampling,
                                  cfg.sampling_exponent,
                                  recipe_scheme=cfg.task_sampling)
    batch = cfg.train_batch_size
    yield (name, cfg, distill, plan.steps_per_epoch(batch),
           plan.train_steps(batch, cfg.num_train_epochs))


def _parts_padding(dataset, batches: int, part_sizes):
  """Real tokens of `batches` batches, and the tokens each batch costs in
  length-sorted parts of each size (the train step's own cut; 0: the batch
  whole, padded to its longest)."""
  real = 0
  padded = {n: 0 for n in part_sizes}
  for batch in dataset.take(batches):
    real += int(tf.reduce_sum(batch["input_mask"]))
    for n in part_sizes:
      padded[n] += sum(int(tf.size(part["input_mask"])) for part in
                       pipeline.split_by_length(batch, n))
  return real, padded


def parts_phase(config, bundle, tokenizer, steps, repeats):
  """Each recipe stage's random batches trained whole and in
  --length_sorted_part_size parts, interleaved: s/step and speed-up over the
  whole batch (paired), and the padded tokens of one pass of the stage's
  batches under each cut (exact, not timed)."""
  data = runner.featurize(config, tokenizer, lambda t: ["train"])
  sizes = [0] + sorted({int(n) for n in FLAGS.bench_part_sizes} - {0},
                       reverse=True)
  res = {"part_sizes": sizes, "stages": {}}
  for name, cfg, distill, per_pass, total in recipe_stages(config, data):
    batch = cfg.train_batch_size
    real, padded = _parts_padding(
        mix_dataset(cfg, data, cfg.tasks, True, False, distill), per_pass,
        sizes)
    timers = {}
    for n in sizes:
      model = make_model(dataclasses.replace(cfg, length_sorted_part_size=n),
                         bundle, distill)
      timers[f"part_size_{n}"] = StepTimer(
          model, mix_dataset(cfg, data, cfg.tasks, True, False, distill))
    timed_runs = measure(timers, steps, repeats, batch)
    stage = {"steps": total, "batch": batch, "real_tokens_per_pass": real}
    for n in sizes:
      key = f"part_size_{n}"
      stage[key] = {
          "s_per_step": timed_runs[key]["s_per_step"],
          "speedup_paired": 1 / paired_ratio(timed_runs, key, "part_size_0"),
          "padded_tokens_per_pass": padded[n],
          "padding_fraction": 1 - real / padded[n],
          "projected_train_s": total * timed_runs[key]["s_per_step"],
          "runs_s": timed_runs[key]["runs_s"]}
    res["stages"][name] = stage
    print_table(f"length-sorted parts: {name} ({total} steps of {batch})", {
        f"{'whole' if not n else f'parts of {n}'}: s/step, speed-up, "
        "padding": (
            f"{stage[f'part_size_{n}']['s_per_step']:.2f}, "
            f"{stage[f'part_size_{n}']['speedup_paired']:.2f}x, "
            f"{stage[f'part_size_{n}']['padding_fraction']:.0%}")
        for n in sizes})
  return res


def recipe_phase(config, bundle, tokenizer, peak, steps, repeats):
  """The small Single->Multi recipe, stage by stage: a single-task teacher
  per task (3 epochs of batches of 32), then the annealed multi-task student
  (the original's multiples, 6 epochs of batches of 128), each with the
  inference pass its trial 0 makes (every split of its tasks).

  Per stage: the recipe's steps; one pass of its real batches counted
  (real and padded tokens, model FLOPs) as the recipe batches them (random)
  and as --length_bucketing would; s/step timed on the real batches; the
  projected stage time (steps x s/step + examples / inference seq/s); and
  the floor: the stage's padded FLOPs at this run's fp32 matmul peak (no
  implementation can train those batches faster here), with random and
  with length-bucketed batches.
  """
  data = runner.featurize(config, tokenizer, lambda t: [
      s for s in t.splits if os.path.isfile(
          readers.split_path(t, config.data_dir, s))])
  params = None
  folder = tempfile.mkdtemp(prefix="bam_tf_bench_recipe_")
  res = {"peak_gflops": peak, "stages": {}}
  for name, cfg, distill, per_pass, total in recipe_stages(config, data):
    tasks, batch = cfg.tasks, cfg.train_batch_size
    model = make_model(cfg, bundle, distill)
    if params is None:
      params = non_embedding_params(model, bundle.num_layers)
    flops_fn = lambda b, seq: step_flops(params, bundle.num_layers,
                                         bundle.hidden_size, b, seq)
    stage = {"steps": total, "batch": batch, "batches_per_pass": per_pass}
    for batching, bucketing in (("random", False), ("bucketed", True)):
      real, padded, flops = _pass_tokens(
          mix_dataset(cfg, data, tasks, True, bucketing, distill), per_pass,
          flops_fn)
      passes = total / per_pass
      stage[batching] = {
          "real_tokens_per_pass": real, "padded_tokens_per_pass": padded,
          "padding_fraction": 1 - real / padded,
          "tflop_total": flops * passes / 1e12,
          "floor_at_peak_s": flops * passes / (peak * 1e9) if peak else None}
    timer = StepTimer(model, mix_dataset(cfg, data, tasks, True, False,
                                         distill))
    timed_run = measure({"train": timer}, steps, repeats, batch)["train"]
    stage["s_per_step"] = timed_run["s_per_step"]
    stage["train_s"] = total * timed_run["s_per_step"]
    infer_s = 0.0
    for task in tasks:
      sizes = {s: int(m["count"]) for s, m in
               data.manifests[task.name].items()}
      head = _head_records(data.records[task.name]["train"],
                           FLAGS.bench_infer_examples, folder)
      sub = runner.PreparedData({task.name: {"train": head}},
                                data.manifests)
      icfg = dataclasses.replace(cfg, eval_batch_size=config.eval_batch_size)
      runner.predict(icfg, model, sub, task, "train")  # trace
      med, _ = timed(lambda task=task, sub=sub, icfg=icfg:
                     runner.predict(icfg, model, sub, task, "train"),
                     repeats, warmup=0)
      n = min(FLAGS.bench_infer_examples, sizes["train"])
      infer_s += sum(sizes.values()) / (n / med)
    stage["inference_s"] = infer_s
    stage["projected_s"] = stage["train_s"] + infer_s
    stage["measured_gflops"] = (stage["random"]["tflop_total"] * 1e12 /
                                stage["train_s"] / 1e9)
    res["stages"][name] = stage
    print_table(f"recipe stage {name}", stage)
  all_stages = res["stages"].values()
  res["projected_total_s"] = sum(s["projected_s"] for s in all_stages)
  for batching in ("random", "bucketed"):
    if peak:
      res[f"floor_at_peak_total_s_{batching}"] = sum(
          s[batching]["floor_at_peak_s"] for s in all_stages)
  return res


def variants_phase(config, bundle_fn, steps, repeats, vocab):
  """The multi-task fixed-shape step with XLA and with mixed precision,
  each against the plain step, measured in one interleaved run."""
  b, l = config.train_batch_size, config.max_seq_length
  timers = {}
  # (config changes, encoder rebuilt in Python instead of the SavedModel)
  known = {"xla": ({"jit_compile": True}, False),
           "mixed_bfloat16": ({"mixed_precision": "mixed_bfloat16"}, False),
           "mixed_float16": ({"mixed_precision": "mixed_float16"}, False),
           "keras_encoder": ({}, True),
           "xla_keras_encoder": ({"jit_compile": True}, True)}
  unknown = set(FLAGS.bench_variants) - set(known)
  if unknown:
    raise app.UsageError(f"--bench_variants: unknown {sorted(unknown)}; "
                         f"expected some of {sorted(known)}")
  for name, (changes, in_python) in [("plain", ({}, False))] + [
      (v, known[v]) for v in FLAGS.bench_variants]:
    cfg = sub_config(config, config.tasks, **changes)
    with distribution.precision_policy(cfg):
      bundle = bundle_fn()
      if in_python:
        bundle = python_encoder_like(bundle, vocab)
    model = make_model(cfg, bundle, False)
    batch = synthetic_batch(cfg.tasks, b, l, vocab, False)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    timers[name] = StepTimer(model, ds, jit_compile=cfg.jit_compile)
  res = measure(timers, steps, repeats, b)
  for name in FLAGS.bench_variants:
    res[f"{name}_speedup"] = paired_ratio(res, "plain", name)
  return res


# ---------------------------------------------------------------------------

def fmt(x):
  if isinstance(x, float):
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
  return str(x)


def print_table(title, rows):
  print(f"\n## {title}")
  for key, value in rows.items():
    if isinstance(value, dict):
      inner = ", ".join(f"{k} {fmt(v)}" for k, v in value.items()
                        if k != "runs_s")
      print(f"  {str(key):32s} {inner}")
    else:
      print(f"  {str(key):32s} {fmt(value)}")


def main(argv):
  del argv
  # The figures only: framework lines (e.g. tf.function's retracing
  # warnings, which the variant phases trigger on purpose) as in
  # run_classifier.py, and bam_tf's own progress lines below WARNING too.
  console.setup(verbose=FLAGS["verbosity"].present)
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = configure.config_from_flags()
  bundle, tokenizer = encoders.load_encoder_and_tokenizer(config)
  vocab = _vocab_size(bundle)
  steps, repeats = FLAGS.bench_steps, FLAGS.bench_repeats
  phases = set(FLAGS.bench_phases)
  report = {
      "command": " ".join(sys.argv),
      "machine": {"platform": platform.platform(),
                  "cpus": os.cpu_count(),
                  "tensorflow": tf.__version__,
                  "devices": [d.name for d in tf.config.list_logical_devices()]},
      "encoder": bundle.description,
      "tasks": config.task_names,
      "batch": config.train_batch_size,
      "max_seq_length": config.max_seq_length,
      "repeats": repeats, "steps": steps,
  }
  peak = None
  if "peak" in phases:
    report["matmul"] = matmul_peak(
        repeats, config.train_batch_size * config.max_seq_length,
        bundle.hidden_size,
        sizes=DEBUG_PEAK_SIZES if config.debug else PEAK_SIZES)
    peak = report["matmul"]["peak_gflops"]
    print_table("fp32 matmul (GFLOP/s)", dict(
        report["matmul"]["gflops_by_size"],
        **report["matmul"].get("model_gemm_gflops", {})))
  tf_keras.utils.set_random_seed(config.seed)
  if "fixed" in phases:
    report["fixed_shape"] = fixed_shape_phase(config, bundle, peak, steps,
                                              repeats, vocab)
    report["peak_rss_mb_after_fixed"] = peak_rss_mb()
    print_table(f"training, fixed shapes [{config.train_batch_size}, "
                f"{config.max_seq_length}]", report["fixed_shape"])
  if "breakdown" in phases:
    gemm = report.get("matmul", {}).get("model_gemm_gflops")
    report["step_breakdown"] = breakdown_phase(
        config, bundle, statistics.mean(gemm.values()) if gemm else None,
        steps, repeats, vocab)
    print_table(f"where a multi-task step's time goes [{config.train_batch_size}"
                f", {config.max_seq_length}]",
                dict(report["step_breakdown"]["parts_s"],
                     **{"matmul floor (model GEMMs at their measured rate)":
                        report["step_breakdown"].get("matmul_floor_s")}))
    print_table("non-matmul ops per step (forward + backward, seconds)",
                report["step_breakdown"]["elementwise_fwd_bwd_s"])
  data = None
  if phases & {"mix", "input", "eval"}:
    data = prepared_data(config, tokenizer)
  if "inference" in phases:
    first = sub_config(config, config.tasks[:1])
    teacher_data = runner.featurize(first, tokenizer, lambda t: [
        s for s in t.splits if os.path.isfile(
            readers.split_path(t, config.data_dir, s))])
    report["inference"] = inference_phase(config, bundle, teacher_data,
                                          steps, repeats)
    print_table(f"teacher-output pass vs training "
                f"({config.task_names[0]})", report["inference"])
  if "mix" in phases:
    report["real_mix"] = mix_phase(config, bundle, data, steps, repeats)
    report["peak_rss_mb_after_mix"] = peak_rss_mb()
    print_table("training on the real task mix", report["real_mix"])
  if "input" in phases:
    consumed = report.get("real_mix", {}).get("multi_bucketed", {}).get(
        "seq_per_s")
    report["input_pipeline"] = input_phase(config, tokenizer, data, repeats,
                                           consumed)
    print_table("input pipeline", report["input_pipeline"])
  if "eval" in phases:
    report["eval"] = eval_phase(config, bundle, tokenizer, data, repeats)
    report["peak_rss_mb_after_eval"] = peak_rss_mb()
    print_table("evaluation and serving", report["eval"])
  if "fusion" in phases:
    report["fusion"] = fusion_phase(config, bundle, repeats)
    print_table("feed-forward block: EinsumDense vs MatMul + BiasAdd + GELU "
                "(s per call)", report["fusion"])
  if "profile" in phases:
    report["profile"] = profile_phase(config, bundle, steps, vocab)
    print_table(f"train step by op type (s/step, profiler) "
                f"[{config.train_batch_size}, {config.max_seq_length}]",
                dict(report["profile"]["by_op_type_s_per_step"],
                     wall_s_per_step=report["profile"]["wall_s_per_step"]))
  if "optimizer" in phases:
    report["optimizer"] = optimizer_phase(config, bundle, steps, repeats,
                                          vocab)
    print_table("optimizer update: fused Adam kernel vs elementwise ops "
                f"[{config.train_batch_size}, {config.max_seq_length}]",
                report["optimizer"])
  if "recipe" in phases:
    report["recipe"] = recipe_phase(config, bundle, tokenizer, peak, steps,
                                    repeats)
    print_table("the small Single->Multi recipe (seconds)", {
        k: v for k, v in report["recipe"].items() if k != "stages"})
  if "parts" in phases:
    report["parts"] = parts_phase(config, bundle, tokenizer, steps, repeats)
  if "variants" in phases:
    report["variants"] = variants_phase(
        config, lambda: encoders.build_encoder(config), steps, repeats, vocab)
    print_table("multi-task step variants", report["variants"])
  report["peak_rss_mb"] = peak_rss_mb()
  print(f"\npeak RSS {report['peak_rss_mb']:,.0f} MB")
  out = FLAGS.bench_output or os.path.join(
      REPO, "benchmarks", "results",
      ("debug" if config.debug else "embedded_minilm" if not (
          config.hub_module_url or config.bert_checkpoint_dir) else
       os.path.basename(os.path.normpath(config.hub_module_url or
                                         config.bert_checkpoint_dir)))
      + ".json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  files.write_text_atomic(out, json.dumps(report, indent=2, sort_keys=True))
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  set_benchmark_defaults()
  app.run(main)
