"""Dequantisation and bits per pixel: the objective of every likelihood model in t2v.

Frames are 8-bit: x in {0..255}. A continuous model of y = (x + u) / 256, u ~ U(0, 1)^D, bounds the discrete
log-likelihood: log P(x) >= E_u[log p(y)] - D ln 256. Its bits per pixel (per sub-pixel, D = H*W*C) are
  bpp = -(log p(y) - D ln 256) / (D ln 2),
so the uniform density on [0, 1)^D (log p = 0) scores exactly 8 bits.
"""

from __future__ import annotations

import math

import tensorflow as tf

NUM_BINS = 256  # 8-bit data


def dequantize(x: tf.Tensor, seed: tf.Tensor | None = None, noise: str = "uniform") -> tf.Tensor:
  """uint8 x -> float32 y = (x + u) / 256 in [0, 1).

  noise: "uniform" draws u ~ U(0, 1) (stateless when `seed` [2] is given, else from the global generator);
    "midpoint" uses u = 1/2 (deterministic encoding of conditioning frames, latent codes).
  """
  x = tf.cast(x, tf.float32)
  if noise == "midpoint":
    u = 0.5
  elif noise == "uniform":
    u = (tf.random.uniform(tf.shape(x)) if seed is None
         else tf.random.stateless_uniform(tf.shape(x), seed=seed))
  else:
    raise ValueError(f"noise={noise!r} must be 'uniform' or 'midpoint'")
  return (x + u) / NUM_BINS


def quantize(y: tf.Tensor) -> tf.Tensor:
  """float y in [0, 1) -> uint8 floor(256 y), clipped to [0, 255] (the inverse of `dequantize`)."""
  return tf.cast(tf.clip_by_value(tf.floor(y * NUM_BINS), 0, NUM_BINS - 1), tf.uint8)


def bits_per_pixel(log_prob_y: tf.Tensor, num_dims: int | tf.Tensor) -> tf.Tensor:
  """-(log p(y) - D ln 256) / (D ln 2) for a continuous log-density of dequantised data of D dims."""
  num_dims = tf.cast(num_dims, log_prob_y.dtype)
  return -(log_prob_y - num_dims * math.log(NUM_BINS)) / (num_dims * math.log(2.0))
