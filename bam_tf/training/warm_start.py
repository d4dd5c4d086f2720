"""Final weights saved by name, and warm starts from another run.

The final checkpoint tracks the encoder and each task's head by task name
(not by layer position), so a run on other tasks can start from it: the
paper's Table 3 fine-tunes single-task models from a multi-task run
(`--init_from=MODEL_DIR`). Optimiser state is never carried over.
"""

import os
import re

import tensorflow as tf
from absl import logging

from bam_tf.common.errors import BamError
from bam_tf.modeling.multitask_model import head_name

FINAL_DIR = "final"
FINAL_PREFIX = "encoder_and_heads"


def _trackables(model, encoder_layer):
  items = {"encoder": encoder_layer}
  for task in model.tasks:
    items[head_name(task)] = model.get_layer(head_name(task))
  return items


def save_final(model, encoder_layer, trial_dir: str) -> str:
  ckpt = tf.train.Checkpoint(**_trackables(model, encoder_layer))
  return ckpt.write(os.path.join(trial_dir, FINAL_DIR, FINAL_PREFIX))


def _final_path(source_model_dir: str, trial: int) -> str:
  path = os.path.join(source_model_dir, f"trial_{trial}", FINAL_DIR,
                      FINAL_PREFIX)
  if not tf.io.gfile.exists(path + ".index"):
    raise BamError(f"--init_from: {path} not found; expected a finished run "
                   f"with trial {trial} (see --teacher_trial)")
  return path


def _restore(items, path: str):
  """Every variable of `items` from the checkpoint, or one line: a partial
  restore (another encoder whose shapes happen to fit) would otherwise
  train from half-initialised weights without a word."""
  try:
    status = tf.train.Checkpoint(**items).read(path)
    status.assert_existing_objects_matched()
  except AssertionError as e:  # TF's message lists the objects' values
    found = re.search(r"Found (\d+) Python objects", str(e))
    detail = (f"{found.group(1) if found else 'some'} of its objects have "
              "no value there")
  except (ValueError, tf.errors.OpError) as e:  # e.g. a shape mismatch
    detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
  else:
    status.expect_partial()  # the source's heads of tasks this run lacks
    return
  raise BamError(f"--init_from: {path} does not fit this run's "
                 f"{' and '.join(sorted(items))} ({detail}); was it trained "
                 "with another encoder?")


def check_fits(encoder_layer, source_model_dir: str, trial: int):
  """The source's encoder restores into this run's: checked before the
  model_dir is claimed, so a mismatch leaves nothing behind."""
  _restore({"encoder": encoder_layer}, _final_path(source_model_dir, trial))


def init_from(model, encoder_layer, source_model_dir: str, trial: int):
  """Loads the encoder and the heads of tasks both runs share."""
  path = _final_path(source_model_dir, trial)
  reader = tf.train.load_checkpoint(path)
  saved = {name.split("/")[0] for name in reader.get_variable_to_shape_map()}
  items = {k: v for k, v in _trackables(model, encoder_layer).items()
           if k in saved}
  _restore(items, path)
  logging.info("Initialised %s from %s", ", ".join(sorted(items)), path)
