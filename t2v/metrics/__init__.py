"""Metrics: one metric per file, each with its reference test.

The names below are re-exported lazily, so `import t2v.metrics` imports neither TensorFlow nor scipy until a name
is used:

    from t2v import metrics
    summary = metrics.judge_batch(decodes)        # t2v.metrics.shapes_judge: stochastic shapes validity
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
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f"module 't2v.metrics' has no attribute {name!r}; public names: {', '.join(__all__)}")
  return getattr(importlib.import_module(_LAZY[name]), name)
