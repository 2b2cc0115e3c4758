"""VideoFlow: exact bits per pixel, the prior's causality, sampling, latent tools, ablations and training."""

import dataclasses
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from t2v.hparams import HParamsError, override
from t2v.models.likelihood import bits_per_pixel, dequantize, quantize
from t2v.models.videoflow import VideoFlow
from t2v.models.videoflow_hparams import videoflow_tiny
from t2v.models.videoflow_prior import (PRIOR_KINDS, LatentPrior, advect, gaussian, shift_mixture_log_prob,
                                       translations)
from t2v.problems.spec import VideoSpec
from t2v.trainer import optimizer as optimizer_lib

tfd = tfp.distributions

# the prior kinds, plus conv3d_net with the motion-compensated skip (latent_skip_kernel = 3), whose zero-padded
# windows use the paper's skip (ADVECT) or advect too (ADVECT_PADDED)
ADVECT = "conv3d_net+advect"
ADVECT_PADDED = "conv3d_net+advect_padded"
PRIOR_VARIANTS = (*PRIOR_KINDS, ADVECT, ADVECT_PADDED)


def _prior_args(variant):
  """LatentPrior's (kind, skip_kernel, advect_padded) of a PRIOR_VARIANTS entry."""
  if variant in (ADVECT, ADVECT_PADDED):
    return "conv3d_net", 3, variant == ADVECT_PADDED
  return variant, 0, False


def _prior_hparams(variant):
  """VideoFlow hparam overrides of a PRIOR_VARIANTS entry."""
  kind, kernel, padded = _prior_args(variant)
  return {"prior": kind, "latent_skip_kernel": kernel, "latent_skip_kernel_padded": padded}


def _randomise(model, stddev=0.05, seed=0):
  """Moves the zero-initialised layers (identity couplings, zero priors) so every path carries signal."""
  rng = np.random.default_rng(seed)
  for v in model.trainable_weights:
    v.assign(v.numpy() + rng.normal(0, stddev, v.shape).astype(np.float32))


def _model(frame_shape=(8, 8, 1), num_input=1, num_target=3, **overrides):
  tf.random.set_seed(0)
  hp = dataclasses.replace(videoflow_tiny(), **overrides)
  return VideoFlow(hp, VideoSpec(frame_shape, num_input, num_target))


def _video(batch, frames, shape=(8, 8, 1), seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.integers(0, 256, (batch, frames, *shape)), tf.uint8)


def test_uniform_density_scores_exactly_eight_bits():
  x = _video(2, 3, (4, 4, 3))
  y = dequantize(x, seed=tf.constant([1, 2]))
  uniform = tfd.Independent(tfd.Uniform(tf.zeros([3, 4, 4, 3]), tf.ones([3, 4, 4, 3])), 4)
  bpp = bits_per_pixel(uniform.log_prob(y), 3 * 4 * 4 * 3)
  np.testing.assert_array_equal(bpp.numpy(), np.full([2], 8.0, np.float32))


def test_dequantize_quantize_round_trip_and_range():
  x = tf.constant(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1))
  y = dequantize(x, seed=tf.constant([0, 0]))
  assert float(tf.reduce_min(y)) >= 0.0 and float(tf.reduce_max(y)) < 1.0
  np.testing.assert_array_equal(quantize(y), x)
  np.testing.assert_array_equal(quantize(dequantize(x, noise="midpoint")), x)


def test_bits_per_pixel_of_a_known_gaussian():
  # A factorised Gaussian density of variance 1/(2 pi e) has differential entropy 0 nats per dim, so its
  # expected bpp on its own samples is -(0 - ln 256)/ln 2 = 8 bits, independent of t2v's model code.
  sigma = 1 / math.sqrt(2 * math.pi * math.e)
  dist = tfd.Normal(0.5, sigma)
  y = dist.sample(200000, seed=1)
  np.testing.assert_allclose(np.mean(bits_per_pixel(dist.log_prob(y), 1)), 8.0, atol=0.01)


def test_frame_log_prob_equals_change_of_variables_by_autodiff():
  """log p(y_t | y_<t) = log N(f(y_t); mu(y_<t), sigma(y_<t)) + log|det df/dy_t|, with the Jacobian by autodiff."""
  model = _model((4, 4, 1), num_input=2, num_target=1, num_context_latents=2, num_train_frames=3)
  _randomise(model)
  y = tf.random.stateless_uniform([1, 3, 4, 4, 1], seed=[4, 4]) - 0.5
  got = model.frame_log_probs(y, first=2)[0, 0]

  def latents(frame):  # frame [4, 4, 1] -> all levels' latents of frame t=2, flattened
    video = tf.concat([y[:, :2], frame[None, None]], axis=1)
    zs, _, _ = model.encode_latents(video)
    return tf.concat([tf.reshape(z[:, 2], [-1]) for z in zs], 0)

  frame = y[0, 2]
  with tf.GradientTape() as tape:
    tape.watch(frame)
    z = latents(frame)
  _, log_det = np.linalg.slogdet(tf.reshape(tape.jacobian(z, frame), [16, 16]).numpy().astype(np.float64))
  zs, hs, _ = model.encode_latents(y)
  prior_log_prob = 0.0
  for level, prior in enumerate(model.priors):
    h = hs[level][:, 2] if level < len(hs) else None
    mu, log_sigma = prior.conditional_params(zs[level][:, :2], h)
    prior_log_prob += float(gaussian(mu, log_sigma).log_prob(zs[level][:, 2])[0])
  np.testing.assert_allclose(float(got), prior_log_prob + log_det, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("pad_context", [False, True])
@pytest.mark.parametrize("prior", PRIOR_VARIANTS)
def test_prior_is_causal(prior, pad_context):
  """The log-likelihood of frame t has zero gradient with respect to later frames, and a non-zero one with
  respect to its context: the last K frames for the windowed priors, every earlier frame for conv_lstm (its
  long memory reaches frames older than K). With pad_context frame 1 already sees frame 0; without, it
  uses the unconditional prior and sees no earlier frame."""
  model = _model(num_input=1, num_target=4, num_context_latents=2, pad_context=pad_context,
                 **_prior_hparams(prior))
  _randomise(model)
  y = tf.Variable(tf.random.stateless_uniform([1, 5, 8, 8, 1], seed=[1, 1]) - 0.5)
  with tf.GradientTape(persistent=True) as tape:
    log_probs = model.frame_log_probs(y, first=0)[0]  # [5]: one forward pass, one gradient per frame below
    per_frame = tf.unstack(log_probs)
  for t in range(5):
    grad = tape.gradient(per_frame[t], y).numpy()[0]
    for later in range(t + 1, 5):
      np.testing.assert_array_equal(grad[later], 0.0, err_msg=f"frame {t} depends on frame {later}")
    if t >= 2:  # with K = 2 context latents the conditional prior sees frames t-2 and t-1 (pointwise: t-1)
      if prior == "conv_lstm":
        context = list(range(t))
      else:
        context = [t - 1] if prior == "pointwise" else [t - 2, t - 1]
      assert all(np.abs(grad[c]).max() > 0 for c in context), (t, [np.abs(grad[c]).max() for c in context])
      assert np.abs(grad[:min(context)]).max(initial=0) == 0
    if t == 1:
      assert (np.abs(grad[0]).max() > 0) == pad_context, np.abs(grad[0]).max()


def _train_prior(prior, z, first, steps):
  """Trains a top-level prior's conditional weights by Adam(0.01) on -mean log p(z_t | ...) for t >= first;
  returns the last loss."""
  optimizer = keras.optimizers.Adam(0.01)
  variables = [v for v in prior.trainable_weights if "first_frame" not in v.path]

  @tf.function(autograph=False)
  def step():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(prior.sequence_log_prob(z, None, first))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  for _ in range(steps):
    loss = step()
  return float(loss)


def _prior_and_latents(kind, cond_channels, num_frames=6, seed=0, pad_context=False):
  """A randomised LatentPrior (K = 2) with latents z [2, T, 4, 4, 2] and h [2, T, 4, 4, 3] (None at the top)."""
  kind, kernel, advect_padded = _prior_args(kind)
  prior = LatentPrior((4, 4, 2), cond_channels, kind, num_context=2, depth=1, width=8, pad_context=pad_context,
                      skip_kernel=kernel, advect_padded=advect_padded)
  z = tf.random.stateless_normal([2, num_frames, 4, 4, 2], seed=[seed, 1])
  h = tf.random.stateless_normal([2, num_frames, 4, 4, cond_channels], seed=[seed, 2]) if cond_channels else None
  prior.sequence_log_prob(z, h, 0)  # builds every layer
  _randomise(prior, stddev=0.1, seed=seed)
  return prior, z, h


@pytest.mark.parametrize("pad_context", [False, True])
@pytest.mark.parametrize("cond_channels", [0, 3])
@pytest.mark.parametrize("kind", PRIOR_VARIANTS)
def test_sequence_log_prob_from_first_is_the_tail_of_the_whole_sequence(kind, cond_channels, pad_context):
  """Scoring from `first` on gives the tail of scoring from 0: the conv_lstm state still reads every frame."""
  prior, z, h = _prior_and_latents(kind, cond_channels, pad_context=pad_context)
  whole = prior.sequence_log_prob(z, h, 0).numpy()
  for first in (1, 2, 4, 5):
    np.testing.assert_allclose(prior.sequence_log_prob(z, h, first), whole[:, first:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad_context", [False, True])
@pytest.mark.parametrize("cond_channels", [0, 3])
@pytest.mark.parametrize("kind", PRIOR_VARIANTS)
def test_sampling_state_reproduces_the_teacher_forced_log_prob(kind, cond_channels, pad_context):
  """initial_state / context_state, params and advance, stepped one frame at a time as the sampler does, give
  the log-probabilities of sequence_log_prob."""
  prior, z, h = _prior_and_latents(kind, cond_channels, pad_context=pad_context)
  h_at = lambda t: None if h is None else h[:, t]
  whole = prior.sequence_log_prob(z, h, 0).numpy()
  for num_context in (0, 1, 3):
    state = prior.context_state(z[:, :num_context], h if h is None else h[:, :num_context]) if num_context \
        else prior.initial_state(2)
    stepped = []
    for t in range(num_context, 6):
      mu, log_sigma, state = prior.params(state, h_at(t), t)
      stepped.append(gaussian(mu, log_sigma).log_prob(z[:, t]))
      state = prior.advance(state, z[:, t])
    np.testing.assert_allclose(np.stack(stepped, 1), whole[:, num_context:], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("kind", PRIOR_KINDS)
def test_mean_gradient_beta_scales_only_the_gradient_that_reaches_the_mean_change(kind, beta):
  """mean_gradient_beta = b: the same log-probabilities as the exact prior with the same weights; the output
  layer's mean-change bias gets sum (z - mu) * sigma^(2b - 2) (the exact (z - mu) / sigma^2 times sigma^(2b)),
  computed here from the sampler's (mu, sigma); its log-sigma bias gets the exact gradient."""
  exact, z, h = _prior_and_latents(kind, 3)
  scaled = LatentPrior((4, 4, 2), 3, kind, num_context=2, depth=1, width=8, mean_gradient_beta=beta)
  scaled.sequence_log_prob(z, h, 0)
  scaled.set_weights(exact.get_weights())
  first = exact.min_context  # the frames the conditional prior (and so the mean change) scores

  def bias_gradient(prior):
    with tf.GradientTape() as tape:
      log_prob = prior.sequence_log_prob(z, h, first)
    return log_prob.numpy(), tape.gradient(log_prob, prior.output_conv.bias).numpy()

  exact_log_prob, exact_grad = bias_gradient(exact)
  scaled_log_prob, scaled_grad = bias_gradient(scaled)
  np.testing.assert_array_equal(scaled_log_prob, exact_log_prob)
  state = exact.context_state(z[:, :first], h[:, :first])
  expected = 0.0
  for t in range(first, z.shape[1]):
    mu, log_sigma, state = exact.params(state, h[:, t], t)
    expected += tf.reduce_sum((z[:, t] - mu) * tf.exp((2 * beta - 2) * log_sigma), axis=[0, 1, 2]).numpy()
    state = exact.advance(state, z[:, t])
  c = z.shape[-1]
  np.testing.assert_allclose(scaled_grad[:c], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(scaled_grad[c:], exact_grad[c:], rtol=1e-5, atol=1e-6)
  assert not np.allclose(scaled_grad[:c], exact_grad[:c], rtol=1e-2), "the test's sigmas are all ~1"


def test_advect_is_a_softmax_weighted_sum_of_reflected_shifts():
  """advect against numpy: one-hot logits give an exact shift of the chosen past latent (the borders read the
  reflected frame); random logits give the softmax-weighted sum of every (past latent, offset)."""
  rng = np.random.default_rng(0)
  past = rng.normal(size=(2, 2, 5, 6, 3)).astype(np.float32)  # [N, K, h, w, c]
  padded = np.pad(past, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], mode="symmetric")  # numpy's = tf's SYMMETRIC
  shifted = lambda j, dy, dx: padded[:, j, 1 + dy:6 + dy, 1 + dx:7 + dx]  # past[:, j][cell + (dy, dx)]
  choices = [(j, dy, dx) for j in range(2) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  for index in (4, 9 + 4, 9 + 2, 6):  # (z_{t-2}, 0), (z_{t-1}, 0), (z_{t-1}, (-1, 1)), (z_{t-2}, (1, -1))
    logits = np.full((2, 5, 6, 18), -1e4, np.float32)
    logits[..., index] = 0.0
    np.testing.assert_allclose(advect(tf.constant(past), logits, 3, 2), shifted(*choices[index]), atol=1e-6)
  logits = rng.normal(size=(2, 5, 6, 18)).astype(np.float32)
  weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = sum(weights[..., i, None] * shifted(*choice) for i, choice in enumerate(choices))
  np.testing.assert_allclose(advect(tf.constant(past), logits, 3, 2), expected, rtol=1e-5, atol=1e-6)


def test_motion_compensated_skip_starts_as_the_papers_skip_and_learns_a_shift_by_likelihood():
  """latent_skip_kernel = 3: at initialisation the means are within 1 % of the paper's skip's (z_{t-1} + dz
  with dz = 0); trained by the exact likelihood alone on latents that move one cell right per frame, the
  advection weights come to read z_{t-1} one cell to the left, and the means' error falls to the cells that
  enter the view (1 column in 10)."""
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(1)
  canvas = (rng.normal(size=(32, 16, 16, 2)) * (rng.uniform(size=(32, 16, 16, 1)) < 0.3)).astype(np.float32)
  z = tf.constant(np.stack([canvas[:, 3:13, 3 - t:13 - t] for t in range(4)], 1))  # [32, 4, 10, 10, 2]
  prior = LatentPrior((10, 10, 2), 0, "conv3d_net", num_context=2, depth=1, width=16, skip_kernel=3)
  prior.create_variables()
  copy_error = float(tf.reduce_mean((z[:, 2:] - z[:, 1:-1]) ** 2))
  mean_error = lambda: float(tf.reduce_mean(
      (prior.sequence_params(z, None, 2)[0][1] - tf.reshape(z[:, 2:], [-1, 10, 10, 2])) ** 2))  # frames 2, 3
  np.testing.assert_allclose(mean_error(), copy_error, rtol=0.01)
  _train_prior(prior, z, first=2, steps=60)
  assert mean_error() < 0.3 * copy_error, (mean_error(), copy_error)
  weights = prior.advection_weights(z[:, :2], None).numpy()  # [32, 10, 10, K=2, 3, 3]
  assert weights.shape == (32, 10, 10, 2, 3, 3)
  np.testing.assert_allclose(weights.sum((3, 4, 5)), 1.0, rtol=1e-5)
  # z_t(q) = z_{t-1}(q + (0, -1)): z_{t-1} (index 1), offset (0, -1) (index (1, 0)), on the interior cells
  # (with the learned logits unscaled, 1 x the conv, this weight stayed at 0.003-0.012, the identity 0.93-0.97)
  assert weights[:, 1:-1, 1:-1, 1, 1, 0].mean() > 0.9, weights[:, 1:-1, 1:-1].mean((0, 1, 2))
  with pytest.raises(ValueError, match="latent_skip_kernel=2"):
    LatentPrior((4, 4, 2), 0, "conv3d_net", num_context=2, skip_kernel=2)
  with pytest.raises(ValueError, match="'conv_net'"):
    LatentPrior((4, 4, 2), 0, "conv_net", num_context=2, skip_kernel=3)
  with pytest.raises(ValueError, match="skip=False|latent_skip=True"):
    LatentPrior((4, 4, 2), 0, "conv3d_net", num_context=2, skip_kernel=3, skip=False)
  for bad in ("latent_skip_kernel=2", "latent_skip_kernel=-1", "latent_skip_kernel=3,prior=conv_lstm",
              "latent_skip_kernel=3,latent_skip=False"):
    with pytest.raises(HParamsError, match="latent_skip_kernel="):
      override(videoflow_tiny(), bad)
  with pytest.raises(ValueError, match="needs latent_skip_kernel"):
    LatentPrior((4, 4, 2), 0, "conv3d_net", num_context=2).advection_weights(z[:, :2, :4, :4], None)


def _k3_padded_prior(seed, **kwargs):
  """A randomised LatentPrior (K = 3, pad_context, 3 x 3 motion-compensated skip) with z [2, 5, 4, 4, 2] and h."""
  prior = LatentPrior((4, 4, 2), 3, "conv3d_net", num_context=3, depth=1, width=8, pad_context=True,
                      skip_kernel=3, **kwargs)
  z = tf.random.stateless_normal([2, 5, 4, 4, 2], seed=[seed, 1])
  h = tf.random.stateless_normal([2, 5, 4, 4, 3], seed=[seed, 2])
  prior.sequence_log_prob(z, h, 0)
  _randomise(prior, stddev=0.3, seed=seed)
  return prior, z, h


@pytest.mark.parametrize("advect_padded", [False, True])
def test_motion_compensated_skip_on_zero_padded_windows(advect_padded):
  """With pad_context and K = 3, frames 1 and 2 have zero-padded windows: their means are the paper's
  z_{t-1} + dz (advect_padded=False) or the advected window + dz (True); frames >= 3 always advect. Checked for the
  teacher-forced and the sampler's parameters against dz and `advect` computed from the prior's own layers."""
  k = 3
  prior, z, h = _k3_padded_prior(3, advect_padded=advect_padded)
  (_, mu_all, _), = prior.sequence_params(z, h, 1)  # frames 1 .. 4: [2*4, 4, 4, 2]
  mu_all = tf.reshape(mu_all, [2, 4, 4, 4, 2])
  padded_z = tf.pad(z, [[0, 0], [k - 1, 0], [0, 0], [0, 0], [0, 0]])  # frame t's window: padded_z[:, t-1:t+2]
  for t in range(1, 5):
    past = padded_z[:, t - 1:t - 1 + k]  # [2, K, 4, 4, 2]
    features = prior._conv3d_features(past, prior.cond_projection(h[:, t]))
    delta = tf.split(prior.output_conv(features), 2, axis=-1)[0]
    advected = advect(past, prior._advection_logits(features), 3, k)
    skip = advected if (t >= k or advect_padded) else z[:, t - 1]
    assert float(tf.reduce_max(tf.abs(advected - z[:, t - 1]))) > 0.05  # the two skips differ
    np.testing.assert_allclose(mu_all[:, t - 1], skip + delta, rtol=1e-5, atol=1e-5)
    mu, _, _ = prior.params(prior.context_state(z[:, :t], h[:, :t]), h[:, t], t)
    np.testing.assert_allclose(mu, skip + delta, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="advect_padded=True needs"):
    LatentPrior((4, 4, 2), 0, "conv3d_net", num_context=2, advect_padded=True)
  with pytest.raises(HParamsError, match="latent_skip_kernel_padded=True needs"):
    override(videoflow_tiny(), "latent_skip_kernel_padded=True")


def _translated(x, dy, dx):
  """numpy: x [N, h, w, c] read at cell + (dy, dx), |dy|, |dx| <= 1, the borders reflected (edge repeated)."""
  padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="symmetric")
  return padded[:, 1 + dy:1 + dy + x.shape[1], 1 + dx:1 + dx + x.shape[2]]


OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # the mixture's order (kernel 3)


def test_translations_match_numpy_with_static_and_run_time_sizes_and_agree_in_gradient():
  """The k^2 reflected shifts against numpy, for static frame sizes (windows through tf.split) and for sizes known
  only when the graph runs (basic slices); the gradient of a weighted sum of them is the same either way."""
  rng = np.random.default_rng(3)
  x = tf.constant(rng.normal(size=(2, 5, 6, 3)).astype(np.float32))
  weights = tf.constant(rng.normal(size=(9, 2, 5, 6, 3)).astype(np.float32))
  dynamic = tf.function(lambda x: translations(x, 3),
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  for shifts in (translations(x, 3), dynamic(x)):
    for shifted, (dy, dx) in zip(shifts, OFFSETS):
      np.testing.assert_array_equal(shifted, _translated(x.numpy(), dy, dx))

  def gradient(fn):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(weights * tf.stack(fn(x)))
    return tape.gradient(loss, x)

  np.testing.assert_allclose(gradient(lambda x: translations(x, 3)), gradient(dynamic), rtol=1e-6, atol=1e-6)
  assert translations(x, 5)[0].shape == x.shape


def _normal_log_prob(z, mu, log_sigma):
  """numpy: sum over the cells of log N(z; mu, e^log_sigma): [N]."""
  return np.sum(-0.5 * ((z - mu) / np.exp(log_sigma)) ** 2 - log_sigma - 0.5 * np.log(2 * np.pi), axis=(1, 2, 3))


def _mixture_prior(cond_channels, seed=4, advect_padded=False):
  """A randomised LatentPrior (K = 2, pad_context, shift mixture over 3 x 3) with z [2, 4, 4, 4, 2] and h."""
  prior = LatentPrior((4, 4, 2), cond_channels, "conv3d_net", num_context=2, depth=1, width=8, pad_context=True,
                      skip_kernel=3, shift_mixture=True, advect_padded=advect_padded)
  z = tf.random.stateless_normal([2, 4, 4, 4, 2], seed=[seed, 1])
  h = tf.random.stateless_normal([2, 4, 4, 4, cond_channels], seed=[seed, 2]) if cond_channels else None
  prior.sequence_log_prob(z, h, 0)
  _randomise(prior, stddev=0.3, seed=seed)
  prior.shift_logits.bias.assign(np.linspace(-1.0, 1.5, 9).astype(np.float32))  # clearly unequal weights
  return prior, z, h


@pytest.mark.parametrize("cond_channels,advect_padded", [(0, False), (3, False), (3, True)])
def test_shift_mixture_scores_the_padded_frame_by_a_mixture_of_translated_gaussians(cond_channels, advect_padded):
  """With K = 2 and pad_context, frame 1's window is zero-padded: its log-prob is log sum_d pi_d N(z_1; S_d mu,
  S_d sigma) over the 9 translations, computed here in numpy from the prior's own (mu, log_sigma, logits); frames
  2 and 3 keep their Gaussian. The sampler's state machine agrees. mu is z_0 + dz, or with advect_padded the
  advected window + dz (computed from the prior's own layers)."""
  prior, z, h = _mixture_prior(cond_channels, advect_padded=advect_padded)
  h_at = lambda t: None if h is None else h[:, t]
  whole = prior.sequence_log_prob(z, h, 0).numpy()  # [2, 4]
  window = tf.stack([tf.zeros_like(z[:, 0]), z[:, 0]], 1)  # frame 1's window [2, K, 4, 4, 2]
  mu, log_sigma, logits = (x.numpy() for x in prior.conditional_mixture(window, h_at(1), tf.constant([True] * 2)))
  features = prior._conv3d_features(window, None if h is None else prior.cond_projection(h[:, 1]))
  delta = tf.split(prior.output_conv(features), 2, axis=-1)[0]
  advected = advect(window, prior._advection_logits(features), 3, 2)
  assert float(tf.reduce_max(tf.abs(advected - z[:, 0]))) > 0.05  # the two skips differ
  np.testing.assert_allclose(mu, (advected if advect_padded else z[:, 0]) + delta, rtol=1e-5, atol=1e-5)
  log_pi = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))  # [2, 9]
  components = np.stack([_normal_log_prob(z[:, 1].numpy(), _translated(mu, dy, dx), _translated(log_sigma, dy, dx))
                         for dy, dx in OFFSETS], 1)  # [2, 9]
  top = np.max(log_pi + components, -1)
  expected = top + np.log(np.sum(np.exp(log_pi + components - top[:, None]), -1))
  np.testing.assert_allclose(whole[:, 1], expected, rtol=1e-5)
  assert np.all(np.abs(whole[:, 1] - _normal_log_prob(z[:, 1].numpy(), mu, log_sigma)) > 0.1)  # not the Gaussian
  for t in (2, 3):
    mu, log_sigma = prior.conditional_params(z[:, t - 2:t], h_at(t))
    np.testing.assert_allclose(whole[:, t], gaussian(mu, log_sigma).log_prob(z[:, t]), rtol=1e-5)
  mu, log_sigma, _ = prior.params(prior.context_state(z[:, :2], None if h is None else h[:, :2]), h_at(2), 2)
  np.testing.assert_allclose(gaussian(mu, log_sigma).log_prob(z[:, 2]), whole[:, 2], rtol=1e-5)


@pytest.mark.parametrize("advect_padded", [False, True])
def test_shift_mixture_scores_padded_and_full_windows_apart_for_every_first_frame_and_length(advect_padded):
  """K = 3: frames 1 and 2 have zero-padded windows (mixtures), frames 3 and 4 full ones (Gaussians). Scoring
  from any `first`, and clips no longer than K (only padded windows), gives each frame's density on its own
  explicit window. With advect_padded, the teacher-forced parts skip the windows' known zero latents (1 or 2 of
  them, by the part's frames); the explicit windows here advect all K."""
  k = 3
  prior, z, h = _k3_padded_prior(6, shift_mixture=True, advect_padded=advect_padded)
  prior.shift_logits.bias.assign(np.linspace(-1.0, 1.5, 9).astype(np.float32))
  padded_z = tf.pad(z, [[0, 0], [k, 0], [0, 0], [0, 0], [0, 0]])  # frame t's window: padded_z[:, t:t+K]
  expected = [gaussian(*prior.unconditional_params(h[:, 0], 2)).log_prob(z[:, 0])]
  for t in range(1, 5):
    padded = tf.constant([t < k] * 2)
    mu, log_sigma, logits = prior.conditional_mixture(padded_z[:, t:t + k], h[:, t], padded)
    expected.append(shift_mixture_log_prob(z[:, t], mu, log_sigma, logits, 3) if t < k
                    else gaussian(mu, log_sigma).log_prob(z[:, t]))
  expected = np.stack([e.numpy() for e in expected], 1)  # [2, 5]
  for num_frames in (2, 3, 5):
    for first in range(num_frames):
      np.testing.assert_allclose(prior.sequence_log_prob(z[:, :num_frames], h[:, :num_frames], first),
                                 expected[:, first:num_frames], rtol=1e-5, atol=1e-5)
      parts = prior.sequence_params(z[:, :num_frames], h[:, :num_frames], first)
      assert [part[0].shape[1] for part in parts] == [n for n in (int(first < 1), min(num_frames, k) - max(first, 1),
                                                                  num_frames - max(first, k)) if n > 0]


def test_shift_mixture_sampler_draws_one_translation_per_example_with_the_mixture_weights():
  """On a padded window the sampler's Gaussian is one translation of the untranslated one: the most probable at
  T = 0, and at T > 0 drawn per example with frequencies softmax(logits) (400 copies of one window)."""
  prior, z, h = _mixture_prior(3)
  # offsets (-1, 0) and (0, -1) (indices 1 and 3) far apart, so a sampler that swapped dy and dx would fail
  prior.shift_logits.bias.assign(np.array([0.0, 3.0, 0.5, -1.5, 0.3, 1.0, -0.5, 0.2, 1.5], np.float32))
  n = 400
  state = prior.context_state(tf.tile(z[:1, :1], [n, 1, 1, 1, 1]), tf.tile(h[:1, :1], [n, 1, 1, 1, 1]))
  h1 = tf.tile(h[:1, 1], [n, 1, 1, 1])
  mu0, log_sigma0, logits = (x.numpy() for x in prior.conditional_mixture(state, h1, tf.constant(True)))
  candidates = [_translated(mu0[:1], dy, dx)[0] for dy, dx in OFFSETS]
  pi = np.exp(logits[0]) / np.exp(logits[0]).sum()

  def chosen(mu):
    return [int(np.argmin([np.abs(m - c).max() for c in candidates])) for m in mu]

  mu, log_sigma, _ = prior.params(state, h1, 1)  # no seed: the most probable translation
  assert set(chosen(mu.numpy())) == {int(np.argmax(pi))}
  mu, _, _ = prior.params(state, h1, 1, temperature=0.0, seed=tf.constant([1, 2]))
  assert set(chosen(mu.numpy())) == {int(np.argmax(pi))}
  mu, log_sigma, _ = prior.params(state, h1, 1, temperature=0.5, seed=tf.constant([1, 2]))
  picks = chosen(mu.numpy())
  for row, d in enumerate(picks[:20]):  # each row is exactly one translation, its sigma translated alike
    np.testing.assert_allclose(mu[row], candidates[d], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_sigma[row], _translated(log_sigma0[:1], *OFFSETS[d])[0], rtol=1e-6, atol=1e-6)
  freq = np.bincount(picks, minlength=9) / n
  assert np.all(np.abs(freq - pi) <= 4 * np.sqrt(pi * (1 - pi) / n) + 0.01), (freq, pi)
  assert pi[1] > 5 * pi[3]
  again, _, _ = prior.params(state, h1, 1, temperature=0.5, seed=tf.constant([1, 2]))
  np.testing.assert_array_equal(again, mu)  # seeded
  prior.shift_logits.kernel.assign(tf.zeros_like(prior.shift_logits.kernel))
  prior.shift_logits.bias.assign(tf.zeros([9]))  # untrained: equal weights, and T = 0 keeps the Gaussian in place
  mu, _, _ = prior.params(state, h1, 1)
  np.testing.assert_array_equal(mu, mu0)
  prior.shift_logits.bias.assign(np.full(9, np.nan, np.float32))  # a diverged rollout: no crash, non-finite mu
  mu, _, _ = prior.params(state, h1, 1, temperature=0.5, seed=tf.constant([1, 2]))
  assert mu.shape == mu0.shape


def test_shift_mixture_learns_that_a_single_frame_moves_by_one_cell():
  """Latents whose frame 1 is frame 0 moved by one cell in one of the 8 directions (never still): trained on
  frame 1's likelihood, the mixture gives the still component little weight, scores better than the same prior
  without the mixture, and its T = 0 sample is a translated copy of frame 0, where the plain prior's mean is a
  blend that keeps frame 0's place."""
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(2)
  z0 = (rng.normal(size=(64, 8, 8, 2)) * (rng.uniform(size=(64, 8, 8, 1)) < 0.3)).astype(np.float32)
  moves = [o for o in OFFSETS if o != (0, 0)]
  z1 = np.stack([_translated(z0[i:i + 1], *moves[i % 8])[0] for i in range(64)])
  z1 += 0.05 * rng.normal(size=z1.shape).astype(np.float32)  # noise keeps sigma, and Adam, away from the floor
  z = tf.constant(np.stack([z0, z1], 1))  # [64, 2, 8, 8, 2]

  def train(shift_mixture):
    prior = LatentPrior((8, 8, 2), 0, "conv3d_net", num_context=2, depth=1, width=16, pad_context=True,
                        skip_kernel=3, shift_mixture=shift_mixture)
    prior.create_variables()
    return prior, -_train_prior(prior, z, first=1, steps=80)

  mixed, mixed_log_prob = train(True)
  plain, plain_log_prob = train(False)
  assert mixed_log_prob > plain_log_prob + 20.0, (mixed_log_prob, plain_log_prob)  # nats per frame, 128 dims
  state = mixed.context_state(z[:, :1], None)
  _, _, logits = mixed.conditional_mixture(state, None, tf.constant(True))
  pi = tf.nn.softmax(logits).numpy().mean(0)
  assert pi[OFFSETS.index((0, 0))] < 0.05, pi
  rms = lambda x: np.sqrt(np.mean(x ** 2, axis=(1, 2, 3)))
  scale = rms(z0)
  mu, _, _ = mixed.params(state, None, 1)  # T = 0
  errors = np.stack([rms(mu.numpy() - _translated(z0, *m)) for m in moves], 1).min(1) / scale  # nearest move
  mu, _, _ = plain.params(plain.context_state(z[:, :1], None), None, 1)
  plain_errors = np.stack([rms(mu.numpy() - _translated(z0, *m)) for m in moves], 1).min(1) / scale
  assert errors.max() < 0.15 and plain_errors.min() > 0.5, (errors, plain_errors)


def test_shift_mixture_hparams_and_arguments_fail_loudly():
  for bad in ("prior_shift_mixture=True", "prior_shift_mixture=True,latent_skip_kernel=3",
              "prior_shift_mixture=True,latent_skip_kernel=3,pad_context=True"):
    with pytest.raises(HParamsError, match="prior_shift_mixture=True mixes translations"):
      override(videoflow_tiny(), bad)
  with pytest.raises(HParamsError, match="prior_mean_error_full_windows=True"):
    override(videoflow_tiny(), "prior_shift_mixture=True,latent_skip_kernel=3,pad_context=True,"
             "num_context_latents=2,num_train_frames=3,prior_mean_error_weight=1")
  override(videoflow_tiny(), "prior_shift_mixture=True,latent_skip_kernel=3,pad_context=True,num_context_latents=2")
  override(videoflow_tiny(), "prior_shift_mixture=True,latent_skip_kernel=3,pad_context=True,num_context_latents=2,"
           "latent_skip_kernel_padded=True")  # the mixture translates the advected mean
  with pytest.raises(HParamsError, match="num_cond_frames=2 leaves none"):  # its mixture would never train
    override(videoflow_tiny(), "prior_shift_mixture=True,latent_skip_kernel=3,pad_context=True,"
             "num_context_latents=2,num_train_frames=3,num_cond_frames=2")
  with pytest.raises(ValueError, match="num_cond_frames=2 frames"):  # the problem's 2 conditioning frames
    _model(num_input=2, num_target=2, num_train_frames=3, num_cond_frames=0, **SHIFT_MIXTURE)
  with pytest.raises(ValueError, match="shift_mixture=True needs"):
    LatentPrior((4, 4, 2), 0, "conv3d_net", num_context=1, pad_context=True, skip_kernel=3, shift_mixture=True)


def test_causal_conv3d_never_sees_the_future():
  from t2v.layers import ResidualBlock3D
  block = ResidualBlock3D(4, dilations=(1, 2), gating=True)
  x = tf.Variable(tf.random.stateless_normal([1, 5, 6, 6, 4], seed=[0, 1]))
  block(x)
  _randomise(block)
  for t in range(5):
    with tf.GradientTape() as tape:
      out = tf.reduce_sum(block(x)[:, t])
    grad = tape.gradient(out, x).numpy()[0]
    assert np.abs(grad[t + 1:]).max(initial=0) == 0
    assert np.abs(grad[t]).max() > 0


@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_causal_conv3d_equals_a_3d_convolution_of_the_zero_padded_video(num_frames):
  """Against tf.nn.conv3d on the video padded with kt - 1 zero frames in front (and 1 pixel around), for static
  time lengths (where taps that see only padding are skipped) and a dynamic one."""
  from t2v.layers.residual3d import CausalConv3D
  layer = CausalConv3D(5, (2, 3, 3))
  x = tf.random.stateless_normal([2, num_frames, 6, 6, 3], seed=[num_frames, 0])
  layer(x)
  _randomise(layer, stddev=0.3)
  padded = tf.pad(x, [[0, 0], [1, 0], [1, 1], [1, 1], [0, 0]])
  expected = tf.nn.conv3d(padded, layer.kernel, [1] * 5, "VALID") + layer.bias
  np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
  dynamic = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, 6, 6, 3])])
  np.testing.assert_allclose(dynamic(x), expected, rtol=1e-5, atol=1e-5)


def _dilated_taps_reference(x, kernel, bias, dilation):
  """A time-causal, spatially 'same' dilated 3-D convolution written out tap by tap (pad, shift, matmul)."""
  kt, kh, kw = kernel.shape[:3]
  h, w = x.shape[2:4]
  ph, pw = dilation * (kh // 2), dilation * (kw // 2)
  padded = tf.pad(x, [[0, 0], [kt - 1, 0], [ph, ph], [pw, pw], [0, 0]])
  out = bias
  for a in range(kt):
    for i in range(kh):
      for j in range(kw):
        window = padded[:, a:a + x.shape[1], i * dilation:i * dilation + h, j * dilation:j * dilation + w]
        out = out + tf.einsum("nthwc,cf->nthwf", window, kernel[a, i, j])
  return out


@pytest.mark.parametrize("spatial", [(1, 1), (2, 2), (3, 5), (8, 8)])
@pytest.mark.parametrize("dilation", [2, 4])
def test_dilated_causal_conv3d_matches_its_taps_and_trains_on_any_cpu(spatial, dilation):
  """Value and input/kernel gradients against the tap-by-tap reference, at latent sizes below, at and above the
  dilation (where the layer cuts the kernel to its centre). TF's default CPU kernels have no gradient for a raw
  dilated Conv2D (only oneDNN's do, which TF enables on Intel CPUs only): this runs on every CPU."""
  from t2v.layers.residual3d import CausalConv3D
  layer = CausalConv3D(4, (2, 3, 3), dilation=dilation)
  x = tf.random.stateless_normal([2, 3, *spatial, 3], seed=[dilation, spatial[1]])
  layer(x)
  _randomise(layer, stddev=0.3)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    out = layer(x)
    expected = _dilated_taps_reference(x, layer.kernel, layer.bias, dilation)
    weights = tf.random.stateless_normal(out.shape, seed=[1, 2])
    loss, expected_loss = tf.reduce_sum(out * weights), tf.reduce_sum(expected * weights)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  for got, want in zip(tape.gradient(loss, [x, layer.kernel]), tape.gradient(expected_loss, [x, layer.kernel])):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dilated_causal_conv3d_trains_with_tensorflows_default_cpu_kernels():
  """With oneDNN off (TF_ENABLE_ONEDNN_OPTS=0, TF's default on CPUs like AMD's), a dilated layer still has
  gradients: a raw dilated Conv2D's gradient would fail there."""
  code = ("import tensorflow as tf\n"
          "from t2v.layers.residual3d import CausalConv3D\n"
          "layer = CausalConv3D(4, (2, 3, 3), dilation=2)\n"
          "x = tf.random.normal([2, 3, 8, 8, 3])\n"
          "with tf.GradientTape() as tape:\n"
          "  tape.watch(x)\n"
          "  loss = tf.reduce_sum(layer(x) ** 2)\n"
          "print(all(g is not None for g in tape.gradient(loss, [x, *layer.trainable_variables])))\n")
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  process = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
  assert process.returncode == 0, process.stderr[-3000:]
  assert process.stdout.split()[-1] == "True"


@pytest.mark.parametrize("prior", ["conv3d_net", "conv_lstm"])
def test_sampling_shapes_temperature_and_seeds(prior):
  model = _model(prior=prior)
  _randomise(model)
  context = _video(2, 1)
  a = model.sample({"video": context}, 4, temperature=0.7, seed=(1, 2))
  assert a.shape == (2, 4, 8, 8, 1) and a.dtype == tf.uint8
  np.testing.assert_array_equal(a, model.sample({"video": context}, 4, temperature=0.7, seed=(1, 2)))
  assert not np.array_equal(a, model.sample({"video": context}, 4, temperature=0.7, seed=(3, 4)))
  np.testing.assert_array_equal(model.sample({"video": context}, 3, temperature=0.0, seed=(1, 2)),
                                model.sample({"video": context}, 3, temperature=0.0, seed=(9, 9)))


@pytest.mark.parametrize("prior", ["conv3d_net", "conv_lstm"])
def test_sampling_at_temperature_zero_gives_the_prior_means(prior):
  """The frame after a 2-frame context at T = 0 decodes the conditional means, computed here teacher-forced
  from the context latents (windows for conv3d_net, the conv_lstm recurrence over the whole context)."""
  model = _model(num_context_latents=1, prior=prior)
  _randomise(model)
  context = _video(1, 2)
  frame = model.sample({"video": context}, 1, temperature=0.0)[:, 0]
  context_zs, context_hs, _ = model.encode_latents(dequantize(context, noise="midpoint") - 0.5)
  u = None
  zs = [None] * len(model.priors)
  for level in reversed(range(len(model.priors))):
    prior_l, past = model.priors[level], context_zs[level]
    if prior == "conv_lstm":  # the recurrence's last output reads (z_1, h_2); steps 1 and 2 teacher-forced
      h = None if u is None else tf.concat([context_hs[level], u[:, None]], axis=1)  # [1, 3, h, w, c]
      outputs, _ = prior_l._recurrence(tf.concat([past, past[:, -1:]], axis=1), h)  # z_2 is not read
      mu, _ = prior_l._output_params(prior_l.output_conv(outputs[:, -1]), past[:, -1])
    else:
      mu, _ = prior_l.conditional_params(past[:, -1:], u)
    zs[level] = mu
    u = model.glow.decode_level(level, mu, u)
  np.testing.assert_array_equal(frame, model.decode_frames(zs))


SHIFT_MIXTURE = {"latent_skip_kernel": 3, "num_context_latents": 2, "pad_context": True, "prior_shift_mixture": True}


@pytest.mark.parametrize("num_levels,advect_padded", [(1, False), (2, False), (1, True)])
def test_shift_mixture_model_is_causal_seeded_and_rolls_out(num_levels, advect_padded):
  """A VideoFlow with prior_shift_mixture (its padded windows' means from z_{t-1} or, with
  latent_skip_kernel_padded, advected): frame t's log-likelihood has no gradient from later frames (and frame
  1's has one from frame 0), samples are seeded (T = 0 ignores the seed), and 100 frames roll out."""
  model = _model(num_input=1, num_target=3, num_levels=num_levels, latent_skip_kernel_padded=advect_padded,
                 **SHIFT_MIXTURE)
  _randomise(model)
  y = tf.Variable(tf.random.stateless_uniform([1, 4, 8, 8, 1], seed=[2, 1]) - 0.5)
  with tf.GradientTape(persistent=True) as tape:
    per_frame = tf.unstack(model.frame_log_probs(y, first=1)[0])  # frames 1 .. 3
  for t, log_prob in enumerate(per_frame, start=1):
    grad = tape.gradient(log_prob, y).numpy()[0]
    np.testing.assert_array_equal(grad[t + 1:], 0.0)
    assert np.abs(grad[t - 1]).max() > 0
  context = _video(2, 1)
  a = model.sample({"video": context}, 3, temperature=0.5, seed=(1, 2))
  np.testing.assert_array_equal(a, model.sample({"video": context}, 3, temperature=0.5, seed=(1, 2)))
  assert not np.array_equal(a, model.sample({"video": context}, 3, temperature=0.5, seed=(3, 4)))
  np.testing.assert_array_equal(model.sample({"video": context}, 3, temperature=0.0, seed=(1, 2)),
                                model.sample({"video": context}, 3, temperature=0.0, seed=(7, 7)))
  assert model.sample({"video": context[:1]}, 100, temperature=0.5).shape == (1, 100, 8, 8, 1)


@pytest.mark.parametrize("prior", ["conv3d_net", "pointwise", "conv_lstm"])
def test_hundred_frame_rollout(prior):
  model = _model(prior=prior)
  frames = model.sample({"video": _video(1, 1)}, 100, temperature=0.5, seed=(0, 1))
  assert frames.shape == (1, 100, 8, 8, 1)


@pytest.mark.parametrize("prior", ["conv3d_net", "conv_lstm"])
def test_unconditional_generation_and_any_context_length(prior):
  model = _model(prior=prior, num_context_latents=2)
  for num_context in (0, 3):  # the same model, one sampling graph per context length
    video = _video(2, num_context)
    assert model.sample({"video": video}, 3, 0.5).shape == (2, 3, 8, 8, 1)


def test_encode_decode_and_interpolation():
  model = _model()
  _randomise(model)
  frames = _video(2, 2)
  a, b = frames[:, 0], frames[:, 1]
  np.testing.assert_array_equal(model.decode_frames(model.encode_frames(a)), a)
  path = model.interpolate(a, b, 4)
  assert path.shape == (2, 4, 8, 8, 1)
  np.testing.assert_array_equal(path[:, 0], a)
  np.testing.assert_array_equal(path[:, -1], b)
  top_only = model.interpolate(a, b, 3, levels=[1])
  assert not np.array_equal(top_only[:, -1], b)  # level 0 kept frame a's latents
  with pytest.raises(ValueError, match="levels"):
    model.interpolate(a, b, 3, levels=[5])


def test_next_frame_score_matches_log_prob():
  model = _model()
  video = _video(2, 2)
  score = model.next_frame_bpp(video[:, :1], video[:, 1], seed=(3, 3))
  expected = model.log_prob_bpp({"video": video}, 1, seed=tf.constant([3, 3]))[:, 0]
  np.testing.assert_allclose(score, expected, rtol=1e-6)


@pytest.mark.parametrize("changes", [
    {"prior": "conv_net"}, {"prior": "pointwise"}, {"prior_dilations": False}, {"prior_gating": False},
    {"latent_skip": False}, {"coupling": "additive", "coupling_activation": "gated"}, {"num_context_latents": 2},
    {"prior": "conv_lstm"}, {"prior": "conv_lstm", "latent_skip": False, "num_context_latents": 2},
    {"prior_mean_gradient_beta": 1.0}, {"latent_skip_kernel": 3, "num_context_latents": 2},
    dict(SHIFT_MIXTURE, num_levels=1),
])
def test_ablations_build_and_train(changes):
  model = _model(num_target=2, num_train_frames=3, **changes)
  video = _video(2, 3)
  model.initialize({"video": video})
  with tf.GradientTape() as tape:
    loss, metrics = model.compute_loss({"video": video}, training=True)
    mean_loss = tf.reduce_mean(loss)
  grads = tape.gradient(mean_loss, model.trainable_weights)
  assert np.all(np.isfinite(loss)) and set(metrics) == {"bpp", "first_frames_prior_nll"}
  np.testing.assert_allclose(loss, metrics["bpp"] + metrics["first_frames_prior_nll"])
  missing = [v.path for v, g in zip(model.trainable_weights, grads) if g is None]
  assert not missing, f"no gradient reaches {missing}"


def test_prior_mean_error_weight_adds_the_means_error_and_trains_only_the_priors():
  """prior_mean_error_weight = w: the training loss is the exact one plus w x the priors' teacher-forced means'
  squared error relative to copying the previous latent, averaged over levels, which matches the sampler's
  means computed here frame by frame; the bpp and the flow's gradients are those of the exact objective; the
  priors' gradients change."""
  overrides = dict(num_target=3, num_train_frames=4, num_context_latents=2, pad_context=True)
  exact, weighted = _model(**overrides), _model(**overrides, prior_mean_error_weight=0.7)
  video = _video(2, 4)
  batch = {"video": video, "seed": tf.constant([3, 4])}
  exact.initialize({"video": video})
  _randomise(exact)
  weighted.set_weights(exact.get_weights())

  def loss_and_grads(model):
    with tf.GradientTape() as tape:
      loss, metrics = model.compute_loss(batch, training=True)
      mean_loss = tf.reduce_mean(loss)
    return loss, metrics, tape.gradient(mean_loss, model.trainable_weights)

  exact_loss, exact_metrics, exact_grads = loss_and_grads(exact)
  loss, metrics, grads = loss_and_grads(weighted)
  np.testing.assert_array_equal(metrics["bpp"], exact_metrics["bpp"])
  np.testing.assert_allclose(loss, exact_loss + 0.7 * metrics["prior_mean_relative_error"], rtol=1e-6)
  # the error by hand: the sampler's means given the true earlier latents, frames 1..3 (num_cond_frames = 1)
  zs, hs, _ = exact.encode_latents(dequantize(video, batch["seed"]) - 0.5)
  relative, relative_full = [], []  # per level: frames 1..3, and frames 2..3 (full K = 2 windows)
  for level, prior in enumerate(exact.priors):
    h_at = lambda t: hs[level][:, t] if level < len(hs) else None
    state = prior.context_state(zs[level][:, :1], None if level >= len(hs) else hs[level][:, :1])
    error, copy = {}, {}
    for t in range(1, 4):
      mu, _, state = prior.params(state, h_at(t), t)
      error[t] = tf.reduce_sum((zs[level][:, t] - mu) ** 2, axis=[1, 2, 3]).numpy()
      copy[t] = tf.reduce_sum((zs[level][:, t] - zs[level][:, t - 1]) ** 2, axis=[1, 2, 3]).numpy()
      state = prior.advance(state, zs[level][:, t])
    relative.append(sum(error.values()) / sum(copy.values()))
    relative_full.append((error[2] + error[3]) / (copy[2] + copy[3]))
  np.testing.assert_allclose(metrics["prior_mean_relative_error"], np.mean(relative, 0), rtol=1e-4)
  assert np.abs(np.asarray(relative) - 1).max() > 5e-3, "the randomised priors' means are the copies"
  prior_weights = {id(v) for prior in weighted.priors for v in prior.trainable_weights}
  prior_changed = False
  for v, g_exact, g in zip(weighted.trainable_weights, exact_grads, grads):
    name = v.path
    if id(v) in prior_weights:
      prior_changed |= not np.allclose(g, g_exact, rtol=1e-3)
    else:
      np.testing.assert_allclose(g, g_exact, rtol=1e-5, atol=1e-7, err_msg=name)
  assert prior_changed, "the squared error's gradient never reached the priors"
  # prior_mean_error_levels = 1: the top level's error alone; the level below trains on the exact likelihood
  top_only = _model(**overrides, prior_mean_error_weight=0.7, prior_mean_error_levels=1)
  top_only.set_weights(exact.get_weights())
  loss, metrics, grads = loss_and_grads(top_only)
  np.testing.assert_allclose(metrics["prior_mean_relative_error"], relative[-1], rtol=1e-4)
  np.testing.assert_allclose(loss, exact_loss + 0.7 * metrics["prior_mean_relative_error"], rtol=1e-6)
  top_weights = {id(v) for v in top_only.priors[-1].trainable_weights}
  for v, g_exact, g in zip(top_only.trainable_weights, exact_grads, grads):
    if id(v) not in top_weights:
      np.testing.assert_allclose(g, g_exact, rtol=1e-5, atol=1e-7, err_msg=v.path)
  # prior_mean_error_full_windows: frames 2, 3 alone (frame 1's window [0, z_0] is padded)
  full = _model(**overrides, prior_mean_error_weight=0.7, prior_mean_error_full_windows=True)
  full.set_weights(exact.get_weights())
  loss, metrics, _ = loss_and_grads(full)
  np.testing.assert_allclose(metrics["prior_mean_relative_error"], np.mean(relative_full, 0), rtol=1e-4)
  np.testing.assert_allclose(loss, exact_loss + 0.7 * metrics["prior_mean_relative_error"], rtol=1e-6)
  got = metrics["prior_mean_relative_error"].numpy()  # closer to frames 2..3's error than to frames 1..3's
  assert np.abs(got - np.mean(relative, 0)).max() > 10 * np.abs(got - np.mean(relative_full, 0)).max()
  with pytest.raises(HParamsError, match="num_train_frames=2 must exceed"):
    override(videoflow_tiny(), "prior_mean_error_full_windows=True,num_context_latents=2,num_train_frames=2")
  with pytest.raises(HParamsError, match="prior_mean_error_levels=3"):
    override(videoflow_tiny(), "prior_mean_error_levels=3")  # videoflow_tiny has 2 levels
  with pytest.raises(HParamsError, match="prior_mean_error_weight=-1"):
    override(videoflow_tiny(), "prior_mean_error_weight=-1")
  with pytest.raises(HParamsError, match="prior_mean_error_weight=inf"):
    override(videoflow_tiny(), "prior_mean_error_weight=inf")
  with pytest.raises(ValueError, match="first=0"):
    weighted._prior_mean_relative_error(zs, hs, 0)


def test_ablation_switches_change_the_architecture():
  weights = lambda **kw: sum(int(np.prod(v.shape)) for v in _model(**kw).trainable_weights)
  base = weights()
  assert weights(prior_dilations=False) < base
  assert weights(prior_gating=False) != base


def test_bad_input():
  with pytest.raises(ValueError, match="num_train_frames=1"):
    _model(num_train_frames=1, num_cond_frames=1)
  with pytest.raises(HParamsError, match="coupling"):
    override(videoflow_tiny(), "coupling=sum")
  model = _model()
  with pytest.raises(ValueError, match="uint8"):
    model.sample({"video": tf.zeros([1, 1, 16, 16, 1], tf.uint8)}, 2)
  with pytest.raises(ValueError, match="temperature"):
    model.sample({"video": _video(1, 1)}, 2, temperature=-1.0)
  with pytest.raises(ValueError, match="no frame to score"):
    model.log_prob_bpp({"video": _video(1, 1)}, 1)
  with pytest.raises(HParamsError, match="prior_mean_gradient_beta=-1"):
    override(videoflow_tiny(), "prior_mean_gradient_beta=-1")
  with pytest.raises(ValueError, match="prior_mean_gradient_beta=nan"):
    LatentPrior((4, 4, 2), 0, mean_gradient_beta=float("nan"))


def test_short_training_lowers_held_out_bpp(tmp_path):
  from t2v.problems.stochastic_shapes import StochasticShapes
  problem = StochasticShapes(data_dir=str(tmp_path), config="tiny32")
  problem.prepare()
  spec = problem.spec()
  hp = override(videoflow_tiny(), "batch_size=8,learning_rate=0.005")
  tf.random.set_seed(0)
  model = VideoFlow(hp, spec)
  train = iter(problem.dataset(problem.train_split, batch_size=8, num_frames=model.num_train_frames, training=True))
  held_out = next(iter(problem.dataset(problem.eval_split, batch_size=16, training=False)))
  model.initialize(next(train))
  evaluate = lambda: float(tf.reduce_mean(model.log_prob_bpp(held_out, spec.num_input_frames, seed=tf.constant([0, 0]))))
  before = evaluate()
  optimizer = keras.optimizers.Adam(hp.learning_rate)
  optimizer.build(model.trainable_weights)

  # As the trainer traces its step: without AutoGraph, with its fused Adam update (Keras' apply_gradients and
  # AutoGraph made this step's first call take 29 s instead of 6 s on a 2-core CPU).
  @tf.function(autograph=False)
  def step(batch):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    optimizer_lib.apply_adam(optimizer, zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights),
                             hp.learning_rate)
    return loss

  for _ in range(30):
    step(next(train))
  after = evaluate()
  assert after < before - 0.5, (before, after)


@pytest.mark.parametrize("prior", ["conv3d_net", "conv_net", "pointwise", "conv_lstm"])
def test_checkpoint_restores_every_weight_into_a_fresh_model(prior, tmp_path):
  """The model alone (no optimizer) round-trips through tf.train.Checkpoint: layers kept in lists included."""
  model = _model(prior=prior)
  _randomise(model, stddev=0.5)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  fresh = _model(prior=prior)
  tf.train.Checkpoint(model=fresh).restore(path).assert_consumed()
  assert len(fresh.weights) == len(model.weights)
  for a, b in zip(model.weights, fresh.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize("prior", PRIOR_KINDS)
def test_the_constructor_creates_every_variable_that_running_the_model_uses(prior):
  """The priors build their weights from shapes (no eager pass): training, scoring and sampling find them all,
  with the shapes they need, and create none."""
  model = _model(prior=prior, num_context_latents=2, pad_context=True)
  before = {v.path: tuple(v.shape) for v in model.weights}
  video = _video(2, 4)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_loss({"video": video}, training=True)[0])
  grads = tape.gradient(loss, model.trainable_weights)
  model.sample({"video": video[:, :1]}, 2, 0.5)
  assert {v.path: tuple(v.shape) for v in model.weights} == before
  assert len(grads) == len(model.trainable_weights) and sum(g is None for g in grads) == 0
