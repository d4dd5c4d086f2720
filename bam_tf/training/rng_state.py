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

A SavedModel's generators start from the state they were exported with,
which Keras drew at random when the export was made: every trial would
replay the same masks and two machines' exports would train differently.
`seed_encoder_dropout` restarts them from the trial's seed instead.
"""

import hashlib
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


def encoder_dropout_states(layer) -> Dict[str, tf.Variable]:
  """The dropout generators' state variables inside a loaded TF-Hub
  encoder (a hub.KerasLayer), by variable name. They are not among the
  layer's `variables`, so they are found in its object graph."""
  loaded = getattr(layer, "resolved_object", None)
  if loaded is None:
    return {}
  states = {}
  for obj in tf.train.TrackableView(loaded).descendants():
    if (isinstance(obj, tf.Variable) and obj.dtype == tf.int64
        and obj.name.split(":")[0].endswith("StateVar")):
      states[obj.name] = obj
  return states


_STATE_ALGORITHMS = {3: "philox", 2: "threefry"}


def seed_encoder_dropout(layer, seed: int) -> int:
  """Restarts every dropout stream of a loaded encoder from `seed` (each
  from its own key, derived from the seed and the variable's name), so the
  masks follow --seed and the trial rather than the export. A resumed run
  then restores the streams from its checkpoint. Returns how many streams
  were seeded (0 for exports with legacy stateful dropout or none)."""
  states = encoder_dropout_states(layer)
  for name, var in states.items():
    algorithm = _STATE_ALGORITHMS.get(int(var.shape[0]))
    if algorithm is None:
      raise ValueError(f"encoder dropout state {name} has shape {var.shape}:"
                       " not a Philox or ThreeFry generator state")
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    key = int.from_bytes(digest[:8], "little") >> 1  # a non-negative int64
    var.assign(tf.random.create_rng_state(key, algorithm))
  return len(states)
