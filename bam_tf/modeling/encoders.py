"""One entry point that turns the encoder flags into a Keras BERT layer.

Every non-debug encoder is loaded as `hub.KerasLayer(path, trainable=True)`:
TF-Hub BERT-Large (the paper's model), a converted Google TF1 BERT folder,
and the embedded MiniLM default all share that path, so what the tests check
on the default is what runs with BERT-Large.
"""
import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import dataclasses
import hashlib
import os
import re
from typing import Any, Dict, Optional

from absl import logging

from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.common.errors import ConfigError
from bam_tf.data.tokenization import InGraphTokenizer
from bam_tf.modeling import hf_bert
from bam_tf.modeling import hub_export
from bam_tf.modeling import minilm

# Debug encoder: the original BERT code's tiny "debug" size (3 x 144).
DEBUG_NUM_LAYERS = 3
DEBUG_HIDDEN_SIZE = 144
DEBUG_NUM_HEADS = 4  # head size 36
DEBUG_INTERMEDIATE_SIZE = 4 * DEBUG_HIDDEN_SIZE
TF1_EXPORT_FORMAT_VERSION = 2  # 2: dropout streams are variables


class EncoderError(BamError):
  """An encoder, checkpoint or vocab that cannot be used."""


@dataclasses.dataclass
class EncoderBundle:
  """A BERT encoder layer plus what the data pipeline and optimizer need.

  `layer` is called on dict(input_word_ids, input_mask, input_type_ids) of
  int32 [batch, seq] and returns a dict with at least 'pooled_output'
  [batch, hidden] and 'sequence_output' [batch, seq, hidden].
  """
  layer: Any
  vocab_file: str
  do_lower_case: bool
  num_layers: int
  hidden_size: int
  max_position_embeddings: int
  description: str
  hub_path: str = ""          # the SavedModel loaded, '' for debug
  preprocessor_path: str = ""  # a matching preprocessor SavedModel, if known


# ---------------------------------------------------------------------------
# Layer-wise learning-rate depths.

_LAYER_RE = re.compile(r"(?:^|/)(?:transformer|encoder)/layer_(\d+)/")
_EMBED_RE = re.compile(
    r"(?:^|/)(?:word_embeddings|position_embedding|type_embeddings|"
    r"embeddings/layer_norm|embedding_projection|embeddings)/")
_POOLER_RE = re.compile(r"(?:^|/)(?:pooler_transform|pooler)/")


def variable_depth(var_name: str, num_layers: int) -> int:
  """Depth of a variable for layer-wise learning-rate decay.

  0 = embeddings (word/position/type tables, embedding layer norm and an
  optional embedding projection), i+1 = transformer layer i, num_layers+1 =
  pooler, num_layers+2 = anything else (task heads). Matches the Model Garden
  names used by TF-Hub BERT exports, the embedded MiniLM export and the debug
  encoder (`transformer/layer_3/self_attention/query/kernel:0`,
  `pooler_transform/kernel:0`, `word_embeddings/embeddings:0`,
  `embeddings/layer_norm/gamma:0`, ...) and also original TF1 names
  (`bert/encoder/layer_3/...`, `bert/embeddings/...`, `bert/pooler/...`),
  with any outer name scope in front.
  """
  m = _LAYER_RE.search(var_name)
  if m:
    layer = int(m.group(1))
    if layer >= num_layers:
      raise ValueError(f"{var_name}: layer {layer} >= num_layers {num_layers}")
    return layer + 1
  if _POOLER_RE.search(var_name):
    return num_layers + 1
  if _EMBED_RE.search(var_name):
    return 0
  return num_layers + 2


# ---------------------------------------------------------------------------
# Encoder construction.


def _get(cfg, name, default):
  value = getattr(cfg, name, default)
  return default if value is None else value


def build_encoder(encoder_cfg) -> EncoderBundle:
  """Builds the encoder chosen by the flags.

  Priority: debug (random tiny Model Garden BertEncoder) > bert_checkpoint_dir
  (Google TF1 BERT, converted and exported to the cache) > hf_checkpoint_dir
  (a Hugging Face BERT folder, likewise) > hub_module_url >
  the embedded MiniLM export. Explicit vocab_file / do_lower_case override
  what the encoder carries.
  """
  cache_dir = _get(encoder_cfg, "cache_dir", "") or hub_export.default_cache_dir()
  # The compute precision in force (runner builds encoders under the
  # --mixed_precision policy): this project's exports are made per
  # precision, since a SavedModel keeps the dtypes it was exported with.
  precision = _policy_name()
  vocab_file = _get(encoder_cfg, "vocab_file", "")
  do_lower_case = getattr(encoder_cfg, "do_lower_case", None)
  if _get(encoder_cfg, "debug", False):
    return build_debug_encoder(vocab_file, do_lower_case)
  ckpt_dir = _get(encoder_cfg, "bert_checkpoint_dir", "")
  if ckpt_dir:
    export = export_tf1_checkpoint(ckpt_dir, cache_dir, do_lower_case,
                                   precision)
    return load_hub_encoder(
        export["encoder"], vocab_file=vocab_file, do_lower_case=do_lower_case,
        preprocessor=export["preprocessor"],
        description=f"Google TF1 BERT from {ckpt_dir} (exported to "
        f"{os.path.dirname(export['encoder'])})")
  hf_dir = _get(encoder_cfg, "hf_checkpoint_dir", "")
  if hf_dir:
    export = hf_bert.export_checkpoint(hf_dir, cache_dir, do_lower_case,
                                       precision)
    return load_hub_encoder(
        export["encoder"], vocab_file=vocab_file,
        do_lower_case=export["do_lower_case"],
        preprocessor=export["preprocessor"],
        description=f"Hugging Face BERT from {hf_dir} (exported to "
        f"{os.path.dirname(export['encoder'])})")
  hub_url = _get(encoder_cfg, "hub_module_url", "")
  if hub_url:
    if precision != "float32":
      logging.warning(
          "--mixed_precision=%s: the TF-Hub SavedModel %s computes in the "
          "dtypes it was exported with; only the heads follow the policy",
          precision, hub_url)
    return load_hub_encoder(
        hub_url, vocab_file=vocab_file, do_lower_case=do_lower_case,
        preprocessor=_get(encoder_cfg, "hub_preprocessor_url", ""),
        description=f"TF-Hub encoder {hub_url}")
  export = minilm.export_embedded_encoder(cache_dir, precision)
  return load_hub_encoder(
      export["encoder"], vocab_file=vocab_file, do_lower_case=do_lower_case,
      preprocessor=(_get(encoder_cfg, "hub_preprocessor_url", "")
                    or export["preprocessor"]),
      description=f"embedded all-MiniLM-L6-v2 ({export['encoder']})")


def load_encoder_and_tokenizer(config):
  """The run's encoder and the in-graph tokenizer that matches it (its
  vocab and casing), after checking --max_seq_length against the encoder's
  position embeddings."""
  bundle = build_encoder(config)
  if config.max_seq_length > bundle.max_position_embeddings:
    raise ConfigError(f"--max_seq_length: {config.max_seq_length} is above "
                      f"the encoder's {bundle.max_position_embeddings} "
                      "position embeddings")
  tokenizer = InGraphTokenizer(bundle.vocab_file, bundle.do_lower_case,
                               config.max_seq_length)
  return bundle, tokenizer


def _policy_name() -> str:
  import tf_keras  # pylint: disable=g-import-not-at-top
  return tf_keras.mixed_precision.global_policy().name


def bert_encoder_layer(*, vocab_size: int, hidden_size: int, num_layers: int,
                       num_attention_heads: int, intermediate_size: int,
                       max_sequence_length: int):
  """A randomly initialised Model Garden BertEncoder with BERT's exact-erf
  GELU, two segment types and dict outputs, as every encoder built in
  Python here (the debug encoder, the benchmark's rebuilt encoder) is."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from official.nlp.modeling import networks  # pylint: disable=g-import-not-at-top
  return networks.BertEncoder(
      vocab_size=vocab_size,
      hidden_size=hidden_size,
      num_layers=num_layers,
      num_attention_heads=num_attention_heads,
      intermediate_size=intermediate_size,
      activation=hub_export.exact_gelu,
      max_sequence_length=max_sequence_length,
      type_vocab_size=2,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02),
      dict_outputs=True)


def build_debug_encoder(vocab_file: str = "",
                        do_lower_case: Optional[bool] = None) -> EncoderBundle:
  """Randomly initialised 3-layer, 144-wide Model Garden BertEncoder.

  For fast smoke runs; uses the MiniLM uncased vocab (size 30522) unless a
  vocab file is given. Initialisation follows TF's global seed, which the
  trainer sets.
  """
  if not vocab_file:
    _, vocab_file, _ = minilm.find_minilm_files()
    do_lower_case = True if do_lower_case is None else do_lower_case
  elif do_lower_case is None:
    do_lower_case = _guess_lower_case(vocab_file)
  vocab_size = len(files.read_text(vocab_file).splitlines())
  layer = bert_encoder_layer(
      vocab_size=vocab_size, hidden_size=DEBUG_HIDDEN_SIZE,
      num_layers=DEBUG_NUM_LAYERS, num_attention_heads=DEBUG_NUM_HEADS,
      intermediate_size=DEBUG_INTERMEDIATE_SIZE, max_sequence_length=512)
  return EncoderBundle(
      layer=layer, vocab_file=vocab_file, do_lower_case=bool(do_lower_case),
      num_layers=DEBUG_NUM_LAYERS, hidden_size=DEBUG_HIDDEN_SIZE,
      max_position_embeddings=512,
      description=f"debug BertEncoder {DEBUG_NUM_LAYERS}x{DEBUG_HIDDEN_SIZE} "
      "(random init)")


def _guess_lower_case(name: str) -> Optional[bool]:
  """Google's naming convention: 'uncased' / 'cased' in the path."""
  low = name.lower()
  if "uncased" in low:
    return True
  if "cased" in low:
    return False
  return None


def _as_str(value) -> str:
  if hasattr(value, "asset_path"):
    value = value.asset_path
  if hasattr(value, "numpy"):
    value = value.numpy()
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_hub_encoder(handle: str, *, vocab_file: str = "",
                     do_lower_case: Optional[bool] = None,
                     preprocessor: str = "",
                     description: str = "") -> EncoderBundle:
  """Loads a TF-Hub BERT encoder as a trainable KerasLayer and inspects it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  try:
    layer = hub.KerasLayer(handle, trainable=True)
  except Exception as e:  # pylint: disable=broad-except
    raise EncoderError(f"Could not load the TF-Hub encoder {handle!r} given by "
                     f"--hub_module_url (or the converted/embedded export): "
                     f"{e}") from e
  obj = layer.resolved_object
  not_bert = (f"{handle!r} does not look like a TF-Hub BERT encoder; "
              "--hub_module_url must point to a BERT encoder SavedModel "
              "taking input_word_ids/input_mask/input_type_ids and returning "
              "pooled_output")

  # Architecture sizes from the variable names.
  names = {v.name.split(":")[0]: v for v in layer.variables}
  layers_seen = {int(m.group(1)) for n in names
                 for m in [_LAYER_RE.search(n)] if m}
  pos = [v for n, v in names.items()
         if re.search(r"(?:^|/)position_embeddings?/embeddings$", n)]
  pooler = [v for n, v in names.items()
            if re.search(r"(?:^|/)pooler_transform/kernel$", n)]
  if not layers_seen or not pos or not pooler:
    raise EncoderError(not_bert + " (no transformer/layer_N, position_embedding"
                     " or pooler_transform variables)")
  num_layers = max(layers_seen) + 1
  if layers_seen != set(range(num_layers)):
    raise EncoderError(f"{handle}: non-contiguous layers {sorted(layers_seen)}")
  hidden_size = int(pooler[0].shape[-1])
  max_pos = int(pos[0].shape[0])

  # Check the call signature with a tiny input.
  probe = {k: tf.constant([[101, 102]], tf.int32) for k in
           ("input_word_ids", "input_mask", "input_type_ids")}
  probe["input_type_ids"] = tf.zeros([1, 2], tf.int32)
  probe["input_mask"] = tf.ones([1, 2], tf.int32)
  try:
    out = layer(probe, training=False)
  except Exception as e:  # pylint: disable=broad-except
    raise EncoderError(f"{not_bert}: calling it failed: {e}") from e
  if not isinstance(out, dict) or "pooled_output" not in out or (
      "sequence_output" not in out):
    raise EncoderError(not_bert)

  # Vocabulary and casing: flags > encoder attributes > preprocessor assets.
  source = "--vocab_file"
  if not vocab_file and hasattr(obj, "vocab_file"):
    vocab_file, source = _as_str(obj.vocab_file), "encoder"
  if do_lower_case is None and hasattr(obj, "do_lower_case"):
    do_lower_case = bool(obj.do_lower_case.numpy())
  if not vocab_file and preprocessor:
    try:
      cand = os.path.join(hub.resolve(preprocessor), "assets", "vocab.txt")
    except Exception:  # pylint: disable=broad-except
      cand = ""
    if cand and tf.io.gfile.exists(cand):
      vocab_file, source = cand, "preprocessor"
  if not vocab_file:
    raise EncoderError(
        f"No WordPiece vocabulary found for encoder {handle!r}: it has no "
        "vocab_file asset and no preprocessor vocab.txt was found. Pass "
        "--vocab_file (and --do_lower_case) or --hub_preprocessor_url.")
  if do_lower_case is None:
    do_lower_case = (_guess_lower_case(handle)
                     if _guess_lower_case(handle) is not None
                     else _guess_lower_case(preprocessor or ""))
  if do_lower_case is None:
    raise EncoderError(f"Cannot tell whether {handle!r} is cased; pass "
                     "--do_lower_case=true/false.")
  _check_vocab_fits(handle, vocab_file, source, names)
  logging.info("Encoder %s: %d layers, hidden %d, vocab from %s (%s), "
               "lower case %s", handle, num_layers, hidden_size, source,
               vocab_file, do_lower_case)
  return EncoderBundle(
      layer=layer, vocab_file=vocab_file, do_lower_case=bool(do_lower_case),
      num_layers=num_layers, hidden_size=hidden_size,
      max_position_embeddings=max_pos,
      description=description or f"TF-Hub encoder {handle}",
      hub_path=handle, preprocessor_path=preprocessor or "")


# Some exports pad the embedding table (to a multiple of 8 or 128 rows);
# a gap larger than this means the vocab belongs to another model.
_MAX_EMBEDDING_PADDING = 128


def _check_vocab_fits(handle: str, vocab_file: str, source: str,
                      variables: Dict) -> None:
  """The WordPiece vocab must be the encoder's: its ids index the word
  embedding table, so a foreign vocab trains on the wrong rows."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  table = [v for n, v in variables.items()
           if re.search(r"(?:^|/)word_embeddings/embeddings$", n)]
  if not table:
    return
  rows = int(table[0].shape[0])
  with tf.io.gfile.GFile(vocab_file) as f:
    tokens = sum(1 for _ in f)
  if tokens > rows or rows - tokens > _MAX_EMBEDDING_PADDING:
    raise EncoderError(
        f"{source} {vocab_file}: {tokens} tokens, but the encoder {handle!r} "
        f"embeds {rows} word ids; the vocabulary does not belong to this "
        "encoder (use the vocab.txt that came with it)")


# ---------------------------------------------------------------------------
# Google TF1 BERT checkpoints.

# Google's original BERT code implements "gelu" with the tanh approximation,
# which is also what Model Garden's "gelu" is; other spellings get exact GELU.
_EXACT_GELU_NAMES = ("gelu_exact", "gelu_erf", "exact_gelu")


def _tf1_files(ckpt_dir: str) -> Dict[str, str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = os.path.join(ckpt_dir, "bert_config.json")
  vocab = os.path.join(ckpt_dir, "vocab.txt")
  ckpt = os.path.join(ckpt_dir, "bert_model.ckpt")
  if not tf.io.gfile.exists(ckpt + ".index"):
    ckpt = tf.train.latest_checkpoint(ckpt_dir) or ""
  missing = [p for p in (config, vocab) if not tf.io.gfile.exists(p)]
  if not ckpt:
    missing.append(os.path.join(ckpt_dir, "bert_model.ckpt.index"))
  if missing:
    raise FileNotFoundError(
        f"--bert_checkpoint_dir={ckpt_dir} must be an original Google BERT "
        f"folder (bert_config.json, vocab.txt, bert_model.ckpt.*); missing: "
        f"{missing}")
  return dict(config=config, vocab=vocab, ckpt=ckpt)


def export_tf1_checkpoint(ckpt_dir: str, cache_dir: str,
                          do_lower_case: Optional[bool] = None,
                          precision: str = "float32") -> Dict[str, str]:
  """Converts a Google TF1 BERT folder to a TF-Hub export, once per version.

  Uses Model Garden's TF1->TF2 converter and TF-Hub exporter; the cache key
  hashes the folder path and the files' sizes and mtimes.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.legacy.bert import configs  # pylint: disable=g-import-not-at-top
  from official.nlp.tools import tf2_bert_encoder_checkpoint_converter as conv  # pylint: disable=g-import-not-at-top
  tf1 = _tf1_files(ckpt_dir)
  if do_lower_case is None:
    do_lower_case = _guess_lower_case(files.absolute(ckpt_dir))
  if do_lower_case is None:
    raise EncoderError(f"Cannot tell whether {ckpt_dir} is cased (no 'uncased'"
                     "/'cased' in its name); pass --do_lower_case=true/false.")
  key_src = [files.absolute(ckpt_dir), str(bool(do_lower_case)),
             str(TF1_EXPORT_FORMAT_VERSION)]
  if precision != "float32":
    key_src.append(precision)
  for p in (tf1["config"], tf1["vocab"], tf1["ckpt"] + ".index"):
    key_src.append(f"{p}:{files.getsize(p)}:{files.getmtime(p)}")
  key = hashlib.sha256("\n".join(key_src).encode()).hexdigest()[:16]
  target = os.path.join(cache_dir, "tf1_bert",
                        f"{os.path.basename(os.path.normpath(ckpt_dir))}-{key}")

  def build(tmp):
    bert_config = configs.BertConfig.from_json_file(tf1["config"])
    convert_cfg = configs.BertConfig.from_dict(bert_config.to_dict())
    if str(bert_config.hidden_act).lower() in _EXACT_GELU_NAMES:
      bert_config.hidden_act = hub_export.exact_gelu
      convert_cfg.hidden_act = "gelu"  # only variables matter for conversion
    out = os.path.join(tmp, "ckpt", "converted")
    conv.convert_checkpoint(bert_config=convert_cfg, output_path=out,
                            v1_checkpoint=tf1["ckpt"],
                            checkpoint_model_name="encoder",
                            converted_model="encoder")
    hub_export.export_hub_pair(
        tmp, bert_config=bert_config,
        checkpoint_path=tf.train.latest_checkpoint(os.path.dirname(out)),
        vocab_file=tf1["vocab"], do_lower_case=bool(do_lower_case),
        precision=precision)
    files.remove(os.path.join(tmp, "ckpt"))

  hub_export.atomic_export(
      target, dict(key=key, source=files.absolute(ckpt_dir)), build)
  return dict(encoder=os.path.join(target, "encoder"),
              preprocessor=os.path.join(target, "preprocessor"))
