"""Tests of t2v.problems.captioned_shapes: offline generation, labels and captions, held-out combinations.

The dataset is generated into a pytest tmp dir with sockets blocked; captions and labels are checked against the
stored ground truth and against the pixels (through the shapes judge).
"""

from __future__ import annotations

import itertools
import socket

import numpy as np
import pytest
import tensorflow as tf

from t2v import registry
from t2v import text
from t2v.metrics import caption_judge
from t2v.problems import base
from t2v.problems import captioned_shapes as captioned
from t2v.problems import stochastic_shapes as shapes_lib
from t2v.problems.captioned_shapes import CaptionedShapes

COLOR_NAMES = tuple(shapes_lib.COLORS)
DIRECTION_NAMES = tuple(shapes_lib.DIRECTIONS)
HELDOUT = (("triangle", "red"), ("square", "blue"))  # the configs' default


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
  """Any Python-level connection attempt fails at once: the dataset must be generated offline."""

  def refuse(*args, **kwargs):
    raise OSError("network access attempted in a captioned shapes test")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def captioned_dir(tmp_path_factory) -> str:
  """A data_dir holding the "tiny" config (64 train / 16 test / 16 test_heldout videos of 5x64x64x3)."""
  data_dir = str(tmp_path_factory.mktemp("tfds_captioned"))
  CaptionedShapes(data_dir, config="tiny").prepare()
  return data_dir


def _read(problem: CaptionedShapes, split: str) -> dict[str, np.ndarray]:
  """Every element of `split` in stored order, as numpy."""
  parts: dict[str, list[np.ndarray]] = {}
  for batch in problem.dataset(split, batch_size=32, training=False):
    for key, value in batch.items():
      parts.setdefault(key, []).append(value.numpy())
  return {key: np.concatenate(values) for key, values in parts.items()}


def _combinations(data: dict[str, np.ndarray]) -> set[tuple[str, str]]:
  return {(shapes_lib.SHAPES[s], COLOR_NAMES[c]) for s, c in zip(data["shape"], data["color"])}


# ---- the problem and its data -----------------------------------------------------------------------

def test_spec_and_registry():
  problem = registry.problem("captioned_shapes")()
  assert isinstance(problem, CaptionedShapes) and problem.config.name == "default"
  spec = problem.spec()
  assert spec == base.VideoSpec((64, 64, 3), num_input_frames=0, num_target_frames=5, num_labels=18,
                                has_caption=True, vocabulary=captioned.VOCABULARY,
                                label_captions=captioned.LABEL_CAPTIONS)
  assert spec.num_frames == 5 and problem.tfds_splits == ("train", "test", "test_heldout")
  assert problem.label_captions[:3] == ("red circle", "green circle", "blue circle")
  assert problem.heldout_combinations == HELDOUT
  assert problem.heldout_labels == (captioned.label_for("square", "blue"), captioned.label_for("triangle", "red"))
  assert problem.size_pixels("small") == 6 and problem.size_pixels("large") == 10
  small = CaptionedShapes(config="tiny32")
  assert small.frame_shape == (32, 32, 3) and small.size_pixels("medium") == 4
  with pytest.raises(ValueError, match="unknown config 'huge'.*default, tiny, tiny32"):
    CaptionedShapes(config="huge")
  with pytest.raises(ValueError, match="StochasticShapesConfig has no held-out combinations"):
    CaptionedShapes(config=shapes_lib.CONFIGS["tiny"])


def test_prepares_offline_with_three_splits(captioned_dir):
  problem = CaptionedShapes(captioned_dir, config="tiny")
  assert problem.is_prepared()
  splits = problem.builder().info.splits
  assert {name: splits[name].num_examples for name in problem.tfds_splits} == {
      "train": 64, "test": 16, "test_heldout": 16}
  assert problem.check_records("test_heldout") == 16
  with pytest.raises(base.DataNotFoundError, match="CaptionedShapes\\(data_dir, config='tiny'\\)\\.prepare\\(\\)"):
    CaptionedShapes(captioned_dir + "/elsewhere", config="tiny").dataset("train", batch_size=2, training=True)


def test_elements_shapes_and_dtypes(captioned_dir):
  problem = CaptionedShapes(captioned_dir, config="tiny")
  batch = next(iter(problem.dataset("train", batch_size=4, num_frames=3, training=True)))
  expected = {"video": (tf.uint8, (4, 3, 64, 64, 3)), "label": (tf.int32, (4,)), "caption": (tf.string, (4,)),
              "shape": (tf.int32, (4,)), "color": (tf.int32, (4,)), "color_rgb": (tf.uint8, (4, 3)),
              "size": (tf.int32, (4,)), "direction": (tf.int32, (4,)), "positions": (tf.float32, (4, 3, 2)),
              "speed": (tf.float32, (4,))}
  assert {key: (value.dtype, tuple(value.shape)) for key, value in batch.items()} == expected
  heldout = _read(problem, "test_heldout[:50%]")
  assert heldout["video"].shape == (8, 5, 64, 64, 3)
  with pytest.raises(ValueError, match="unknown split 'heldout'.*'test_heldout'"):
    problem.dataset("heldout", batch_size=2, training=False)


@pytest.mark.parametrize("split", ["train", "test", "test_heldout"])
def test_captions_and_labels_match_the_ground_truth(captioned_dir, split):
  problem = CaptionedShapes(captioned_dir, config="tiny")
  data = _read(problem, split)
  sizes = list(problem.config.sizes)
  for i, caption in enumerate(data["caption"]):
    caption = caption.decode()
    shape, color = shapes_lib.SHAPES[data["shape"][i]], COLOR_NAMES[data["color"][i]]
    size_word = captioned.SIZE_WORDS[sizes.index(int(data["size"][i]))]
    direction = DIRECTION_NAMES[data["direction"][i]]
    assert caption == captioned.caption_for(shape, color, size_word, direction)
    assert captioned.parse_caption(caption) == {"shape": shape, "color": color, "size": size_word,
                                                "direction": direction}
    assert data["label"][i] == captioned.label_for(shape, color)
    assert problem.label_captions[data["label"][i]] == f"{color} {shape}"
    np.testing.assert_array_equal(data["color_rgb"][i], shapes_lib.COLORS[color])
  # The pixels show what the captions say, on seen and on held-out combinations alike.
  summary = caption_judge.judge_captions(data["video"], data["caption"], heldout=problem.heldout_combinations,
                                 config=problem.config)
  assert summary.overall.accuracy == 1.0 and summary.overall.valid_rate == 1.0
  assert (summary.heldout.num_videos == len(data["caption"])) == (split == "test_heldout")


def test_heldout_combinations_are_only_in_test_heldout(captioned_dir):
  problem = CaptionedShapes(captioned_dir, config="tiny")
  seen = {split: _combinations(_read(problem, split)) for split in problem.tfds_splits}
  assert not seen["train"] & set(HELDOUT) and not seen["test"] & set(HELDOUT)
  assert seen["test_heldout"] == set(HELDOUT)
  # Beyond the tiny counts: 1000 drawn train and test videos cover every other combination and no held-out one.
  config = problem.config
  for split in ("train", "test"):
    drawn = {(shapes_lib.SHAPES[e["shape"]], COLOR_NAMES[e["color"]])
             for e in (captioned.sample_captioned_example(config, split, i) for i in range(1000))}
    assert drawn == set(captioned.COMBINATIONS) - set(HELDOUT), split
  labels = {int(label) for label in _read(problem, "test_heldout")["label"]}
  assert labels == set(problem.heldout_labels)


def test_videos_are_reproducible_and_split_motion_follows_stochastic_shapes():
  config = captioned.CONFIGS["tiny32"]
  for split, base_split, base_index in (("train", "train", 3), ("test", "test", 3),
                                        ("test_heldout", "test", captioned.HELDOUT_INDEX_OFFSET + 3)):
    first = captioned.sample_captioned_example(config, split, 3)
    again = captioned.sample_captioned_example(config, split, 3)
    np.testing.assert_array_equal(first["video"], again["video"])
    assert first["caption"] == again["caption"]
    motion = shapes_lib.sample_example(config, base_split, base_index)
    assert (first["size"], first["direction"]) == (motion["size"], motion["direction"])
    np.testing.assert_array_equal(first["positions"], motion["positions"])


def test_custom_heldout_config_and_bad_configs():
  config = captioned.CaptionedShapesConfig(name="green_circles", heldout=(("circle", "green"),), num_train=8,
                                           num_test=4, num_test_heldout=4)
  assert config.split_combinations("test_heldout") == (("circle", "green"),)
  assert len(config.split_combinations("train")) == 17
  example = captioned.sample_captioned_example(config, "test_heldout", 0)
  assert example["caption"].split()[1:3] == ["green", "circle"]
  with pytest.raises(ValueError, match="heldout entry \\('hexagon', 'red'\\) must be a \\(shape, colour\\) pair"):
    captioned.CaptionedShapesConfig(name="bad", heldout=(("hexagon", "red"),))
  with pytest.raises(ValueError, match="distinct"):
    captioned.CaptionedShapesConfig(name="bad", heldout=(("circle", "red"), ("circle", "red")))
  with pytest.raises(ValueError, match="at most 17 of the 18"):
    captioned.CaptionedShapesConfig(name="bad", heldout=captioned.COMBINATIONS)
  with pytest.raises(ValueError, match="at least 1"):
    captioned.CaptionedShapesConfig(name="bad", heldout=())
  with pytest.raises(ValueError, match="num_test_heldout=0 must be >= 1"):
    captioned.CaptionedShapesConfig(name="bad", num_test_heldout=0)
  with pytest.raises(ValueError, match="sizes=\\(4, 6\\) must be 3 strictly increasing"):
    captioned.CaptionedShapesConfig(name="bad", sizes=(4, 6))
  with pytest.raises(ValueError, match="unknown split 'validation'"):
    config.split_combinations("validation")


# ---- captions ---------------------------------------------------------------------------------------

def test_vocabulary_holds_every_word_of_every_caption_held_out_ones_included(captioned_dir):
  vocabulary = CaptionedShapes(config="tiny").vocabulary
  assert vocabulary == tuple(sorted(set(vocabulary)))
  assert len(list(captioned.all_captions())) == 3 * 6 * 3 * 8
  for shape, color in HELDOUT:
    for size, direction in itertools.product(captioned.SIZE_WORDS, DIRECTION_NAMES):
      assert set(text.words(captioned.caption_for(shape, color, size, direction))) <= set(vocabulary)
  # Every word is also in the training captions: held-out captions are new combinations of known words.
  train = _read(CaptionedShapes(captioned_dir, config="tiny"), "train")
  assert set(text.build_vocabulary(c.decode() for c in train["caption"])) <= set(vocabulary)
  assert set(vocabulary) == {"moving"} | set(shapes_lib.SHAPES) | set(COLOR_NAMES) | set(captioned.SIZE_WORDS) | {
      "up", "down", "left", "right"}


def test_caption_for_and_parse_caption_round_trip():
  for shape, color, size, direction in itertools.product(shapes_lib.SHAPES, COLOR_NAMES, captioned.SIZE_WORDS,
                                                         DIRECTION_NAMES):
    caption = captioned.caption_for(shape, color, size, direction)
    assert captioned.parse_caption(caption) == {"shape": shape, "color": color, "size": size,
                                                "direction": direction}
  assert captioned.caption_for("circle", "red", "small", "NW") == "small red circle moving up-left"
  assert captioned.caption_for(2, 5, 2, 7) == "large cyan triangle moving down-right"  # indices
  # Order, case, punctuation, articles and bytes do not matter; unnamed attributes are None.
  assert captioned.parse_caption(b"A RED, small circle: moving up left!") == {
      "shape": "circle", "color": "red", "size": "small", "direction": "NW"}
  assert captioned.parse_caption("red circle") == {"shape": "circle", "color": "red", "size": None,
                                                   "direction": None}
  for label, caption in enumerate(captioned.LABEL_CAPTIONS):
    parsed = captioned.parse_caption(caption)
    assert captioned.label_for(parsed["shape"], parsed["color"]) == label


@pytest.mark.parametrize("caption,match", [
    ("small red hexagon moving up", "unknown word 'hexagon' in caption 'small red hexagon moving up'"),
    ("small red circle moving upwards", "unknown word 'upwards'"),
    ("red blue circle", "names the color twice \\('red' and 'blue'\\)"),
    ("small red circle moving left up", "'left up' in caption .* is not a direction"),
    ("moving, the", "names no shape, colour, size or direction"),
])
def test_parse_caption_errors(caption, match):
  with pytest.raises(ValueError, match=match):
    captioned.parse_caption(caption)


def test_caption_for_errors():
  with pytest.raises(ValueError, match="unknown shape 'hexagon'; valid: circle, square, triangle"):
    captioned.caption_for("hexagon", "red", "small", "N")
  with pytest.raises(ValueError, match="unknown size 'huge'; valid: small, medium, large"):
    captioned.caption_for("circle", "red", "huge", "N")
  with pytest.raises(ValueError, match="unknown direction 'up'; valid: E, NE"):
    captioned.caption_for("circle", "red", "small", "up")
  with pytest.raises(ValueError, match="unknown colour 9"):
    captioned.label_for("circle", 9)
