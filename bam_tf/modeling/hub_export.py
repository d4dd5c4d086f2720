"""Writing TF-Hub-format BERT encoders (encoder + preprocessor SavedModels)
with Model Garden's exporter, once per source into the cache.

Every encoder bam_tf converts (a Hugging Face BERT folder, the embedded
MiniLM, a Google TF1 checkpoint) is exported here, so all of them load
through the same `hub.KerasLayer` path as TF-Hub's BERT-Large.
"""
import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import os
from typing import Dict

from bam_tf.common import files

MANIFEST = "bam_tf_manifest.json"
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
  and its copy is discarded if the winner's manifest matches. Where folders
  cannot be renamed (an object store), the files are moved in one by one,
  the manifest last: an export without it is never reused.
  """
  if _manifest_matches(target, manifest):
    return
  parent, base = os.path.split(target)
  tmp = files.make_temp_dir(parent, base + ".tmp.")
  try:
    build_fn(tmp)
    files.write_json_atomic(os.path.join(tmp, MANIFEST), manifest)
    if files.exists(target):
      if _manifest_matches(target, manifest):
        return
      files.remove(target)
    if not files.is_local(target):
      files.move_tree(tmp, target, last=MANIFEST)
      return
    try:
      files.rename(tmp, target)
    except OSError:
      if not _manifest_matches(target, manifest):
        raise
  finally:
    files.remove(tmp)


def _manifest_matches(target: str, manifest: dict) -> bool:
  try:
    return files.read_json(os.path.join(target, MANIFEST)) == manifest
  except (OSError, ValueError):
    return False
