"""ActNorm (Glow §3.1): a per-channel affine map y = (x + b) * exp(log_s), initialised from data.

log|det| = H * W * sum_c log_s_c. Data-dependent initialisation sets b = -mean and log_s = -log(std) per channel
on an initialisation batch, so the output starts with zero mean and unit variance per channel.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from t2v.bijectors.base import FlowBijector, per_example, spatial_size, step_slice

_INIT_EPS = 1e-6  # keeps log(std) finite on constant channels (e.g. a flat grey background)


class ActNormParams(keras.layers.Layer):
  """Scale and shift of `num_steps` ActNorm layers of `channels` channels: [K, C] each."""

  def __init__(self, num_steps: int, channels: int, **kwargs):
    super().__init__(**kwargs)
    if num_steps < 1 or channels < 1:
      raise ValueError(f"ActNormParams needs num_steps >= 1 and channels >= 1, got {num_steps}, {channels}")
    self.num_steps = num_steps
    self.channels = channels
    self.log_scale = self.add_weight(shape=(num_steps, channels), initializer="zeros", name="log_scale")
    self.bias = self.add_weight(shape=(num_steps, channels), initializer="zeros", name="bias")

  def initialize_from(self, x: tf.Tensor, step: int) -> None:
    """Sets step `step`'s parameters so that its output on `x` [N, H, W, C] has zero mean, unit variance."""
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])  # [C]
    log_scale = -0.5 * tf.math.log(variance + _INIT_EPS)
    index = [[step]]
    self.bias.assign(tf.tensor_scatter_nd_update(self.bias, index, [-mean]))
    self.log_scale.assign(tf.tensor_scatter_nd_update(self.log_scale, index, [log_scale]))

  def get_config(self):
    return {**super().get_config(), "num_steps": self.num_steps, "channels": self.channels}


class ActNorm(FlowBijector):
  """Per-channel affine normalisation with data-dependent initialisation.

  Args:
    params: the `ActNormParams` layer holding the scale and shift.
    step: which of its `num_steps` slices this bijector uses.
  """

  def __init__(self, params: ActNormParams, step: int | tf.Tensor = 0, name: str = "act_norm"):
    parameters = dict(locals())
    self._params = params
    self._step = step
    super().__init__(name=name, parameters=parameters)

  def _slices(self):
    return step_slice(self._params.log_scale, self._step), step_slice(self._params.bias, self._step)

  def _forward_and_log_det(self, x):
    log_scale, bias = self._slices()
    y = (x + bias) * tf.exp(log_scale)
    return y, per_example(spatial_size(x) * tf.reduce_sum(log_scale), x)

  def _inverse_and_log_det(self, y):
    log_scale, bias = self._slices()
    x = y * tf.exp(-log_scale) - bias
    return x, per_example(-spatial_size(y) * tf.reduce_sum(log_scale), y)
