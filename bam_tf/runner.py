"""Orchestrates a run: data -> encoder -> model -> training -> evaluation.

`run(config)` is what `run_classifier.py` calls for every mode. Each trial
lives in model_dir/trial_<t>/ (checkpoints, TensorBoard, predictions); the
run-level results.json / results.txt collect all trials.
"""

import dataclasses
import os
import time
from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from bam_tf import configure
from bam_tf.common import files
from bam_tf.common import lock
from bam_tf.common import replicas
from bam_tf.data import features as features_lib
from bam_tf.data import inspect as inspect_lib
from bam_tf.data import pipeline
from bam_tf.data import sampling
from bam_tf.data import train_pool
from bam_tf.distill import comparison
from bam_tf.distill import recipe
from bam_tf.distill import student
from bam_tf.distill import teacher_outputs
from bam_tf.evaluation import evaluator
from bam_tf.evaluation import metrics
from bam_tf.modeling import encoders
from bam_tf.modeling.multitask_model import MultiTaskModel
from bam_tf.modeling.teacher_annealing import DistillSchedule
from bam_tf.outputs import glue_submission
from bam_tf.outputs import results as results_lib
from bam_tf.outputs import test_predictions
from bam_tf.tasks import glue
from bam_tf.tasks import registry
from bam_tf.tasks import sources
from bam_tf.training import callbacks as callbacks_lib
from bam_tf.training import distribution
from bam_tf.training import optimization
from bam_tf.training import rng_state
from bam_tf.training import trainer
from bam_tf.training import warm_start


@dataclasses.dataclass
class PreparedData:
  """Featurised TFRecords of every (task, split) a run needs."""
  records: Dict[str, Dict[str, str]]       # task -> split -> tfrecord path
  manifests: Dict[str, Dict[str, Dict]]    # task -> split -> manifest

  def train_sizes(self, tasks) -> Dict[str, int]:
    return {t.name: int(self.manifests[t.name]["train"]["count"])
            for t in tasks}


def featurize(config, tokenizer, splits_fn) -> PreparedData:
  """Reads and featurises the splits `splits_fn(task)` of every task."""
  records, manifests = {}, {}
  source = sources.for_run(config)
  for task_id, task in enumerate(config.tasks):
    records[task.name], manifests[task.name] = {}, {}
    for split in splits_fn(task):
      examples = source.read(
          task, split, max_rows=config.debug_max_rows,
          add_swapped=(split == "train" and config.double_unordered))
      path, manifest = features_lib.build_or_load_features(
          examples, task, task_id, split, source.data_file(task, split),
          tokenizer, config.cache_dir)
      records[task.name][split] = path
      manifests[task.name][split] = manifest
  return PreparedData(records, manifests)


def plan_training(config, data: PreparedData):
  """The sampling plan and the number of steps to train; announces the
  recipe (copies, loss weights, steps) in the run's first lines."""
  sizes = data.train_sizes(config.tasks)
  plan = sampling.sampling_plan(sizes, config.task_sampling,
                                config.sampling_exponent,
                                recipe_scheme=config.recipe_scheme)
  # A batch larger than a pass would be mostly padding rows (the pool is
  # padded to a multiple of the batch, as the original pads), and a
  # mistyped one (1e12) would allocate them.
  if config.train_batch_size > plan.examples_per_epoch:
    raise configure.ConfigError(
        f"--train_batch_size: {config.train_batch_size:,} is more than the "
        f"{plan.examples_per_epoch:,} training examples of one pass over "
        f"{', '.join(t.name for t in config.tasks)} (each batch would be "
        f"mostly padding); use at most {plan.examples_per_epoch:,}")
  recipe_steps = plan.train_steps(config.train_batch_size,
                                  config.num_train_epochs)
  total_steps = recipe_steps
  if config.max_train_steps:
    total_steps = min(recipe_steps, config.max_train_steps)
  logging.info("%s", describe_recipe(config, plan, recipe_steps, total_steps))
  return plan, total_steps


def describe_recipe(config, plan, recipe_steps: int, total_steps: int) -> str:
  """What the run will train, in words: scheme, per-task copies and loss
  weights, and the step count with how it is made up."""
  batch = config.train_batch_size
  per_pass = plan.examples_per_epoch
  padding = train_pool.padding_count(per_pass, batch)
  source = {
      "multiples": "dataset multiples and loss weights from the original's "
                   "GLUE size table",
      "loss_weights": ("one task, no dataset multiples" if len(config.tasks)
                       == 1 else "no dataset multiples, size loss weights"),
      "proportional": f"a sampler with p ~ |D|^{config.sampling_exponent:g}, "
                      f"steps of the original's {config.recipe_scheme} "
                      "recipe"}[plan.scheme]
  lines = [
      f"Recipe: --task_sampling={plan.scheme} ({source}); {per_pass:,} "
      f"examples per pass + {padding:,} padding = "
      f"{plan.steps_per_epoch(batch):,} batches of {batch} x "
      f"{config.num_train_epochs:g} epochs = {recipe_steps:,} steps",
      sampling.describe(plan)]
  if total_steps < recipe_steps:
    lines.append(f"--max_train_steps={config.max_train_steps}: this run "
                 f"stops after {total_steps:,} of the recipe's "
                 f"{recipe_steps:,} steps")
  return "\n".join(lines)


def train_streams(config, plan, sources, seed: int, folder: str):
  """Writes the trial's shuffled pool(s) to `folder` and returns
  (record streams, sampling probabilities or None, pool paths).

  A pool scheme gets one pool of every task with its copies and padding
  (the original's train file); 'proportional' gets one shuffled pool per
  task, mixed by the sampler. Students' records carry teacher outputs
  (`teacher_probs`, `teacher_value`; zeros for tasks without a teacher).
  """
  tasks = config.tasks
  width = max(t.num_labels for t in tasks) if config.distill else 0
  if plan.uses_pool:
    path = train_pool.pool_path(folder)
    train_pool.write_pool(sources, [plan.multiples[t.name] for t in tasks],
                          config.train_batch_size, seed, path,
                          pad_task_id=len(tasks))
    return [train_pool.pool_dataset(path, seed, width)], None, [path]
  streams, paths = [], []
  for i, (task, source) in enumerate(zip(tasks, sources)):
    task_seed = seed + 7919 * i
    path = train_pool.pool_path(folder, task.name)
    train_pool.write_pool([source], [1], 1, task_seed, path,
                          pad_task_id=len(tasks))
    streams.append(train_pool.pool_dataset(path, task_seed, width))
    paths.append(path)
  return streams, [plan.probabilities[t.name] for t in tasks], paths


def build_model(config, bundle, plan, total_steps):
  """Model and optimizer; call under the strategy's scope and the precision
  policy (run_trial does), like the encoder in `bundle`."""
  schedule = None
  if config.distill:
    schedule = DistillSchedule(config.distill_schedule, total_steps,
                               config.distill_weight)
  model = MultiTaskModel(
      bundle.layer, config.tasks, loss_weights=plan.loss_weights,
      regression_head=config.regression_head,
      loss_divisor=(float(config.train_batch_size)
                    if config.loss_reduction == "mean" else 1.0),
      head_dropout=config.head_dropout, distill_schedule=schedule,
      teacher_tasks=[t.name for t in config.tasks
                     if config.teacher_dirs.get(t.name)],
      length_sorted_part_size=config.train_part_size)
  depth_fn = lambda name: encoders.variable_depth(name, bundle.num_layers)
  optimizer = optimization.create_optimizer(
      learning_rate=config.learning_rate, num_train_steps=total_steps,
      warmup_steps=optimization.warmup_steps_from_proportion(
          total_steps, config.warmup_proportion),
      weight_decay_rate=config.weight_decay_rate,
      layerwise_lr_decay=config.layerwise_lr_decay,
      num_layers=bundle.num_layers, depth_fn=depth_fn,
      clip_norm=config.clip_norm,
      bias_correction=config.adam_bias_correction)
  model.compile(optimizer=distribution.wrap_optimizer(optimizer, config),
                jit_compile=config.jit_compile)
  return model


def predict(config, model, data: PreparedData, task,
            split: str, strategy=None) -> Dict[str, np.ndarray]:
  """Every example of the split exactly once, in example-id order.

  Inference batches are grouped by length (dynamic padding: predictions do
  not depend on the batching, and the evaluator restores the order), so
  little of a batch is padding. Only where replicas need equal shares or a
  TPU one shape is the last batch completed with padding examples, which
  are dropped. Such a batch is computed whole, so it is never larger than
  the split rounded up to the replicas (--eval_batch_size=100000 on 50 rows
  would compute 100000).
  """
  strategy = strategy or tf.distribute.get_strategy()
  equal_batches = (config.static_shapes or
                   strategy.num_replicas_in_sync > 1)
  batch_size = config.eval_batch_size
  manifest = data.manifests.get(task.name, {}).get(split)
  if manifest:
    n = strategy.num_replicas_in_sync
    batch_size = min(batch_size, max(1, -(-int(manifest["count"]) // n)) * n)
  ds = pipeline.eval_dataset(data.records[task.name][split], batch_size,
                             config.use_dynamic_padding,
                             config.max_seq_length,
                             pad_task_id=(len(config.tasks) if equal_batches
                                          else None),
                             length_bucketing=config.use_dynamic_padding)
  progress = evaluator.Progress(f"{task.name} {split}",
                                manifest["count"]) if manifest else None
  return evaluator.predict_task(model, task, ds, strategy, progress)


def evaluate(config, model, data: PreparedData, trial_dir: str,
             strategy=None, write: bool = True):
  """Scores every task's dev split; keeps per-example predictions.

  Returns (metrics per task, predictions per task).
  """
  per_task, all_preds = {}, {}
  for task in config.tasks:
    preds = predict(config, model, data, task, task.dev_split, strategy)
    per_task[task.name] = evaluator.score(task, preds)
    all_preds[task.name] = preds
    if write:
      save_predictions(os.path.join(trial_dir, "predictions",
                                    f"{task.name}_{task.dev_split}.npz"),
                       preds)
  return per_task, all_preds


def write_teacher_outputs(config, model, data: PreparedData, trial: int,
                          dev_predictions: Dict[str, Dict], strategy=None,
                          write: bool = True):
  """Predictions on every featurised split, for students to learn from."""
  out_dir = teacher_outputs.teacher_outputs_dir(config.model_dir, trial)
  for task in config.tasks:
    for split, manifest in data.manifests[task.name].items():
      preds = (dev_predictions[task.name] if split == task.dev_split
               else predict(config, model, data, task, split, strategy))
      if not write:  # other workers take part in predicting only
        continue
      parts = manifest["key_parts"]
      extra = {k: parts.get(k) for k in (
          "max_seq_length", "vocab_sha256", "do_lower_case", "data_sha256",
          "examples_sha256")}
      extra.update(model_dir=files.absolute(config.model_dir), trial=trial)
      teacher_outputs.write_teacher_outputs(out_dir, task, split, preds,
                                            extra)
  if write:
    logging.info("Wrote teacher outputs to %s", out_dir)


def save_predictions(path: str, preds: Dict[str, np.ndarray]):
  import io  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  np.savez(buf, **preds)
  files.write_bytes_atomic(path, buf.getvalue())


def run_trial(config, trial: int, bundle, data: PreparedData, plan,
              total_steps: int, student_paths=None, strategy=None) -> Dict:
  """Trains and evaluates one trial. `bundle` (the encoder) must have been
  built under `strategy.scope()` and the precision policy, as
  train_and_evaluate does."""
  strategy = strategy or tf.distribute.get_strategy()
  chief = replicas.is_chief(strategy)
  seed = config.trial_seed(trial)
  trial_dir = config.trial_dir(trial)
  files.makedirs(trial_dir)
  with strategy.scope(), distribution.precision_policy(config):
    model = build_model(config, bundle, plan, total_steps)
  if config.init_from:
    warm_start.init_from(model, bundle.layer, config.init_from,
                         config.teacher_trial)
  sources = [student_paths.get(t.name, data.records[t.name]["train"])
             for t in config.tasks]
  # Other workers of a multi-worker run write the same pool (same seed) to
  # a folder of their own.
  pool_dir = trial_dir if chief else files.scratch_dir("bam_tf_pool_")
  streams, probabilities, pools = train_streams(config, plan, sources, seed,
                                                pool_dir)
  # Global batches with drop_remainder (static batch size); Keras splits
  # each across the replicas.
  train_ds = pipeline.train_dataset(
      streams, probabilities, config.train_batch_size, seed,
      config.use_dynamic_padding, config.max_seq_length,
      config.use_length_bucketing)
  train_ds = replicas.for_strategy(train_ds, strategy)
  lr = model.optimizer.learning_rate
  logging.info("Trial %d (seed %d): %d steps, batch %d over %d replica(s), "
               "lr %g", trial, seed, total_steps, config.train_batch_size,
               strategy.num_replicas_in_sync, config.learning_rate)
  validation = None
  if config.eval_every_steps:  # tensorboard/validation/ beside the training
    validation = callbacks_lib.ValidationLog(total_steps, os.path.join(
        trial_dir, "tensorboard", "validation") if chief else "")

  def evaluate_at(step):
    per_task, _ = evaluate(config, model, data, trial_dir, strategy,
                           write=False)
    validation.record(step, dict(
        per_task, average=metrics.averages(config.tasks, per_task)))

  try:
    fitted = trainer.fit(
        model, train_ds, total_steps, trial_dir, config,
        lr_fn=lambda step: lr(step), chief=chief,
        evaluate_fn=evaluate_at if validation else None,
        settings=train_settings(config, strategy))
  finally:
    train_pool.remove_pools(pools)
    if not chief:
      files.remove(pool_dir)
  t0 = time.time()
  per_task, dev_predictions = evaluate(config, model, data, trial_dir,
                                       strategy, write=chief)
  eval_seconds = time.time() - t0
  if trial in config.teacher_output_trial_ids:
    write_teacher_outputs(config, model, data, trial, dev_predictions,
                          strategy, write=chief)
  result = {"trial": trial, "seed": seed, "train_steps": total_steps,
            "train_settings": fitted.settings,
            "train_seconds": round(fitted.train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1), "tasks": per_task,
            "averages": metrics.averages(config.tasks, per_task)}
  if validation:  # the last point of the curves: this evaluation
    validation.record(total_steps, dict(per_task, average=result["averages"]))
    validation.close()
  if chief:
    warm_start.save_final(model, bundle.layer, trial_dir)
  return result


def train_settings(config, strategy) -> Dict:
  """The rerun-safe settings that move a trial's numbers (float rounding,
  dropout draws): they may change when a run resumes or adds trials, so
  each trial records its own (results.json's config is the latest
  command's)."""
  return {"strategy": config.strategy,
          "replicas": strategy.num_replicas_in_sync,
          "length_sorted_part_size": config.train_part_size,
          "jit_compile": config.jit_compile,
          "deterministic": config.deterministic}


def _splits_to_featurize(config):
  """Train and dev always; every other split whose file exists when this
  run writes teacher outputs (students and test predictions need them)."""
  writes_outputs = any(t < config.num_trials
                       for t in config.teacher_output_trial_ids)

  source = sources.for_run(config)

  def splits(task):
    wanted = ["train", task.dev_split]
    if writes_outputs:
      wanted += [s for s in task.splits
                 if s not in wanted and source.has_split(task, s)]
    return wanted
  return splits


def run_fingerprint(config, bundle, data: PreparedData, targets) -> Dict:
  """What a run trains on beyond its flags: the digests of each task's
  train and dev data (from the feature manifests), of a student's teacher
  targets (`targets`, by task), and the vocabulary, casing and length it is
  read with. Flags are compared through config.json; files can change under
  the same flags (a teacher trained again in the same folder)."""
  splits = {}
  source = sources.for_run(config)
  for task in config.tasks:
    splits[task.name] = {}
    for split in ("train", task.dev_split):
      parts = data.manifests[task.name][split]["key_parts"]
      splits[task.name][split] = {
          "file": source.describe(task, split),
          "data_sha256": parts["data_sha256"],
          "examples_sha256": parts["examples_sha256"]}
  parts = data.manifests[config.tasks[0].name]["train"]["key_parts"]
  fingerprint = {"data": splits, "teachers": teachers_fingerprint(targets),
                 "tasks": registry.task_declarations(config.tasks),
                 "encoder": {"description": bundle.description,
                             "hub_path": bundle.hub_path,
                             "vocab_file": bundle.vocab_file,
                             "vocab_sha256": parts["vocab_sha256"],
                             "do_lower_case": parts["do_lower_case"],
                             "max_seq_length": parts["max_seq_length"]}}
  if config.init_from:
    fingerprint["init_from"] = init_from_fingerprint(config)
  return fingerprint


def init_from_fingerprint(config) -> Dict:
  """The --init_from weights every trial starts from: the source trained
  again in its folder changes them under the same flag. The digest is the
  checkpoint's index file's: TensorFlow's tensor bundle index holds the
  crc32c of every tensor's bytes, so it changes with the weights, and it is
  kilobytes where the weights are up to 1.3 GB."""
  index = configure.final_weights_index(config.init_from, config.teacher_trial)
  return {"final_weights": index, "index_sha256": files.file_sha256(index)}


def teachers_fingerprint(targets) -> Dict:
  """By task: the teacher files a student learns from and the digest of
  their targets."""
  return {name: {"sources": list(target.sources),
                 "targets_sha256": target.sha256()}
          for name, target in sorted(targets.items())}


def fingerprint_change(saved: Dict, current: Dict, model_dir: str) -> str:
  """The first thing `current` changes from a model_dir's recorded
  fingerprint, in words naming the file or setting ('' if none). Paths and
  the encoder's description are not compared (caches and checkouts move);
  the encoder itself is a flag (config.json)."""
  since = f"since this run started training in {model_dir}"
  change = registry.declaration_change(saved.get("tasks", {}),
                                       current.get("tasks", {}))
  if change:
    return f"--custom_tasks: {change} {since}"
  for task, splits in sorted(current["data"].items()):
    for split, now in sorted(splits.items()):
      was = saved.get("data", {}).get(task, {}).get(split)
      if not was or was.get("examples_sha256") == now["examples_sha256"]:
        continue  # the same examples (e.g. from TSV files, then TFDS)
      flag = ("--tfds_data_dir" if now["file"].startswith("tfds:")
              else "--data_dir")
      if None not in (was.get("data_sha256"), now["data_sha256"]) and (
          was["data_sha256"] != now["data_sha256"]):
        return (f"{flag}: {now['file']} changed {since} (its sha256 was "
                f"{str(was.get('data_sha256'))[:12]}..., now "
                f"{str(now['data_sha256'])[:12]}...)")
      return f"{flag}: the examples read from {now['file']} changed {since}"
  for task, now in sorted(current.get("teachers", {}).items()):
    was = saved.get("teachers", {}).get(task)
    if was and was["targets_sha256"] != now["targets_sha256"]:
      return (f"--teachers: the outputs of {task}'s teacher "
              f"({', '.join(now['sources'])}) changed {since}")
  was, now = saved.get("init_from"), current.get("init_from")
  if was and now and was["index_sha256"] != now["index_sha256"]:
    return (f"--init_from: the final weights {now['final_weights']} changed "
            f"{since} (their index's sha256 was "
            f"{was['index_sha256'][:12]}..., now "
            f"{now['index_sha256'][:12]}...)")
  was, now = saved.get("encoder", {}), current["encoder"]
  if was.get("vocab_sha256", now["vocab_sha256"]) != now["vocab_sha256"]:
    return (f"--vocab_file: the vocabulary {now['vocab_file']} changed "
            f"{since} (its sha256 was {str(was['vocab_sha256'])[:12]}..., "
            f"now {now['vocab_sha256'][:12]}...)")
  for key in ("do_lower_case", "max_seq_length"):
    if was.get(key, now[key]) != now[key]:
      return f"--{key}: {was[key]} {since}, {now[key]} now"
  return ""


def check_model_dir_apart(config):
  """Refuses a model_dir that is, contains or lies inside a run this one
  reads (a teacher, --init_from): writing there mixes the two runs, and
  --overwrite would delete what this run is about to read."""
  mine = files.resolve(config.model_dir)
  sources = [("--teachers", d) for dirs in config.teacher_dirs.values()
             for d in dirs]
  if config.init_from:
    sources.append(("--init_from", config.init_from))
  for flag, source in sources:
    other = files.resolve(source)
    if mine == other:
      relation = "is the same folder as"
    elif files.lies_inside(mine, other):
      relation = "lies inside"
    elif files.lies_inside(other, mine):
      relation = "contains"
    else:
      continue
    raise configure.ConfigError(
        f"--model_dir and {flag}: {config.model_dir} {relation} {source}, "
        f"the run {flag} reads from (writing there would mix the two, and "
        "--overwrite delete it); use another --model_dir")


def claim_model_dir(config, fingerprint=None):
  """Makes model_dir this run's; returns the lock, to release when the run
  ends (the kernel releases it if the process dies).

  First the lock (lock.FolderInUseError while another run holds it),
  before anything is written. Then runs are never mixed: a model_dir written
  with another configuration, or trained on data (`fingerprint`, see
  run_fingerprint) that changed since, is an error unless --overwrite
  (which clears it, keeping the lock).
  """
  model_dir = config.model_dir
  dir_lock = lock.lock_dir(model_dir)
  try:
    path = os.path.join(model_dir, "config.json")
    fingerprint_path = os.path.join(model_dir, results_lib.FINGERPRINT_JSON)
    reason, saved = "", None
    # Read again under the lock (configure.check_paths read it before, to
    # fail before the lock is taken): another run may have written it since.
    try:
      saved = configure.read_saved_config(
          model_dir, "--overwrite deletes the run in --model_dir, or use "
          "another --model_dir")
      diff = (configure.config_differences(saved, config)
              if saved is not None else [])
    except configure.ConfigError:
      if not config.overwrite:
        raise
      diff = ["config.json (unreadable)"]
    if diff and not config.overwrite:
      raise configure.ConfigError(
          f"--model_dir: {model_dir} holds a run with another "
          f"configuration (differs in: {', '.join(diff)}); use another "
          "--model_dir, or --overwrite to delete it")
    if diff:
      configure.check_overwritable(model_dir, saved)
      reason = f"differs in: {', '.join(diff)}"
    if fingerprint and not reason and files.exists(fingerprint_path):
      reason = fingerprint_change(files.read_json(fingerprint_path),
                                  fingerprint, model_dir)
      if reason and not config.overwrite:
        raise configure.ConfigError(f"{reason}; use --overwrite to start "
                                    "over, or another --model_dir")
    if reason:
      logging.warning("--overwrite: deleting %s (%s)", model_dir, reason)
      lock.clear_folder(model_dir)
    elif fingerprint and files.exists(path) and not files.exists(
        fingerprint_path):
      logging.info("%s has no %s (written before runs recorded their data); "
                   "recording this run's", model_dir,
                   results_lib.FINGERPRINT_JSON)
    # The fingerprint first: a config.json without one is an older run's.
    if fingerprint and not files.exists(fingerprint_path):
      files.write_json_atomic(fingerprint_path, fingerprint)
    configure.save_config(config, path)
  except BaseException:
    dir_lock.release()
    raise
  return dir_lock


def make_strategy(config, strategy=None):
  """The run's strategy (created before other TensorFlow work: multi-worker
  collectives must be configured first), its batch sizes checked."""
  if strategy is None:
    strategy = distribution.make_strategy(config)
    # Once per process: in-process teachers run on the student's strategy.
    logging.info("%s", distribution.describe_devices(config, strategy))
  distribution.check_batch_sizes(config, strategy.num_replicas_in_sync)
  return strategy


def train_and_evaluate(config, strategy=None) -> Dict:
  """`strategy`: an already created one (tests); default from --strategy.

  The chief holds model_dir's lock from its claim to the end of the run;
  other workers of a multi-worker run write nothing there.
  """
  check_model_dir_apart(config)  # before a recipe trains teachers, too
  strategy = make_strategy(config, strategy)
  chief = replicas.is_chief(strategy)
  rng_state.use_checkpointable_dropout()
  if config.distill:
    # A recipe's teacher stages come first, on the same strategy.
    recipe.ensure_teachers(config, lambda args: train_and_evaluate(
        configure.config_from_args(args), strategy),
                           configure.run_differences)
  # Built where the trials train it (the strategy's scope, the precision
  # policy), so the first trial can use this very encoder: a pretrained one
  # is loaded once per run, not twice (BERT-Large: 1.3 GB, tens of seconds).
  with strategy.scope(), distribution.precision_policy(config):
    bundle, tokenizer = encoders.load_encoder_and_tokenizer(config)
  data = featurize(config, tokenizer, _splits_to_featurize(config))
  # Teachers are validated before anything is written to model_dir.
  targets = student.load_targets(config, data) if config.distill else {}
  if config.init_from:  # a mismatched source fails here, not after the claim
    warm_start.check_fits(bundle.layer, config.init_from,
                          config.teacher_trial)
  # The recipe is checked (a batch larger than the pass) before the claim.
  plan, total_steps = plan_training(config, data)
  dir_lock = None
  if chief:
    dir_lock = claim_model_dir(config, run_fingerprint(config, bundle, data,
                                                       targets))
  try:
    if chief:  # what a run killed after results.json left undone
      results_lib.complete_outputs(config.model_dir)
    student_paths = student.join_records(config, data, targets)
    # Each trial starts from freshly loaded pretrained weights: the one
    # loaded above serves the first trial that trains. A debug encoder is
    # built again after each trial's seed, which draws its weights.
    unused = bundle if bundle.hub_path else None
    del bundle
    done = results_lib.finished_trials(config.model_dir)
    for trial in range(config.num_trials):
      if trial in done and trial not in config.retrain_trial_ids:
        logging.info("Trial %d already finished; skipping", trial)
        continue
      if trial in done:
        logging.info("Trial %d: --retrain_trials; training it again with "
                     "seed %d (its record in results.json is replaced)",
                     trial, config.trial_seed(trial))
      # Seed before building: the debug encoder and the heads draw their
      # initial weights from the global seed.
      tf_keras.utils.set_random_seed(config.trial_seed(trial))
      # The encoder's variables are created here: under the strategy's
      # scope and the --mixed_precision policy.
      with strategy.scope(), distribution.precision_policy(config):
        if unused is not None:
          bundle, unused = unused, None
        else:
          bundle = encoders.build_encoder(config)
        rng_state.seed_encoder_dropout(bundle.layer, config.trial_seed(trial))
      result = run_trial(config, trial, bundle, data, plan, total_steps,
                         student_paths, strategy)
      if chief:
        text = results_lib.record_trial(
            config.model_dir, config.to_json_dict(), result,
            {t.name: t.metric for t in config.tasks})
        print(text, flush=True)
    results = results_lib.load(config.model_dir)
    if chief and config.distill:
      dev_key_parts = {t.name: data.manifests[t.name][t.dev_split]
                       ["key_parts"] for t in config.tasks}
      rows = comparison.compare(config, dev_key_parts, results["summary"])
      print(comparison.write(config.model_dir, rows), flush=True)
    return results
  finally:
    if dir_lock:
      dir_lock.release()


EVAL_DIR = "eval"


def restore_checkpoint(model, path: str, model_dir: str):
  """The model's weights from a training checkpoint of its run (optimizer
  state and dropout streams are left out); one line if they do not fit."""
  status = tf.train.Checkpoint(model=model).read(path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise configure.ConfigError(
        f"--checkpoint: {path} does not match the model built from "
        f"{model_dir}/config.json ({str(e).splitlines()[0]})") from None
  status.expect_partial()


def _check_dev_data_unchanged(config, data: PreparedData):
  """Warns where a dev split's examples differ from those the run was
  trained and evaluated with (its data fingerprint): metrics then differ
  from results.json's for that reason alone."""
  fingerprint = results_lib.read_fingerprint(config.model_dir)
  if fingerprint is None:
    return
  saved = fingerprint.get("data", {})
  for task in config.tasks:
    was = saved.get(task.name, {}).get(task.dev_split, {})
    now = data.manifests[task.name][task.dev_split]["key_parts"]
    if was.get("examples_sha256", now["examples_sha256"]) != (
        now["examples_sha256"]):
      logging.warning("%s %s: these examples differ from the ones %s was "
                      "evaluated on after training (%s)", task.name,
                      task.dev_split, config.model_dir, was.get("file"))


def evaluate_run(config) -> Dict:
  """--mode=eval: trial --trial of a finished run on every task's dev
  split, without training, from its final weights or from --checkpoint
  (one the run saved). Built and evaluated as the end of training does
  (precision policy, the run's --eval_batch_size unless another is given),
  so on the same --strategy the final weights give results.json's metrics
  exactly.

  Writes results.json, results.txt (the run's layout, one trial) and
  predictions/<task>_<dev>.npz in model_dir/eval/trial_<t>/<final|ckpt-N>/,
  never touching the run's own records, and prints the table. Returns the
  results.json content.
  """
  from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
  run_config = configure.eval_run_config(config)
  checkpoint = configure.eval_checkpoint(config)
  trial = config.trial
  name = os.path.basename(checkpoint) if checkpoint else "final"
  step = (int(name[len("ckpt-"):]) if checkpoint else
          results_lib.finished_trials(config.model_dir).get(trial, {}).get(
              "train_steps"))
  strategy = make_strategy(run_config)
  chief = replicas.is_chief(strategy)
  rng_state.use_checkpointable_dropout()  # the layers training built
  tf_keras.utils.set_random_seed(run_config.trial_seed(trial))
  with strategy.scope(), distribution.precision_policy(run_config):
    model, tokenizer, bundle = export.build_run_model(run_config)
  if checkpoint:
    restore_checkpoint(model, checkpoint, config.model_dir)
  else:
    export.restore_final(model, bundle.layer, config.model_dir, trial)
  logging.info("Evaluating trial %d of %s: %s weights%s", trial,
               config.model_dir, name, f" (step {step})" if step else "")
  data = featurize(run_config, tokenizer, lambda task: [task.dev_split])
  _check_dev_data_unchanged(run_config, data)
  t0 = time.time()
  per_task, predictions = evaluate(run_config, model, data, "", strategy,
                                   write=False)
  record = {"trial": trial, "seed": run_config.trial_seed(trial),
            "train_steps": step, "eval_seconds": round(time.time() - t0, 1),
            "tasks": per_task,
            "averages": metrics.averages(run_config.tasks, per_task)}
  if not chief:  # other workers take part in predicting only
    return {"trials": [record]}
  out_dir = os.path.join(config.model_dir, EVAL_DIR, f"trial_{trial}", name)
  for task in run_config.tasks:
    save_predictions(os.path.join(out_dir, "predictions",
                                  f"{task.name}_{task.dev_split}.npz"),
                     predictions[task.name])
  weights = {"name": name, "step": step,
             "path": checkpoint or export.final_checkpoint_path(
                 config.model_dir, trial)}
  text = results_lib.record_evaluation(
      out_dir, run_config.to_json_dict(), record,
      {t.name: t.metric for t in run_config.tasks}, weights)
  print(text, flush=True)
  print(f"wrote {out_dir}", flush=True)
  return results_lib.load(out_dir)


def predict_test_sets(config) -> Dict[str, int]:
  """--mode=predict: every task's test-split predictions as TSV (ids,
  labels, probabilities) and, for GLUE tasks, the leaderboard files, from a
  finished run's trial."""
  from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
  run_config, model, tokenizer, _ = export.restore_run(
      config.model_dir, config.trial, config.custom_tasks)
  # The run's own test files unless flags name others (as --mode=eval).
  for name, value in configure.given_data(
      config, run_config.to_json_dict()).items():
    setattr(run_config, name, value)
  run_config.eval_batch_size = config.eval_batch_size
  splits_of = test_predictions.prediction_splits
  if not any(splits_of(task) for task in run_config.tasks):
    raise configure.ConfigError(
        f"--mode=predict: no task of {config.model_dir} declares a split "
        "besides train and dev (a user task's test split is one more entry "
        "in its \"splits\")")
  data = featurize(run_config, tokenizer, splits_of)
  on_leaderboard = [t.name for t in run_config.tasks
                    if t.name in glue.GLUE_TASKS]
  if on_leaderboard and not run_config.debug:
    glue_submission.check_counts([
        (task, split, data.manifests[task.name][split]["count"])
        for task in run_config.tasks if task.name in on_leaderboard
        for split in splits_of(task)])
  per_split = [(task, split, predict(run_config, model, data, task, split))
               for task in run_config.tasks for split in splits_of(task)]
  trial_dir = f"trial_{config.trial}"
  out_dir = os.path.join(config.model_dir, "test_predictions", trial_dir)
  written = test_predictions.write(out_dir, per_split)
  print("\n".join(f"{name}: {n} rows" for name, n in written.items()))
  print(f"wrote {out_dir}")
  if on_leaderboard and run_config.debug:
    print(f"no GLUE submission: {config.model_dir} is a --debug run, which "
          f"reads the first {run_config.debug_max_rows} rows of each test "
          "file, and the leaderboard scores every row")
  elif on_leaderboard:
    out_dir = os.path.join(config.model_dir, "glue_submission", trial_dir)
    on_board = glue_submission.write_submission(
        out_dir, [(t, s, p) for t, s, p in per_split
                  if t.name in on_leaderboard])
    print("\n".join(f"{name}: {n} rows" for name, n in on_board.items()))
    print(f"wrote {out_dir}/{glue_submission.ZIP_NAME}")
    written.update(on_board)
  return written


def run(config) -> int:
  """Runs config.mode; returns the process exit code."""
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  if config.mode == "predict":
    predict_test_sets(config)
    return 0
  if config.mode == "export":
    from bam_tf.serving import export  # pylint: disable=g-import-not-at-top
    # The base TF Serving watches; each export is a new version in it.
    export_base = config.export_dir or os.path.join(config.model_dir,
                                                    "export")
    path = export.export_run(config.model_dir, export_base, config.trial,
                             version=config.export_version,
                             custom_tasks=config.custom_tasks)
    print(export.done_line(path))
    return 0
  if config.mode == "inspect_data":
    _, tokenizer = encoders.load_encoder_and_tokenizer(config)
    return inspect_lib.inspect(config, tokenizer)
  if config.mode == "train":
    train_and_evaluate(config)
    return 0
  if config.mode == "eval":
    evaluate_run(config)
    return 0
  raise configure.ConfigError(f"--mode: {config.mode!r} is not implemented")
