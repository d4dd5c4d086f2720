"""Hugging Face BERT-family folders -> Model Garden BertEncoder -> TF-Hub.

`--hf_checkpoint_dir=DIR` takes a folder as `save_pretrained` writes it
(config.json, model.safetensors, vocab.txt, tokenizer_config.json), builds
Model Garden's `BertEncoder` with the shape config.json gives, copies the
weights in and exports it once to the cache in the TF-Hub format
(hub_export), so it loads exactly as a TF-Hub encoder does. The embedded
MiniLM (modeling/minilm.py) is one such folder.

The weight mapping is hand-written (Model Garden converts TF1 BERT
checkpoints, not Hugging Face's layout): HF Linear weights are [out, in]
where Keras kernels are [in, out], and Model Garden's attention splits the
heads: q/k/v kernels [hidden, heads, head_dim], biases [heads, head_dim],
the output kernel [heads, head_dim, hidden].

Supported: model_type "bert" with absolute position embeddings and layer
norm epsilon 1e-12 (Model Garden's); activations gelu (exact erf, as
Hugging Face means it), gelu_new / gelu_pytorch_tanh (the tanh
approximation) and relu. Anything else is refused naming the field.
"""

import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional

import numpy as np

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.modeling import hub_export

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
VOCAB = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
# Bump when the conversion changes, so cached exports are rebuilt.
FORMAT_VERSION = 1

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "intermediate_size")
TO_SAFETENSORS = (
    "convert it once where PyTorch and transformers are installed: python -c "
    "\"from transformers import AutoModel; m = AutoModel.from_pretrained("
    "'DIR'); m.save_pretrained('DIR', safe_serialization=True)\"")


class CheckpointError(BamError):
  """A Hugging Face folder bam_tf cannot convert; names file and field."""


@dataclasses.dataclass(frozen=True)
class HfFolder:
  """A checked Hugging Face BERT folder."""
  path: str
  config: Dict
  weights_file: str
  vocab_file: str
  do_lower_case: Optional[bool]  # None: the tokenizer config does not say


def _fail(path: str, message: str):
  raise CheckpointError(f"--hf_checkpoint_dir: {path}: {message}")


def check_config(config: Dict, where: str) -> None:
  """Refuses a config.json that is not a BERT bam_tf can build exactly."""
  model_type = config.get("model_type", "bert")
  if model_type != "bert":
    _fail(where, f"model_type {model_type!r} is not supported (BERT-family "
          "folders with model_type 'bert' only: RoBERTa, DeBERTa, ... have "
          "other layers)")
  for field in _REQUIRED:
    value = config.get(field)
    if not (isinstance(value, int) and not isinstance(value, bool)
            and value > 0):
      _fail(where, f"{field} must be a positive integer, got {value!r}")
  if config["hidden_size"] % config["num_attention_heads"]:
    _fail(where, f"hidden_size {config['hidden_size']} is not a multiple of "
          f"num_attention_heads {config['num_attention_heads']}")
  act = config.get("hidden_act", "gelu")
  if act not in _ACTIVATIONS:
    _fail(where, f"hidden_act {act!r} is not supported (one of "
          f"{', '.join(_ACTIVATIONS)})")
  position = config.get("position_embedding_type", "absolute")
  if position != "absolute":
    _fail(where, f"position_embedding_type {position!r} is not supported "
          "(absolute only)")
  eps = config.get("layer_norm_eps", 1e-12)
  if not isinstance(eps, (int, float)) or abs(eps - 1e-12) > 1e-15:
    _fail(where, f"layer_norm_eps {eps!r}: Model Garden's BertEncoder uses "
          "1e-12")


def read_folder(path: str) -> HfFolder:
  """Checks a folder's files and config before anything is built."""
  if not files.isdir(path):
    _fail(path, "not a folder")
  config_path = os.path.join(path, CONFIG)
  if not files.isfile(config_path):
    _fail(path, f"{CONFIG} is missing (a Hugging Face model folder, as "
          "save_pretrained writes it)")
  try:
    config = files.read_json(config_path)
  except (ValueError, UnicodeDecodeError) as e:
    _fail(config_path, f"not valid JSON ({e})")
  if not isinstance(config, dict):
    _fail(config_path, "not a JSON object")
  check_config(config, config_path)
  weights = os.path.join(path, WEIGHTS)
  if not files.isfile(weights):
    if files.isfile(os.path.join(path, "pytorch_model.bin")):
      _fail(path, f"has pytorch_model.bin but no {WEIGHTS}: bam_tf reads "
            "safetensors only (a .bin is a pickle that needs PyTorch); "
            + TO_SAFETENSORS.replace("DIR", path))
    _fail(path, f"{WEIGHTS} is missing")
  vocab = os.path.join(path, VOCAB)
  if not files.isfile(vocab):
    _fail(path, f"{VOCAB} is missing (a WordPiece vocabulary, one token a "
          "line)")
  do_lower_case = None
  tokenizer_config = os.path.join(path, TOKENIZER_CONFIG)
  if files.isfile(tokenizer_config):
    try:
      value = files.read_json(tokenizer_config).get("do_lower_case")
    except (ValueError, UnicodeDecodeError, AttributeError):
      _fail(tokenizer_config, "not a valid JSON object")
    if isinstance(value, bool):
      do_lower_case = value
  return HfFolder(path, config, weights, vocab, do_lower_case)


def load_weights(path: str) -> Dict[str, np.ndarray]:
  """Reads a safetensors file into numpy arrays (no torch needed), from any
  filesystem."""
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
  return load(files.read_bytes(path))


def activation(config: Dict):
  """The callable (or Model Garden name) of config.json's hidden_act."""
  act = config.get("hidden_act", "gelu")
  if act == "gelu":
    # Model Garden's "gelu" is the tanh approximation; Hugging Face's is
    # exact, which differs by more than 1e-4, so pass the callable.
    return hub_export.exact_gelu
  return "gelu" if act in ("gelu_new", "gelu_pytorch_tanh") else act


def bert_config(config: Dict):
  """Model Garden's legacy `BertConfig` (what its exporter takes)."""
  from official.legacy.bert import configs  # pylint: disable=g-import-not-at-top
  return configs.BertConfig(
      vocab_size=config["vocab_size"],
      hidden_size=config["hidden_size"],
      num_hidden_layers=config["num_hidden_layers"],
      num_attention_heads=config["num_attention_heads"],
      intermediate_size=config["intermediate_size"],
      hidden_act=activation(config),  # get_activation() passes callables.
      hidden_dropout_prob=config.get("hidden_dropout_prob", 0.1),
      attention_probs_dropout_prob=config.get(
          "attention_probs_dropout_prob", 0.1),
      max_position_embeddings=config.get("max_position_embeddings", 512),
      type_vocab_size=config.get("type_vocab_size", 2),
      initializer_range=config.get("initializer_range", 0.02))


def to_model_garden(weights: Dict[str, np.ndarray], config: Dict
                    ) -> Dict[str, np.ndarray]:
  """HF BERT weights (with or without the "bert." prefix of task models)
  -> Model Garden BertEncoder variable names and layouts."""
  w = {k[len("bert."):] if k.startswith("bert.") else k: v
       for k, v in weights.items()}
  missing = [k for k in ("embeddings.word_embeddings.weight",
                         "pooler.dense.weight") if k not in w]
  if missing:
    raise CheckpointError(
        f"--hf_checkpoint_dir: {WEIGHTS} has no {missing[0]} (a BERT encoder "
        "with its pooler is needed, as BertModel saves it)")
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
    raise CheckpointError(f"--hf_checkpoint_dir: weight mapping mismatch: "
                          f"missing={missing[:5]} unused={unused[:5]}")
  for name, var in variables.items():
    val = np.asarray(values[name], dtype=np.float32)
    if tuple(var.shape) != val.shape:
      raise CheckpointError(f"--hf_checkpoint_dir: {name}: shape {val.shape} "
                            f"!= the config's {tuple(var.shape)}")
    var.assign(val)


def build_encoder(folder: HfFolder):
  """A Model Garden BertEncoder holding the folder's weights."""
  from official.nlp.tools import export_tfhub_lib  # pylint: disable=g-import-not-at-top
  try:
    weights = load_weights(folder.weights_file)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"--hf_checkpoint_dir: {folder.weights_file}: "
                          f"cannot be read as safetensors ({e})") from None
  encoder = export_tfhub_lib.get_bert_encoder(bert_config(folder.config))
  try:
    values = to_model_garden(weights, folder.config)
  except KeyError as e:
    raise CheckpointError(f"--hf_checkpoint_dir: {folder.weights_file} has "
                          f"no weight {e.args[0]} that config.json's shape "
                          "needs") from None
  assign_by_name(encoder, values)
  return encoder


def export_folder(folder: HfFolder, target: str, manifest: Dict,
                  do_lower_case: bool, precision: str = "float32") -> Dict:
  """Converts and exports `folder` to target/{encoder,preprocessor} unless
  an export with the same manifest is there; returns the paths."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def build(tmp):
    encoder = build_encoder(folder)
    # save() (not write()) so the save_counter that export_model's
    # assert_existing_objects_matched() expects is in the checkpoint.
    ckpt = tf.train.Checkpoint(encoder=encoder).save(
        os.path.join(tmp, "ckpt", "converted"))
    hub_export.export_hub_pair(
        tmp, bert_config=bert_config(folder.config), checkpoint_path=ckpt,
        vocab_file=folder.vocab_file, do_lower_case=do_lower_case,
        precision=precision)
    files.remove(os.path.join(tmp, "ckpt"))

  hub_export.atomic_export(target, manifest, build)
  return dict(encoder=os.path.join(target, "encoder"),
              preprocessor=os.path.join(target, "preprocessor"),
              vocab_file=os.path.join(target, "encoder", "assets",
                                      "vocab.txt"),
              do_lower_case=do_lower_case)


def export_checkpoint(path: str, cache_dir: str,
                      do_lower_case: Optional[bool] = None,
                      precision: str = "float32") -> Dict:
  """--hf_checkpoint_dir: the folder's TF-Hub export in
  cache_dir/hf_bert/<folder name>-<key>, made once; the key hashes the
  config, the weights, the vocab, the casing and the precision."""
  from bam_tf.common.files import file_sha256  # pylint: disable=g-import-not-at-top
  folder = read_folder(path)
  if do_lower_case is None:
    do_lower_case = folder.do_lower_case
  if do_lower_case is None:
    _fail(path, f"{TOKENIZER_CONFIG} does not say whether the vocabulary is "
          "cased (do_lower_case); pass --do_lower_case=true or false")
  manifest = dict(source="hf_bert", format=FORMAT_VERSION,
                  config=folder.config,
                  weights_sha256=file_sha256(folder.weights_file),
                  vocab_sha256=file_sha256(folder.vocab_file),
                  do_lower_case=bool(do_lower_case), precision=precision)
  key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode(
      "utf-8")).hexdigest()[:16]
  name = os.path.basename(os.path.normpath(files.absolute(path)))
  target = os.path.join(cache_dir, "hf_bert", f"{name}-{key}")
  return export_folder(folder, target, manifest, bool(do_lower_case),
                       precision)
