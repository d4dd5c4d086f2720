"""GLUE read through tensorflow-datasets (`--data_source=tfds`).

Gives exactly the examples the TSV readers give, so teacher outputs made
from either source join: the same texts, the same label strings (TFDS's
ClassLabel indices mapped back to the task's labels: by name where TFDS
names them as GLUE does, else by the integer GLUE writes), the same
regression scores, and the same example ids. The id is the example's rank
by TFDS's `idx` within its split: TFDS's `idx` is the row number in the
file TFDS read, which is the TSV row number for every task but MRPC (TFDS
reads MRPC from the original Microsoft files, where train and dev rows are
numbered together); the rank is the TSV row number for all of them. TFDS
stores a split shuffled; examples are put back in `idx` order first.

tensorflow_datasets is imported on first use (it takes seconds).
"""

from typing import Dict, List, Optional, Tuple

import numpy as np

from bam_tf.common.errors import BamError
from bam_tf.tasks import readers
from bam_tf.tasks.task import Example, TaskSpec

# Task -> (TFDS config, {our split: TFDS split}); MNLI's diagnostic set is
# the separate config glue/ax.
SPLITS: Dict[str, Tuple[str, Dict[str, str]]] = {
    "cola": ("cola", {"train": "train", "dev": "validation",
                      "test": "test"}),
    "sst": ("sst2", {"train": "train", "dev": "validation", "test": "test"}),
    "mrpc": ("mrpc", {"train": "train", "dev": "validation",
                      "test": "test"}),
    "sts": ("stsb", {"train": "train", "dev": "validation", "test": "test"}),
    "qqp": ("qqp", {"train": "train", "dev": "validation", "test": "test"}),
    "mnli": ("mnli", {"train": "train",
                      "dev_matched": "validation_matched",
                      "dev_mismatched": "validation_mismatched",
                      "test_matched": "test_matched",
                      "test_mismatched": "test_mismatched"}),
    "qnli": ("qnli", {"train": "train", "dev": "validation", "test": "test"}),
    "rte": ("rte", {"train": "train", "dev": "validation", "test": "test"}),
    "wnli": ("wnli", {"train": "train", "dev": "validation", "test": "test"}),
}
_EXTRA = {("mnli", "diagnostic"): ("ax", "test")}

# TFDS feature names of the first and second text of each config.
TEXT_FEATURES = {
    "cola": ("sentence", None), "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"), "ax": ("premise", "hypothesis"),
}

PREPARE_HINT = ("prepare it with `tfds build glue --config=CONFIG "
                "--data_dir=DIR` on a machine with network access, or from "
                "GLUE TSV files with `python -m bam_tf.tools.tfds_glue "
                "--glue_dir=... --tfds_data_dir=DIR`")


class TfdsError(BamError):
  """A TFDS GLUE dataset that is not there or not as expected."""


def dataset_of(task: TaskSpec, split: str) -> Tuple[str, str]:
  """(TFDS name like 'glue/cola', TFDS split) holding a task's split."""
  if (task.name, split) in _EXTRA:
    config, tfds_split = _EXTRA[(task.name, split)]
    return f"glue/{config}", tfds_split
  if task.name not in SPLITS:
    raise TfdsError(f"--data_source=tfds: task {task.name!r} is not a GLUE "
                    "task; tensorflow-datasets reads GLUE only (a user task "
                    "reads its files with --data_source=tsv)")
  config, splits = SPLITS[task.name]
  if split not in splits:
    raise TfdsError(f"--data_source=tfds: task {task.name!r} has no split "
                    f"{split!r} in glue/{config}")
  return f"glue/{config}", splits[split]


def tfds_splits(task: TaskSpec) -> List[str]:
  """Our names of the splits TFDS has for a task."""
  return [s for s in task.splits
          if s in SPLITS.get(task.name, ("", {}))[1]
          or (task.name, s) in _EXTRA]


def _builder(name: str, tfds_data_dir: Optional[str]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  where = tfds_data_dir or "TFDS's default data dir"
  try:
    builder = tfds.builder(name, data_dir=tfds_data_dir or None,
                           try_gcs=False)
  except Exception as e:  # pylint: disable=broad-except
    raise TfdsError(f"--tfds_data_dir: cannot open {name} in {where} "
                    f"({type(e).__name__}: {e}); {PREPARE_HINT}") from None
  if not builder.is_prepared():
    raise TfdsError(f"--tfds_data_dir: {where} holds no prepared {name} "
                    f"(looked for {builder.data_dir}); {PREPARE_HINT}")
  return builder


def check_prepared(task: TaskSpec, tfds_data_dir: Optional[str],
                   splits: List[str]):
  """Each split's dataset is prepared and has the split: before any work."""
  for split in splits:
    name, tfds_split = dataset_of(task, split)
    builder = _builder(name, tfds_data_dir)
    if tfds_split not in builder.info.splits:
      raise TfdsError(f"--tfds_data_dir: {builder.data_dir} has no split "
                      f"{tfds_split!r} (it has "
                      f"{', '.join(builder.info.splits)})")


def describe(task: TaskSpec, tfds_data_dir: Optional[str], split: str) -> str:
  """Where a split comes from, for manifests, fingerprints and messages."""
  name, tfds_split = dataset_of(task, split)
  return f"tfds:{name}:{tfds_split}@{tfds_data_dir or '~/tensorflow_datasets'}"


def _label_strings(task: TaskSpec, names: List[str]) -> List[str]:
  """The task's label string of each TFDS class index."""
  out = []
  for i, name in enumerate(names):
    if name in task.label_list:
      out.append(name)
    elif str(i) in task.label_list:  # GLUE writes 0/1 where TFDS names
      out.append(str(i))
    else:
      raise TfdsError(f"--data_source=tfds: class {i} ({name!r}) of the TFDS "
                      f"dataset maps to none of task {task.name!r}'s labels "
                      f"{list(task.label_list)}")
  return out


def _decode(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_examples(task: TaskSpec, tfds_data_dir: Optional[str], split: str,
                  max_rows: Optional[int] = None,
                  add_swapped: Optional[bool] = None) -> List[Example]:
  """One split as `Example`s, exactly as readers.read_examples gives the
  same split from GLUE's TSV files (ids, texts, labels, swapped copies)."""
  name, tfds_split = dataset_of(task, split)
  builder = _builder(name, tfds_data_dir)
  config = name.split("/", 1)[1]
  a_key, b_key = TEXT_FEATURES[config]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
  rows = {"idx": [], "a": [], "b": [], "label": []}
  for batch in tfds.as_numpy(ds.batch(4096)):
    rows["idx"].append(batch["idx"])
    rows["a"].extend(batch[a_key])
    rows["b"].extend(batch[b_key] if b_key else [None] * len(batch["idx"]))
    rows["label"].append(batch["label"])
  idx = np.concatenate(rows["idx"]) if rows["idx"] else np.zeros(0, np.int64)
  if len(np.unique(idx)) != len(idx):
    raise TfdsError(f"{describe(task, tfds_data_dir, split)}: duplicate idx "
                    "values")
  order = np.argsort(idx, kind="stable")
  if max_rows is not None:
    order = order[:max_rows]
  labels = np.concatenate(rows["label"]) if rows["label"] else []
  unlabelled = task.splits[split].label_col is None
  label_names = None
  if not task.is_regression and not unlabelled:
    label_names = _label_strings(
        task, builder.info.features["label"].names)
  examples = []
  for eid, i in enumerate(order):
    if unlabelled:
      label = 0.0 if task.is_regression else task.label_list[0]
    elif task.is_regression:
      label = float(labels[i])  # float32, as the TSV reader reads it
    else:
      label = label_names[int(labels[i])]
    text_b = _decode(rows["b"][i]) if b_key else None
    examples.append(Example(eid, task.name, _decode(rows["a"][i]), text_b,
                            label))
  return readers.with_swapped(examples, task, split, add_swapped)
