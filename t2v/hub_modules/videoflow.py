"""VideoFlow as three TF Hub modules, as its authors shipped it: evaluator, generator and encoder.

Each is a tf.Module holding the model and exposing tf.functions with fixed signatures (dynamic batch; the frame
counts and frame shape of the training problem), so `hub.load(path)` serves it with no t2v import. They are traced
without AutoGraph, as the trainer's step is: the model writes its loops as tf.while_loop and branches on Python values
only, so AutoGraph's source conversion would only cost export time.
"""

from __future__ import annotations

import tensorflow as tf


def _video_spec(spec, frames: int | None) -> tf.TensorSpec:
  return tf.TensorSpec([None, frames, *spec.frame_shape], tf.uint8)


class Evaluator(tf.Module):
  """log_prob(inputs, targets): bits per pixel of the target frames given the conditioning frames."""

  def __init__(self, model):
    super().__init__(name="evaluator")
    self.model = model
    spec = model.spec
    self.log_prob = tf.function(self._log_prob, autograph=False, input_signature=[
        _video_spec(spec, spec.num_input_frames), _video_spec(spec, spec.num_target_frames)])

  def _log_prob(self, inputs, targets):
    video = tf.concat([inputs, targets], axis=1)  # [B, Tc + Tt, H, W, C]
    bpp = self.model.log_prob_bpp({"video": video}, self.model.spec.num_input_frames, seed=tf.constant([0, 0]))
    return {"bits_per_pixel": tf.reduce_mean(bpp, axis=1), "bits_per_pixel_per_frame": bpp}


class Generator(tf.Module):
  """sample(inputs, num_frames, temperature, seed): uint8 frames after the conditioning frames."""

  def __init__(self, model):
    super().__init__(name="generator")
    self.model = model
    spec = model.spec
    self.sample = tf.function(self._sample, autograph=False, input_signature=[
        _video_spec(spec, spec.num_input_frames), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
        tf.TensorSpec([2], tf.int32)])

  def _sample(self, inputs, num_frames, temperature, seed):
    tf.debugging.assert_positive(num_frames, message="num_frames must be >= 1")
    tf.debugging.assert_non_negative(temperature, message="temperature must be >= 0")
    return {"frames": self.model.sample_tensors(inputs, num_frames, temperature, seed)}


class Encoder(tf.Module):
  """encode(frames) -> per-level latents; decode(latents) -> frames (VideoFlow §5.3)."""

  def __init__(self, model):
    super().__init__(name="encoder")
    self.model = model
    spec = model.spec
    self.encode = tf.function(self._encode, autograph=False,
                              input_signature=[tf.TensorSpec([None, *spec.frame_shape], tf.uint8)])
    latent_specs = {f"level_{level}": tf.TensorSpec([None, *shape], tf.float32)
                    for level, shape in enumerate(model.glow.latent_shapes)}
    self.decode = tf.function(self._decode, autograph=False, input_signature=[latent_specs])

  def _encode(self, frames):
    return {f"level_{level}": z for level, z in enumerate(self.model.encode_frames(frames))}

  def _decode(self, latents):
    zs = [latents[f"level_{level}"] for level in range(len(self.model.glow.latent_shapes))]
    return {"frames": self.model.decode_frames(zs)}


MODULES = {"evaluator": Evaluator, "generator": Generator, "encoder": Encoder}


def signatures_doc(model) -> dict[str, str]:
  """Markdown describing each module's functions, with the shapes of this model."""
  spec = model.spec
  h, w, c = spec.frame_shape
  tc, tt = spec.num_input_frames, spec.num_target_frames
  latents = ", ".join(f"`level_{i}`: float32 [B, {', '.join(map(str, s))}]"
                      for i, s in enumerate(model.glow.latent_shapes))
  return {
      "evaluator": (f"`log_prob(inputs, targets)`: inputs uint8 [B, {tc}, {h}, {w}, {c}], targets uint8 "
                    f"[B, {tt}, {h}, {w}, {c}] -> `bits_per_pixel` float32 [B] (mean over the target frames), "
                    f"`bits_per_pixel_per_frame` float32 [B, {tt}]. Dequantisation noise has a fixed seed, so the "
                    "result is deterministic."),
      "generator": (f"`sample(inputs, num_frames, temperature, seed)`: inputs uint8 [B, {tc}, {h}, {w}, {c}], "
                    "num_frames int32 scalar (any length), temperature float32 scalar (0: the means), seed int32 [2] "
                    f"(stateless) -> `frames` uint8 [B, num_frames, {h}, {w}, {c}]."),
      "encoder": (f"`encode(frames)`: uint8 [B, {h}, {w}, {c}] -> {{{latents}}}; `decode(latents)`: that dict -> "
                  f"`frames` uint8 [B, {h}, {w}, {c}]; decode(encode(x)) == x."),
  }
