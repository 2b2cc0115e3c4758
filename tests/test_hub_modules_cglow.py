"""Hub modules of cglow_video: export tiny trained runs (caption- and label-conditioned), hub.load them in a fresh
process without t2v, and get the Python model's numbers (bpp to 1e-4, identical samples for a seed)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from t2v.hub_modules.export import export
from t2v.hub_modules.export import lib as export_lib
from t2v.trainer.config import ConfigError
from t2v.trainer.restore import restore_run

import hub_consumer

# Captions for the unknown-word checks: all known; two unknown words ("a" is no word of any training caption);
# 9 words, 2 past the tiny encoder's 7 (caption_max_words=8 with the start token).
PROBE_CAPTIONS = ["small red circle moving up", "a purple circle moving left",
                  "large blue square moving down right large blue square"]

# Runs in a fresh interpreter in which t2v cannot be imported (even where it is pip-installed, as in CI).
CONSUMER = r"""
import sys
sys.modules["t2v"] = None  # any `import t2v...` now raises ImportError
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
export_dir, data = sys.argv[1], np.load(sys.argv[2])
key = "caption" if "caption" in data.files else "label"
video, y = data["video"], tf.constant(data[key].tolist())  # [3, 5, 32, 32, 3]; string or int32 [3]
out = {}
evaluator = hub.load(export_dir + "/evaluator")
result = evaluator.log_prob(video, y)
out["bpp"], out["bpp_per_frame"] = result["bits_per_pixel"].numpy(), result["bits_per_pixel_per_frame"].numpy()
out["bpp_two_frames"] = evaluator.log_prob(video[:, :2], y)["bits_per_pixel_per_frame"].numpy()
generator = hub.load(export_dir + "/generator")
sample = lambda tc, n, seed, y=y: generator.sample(video[:, :tc], y, tf.constant(n), tf.constant(0.7),
                                                   tf.constant(seed))
out["frames_0"] = sample(0, 5, [3, 4])["frames"].numpy()
out["frames_0_again"] = sample(0, 5, [3, 4])["frames"].numpy()
out["frames_0_other_seed"] = sample(0, 5, [5, 6])["frames"].numpy()
out["frames_2"] = sample(2, 3, [3, 4])["frames"].numpy()
bad = {
    "video_dtype": lambda: evaluator.log_prob(tf.constant(video, tf.float32), y),
    "video_rank": lambda: evaluator.log_prob(video[:, 0], y),
    "frame_size": lambda: evaluator.log_prob(np.zeros([3, 2, 16, 16, 3], np.uint8), y),
    "condition_rank": lambda: evaluator.log_prob(video, y[:, None]),
    "condition_dtype": lambda: evaluator.log_prob(video, tf.constant([1.0, 2.0, 3.0])),
    "condition_batch": lambda: evaluator.log_prob(video, y[:2]),
    "num_frames": lambda: sample(0, 0, [3, 4]),
    "no_frames": lambda: evaluator.log_prob(video[:, :0], y),
    "seed_shape": lambda: generator.sample(video, y, tf.constant(2), tf.constant(0.7), tf.constant([1, 2, 3])),
}
if key == "caption":
  probe = tf.constant(data["probe"].tolist())
  for name, value in evaluator.check_captions(probe).items():
    out["check_" + name] = value.numpy().astype(str) if value.dtype == tf.string else value.numpy()
  result = sample(0, 2, [3, 4], y=probe)
  out["frames_probe"], out["sample_num_unknown_words"] = result["frames"].numpy(), result["num_unknown_words"].numpy()
  out["log_prob_num_unknown_words"] = evaluator.log_prob(video, probe)["num_unknown_words"].numpy()
else:
  bad["label_range"] = lambda: evaluator.log_prob(video, tf.constant([0, 1, 18]))
for name, call in bad.items():
  try:
    call()
    out["bad_" + name] = np.array("")
  except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
    out["bad_" + name] = np.array(f"{type(e).__name__}: {e}")
np.savez(sys.argv[3], **out)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  from t2v.problems.captioned_shapes import CaptionedShapes  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("tfds"))
  CaptionedShapes(path, config="tiny32").prepare()
  return path


def _train(data_dir: str, output_dir: str, condition: str) -> str:
  """cglow_video_tiny conditioned on `condition`, trained 2 steps on captioned shapes tiny32 (5 frames, 32x32)."""
  from t2v import trainer  # pylint: disable=import-outside-toplevel
  trainer.run(problem="captioned_shapes", problem_config="tiny32", model="cglow_video", hparams_set="cglow_video_tiny",
              hparams_overrides=f"condition={condition}", data_dir=data_dir, output_dir=output_dir, train_steps=2,
              eval_steps=1, eval_every=2, checkpoint_every=0, strategy="one_device", num_samples=0)
  return output_dir


@pytest.fixture(scope="module")
def caption_run(data_dir, tmp_path_factory) -> str:
  return _train(data_dir, str(tmp_path_factory.mktemp("caption_run")), "caption")


@pytest.fixture(scope="module")
def label_run(data_dir, tmp_path_factory) -> str:
  return _train(data_dir, str(tmp_path_factory.mktemp("label_run")), "label")


def _consume(export_dir: str, tmp_path, **data) -> dict[str, np.ndarray]:
  """Runs CONSUMER on `data` in a fresh process without t2v; its outputs."""
  return hub_consumer.consume(CONSUMER, export_dir, tmp_path, **data)


def _check_against_model(out, model, clips, key, y) -> None:
  """The consumer's log_prob and samples are the Python model's; a seed gives one video, another seed another."""
  batch = {"video": tf.constant(clips), key: y}
  expected = model.log_prob_bpp(batch, 0, seed=tf.constant([0, 0])).numpy()  # [3, 5]
  np.testing.assert_allclose(out["bpp_per_frame"], expected, atol=1e-4)
  np.testing.assert_allclose(out["bpp"], expected.mean(1), atol=1e-4)
  short = model.log_prob_bpp({"video": tf.constant(clips[:, :2]), key: y}, 0, seed=tf.constant([0, 0])).numpy()
  np.testing.assert_allclose(out["bpp_two_frames"], short, atol=1e-4)  # the time dimension is dynamic
  expected_frames = model.sample({"video": clips[:, :0], key: y}, 5, 0.7, seed=(3, 4)).numpy()
  assert out["frames_0"].shape == (3, 5, 32, 32, 3) and out["frames_0"].dtype == np.uint8
  np.testing.assert_array_equal(out["frames_0"], expected_frames)
  np.testing.assert_array_equal(out["frames_0_again"], out["frames_0"])
  assert (out["frames_0_other_seed"] != out["frames_0"]).any()
  np.testing.assert_array_equal(out["frames_2"], model.sample({"video": clips[:, :2], key: y}, 3, 0.7,
                                                              seed=(3, 4)).numpy())


def _check_refusals(out, condition_spec: str) -> None:
  """Wrong dtypes and ranks are refused by the signature, naming the expected TensorSpec; wrong values by the
  graph, with the message saying what to pass."""
  video_spec = "TensorSpec(shape=(None, None, 32, 32, 3), dtype=tf.uint8"
  for name, expected in [("video_dtype", video_spec), ("video_rank", video_spec), ("frame_size", video_spec),
                         ("condition_rank", condition_spec), ("condition_dtype", condition_spec),
                         ("seed_shape", "TensorSpec(shape=(2,), dtype=tf.int32"),
                         ("condition_batch", "pass one"), ("num_frames", "num_frames must be >= 1"),
                         ("no_frames", "video must have at least 1 frame(s)")]:
    message = str(out[f"bad_{name}"])
    assert expected in message, (name, message[:800])


def _check_readme(path: str, *expected: str) -> None:
  readme = open(path).read()
  for text in expected:
    assert text in readme, (text, readme[:3000])


def test_caption_modules_match_the_python_model_in_a_fresh_process(caption_run, data_dir, tmp_path):
  export_dir = str(tmp_path / "export")
  assert sorted(export(caption_run, export_dir)) == ["evaluator", "generator"]
  assert not [name for name in os.listdir(export_dir) if name.startswith(".export-")]  # staging removed
  _check_readme(os.path.join(export_dir, "evaluator", "README.md"), "`log_prob(video, caption)`", "hub.load",
                "bits_per_pixel_per_frame", "num_unknown_words", "check_captions(caption)", "unknown-word token",
                "dynamic", "module.log_prob(video, captions)")
  _check_readme(os.path.join(export_dir, "generator", "README.md"),
                "`sample(video, caption, num_frames, temperature, seed)`", "Tc = 0", "the same seed",
                "unknown-word token", "check_captions(caption)", "tf.constant(['red circle', 'green circle'])",
                "module.sample(no_frames, captions, tf.constant(8)")

  problem, model, _ = restore_run(caption_run, data_dir)
  batch = next(iter(problem.dataset(problem.eval_split, batch_size=3, training=False)))
  clips, captions = batch["video"].numpy(), [c.decode() for c in batch["caption"].numpy()]
  out = _consume(export_dir, tmp_path, video=clips, caption=np.array(captions), probe=np.array(PROBE_CAPTIONS))

  _check_against_model(out, model, clips, "caption", tf.constant(captions))
  _check_refusals(out, "TensorSpec(shape=(None,), dtype=tf.string")
  # Unknown words: counted and named as the model's unknown_words does, read as the unknown-word token.
  unknown = model.unknown_words(PROBE_CAPTIONS)
  assert unknown == {1: ["a", "purple"]}
  np.testing.assert_array_equal(out["check_num_unknown_words"], [0, 2, 0])
  np.testing.assert_array_equal(out["sample_num_unknown_words"], [0, 2, 0])
  np.testing.assert_array_equal(out["log_prob_num_unknown_words"], [0, 2, 0])
  assert out["check_unknown_words"].tolist() == [["", ""], ["a", "purple"], ["", ""]]
  np.testing.assert_array_equal(out["check_num_words"], [5, 5, 9])
  np.testing.assert_array_equal(out["check_num_ignored_words"], [0, 0, 2])
  probe = {"video": clips[:, :0], "caption": PROBE_CAPTIONS}
  with pytest.raises(ValueError, match="purple"):
    model.sample(probe, 2, 0.7, seed=(3, 4))
  np.testing.assert_array_equal(out["frames_probe"],
                                model.sample(probe, 2, 0.7, seed=(3, 4), allow_unknown_words=True).numpy())


def test_label_modules_match_the_python_model_in_a_fresh_process(label_run, data_dir, tmp_path):
  export_dir = str(tmp_path / "export")
  export(label_run, export_dir)
  _check_readme(os.path.join(export_dir, "generator", "README.md"),
                "`sample(video, label, num_frames, temperature, seed)`", "0 'red circle'",
                "module.sample(no_frames, labels, tf.constant(8)")
  _check_readme(os.path.join(export_dir, "evaluator", "README.md"), "`log_prob(video, label)`")
  assert "check_captions" not in open(os.path.join(export_dir, "evaluator", "README.md")).read()

  problem, model, _ = restore_run(label_run, data_dir)
  batch = next(iter(problem.dataset(problem.eval_split, batch_size=3, training=False)))
  clips, labels = batch["video"].numpy(), batch["label"].numpy().astype(np.int32)
  out = _consume(export_dir, tmp_path, video=clips, label=labels)

  _check_against_model(out, model, clips, "label", tf.constant(labels))
  _check_refusals(out, "TensorSpec(shape=(None,), dtype=tf.int32")
  message = str(out["bad_label_range"])
  assert "label ids must lie in 0..17, got] [18]" in message, message[:800]  # (tf.debugging.Assert's brackets)


def test_export_refusals(caption_run, tmp_path, monkeypatch):
  with pytest.raises(ConfigError, match=r"unknown module\(s\) encoder for cglow_video; valid: evaluator, generator"):
    export(caption_run, str(tmp_path / "export"), modules=["encoder"])
  monkeypatch.delitem(export_lib.MODEL_MODULES, "cglow_video")  # a model without hub modules
  with pytest.raises(ConfigError, match="model 'cglow_video' has no hub modules yet; exportable models: videoflow"):
    export(caption_run, str(tmp_path / "export"))
  assert not os.path.exists(tmp_path / "export")
