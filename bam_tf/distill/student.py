"""The student side of born-again distillation.

Teacher outputs are checked against the student's own featurised train data
(every example id, label list, data fingerprint) before anything is written,
then joined into the student's train records by example id, so the train
step reads teacher probabilities straight from the batch.
"""

import functools
import os
from typing import Dict, List

import tensorflow as tf

from bam_tf.data import pipeline
from bam_tf.distill import teacher_outputs

STUDENT_FEATURES_DIR = "student_features"


def load_targets(config, data) -> Dict[str, "teacher_outputs.TeacherTargets"]:
  """Reads and validates every teacher's train outputs (writes nothing)."""
  targets = {}
  for task in config.tasks:
    dirs = config.teacher_dirs.get(task.name)
    if not dirs:
      continue
    manifest = data.manifests[task.name]["train"]
    targets[task.name] = teacher_outputs.load_teacher_targets(
        dirs, config.teacher_trial, task, "train",
        teacher_outputs.feature_eids(data.records[task.name]["train"]),
        manifest["key_parts"]["data_sha256"],
        temperature=config.distill_temperature)
  return targets


def join_records(config, data, targets) -> Dict[str, str]:
  """Writes the student's train records with teacher outputs joined in."""
  paths = {}
  for task_name, target in targets.items():
    out = os.path.join(config.model_dir, STUDENT_FEATURES_DIR,
                       f"{task_name}_train.tfrecord")
    teacher_outputs.join_teacher_targets(data.records[task_name]["train"],
                                         target, out)
    paths[task_name] = out
  return paths


def train_task_datasets(config, data, student_paths) -> List[tf.data.Dataset]:
  """Per-task train datasets that all carry `teacher_probs` (classification,
  zero-padded to the widest label set) and `teacher_value` (regression).

  Tasks without a teacher get zeros there (their targets stay gold), so all
  tasks' records share one structure and can be mixed in a batch.
  """
  width = max(t.num_labels for t in config.tasks)
  loader = functools.partial(teacher_outputs.load_student_dataset,
                             probs_width=width)
  out = []
  for task in config.tasks:
    if task.name in student_paths:
      ds = pipeline.task_dataset(student_paths[task.name], loader=loader)
    else:
      ds = pipeline.task_dataset(data.records[task.name]["train"]).map(
          lambda r: dict(r, teacher_probs=tf.zeros([width], tf.float32),
                         teacher_value=tf.constant(0.0, tf.float32)))
    out.append(ds)
  return out
