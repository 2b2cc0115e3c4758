"""VideoFlow's latent dynamics prior p(z_t^(l) | z_<t^(l), z_t^(>l)) (VideoFlow §4.2, appendix D).

At each level l the prior is a conditionally factorised Gaussian N(mu, sigma) over z_t^(l) [h, w, c]. Its
parameters come from the previous K latents of the same level, z_{t-K..t-1}^(l), and from h_t^(l), the part of
frame t's flow that continues above level l (a function of z_t^(>l); absent at the top level):
  conv3d_net  stack the K past latents in time, concatenate a 1x1-conv projection of h_t to each of them, run
              residual blocks of time-causal 3-D convolutions (dilations 1, 2, 4 in parallel; gated activation
              units), take the last time step and a zero-initialised 1x1 conv -> (dz, log sigma);
  conv_net    the same inputs with the K latents stacked along channels, through 2-D 3x3 convolutions;
  pointwise   a zero-initialised 1x1 conv of (z_{t-1}, projection of h_t).
With the temporal skip connection mu = z_{t-1} + dz, otherwise mu = dz.
Frames t < K have too little context: they use a learned unconditional prior (a zero-initialised 3x3 conv of
h_t below the top, a learned per-position Gaussian at the top).
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from t2v.layers.residual3d import CausalConv3D, ResidualBlock3D

tfd = tfp.distributions

PRIOR_KINDS = ("conv3d_net", "conv_net", "pointwise")


def _conv2d(filters, kernel, zero_init=False, name=None):
  init = "zeros" if zero_init else keras.initializers.RandomNormal(stddev=0.05)
  return keras.layers.Conv2D(filters, kernel, padding="same", kernel_initializer=init, name=name)


def gaussian(mu: tf.Tensor, log_sigma: tf.Tensor) -> tfd.Distribution:
  """A factorised Gaussian over [h, w, c] events."""
  return tfd.Independent(tfd.Normal(mu, tf.exp(log_sigma)), reinterpreted_batch_ndims=3)


class LatentPrior(keras.layers.Layer):
  """The prior of one level's latents given the past latents of that level and the level's h_t.

  Args:
    latent_shape: (h, w, c) of z at this level.
    cond_channels: channels of h_t at this level; 0 at the top level.
    kind: one of PRIOR_KINDS.
    num_context: K, past latents the prior sees.
    depth: residual blocks (conv3d_net) or hidden conv layers (conv_net).
    width: channels of the hidden layers.
    dilations: use the parallel dilation rates (1, 2, 4); False uses (1,) (ablation).
    gating: gated activation units inside the residual blocks (ablation when False).
    skip: temporal skip connection mu = z_{t-1} + dz (ablation when False).
  """

  def __init__(self, latent_shape: tuple[int, int, int], cond_channels: int, kind: str = "conv3d_net",
               num_context: int = 1, depth: int = 5, width: int = 256, dilations: bool = True,
               gating: bool = True, skip: bool = True, **kwargs):
    super().__init__(**kwargs)
    if kind not in PRIOR_KINDS:
      raise ValueError(f"prior={kind!r} must be one of {', '.join(PRIOR_KINDS)}")
    if num_context < 1:
      raise ValueError(f"num_context_latents={num_context} must be >= 1")
    # ---- config
    self.latent_shape = tuple(latent_shape)
    self.cond_channels = cond_channels
    self.kind = kind
    self.num_context = num_context
    self.depth = depth
    self.width = width
    self.dilations = dilations
    self.gating = gating
    self.skip = skip
    c = latent_shape[-1]
    # ---- unconditional prior for frames without K predecessors
    if cond_channels:
      self.first_frame_net = _conv2d(2 * c, 3, zero_init=True, name="first_frame_prior")
    else:
      self.first_frame_params = self.add_weight(shape=(*latent_shape[:2], 2 * c), initializer="zeros",
                                                name="first_frame_prior")
    # ---- conditional prior
    self.cond_projection = _conv2d(c, 1, name="cond_projection") if cond_channels else None
    if kind == "conv3d_net":
      self.input_conv = CausalConv3D(width, (1, 1, 1), name="input_conv")
      rates = (1, 2, 4) if dilations else (1,)
      self.blocks = [ResidualBlock3D(width, rates, gating, name=f"residual_block_{i}") for i in range(depth)]
      self.output_conv = _conv2d(2 * c, 1, zero_init=True, name="output_conv")
    elif kind == "conv_net":
      self.hidden = [_conv2d(width, 3, name=f"hidden_{i}") for i in range(depth)]
      self.output_conv = _conv2d(2 * c, 3, zero_init=True, name="output_conv")
    else:  # pointwise
      self.output_conv = _conv2d(2 * c, 1, zero_init=True, name="output_conv")

  # ---- the two parameter maps -----------------------------------------------------------------------

  def unconditional_params(self, h: tf.Tensor | None, batch_size: tf.Tensor):
    """(mu, log_sigma) [N, h, w, c] for frames without K predecessors."""
    if self.cond_channels:
      out = self.first_frame_net(h)
    else:
      out = tf.tile(self.first_frame_params[None], [batch_size, 1, 1, 1])
    mu, log_sigma = tf.split(out, 2, axis=-1)
    return mu, log_sigma

  def conditional_params(self, past: tf.Tensor, h: tf.Tensor | None):
    """(mu, log_sigma) [N, h, w, c] from past [N, K, h, w, c] (oldest first) and h [N, h, w, cond_channels]."""
    k = self.num_context
    proj = None if h is None else self.cond_projection(h)  # [N, h, w, c]
    if self.kind == "conv3d_net":
      x = past
      if proj is not None:
        x = tf.concat([x, tf.tile(proj[:, None], [1, k, 1, 1, 1])], axis=-1)  # [N, K, h, w, 2c]
      x = self.input_conv(x)  # [N, K, h, w, width]
      for block in self.blocks:
        x = block(x)
      out = self.output_conv(x[:, -1])  # last time step: [N, h, w, 2c]
    elif self.kind == "conv_net":
      shape = tf.shape(past)
      x = tf.reshape(tf.transpose(past, [0, 2, 3, 1, 4]),
                     tf.concat([shape[:1], shape[2:4], [k * self.latent_shape[-1]]], 0))  # [N, h, w, K*c]
      x = tf.ensure_shape(x, [None, *self.latent_shape[:2], k * self.latent_shape[-1]])
      if proj is not None:
        x = tf.concat([x, proj], axis=-1)
      for layer in self.hidden:
        x = tf.nn.relu(layer(x))
      out = self.output_conv(x)
    else:  # pointwise
      x = past[:, -1] if proj is None else tf.concat([past[:, -1], proj], axis=-1)
      out = self.output_conv(x)
    delta, log_sigma = tf.split(out, 2, axis=-1)
    mu = past[:, -1] + delta if self.skip else delta
    return mu, log_sigma

  # ---- teacher-forced likelihood of a whole sequence ----------------------------------------------

  def sequence_log_prob(self, z: tf.Tensor, h: tf.Tensor | None, first: int) -> tf.Tensor:
    """log p(z_t | z_<t, h_t) for t = first .. T-1: [B, T - first].

    z: [B, T, h, w, c] latents of this level; h: [B, T, h, w, cond_channels] or None (top level).
    """
    num_frames = z.shape[1]
    k = self.num_context
    parts = []
    uncond_end = min(k, num_frames)
    if first < uncond_end:  # frames first .. K-1: unconditional prior
      zs = z[:, first:uncond_end]  # [B, n, h, w, c]
      parts.append(self._log_prob_frames(zs, None if h is None else h[:, first:uncond_end], conditional=False))
    cond_start = max(first, k)
    if cond_start < num_frames:  # frames t >= K: windows z[t-K:t]
      windows = tf.signal.frame(z[:, cond_start - k:num_frames - 1], k, 1, axis=1)  # [B, n, K, h, w, c]
      ht = None if h is None else h[:, cond_start:]
      parts.append(self._log_prob_frames(z[:, cond_start:], ht, conditional=True, windows=windows))
    return tf.concat(parts, axis=1)

  def _log_prob_frames(self, z, h, conditional, windows=None):
    """log-probs [B, n] of frames z [B, n, h, w, c], folding frames into the batch."""
    shape = tf.shape(z)
    b, n = shape[0], shape[1]
    fold = lambda x: tf.reshape(x, tf.concat([[b * n], tf.shape(x)[2:]], 0))  # [B*n, ...]
    hf = None if h is None else fold(h)
    if conditional:
      mu, log_sigma = self.conditional_params(fold(windows), hf)
    else:
      mu, log_sigma = self.unconditional_params(hf, b * n)
    log_prob = gaussian(mu, log_sigma).log_prob(fold(z))  # [B*n]
    return tf.reshape(log_prob, [b, n])

  def get_config(self):
    return {**super().get_config(), "latent_shape": self.latent_shape, "cond_channels": self.cond_channels,
            "kind": self.kind, "num_context": self.num_context, "depth": self.depth, "width": self.width,
            "dilations": self.dilations, "gating": self.gating, "skip": self.skip}
