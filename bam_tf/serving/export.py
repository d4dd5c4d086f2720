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

Versions (why): TensorFlow Serving watches a BASE folder and serves the
highest numbered subfolder, `<base>/<version>/saved_model.pb`; it loads a
new version when one appears and keeps serving the old one until then. So
an export never replaces anything: each one is a new version
(--export_version, default the next integer after the highest there),
and an existing version is refused (a server may be serving it).

Staging (why a non-numeric name): the SavedModel is written and fsynced in
`<base>/.tmp-<time>-<host>-<pid>-XXXXXXXX`, which TF Serving skips (only
names that parse as integers are versions), then renamed to
`<base>/<version>` in one step: a server polling the base sees a version
only once it is complete. On an object store (gs://), where a folder
cannot be renamed, the files are moved one by one, saved_model.pb last.
Staging folders of killed exports are deleted by the next export
(`remove_stale_staging`). Provenance (run, trial, commit, time) is in
`<version>/assets.extra/bam_export.json`, which TF Serving ignores.

Command line (--export_dir is the base):
  python -m bam_tf.serving.export --model_dir=RUN --export_dir=BASE \
      [--trial=0] [--tasks=rte,sts] [--export_version=N]
"""

import bam_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import argparse
import datetime
import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
import zlib
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_text as tf_text
from absl import logging

from bam_tf import configure
from bam_tf.common import errors
from bam_tf.common import files
from bam_tf.common.errors import BamError
from bam_tf.modeling import encoders
from bam_tf.modeling.multitask_model import head_name
from bam_tf.modeling.multitask_model import INPUT_KEYS
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.outputs import results as results_lib
from bam_tf.tasks import registry
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


def finished_trial_weights(model_dir: str, trial: int) -> str:
  """The final weights of trial `trial`, or one line naming --trial and
  the trials that did finish."""
  path = final_checkpoint_path(model_dir, trial)
  if not tf.io.gfile.exists(path + ".index"):
    done = sorted(results_lib.finished_trials(model_dir))
    raise ExportError(
        f"--trial: trial {trial} of {model_dir} has not finished ({path}"
        f".index not found); finished trials: "
        f"{', '.join(map(str, done)) or 'none'}")
  return path


def load_run_config(model_dir: str, custom_tasks: str = ""
                    ) -> configure.BamConfig:
  """Rebuilds and validates a run's config from model_dir/config.json
  (configure.finished_run_config: training-only settings cleared, the
  training data not needed, the task declarations the run's own, read from
  `custom_tasks` when given)."""
  path = os.path.join(model_dir, "config.json")
  if not files.isfile(path):
    raise ExportError(f"{path} not found; --model_dir must be a finished "
                      "run (run_classifier.py writes config.json)")
  saved = configure.read_saved_config(
      model_dir, "--model_dir must be a finished run")
  missing = configure.missing_settings(saved)
  if missing:
    raise ExportError(f"{path} lacks {missing}; was it written by another "
                      "version of bam_tf?")
  return configure.finished_run_config(saved, model_dir,
                                       custom_tasks=custom_tasks)


def restore_final(model, encoder_layer, model_dir: str, trial: int = 0):
  """Loads the final encoder and EVERY head, failing if any is missing.

  Stricter than `warm_start.init_from` (which skips what is absent): an
  export with a randomly initialised head would serve noise silently.
  """
  path = finished_trial_weights(model_dir, trial)
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


def restore_run(model_dir: str, trial: int = 0, custom_tasks: str = ""):
  """(config, model, tokenizer, bundle) of a finished run, final weights.

  The model is built without optimizer or sampling plan (serving needs
  neither); the tokenizer is the one training used. `custom_tasks`: where
  the run's task declarations are now, if they moved (load_run_config).
  """
  config = load_run_config(model_dir, custom_tasks)
  finished_trial_weights(model_dir, trial)  # before the slow encoder load
  model, tokenizer, bundle = build_run_model(config)
  restore_final(model, bundle.layer, model_dir, trial)
  return config, model, tokenizer, bundle


def build_run_model(config):
  """(model, tokenizer, bundle): a run's encoder and heads as its flags
  build them, for weights restored afterwards (--mode=eval, predict,
  export); no optimizer or sampling plan. Under a strategy's scope and the
  precision policy where the caller has them."""
  bundle, tokenizer = encoders.load_encoder_and_tokenizer(config)
  model = MultiTaskModel(bundle.layer, config.tasks,
                         regression_head=config.regression_head,
                         head_dropout=config.head_dropout)
  return model, tokenizer, bundle


# ---------------------------------------------------------------------------
# The serving module.


def is_pair_task(task: TaskSpec) -> bool:
  """Whether the task's files give a second sentence (text_b)."""
  return any(layout.text_b_col is not None for layout in task.splits.values())


def pack_rows(tokenizer, text_a: tf.Tensor,
              text_b: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """Padded model inputs; rows with an empty text_b are single sentences.

  One call of the tokenizer's graph function: its pair packing already
  makes a row whose text_b gives no wordpieces ("", " ") a single sentence,
  row by row, as training's records do; its trace is shared by every
  signature of an export.
  """
  if text_b is None:
    return tokenizer.serve_single(text_a)
  return tokenizer.serve_pair(text_a, text_b)


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
    # One graph function for the model's forward pass, traced once and
    # called by every signature (each signature tracing the model anew
    # would cost as many traces as tasks).
    forward = tf.function(lambda inputs: model(inputs, training=False))
    fns = {t.name: self._make_signature(forward, model, tokenizer, [t])
           for t in tasks}
    fns[DEFAULT_SIGNATURE] = self._make_signature(forward, model, tokenizer,
                                                  list(tasks))
    # Kept out of the object graph (they are saved as signatures): a child
    # named `signatures` would also clash with the loaded `.signatures`.
    object.__setattr__(self, "_serving_signatures", fns)

  def serving_signatures(self) -> Dict:
    """Signature name -> concrete function, for tf.saved_model.save."""
    return dict(self._serving_signatures)

  @staticmethod
  def _make_signature(forward, model, tokenizer, tasks):
    def outputs(text_a, text_b=None):
      inputs = pack_rows(tokenizer, text_a, text_b)
      inputs = {k: inputs[k] for k in INPUT_KEYS}
      # The heads do not read task_id; it is a model input for the train
      # step only.
      inputs["task_id"] = tf.zeros_like(text_a, tf.int32)
      logits = forward(inputs)
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
  names = []
  for task in tasks:
    name = task if isinstance(task, str) else task.name
    # GLUE's spellings, as --task_names takes them (RTE, STS-B).
    if name not in known and registry.canonical_name(name) in known:
      name = registry.canonical_name(name)
    if name not in known:
      raise ExportError(f"--tasks: task {name!r} is not one of the model's "
                        f"tasks {sorted(known)}")
    names.append(name)
  if len(set(names)) != len(names) or DEFAULT_SIGNATURE in names:
    raise ExportError(f"task names {names} must be distinct and not "
                      f"{DEFAULT_SIGNATURE!r}")
  return [known[n] for n in names]


# ---------------------------------------------------------------------------
# Versions of an export base (see the module docstring).

STAGING_PREFIX = ".tmp-"
PROVENANCE_DIR = "assets.extra"
# A staging folder of another host (whose process cannot be looked up from
# here) is only deleted once it is this old: an export takes minutes.
STALE_AFTER_S = 24 * 3600
_STAGING = re.compile(r"^\.tmp-(\d+)-([0-9a-f]{8})-(\d+)-[a-z0-9_]{8}$")
_ACTIVE = set()  # staging folders of exports running in this process
_VERSION = re.compile(r"^[0-9]+$")  # what TF Serving parses as a version


def versions(base: str) -> Dict[int, str]:
  """{version: path} of the numbered folders in `base` ({} if none)."""
  if not files.isdir(base):
    return {}
  return {int(name): os.path.join(base, name)
          for name in files.listdir(base) if _VERSION.match(name)}


def latest_version(base: str) -> Optional[str]:
  """The path of the newest complete version in `base` (what TF Serving
  serves by default), or None. A version without saved_model.pb (an
  object-store move that was killed) is skipped."""
  found = versions(base)
  for number in sorted(found, reverse=True):
    if files.exists(os.path.join(found[number], "saved_model.pb")):
      return found[number]
  return None


def _next_version(base: str) -> int:
  # After every numbered folder, complete or not: numbers are never reused.
  return max(versions(base), default=0) + 1


def _host_tag() -> str:
  return f"{zlib.crc32(socket.gethostname().encode('utf-8')):08x}"


def _process_gone(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except (PermissionError, OverflowError):
    return False  # another user's live process / not a pid of this host
  return False


def _stale(name: str, path: str, now: float) -> bool:
  """Whether a staging folder belongs to no running export.

  Deleting a live export's staging folder would make it fail, so: a
  folder of this host is stale when its process is gone (or, for this
  process, when no export here is using it); one of another host only
  after STALE_AFTER_S, since its process cannot be looked up from here
  (and a pid may be reused on this host: that errs on keeping it).
  """
  match = _STAGING.match(name)
  if not match:
    return False  # not ours: left alone
  started, host, pid = int(match.group(1)), match.group(2), int(
      match.group(3))
  if now - started > STALE_AFTER_S:
    return True
  if host != _host_tag():
    return False
  if pid == os.getpid():
    return path not in _ACTIVE
  return _process_gone(pid)


def remove_stale_staging(base: str) -> List[str]:
  """Deletes the staging folders of killed exports in `base` (see
  `_stale`); returns their paths."""
  if not files.isdir(base):
    return []
  now = time.time()
  removed = []
  for name in files.listdir(base):
    path = os.path.join(base, name)
    if _stale(name, path, now):
      logging.info("Removing %s (left by a killed export)", path)
      files.remove(path)
      removed.append(path)
  return removed


def _exists_error(base: str, version: int) -> ExportError:
  return ExportError(
      f"--export_version: {version} already exists in {base} (versions "
      "are never replaced: TF Serving may be serving it; choose another or "
      "delete it)")


def _check_version(base: str, version: int):
  """A requested version (0: automatic) that can be written: before any
  work."""
  if version < 0:
    raise ExportError(f"--export_version: must be >= 0, got {version}")
  if version and version in versions(base):
    raise _exists_error(base, version)


def _put(src: str, dst: str):
  """Moves a folder to a path that does not exist: one rename, or where
  folders cannot be renamed (an object store) file by file, saved_model.pb
  last (a watcher sees a model only once its variables are there)."""
  if files.is_local(dst):
    files.rename(src, dst)  # a non-empty dst is an error, never replaced
  elif files.exists(dst):
    raise FileExistsError(errno.EEXIST, "file exists", dst)
  else:
    # assets.extra on its own first: TensorFlow's ram:// filesystem lists
    # its files under `assets` too (a bare prefix match), so one pass
    # would try to move them twice.
    extra = os.path.join(src, PROVENANCE_DIR)
    if files.exists(extra):
      files.move_tree(extra, os.path.join(dst, PROVENANCE_DIR))
    files.move_tree(src, dst, last="saved_model.pb")


def _git_commit() -> Dict:
  """bam_tf's git commit (None outside a checkout) and whether the tree
  had uncommitted changes; read-only git calls, a few ms."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))

  def git(*args):
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", root, *args],
        capture_output=True, text=True, timeout=20, check=True).stdout

  try:
    commit = git("rev-parse", "HEAD").strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no",
                     "--", "bam_tf").strip())
  except (OSError, subprocess.SubprocessError):
    return {"bam_tf_commit": None}
  return {"bam_tf_commit": commit, "bam_tf_uncommitted_changes": dirty}


def _provenance(version: int, extra: Optional[Dict]) -> Dict:
  record = {
      "format": EXPORT_FORMAT, "version": version,
      "exported_at": datetime.datetime.now(datetime.timezone.utc)
                     .isoformat(timespec="seconds"),
      "host": socket.gethostname(),
      "tensorflow": tf.__version__,
      "tensorflow_text": getattr(tf_text, "__version__", None),
      **_git_commit()}
  record.update(extra or {})
  return record


def export_saved_model(model, tokenizer, tasks, export_base: str,
                       version: int = 0,
                       extra_metadata: Optional[Dict] = None,
                       provenance: Optional[Dict] = None) -> str:
  """Writes the SavedModel as a new version of export_base; returns the
  version's absolute path, `<export_base>/<version>`.

  version 0 takes the next number after the highest in the base (1 in an
  empty one); an existing version is refused (ExportError). Written in a
  staging folder of the base and renamed into place (module docstring).
  `tasks`: TaskSpecs or names, a subset of model.tasks (default all).
  `extra_metadata` goes into assets/bam_export.json (and `metadata()`),
  `provenance` into assets.extra/bam_export.json.
  """
  tasks = _check_tasks(model, tasks)
  base = files.absolute(export_base)
  _check_version(base, version)
  remove_stale_staging(base)
  staging = files.make_temp_dir(
      base, f"{STAGING_PREFIX}{int(time.time())}-{_host_tag()}-"
      f"{os.getpid()}-")
  _ACTIVE.add(staging)
  scratch = files.scratch_dir("bam_tf_export_")
  try:
    meta = export_metadata(model, tokenizer, tasks, extra_metadata)
    meta_file = os.path.join(scratch, METADATA_FILE)
    files.write_json_atomic(meta_file, meta)
    module = ServingModule(model, tokenizer, tasks, meta, meta_file)
    tf.saved_model.save(module, staging,
                        signatures=module.serving_signatures())
    # Several tries only for an automatic number another export took
    # meanwhile; an explicit one is that version or nothing.
    for _ in range(1 if version else 10):
      number = version or _next_version(base)
      files.write_json_atomic(
          os.path.join(staging, PROVENANCE_DIR, METADATA_FILE),
          _provenance(number, provenance))
      files.fsync_tree(staging)
      target = os.path.join(base, str(number))
      try:
        _put(staging, target)
        break
      except OSError as e:
        taken = isinstance(e, FileExistsError) or e.errno in (
            errno.EEXIST, errno.ENOTEMPTY)
        if not taken:
          raise ExportError(f"could not move the export into {target} "
                            f"({e})") from None
        if version:
          raise _exists_error(base, version) from None
    else:
      raise ExportError(f"other exports keep taking the next version in "
                        f"{base}; pass --export_version")
    files.fsync_dir(base)
  finally:
    _ACTIVE.discard(staging)
    files.remove(staging)  # unfinished, or left empty by a move_tree
    files.remove(scratch)
  return target


def check_export_base(base: str):
  """A base TF Serving can watch, checked before any work: a folder (or one
  that can be made), and not a version itself or inside one (versions would
  nest, `1/1`, and the server would never see them)."""
  problem = files.folder_problem(base)
  if problem:
    raise ExportError(f"--export_dir: {problem}")
  path = base
  while True:
    if files.exists(os.path.join(path, "saved_model.pb")):
      raise ExportError(
          f"--export_dir: {base} is {'' if path == base else 'inside '}"
          f"the SavedModel {path}; give the base that holds the numbered "
          f"versions (e.g. {os.path.dirname(path)})")
    parent = os.path.dirname(path)
    if parent == path:
      return
    path = parent


def export_run(model_dir: str, export_base: str, trial: int = 0,
               tasks: Optional[Sequence[str]] = None,
               version: int = 0, custom_tasks: str = "") -> str:
  """restore_run + export_saved_model, recording where the weights came
  from; returns the new version's path."""
  if trial < 0:
    raise ExportError(f"--trial: must be >= 0, got {trial}")
  base = files.absolute(export_base)
  check_export_base(base)  # before the slow loading
  # A SavedModel base never holds a config.json: this is a run's folder,
  # where numbered versions would sit among trial_N/ and its records.
  if files.resolve(base) == files.resolve(model_dir) or files.isfile(
      os.path.join(base, "config.json")):
    raise ExportError(
        f"--export_dir: {export_base} is a run's folder (it holds "
        "config.json); export into a base of its own, e.g. "
        f"{os.path.join(model_dir, 'export')} (the default)")
  _check_version(base, version)
  config, model, tokenizer, bundle = restore_run(model_dir, trial,
                                                 custom_tasks)
  extra = {"source": {"model_dir": files.absolute(model_dir),
                      "trial": trial, "encoder": bundle.description,
                      "task_names": list(config.task_names)}}
  return export_saved_model(
      model, tokenizer, tasks, base, version=version, extra_metadata=extra,
      provenance={"model_dir": files.absolute(model_dir), "trial": trial})


def done_line(path: str) -> str:
  """What both command lines print at the end."""
  return f"exported SavedModel version {os.path.basename(path)} to {path}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description="Export a finished bam_tf run as a new version of a "
                  "TF Serving model base (a raw-text SavedModel).")
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--export_dir", required=True,
                      help="the base: versions are <export_dir>/<N>")
  parser.add_argument("--trial", type=int, default=0)
  parser.add_argument("--tasks", default="",
                      help="comma-separated subset of the run's tasks")
  parser.add_argument("--export_version", type=int, default=0,
                      help="N of <export_dir>/<N>; 0 = the next after the "
                           "highest there. Never replaces one.")
  parser.add_argument("--custom_tasks", default="",
                      help="where the run's user task declarations are now, "
                           "if their file moved since training")
  args = parser.parse_args(argv)
  tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or None

  def work() -> int:
    if args.tasks.strip() and not tasks:  # "," exported every task
      raise ExportError(f"--tasks: {args.tasks!r} names no task (a "
                        "comma-separated subset of the run's tasks; leave "
                        "it out for all)")
    print(done_line(export_run(args.model_dir, args.export_dir, args.trial,
                               tasks, args.export_version, args.custom_tasks)))
    return 0
  return errors.run_command(work)


if __name__ == "__main__":
  sys.exit(main())
