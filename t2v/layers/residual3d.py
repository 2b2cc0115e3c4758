"""Time-causal 3-D convolutions and VideoFlow's residual block (VideoFlow appendix D).

Video tensors here are [N, T, H, W, C]. A time-causal convolution with a time kernel of size kt computes
  out[t] = sum_{i < kt} conv2d(x[t - (kt - 1 - i)], W_i)
(zero frames before t = 0), so out[t] never sees x[t' > t]. It is written as kt 2-D convolutions over frames
folded into the batch: cheap to trace, and dilation in space is then a 2-D dilated convolution.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from t2v.layers.precision import check_conv_dtype, conv_in
from t2v.layers.tracking import track_layers
from t2v.slicing import take


class CausalConv3D(keras.layers.Layer):
  """A [kt, kh, kw] convolution, causal in time, 'same' in space, optional spatial dilation.

  Args:
    filters: output channels.
    kernel_size: (kt, kh, kw).
    dilation: spatial dilation rate.
    zero_init: start with zero weights (the last layer of a residual branch, so blocks start as identity).
    conv_dtype: dtype of the 2-D convolutions ("float32" or "bfloat16", see t2v/layers/precision.py); the
      weights, the sum over time taps and the output stay float32.
  """

  def __init__(self, filters: int, kernel_size: tuple[int, int, int] = (2, 3, 3), dilation: int = 1,
               zero_init: bool = False, conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = tuple(kernel_size)
    self.dilation = dilation
    self.zero_init = zero_init
    self.conv_dtype = check_conv_dtype(conv_dtype)

  def build(self, input_shape):
    kt, kh, kw = self.kernel_size
    init = "zeros" if self.zero_init else keras.initializers.RandomNormal(stddev=0.05)
    self.kernel = self.add_weight(shape=(kt, kh, kw, input_shape[-1], self.filters), initializer=init,
                                  name="kernel")
    self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

  def call(self, x):
    kt = self.kernel_size[0]
    shape = tf.shape(x)
    n, t = shape[0], shape[1]
    static_t = x.shape[1]
    out = self.bias
    kernels = tf.unstack(self.kernel, axis=0)  # kt x [kh, kw, in, filters]
    for i in range(kt):
      delay = kt - 1 - i  # tap i reads x[t - delay]
      if static_t is not None:
        if delay >= static_t:
          continue  # a tap that sees only the zero padding (e.g. VideoFlow's K = 1 window): the sum is the same
        # x delayed by `delay` frames: zeros in front, the last `delay` frames dropped ([N, T, H, W, C]); split
        # and pad, whose gradients are cheap (t2v/slicing.py)
        frames = x if delay == 0 else tf.pad(take(x, 0, static_t - delay, axis=1),
                                             [[0, 0], [delay, 0], [0, 0], [0, 0], [0, 0]])
      else:
        padded = tf.pad(x, [[0, 0], [kt - 1, 0], [0, 0], [0, 0], [0, 0]])  # [N, T + kt - 1, H, W, C]
        frames = padded[:, i:i + t]  # [N, T, H, W, C]: x[t - delay]
      folded = tf.reshape(frames, tf.concat([[n * t], shape[2:]], 0))  # [N*T, H, W, C]
      out = out + self._spatial_conv(folded, kernels[i], x.shape[2:4])
    return tf.reshape(out, tf.concat([shape[:4], [self.filters]], 0))  # [N, T, H, W, filters]

  def _spatial_conv(self, x: tf.Tensor, kernel: tf.Tensor, spatial: tuple[int | None, int | None]) -> tf.Tensor:
    """'SAME' 2-D convolution of x [N, H, W, C] with kernel [kh, kw, C, filters] at this layer's dilation.

    A dilated convolution goes through `tf.nn.convolution`, which computes it on space-to-batch blocks: the
    gradient of the raw Conv2D op with dilations > 1 exists only in oneDNN, GPU and TPU kernels (TF's default
    CPU kernels, e.g. on AMD CPUs without oneDNN, reject it). Along an axis no longer than the dilation, every
    off-centre tap reads only the zero padding, so the kernel is cut to its centre there (an exact shortcut that
    VideoFlow's small top latents, 1x1 to 4x4, take at dilations 2 and 4).
    """
    if self.dilation == 1:
      return conv_in(self.conv_dtype, tf.nn.conv2d, x, kernel, strides=1, padding="SAME")
    kh, kw = self.kernel_size[1:]
    rates = []
    for axis, (size, k) in enumerate(zip(spatial, (kh, kw))):
      if size is not None and self.dilation >= size and k % 2 == 1:
        kernel = take(kernel, k // 2, k // 2 + 1, axis=axis)  # [.., 1, ..]: the centre tap along this axis
        rates.append(1)
      else:
        rates.append(self.dilation)
    if rates == [1, 1]:
      return conv_in(self.conv_dtype, tf.nn.conv2d, x, kernel, strides=1, padding="SAME")
    return conv_in(self.conv_dtype, tf.nn.convolution, x, kernel, padding="SAME", dilations=rates)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "dilation": self.dilation, "zero_init": self.zero_init, "conv_dtype": self.conv_dtype}


class GatedActivation(keras.layers.Layer):
  """tanh(W_a x) * sigmoid(W_b x) with 1x1x1 convolutions (WaveNet's gated activation unit)."""

  def __init__(self, filters: int, conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.conv_dtype = conv_dtype
    self.gate = CausalConv3D(2 * filters, (1, 1, 1), conv_dtype=conv_dtype, name="gate")

  def build(self, input_shape):
    self.gate.build(input_shape)

  def call(self, x):
    a, b = tf.split(self.gate(x), 2, axis=-1)
    return tf.tanh(a) * tf.sigmoid(b)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "conv_dtype": self.conv_dtype}


class ResidualBlock3D(keras.layers.Layer):
  """x + sum over dilation rates d of: [2x3x3 conv (dilation d) -> ReLU] -> gate -> zero-init 2x3x3 conv.

  Args:
    filters: channels of x and of every branch.
    dilations: spatial dilation rates of the parallel branches, (1, 2, 4) in the paper, (1,) to ablate.
    gating: the gated activation unit; False replaces it with a 1x1x1 conv and ReLU (ablation).
    conv_dtype: dtype of every convolution of the block (see CausalConv3D); the residual stream stays float32.
  """

  def __init__(self, filters: int, dilations: tuple[int, ...] = (1, 2, 4), gating: bool = True,
               conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.dilations = tuple(dilations)
    self.gating = gating
    self.conv_dtype = conv_dtype
    self.branches = []
    conv = lambda *args, **kw: CausalConv3D(*args, conv_dtype=conv_dtype, **kw)
    for d in self.dilations:
      first = conv(filters, (2, 3, 3), dilation=d, name=f"conv_in_d{d}")
      middle = (GatedActivation(filters, conv_dtype=conv_dtype, name=f"gated_d{d}") if gating
                else conv(filters, (1, 1, 1), name=f"conv_mid_d{d}"))
      last = conv(filters, (2, 3, 3), dilation=d, zero_init=True, name=f"conv_out_d{d}")
      self.branches.append((first, middle, last))
      track_layers(self, f"dilation_{d}", (first, middle, last))

  def build(self, input_shape):
    """Creates every branch's weights for inputs [N, T, H, W, C] (C = filters: the block is residual)."""
    hidden = (*input_shape[:-1], self.filters)
    for first, middle, last in self.branches:
      first.build(input_shape)
      middle.build(hidden)
      last.build(hidden)

  def call(self, x):
    out = x
    for first, middle, last in self.branches:
      h = tf.nn.relu(first(x))
      h = middle(h) if self.gating else tf.nn.relu(middle(h))
      out = out + last(h)
    return out

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "dilations": self.dilations, "gating": self.gating,
            "conv_dtype": self.conv_dtype}
