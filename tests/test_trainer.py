"""t2v.trainer end to end with the toy model on stochastic shapes: outputs, resume, signals, non-finite steps,
distribution (mirrored over 2 logical CPUs, 2 local workers) and the refusals that protect an output_dir."""

from __future__ import annotations

import glob
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from t2v import trainer
from t2v.problems.stochastic_shapes import StochasticShapes
import toy_model

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
LAUNCHER = os.path.join(TESTS, "toy_model.py")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("tfds"))
  for config in ("tiny", "tiny32"):
    StochasticShapes(path, config=config).prepare()
  return path


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
  toy_model.register(monkeypatch.setitem)


def _kwargs(data_dir: str, output_dir, **overrides) -> dict:
  kwargs = dict(problem="stochastic_shapes", problem_config="tiny32", model="toy", data_dir=data_dir,
                output_dir=str(output_dir), train_steps=4, eval_steps=2, eval_every=0, checkpoint_every=0,
                log_every=2, strategy="one_device", num_samples=0)
  kwargs.update(overrides)
  return kwargs


def _run(data_dir: str, output_dir, **overrides) -> dict:
  return trainer.run(**_kwargs(data_dir, output_dir, **overrides))


def _state(output_dir) -> dict[str, np.ndarray]:
  """Model and optimizer values of the newest checkpoint in output_dir."""
  reader = tf.train.load_checkpoint(str(output_dir))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith(("model/", "optimizer/"))}


def _assert_same_state(a, b, rtol: float = 0.0, atol: float = 0.0) -> None:
  state_a, state_b = _state(a), _state(b)
  assert sorted(state_a) == sorted(state_b)
  for name in state_a:
    np.testing.assert_allclose(state_a[name], state_b[name], rtol=rtol, atol=atol, err_msg=name)


def _events(path: str) -> dict[str, list[tuple[int, object, str]]]:
  """{tag: [(step, value, plugin)]} of every event file under path."""
  tags: dict[str, list] = {}
  for file in glob.glob(os.path.join(path, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(file):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(
            (event.step, tf.make_ndarray(value.tensor), value.metadata.plugin_data.plugin_name))
  return tags


def _subprocess_env(**extra: str) -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _launch(runs, result_path, **env) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, LAUNCHER, "run", json.dumps(runs), str(result_path)],
                          env=_subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float = 240) -> None:
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-3000:]


def test_end_to_end_writes_config_checkpoints_summaries_and_samples(data_dir, tmp_path):
  result = _run(data_dir, tmp_path, problem_config="tiny", eval_every=2, checkpoint_every=2, num_samples=2)

  assert result["step"] == 4 and result["optimizer_iterations"] == 4 and not result["interrupted"]
  phases = result["startup_seconds"]  # the time to the first step, by phase, from the process start
  assert list(phases) == ["launch", "data", "model", "init", "checkpoint", "input pipeline", "trace and first step"]
  assert min(phases.values()) >= 0
  assert sum(phases.values()) == pytest.approx(result["seconds_to_first_step"], abs=0.5)
  assert np.isfinite(result["train"]["bpp"]) and np.isfinite(result["eval"]["bpp"])
  assert result["eval"]["loss"] == pytest.approx(result["eval"]["bpp"])  # the toy's loss is its bpp
  config = json.loads((tmp_path / "config.json").read_text())
  assert (config["problem"], config["problem_config"], config["model"], config["hparams_set"]) == (
      "stochastic_shapes", "tiny", "toy", "toy_tiny")
  assert config["hparams"] == toy_model.toy_tiny().to_dict()
  assert config["spec"]["frame_shape"] == [64, 64, 3] and config["t2v_version"]
  assert result["checkpoint"] == str(tmp_path / "ckpt-4")
  assert os.path.exists(tmp_path / "ckpt-4.index") and os.path.exists(tmp_path / "ckpt-0.index")

  train = _events(str(tmp_path / "train"))
  assert {"loss", "bpp", "learning_rate", "steps_per_sec", "skipped_steps"} <= set(train)
  assert [step for step, _, _ in train["loss"]] == [2, 4]
  assert all(plugin == "scalars" for _, _, plugin in train["bpp"])
  assert train["learning_rate"][0][1] == pytest.approx(toy_model.toy_tiny().learning_rate)
  evaluation = _events(str(tmp_path / "eval"))
  assert [step for step, _, _ in evaluation["bpp"]] == [2, 4]
  assert evaluation["bpp"][-1][1] == pytest.approx(result["eval"]["bpp"], rel=1e-6)
  step, tensor, plugin = evaluation["samples"][-1]
  assert (step, plugin) == (4, "images")
  width, height, gif = int(tensor[0]), int(tensor[1]), tensor[2]
  assert gif.startswith(b"GIF89a")
  # Two examples: rows of (ground truth | sample), 64x64 frames with 1-pixel gaps.
  assert (width, height) == (2 * 64 + 1, 2 * 64 + 1)
  assert (tmp_path / "samples" / "step_4.gif").read_bytes() == gif
  image = Image.open(io.BytesIO(gif))
  assert image.size == (width, height) and image.n_frames > 1
  assert os.path.exists(tmp_path / "samples" / "step_2.gif")


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(data_dir, tmp_path):
  uninterrupted = _run(data_dir, tmp_path / "a", train_steps=6, checkpoint_every=2)
  first = _run(data_dir, tmp_path / "b", train_steps=3, checkpoint_every=2)
  assert first["step"] == 3
  resumed = _run(data_dir, tmp_path / "b", train_steps=6, checkpoint_every=2)
  assert resumed["step"] == 6 and resumed["optimizer_iterations"] == 6
  _assert_same_state(tmp_path / "a", tmp_path / "b")  # exactly
  assert resumed["eval"]["bpp"] == pytest.approx(uninterrupted["eval"]["bpp"], rel=1e-6)
  # A fresh run reaching step 6 from another seed differs: the comparison above is not vacuous.
  _run(data_dir, tmp_path / "c", train_steps=6, seed=1)
  assert not np.allclose(_state(tmp_path / "a")["model/conv/_kernel/.ATTRIBUTES/VARIABLE_VALUE"],
                         _state(tmp_path / "c")["model/conv/_kernel/.ATTRIBUTES/VARIABLE_VALUE"])


def test_a_seed_gives_the_same_run_whether_or_not_the_data_had_to_be_generated(tmp_path):
  """The first run generates its problem's data into an empty data_dir, the second finds it there: the same seed
  gives the same weights (session 20: generating the data moved the global generators, so a clean clone's quick
  start trained from another initialisation than the same command on prepared data)."""
  data_dir = str(tmp_path / "tfds")
  _run(data_dir, tmp_path / "generated", train_steps=2)
  _run(data_dir, tmp_path / "prepared", train_steps=2)
  _assert_same_state(tmp_path / "generated", tmp_path / "prepared")  # exactly


def test_sigterm_saves_a_checkpoint_and_returns(data_dir, tmp_path):
  previous_handler = signal.getsignal(signal.SIGTERM)

  def send_sigterm_after_first_checkpoint():
    deadline = time.monotonic() + 120
    while not os.path.exists(tmp_path / "ckpt-2.index") and time.monotonic() < deadline:
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)

  sender = threading.Thread(target=send_sigterm_after_first_checkpoint, daemon=True)
  sender.start()
  result = _run(data_dir, tmp_path, train_steps=10**6, checkpoint_every=2)
  sender.join()
  assert result["interrupted"] and 2 <= result["step"] < 10**6
  assert result["checkpoint"] == str(tmp_path / f"ckpt-{result['step']}")
  assert signal.getsignal(signal.SIGTERM) is previous_handler
  resumed = _run(data_dir, tmp_path, train_steps=result["step"] + 1)
  assert resumed["step"] == result["step"] + 1 and not resumed["interrupted"]


def test_nonfinite_step_changes_neither_weights_nor_optimizer_state(data_dir, tmp_path):
  _run(data_dir, tmp_path / "clean", train_steps=3)
  # Call 3 is the 4th step: skipped, so the state is that of 3 good steps.
  result = _run(data_dir, tmp_path / "nan", train_steps=4, hparams_overrides="nan_loss_steps=3", log_every=1)
  assert result["skipped_steps"] == 1 and result["optimizer_iterations"] == 3 and result["restores"] == 0
  _assert_same_state(tmp_path / "clean", tmp_path / "nan")
  skipped = _events(str(tmp_path / "nan" / "train"))["skipped_steps"]
  assert [(step, float(value)) for step, value, _ in skipped] == [(1, 0.0), (2, 0.0), (3, 0.0), (4, 1.0)]


def test_repeated_nonfinite_steps_restore_the_last_checkpoint(data_dir, tmp_path):
  _run(data_dir, tmp_path / "three", train_steps=3)
  # ckpt-3 after 3 good steps, step 4 good, steps 5 and 6 non-finite: the restore goes back to ckpt-3 and the
  # checkpoint saved at step 6 holds its state, not that of step 4.
  result = _run(data_dir, tmp_path / "nan", train_steps=6, checkpoint_every=3,
                hparams_overrides="nan_loss_steps=4;5,max_nonfinite_steps=2,lr_factor_on_restore=0.5")
  assert (result["restores"], result["skipped_steps"], result["lr_scale"]) == (1, 2, 0.5)
  assert result["optimizer_iterations"] == 3 and result["step"] == 6
  _assert_same_state(tmp_path / "three", tmp_path / "nan")


def test_evaluation_averages_every_example_including_a_partial_last_batch(data_dir, tmp_path):
  # No training: the model is its data-dependent initialisation, so the eval batch size must not matter. The
  # tiny32 test split has 16 videos: batches of 3 end with a partial batch of 1.
  whole = _run(data_dir, tmp_path / "whole", train_steps=0, eval_steps=0, hparams_overrides="batch_size=16")
  partial = _run(data_dir, tmp_path / "partial", train_steps=0, eval_steps=0, hparams_overrides="batch_size=3")
  assert partial["eval"]["bpp"] == pytest.approx(whole["eval"]["bpp"], rel=1e-6)
  first_two = _run(data_dir, tmp_path / "two", train_steps=0, eval_steps=2, hparams_overrides="batch_size=3")
  assert first_two["eval"]["bpp"] != pytest.approx(whole["eval"]["bpp"], rel=1e-6)


# Adam divides by sqrt(v) + epsilon: with the default epsilon a parameter whose gradient is ~0 moves by ~lr in a
# direction set by rounding, so summation order decides it. A larger epsilon keeps updates proportional to
# gradients, and the comparisons meaningful.
_DISTRIBUTED_HPARAMS = "adam_epsilon=1e-3"


def test_mirrored_over_two_cpus_matches_one_device(data_dir, tmp_path):
  runs = [_kwargs(data_dir, tmp_path / "one", strategy="one_device", hparams_overrides=_DISTRIBUTED_HPARAMS),
          _kwargs(data_dir, tmp_path / "two", strategy="mirrored", hparams_overrides=_DISTRIBUTED_HPARAMS),
          _kwargs(data_dir, tmp_path / "odd", strategy="mirrored", hparams_overrides="batch_size=3"),
          # 16 eval videos in batches of 6: the last batch (4 videos) is padded to 6, 3 per replica.
          _kwargs(data_dir, tmp_path / "partial", strategy="mirrored", train_steps=0, eval_steps=0,
                  hparams_overrides="batch_size=6"),
          # the 5th step's loss is NaN on the second replica only: both replicas skip it
          _kwargs(data_dir, tmp_path / "nan_on_one", strategy="mirrored", train_steps=5,
                  hparams_overrides=_DISTRIBUTED_HPARAMS + ",nan_loss_steps=4,nan_replica=1")]
  process = _launch(runs, tmp_path / "result.json", T2V_TEST_LOGICAL_CPUS="2")
  whole = _run(data_dir, tmp_path / "whole", train_steps=0, eval_steps=0, hparams_overrides="batch_size=16")
  _finish(process)
  one, two, odd, partial, nan_on_one = json.loads((tmp_path / "result.json").read_text())
  assert partial["eval"]["bpp"] == pytest.approx(whole["eval"]["bpp"], rel=1e-6)
  assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], rel=1e-5)
  assert two["eval"]["loss"] == pytest.approx(one["eval"]["loss"], rel=1e-5)
  _assert_same_state(tmp_path / "one", tmp_path / "two", rtol=1e-4, atol=1e-6)
  assert "batch_size=3 is not divisible by the 2 replicas" in odd["error"]
  assert (nan_on_one["skipped_steps"], nan_on_one["optimizer_iterations"]) == (1, 4)
  _assert_same_state(tmp_path / "two", tmp_path / "nan_on_one")


def _free_ports(count: int) -> list[int]:
  sockets = []
  for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_two_local_workers_match_one_device(data_dir, tmp_path):
  workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
  kwargs = _kwargs(data_dir, tmp_path / "multi", strategy="multi_worker", checkpoint_every=2,
                   hparams_overrides=_DISTRIBUTED_HPARAMS)
  processes = [
      _launch(kwargs, tmp_path / f"worker{index}.json",
              TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
      for index in range(2)]
  try:
    reference = _run(data_dir, tmp_path / "one", checkpoint_every=2, hparams_overrides=_DISTRIBUTED_HPARAMS)
    for process in processes:
      _finish(process)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
  chief, other = (json.loads((tmp_path / f"worker{index}.json").read_text()) for index in range(2))
  assert chief["train"]["loss"] == pytest.approx(reference["train"]["loss"], rel=1e-5)
  assert chief["eval"]["loss"] == pytest.approx(reference["eval"]["loss"], rel=1e-5)
  assert other["eval"]["loss"] == chief["eval"]["loss"]
  assert chief["checkpoint"] == str(tmp_path / "multi" / "ckpt-4") and other["checkpoint"] is None
  _assert_same_state(tmp_path / "one", tmp_path / "multi", rtol=1e-4, atol=1e-6)
  # Only the chief wrote: one set of checkpoints, and the other worker's temporary copy is gone.
  assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "multi" / "ckpt-*.index"))) == [
      "ckpt-0.index", "ckpt-2.index", "ckpt-4.index"]


def _snapshot(directory) -> dict[str, bytes]:
  files = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, directory)] = f.read()
  return files


def test_output_dir_of_another_model_or_problem_is_refused_untouched(data_dir, tmp_path):
  _run(data_dir, tmp_path, train_steps=1)
  before = _snapshot(tmp_path)
  with pytest.raises(trainer.ConfigError, match=r"holds a run of model 'toy'.*--model=toy"):
    _run(data_dir, tmp_path, model="videoflow", hparams_set=None)
  with pytest.raises(trainer.ConfigError, match=r"holds a run of problem 'stochastic_shapes'"):
    _run(data_dir, tmp_path, problem="moving_mnist", problem_config=None)
  with pytest.raises(trainer.ConfigError, match=r"problem_config 'tiny32'"):
    _run(data_dir, tmp_path, problem_config="tiny")
  assert _snapshot(tmp_path) == before


def test_resume_without_problem_config_uses_the_recorded_one(data_dir, tmp_path):
  _run(data_dir, tmp_path, train_steps=1)
  # a run recorded by an older t2v: without an hparam and spec fields added since
  config = json.loads((tmp_path / "config.json").read_text())
  removed = sorted(config["hparams"])[0]
  del config["hparams"][removed], config["spec"]["vocabulary"], config["spec"]["label_captions"]
  (tmp_path / "config.json").write_text(json.dumps(config))
  result = _run(data_dir, tmp_path, train_steps=2, problem_config=None)
  assert result["step"] == 2
  with open(tmp_path / "config.json") as f:
    resumed = json.load(f)
  assert resumed["problem_config"] == "tiny32" and removed in resumed["hparams"]


def test_checkpoints_without_config_are_refused(data_dir, tmp_path):
  _run(data_dir, tmp_path, train_steps=1)
  os.remove(tmp_path / "config.json")
  with pytest.raises(trainer.ConfigError, match="no config.json"):
    _run(data_dir, tmp_path, train_steps=2)


def test_missing_bair_data_exits_2_with_one_line(tmp_path):
  output_dir = tmp_path / "run"
  process = subprocess.run(
      [sys.executable, LAUNCHER, "cli", "--problem=bair", "--model=toy", f"--data_dir={tmp_path / 'empty'}",
       f"--output_dir={output_dir}", "--train_steps=1"],
      env=_subprocess_env(), capture_output=True, text=True, timeout=240)
  assert process.returncode == 2, process.stderr[-3000:]
  assert "Traceback" not in process.stderr
  last = process.stderr.strip().splitlines()[-1]
  assert last.startswith("t2v.trainer: error: bair:") and "--data_dir" in last
  assert not output_dir.exists() or not any(output_dir.iterdir())


def test_schedule_weight_decay_and_clipping_are_wired(data_dir, tmp_path):
  result = _run(data_dir, tmp_path, train_steps=3, log_every=1,
                hparams_overrides="decay_steps=2,weight_decay=0.1,clip_grad_norm=1e-3")
  assert result["optimizer_iterations"] == 3 and np.isfinite(result["eval"]["bpp"])
  rates = [float(value) for _, value, _ in _events(str(tmp_path / "train"))["learning_rate"]]
  np.testing.assert_allclose(rates, [1e-2, 1e-2, 5e-3], rtol=1e-6)  # the last of 3 steps decays halfway


def test_toy_model_is_a_normalised_likelihood():
  from t2v.problems.spec import VideoSpec  # pylint: disable=import-outside-toplevel
  spec = VideoSpec(frame_shape=(16, 16, 1), num_input_frames=1, num_target_frames=1)
  model = toy_model.ToyModel(toy_model.ToyHParams(condition_on="nothing"), spec)
  # Every pixel of the second frame takes a different level; with condition_on=nothing all share one
  # distribution (the convolution sees zeros), so their probabilities must sum to 1.
  levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16, 1)
  video = tf.constant(np.concatenate([levels, levels], axis=1))  # [1, 2, 16, 16, 1]
  model.initialize({"video": video})
  model.conv.bias.assign([0.3, -2.0])  # mean 0.3 on [-1, 1], scale e^-2
  probabilities = np.exp(model.log_prob_pixels(video).numpy()[0, 1])
  assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)
  bpp, metrics = model.compute_loss({"video": video}, training=True)
  assert bpp.shape == (1,) and metrics["bpp"].shape == (1,) and float(bpp[0]) > 0
  sample = model.sample({"video": video[:, :1]}, num_frames=3, seed=(1, 2))
  assert sample.dtype == tf.uint8 and sample.shape == (1, 3, 16, 16, 1)
  np.testing.assert_array_equal(sample, model.sample({"video": video[:, :1]}, num_frames=3, seed=(1, 2)))
  # Samples follow the distribution: their mean level is near the mean 0.3 -> level 165.75.
  assert abs(float(tf.reduce_mean(tf.cast(sample, tf.float32))) - 165.75) < 5


def test_learning_rate_schedule():
  from t2v.trainer.lib import learning_rate_schedule  # pylint: disable=import-outside-toplevel
  rates = [float(learning_rate_schedule(step, learning_rate=1.0, warmup_steps=4, decay_steps=5, train_steps=20))
           for step in range(20)]
  np.testing.assert_allclose(rates[:4], [0.25, 0.5, 0.75, 1.0])
  np.testing.assert_allclose(rates[4:15], 1.0)
  np.testing.assert_allclose(rates[15:], [1.0, 0.8, 0.6, 0.4, 0.2])


def test_video_io_round_trip(tmp_path):
  from t2v import video_io  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, [3, 5, 7, 1], dtype=np.uint8)
  image = Image.open(io.BytesIO(video_io.encode_gif(grey, fps=10)))
  assert image.n_frames == 3 and image.info["duration"] == 100 and image.info["loop"] == 0
  for t in range(3):
    image.seek(t)
    np.testing.assert_array_equal(np.asarray(image.convert("L")), grey[t, ..., 0])
  colours = np.zeros([2, 4, 4, 3], np.uint8)
  colours[0, :2] = (255, 0, 0)
  colours[1, 2:] = (0, 0, 255)
  video_io.write_gif(tmp_path / "sub" / "v.gif", colours, fps=4)
  image = Image.open(tmp_path / "sub" / "v.gif")
  for t in range(2):
    image.seek(t)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), colours[t])
  grid = video_io.tile_videos(np.stack([colours] * 3), columns=2, padding=1, pad_value=7)
  assert grid.shape == (2, 9, 9, 3)
  np.testing.assert_array_equal(grid[:, :4, 5:], colours)
  assert (grid[:, 5:, 5:] == 7).all()  # the empty cell
  with pytest.raises(ValueError, match="uint8"):
    video_io.encode_gif(grey.astype(np.float32))
  with pytest.raises(ValueError, match=r"C = 1 \(grey\) or 3"):
    video_io.encode_gif(np.zeros([2, 4, 4, 2], np.uint8))


def test_a_corrupt_record_is_named_and_nothing_saved_is_damaged(data_dir, tmp_path):
  import shutil
  from t2v.problems.base import CorruptRecordError
  copy = tmp_path / "data"
  shutil.copytree(data_dir, copy)
  path = str(StochasticShapes(str(copy), config="tiny32").builder().info.splits["train"].filepaths[0])
  _run(str(copy), tmp_path / "run", train_steps=2)
  before = _state(tmp_path / "run")
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(b"\xff" * 16)
  with pytest.raises(CorruptRecordError, match=f"record \\d+ of {path}"):
    _run(str(copy), tmp_path / "run", train_steps=4)  # the shuffle buffer reads every record at once
  after = _state(tmp_path / "run")
  assert sorted(after) == sorted(before)
  for name in before:
    np.testing.assert_array_equal(before[name], after[name], err_msg=name)


@pytest.mark.parametrize("optimizer_class", [keras.optimizers.Adam, keras.optimizers.AdamW])
def test_fused_adam_update_equals_keras_update_step(optimizer_class):
  """The trainer's one-kernel Adam update gives Keras' own update_step, step after step, on Keras' slots."""
  from t2v.trainer import optimizer as optimizer_lib  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  initial = [rng.normal(size=shape).astype(np.float32) for shape in ((3, 3, 4, 5), (5,))]
  runs = []
  for fused in (False, True):
    variables = [keras.Variable(value) for value in initial]
    optimizer = optimizer_class(learning_rate=1e-2, beta_1=0.8, beta_2=0.95, epsilon=1e-4)
    optimizer.build(variables)
    assert optimizer_lib.supports_fused_adam(optimizer)
    for step in range(4):
      grads = [tf.constant(np.random.default_rng(step).normal(size=v.shape), tf.float32) for v in variables]
      rate = tf.constant(1e-2 * (step + 1))
      constants = optimizer_lib.adam_step_constants(optimizer)
      for variable, grad in zip(variables, grads):
        if fused:
          optimizer_lib.fused_adam_update(optimizer_lib.tf_variable(variable), grad, rate,
                                          *optimizer_lib.adam_slots(optimizer, variable), constants)
        else:
          optimizer.update_step(grad, variable, rate)
      optimizer.iterations.assign_add(1)
    runs.append([v.numpy() for v in variables] + [s.numpy() for s in optimizer.variables[1:]])
  for keras_value, fused_value in zip(*runs):
    np.testing.assert_allclose(fused_value, keras_value, rtol=1e-5, atol=1e-6)
  assert not np.allclose(runs[0][0], initial[0])  # the variables did move
  assert not optimizer_lib.supports_fused_adam(keras.optimizers.Adam(amsgrad=True))


def test_apply_adam_equals_keras_apply_gradients():
  from t2v.trainer import optimizer as optimizer_lib  # pylint: disable=import-outside-toplevel
  results = []
  for fused in (False, True):
    variable = keras.Variable(np.linspace(-1, 1, 6, dtype=np.float32))
    optimizer = keras.optimizers.Adam(learning_rate=0.1)
    optimizer.build([variable])
    for step in range(3):
      grad = tf.constant(np.cos(np.arange(6) + step), tf.float32)
      if fused:
        optimizer_lib.apply_adam(optimizer, [(grad, variable)], 0.1)
      else:
        optimizer.apply_gradients([(grad, variable)])
    results.append(variable.numpy())
  np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)  # float32 round-off of lr 0.1 steps
  with pytest.raises(ValueError, match="optimizer.build"):
    optimizer_lib.apply_adam(keras.optimizers.Adam(), [(grad, variable)], 0.1)
