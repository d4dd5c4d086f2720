"""The student side of born-again distillation.

Teacher outputs are checked against the student's own featurised train data
(every example id, label list, data fingerprint) before anything is written,
then joined into the student's train records by example id, so the train
step reads teacher probabilities straight from the batch (the trial's pool,
bam_tf.data.train_pool, gives records without a teacher zeros there).
"""

import os
from typing import Dict

from bam_tf.distill import teacher_outputs

STUDENT_FEATURES_DIR = "student_features"


def load_targets(config, data) -> Dict[str, "teacher_outputs.TeacherTargets"]:
  """Reads and validates every teacher's train outputs (writes nothing),
  and its dev outputs, which the teacher/student comparison reads after
  training: a missing or stale one fails here, not after hours of it."""
  targets = {}
  for task in config.tasks:
    dirs = config.teacher_dirs.get(task.name)
    if not dirs:
      continue
    for split in ("train", task.dev_split):
      manifest = data.manifests[task.name][split]
      loaded = teacher_outputs.load_teacher_targets(
          dirs, config.teacher_trial, task, split,
          teacher_outputs.feature_eids(data.records[task.name][split]),
          manifest["key_parts"]["data_sha256"],
          temperature=config.distill_temperature,
          student_examples_sha256=manifest["key_parts"]["examples_sha256"])
      if split == "train":
        targets[task.name] = loaded
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
