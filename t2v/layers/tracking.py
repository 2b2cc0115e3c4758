"""Checkpoint tracking for layers held in Python lists.

Keras 3 collects the weights of layers kept in a list attribute, but TensorFlow's object graph (what
`tf.train.Checkpoint` and SavedModel follow) only sees layers held directly as attributes: without this, a
model restored on its own (by the decoder or the hub exporter, with no optimizer) would silently keep its
initial weights. `track_layers` registers each listed layer as an attribute too; Keras does not count it twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def track_layers(owner: keras.layers.Layer, prefix: str, layers: Sequence[keras.layers.Layer]) -> list:
  """Sets `owner.<prefix>_<i>` for each layer and returns the layers as a list (keep it for iteration)."""
  for index, layer in enumerate(layers):
    setattr(owner, f"{prefix}_{index}", layer)
  return list(layers)
