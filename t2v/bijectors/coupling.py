"""Affine and additive coupling layers (Glow §3.3, RealNVP) with an optional conditioning input.

The input x [N, H, W, C] is split along channels into x_a (the first C - C//2) and x_b (the last C//2).
The coupling network sees x_a, and the conditioning tensor when one is given (concatenated along channels:
the label-conditioned Glow feeds a feature pyramid this way), and returns h:
  affine:   shift, raw = h[..., 0::2], h[..., 1::2];  s = sigmoid(raw + 2);  y_b = (x_b + shift) * s
            log|det| = sum over H, W, C//2 of log s
            (the network's output channels interleave (shift, raw) pairs, Glow's layout, which checkpoints
            keep; the coupling reads them through a permutation of the last layer's weights, so that shift and
            raw are two contiguous halves: a strided slice's gradient is slow on CPU, see t2v/slicing.py)
  additive: shift = h;  y_b = x_b + shift;  log|det| = 0
and y = concat(x_a, y_b). The inverse recomputes h from y_a = x_a, so the flow stays exactly invertible for
any fixed conditioning tensor.

Since h is the same computed from x or from y, each coupling also exposes the three parts separately:
`network_output(x_or_y, cond)` -> h, `forward_from_network(x, h)` and `inverse_from_network(y, h)`; the
reversible backward pass (reversible.py) evaluates the network once per step through them.

The network is conv3x3 -> act -> conv1x1 -> act -> zero-initialised conv3x3 (with Glow's learned per-channel
output scale exp(3 * logs), also zero-initialised), act being ReLU or a gated unit tanh(a) * sigmoid(b). Its
weights for all K steps of a flow level live in one `CouplingNet` layer with a leading step axis.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from t2v.bijectors.base import FlowBijector, step_slice
from t2v.layers.precision import check_conv_dtype, conv_in
from t2v.slicing import split_at

_SCALE_BIAS = 2.0  # sigmoid(h + 2) starts near 0.88: a gentle, stable initial scale (Glow's code)
_LOGSCALE_FACTOR = 3.0  # Glow's zero-initialised output layer multiplies its log-scale by this


class CouplingNet(keras.layers.Layer):
  """Coupling networks of `num_steps` steps: [K, ...]-stacked conv weights, called one step at a time.

  Args:
    num_steps: K, the steps of flow sharing this stack.
    in_channels: channels of x_a.
    out_channels: channels of h (2 * C//2 for affine, C//2 for additive).
    hidden_channels: width of the two hidden convolutions.
    cond_channels: channels of the conditioning tensor (0: unconditional).
    activation: "relu" or "gated".
    conv_dtype: dtype of the three convolutions ("float32" or "bfloat16", see t2v/layers/precision.py);
      weights and the output h stay float32.
  """

  def __init__(self, num_steps: int, in_channels: int, out_channels: int, hidden_channels: int,
               cond_channels: int = 0, activation: str = "relu", conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    if activation not in ("relu", "gated"):
      raise ValueError(f"coupling activation={activation!r} must be 'relu' or 'gated'")
    if min(num_steps, in_channels, out_channels, hidden_channels) < 1 or cond_channels < 0:
      raise ValueError(f"CouplingNet sizes must be positive: steps={num_steps}, in={in_channels}, "
                       f"out={out_channels}, hidden={hidden_channels}, cond={cond_channels}")
    # ---- config
    self.num_steps = num_steps
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.hidden_channels = hidden_channels
    self.cond_channels = cond_channels
    self.activation = activation
    self.conv_dtype = check_conv_dtype(conv_dtype)
    # ---- weights: a gated unit needs twice the pre-activation channels
    k, width = num_steps, hidden_channels
    pre = 2 * width if activation == "gated" else width
    normal = keras.initializers.RandomNormal(stddev=0.05)
    self.w1 = self.add_weight(shape=(k, 3, 3, in_channels + cond_channels, pre), initializer=normal, name="w1")
    self.b1 = self.add_weight(shape=(k, pre), initializer="zeros", name="b1")
    self.w2 = self.add_weight(shape=(k, 1, 1, width, pre), initializer=normal, name="w2")
    self.b2 = self.add_weight(shape=(k, pre), initializer="zeros", name="b2")
    self.w3 = self.add_weight(shape=(k, 3, 3, width, out_channels), initializer="zeros", name="w3")
    self.b3 = self.add_weight(shape=(k, out_channels), initializer="zeros", name="b3")
    self.logs3 = self.add_weight(shape=(k, out_channels), initializer="zeros", name="logs3")

  def _act(self, h):
    if self.activation == "gated":
      a, b = tf.split(h, 2, axis=-1)
      return tf.tanh(a) * tf.sigmoid(b)
    return tf.nn.relu(h)

  def call(self, x_a, step=0, cond=None, pairs_first=False):
    """h [N, H, W, out_channels] for x_a [N, H, W, in_channels] at step `step`.

    pairs_first: the output channels are stored as interleaved pairs (a_0, b_0, a_1, b_1, ...); return them
      as (a_0, a_1, ..., b_0, b_1, ...), by permuting the last layer's weights rather than h (a weight-sized
      transpose instead of a strided slice of h, whose gradient is slow on CPU).
    """
    if self.cond_channels:
      if cond is None:
        raise ValueError(f"this coupling network was built for a {self.cond_channels}-channel conditioning "
                         "input; pass cond=")
      x_a = tf.concat([x_a, cond], axis=-1)
    elif cond is not None:
      raise ValueError("this coupling network takes no conditioning input (cond_channels=0)")
    if pairs_first and self.out_channels % 2:
      raise ValueError(f"pairs_first needs an even number of output channels, got {self.out_channels}")
    w = lambda v: step_slice(v, step)
    out = lambda v: _pairs_first(w(v)) if pairs_first else w(v)
    conv = lambda h, kernel, bias: tf.nn.bias_add(
        conv_in(self.conv_dtype, tf.nn.conv2d, h, kernel, strides=1, padding="SAME"), bias)
    h = self._act(conv(x_a, w(self.w1), w(self.b1)))
    h = self._act(conv(h, w(self.w2), w(self.b2)))
    # Glow's output scale exp(3 * logs) per channel, folded into the last layer's weights (the same function:
    # (conv(h, w) + b) * s = conv(h, w * s) + b * s), so no activation-sized product is formed or differentiated
    scale = tf.exp(_LOGSCALE_FACTOR * out(self.logs3))  # [out_channels]
    return conv(h, out(self.w3) * scale, out(self.b3) * scale)

  def get_config(self):
    return {**super().get_config(), "num_steps": self.num_steps, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "hidden_channels": self.hidden_channels,
            "cond_channels": self.cond_channels, "activation": self.activation,
            "conv_dtype": self.conv_dtype}


def _pairs_first(v: tf.Tensor) -> tf.Tensor:
  """v[..., (0, 2, 4, ..., 1, 3, 5, ...)] of a weight [..., 2m] of static shape: its interleaved pairs split apart."""
  shape = v.shape.as_list()
  pairs = tf.reshape(v, shape[:-1] + [shape[-1] // 2, 2])  # [..., m, 2]
  return tf.reshape(tf.transpose(pairs, [*range(len(shape) - 1), len(shape), len(shape) - 1]), shape)  # [..., 2m]


def split_channels(x):
  """(x_a, x_b): the first C - C//2 and the last C//2 channels."""
  c = x.shape[-1]
  return split_at(x, c - c // 2)


class _Coupling(FlowBijector):
  """What affine and additive couplings share: the network on the untouched half, and the split into
  network output and the map of x_b given it (`_forward_from_network` / `_inverse_from_network`)."""

  _kind = ""
  _pairs_first = False  # whether the coupling reads the network's interleaved output pairs de-interleaved

  def __init__(self, net: CouplingNet, step: int | tf.Tensor, name: str, parameters: dict):
    self._net = net
    self._step = step
    super().__init__(name=name, parameters=parameters)

  def network_output(self, x: tf.Tensor, cond: tf.Tensor | None = None) -> tf.Tensor:
    """h [N, H, W, out_channels] of x or y [N, H, W, C] (it reads only the first C - C//2 channels), in the
    channel order that `forward_from_network` and `inverse_from_network` read."""
    _check_net(self._net, self._kind, x.shape[-1])
    return self._net(split_channels(x)[0], step=self._step, cond=cond, pairs_first=self._pairs_first)

  def forward_from_network(self, x: tf.Tensor, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(y [N, H, W, C], log-det [N]) given h = network_output(x, cond)."""
    x_a, x_b = split_channels(x)
    y_b, log_det = self._forward_from_network(x_b, h)
    return tf.concat([x_a, y_b], axis=-1), log_det

  def inverse_from_network(self, y: tf.Tensor, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(x [N, H, W, C], log-det [N]) given h = network_output(y, cond)."""
    y_a, y_b = split_channels(y)
    x_b, log_det = self._inverse_from_network(y_b, h)
    return tf.concat([y_a, x_b], axis=-1), log_det

  def _forward_and_log_det(self, x, cond=None):
    return self.forward_from_network(x, self.network_output(x, cond))

  def _inverse_and_log_det(self, y, cond=None):
    return self.inverse_from_network(y, self.network_output(y, cond))


class AffineCoupling(_Coupling):
  """y_b = (x_b + shift) * sigmoid(raw + 2), (shift, raw) = NN(x_a [, cond]); see the module docstring."""

  _kind = "affine"
  _pairs_first = True  # stored as (shift_0, raw_0, shift_1, ...), read as (shift_0, shift_1, ..., raw_0, ...)

  def __init__(self, net: CouplingNet, step: int | tf.Tensor = 0, name: str = "affine_coupling"):
    parameters = dict(locals())
    super().__init__(net, step, name, parameters)

  @staticmethod
  def _shift_and_log_scale(h):
    shift, raw = tf.split(h, 2, axis=-1)  # h read pairs first: the shifts, then the raw scales
    return shift, tf.math.log_sigmoid(raw + _SCALE_BIAS)

  def _forward_from_network(self, x_b, h):
    shift, log_scale = self._shift_and_log_scale(h)
    return (x_b + shift) * tf.exp(log_scale), tf.reduce_sum(log_scale, axis=[1, 2, 3])

  def _inverse_from_network(self, y_b, h):
    shift, log_scale = self._shift_and_log_scale(h)
    return y_b * tf.exp(-log_scale) - shift, -tf.reduce_sum(log_scale, axis=[1, 2, 3])


class AdditiveCoupling(_Coupling):
  """y_b = x_b + NN(x_a [, cond]); volume preserving."""

  _kind = "additive"

  def __init__(self, net: CouplingNet, step: int | tf.Tensor = 0, name: str = "additive_coupling"):
    parameters = dict(locals())
    super().__init__(net, step, name, parameters)

  def _forward_from_network(self, x_b, h):
    return x_b + h, tf.zeros(tf.shape(x_b)[:1], x_b.dtype)

  def _inverse_from_network(self, y_b, h):
    return y_b - h, tf.zeros(tf.shape(y_b)[:1], y_b.dtype)


def coupling_out_channels(kind: str, channels: int) -> int:
  """Channels the coupling network must output for a `channels`-channel input."""
  if kind == "affine":
    return 2 * (channels // 2)
  if kind == "additive":
    return channels // 2
  raise ValueError(f"coupling={kind!r} must be 'affine' or 'additive'")


def _check_net(net: CouplingNet, kind: str, channels: int) -> None:
  """A coupling network must match the input's channels: x_a in, (shift[, scale]) for x_b out."""
  in_expected, out_expected = channels - channels // 2, coupling_out_channels(kind, channels)
  if (net.in_channels, net.out_channels) != (in_expected, out_expected):
    raise ValueError(f"a {kind} coupling of a {channels}-channel input needs a CouplingNet with in_channels="
                     f"{in_expected} and out_channels={out_expected}, got {net.in_channels} and {net.out_channels}")
