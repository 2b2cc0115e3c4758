"""A convolutional LSTM cell (Shi et al., NeurIPS 2015), the recurrent state of VideoFlow's `conv_lstm` prior.

With x_t [N, H, W, C_in] and the state (h_{t-1}, c_{t-1}) [N, H, W, filters]:
  i, f, o, g = split(W_x * x_t + W_h * h_{t-1} + b)           (* is a 'same' 2-D convolution)
  c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
  h_t = sigmoid(o) tanh(c_t)
(no peephole terms). The input half W_x * x_t + b does not depend on the state, so a caller that knows every
x_t in advance (teacher forcing) computes it for all frames at once, frames folded into the batch, and only
the recurrent half runs inside the time loop: `input_gates` then `step`. `call` does both for one step.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_FORGET_BIAS = 1.0  # forget gates start mostly open, so the cell state carries over from the first step


def _gate_bias(filters: int):
  """Bias initialiser of the 4 gates (i, f, o, g): zeros except the forget gate at _FORGET_BIAS."""

  def initializer(shape, dtype=None):
    del shape
    bias = tf.concat([tf.zeros([filters]), tf.fill([filters], _FORGET_BIAS), tf.zeros([2 * filters])], 0)
    return tf.cast(bias, dtype or "float32")

  return initializer


class ConvLSTMCell(keras.layers.Layer):
  """One step of a convolutional LSTM.

  Args:
    filters: channels of the hidden state h and the cell state c.
    kernel_size: spatial size of both convolutions (square).
  """

  def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
    super().__init__(**kwargs)
    if filters < 1 or kernel_size < 1:
      raise ValueError(f"filters={filters} and kernel_size={kernel_size} must be >= 1")
    # ---- config
    self.filters = filters
    self.kernel_size = kernel_size
    # ---- layers
    init = keras.initializers.RandomNormal(stddev=0.05)
    self.input_conv = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", kernel_initializer=init,
                                          bias_initializer=_gate_bias(filters), name="input_conv")
    self.recurrent_conv = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", use_bias=False,
                                              kernel_initializer=init, name="recurrent_conv")

  def build(self, input_shape):
    self.input_conv.build(input_shape)
    self.recurrent_conv.build((*input_shape[:-1], self.filters))

  def initial_state(self, batch_size: tf.Tensor | int, spatial_shape: tuple[int, int]):
    """(h, c) of zeros [N, H, W, filters]: the state before the first step."""
    zeros = tf.zeros(tf.concat([[batch_size], spatial_shape, [self.filters]], 0))  # [N, H, W, filters]
    return zeros, zeros

  def input_gates(self, x: tf.Tensor) -> tf.Tensor:
    """W_x * x + b [N, H, W, 4*filters] of inputs x [N, H, W, C_in] (any frames folded into N)."""
    if not self.built:  # called outside __call__: create both kernels now, before any time loop
      self.build(x.shape)
    return self.input_conv(x)

  def step(self, gates_x: tf.Tensor, state):
    """One step from precomputed `input_gates` [N, H, W, 4*filters]: returns (h_t, (h_t, c_t))."""
    h, c = state
    gates = gates_x + self.recurrent_conv(h)  # [N, H, W, 4*filters]
    i, f, o, g = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, (h, c)

  def call(self, x: tf.Tensor, state):
    """One step from the input x [N, H, W, C_in]: returns (h_t, (h_t, c_t))."""
    return self.step(self.input_gates(x), state)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}
