"""VideoFlow: a flow-based video prediction model (Kumar et al., ICLR 2020).

§4.1  Each frame x_t is dequantised to y_t = (x_t + u) / 256 and mapped by a multi-scale Glow (L levels x K
      steps, shared across time) to latents z_t^(1..L); log p(y_t | y_<t) = log p(z_t | z_<t) + log|det|.
§4.2  The latents follow an autoregressive prior, one conditionally factorised Gaussian per level:
      p(z_t | z_<t) = prod_l p(z_t^(l) | z_<t^(l), z_t^(>l)), where z_t^(>l) enters through h_t^(l), the part of
      frame t's flow that continues above level l (see `videoflow_prior.py`).
§4.3  Training maximises the log-likelihood of the target frames of random temporal windows given the first
      `num_cond_frames` frames; evaluation scores whole clips in bits per pixel.
§5    Sampling conditions on frames and rolls out any number of frames, level by level from the top: sample
      z_t^(L), invert level L to get h_t^(L-1), sample z_t^(L-1) given it, and so on; a temperature T scales
      every sigma. Each level's prior carries a state through the rollout: the window of its last K latents,
      or the conv_lstm prior's recurrent state (§6's remedy for forgetting occluded objects). Tools: per-level
      latents of a frame and their exact inverse (§5.3 interpolation) and the likelihood of a candidate next
      frame (§5.5 out-of-sequence detection).
"""

from __future__ import annotations

import math

import tensorflow as tf

from t2v.bijectors.glow import MultiScaleGlow
from t2v.layers.tracking import track_layers
from t2v.models.base import VideoModel
from t2v.models.likelihood import bits_per_pixel, dequantize, quantize
from t2v.models.videoflow_hparams import VideoFlowHParams
from t2v.models.videoflow_prior import LatentPrior
from t2v.problems.spec import VideoSpec

_CENTRE = 0.5  # the flow sees y - 1/2, centred on zero (a shift: log|det| = 0)


class VideoFlow(VideoModel):
  """VideoFlow (Kumar et al., ICLR 2020): per-frame multi-scale Glow with an autoregressive latent prior."""

  hparams_class = VideoFlowHParams
  is_likelihood_model = True

  def __init__(self, hparams: VideoFlowHParams, spec: VideoSpec, **kwargs):
    super().__init__(hparams, spec, **kwargs)
    hp = hparams
    self.num_cond_frames = hp.num_cond_frames or spec.num_input_frames
    if self.num_train_frames <= self.num_cond_frames:
      raise ValueError(f"num_train_frames={self.num_train_frames} leaves no target frame after "
                       f"num_cond_frames={self.num_cond_frames}: raise num_train_frames")
    if hp.prior_shift_mixture and self.num_cond_frames >= hp.num_context_latents:
      raise ValueError(f"prior_shift_mixture=True trains its mixture on frames t < num_context_latents="
                       f"{hp.num_context_latents}, but training conditions on num_cond_frames={self.num_cond_frames} "
                       "frames, so none of those is scored and the mixture weights would never train: set "
                       "num_cond_frames below num_context_latents")
    # ---- layers
    self.glow = MultiScaleGlow(spec.frame_shape, hp.num_levels, hp.depth, hp.hidden_channels, hp.coupling,
                               hp.coupling_activation, reversible_gradients=hp.reversible_gradients,
                               conv_dtype=hp.conv_dtype, name="glow")
    self.priors = []
    for level, latent_shape in enumerate(self.glow.latent_shapes):
      top = level == hp.num_levels - 1
      self.priors.append(LatentPrior(
          latent_shape, 0 if top else self.glow.cond_shapes[level][-1], hp.prior, hp.num_context_latents,
          hp.prior_depth, hp.prior_width, hp.prior_dilations, hp.prior_gating, hp.latent_skip,
          hp.pad_context, conv_dtype=hp.conv_dtype, mean_gradient_beta=hp.prior_mean_gradient_beta,
          skip_kernel=hp.latent_skip_kernel, advect_padded=hp.latent_skip_kernel_padded,
          shift_mixture=hp.prior_shift_mixture, name=f"prior_{level}"))
    self.priors = track_layers(self, "prior", self.priors)
    self._initialized = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                        name="initialized")
    # ---- wiring: create every variable now, so a checkpoint restores into a complete model. The flow's live in
    # its parameter layers already; the priors build theirs from their shapes, without running anything (an
    # eager pass of the model on a small frame did this before: 1.1 s for videoflow_cpu_multiscale, 7.2 s for
    # videoflow_bair_qual, mostly the first run of every convolution shape).
    for prior in self.priors:
      prior.create_variables()
    # one graph per number of context frames: the context's length decides statically whether there are latents
    # to encode and how each prior builds its state; the batch size may vary within a graph
    self._sample_graphs = {}

  @property
  def is_initialized(self) -> bool:
    return bool(self._initialized.numpy())

  # ---- §4.1-4.2: the likelihood -------------------------------------------------------------------

  def encode_latents(self, y: tf.Tensor):
    """Centred frames y [B, T, H, W, C] -> (zs, hs, log_det): per-level [B, T, ...] and [B, T]."""
    shape = tf.shape(y)
    b, t = shape[0], shape[1]
    frames = tf.reshape(y, tf.concat([[b * t], shape[2:]], 0))  # [B*T, H, W, C]
    zs, hs, log_det = self.glow.encode(frames)
    unfold = lambda x: tf.reshape(x, tf.concat([[b, t], tf.shape(x)[1:]], 0))  # [B, T, h, w, c]
    return [unfold(z) for z in zs], [unfold(h) for h in hs], tf.reshape(log_det, [b, t])

  def frame_log_probs(self, y: tf.Tensor, first: int) -> tf.Tensor:
    """log p(y_t | y_<t) for t = first .. T-1, in nats: [B, T - first]."""
    return self._log_probs_of_latents(*self.encode_latents(y), first)

  def _log_probs_of_latents(self, zs, hs, log_det, first: int) -> tf.Tensor:
    log_prob = log_det[:, first:]
    for level, prior in enumerate(self.priors):
      h = hs[level] if level < len(hs) else None
      log_prob += prior.sequence_log_prob(zs[level], h, first)
    return log_prob

  def _unconditional_prior_nll(self, zs, hs, num_frames: int) -> tf.Tensor:
    """Bits per latent dim of the first `num_frames` frames' latents under the unconditional priors: [B].

    The latents are held fixed (stop_gradient), so this term trains the priors of frames without K
    predecessors without changing what the flow learns from the target frames.
    """
    total = 0.0
    for level, prior in enumerate(self.priors):
      z = tf.stop_gradient(zs[level][:, :num_frames])
      h = tf.stop_gradient(hs[level][:, :num_frames]) if level < len(hs) else None
      total += tf.reduce_sum(prior.sequence_log_prob(z, h, 0), axis=1)
    return -total / (num_frames * self.num_dims * math.log(2.0))

  def _prior_mean_relative_error(self, zs, hs, first: int) -> tf.Tensor:
    """How far every prior's teacher-forced mean (its T = 0 prediction) is from frames first .. T-1's latents,
    relative to copying each frame's previous latent: per level sum (mu - z_t)^2 / sum (z_t - z_{t-1})^2 over
    the frames and cells, averaged over the levels (the top `prior_mean_error_levels` ones, or all when it is
    0): [B] (1 at the temporal skip's start, 0 for exact means).

    Relative, so that it does not grow with the latents' scale, which the flow keeps changing (an absolute
    squared error grew 13-fold in 1000 steps and took the bpp with it). The latents are held fixed
    (stop_gradient), so this term trains the priors' weights alone, never the flow (`prior_mean_error_weight`).
    With `prior_mean_error_full_windows` only frames t >= K count (their K-latent window holds no padding).
    """
    if first < 1:
      raise ValueError(f"prior_mean_error_weight needs a conditioning frame to copy (first={first}): set "
                       "num_cond_frames >= 1")
    if self.hparams.prior_mean_error_full_windows:
      first = max(first, self.hparams.num_context_latents)
      if zs[0].shape[1] is not None and first >= zs[0].shape[1]:
        raise ValueError(f"prior_mean_error_full_windows scores frames t >= num_context_latents="
                         f"{self.hparams.num_context_latents}, but the window has {zs[0].shape[1]} frames: "
                         "raise num_train_frames")
    num_levels = self.hparams.prior_mean_error_levels or len(self.priors)
    total = 0.0
    for level, prior in list(enumerate(self.priors))[-num_levels:]:  # the top num_levels levels
      z = tf.stop_gradient(zs[level])  # [B, T, h, w, c]
      h = tf.stop_gradient(hs[level]) if level < len(hs) else None
      error = 0.0
      for target, mu, _ in prior.sequence_params(z, h, first):
        shape = tf.shape(target)  # [B, n, h, w, c]
        residual = tf.reshape(target, tf.shape(mu)) - mu  # [B*n, h, w, c]
        error += tf.reduce_sum(tf.reshape(residual ** 2, [shape[0], -1]), axis=1)  # [B]
      copy = tf.reduce_sum((z[:, first:] - z[:, first - 1:-1]) ** 2, axis=[1, 2, 3, 4])  # [B]
      total += error / (copy + 1e-6)
    return total / num_levels

  def log_prob_bpp(self, batch, num_input_frames: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Bits per pixel of every frame after the first `num_input_frames`, given them: [B, T - n]."""
    video = batch["video"]
    if video.shape[1] is not None and video.shape[1] <= num_input_frames:
      raise ValueError(f"a {video.shape[1]}-frame video has no frame to score after {num_input_frames} "
                       "conditioning frames")
    y = dequantize(video, seed) - _CENTRE
    return bits_per_pixel(self.frame_log_probs(y, num_input_frames), self.num_dims)

  def compute_loss(self, batch, training: bool):
    """Mean bits per pixel over the target frames: training windows condition on `num_cond_frames`, whole
    evaluation clips on the problem's `num_input_frames`.

    When training, the unconditional priors of the first min(min_context, num_cond_frames) frames (min_context:
    K, or 1 with pad_context) are fitted to those frames' (fixed) latents as well, so that they are learned
    although those frames are not scored.
    """
    first = self.num_cond_frames if training else self.spec.num_input_frames
    video = batch["video"]
    if video.shape[1] is not None and video.shape[1] <= first:
      raise ValueError(f"a {video.shape[1]}-frame video has no frame to score after {first} conditioning frames")
    zs, hs, log_det = self.encode_latents(dequantize(video, batch.get("seed")) - _CENTRE)
    bpp = tf.reduce_mean(bits_per_pixel(self._log_probs_of_latents(zs, hs, log_det, first), self.num_dims), 1)
    metrics = {"bpp": bpp}  # [B]
    loss = bpp
    if not training:
      return loss, metrics
    num_unconditional = min(self.priors[0].min_context, first)
    if num_unconditional:
      metrics["first_frames_prior_nll"] = self._unconditional_prior_nll(zs, hs, num_unconditional)
      loss += metrics["first_frames_prior_nll"]
    if self.hparams.prior_mean_error_weight:
      metrics["prior_mean_relative_error"] = self._prior_mean_relative_error(zs, hs, first)
      loss += self.hparams.prior_mean_error_weight * metrics["prior_mean_relative_error"]
    return loss, metrics

  def initialize(self, batch) -> None:
    """Data-dependent ActNorm initialisation on every frame of `batch` (eager, once, before step 0)."""
    y = dequantize(batch["video"]) - _CENTRE
    shape = tf.shape(y)
    self.glow.initialize(tf.reshape(y, tf.concat([[-1], shape[2:]], 0)))  # [B*T, H, W, C]
    self._initialized.assign(1)

  # ---- §5: sampling ----------------------------------------------------------------------------------

  def sample(self, inputs, num_frames: int, temperature: float = 1.0, seed=(0, 0)) -> tf.Tensor:
    """Rolls out `num_frames` frames after inputs["video"] (uint8 [B, Tc, H, W, C], Tc may be 0).

    Every level's sigma is scaled by `temperature` (0 gives the means). Returns uint8 [B, num_frames, H, W, C];
    the same seed gives the same video.
    """
    if num_frames < 1:
      raise ValueError(f"num_frames={num_frames} must be >= 1")
    if temperature < 0:
      raise ValueError(f"temperature={temperature} must be >= 0")
    video = tf.convert_to_tensor(inputs["video"])
    if video.dtype != tf.uint8 or video.shape.rank != 5 or tuple(video.shape[2:]) != self.spec.frame_shape:
      raise ValueError(f"inputs['video'] must be uint8 [B, T, {', '.join(map(str, self.spec.frame_shape))}], "
                       f"got {video.dtype.name} {video.shape}")
    num_context = video.shape[1]
    if num_context not in self._sample_graphs:
      self._sample_graphs[num_context] = tf.function(self._sample_frames, reduce_retracing=True, autograph=False)
    return self._sample_graphs[num_context](video, tf.constant(num_frames), tf.constant(temperature, tf.float32),
                                            tf.cast(tf.convert_to_tensor(seed), tf.int32))

  def sample_tensors(self, video: tf.Tensor, num_frames: tf.Tensor, temperature: tf.Tensor,
                     seed: tf.Tensor) -> tf.Tensor:
    """`sample` for graph callers (hub modules): tensor arguments, no Python checks; video's time is static."""
    return self._sample_frames(video, num_frames, temperature, seed)

  def _context_states(self, video):
    """Each level's prior state after the conditioning frames video [B, Tc, H, W, C] (Tc may be 0).

    A window of the last K latents [B, K, h, w, c] (zero-padded in front), or the conv_lstm prior's recurrent
    state, which has read every conditioning frame (see `LatentPrior.context_state`).
    """
    if video.shape[1] == 0:
      batch = tf.shape(video)[0]
      return [prior.initial_state(batch) for prior in self.priors]
    zs, hs, _ = self.encode_latents(dequantize(video, noise="midpoint") - _CENTRE)
    return [prior.context_state(zs[level], hs[level] if level < len(hs) else None)
            for level, prior in enumerate(self.priors)]

  def _sample_next(self, states, t, temperature, seed):
    """One frame at time t, top level first. Returns (y_t [B, H, W, C], the priors' states after frame t)."""
    u, states = None, list(states)
    for level in reversed(range(len(self.priors))):
      prior = self.priors[level]
      level_seed = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(seed, t),
                                                            level)
      choice_seed = tf.random.experimental.stateless_fold_in(level_seed, 1)  # the shift mixture's translation
      mu, log_sigma, state = prior.params(states[level], u, t, temperature, choice_seed)
      eps = tf.random.stateless_normal(tf.shape(mu), seed=level_seed)
      z = mu + temperature * tf.exp(log_sigma) * eps
      u = self.glow.decode_level(level, z, u)
      states[level] = prior.advance(state, z)
    return u, states

  def _sample_frames(self, video, num_frames, temperature, seed):
    states = self._context_states(video)
    start = tf.shape(video)[1]
    frames = tf.TensorArray(tf.uint8, size=num_frames, element_shape=[None, *self.spec.frame_shape])

    def body(i, states, frames):
      y, states = self._sample_next(states, start + i, temperature, seed)
      return i + 1, states, frames.write(i, quantize(y + _CENTRE))

    _, _, frames = tf.while_loop(lambda i, *_: i < num_frames, body, (tf.constant(0), states, frames))
    return tf.transpose(frames.stack(), [1, 0, 2, 3, 4])  # [B, num_frames, H, W, C]

  # ---- §5.3, §5.5: latent tools ----------------------------------------------------------------------

  def encode_frames(self, frames: tf.Tensor) -> list[tf.Tensor]:
    """uint8 frames [B, H, W, C] -> the per-level latents [B, h_l, w_l, c_l] (midpoint dequantisation)."""
    zs, _, _ = self.glow.encode(dequantize(frames, noise="midpoint") - _CENTRE)
    return zs

  def decode_frames(self, zs: list[tf.Tensor]) -> tf.Tensor:
    """Per-level latents -> uint8 frames [B, H, W, C]; exact inverse of `encode_frames` on its outputs."""
    return quantize(self.glow.decode(zs) + _CENTRE)

  def interpolate(self, frame_a: tf.Tensor, frame_b: tf.Tensor, num_points: int,
                  levels: tuple[int, ...] | None = None) -> tf.Tensor:
    """Frames on the straight line between the latents of frame_a and frame_b [B, H, W, C] at `levels`
    (default: all), keeping frame_a's latents at the others. Returns uint8 [B, num_points, H, W, C]."""
    levels = tuple(range(len(self.priors))) if levels is None else tuple(levels)
    bad = [level for level in levels if not 0 <= level < len(self.priors)]
    if bad or num_points < 2:
      raise ValueError(f"levels={levels} must lie in [0, {len(self.priors)}) and num_points={num_points} >= 2")
    za, zb = self.encode_frames(frame_a), self.encode_frames(frame_b)
    out = []
    for alpha in tf.linspace(0.0, 1.0, num_points):
      zs = [a + alpha * (b - a) if level in levels else a for level, (a, b) in enumerate(zip(za, zb))]
      out.append(self.decode_frames(zs))
    return tf.stack(out, axis=1)

  def next_frame_bpp(self, context: tf.Tensor, candidate: tf.Tensor, seed=(0, 0)) -> tf.Tensor:
    """Bits per pixel of `candidate` [B, H, W, C] as the frame after `context` [B, Tc, H, W, C]: [B].

    Low values mean a plausible continuation (out-of-sequence detection, VideoFlow §5.5)."""
    video = tf.concat([context, candidate[:, None]], axis=1)
    return self.log_prob_bpp({"video": video}, context.shape[1], seed=tf.convert_to_tensor(seed))[:, 0]

