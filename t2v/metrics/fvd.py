"""Fréchet Video Distance (Unterthiner et al., "Towards Accurate Generative Models of Video", 2018).

FVD fits a Gaussian to the I3D embeddings of real videos and one to those of generated videos and reports the
Fréchet (2-Wasserstein) distance between them (the FVD paper's equation 2):

    d(P_R, P_G) = |mu_R - mu_G|^2 + Tr(Sigma_R + Sigma_G - 2 (Sigma_R Sigma_G)^(1/2))

The embedding is the one of the reference implementation (google-research/frechet_video_distance): uint8 videos
are resized to 224x224 with TF1's bilinear rule (no half-pixel centres), scaled to [-1, 1], and mapped to the 400
pre-softmax logits of the RGB Kinetics-400 I3D (t2v.metrics.i3d); covariances are unbiased (divided by N - 1).

    score = fvd(real_videos, generated_videos)            # uint8 [N, T, H, W, C], T >= 16, C = 1 or 3

Streaming over a dataset, a few videos at a time (the I3D on 16 frames at 224x224 is heavy on CPU):

    i3d = I3D()
    real = accumulate(dataset_of_real_batches, i3d, batch_size=4)          # FrechetAccumulator
    fake = accumulate(generated_batches, i3d, batch_size=4)
    score = frechet_distance(*real.statistics(), *fake.statistics())

Inputs may be one array, or any iterable (a tf.data.Dataset included) of uint8 batches [B, T, H, W, C], single
videos [T, H, W, C], or dicts holding them under "video" (what t2v.problems datasets yield).

FVD is biased for small N: the FVD paper uses N = 256 real and generated videos of 16 frames; compare scores only
between runs with the same N, T and frame size.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from t2v.metrics.i3d import FRAME_SIZE, I3D

# The FVD paper evaluates 16-frame clips; the I3D itself would accept 9 (t2v.metrics.i3d.MIN_FRAMES), but its
# embeddings of shorter clips are not what FVD was validated with.
MIN_FRAMES = 16
# Videos per I3D call. On 2 CPU cores 4 videos of 16 frames take ~0.9 s and ~0.3 GB of activations on top of the
# ~0.75 GB that TensorFlow and the weights hold; larger batches gain little on CPU.
DEFAULT_BATCH_SIZE = 4
# Covariances with an eigenvalue below -NEGATIVE_EIGENVALUE_TOLERANCE * (largest |eigenvalue|) are refused as not
# positive semi-definite; smaller negative ones are round-off and are set to 0.
NEGATIVE_EIGENVALUE_TOLERANCE = 1e-6
SYMMETRY_TOLERANCE = 1e-6  # relative asymmetry above which a "covariance" is refused


# ---- preprocessing ---------------------------------------------------------------------------------------


def preprocess(videos: Any, frame_size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE)) -> tf.Tensor:
  """The FVD reference's preprocessing: uint8 [N, T, H, W, C] -> float32 [N, T, 224, 224, 3] in [-1, 1].

  Frames are resized with TF1's `resize_bilinear(align_corners=False)`, which has no half-pixel centres: output
  pixel i samples the input at i * in_size / out_size (not (i + 0.5) * in_size / out_size - 0.5) and the last
  input row/column is repeated beyond the edge. Then x -> 2 x / 255 - 1. Grey videos (C = 1) are repeated to RGB.

  Args:
    videos: uint8 [N, T, H, W, C] with T >= 16 and C = 1 or 3.
    frame_size: (height, width) of the output; the I3D needs the default 224x224.

  Raises:
    ValueError: the dtype is not uint8, the shape is not [N, T, H, W, 1 or 3], or T < 16 (each naming the value).
  """
  videos = tf.convert_to_tensor(videos)
  if videos.dtype != tf.uint8:
    raise ValueError(f"FVD expects uint8 videos, got dtype {videos.dtype.name}; convert floats in [0, 1] with "
                     f"np.clip(np.round(x * 255), 0, 255).astype(np.uint8)")
  shape = videos.shape
  if shape.rank != 5 or shape[-1] not in (1, 3):
    raise ValueError(f"FVD expects videos [N, T, H, W, C] with C = 1 (grey) or 3 (RGB), got shape {shape}; add a "
                     f"batch axis for a single video")
  if shape[1] is not None and shape[1] < MIN_FRAMES:
    raise ValueError(f"FVD needs videos of at least {MIN_FRAMES} frames (the FVD paper's clip length; the I3D "
                     f"pools time by 8), got T={shape[1]}; evaluate longer clips, e.g. context plus predicted frames")
  height, width = (int(s) for s in frame_size)
  if height < 1 or width < 1:
    raise ValueError(f"frame_size={frame_size} must be two positive sizes, e.g. (224, 224)")
  dims = tf.shape(videos)
  frames = tf.reshape(videos, tf.concat([[-1], dims[2:]], axis=0))  # [N * T, H, W, C]
  frames = tf.raw_ops.ResizeBilinear(images=frames, size=[height, width], align_corners=False,
                                     half_pixel_centers=False)  # float32 [N * T, 224, 224, C], not rounded
  if shape[-1] == 1:
    frames = tf.repeat(frames, 3, axis=-1)  # grey -> RGB
  frames = tf.reshape(frames, tf.stack([dims[0], dims[1], height, width, 3]))  # [N, T, 224, 224, 3]
  return 2.0 * frames / 255.0 - 1.0


# ---- streaming mean and covariance -----------------------------------------------------------------------


class FrechetAccumulator:
  """Running mean and covariance of embeddings, in float64, over any number of batches.

  Batches are combined exactly with the pairwise update of Chan, Golub & LeVeque (1979): for a set A of n_A rows
  with mean m_A and scatter S_A = sum (x - m_A)(x - m_A)^T and a batch B, with delta = m_B - m_A,

      n = n_A + n_B,   m = m_A + delta n_B / n,   S = S_A + S_B + delta delta^T n_A n_B / n,

  which avoids the cancellation of accumulating sum x and sum x x^T. The covariance is S / (n - 1), as in the FVD
  reference (TF-GAN's frechet_classifier_distance).

  Args:
    dim: the embedding size; None takes it from the first batch.
  """

  def __init__(self, dim: int | None = None):
    if dim is not None and (not isinstance(dim, (int, np.integer)) or dim < 1):
      raise ValueError(f"dim={dim!r} must be a positive int (400 for I3D logits) or None to infer it")
    self.dim = None if dim is None else int(dim)
    self._count = 0
    self._mean = None if dim is None else np.zeros([self.dim], np.float64)
    self._scatter = None if dim is None else np.zeros([self.dim, self.dim], np.float64)

  @property
  def count(self) -> int:
    """The number of embeddings seen."""
    return self._count

  def update(self, embeddings: Any) -> None:
    """Adds a batch of embeddings [B, D] (any float dtype; accumulated in float64). B = 0 is a no-op."""
    batch = np.asarray(embeddings, dtype=np.float64)
    if batch.ndim != 2 or (self.dim is not None and batch.shape[1] != self.dim):
      raise ValueError(f"embeddings must be [B, {self.dim if self.dim is not None else 'D'}], got shape "
                       f"{batch.shape}")
    if not np.all(np.isfinite(batch)):
      raise ValueError("embeddings contain NaN or inf; check the videos and the network that embedded them")
    if batch.shape[0] == 0:
      return
    batch_mean = batch.mean(axis=0)  # [D]
    centred = batch - batch_mean  # [B, D]
    self._combine(batch.shape[0], batch_mean, centred.T @ centred)

  def merge(self, other: FrechetAccumulator) -> None:
    """Adds everything `other` has seen (e.g. statistics gathered on another worker)."""
    if not isinstance(other, FrechetAccumulator):
      raise TypeError(f"can only merge a FrechetAccumulator, got {type(other).__name__}")
    if other.count:
      if self.dim is not None and other.dim != self.dim:
        raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}")
      self._combine(other._count, other._mean, other._scatter)

  def _combine(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
    """The pairwise update (class docstring) with a set of `count` rows, `mean` [D] and `scatter` [D, D]."""
    if self._count == 0:
      self.dim = mean.shape[0]
      self._count, self._mean, self._scatter = count, mean.copy(), scatter.copy()
      return
    total = self._count + count
    delta = mean - self._mean  # [D]
    self._mean = self._mean + delta * (count / total)
    self._scatter = self._scatter + scatter + np.outer(delta, delta) * (self._count * count / total)
    self._count = total

  @property
  def mean(self) -> np.ndarray:
    """The mean embedding, float64 [D] (a copy)."""
    if self._count == 0:
      raise ValueError("no embeddings yet; call update() with at least one batch first")
    return self._mean.copy()

  @property
  def covariance(self) -> np.ndarray:
    """The unbiased covariance (divided by N - 1), float64 [D, D] (a copy)."""
    if self._count < 2:
      raise ValueError(f"a covariance needs at least 2 embeddings, got {self._count}; evaluate more videos")
    return self._scatter / (self._count - 1)

  def statistics(self) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) in float64, ready for `frechet_distance`."""
    return self.mean, self.covariance

  def distance(self, other: FrechetAccumulator) -> float:
    """The Fréchet distance between the Gaussians of this accumulator and `other`."""
    return frechet_distance(*self.statistics(), *other.statistics())


# ---- the distance ----------------------------------------------------------------------------------------


def _psd_sqrt(matrix: np.ndarray, name: str) -> tf.Tensor:
  """The symmetric PSD square root V diag(sqrt(lambda)) V^T of a symmetric PSD matrix, float64, via eigh.

  TensorFlow's eigensolver (Eigen) is used rather than NumPy's LAPACK: it stays fast when the CPU is shared, where
  multi-threaded OpenBLAS eigh of a 400x400 matrix was seen to take seconds instead of milliseconds.
  """
  eigenvalues, eigenvectors = tf.linalg.eigh(tf.constant(matrix, tf.float64))  # ascending
  scale = max(float(tf.reduce_max(tf.abs(eigenvalues))), np.finfo(np.float64).tiny)
  smallest = float(eigenvalues[0])
  if smallest < -NEGATIVE_EIGENVALUE_TOLERANCE * scale:
    raise ValueError(f"{name} is not positive semi-definite: eigenvalue {smallest:.3g} (largest |eigenvalue| "
                     f"{scale:.3g}); pass a covariance matrix")
  return tf.matmul(eigenvectors * tf.sqrt(tf.maximum(eigenvalues, 0.0)), eigenvectors, transpose_b=True)


def _check_gaussian(mu: Any, cov: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Float64 copies of a mean [D] and a symmetric covariance [D, D], checked."""
  mu = np.asarray(mu, dtype=np.float64)
  cov = np.asarray(cov, dtype=np.float64)
  if mu.ndim != 1 or cov.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(f"{name}: mean must be [D] and covariance [D, D], got shapes {mu.shape} and {cov.shape}")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
    raise ValueError(f"{name}: mean or covariance contains NaN or inf")
  asymmetry = float(np.max(np.abs(cov - cov.T), initial=0.0))
  if asymmetry > SYMMETRY_TOLERANCE * max(float(np.max(np.abs(cov), initial=0.0)), np.finfo(np.float64).tiny):
    raise ValueError(f"{name}: covariance is not symmetric (max |cov - cov^T| = {asymmetry:.3g}); pass a "
                     f"covariance matrix, e.g. FrechetAccumulator.covariance")
  return mu, (cov + cov.T) / 2


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
  """The Fréchet distance |mu1 - mu2|^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) between two Gaussians, in float64.

  Tr (cov1 cov2)^(1/2) is computed as Tr (s1 cov2 s1)^(1/2), s1 = cov1^(1/2) (symmetric PSD, so the square root is
  well defined; TF-GAN's trace_sqrt_product does the same), and that trace as the sum of the singular values of
  s1 s2 with s2 = cov2^(1/2): (s1 s2)(s1 s2)^T = s1 cov2 s1, so its singular values are the square roots of the
  eigenvalues of s1 cov2 s1. Taking singular values of s1 s2 rather than eigenvalues of s1 cov2 s1 avoids squaring
  the condition number, so rank-deficient covariances (fewer videos than 400 dimensions) lose no precision.
  Both square roots come from eigendecompositions. All in float64.

  Args:
    mu1, mu2: means [D].
    cov1, cov2: covariances [D, D], symmetric positive semi-definite.

  Returns:
    The distance as a Python float. Round-off can make it slightly negative (about -1e-13 x the traces) when
    the Gaussians are identical.

  Raises:
    ValueError: shapes disagree, values are not finite, or a covariance is not symmetric PSD (naming which).
  """
  mu1, cov1 = _check_gaussian(mu1, cov1, "first Gaussian")
  mu2, cov2 = _check_gaussian(mu2, cov2, "second Gaussian")
  if mu1.shape != mu2.shape:
    raise ValueError(f"the Gaussians have different dimensions, {mu1.shape[0]} and {mu2.shape[0]}; embed both "
                     f"sets with the same network")
  sqrt1 = _psd_sqrt(cov1, "first covariance")
  sqrt2 = _psd_sqrt(cov2, "second covariance")
  trace_sqrt_product = float(tf.reduce_sum(tf.linalg.svd(tf.matmul(sqrt1, sqrt2), compute_uv=False)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product)


# ---- embedding videos ------------------------------------------------------------------------------------


def _as_video_batch(element: Any) -> np.ndarray:
  """One element of a video source as uint8 [B, T, H, W, C]: a batch, a single video, or {"video": either}."""
  if isinstance(element, Mapping):
    if "video" not in element:
      raise ValueError(f"a dict element must hold its videos under 'video', got keys {sorted(element)}")
    element = element["video"]
  array = np.asarray(element)
  if array.ndim == 4:
    array = array[None]  # a single video [T, H, W, C] -> [1, T, H, W, C]
  if array.ndim != 5:
    raise ValueError(f"expected uint8 videos [B, T, H, W, C] or one video [T, H, W, C], got shape {array.shape}")
  return array


def video_batches(videos: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
  """Re-batches `videos` into arrays of exactly `batch_size` videos (the last may be smaller).

  Args:
    videos: an array [N, T, H, W, C], or an iterable (tf.data.Dataset included) of batches [B, T, H, W, C],
      single videos [T, H, W, C], or dicts holding either under "video".
    batch_size: videos per batch.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} must be a positive int (2 to 8 videos suits a CPU)")
  source: Iterable[Any] = [videos] if isinstance(videos, (np.ndarray, tf.Tensor, Mapping)) else videos
  pending: list[np.ndarray] = []
  pending_count = 0
  video_shape = None
  for element in source:
    batch = _as_video_batch(element)
    if video_shape is None:
      video_shape = batch.shape[1:]
    elif batch.shape[1:] != video_shape:
      raise ValueError(f"all videos of a set must have one shape [T, H, W, C]; got {batch.shape[1:]} after "
                       f"{video_shape}; crop or resize them to a common shape first")
    pending.append(batch)
    pending_count += batch.shape[0]
    while pending_count >= batch_size:
      joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
      yield joined[:batch_size]
      rest = joined[batch_size:]
      pending, pending_count = ([rest] if len(rest) else []), len(rest)
  if pending_count:
    yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def iter_embeddings(videos: Any, i3d: I3D, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
  """I3D embeddings, float64 [B, 400], of `videos` (as in `video_batches`), `batch_size` videos at a time."""
  for batch in video_batches(videos, batch_size):
    frames = preprocess(batch)  # float32 [B, T, 224, 224, 3]
    yield np.asarray(i3d.features(frames), dtype=np.float64)


def embed(videos: Any, i3d: I3D, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
  """All I3D embeddings of `videos` (as in `video_batches`): float64 [N, 400]."""
  embeddings = list(iter_embeddings(videos, i3d, batch_size))
  if not embeddings:
    raise ValueError("no videos to embed: the video source is empty")
  return np.concatenate(embeddings)


def accumulate(videos: Any, i3d: I3D, batch_size: int = DEFAULT_BATCH_SIZE,
               accumulator: FrechetAccumulator | None = None) -> FrechetAccumulator:
  """Streams `videos` (as in `video_batches`) through the I3D into `accumulator` (a new one if None)."""
  accumulator = FrechetAccumulator() if accumulator is None else accumulator
  for embeddings in iter_embeddings(videos, i3d, batch_size):
    accumulator.update(embeddings)
  return accumulator


def fvd(real_videos: Any, generated_videos: Any, i3d: I3D | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE) -> float:
  """The Fréchet Video Distance between two sets of uint8 videos [N, T, H, W, C] (T >= 16, C = 1 or 3).

  Args:
    real_videos, generated_videos: arrays or iterables of batches, as in `video_batches`; at least 2 videos each.
    i3d: the embedding network; None loads `I3D()` (reuse one across calls: loading takes a moment).
    batch_size: videos per I3D call.

  Returns:
    FVD as a float (lower is better; 0 for identical sets).
  """
  i3d = I3D() if i3d is None else i3d
  real = accumulate(real_videos, i3d, batch_size)
  generated = accumulate(generated_videos, i3d, batch_size)
  for name, accumulator in (("real_videos", real), ("generated_videos", generated)):
    if accumulator.count < 2:
      raise ValueError(f"{name} holds {accumulator.count} video(s); FVD needs at least 2 per set (the FVD paper "
                       f"uses 256)")
  return real.distance(generated)
