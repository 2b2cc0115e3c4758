"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest

import t2v  # noqa: F401  (before any test file imports TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)

# The test files in order of their measured time, slowest first (session 6, 2 CPU cores: 170 s down to ~30 s).
# pytest-xdist (--dist loadfile, pytest.ini) hands whole files to whichever worker is free in collection order, so
# with the slowest first the short files fill the end, instead of one worker running a long file alone while the
# other idles (alphabetically, two of the three slowest came last). Files not listed run after these.
_SLOWEST_FILES_FIRST = (
    "test_videoflow.py", "test_reversible.py", "test_cglow_video.py", "test_trainer.py", "test_hub_modules_cglow.py",
    "test_experiments.py", "test_videoflow_training.py", "test_decoder.py", "test_bijectors.py",
    "test_hub_modules.py", "test_problems.py", "test_hparams_registry.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_SLOWEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def tiny_videoflow_run(tmp_path_factory) -> tuple[str, str]:
  """(output_dir, data_dir) of videoflow_tiny trained 2 steps on stochastic shapes tiny32 (1 given frame, 4
  predicted, 32x32), evaluated at step 2. Trained once per session; tests must not write into output_dir."""
  from t2v import trainer  # pylint: disable=import-outside-toplevel
  from t2v.problems.stochastic_shapes import StochasticShapes  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  StochasticShapes(data_dir, config="tiny32").prepare()
  output_dir = str(tmp_path_factory.mktemp("run"))
  trainer.run(problem="stochastic_shapes", problem_config="tiny32", model="videoflow", hparams_set="videoflow_tiny",
              data_dir=data_dir, output_dir=output_dir, train_steps=2, eval_steps=1, eval_every=2,
              checkpoint_every=0, strategy="one_device", num_samples=0)
  return output_dir, data_dir


@pytest.fixture(scope="session")
def tiny_cglow_run(tmp_path_factory) -> tuple[str, str]:
  """(output_dir, data_dir) of cglow_video_tiny (caption-conditioned) trained 2 steps on captioned shapes tiny32
  (0 given frames, 5 generated, 32x32). Trained once per session; tests must not write into output_dir."""
  from t2v import trainer  # pylint: disable=import-outside-toplevel
  from t2v.problems.captioned_shapes import CaptionedShapes  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path_factory.mktemp("tfds_captioned"))
  CaptionedShapes(data_dir, config="tiny32").prepare()
  output_dir = str(tmp_path_factory.mktemp("cglow_run"))
  trainer.run(problem="captioned_shapes", problem_config="tiny32", model="cglow_video",
              hparams_set="cglow_video_tiny", data_dir=data_dir, output_dir=output_dir, train_steps=2, eval_steps=1,
              eval_every=2, checkpoint_every=0, strategy="one_device", num_samples=0)
  return output_dir, data_dir
