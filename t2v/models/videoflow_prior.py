"""VideoFlow's latent dynamics prior p(z_t^(l) | z_<t^(l), z_t^(>l)) (VideoFlow §4.2, appendix D).

At each level l the prior is a conditionally factorised Gaussian N(mu, sigma) over z_t^(l) [h, w, c]. Its
parameters come from the previous K latents of the same level, z_{t-K..t-1}^(l), and from h_t^(l), the part of
frame t's flow that continues above level l (a function of z_t^(>l); absent at the top level):
  conv3d_net  stack the K past latents in time, concatenate a 1x1-conv projection of h_t to each of them, run
              residual blocks of time-causal 3-D convolutions (dilations 1, 2, 4 in parallel; gated activation
              units), take the last time step and a zero-initialised 1x1 conv -> (dz, log sigma);
  conv_net    the same inputs with the K latents stacked along channels, through 2-D 3x3 convolutions;
  pointwise   a zero-initialised 1x1 conv of (z_{t-1}, projection of h_t);
  conv_lstm   a recurrent state per level instead of a window (the paper's proposed remedy for forgetting
              occluded objects, §6): a 3x3 convolutional LSTM of width `width` reads x_t = (z_{t-1}, projection
              of h_t) at every frame t >= 1, so its state has seen every earlier frame, not only the last K; its
              output goes through a zero-initialised 1x1 conv -> (dz, log sigma). (depth, dilations and gating
              do not apply to it.)
With the temporal skip connection mu = z_{t-1} + dz, otherwise mu = dz.

A motion-compensated skip (`skip_kernel` = k > 0, conv3d_net only; not in the paper): the skip term z_{t-1} is
replaced by an advected copy of the window, mu = sum_{j, d} a_{j, d} z_{t-K+j}[cell + d] + dz, a convex
combination, per latent cell, of the K past latents' cells at offsets d in a k x k neighbourhood (dynamic neural
advection, Finn et al., NeurIPS 2016). The weights a are a softmax over K*k*k logits: 10 x a zero-initialised
1x1 conv of the network's last hidden features, offset so that at initialisation a puts 0.994 on (z_{t-1}, d = 0),
about the paper's skip. The factor 10 multiplies the logits' learning rate under Adam, whose steps do not depend
on a gradient's scale: at 1 the weights stayed on the identity in tests/test_videoflow.py's one-shift test, and
benchmarks/pixel_prior.py's mean error was 1.47 against 0.86 at 10 (500 steps; docs/). Why: a moving object is a
translated copy of itself, which the residual dz must otherwise learn to redraw cell by cell under the
likelihood's 1/sigma^2 weighting (docs/videoflow_shapes_cpu.md, "Why the samples fail"); a shift is a few
logits with their own gradients. At the lowest level a 2-px move is a one-cell shift of z_{t-1}; at a level
of 4-px cells it is a one-cell shift of z_{t-2}, which the K >= 2 window offers. The borders repeat by
reflection (a uniform background stays uniform). A window zero-padded in front (frame t < K, with pad_context)
holds fewer real latents than a motion needs, and the mean of an 8-way choice of direction is a blend of 8
shifted copies in which the object vanishes (docs/videoflow_shapes_cpu.md, session 15): such frames use the
paper's skip z_{t-1}, so the levels' noise chooses the move, unless `advect_padded` (session 15's behaviour).

A mixture of translations on zero-padded windows (`shift_mixture`, with skip_kernel = k and pad_context; not in
the paper). From one real latent the next move is a choice among a few directions. A factorised Gaussian can make
it only cell by cell, with independent noise, and its mean is the blend of the choices. With shift_mixture a
padded window's prior is
  p(z_t | window, h_t) = sum_d pi_d N(z_t; S_d mu, S_d sigma),
where (mu, sigma) is the Gaussian above (the paper's skip), S_d translates a latent by the whole-cell offset d in
the k x k neighbourhood (cell <- cell + d, reflected at the borders, as in the advection), and pi = softmax of a
zero-initialised dense layer on the network's last features averaged over the cells (uniform at the start). One
translation is drawn per frame and level: the whole latent moves together. The log-likelihood is exact (a
log-sum-exp over the k^2 components). Sampling draws d from pi at temperature T > 0 and takes the most probable d
at T = 0 (the untranslated one on ties); the Gaussian's sigma is scaled by T as everywhere; the weights pi are not
tempered. The level below sees the drawn latent through h_t, so its own pi can follow the choice made above.
With `advect_padded` as well, the Gaussian that the mixture translates has the motion-compensated skip: the move
is the mixture's choice, and the advection weights are free to average each cell over its neighbourhood, which on
a still background cancels part of the dequantisation noise that a copy of z_{t-1} carries into the mean (later
frames' windows do this over both past latents; docs/videoflow_shapes_cpu.md, session 21).

Training the mean (`mean_gradient_beta`). The exact likelihood's gradient with respect to mu at a latent cell is
(z - mu) / sigma^2. On video the cells a moving object covers get a sigma tens of times the background's, so
their error reaches the shared convolutions far more weakly than the background's dequantisation noise does.
With mean_gradient_beta = b > 0 the gradient that flows back through dz is multiplied by
stop_gradient(sigma^(2b)), as in beta-NLL (Seitzer et al., ICLR 2022; b = 1 counts every cell's error alike,
like a squared error). The loss value, and so every bits-per-pixel figure, is the exact likelihood, and the
conditional mean stays the optimum. The gradients through log sigma, through the skip term z_{t-1} and through
the scored latents z_t are exact; what flows back through dz (to the prior's weights, and through the prior's
inputs to the flow) is scaled. Measured (docs/videoflow_shapes_cpu.md, "Why the samples fail"): on pixels
b = 1 teaches a small prior to continue a motion that the exact gradient does not, at a large cost in bits; inside VideoFlow b = 1 diverged
and b = 0.5 did not help.

Frames t < K have too little context: by default (the paper's choice) they use a learned unconditional prior (a
zero-initialised 3x3 conv of h_t below the top, a learned per-position Gaussian at the top). With `pad_context`
only frame 0 does: frames 1 .. K-1 use the conditional prior on their window zero-padded in front, so a
conditioning frame is continued even when it is the only one (a model with K >= 2 that conditions on 1 frame,
as on stochastic shapes, must see frame 0 to continue it). The conv_lstm recurrence still steps on every frame.

Two ways to evaluate the prior:
  teacher forcing  `sequence_log_prob(z, h, first)` scores a whole sequence of known latents at once: windows
                   of K latents folded into the batch, or (conv_lstm) one `tf.scan` over time;
  sampling         the prior as a state machine over frames, for a rollout whose latents are drawn one frame at
                   a time: `initial_state(batch)` (nothing seen) or `context_state(z, h)` (after the
                   conditioning frames), then per frame t `params(state, h_t, t)` -> (mu, log_sigma, state) and,
                   once z_t is drawn, `advance(state, z_t)`. The windowed kinds' state is the window of the
                   last K latents [N, K, h, w, c] (zero-padded in front); conv_lstm's is (z_{t-1}, (h, c)), the
                   last latent and the LSTM state. Both ways give the same log-probabilities.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from t2v.layers.conv_lstm import ConvLSTMCell
from t2v.layers.precision import check_conv_dtype
from t2v.layers.residual3d import CausalConv3D, ResidualBlock3D
from t2v.layers.tracking import track_layers
from t2v.slicing import take, windows

tfd = tfp.distributions

PRIOR_KINDS = ("conv3d_net", "conv_net", "pointwise", "conv_lstm")
RECURRENT_KINDS = ("conv_lstm",)  # kinds whose sampling state is a recurrent state, not a window of K latents
_LSTM_KERNEL = 3  # spatial kernel of the conv_lstm prior's input and recurrent convolutions


def _fold(x: tf.Tensor) -> tf.Tensor:
  """[B, n, ...] -> [B*n, ...]: frames folded into the batch."""
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))  # [B*n, ...]


def _last_frame(x: tf.Tensor) -> tf.Tensor:
  """x[:, -1] of [N, K, ...] (K static): the last time step, through a split (its gradient is cheap)."""
  return tf.squeeze(take(x, -1, None, axis=1), axis=1)  # [N, ...]


def _conv2d(filters, kernel, zero_init=False, name=None, conv_dtype="float32"):
  init = "zeros" if zero_init else keras.initializers.RandomNormal(stddev=0.05)
  # a mixed policy keeps the variables float32 and computes (and returns) in conv_dtype
  dtype = "float32" if conv_dtype == "float32" else f"mixed_{conv_dtype}"
  return keras.layers.Conv2D(filters, kernel, padding="same", kernel_initializer=init, name=name, dtype=dtype)


# A smooth floor on log sigma: log_sigma = floor + softplus(raw - floor). Background latents repeat almost exactly
# from frame to frame, so an unbounded sigma collapses towards 0 and the rare frame that differs there costs
# an enormous loss (measured: loss spikes of 1e10 after ~2000 steps of videoflow_cpu_multiscale). The bound costs no
# expressiveness: the flow can scale its latents up instead. At initialisation (raw = 0) sigma is ~1.
LOG_SIGMA_FLOOR = -5.0


def bounded_log_sigma(raw: tf.Tensor) -> tf.Tensor:
  """log sigma >= LOG_SIGMA_FLOOR, smoothly; ~raw when raw is well above the floor."""
  return LOG_SIGMA_FLOOR + tf.nn.softplus(raw - LOG_SIGMA_FLOOR)


def scale_gradient(x: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
  """x in the forward pass; in the backward pass x's gradient times stop_gradient(scale) (same shape as x)."""
  scale = tf.stop_gradient(scale)
  return tf.stop_gradient(x) + (x - tf.stop_gradient(x)) * scale


# The motion-compensated skip's initial logit for (z_{t-1}, offset 0), the others 0: with K*k*k = 18 choices its
# weight starts at e^8 / (e^8 + 17) = 0.994. Its learned logits are 10 x a 1x1 conv (see the module docstring).
_SKIP_IDENTITY_LOGIT = 8.0
_SKIP_LOGIT_SCALE = 10.0


def translations(x: tf.Tensor, kernel: int) -> list[tf.Tensor]:
  """The kernel^2 whole-cell translations of x [N, h, w, c]: a list of [N, h, w, c], ordered (dy, dx) with dy, dx
  in -r .. r (r = kernel // 2); translation (dy, dx) holds x[cell + (dy, dx)]. Cells beyond the border read the
  reflected frame (symmetric padding)."""
  r = kernel // 2
  height, width = x.shape[1], x.shape[2]
  padded = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")  # [N, h+2r, w+2r, c]
  if height is None or width is None:  # sizes known only when the graph runs
    return [padded[:, dy:dy + tf.shape(x)[1], dx:dx + tf.shape(x)[2]] for dy in range(kernel) for dx in range(kernel)]
  # static windows through `take` (tf.split): a basic slice's gradient, StridedSliceGrad, was ~30 % of
  # videoflow_cpu's training-step op time on CPU (60 calls of ~1 ms)
  rows = [take(padded, dy, dy + height, axis=1) for dy in range(kernel)]  # kernel x [N, h, w+2r, c]
  return [take(row, dx, dx + width, axis=2) for row in rows for dx in range(kernel)]


def advect(past: tf.Tensor, logits: tf.Tensor, kernel: int, num_context: int, zero_front: int = 0) -> tf.Tensor:
  """sum_{j, d} softmax(logits)_{j, d} past[:, j][cell + d]: [N, h, w, c].

  past: [N, K, h, w, c] (K = num_context); logits: [N, h, w, K*kernel*kernel], ordered (j, dy, dx) with dy, dx in
  -r .. r, r = kernel // 2. Cells beyond the border read the reflected frame (symmetric padding). zero_front: the
  number of leading latents known to be zeros in every window (zero-padded windows): their weights still count in
  the softmax, but their terms, all zero, are not built.
  """
  patches = []
  for j in range(zero_front, num_context):
    patches.extend(translations(past[:, j], kernel))  # kernel^2 x [N, h, w, c]
  patches = tf.stack(patches, axis=3)  # [N, h, w, (K - zero_front)*kernel^2, c]
  weights = take(tf.nn.softmax(logits, axis=-1), zero_front * kernel * kernel, None, axis=-1)  # [.., len(patches)]
  # an element-wise product and sum, not einsum: einsum's batched [1, D] x [D, c] products per cell (and its
  # gradient) were ~7 % of videoflow_cpu's training-step op time on CPU, about twice this
  return tf.reduce_sum(weights[..., None] * patches, axis=3)


def gaussian(mu: tf.Tensor, log_sigma: tf.Tensor) -> tfd.Distribution:
  """A factorised Gaussian over [h, w, c] events."""
  return tfd.Independent(tfd.Normal(mu, tf.exp(log_sigma)), reinterpreted_batch_ndims=3)


def shift_mixture_log_prob(z: tf.Tensor, mu: tf.Tensor, log_sigma: tf.Tensor, logits: tf.Tensor,
                           kernel: int) -> tf.Tensor:
  """log sum_d softmax(logits)_d N(z; S_d mu, S_d sigma): [N], for z, mu, log_sigma [N, h, w, c] and logits
  [N, kernel^2] ordered as `translations`."""
  mus = tf.stack(translations(mu, kernel), axis=1)  # [N, kernel^2, h, w, c]
  log_sigmas = tf.stack(translations(log_sigma, kernel), axis=1)  # [N, kernel^2, h, w, c]
  components = gaussian(mus, log_sigmas).log_prob(z[:, None])  # [N, kernel^2]
  return tf.reduce_logsumexp(tf.nn.log_softmax(logits, axis=-1) + components, axis=-1)


def translate(x: tf.Tensor, choice: tf.Tensor, kernel: int) -> tf.Tensor:
  """x [N, h, w, c] translated by each row's offset index choice [N] (ordered as `translations`)."""
  return tf.gather(tf.stack(translations(x, kernel), axis=1), choice, axis=1, batch_dims=1)  # [N, h, w, c]


class LatentPrior(keras.layers.Layer):
  """The prior of one level's latents given the past latents of that level and the level's h_t.

  Args:
    latent_shape: (h, w, c) of z at this level.
    cond_channels: channels of h_t at this level; 0 at the top level.
    kind: one of PRIOR_KINDS.
    num_context: K, past latents the prior sees (conv_lstm: frames t < K still use the unconditional prior,
      later ones the recurrent state, which has seen every earlier frame).
    depth: residual blocks (conv3d_net) or hidden conv layers (conv_net).
    width: channels of the hidden layers (conv_lstm: of the LSTM state).
    dilations: use the parallel dilation rates (1, 2, 4); False uses (1,) (ablation).
    gating: gated activation units inside the residual blocks (ablation when False).
    skip: temporal skip connection mu = z_{t-1} + dz (ablation when False).
    pad_context: frames 1 .. K-1 use the conditional prior on zero-padded windows instead of the unconditional
      one (which then serves frame 0 only).
    skip_kernel: k = 0 (the paper's skip z_{t-1}) or odd k >= 1: the motion-compensated skip over the K past
      latents and k x k offsets (see the module docstring); conv3d_net with skip only.
    advect_padded: with skip_kernel, frames whose window is zero-padded (t < K) use the motion-compensated skip
      too; False (the default): they use the paper's skip z_{t-1}.
    shift_mixture: with skip_kernel and pad_context, zero-padded windows get the mixture of the k x k translations
      of their Gaussian (see the module docstring), whose mean has the skip that advect_padded picks.
    mean_gradient_beta: b >= 0: the gradient reaching dz is scaled by stop_gradient(sigma^(2b)) (see the module
      docstring); 0 is the exact likelihood's gradient.
    conv_dtype: dtype of the hidden convolutions of conv3d_net and conv_net ("float32" or "bfloat16", see
      t2v/layers/precision.py); the 1x1 projection of h_t, the output layer (mu, log sigma), the unconditional prior
      and conv_lstm's cell stay float32.
  """

  def __init__(self, latent_shape: tuple[int, int, int], cond_channels: int, kind: str = "conv3d_net",
               num_context: int = 1, depth: int = 5, width: int = 256, dilations: bool = True,
               gating: bool = True, skip: bool = True, pad_context: bool = False, conv_dtype: str = "float32",
               mean_gradient_beta: float = 0.0, skip_kernel: int = 0, advect_padded: bool = False,
               shift_mixture: bool = False, **kwargs):
    super().__init__(**kwargs)
    if kind not in PRIOR_KINDS:
      raise ValueError(f"prior={kind!r} must be one of {', '.join(PRIOR_KINDS)}")
    if num_context < 1:
      raise ValueError(f"num_context_latents={num_context} must be >= 1")
    if not mean_gradient_beta >= 0:
      raise ValueError(f"prior_mean_gradient_beta={mean_gradient_beta} must be >= 0 (0: the exact gradient)")
    if skip_kernel and (skip_kernel < 0 or skip_kernel % 2 == 0 or kind != "conv3d_net" or not skip):
      raise ValueError(f"latent_skip_kernel={skip_kernel} must be 0 or an odd number >= 1, and needs "
                       f"prior='conv3d_net' (got {kind!r}) with latent_skip=True (got {skip})")
    if advect_padded and not skip_kernel:
      raise ValueError("advect_padded=True needs the motion-compensated skip: set latent_skip_kernel to an odd k")
    if shift_mixture and not (skip_kernel and pad_context and num_context >= 2):
      raise ValueError(f"shift_mixture=True needs skip_kernel > 0 (got {skip_kernel}), pad_context=True (got "
                       f"{pad_context}) and num_context >= 2 (got {num_context}: the padded windows it mixes on)")
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
    self.pad_context = pad_context
    self.conv_dtype = check_conv_dtype(conv_dtype)
    self.mean_gradient_beta = float(mean_gradient_beta)
    self.skip_kernel = skip_kernel
    self.advect_padded = bool(advect_padded)
    self.shift_mixture = bool(shift_mixture)
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
      self.input_conv = CausalConv3D(width, (1, 1, 1), conv_dtype=conv_dtype, name="input_conv")
      rates = (1, 2, 4) if dilations else (1,)
      self.blocks = track_layers(self, "residual_block", [
          ResidualBlock3D(width, rates, gating, conv_dtype=conv_dtype, name=f"residual_block_{i}")
          for i in range(depth)])
      self.output_conv = _conv2d(2 * c, 1, zero_init=True, name="output_conv")
      if skip_kernel:
        self.skip_logits = _conv2d(num_context * skip_kernel ** 2, 1, zero_init=True, name="skip_logits")
        identity = num_context * skip_kernel ** 2 - 1 - skip_kernel ** 2 // 2  # (z_{t-1}, offset 0)
        self._skip_offset = tf.one_hot(identity, num_context * skip_kernel ** 2) * _SKIP_IDENTITY_LOGIT
      if shift_mixture:  # pi over the k x k translations, from the features averaged over the cells
        self.shift_logits = keras.layers.Dense(skip_kernel ** 2, kernel_initializer="zeros", name="shift_logits")
    elif kind == "conv_net":
      self.hidden = track_layers(self, "hidden", [
          _conv2d(width, 3, name=f"hidden_{i}", conv_dtype=conv_dtype) for i in range(depth)])
      self.output_conv = _conv2d(2 * c, 3, zero_init=True, name="output_conv")
    elif kind == "conv_lstm":
      self.cell = ConvLSTMCell(width, _LSTM_KERNEL, name="conv_lstm")
      self.output_conv = _conv2d(2 * c, 1, zero_init=True, name="output_conv")
    else:  # pointwise
      self.output_conv = _conv2d(2 * c, 1, zero_init=True, name="output_conv")

  def create_variables(self) -> None:
    """Creates every weight of this prior from its shapes, without running it (the sublayers' `build`)."""
    h, w, c = self.latent_shape
    k = self.num_context
    cond = (None, h, w, self.cond_channels)
    if self.cond_channels:
      self.first_frame_net.build(cond)
      self.cond_projection.build(cond)
    inputs = c + (c if self.cond_channels else 0)  # z_{t-1} (or the window), with the projection of h_t
    if self.kind == "conv3d_net":
      self.input_conv.build((None, k, h, w, inputs))
      for block in self.blocks:
        block.build((None, k, h, w, self.width))
      self.output_conv.build((None, h, w, self.width))
      if self.skip_kernel:
        self.skip_logits.build((None, h, w, self.width))
      if self.shift_mixture:
        self.shift_logits.build((None, self.width))
    elif self.kind == "conv_net":
      channels = k * c + (c if self.cond_channels else 0)
      for layer in self.hidden:
        layer.build((None, h, w, channels))
        channels = self.width
      self.output_conv.build((None, h, w, channels))
    elif self.kind == "conv_lstm":
      self.cell.build((None, h, w, inputs))
      self.output_conv.build((None, h, w, self.width))
    else:  # pointwise
      self.output_conv.build((None, h, w, inputs))
    self.built = True

  @property
  def min_context(self) -> int:
    """The first frame index that uses the conditional prior: 1 with pad_context, else K."""
    return 1 if self.pad_context else self.num_context

  @property
  def is_recurrent(self) -> bool:
    """Whether the sampling state is a recurrent state (conv_lstm) rather than a window of K latents."""
    return self.kind in RECURRENT_KINDS

  # ---- the parameter maps -----------------------------------------------------------------------------

  def unconditional_params(self, h: tf.Tensor | None, batch_size: tf.Tensor):
    """(mu, log_sigma) [N, h, w, c] for frames without K predecessors."""
    if self.cond_channels:
      out = self.first_frame_net(h)
    else:
      out = tf.tile(self.first_frame_params[None], [batch_size, 1, 1, 1])
    mu, raw_log_sigma = tf.split(out, 2, axis=-1)
    return mu, bounded_log_sigma(raw_log_sigma)

  def conditional_params(self, past: tf.Tensor, h: tf.Tensor | None, padded: tf.Tensor | None = None):
    """(mu, log_sigma) [N, h, w, c] from past [N, K, h, w, c] (oldest first) and h [N, h, w, cond_channels].

    For the windowed kinds; conv_lstm reads a recurrent state instead (see `params`). padded: bool [N] or [],
    which windows are zero-padded in front (frame t < K); with the motion-compensated skip they use z_{t-1}
    (unless advect_padded). None: no window is; Python True: every window is (nothing is computed for the
    full-window case). With shift_mixture, a padded window's (mu, log_sigma) is the
    untranslated Gaussian of its mixture (`conditional_mixture` gives the weights).
    """
    return self.conditional_mixture(past, h, padded)[:2]

  def conditional_mixture(self, past: tf.Tensor, h: tf.Tensor | None, padded: tf.Tensor | None = None,
                          zero_front: int = 0):
    """(mu, log_sigma, logits) of `conditional_params`, logits [N, k^2] being the translations' mixture logits
    (used on padded windows only), or None without shift_mixture. zero_front: with padded Python True, how many
    leading latents of every window are known to be zero padding (`advect` then skips them)."""
    if self.is_recurrent:
      raise ValueError(f"conditional_params takes a window of K latents, but prior={self.kind!r} carries a "
                       "recurrent state: use params(state, h, t) or sequence_log_prob")
    k = self.num_context
    proj = None if h is None else self.cond_projection(h)  # [N, h, w, c]
    if self.kind == "conv3d_net":
      features = self._conv3d_features(past, proj)  # [N, h, w, width]
      out = self.output_conv(features)  # [N, h, w, 2c]
      if self.skip_kernel:  # the motion-compensated skip replaces z_{t-1}
        if padded is True and not self.advect_padded:  # every window padded: all use z_{t-1}
          skip = _last_frame(past)
        else:
          logits = self._advection_logits(features)  # [N, h, w, K*k*k]
          skip = advect(past, logits, self.skip_kernel, self.num_context,
                        zero_front if padded is True else 0)  # [N, h, w, c]
          if padded is not None and not self.advect_padded:
            skip = tf.where(tf.reshape(padded, [-1, 1, 1, 1]), _last_frame(past), skip)
        logits = None
        if self.shift_mixture:
          logits = self.shift_logits(tf.reduce_mean(tf.cast(features, tf.float32), axis=[1, 2]))  # [N, k^2]
        return (*self._output_params(out, skip), logits)
    elif self.kind == "conv_net":
      shape = tf.shape(past)
      x = tf.reshape(tf.transpose(past, [0, 2, 3, 1, 4]),
                     tf.concat([shape[:1], shape[2:4], [k * self.latent_shape[-1]]], 0))  # [N, h, w, K*c]
      x = tf.ensure_shape(x, [None, None, None, k * self.latent_shape[-1]])  # the channels, for the conv
      if proj is not None:
        x = tf.concat([x, proj], axis=-1)
      for layer in self.hidden:
        x = tf.nn.relu(layer(x))  # in conv_dtype
      out = self.output_conv(tf.cast(x, tf.float32))
    else:  # pointwise
      z_prev = _last_frame(past)
      out = self.output_conv(z_prev if proj is None else tf.concat([z_prev, proj], axis=-1))
      return (*self._output_params(out, z_prev), None)
    return (*self._output_params(out, _last_frame(past)), None)

  def _conv3d_features(self, past: tf.Tensor, proj: tf.Tensor | None) -> tf.Tensor:
    """conv3d_net's last hidden features [N, h, w, width] (the last time step) from past [N, K, h, w, c] and
    the projection of h_t [N, h, w, c] (None at the top level)."""
    x = past
    if proj is not None:
      x = tf.concat([x, tf.tile(proj[:, None], [1, self.num_context, 1, 1, 1])], axis=-1)  # [N, K, h, w, 2c]
    x = self.input_conv(x)  # [N, K, h, w, width]
    for block in self.blocks:
      x = block(x)
    return _last_frame(x)  # [N, h, w, width]

  def _advection_logits(self, features: tf.Tensor) -> tf.Tensor:
    """The motion-compensated skip's logits [N, h, w, K*k*k] from conv3d_net's last features."""
    return _SKIP_LOGIT_SCALE * self.skip_logits(features) + self._skip_offset

  def advection_weights(self, past: tf.Tensor, h: tf.Tensor | None) -> tf.Tensor:
    """The motion-compensated skip's weights [N, h, w, K, k, k] for past [N, K, h, w, c] and h_t (None at the
    top): per latent cell, how much of its mean's skip term is read from each past latent (oldest first) at each
    offset (dy, dx) = (i - k // 2, j - k // 2). Shows the motion the prior has inferred."""
    if not self.skip_kernel:
      raise ValueError("advection_weights needs latent_skip_kernel > 0 (this prior uses the paper's skip)")
    proj = None if h is None else self.cond_projection(h)
    logits = self._advection_logits(self._conv3d_features(past, proj))  # [N, h, w, K*k*k]
    k = self.skip_kernel
    weights = tf.nn.softmax(logits, axis=-1)
    return tf.reshape(weights, tf.concat([tf.shape(weights)[:3], [self.num_context, k, k]], 0))

  def _output_params(self, out: tf.Tensor, z_prev: tf.Tensor):
    """(mu, log_sigma) [N, h, w, c] from the output conv's (dz, log sigma) [N, h, w, 2c] and the skip term
    z_prev (z_{t-1}, or its motion-compensated version)."""
    delta, raw_log_sigma = tf.split(out, 2, axis=-1)
    log_sigma = bounded_log_sigma(raw_log_sigma)
    if self.mean_gradient_beta:
      # (the exponent is capped so that a diverging sigma gives a large finite factor, never inf * 0 = nan)
      delta = scale_gradient(delta, tf.exp(tf.minimum(2.0 * self.mean_gradient_beta * log_sigma, 40.0)))
    mu = z_prev + delta if self.skip else delta
    return mu, log_sigma

  def _lstm_input(self, z_prev: tf.Tensor, h: tf.Tensor | None) -> tf.Tensor:
    """x_t = (z_{t-1}, 1x1 projection of h_t): [N, h, w, 2c] ([N, h, w, c] at the top level)."""
    return z_prev if h is None else tf.concat([z_prev, self.cond_projection(h)], axis=-1)

  def _recurrence(self, z: tf.Tensor, h: tf.Tensor | None):
    """The conv_lstm over steps t = 1 .. T-1 of z [B, T, h, w, c] (T >= 1) from the zero state.

    Step t reads (z_{t-1}, h_t). The input convolution runs once on all frames folded into the batch; only
    the recurrent one runs inside `tf.scan` over time. Returns the outputs [B, T-1, h, w, width] (step t at
    index t-1) and the final LSTM state (h, c) [B, h, w, width] each (the zero state when T = 1).
    """
    shape = tf.shape(z)
    b, steps = shape[0], shape[1] - 1
    x = self._lstm_input(_fold(z[:, :-1]), None if h is None else _fold(h[:, 1:]))  # [B*(T-1), h, w, 2c]
    gates = self.cell.input_gates(x)  # [B*(T-1), h, w, 4*width]
    gates = tf.reshape(gates, tf.concat([[b, steps], tf.shape(gates)[1:]], 0))  # [B, T-1, h, w, 4*width]
    initial = self.cell.initial_state(b, shape[2:4])
    hs, cs = tf.scan(lambda state, g: self.cell.step(g, state)[1], tf.transpose(gates, [1, 0, 2, 3, 4]),
                     initializer=initial)  # [T-1, B, h, w, width] each
    final = tuple(tf.concat([s0[None], s], 0)[-1] for s0, s in zip(initial, (hs, cs)))  # [B, h, w, width]
    return tf.transpose(hs, [1, 0, 2, 3, 4]), final  # [B, T-1, h, w, width]

  # ---- sampling: the prior as a state machine over frames ---------------------------------------------

  def initial_state(self, batch_size: tf.Tensor | int):
    """The state before frame 0: a zero window [N, K, h, w, c], or (conv_lstm) (z_{-1}, (h, c)) of zeros."""
    if self.is_recurrent:
      return tf.zeros(tf.concat([[batch_size], self.latent_shape], 0)), self.cell.initial_state(
          batch_size, self.latent_shape[:2])
    return tf.zeros(tf.concat([[batch_size, self.num_context], self.latent_shape], 0))  # [N, K, h, w, c]

  def context_state(self, z: tf.Tensor, h: tf.Tensor | None):
    """The state after the frames z [N, Tc, h, w, c] (Tc >= 1) with their h [N, Tc, h, w, cond] (None at top).

    Windowed kinds: the last K latents, zero-padded in front when Tc < K. conv_lstm: (z_{Tc-1}, the LSTM
    state after stepping on every frame t = 1 .. Tc-1).
    """
    if self.is_recurrent:
      if z.shape[1] == 1:  # no step yet (and TF's conv2d mishandles the empty batch of a 0-step recurrence)
        return z[:, 0], self.cell.initial_state(tf.shape(z)[0], tf.shape(z)[2:4])
      _, lstm_state = self._recurrence(z, h)
      return z[:, -1], lstm_state
    k = self.num_context
    window = z[:, -k:]
    window = tf.pad(window, [[0, 0], [k - tf.shape(window)[1], 0], [0, 0], [0, 0], [0, 0]])  # [N, K, h, w, c]
    return tf.ensure_shape(window, [None, k, *self.latent_shape])

  def params(self, state, h: tf.Tensor | None, t, temperature=0.0, seed=None):
    """(mu, log_sigma, state) of frame t's latents [N, h, w, c], given the state after frames < t and h_t.

    t (int or scalar tensor) picks the unconditional prior for t < min_context (K, or 1 with pad_context). The returned state has read h_t
    (conv_lstm: the LSTM has stepped on (z_{t-1}, h_t), from t = 1 on); pass it with the drawn z_t to
    `advance`. With shift_mixture, on a padded window (mu, log_sigma) is the Gaussian of one translation: drawn
    from the mixture weights with the stateless `seed` when temperature > 0, else the most probable one.
    """
    if self.is_recurrent:
      z_prev, lstm_state = state
      out, stepped = self.cell(self._lstm_input(z_prev, h), lstm_state)  # [N, h, w, width]
      mu_c, log_sigma_c = self._output_params(self.output_conv(out), z_prev)
      # frame 0 has no predecessor: the recurrence starts at t = 1, as in sequence_log_prob
      state = z_prev, tuple(tf.where(t >= 1, new, old) for new, old in zip(stepped, lstm_state))
    else:
      z_prev = state[:, -1]
      padded = tf.convert_to_tensor(t) < self.num_context
      mu_c, log_sigma_c, logits = self.conditional_mixture(state, h, padded=padded)
      if logits is not None:  # one translation per example
        # the most probable translation; ties (an untrained prior's equal logits) go to the untranslated one
        centre = self.skip_kernel ** 2 // 2
        choice = tf.where(logits[:, centre] >= tf.reduce_max(logits, axis=-1), centre,
                          tf.argmax(logits, axis=-1, output_type=tf.int32))  # [N]
        if seed is not None:
          drawn = tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]  # [N]
          choice = tf.where(tf.convert_to_tensor(temperature) > 0, drawn, choice)
        # a row whose logits are not finite (a rollout whose latents diverged) draws index k^2: keep it in range
        choice = tf.minimum(choice, self.skip_kernel ** 2 - 1)
        # padded is one scalar per frame: translate only on those frames, not on every step of a long rollout
        mu_c, log_sigma_c = tf.cond(
            padded, lambda: (translate(mu_c, choice, self.skip_kernel), translate(log_sigma_c, choice, self.skip_kernel)),
            lambda: (mu_c, log_sigma_c))
    mu_u, log_sigma_u = self.unconditional_params(h, tf.shape(z_prev)[0])
    use_context = t >= self.min_context
    return tf.where(use_context, mu_c, mu_u), tf.where(use_context, log_sigma_c, log_sigma_u), state

  def advance(self, state, z: tf.Tensor):
    """The state after frame t, from `params`' returned state and the drawn latents z [N, h, w, c]."""
    if self.is_recurrent:
      return z, state[1]
    return tf.concat([state[:, 1:], z[:, None]], axis=1)  # [N, K, h, w, c]

  # ---- teacher-forced likelihood of a whole sequence --------------------------------------------------

  def sequence_log_prob(self, z: tf.Tensor, h: tf.Tensor | None, first: int) -> tf.Tensor:
    """log p(z_t | z_<t, h_t) for t = first .. T-1: [B, T - first].

    z: [B, T, h, w, c] latents of this level; h: [B, T, h, w, cond_channels] or None (top level).
    conv_lstm runs its recurrence from t = 1 whatever `first` is, so frame t's state has seen all of z_<t.
    """
    return tf.concat([self._log_prob_frames(*part) for part in self._sequence_parts(z, h, first)], axis=1)

  def sequence_params(self, z: tf.Tensor, h: tf.Tensor | None, first: int):
    """Teacher-forced parameters of frames t = first .. T-1, in consecutive parts (frames under the
    unconditional prior, then under the conditional one; with shift_mixture, zero-padded windows and full ones
    apart): a list of (z_t [B, n, h, w, c], mu and log_sigma
    [B*n, h, w, c]). Arguments as `sequence_log_prob`'s. (With shift_mixture, padded windows' untranslated
    Gaussian.)"""
    return [part[:3] for part in self._sequence_parts(z, h, first)]

  def _sequence_parts(self, z: tf.Tensor, h: tf.Tensor | None, first: int):
    """`sequence_params`' parts, each with (mixture logits [B*n, k^2], padded) appended, padded being a bool
    [B*n] or Python True (every row: then only the mixture is computed), or (None, None) where no padded window
    is mixed."""
    num_frames = z.shape[1]
    k = self.num_context
    parts = []
    uncond_end = min(self.min_context, num_frames)
    if first < uncond_end:  # frames first .. min_context-1: unconditional prior
      zs = take(z, first, uncond_end, axis=1)  # [B, n, h, w, c]
      hs = None if h is None else _fold(take(h, first, uncond_end, axis=1))  # [B*n, h, w, cond]
      parts.append((zs, *self.unconditional_params(hs, tf.shape(zs)[0] * tf.shape(zs)[1]), None, None))
    cond_start = max(first, self.min_context)
    if cond_start < num_frames:  # frames t >= min_context: conditional prior
      if self.is_recurrent:
        z_prev = _fold(z[:, cond_start - 1:num_frames - 1])  # z_{t-1}: [B*n, h, w, c]
        outputs, _ = self._recurrence(z, h)  # [B, T-1, h, w, width]: step t at index t-1
        mu, log_sigma = self._output_params(self.output_conv(_fold(outputs[:, cond_start - 1:])), z_prev)
        parts.append((take(z, cond_start, None, axis=1), mu, log_sigma, None, None))
      elif self.shift_mixture:  # padded windows (t < K) apart: only they need the k^2 translations
        parts.extend(self._window_part(z, h, start, end) for start, end in
                     ((cond_start, min(k, num_frames)), (max(k, cond_start), num_frames)) if start < end)
      else:
        parts.append(self._window_part(z, h, cond_start, num_frames))
    return parts

  def _window_part(self, z: tf.Tensor, h: tf.Tensor | None, start: int, end: int):
    """A `_sequence_parts` part for frames start .. end-1 (start >= min_context) from their windows z[t-K:t],
    zero-padded in front where t < K (pad_context)."""
    k = self.num_context
    pad = max(k - start, 0)
    past = take(z, start - k + pad, end - 1, axis=1)  # [B, end-1-start+k-pad, h, w, c]
    past = tf.pad(past, [[0, 0], [pad, 0], [0, 0], [0, 0], [0, 0]])  # [B, n+K-1, h, w, c]
    past_windows = windows(past, k, axis=1)  # [B, n, K, h, w, c]
    ht = None if h is None else _fold(take(h, start, end, axis=1))  # [B*n, h, w, cond]
    padded = None
    if end <= k:  # every frame's window is zero-padded: a static flag, so the full-window path is not built
      padded = True
    elif pad:  # frames start .. K-1 have zero-padded windows
      padded = tf.reshape(tf.tile(tf.constant([[t < k for t in range(start, end)]]), [tf.shape(z)[0], 1]),
                          [-1])  # [B*n]
    # with every window padded, frame t's has K - t zeros in front: at least K - (end - 1)
    mu, log_sigma, logits = self.conditional_mixture(_fold(past_windows), ht, padded,
                                                     zero_front=k - (end - 1) if padded is True else 0)
    return take(z, start, end, axis=1), mu, log_sigma, (None if padded is None else logits), padded

  def _log_prob_frames(self, z: tf.Tensor, mu: tf.Tensor, log_sigma: tf.Tensor, logits: tf.Tensor | None = None,
                       padded: tf.Tensor | None = None) -> tf.Tensor:
    """log-probs [B, n] of frames z [B, n, h, w, c] under (mu, log_sigma) [B*n, h, w, c], or, on the rows where
    padded [B*n] holds (every row if it is Python True), under the mixture of its translations with logits
    [B*n, k^2]."""
    shape = tf.shape(z)
    if logits is not None and padded is True:
      log_prob = shift_mixture_log_prob(_fold(z), mu, log_sigma, logits, self.skip_kernel)  # [B*n]
    else:
      log_prob = gaussian(mu, log_sigma).log_prob(_fold(z))  # [B*n]
      if logits is not None:
        mixed = shift_mixture_log_prob(_fold(z), mu, log_sigma, logits, self.skip_kernel)  # [B*n]
        log_prob = tf.where(padded, mixed, log_prob)
    return tf.reshape(log_prob, shape[:2])  # [B, n]

  def get_config(self):
    return {**super().get_config(), "latent_shape": self.latent_shape, "cond_channels": self.cond_channels,
            "kind": self.kind, "num_context": self.num_context, "depth": self.depth, "width": self.width,
            "dilations": self.dilations, "gating": self.gating, "skip": self.skip,
            "pad_context": self.pad_context, "conv_dtype": self.conv_dtype,
            "mean_gradient_beta": self.mean_gradient_beta, "skip_kernel": self.skip_kernel,
            "advect_padded": self.advect_padded, "shift_mixture": self.shift_mixture}
