"""Invertible 1x1 convolution in LU form (Glow §3.2): y[..., :] = x[..., :] @ W for every pixel.

W = P @ L @ (U + diag(sign * exp(log_abs_s))) with a fixed permutation P, unit-lower-triangular L, strictly
upper-triangular U, fixed signs and learned log|s|; initialised from a random rotation, so W starts orthogonal.
log|det| = H * W * sum log|s|, which costs O(C) instead of the O(C^3) of a general determinant.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from t2v.bijectors.base import FlowBijector, per_example, spatial_size, step_slice


def _random_rotation_lu(channels: int, rng: np.random.Generator):
  """P, L, U, sign(s), log|s| of the LU decomposition of a random orthogonal matrix."""
  q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
  q = q * np.sign(np.diag(r))  # a uniformly random rotation/reflection
  lu, perm = tf.linalg.lu(tf.constant(q, tf.float64))  # q[perm] = L @ U
  lu = lu.numpy()
  lower = np.tril(lu, -1) + np.eye(channels)
  upper = np.triu(lu, 1)
  s = np.diag(lu)
  permutation = np.eye(channels)[perm.numpy()].T  # q = permutation @ L @ U
  return permutation, lower, upper, np.sign(s), np.log(np.abs(s))


class InvertibleConvParams(keras.layers.Layer):
  """LU factors of `num_steps` invertible 1x1 convolutions over `channels` channels: [K, C, C] and [K, C]."""

  def __init__(self, num_steps: int, channels: int, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    if num_steps < 1 or channels < 1:
      raise ValueError(f"InvertibleConvParams needs num_steps >= 1 and channels >= 1, got {num_steps}, {channels}")
    self.num_steps = num_steps
    self.channels = channels
    self.seed = seed
    rng = np.random.default_rng(seed)
    factors = [_random_rotation_lu(channels, rng) for _ in range(num_steps)]
    p, lower, upper, sign, log_abs = (np.stack(f).astype(np.float32) for f in zip(*factors))

    def weight(name, value, trainable):
      return self.add_weight(shape=value.shape, initializer=keras.initializers.Constant(value), name=name,
                             trainable=trainable)

    self.permutation = weight("permutation", p, False)
    self.lower = weight("lower", lower, True)
    self.upper = weight("upper", upper, True)
    self.sign = weight("sign", sign, False)
    self.log_abs_s = weight("log_abs_s", log_abs, True)

  def get_config(self):
    return {**super().get_config(), "num_steps": self.num_steps, "channels": self.channels, "seed": self.seed}


class InvertibleConv1x1(FlowBijector):
  """y = x @ W per pixel with W in LU form; see the module docstring."""

  def __init__(self, params: InvertibleConvParams, step: int | tf.Tensor = 0, name: str = "invertible_conv_1x1"):
    parameters = dict(locals())
    self._params = params
    self._step = step
    super().__init__(name=name, parameters=parameters)

  def _factors(self):
    p = self._params
    lower = tf.linalg.band_part(step_slice(p.lower, self._step), -1, 0)
    lower = tf.linalg.set_diag(lower, tf.ones([p.channels]))  # unit lower-triangular
    upper = tf.linalg.band_part(step_slice(p.upper, self._step), 0, -1)
    log_abs_s = step_slice(p.log_abs_s, self._step)
    upper = tf.linalg.set_diag(upper, step_slice(p.sign, self._step) * tf.exp(log_abs_s))
    return step_slice(p.permutation, self._step), lower, upper, log_abs_s

  def weight(self) -> tf.Tensor:
    """W [C, C]."""
    permutation, lower, upper, _ = self._factors()
    return permutation @ lower @ upper

  def _forward_and_log_det(self, x):
    permutation, lower, upper, log_abs_s = self._factors()
    y = tf.einsum("nhwc,cd->nhwd", x, permutation @ lower @ upper)
    return y, per_example(spatial_size(x) * tf.reduce_sum(log_abs_s), x)

  def _inverse_and_log_det(self, y):
    permutation, lower, upper, log_abs_s = self._factors()
    # W^-1 = U^-1 L^-1 P^T, by two triangular solves against the identity.
    eye = tf.eye(self._params.channels)
    inverse = tf.linalg.triangular_solve(upper, tf.linalg.triangular_solve(lower, eye, lower=True), lower=False)
    x = tf.einsum("nhwc,cd->nhwd", y, inverse @ tf.transpose(permutation))
    return x, per_example(-spatial_size(y) * tf.reduce_sum(log_abs_s), y)
