"""Per-frame PSNR and SSIM of 8-bit video predictions against the ground truth.

    scores = psnr(predictions, ground_truth)   # uint8 [E, D, T, H, W, C] vs uint8 [E, T, H, W, C] -> float64 [E, D, T]
    scores = ssim(predictions, ground_truth)   # the same shapes
    t2v.metrics.aggregate.over_decodes(scores, higher_is_better=True)   # mean / best / worst of the D decodes

E is the number of examples (videos of the split), D the number of decodes (samples) of each, T the number of
predicted frames: slice the conditioning frames off both before calling (`ground_truth[:, n:]`). `frame_psnr` and
`frame_ssim` score frames of equal shapes [..., H, W, C] one to one.

Both are computed with numpy in float64 on the CPU, the data range being MAX_VALUE = 255:

  PSNR = 10 log10(255^2 / MSE), the MSE taken over the H*W*C sub-pixels of a frame (exact: the squared errors are
  summed as integers). Identical frames have MSE 0 and an infinite PSNR. By default every PSNR is capped at
  PSNR_CAP_DB = 100 dB (`max_db=None` reports inf instead): a single inf makes every mean over frames or videos
  inf and hides all other values, while a cap keeps the order (an identical frame still scores at least as high as
  any other) and keeps the JSON strict. 100 dB is above every finite PSNR of frames of at most
  10^10 / 255^2 = 153,787 sub-pixels (a one-grey-level error in one sub-pixel of a 128x128x3 frame scores 95 dB),
  so up to that size the cap changes only identical frames; larger frames with a tiny error are capped too.

  SSIM is Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity", eq. 13)
  with their settings: an 11x11 Gaussian window of sigma 1.5 (normalised to sum 1), C1 = (K1 L)^2 and
  C2 = (K2 L)^2 with K1 = 0.01, K2 = 0.03, L = 255, population (not sample) variances, the SSIM map averaged over
  the window positions that lie wholly inside the frame ("valid"), per channel, then averaged over channels. These
  are tf.image.ssim's defaults and scikit-image's
  `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`
  (scikit-image filters the whole frame and then crops the 5-pixel border, which keeps exactly the valid
  positions); tf.image.ssim (float32) agrees with this to about 1e-6 and scikit-image to about 1e-12
  (tests/test_frame_metrics.py). Frames must be at least 11x11.

Why numpy float64 rather than TF: the metrics are references other numbers are compared with, so they are
computed alike on every machine (to about 1e-12) and without float32 cancellation in the variances
(E[x^2] - E[x]^2 with x up to 255). Speed: the separable filtering is two BLAS matrix products per chunk of frames;
SSIM costs about 0.7 ms per 64x64x3 frame on one CPU core (PSNR 0.01 ms), so 256 videos x 100 decodes x 10 frames
take about 3 minutes, less with a multi-threaded BLAS.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MAX_VALUE = 255  # the data range L of 8-bit frames
PSNR_CAP_DB = 100.0  # PSNR of identical frames (and anything above it) unless max_db=None; see the module docstring

# Wang et al. 2004, section III: the Gaussian window and the stabilising constants.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Frames are processed in chunks of at most this many float64 values per intermediate array (8 MiB each), so that
# memory stays bounded however many examples, decodes and frames are scored.
_CHUNK_VALUES = 1 << 20

_PREDICTIONS_SHAPE = "uint8 [E, D, T, H, W, C] (examples, decodes, frames, height, width, channels)"
_TRUTH_SHAPE = "uint8 [E, T, H, W, C]"


def psnr(predictions, ground_truth, max_db: float | None = PSNR_CAP_DB) -> np.ndarray:
  """PSNR in dB of every decode's every frame: predictions [E, D, T, H, W, C] vs ground_truth [E, T, H, W, C]
  (both uint8) -> float64 [E, D, T]. `max_db` caps the values (None: identical frames give inf)."""
  predictions, ground_truth = _check_decodes(predictions, ground_truth)
  return _over_examples(lambda x, y: frame_psnr(x, y, max_db), predictions, ground_truth)


def ssim(predictions, ground_truth) -> np.ndarray:
  """SSIM of every decode's every frame: predictions [E, D, T, H, W, C] vs ground_truth [E, T, H, W, C] (both
  uint8, H and W >= 11) -> float64 [E, D, T] in [-1, 1]."""
  predictions, ground_truth = _check_decodes(predictions, ground_truth)
  return _over_examples(frame_ssim, predictions, ground_truth)


def frame_psnr(x, y, max_db: float | None = PSNR_CAP_DB) -> np.ndarray:
  """PSNR in dB of uint8 frames x and y of one shape [..., H, W, C] -> float64 [...], capped at `max_db`."""
  x, y = _check_frames(x, y)
  if max_db is not None and not max_db > 0:
    raise ValueError(f"max_db={max_db} must be a positive number of dB, or None to report identical frames as inf")
  lead, frame = x.shape[:-3], x.shape[-3:]
  num_values = int(np.prod(frame))
  x = x.reshape(-1, num_values)
  y = y.reshape(-1, num_values)
  squared_error = np.empty(len(x), np.int64)
  step = max(1, _CHUNK_VALUES // num_values)
  for start in range(0, len(x), step):
    diff = x[start:start + step].astype(np.int32) - y[start:start + step].astype(np.int32)
    squared_error[start:start + step] = np.sum(diff * diff, axis=1, dtype=np.int64)  # exact
  mse = squared_error / num_values
  with np.errstate(divide="ignore"):
    scores = 10.0 * np.log10(float(MAX_VALUE) ** 2 / mse)  # inf where mse == 0
  if max_db is not None:
    scores = np.minimum(scores, max_db)
  return scores.reshape(lead)


def frame_ssim(x, y) -> np.ndarray:
  """SSIM of uint8 frames x and y of one shape [..., H, W, C] (H, W >= 11) -> float64 [...]."""
  x, y = _check_frames(x, y)
  height, width = x.shape[-3:-1]
  if height < SSIM_WINDOW or width < SSIM_WINDOW:
    raise ValueError(f"SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window needs frames of at least "
                     f"{SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {height}x{width} (frames of shape {x.shape[-3:]}); "
                     "score larger frames or use PSNR")
  lead, frame = x.shape[:-3], x.shape[-3:]
  x = x.reshape(-1, *frame)
  y = y.reshape(-1, *frame)
  scores = np.empty(len(x), np.float64)
  step = max(1, _CHUNK_VALUES // int(np.prod(frame)))
  for start in range(0, len(x), step):
    scores[start:start + step] = _ssim_chunk(x[start:start + step], y[start:start + step])
  return scores.reshape(lead)


# ---- SSIM ----------------------------------------------------------------------------------------------

def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """The 1-D Gaussian taps [size], summing to 1; the 2-D window is their outer product."""
  offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
  taps = np.exp(-offsets ** 2 / (2 * sigma ** 2))
  return taps / taps.sum()


def _window_matrix(size: int, taps: np.ndarray) -> np.ndarray:
  """The valid correlation with `taps` along an axis of `size` as a banded matrix [size - k + 1, size]."""
  num_taps = len(taps)
  matrix = np.zeros((size - num_taps + 1, size), np.float64)
  for i in range(size - num_taps + 1):
    matrix[i, i:i + num_taps] = taps
  return matrix


def _ssim_chunk(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """SSIM of uint8 frames [N, H, W, C] -> [N]: the mean SSIM map per channel, then the mean over channels.

  The separable Gaussian filtering is two matrix products with banded matrices (rows @ image @ cols^T), which
  numpy hands to BLAS: several times faster than shifting and adding the taps.
  """
  taps = gaussian_window()
  c1 = (SSIM_K1 * MAX_VALUE) ** 2
  c2 = (SSIM_K2 * MAX_VALUE) ** 2
  height, width = x.shape[1:3]
  rows = _window_matrix(height, taps)  # [H', H]
  cols_t = _window_matrix(width, taps).T  # [W, W']
  x = np.moveaxis(x, -1, 1).astype(np.float64)  # [N, C, H, W]
  y = np.moveaxis(y, -1, 1).astype(np.float64)
  moments = rows @ np.stack([x, y, x * x, y * y, x * y]) @ cols_t  # [5, N, C, H', W']: local weighted means
  mu_x, mu_y, mean_xx, mean_yy, mean_xy = moments
  var_x = mean_xx - mu_x * mu_x
  var_y = mean_yy - mu_y * mu_y
  cov_xy = mean_xy - mu_x * mu_y
  luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
  contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
  ssim_map = luminance * contrast_structure  # [N, C, H', W']
  return ssim_map.mean(axis=(2, 3)).mean(axis=1)


# ---- shapes --------------------------------------------------------------------------------------------

def _as_uint8(name: str, value, expected: str) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype != np.uint8:
    raise ValueError(f"{name} must be {expected}, got dtype {array.dtype} of shape {array.shape}; convert floats "
                     "in [0, 1] with t2v.models.likelihood.quantize or np.clip(np.round(255 * x), 0, 255)"
                     ".astype(np.uint8)")
  return array


def _check_decodes(predictions, ground_truth) -> tuple[np.ndarray, np.ndarray]:
  predictions = _as_uint8("predictions", predictions, _PREDICTIONS_SHAPE)
  ground_truth = _as_uint8("ground_truth", ground_truth, _TRUTH_SHAPE)
  if (predictions.ndim != 6 or ground_truth.ndim != 5 or predictions.shape[0] != ground_truth.shape[0]
      or predictions.shape[2:] != ground_truth.shape[1:]):
    raise ValueError(f"predictions must be {_PREDICTIONS_SHAPE} and ground_truth {_TRUTH_SHAPE} with the same E, T, "
                     f"H, W, C; got predictions {predictions.shape} and ground_truth {ground_truth.shape}. Give "
                     "one decode as predictions[:, None], and slice the conditioning frames off the ground truth "
                     "(ground_truth[:, n:]) so that both hold the predicted frames only")
  return predictions, ground_truth


def _check_frames(x, y) -> tuple[np.ndarray, np.ndarray]:
  x = _as_uint8("x", x, "uint8 [..., H, W, C]")
  y = _as_uint8("y", y, "uint8 [..., H, W, C]")
  if x.shape != y.shape or x.ndim < 3 or 0 in x.shape[-3:]:
    raise ValueError(f"x and y must be uint8 frames of one shape [..., H, W, C], got {x.shape} and {y.shape}; for "
                     "decodes [E, D, T, H, W, C] against ground truth [E, T, H, W, C] use psnr / ssim")
  return x, y


def _over_examples(score: Callable[[np.ndarray, np.ndarray], np.ndarray], predictions: np.ndarray,
                   ground_truth: np.ndarray) -> np.ndarray:
  """score(frames, frames) -> [...] applied to each example's decodes against its ground truth: [E, D, T]."""
  num_examples, num_decodes, num_frames = predictions.shape[:3]
  scores = np.empty((num_examples, num_decodes, num_frames), np.float64)
  for e in range(num_examples):
    truth = np.broadcast_to(ground_truth[e], predictions.shape[1:])  # [D, T, H, W, C], a view
    scores[e] = score(predictions[e], np.ascontiguousarray(truth))
  return scores
