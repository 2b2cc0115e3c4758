"""Conditional Glow video hyperparameters and presets (Donahue 2019, "Label-Conditioned Next-Frame Video
Generation with Neural Flows": the model of §III, the ablation of Table I).

The ablation is cumulative, one preset per row of Table I (all on `cglow_video_base`'s architecture):
  cglow_video_init         nothing conditions anything: an unconditional head, and a tail that models each later
                           frame on its own (the baseline every other row improves on);
  cglow_video_prev_frame   + the tail sees the previous frame x_t;
  cglow_video_state        + the tail sees the context state s_t;
  cglow_video_state_label  + the head and the tail see the label (the paper's full model).
Each run reports held-out bits per pixel of the first frame (`bpp_first_frame`) and of the tail frames
(`bpp_tail`) separately, Table I's columns.
"""

from __future__ import annotations

import dataclasses

from t2v.hparams import HParams, HParamsError, choice


@dataclasses.dataclass
class CGlowVideoHParams(HParams):
  """Two conditional multi-scale Glows (head: frame 0; tail: frame t+1 given the past), their conditioning."""

  # Each flow (head and tail, same architecture): L levels x K steps of Glow.
  num_levels: int = 3
  depth: int = 16
  hidden_channels: int = 256
  coupling: str = choice("affine", "affine", "additive")
  coupling_activation: str = choice("relu", "relu", "gated")
  # Gradients of each level's K steps by inversion (t2v/bijectors/reversible.py), for the head and the tail, the
  # conditioning pyramids' gradients included: the same gradients, step memory flat in K. On in the base (K = 16,
  # 256 channels: where it pays, as for VideoFlow's presets), off in cglow_video_cpu (K = 4: only costs time).
  reversible_gradients: bool = True
  # dtype of the coupling networks' convolutions, as VideoFlowHParams.conv_dtype (t2v/layers/precision.py); the
  # pyramids, priors, context processor and caption encoder stay float32.
  conv_dtype: str = choice("float32", "float32", "bfloat16")
  # Channels of every level of the conditioning feature pyramids (the flows' cond_channels).
  pyramid_channels: int = 32
  # What the video is conditioned on: nothing, the problem's `label` (a learned image per label, the paper's
  # representation) or its `caption` (a caption encoder over the training vocabulary). The head always sees it.
  condition: str = choice("label", "none", "label", "caption")
  condition_channels: int = 8  # channels of the label image / caption map fed to the pyramids
  # What the tail model p(x_{t+1} | ...) sees, besides the pyramid-conditioned flow itself.
  tail_prev_frame: bool = True  # x_t
  tail_state: bool = True  # s_t, the context processor's state over x_0..x_t
  tail_condition: bool = True  # the label / caption too (ignored when condition="none")
  state_channels: int = 16  # S, the state's channels (the paper: 16)
  state_hidden_channels: int = 32  # the context processor's hidden convolution
  # Caption encoder (condition="caption").
  caption_encoder: str = choice("transformer", "transformer", "bag_of_words")
  caption_width: int = 64  # token embedding and transformer width
  caption_layers: int = 2
  caption_heads: int = 4
  caption_max_words: int = 16  # tokens kept per caption, including the start token

  def validate(self) -> None:
    super().validate()
    sizes = {"num_levels": self.num_levels, "depth": self.depth, "hidden_channels": self.hidden_channels,
             "pyramid_channels": self.pyramid_channels, "condition_channels": self.condition_channels,
             "state_channels": self.state_channels, "state_hidden_channels": self.state_hidden_channels,
             "caption_width": self.caption_width}
    bad = {name: value for name, value in sizes.items() if value < 1}
    if bad:
      raise HParamsError(f"hparams {', '.join(f'{k}={v}' for k, v in bad.items())} must be >= 1")
    if self.caption_max_words < 2:
      raise HParamsError(f"hparams caption_max_words={self.caption_max_words} must be >= 2 (the start token and "
                         "at least one word)")
    if self.caption_encoder == "transformer" and (self.caption_layers < 1 or self.caption_heads < 1
                                                  or self.caption_width % self.caption_heads):
      raise HParamsError(f"hparams caption_width={self.caption_width} must be divisible by caption_heads="
                         f"{self.caption_heads}, both and caption_layers={self.caption_layers} >= 1, for the "
                         "transformer caption encoder (or set caption_encoder=bag_of_words)")


def cglow_video_base() -> CGlowVideoHParams:
  """The paper's full model (Table I's last row) at GPU scale; the base every preset overrides.

  Label-conditioned head and tail, tail on the previous frame and a 16-channel state; 3 levels x 16 steps, 256
  channels. Stability as the paper needed it: warm-up, gradient-norm clipping, non-finite steps skipped and,
  after 5 in a row, the last good checkpoint restored at half the learning rate.
  `python -m t2v.trainer --problem=captioned_shapes --model=cglow_video --hparams_set=cglow_video_base
  --train_steps=50000` on one GPU. Expected: held-out bpp well below the `init` row's (not run here: no GPU).
  """
  return CGlowVideoHParams(
      batch_size=16, learning_rate=5e-4, warmup_steps=2000, clip_grad_norm=100.0, max_nonfinite_steps=5,
      lr_factor_on_restore=0.5, init_batch_size=32)


def cglow_video_init() -> CGlowVideoHParams:
  """Table I, first row: no conditioning anywhere (unconditional head; each tail frame modelled on its own).

  Command as cglow_video_base with --hparams_set=cglow_video_init; 1 GPU. Expected: the highest bpp_tail of
  the four rows (the tail cannot use the past) and the highest bpp_first_frame (no label). Not run here.
  """
  return dataclasses.replace(cglow_video_base(), condition="none", tail_prev_frame=False, tail_state=False,
                             tail_condition=False)


def cglow_video_prev_frame() -> CGlowVideoHParams:
  """Table I, second row: the tail sees the previous frame only; unconditional head.

  Command as cglow_video_base with --hparams_set=cglow_video_prev_frame; 1 GPU. Expected: bpp_tail far below
  the init row's (consecutive frames are nearly equal); bpp_first_frame as init. Not run here.
  """
  return dataclasses.replace(cglow_video_init(), tail_prev_frame=True)


def cglow_video_state() -> CGlowVideoHParams:
  """Table I, third row: the tail sees the previous frame and the context state; unconditional head.

  Command as cglow_video_base with --hparams_set=cglow_video_state; 1 GPU. Expected: bpp_tail at or below the
  prev_frame row's (the state sees the motion, one frame does not). Not run here.
  """
  return dataclasses.replace(cglow_video_prev_frame(), tail_state=True)


def cglow_video_state_label() -> CGlowVideoHParams:
  """Table I, last row: previous frame, state and label; the label also conditions the head.

  Command as cglow_video_base with --hparams_set=cglow_video_state_label; 1 GPU. Expected: the lowest
  bpp_first_frame of the four rows (the label tells the head what to draw), bpp_tail at or below the state
  row's. Not run here.
  """
  return dataclasses.replace(cglow_video_state(), condition="label", tail_condition=True)


def cglow_video_state_caption() -> CGlowVideoHParams:
  """The full model conditioned on the caption instead of the label (a user can type what to generate).

  Command as cglow_video_base with --hparams_set=cglow_video_state_caption on a problem with captions; 1 GPU.
  Expected: bpp close to the state_label row's when captions determine the labels. Not run here.
  """
  return dataclasses.replace(cglow_video_state_label(), condition="caption")


def cglow_video_cpu() -> CGlowVideoHParams:
  """The caption-conditioned model at CPU scale: `--model=cglow_video`'s default.

  `python -m t2v.trainer --problem=captioned_shapes --model=cglow_video --train_steps=2000` on 2 CPU cores
  (captioned shapes: 5-frame clips, trained whole, so every head frame is a real first frame). Expected figure:
  not yet measured (the captioned_shapes problem did not exist when this preset was written).
  """
  return dataclasses.replace(
      cglow_video_state_caption(), num_levels=3, depth=4, hidden_channels=48, pyramid_channels=16,
      state_hidden_channels=16, caption_encoder="transformer", caption_width=32, caption_layers=1, caption_heads=2,
      batch_size=16, init_batch_size=32, learning_rate=1e-3, warmup_steps=100, clip_grad_norm=50.0,
      reversible_gradients=False)  # K = 4 fits easily: inversion would only cost time


def cglow_video_tiny() -> CGlowVideoHParams:
  """For tests only: seconds per step on a CPU, no meaningful figure."""
  return dataclasses.replace(
      cglow_video_cpu(), num_levels=2, depth=2, hidden_channels=8, pyramid_channels=4, condition_channels=4,
      state_channels=4, state_hidden_channels=8, caption_width=8, caption_heads=2, caption_max_words=8,
      batch_size=4, init_batch_size=8, warmup_steps=0)
