"""Conditioning inputs of a conditional Glow (Donahue 2019, "Label-Conditioned Next-Frame Video Generation with
Neural Flows", §III): what a label, a caption or a video's past becomes before a flow sees it.

Every condition is first an image-shaped map [B, H, W, C_c] at the frame's resolution, then a feature pyramid
turns it into one tensor per flow level, at that level's latent resolution:
  LabelEmbedding   the paper's label representation: a learned image [H, W, channels] per label;
  CaptionEncoder   a caption typed by a user: words (t2v.text's rule, in-graph) -> ids over the training
                   vocabulary -> token embeddings -> a small transformer or a pooled bag of words -> a vector,
                   broadcast over H x W and added to a learned position map;
  ContextProcessor the tail model's recurrent state: s' = s + conv(ReLU(conv(ActNorm([s, x])))), a residual
                   update of the state s [B, H, W, S] by a frame x [B, H, W, C];
  FeaturePyramid   a map [B, H, W, C_c] -> L tensors [B, H / 2^(l+1), W / 2^(l+1), channels], one strided 3x3
                   conv + ReLU per level: level l's tensor has the spatial size of MultiScaleGlow's level-l
                   latents, which is what its `conds` argument expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from t2v import text
from t2v.layers.tracking import track_layers

CAPTION_ENCODERS = ("transformer", "bag_of_words")

# Reserved token ids of the caption encoder; the vocabulary's words follow, in the vocabulary's order.
PAD_ID = 0  # padding after the last word
UNK_ID = 1  # a word outside the training vocabulary
BOS_ID = 2  # a learned first token, present in every caption, so no caption (not even "") encodes to nothing
NUM_RESERVED_IDS = 3

_NORM_MIN_STD = 1e-3  # channels flatter than this on the init batch (e.g. the all-zero first state) stay unscaled


class FeaturePyramid(keras.layers.Layer):
  """A conditioning map [B, H, W, C_c] -> one tensor per flow level, each half the size of the previous.

  Level l is ReLU(conv3x3, stride 2) of level l-1 (level 0: of the map itself), so it has shape
  [B, H / 2^(l+1), W / 2^(l+1), channels]: the spatial size of MultiScaleGlow's level-l latents.

  Args:
    num_levels: L, the flow's levels.
    channels: channels of every level's features (the flow's `cond_channels`).
  """

  def __init__(self, num_levels: int, channels: int, **kwargs):
    super().__init__(**kwargs)
    if num_levels < 1 or channels < 1:
      raise ValueError(f"FeaturePyramid needs num_levels >= 1 and channels >= 1, got {num_levels} and {channels}")
    # ---- config
    self.num_levels = num_levels
    self.channels = channels
    # ---- layers
    self.convs = track_layers(self, "level", [
        keras.layers.Conv2D(channels, 3, strides=2, padding="same", name=f"level_{level}")
        for level in range(num_levels)])

  def create_variables(self, map_channels: int) -> None:
    """Creates every weight from the channels of the condition map, without running the pyramid."""
    channels = map_channels
    for conv in self.convs:
      conv.build((None, None, None, channels))
      channels = self.channels
    self.built = True

  def call(self, condition_map: tf.Tensor) -> list[tf.Tensor]:
    features, h = [], condition_map
    for conv in self.convs:
      h = tf.nn.relu(conv(h))  # [B, H / 2^(l+1), W / 2^(l+1), channels]
      features.append(h)
    return features

  def get_config(self):
    return {**super().get_config(), "num_levels": self.num_levels, "channels": self.channels}


class LabelEmbedding(keras.layers.Layer):
  """The paper's label representation: a learned image [H, W, channels] per label id.

  Args:
    num_labels: N; labels are int ids in [0, N).
    map_shape: (H, W) of the frames.
    channels: channels of each label's image.
  """

  def __init__(self, num_labels: int, map_shape: tuple[int, int], channels: int, **kwargs):
    super().__init__(**kwargs)
    if num_labels < 1 or channels < 1 or len(map_shape) != 2 or min(map_shape) < 1:
      raise ValueError(f"LabelEmbedding needs num_labels >= 1, channels >= 1 and map_shape (H, W), got "
                       f"{num_labels}, {channels} and {map_shape}")
    # ---- config
    self.num_labels = num_labels
    self.map_shape = tuple(map_shape)
    self.channels = channels
    # ---- weights: unit-variance images, so a label enters the pyramid with the weight of a frame's pixels
    self.embeddings = self.add_weight(shape=(num_labels, *self.map_shape, channels),
                                      initializer=keras.initializers.RandomNormal(stddev=1.0), name="embeddings")

  def call(self, labels: tf.Tensor) -> tf.Tensor:
    """int labels [B] -> [B, H, W, channels]."""
    labels = tf.cast(labels, tf.int32)
    tf.debugging.assert_less(labels, self.num_labels, message=f"a label is >= num_labels={self.num_labels}: "
                             f"labels must lie in 0..{self.num_labels - 1}")
    tf.debugging.assert_non_negative(labels, message=f"a label is negative: labels must lie in "
                                     f"0..{self.num_labels - 1}")
    return tf.gather(self.embeddings, labels)  # [B, H, W, channels]

  def get_config(self):
    return {**super().get_config(), "num_labels": self.num_labels, "map_shape": self.map_shape,
            "channels": self.channels}


class _TransformerBlock(keras.layers.Layer):
  """Pre-norm self-attention and MLP, each residual: x + MHA(LN(x)), then x + MLP(LN(x))."""

  _MLP_RATIO = 4

  def __init__(self, width: int, num_heads: int, **kwargs):
    super().__init__(**kwargs)
    self.width = width
    self.num_heads = num_heads
    self.norm_1 = keras.layers.LayerNormalization(name="norm_1")
    self.attention = keras.layers.MultiHeadAttention(num_heads, width // num_heads, name="attention")
    self.norm_2 = keras.layers.LayerNormalization(name="norm_2")
    self.mlp_in = keras.layers.Dense(self._MLP_RATIO * width, activation="gelu", name="mlp_in")
    self.mlp_out = keras.layers.Dense(width, name="mlp_out")

  def create_variables(self, num_tokens: int) -> None:
    """Creates every weight for sequences [B, num_tokens, width], without running the block (in the order a
    first call creates them)."""
    tokens = (None, num_tokens, self.width)
    self.norm_1.build(tokens)
    self.attention.build(tokens, tokens)
    self.norm_2.build(tokens)
    self.mlp_in.build(tokens)
    self.mlp_out.build((None, num_tokens, self._MLP_RATIO * self.width))
    self.built = True

  def call(self, x: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """x [B, T, width], valid bool [B, T] (False: padding, never attended to)."""
    mask = tf.tile(valid[:, None, :], [1, tf.shape(x)[1], 1])  # [B, T query, T key]
    h = self.norm_1(x)
    x = x + self.attention(h, h, attention_mask=mask)
    return x + self.mlp_out(self.mlp_in(self.norm_2(x)))

  def get_config(self):
    return {**super().get_config(), "width": self.width, "num_heads": self.num_heads}


class CaptionEncoder(keras.layers.Layer):
  """Captions string [B] -> an image-shaped map [B, H, W, channels] for a feature pyramid.

  Tokenisation happens in the graph with t2v.text's rule (`tf_words`), so a caption typed by a user, one read
  from a TFRecord and one given to an exported module are encoded alike. Ids: PAD_ID, UNK_ID, BOS_ID, then
  the vocabulary's words; every caption starts with BOS and is cut to `max_words` tokens. A word outside the
  vocabulary becomes UNK_ID in the graph; `unknown_words` names such words on the Python side, so a caller
  (the model's `sample`, the decoder) can refuse them instead of silently generating from UNK.

  Encoders (`kind`):
    transformer   token + position embeddings -> `num_layers` pre-norm transformer blocks (padding masked)
                  -> mean over the caption's tokens;
    bag_of_words  mean of the caption's token embeddings (word order ignored).
  Then a dense layer to `channels`, broadcast over H x W, plus a learned position map [H, W, channels] so the
  pyramid's features can vary over the frame.

  Args:
    vocabulary: the training captions' words (VideoSpec.vocabulary): sorted, unique, each one word by t2v.text.
    map_shape: (H, W) of the frames.
    channels: channels of the output map.
    width: token embedding width (and the transformer's).
    kind: one of CAPTION_ENCODERS.
    num_layers, num_heads: the transformer's blocks and attention heads (width % num_heads == 0).
    max_words: tokens kept per caption, BOS included.
  """

  def __init__(self, vocabulary: Sequence[str], map_shape: tuple[int, int], channels: int, width: int = 64,
               kind: str = "transformer", num_layers: int = 2, num_heads: int = 4, max_words: int = 16,
               **kwargs):
    super().__init__(**kwargs)
    vocabulary = tuple(vocabulary)
    _check_vocabulary(vocabulary)
    if kind not in CAPTION_ENCODERS:
      raise ValueError(f"caption encoder kind={kind!r} must be one of {', '.join(CAPTION_ENCODERS)}")
    if min(channels, width, max_words - 1) < 1 or len(map_shape) != 2 or min(map_shape) < 1:
      raise ValueError(f"CaptionEncoder needs channels >= 1, width >= 1, max_words >= 2 and map_shape (H, W), got "
                       f"{channels}, {width}, {max_words} and {map_shape}")
    if kind == "transformer" and (num_layers < 1 or num_heads < 1 or width % num_heads):
      raise ValueError(f"a transformer caption encoder needs num_layers >= 1 and width={width} divisible by "
                       f"num_heads={num_heads}; change caption_width or caption_heads")
    # ---- config
    self.vocabulary = vocabulary
    self.map_shape = tuple(map_shape)
    self.channels = channels
    self.width = width
    self.kind = kind
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.max_words = max_words
    self._known = frozenset(vocabulary)
    # ---- the word -> id table (constants only: rebuilt from `vocabulary`, nothing to checkpoint)
    self._table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary, tf.string),
            tf.range(NUM_RESERVED_IDS, NUM_RESERVED_IDS + len(vocabulary), dtype=tf.int64)),
        default_value=UNK_ID)
    # ---- layers
    self.token_embedding = keras.layers.Embedding(
        NUM_RESERVED_IDS + len(vocabulary), width, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
        name="token_embedding")
    self.blocks = []
    if kind == "transformer":
      self.position_embedding = self.add_weight(shape=(max_words, width),
                                                initializer=keras.initializers.RandomNormal(stddev=0.02),
                                                name="position_embedding")
      self.blocks = track_layers(self, "block", [_TransformerBlock(width, num_heads, name=f"block_{i}")
                                                 for i in range(num_layers)])
      self.final_norm = keras.layers.LayerNormalization(name="final_norm")
    self.to_map = keras.layers.Dense(channels, name="to_map")
    self.map_position = self.add_weight(shape=(*self.map_shape, channels),
                                        initializer=keras.initializers.RandomNormal(stddev=1.0), name="map_position")

  def create_variables(self) -> None:
    """Creates every weight from the config, without running the encoder (in the order a first call creates
    them, so a seeded model starts from the same values either way)."""
    self.token_embedding.build((None, self.max_words))
    for block in self.blocks:
      block.create_variables(self.max_words)
    if self.kind == "transformer":
      self.final_norm.build((None, self.max_words, self.width))
    self.to_map.build((None, self.width))
    self.built = True

  # ---- words to ids --------------------------------------------------------------------------------

  def unknown_words(self, captions: Sequence[str]) -> dict[int, list[str]]:
    """{index of a caption: its words outside the vocabulary, in order}; {} when every word is known."""
    unknown = {}
    for index, caption in enumerate(captions):
      if isinstance(caption, bytes):
        caption = caption.decode("utf-8")
      missing = [word for word in text.words(caption) if word not in self._known]
      if missing:
        unknown[index] = missing
    return unknown

  def token_ids(self, captions: tf.Tensor) -> tf.Tensor:
    """string [B] -> int32 [B, max_words]: BOS_ID, the words' ids (UNK_ID when unknown), then PAD_ID."""
    words = text.tf_words(captions)  # ragged string [B, (words)]
    ids = tf.ragged.map_flat_values(self._table.lookup, words)  # ragged int64 [B, (words)]
    ids = ids.to_tensor(default_value=PAD_ID, shape=[None, self.max_words - 1])  # [B, max_words - 1], cut/padded
    bos = tf.fill([tf.shape(ids)[0], 1], tf.constant(BOS_ID, tf.int64))  # [B, 1]
    return tf.cast(tf.concat([bos, ids], axis=1), tf.int32)  # [B, max_words]

  # ---- ids to a map --------------------------------------------------------------------------------

  def encode(self, captions: tf.Tensor) -> tf.Tensor:
    """string [B] -> the caption vector [B, width] (before the map projection)."""
    ids = self.token_ids(captions)  # [B, max_words]
    valid = ids != PAD_ID  # [B, max_words]; BOS is always valid
    x = self.token_embedding(ids)  # [B, max_words, width]
    if self.kind == "transformer":
      x = x + self.position_embedding[None]
      for block in self.blocks:
        x = block(x, valid)
      x = self.final_norm(x)
    weights = tf.cast(valid, x.dtype)[..., None]  # [B, max_words, 1]
    return tf.reduce_sum(x * weights, axis=1) / tf.reduce_sum(weights, axis=1)  # [B, width]: mean over tokens

  def call(self, captions: tf.Tensor) -> tf.Tensor:
    """string [B] -> [B, H, W, channels]."""
    vector = self.to_map(self.encode(captions))  # [B, channels]
    return vector[:, None, None, :] + self.map_position[None]  # [B, H, W, channels]

  def get_config(self):
    return {**super().get_config(), "vocabulary": self.vocabulary, "map_shape": self.map_shape,
            "channels": self.channels, "width": self.width, "kind": self.kind, "num_layers": self.num_layers,
            "num_heads": self.num_heads, "max_words": self.max_words}


def _check_vocabulary(vocabulary: tuple[str, ...]) -> None:
  if not vocabulary:
    raise ValueError("a caption encoder needs a non-empty vocabulary (VideoSpec.vocabulary of a problem with "
                     "captions)")
  bad = [word for word in vocabulary if not isinstance(word, str) or text.words(word) != [word]]
  if bad:
    raise ValueError(f"vocabulary entries {bad[:5]} are not single words by t2v.text.words (lower-case letters "
                     "and digits); build the vocabulary with t2v.text.build_vocabulary")
  if len(set(vocabulary)) != len(vocabulary):
    raise ValueError("the vocabulary repeats words; build it with t2v.text.build_vocabulary")


class ContextProcessor(keras.layers.Layer):
  """The tail model's state update (the paper's context processor): s' = s + conv(ReLU(conv(ActNorm([s, x])))).

  s [B, H, W, state_channels] is the state, x [B, H, W, frame_channels] the frame just read. The ActNorm is a
  per-channel affine map initialised from data (`initialize_from`); both convolutions are 3x3. The last one is
  randomly initialised (not zero), so the state carries information about the frames from the first step.

  Args:
    state_channels: S (the paper: 16).
    frame_channels: C of the frames read.
    hidden_channels: width of the hidden convolution.
  """

  def __init__(self, state_channels: int, frame_channels: int, hidden_channels: int, **kwargs):
    super().__init__(**kwargs)
    if min(state_channels, frame_channels, hidden_channels) < 1:
      raise ValueError(f"ContextProcessor needs state_channels, frame_channels and hidden_channels >= 1, got "
                       f"{state_channels}, {frame_channels} and {hidden_channels}")
    # ---- config
    self.state_channels = state_channels
    self.frame_channels = frame_channels
    self.hidden_channels = hidden_channels
    # ---- layers
    channels = state_channels + frame_channels
    self.norm_bias = self.add_weight(shape=(channels,), initializer="zeros", name="norm_bias")
    self.norm_log_scale = self.add_weight(shape=(channels,), initializer="zeros", name="norm_log_scale")
    init = keras.initializers.RandomNormal(stddev=0.05)
    self.conv_in = keras.layers.Conv2D(hidden_channels, 3, padding="same", kernel_initializer=init, name="conv_in")
    self.conv_out = keras.layers.Conv2D(state_channels, 3, padding="same", kernel_initializer=init,
                                        name="conv_out")

  def create_variables(self) -> None:
    """Creates the convolutions' weights from the config, without running the update."""
    self.conv_in.build((None, None, None, self.state_channels + self.frame_channels))
    self.conv_out.build((None, None, None, self.hidden_channels))
    self.built = True

  def initial_state(self, batch_size: int | tf.Tensor, map_shape: tuple[int, int]) -> tf.Tensor:
    """s_0: zeros [B, H, W, state_channels]."""
    return tf.zeros(tf.concat([[batch_size], map_shape, [self.state_channels]], 0))

  def call(self, state: tf.Tensor, frame: tf.Tensor) -> tf.Tensor:
    """(s [B, H, W, S], x [B, H, W, C]) -> s' [B, H, W, S]."""
    h = tf.concat([state, frame], axis=-1)  # [B, H, W, S + C]
    h = (h + self.norm_bias) * tf.exp(self.norm_log_scale)
    h = tf.nn.relu(self.conv_in(h))  # [B, H, W, hidden]
    return state + self.conv_out(h)  # [B, H, W, S]

  def initialize_from(self, states: tf.Tensor, frames: tf.Tensor) -> None:
    """Data-dependent ActNorm init on pairs (s, x) [N, H, W, S], [N, H, W, C]: zero mean, unit variance per
    channel; channels that are (nearly) constant on these pairs, like the all-zero s_0, keep unit scale."""
    mean, variance = tf.nn.moments(tf.concat([states, frames], axis=-1), axes=[0, 1, 2])  # [S + C]
    std = tf.sqrt(variance)
    self.norm_bias.assign(-mean)
    self.norm_log_scale.assign(tf.where(std > _NORM_MIN_STD, -tf.math.log(tf.maximum(std, _NORM_MIN_STD)), 0.0))

  def get_config(self):
    return {**super().get_config(), "state_channels": self.state_channels, "frame_channels": self.frame_channels,
            "hidden_channels": self.hidden_channels}
