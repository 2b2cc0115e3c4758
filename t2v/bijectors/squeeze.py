"""Squeeze (RealNVP §3.6): trade space for channels, [N, H, W, C] -> [N, H/2, W/2, 4C]; volume preserving."""

from __future__ import annotations

import tensorflow as tf

from t2v.bijectors.base import FlowBijector


class Squeeze(FlowBijector):
  """Each 2x2 spatial block becomes 4 channels (`tf.nn.space_to_depth`); the inverse is `depth_to_space`."""

  def __init__(self, name: str = "squeeze"):
    parameters = dict(locals())
    super().__init__(name=name, parameters=parameters)

  def _forward_and_log_det(self, x):
    height, width = x.shape[1], x.shape[2]
    if (height is not None and height % 2) or (width is not None and width % 2):
      raise ValueError(f"Squeeze needs even height and width, got {height}x{width}: use frame sizes divisible "
                       "by 2**num_levels")
    return tf.nn.space_to_depth(x, 2), tf.zeros(tf.shape(x)[:1], x.dtype)

  def _inverse_and_log_det(self, y):
    if y.shape[-1] is not None and y.shape[-1] % 4:
      raise ValueError(f"Squeeze inverse needs channels divisible by 4, got {y.shape[-1]}")
    return tf.nn.depth_to_space(y, 2), tf.zeros(tf.shape(y)[:1], y.dtype)
