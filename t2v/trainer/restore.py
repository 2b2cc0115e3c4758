"""Restoring a finished or running training run: its problem, hparams and model weights, from output_dir.

    problem, model, config = restore_run("t2v_runs/stochastic_shapes-videoflow-videoflow_cpu")

This is how the decoder, the hub exporter and the benchmarks get a trained model; it needs no optimizer.
"""

from __future__ import annotations

import os

import tensorflow as tf

from t2v import registry
from t2v.problems.spec import VideoSpec
from t2v.trainer import config as config_lib
from t2v.trainer.config import ConfigError


def restore_run(output_dir: str, data_dir: str | None = None, checkpoint: str | None = None):
  """(problem, model, config) of the run in `output_dir`, the model holding the weights of `checkpoint`
  (default: the latest). Fails with ConfigError when the dir holds no run or no checkpoint."""
  config = config_lib.read_config(output_dir)
  if config is None:
    raise ConfigError(f"{output_dir!r} holds no t2v run (no {config_lib.CONFIG_FILE}): pass the --output_dir of a "
                      "training run")
  checkpoint = checkpoint or tf.train.latest_checkpoint(output_dir)
  if checkpoint is None or not tf.io.gfile.exists(checkpoint + ".index"):
    raise ConfigError(f"{output_dir!r} has no checkpoint{f' {checkpoint!r}' if checkpoint else ''}: train first "
                      "(python -m t2v.trainer --output_dir=...)")
  from t2v.trainer.lib import _make_problem  # the trainer's own problem construction, config included
  problem = _make_problem(config["problem"], data_dir, config["problem_config"])
  model_class = registry.model(config["model"])
  hparams = model_class.hparams_class.from_dict(config["hparams"])
  model = model_class(hparams, VideoSpec.from_dict(config["spec"]))
  try:
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
    raise ConfigError(f"checkpoint {checkpoint!r} does not fit the {config['model']} model that {output_dir!r}'s "
                      f"config.json describes ({type(e).__name__}: {str(e).splitlines()[0][:300]}); was the "
                      "checkpoint or config.json copied from another run?") from e
  if not model.is_initialized:
    raise ConfigError(f"checkpoint {checkpoint!r} holds an uninitialised {config['model']} model")
  return problem, model, {**config, "checkpoint": os.path.abspath(checkpoint)}
