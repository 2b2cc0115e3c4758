"""Mean, best and worst of N decodes, averaged over a split with 95% confidence intervals.

The protocol of VideoFlow (Kumar et al. 2020, Figure 4), SVG (Denton & Fergus 2018), SAVP (Lee et al. 2018) and
SRVP (Franceschi et al. 2020) for a stochastic model scored against one ground truth: draw D decodes of every
example, score every predicted frame (PSNR, SSIM, LPIPS, ...; scores [E, D, T]), and per example keep

  mean    the mean over the D decodes, frame by frame;
  best    the decode whose mean over the T frames is best (max when higher_is_better, else min), with its own
          per-frame curve;
  worst   likewise the decode whose mean over frames is worst.

Best and worst pick one whole decode per video, not the best decode of each frame separately: a per-frame maximum
would splice frames of different futures into a video no decode shows, and it rewards sheer variety more. This is
what the reference code does: Tensor2Tensor's `video_metrics.reduce_to_best_decode` (VideoFlow's evaluation)
takes np.argmax / np.argmin over decodes of the mean across frames; SAVP's `eval_outputs_and_metrics_fn` keeps,
per video, the sample whose `reduce_mean` over time is larger / smaller than the best so far; SVG's
generate script sorts samples by their mean SSIM over time; SRVP's test.py keeps the sample with the best metric
averaged over frames. Ties go to the first decode (numpy's argmax, like T2T; SAVP's strict comparison also keeps
the earliest).

Each (mean, best, worst) curve [E, T] is then averaged over the E examples frame by frame, and overall as the mean
over examples of each example's mean over frames (the same number as the mean of the per-frame curve). Intervals
are the normal approximation mean +- 1.96 s / sqrt(E), s being the sample standard deviation (ddof=1) over
examples: examples are the independent units, the frames of one video are not. (SRVP prints the same interval with
ddof=0, a factor sqrt((E - 1) / E) narrower.) An interval needs E >= 2 finite values; otherwise it is None.

    summary = over_decodes(ssim_scores, higher_is_better=True)    # scores [E, D, T] -> plain dict for JSON
    summary["best"]["overall"]            # {"mean": 0.91, "ci95": 0.004, "std": 0.03, "n": 256}
    summary["best"]["per_frame"]["mean"]  # [T] floats, one per predicted frame
    mean_ci([1, 2, 3, 4, 5])              # {"mean": 3.0, "ci95": 1.386, "std": 1.581, "n": 5}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z_95 = 1.96  # two-sided 95% quantile of the standard normal, rounded as in the papers' tables

INTERVAL = "95% normal approximation: mean +- 1.96 * s / sqrt(n), s the sample standard deviation (ddof=1)"
SELECTION = ("per example, best / worst is the one decode whose mean over frames is best / worst (ties: the first "
             "decode), reported with its per-frame curve; mean is the mean over decodes frame by frame")


def mean_ci(values) -> dict[str, Any]:
  """Mean of a 1-D sample with its 95% interval half-width: {"mean", "ci95", "std", "n"} (plain Python numbers).

  ci95 = 1.96 * std / sqrt(n) with the sample standard deviation (ddof=1). std and ci95 are None when they are
  undefined: n < 2, or an infinite value (the mean is then +-inf). NaN values are rejected.
  """
  array = np.asarray(values, dtype=np.float64)
  if array.ndim != 1 or array.size == 0:
    raise ValueError(f"values must be a non-empty 1-D sample, got shape {array.shape}; flatten it or average the "
                     "other axes first")
  if np.isnan(array).any():
    raise ValueError(f"values contain NaN at indices {np.flatnonzero(np.isnan(array))[:10].tolist()}: a mean and "
                     "interval of them would be NaN; drop or fix those values first")
  n = int(array.size)
  mean = float(array.mean())
  if n < 2 or not np.isfinite(array).all():
    return {"mean": mean, "ci95": None, "std": None, "n": n}
  std = float(array.std(ddof=1))
  return {"mean": mean, "ci95": Z_95 * std / math.sqrt(n), "std": std, "n": n}


def select_decodes(scores, higher_is_better: bool) -> dict[str, np.ndarray]:
  """Per example: mean over decodes, best and worst decode, as arrays.

  scores: float [E, D, T]. Returns {"mean": [E, T], "best": [E, T], "worst": [E, T], "best_decode": int [E],
  "worst_decode": int [E]}; best / worst are whole decodes chosen by their mean over the T frames.
  """
  scores = _check_scores(scores)
  per_decode = scores.mean(axis=2)  # [E, D]: each decode's mean over frames
  if higher_is_better:
    best, worst = per_decode.argmax(axis=1), per_decode.argmin(axis=1)
  else:
    best, worst = per_decode.argmin(axis=1), per_decode.argmax(axis=1)
  examples = np.arange(scores.shape[0])
  return {
      "mean": scores.mean(axis=1),
      "best": scores[examples, best],  # [E, T]
      "worst": scores[examples, worst],
      "best_decode": best,
      "worst_decode": worst,
  }


def over_decodes(scores, higher_is_better: bool) -> dict[str, Any]:
  """The protocol of the module docstring on per-frame scores [E, D, T]; returns a plain dict ready for JSON:

    {"num_examples": E, "num_decodes": D, "num_frames": T, "higher_is_better": bool,
     "selection": SELECTION, "interval": INTERVAL,
     "mean":  {"per_frame": {"mean": [T], "ci95": [T]}, "overall": mean_ci(...)},
     "best":  {... the same ..., "decode": [E] the index of each example's best decode},
     "worst": {... the same ..., "decode": [E]}}

  `higher_is_better`: True for PSNR and SSIM (best = max), False for distances such as LPIPS or MSE (best = min).
  """
  if not isinstance(higher_is_better, (bool, np.bool_)):
    raise ValueError(f"higher_is_better={higher_is_better!r} must be True (PSNR, SSIM) or False (LPIPS, MSE)")
  selected = select_decodes(scores, bool(higher_is_better))
  num_examples, num_decodes, num_frames = np.shape(scores)
  summary: dict[str, Any] = {
      "num_examples": int(num_examples), "num_decodes": int(num_decodes), "num_frames": int(num_frames),
      "higher_is_better": bool(higher_is_better), "selection": SELECTION, "interval": INTERVAL,
  }
  for name in ("mean", "best", "worst"):
    summary[name] = summarize_curves(selected[name])
  summary["best"]["decode"] = selected["best_decode"].tolist()
  summary["worst"]["decode"] = selected["worst_decode"].tolist()
  return summary


def summarize_curves(curves) -> dict[str, Any]:
  """Per-example curves [E, T] -> {"per_frame": {"mean": [T], "ci95": [T]}, "overall": mean_ci of the per-example
  means over frames}; the intervals are over the E examples."""
  curves = np.asarray(curves, dtype=np.float64)
  if curves.ndim != 2 or 0 in curves.shape:
    raise ValueError(f"curves must be float [E, T] (examples, frames) with E, T >= 1, got shape {curves.shape}")
  frames = [mean_ci(curves[:, t]) for t in range(curves.shape[1])]
  return {
      "per_frame": {"mean": [f["mean"] for f in frames], "ci95": [f["ci95"] for f in frames]},
      "overall": mean_ci(curves.mean(axis=1)),
  }


def _check_scores(scores) -> np.ndarray:
  array = np.asarray(scores)
  if array.ndim != 3 or 0 in array.shape or not np.issubdtype(array.dtype, np.number):
    raise ValueError(f"scores must be float [E, D, T] (examples, decodes, frames) with every size >= 1, got "
                     f"{array.dtype} of shape {array.shape}; give one decode as scores[:, None]")
  array = array.astype(np.float64)
  if np.isnan(array).any():
    raise ValueError(f"scores contain NaN at [example, decode, frame] {np.argwhere(np.isnan(array))[:5].tolist()}; "
                     "score frames with finite metrics (PSNR of identical frames is capped, see psnr_ssim)")
  return array
