"""Flags -> one `BamConfig` that every other module reads.

Defaults follow the original code: multi-task runs use lr 1e-4, 6 epochs,
batch 128; single-task runs use lr 5e-5, 3 epochs, batch 32. A flag given
explicitly (command line or flagfile) always wins over those defaults. Values
are checked here, before any work starts, with messages naming the flag.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional

from absl import flags

from bam_tf.errors import BamError
from bam_tf.tasks import registry
from bam_tf.tasks.task import TaskSpec

FLAGS = flags.FLAGS

MODES = ("train", "inspect_data", "predict", "export")
SAMPLING_SCHEMES = ("multiples", "loss_weights", "proportional")
REGRESSION_HEADS = ("linear", "sigmoid")
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")

# Defaults that depend on the number of tasks (original code).
MULTI_TASK_DEFAULTS = dict(learning_rate=1e-4, num_train_epochs=6.0,
                           train_batch_size=128)
SINGLE_TASK_DEFAULTS = dict(learning_rate=5e-5, num_train_epochs=3.0,
                            train_batch_size=32)
# The original's debug mode: batch 32, 3 epochs (and no dataset multiples).
DEBUG_DEFAULTS = dict(num_train_epochs=3.0, train_batch_size=32)


def define_flags():
  """Defines every flag once (safe to call repeatedly)."""
  if "task_names" in FLAGS:
    return
  d = flags
  d.DEFINE_enum("mode", "train", MODES, "train: train and evaluate; "
                "inspect_data: report on the data; predict: GLUE test-set "
                "files from a finished run; export: SavedModel serving raw "
                "text.")
  d.DEFINE_integer("trial", 0, "The trial of a finished run that predict "
                   "and export use.")
  d.DEFINE_string("export_dir", "", "Where --mode=export writes (default "
                  "model_dir/export/trial_<t>).")
  d.DEFINE_list("task_names", ["rte"], "Tasks to train, e.g. cola,mrpc,sts,"
                "rte (original names or GLUE spellings).")
  d.DEFINE_string("custom_tasks", "", "JSON file or inline JSON declaring "
                  "your own tasks (see bam_tf/tasks/registry.py).")
  d.DEFINE_string("data_dir", "", "glue_data root: one folder per task.")
  d.DEFINE_string("model_dir", "", "Everything a run writes goes here.")
  d.DEFINE_string("cache_dir", "", "Shared cache of exported encoders and "
                  "featurised TFRecords (default $BAM_TF_CACHE or "
                  "~/.cache/bam_tf).")
  # Encoder.
  d.DEFINE_string("hub_module_url", "", "TF-Hub-format BERT encoder handle "
                  "or path; empty = the embedded MiniLM-L6 encoder.")
  d.DEFINE_string("hub_preprocessor_url", "", "Matching TF-Hub preprocessor "
                  "(its vocab is used when the encoder carries none).")
  d.DEFINE_string("vocab_file", "", "WordPiece vocab (overrides the "
                  "encoder's).")
  d.DEFINE_enum("do_lower_case", "auto", ["auto", "true", "false"],
                "Lower-case text; auto = what the encoder says.")
  d.DEFINE_string("bert_checkpoint_dir", "", "Original Google BERT TF1 "
                  "folder (bert_config.json, vocab.txt, bert_model.ckpt).")
  d.DEFINE_bool("debug", False, "Tiny random encoder (3 layers, hidden 144) "
                "on the first 50 rows of each file: smoke runs in seconds.")
  # Input.
  d.DEFINE_integer("max_seq_length", 128, "Maximum tokens per example.")
  d.DEFINE_bool("double_unordered", True, "Add (b, a) copies of MRPC and "
                "STS-B train pairs, as the original does.")
  d.DEFINE_bool("dynamic_padding", True, "Pad each batch to its longest "
                "example instead of max_seq_length (same results, faster).")
  d.DEFINE_bool("length_bucketing", False, "Batch TRAINING examples of "
                "similar length together (needs dynamic padding): much less "
                "padding on mixes of short and long tasks. Off by default: "
                "the original drew batches at random. Inference always "
                "groups by length (it does not change predictions).")
  d.DEFINE_enum("task_sampling", None, SAMPLING_SCHEMES,
                "How tasks are mixed. multiples (default for multi-task "
                "runs, the original code's): copies of each train set and "
                "loss weights from the original's fixed GLUE size table, in "
                "one pool shuffled once per trial; loss_weights (default for "
                "single-task and --debug runs, the original without "
                "multiples): each train set once, losses weighted "
                "1/|D|^(1-exponent); proportional (the paper's wording): a "
                "sampler with p ~ |D|^exponent that trains the default "
                "scheme's number of steps.")
  d.DEFINE_float("sampling_exponent", 0.75, "Exponent of the task sampling "
                 "(1.0 = plain example mixing, 'no task sampling').")
  # Optimisation.
  d.DEFINE_float("learning_rate", None, "Peak learning rate (default 1e-4 "
                 "multi-task, 5e-5 single-task).")
  d.DEFINE_float("num_train_epochs", None, "Epochs (default 6 multi-task, "
                 "3 single-task).")
  d.DEFINE_integer("train_batch_size", None, "Global batch (default 128 "
                   "multi-task, 32 single-task).")
  d.DEFINE_integer("eval_batch_size", 128, "Inference batch (dev "
                   "evaluation, teacher outputs, --mode=predict). Batches are "
                   "grouped by length; the size does not change predictions "
                   "(the original evaluated in batches of 8): 128 predicts "
                   "1.5x faster than 32 on 2 CPU cores (docs/PERFORMANCE.md).")
  d.DEFINE_float("warmup_proportion", 0.1, "Linear warmup share of steps.")
  d.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay.")
  d.DEFINE_float("layerwise_lr_decay", 0.9, "Per-layer lr decay (1.0 = off).")
  d.DEFINE_float("clip_norm", 1.0, "Global-norm gradient clipping.")
  d.DEFINE_bool("adam_bias_correction", False, "Bias-corrected Adam moments "
                "(Keras/PyTorch). Off = the original BERT/BAM "
                "AdamWeightDecayOptimizer, which has no bias correction.")
  d.DEFINE_enum("loss_reduction", "sum", ["sum", "mean"], "sum: the "
                "training objective is the loss summed over the global batch "
                "(original code; with --clip_norm=1.0 the clip acts on "
                "nearly every step); mean: divided by the global batch size "
                "(the usual PyTorch/Keras convention).")
  d.DEFINE_float("head_dropout", 0.1, "Dropout before each task head.")
  d.DEFINE_enum("regression_head", "linear", REGRESSION_HEADS,
                "linear: dense to 1 unit (original code); sigmoid: sigmoid "
                "of it (paper).")
  # Runs.
  d.DEFINE_integer("num_trials", 1, "Train+eval this many times with "
                   "distinct seeds; every trial is kept.")
  d.DEFINE_integer("seed", 1, "Seed of the first trial (trial t: seed + t).")
  d.DEFINE_list("retrain_trials", [], "Trials to train and evaluate again "
                "although results.json has them, e.g. when their teacher "
                "outputs or predictions were lost with the machine (same "
                "seed; the new record replaces the old). Checkpoints left in "
                "the trial dir are used: a finished one is only evaluated "
                "again, a killed one resumes.")
  d.DEFINE_integer("save_checkpoints_steps", 500, "Checkpoint every N steps.")
  d.DEFINE_integer("keep_checkpoint_max", 2, "Checkpoints kept.")
  d.DEFINE_integer("log_every_steps", 10, "Progress line every N steps.")
  d.DEFINE_bool("overwrite", False, "Delete what --model_dir holds when it "
                "was written with another configuration (otherwise such a "
                "run is refused).")
  d.DEFINE_integer("max_train_steps", 0, "Stop after this many steps (0 = "
                   "as many as the epochs need); for smoke runs.")
  # Hardware.
  d.DEFINE_enum("strategy", "one_device", STRATEGIES, "tf.distribute "
                "strategy: one_device (the default strategy), mirrored (all "
                "local GPUs), multi_worker_mirrored (workers from TF_CONFIG), "
                "tpu (--tpu). --train_batch_size/--eval_batch_size are global "
                "batches, split across replicas.")
  d.DEFINE_string("tpu", "", "TPU name or grpc:// address for "
                  "--strategy=tpu (empty = the local TPU VM).")
  d.DEFINE_bool("deterministic", False, "tf.config.experimental."
                "enable_op_determinism(): bit-identical reruns also where "
                "kernels are not deterministic by default (GPU). On CPU the "
                "same seed already repeats exactly.")
  d.DEFINE_bool("jit_compile", False, "Compile the train step with XLA "
                "(see docs/PERFORMANCE.md for when it pays).")
  d.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "Keras mixed "
                "precision policy (heads and losses stay float32; "
                "mixed_float16 adds dynamic loss scaling).")
  # Distillation.
  d.DEFINE_list("teacher_output_trials", ["0"], "Trials that write teacher "
                "outputs (train/dev/test predictions) after training; empty "
                "= none.")
  d.DEFINE_bool("distill", False, "Train a student on teacher outputs.")
  d.DEFINE_string("teachers", "", "Teachers per task: 'rte:DIR,mrpc:DIR' "
                  "(single-task teachers), 'all:DIR' (one multi-task "
                  "teacher), 'rte:DIR1+DIR2' (an ensemble). DIR = a "
                  "teacher run's model_dir.")
  d.DEFINE_integer("teacher_trial", 0, "Which trial of each teacher run to "
                   "take outputs from.")
  d.DEFINE_enum("distill_schedule", "annealing", ["annealing", "fixed",
                                                 "pure"],
                "annealing: lambda = step/total (teacher annealing); fixed: "
                "target = (1-w) gold + w teacher; pure: teacher only.")
  d.DEFINE_float("distill_weight", 0.5, "w of the fixed schedule.")
  d.DEFINE_string("init_from", "", "Start from the final encoder and "
                  "matching heads of another run's model_dir (trial "
                  "--teacher_trial), e.g. single-task fine-tuning after "
                  "multi-task training (Table 3).")
  d.DEFINE_float("distill_temperature", 1.0, "Softmax temperature applied "
                 "to teacher logits.")


@dataclasses.dataclass
class BamConfig:
  """Every setting of a run, resolved and validated."""
  mode: str
  task_names: List[str]
  data_dir: str
  model_dir: str
  cache_dir: str
  hub_module_url: str
  hub_preprocessor_url: str
  vocab_file: str
  do_lower_case: Optional[bool]
  bert_checkpoint_dir: str
  debug: bool
  max_seq_length: int
  double_unordered: bool
  dynamic_padding: bool
  task_sampling: Optional[str]
  sampling_exponent: float
  learning_rate: float
  num_train_epochs: float
  train_batch_size: int
  eval_batch_size: int
  warmup_proportion: float
  weight_decay_rate: float
  layerwise_lr_decay: float
  clip_norm: float
  head_dropout: float
  regression_head: str
  num_trials: int
  seed: int
  save_checkpoints_steps: int
  keep_checkpoint_max: int
  log_every_steps: int
  max_train_steps: int
  teacher_output_trials: List[str] = dataclasses.field(default_factory=list)
  retrain_trials: List[str] = dataclasses.field(default_factory=list)
  distill: bool = False
  teachers: str = ""
  teacher_trial: int = 0
  distill_schedule: str = "annealing"
  distill_weight: float = 0.5
  distill_temperature: float = 1.0
  init_from: str = ""
  trial: int = 0
  export_dir: str = ""
  overwrite: bool = False
  custom_tasks: str = ""
  strategy: str = "one_device"
  tpu: str = ""
  mixed_precision: str = "none"
  loss_reduction: str = "sum"
  adam_bias_correction: bool = False
  length_bucketing: bool = False
  deterministic: bool = False
  jit_compile: bool = False
  teacher_dirs: Dict[str, List[str]] = dataclasses.field(
      default_factory=dict)
  # Teachers given as flagfiles: trained first if their outputs are missing.
  teacher_flagfiles: Dict[str, str] = dataclasses.field(default_factory=dict)
  # Filled in by `resolve`: not flags.
  tasks: List[TaskSpec] = dataclasses.field(default_factory=list)

  @property
  def teacher_output_trial_ids(self) -> List[int]:
    return [int(t) for t in self.teacher_output_trials]

  @property
  def retrain_trial_ids(self) -> List[int]:
    return [int(t) for t in self.retrain_trials]

  @property
  def is_multi_task(self) -> bool:
    return len(self.tasks) > 1

  @property
  def recipe_scheme(self) -> str:
    """The original's scheme for this run: dataset multiples for a
    multi-task run, none for a single-task or debug run."""
    return ("multiples" if len(self.tasks) > 1 and not self.debug
            else "loss_weights")

  @property
  def debug_max_rows(self) -> Optional[int]:
    return 50 if self.debug else None

  @property
  def static_shapes(self) -> bool:
    """TPUs compile one program per shape: every batch is padded to
    max_seq_length (--dynamic_padding is ignored) and evaluation batches are
    padded to the full eval batch."""
    return self.strategy == "tpu"

  @property
  def use_dynamic_padding(self) -> bool:
    return self.dynamic_padding and not self.static_shapes

  @property
  def use_length_bucketing(self) -> bool:
    return self.length_bucketing and self.use_dynamic_padding

  def trial_seed(self, trial: int) -> int:
    return self.seed + trial

  def trial_dir(self, trial: int) -> str:
    return os.path.join(self.model_dir, f"trial_{trial}")

  def to_json_dict(self) -> Dict:
    d = dataclasses.asdict(self)
    d["tasks"] = [t.name for t in self.tasks]
    return d


class ConfigError(BamError):
  """A flag value that cannot be used; the message names the flag."""


def _check(cond: bool, flag: str, message: str):
  if not cond:
    raise ConfigError(f"--{flag}: {message}")


def config_from_flags(flag_values=None) -> BamConfig:
  """Builds the config from parsed absl flags, applying the task defaults."""
  fv = flag_values or FLAGS
  define_flags()
  names = [f.name for f in dataclasses.fields(BamConfig)
           if f.name not in ("tasks", "teacher_dirs", "teacher_flagfiles")]
  values = {n: fv[n].value for n in names}
  lower = values["do_lower_case"]
  values["do_lower_case"] = None if lower == "auto" else lower == "true"
  return resolve(BamConfig(**values))


def resolve(config: BamConfig) -> BamConfig:
  """Applies single/multi-task defaults to unset values and validates."""
  try:
    custom = registry.load_custom_tasks(config.custom_tasks)
    config.tasks = registry.get_tasks(config.task_names, custom)
  except registry.TaskError as e:
    raise ConfigError(str(e)) from None
  _check(len(config.tasks) > 0, "task_names", "name at least one task")
  config.task_names = [t.name for t in config.tasks]
  defaults = dict(MULTI_TASK_DEFAULTS if len(config.tasks) > 1
                  else SINGLE_TASK_DEFAULTS)
  if config.debug:
    defaults.update(DEBUG_DEFAULTS)
  if config.task_sampling is None:
    config.task_sampling = config.recipe_scheme
  for key, value in defaults.items():
    if getattr(config, key) is None:
      setattr(config, key, value)
  if not config.cache_dir:
    config.cache_dir = os.environ.get(
        "BAM_TF_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                     "bam_tf"))
  validate(config)
  config.teacher_dirs = parse_teachers(config)
  return config


def flagfile_value(path: str, flag: str) -> str:
  """The last value a flagfile gives a flag ('' if none)."""
  value = ""
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if line.startswith(f"--{flag}="):
        value = line.split("=", 1)[1]
  return value


def _teacher_dir(config: BamConfig, spec: str) -> str:
  """A teacher is a model_dir, or a flagfile whose --model_dir it uses (and
  which the recipe runs first when that run has no outputs yet)."""
  if not spec.endswith(".cfg"):
    return spec
  _check(os.path.isfile(spec), "teachers", f"flagfile {spec!r} not found")
  model_dir = flagfile_value(spec, "model_dir")
  _check(bool(model_dir), "teachers", f"{spec} sets no --model_dir")
  config.teacher_flagfiles[model_dir] = spec
  return model_dir


def parse_teachers(config: BamConfig) -> Dict[str, List[str]]:
  """--teachers -> {task name: [teacher model_dir, ...]}."""
  if not config.distill:
    _check(not config.teachers, "teachers", "given without --distill")
    return {}
  _check(bool(config.teachers), "teachers", "--distill needs teachers, e.g. "
         "--teachers=rte:runs/single_rte or --teachers=all:runs/multi")
  out = {}
  for item in config.teachers.split(","):
    name, sep, dirs = item.partition(":")
    _check(bool(sep) and bool(dirs), "teachers",
           f"{item!r} is not TASK:DIR (or TASK:DIR1+DIR2)")
    paths = [_teacher_dir(config, d) for d in dirs.split("+") if d]
    if name.strip().lower() == "all":
      for task in config.tasks:
        out.setdefault(task.name, paths)
      continue
    try:
      task = registry.get_tasks([name], registry.load_custom_tasks(
          config.custom_tasks))[0]
    except registry.TaskError as e:
      raise ConfigError(f"--teachers: {e}") from None
    _check(task.name in config.task_names, "teachers",
           f"task {task.name!r} is not one of --task_names")
    out[task.name] = paths
  return out


def validate(config: BamConfig):
  """Checks values before any work; raises ConfigError naming the flag."""
  c = config
  _check(c.learning_rate > 0, "learning_rate", f"must be > 0, got "
         f"{c.learning_rate}")
  _check(c.num_train_epochs > 0, "num_train_epochs", "must be > 0, got "
         f"{c.num_train_epochs}")
  _check(c.train_batch_size > 0, "train_batch_size", "must be > 0, got "
         f"{c.train_batch_size}")
  _check(c.eval_batch_size > 0, "eval_batch_size", "must be > 0, got "
         f"{c.eval_batch_size}")
  _check(0 <= c.warmup_proportion < 1, "warmup_proportion",
         f"must be in [0, 1), got {c.warmup_proportion}")
  _check(c.weight_decay_rate >= 0, "weight_decay_rate", "must be >= 0")
  _check(0 < c.layerwise_lr_decay <= 1, "layerwise_lr_decay",
         f"must be in (0, 1], got {c.layerwise_lr_decay}")
  _check(c.clip_norm > 0, "clip_norm", "must be > 0")
  _check(0 <= c.head_dropout < 1, "head_dropout", "must be in [0, 1)")
  _check(c.max_seq_length >= 8, "max_seq_length",
         f"must be at least 8, got {c.max_seq_length}")
  _check(c.num_trials >= 1, "num_trials", "must be >= 1")
  _check(c.save_checkpoints_steps > 0, "save_checkpoints_steps", "must be > 0")
  _check(c.log_every_steps > 0, "log_every_steps", "must be > 0")
  _check(c.max_train_steps >= 0, "max_train_steps", "must be >= 0")
  _check(all(t.strip().isdigit() for t in c.teacher_output_trials),
         "teacher_output_trials", "must be trial numbers, e.g. 0,1")
  _check(all(t.strip().isdigit() for t in c.retrain_trials),
         "retrain_trials", "must be trial numbers, e.g. 0,1")
  _check(0 <= c.distill_weight <= 1, "distill_weight", "must be in [0, 1]")
  _check(c.distill_temperature > 0, "distill_temperature", "must be > 0")
  _check(c.task_sampling in SAMPLING_SCHEMES, "task_sampling",
         f"must be one of {', '.join(SAMPLING_SCHEMES)}, got "
         f"{c.task_sampling!r}")
  _check(c.strategy in STRATEGIES, "strategy",
         f"must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}")
  _check(c.loss_reduction in ("sum", "mean"), "loss_reduction",
         f"must be 'sum' or 'mean', got {c.loss_reduction!r}")
  _check(c.mixed_precision in MIXED_PRECISION, "mixed_precision",
         f"must be one of {', '.join(MIXED_PRECISION)}, got "
         f"{c.mixed_precision!r}")
  _check(not c.tpu or c.strategy == "tpu", "tpu",
         "given without --strategy=tpu")
  _check(not (c.strategy == "tpu" and c.mixed_precision == "mixed_float16"),
         "mixed_precision", "TPUs compute in bfloat16: use mixed_bfloat16 "
         "with --strategy=tpu")
  if c.mode in ("train", "inspect_data", "predict"):
    _check(bool(c.data_dir), "data_dir", "is required (a glue_data root)")
    _check(os.path.isdir(c.data_dir), "data_dir",
           f"{c.data_dir!r} is not a directory")
  if c.mode in ("train", "predict", "export"):
    _check(bool(c.model_dir), "model_dir", "is required")
  if c.mode in ("predict", "export"):
    _check(os.path.isfile(os.path.join(c.model_dir, "config.json")),
           "model_dir", f"{c.model_dir!r} holds no finished run "
           "(config.json missing)")
  if c.bert_checkpoint_dir:
    _check(not c.hub_module_url, "bert_checkpoint_dir",
           "give either --bert_checkpoint_dir or --hub_module_url, not both")
  if c.vocab_file:
    _check(os.path.isfile(c.vocab_file), "vocab_file",
           f"{c.vocab_file!r} does not exist")


def check_against_encoder(config: BamConfig, max_position_embeddings: int):
  """Checks that need the encoder loaded (positions it has)."""
  _check(config.max_seq_length <= max_position_embeddings, "max_seq_length",
         f"{config.max_seq_length} is above the encoder's "
         f"{max_position_embeddings} position embeddings")


# Settings that may change between invocations on the same model_dir: how
# long to run and how to report, not what is trained.
RERUN_SAFE = frozenset({
    "mode", "num_trials", "log_every_steps", "save_checkpoints_steps",
    "keep_checkpoint_max", "eval_batch_size", "cache_dir", "overwrite",
    "teacher_output_trials", "retrain_trials", "trial", "export_dir",
    # Where it runs, not what is trained: a run may resume on other hardware.
    "strategy", "tpu", "deterministic", "jit_compile"})


def _field_defaults() -> Dict:
  out = {}
  for f in dataclasses.fields(BamConfig):
    if f.default is not dataclasses.MISSING:
      out[f.name] = f.default
  return out


def config_differences(saved: Dict, config: BamConfig) -> List[str]:
  """Fields of a model_dir's config.json that this run would change."""
  current = config.to_json_dict()
  # A config.json written before a field existed holds that field's default.
  saved = dict(saved)
  for key, value in _field_defaults().items():
    saved.setdefault(key, value)
  return sorted(k for k in set(saved) | set(current)
                if k not in RERUN_SAFE and saved.get(k) != current.get(k))


def save_config(config: BamConfig, path: str):
  from bam_tf.outputs import files  # pylint: disable=g-import-not-at-top
  files.write_text_atomic(path, json.dumps(config.to_json_dict(), indent=2,
                                           sort_keys=True))
