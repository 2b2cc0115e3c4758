"""Stochastic Movement dataset of VideoFlow §5.1: one shape moving in one of eight random directions.

Each video shows a single shape (circle, square or triangle) of a random size and a random palette colour on a
grey background, placed near the centre of the frame and moving at a constant speed (the same for every video)
in one of eight directions, never leaving the frame. Given the first frame the future is uncertain in exactly
one way, the direction, so a good stochastic model produces all eight and nothing else.

Where a video starts: the default configs add a random integer jitter to the frame centre, so that many distinct
videos exist and the test split is held out. The `centred` configs start every shape exactly at the centre, as
the VideoFlow authors' own generator does (Tensor2Tensor's VideoStochasticShapes10k). That generator also moves
diagonally on the pixel grid (speed px along each axis per frame), so every frame is the previous one translated
by whole pixels; the default and `centred` configs move `speed` px along a unit vector, so a diagonal shape sits at
fractional positions and its rasterised outline changes from frame to frame. The `centred_grid` and
`small_centred_grid` configs do both, as the authors do; `grid` and `small_grid` keep the jittered starts (the
same draws of shape, colour, size, direction and start as `default` and `small`) and move on the grid.

Centring changes what a model could learn. With a centred start, the shape's position in any later frame gives
its direction, so one past frame (K = 1, the paper's shapes setting) is enough to continue the motion in
principle; with jitter it is not, and continuing needs K >= 2. But a convolutional prior, as VideoFlow's and
t2v's are, has no coordinates and cannot read an absolute position: measured on `small_centred`,
videoflow_cpu_multiscale with additive couplings and K = 1 learned no motion in 6750 steps
(docs/videoflow_shapes_cpu.md). The centred configs have only 3 shapes x 6 colours x 3 sizes x 8 directions = 432
distinct videos, which recur in both splits, so their held-out bits per pixel measure fit, not generalisation.
The jittered 32x32 configs have ~7700 distinct videos among their 10000 training clips, and 397 of the 1000 test
clips are also training clips (benchmarks/shapes_quality.py reports bpp on the others apart).

The data is generated locally by the TFDS builder `t2v_stochastic_shapes` (no download) into the data_dir:

    problem = StochasticShapes(data_dir="/tmp/tfds")    # config "default": 10000 train / 1000 test, 5x64x64x3
    problem.prepare()                                    # ~10 s on 2 CPU cores the first time
    ds = problem.dataset("train", batch_size=16, training=True)

Each video is rendered from its own numpy Generator seeded by (split, index), so every data_dir holds the same
videos. The ground truth (shape, colour, size, direction, positions, speed) is stored with the frames; the
pure functions `render_video`, `trajectory` and `shape_mask` and the constants SHAPES, COLORS and DIRECTIONS
let a metric re-render or recognise a video.

Geometry: pixel (i, j) has its centre at (y, x) = (i, j). `size` r is the radius of a circle, the half-side of a
square and the half-height and half-base of an upward triangle with apex (y - r, x) and base row y + r, so every
shape spans [y - r, y + r] x [x - r, x + r] and `positions` are the centres of these bounding boxes.
"""

from __future__ import annotations

import dataclasses
import math

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from t2v.problems import base

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Distinct saturated colours, easy to tell apart by eye and by nearest-colour classification.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}

_DIAGONAL = 1.0 / math.sqrt(2.0)
# Unit vectors (dy, dx) in image coordinates (y grows downwards), so "N" moves up the image.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "E": (0.0, 1.0),
    "NE": (-_DIAGONAL, _DIAGONAL),
    "N": (-1.0, 0.0),
    "NW": (-_DIAGONAL, -_DIAGONAL),
    "W": (0.0, -1.0),
    "SW": (_DIAGONAL, -_DIAGONAL),
    "S": (1.0, 0.0),
    "SE": (_DIAGONAL, _DIAGONAL),
}


def direction_vectors(grid_diagonals: bool = False) -> np.ndarray:
  """One frame's displacement per unit of speed for each of the 8 DIRECTIONS, in their order; float64 [8, 2].

  False: the unit vectors of DIRECTIONS (every direction moves `speed` px per frame). True: diagonals step
  (+-1, +-1), so a shape moves `speed` px per frame along each axis and stays on the pixel grid, as in the VideoFlow
  authors' generator; its diagonal moves are then sqrt(2) x longer than its axis-aligned ones.
  """
  units = np.asarray(list(DIRECTIONS.values()), np.float64)  # [8, 2] (dy, dx)
  return np.sign(units) if grid_diagonals else units


BACKGROUND = 128  # grey level of every background pixel, all channels

# Shape sizes (r, in pixels) and speed (pixels per frame) at frame_size 32; they scale with the frame.
_SIZES_PER_32 = (3, 4, 5)
_SPEED_PER_32 = 2.0


# ---- rendering (pure numpy) ------------------------------------------------------------------------

def _index(name_or_index: str | int, names: tuple[str, ...], what: str) -> int:
  if isinstance(name_or_index, (int, np.integer)) and 0 <= int(name_or_index) < len(names):
    return int(name_or_index)
  if isinstance(name_or_index, str) and name_or_index in names:
    return names.index(name_or_index)
  raise ValueError(f"unknown {what} {name_or_index!r}; valid: {', '.join(names)} (or their indices 0.."
                   f"{len(names) - 1})")


def trajectory(direction: str | int, start_yx: tuple[float, float], speed: float,
               num_frames: int, grid_diagonals: bool = False) -> np.ndarray:
  """Centres (y, x) of the shape in each frame: start + t * speed * the direction's vector; float32 [T, 2].

  The vector is DIRECTIONS[direction] or, with `grid_diagonals`, its signs (see `direction_vectors`).
  """
  unit = direction_vectors(grid_diagonals)[_index(direction, tuple(DIRECTIONS), "direction")]  # [2]
  steps = np.arange(num_frames, dtype=np.float64)[:, None]  # [T, 1]
  return (np.asarray(start_yx, np.float64)[None, :] + steps * speed * unit[None, :]).astype(np.float32)


def shape_mask(shape: str | int, size: int, positions: np.ndarray, frame_size: int) -> np.ndarray:
  """Pixels covered by the shape centred at each of `positions` [T, 2]; bool [T, H, W]."""
  shape_name = SHAPES[_index(shape, SHAPES, "shape")]
  positions = np.asarray(positions, np.float64)
  rows = np.arange(frame_size, dtype=np.float64)
  dy = rows[None, :, None] - positions[:, 0, None, None]  # [T, H, 1]
  dx = rows[None, None, :] - positions[:, 1, None, None]  # [T, 1, W]
  if shape_name == "circle":
    return dy * dy + dx * dx <= size * size
  if shape_name == "square":
    return (np.abs(dy) <= size) & (np.abs(dx) <= size)
  # Triangle: apex at dy = -size, base row at dy = +size, half-width growing from 0 to size.
  return (dy >= -size) & (dy <= size) & (np.abs(dx) <= (dy + size) / 2.0)


def render_video(shape: str | int, color_rgb: tuple[int, int, int] | np.ndarray, size: int,
                 direction: str | int, start_yx: tuple[float, float], speed: float, num_frames: int,
                 frame_size: int, grid_diagonals: bool = False) -> np.ndarray:
  """Renders one video: the shape in `color_rgb` on a BACKGROUND grey frame; uint8 [T, H, W, 3].

  Args:
    shape: a name in SHAPES or its index.
    color_rgb: the (r, g, b) fill, e.g. COLORS["red"].
    size: r in pixels (see the module docstring for what r means per shape).
    direction: a name in DIRECTIONS or its index.
    start_yx: the centre (y, x) in frame 0.
    speed: pixels per frame along the direction's unit vector (per axis with `grid_diagonals`).
    num_frames: T.
    frame_size: H = W.
    grid_diagonals: diagonal moves step `speed` px along both axes (see `direction_vectors`).
  """
  positions = trajectory(direction, start_yx, speed, num_frames, grid_diagonals)
  mask = shape_mask(shape, size, positions, frame_size)  # [T, H, W]
  color = np.asarray(color_rgb, np.uint8).reshape(1, 1, 1, 3)
  return np.where(mask[..., None], color, np.uint8(BACKGROUND)).astype(np.uint8)  # [T, H, W, 3]


# ---- the TFDS builder ------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class StochasticShapesConfig(tfds.core.BuilderConfig):
  """Size of the generated dataset. `sizes` and `speed` default to values proportional to frame_size.

  At frame_size 64: sizes (6, 8, 10) and speed 4 px/frame; at 32: (3, 4, 5) and 2 px/frame. A video's start is
  the frame centre plus a uniform integer jitter per axis, up to `start_jitter` pixels and never so far that the
  shape leaves the frame within `num_frames` frames (None: that limit alone; 0: always the centre). A config that
  cannot keep its largest shape inside is rejected. With `grid_diagonals`, diagonal moves go `speed` px along each
  axis (sqrt(2) x `speed` per frame) and stay on the pixel grid.
  """

  num_frames: int = 5
  frame_size: int = 64
  num_train: int = 10000
  num_test: int = 1000
  sizes: tuple[int, ...] = ()
  speed: float = 0.0
  # Largest |start - centre| per axis, in pixels; None: as far as each shape can go and stay in the frame.
  start_jitter: int | None = None
  # Diagonal moves of `speed` px per axis (on the pixel grid, as the authors' generator) instead of per frame.
  grid_diagonals: bool = False

  def __post_init__(self):
    if not self.sizes:
      self.sizes = tuple(int(round(s * self.frame_size / 32)) for s in _SIZES_PER_32)
    if not self.speed:
      self.speed = _SPEED_PER_32 * self.frame_size / 32
    if self.num_frames < 1 or self.frame_size < 8 or self.num_train < 1 or self.num_test < 1:
      raise ValueError(f"StochasticShapesConfig {self.name!r}: num_frames={self.num_frames}, frame_size="
                       f"{self.frame_size}, num_train={self.num_train}, num_test={self.num_test} must be >= 1, "
                       ">= 8, >= 1, >= 1")
    if self.start_jitter is not None and self.start_jitter < 0:
      raise ValueError(f"StochasticShapesConfig {self.name!r}: start_jitter={self.start_jitter} must be >= 0 (0: "
                       "every shape starts at the frame centre) or None (as far as the frame allows)")
    if min(self.sizes) < 1 or self.max_jitter(max(self.sizes)) < 0:
      raise ValueError(
          f"StochasticShapesConfig {self.name!r}: a shape of size {max(self.sizes)} moving {self.speed} px/frame "
          f"for {self.num_frames} frames leaves the {self.frame_size}-pixel frame; lower speed, sizes or "
          "num_frames, or raise frame_size")

  def max_jitter(self, size: int) -> int:
    """The largest |start - centre| (per axis, pixels) that keeps a shape of `size` inside the frame."""
    travel = math.ceil(self.speed * (self.num_frames - 1))
    centre = self.frame_size // 2
    # The shape spans [c - size, c + size] around centres c in [centre - jitter - travel, centre + jitter + travel].
    return min(centre, self.frame_size - 1 - centre) - travel - size


CONFIGS: dict[str, StochasticShapesConfig] = {
    config.name: config for config in (
        StochasticShapesConfig(name="default", description="10000 train / 1000 test videos of 5x64x64x3"),
        StochasticShapesConfig(name="small", frame_size=32,
                               description="10000 train / 1000 test videos of 5x32x32x3 (CPU-sized training)"),
        StochasticShapesConfig(name="grid", grid_diagonals=True,
                               description="10000 train / 1000 test videos of 5x64x64x3, jittered starts, "
                               "diagonals on the pixel grid as the paper's generator moves them"),
        StochasticShapesConfig(name="small_grid", frame_size=32, grid_diagonals=True,
                               description="10000 train / 1000 test videos of 5x32x32x3, jittered starts, "
                               "diagonals on the pixel grid as the paper's generator moves them (CPU-sized)"),
        StochasticShapesConfig(name="centred", start_jitter=0,
                               description="10000 train / 1000 test videos of 5x64x64x3, every shape starting at "
                               "the frame centre, diagonals along unit vectors (432 distinct videos)"),
        StochasticShapesConfig(name="small_centred", frame_size=32, start_jitter=0,
                               description="10000 train / 1000 test videos of 5x32x32x3, every shape starting at "
                               "the frame centre, diagonals along unit vectors (432 distinct videos)"),
        StochasticShapesConfig(name="centred_grid", start_jitter=0, grid_diagonals=True,
                               description="10000 train / 1000 test videos of 5x64x64x3 as the paper's generator "
                               "makes them: centred starts, diagonals on the pixel grid (432 distinct videos)"),
        StochasticShapesConfig(name="small_centred_grid", frame_size=32, start_jitter=0, grid_diagonals=True,
                               description="10000 train / 1000 test videos of 5x32x32x3 as the paper's generator "
                               "makes them: centred starts, diagonals on the pixel grid (432 distinct videos)"),
        StochasticShapesConfig(name="tiny", num_train=64, num_test=16,
                               description="64 train / 16 test videos of 5x64x64x3, for tests"),
        StochasticShapesConfig(name="tiny32", frame_size=32, num_train=64, num_test=16,
                               description="64 train / 16 test videos of 5x32x32x3, for tests"),
    )
}

_SPLIT_SEEDS = {"train": 0, "test": 1}


def sample_example(config: StochasticShapesConfig, split: str, index: int) -> dict[str, object]:
  """The ground truth and frames of video `index` of `split`, from a Generator seeded by (split, index)."""
  rng = np.random.default_rng([_SPLIT_SEEDS[split], index])
  shape = int(rng.integers(len(SHAPES)))
  color = int(rng.integers(len(COLORS)))
  size = int(config.sizes[rng.integers(len(config.sizes))])
  direction = int(rng.integers(len(DIRECTIONS)))
  jitter = config.max_jitter(size) if config.start_jitter is None else min(config.max_jitter(size),
                                                                           config.start_jitter)
  centre = config.frame_size // 2
  start = (centre + int(rng.integers(-jitter, jitter + 1)), centre + int(rng.integers(-jitter, jitter + 1)))
  color_rgb = COLORS[tuple(COLORS)[color]]
  return {
      "video": render_video(shape, color_rgb, size, direction, start, config.speed, config.num_frames,
                            config.frame_size, config.grid_diagonals),
      "shape": shape,
      "color": color,
      "color_rgb": np.asarray(color_rgb, np.uint8),
      "size": size,
      "direction": direction,
      "positions": trajectory(direction, start, config.speed, config.num_frames, config.grid_diagonals),
      "speed": np.float32(config.speed),
  }


def features(config: StochasticShapesConfig) -> dict[str, tfds.features.FeatureConnector]:
  """The TFDS features of one video and its ground truth (also the base of captioned_shapes' features)."""
  size = config.frame_size
  return {
      # uint8 frames as one zlib-compressed tensor, not tfds.features.Video's PNG per frame: the same pixels,
      # a third of the bytes and ~3x faster to encode (at 64x64, 5 frames: 455 against 1303 bytes per video)
      "video": tfds.features.Tensor(shape=(config.num_frames, size, size, 3), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.ZLIB),
      "shape": tfds.features.ClassLabel(names=list(SHAPES)),
      "color": tfds.features.ClassLabel(names=list(COLORS)),
      "color_rgb": tfds.features.Tensor(shape=(3,), dtype=np.uint8),
      "size": tfds.features.Scalar(dtype=np.int32),
      "direction": tfds.features.ClassLabel(names=list(DIRECTIONS)),
      "positions": tfds.features.Tensor(shape=(config.num_frames, 2), dtype=np.float32),
      "speed": tfds.features.Scalar(dtype=np.float32),
  }


class StochasticShapesDataset(tfds.core.GeneratorBasedBuilder):
  """TFDS builder of the Stochastic Movement dataset, generated locally (no download)."""

  name = "t2v_stochastic_shapes"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "The same videos, stored as zlib-compressed uint8 tensors instead of PNG frames."}
  BUILDER_CONFIGS = list(CONFIGS.values())
  DEFAULT_CONFIG_NAME = "default"
  # TFDS 4.9's code_path property imports `importlib_resources`, which TFDS does not install on Python >= 3.9;
  # its fallback (the defining file) is what it would compute, so give it directly.
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict(features(self.builder_config)),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    config = self.builder_config
    return {"train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test)}

  def _generate_examples(self, split: str, num_examples: int):
    for index in range(num_examples):
      yield index, sample_example(self.builder_config, split, index)


# ---- the problem -----------------------------------------------------------------------------------

class StochasticShapes(base.Problem):
  """VideoFlow's Stochastic Movement dataset: a shape moving in one of 8 directions (generated locally)."""

  name = "stochastic_shapes"
  tfds_name = StochasticShapesDataset.name
  num_input_frames = 1
  train_split = "train"
  eval_split = "test"
  tfds_splits = ("train", "test")
  frames_key = "video"
  static_keys = ("shape", "color", "color_rgb", "size", "direction", "speed")
  temporal_keys = ("positions",)

  def __init__(self, data_dir: str | None = None, *, config: str | StochasticShapesConfig = "default"):
    """`config` is a name in CONFIGS ("default", "tiny", "tiny32") or a StochasticShapesConfig."""
    super().__init__(data_dir)
    if isinstance(config, str):
      if config not in CONFIGS:
        raise ValueError(f"stochastic_shapes: unknown config {config!r}; valid: {', '.join(CONFIGS)} or a "
                         "StochasticShapesConfig instance")
      config = CONFIGS[config]
    self.config = config

  def __repr__(self) -> str:
    return f"StochasticShapes(data_dir={self.data_dir!r}, config={self.config.name!r})"

  @property
  def frame_shape(self) -> tuple[int, int, int]:
    return (self.config.frame_size, self.config.frame_size, 3)

  @property
  def num_frames(self) -> int:
    return self.config.num_frames

  @property
  def num_target_frames(self) -> int:
    return max(1, self.config.num_frames - self.num_input_frames)

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    return (f"or call StochasticShapes(data_dir, config={self.config.name!r}).prepare() to generate it "
            "(seconds, no download)")

  def _make_builder(self) -> tfds.core.DatasetBuilder:
    return StochasticShapesDataset(data_dir=self.data_dir, config=self.config)

  def prepare(self, download: bool = False) -> None:
    """Generates the videos into data_dir unless they are there already (`download` is ignored: nothing is)."""
    del download
    builder = self.builder()
    if not self._builder_is_prepared(builder):
      builder.download_and_prepare(file_format="tfrecord")
