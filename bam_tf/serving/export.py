"""Exports a finished run as a SavedModel that takes raw text.

Why: a server (TF Serving, or plain `tf.saved_model.load`) should need
neither bam_tf nor Keras nor a Python tokenizer. The SavedModel holds the
in-graph WordPiece tokenizer (its vocab is an asset), the encoder and head
weights, the label strings, and a JSON description of the tasks
(assets/bam_export.json, also returned by the `metadata()` function).

Signatures (all inputs are 1-D tf.string [None], one row per example):

  <task>            one per task, e.g. `rte`, `sts`, `sst`.
  serving_default   every task's outputs at once.

A signature takes `text_a`, plus `text_b` if any of its tasks is a sentence
pair task (so a single-sentence task's own signature takes `text_a` only,
and `serving_default` of a model with a pair task takes both). Row by row,
an EMPTY text_b ("") means "no second sentence": the row is packed as
[CLS] a [SEP] with single-sentence truncation, like the original BERT/BAM
code (`if example.text_b:` ... `if tokens_b:`), and so is a text_b that
gives no wordpieces (e.g. " "); anything else is packed as the pair
[CLS] a [SEP] b [SEP]. Training and evaluation featurise the same way. One
batch may mix both kinds of rows.

Outputs per task: classification `<task>_probabilities` float32
[None, num_labels] and `<task>_label` tf.string [None] (the argmax label
from the task's label_list); regression `<task>_score` float32 [None] on
the ORIGINAL label scale (e.g. STS-B 0..5: the head's scaled prediction
passed through `TaskSpec.unscale`). Dropout is off.

Only the variables are saved, not the Keras objects, so loading needs
tensorflow + tensorflow_text only.

Writing and replacing (why a server watching export_dir never loses its
model): the SavedModel is written into a staging folder beside export_dir
(`.<base>.tmp-XXXXXXXX`) and fsynced, then put in place in one step. A new
export_dir is one rename. An existing one (--overwrite) is swapped with the
staging folder by Linux's renameat2(RENAME_EXCHANGE): atomic, so at every
instant export_dir is the complete old model or the complete new one, also
if the process is killed; the old one, now under the staging name, is
deleted afterwards. Where the exchange is not available (another OS, an old
kernel, a filesystem without it) the replacement falls back to two renames,
old -> `.<base>.old-XXXXXXXX/<base>` then staging -> export_dir: a kill
between them leaves no export_dir for that moment, but the old model is
complete aside and the next export to that path (`recover_export_dir`,
also `export_run` without --overwrite) puts it back before anything else.
After that the leftovers of killed exports (`.<base>.tmp-*`,
`.<base>.old-*`) are deleted: by then export_dir holds the complete model
they no longer protect. One export at a time per export_dir: a concurrent
one may lose its staging folder (and fail with an error), never the target.
On an object store (gs://), where a folder cannot be renamed, "a rename"
above moves the files one by one, saved_model.pb last.

Command line:
  python -m bam_tf.serving.export --model_dir=RUN --export_dir=OUT \
      [--trial=0] [--tasks=rte,sts] [--overwrite]
"""

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from bam_tf import configure
from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.modeling import encoders
from bam_tf.modeling.multitask_model import head_name
from bam_tf.modeling.multitask_model import INPUT_KEYS
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.tasks.task import TaskSpec
from bam_tf.training import warm_start

EXPORT_FORMAT = "bam_tf.serving.v1"
METADATA_FILE = "bam_export.json"
DEFAULT_SIGNATURE = "serving_default"
TEXT_A = "text_a"
TEXT_B = "text_b"


class ExportError(BamError):
  """A run that cannot be restored or an export that cannot be written."""


# ---------------------------------------------------------------------------
# Restoring a finished run.


def final_checkpoint_path(model_dir: str, trial: int) -> str:
  return os.path.join(model_dir, f"trial_{trial}", warm_start.FINAL_DIR,
                      warm_start.FINAL_PREFIX)


def load_run_config(model_dir: str) -> configure.BamConfig:
  """Rebuilds and validates a run's config from model_dir/config.json.

  Settings that only matter while training and name other places (teachers,
  --init_from) are cleared: the final checkpoint already holds their effect
  and those paths need not exist where the export happens. The training data
  is not needed either, so a missing --data_dir is tolerated.
  """
  path = os.path.join(model_dir, "config.json")
  if not files.isfile(path):
    raise ExportError(f"{path} not found; --model_dir must be a finished "
                      "run (run_classifier.py writes config.json)")
  saved = files.read_json(path)
  missing = configure.missing_settings(saved)
  if missing:
    raise ExportError(f"{path} lacks {missing}; was it written by another "
                      "version of bam_tf?")
  return configure.BamConfig.from_json(
      saved, need_data=False, model_dir=model_dir, distill=False,
      teachers="", init_from="")


def restore_final(model, encoder_layer, model_dir: str, trial: int = 0):
  """Loads the final encoder and EVERY head, failing if any is missing.

  Stricter than `warm_start.init_from` (which skips what is absent): an
  export with a randomly initialised head would serve noise silently.
  """
  path = final_checkpoint_path(model_dir, trial)
  if not tf.io.gfile.exists(path + ".index"):
    raise ExportError(f"{path} not found; trial {trial} of {model_dir} has "
                      "not finished")
  items = {"encoder": encoder_layer}
  for task in model.tasks:
    items[head_name(task)] = model.get_layer(head_name(task))
  status = tf.train.Checkpoint(**items).read(path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise ExportError(f"{path} does not match the model built from "
                      f"{model_dir}/config.json: {e}") from None
  status.expect_partial()


def restore_run(model_dir: str, trial: int = 0):
  """(config, model, tokenizer, bundle) of a finished run, final weights.

  The model is built without optimizer or sampling plan (serving needs
  neither); the tokenizer is the one training used.
  """
  config = load_run_config(model_dir)
  path = final_checkpoint_path(model_dir, trial)
  if not tf.io.gfile.exists(path + ".index"):  # before the slow encoder load
    raise ExportError(f"{path} not found; trial {trial} of {model_dir} has "
                      "not finished")
  bundle, tokenizer = encoders.load_encoder_and_tokenizer(config)
  model = MultiTaskModel(bundle.layer, config.tasks,
                         regression_head=config.regression_head,
                         head_dropout=config.head_dropout)
  restore_final(model, bundle.layer, model_dir, trial)
  return config, model, tokenizer, bundle


# ---------------------------------------------------------------------------
# The serving module.


def is_pair_task(task: TaskSpec) -> bool:
  """Whether the task's files give a second sentence (text_b)."""
  return any(layout.text_b_col is not None for layout in task.splits.values())


def pack_rows(tokenizer, text_a: tf.Tensor,
              text_b: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """Padded model inputs; rows with an empty text_b are single sentences.

  Only the kinds of rows present are tokenised (all pairs / all singles are
  the common cases). A non-empty text_b that gives no wordpieces (" ") is
  made a single sentence by the tokenizer itself, as in training.
  """
  if text_b is None:
    return tokenizer(text_a)
  has_b = tf.strings.length(text_b) > 0

  def pairs():
    return tokenizer(text_a, text_b)

  def singles():
    return tokenizer(text_a)

  def mixed():
    p, s = pairs(), singles()
    return {k: tf.where(has_b[:, tf.newaxis], p[k], s[k]) for k in p}

  return tf.cond(tf.reduce_all(has_b), pairs,
                 lambda: tf.cond(tf.reduce_any(has_b), mixed, singles))


def task_outputs(model, task: TaskSpec,
                 logits: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Serving outputs of one head (see the module docstring)."""
  logits = tf.cast(logits, tf.float32)
  if task.is_regression:
    scaled = model.regression_output(logits)
    return {f"{task.name}_score": tf.cast(task.unscale(scaled), tf.float32)}
  probs = tf.nn.softmax(logits, axis=-1)
  labels = tf.constant(list(task.label_list), tf.string)
  return {f"{task.name}_probabilities": probs,
          f"{task.name}_label": tf.gather(labels, tf.argmax(probs, axis=-1))}


def _text_spec(name):
  return tf.TensorSpec([None], tf.string, name=name)


class ServingModule(tf.Module):
  """What the SavedModel holds: tokenizer, variables, metadata, signatures.

  The Keras model is deliberately not an attribute (it would be saved as
  Keras objects that need tf_keras to load); the signature functions close
  over it and only its variables are tracked.
  """

  def __init__(self, model, tokenizer, tasks: Sequence[TaskSpec],
               metadata: Dict, metadata_file: str):
    super().__init__(name="bam_serving")
    self.tokenizer = tokenizer
    self.model_variables = list(model.variables)
    self.metadata_asset = tf.saved_model.Asset(metadata_file)
    metadata_json = json.dumps(metadata, indent=2, sort_keys=True)
    self.metadata = tf.function(
        lambda: {"metadata_json": tf.constant(metadata_json)},
        input_signature=[])
    fns = {t.name: self._make_signature(model, tokenizer, [t])
           for t in tasks}
    fns[DEFAULT_SIGNATURE] = self._make_signature(model, tokenizer,
                                                  list(tasks))
    # Kept out of the object graph (they are saved as signatures): a child
    # named `signatures` would also clash with the loaded `.signatures`.
    object.__setattr__(self, "_serving_signatures", fns)

  def serving_signatures(self) -> Dict:
    """Signature name -> concrete function, for tf.saved_model.save."""
    return dict(self._serving_signatures)

  @staticmethod
  def _make_signature(model, tokenizer, tasks):
    def outputs(text_a, text_b=None):
      inputs = pack_rows(tokenizer, text_a, text_b)
      inputs = {k: inputs[k] for k in INPUT_KEYS}
      # The heads do not read task_id; it is a model input for the train
      # step only.
      inputs["task_id"] = tf.zeros_like(text_a, tf.int32)
      logits = model(inputs, training=False)
      out = {}
      for task in tasks:
        out.update(task_outputs(model, task, logits[task.name]))
      return out

    if any(is_pair_task(t) for t in tasks):
      fn = tf.function(lambda text_a, text_b: outputs(text_a, text_b),
                       input_signature=[_text_spec(TEXT_A),
                                        _text_spec(TEXT_B)])
    else:
      fn = tf.function(lambda text_a: outputs(text_a),  # pylint: disable=unnecessary-lambda
                       input_signature=[_text_spec(TEXT_A)])
    return fn.get_concrete_function()


def export_metadata(model, tokenizer, tasks: Sequence[TaskSpec],
                    extra: Optional[Dict] = None) -> Dict:
  """Everything a client needs to call the export, as JSON-able data."""
  pair_any = any(is_pair_task(t) for t in tasks)
  task_info = []
  for task in tasks:
    if task.is_regression:
      outputs = [f"{task.name}_score"]
    else:
      outputs = [f"{task.name}_probabilities", f"{task.name}_label"]
    task_info.append({
        "name": task.name, "kind": task.kind,
        "label_list": list(task.label_list),
        "label_range": list(task.label_range),
        "pair": is_pair_task(task), "signature": task.name,
        "inputs": [TEXT_A, TEXT_B] if is_pair_task(task) else [TEXT_A],
        "outputs": outputs})
  meta = {
      "format": EXPORT_FORMAT,
      "tasks": task_info,
      "default_signature": DEFAULT_SIGNATURE,
      "default_inputs": [TEXT_A, TEXT_B] if pair_any else [TEXT_A],
      "empty_text_b": "single sentence",
      "regression_head": getattr(model, "regression_head", "linear"),
      "tokenizer": {"vocab_file": os.path.basename(tokenizer.vocab_file),
                    **tokenizer.config()},
  }
  meta.update(extra or {})
  return meta


def _check_tasks(model, tasks) -> List[TaskSpec]:
  known = {t.name: t for t in model.tasks}
  tasks = list(tasks) if tasks else list(model.tasks)
  for task in tasks:
    name = task if isinstance(task, str) else task.name
    if name not in known:
      raise ExportError(f"task {name!r} is not one of the model's tasks "
                        f"{sorted(known)}")
  names = [t if isinstance(t, str) else t.name for t in tasks]
  if len(set(names)) != len(names) or DEFAULT_SIGNATURE in names:
    raise ExportError(f"task names {names} must be distinct and not "
                      f"{DEFAULT_SIGNATURE!r}")
  return [known[n] for n in names]


# ---------------------------------------------------------------------------
# Putting an export in place (see the module docstring).

def exchange_paths(a: str, b: str):
  """Swaps two existing paths atomically (files.exchange_paths); a name of
  its own so that tests can take it away."""
  files.exchange_paths(a, b)


def _leftover_pattern(base: str):
  # tempfile.mkdtemp's names: the prefix and 8 characters of [a-z0-9_].
  return re.compile(rf"^\.{re.escape(base)}\.(tmp|old)-[a-z0-9_]{{8}}$")


def _leftovers(export_dir: str) -> Dict[str, List[str]]:
  """{"tmp": [...], "old": [...]}: staging and set-aside folders beside
  export_dir."""
  parent, base = os.path.split(export_dir)
  found = {"tmp": [], "old": []}
  if files.isdir(parent):
    pattern = _leftover_pattern(base)
    for name in files.listdir(parent):
      match = pattern.match(name)
      if match:
        found[match.group(1)].append(os.path.join(parent, name))
  return found


def recover_export_dir(export_dir: str) -> bool:
  """Settles export_dir after killed exports; returns whether it restored.

  If export_dir is missing and a fallback replacement was killed between
  its two renames, the old export (complete, in `.<base>.old-*/<base>`) is
  moved back. Then every leftover staging or set-aside folder is deleted:
  none is the only complete copy any more.
  """
  export_dir = files.absolute(export_dir)
  base = os.path.basename(export_dir)
  restored = False
  if not files.exists(export_dir):
    aside = [d for d in _leftovers(export_dir)["old"]
             if files.isdir(os.path.join(d, base))]
    if aside:
      newest = max(aside, key=files.getmtime)
      _put(os.path.join(newest, base), export_dir)
      files.fsync_dir(os.path.dirname(export_dir))
      logging.warning("Restored %s from %s (an export replacing it was "
                      "killed)", export_dir, newest)
      restored = True
  for paths in _leftovers(export_dir).values():
    for path in paths:
      logging.info("Removing %s (left by a killed export)", path)
      files.remove(path)
  return restored


def _put(src: str, dst: str):
  """Moves a folder to a path that does not exist: one rename, or where
  folders cannot be renamed (an object store) file by file, saved_model.pb
  last (a watcher sees a model only once its variables are there)."""
  if files.is_local(dst):
    files.rename(src, dst)
  else:
    files.move_tree(src, dst, last="saved_model.pb")


def _replace_by_two_renames(staging: str, export_dir: str):
  """The fallback without an atomic exchange (module docstring)."""
  parent, base = os.path.split(export_dir)
  old = files.make_temp_dir(parent, f".{base}.old-")
  aside = os.path.join(old, base)
  _put(export_dir, aside)
  # Killed here: no export_dir; recover_export_dir moves `aside` back.
  try:
    _put(staging, export_dir)
  except OSError:
    _put(aside, export_dir)  # if this fails too, `old` is kept
    files.remove(old)
    raise
  files.remove(old)


def _move_into_place(staging: str, export_dir: str):
  parent = os.path.dirname(export_dir)
  try:
    if not files.exists(export_dir):
      _put(staging, export_dir)
    else:
      try:
        exchange_paths(staging, export_dir)  # staging now holds the old one
      except OSError as e:
        logging.info("No atomic exchange for %s (%s); replacing it by two "
                     "renames", export_dir, e)
        _replace_by_two_renames(staging, export_dir)
  except OSError as e:
    raise ExportError(f"could not move the export into {export_dir} ({e}); "
                      "did something else create or remove it meanwhile?"
                      ) from None
  files.fsync_dir(parent)


def export_saved_model(model, tokenizer, tasks, export_dir: str,
                       overwrite: bool = False,
                       extra_metadata: Optional[Dict] = None) -> str:
  """Writes the SavedModel to export_dir; returns its absolute path.

  Written into a staging folder beside export_dir and put in place in one
  atomic step, so a server watching export_dir never sees half an export,
  nor (with overwrite=True) a moment without one (module docstring). An
  existing export_dir is refused unless overwrite=True. `tasks`: TaskSpecs
  or names, a subset of model.tasks (default all).
  """
  tasks = _check_tasks(model, tasks)
  export_dir = files.absolute(export_dir)
  recover_export_dir(export_dir)
  if files.exists(export_dir) and not overwrite:
    raise ExportError(f"export dir {export_dir} already exists; refusing to "
                      "overwrite an export (pass overwrite=True / "
                      "--overwrite, or choose a new dir)")
  parent, base = os.path.split(export_dir)
  staging = files.make_temp_dir(parent, f".{base}.tmp-")
  scratch = files.scratch_dir("bam_tf_export_")
  try:
    meta = export_metadata(model, tokenizer, tasks, extra_metadata)
    meta_file = os.path.join(scratch, METADATA_FILE)
    files.write_json_atomic(meta_file, meta)
    module = ServingModule(model, tokenizer, tasks, meta, meta_file)
    tf.saved_model.save(module, staging,
                        signatures=module.serving_signatures())
    files.fsync_tree(staging)
    _move_into_place(staging, export_dir)
  finally:
    # Unfinished staging, or after an exchange the replaced export.
    files.remove(staging)
    files.remove(scratch)
  return export_dir


def export_run(model_dir: str, export_dir: str, trial: int = 0,
               tasks: Optional[Sequence[str]] = None,
               overwrite: bool = False) -> str:
  """restore_run + export_saved_model, recording where the weights came
  from."""
  recover_export_dir(export_dir)
  if files.exists(export_dir) and not overwrite:  # fail before loading
    raise ExportError(f"export dir {files.absolute(export_dir)} already "
                      "exists; refusing to overwrite an export (pass "
                      "overwrite=True / --overwrite, or choose a new dir)")
  config, model, tokenizer, bundle = restore_run(model_dir, trial)
  extra = {"source": {"model_dir": files.absolute(model_dir),
                      "trial": trial, "encoder": bundle.description,
                      "task_names": list(config.task_names)}}
  return export_saved_model(model, tokenizer, tasks, export_dir,
                            overwrite=overwrite, extra_metadata=extra)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description="Export a finished bam_tf run as a raw-text SavedModel.")
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--export_dir", required=True)
  parser.add_argument("--trial", type=int, default=0)
  parser.add_argument("--tasks", default="",
                      help="comma-separated subset of the run's tasks")
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t] or None
  try:
    path = export_run(args.model_dir, args.export_dir, args.trial, tasks,
                      args.overwrite)
  except BamError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"Exported to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
