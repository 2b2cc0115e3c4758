"""Captioned stochastic shapes: every video carries a class label and a caption naming what it shows.

The videos are those of the Stochastic Movement dataset (t2v.problems.stochastic_shapes: one circle, square or
triangle of a palette colour and one of three sizes on grey, moving in one of eight directions), and each also
carries

  label    the class id of its (shape, colour) combination: shape index * len(COLORS) + colour index, 18 classes;
  caption  "<size> <colour> <shape> moving <direction>", e.g. "small red circle moving up-left", with the
           config's three sizes called small, medium and large and the directions E, NE, N, NW, W, SW, S, SE
           called right, up-right, up, up-left, left, down-left, down, down-right.

Why the label is (shape, colour) and not all four attributes: the label-conditioned setting gives one class per
video and leaves the rest to the model; a label that fixed the direction too would leave nothing stochastic to
learn. The caption names all four attributes, so a caption-conditioned model is told everything but the start.

Held-out combinations test whether captions compose. The config's `heldout` (shape, colour) pairs, by default
red triangles and blue squares, never appear in `train` or `test`; the split `test_heldout` holds only them.
With the default set every word of a held-out caption occurs in training ("red" with circles, "triangle" in
green), so a model that understands captions word by word can draw a red triangle without having seen one.
Labels are numbered over all 18 combinations, held-out ones included, so a held-out video's label is a valid id
that no training video has (a label-conditioned model cannot generalise to it; a caption-conditioned one may):

    problem = CaptionedShapes(data_dir="/tmp/tfds")     # config "default": 10000 train / 1000 test / 1000 held out
    problem.prepare()                                    # generated locally, ~25 s on 2 CPU cores, no download
    batch = next(iter(problem.dataset("test_heldout", batch_size=8, training=False)))
    batch["caption"][0], batch["label"][0]               # b"small blue square moving up-left", 8

Videos are drawn like the stochastic shapes ones: the size, direction and start of video i of a split are those
of `stochastic_shapes.sample_example(config, split, i)` (the test split's indices from HELDOUT_INDEX_OFFSET on
for `test_heldout`), and its (shape, colour) is drawn uniformly from the combinations its split allows by a
Generator seeded by (split, index); the video is then rendered with `render_video`. Every data_dir therefore holds
the same videos.

`caption_for` and `parse_caption` turn attributes into a caption and back, so a decoder can sample from a typed
caption and the shapes judge can check a generated video against any caption.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from t2v import text
from t2v.problems import base, stochastic_shapes
from t2v.problems.stochastic_shapes import COLORS, DIRECTIONS, SHAPES, StochasticShapesConfig
from t2v.problems.stochastic_shapes import render_video, sample_example

# ---- captions --------------------------------------------------------------------------------------

# The config's sizes, smallest first.
SIZE_WORDS: tuple[str, ...] = ("small", "medium", "large")

# DIRECTIONS (dy, dx with y down) in words; a caption writes the two-word ones with a hyphen.
DIRECTION_WORDS: dict[str, str] = {
    "E": "right",
    "NE": "up-right",
    "N": "up",
    "NW": "up-left",
    "W": "left",
    "SW": "down-left",
    "S": "down",
    "SE": "down-right",
}

# Words a caption may hold besides the attributes (the template's "moving", and articles a user may type).
FILLER_WORDS: frozenset[str] = frozenset({"a", "an", "the", "moving"})

# Every (shape, colour) combination in label order: label = shape index * len(COLORS) + colour index.
COMBINATIONS: tuple[tuple[str, str], ...] = tuple(itertools.product(SHAPES, COLORS))

_COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
_DIRECTION_NAMES: tuple[str, ...] = tuple(DIRECTIONS)
# Direction words as token tuples, e.g. ("up", "left") -> "NW" (t2v.text.words splits "up-left").
_DIRECTION_BY_TOKENS: dict[tuple[str, ...], str] = {
    tuple(text.words(phrase)): name for name, phrase in DIRECTION_WORDS.items()}
_DIRECTION_TOKENS: frozenset[str] = frozenset(word for tokens in _DIRECTION_BY_TOKENS for word in tokens)


def _name(value: str | int, names: tuple[str, ...], what: str) -> str:
  """`value` as a name in `names`, given as that name or its index."""
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= int(value) < len(names):
    return names[int(value)]
  if isinstance(value, str) and value in names:
    return value
  raise ValueError(f"captioned_shapes: unknown {what} {value!r}; valid: {', '.join(names)} (or their indices "
                   f"0..{len(names) - 1})")


def caption_for(shape: str | int, color: str | int, size: str | int, direction: str | int) -> str:
  """The caption of a video, e.g. caption_for("circle", "red", "small", "NW") == "small red circle moving up-left".

  Args:
    shape: a name in SHAPES or its index.
    color: a name in COLORS or its index.
    size: a word in SIZE_WORDS or its index, i.e. the position in the config's sizes (not pixels: the pixels
      differ between 32 and 64 px configs, the words do not).
    direction: a name in DIRECTIONS ("NW") or its index.
  """
  return (f"{_name(size, SIZE_WORDS, 'size')} {_name(color, _COLOR_NAMES, 'colour')} "
          f"{_name(shape, SHAPES, 'shape')} moving {DIRECTION_WORDS[_name(direction, _DIRECTION_NAMES, 'direction')]}")


def parse_caption(caption: str | bytes) -> dict[str, str | None]:
  """The attributes a caption names: the inverse of `caption_for`, tolerant of order, case and punctuation.

  Returns {"shape": a name in SHAPES, "color": a name in COLORS, "size": a word in SIZE_WORDS, "direction": a
  name in DIRECTIONS}, with None for an attribute the caption does not name (a label caption such as
  "red circle" names only shape and colour). Words are split as t2v.text.words does; FILLER_WORDS are skipped.

    parse_caption("small red circle moving up-left") == {"shape": "circle", "color": "red", "size": "small",
                                                         "direction": "NW"}

  Raises ValueError naming the word when a word is unknown, an attribute is named twice, the direction words
  form no direction, or the caption names nothing.
  """
  if isinstance(caption, bytes):  # captions read from a tf.data pipeline
    caption = caption.decode("utf-8")
  attributes: dict[str, str | None] = {"shape": None, "color": None, "size": None, "direction": None}
  direction_tokens: list[str] = []
  for word in text.words(caption):
    if word in FILLER_WORDS:
      continue
    if word in _DIRECTION_TOKENS:
      direction_tokens.append(word)
      continue
    for key, names in (("shape", SHAPES), ("color", _COLOR_NAMES), ("size", SIZE_WORDS)):
      if word in names:
        if attributes[key] is not None:
          raise ValueError(f"captioned_shapes: caption {caption!r} names the {key} twice ({attributes[key]!r} and "
                           f"{word!r}); name each attribute at most once")
        attributes[key] = word
        break
    else:
      known = sorted(set(SHAPES) | set(_COLOR_NAMES) | set(SIZE_WORDS) | _DIRECTION_TOKENS | FILLER_WORDS)
      raise ValueError(f"captioned_shapes: unknown word {word!r} in caption {caption!r}; the known words are "
                       f"{', '.join(known)}")
  if direction_tokens:
    direction = _DIRECTION_BY_TOKENS.get(tuple(direction_tokens))
    if direction is None:
      raise ValueError(f"captioned_shapes: {' '.join(direction_tokens)!r} in caption {caption!r} is not a "
                       f"direction; use one of {', '.join(DIRECTION_WORDS.values())}")
    attributes["direction"] = direction
  if all(value is None for value in attributes.values()):
    raise ValueError(f"captioned_shapes: caption {caption!r} names no shape, colour, size or direction; write e.g. "
                     f"{caption_for('circle', 'red', 'small', 'NW')!r}")
  return attributes


def all_captions() -> Iterator[str]:
  """Every caption the dataset can hold (held-out combinations included): 3 sizes x 6 colours x 3 shapes x 8."""
  for shape, color, size, direction in itertools.product(SHAPES, _COLOR_NAMES, SIZE_WORDS, _DIRECTION_NAMES):
    yield caption_for(shape, color, size, direction)


def label_for(shape: str | int, color: str | int) -> int:
  """The label id of a (shape, colour) combination: its index in COMBINATIONS."""
  return COMBINATIONS.index((_name(shape, SHAPES, "shape"), _name(color, _COLOR_NAMES, "colour")))


# The caption of each label id, e.g. "red circle" for label 0.
LABEL_CAPTIONS: tuple[str, ...] = tuple(f"{color} {shape}" for shape, color in COMBINATIONS)
# Every word of every possible caption: held-out captions are typed with these too.
VOCABULARY: tuple[str, ...] = text.build_vocabulary(all_captions())


# ---- the TFDS builder ------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class CaptionedShapesConfig(StochasticShapesConfig):
  """A StochasticShapesConfig (frames, sizes, speed, train/test counts) plus the held-out combinations.

  heldout: the (shape, colour) pairs kept out of train and test and making up test_heldout, e.g.
    (("triangle", "red"),); at least one, and at least one combination must remain for training.
  num_test_heldout: videos in test_heldout.
  `sizes` must be three, strictly increasing: they are the small, medium and large of the captions.
  """

  num_test_heldout: int = 1000
  heldout: tuple[tuple[str, str], ...] = (("triangle", "red"), ("square", "blue"))

  def __post_init__(self):
    super().__post_init__()
    if len(self.sizes) != len(SIZE_WORDS) or list(self.sizes) != sorted(set(self.sizes)):
      raise ValueError(f"CaptionedShapesConfig {self.name!r}: sizes={tuple(self.sizes)} must be "
                       f"{len(SIZE_WORDS)} strictly increasing sizes, the {', '.join(SIZE_WORDS)} of the captions")
    pairs = []
    for pair in self.heldout:
      if (not isinstance(pair, (tuple, list)) or len(pair) != 2 or pair[0] not in SHAPES
          or pair[1] not in _COLOR_NAMES):
        raise ValueError(f"CaptionedShapesConfig {self.name!r}: heldout entry {pair!r} must be a (shape, colour) "
                         f"pair with a shape in {', '.join(SHAPES)} and a colour in {', '.join(_COLOR_NAMES)}, "
                         "e.g. ('triangle', 'red')")
      pairs.append((pair[0], pair[1]))
    if len(set(pairs)) != len(pairs) or not pairs or len(pairs) >= len(COMBINATIONS):
      raise ValueError(f"CaptionedShapesConfig {self.name!r}: heldout={self.heldout!r} must list distinct "
                       f"(shape, colour) pairs, at least 1 and at most {len(COMBINATIONS) - 1} of the "
                       f"{len(COMBINATIONS)}, so that both training and test_heldout have videos")
    self.heldout = tuple(pairs)
    if self.num_test_heldout < 1:
      raise ValueError(f"CaptionedShapesConfig {self.name!r}: num_test_heldout={self.num_test_heldout} must be "
                       ">= 1")

  def split_combinations(self, split: str) -> tuple[tuple[str, str], ...]:
    """The (shape, colour) pairs videos of `split` are drawn from, in label order."""
    if split not in SPLITS:
      raise ValueError(f"captioned_shapes: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    heldout = set(self.heldout)
    return tuple(pair for pair in COMBINATIONS if (pair in heldout) == (split == "test_heldout"))


CONFIGS: dict[str, CaptionedShapesConfig] = {
    config.name: config for config in (
        CaptionedShapesConfig(name="default", description="10000 train / 1000 test / 1000 held-out videos of "
                              "5x64x64x3 with labels and captions"),
        CaptionedShapesConfig(name="tiny", num_train=64, num_test=16, num_test_heldout=16,
                              description="64 train / 16 test / 16 held-out videos of 5x64x64x3, for tests"),
        CaptionedShapesConfig(name="tiny32", frame_size=32, num_train=64, num_test=16, num_test_heldout=16,
                              description="64 train / 16 test / 16 held-out videos of 5x32x32x3, for tests"),
    )
}

SPLITS: tuple[str, ...] = ("train", "test", "test_heldout")

# test_heldout video i takes its size, direction and start from stochastic shapes test example
# HELDOUT_INDEX_OFFSET + i, so that they are drawn independently of the test split's (any test count below it).
HELDOUT_INDEX_OFFSET = 1 << 24
# Seeds the (shape, colour) draw, apart from the seeds stochastic_shapes uses for the rest.
_COMBINATION_SEED = 7919
_SPLIT_IDS = {split: i for i, split in enumerate(SPLITS)}


def sample_captioned_example(config: CaptionedShapesConfig, split: str, index: int) -> dict[str, object]:
  """Video `index` of `split` ("train", "test" or "test_heldout") with its ground truth, label and caption.

  Returns sample_example's keys ("video" uint8 [T, H, W, 3], "shape", "color", "color_rgb", "size" in pixels,
  "direction", "positions" float32 [T, 2], "speed") with the (shape, colour) replaced as the module docstring
  says, plus "label" (an int in 0..17) and "caption" (a str).
  """
  combinations = config.split_combinations(split)
  base_split, base_index = ("test", HELDOUT_INDEX_OFFSET + index) if split == "test_heldout" else (split, index)
  example = sample_example(config, base_split, base_index)
  rng = np.random.default_rng([_COMBINATION_SEED, _SPLIT_IDS[split], index])
  shape, color = combinations[int(rng.integers(len(combinations)))]
  color_rgb = COLORS[color]
  size, direction, positions = example["size"], example["direction"], example["positions"]
  start = (float(positions[0, 0]), float(positions[0, 1]))
  example.update(
      video=render_video(shape, color_rgb, size, direction, start, config.speed, config.num_frames,
                         config.frame_size),
      shape=SHAPES.index(shape),
      color=_COLOR_NAMES.index(color),
      color_rgb=np.asarray(color_rgb, np.uint8),
      label=label_for(shape, color),
      caption=caption_for(shape, color, list(config.sizes).index(size), direction))
  return example


class CaptionedShapesDataset(tfds.core.GeneratorBasedBuilder):
  """TFDS builder of captioned stochastic shapes, generated locally (no download)."""

  name = "t2v_captioned_shapes"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "The same videos, stored as zlib-compressed uint8 tensors instead of PNG frames."}
  BUILDER_CONFIGS = list(CONFIGS.values())
  DEFAULT_CONFIG_NAME = "default"
  # As in stochastic_shapes: TFDS 4.9's code_path would import importlib_resources, not installed on Python >= 3.9.
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            **stochastic_shapes.features(self.builder_config),  # the video and its ground truth
            "label": tfds.features.ClassLabel(names=list(LABEL_CAPTIONS)),
            "caption": tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    config = self.builder_config
    counts = {"train": config.num_train, "test": config.num_test, "test_heldout": config.num_test_heldout}
    return {split: self._generate_examples(split, counts[split]) for split in SPLITS}

  def _generate_examples(self, split: str, num_examples: int):
    for index in range(num_examples):
      yield index, sample_captioned_example(self.builder_config, split, index)


# ---- the problem -----------------------------------------------------------------------------------

class CaptionedShapes(base.Problem):
  """Stochastic shapes with a (shape, colour) label and a caption per video; held-out combinations to compose.

  Evaluation conditions on no frames (num_input_frames = 0): a label- or caption-conditioned model generates the
  whole clip, first frame included, from the label or the caption.
  """

  name = "captioned_shapes"
  tfds_name = CaptionedShapesDataset.name
  num_input_frames = 0
  train_split = "train"
  eval_split = "test"
  tfds_splits = SPLITS
  frames_key = "video"
  num_labels = len(COMBINATIONS)
  label_key = "label"
  has_caption = True
  caption_key = "caption"
  vocabulary = VOCABULARY
  label_captions = LABEL_CAPTIONS
  static_keys = ("shape", "color", "color_rgb", "size", "direction", "speed")
  temporal_keys = ("positions",)

  def __init__(self, data_dir: str | None = None, *, config: str | CaptionedShapesConfig = "default"):
    """`config` is a name in CONFIGS ("default", "tiny", "tiny32") or a CaptionedShapesConfig."""
    super().__init__(data_dir)
    if isinstance(config, str):
      if config not in CONFIGS:
        raise ValueError(f"captioned_shapes: unknown config {config!r}; valid: {', '.join(CONFIGS)} or a "
                         "CaptionedShapesConfig instance")
      config = CONFIGS[config]
    elif not isinstance(config, CaptionedShapesConfig):
      raise ValueError(f"captioned_shapes: config must be a name or a CaptionedShapesConfig, got "
                       f"{type(config).__name__}; a StochasticShapesConfig has no held-out combinations")
    self.config = config

  def __repr__(self) -> str:
    return f"CaptionedShapes(data_dir={self.data_dir!r}, config={self.config.name!r})"

  @property
  def frame_shape(self) -> tuple[int, int, int]:
    return (self.config.frame_size, self.config.frame_size, 3)

  @property
  def num_frames(self) -> int:
    return self.config.num_frames

  @property
  def num_target_frames(self) -> int:
    return self.config.num_frames - self.num_input_frames

  @property
  def heldout_combinations(self) -> tuple[tuple[str, str], ...]:
    """The (shape, colour) pairs only test_heldout holds."""
    return self.config.heldout

  @property
  def heldout_labels(self) -> tuple[int, ...]:
    """The label ids of heldout_combinations, ascending."""
    return tuple(sorted(label_for(shape, color) for shape, color in self.config.heldout))

  def size_pixels(self, size_word: str) -> int:
    """The size r in pixels that a caption's size word means in this config, e.g. "small" -> 6 at 64 px."""
    return int(self.config.sizes[SIZE_WORDS.index(_name(size_word, SIZE_WORDS, "size"))])

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    return (f"or call CaptionedShapes(data_dir, config={self.config.name!r}).prepare() to generate it "
            "(seconds, no download)")

  def _make_builder(self) -> tfds.core.DatasetBuilder:
    return CaptionedShapesDataset(data_dir=self.data_dir, config=self.config)

  def prepare(self, download: bool = False) -> None:
    """Generates the videos into data_dir unless they are there already (`download` is ignored: nothing is)."""
    del download
    builder = self.builder()
    if not self._builder_is_prepared(builder):
      builder.download_and_prepare(file_format="tfrecord")
