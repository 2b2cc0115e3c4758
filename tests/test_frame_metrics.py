"""Tests of t2v.metrics.psnr_ssim, aggregate and bpp against hand computations and independent references.

References: tf.image.psnr / tf.image.ssim always; scikit-image's structural_similarity when it is installed (it is
no t2v dependency: `pip install scikit-image`); a TFP Uniform density through t2v.models.likelihood.bits_per_pixel.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from t2v.metrics import aggregate, bpp, psnr_ssim


def _frames(shape, seed=0, low=0, high=256) -> np.ndarray:
  return np.random.default_rng(seed).integers(low, high, shape, dtype=np.uint8)


def _noisy(frames: np.ndarray, amplitude: int, seed=1) -> np.ndarray:
  """frames plus uniform integer noise in [-amplitude, amplitude], clipped: correlated, so SSIM is far from 0."""
  noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, frames.shape)
  return np.clip(frames.astype(np.int32) + noise, 0, 255).astype(np.uint8)


# ---- PSNR ----------------------------------------------------------------------------------------------

def test_psnr_of_a_constant_offset_is_exact():
  truth = _frames((2, 3, 16, 16, 3), high=200)  # [E, T, H, W, C]; +d stays below 256
  offsets = np.array([1, 5, 50])
  predictions = (truth[:, None].astype(np.int32) + offsets[None, :, None, None, None, None]).astype(np.uint8)
  scores = psnr_ssim.psnr(predictions, truth)  # [E, D, T]
  assert scores.shape == (2, 3, 3) and scores.dtype == np.float64
  expected = 10 * np.log10(255.0 ** 2 / offsets.astype(np.float64) ** 2)  # 48.13, 34.15, 14.15 dB
  np.testing.assert_allclose(scores, np.broadcast_to(expected[None, :, None], (2, 3, 3)), rtol=0, atol=1e-12)


def test_psnr_of_one_wrong_sub_pixel_by_hand():
  truth = np.zeros((1, 1, 12, 12, 1), np.uint8)
  prediction = truth.copy()
  prediction[0, 0, 5, 7, 0] = 3  # MSE = 9 / 144
  score = psnr_ssim.psnr(prediction[:, None], truth)
  np.testing.assert_allclose(score, [[[10 * math.log10(255 ** 2 * 144 / 9)]]], atol=1e-12)


def test_psnr_agrees_with_tf_image_psnr():
  x = _frames((6, 24, 20, 3))
  y = _noisy(x, 30)
  expected = tf.image.psnr(tf.constant(x), tf.constant(y), max_val=255).numpy()
  np.testing.assert_allclose(psnr_ssim.frame_psnr(x, y), expected, atol=1e-4)


def test_identical_frames_psnr_is_capped_or_inf():
  truth = _frames((2, 2, 12, 12, 3))
  predictions = np.stack([truth, _noisy(truth, 10)], axis=1)  # decode 0 is the ground truth itself
  capped = psnr_ssim.psnr(predictions, truth)
  np.testing.assert_array_equal(capped[:, 0], psnr_ssim.PSNR_CAP_DB)
  assert psnr_ssim.PSNR_CAP_DB == 100.0 and np.all(capped[:, 1] < 100.0)
  raw = psnr_ssim.psnr(predictions, truth, max_db=None)
  assert np.all(np.isposinf(raw[:, 0])) and np.array_equal(raw[:, 1], capped[:, 1])
  np.testing.assert_array_equal(psnr_ssim.psnr(predictions, truth, max_db=20.0)[:, 0], 20.0)
  with pytest.raises(ValueError, match="max_db=0"):
    psnr_ssim.psnr(predictions, truth, max_db=0)


# ---- SSIM ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,amplitude", [((5, 32, 32, 3), 40), ((4, 17, 23, 1), 80), ((3, 11, 11, 3), 255)])
def test_ssim_agrees_with_tf_image_ssim(shape, amplitude):
  x = _frames(shape, seed=shape[1])
  y = _noisy(x, amplitude, seed=shape[2])
  expected = tf.image.ssim(tf.constant(x, tf.float32), tf.constant(y, tf.float32), max_val=255.0).numpy()
  np.testing.assert_allclose(psnr_ssim.frame_ssim(x, y), expected, atol=1e-4)


def test_ssim_agrees_with_scikit_image():
  metrics = pytest.importorskip(
      "skimage.metrics", reason="scikit-image is the optional independent SSIM reference: pip install scikit-image")
  x = _frames((4, 2, 40, 36, 3), seed=3)  # [E, T, H, W, C]
  decodes = np.stack([_noisy(x, 20, seed=4), _noisy(x, 90, seed=5), _frames(x.shape, seed=6)], axis=1)
  scores = psnr_ssim.ssim(decodes, x)  # [E, D, T]
  expected = np.empty(scores.shape)
  for e, d, t in np.ndindex(*scores.shape):
    expected[e, d, t] = metrics.structural_similarity(
        decodes[e, d, t], x[e, t], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        channel_axis=-1)
  np.testing.assert_allclose(scores, expected, atol=1e-4)
  np.testing.assert_allclose(scores, expected, atol=1e-10)  # the same float64 arithmetic, up to summation order
  assert scores[:, 0].min() > scores[:, 1].max() > scores[:, 2].max()  # less noise, more similar


def test_identical_frames_ssim_is_one():
  truth = _frames((2, 3, 16, 16, 3))
  np.testing.assert_allclose(psnr_ssim.ssim(truth[:, None], truth), 1.0, rtol=0, atol=1e-12)
  flat = np.full((1, 12, 12, 1), 77, np.uint8)  # zero variance: the constants C1, C2 keep it defined
  np.testing.assert_allclose(psnr_ssim.frame_ssim(flat, flat), [1.0], atol=1e-12)


def test_gaussian_window_sums_to_one_and_matches_sigma():
  taps = psnr_ssim.gaussian_window()
  assert taps.shape == (11,) and math.isclose(taps.sum(), 1.0)
  np.testing.assert_allclose(taps[6] / taps[5], math.exp(-1 / (2 * 1.5 ** 2)))


def test_large_batches_are_chunked_without_changing_results(monkeypatch):
  x = _frames((7, 16, 16, 3), seed=8)
  y = _noisy(x, 50, seed=9)
  whole_ssim, whole_psnr = psnr_ssim.frame_ssim(x, y), psnr_ssim.frame_psnr(x, y)
  monkeypatch.setattr(psnr_ssim, "_CHUNK_VALUES", 2 * 16 * 16 * 3)  # two frames per chunk
  np.testing.assert_array_equal(psnr_ssim.frame_psnr(x, y), whole_psnr)
  np.testing.assert_allclose(psnr_ssim.frame_ssim(x, y), whole_ssim, atol=1e-14)


def test_bad_shapes_and_dtypes_name_the_expected_shapes():
  truth = _frames((2, 3, 16, 16, 3))
  predictions = np.stack([truth, truth], axis=1)
  for metric in (psnr_ssim.psnr, psnr_ssim.ssim):
    with pytest.raises(ValueError, match=r"\[E, D, T, H, W, C\].*\[E, T, H, W, C\].*\(2, 3, 16, 16, 3\)"):
      metric(truth, truth)  # decode axis missing
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 16, 16, 3\)"):
      metric(predictions[:, :, 1:], truth)  # T differs: conditioning frames left on the ground truth
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 16, 16, 3\)"):
      metric(predictions[:1], truth)  # E differs
    with pytest.raises(ValueError, match="dtype float32.*quantize"):
      metric(predictions.astype(np.float32) / 255, truth)
  with pytest.raises(ValueError, match=r"11x11.*got 8x16"):
    psnr_ssim.ssim(predictions[:, :, :, :8], truth[:, :, :8])
  with pytest.raises(ValueError, match=r"one shape \[\.\.\., H, W, C\].*\(3, 16, 16, 3\).*\(3, 16, 15, 3\)"):
    psnr_ssim.frame_psnr(truth[0], truth[0, :, :, :15])


# ---- aggregation over decodes --------------------------------------------------------------------------

# scores [E=2, D=3, T=2], built so that each decode's mean over frames is easy to read:
#   example 0: decode means 1.5, 3.5, 2.0 -> max decode 1, min decode 0
#   example 1: decode means 5.0, 5.0, 4.0 -> max tie between 0 and 1 (the first wins), min decode 2
# Decode 2 of example 0 has the best single frame (4.0 at t = 0) but not the best mean: a per-frame maximum would
# report 4.0 there; the protocol reports decode 1's curve [3, 4].
_SCORES = np.array([
    [[1.0, 2.0], [3.0, 4.0], [4.0, 0.0]],
    [[6.0, 4.0], [4.0, 6.0], [2.0, 6.0]],
])


def test_mean_best_and_worst_of_n_on_a_known_example():
  selected = aggregate.select_decodes(_SCORES, higher_is_better=True)
  np.testing.assert_array_equal(selected["best_decode"], [1, 0])
  np.testing.assert_array_equal(selected["worst_decode"], [0, 2])
  np.testing.assert_array_equal(selected["best"], [[3.0, 4.0], [6.0, 4.0]])
  np.testing.assert_array_equal(selected["worst"], [[1.0, 2.0], [2.0, 6.0]])
  np.testing.assert_allclose(selected["mean"], [[8 / 3, 2.0], [4.0, 16 / 3]])

  summary = aggregate.over_decodes(_SCORES, higher_is_better=True)
  assert (summary["num_examples"], summary["num_decodes"], summary["num_frames"]) == (2, 3, 2)
  np.testing.assert_allclose(summary["best"]["per_frame"]["mean"], [4.5, 4.0])
  np.testing.assert_allclose(summary["worst"]["per_frame"]["mean"], [1.5, 4.0])
  np.testing.assert_allclose(summary["mean"]["per_frame"]["mean"], [(8 / 3 + 4) / 2, (2 + 16 / 3) / 2])
  assert summary["best"]["decode"] == [1, 0] and summary["worst"]["decode"] == [0, 2]
  # overall: the mean over examples of each example's mean over frames (3.5 and 5.0)
  assert summary["best"]["overall"]["mean"] == 4.25 and summary["best"]["overall"]["n"] == 2
  np.testing.assert_allclose(summary["best"]["overall"]["ci95"], 1.96 * np.std([3.5, 5.0], ddof=1) / math.sqrt(2))
  np.testing.assert_allclose(summary["best"]["per_frame"]["ci95"], [1.96 * np.std([3, 6], ddof=1) / math.sqrt(2), 0])
  json.dumps(summary, allow_nan=False)  # plain Python values only


def test_distances_pick_the_minimum_as_best():
  summary = aggregate.over_decodes(_SCORES, higher_is_better=False)  # as if the scores were LPIPS
  assert summary["best"]["decode"] == [0, 2] and summary["worst"]["decode"] == [1, 0]
  np.testing.assert_allclose(summary["best"]["per_frame"]["mean"], [1.5, 4.0])
  assert summary["higher_is_better"] is False


def test_one_decode_gives_identical_mean_best_and_worst():
  scores = np.random.default_rng(0).random((5, 1, 4))
  summary = aggregate.over_decodes(scores, higher_is_better=True)
  assert summary["mean"] == {k: v for k, v in summary["best"].items() if k != "decode"}
  assert summary["best"]["per_frame"] == summary["worst"]["per_frame"]


def test_mean_ci_on_a_known_sample():
  result = aggregate.mean_ci([1, 2, 3, 4, 5])
  assert result["mean"] == 3.0 and result["n"] == 5
  np.testing.assert_allclose(result["std"], math.sqrt(2.5))  # sum of squared deviations 10, over n - 1 = 4
  np.testing.assert_allclose(result["ci95"], 1.96 * math.sqrt(2.5) / math.sqrt(5))  # 1.3859
  assert aggregate.mean_ci([7.0, 7.0, 7.0])["ci95"] == 0.0
  assert aggregate.mean_ci([2.5]) == {"mean": 2.5, "ci95": None, "std": None, "n": 1}
  assert aggregate.mean_ci([1.0, math.inf]) == {"mean": math.inf, "ci95": None, "std": None, "n": 2}
  with pytest.raises(ValueError, match="NaN at indices \\[1\\]"):
    aggregate.mean_ci([1.0, math.nan])
  with pytest.raises(ValueError, match=r"non-empty 1-D.*\(0,\)"):
    aggregate.mean_ci([])


def test_confidence_interval_covers_the_true_mean_at_about_95_percent():
  rng = np.random.default_rng(0)
  samples = rng.normal(10.0, 2.0, (2000, 200))
  covered = [abs(aggregate.mean_ci(s)["mean"] - 10.0) <= aggregate.mean_ci(s)["ci95"] for s in samples]
  assert 0.93 < np.mean(covered) < 0.97


def test_aggregate_rejects_bad_scores():
  with pytest.raises(ValueError, match=r"\[E, D, T\].*\(2, 3\)"):
    aggregate.over_decodes(np.zeros((2, 3)), higher_is_better=True)
  with pytest.raises(ValueError, match=r"\[E, D, T\].*\(2, 0, 3\)"):
    aggregate.over_decodes(np.zeros((2, 0, 3)), higher_is_better=True)
  with pytest.raises(ValueError, match=r"NaN at \[example, decode, frame\] \[\[1, 2, 0\]\]"):
    scores = np.zeros((2, 3, 2))
    scores[1, 2, 0] = np.nan
    aggregate.over_decodes(scores, higher_is_better=True)
  with pytest.raises(ValueError, match="higher_is_better='max'"):
    aggregate.over_decodes(_SCORES, higher_is_better="max")


def test_psnr_and_ssim_through_the_protocol():
  truth = _frames((3, 2, 16, 16, 3), seed=11)
  decodes = np.stack([_noisy(truth, a, seed=a) for a in (60, 5, 30)], axis=1)  # decode 1 is the closest
  for scores in (psnr_ssim.psnr(decodes, truth), psnr_ssim.ssim(decodes, truth)):
    summary = aggregate.over_decodes(scores, higher_is_better=True)
    assert summary["best"]["decode"] == [1, 1, 1] and summary["worst"]["decode"] == [0, 0, 0]
    json.dumps(summary, allow_nan=False)


# ---- bits per pixel over a split -----------------------------------------------------------------------

class _FakeLikelihoodModel:
  """log_prob_bpp returns `value(video, seed)` [B, T - n] and records the seeds it was given."""

  def __init__(self, value):
    self.value = value
    self.seeds = []

  def log_prob_bpp(self, batch, num_input_frames: int, seed=None):
    self.seeds.append(None if seed is None else tuple(np.asarray(seed).tolist()))
    return self.value(batch["video"][:, num_input_frames:], seed)


def _dataset(num_examples=5, frames=4, batch_size=2, shape=(4, 4, 3)):
  video = _frames((num_examples, frames, *shape), seed=12)
  return tf.data.Dataset.from_tensor_slices({"video": video}).batch(batch_size)


def test_bpp_of_a_uniform_model_is_eight_everywhere():
  model = _FakeLikelihoodModel(lambda video, seed: tf.fill(tf.shape(video)[:2], 8.0))
  result = bpp.split_bits_per_pixel(model, _dataset(), num_input_frames=1, seed=7)
  assert result["per_frame"] == {"mean": [8.0, 8.0, 8.0], "ci95": [0.0, 0.0, 0.0]}
  assert result["overall"] == {"mean": 8.0, "ci95": 0.0, "std": 0.0, "n": 5}
  assert (result["num_examples"], result["num_frames"], result["conditioning_frames"]) == (5, 3, 1)
  assert model.seeds == [(7, 0), (7, 1), (7, 2)]  # batch i draws its noise from (seed, i)
  json.dumps(result, allow_nan=False)


def test_bpp_aggregates_known_values_over_examples_and_frames():
  # 5 examples in batches of 2, 2, 1; example k scores k + t / 10 at predicted frame t.
  counter = iter(range(100))

  def value(video, seed):
    rows = [next(counter) for _ in range(video.shape[0])]
    return np.array([[k + t / 10 for t in range(video.shape[1])] for k in rows])

  result = bpp.split_bits_per_pixel(_FakeLikelihoodModel(value), _dataset(frames=3), num_input_frames=1)
  np.testing.assert_allclose(result["per_frame"]["mean"], [2.0, 2.1])
  np.testing.assert_allclose(result["per_frame"]["ci95"], [1.96 * math.sqrt(2.5) / math.sqrt(5)] * 2)
  np.testing.assert_allclose(result["overall"]["mean"], 2.05)  # the example means 0.05, 1.05, ..., 4.05
  np.testing.assert_allclose(result["overall"]["ci95"], 1.96 * math.sqrt(2.5) / math.sqrt(5))


def test_bpp_of_a_tfp_uniform_density_through_bits_per_pixel_is_exactly_eight():
  tfp = pytest.importorskip("tensorflow_probability", reason="TFP is a t2v dependency; needed for the Uniform")
  from t2v.models.likelihood import bits_per_pixel, dequantize  # pylint: disable=import-outside-toplevel

  class UniformDensityModel:
    """The uniform density on [0, 1)^D of the dequantised frames y = (x + u) / 256: log p(y) = 0."""

    def log_prob_bpp(self, batch, num_input_frames, seed=None):
      y = dequantize(batch["video"][:, num_input_frames:], seed)  # [B, T - n, H, W, C]
      frame_shape = y.shape[2:]
      density = tfp.distributions.Independent(
          tfp.distributions.Uniform(tf.zeros(frame_shape), tf.ones(frame_shape)), len(frame_shape))
      return bits_per_pixel(density.log_prob(y), int(np.prod(frame_shape)))  # [B, T - n]

  result = bpp.split_bits_per_pixel(UniformDensityModel(), _dataset(), num_input_frames=2, seed=3)
  assert result["per_frame"]["mean"] == [8.0, 8.0] and result["overall"]["mean"] == 8.0
  assert f"{result['overall']['mean']:.3f}" == "8.000" and result["overall"]["ci95"] == 0.0


def test_bpp_calls_models_without_a_seed_parameter():
  class NoSeed:  # t2v.models.base.VideoModel's signature
    def log_prob_bpp(self, batch, num_input_frames):
      return tf.ones([tf.shape(batch["video"])[0], tf.shape(batch["video"])[1] - num_input_frames])

  result = bpp.split_bits_per_pixel(NoSeed(), _dataset(), num_input_frames=3)
  assert result["overall"]["mean"] == 1.0 and result["num_frames"] == 1


def test_bpp_rejects_bad_input():
  model = _FakeLikelihoodModel(lambda video, seed: tf.fill(tf.shape(video)[:2], 8.0))
  with pytest.raises(ValueError, match="4-frame videos.*num_input_frames=4"):
    bpp.split_bits_per_pixel(model, _dataset(), num_input_frames=4)
  with pytest.raises(ValueError, match="empty"):
    bpp.split_bits_per_pixel(model, _dataset().take(0), num_input_frames=1)
  with pytest.raises(ValueError, match=r"'video' uint8 \[B, T, H, W, C\], got float32"):
    bpp.split_bits_per_pixel(model, _dataset().map(lambda b: {"video": tf.cast(b["video"], tf.float32)}), 1)
  with pytest.raises(ValueError, match=r"returned shape \(2, 4\).*expected \[B, T - n\] = \[2, 3\]"):
    bpp.split_bits_per_pixel(_FakeLikelihoodModel(lambda video, seed: np.zeros((2, 4))), _dataset(), 1)
  with pytest.raises(ValueError, match="NaN for batch 0"):
    bpp.split_bits_per_pixel(_FakeLikelihoodModel(lambda video, seed: np.full((2, 3), np.nan)), _dataset(), 1)
  with pytest.raises(ValueError, match="num_input_frames=-1"):
    bpp.split_bits_per_pixel(model, _dataset(), -1)
  with pytest.raises(ValueError, match="seed='a'"):
    bpp.split_bits_per_pixel(model, _dataset(), 1, seed="a")


def test_bpp_of_a_real_videoflow_matches_its_own_log_prob_bpp():
  from t2v.models.videoflow import VideoFlow  # pylint: disable=import-outside-toplevel
  from t2v.models.videoflow_hparams import videoflow_tiny  # pylint: disable=import-outside-toplevel
  from t2v.problems.spec import VideoSpec  # pylint: disable=import-outside-toplevel

  tf.random.set_seed(0)
  model = VideoFlow(videoflow_tiny(), VideoSpec((8, 8, 1), 1, 2))
  video = _frames((3, 3, 8, 8, 1), seed=13)
  dataset = tf.data.Dataset.from_tensor_slices({"video": video}).batch(2)
  result = bpp.split_bits_per_pixel(model, dataset, num_input_frames=1, seed=5)
  direct = np.concatenate([  # batch i with the seed pair (5, i)
      model.log_prob_bpp({"video": tf.constant(video[:2])}, 1, seed=tf.constant([5, 0])).numpy(),
      model.log_prob_bpp({"video": tf.constant(video[2:])}, 1, seed=tf.constant([5, 1])).numpy()])  # [3, 2]
  np.testing.assert_allclose(result["per_frame"]["mean"], direct.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(result["overall"]["mean"], direct.mean(), rtol=1e-6)
  assert result["num_examples"] == 3 and np.isfinite(result["overall"]["ci95"])
