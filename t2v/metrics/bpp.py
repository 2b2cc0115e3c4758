"""Bits per pixel of a likelihood model over a split: the metric of VideoFlow's Table 1.

    result = split_bits_per_pixel(model, dataset, num_input_frames=3, seed=0)
    result["overall"]      # {"mean": 1.87, "ci95": 0.02, "std": 0.17, "n": 256}: bits per sub-pixel
    result["per_frame"]    # {"mean": [T - n], "ci95": [T - n]}: how the cost grows along the predicted frames

`dataset` yields {"video": uint8 [B, T, H, W, C], ...} (other features are passed on to the model untouched).
Each batch is scored by `model.log_prob_bpp(batch, num_input_frames, seed=...)`, which returns float [B, T - n]:
the bits per sub-pixel of every frame after the first n given those (t2v.models.likelihood.bits_per_pixel of the
model's log-density of the dequantised frames). The dequantisation noise of batch i is drawn from the stateless
seed pair (seed, i), so the result is reproducible for a given seed and dataset order, and batches get
independent noise. Models whose `log_prob_bpp` takes no `seed` (t2v.models.base.VideoModel's signature) are called
without one.

Averaging: per frame over examples, and overall as the mean over examples of each example's mean over its T - n
frames (equal to the mean of all values, as every example has T - n frames); the 95% intervals are the normal
approximation of t2v.metrics.aggregate.mean_ci over the examples, the independent units.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import tensorflow as tf

from t2v.metrics.aggregate import INTERVAL, mean_ci, summarize_curves


def split_bits_per_pixel(model, dataset: tf.data.Dataset, num_input_frames: int, seed: int = 0) -> dict[str, Any]:
  """Bits per pixel of every example of `dataset` after its first `num_input_frames` frames.

  Returns a plain dict ready for JSON:
    {"per_frame": {"mean": [T - n], "ci95": [T - n]}, "overall": {"mean", "ci95", "std", "n"},
     "num_examples": N, "num_frames": T - n, "conditioning_frames": n, "seed": seed, "interval": INTERVAL}
  """
  if isinstance(num_input_frames, bool) or not isinstance(num_input_frames, (int, np.integer)) \
      or num_input_frames < 0:
    raise ValueError(f"num_input_frames={num_input_frames!r} must be an int >= 0: the number of given frames")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed={seed!r} must be an int; batch i is scored with the seed pair (seed, i)")
  score = model.log_prob_bpp
  takes_seed = _accepts_seed(score)
  values = []  # [B, T - n] per batch
  for index, batch in enumerate(dataset):
    video = batch["video"] if isinstance(batch, dict) and "video" in batch else None
    if video is None or video.dtype != tf.uint8 or video.shape.rank != 5:
      got = "no 'video'" if video is None else f"{video.dtype.name} {video.shape}"
      raise ValueError(f"batch {index} must be a dict with 'video' uint8 [B, T, H, W, C], got {got}")
    num_frames = int(video.shape[1])
    if num_frames <= num_input_frames:
      raise ValueError(f"batch {index} has {num_frames}-frame videos: nothing to score after num_input_frames="
                       f"{num_input_frames}; read clips of more than {num_input_frames} frames")
    if takes_seed:
      bpp = score(batch, num_input_frames, seed=tf.constant([seed, index], tf.int64))
    else:
      bpp = score(batch, num_input_frames)
    bpp = np.asarray(bpp, dtype=np.float64)
    expected = (int(video.shape[0]), num_frames - num_input_frames)
    if bpp.shape != expected:
      raise ValueError(f"model.log_prob_bpp returned shape {bpp.shape} for batch {index} of video {video.shape}; "
                       f"expected [B, T - n] = {list(expected)}")
    if values and bpp.shape[1] != values[0].shape[1]:
      raise ValueError(f"batch {index} scores {bpp.shape[1]} frames but batch 0 scored {values[0].shape[1]}: every "
                       "batch of the split must hold clips of one length")
    if np.isnan(bpp).any():
      raise ValueError(f"model.log_prob_bpp returned NaN for batch {index} (examples "
                       f"{np.flatnonzero(np.isnan(bpp).any(axis=1)).tolist()} of it): the model's density is "
                       "not finite on this data; check the checkpoint for divergence")
    values.append(bpp)
  if not values:
    raise ValueError("dataset is empty: no example to score")
  per_example = np.concatenate(values)  # [N, T - n]
  summary = summarize_curves(per_example)
  return {
      "per_frame": summary["per_frame"], "overall": summary["overall"],
      "num_examples": int(per_example.shape[0]), "num_frames": int(per_example.shape[1]),
      "conditioning_frames": int(num_input_frames), "seed": int(seed), "interval": INTERVAL,
  }


def _accepts_seed(method) -> bool:
  """Whether `method` takes a `seed` keyword (by name, or through **kwargs)."""
  try:
    parameters = inspect.signature(method).parameters.values()
  except (TypeError, ValueError):  # a callable without a signature: try the documented contract
    return True
  return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
