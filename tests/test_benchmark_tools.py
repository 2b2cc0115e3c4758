"""The diagnostic scripts in benchmarks/ on a tiny trained run: their figures add up to the model's own."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import sys

import numpy as np
import pytest

_BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load_script(name: str):
  """The module of benchmarks/<name>.py (a script, not a package module)."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(_BENCHMARKS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_script(name: str, argv: list[str]) -> dict:
  module = _load_script(name)
  out = io.StringIO()
  saved, sys.argv = sys.argv, [name, *argv]
  try:
    with contextlib.redirect_stdout(out):
      module.main()
  finally:
    sys.argv = saved
  return json.loads(out.getvalue())


@pytest.mark.parametrize("frame", [1, 3])
def test_shapes_bits_parts_add_up_to_the_models_bits_per_pixel(tiny_videoflow_run, frame):
  output_dir, data_dir = tiny_videoflow_run
  result = _run_script("shapes_bits", [f"--output_dir={output_dir}", f"--data_dir={data_dir}", "--num_examples=8",
                                       f"--frame={frame}"])
  prior_nll = sum(level["prior_nll_bits"]["object_cells"] + level["prior_nll_bits"]["background_cells"]
                  for level in result["levels"])
  # bpp = 8 - log|det| - log p(z) per dimension, the prior's density summed cell by cell over object and background
  assert result["bpp"] == pytest.approx(8.0 - result["log_det_bits"] + prior_nll, abs=1e-4)
  assert [level["latent_shape"][0] for level in result["levels"]] == [16, 8]  # videoflow_tiny: 2 levels at 32x32
  for level in result["levels"]:
    assert 0.0 < level["object_cell_fraction"] < 0.5
    assert min(level["sigma"].values()) > 0


def test_shapes_bits_refuses_a_frame_without_context(tiny_videoflow_run):
  output_dir, data_dir = tiny_videoflow_run
  with pytest.raises(SystemExit, match="--frame=0 must be in"):
    _run_script("shapes_bits", [f"--output_dir={output_dir}", f"--data_dir={data_dir}", "--frame=0"])


def test_shapes_quality_judges_whole_videos_and_the_first_move(tiny_videoflow_run):
  output_dir, data_dir = tiny_videoflow_run
  result = _run_script("shapes_quality", [f"--output_dir={output_dir}", f"--data_dir={data_dir}",
                                          "--num_examples=4", "--num_decodes=2", "--temperature", "0", "0.5"])
  assert result["num_examples"] == 4 and result["num_given"] == 1 and len(result["bpp_per_frame"]) == 4
  assert result["reencode"] is False
  assert 0 <= result["num_unseen"] <= 4 and (result["bpp_unseen"] is None) == (result["num_unseen"] == 0)
  for samples in result["samples"].values():
    unseen = samples["valid_rate_unseen"]
    assert (unseen is None) == (result["num_unseen"] == 0) and (unseen is None or 0 <= unseen <= 1)
  for temperature in ("0.0", "0.5"):
    samples, first = result["samples"][temperature], result["samples"][temperature]["first_move"]
    assert 0 <= samples["valid_rate"] <= samples["object_kept_rate"] <= 1
    assert 0 <= first["valid_rate"] <= 1 and 0 <= first["direction_entropy_bits"] <= 3
    # the first move is the 4 examples' 2 decodes, each judged on the given frame and the first generated one
    assert first["num_videos"] == 8 and first["num_frames"] == [2]


def test_shapes_quality_reencode_conditions_each_frame_on_the_8_bit_frames_before_it(tiny_videoflow_run):
  """--reencode: frame t of the rollout is the model's one-frame sample given the real frame and the generated
  8-bit frames before it; the first frame is the plain rollout's; the two rollouts differ after it."""
  from t2v.trainer.restore import restore_run  # pylint: disable=import-outside-toplevel
  quality = _load_script("shapes_quality")
  output_dir, data_dir = tiny_videoflow_run
  problem, model, _ = restore_run(output_dir, data_dir)
  video = next(iter(problem.dataset(problem.eval_split, batch_size=2, training=False)))["video"].numpy()
  context = video[:, :1]
  plain = quality._rollout(model, context, 3, 0.5, (0, 7), reencode=False)  # pylint: disable=protected-access
  again = quality._rollout(model, context, 3, 0.5, (0, 7), reencode=True)  # pylint: disable=protected-access
  assert plain.shape == again.shape == (2, 3, *video.shape[2:]) and again.dtype == np.uint8
  np.testing.assert_array_equal(again[:, 0], plain[:, 0])
  expected = model.sample({"video": np.concatenate([context, again[:, :2]], 1)}, 1, 0.5, seed=(0, 7 + 200000))
  np.testing.assert_array_equal(again[:, 2], expected.numpy()[:, 0])
  assert np.abs(again[:, 1:].astype(int) - plain[:, 1:]).max() > 0


def test_shapes_quality_splits_valid_rates_by_true_direction():
  from t2v.metrics import shapes_judge  # pylint: disable=import-outside-toplevel
  from t2v.problems import stochastic_shapes  # pylint: disable=import-outside-toplevel
  quality = _load_script("shapes_quality")
  config = stochastic_shapes.CONFIGS["tiny32"]
  examples = [stochastic_shapes.sample_example(config, "test", i) for i in range(12)]
  videos = np.stack([e["video"] for e in examples])  # [12, 5, 32, 32, 3]
  directions = np.asarray([e["direction"] for e in examples])
  # Decode 0 continues each clip as the data does (valid); decode 1 stops it (stationary); decode 2 is valid only
  # for the clips moving east or west.
  stopped = np.repeat(videos[:, 1:2], 3, axis=1)
  east_west = np.isin(directions, [0, 4])[:, None, None, None, None]
  decodes = np.stack([videos[:, 2:], stopped, np.where(east_west, videos[:, 2:], stopped)], axis=1)
  judged = shapes_judge.judge_continuation(videos[:, :2], decodes, config=config)
  by_direction = quality._valid_by_direction(judged, directions)  # pylint: disable=protected-access
  assert list(by_direction) == list(stochastic_shapes.DIRECTIONS)
  for k, name in enumerate(stochastic_shapes.DIRECTIONS):
    expected = None if not (directions == k).any() else (2 / 3 if k in (0, 4) else 1 / 3)
    assert by_direction[name] == (None if expected is None else pytest.approx(expected, abs=1e-3)), name
  assert any(value is None for value in by_direction.values())  # 12 clips leave some direction out


def test_frozen_flow_prior_scores_the_models_own_bits_and_trains_only_the_priors(tiny_videoflow_run):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from t2v.trainer.restore import restore_run  # pylint: disable=import-outside-toplevel
  output_dir, data_dir = tiny_videoflow_run
  result = _run_script("frozen_flow_prior", [f"--output_dir={output_dir}", f"--data_dir={data_dir}",
                                             "--num_train=8", "--num_examples=6", "--steps=4", "--eval_every=2",
                                             "--batch_size=4"])
  assert [e["step"] for e in result["evaluations"]] == [0, 2, 4] and result["num_examples"] == 6
  # before any prior step the figures are the model's own bpp: the same clips, the same seeded dequantisation
  problem, model, _ = restore_run(output_dir, data_dir)
  batch = next(iter(problem.dataset(problem.eval_split, batch_size=50, training=False)))
  bpp = model.log_prob_bpp(batch, problem.spec().num_input_frames, seed=tf.constant([0, 0])).numpy()[:6].mean(0)
  start, end = result["evaluations"][0], result["evaluations"][-1]
  assert start["bpp_per_frame"] == pytest.approx(bpp.tolist(), abs=2e-4)
  for evaluation in result["evaluations"]:
    assert len(evaluation["prior_bits_per_frame"]) == 4  # tiny32: 1 given frame, 4 predicted
    assert len(evaluation["prior_bits_per_level_per_frame"]) == 2  # videoflow_tiny: 2 levels
    assert [sum(levels) for levels in zip(*evaluation["prior_bits_per_level_per_frame"])] == pytest.approx(
        evaluation["prior_bits_per_frame"], abs=2e-4)
    # the test clips are encoded afresh at each evaluation: an unchanged log-det says the flow did not train
    assert evaluation["log_det_bits_per_frame"] == start["log_det_bits_per_frame"]
  assert end["prior_bits_per_frame"] != start["prior_bits_per_frame"]  # the priors did train


@pytest.mark.parametrize("pad_context", [True, False])
def test_frozen_flow_prior_trains_every_prior_that_scores_a_predicted_frame(pad_context):
  import dataclasses  # pylint: disable=import-outside-toplevel
  from t2v.models.videoflow import VideoFlow  # pylint: disable=import-outside-toplevel
  from t2v.models.videoflow_hparams import videoflow_tiny  # pylint: disable=import-outside-toplevel
  from t2v.problems.spec import VideoSpec  # pylint: disable=import-outside-toplevel
  module = _load_script("frozen_flow_prior")
  hp = dataclasses.replace(videoflow_tiny(), num_context_latents=2, pad_context=pad_context, num_train_frames=3)
  model = VideoFlow(hp, VideoSpec((8, 8, 1), 1, 3))
  names = [v.path for v in module.trained_variables(model, first=1)]
  assert set(names) <= {v.path for prior in model.priors for v in prior.trainable_variables}  # no flow variable
  assert any("output_conv" in name for name in names)
  # K = 2: frame 1 is scored by the conditional prior on a padded window, or without pad_context by the
  # unconditional one, which must then train too
  assert any("first_frame_prior" in name for name in names) == (not pad_context)


def test_frozen_flow_prior_refuses_more_than_its_clips(tiny_videoflow_run):
  output_dir, data_dir = tiny_videoflow_run
  with pytest.raises(SystemExit, match="--batch_size=16 must be <= --num_train=8"):
    _run_script("frozen_flow_prior", [f"--output_dir={output_dir}", f"--data_dir={data_dir}", "--num_train=8"])
  with pytest.raises(SystemExit, match="--num_train=100: the train split has only 64 clips"):  # tiny32: 64
    _run_script("frozen_flow_prior", [f"--output_dir={output_dir}", f"--data_dir={data_dir}", "--num_train=100"])


def test_pixel_prior_starts_as_copying_the_last_frame_and_trains_with_every_loss():
  """At step 0 the prior's mean is the last frame (zero-initialised output, temporal skip): its error is the
  copy baseline's. Every training signal (exact, beta, squared error, exact plus squared error) runs a few steps
  to finite figures; grid diagonals are whole-pixel steps."""
  module = _load_script("pixel_prior")
  np.testing.assert_allclose(module.step_vector(1, "grid"), [-2.0, 2.0])  # NE
  np.testing.assert_allclose(module.step_vector(1, "unit"), [-math.sqrt(2.0), math.sqrt(2.0)], rtol=1e-6)
  np.testing.assert_allclose(module.step_vector(0, "unit"), module.step_vector(0, "grid"))  # E
  for loss in ("beta_then_nll", "mse", "nll_mse"):  # every training signal: beta_then_nll steps beta, then nll
    evaluations = module.run(2, loss, width=8, num_train=8, num_test=4, batch_size=4, eval_every=2,
                             log=lambda _: None)
    first, last = evaluations[0], evaluations[-1]
    assert first["step"] == 0 and last["step"] == 2
    assert first["mse_mu"] == pytest.approx(first["mse_copy_prev"], rel=1e-4) and first["mse_copy_prev"] > 0
    assert len(last["bits_per_frame"]) == 4 and np.all(np.isfinite(last["bits_per_frame"]))
  with pytest.raises(ValueError, match="loss='l2'"):
    module.run(1, "l2", num_train=4, num_test=2)


def test_shapes_quality_tells_test_clips_that_recur_in_the_training_split():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from t2v.problems import stochastic_shapes  # pylint: disable=import-outside-toplevel
  quality = _load_script("shapes_quality")
  config = stochastic_shapes.CONFIGS["tiny32"]
  train = np.stack([stochastic_shapes.sample_example(config, "train", i)["video"] for i in range(64)])

  class TrainOnly:  # the training split of the problem, the only one _seen_in_train reads
    train_split = "train"

    def dataset(self, split, batch_size, training):
      assert split == "train" and not training
      return tf.data.Dataset.from_tensor_slices({"video": train}).batch(batch_size)

  moved = np.roll(train[5], 1, axis=2)  # a training video shifted by one pixel: not in the split
  one_pixel = train[9].copy()
  one_pixel[4, 0, 0, 0] ^= 1  # a training video with one value of its last frame changed
  videos = np.stack([train[63], moved, train[0], one_pixel, train[63]])
  np.testing.assert_array_equal(quality._seen_in_train(TrainOnly(), videos),  # pylint: disable=protected-access
                                [True, False, True, False, True])
