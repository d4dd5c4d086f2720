"""The benchmark script runs end to end (at --debug size) and its figures
are consistent: ratios are the ratios of the reported times, FLOP counts
follow the formula, and padding falls from fixed to dynamic to bucketed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, noise_lines


def test_benchmark_debug_smoke(tmp_path, glue_dir):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "benchmark.py"),
       "--debug", f"--data_dir={glue_dir}", "--bench_repeats=1",
       "--bench_steps=2", "--bench_phases=peak,fixed,breakdown,mix,input",
       f"--bench_output={out}", f"--model_dir={tmp_path / 'run'}"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:]
  # The figures only: not even the retracing warnings of its many steps.
  assert noise_lines(proc.stdout) == []
  r = json.loads(out.read_text())
  assert r["matmul"]["peak_gflops"] > 0
  fixed = r["fixed_shape"]
  # One repeat: the paired ratio is the ratio of the two runs' times.
  assert fixed["bam_over_multi"] == pytest.approx(
      fixed["bam"]["runs_s"][0] / fixed["multi"]["runs_s"][0], rel=1e-2)
  for name in ("single", "multi", "bam"):
    f = fixed[name]
    assert f["padding_fraction"] == 0
    assert f["achieved_gflops"] == pytest.approx(
        f["model_gflop_per_step"] / f["s_per_step"])
    assert f["fraction_of_peak"] == pytest.approx(
        f["achieved_gflops"] / r["matmul"]["peak_gflops"])
  # Debug encoder: 3 layers x 144 hidden, FFN 576 -> per layer 4*144^2 +
  # 2*144*576 weights (+ biases, norms); heads and pooler on top.
  per_layer = 4 * 144 * 144 + 2 * 144 * 576
  gflop = fixed["multi"]["model_gflop_per_step"]
  b, l = r["batch"], r["max_seq_length"]
  lower = (6 * 3 * per_layer * b * l + 12 * 3 * b * l * l * 144) / 1e9
  assert lower < gflop < lower * 1.1
  mix = r["real_mix"]
  assert (mix["multi_fixed"]["padding_fraction"]
          > mix["multi_dynamic"]["padding_fraction"]
          > mix["multi_bucketed"]["padding_fraction"])
  assert mix["dynamic_over_fixed_real_tokens"] == pytest.approx(
      mix["multi_dynamic"]["real_tok_per_s"]
      / mix["multi_fixed"]["real_tok_per_s"])
  assert r["input_pipeline"]["tokenize_examples_per_s"] > 0
  assert r["input_pipeline"]["pipeline_over_model"] > 0
  assert "training, fixed shapes" in proc.stdout
  # The breakdown's parts add up to the whole step (by construction of the
  # nested timings) and the floor uses the model-GEMM rate measured above.
  bd = r["step_breakdown"]
  assert sum(bd["parts_s"].values()) == pytest.approx(
      bd["seconds"]["train_step"])
  gemm = r["matmul"]["model_gemm_gflops"]
  assert bd["gemm_gflops_used"] == pytest.approx(sum(gemm.values())
                                                 / len(gemm))
  assert bd["matmul_floor_s"] == pytest.approx(
      fixed["multi"]["model_gflop_per_step"] / bd["gemm_gflops_used"],
      rel=1e-6)
  assert "where a multi-task step's time goes" in proc.stdout


def test_python_encoder_like_matches_shapes():
  """The XLA variant's Python-built encoder has the benchmarked encoder's
  exact weight shapes (heads and FFN width read off its weights), so the
  two time the same model."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
  import benchmark  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bam_tf.modeling import encoders  # pylint: disable=g-import-not-at-top
  bundle = encoders.build_encoder(types.SimpleNamespace(debug=True))
  vocab_size = benchmark._vocab_size(bundle)  # pylint: disable=protected-access
  rebuilt = benchmark.python_encoder_like(bundle, vocab_size)
  x = dict(input_word_ids=tf.ones((2, 8), tf.int32),
           input_mask=tf.ones((2, 8), tf.int32),
           input_type_ids=tf.zeros((2, 8), tf.int32))
  bundle.layer(x)
  rebuilt.layer(x)
  shapes = lambda layer: sorted(v.shape.as_list()
                                for v in layer.trainable_weights)
  assert shapes(rebuilt.layer) == shapes(bundle.layer)
  assert rebuilt.layer is not bundle.layer
  assert rebuilt.num_layers == bundle.num_layers == 3
  # Importing the script leaves run_classifier's flag defaults alone (its
  # own defaults apply only when run as a script): later tests in this
  # process rely on the single/multi-task batch-size resolution.
  from absl import flags  # pylint: disable=g-import-not-at-top
  assert flags.FLAGS["train_batch_size"].default is None
  assert flags.FLAGS["task_names"].default == ["rte"]
  assert flags.FLAGS["model_dir"].default == ""


def test_pass_tokens_counts_real_padded_and_flops():
  """The recipe phase's floor rests on these counts: real tokens from the
  masks, padded tokens = batch x padded length, FLOPs per batch shape."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
  import benchmark  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  lengths = [3, 7, 2, 5, 4]
  ds = tf.data.Dataset.from_tensor_slices(
      tf.ragged.constant([[1] * n for n in lengths])).map(
          lambda m: {"input_mask": m}).padded_batch(2)
  seen = []
  real, padded, flops = benchmark._pass_tokens(  # pylint: disable=protected-access
      ds.repeat(), 2, lambda b, seq: seen.append((b, seq)) or b * seq * 10.0)
  assert real == 3 + 7 + 2 + 5
  assert padded == 2 * 7 + 2 * 5
  assert seen == [(2, 7), (2, 5)]
  assert flops == 10.0 * padded


def test_elementwise_reference_equals_the_fused_update():
  """The optimizer phase's 'before' side computes the same update as the
  fused kernel, so the phase times two implementations of one rule."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
  import benchmark  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bam_tf.training import optimization  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3)]
  results = []
  for reference in (False, True):
    opt = optimization.create_optimizer(
        learning_rate=1e-2, num_train_steps=10, warmup_steps=0,
        weight_decay_rate=0.01, layerwise_lr_decay=0.0, num_layers=None)
    if reference:
      benchmark._elementwise_adam(opt)  # pylint: disable=protected-access
    var = tf.Variable(w0, name="layer/kernel")
    for g in grads:
      opt.apply_gradients([(tf.constant(g), var)])
    results.append(var.numpy())
  assert not np.allclose(results[0], w0, atol=1e-3)
  np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=5e-7)


def test_peer_comparison_skips_cleanly_without_torch(tmp_path):
  """The PyTorch peer is optional: without it the script says how to
  install it, writes nothing and exits 0."""
  out = tmp_path / "peer.json"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "benchmarks",
                                    "peer_comparison.py"),
       f"--peer_python={tmp_path / 'no_python'}", f"--output={out}"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:]
  assert "peer comparison skipped: no peer Python at" in proc.stdout
  assert ".venv-peer/bin/pip install torch transformers" in proc.stdout
  assert "--peer_python=.venv-peer/bin/python" in proc.stdout
  assert not out.exists()


def test_report_statistics_benchmark_runs_and_adds_up(tmp_path):
  out = tmp_path / "stats.json"
  proc = subprocess.run(
      [sys.executable,
       os.path.join(REPO_ROOT, "benchmarks", "report_statistics.py"),
       "--n_resamples=50", "--trials=2", "--repeats=1", f"--output={out}"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:]
  r = json.loads(out.read_text())
  s = r["seconds"]
  assert (r["n_resamples"], r["trials"]) == (50, 2)
  tasks = ("cola", "mrpc", "sts", "rte")
  assert all(s[f"{t}_{task}"] > 0 for t in ("bootstrap", "hierarchical")
             for task in tasks)
  # Table 1: 2 baselines x (Avg + 4 tasks) per test.
  assert s["table1_hierarchical_s"] == pytest.approx(2 * (
      s["hierarchical_avg"] + sum(s[f"hierarchical_{t}"] for t in tasks)))
  assert "report significance tests, 50 resamples" in proc.stdout
  bad = subprocess.run(
      [sys.executable,
       os.path.join(REPO_ROOT, "benchmarks", "report_statistics.py"),
       "--trials=0", f"--output={tmp_path / 'no.json'}"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=300)
  assert bad.returncode == 2 and "--trials must be >= 1" in bad.stdout
  assert not (tmp_path / "no.json").exists()
