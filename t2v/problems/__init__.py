"""Problems: one file per dataset family, each a `Problem` returning tf.data pipelines of uint8 video.

Look problems up by name with `t2v.registry.problem(name)`. The names below are re-exported lazily, so importing
`t2v.problems.spec` (as every model does) does not import TensorFlow Datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

from t2v.problems.spec import VideoSpec

_LAZY: dict[str, str] = {
    "Problem": "t2v.problems.base",
    "DataNotFoundError": "t2v.problems.base",
    "CorruptRecordError": "t2v.problems.base",
    "StochasticShapes": "t2v.problems.stochastic_shapes",
    "Bair": "t2v.problems.bair",
    "MovingMnist": "t2v.problems.moving_mnist",
}

__all__ = ["VideoSpec", *_LAZY]


def __getattr__(name: str) -> Any:
  if name not in _LAZY:
    raise AttributeError(f"module 't2v.problems' has no attribute {name!r}; public names: {', '.join(__all__)}")
  return getattr(importlib.import_module(_LAZY[name]), name)
