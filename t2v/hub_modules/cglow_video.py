"""Conditional Glow video (Donahue 2019; t2v.models.cglow_video) as two TF Hub modules: evaluator and generator.

Each is a tf.Module holding the model and exposing tf.functions with fixed signatures, so `hub.load(path)` serves
it with no t2v import. What the functions take depends on the model's `condition` hparam:

    condition   log_prob                          sample
    "caption"   (video, caption string [B])       (video, caption, num_frames, temperature, seed)
    "label"     (video, label int32 [B])          (video, label, num_frames, temperature, seed)
    "none"      (video)                           (video, num_frames, temperature, seed)

Shapes. The batch and the number of frames are dynamic; only the frame shape (H, W, C) is the training
problem's. log_prob scores a video of any T >= 1 frames (frame 0 by the head flow given y, frame t > 0 by the
tail flow given frames < t and y); sample continues any Tc >= 0 given frames (Tc = 0, a video of shape
[B, 0, H, W, C]: the head draws frame 0 from y alone) for any num_frames >= 1, all in one graph (tf.while_loop
over the frames). The model's own `frame_log_probs` and `sample` unroll Python loops over a static number of
frames, so the functions here re-wire the model's layers (head, tail, context processor, condition encoder)
with dynamic loops, in the same order and with the same seeds; tests/test_hub_modules_cglow.py checks that the
numbers are the Python model's.

Captions. Tokenisation happens in the graph (t2v.text's rule). A SavedModel cannot refuse a caption with a
Python error naming its words, as the model's `sample` does: here a word outside the training vocabulary is
read as the unknown-word token (what the model does with `allow_unknown_words=True`), `sample` and `log_prob`
return `num_unknown_words` [B], and `check_captions(caption)` lists the unknown words, so a caller can refuse
them before generating.

The functions are traced without AutoGraph, as the trainer's step is (the model's loops are tf.while_loop / tf.scan
and its branches are on Python values or explicit tf.cond).
"""

from __future__ import annotations

import tensorflow as tf

from t2v import text
from t2v.models.cglow_video import _CENTRE  # the model's centring shift of dequantised frames
from t2v.models.likelihood import bits_per_pixel, dequantize, quantize

_LOG_PROB_SEED = (0, 0)  # fixed dequantisation noise: log_prob is deterministic (as VideoFlow's evaluator)
_KNOWN, _UNKNOWN = 1, 0  # values of the vocabulary table


def _video_spec(spec) -> tf.TensorSpec:
  return tf.TensorSpec([None, None, *spec.frame_shape], tf.uint8)  # [B, T, H, W, C]


def _condition_spec(key: str) -> tf.TensorSpec:
  return tf.TensorSpec([None], tf.string if key == "caption" else tf.int32)


class _ConditionedModule(tf.Module):
  """The model, its condition key ("none", "label" or "caption") and, for captions, the vocabulary table."""

  def __init__(self, model, name: str):
    super().__init__(name=name)
    self.model = model
    self.condition = model.hparams.condition
    if self.condition == "caption":
      vocabulary = list(model.spec.vocabulary)
      self.vocabulary = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(tf.constant(vocabulary, tf.string),
                                              tf.fill([len(vocabulary)], tf.constant(_KNOWN, tf.int32))),
          default_value=_UNKNOWN)
      self.check_captions = tf.function(self._check_captions, autograph=False,
                                        input_signature=[_condition_spec("caption")])

  def _check_captions(self, caption: tf.Tensor) -> dict[str, tf.Tensor]:
    """caption string [B] -> num_words, num_unknown_words, num_ignored_words int32 [B]; unknown_words string
    [B, U] (U: the most unknown words of any caption, padded with "")."""
    words = text.tf_words(caption)  # ragged string [B, (words)]
    unknown = tf.equal(tf.ragged.map_flat_values(self.vocabulary.lookup, words), _UNKNOWN)  # ragged bool
    num_words = tf.cast(words.row_lengths(), tf.int32)  # [B]
    words_read = self.model.hparams.caption_max_words - 1  # the encoder's start token takes one of max_words
    return {
        "num_words": num_words,
        "num_unknown_words": tf.reduce_sum(tf.cast(unknown, tf.int32), axis=1),  # [B]
        "unknown_words": tf.ragged.boolean_mask(words, unknown).to_tensor(default_value=""),  # [B, U]
        "num_ignored_words": tf.maximum(num_words - words_read, 0),  # [B]: past the encoder's limit
    }

  def _checked_video(self, video: tf.Tensor, min_frames: int) -> tf.Tensor:
    """video [B, T, H, W, C], checked to hold B >= 1 videos of T >= min_frames frames before any use (the flows'
    errors on an empty batch or video would not say what is wrong)."""
    shape = tf.shape(video)
    with tf.control_dependencies([
        tf.debugging.assert_positive(shape[0], message="video holds no video (B = 0): pass at least one"),
        tf.debugging.assert_greater_equal(shape[1], min_frames, message=(
            f"video must have at least {min_frames} frame(s): pass video [B, T >= {min_frames}, H, W, C]"))]):
      return tf.identity(video)

  def _features(self, video: tf.Tensor, condition: tf.Tensor | None) -> dict[str, tf.Tensor]:
    """{} / {"label": [B]} / {"caption": [B]}, with the condition's batch checked against the video's."""
    if condition is None:
      return {}
    checks = [tf.debugging.assert_equal(
        tf.shape(condition)[0], tf.shape(video)[0],
        message=f"the {self.condition} batch differs from the video batch: pass one {self.condition} per video")]
    if self.condition == "label":  # checked before the embedding's gather, whose error would not say the range
      num_labels = self.model.spec.num_labels
      valid = tf.logical_and(condition >= 0, condition < num_labels)
      checks.append(tf.debugging.Assert(tf.reduce_all(valid), [
          f"label ids must lie in 0..{num_labels - 1}, got", tf.boolean_mask(condition, ~valid)], summarize=10))
    with tf.control_dependencies(checks):
      return {self.condition: tf.identity(condition)}

  def _extras(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """num_unknown_words [B] for a caption model; nothing otherwise."""
    if self.condition != "caption":
      return {}
    return {"num_unknown_words": self._check_captions(features["caption"])["num_unknown_words"]}


class Evaluator(_ConditionedModule):
  """log_prob(video[, caption | label]): bits per pixel of every frame given the earlier ones and y."""

  def __init__(self, model):
    super().__init__(model, name="evaluator")
    video = _video_spec(model.spec)
    if self.condition == "caption":
      def log_prob(video, caption):
        return self._log_prob(video, caption)
    elif self.condition == "label":
      def log_prob(video, label):
        return self._log_prob(video, label)
    else:
      def log_prob(video):
        return self._log_prob(video, None)
    signature = [video] + ([] if self.condition == "none" else [_condition_spec(self.condition)])
    self.log_prob = tf.function(log_prob, autograph=False, input_signature=signature)

  def _log_prob(self, video: tf.Tensor, condition: tf.Tensor | None) -> dict[str, tf.Tensor]:
    video = self._checked_video(video, min_frames=1)
    features = self._features(video, condition)
    y = dequantize(video, tf.constant(_LOG_PROB_SEED)) - _CENTRE  # [B, T, H, W, C]
    bpp = bits_per_pixel(self._frame_log_probs(y, self.model.condition_map(features)), self.model.num_dims)
    return {"bits_per_pixel": tf.reduce_mean(bpp, axis=1), "bits_per_pixel_per_frame": bpp,
            **self._extras(features)}

  def _frame_log_probs(self, y: tf.Tensor, condition_map: tf.Tensor | None) -> tf.Tensor:
    """The model's `frame_log_probs` for a dynamic number of frames T >= 1: y [B, T, H, W, C] -> nats [B, T]."""
    model = self.model
    batch_size, n = tf.shape(y)[0], tf.shape(y)[1] - 1  # n tail frames x_1 .. x_{T-1}
    head = model.head.log_prob(y[:, 0], condition_map)[:, None]  # [B, 1]: log p_head(x_0 | y)

    def tail() -> tf.Tensor:  # log p_tail(x_{t+1} | x_t, s_t, y) for t = 0 .. T-2: [B, n]
      previous, target = y[:, :-1], y[:, 1:]  # [B, n, H, W, C]
      if model.context_processor is not None:  # s_0 .. s_{n-1}, as the model's `context_states`
        time_major = tf.transpose(previous, [1, 0, 2, 3, 4])  # [n, B, H, W, C]
        states = tf.scan(model.advance_state, time_major, initializer=model.initial_state(batch_size))
        states = tf.transpose(states, [1, 0, 2, 3, 4])  # [B, n, H, W, S]
      else:
        states = previous[..., :0]  # [B, n, H, W, 0]
      maps = None if condition_map is None else tf.repeat(condition_map[:, None], n, axis=1)  # [B, n, H, W, E]
      fold = lambda v: None if v is None else tf.reshape(v, [-1, *v.shape[2:]])  # [B*n, H, W, ...]
      tail_map = model.tail_condition_map(fold(previous), fold(states), fold(maps))
      return tf.reshape(model.tail.log_prob(fold(target), tail_map), [batch_size, n])

    tails = tf.cond(n > 0, tail, lambda: tf.zeros([batch_size, 0]))  # [B, n]
    return tf.concat([head, tails], axis=1)  # [B, T]


class Generator(_ConditionedModule):
  """sample(video[, caption | label], num_frames, temperature, seed): uint8 frames after the given ones."""

  def __init__(self, model):
    super().__init__(model, name="generator")
    scalars = [tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)]
    if self.condition == "caption":
      def sample(video, caption, num_frames, temperature, seed):
        return self._sample(video, caption, num_frames, temperature, seed)
    elif self.condition == "label":
      def sample(video, label, num_frames, temperature, seed):
        return self._sample(video, label, num_frames, temperature, seed)
    else:
      def sample(video, num_frames, temperature, seed):
        return self._sample(video, None, num_frames, temperature, seed)
    condition = [] if self.condition == "none" else [_condition_spec(self.condition)]
    self.sample = tf.function(sample, autograph=False,
                              input_signature=[_video_spec(model.spec), *condition, *scalars])

  def _sample(self, video, condition, num_frames, temperature, seed) -> dict[str, tf.Tensor]:
    """The model's `sample` for a dynamic number Tc >= 0 of given frames: frame i (0-based, after the given
    ones) is drawn with seed fold_in(seed, Tc + i), by the head when Tc = i = 0, else by the tail."""
    with tf.control_dependencies([  # checked before the frames' TensorArray is made num_frames long
        tf.debugging.assert_positive(num_frames, message="num_frames must be >= 1"),
        tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0 (0: the means)")]):
      num_frames = tf.identity(num_frames)
    model = self.model
    video = self._checked_video(video, min_frames=0)
    features = self._features(video, condition)
    condition_map = model.condition_map(features)
    batch_size, num_context = tf.shape(video)[0], tf.shape(video)[1]
    frame_seed = lambda t: tf.random.experimental.stateless_fold_in(seed, t)
    frames = tf.TensorArray(tf.uint8, size=num_frames, element_shape=[None, *model.spec.frame_shape])
    context = dequantize(video, noise="midpoint") - _CENTRE  # [B, Tc, H, W, C]
    # Read the given frames x_0 .. x_{Tc-2} into the state; x_{Tc-1} is read in the loop.
    _, state = tf.while_loop(lambda t, _: t < num_context - 1,
                             lambda t, state: (t + 1, model.advance_state(state, context[:, t])),
                             (tf.constant(0), model.initial_state(batch_size)))

    def from_head():  # §III-B: no frame given, the head draws x_0
      first = model.head.sample(condition_map, batch_size, temperature, frame_seed(0))  # [B, H, W, C]
      return first, frames.write(0, quantize(first + _CENTRE)), tf.constant(1)

    last, frames, start = tf.cond(num_context > 0, lambda: (context[:, num_context - 1], frames, tf.constant(0)),
                                  from_head)

    def body(i, last, state, frames):  # §III-C: x_{t+1} ~ p_tail(. | x_t, s_t, y)
      state = model.advance_state(state, last)  # s_t
      tail_map = model.tail_condition_map(last, state, condition_map)
      frame = model.tail.sample(tail_map, batch_size, temperature, frame_seed(num_context + i))
      return i + 1, frame, state, frames.write(i, quantize(frame + _CENTRE))

    _, _, _, frames = tf.while_loop(lambda i, *_: i < num_frames, body, (start, last, state, frames))
    return {"frames": tf.transpose(frames.stack(), [1, 0, 2, 3, 4]),  # [B, num_frames, H, W, C]
            **self._extras(features)}


MODULES = {"evaluator": Evaluator, "generator": Generator}

_LISTED_WORDS = 60  # vocabulary words a README lists in full


def _arguments(*names: str) -> str:
  """The non-empty names joined by ", ": a call's arguments, the condition's left out when there is none."""
  return ", ".join(name for name in names if name)


def _condition_doc(model) -> str:
  """A paragraph on the condition argument (caption, label or none) of this model's functions."""
  spec, hp = model.spec, model.hparams
  if hp.condition == "caption":
    words = ", ".join(spec.vocabulary[:_LISTED_WORDS]) + (
        f", ... ({len(spec.vocabulary)} words)" if len(spec.vocabulary) > _LISTED_WORDS else "")
    return (
        "`caption`: string [B], one caption per video. It is split into words in the graph (lower-cased; every "
        "character other than a-z and 0-9 separates words) and only the first "
        f"{hp.caption_max_words - 1} words are read. **A word outside the training vocabulary is not refused**: "
        "the module reads it as the unknown-word token, as the Python model does with `allow_unknown_words=True` "
        "(a SavedModel cannot raise the Python model's error naming the word). So `log_prob` and `sample` also "
        "return `num_unknown_words` int32 [B], and both modules have `check_captions(caption)` -> `num_words`, "
        "`num_unknown_words`, `num_ignored_words` (words past the limit, never read) int32 [B] and "
        "`unknown_words` string [B, U] (padded with \"\"): call it first and refuse a caption whose "
        f"`num_unknown_words` > 0. The vocabulary: {words}.")
  if hp.condition == "label":
    names = ", ".join(f"{i} {name!r}" for i, name in enumerate(spec.label_captions))
    return (f"`label`: int32 [B], one label id per video in 0..{spec.num_labels - 1}; an id outside that range "
            "fails the call (InvalidArgumentError)." + (f" Labels: {names}." if names else ""))
  return "The model is unconditional (hparams condition=\"none\"): the functions take no label or caption."


def signatures_doc(model) -> dict[str, str]:
  """Markdown describing each module's functions, with the shapes and the condition of this model."""
  h, w, c = model.spec.frame_shape
  key = "" if model.hparams.condition == "none" else model.hparams.condition
  unknown = ", `num_unknown_words` int32 [B]" if key == "caption" else ""
  fixed = f"the frame shape is fixed at {h}x{w}x{c} (the training problem's)."
  return {
      "evaluator": (
          f"`log_prob({_arguments('video', key)})`: video uint8 [B, T, {h}, {w}, {c}] -> "
          "`bits_per_pixel_per_frame` float32 [B, T] (frame 0 by the head flow given the condition, frame t > 0 "
          "by the tail flow given frames 0..t-1 and the condition), `bits_per_pixel` float32 [B] (their mean, the "
          f"training objective){unknown}. The bits per pixel of frames k.. given frames 0..k-1 are "
          "`bits_per_pixel_per_frame[:, k:]`. Dequantisation noise has a fixed seed, so the result is "
          f"deterministic.\n\n{_condition_doc(model)}\n\nThe batch B (>= 1) and the number of frames T (>= 1) "
          f"are dynamic; {fixed}"),
      "generator": (
          f"`sample({_arguments('video', key, 'num_frames', 'temperature', 'seed')})`: video uint8 "
          f"[B, Tc, {h}, {w}, {c}], the Tc >= 0 first frames to continue (Tc = 0, shape [B, 0, {h}, {w}, {c}]: the "
          "head flow draws the first frame from the condition alone), num_frames int32 scalar >= 1, temperature "
          "float32 scalar >= 0 (scales every sigma; 0: the means), seed int32 [2] (stateless: the same seed and "
          f"inputs give the same frames, exactly) -> `frames` uint8 [B, num_frames, {h}, {w}, {c}], the frames "
          f"after the given ones{unknown}.\n\n{_condition_doc(model)}\n\nThe batch B (>= 1), the number of given "
          f"frames Tc (>= 0) and `num_frames` (>= 1) are dynamic, all sampled in one graph; {fixed}"),
  }


def readme_examples(model) -> dict[str, str]:
  """The README's example call of each module (numpy as np, tensorflow as tf and `module` in scope)."""
  h, w, c = model.spec.frame_shape
  spec, condition = model.spec, model.hparams.condition
  argument, first = "", ""
  if condition == "caption":  # label captions made of known words (captioned shapes: "red circle"), if any
    captions = [caption for caption in spec.label_captions if set(text.words(caption)) <= set(spec.vocabulary)]
    captions = captions[:2] if len(captions) >= 2 else [" ".join(spec.vocabulary[:3])] * 2
    argument = "captions"
    first = (f"captions = tf.constant({captions!r})\n"
             "report = module.check_captions(captions)\n"
             "assert not report[\"num_unknown_words\"].numpy().any(), report[\"unknown_words\"]\n")
  elif condition == "label":
    argument, first = "labels", "labels = tf.constant([0, 1])\n"
  return {
      "evaluator": (f"{first}video = np.zeros([2, 5, {h}, {w}, {c}], np.uint8)\n"
                    f"print(module.log_prob({_arguments('video', argument)})[\"bits_per_pixel\"])"),
      "generator": (f"{first}no_frames = np.zeros([2, 0, {h}, {w}, {c}], np.uint8)  # or first frames to continue\n"
                    f"frames = module.sample({_arguments('no_frames', argument, 'tf.constant(8)')}, "
                    "tf.constant(0.5), tf.constant([0, 1]))[\"frames\"]\nprint(frames.shape)"),
  }
