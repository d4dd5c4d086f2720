"""Where a run's examples come from: TSV files under --data_dir (any task)
or tensorflow-datasets' GLUE (--data_source=tfds). Both give the same
`Example`s for a GLUE split, so everything downstream (features, teacher
outputs, fingerprints) is the same code."""

from typing import List, Optional

from bam_tf.common import files
from bam_tf.tasks import readers
from bam_tf.tasks import tfds_glue
from bam_tf.tasks.task import Example, TaskSpec

TSV = "tsv"
TFDS = "tfds"
KINDS = (TSV, TFDS)


class TsvSource:
  """Each task's files under a glue_data-style root."""
  kind = TSV

  def __init__(self, data_dir: str):
    self.data_dir = data_dir

  def describe(self, task: TaskSpec, split: str) -> str:
    """The split's file: named in manifests, fingerprints and messages."""
    return readers.split_path(task, self.data_dir, split)

  def data_file(self, task: TaskSpec, split: str) -> Optional[str]:
    """The file whose bytes are hashed with the features (data_sha256)."""
    return readers.split_path(task, self.data_dir, split)

  def check_split(self, task: TaskSpec, split: str) -> str:
    """describe(...), or a BamError naming what is missing."""
    return readers.check_split_file(task, self.data_dir, split)

  def has_split(self, task: TaskSpec, split: str) -> bool:
    return split in task.splits and files.isfile(
        readers.split_path(task, self.data_dir, split))

  def read(self, task: TaskSpec, split: str, max_rows: Optional[int] = None,
           add_swapped: Optional[bool] = None) -> List[Example]:
    return readers.read_examples(task, self.data_dir, split,
                                 max_rows=max_rows, add_swapped=add_swapped)


class TfdsSource:
  """GLUE as prepared by tensorflow-datasets in tfds_data_dir ('' = TFDS's
  default). No file is hashed: a fingerprint or a teacher's stored outputs
  are matched by the examples' digest, which both sources share."""
  kind = TFDS

  def __init__(self, tfds_data_dir: str):
    self.tfds_data_dir = tfds_data_dir or None

  def describe(self, task: TaskSpec, split: str) -> str:
    return tfds_glue.describe(task, self.tfds_data_dir, split)

  def data_file(self, task: TaskSpec, split: str) -> Optional[str]:
    del task, split
    return None

  def check_split(self, task: TaskSpec, split: str) -> str:
    tfds_glue.check_prepared(task, self.tfds_data_dir, [split])
    return self.describe(task, split)

  def has_split(self, task: TaskSpec, split: str) -> bool:
    if split not in tfds_glue.tfds_splits(task):
      return False
    try:
      self.check_split(task, split)
    except tfds_glue.TfdsError:
      return False
    return True

  def read(self, task: TaskSpec, split: str, max_rows: Optional[int] = None,
           add_swapped: Optional[bool] = None) -> List[Example]:
    return tfds_glue.read_examples(task, self.tfds_data_dir, split,
                                   max_rows=max_rows, add_swapped=add_swapped)


def make(kind: str, data_dir: str = "", tfds_data_dir: str = ""):
  if kind == TFDS:
    return TfdsSource(tfds_data_dir)
  return TsvSource(data_dir)


def for_run(config):
  """The source a run's --data_source, --data_dir, --tfds_data_dir name."""
  return make(config.data_source, config.data_dir, config.tfds_data_dir)
