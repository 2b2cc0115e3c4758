"""Multi-scale Glow (Glow §3, RealNVP §3.6): L levels of squeeze -> K steps of flow -> split.

For an image u_0 [N, H, W, C] and levels l = 0 .. L-1:
  s_l = squeeze(u_l)                      # [N, H/2^(l+1), W/2^(l+1), c_l],  c_l = 4 * channels(u_l)
  v_l = steps_l(s_l)                       # same shape, K steps of flow
  l < L-1:  h_l, z_l = split(v_l)          # h_l: the first c_l - c_l//2 channels, continues: u_{l+1} = h_l
                                           # z_l: the last c_l//2 channels, leaves the flow as a latent
  l = L-1:  z_l = v_l
VideoFlow's prior models z_l given h_l (the h^(>l) of the paper: a function of the higher levels' latents), so
`encode` returns both. `decode` inverts exactly from the latents alone, top level first.

Each level is a `tfb.Chain([FlowSteps, Squeeze])`; the split between levels is the only non-bijector step
(it changes the number of outputs), written out here.

Memory: with `reversible_gradients` every level's K steps compute their gradients by inversion (see
`reversible.py`), so a training step stores per level only the level's input and output (and the latents the
loss reads), not the K steps' activations: memory grows with L, not with K. The squeeze is a reshape and the
split a slice; neither needs anything reversible.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from t2v.bijectors.flow_steps import FlowStepParams, FlowSteps
from t2v.bijectors.squeeze import Squeeze
from t2v.layers.tracking import track_layers
from t2v.slicing import split_at

tfb = tfp.bijectors


def split_latent(v):
  """(h, z) of a level's output: h continues to the next level, z leaves as that level's latent."""
  c = v.shape[-1]
  return split_at(v, c - c // 2)


class MultiScaleGlow(keras.layers.Layer):
  """The per-frame flow of VideoFlow: an image to one latent per level, exactly invertible.

  Args:
    image_shape: (H, W, C); H and W must be divisible by 2**num_levels.
    num_levels: L.
    depth: K, steps of flow per level.
    hidden_channels: width of the coupling networks.
    coupling: "affine" or "additive".
    activation: "relu" or "gated" inside the coupling networks.
    cond_channels: channels of a per-level conditioning tensor for the couplings (0: none); the
      conditioning at level l has the spatial size of that level's latents.
    seed: seeds the random rotations of the 1x1 convolutions.
    reversible_gradients: each level's steps get their gradients by inversion instead of stored activations
      (same values; memory independent of depth, about one more forward pass of compute; first-order
      gradients only). Off: plain backpropagation.
    conv_dtype: dtype of the coupling networks' convolutions ("float32" or "bfloat16"; see
      t2v/layers/precision.py). The flow's arithmetic and log-determinants stay float32.
  """

  def __init__(self, image_shape: tuple[int, int, int], num_levels: int, depth: int, hidden_channels: int,
               coupling: str = "affine", activation: str = "relu", cond_channels: int = 0, seed: int = 0,
               reversible_gradients: bool = False, conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    height, width, channels = image_shape
    if num_levels < 1 or depth < 1:
      raise ValueError(f"num_levels={num_levels} and depth={depth} must be >= 1")
    if height % 2 ** num_levels or width % 2 ** num_levels:
      raise ValueError(f"frame size {height}x{width} is not divisible by 2**num_levels={2 ** num_levels}: "
                       "lower num_levels or resize the frames")
    if not isinstance(reversible_gradients, bool):
      raise TypeError(f"reversible_gradients={reversible_gradients!r} must be True or False")
    # ---- config
    self.image_shape = tuple(image_shape)
    self.num_levels = num_levels
    self.depth = depth
    self.hidden_channels = hidden_channels
    self.coupling = coupling
    self.activation = activation
    self.cond_channels = cond_channels
    self.seed = seed
    self.reversible_gradients = reversible_gradients
    self.conv_dtype = conv_dtype
    # ---- layers: level l acts on c_l channels after its squeeze
    self.step_params = []
    self.latent_shapes = []  # z_l shapes [h, w, c]
    self.cond_shapes = []  # h_l shapes (l < L-1)
    c = channels
    for level in range(num_levels):
      c *= 4
      size = (height // 2 ** (level + 1), width // 2 ** (level + 1))
      self.step_params.append(FlowStepParams(depth, c, hidden_channels, coupling, activation, cond_channels,
                                             seed=seed + 1000 * level, conv_dtype=conv_dtype,
                                             name=f"level_{level}"))
      if level < num_levels - 1:
        self.latent_shapes.append((*size, c // 2))
        self.cond_shapes.append((*size, c - c // 2))
        c = c - c // 2
      else:
        self.latent_shapes.append((*size, c))
    self.step_params = track_layers(self, "level", self.step_params)
    self.squeeze = Squeeze()

  def level_steps(self, level: int) -> FlowSteps:
    """The K steps of flow of level `level` (with this flow's gradient mode)."""
    return FlowSteps(self.step_params[level], reversible_gradients=self.reversible_gradients)

  def level_bijector(self, level: int) -> tfb.Chain:
    """Level `level` without its split: squeeze, then K steps of flow."""
    return tfb.Chain([self.level_steps(level), self.squeeze], name=f"level_{level}")

  def _cond(self, conds, level):
    return None if conds is None else conds[level]

  def encode(self, x: tf.Tensor, conds=None):
    """x [N, H, W, C] -> (zs, hs, log_det): zs[l] [N, *latent_shapes[l]], hs[l] [N, *cond_shapes[l]], [N]."""
    zs, hs = [], []
    log_det = tf.zeros(tf.shape(x)[:1])
    u = x
    for level in range(self.num_levels):
      s, _ = self.squeeze.forward_and_log_det(u)  # [N, H_l, W_l, c_l]
      v, ldj = self.level_steps(level).forward_and_log_det(s, cond=self._cond(conds, level))
      log_det += ldj
      if level < self.num_levels - 1:
        u, z = split_latent(v)
        hs.append(u)
      else:
        z = v
      zs.append(z)
    return zs, hs, log_det

  def decode_level(self, level: int, z: tf.Tensor, h: tf.Tensor | None, conds=None) -> tf.Tensor:
    """Inverts level `level` from its latent z and (below the top) h: returns u_level, the level's input."""
    v = z if h is None else tf.concat([h, z], axis=-1)
    s, _ = self.level_steps(level).inverse_and_log_det(v, cond=self._cond(conds, level))
    u, _ = self.squeeze.inverse_and_log_det(s)
    return u

  def decode(self, zs, conds=None) -> tf.Tensor:
    """The exact inverse of `encode`: latents (one per level) -> x [N, H, W, C]."""
    if len(zs) != self.num_levels:
      raise ValueError(f"decode needs {self.num_levels} latents (one per level), got {len(zs)}")
    u = None
    for level in reversed(range(self.num_levels)):
      u = self.decode_level(level, zs[level], u, conds)
    return u

  def initialize(self, x: tf.Tensor, conds=None) -> None:
    """Data-dependent ActNorm initialisation of every step on `x` (eager, once, before training)."""
    u = x
    for level in range(self.num_levels):
      s, _ = self.squeeze.forward_and_log_det(u)
      v = FlowSteps(self.step_params[level]).initialize(s, cond=self._cond(conds, level))
      if level < self.num_levels - 1:
        u, _ = split_latent(v)

  def get_config(self):
    return {**super().get_config(), "image_shape": self.image_shape, "num_levels": self.num_levels,
            "depth": self.depth, "hidden_channels": self.hidden_channels, "coupling": self.coupling,
            "activation": self.activation, "cond_channels": self.cond_channels, "seed": self.seed,
            "reversible_gradients": self.reversible_gradients, "conv_dtype": self.conv_dtype}
