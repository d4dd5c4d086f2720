"""Flags -> one `BamConfig` that every other module reads.

Defaults follow the original code: multi-task runs use lr 1e-4, 6 epochs,
batch 128; single-task runs use lr 5e-5, 3 epochs, batch 32. A flag given
explicitly (command line or flagfile) always wins over those defaults. Values
are checked here, before any work starts, with messages naming the flag.

Each setting is declared once, in `SETTINGS`: its flag, its `BamConfig`
field, its check and whether a rerun may change it all come from there.
"""

import dataclasses
import json
import math
import os
import re
import textwrap
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import flags

from bam_tf.common import files
from bam_tf.common.errors import ConfigError
from bam_tf.modeling import hf_bert
from bam_tf.modeling.multitask_model import REGRESSION_HEADS
from bam_tf.outputs import results
from bam_tf.tasks import glue
from bam_tf.tasks import readers
from bam_tf.tasks import registry
from bam_tf.tasks import sources
from bam_tf.tasks import tfds_glue
from bam_tf.tasks.task import TaskSpec

FLAGS = flags.FLAGS

MODES = ("train", "inspect_data", "predict", "export", "eval")
SAMPLING_SCHEMES = ("multiples", "loss_weights", "proportional")
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")

# The sections of `run_classifier.py --help`, in order.
FLAG_GROUPS = ("run", "data", "model", "training", "distillation",
               "hardware", "outputs")

_FLAG_DEFAULT = object()  # Setting.field_default: the same as the flag's.
_TYPES = {"enum": str, "integer": int, "float": float, "bool": bool,
          "string": str, "list": List[str]}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One setting of a run, declared once.

  kind is the flag's absl DEFINE_<kind>, or "derived": a field `resolve`
  computes, with no flag, never read back from a config.json.
  """
  name: str
  kind: str
  # The flag's (None: `resolve` sets it); a derived field's own.
  default: Any = None
  help: str = ""
  values: Tuple[str, ...] = ()  # An enum's choices.
  # The field's: the flag's unless given; required fields (the first
  # config's) have none, so BamConfig(...) and config.json must give them.
  field_default: Any = _FLAG_DEFAULT
  required: bool = False
  type: Any = None  # The field's annotation, where the kind's is not it.
  from_flag: Optional[Callable[[Any], Any]] = None  # Flag -> field value.
  # The per-value check, and the message when it fails ({value} = value;
  # or a function of the value, where the cause depends on it).
  check: Optional[Callable[[Any], bool]] = None
  message: Any = ""
  # Used when the flag is not given (original code).
  single_task_default: Any = None
  multi_task_default: Any = None
  debug_default: Any = None
  # May change between invocations on the same model_dir: how long to run,
  # how to report and where it runs (a run may resume on other hardware),
  # not what is trained.
  rerun_safe: bool = False
  # Where `--help` lists the flag (FLAG_GROUPS); derived fields have none.
  group: str = ""
  # A file or folder (local or a filesystem URL): a rerun compares where it
  # points, not how it is spelled (runs/x/, ./runs/x, a//b are runs/x).
  path: bool = False

  @property
  def derived(self) -> bool:
    return self.kind == "derived"

  def field_default_value(self) -> Any:
    """The field's default; a fresh list or dict on each call."""
    default = (self.default if self.field_default is _FLAG_DEFAULT
               else self.field_default)
    if isinstance(default, tuple):
      return list(default)
    return dict(default) if isinstance(default, dict) else default

  def field(self) -> Tuple:
    """(name, type[, dataclasses.field]) for make_dataclass."""
    annotation = self.type or _TYPES[self.kind]
    if self.required:
      return (self.name, annotation)
    if isinstance(self.field_default_value(), (list, dict)):
      return (self.name, annotation,
              dataclasses.field(default_factory=self.field_default_value))
    return (self.name, annotation,
            dataclasses.field(default=self.field_default_value()))

  def define_flag(self, flag_values=None):
    where = {"flag_values": FLAGS if flag_values is None else flag_values}
    if self.kind == "enum":
      flags.DEFINE_enum(self.name, self.default, list(self.values),
                        self.help, **where)
    elif self.kind == "list":
      flags.DEFINE_list(self.name, list(self.default), self.help, **where)
    else:
      getattr(flags, f"DEFINE_{self.kind}")(self.name, self.default,
                                            self.help, **where)


def _lower_case(flag_value: str) -> Optional[bool]:
  return None if flag_value == "auto" else flag_value == "true"


def _trial_numbers(values: List[str]) -> bool:
  # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
  return all(t.strip().isascii() and t.strip().isdigit() for t in values)


def _one_of(values: Tuple[str, ...]) -> str:
  return f"must be one of {', '.join(values)}, got {{value!r}}"


def _finite(check: Callable[[float], bool]) -> Callable[[float], bool]:
  """A float check that also refuses inf and nan."""
  return lambda v: math.isfinite(v) and check(v)


# Trial t seeds NumPy with --seed + t, which must be below 2^32.
SEED_LIMIT = 2 ** 32


_S = Setting
SETTINGS: Tuple[Setting, ...] = (
    _S("mode", "enum", "train", "train: train and evaluate; "
       "inspect_data: report on the data; predict: test-set "
       "predictions of a finished run (a TSV per task and split, and GLUE "
       "leaderboard files); export: SavedModel serving raw text; eval: "
       "dev metrics and predictions of a finished run's weights (or "
       "--checkpoint) in model_dir/eval/, without training.",
       values=MODES, required=True, rerun_safe=True, group="run"),
    _S("trial", "integer", 0, "The trial of a finished run that predict, "
       "export and eval use.", check=lambda v: v >= 0,
       message="must be >= 0, got {value}", rerun_safe=True, group="run"),
    _S("checkpoint", "string", "", "--mode=eval: evaluate this checkpoint "
       "of the trial (model_dir/trial_<t>/checkpoints/ckpt-N, or that "
       "folder for its latest) instead of its final weights.",
       rerun_safe=True, group="run"),
    _S("export_dir", "string", "", "The base folder --mode=export writes "
       "to and TF Serving watches: each export is a new version "
       "<export_dir>/<N> (default model_dir/export).", rerun_safe=True,
       group="outputs"),
    _S("export_version", "integer", 0, "N of <export_dir>/<N> for "
       "--mode=export; 0 = the next after the highest there (1 in an "
       "empty base). An existing version is refused, never replaced.",
       check=lambda v: 0 <= v < 2 ** 63,
       message="must be in [0, 2^63) (0 = the next), got {value}",
       rerun_safe=True, group="outputs"),
    _S("task_names", "list", ("rte",), "Tasks to train, e.g. cola,mrpc,sts,"
       "rte (original names or GLUE spellings).", required=True, group="data"),
    _S("custom_tasks", "string", "", "JSON file or inline JSON declaring "
       "your own tasks (see bam_tf/tasks/registry.py).", group="data",
       path=True),
    _S("data_dir", "string", "", "glue_data root: one folder per task "
       "(--data_source=tsv); --mode=eval and predict read the run's own "
       "unless given.", required=True, group="data", path=True),
    _S("data_source", "enum", sources.TSV, "Where examples come from: tsv "
       "(the files under --data_dir, any task) or tfds (GLUE prepared by "
       "tensorflow-datasets in --tfds_data_dir; the same examples and ids).",
       values=sources.KINDS, check=lambda v: v in sources.KINDS,
       message=_one_of(sources.KINDS), group="data"),
    _S("tfds_data_dir", "string", "", "TFDS data dir holding glue/<config> "
       "(--data_source=tfds; empty: TFDS's default, ~/tensorflow_datasets).",
       group="data", path=True),
    _S("model_dir", "string", "", "Everything a run writes goes here.",
       required=True, group="run", path=True),
    _S("cache_dir", "string", "", "Shared cache of exported encoders and "
       "featurised TFRecords (default $BAM_TF_CACHE or "
       "~/.cache/bam_tf).", required=True, rerun_safe=True, group="data"),
    # Encoder.
    _S("hub_module_url", "string", "", "TF-Hub-format BERT encoder handle "
       "or path; empty = the embedded MiniLM-L6 encoder.", required=True,
       group="model", path=True),
    _S("hub_preprocessor_url", "string", "", "Matching TF-Hub preprocessor "
       "(its vocab is used when the encoder carries none).", required=True,
       group="model", path=True),
    _S("vocab_file", "string", "", "WordPiece vocab (overrides the "
       "encoder's).", required=True,
       check=lambda v: not v or files.isfile(v),
       message=lambda v: (f"{v!r} is a folder, not a file" if files.isdir(v)
                          else f"{v!r} does not exist"),
       group="model", path=True),
    _S("do_lower_case", "enum", "auto", "Lower-case text; auto = what the "
       "encoder says.", values=("auto", "true", "false"), required=True,
       type=Optional[bool], from_flag=_lower_case, group="model"),
    _S("bert_checkpoint_dir", "string", "", "Original Google BERT TF1 "
       "folder (bert_config.json, vocab.txt, bert_model.ckpt).",
       required=True, group="model", path=True),
    _S("hf_checkpoint_dir", "string", "", "Hugging Face BERT-family folder "
       "(config.json, model.safetensors, vocab.txt), converted to Model "
       "Garden's BertEncoder and exported once to the TF-Hub format.",
       group="model", path=True),
    _S("debug", "bool", False, "Tiny random encoder (3 layers, hidden 144) "
       "on the first 50 rows of each file: smoke runs in seconds.",
       required=True, group="run"),
    # Input.
    _S("max_seq_length", "integer", 128, "Maximum tokens per example.",
       required=True, check=lambda v: v >= 8,
       message="must be at least 8, got {value}", group="data"),
    _S("double_unordered", "bool", True, "Add (b, a) copies of MRPC and "
       "STS-B train pairs, as the original does.", required=True, group="data"),
    _S("dynamic_padding", "bool", True, "Pad each batch to its longest "
       "example instead of max_seq_length (same results, faster).",
       required=True, group="data"),
    _S("length_bucketing", "bool", False, "Batch TRAINING examples of "
       "similar length together (needs dynamic padding): much less "
       "padding on mixes of short and long tasks. Off by default: "
       "the original drew batches at random. Inference always "
       "groups by length (it does not change predictions).", group="data"),
    _S("task_sampling", "enum", None, "How tasks are mixed. multiples "
       "(default for multi-task runs, the original code's): copies of each "
       "train set and loss weights from the original's fixed GLUE size "
       "table, in one pool shuffled once per trial; loss_weights (default "
       "for single-task and --debug runs, the original without "
       "multiples): each train set once, losses weighted "
       "1/|D|^(1-exponent); proportional (the paper's wording): a "
       "sampler with p ~ |D|^exponent that trains the default "
       "scheme's number of steps.", values=SAMPLING_SCHEMES, required=True,
       type=Optional[str], check=lambda v: v in SAMPLING_SCHEMES,
       message=_one_of(SAMPLING_SCHEMES), group="training"),
    _S("sampling_exponent", "float", 0.75, "Exponent of the task sampling "
       "(1.0 = plain example mixing, 'no task sampling').", required=True,
       check=_finite(lambda v: v >= 0),
       message="must be >= 0 and finite, got {value}", group="training"),
    # Optimisation.
    _S("learning_rate", "float", None, "Peak learning rate (default 1e-4 "
       "multi-task, 5e-5 single-task).", required=True,
       check=_finite(lambda v: v > 0),
       message="must be > 0 and finite, got {value}",
       single_task_default=5e-5, multi_task_default=1e-4, group="training"),
    _S("num_train_epochs", "float", None, "Epochs (default 6 multi-task, "
       "3 single-task).", required=True, check=_finite(lambda v: v > 0),
       message="must be > 0 and finite, got {value}",
       single_task_default=3.0,
       multi_task_default=6.0, debug_default=3.0, group="training"),
    _S("train_batch_size", "integer", None, "Global batch (default 128 "
       "multi-task, 32 single-task).", required=True, check=lambda v: v > 0,
       message="must be > 0, got {value}", single_task_default=32,
       multi_task_default=128, debug_default=32, group="training"),
    _S("eval_batch_size", "integer", 128, "Inference batch (dev "
       "evaluation, teacher outputs, --mode=predict; --mode=eval: the "
       "run's unless given). Batches are "
       "grouped by length; the size does not change predictions "
       "(the original evaluated in batches of 8): 128 predicts "
       "1.5x faster than 32 on 2 CPU cores (docs/PERFORMANCE.md).",
       required=True, check=lambda v: v > 0,
       message="must be > 0, got {value}", rerun_safe=True, group="outputs"),
    _S("warmup_proportion", "float", 0.1, "Linear warmup share of steps.",
       required=True, check=lambda v: 0 <= v < 1,
       message="must be in [0, 1), got {value}", group="training"),
    _S("weight_decay_rate", "float", 0.01, "Decoupled weight decay.",
       required=True, check=_finite(lambda v: v >= 0),
       message="must be >= 0 and finite, got {value}", group="training"),
    _S("layerwise_lr_decay", "float", 0.9, "Per-layer lr decay (1.0 = "
       "off).", required=True, check=lambda v: 0 < v <= 1,
       message="must be in (0, 1], got {value}", group="training"),
    _S("clip_norm", "float", 1.0, "Global-norm gradient clipping.",
       required=True, check=_finite(lambda v: v > 0),
       message="must be > 0 and finite, got {value}", group="training"),
    _S("adam_bias_correction", "bool", False, "Bias-corrected Adam moments "
       "(Keras/PyTorch). Off = the original BERT/BAM "
       "AdamWeightDecayOptimizer, which has no bias correction.",
       group="training"),
    _S("loss_reduction", "enum", "sum", "sum: the "
       "training objective is the loss summed over the global batch "
       "(original code; with --clip_norm=1.0 the clip acts on "
       "nearly every step); mean: divided by the global batch size "
       "(the usual PyTorch/Keras convention).", values=("sum", "mean"),
       check=lambda v: v in ("sum", "mean"),
       message="must be 'sum' or 'mean', got {value!r}", group="training"),
    _S("head_dropout", "float", 0.1, "Dropout before each task head.",
       required=True, check=lambda v: 0 <= v < 1,
       message="must be in [0, 1)", group="model"),
    _S("regression_head", "enum", "linear", "linear: dense to 1 unit "
       "(original code); sigmoid: sigmoid of it (paper).",
       values=REGRESSION_HEADS, required=True, group="model"),
    # Runs.
    _S("num_trials", "integer", 1, "Train+eval this many times with "
       "distinct seeds; every trial is kept.", required=True,
       check=lambda v: v >= 1, message="must be >= 1", rerun_safe=True,
       group="run"),
    _S("seed", "integer", 1, "Seed of the first trial (trial t: seed + t).",
       required=True, check=lambda v: 0 <= v < SEED_LIMIT,
       message="must be in [0, 2^32), got {value}", group="run"),
    _S("retrain_trials", "list", (), "Trials to train and evaluate again "
       "although results.json has them, e.g. when their teacher "
       "outputs or predictions were lost with the machine (same "
       "seed; the new record replaces the old). Checkpoints left in "
       "the trial dir are used: a finished one is only evaluated "
       "again, a killed one resumes.", check=_trial_numbers,
       message="must be trial numbers, e.g. 0,1", rerun_safe=True, group="run"),
    _S("save_checkpoints_steps", "integer", 500, "Checkpoint every N "
       "steps.", required=True, check=lambda v: v > 0,
       message="must be > 0", rerun_safe=True, group="training"),
    _S("keep_checkpoint_max", "integer", 2, "Checkpoints kept.",
       required=True, check=lambda v: v >= 1,
       message="must be >= 1, got {value}", rerun_safe=True, group="training"),
    _S("log_every_steps", "integer", 10, "Progress line every N steps.",
       required=True, check=lambda v: v > 0, message="must be > 0",
       rerun_safe=True, group="outputs"),
    _S("eval_every_steps", "integer", 0, "Evaluate every task's dev split "
       "every N steps while training (0 = only at the end, as the "
       "original): a progress line and validation/ TensorBoard scalars "
       "beside the training ones. The time counts in train_seconds.",
       check=lambda v: v >= 0, message="must be >= 0, got {value}",
       rerun_safe=True, group="outputs"),
    _S("overwrite", "bool", False, "Delete what --model_dir holds when it "
       "was written with another configuration (otherwise such a "
       "run is refused). Training only: an export never replaces a "
       "version.", rerun_safe=True, group="run"),
    _S("max_train_steps", "integer", 0, "Stop after this many steps (0 = "
       "as many as the epochs need); for smoke runs.", required=True,
       check=lambda v: v >= 0, message="must be >= 0", group="run"),
    # Hardware.
    _S("strategy", "enum", "one_device", "tf.distribute "
       "strategy: one_device (the default strategy), mirrored (all "
       "local GPUs), multi_worker_mirrored (workers from TF_CONFIG), "
       "tpu (--tpu). --train_batch_size/--eval_batch_size are global "
       "batches, split across replicas.", values=STRATEGIES,
       check=lambda v: v in STRATEGIES, message=_one_of(STRATEGIES),
       rerun_safe=True, group="hardware"),
    _S("tpu", "string", "", "TPU name or grpc:// address for "
       "--strategy=tpu (empty = the local TPU VM).", rerun_safe=True,
       group="hardware"),
    _S("worker_timeout_s", "integer", 600, "--strategy="
       "multi_worker_mirrored: seconds a worker may go without a heartbeat, "
       "and the limit of the start-up and shut-down barriers, before the "
       "run is aborted (TensorFlow's default heartbeat timeout is 10 s, "
       "which a loaded host exceeds; a dead worker is detected after this "
       "long).", check=lambda v: v >= 10, message="must be >= 10, got "
       "{value}", rerun_safe=True, group="hardware"),
    _S("deterministic", "bool", False, "tf.config.experimental."
       "enable_op_determinism(): bit-identical reruns also where "
       "kernels are not deterministic by default (GPU). On CPU the "
       "same seed already repeats exactly.", rerun_safe=True, group="hardware"),
    _S("jit_compile", "bool", False, "Compile the train step with XLA "
       "(see docs/PERFORMANCE.md for when it pays).", rerun_safe=True,
       group="hardware"),
    _S("length_sorted_part_size", "integer", 0, "Train each batch in "
       "parts of at most this many examples of similar length (the batch "
       "sorted by length), each padded to its own longest example, with "
       "one gradient over them: the same batch and loss per step, far less "
       "padding on random batches that mix short and long examples; "
       "results differ only by float rounding and dropout draws. 8 is "
       "fastest on a 2-core CPU (3.4x on the small recipe's student; "
       "docs/PERFORMANCE.md). 0 = off (the batch whole, as the original). "
       "Needs dynamic padding (ignored on TPUs); refused with "
       "--jit_compile.", check=lambda v: v >= 0,
       message="must be >= 0 (0 = off), got {value}", rerun_safe=True,
       group="hardware"),
    _S("mixed_precision", "enum", "none", "Keras mixed "
       "precision policy (heads and losses stay float32; "
       "mixed_float16 adds dynamic loss scaling).", values=MIXED_PRECISION,
       check=lambda v: v in MIXED_PRECISION, message=_one_of(MIXED_PRECISION),
       group="hardware"),
    # Distillation.
    _S("teacher_output_trials", "list", ("0",), "Trials that write teacher "
       "outputs (train/dev/test predictions) after training; empty "
       "= none.", field_default=(), check=_trial_numbers,
       message="must be trial numbers, e.g. 0,1", rerun_safe=True,
       group="distillation"),
    _S("distill", "bool", False, "Train a student on teacher outputs.",
       group="distillation"),
    _S("teachers", "string", "", "Teachers per task: 'rte:DIR,mrpc:DIR' "
       "(single-task teachers), 'all:DIR' (one multi-task "
       "teacher), 'rte:DIR1+DIR2' (an ensemble). DIR = a "
       "teacher run's model_dir.", group="distillation"),
    _S("teacher_trial", "integer", 0, "Which trial of each teacher run to "
       "take outputs from.", check=lambda v: v >= 0,
       message="must be >= 0, got {value}", group="distillation"),
    _S("distill_schedule", "enum", "annealing", "annealing: lambda = "
       "step/total (teacher annealing); fixed: target = (1-w) gold + w "
       "teacher; pure: teacher only.",
       values=("annealing", "fixed", "pure"), group="distillation"),
    _S("distill_weight", "float", 0.5, "w of the fixed schedule.",
       check=lambda v: 0 <= v <= 1, message="must be in [0, 1]",
       group="distillation"),
    _S("init_from", "string", "", "Start from the final encoder and "
       "matching heads of another run's model_dir (trial "
       "--teacher_trial), e.g. single-task fine-tuning after "
       "multi-task training (Table 3).", group="distillation", path=True),
    _S("distill_temperature", "float", 1.0, "Softmax temperature applied "
       "to teacher logits.", check=_finite(lambda v: v > 0),
       message="must be > 0 and finite, got {value}", group="distillation"),
    # Derived by `resolve`: {task name: [teacher model_dir, ...]}; teachers
    # given as flagfiles (trained first if their outputs are missing); the
    # tasks themselves.
    _S("teacher_dirs", "derived", {}, type=Dict[str, List[str]]),
    _S("teacher_flagfiles", "derived", {}, type=Dict[str, str]),
    _S("tasks", "derived", (), type=List[TaskSpec]),
)
del _S

# Defaults that depend on the number of tasks (original code).
MULTI_TASK_DEFAULTS = {s.name: s.multi_task_default for s in SETTINGS
                       if s.multi_task_default is not None}
SINGLE_TASK_DEFAULTS = {s.name: s.single_task_default for s in SETTINGS
                        if s.single_task_default is not None}
# The original's debug mode: batch 32, 3 epochs (and no dataset multiples).
DEBUG_DEFAULTS = {s.name: s.debug_default for s in SETTINGS
                  if s.debug_default is not None}
# Settings that may change between invocations on the same model_dir.
RERUN_SAFE = frozenset(s.name for s in SETTINGS if s.rerun_safe)


def define_flags():
  """Defines every flag once (safe to call repeatedly)."""
  if "task_names" in FLAGS:
    return
  for setting in SETTINGS:
    if not setting.derived:
      setting.define_flag()


_GROUP_TITLES = {
    "run": "What to run and where it goes",
    "data": "Data",
    "model": "Model (the encoder and the heads)",
    "training": "Training",
    "distillation": "Distillation (BAM)",
    "hardware": "Hardware",
    "outputs": "Outputs and reporting",
}


def _default_text(setting: Setting) -> str:
  """The default as a user writes it; "by task count" where it depends on
  single- vs multi-task runs (the help says which)."""
  if setting.default is None:
    return "depends on the run"
  if setting.kind == "list":
    return ",".join(setting.default) or "none"
  if setting.kind == "bool":
    return "true" if setting.default else "false"
  return repr(setting.default) if setting.kind in ("string", "enum") \
      else str(setting.default)


def help_text(doc: str = "") -> str:
  """`run_classifier.py --help`: every project flag with its help, grouped
  (FLAG_GROUPS); absl's own and the libraries' flags stay in --helpfull."""
  wrap = lambda text, indent: textwrap.fill(
      text, width=80, initial_indent=indent, subsequent_indent=indent)
  out = [doc.strip(), ""] if doc else []
  for group in FLAG_GROUPS:
    out.append(f"{_GROUP_TITLES[group]}:")
    for setting in SETTINGS:
      if setting.group != group:
        continue
      choices = (f"; one of {', '.join(setting.values)}"
                 if setting.values else "")
      out.append(f"  --{setting.name} (default: "
                 f"{_default_text(setting)}{choices})")
      out.append(wrap(setting.help, "      "))
    out.append("")
  out.append("Also: --flagfile=FILE (flags from a file, one per line; later "
             "flags override it), --verbosity=N (show TensorFlow's own log "
             "lines too), --helpfull (every flag of every library).")
  return "\n".join(out)


def missing_settings(saved: Dict) -> List[str]:
  """Required settings a config.json lacks (written by another version)."""
  return [s.name for s in SETTINGS if s.required and s.name not in saved]


class _BamConfigBase:
  """What BamConfig computes from its fields (the fields: `SETTINGS`)."""

  @classmethod
  def from_json(cls, saved: Dict, need_data: bool = True, **overrides):
    """Rebuilds a resolved, validated config from a run's config.json.

    Derived fields are computed again and unknown keys (settings since
    removed) ignored; a setting an older config.json lacks takes its
    default. need_data=False skips the --data_dir checks: a finished run
    exports or predicts where its training data may be gone.
    """
    values = {s.name: saved[s.name] for s in SETTINGS
              if not s.derived and s.name in saved}
    values.update(overrides)
    missing = missing_settings(values)
    if missing:
      raise ConfigError(f"the saved config lacks {missing}; was it written "
                        "by another version of bam_tf?")
    return resolve(cls(**values), need_data=need_data)

  @property
  def teacher_output_trial_ids(self) -> List[int]:
    return [int(t) for t in self.teacher_output_trials]

  def teacher_flagfile_output_trials(self, flagfile: str) -> List[int]:
    """The trials a flagfile teacher writes outputs for when the recipe
    trains it: its own --teacher_output_trials (or the default) and the
    trial this student reads, so the recipe never takes the outputs other
    students of that teacher read."""
    given = flagfile_value(flagfile, "teacher_output_trials")
    if given is None:
      given = ",".join(default_of("teacher_output_trials"))
    trials = {int(t) for t in given.split(",") if t.strip()}
    return sorted(trials | {self.teacher_trial})

  @property
  def retrain_trial_ids(self) -> List[int]:
    return [int(t) for t in self.retrain_trials]

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

  @property
  def train_part_size(self) -> int:
    """--length_sorted_part_size where shapes may vary, else 0 (off)."""
    return self.length_sorted_part_size if self.use_dynamic_padding else 0

  def trial_seed(self, trial: int) -> int:
    return self.seed + trial

  def trial_dir(self, trial: int) -> str:
    return os.path.join(self.model_dir, f"trial_{trial}")

  def to_json_dict(self) -> Dict:
    d = dataclasses.asdict(self)
    d["tasks"] = [t.name for t in self.tasks]
    return d


# Keyword-only: the fields follow SETTINGS whether or not they have defaults.
BamConfig = dataclasses.make_dataclass(
    "BamConfig", [s.field() for s in SETTINGS], bases=(_BamConfigBase,),
    kw_only=True, namespace={
        "__module__": __name__,
        "__doc__": "Every setting of a run, resolved and validated."})


def _check(cond: bool, flag: str, message: str):
  if not cond:
    raise ConfigError(f"--{flag}: {message}")


def config_from_flags(flag_values=None) -> BamConfig:
  """Builds the config from parsed absl flags, applying the task defaults."""
  fv = FLAGS if flag_values is None else flag_values
  define_flags()
  values = {}
  for s in SETTINGS:
    if not s.derived:
      value = fv[s.name].value
      values[s.name] = s.from_flag(value) if s.from_flag else value
  config = resolve(BamConfig(**values))
  # Which flags were given (command line or flagfile), not only their
  # values: a mode that reads a finished run's settings tells a flag given
  # its default value from one not given.
  config.given_flags = frozenset(s.name for s in SETTINGS
                                 if not s.derived and fv[s.name].present)
  check_mode_flags(config)
  return config


def config_from_args(args: List[str]) -> BamConfig:
  """The config of a run_classifier.py command line (e.g. a recipe's
  teacher, trained in the same process), parsed apart from the process's
  own flags and checked as run_classifier.py checks it."""
  flag_values = flags.FlagValues()
  for s in SETTINGS:
    if not s.derived:
      s.define_flag(flag_values)
  try:
    flag_values(["run_classifier.py"] + list(args))
  except flags.Error as e:
    raise ConfigError(str(e)) from e
  config = config_from_flags(flag_values)
  check_paths(config)
  return config


def resolve(config: BamConfig, need_data: bool = True) -> BamConfig:
  """Applies single/multi-task defaults to unset values and validates.

  need_data=False: see `validate`.
  """
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
  validate(config, need_data=need_data)
  config.teacher_dirs = parse_teachers(config)
  return config


def default_of(name: str):
  """A setting's flag default."""
  return next(s.default for s in SETTINGS if s.name == name)


def flagfile_value(path: str, flag: str) -> Optional[str]:
  """The last value a flagfile gives a flag (None if it gives none)."""
  value = None
  for line in files.read_text(path).splitlines():
    line = line.strip()
    if line.startswith(f"--{flag}="):
      value = line.split("=", 1)[1]
  return value


def _teacher_dir(config: BamConfig, spec: str) -> str:
  """A teacher is a model_dir, or a flagfile whose --model_dir it uses (and
  which the recipe runs first when that run has no outputs yet)."""
  if not spec.endswith(".cfg"):
    return spec
  _check(files.isfile(spec), "teachers", f"flagfile {spec!r} not found")
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
  out, named = {}, set()
  for item in config.teachers.split(","):
    name, sep, dirs = item.partition(":")
    _check(bool(sep) and bool(dirs), "teachers",
           f"{item!r} is not TASK:DIR (or TASK:DIR1+DIR2)")
    _check(bool(name.strip()), "teachers",
           f"{item!r} names no task (TASK:DIR, or all:DIR)")
    paths = [_teacher_dir(config, d) for d in dirs.split("+") if d]
    _check(bool(paths), "teachers", f"{item!r} names no teacher folder")
    _check(len(set(paths)) == len(paths), "teachers",
           f"{item!r} names a teacher twice")
    if name.strip().lower() == "all":
      _check("all" not in named, "teachers", "'all' is given twice")
      named.add("all")
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
    _check(task.name not in named, "teachers",
           f"task {task.name!r} is given twice (an ensemble is one item: "
           "TASK:DIR1+DIR2)")
    named.add(task.name)
    out[task.name] = paths
  return out


def validate(config: BamConfig, need_data: bool = True):
  """Checks values before any work; raises ConfigError naming the flag.

  Each setting's own check comes from `SETTINGS`; the rules that tie
  settings together are here. need_data=False skips the --data_dir checks
  (a finished run exports or predicts without its training data). What
  this invocation will write to and the runs it starts from are checked by
  `check_paths`.
  """
  c = config
  for setting in SETTINGS:
    if setting.check is not None:
      value = getattr(c, setting.name)
      if not setting.check(value):
        _check(False, setting.name, setting.message(value)
               if callable(setting.message)
               else setting.message.format(value=value))
  _check(c.seed + c.num_trials - 1 < SEED_LIMIT, "seed",
         f"trial t uses --seed + t: {c.seed} + {c.num_trials - 1} (the last "
         "of --num_trials) must be below 2^32")
  for flag, ids in (("retrain_trials", c.retrain_trial_ids),
                    ("teacher_output_trials", c.teacher_output_trial_ids)):
    beyond = sorted(t for t in ids if t >= c.num_trials)
    _check(not beyond, flag,
           f"trial {beyond[0] if beyond else ''} is not one of the "
           f"--num_trials={c.num_trials} trials (they count from 0: "
           f"0..{c.num_trials - 1}); nothing would be done for it")
  _check(c.distill_schedule == "fixed"
         or c.distill_weight == default_of("distill_weight"),
         "distill_weight", f"{c.distill_weight} is the weight of "
         f"--distill_schedule=fixed; the {c.distill_schedule} schedule "
         "would ignore it")
  _check(not c.tpu or c.strategy == "tpu", "tpu",
         "given without --strategy=tpu")
  _check(not (c.strategy == "tpu" and c.mixed_precision == "mixed_float16"),
         "mixed_precision", "TPUs compute in bfloat16: use mixed_bfloat16 "
         "with --strategy=tpu")
  _check(not (c.jit_compile and c.train_part_size), "length_sorted_part_size",
         "not with --jit_compile: XLA compiles a program per shape, and the "
         "parts' widths change with every batch (use one or the other)")
  # --mode=eval reads the run's tasks and data (check_paths checks them).
  if need_data and c.mode in ("train", "inspect_data"):
    _check_data(c)  # predict: the run's own tasks, in check_paths
  _check(not c.checkpoint or c.mode == "eval", "checkpoint",
         "given without --mode=eval")
  if c.mode in ("train", "predict", "export", "eval"):
    _check(bool(c.model_dir), "model_dir", "is required")
  if c.mode in ("predict", "export", "eval"):
    _check(files.isfile(os.path.join(c.model_dir, "config.json")),
           "model_dir", f"{c.model_dir!r} holds no finished run "
           "(config.json missing)")
  encoder_flags = [f for f in ("hub_module_url", "bert_checkpoint_dir",
                               "hf_checkpoint_dir") if getattr(c, f)]
  if len(encoder_flags) > 1:
    _check(False, encoder_flags[-1], f"give either --{encoder_flags[0]} or "
           f"--{encoder_flags[-1]}, not both")
  for flag in encoder_flags:  # --debug does not load it: checked here
    value = getattr(c, flag)
    _check(not files.is_local(value) or files.exists(value), flag,
           f"{value!r} does not exist (a local folder, or a handle such as "
           "https://... or gs://...)")
  if c.hf_checkpoint_dir and not c.debug:
    try:
      folder = hf_bert.read_folder(c.hf_checkpoint_dir)
    except hf_bert.CheckpointError as e:
      raise ConfigError(str(e)) from None
    _check(c.do_lower_case is not None or folder.do_lower_case is not None,
           "do_lower_case", f"{c.hf_checkpoint_dir} does not say whether its "
           "vocabulary is cased (tokenizer_config.json's do_lower_case): "
           "pass --do_lower_case=true or false")


def _check_data(c: BamConfig):
  """The data this mode reads is there: --data_dir (and the columns of
  --custom_tasks' files), or the TFDS datasets."""
  if c.data_source == sources.TFDS:
    _check_tfds(c)  # --data_dir is not read
    return
  _check(bool(c.data_dir), "data_dir", "is required (a glue_data root)")
  _check(files.isdir(c.data_dir), "data_dir",
         f"{c.data_dir!r} is not a directory")
  for task in c.tasks:
    if task.name not in glue.GLUE_TASKS:  # declared by --custom_tasks
      try:
        readers.check_columns(task, c.data_dir)
      except readers.DataError as e:
        raise ConfigError(f"--custom_tasks: {e}") from None


def _check_tfds(c: BamConfig):
  """Every task a GLUE task whose TFDS dataset is prepared with the splits
  this mode reads (one line naming the flag and the dataset)."""
  for task in c.tasks:
    splits = {"train": ["train", task.dev_split],
              "inspect_data": ["train", task.dev_split],
              "eval": [task.dev_split]}.get(
                  c.mode, [s for s in tfds_glue.tfds_splits(task)
                           if s not in ("train", task.dev_split)])
    try:
      tfds_glue.check_prepared(task, c.tfds_data_dir, splits)
    except tfds_glue.TfdsError as e:
      raise ConfigError(str(e)) from None


# Where a finished trial's final weights live (bam_tf.training.warm_start:
# FINAL_DIR/FINAL_PREFIX; tests/test_config.py checks they agree).
FINAL_WEIGHTS = os.path.join("final", "encoder_and_heads")


def final_weights_index(model_dir: str, trial: int) -> str:
  """The index file of a trial's final weights (what --init_from reads)."""
  return os.path.join(model_dir, f"trial_{trial}", FINAL_WEIGHTS + ".index")


def _check_writable(flag: str, path: str):
  """`path` is a folder, or can be made one (files.folder_problem)."""
  problem = files.folder_problem(path)
  if problem:
    raise ConfigError(f"--{flag}: {problem}")


def read_saved_config(model_dir: str, hint: str) -> Optional[Dict]:
  """model_dir/config.json (None when absent); one line naming the file when
  it cannot be read (e.g. a write cut short), ending with `hint`."""
  path = os.path.join(model_dir, "config.json")
  if not files.exists(path):
    return None
  where = path
  try:
    saved = files.read_json(path)
  except json.JSONDecodeError as e:
    where, problem = f"{path}:{e.lineno}", f"not valid JSON ({e.msg})"
  except UnicodeDecodeError:
    problem = "not UTF-8 text"
  except OSError as e:
    problem = f"cannot be read ({e.strerror})"
  else:
    if isinstance(saved, dict):
      return saved
    problem = "not a JSON object"
  raise ConfigError(f"--model_dir: {where}: {problem}; {hint}")


# Where a trial's checkpoints live (bam_tf.training.trainer's manager;
# tests/test_eval_mode.py checks they agree) and their names.
CHECKPOINTS_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)$")


def _checkpoint_steps(folder: str) -> List[int]:
  """The steps of the complete checkpoints in a checkpoints folder."""
  if not files.isdir(folder):
    return []
  found = (_CHECKPOINT_NAME.match(name[:-len(".index")])
           for name in files.listdir(folder) if name.endswith(".index"))
  return sorted(int(m.group(1)) for m in found if m)


def eval_checkpoint(config: BamConfig) -> str:
  """--checkpoint as the path of one of trial --trial's checkpoints
  (model_dir/trial_<t>/checkpoints/ckpt-N; that folder means its latest);
  '' without the flag. Anything else is a ConfigError naming the flag."""
  if not config.checkpoint:
    return ""
  folder = os.path.join(config.model_dir, f"trial_{config.trial}",
                        CHECKPOINTS_DIR)
  given = config.checkpoint
  # ckpt-N.index or ckpt-N.data-00000-of-00001 name the checkpoint too.
  path = re.sub(r"\.(index|data-\d+-of-\d+)$", "", given.rstrip("/"))
  steps = _checkpoint_steps(folder)
  if files.isdir(path):
    name = path
  else:
    name = os.path.dirname(path) if _CHECKPOINT_NAME.match(
        os.path.basename(path)) else ""
  _check(bool(name) and files.resolve(name) == files.resolve(folder),
         "checkpoint", f"{given} is not a checkpoint of trial "
         f"{config.trial} of {config.model_dir} (those are {folder}/ckpt-N, "
         "or that folder for the latest; --trial picks the trial)")
  have = ", ".join(f"ckpt-{s}" for s in steps) or "none"
  if files.isdir(path):
    _check(bool(steps), "checkpoint", f"{given} holds no complete "
           "checkpoint")
    return os.path.join(folder, f"ckpt-{steps[-1]}")
  path = os.path.join(folder, os.path.basename(path))
  _check(files.isfile(path + ".index"), "checkpoint",
         f"{given} not found (trial {config.trial}'s checkpoints: {have})")
  return path


def finished_run_config(saved: Dict, model_dir: str, custom_tasks: str = "",
                        **settings) -> BamConfig:
  """A finished run's config (its config.json, `saved`) for eval, predict
  or export, with `settings` of this invocation. What only training reads
  is cleared (teachers, --init_from: the final checkpoint holds their
  effect, and their paths need not exist here), the training data is not
  required, and the user task declarations must be those it trained with.

  `custom_tasks` (--custom_tasks of this invocation) reads the user tasks'
  declarations from there instead of from the file config.json names: the
  file may have moved since training. The declarations are checked against
  the ones recorded at training all the same.
  """
  recorded = saved.get("custom_tasks", "")
  if custom_tasks:
    settings["custom_tasks"] = custom_tasks
  elif recorded and not registry.is_inline(recorded) and (
      not files.exists(recorded)):
    raise ConfigError(
        f"--custom_tasks: {recorded}, the task declarations {model_dir} was "
        "trained with, is not there any more; give its new place with "
        "--custom_tasks=FILE")
  run = BamConfig.from_json(saved, need_data=False, model_dir=model_dir,
                            distill=False, teachers="", init_from="",
                            **settings)
  check_task_declarations(run)
  return run


# What --mode=eval, predict and export read of their own flags; every other
# setting is the finished run's (its config.json). `check_mode_flags`.
MODE_READS = {
    "eval": frozenset({
        "mode", "model_dir", "trial", "checkpoint", "cache_dir",
        "custom_tasks", "data_dir", "data_source", "tfds_data_dir",
        "eval_batch_size", "strategy", "tpu", "worker_timeout_s",
        "deterministic", "jit_compile"}),
    "predict": frozenset({
        "mode", "model_dir", "trial", "cache_dir", "custom_tasks",
        "data_dir", "data_source", "tfds_data_dir", "eval_batch_size",
        "deterministic"}),
    "export": frozenset({
        "mode", "model_dir", "trial", "cache_dir", "custom_tasks",
        "export_dir", "export_version", "deterministic"}),
}


def check_mode_flags(config: BamConfig):
  """Refuses a flag given to --mode=eval, predict or export that the mode
  does not read, where its value is not the run's own: `--task_names=cola`
  on an rte run would otherwise evaluate rte without a word, and a
  `--learning_rate` or `--strategy` there would look as if it mattered. A
  flagfile of the run itself (same values) passes."""
  reads = MODE_READS.get(config.mode)
  if reads is None:
    return
  saved = read_saved_config(config.model_dir, "--model_dir holds no "
                            "finished run") or {}
  current = config.to_json_dict()
  for name in sorted(config.given_flags):
    if name in reads or name not in saved:
      continue
    if _same_value(current.get(name), saved[name]):
      continue
    if name in ("task_names", "custom_tasks"):
      why = (f"--mode={config.mode} uses the run's own tasks "
             f"({', '.join(saved.get('task_names', []))})")
    else:
      why = (f"--mode={config.mode} does not read it (the run's config.json "
             f"holds {saved[name]!r})")
    raise ConfigError(f"--{name}: {why}; drop the flag")


def _same_value(now, saved) -> bool:
  if isinstance(now, (list, tuple)) and isinstance(saved, (list, tuple)):
    return list(now) == list(saved)
  if isinstance(now, float) or isinstance(saved, float):
    try:
      return math.isclose(float(now), float(saved), rel_tol=1e-12)
    except (TypeError, ValueError):
      return False
  return now == saved


def eval_run_config(config: BamConfig, saved: Optional[Dict] = None
                    ) -> BamConfig:
  """--mode=eval: the finished run's config (model_dir/config.json, or
  `saved`), with this invocation's settings of where and how it runs
  (strategy, batch, cache) and its dev data checked.

  The data is the run's own unless flags name other: --data_source=tfds
  (with --tfds_data_dir, or the run's) or --data_dir (TSV files). What only
  training reads (teachers, --init_from) is cleared, as for an export.
  """
  c = config
  if saved is None:
    saved = read_saved_config(c.model_dir, "--model_dir holds no finished "
                              "run")
  if saved is None:
    raise ConfigError(f"--model_dir: {c.model_dir!r} holds no finished run "
                      "(config.json missing)")
  data = given_data(c, saved)
  here = {name: getattr(c, name) for name in (
      "trial", "checkpoint", "cache_dir", "strategy", "tpu",
      "worker_timeout_s", "deterministic", "jit_compile")}
  # The batching moves predictions by float rounding: the run's batch, so
  # that its final weights give results.json's metrics exactly, unless
  # --eval_batch_size is given (its default value included).
  if "eval_batch_size" in getattr(c, "given_flags", ()) or (
      c.eval_batch_size != default_of("eval_batch_size")):
    here["eval_batch_size"] = c.eval_batch_size
  run = finished_run_config(saved, c.model_dir, custom_tasks=c.custom_tasks,
                            mode="eval", **here, **data)
  check_run_data(run, given=bool(data))
  return run


def given_data(c: BamConfig, saved: Dict) -> Dict:
  """The data settings of --mode=eval or predict on a finished run
  (`saved`: its config.json): the run's own (an empty dict) unless flags
  name other, --data_source=tfds (with --tfds_data_dir, or the run's) or
  --data_dir (TSV files)."""
  if c.data_source == sources.TFDS:
    return dict(data_source=sources.TFDS, tfds_data_dir=c.tfds_data_dir or (
        saved.get("tfds_data_dir", "")
        if saved.get("data_source") == sources.TFDS else ""))
  if c.data_dir:
    return dict(data_source=sources.TSV, data_dir=c.data_dir)
  return {}


def check_run_data(run: BamConfig, given: bool):
  """The data a finished run's eval or predict reads is there; where it is
  the run's own (`given` False), the line says how to read it elsewhere."""
  try:
    _check_data(run)
  except ConfigError as e:
    if given:
      raise
    raise ConfigError(f"{e} (the run's own data; --data_dir or "
                      "--data_source=tfds read its "
                      f"{'dev' if run.mode == 'eval' else 'test'} data from "
                      "elsewhere)") from None


def check_paths(config: BamConfig):
  """Checks what this invocation writes to and starts from, before anything
  is written, so a failed run leaves nothing that refuses its corrected
  rerun: the model_dir (or export_dir) is a folder or can be made one, its
  config.json (if any) is readable, --init_from holds the final weights of
  trial --teacher_trial.

  Not part of `validate`: flagfiles are resolved where the runs they name
  need not exist (a recipe's later stage starts from a run its first stage
  trains; BamConfig.from_json of a finished run elsewhere).
  """
  c = config
  if c.mode == "train":
    _check_writable("model_dir", c.model_dir)
    if not c.overwrite:
      read_saved_config(c.model_dir, "--overwrite deletes the run in "
                        "--model_dir, or use another --model_dir")
    else:
      try:
        saved = read_saved_config(c.model_dir, "")
      except ConfigError:
        saved = None  # cut short: --overwrite clears it
      check_overwritable(c.model_dir, saved)
  elif c.mode in ("predict", "export"):
    saved = read_saved_config(c.model_dir, "--model_dir holds no finished "
                              "run")
    if c.mode == "predict":
      for out in ("test_predictions", "glue_submission"):
        _check_writable("model_dir", os.path.join(c.model_dir, out,
                                                  f"trial_{c.trial}"))
      if saved is not None:  # the run's tasks, not this command's defaults
        data = given_data(c, saved)
        check_run_data(finished_run_config(
            saved, c.model_dir, custom_tasks=c.custom_tasks, mode="predict",
            **data), given=bool(data))
    elif c.export_dir:
      _check_writable("export_dir", c.export_dir)
    else:
      _check_writable("model_dir", os.path.join(c.model_dir, "export"))
    if c.mode == "export" and saved is not None:
      finished_run_config(saved, c.model_dir, custom_tasks=c.custom_tasks,
                          mode="export")
    if c.mode == "export" and c.export_version:
      base = c.export_dir or os.path.join(c.model_dir, "export")
      _check(not files.exists(os.path.join(base, str(c.export_version))),
             "export_version", f"{c.export_version} already exists in "
             f"{base} (versions are never replaced: TF Serving may be "
             "serving it; choose another or delete it)")
  elif c.mode == "eval":
    saved = read_saved_config(c.model_dir, "--model_dir holds no finished "
                              "run")
    _check_writable("model_dir", os.path.join(c.model_dir, "eval"))
    if not c.checkpoint:
      index = final_weights_index(c.model_dir, c.trial)
      _check(files.isfile(index), "trial", f"trial {c.trial} of "
             f"{c.model_dir} has no final weights ({index} missing): has "
             "it finished? (--checkpoint evaluates one of its checkpoints)")
    eval_checkpoint(c)
    eval_run_config(c, saved)
  elif c.mode == "inspect_data" and c.model_dir:
    _check_writable("model_dir", c.model_dir)  # data_report.txt, .json
  if c.init_from and c.mode == "train":
    _check(files.isdir(c.init_from), "init_from",
           f"{c.init_from} is not a folder (a finished run's --model_dir)")
    index = final_weights_index(c.init_from, c.teacher_trial)
    _check(files.isfile(index), "init_from",
           f"{c.init_from} holds no final weights of trial "
           f"{c.teacher_trial} ({index} missing): is that run finished? "
           "(--teacher_trial picks the trial)")


def check_task_declarations(run: "BamConfig"):
  """A finished run evaluated, predicted or exported with the user task
  declarations it trained with: a label order swapped in the JSON since
  would flip every label without a word."""
  fingerprint = results.read_fingerprint(run.model_dir)
  if fingerprint is None:
    return  # trained before runs recorded their data
  change = registry.declaration_change(
      fingerprint.get("tasks", {}), registry.task_declarations(run.tasks))
  if change:
    raise ConfigError(f"--custom_tasks: {change} when "
                      f"{run.model_dir} was trained; restore the declaration "
                      "it was trained with")


# Keys every bam_tf run's config.json has held (older versions included).
_RUN_KEYS = ("task_names", "model_dir")


def check_overwritable(model_dir: str, saved: Optional[Dict]):
  """--overwrite clears only a bam_tf run: a config.json without a run's
  keys (a Hugging Face model folder, another tool's output) is refused, so
  a mistyped --model_dir never deletes what bam_tf did not write. An
  unreadable config.json is a run's cut short (ours are written
  atomically) and may be cleared."""
  if saved is not None and not all(k in saved for k in _RUN_KEYS):
    raise ConfigError(
        f"--model_dir: {os.path.join(model_dir, 'config.json')} is not a "
        f"bam_tf run's (it has no {' or '.join(_RUN_KEYS)}), so "
        "--overwrite does not delete that folder; use another --model_dir")


PATH_SETTINGS = frozenset(s.name for s in SETTINGS if s.path)


def _location(name: str, value: Any) -> Any:
  """A setting's value as a rerun compares it: paths (and the teachers'
  folders and flagfiles) by where they point, resolved from the current directory on
  both sides; inline JSON (--custom_tasks) and the rest as they are."""
  if name == "teachers" and isinstance(value, str) and value:
    return ",".join(
        f"{task}:{'+'.join(files.resolve(d) for d in dirs.split('+') if d)}"
        for task, _, dirs in (item.partition(":")
                              for item in value.split(",")))
  if name == "teacher_dirs" and isinstance(value, dict):
    return {task: [files.resolve(d) for d in dirs]
            for task, dirs in value.items()}
  if name == "teacher_flagfiles" and isinstance(value, dict):
    return {files.resolve(k): files.resolve(v) for k, v in value.items()}
  if (name in PATH_SETTINGS and isinstance(value, str) and value
      and not value.lstrip().startswith(("{", "["))):
    return files.resolve(value)
  return value


def config_differences(saved: Dict, config: BamConfig) -> List[str]:
  """Fields of a model_dir's config.json that this run would change.

  Not --model_dir: the folder holding config.json is the run, wherever it
  was made (a copied or moved run resumes, and config.json is rewritten
  with its new place)."""
  current = config.to_json_dict()
  # A config.json written before a setting existed holds that setting's
  # default (derived fields are not settings: always written).
  saved = dict(saved)
  for s in SETTINGS:
    if not (s.derived or s.required):
      saved.setdefault(s.name, s.field_default_value())
  return sorted(k for k in set(saved) | set(current)
                if k not in RERUN_SAFE and k != "model_dir"
                and _location(k, saved.get(k)) != _location(k, current.get(k)))


def run_differences(model_dir: str, args: List[str]
                    ) -> List[Tuple[str, Any, Any]]:
  """(setting, value in model_dir's config.json, value the run_classifier.py
  command line `args` gives) for each setting, rerun-safe ones aside, in
  which the run in model_dir is not the run `args` would train ([] when no
  run is there): what a recipe checks before it reuses a teacher run."""
  saved = read_saved_config(model_dir, "delete it to train that run again")
  if saved is None:
    return []
  wanted = config_from_args(args)
  now = wanted.to_json_dict()
  return [(k, saved.get(k, "(unset)"), now.get(k))
          for k in config_differences(saved, wanted)]


def save_config(config: BamConfig, path: str):
  files.write_text_atomic(path, json.dumps(config.to_json_dict(), indent=2,
                                           sort_keys=True))
