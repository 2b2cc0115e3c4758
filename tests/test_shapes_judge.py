"""Tests of t2v.metrics.shapes_judge on rendered ground truth, corrupted videos, noise and bad input.

Ground truth comes from the dataset's own renderer (sample_example and render_video), so "valid and recognised"
means the judge agrees with the dataset on every video; corruptions are built from the same renderer.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from t2v import metrics
from t2v.metrics import caption_judge
from t2v.metrics import shapes_judge as judge
from t2v.problems import captioned_shapes as captioned
from t2v.problems import stochastic_shapes as shapes_lib

CONFIGS = {size: shapes_lib.CONFIGS[name] for size, name in ((64, "default"), (32, "tiny32"))}
COLOR_NAMES = tuple(shapes_lib.COLORS)
DIRECTION_NAMES = tuple(shapes_lib.DIRECTIONS)


def _render(config: shapes_lib.StochasticShapesConfig, shape: str, color: str, size: int,
            positions: np.ndarray) -> np.ndarray:
  """A video of `shape` at each of `positions` [T, 2]; uint8 [T, H, W, 3]."""
  mask = shapes_lib.shape_mask(shape, size, np.asarray(positions, np.float64), config.frame_size)
  rgb = np.asarray(shapes_lib.COLORS[color], np.uint8)
  return np.where(mask[..., None], rgb, np.uint8(shapes_lib.BACKGROUND)).astype(np.uint8)


def _centred_positions(config: shapes_lib.StochasticShapesConfig, steps: np.ndarray) -> np.ndarray:
  """Positions [T, 2] starting so that the path given by `steps` [T-1, 2] is centred in the frame."""
  path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
  return path - (path.min(axis=0) + path.max(axis=0)) / 2 + config.frame_size // 2


def _unit(direction: str) -> np.ndarray:
  return np.asarray(shapes_lib.DIRECTIONS[direction], np.float64)


def _grid_videos(config: shapes_lib.StochasticShapesConfig, seed: int, colors: tuple[str, ...] = COLOR_NAMES
                 ) -> tuple[np.ndarray, dict[str, list]]:
  """Every shape x colour x size x direction, at a random fractional start; videos and ground truth."""
  rng = np.random.default_rng(seed)
  videos, truth = [], {"shape": [], "color": [], "size": [], "direction": []}
  for shape, color, size, direction in itertools.product(shapes_lib.SHAPES, colors, config.sizes,
                                                         DIRECTION_NAMES):
    jitter = config.max_jitter(size) - 1
    start = config.frame_size // 2 + rng.uniform(-jitter, jitter, size=2)
    videos.append(shapes_lib.render_video(shape, shapes_lib.COLORS[color], size, direction, tuple(start),
                                          config.speed, config.num_frames, config.frame_size))
    for key, value in (("shape", shape), ("color", color), ("size", size), ("direction", direction)):
      truth[key].append(value)
  return np.stack(videos), truth


# ---- ground truth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("frame_size", [64, 32])
def test_dataset_examples_are_valid_and_recognised(frame_size):
  config = CONFIGS[frame_size]
  examples = [shapes_lib.sample_example(config, split, i) for split in ("train", "test") for i in range(100)]
  results = judge.judge_videos(np.stack([e["video"] for e in examples]))
  for example, result in zip(examples, results):
    assert result.valid, result.reasons
    assert result.shape == shapes_lib.SHAPES[example["shape"]]
    assert result.color == COLOR_NAMES[example["color"]]
    assert result.direction == DIRECTION_NAMES[example["direction"]]
    assert result.size == example["size"]
    assert result.speed == pytest.approx(config.speed, abs=0.3)
    assert judge.matches(result, shape=example["shape"], color=example["color"], direction=example["direction"],
                         size=example["size"])
  # The 200 examples cover every value of every attribute.
  for key, count in (("shape", 3), ("color", 6), ("direction", 8), ("size", 3)):
    assert len({int(e[key]) for e in examples}) == count, key


@pytest.mark.parametrize("frame_size", [64, 32])
def test_every_combination_at_fractional_positions_is_valid_and_recognised(frame_size):
  videos, truth = _grid_videos(CONFIGS[frame_size], seed=frame_size)  # 3 * 6 * 3 * 8 = 432 videos
  summary = judge.judge_batch(videos, truth)
  assert summary.valid_rate == 1.0, summary.reason_counts
  assert summary.agreement == {"shape": 1.0, "color": 1.0, "size": 1.0, "direction": 1.0}
  assert summary.match_rate == 1.0
  assert summary.direction_entropy_bits == pytest.approx(3.0)  # each direction 54 times
  assert set(summary.direction_counts.values()) == {54}


@pytest.mark.parametrize("frame_size,sigma", [(64, 4.0), (32, 4.0), (64, 12.0), (32, 12.0)])
def test_mild_gaussian_noise_keeps_videos_valid(frame_size, sigma):
  # 3 shapes x 2 colours x 3 sizes x 8 directions = 144 videos.
  videos, truth = _grid_videos(CONFIGS[frame_size], seed=frame_size + 1, colors=("cyan", "red"))
  rng = np.random.default_rng(0)
  noise = rng.standard_normal(videos.shape, dtype=np.float32) * np.float32(sigma)
  noisy = np.clip(videos + noise, 0, 255).round().astype(np.uint8)
  summary = judge.judge_batch(noisy, truth)
  assert summary.valid_rate == 1.0, summary.reason_counts
  assert summary.match_rate == 1.0


def test_single_frame_is_judged_without_motion():
  example = shapes_lib.sample_example(CONFIGS[64], "train", 3)
  result = judge.judge_video(example["video"][:1])
  assert result.valid, result.reasons
  assert result.shape == shapes_lib.SHAPES[example["shape"]]
  assert result.direction is None and result.speed is None


# ---- corruptions ------------------------------------------------------------------------------------

def _base(config, rng) -> dict:
  """Random ground-truth parameters with a path centred in the frame."""
  direction = DIRECTION_NAMES[rng.integers(8)]
  steps = np.tile(config.speed * _unit(direction), (config.num_frames - 1, 1))
  return {"shape": shapes_lib.SHAPES[rng.integers(3)], "color": COLOR_NAMES[rng.integers(6)],
          "size": int(config.sizes[rng.integers(3)]), "direction": direction,
          "positions": _centred_positions(config, steps)}


def _colour_change(config, rng):
  base = _base(config, rng)
  other = COLOR_NAMES[(COLOR_NAMES.index(base["color"]) + 1 + rng.integers(5)) % 6]
  video = _render(config, base["shape"], base["color"], base["size"], base["positions"])
  video[2:] = _render(config, base["shape"], other, base["size"], base["positions"])[2:]
  return video


def _direction_change(config, rng):
  base = _base(config, rng)
  k = DIRECTION_NAMES.index(base["direction"])
  turned = DIRECTION_NAMES[(k + 2 + rng.integers(5)) % 8]  # 90 to 270 degrees away
  steps = np.stack([config.speed * _unit(base["direction"])] * 2 + [config.speed * _unit(turned)] * 2)
  return _render(config, base["shape"], base["color"], base["size"], _centred_positions(config, steps))


def _second_shape(config, rng):
  base = _base(config, rng)
  video = _render(config, base["shape"], base["color"], config.sizes[-1], base["positions"])
  mask = (video != shapes_lib.BACKGROUND).any(-1)
  size = int(config.sizes[0])
  for _ in range(100):  # a smaller static shape that does not touch the first in any frame
    centre = rng.uniform(size, config.frame_size - 1 - size, size=2)
    extra = shapes_lib.shape_mask(shapes_lib.SHAPES[rng.integers(3)], size, np.tile(centre, (config.num_frames, 1)),
                                  config.frame_size)
    grown = np.stack([np.pad(extra, ((0, 0), (2, 2), (2, 2)))[:, 2 + dy:2 + dy + config.frame_size,
                                                                2 + dx:2 + dx + config.frame_size]
                      for dy in range(-2, 3) for dx in range(-2, 3)]).any(0)
    if not (grown & mask).any():
      video[extra] = shapes_lib.COLORS[COLOR_NAMES[rng.integers(6)]]
      return video
  raise AssertionError("no room for a second shape")


def _shape_change(config, rng):
  base = _base(config, rng)
  other = shapes_lib.SHAPES[(shapes_lib.SHAPES.index(base["shape"]) + 1 + rng.integers(2)) % 3]
  video = _render(config, base["shape"], base["color"], base["size"], base["positions"])
  video[2:] = _render(config, other, base["color"], base["size"], base["positions"])[2:]
  return video


def _size_change(config, rng):
  base = _base(config, rng)
  video = _render(config, base["shape"], base["color"], config.sizes[0], base["positions"])
  video[3:] = _render(config, base["shape"], base["color"], config.sizes[-1], base["positions"])[3:]
  return video


def _vanishes(config, rng):
  base = _base(config, rng)
  video = _render(config, base["shape"], base["color"], base["size"], base["positions"])
  video[3:] = shapes_lib.BACKGROUND
  return video


def _speed_change(config, rng):
  base = _base(config, rng)
  unit = _unit(base["direction"])
  steps = np.stack([config.speed * unit] * 2 + [2 * config.speed * unit] * 2)  # doubles after frame 2
  return _render(config, base["shape"], base["color"], base["size"], _centred_positions(config, steps))


def _stationary(config, rng):
  base = _base(config, rng)
  return _render(config, base["shape"], base["color"], base["size"], np.tile(base["positions"][2], (5, 1)))


def _wrong_speed(config, rng):
  base = _base(config, rng)
  steps = np.tile(1.5 * config.speed * _unit(base["direction"]), (4, 1))  # constant, but not the dataset's
  return _render(config, base["shape"], base["color"], base["size"], _centred_positions(config, steps))


def _noise_frame(config, rng):
  base = _base(config, rng)
  video = _render(config, base["shape"], base["color"], base["size"], base["positions"])
  video[2] = rng.integers(0, 256, size=video[2].shape, dtype=np.uint8)
  return video


def _all_background(config, rng):
  del rng
  return np.full((config.num_frames, config.frame_size, config.frame_size, 3), shapes_lib.BACKGROUND, np.uint8)


CORRUPTIONS = {
    "colour change": (_colour_change, judge.COLOR_CHANGES),
    "direction change": (_direction_change, judge.DIRECTION_CHANGES),
    "second shape": (_second_shape, judge.SEVERAL_OBJECTS),
    "shape change": (_shape_change, judge.SHAPE_CHANGES),
    "size change": (_size_change, judge.SIZE_CHANGES),
    "vanishes": (_vanishes, judge.NO_OBJECT),
    "speed change": (_speed_change, judge.SPEED_CHANGES),
    "stationary": (_stationary, judge.STATIONARY),
    "wrong speed": (_wrong_speed, judge.WRONG_SPEED),
    "noise frame": (_noise_frame, judge.NOISY_FRAME),
    "all background": (_all_background, judge.NO_OBJECT),
}
# Corruptions that change nothing but what they name: the judge must give that reason alone.
ONLY_REASON = {"colour change", "direction change", "second shape", "vanishes", "speed change", "stationary",
               "wrong speed", "noise frame", "all background"}


@pytest.mark.parametrize("frame_size", [64, 32])
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_videos_are_invalid_for_the_right_reason(corruption, frame_size):
  make, code = CORRUPTIONS[corruption]
  config = CONFIGS[frame_size]
  rng = np.random.default_rng(list(CORRUPTIONS).index(corruption) + 100 * frame_size)
  videos = np.stack([make(config, rng) for _ in range(24)])
  for result in judge.judge_videos(videos):
    assert not result.valid
    assert code in result.codes, result.reasons
    if corruption in ONLY_REASON:
      assert result.codes == (code,), result.reasons
    # the object is kept exactly when only its motion is wrong
    assert result.object_kept == (code in judge.MOTION_CODES), result.reasons
    assert all(reason.split(": ", 1)[0] in judge.REASON_CODES for reason in result.reasons)
    # Direction is only reported for a valid motion.
    assert result.direction is None or corruption in ("colour change", "second shape", "shape change",
                                                      "size change")
  assert set(judge.MOTION_CODES) < set(judge.REASON_CODES)


def test_off_grid_direction_is_invalid():
  config = CONFIGS[64]
  angle = np.radians(20.0)  # 20 degrees off E; the nearest valid directions are 45 degrees apart
  steps = np.tile(config.speed * np.asarray([-np.sin(angle), np.cos(angle)]), (4, 1))
  result = judge.judge_video(_render(config, "square", "red", 8, _centred_positions(config, steps)))
  assert result.codes == (judge.OFF_DIRECTION,), result.reasons


def test_all_background_reports_nothing_detected():
  result = judge.judge_video(_all_background(CONFIGS[32], None))
  assert (result.shape, result.color, result.size, result.direction, result.speed) == (None,) * 5
  assert np.isnan(result.centroids).all()


@pytest.mark.parametrize("density", [0.1, 0.45, 0.6, 0.9])
def test_components_match_scipy(density):
  ndimage = pytest.importorskip("scipy.ndimage")
  rng = np.random.default_rng(int(density * 100))
  foreground = rng.random((6, 23, 31)) < density  # around and above the percolation threshold
  pixels, roots = judge._components(foreground)
  structure = np.zeros((3, 3, 3), bool)
  structure[1] = True  # 8-connected within a frame, not across frames
  labels, _ = ndimage.label(foreground, structure=structure)
  assert np.array_equal(pixels, np.flatnonzero(foreground))
  expected = labels.reshape(-1)[pixels]
  # The same partition: a component's root is its first pixel, so the mapping labels <-> roots is one-to-one.
  assert len(set(zip(expected.tolist(), roots.tolist()))) == len(set(expected.tolist())) == len(set(roots.tolist()))
  assert np.all(roots <= np.arange(len(roots))) and np.all(roots[roots] == roots)


# ---- aggregation, captions and continuations --------------------------------------------------------

def test_direction_entropy():
  assert judge.direction_entropy(DIRECTION_NAMES * 5) == pytest.approx(3.0)
  assert judge.direction_entropy(["NE"] * 7) == 0.0
  assert judge.direction_entropy([0, 4, None]) == pytest.approx(1.0)  # indices count, None is skipped
  assert judge.direction_entropy([]) == 0.0
  with pytest.raises(ValueError, match="unknown direction 'UP'"):
    judge.direction_entropy(["UP"])


def test_summary_of_examples_and_decodes():
  config = CONFIGS[32]
  rng = np.random.default_rng(5)
  # 3 examples x 8 decodes: example 0 decodes go every direction, example 1 always E, example 2 is all invalid.
  decodes = np.empty((3, 8, 5, 32, 32, 3), np.uint8)
  for d, direction in enumerate(DIRECTION_NAMES):
    for e, heading in ((0, direction), (1, "E")):
      steps = np.tile(config.speed * _unit(heading), (4, 1))
      decodes[e, d] = _render(config, "circle", "blue", 4, _centred_positions(config, steps))
    decodes[2, d] = _stationary(config, rng)
  summary = judge.judge_batch(decodes, {"shape": ["circle", "circle", "square"], "color": [2, 2, 2]})
  assert summary.num_videos == 24
  assert summary.valid_rate == pytest.approx(16 / 24)
  assert summary.object_kept_rate == 1.0  # example 2's objects are kept, only they do not move
  assert summary.direction_counts["E"] == 9 and summary.direction_counts["W"] == 1
  assert sum(summary.direction_distribution.values()) == pytest.approx(1.0)
  assert summary.example_direction_entropy_bits == pytest.approx((3.0 + 0.0 + 0.0) / 3)
  assert summary.reason_counts == {judge.STATIONARY: 8}
  assert summary.agreement["color"] == pytest.approx(16 / 24)  # example 2's decodes are not blue
  assert summary.match_rate == pytest.approx(16 / 24)
  flat = judge.summarize([r for group in judge.judge_videos(decodes) for r in group])
  assert flat.example_direction_entropy_bits is None and flat.valid_rate == summary.valid_rate
  with pytest.raises(ValueError, match="expected \\[3\\] or \\[3, 8\\]"):
    judge.judge_batch(decodes, {"shape": ["circle"] * 5})
  with pytest.raises(ValueError, match="unknown ground-truth keys \\['colour'\\]"):
    judge.judge_batch(decodes, {"colour": [0, 0, 0]})


def test_matches_checks_validity_and_each_attribute():
  example = shapes_lib.sample_example(CONFIGS[64], "test", 7)
  result = judge.judge_video(example["video"])
  assert judge.matches(result)
  assert judge.matches(result, shape=shapes_lib.SHAPES[example["shape"]], direction=example["direction"])
  assert not judge.matches(result, shape=(example["shape"] + 1) % 3)
  assert not judge.matches(result, color=(example["color"] + 1) % 6)
  assert not judge.matches(result, direction=(example["direction"] + 1) % 8)
  assert not judge.matches(result, size=example["size"] + 1)
  broken = example["video"].copy()
  broken[4] = shapes_lib.BACKGROUND
  assert not judge.matches(judge.judge_video(broken))
  with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
    judge.matches(result, shape="hexagon")


def test_continuation():
  config = CONFIGS[64]
  first, second = (shapes_lib.sample_example(config, "train", i) for i in (0, 1))
  video = first["video"]
  assert judge.judge_continuation(video[:1], video[1:]).valid
  assert judge.judge_continuation(video[:2], video[2:]).valid
  # Another video's frames do not continue this one, though they are valid alone.
  joined = judge.judge_continuation(video[:1], second["video"][1:])
  assert not joined.valid
  assert judge.judge_continuation(video[:1], second["video"][1:], continuity=False).valid
  # The right object, but it jumps: frames 1.. are the video shifted by one more step.
  jumped = judge.judge_continuation(video[:1], video[2:])
  assert not jumped.valid and set(jumped.codes) & {judge.SPEED_CHANGES, judge.WRONG_SPEED}
  # Batched: context [E, Tc, ...] broadcast over generated [E, D, Tg, ...].
  context = np.stack([first["video"][:1], second["video"][:1]])  # [2, 1, 64, 64, 3]
  generated = np.stack([np.stack([first["video"][1:]] * 3), np.stack([first["video"][1:]] * 3)])  # [2, 3, 4, ...]
  results = judge.judge_continuation(context, generated)
  assert [[r.valid for r in group] for group in results] == [[True] * 3, [False] * 3]
  with pytest.raises(ValueError, match="does not fit generated"):
    judge.judge_continuation(context[:1, :, :32, :32], generated)


# ---- caption accuracy (captioned_shapes) ------------------------------------------------------------

HELDOUT = (("triangle", "red"), ("square", "blue"))


def _grid_captions(config: shapes_lib.StochasticShapesConfig, seed: int, shift: dict[str, int] | None = None
                   ) -> tuple[np.ndarray, list[str], np.ndarray]:
  """The 432 grid videos, their captions with each attribute in `shift` moved on by that many values (wrong
  captions), and whether each video's true (shape, colour) is held out."""
  videos, truth = _grid_videos(config, seed)
  shift = shift or {}
  captions = []
  for shape, color, size, direction in zip(truth["shape"], truth["color"], truth["size"], truth["direction"]):
    index = {"shape": shapes_lib.SHAPES.index(shape), "color": COLOR_NAMES.index(color),
             "size": list(config.sizes).index(size), "direction": DIRECTION_NAMES.index(direction)}
    count = {"shape": 3, "color": 6, "size": 3, "direction": 8}
    index = {key: (value + shift.get(key, 0)) % count[key] for key, value in index.items()}
    captions.append(captioned.caption_for(**index))
  is_heldout = np.asarray([(s, c) in HELDOUT for s, c in zip(truth["shape"], truth["color"])])
  return videos, captions, is_heldout


@pytest.mark.parametrize("frame_size", [64, 32])
def test_caption_accuracy_is_one_on_ground_truth(frame_size):
  config = CONFIGS[frame_size]
  videos, captions, is_heldout = _grid_captions(config, seed=frame_size + 2)
  all_ones = {"shape": 1.0, "color": 1.0, "size": 1.0, "direction": 1.0}
  # The held-out set given as (shape, colour) pairs, matched against the captions.
  summary = caption_judge.judge_captions(videos, captions, heldout=HELDOUT, config=config)
  assert summary.checks_size and summary.matched == (True,) * 432
  for score, count in ((summary.overall, 432), (summary.seen, 432 - 48), (summary.heldout, 48)):
    assert (score.num_videos, score.valid_rate, score.accuracy) == (count, 1.0, 1.0)
    assert score.attribute_accuracy == all_ones
  # The same as flags, one per video; without a config the sizes come from the frame size.
  flagged = caption_judge.judge_captions(videos, captions, heldout=is_heldout)
  assert flagged.heldout == summary.heldout and flagged.seen == summary.seen
  assert caption_judge.judge_captions(videos, captions).heldout is None


@pytest.mark.parametrize("frame_size", [64, 32])
def test_caption_accuracy_is_zero_on_wrong_captions(frame_size):
  config = CONFIGS[frame_size]
  videos, wrong, is_heldout = _grid_captions(config, seed=frame_size + 3,
                                             shift={"shape": 1, "color": 1, "size": 1, "direction": 3})
  # Flags from the true combinations: the wrong captions name other (shape, colour) pairs.
  summary = caption_judge.judge_captions(videos, wrong, heldout=is_heldout, config=config)
  all_zeros = {"shape": 0.0, "color": 0.0, "size": 0.0, "direction": 0.0}
  for score, count in ((summary.overall, 432), (summary.seen, 384), (summary.heldout, 48)):
    assert (score.num_videos, score.valid_rate, score.accuracy) == (count, 1.0, 0.0)
    assert score.attribute_accuracy == all_zeros
  assert not any(summary.matched)


@pytest.mark.parametrize("attribute,count", [("shape", 3), ("color", 6), ("size", 3), ("direction", 8)])
def test_one_wrong_attribute_fails_the_caption_and_only_that_attribute(attribute, count):
  config = CONFIGS[32]
  videos, wrong, is_heldout = _grid_captions(config, seed=7, shift={attribute: count // 2})
  summary = caption_judge.judge_captions(videos, wrong, heldout=is_heldout, config=config)
  assert summary.overall.accuracy == 0.0 and summary.heldout.accuracy == 0.0
  expected = {key: float(key != attribute) for key in ("shape", "color", "size", "direction")}
  assert summary.overall.attribute_accuracy == expected and summary.heldout.attribute_accuracy == expected
  if attribute == "size":  # without size checks the caption is right
    unsized = caption_judge.judge_captions(videos, wrong, heldout=is_heldout, check_size=False)
    assert not unsized.checks_size and unsized.overall.accuracy == 1.0 and unsized.heldout.accuracy == 1.0
    assert "size" not in unsized.overall.attribute_accuracy


def test_caption_forms_nesting_and_partial_captions():
  config = CONFIGS[32]
  example = shapes_lib.sample_example(config, "test", 11)
  result = judge.judge_video(example["video"])
  sizes = config.sizes
  words = {"shape": shapes_lib.SHAPES[example["shape"]], "color": COLOR_NAMES[example["color"]],
           "size": captioned.SIZE_WORDS[list(sizes).index(example["size"])],
           "direction": DIRECTION_NAMES[example["direction"]]}
  caption = captioned.caption_for(**words)
  assert caption_judge.matches_caption(result, caption, sizes=sizes)
  assert caption_judge.matches_caption(result, caption.encode(), sizes=sizes)  # bytes, as tf.data yields them
  assert caption_judge.matches_caption(result, captioned.parse_caption(caption), sizes=sizes)
  assert caption_judge.matches_caption(result, {"shape": example["shape"], "color": example["color"],
                                        "size": example["size"]})  # dataset indices and pixels
  assert caption_judge.matches_caption(result, f"{words['color']} {words['shape']}")  # a label caption: 2 attributes
  other_size = captioned.SIZE_WORDS[(captioned.SIZE_WORDS.index(words["size"]) + 1) % 3]
  wrong_size = captioned.caption_for(**{**words, "size": other_size})
  assert not caption_judge.matches_caption(result, wrong_size, sizes=sizes)
  assert caption_judge.matches_caption(result, wrong_size)  # no sizes: size words unchecked
  broken = example["video"].copy()
  broken[2:] = shapes_lib.BACKGROUND
  assert not caption_judge.matches_caption(judge.judge_video(broken), caption, sizes=sizes)
  # [E, D] decodes with one caption per example; the heldout flags per example too.
  decodes = np.stack([np.stack([example["video"], broken])] * 2)  # [2, 2, T, H, W, 3]
  summary = caption_judge.judge_captions(decodes, [caption, wrong_size], heldout=[False, True], config=config)
  assert summary.matched == (True, False, False, False)
  assert summary.overall.accuracy == 0.25 and summary.seen.accuracy == 0.5 and summary.heldout.accuracy == 0.0
  assert summary.overall.attribute_accuracy["color"] == 1.0  # detected in every frame, even of the broken one
  assert summary.overall.attribute_accuracy["direction"] == 0.5  # the broken decodes have no motion
  # A label caption's missing attributes are not scored.
  partial = caption_judge.summarize_captions([result], ["red circle" if words["shape"] != "circle" else "red square"])
  assert set(partial.overall.attribute_accuracy) == {"shape", "color"}


def test_caption_errors():
  config = CONFIGS[32]
  videos = np.stack([shapes_lib.sample_example(config, "test", i)["video"] for i in range(3)])
  with pytest.raises(ValueError, match="unknown word 'hexagon'"):
    caption_judge.judge_captions(videos, ["small red hexagon"] * 3)
  with pytest.raises(ValueError, match="captions has 2 entries; expected \\[3\\]"):
    caption_judge.judge_captions(videos, ["red circle"] * 2)
  with pytest.raises(ValueError, match="heldout flags has 2 entries"):
    caption_judge.judge_captions(videos, ["red circle"] * 3, heldout=[True, False])
  with pytest.raises(ValueError, match="heldout entry 'red triangle' must be a \\(shape, colour\\) pair"):
    caption_judge.judge_captions(videos, ["red circle"] * 3, heldout=["red triangle"])
  with pytest.raises(ValueError, match="unknown caption attributes \\['colour'\\]"):
    caption_judge.judge_captions(videos, [{"colour": "red"}] * 3)
  with pytest.raises(ValueError, match="unknown size 'huge'"):
    caption_judge.matches_caption(judge.judge_video(videos[0]), {"size": "huge"})
  with pytest.raises(ValueError, match="sizes=\\(3, 4\\) must be the dataset's 3 sizes"):
    caption_judge.matches_caption(judge.judge_video(videos[0]), "small circle", sizes=(3, 4))


# ---- input checks, config, speed --------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (np.zeros((5, 64, 64), np.uint8), "got rank 3"),
    (np.zeros((5, 64, 64, 3), np.float32), "got dtype float32"),
    (np.zeros((5, 64, 64, 4), np.uint8), "got 4 channels"),
    (np.zeros((5, 64, 48, 3), np.uint8), "got 64x48 frames"),
])
def test_bad_video_raises(bad, match):
  with pytest.raises(ValueError, match=match) as info:
    judge.judge_video(bad)
  assert "[T, H, W, 3]" in str(info.value)


def test_bad_batch_and_config_raise():
  with pytest.raises(ValueError, match=r"\[N, T, H, W, 3\] or \[examples, decodes, T, H, W, 3\].*got rank 4"):
    judge.judge_videos(np.zeros((5, 64, 64, 3), np.uint8))
  with pytest.raises(ValueError, match="frame_size 64"):
    judge.judge_videos(np.zeros((1, 5, 32, 32, 3), np.uint8), config=CONFIGS[64])
  with pytest.raises(ValueError, match="StochasticShapesConfig or None"):
    judge.judge_videos(np.zeros((1, 5, 32, 32, 3), np.uint8), config="tiny32")


def test_config_sets_expected_speed():
  # At 64 px the dataset moves 4 px/frame; a config with speed 2 makes the dataset's own videos too fast.
  example = shapes_lib.sample_example(CONFIGS[64], "train", 2)
  slow = shapes_lib.StochasticShapesConfig(name="slow", speed=2.0)
  assert judge.judge_video(example["video"], config=CONFIGS[64]).valid
  assert judge.WRONG_SPEED in judge.judge_video(example["video"], config=slow).codes


def test_grid_diagonals_config():
  # With the authors' grid diagonals a diagonal shape moves speed px along each axis: valid for the grid config,
  # and sqrt(2) x too fast for the unit-vector config; axis-aligned moves are valid for both.
  grid, unit = shapes_lib.CONFIGS["small_centred_grid"], shapes_lib.CONFIGS["small_centred"]
  examples = [shapes_lib.sample_example(grid, "test", i) for i in range(64)]
  results = judge.judge_videos(np.stack([e["video"] for e in examples]), config=grid)
  assert all(r.valid for r in results), [r.reasons for r in results if not r.valid]
  assert [r.direction for r in results] == [DIRECTION_NAMES[e["direction"]] for e in examples]
  for example in examples:
    as_unit = judge.judge_video(example["video"], config=unit)
    if example["direction"] % 2:
      assert as_unit.codes == (judge.WRONG_SPEED,), as_unit.reasons
    else:
      assert as_unit.valid, as_unit.reasons
  diagonal = next(e for e in examples if e["direction"] % 2)
  slow = shapes_lib.sample_example(unit, "test", examples.index(diagonal))["video"]  # the same draw, unit steps
  assert judge.WRONG_SPEED in judge.judge_video(slow, config=grid).codes


def test_lazy_reexports():
  assert metrics.judge_batch is judge.judge_batch and metrics.Judgement is judge.Judgement
  with pytest.raises(AttributeError, match="public names"):
    metrics.no_such_metric  # pylint: disable=pointless-statement


def test_judges_1000_videos_in_seconds():
  config = CONFIGS[64]
  videos = np.stack([shapes_lib.sample_example(config, "test", i)["video"] for i in range(100)] * 10)
  start = time.perf_counter()
  summary = judge.judge_batch(videos)
  elapsed = time.perf_counter() - start
  assert summary.valid_rate == 1.0
  assert elapsed < 10.0, f"judging 1000 videos of 5x64x64 took {elapsed:.1f} s"
