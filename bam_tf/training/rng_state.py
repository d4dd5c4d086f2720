"""Dropout randomness that survives a kill: resumed runs equal unbroken ones.

Keras' default ("legacy stateful") dropout draws from random ops whose state
lives in the op kernels, so a resumed process replays the masks of step 0
instead of continuing the stream. With `tf.random.Generator`-backed dropout
the stream is a variable; Keras leaves it out of checkpoints on purpose (old
checkpoints stay loadable), so the trainer adds every generator to its
checkpoint itself (`random_generators`).

This covers the layers built in Python (heads, the --debug encoder). Dropout
inside a TF-Hub SavedModel is frozen into the exported graph: this project's
exports (hub_export.export_hub_pair) use generators too, whose state the loaded
KerasLayer checkpoints; third-party exports keep legacy stateful ops, whose
masks restart their stream after a resume (docs/RELIABILITY.md).
"""

from typing import Dict

import tensorflow as tf
import tf_keras


def use_checkpointable_dropout():
  """Switches Keras dropout to tf.random.Generator; call before building."""
  tf_keras.backend.experimental.enable_tf_random_generator()


def random_generators(model: tf_keras.Model) -> Dict[str, tf.random.Generator]:
  """The generators of the model's random layers, by a stable name (layer
  order and name), for tf.train.Checkpoint."""
  gens = {}
  layers = model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  for i, layer in enumerate(layers):
    rng = getattr(layer, "_random_generator", None)
    generator = getattr(rng, "_generator", None)
    if isinstance(generator, tf.random.Generator):
      gens[f"{i:04d}_{layer.name}"] = generator
  return gens
