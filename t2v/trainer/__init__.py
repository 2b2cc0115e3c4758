"""Training: `python -m t2v.trainer` (flags in __main__.py) and the library function `run` it calls.

    from t2v import trainer
    result = trainer.run(model="videoflow", hparams_set="videoflow_tiny", train_steps=10, output_dir="/tmp/r")

Importing this package does not import TensorFlow: `run` is loaded on first use, so the command line can reject
a bad flag before paying for that import.
"""

from __future__ import annotations

from typing import Any

from t2v.trainer.config import ConfigError

__all__ = ["ConfigError", "run"]


def __getattr__(name: str) -> Any:
  if name == "run":
    from t2v.trainer.lib import run  # pylint: disable=import-outside-toplevel
    return run
  raise AttributeError(f"module 't2v.trainer' has no attribute {name!r}")
