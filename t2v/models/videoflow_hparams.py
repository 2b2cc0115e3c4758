"""VideoFlow hyperparameters and presets (values of VideoFlow, Kumar et al. 2020, §5 and appendix)."""

from __future__ import annotations

import dataclasses

from t2v.hparams import HParams, HParamsError, choice


@dataclasses.dataclass
class VideoFlowHParams(HParams):
  """The per-frame multi-scale Glow and the latent dynamics prior."""

  # Flow (Glow): L levels x K steps.
  num_levels: int = 3
  depth: int = 24
  hidden_channels: int = 512
  coupling: str = choice("affine", "affine", "additive")
  coupling_activation: str = choice("relu", "relu", "gated")
  # Gradients of each level's K steps by inversion (RevNet-style, t2v/bijectors/reversible.py) instead of stored
  # activations: the same gradients, a training step's working memory flat in K. On by default because the base
  # and the BAIR and shapes presets (K = 24, 12) are where it pays. Measured by benchmarks/flow_memory_benchmark.py
  # (videoflow_cpu_multiscale widths, 32x32, CPU, session 4): plain backprop's step memory grows 6.0x from K = 4
  # to 32 (reversible: 1.06x); at K = 16 it is 7x the reversible one, which fits 36 frames per window in the memory
  # plain fits 8 in; the step takes 1.01x (K = 4) to 1.29x (K = 32) the time. At K <= 4 on a machine with memory
  # to spare (the CPU presets) it only costs time: turn it off there.
  reversible_gradients: bool = True
  # dtype of the coupling networks' and the prior's hidden convolutions (t2v/layers/precision.py): "bfloat16"
  # pays on CPUs with AMX-BF16 and GPUs with bfloat16 tensor cores; variables, the flow's arithmetic,
  # log-determinants and the prior's outputs stay float32, so bits per pixel stay exact for the model computed.
  conv_dtype: str = choice("float32", "float32", "bfloat16")
  # Prior p(z_t | z_<t, h_t).
  # conv_lstm: a 3x3 convolutional LSTM state per level over all past frames (VideoFlow §6), width prior_width;
  # prior_depth, prior_dilations and prior_gating do not apply to it.
  prior: str = choice("conv3d_net", "conv3d_net", "conv_net", "pointwise", "conv_lstm")
  num_context_latents: int = 1  # K past latents per level; frames t < K use the unconditional prior
  # Frames 1 .. K-1 use the conditional prior on zero-padded windows (only frame 0 uses the unconditional one):
  # needed for K >= 2 with fewer than K conditioning frames, or the first predicted frame ignores the given ones.
  pad_context: bool = False
  prior_depth: int = 5  # residual blocks
  prior_width: int = 256  # hidden channels (conv_lstm: LSTM state channels)
  prior_dilations: bool = True  # parallel dilation rates 1, 2, 4 (appendix E ablation)
  prior_gating: bool = True  # gated activation units (appendix E ablation)
  latent_skip: bool = True  # mu = z_{t-1} + dz (appendix E ablation)
  # 0: the paper's skip. Odd k >= 1: a motion-compensated skip (not in the paper; conv3d_net only): z_{t-1} is
  # replaced by a per-cell convex combination of the K past latents' cells at offsets within k x k, its weights
  # predicted by the prior (t2v/models/videoflow_prior.py), so a moving object can be shifted rather than redrawn.
  latent_skip_kernel: int = 0
  # With latent_skip_kernel: whether frames whose window is zero-padded in front (t < K, pad_context) advect too
  # (session 15's runs did). False: they use the paper's skip z_{t-1}, because from one real latent the direction
  # of the next move is an open choice, whose conditional mean (a blend of shifted copies) loses the object. With
  # prior_shift_mixture the mixture makes that choice, and the advection can average the background instead
  # (session 21, videoflow_cpu's first predicted frame: 0.76 -> 0.35-0.51 bpp over five seeds).
  latent_skip_kernel_padded: bool = False
  # With latent_skip_kernel = k and pad_context: frames whose window is zero-padded in front (t < K, the move from
  # fewer real latents than a motion needs) get a mixture over the k x k whole-cell translations of their Gaussian
  # (not in the paper): one translation per frame and level, drawn from weights the prior predicts, so the move is
  # a discrete choice rather than a blend (t2v/models/videoflow_prior.py). The likelihood stays exact.
  prior_shift_mixture: bool = False
  # b >= 0: the gradient flowing back through the prior's predicted mean change dz is scaled by
  # stop_gradient(sigma^(2b)) (beta-NLL on the mean, t2v/models/videoflow_prior.py); the loss and every bpp stay
  # exact. 0 is the paper's (exact) gradient. Session 10, small_centred, additive, K = 2, 1000 steps: b = 1
  # diverged (non-finite losses from step ~500); b = 0.5 trained but continued no motion
  # (docs/videoflow_shapes_cpu.md).
  prior_mean_gradient_beta: float = 0.0
  # w >= 0: training adds w x the squared error of every prior's teacher-forced mean (its T = 0 prediction of the
  # target frames' latents) relative to copying the previous latent, averaged over levels; computed on
  # stop_gradient latents, so it trains the priors' weights alone and never the flow. Every bpp (and the `bpp`
  # metric) stays the exact likelihood. 0 (the default) is the paper's objective and builds no extra ops.
  # Why: docs/videoflow_shapes_cpu.md, "Why the samples fail" (the likelihood's 1/sigma^2 weighting starves the
  # moving object's cells).
  prior_mean_error_weight: float = 0.0
  # n >= 0: the mean-error term covers only the top n levels' priors (averaged over those), 0: every level. The top
  # level is where the prior chooses and continues the object's motion; the levels below see it through h_t and
  # can keep the exact likelihood's sharp details.
  prior_mean_error_levels: int = 0
  # True: the mean-error term scores only frames t >= K, whose K-latent window holds no zero padding (with
  # pad_context, frames 1 .. K-1 are left out). From fewer real latents than a motion needs the next move is an open
  # choice, and its conditional mean (a blend of the possible moves) is not what the means should learn there.
  prior_mean_error_full_windows: bool = False
  # Objective: frames of a training window that are conditioned on, not scored (0: the problem's
  # num_input_frames). Evaluation always uses the problem's protocol.
  num_cond_frames: int = 0

  def validate(self) -> None:
    super().validate()
    if self.num_levels < 1 or self.depth < 1 or self.hidden_channels < 1:
      raise HParamsError(f"num_levels={self.num_levels}, depth={self.depth} and hidden_channels="
                       f"{self.hidden_channels} must be >= 1")
    if not 0 <= self.prior_mean_error_weight < float("inf"):
      raise HParamsError(f"prior_mean_error_weight={self.prior_mean_error_weight} must be a finite number >= 0 "
                         "(0: the paper's objective)")
    if not 0 <= self.prior_mean_error_levels <= self.num_levels:
      raise HParamsError(f"prior_mean_error_levels={self.prior_mean_error_levels} must lie in [0, num_levels="
                         f"{self.num_levels}] (0: every level)")
    if self.latent_skip_kernel and (self.latent_skip_kernel < 0 or self.latent_skip_kernel % 2 == 0
                                    or self.prior != "conv3d_net" or not self.latent_skip):
      raise HParamsError(f"latent_skip_kernel={self.latent_skip_kernel} must be 0 or an odd number >= 1, and needs "
                         f"prior=conv3d_net (got {self.prior}) with latent_skip=True (got {self.latent_skip})")
    if self.prior_mean_error_full_windows and self.num_train_frames <= self.num_context_latents:
      raise HParamsError(f"prior_mean_error_full_windows scores frames t >= num_context_latents="
                         f"{self.num_context_latents}: num_train_frames={self.num_train_frames} must exceed it")
    if self.latent_skip_kernel_padded and not self.latent_skip_kernel:
      raise HParamsError("latent_skip_kernel_padded=True needs latent_skip_kernel > 0 (an odd kernel size)")
    if self.prior_shift_mixture and not (self.latent_skip_kernel and self.pad_context
                                         and self.num_context_latents >= 2):
      raise HParamsError(
          f"prior_shift_mixture=True mixes translations on the zero-padded windows: it needs latent_skip_kernel > 0 "
          f"(got {self.latent_skip_kernel}, the translations' kernel), pad_context=True (got {self.pad_context}) "
          f"and num_context_latents >= 2 (got {self.num_context_latents})")
    if self.prior_shift_mixture and self.num_cond_frames >= self.num_context_latents:
      raise HParamsError(f"prior_shift_mixture=True trains on frames t < num_context_latents="
                         f"{self.num_context_latents}; num_cond_frames={self.num_cond_frames} leaves none of them "
                         "scored: set num_cond_frames below num_context_latents")
    if self.prior_shift_mixture and self.prior_mean_error_weight and not self.prior_mean_error_full_windows:
      raise HParamsError("prior_shift_mixture=True with prior_mean_error_weight > 0 needs "
                         "prior_mean_error_full_windows=True (a mixture's padded frames have no single mean to score)")
    if self.num_context_latents < 1:
      raise HParamsError(f"num_context_latents={self.num_context_latents} must be >= 1")


def videoflow_base() -> VideoFlowHParams:
  """The paper's BAIR architecture with default optimisation; the base every preset overrides."""
  return VideoFlowHParams()


def videoflow_bair_quant() -> VideoFlowHParams:
  """VideoFlow's quantitative BAIR model (bits per pixel, Table 1).

  `python -m t2v.trainer --problem=bair --hparams_set=videoflow_bair_quant --train_steps=600000
  --strategy=mirrored` on 8 accelerators (the paper: batch 40). Expected: ~1.87 bpp on BAIR test
  (paper, Table 1). Not run here (no GPU, no BAIR data).
  """
  return dataclasses.replace(
      videoflow_base(), num_levels=3, depth=24, hidden_channels=512, coupling="affine", prior="conv3d_net",
      prior_depth=5, prior_width=256, num_context_latents=3, num_train_frames=4, num_cond_frames=3,
      batch_size=40, learning_rate=3e-4, warmup_steps=10000, decay_steps=150000)


def videoflow_bair_qual() -> VideoFlowHParams:
  """VideoFlow's qualitative BAIR model (samples, Figures 3-4): additive couplings, 392 channels.

  Same command as videoflow_bair_quant with --hparams_set=videoflow_bair_qual; hardware and schedule as there.
  Expected: visually sharper samples than the affine model, bpp slightly worse (paper §5.2). Not run here.
  """
  return dataclasses.replace(videoflow_bair_quant(), coupling="additive", hidden_channels=392)


def videoflow_shapes() -> VideoFlowHParams:
  """Stochastic shapes at paper scale: 1 conditioning frame, 2-frame training patches (VideoFlow §5.1).

  `python -m t2v.trainer --hparams_set=videoflow_shapes --train_steps=100000` on one GPU. Expected: samples that
  keep shape and colour and move in one of the 8 directions (the paper's real-vs-fake test). Not run here.
  """
  return dataclasses.replace(
      videoflow_base(), num_levels=3, depth=12, hidden_channels=256, prior_depth=3, prior_width=128,
      num_context_latents=1, num_train_frames=2, num_cond_frames=1, batch_size=32, warmup_steps=1000)


def videoflow_cpu_multiscale() -> VideoFlowHParams:
  """VideoFlow's own shape at CPU size (3 levels of affine Glow, K = 1): the quick start's preset until session 17,
  named `videoflow_cpu` then, and the configuration of the README's CPU benchmark and start-up figures.

  `python -m t2v.trainer --model=videoflow --hparams_set=videoflow_cpu_multiscale --problem_config=small
  --train_steps=2000`: 7 min 49 s on a 2-core AMD EPYC (session 8), 0.86 held-out bpp; 0 % of its samples are
  judged valid (one past latent cannot tell which way the object moves). At 64x64 (no --problem_config) 0.70 bpp
  in 10-18 min. Figures: docs/videoflow_shapes_cpu.md. For valid samples, `videoflow_cpu`.
  """
  return dataclasses.replace(
      videoflow_shapes(), num_levels=3, depth=4, hidden_channels=48, coupling="affine", prior="conv3d_net",
      prior_depth=1, prior_width=32, batch_size=16, init_batch_size=32, learning_rate=1e-3, warmup_steps=100,
      clip_grad_norm=50.0, reversible_gradients=False)  # K = 4 fits easily: inversion would only cost time


def videoflow_cpu() -> VideoFlowHParams:
  """The README's main command: stochastic shapes at 32x32 on 2 CPU cores in under 10 minutes, with samples that
  continue one given frame.

  `python -m t2v.trainer --model=videoflow --problem_config=small_grid --train_steps=4000` (jittered starts,
  diagonals on the pixel grid as the VideoFlow authors move them). Session 21, 2-core Intel Xeon, seeds 0-4:
  8.2-9.5 min, 0.50-0.62 held-out bpp; given 1 frame, 90.5-100 % of the whole continuations at T = 0.5 keep shape,
  size and colour and move in one of the 8 directions (90-100 % at T = 0, 87-100 % at T = 1), judged by
  benchmarks/shapes_quality.py (README, quick start). Padded windows advect under the mixture
  (latent_skip_kernel_padded): the first predicted frame 0.35-0.51 bpp instead of 0.76 (docs/videoflow_shapes_cpu.md,
  session 21; session 20's runs without it, on an AMD EPYC: 0.53-0.62 bpp, 79-100 % at T = 0.5). Adam 1e-3
  decaying linearly to 0 over the last 2000 steps: at session 18's 5e-4 (constant or decayed) held-out bpp spread
  over 0.57-1.02 in seven runs (docs/videoflow_shapes_cpu.md). On the authors' centred clips (`small_centred_grid`,
  session 17, at 5e-4): 0.81 bpp, 95 % at T = 0.5. On `small`, whose diagonal moves are not whole-pixel shifts, it
  does not reach that (21 % at T = 0 after 2000 steps). Not the paper's model: one level of additive Glow, so that a
  2-px move is a one-cell shift of the prior's latent; K = 2 with the motion-compensated skip; the mixture of
  translations makes the first move's direction a discrete choice, and the advection averages its background; the
  mean-error term on full windows.
  """
  return dataclasses.replace(
      videoflow_cpu_multiscale(), num_levels=1, coupling="additive", learning_rate=1e-3, decay_steps=2000,
      num_context_latents=2, pad_context=True, num_train_frames=3, prior_dilations=False, latent_skip_kernel=3,
      latent_skip_kernel_padded=True, prior_shift_mixture=True, prior_mean_error_weight=3.0,
      prior_mean_error_full_windows=True)


def videoflow_tiny() -> VideoFlowHParams:
  """For tests only: seconds per step on a CPU, no meaningful figure."""
  return dataclasses.replace(
      videoflow_cpu_multiscale(), num_levels=2, depth=2, hidden_channels=8, prior_depth=1, prior_width=8,
      batch_size=4, init_batch_size=8, warmup_steps=0)
