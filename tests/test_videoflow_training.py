"""VideoFlow through the real trainer: end to end on stochastic shapes, and an exact resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from t2v import trainer
from t2v.problems.stochastic_shapes import StochasticShapes
from t2v.trainer.config import ConfigError
from t2v.trainer.restore import restore_run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("tfds"))
  StochasticShapes(path, config="tiny32").prepare()
  return path


def _run(data_dir, output_dir, **overrides):
  kwargs = dict(problem="stochastic_shapes", problem_config="tiny32", model="videoflow",
                hparams_set="videoflow_tiny", data_dir=data_dir, output_dir=str(output_dir), train_steps=4,
                eval_steps=2, eval_every=0, checkpoint_every=2, log_every=2, strategy="one_device", num_samples=0)
  kwargs.update(overrides)
  return trainer.run(**kwargs)


def _weights(output_dir):
  reader = tf.train.load_checkpoint(str(output_dir))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith(("model/", "optimizer/"))}


def test_videoflow_trains_evaluates_and_samples(data_dir, tmp_path):
  result = _run(data_dir, tmp_path, num_samples=2, eval_every=4)
  assert result["step"] == 4 and result["skipped_steps"] == 0
  assert 0 < result["eval"]["bpp"] < 16 and result["eval"]["loss"] == pytest.approx(result["eval"]["bpp"])
  assert "first_frames_prior_nll" in result["train"]
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["model"] == "videoflow" and config["hparams"]["depth"] == 2
  assert os.path.getsize(tmp_path / "samples" / "step_4.gif") > 0
  # The run restores on its own, without an optimizer (as the decoder and the hub exporter do).
  problem, model, restored = restore_run(str(tmp_path), data_dir)
  assert restored["checkpoint"] == result["checkpoint"] and problem.spec() == model.spec
  assert model.is_initialized  # so a resumed run does not redo the data-dependent init
  saved = _weights(tmp_path)
  bias = model.glow.step_params[0].actnorm.bias.numpy()
  assert any(np.array_equal(bias, value) for value in saved.values()) and np.abs(bias).max() > 0
  held_out = next(iter(problem.dataset(problem.eval_split, batch_size=4, training=False)))
  assert np.isfinite(model.log_prob_bpp(held_out, model.spec.num_input_frames).numpy()).all()


def test_restore_run_refuses_a_dir_without_a_run_or_checkpoint(tmp_path):
  with pytest.raises(ConfigError, match="holds no t2v run"):
    restore_run(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({
      "problem": "stochastic_shapes", "problem_config": "tiny32", "model": "videoflow",
      "hparams_set": "videoflow_tiny", "hparams": {}, "spec": {}}))
  with pytest.raises(ConfigError, match="has no checkpoint"):
    restore_run(str(tmp_path))


@pytest.mark.slow  # 60-66 s on 2 cores (three trainer runs); the default run keeps the trainer's exact-resume test
# (toy model, tests/test_trainer.py), and test_videoflow_trains_evaluates_and_samples restores a VideoFlow run with
# its data-dependent-init flag set
def test_videoflow_resume_is_exact(data_dir, tmp_path):
  _run(data_dir, tmp_path / "a", train_steps=4)
  _run(data_dir, tmp_path / "b", train_steps=2)
  _run(data_dir, tmp_path / "b", train_steps=4)
  a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
  assert sorted(a) == sorted(b)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
