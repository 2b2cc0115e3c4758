"""Conditional Glow video generation (Donahue 2019, "Label-Conditioned Next-Frame Video Generation with Neural
Flows"), conditioned on a label or a caption y.

§III-A  Conditional Glow. Every coupling network of a multi-scale Glow also sees a conditioning tensor c^(l),
        concatenated to its input (t2v.bijectors.coupling), so each level stays exactly invertible for any fixed
        condition. c^(l) comes from a feature pyramid over an image-shaped condition map (one strided conv + ReLU
        per level: level l's features have the size of level l's latents). The latents follow Glow's learned
        prior made conditional: per level l
          p(z^(l) | h^(l), c^(l)) = N(mu, sigma),  (mu, log sigma) = zero-initialised conv3x3([h^(l), c^(l)]),
        h^(l) the part of the frame that continues above level l (none at the top), so it starts as N(0, I).
§III-B  Head model: the first frame, log p(x_0 | y), a conditional Glow whose condition map is the label's
        learned image (the paper's representation) or a caption encoder's map (t2v.layers.conditioning).
§III-C  Tail model: the next frame given the past. A context processor reads each frame into a state,
          s_{-1} = 0,   s_t = s_{t-1} + CP([s_{t-1}, x_t])        (CP: ActNorm -> conv -> ReLU -> conv)
        so s_t has seen x_0..x_t, and a second conditional Glow models x_{t+1} with the condition map
        [x_t, s_t, y] (the parts an ablation keeps: `tail_prev_frame`, `tail_state`, `tail_condition`).
§IV     Objective: log p(x_0..x_{T-1} | y) = log p_head(x_0 | y) + sum_{t < T-1} log p_tail(x_{t+1} | x_t, s_t, y),
        over frames dequantised as in VideoFlow (t2v.models.likelihood), in bits per pixel; Table I reports the
        first frame's bpp and the tail frames' bpp separately (`bpp_first_frame`, `bpp_tail`).
§V      Sampling: the head draws x_0 (or conditioning frames are given and read into the state), then the tail
        draws one frame at a time, each level top first; a temperature T scales every sigma.

Training windows. Each training example is a window of `num_train_frames` frames (0: the problem's clip length)
and its first frame is scored by the head. Clips stored at that length (captioned shapes: 5 frames) always give
windows from frame 0, so the head learns real first frames. Windows cut from longer stored clips start anywhere:
the head then learns a frame from a random time of a clip given y, which is still a valid frame to start a
generated video from (the paper's random-crop training does the same). Evaluation scores clips from frame 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from t2v.bijectors.glow import MultiScaleGlow
from t2v.layers.conditioning import CaptionEncoder, ContextProcessor, FeaturePyramid, LabelEmbedding
from t2v.layers.tracking import track_layers
from t2v.models.base import VideoModel
from t2v.models.cglow_video_hparams import CGlowVideoHParams
from t2v.models.likelihood import bits_per_pixel, dequantize, quantize
from t2v.models.videoflow_prior import bounded_log_sigma, gaussian
from t2v.problems.spec import VideoSpec

_CENTRE = 0.5  # the flows see y - 1/2, centred on zero (a shift: log|det| = 0)
_HEAD_SEED, _TAIL_SEED = 0, 1  # seeds of the two flows' random 1x1-conv rotations (different flows, different ones)
_FEATURE_FORMS = {"label": "int32 [B], label ids", "caption": "string [B], one caption per video"}


# ---- §III-A: a conditional Glow ------------------------------------------------------------------------

class LevelPrior(keras.layers.Layer):
  """Glow's learned prior of one level's latents z [N, h, w, c], conditional: N(mu, sigma).

  (mu, raw log sigma) = a zero-initialised 3x3 conv of the level's inputs (h^(l) and/or c^(l)), or, for a level
  with neither (the top of an unconditional flow), a learned zero-initialised map [h, w, 2c]. log sigma is
  bounded below as in VideoFlow's prior (`bounded_log_sigma`). Starts as N(0, ~I).

  Args:
    latent_shape: (h, w, c) of the level's latents.
    in_channels: channels of the concatenated inputs (0: none).
  """

  def __init__(self, latent_shape: tuple[int, int, int], in_channels: int, **kwargs):
    super().__init__(**kwargs)
    self.latent_shape = tuple(latent_shape)
    self.in_channels = in_channels
    channels = latent_shape[-1]
    if in_channels:
      self.conv = keras.layers.Conv2D(2 * channels, 3, padding="same", kernel_initializer="zeros", name="conv")
    else:
      self.learned = self.add_weight(shape=(*latent_shape[:2], 2 * channels), initializer="zeros", name="learned")

  def create_variables(self) -> None:
    """Creates the conv's weights from the config, without running the prior."""
    if self.in_channels:
      self.conv.build((None, *self.latent_shape[:2], self.in_channels))
    self.built = True

  def gaussian_params(self, inputs: Sequence[tf.Tensor], batch_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(mu, log sigma) [N, h, w, c] from the level's inputs (each [N, h, w, ...]; empty when in_channels=0)."""
    if self.in_channels:
      raw = self.conv(tf.concat(list(inputs), axis=-1))  # [N, h, w, 2c]
    else:
      raw = tf.tile(self.learned[None], [batch_size, 1, 1, 1])  # [N, h, w, 2c]
    mu, raw_log_sigma = tf.split(raw, 2, axis=-1)
    return mu, bounded_log_sigma(raw_log_sigma)

  def get_config(self):
    return {**super().get_config(), "latent_shape": self.latent_shape, "in_channels": self.in_channels}


class ConditionalGlow(keras.layers.Layer):
  """A multi-scale Glow whose couplings and priors see the feature pyramid of a condition map (§III-A).

  Args:
    image_shape: (H, W, C) of the frames it models.
    condition_channels: channels of its condition map [N, H, W, condition_channels]; 0: unconditional.
    num_levels, depth, hidden_channels, coupling, activation: the Glow (t2v.bijectors.glow.MultiScaleGlow).
    pyramid_channels: channels of every pyramid level (the couplings' cond_channels), when conditional.
    seed: seeds the flow's random rotations.
    reversible_gradients, conv_dtype: the Glow's gradient mode and coupling-network dtype (MultiScaleGlow).
  """

  def __init__(self, image_shape: tuple[int, int, int], condition_channels: int, num_levels: int, depth: int,
               hidden_channels: int, coupling: str, activation: str, pyramid_channels: int, seed: int,
               reversible_gradients: bool = False, conv_dtype: str = "float32", **kwargs):
    super().__init__(**kwargs)
    # ---- config
    self.image_shape = tuple(image_shape)
    self.condition_channels = condition_channels
    self.num_levels = num_levels
    self.depth = depth
    self.hidden_channels = hidden_channels
    self.coupling = coupling
    self.activation = activation
    self.pyramid_channels = pyramid_channels
    self.seed = seed
    self.reversible_gradients = reversible_gradients
    self.conv_dtype = conv_dtype
    cond_channels = pyramid_channels if condition_channels else 0
    # ---- layers
    self.pyramid = FeaturePyramid(num_levels, pyramid_channels, name="pyramid") if condition_channels else None
    self.glow = MultiScaleGlow(image_shape, num_levels, depth, hidden_channels, coupling, activation,
                               cond_channels=cond_channels, seed=seed, reversible_gradients=reversible_gradients,
                               conv_dtype=conv_dtype, name="glow")
    self.priors = []
    for level, latent_shape in enumerate(self.glow.latent_shapes):
      h_channels = self.glow.cond_shapes[level][-1] if level < num_levels - 1 else 0
      self.priors.append(LevelPrior(latent_shape, h_channels + cond_channels, name=f"prior_{level}"))
    self.priors = track_layers(self, "prior", self.priors)

  def create_variables(self) -> None:
    """Creates every weight from the config, without running the flow: the pyramid's and the priors' (the
    Glow's own live in its parameter layers from construction), in the order a first `log_prob` creates them."""
    if self.pyramid is not None:
      self.pyramid.create_variables(self.condition_channels)
    for prior in self.priors:
      prior.create_variables()
    self.built = True

  def conditions(self, condition_map: tf.Tensor | None) -> list[tf.Tensor] | None:
    """The pyramid c^(0..L-1) of a condition map, or None for an unconditional flow."""
    if self.pyramid is None:
      if condition_map is not None:
        raise ValueError("this flow is unconditional (condition_channels=0) but got a condition map")
      return None
    if condition_map is None or condition_map.shape[-1] != self.condition_channels:
      got = None if condition_map is None else condition_map.shape
      raise ValueError(f"this flow needs a condition map [N, H, W, {self.condition_channels}], got {got}")
    return self.pyramid(condition_map)

  def _prior_params(self, level: int, h: tf.Tensor | None, conds, batch_size):
    inputs = ([] if h is None else [h]) + ([] if conds is None else [conds[level]])
    return self.priors[level].gaussian_params(inputs, batch_size)

  def encode(self, x: tf.Tensor, condition_map: tf.Tensor | None = None):
    """x [N, H, W, C] -> (zs, hs, log_det, conds): per-level latents, continuing parts, [N], the pyramid."""
    conds = self.conditions(condition_map)
    zs, hs, log_det = self.glow.encode(x, conds)
    return zs, hs, log_det, conds

  def decode(self, zs: list[tf.Tensor], condition_map: tf.Tensor | None = None) -> tf.Tensor:
    """The exact inverse of `encode` for the same condition map: latents -> x [N, H, W, C]."""
    return self.glow.decode(zs, self.conditions(condition_map))

  def log_prob(self, x: tf.Tensor, condition_map: tf.Tensor | None = None) -> tf.Tensor:
    """log p(x | c) in nats: [N]."""
    zs, hs, log_prob, conds = self.encode(x, condition_map)
    batch_size = tf.shape(x)[0]
    for level, z in enumerate(zs):
      mu, log_sigma = self._prior_params(level, hs[level] if level < len(hs) else None, conds, batch_size)
      log_prob += gaussian(mu, log_sigma).log_prob(z)
    return log_prob

  def sample(self, condition_map: tf.Tensor | None, batch_size: tf.Tensor, temperature: tf.Tensor,
             seed: tf.Tensor) -> tf.Tensor:
    """x ~ p(x | c) [N, H, W, C], top level first, every sigma scaled by `temperature`; stateless in `seed`."""
    conds = self.conditions(condition_map)
    u = None  # the input of the level just inverted: h of the level below
    for level in reversed(range(len(self.priors))):
      mu, log_sigma = self._prior_params(level, u, conds, batch_size)
      eps = tf.random.stateless_normal(tf.shape(mu), seed=tf.random.experimental.stateless_fold_in(seed, level))
      z = mu + temperature * tf.exp(log_sigma) * eps
      u = self.glow.decode_level(level, z, u, conds)
    return u

  def initialize(self, x: tf.Tensor, condition_map: tf.Tensor | None = None) -> None:
    """Data-dependent ActNorm initialisation of the flow on x [N, H, W, C] under its conditions (eager)."""
    self.glow.initialize(x, self.conditions(condition_map))

  def get_config(self):
    return {**super().get_config(), "image_shape": self.image_shape, "condition_channels": self.condition_channels,
            "num_levels": self.num_levels, "depth": self.depth, "hidden_channels": self.hidden_channels,
            "coupling": self.coupling, "activation": self.activation, "pyramid_channels": self.pyramid_channels,
            "seed": self.seed, "reversible_gradients": self.reversible_gradients, "conv_dtype": self.conv_dtype}


# ---- the video model -----------------------------------------------------------------------------------

class CGlowVideo(VideoModel):
  """Label/caption-conditioned Glow video generator (Donahue 2019): a head flow for the first frame, a tail flow
  for each next frame given the previous one and a context state."""

  hparams_class = CGlowVideoHParams
  is_likelihood_model = True

  def __init__(self, hparams: CGlowVideoHParams, spec: VideoSpec, **kwargs):
    super().__init__(hparams, spec, **kwargs)
    hp = hparams
    _check_problem_has_condition(hp, spec)
    if self.num_train_frames < 2:
      raise ValueError(f"num_train_frames={self.num_train_frames} trains the head only: the tail model needs "
                       "windows of >= 2 frames; raise num_train_frames (0 takes the whole clip)")
    height, width, channels = spec.frame_shape
    conditioned = hp.condition != "none"
    self.tail_sees_condition = conditioned and hp.tail_condition
    # ---- layers
    self.condition_encoder = None
    if hp.condition == "label":
      self.condition_encoder = LabelEmbedding(spec.num_labels, (height, width), hp.condition_channels,
                                              name="label_embedding")
    elif hp.condition == "caption":
      self.condition_encoder = CaptionEncoder(
          spec.vocabulary, (height, width), hp.condition_channels, width=hp.caption_width, kind=hp.caption_encoder,
          num_layers=hp.caption_layers, num_heads=hp.caption_heads, max_words=hp.caption_max_words,
          name="caption_encoder")
    flow = dict(num_levels=hp.num_levels, depth=hp.depth, hidden_channels=hp.hidden_channels, coupling=hp.coupling,
                activation=hp.coupling_activation, pyramid_channels=hp.pyramid_channels,
                reversible_gradients=hp.reversible_gradients, conv_dtype=hp.conv_dtype)
    self.head = ConditionalGlow(spec.frame_shape, hp.condition_channels if conditioned else 0, seed=_HEAD_SEED,
                                name="head", **flow)
    self.context_processor = (ContextProcessor(hp.state_channels, channels, hp.state_hidden_channels,
                                               name="context_processor") if hp.tail_state else None)
    tail_channels = ((channels if hp.tail_prev_frame else 0) + (hp.state_channels if hp.tail_state else 0)
                     + (hp.condition_channels if self.tail_sees_condition else 0))
    self.tail = ConditionalGlow(spec.frame_shape, tail_channels, seed=_TAIL_SEED, name="tail", **flow)
    self._initialized = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                        name="initialized")
    # ---- wiring: create every variable now, so a checkpoint restores into a complete model. Each part builds its
    # weights from its shapes without running anything, in the order the eager pass of the model on a zero video
    # that did this before created them, so a seeded model starts from the same values (cglow_video_cpu's
    # constructor in the trainer: 0.4-0.6 s instead of 1.7-2.0 s; ~0.7 s of that moves to the first eager run of
    # the data-dependent init).
    if isinstance(self.condition_encoder, CaptionEncoder):
      self.condition_encoder.create_variables()
    self.head.create_variables()
    if self.context_processor is not None:
      self.context_processor.create_variables()
    self.tail.create_variables()
    self._sample_graphs = {}  # one graph per number of context frames

  @property
  def is_initialized(self) -> bool:
    return bool(self._initialized.numpy())

  # ---- §III-B: the condition y ---------------------------------------------------------------------------

  def condition_map(self, features: dict[str, tf.Tensor]) -> tf.Tensor | None:
    """The condition's image-shaped map [B, H, W, condition_channels] from features["label"] (int [B]) or
    features["caption"] (string [B]); None when hparams condition="none"."""
    key = self.hparams.condition
    if key == "none":
      return None
    if key not in features:
      raise ValueError(f"cglow_video with hparams condition={key!r} needs features[{key!r}] "
                       f"({_FEATURE_FORMS[key]}) in every batch and in sample()'s inputs; pass it, or use a "
                       "preset or --hparams=condition=none that does not condition on it")
    return self.condition_encoder(features[key])

  def unknown_words(self, captions: Sequence[str | bytes]) -> dict[int, list[str]]:
    """{index of a caption: its words outside the training vocabulary}; {} when every word is known or the model
    reads no captions. A decoder calls this to refuse a typed caption the model would read as unknown words."""
    if self.hparams.condition != "caption":
      return {}
    return self.condition_encoder.unknown_words(captions)

  # ---- §III-C: the context state -------------------------------------------------------------------------

  def initial_state(self, batch_size: tf.Tensor) -> tf.Tensor:
    """s_{-1}: zeros [B, H, W, S] ([B, H, W, 0] without a state)."""
    height, width, _ = self.spec.frame_shape
    channels = self.hparams.state_channels if self.context_processor is not None else 0
    return tf.zeros(tf.stack([batch_size, height, width, channels]))

  def advance_state(self, state: tf.Tensor, frame: tf.Tensor) -> tf.Tensor:
    """s_t = s_{t-1} + CP([s_{t-1}, x_t]) for a centred frame x_t [B, H, W, C]; the identity without a state."""
    return state if self.context_processor is None else self.context_processor(state, frame)

  def context_states(self, frames: tf.Tensor) -> tf.Tensor:
    """s_0 .. s_{n-1} [B, n, H, W, S] after reading centred frames x_0 .. x_{n-1} [B, n, H, W, C]."""
    state, states = self.initial_state(tf.shape(frames)[0]), []
    for t in range(frames.shape[1]):
      state = self.advance_state(state, frames[:, t])
      states.append(state)
    return tf.stack(states, axis=1)  # [B, n, H, W, S]

  def tail_condition_map(self, previous: tf.Tensor, state: tf.Tensor, condition_map: tf.Tensor | None):
    """The tail's condition map [N, H, W, C + S + E]: [x_t, s_t, y map], each part as the ablation keeps it."""
    parts = []
    if self.hparams.tail_prev_frame:
      parts.append(previous)
    if self.context_processor is not None:
      parts.append(state)
    if self.tail_sees_condition:
      parts.append(condition_map)
    return tf.concat(parts, axis=-1) if parts else None

  # ---- §IV: the likelihood -------------------------------------------------------------------------------

  def frame_log_probs(self, y: tf.Tensor, condition_map: tf.Tensor | None) -> tf.Tensor:
    """log p(y_t | y_<t, c) in nats of every frame of centred frames y [B, T, H, W, C] (T static): [B, T]."""
    num_frames = y.shape[1]
    if num_frames is None or num_frames < 1:
      raise ValueError(f"frame_log_probs needs a static number of frames >= 1, got video of shape {y.shape}")
    head = self.head.log_prob(y[:, 0], condition_map)[:, None]  # [B, 1]: log p_head(x_0 | y)
    if num_frames == 1:
      return head
    n = num_frames - 1  # tail frames x_1 .. x_{T-1}, each given x_{t}, s_{t} (t = 0 .. T-2) and y
    previous, target = y[:, :-1], y[:, 1:]  # [B, n, H, W, C]
    states = self.context_states(previous) if self.context_processor is not None else previous[..., :0]
    maps = None if condition_map is None else tf.repeat(condition_map[:, None], n, axis=1)  # [B, n, H, W, E]
    fold = lambda v: None if v is None else tf.reshape(v, [-1, *v.shape[2:]])  # [B*n, H, W, ...]
    tail_map = self.tail_condition_map(fold(previous), fold(states), fold(maps))
    tail = self.tail.log_prob(fold(target), tail_map)  # [B*n]
    return tf.concat([head, tf.reshape(tail, [-1, n])], axis=1)  # [B, T]

  def log_prob_bpp(self, batch, num_input_frames: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Bits per pixel of every frame after the first `num_input_frames` (0: the head's frame too), given them and
    the batch's label/caption: [B, T - n]."""
    video = batch["video"]
    if video.shape[1] is not None and video.shape[1] <= num_input_frames:
      raise ValueError(f"a {video.shape[1]}-frame video has no frame to score after {num_input_frames} "
                       "conditioning frames")
    y = dequantize(video, seed) - _CENTRE
    bpp = bits_per_pixel(self.frame_log_probs(y, self.condition_map(batch)), self.num_dims)  # [B, T]
    return bpp[:, num_input_frames:]

  def compute_loss(self, batch, training: bool):
    """Mean bits per pixel over every frame of the window (head frame and tail frames), in training and in
    evaluation; metrics `bpp_first_frame` and `bpp_tail` are Table I's two columns."""
    del training  # the same objective: windows from frame 0 when evaluating (see the module docstring)
    video = batch["video"]
    y = dequantize(video, batch.get("seed")) - _CENTRE
    bpp = bits_per_pixel(self.frame_log_probs(y, self.condition_map(batch)), self.num_dims)  # [B, T]
    loss = tf.reduce_mean(bpp, axis=1)  # [B]
    metrics = {"bpp": loss, "bpp_first_frame": bpp[:, 0]}
    if video.shape[1] > 1:
      metrics["bpp_tail"] = tf.reduce_mean(bpp[:, 1:], axis=1)
    return loss, metrics

  def initialize(self, batch) -> None:
    """Data-dependent ActNorm initialisation of the head on first frames, the context processor on its inputs
    (s_{t-1}, x_t), and the tail on the later frames under their conditions (eager, once, before step 0)."""
    y = dequantize(batch["video"]) - _CENTRE  # [B, T, H, W, C]
    condition_map = self.condition_map(batch)
    self.head.initialize(y[:, 0], condition_map)
    n = y.shape[1] - 1
    if n >= 1:
      previous, target = y[:, :-1], y[:, 1:]  # [B, n, H, W, C]
      fold = lambda v: None if v is None else tf.reshape(v, [-1, *v.shape[2:]])  # [B*n, H, W, ...]
      states = previous[..., :0]
      if self.context_processor is not None:
        states = self.context_states(previous)  # read with the still-identity ActNorm
        read_from = tf.concat([self.initial_state(tf.shape(y)[0])[:, None], states[:, :-1]], axis=1)  # s_{t-1}
        self.context_processor.initialize_from(fold(read_from), fold(previous))
        states = self.context_states(previous)  # again, with the initialised ActNorm
      maps = None if condition_map is None else tf.repeat(condition_map[:, None], n, axis=1)
      self.tail.initialize(fold(target), self.tail_condition_map(fold(previous), fold(states), fold(maps)))
    self._initialized.assign(1)

  # ---- §V: sampling -----------------------------------------------------------------------------------

  def sample(self, inputs, num_frames: int, temperature: float = 1.0, seed=(0, 0),
             allow_unknown_words: bool = False) -> tf.Tensor:
    """Generates `num_frames` frames after inputs["video"] (uint8 [B, Tc, H, W, C]; Tc = 0: the head draws
    frame 0 from the label/caption alone), given inputs["label"] (int [B]) or inputs["caption"] (str [B]) as
    the hparams' `condition` needs.

    Every sigma is scaled by `temperature` (0 gives the means). A caption word outside the training vocabulary
    is refused, naming it, unless `allow_unknown_words` (it is then read as the unknown-word token). Returns
    uint8 [B, num_frames, H, W, C]; the same seed gives the same video.
    """
    if num_frames < 1:
      raise ValueError(f"num_frames={num_frames} must be >= 1")
    if temperature < 0:
      raise ValueError(f"temperature={temperature} must be >= 0")
    video = tf.convert_to_tensor(inputs["video"])
    if video.dtype != tf.uint8 or video.shape.rank != 5 or tuple(video.shape[2:]) != self.spec.frame_shape:
      raise ValueError(f"inputs['video'] must be uint8 [B, T, {', '.join(map(str, self.spec.frame_shape))}] (T may "
                       f"be 0), got {video.dtype.name} {video.shape}")
    features = self._checked_condition(inputs, video.shape[0], allow_unknown_words)
    num_context = video.shape[1]
    if num_context not in self._sample_graphs:
      self._sample_graphs[num_context] = tf.function(self._sample_frames, reduce_retracing=True, autograph=False)
    return self._sample_graphs[num_context](video, features, tf.constant(num_frames),
                                            tf.constant(temperature, tf.float32),
                                            tf.cast(tf.convert_to_tensor(seed), tf.int32))

  def _checked_condition(self, inputs, batch_size: int, allow_unknown_words: bool) -> dict[str, tf.Tensor]:
    """The condition feature of `inputs`, checked on the Python side: {} / {"label": int32} / {"caption": str}."""
    key = self.hparams.condition
    if key == "none":
      return {}
    if key not in inputs:
      raise ValueError(f"cglow_video with hparams condition={key!r} needs inputs[{key!r}] ({_FEATURE_FORMS[key]}); "
                       f"got only {sorted(inputs)}")
    values = np.asarray(inputs[key].numpy() if hasattr(inputs[key], "numpy") else inputs[key])
    if values.shape != (batch_size,):
      raise ValueError(f"inputs[{key!r}] must have shape [{batch_size}] (one per video), got {list(values.shape)}")
    if key == "label":
      if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"inputs['label'] must be integer label ids, got dtype {values.dtype}")
      bad = values[(values < 0) | (values >= self.spec.num_labels)]
      if bad.size:
        raise ValueError(f"labels {sorted(set(bad.tolist()))} are outside 0..{self.spec.num_labels - 1} (this "
                         f"problem's {self.spec.num_labels} labels)")
      return {"label": tf.constant(values, tf.int32)}
    captions = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in values.tolist()]
    unknown = self.unknown_words(captions)
    if unknown and not allow_unknown_words:
      listed = "; ".join(f"caption {i} {captions[i]!r}: {', '.join(words)}" for i, words in unknown.items())
      raise ValueError(f"words outside the training vocabulary ({listed}); use words of the vocabulary "
                       f"({len(self.spec.vocabulary)} words, e.g. {', '.join(self.spec.vocabulary[:8])}), or pass "
                       "allow_unknown_words=True to read them as the unknown-word token")
    return {"caption": tf.constant(captions, tf.string)}

  def _sample_frames(self, video, features, num_frames, temperature, seed):
    batch_size = tf.shape(video)[0]
    condition_map = self.condition_map(features)
    frame_seed = lambda t: tf.random.experimental.stateless_fold_in(seed, t)
    num_context = video.shape[1]
    frames = tf.TensorArray(tf.uint8, size=num_frames, element_shape=[None, *self.spec.frame_shape])
    state = self.initial_state(batch_size)  # s_{-1}
    if num_context == 0:  # §III-B: the head draws x_0
      last = self.head.sample(condition_map, batch_size, temperature, frame_seed(0))
      frames = frames.write(0, quantize(last + _CENTRE))
      first = 1
    else:  # read the given frames x_0 .. x_{Tc-2} into the state; x_{Tc-1} is read in the loop
      context = dequantize(video, noise="midpoint") - _CENTRE  # [B, Tc, H, W, C]
      for t in range(num_context - 1):
        state = self.advance_state(state, context[:, t])
      last = context[:, -1]
      first = 0

    def body(i, last, state, frames):  # §III-C: x_{t+1} ~ p_tail(. | x_t, s_t, y)
      state = self.advance_state(state, last)  # s_t
      tail_map = self.tail_condition_map(last, state, condition_map)
      frame = self.tail.sample(tail_map, batch_size, temperature, frame_seed(num_context + i))
      return i + 1, frame, state, frames.write(i, quantize(frame + _CENTRE))

    _, _, _, frames = tf.while_loop(lambda i, *_: i < num_frames, body, (tf.constant(first), last, state, frames))
    return tf.transpose(frames.stack(), [1, 0, 2, 3, 4])  # [B, num_frames, H, W, C]


def _check_problem_has_condition(hp: CGlowVideoHParams, spec: VideoSpec) -> None:
  """A label-conditioned model needs labels, a caption-conditioned one captions: refuse the others at once."""
  if hp.condition == "label" and spec.num_labels < 1:
    raise ValueError("hparams condition='label' needs a problem with labels, but this one has none "
                     "(spec.num_labels=0); train on a labelled problem (e.g. --problem=captioned_shapes), or set "
                     "--hparams=condition=none (or condition=caption where the problem has captions)")
  if hp.condition == "caption" and not spec.has_caption:
    raise ValueError("hparams condition='caption' needs a problem with captions, but this one has none "
                     "(spec.has_caption=False); train on a captioned problem (e.g. --problem=captioned_shapes), "
                     "or set --hparams=condition=none (or condition=label where the problem has labels)")
