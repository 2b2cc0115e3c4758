"""VideoFlow's paper experiments on a trained run (`python -m t2v.experiments --experiment=NAME`).

    from t2v.experiments import run
    results = run("temperature_sweep", "runs/videoflow_shapes", num_examples=16, num_decodes=4)

NAMES lists the experiments; t2v.experiments.lib holds one function per experiment. Importing this package does
not import TensorFlow (the command checks the name first).
"""

from __future__ import annotations

from typing import Any

# Paper sections: Figures 3/4 (quality and diversity vs temperature), Figure 4 (best of N), §5.3, §5.4, §5.5.
NAMES: tuple[str, ...] = ("temperature_sweep", "best_of_n", "interpolation", "rollout", "out_of_sequence")


def run(name: str, output_dir: str, **kwargs: Any) -> dict[str, Any]:
  """See `t2v.experiments.lib.run` (imported lazily)."""
  from t2v.experiments.lib import run as _run  # pylint: disable=import-outside-toplevel
  return _run(name, output_dir, **kwargs)
