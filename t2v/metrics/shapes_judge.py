"""The stochastic shapes judge: is a generated video a valid Stochastic Movement trajectory?

t2v's automatic stand-in for a person asked "could this video be real?" about samples of a model trained on the
Stochastic Movement dataset of VideoFlow §5.1 (t2v.problems.stochastic_shapes). It looks at pixels only (numpy;
nothing is learned) and accepts a video when, in every frame,

  1. there is exactly one foreground object: one connected component (8-connectivity) of pixels that differ from
     the grey BACKGROUND by more than FOREGROUND_THRESHOLD, of at least half the area of the dataset's smallest
     shape; smaller components are specks of sampling noise and are ignored unless there are many of them;
  2. its mean colour is within COLOR_TOLERANCE of one palette colour (COLORS), the same one in every frame;
  3. its shape (circle, square or triangle, recognised from the fill of its bounding box, the fill of the box's
     corners and how low its centre of mass sits) and its size r (from its area, see `_SIZE_AREA_FACTOR`) are
     the same in every frame, and r is one of the dataset's sizes;

and when the centroids follow one straight line at the dataset's constant speed along one of the 8 DIRECTIONS:
the best of the 8 ideal trajectories `start + t * step` stays within TRAJECTORY_TOLERANCE_PX of every centroid,
where `step` is speed x the direction's unit vector, or with the config's `grid_diagonals` (the authors' generator)
speed x (+-1, +-1) for a diagonal. A stationary object is invalid (the dataset's speed is never 0).

    result = judge_video(video)                   # uint8 [T, H, W, 3] -> Judgement
    result.valid, result.reasons                  # True, []  or  False, ["colour changes: red, red, blue, ..."]
    result.shape, result.color, result.size, result.direction, result.speed    # "circle", "red", 8, "NE", 4.02

    summary = judge_batch(decodes)                # [N, T, H, W, 3] or [examples, decodes, T, H, W, 3]
    summary.valid_rate, summary.direction_entropy_bits      # the ideal: 1.0 and 3 bits (uniform over 8)

Whether a video shows its caption (captioned shapes) is t2v.metrics.caption_judge, built on these judgements.

Expected sizes and speed come from a StochasticShapesConfig (`config=`) or, by default, from the dataset's rule
for the frame size (sizes (3, 4, 5) and 2 px/frame at 32 px, proportionally larger at 64 px).

Thresholds were set on rendered ground truth (render_video at integer and at random fractional centres, 32 and 64
px): the rasterised centroids stay within 0.65 px of the ideal trajectory, shape features stay on their side of
the rules below with a margin, and the size estimate is within 0.4 px of the true r. Each threshold leaves room
for the slight noise and soft edges of samples drawn at temperature < 1.

Speed: 1000 videos of 5x64x64 take about a second on one CPU core (the pixel work is vectorised over all frames,
connected components included); 1000 videos of uniform noise, the worst case, about five.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from t2v.problems.stochastic_shapes import (BACKGROUND, COLORS, DIRECTIONS, SHAPES, StochasticShapesConfig,
                                            direction_vectors)

# ---- thresholds -------------------------------------------------------------------------------------

# Foreground: a pixel whose largest per-channel |value - BACKGROUND| exceeds this. Every palette channel is 0 or
# 255, i.e. 127-128 grey levels from the background, so 64 is halfway: a pixel belongs to whichever of object and
# background it is closer to, and background noise would need 8 sigma at sigma = 8 grey levels to cross it.
FOREGROUND_THRESHOLD = 64

# A component is an object when its area is at least this fraction of the dataset's smallest shape (a triangle
# of the smallest size r_min covers about 2 r_min^2 pixels: 18 px at 32x32). Smaller ones are specks of noise.
MIN_OBJECT_AREA_FRACTION = 0.5

# A frame is "noisy" when its specks add up to more than this fraction of the frame (1 % is 10 px at 32x32, far
# above the isolated pixels of mild noise) or its foreground covers more than MAX_FOREGROUND_FACTOR times the
# largest dataset shape (a (2 r_max + 1)^2 square: about 11 % of the frame).
MAX_STRAY_FRACTION = 0.01
MAX_FOREGROUND_FACTOR = 2.0

# Colour: the Euclidean RGB distance from the object's mean colour to its palette colour. Palette colours are at
# least 255 apart and 220 from the grey, so a mean within 80 is unambiguous, while soft edges (blends with the
# grey that pass FOREGROUND_THRESHOLD) may pull the mean of a small shape by a few tens.
COLOR_TOLERANCE = 80.0

# Shape rules on three features of the object's mask in its bounding box (ranges measured on rendered ground truth
# at integer and fractional centres, 32 and 64 px):
#   fill        area / box area: square 1, circle 0.59-0.93 (pi/4 for large r), triangle 0.50-0.60 (1/2);
#   corner fill fill of the box pixels outside the ellipse inscribed in the box: square 1, circle <= 0.5,
#               triangle 0.3-0.5 (its two lower corners);
#   asymmetry   (centroid row - box centre row) / half the box height: triangle 0.22-0.33 (1/3 for large r: the
#               upward triangle's mass sits low), circle |.| <= 0.13, square 0.
# Fill alone cannot tell a small circle from a triangle (both ~0.6 at r = 3); asymmetry can.
SQUARE_MIN_CORNER_FILL = 0.75  # halfway between circle (<= 0.5) and square (1)
SQUARE_MIN_FILL = 0.85  # a square fills its box; filled corners without a full box are no dataset shape
TRIANGLE_MIN_ASYMMETRY = 0.18  # between the circle's 0.13 and the triangle's 0.22
TRIANGLE_MAX_FILL = 0.75  # the triangle's 0.60 plus room for soft edges
CIRCLE_MIN_FILL = 0.5  # below the small circle's 0.59: a sparser blob is no dataset shape
MAX_ASPECT = 1.4  # box height / width of every dataset shape is within 1.2 of 1 (a small circle at worst)

# Size: a frame's estimate r_hat is within 0.4 px of the true r on ground truth. The median r_hat must be within
# SIZE_TOLERANCE_PX of a dataset size; frames whose estimates round to different dataset sizes and differ by more
# than SIZE_CHANGE_PX mean the size changed (dataset sizes are >= 1 px apart).
SIZE_TOLERANCE_PX = 1.0
SIZE_CHANGE_PX = 0.5

# Motion: every centroid within this distance of the best ideal trajectory. Rasterising a shape at a fractional
# position moves its centroid by up to ~0.65 px; a 90-degree turn or a doubled speed for one step moves it by a
# full step (2 px at 32x32, 4 px at 64x64).
TRAJECTORY_TOLERANCE_PX = 1.25
# Only to word the reason of an invalid motion: a step shorter than this fraction of the dataset's speed is not a
# move, and centroids within CONSTANT_VELOCITY_PX of a free straight line (ground truth: <= 0.6 px) move at a
# constant velocity (a wrong speed or heading) rather than changing speed or direction.
STATIONARY_FRACTION = 0.5
CONSTANT_VELOCITY_PX = 0.75

# ---- reasons: each entry of Judgement.reasons starts with one of these codes, then ": " and the details -------

NO_OBJECT = "no object"
SEVERAL_OBJECTS = "several objects"
NOISY_FRAME = "noisy frame"
UNKNOWN_SHAPE = "unknown shape"
SHAPE_CHANGES = "shape changes"
OFF_PALETTE = "off-palette colour"
COLOR_CHANGES = "colour changes"
WRONG_SIZE = "wrong size"
SIZE_CHANGES = "size changes"
STATIONARY = "stationary"
DIRECTION_CHANGES = "direction changes"
SPEED_CHANGES = "speed changes"
NOT_STRAIGHT = "not straight"
WRONG_SPEED = "wrong speed"
OFF_DIRECTION = "off-grid direction"
REASON_CODES: tuple[str, ...] = (NO_OBJECT, SEVERAL_OBJECTS, NOISY_FRAME, UNKNOWN_SHAPE, SHAPE_CHANGES, OFF_PALETTE,
                                 COLOR_CHANGES, WRONG_SIZE, SIZE_CHANGES, STATIONARY, DIRECTION_CHANGES,
                                 SPEED_CHANGES, NOT_STRAIGHT, WRONG_SPEED, OFF_DIRECTION)
# The codes about the motion alone: a video failing only with these shows one object of one palette colour, shape
# and dataset size in every frame (`Judgement.object_kept`), which just does not move as the dataset's do.
MOTION_CODES: tuple[str, ...] = (STATIONARY, DIRECTION_CHANGES, SPEED_CHANGES, NOT_STRAIGHT, WRONG_SPEED,
                                 OFF_DIRECTION)

_COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
_DIRECTION_NAMES: tuple[str, ...] = tuple(DIRECTIONS)
_PALETTE = np.asarray([COLORS[name] for name in _COLOR_NAMES], np.float64)  # [6, 3]

# A shape of size r covers a region of area kappa r^2 (circle pi r^2, square (2r)^2, triangle 2r * 2r / 2); the
# rasterised count includes boundary pixels (the masks use <=), so sqrt(count / kappa) overestimates r by a
# shape-dependent beta on average. r_hat = sqrt(count / kappa) - beta is within 0.4 px of r on ground truth.
_SIZE_AREA_FACTOR = np.asarray([math.pi, 4.0, 2.0])  # kappa, in SHAPES order
_SIZE_BIAS = np.asarray([0.02, 0.25, 0.14])  # beta, in SHAPES order

# Frames are measured in chunks of this many (bounds memory: ~35 MB of pixel indices at 64x64).
_CHUNK_FRAMES = 1024

_FAR_FROM_GREY = np.abs(np.arange(256) - BACKGROUND) > FOREGROUND_THRESHOLD  # lookup table, [256] bool


# ---- results ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Judgement:
  """The judge's verdict on one video.

  Attributes:
    valid: the video is a valid Stochastic Movement trajectory (no reasons).
    reasons: why not, each "code: details" with a code from REASON_CODES; empty when valid.
    shape: the recognised shape (a name in SHAPES; the most frequent over frames), or None if none was.
    color: the palette colour (a name in COLORS; the most frequent over frames), or None if no object was found.
    size: the dataset size r nearest to the measured one, or None if no object or shape was recognised.
    direction: the name in DIRECTIONS of the motion, or None when the motion is invalid or T = 1.
    speed: the fitted speed in pixels per frame (a least-squares line through the centroids), or None when
      some frame has no object or is noisy, or T = 1.
    size_px: the median measured size r_hat in pixels, or None.
    mean_rgb: [3] the object's mean colour averaged over frames, or None.
    centroids: [T, 2] float (y, x) of the object in each frame, NaN where there is none.
  """

  valid: bool
  reasons: list[str]
  shape: str | None
  color: str | None
  size: int | None
  direction: str | None
  speed: float | None
  size_px: float | None = None
  mean_rgb: np.ndarray | None = None
  centroids: np.ndarray | None = None

  @property
  def codes(self) -> tuple[str, ...]:
    """The reason codes (the part of each reason before ": "), in order, without repeats."""
    return tuple(dict.fromkeys(reason.split(": ", 1)[0] for reason in self.reasons))

  @property
  def object_kept(self) -> bool:
    """One object of one palette colour, shape and dataset size in every frame, however it moves (every reason,
    if any, is one of MOTION_CODES): the part of validity that is about the object, not its motion."""
    return all(code in MOTION_CODES for code in self.codes)


@dataclasses.dataclass(frozen=True)
class JudgeSummary:
  """Aggregate of many Judgements.

  Attributes:
    num_videos: how many videos were judged.
    valid_rate: the fraction judged valid.
    object_kept_rate: the fraction whose object is kept in every frame (`Judgement.object_kept`, valid ones
      included): shape, colour and size right, whatever the motion.
    direction_counts: valid videos per direction, every name in DIRECTIONS present.
    direction_distribution: direction_counts / their sum (all 0 when no video is valid).
    direction_entropy_bits: entropy of direction_distribution; 3 bits (uniform over 8) is the ideal, 0 when no
      or only one direction occurs.
    reason_counts: how many videos failed with each reason code (codes that never occurred are absent).
    agreement: per ground-truth attribute given ("shape", "color", "size", "direction"), the fraction of all
      videos whose detected attribute equals it (a video where it was not detected disagrees).
    match_rate: the fraction of videos that are valid and agree on every given attribute (`matches`), or None
      without ground truth.
    example_direction_entropy_bits: for [examples, decodes] input, the mean over examples of the entropy of the
      directions of that example's valid decodes (does each conditioning input get all 8 futures?); else None.
  """

  num_videos: int
  valid_rate: float
  object_kept_rate: float
  direction_counts: dict[str, int]
  direction_distribution: dict[str, float]
  direction_entropy_bits: float
  reason_counts: dict[str, int]
  agreement: dict[str, float]
  match_rate: float | None
  example_direction_entropy_bits: float | None

  def report(self) -> dict:
    """The figures the decoder's metrics.json and the rollout experiment write (JSON-serialisable)."""
    return {"valid_rate": self.valid_rate, "object_kept_rate": self.object_kept_rate,
            "direction_entropy_bits": self.direction_entropy_bits,
            "example_direction_entropy_bits": self.example_direction_entropy_bits,
            "direction_counts": self.direction_counts, "reasons": self.reason_counts}


# ---- expectations from the dataset config -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Expectation:
  """What a valid video of one frame size looks like: the dataset's sizes and steps, and derived pixel limits."""

  frame_size: int
  sizes: tuple[int, ...]
  steps: np.ndarray  # [8, 2] (dy, dx) px per frame of each of the 8 DIRECTIONS, in their order
  min_object_area: float
  max_stray_pixels: float
  max_foreground_pixels: float


def _expectation(frame_size: int, config: StochasticShapesConfig | None) -> _Expectation:
  if config is None:
    # The dataset's own rule for sizes and speed at this frame size (num_frames=1 skips its fit-in-frame check).
    config = StochasticShapesConfig(name="judge", frame_size=frame_size, num_frames=1)
  elif not isinstance(config, StochasticShapesConfig):
    raise ValueError(f"shapes_judge: config must be a StochasticShapesConfig or None, got {type(config).__name__}; "
                     "pass e.g. t2v.problems.stochastic_shapes.CONFIGS['default']")
  elif config.frame_size != frame_size:
    raise ValueError(f"shapes_judge: the videos are {frame_size}x{frame_size} but config {config.name!r} has "
                     f"frame_size {config.frame_size}; pass the config the model was trained on, or config=None")
  sizes = tuple(int(s) for s in config.sizes)
  return _Expectation(
      frame_size=frame_size, sizes=sizes,
      steps=float(config.speed) * direction_vectors(config.grid_diagonals),
      min_object_area=MIN_OBJECT_AREA_FRACTION * 2.0 * min(sizes) ** 2,
      max_stray_pixels=MAX_STRAY_FRACTION * frame_size * frame_size,
      max_foreground_pixels=MAX_FOREGROUND_FACTOR * (2 * max(sizes) + 1) ** 2)


# ---- input checks -----------------------------------------------------------------------------------

def _check_videos(videos: object, ranks: tuple[int, ...], expected: str, what: str) -> np.ndarray:
  array = np.asarray(videos)
  problem = None
  if array.ndim not in ranks:
    problem = f"rank {array.ndim}"
  elif array.dtype != np.uint8:
    problem = f"dtype {array.dtype}"
  elif array.shape[-1] != 3:
    problem = f"{array.shape[-1]} channels"
  elif array.shape[-3] != array.shape[-2] or array.shape[-2] < 8:
    problem = f"{array.shape[-3]}x{array.shape[-2]} frames"
  elif array.shape[-4] < 1:
    problem = "no frames"
  if problem is not None:
    raise ValueError(f"shapes_judge: {what} must be uint8 of shape {expected} (square frames of >= 8 px, RGB), "
                     f"got {problem}: {array.dtype} {list(array.shape)}; convert floats in [0, 255] with "
                     "np.clip(x, 0, 255).round().astype(np.uint8)")
  return array


# ---- measuring frames (vectorised) ------------------------------------------------------------------

def _measure_frames(frames: np.ndarray, expect: _Expectation) -> dict[str, np.ndarray]:
  """Per-frame features of the largest foreground component of each of `frames` [F, H, W, 3]; arrays of [F]."""
  chunks = [_measure_chunk(frames[i:i + _CHUNK_FRAMES], expect) for i in range(0, len(frames), _CHUNK_FRAMES)]
  return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def _components(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """8-connected components within each frame of `foreground` [F, H, W] bool (none across frames), in numpy.

  Returns (pixels, roots): the flat indices of the foreground pixels, ascending, [P]; and for each of them the
  position in `pixels` of its component's first pixel in raster order, [P]. Components are merged along the
  edges between neighbouring pixels by hooking each root onto the smallest root it touches and then pointing
  every pixel at its root, until no edge joins two components (each round at least halves their number).
  """
  num_frames, height, width = foreground.shape
  pixels = np.flatnonzero(foreground)
  node = np.full(foreground.shape, -1, np.intp)  # [F, H, W] position in `pixels`, -1 off the foreground
  node.reshape(-1)[pixels] = np.arange(len(pixels))
  sources, targets = [], []
  for here, there in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),  # right
                      ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),  # down
                      ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),  # down-right
                      ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)))):  # down-left
    a, b = node[(slice(None),) + here], node[(slice(None),) + there]
    both = (a >= 0) & (b >= 0)
    sources.append(a[both])
    targets.append(b[both])
  u, v = np.concatenate(sources), np.concatenate(targets)  # [E] edges between foreground neighbours
  roots = np.arange(len(pixels))
  while u.size:
    root_u, root_v = roots[u], roots[v]
    low = np.minimum(root_u, root_v)
    np.minimum.at(roots, root_u, low)  # roots only ever point to smaller positions: no cycles
    np.minimum.at(roots, root_v, low)
    while True:  # pointer jumping until every pixel points at its root
      jumped = roots[roots]
      if np.array_equal(jumped, roots):
        break
      roots = jumped
    apart = roots[u] != roots[v]
    u, v = u[apart], v[apart]
  return pixels, roots


def _measure_chunk(frames: np.ndarray, expect: _Expectation) -> dict[str, np.ndarray]:
  num_frames, height, width, _ = frames.shape
  foreground = _FAR_FROM_GREY[frames].any(axis=-1)  # [F, H, W]
  pixels, roots = _components(foreground)  # [P], [P]
  pixel_frame = pixels // (height * width)  # [P]
  component = np.flatnonzero(roots == np.arange(len(roots)))  # [L] the root of each component
  areas = np.bincount(roots, minlength=len(roots))[component]  # [L]
  label_frame = pixel_frame[component]  # [L]
  is_object = areas >= expect.min_object_area  # [L]
  num_objects = np.bincount(label_frame[is_object], minlength=num_frames)  # [F]
  stray = np.bincount(label_frame, weights=np.where(is_object, 0, areas), minlength=num_frames)  # [F]
  # The largest component of each frame, kept when it is large enough to be an object.
  object_root = np.full(num_frames, -1, np.intp)  # [F], -1 = none
  if component.size:
    order = np.lexsort((areas, label_frame))  # by frame, then area
    ends = np.flatnonzero(np.r_[np.diff(label_frame[order]) != 0, True])  # last (largest) of each frame
    largest = order[ends]  # [frames with foreground], index into component
    keep = is_object[largest]
    object_root[label_frame[largest[keep]]] = component[largest[keep]]
  mask = np.zeros(foreground.size, bool)
  mask[pixels[roots == object_root[pixel_frame]]] = True
  mask = mask.reshape(foreground.shape)  # [F, H, W] the object's pixels

  area = mask.sum(axis=(1, 2))  # [F]
  present = area > 0
  safe_area = np.maximum(area, 1)
  row_count = mask.sum(axis=2)  # [F, H]
  col_count = mask.sum(axis=1)  # [F, W]
  rows_any, cols_any = row_count > 0, col_count > 0
  y0 = rows_any.argmax(axis=1)
  y1 = height - 1 - rows_any[:, ::-1].argmax(axis=1)
  x0 = cols_any.argmax(axis=1)
  x1 = width - 1 - cols_any[:, ::-1].argmax(axis=1)
  box_h = (y1 - y0 + 1).astype(np.float64)
  box_w = (x1 - x0 + 1).astype(np.float64)
  centroid_y = row_count @ np.arange(height, dtype=np.float64) / safe_area
  centroid_x = col_count @ np.arange(width, dtype=np.float64) / safe_area
  box_cy, box_cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0

  # Pixels of the box outside the ellipse inscribed in it: filled by a square, mostly empty for a circle.
  ny = (np.arange(height)[None, :] - box_cy[:, None]) / (box_h[:, None] / 2.0)  # [F, H]
  nx = (np.arange(width)[None, :] - box_cx[:, None]) / (box_w[:, None] / 2.0)  # [F, W]
  in_rows = (np.arange(height)[None, :] >= y0[:, None]) & (np.arange(height)[None, :] <= y1[:, None])
  in_cols = (np.arange(width)[None, :] >= x0[:, None]) & (np.arange(width)[None, :] <= x1[:, None])
  corners = ((ny * ny)[:, :, None] + (nx * nx)[:, None, :] > 1.0) & in_rows[:, :, None] & in_cols[:, None, :]
  num_corner = corners.sum(axis=(1, 2))
  corner_fill = (corners & mask).sum(axis=(1, 2)) / np.maximum(num_corner, 1)

  color_sum = np.stack([np.sum(frames[..., c] * mask, axis=(1, 2), dtype=np.int64) for c in range(3)], axis=-1)
  return {
      "present": present,
      "area": area.astype(np.float64),
      "num_objects": num_objects,
      "stray": stray,
      "foreground": foreground.sum(axis=(1, 2)),
      "box_h": box_h,
      "box_w": box_w,
      "centroid": np.stack([centroid_y, centroid_x], axis=-1),  # [F, 2]
      "fill": area / (box_h * box_w),
      "corner_fill": np.where(num_corner > 0, corner_fill, 0.0),
      "asymmetry": (centroid_y - box_cy) / (box_h / 2.0),
      "mean_rgb": color_sum / safe_area[:, None],  # [F, 3]
  }


def _classify_shapes(fill: np.ndarray, corner_fill: np.ndarray, asymmetry: np.ndarray,
                     aspect: np.ndarray) -> np.ndarray:
  """Index into SHAPES per frame, -1 where no rule fits; see the threshold constants."""
  square = (corner_fill >= SQUARE_MIN_CORNER_FILL) & (fill >= SQUARE_MIN_FILL)
  triangle = ~square & (asymmetry >= TRIANGLE_MIN_ASYMMETRY) & (fill <= TRIANGLE_MAX_FILL)
  circle = ((corner_fill < SQUARE_MIN_CORNER_FILL) & (np.abs(asymmetry) < TRIANGLE_MIN_ASYMMETRY)
            & (fill >= CIRCLE_MIN_FILL))
  shapes = np.select([square, triangle, circle],
                     [SHAPES.index("square"), SHAPES.index("triangle"), SHAPES.index("circle")], -1)
  return np.where((aspect <= MAX_ASPECT) & (aspect >= 1.0 / MAX_ASPECT), shapes, -1)


# ---- judging one measured video ---------------------------------------------------------------------

def _frames_list(frames: np.ndarray) -> str:
  return ", ".join(str(int(t)) for t in frames)


def _mode(values: np.ndarray) -> int:
  return int(collections.Counter(values.tolist()).most_common(1)[0][0])


def _judge_measured(m: dict[str, np.ndarray], expect: _Expectation) -> Judgement:
  """Applies the rules of the module docstring to the features `m` of one video's T frames."""
  reasons: list[str] = []
  present = m["present"]
  centroids = np.where(present[:, None], m["centroid"], np.nan)
  if not present.all():
    reasons.append(f"{NO_OBJECT}: frame(s) {_frames_list(np.flatnonzero(~present))} hold no object of >= "
                   f"{expect.min_object_area:g} px")
  several = np.flatnonzero(m["num_objects"] > 1)
  if several.size:
    reasons.append(f"{SEVERAL_OBJECTS}: frame(s) {_frames_list(several)} hold "
                   f"{', '.join(str(int(n)) for n in m['num_objects'][several])} objects")
  is_noisy = (m["stray"] > expect.max_stray_pixels) | (m["foreground"] > expect.max_foreground_pixels)
  noisy = np.flatnonzero(is_noisy)
  if noisy.size:
    reasons.append(f"{NOISY_FRAME}: frame(s) {_frames_list(noisy)} have "
                   f"{', '.join(str(int(n)) for n in m['foreground'][noisy])} foreground px of which "
                   f"{', '.join(str(int(n)) for n in m['stray'][noisy])} in specks (limits "
                   f"{expect.max_foreground_pixels:.0f} and {expect.max_stray_pixels:.0f})")
  # The object's attributes come from the other frames: a noisy frame's largest component is mostly noise.
  usable = present & ~is_noisy
  seen = np.flatnonzero(usable)
  if not seen.size:
    return Judgement(valid=False, reasons=reasons, shape=None, color=None, size=None, direction=None, speed=None,
                     centroids=centroids)

  # Shape.
  classes = _classify_shapes(m["fill"][seen], m["corner_fill"][seen], m["asymmetry"][seen],
                             m["box_h"][seen] / m["box_w"][seen])  # [S]
  unknown = classes < 0
  if unknown.any():
    reasons.append(f"{UNKNOWN_SHAPE}: frame(s) {_frames_list(seen[unknown])} (fill "
                   f"{', '.join(f'{f:.2f}' for f in m['fill'][seen][unknown])})")
  known = classes[~unknown]
  shape_index = _mode(known) if known.size else None
  if np.unique(known).size > 1:
    reasons.append(f"{SHAPE_CHANGES}: {', '.join(SHAPES[c] if c >= 0 else '?' for c in classes)}")

  # Colour.
  mean_rgb = m["mean_rgb"][seen]  # [S, 3]
  distance = np.linalg.norm(mean_rgb[:, None, :] - _PALETTE[None], axis=-1)  # [S, 6]
  nearest = distance.argmin(axis=1)
  nearest_distance = distance.min(axis=1)
  off = nearest_distance > COLOR_TOLERANCE
  if off.any():
    reasons.append(f"{OFF_PALETTE}: frame(s) {_frames_list(seen[off])} average "
                   f"{', '.join(str(tuple(int(round(v)) for v in rgb)) for rgb in mean_rgb[off])}, "
                   f"{', '.join(f'{d:.0f}' for d in nearest_distance[off])} from the nearest palette colour "
                   f"(tolerance {COLOR_TOLERANCE:g})")
  color_index = _mode(nearest)
  if np.unique(nearest).size > 1:
    reasons.append(f"{COLOR_CHANGES}: {', '.join(_COLOR_NAMES[c] for c in nearest)}")

  # Size: each frame with its own shape's area factor (the video's shape where the frame's is unknown).
  size = size_px = None
  if shape_index is not None:
    frame_shapes = np.where(unknown, shape_index, classes)
    r_hat = np.sqrt(m["area"][seen] / _SIZE_AREA_FACTOR[frame_shapes]) - _SIZE_BIAS[frame_shapes]  # [S]
    sizes = np.asarray(expect.sizes, np.float64)
    snapped = sizes[np.abs(r_hat[:, None] - sizes[None]).argmin(axis=1)]
    if np.unique(snapped).size > 1 and np.ptp(r_hat) > SIZE_CHANGE_PX:
      reasons.append(f"{SIZE_CHANGES}: {', '.join(f'{r:.1f}' for r in r_hat)} px")
    size_px = float(np.median(r_hat))
    size = int(sizes[np.abs(sizes - size_px).argmin()])
    if abs(size_px - size) > SIZE_TOLERANCE_PX:
      reasons.append(f"{WRONG_SIZE}: {size_px:.1f} px, the dataset's sizes are "
                     f"{', '.join(str(s) for s in expect.sizes)} (tolerance {SIZE_TOLERANCE_PX:g} px)")

  # Motion.
  direction = speed = None
  if usable.all() and len(usable) >= 2:
    motion_reason, direction_index, speed = _judge_motion(m["centroid"], expect.steps)
    if motion_reason is None:
      direction = _DIRECTION_NAMES[direction_index]
    else:
      reasons.append(motion_reason)

  return Judgement(valid=not reasons, reasons=reasons,
                   shape=SHAPES[shape_index] if shape_index is not None else None,
                   color=_COLOR_NAMES[color_index], size=size, direction=direction, speed=speed,
                   size_px=size_px, mean_rgb=mean_rgb.mean(axis=0), centroids=centroids)


def _speeds(lengths: np.ndarray) -> str:
  """The distinct speeds of the 8 ideal steps, for the reasons: "2" or "2, 2.83"."""
  return ", ".join(f"{v:g}" for v in sorted(set(np.round(lengths, 2))))


def _judge_motion(centroids: np.ndarray, ideal_steps: np.ndarray) -> tuple[str | None, int, float]:
  """(reason or None, direction index, fitted speed) for centroids [T, 2], T >= 2.

  `ideal_steps` [8, 2]: the dataset's displacement per frame in each of the 8 directions.
  """
  num_frames = len(centroids)
  t = np.arange(num_frames, dtype=np.float64)
  lengths_ideal = np.linalg.norm(ideal_steps, axis=-1)  # [8] the dataset's speed in each direction
  units = ideal_steps / lengths_ideal[:, None]  # [8, 2]
  speed = float(lengths_ideal.min())  # the axis-aligned speed; diagonals on the grid are sqrt(2) x faster
  # Best of the 8 ideal trajectories: residuals of c_t - t * step_k around their mean (the best start).
  residual = centroids[None] - t[None, :, None] * ideal_steps[:, None, :]  # [8, T, 2]
  residual = residual - residual.mean(axis=1, keepdims=True)
  best = int((residual ** 2).sum(axis=(1, 2)).argmin())
  worst = float(np.linalg.norm(residual[best], axis=-1).max())
  # The free least-squares line c_t = a + v t, for the reported speed and the diagnosis.
  t_centred = t - t.mean()
  velocity = t_centred @ (centroids - centroids.mean(axis=0)) / (t_centred @ t_centred)  # [2] px per frame
  fitted_speed = float(np.linalg.norm(velocity))
  if worst <= TRAJECTORY_TOLERANCE_PX:
    return None, best, fitted_speed

  # Invalid: say why. A free line through the centroids that fits as well as rasterisation allows means a constant
  # velocity, just not a valid one; otherwise the motion changed during the video.
  steps = np.diff(centroids, axis=0)  # [T-1, 2]
  lengths = np.linalg.norm(steps, axis=-1)
  moving = lengths >= STATIONARY_FRACTION * speed
  step_lengths = ", ".join(f"{n:.1f}" for n in lengths)
  if not moving.any():
    return (f"{STATIONARY}: steps of {step_lengths} px, the dataset's shapes move {_speeds(lengths_ideal)} px/frame",
            best,
            fitted_speed)
  free_residual = centroids - centroids.mean(axis=0) - t_centred[:, None] * velocity[None]  # [T, 2]
  if np.linalg.norm(free_residual, axis=-1).max() <= CONSTANT_VELOCITY_PX:
    heading = int((units @ velocity).argmax())
    unit = units[heading]
    along, across = float(velocity @ unit), float(velocity @ np.asarray([-unit[1], unit[0]]))
    if abs(along - lengths_ideal[heading]) >= abs(across):
      return (f"{WRONG_SPEED}: {fitted_speed:.2f} px/frame, the dataset's shapes move {lengths_ideal[heading]:g} "
              f"px/frame {_DIRECTION_NAMES[heading]}", best,
              fitted_speed)
    return (f"{OFF_DIRECTION}: heading {math.degrees(math.atan2(across, along)):+.0f} degrees from "
            f"{_DIRECTION_NAMES[heading]}", best, fitted_speed)
  headings = (steps @ units.T).argmax(axis=1)  # [T-1], nearest direction of each step
  if np.unique(headings[moving]).size > 1:
    names = ", ".join(_DIRECTION_NAMES[k] if move else "-" for k, move in zip(headings, moving))
    return f"{DIRECTION_CHANGES}: steps head {names}", best, fitted_speed
  unit = units[headings[moving][0]]
  normal = np.asarray([-unit[1], unit[0]])
  if np.abs(free_residual @ normal).max() > np.abs(free_residual @ unit).max():
    return (f"{NOT_STRAIGHT}: centroids leave the fitted line by up to {np.abs(free_residual @ normal).max():.1f} "
            "px", best, fitted_speed)
  return (f"{SPEED_CHANGES}: steps of {step_lengths} px, the dataset's shapes move {_speeds(lengths_ideal)} px/frame",
          best,
          fitted_speed)


# ---- public API -------------------------------------------------------------------------------------

def judge_videos(videos: np.ndarray, *, config: StochasticShapesConfig | None = None
                 ) -> list[Judgement] | list[list[Judgement]]:
  """Judges a batch: uint8 [N, T, H, W, 3] -> N Judgements, or [E, D, T, H, W, 3] -> E lists of D.

  Args:
    videos: decoded videos, e.g. D decodes of each of E conditioning examples.
    config: the dataset config the model learned (sizes and speed); None derives them from the frame size with
      the dataset's rule.
  """
  videos = _check_videos(videos, (5, 6), "[N, T, H, W, 3] or [examples, decodes, T, H, W, 3]", "videos")
  *batch, num_frames, height, width, _ = videos.shape
  expect = _expectation(height, config)
  frames = videos.reshape(-1, height, width, 3)  # [N*T, H, W, 3]
  results: list[Judgement] = []
  if frames.shape[0]:
    measures = _measure_frames(frames, expect)
    for i in range(frames.shape[0] // num_frames):
      one = {key: value[i * num_frames:(i + 1) * num_frames] for key, value in measures.items()}
      results.append(_judge_measured(one, expect))
  if len(batch) == 2:
    return [results[e * batch[1]:(e + 1) * batch[1]] for e in range(batch[0])]
  return results


def judge_video(video: np.ndarray, *, config: StochasticShapesConfig | None = None) -> Judgement:
  """Judges one uint8 video [T, H, W, 3]; see judge_videos for `config`."""
  video = _check_videos(video, (4,), "[T, H, W, 3]", "video")
  return judge_videos(video[None], config=config)[0]


def judge_continuation(context: np.ndarray, generated: np.ndarray, *, continuity: bool = True,
                       config: StochasticShapesConfig | None = None
                       ) -> Judgement | list[Judgement] | list[list[Judgement]]:
  """Judges generated frames as the continuation of conditioning frames.

  With `continuity` (the default) the video judged is the conditioning frames followed by the generated ones, so
  the generated object must be the conditioning one (same shape, colour and size) and the motion one trajectory
  across the boundary (checked when there are >= 2 frames in all); frame numbers in the reasons count the
  conditioning frames first. Without it only the generated frames are judged.

  Args:
    context: uint8 [..., Tc, H, W, 3], leading dims a prefix of generated's (broadcast over decodes), e.g.
      [E, Tc, H, W, 3] for generated [E, D, Tg, H, W, 3].
    generated: uint8 [Tg, H, W, 3], [N, Tg, H, W, 3] or [E, D, Tg, H, W, 3].
    continuity: judge the joined video rather than the generated frames alone.
    config: see judge_videos.

  Returns:
    One Judgement for one video, else the nesting of judge_videos.
  """
  generated = _check_videos(generated, (4, 5, 6), "[Tg, H, W, 3], [N, Tg, H, W, 3] or [E, D, Tg, H, W, 3]",
                            "generated")
  single = generated.ndim == 4
  if single:
    generated = generated[None]
  if continuity:
    context = _check_videos(context, tuple(range(4, generated.ndim + 1)), "[..., Tc, H, W, 3]", "context")
    lead, context_lead = generated.shape[:-4], context.shape[:-4]
    if context.shape[-3:] != generated.shape[-3:] or lead[:len(context_lead)] != context_lead:
      raise ValueError(f"shapes_judge: context {list(context.shape)} does not fit generated "
                       f"{list(generated.shape)}: expected [..., Tc, {', '.join(map(str, generated.shape[-3:]))}] "
                       f"with leading dims a prefix of {list(lead)}")
    context = context.reshape(context_lead + (1,) * (len(lead) - len(context_lead)) + context.shape[-4:])
    context = np.broadcast_to(context, lead + context.shape[-4:])
    generated = np.concatenate([context, generated], axis=-4)
  results = judge_videos(generated, config=config)
  return results[0] if single else results


def _name(value: object, names: tuple[str, ...], what: str) -> str:
  if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
    return names[int(value)]
  if isinstance(value, str) and value in names:
    return value
  raise ValueError(f"shapes_judge: unknown {what} {value!r}; expected one of {', '.join(names)} or an index "
                   f"0..{len(names) - 1}")


def matches(result: Judgement, shape: str | int | None = None, color: str | int | None = None,
            direction: str | int | None = None, size: int | None = None) -> bool:
  """Whether `result` is valid and shows the given attributes ("does the video match its caption").

  Attributes left None are not checked; shape, colour and direction may be names or indices (as stored by the
  dataset), size is r in pixels.
  """
  if not result.valid:
    return False
  wanted = ((shape, result.shape, SHAPES, "shape"), (color, result.color, _COLOR_NAMES, "color"),
            (direction, result.direction, _DIRECTION_NAMES, "direction"))
  for value, detected, names, what in wanted:
    if value is not None and _name(value, names, what) != detected:
      return False
  return size is None or int(size) == result.size


def direction_entropy(directions: Iterable[str | int | None]) -> float:
  """Entropy in bits of the empirical distribution of `directions` (None entries are skipped; 0 if none remain)."""
  counts = collections.Counter(_name(d, _DIRECTION_NAMES, "direction") for d in directions if d is not None)
  total = sum(counts.values())
  if not total:
    return 0.0
  p = np.asarray(list(counts.values()), np.float64) / total
  return float(max(0.0, -(p * np.log2(p)).sum()))


_ATTRIBUTES: dict[str, tuple[str, ...] | None] = {
    "shape": SHAPES, "color": _COLOR_NAMES, "direction": _DIRECTION_NAMES, "size": None}


def summarize(results: Sequence[Judgement] | Sequence[Sequence[Judgement]],
              ground_truth: Mapping[str, Sequence[object] | np.ndarray] | None = None) -> JudgeSummary:
  """Aggregates Judgements, flat [N] or nested [E][D] (as judge_videos returns them).

  Args:
    results: the judgements.
    ground_truth: optional attributes per video ([N], or [E] / [E, D] for nested results, broadcast over
      decodes), keys among "shape", "color", "direction", "size"; names or indices as in the dataset (its
      examples store indices).
  """
  nested = bool(results) and not isinstance(results[0], Judgement)
  groups: list[list[Judgement]] = [list(group) for group in results] if nested else [list(results)]
  flat = [r for group in groups for r in group]
  num = len(flat)
  valid = [r for r in flat if r.valid]
  counts = collections.Counter(r.direction for r in valid if r.direction is not None)
  direction_counts = {name: counts.get(name, 0) for name in _DIRECTION_NAMES}
  total = sum(direction_counts.values())
  reason_counts = collections.Counter(code for r in flat for code in r.codes)

  agreement: dict[str, float] = {}
  match_rate = None
  if ground_truth is not None:
    unknown = set(ground_truth) - set(_ATTRIBUTES)
    if unknown:
      raise ValueError(f"shapes_judge: unknown ground-truth keys {sorted(unknown)}; use some of "
                       f"{', '.join(_ATTRIBUTES)}")
    truth = {key: _broadcast_truth(key, values, groups, nested) for key, values in ground_truth.items()}
    for key, values in truth.items():
      names = _ATTRIBUTES[key]
      wanted = [int(v) if names is None else _name(v, names, key) for v in values]
      agreement[key] = float(np.mean([getattr(r, key) == w for r, w in zip(flat, wanted)])) if num else 0.0
    matched = [matches(r, **{key: values[i] for key, values in truth.items()}) for i, r in enumerate(flat)]
    match_rate = float(np.mean(matched)) if num else 0.0

  example_entropy = None
  if nested:
    example_entropy = float(np.mean([direction_entropy(r.direction for r in group if r.valid) for group in groups])
                            ) if groups else 0.0
  return JudgeSummary(
      num_videos=num,
      valid_rate=len(valid) / num if num else 0.0,
      object_kept_rate=sum(r.object_kept for r in flat) / num if num else 0.0,
      direction_counts=direction_counts,
      direction_distribution={name: (n / total if total else 0.0) for name, n in direction_counts.items()},
      direction_entropy_bits=direction_entropy(r.direction for r in valid),
      reason_counts=dict(reason_counts),
      agreement=agreement,
      match_rate=match_rate,
      example_direction_entropy_bits=example_entropy)


def _broadcast_truth(key: str, values: Sequence[object] | np.ndarray, groups: list[list[Judgement]],
                     nested: bool, what: str | None = None) -> list[object]:
  """Ground truth `values` of one attribute as one entry per judged video, in order; `what` names it in errors."""
  values = list(np.asarray(values, dtype=object).reshape(-1)) if np.ndim(values) else [values]
  per_group = [len(group) for group in groups]
  if nested and len(values) == len(groups):
    return [v for v, n in zip(values, per_group) for _ in range(n)]
  if len(values) == sum(per_group):
    return values
  shape = f"[{len(groups)}] or [{len(groups)}, {per_group[0] if per_group else 0}]" if nested else \
      f"[{sum(per_group)}]"
  what = what or f"ground_truth[{key!r}]"
  raise ValueError(f"shapes_judge: {what} has {len(values)} entries; expected {shape}, one per "
                   "video (or per example for nested results)")


def judge_batch(videos: np.ndarray, ground_truth: Mapping[str, Sequence[object] | np.ndarray] | None = None, *,
                config: StochasticShapesConfig | None = None) -> JudgeSummary:
  """summarize(judge_videos(videos, config=config), ground_truth): videos [N, ...] or [E, D, ...]."""
  return summarize(judge_videos(videos, config=config), ground_truth)
