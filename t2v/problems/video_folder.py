"""Your own videos as a t2v problem: one folder per class (the Moments in Time layout), captioned by folder name.

    ROOT/<label>/<video>              e.g. ROOT/playing_guitar/clip01.mp4 (videos in subfolders of <label> count)
    ROOT/<split>/<label>/<video>      with split folders: training/validation (Moments in Time), train/test, val
    ROOT/captions.json                optional: {"<label>": "<caption>", ...}

    problem = VideoFolder("/tmp/tfds", config="root=/data/videos,frame_size=64,num_frames=16")
    problem.prepare()                 # decodes every video once into TFDS records under data_dir; no network
    ds = problem.dataset("train", batch_size=8, training=True)   # {"video", "label", "caption", "filename"}

Videos are any container FFmpeg reads (mp4, avi, gif, webm, mov, mkv, ...; t2v.video_io.read_video), found by
file extension. Without split folders a stable hash of each video's path relative to ROOT holds out
`test_fraction` of them as `test`, the same ones on every machine; split folders map training/train -> `train`,
validation/val -> `validation` and test -> `test`, and the problem evaluates on `test` when there is one,
else on `validation`.

Each clip is frames 0, s, 2s, ... ((num_frames - 1) * s) of its video (s = frame_stride), centre-cropped to a
square and resized to frame_size x frame_size with Pillow's bilinear filter, which widens with the scale factor
when shrinking, so downscaling averages every source pixel (area-like, no aliasing). Frames are stored as PNG.
Videos with fewer than (num_frames - 1) * s + 1 frames, and files FFmpeg cannot decode, are skipped, counted and
logged (the counts are kept in the prepared dataset's metadata.json).

Labels are the sorted names of the label folders that hold a video (across all split folders). A label's
caption is its folder name with `_` and `-` turned into spaces ("playing_guitar" -> "playing guitar") unless
ROOT/captions.json gives one; the caption vocabulary is built from the label captions (t2v.text).

The problem config is a string of typed keys, e.g. "root=/data/videos,frame_size=64,num_frames=16" (see
VideoFolderConfig); `problem.config.name` is its normalised form, and passing it back as `config=` gives the same
config, which is how a training run records and restores it. Once prepared, the data is read from data_dir alone
(ROOT may be gone); a changed ROOT is not noticed: delete `<data_dir>/t2v_video_folder/<vf_...>` to re-prepare.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from t2v import text
from t2v import video_io
from t2v.problems import base

# Lower-case file extensions read as videos; other files (notes, thumbnails, .DS_Store) are ignored.
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp"})

# Split folder names -> TFDS split names. Moments in Time ships training/ and validation/.
SPLIT_FOLDERS: dict[str, str] = {"train": "train", "training": "train", "validation": "validation",
                                 "val": "validation", "test": "test"}
_SPLIT_ORDER = ("train", "validation", "test")

CAPTIONS_FILE = "captions.json"


# ---- the config ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VideoFolderConfig:
  """What to read from ROOT and how to cut it into clips.

  root: the folder of label folders (or of split folders); stored as an absolute path. Must not contain ','.
  frame_size: side S of the square frames, pixels (>= 8).
  num_frames: frames T of a stored clip (>= 2: at least one given and one predicted at evaluation).
  frame_stride: keep every frame_stride-th frame of the video (>= 1): clips span (T - 1) * stride + 1 frames.
  input_frames: frames given at evaluation (0 <= input_frames < num_frames); the rest are predicted. Only the
    evaluation protocol: clips prepared for one value serve every other.
  test_fraction: without split folders, the share of videos held out as `test` (0 < f < 1).
  """

  root: str
  frame_size: int = 64
  num_frames: int = 16
  frame_stride: int = 1
  input_frames: int = 1
  test_fraction: float = 0.1

  def __post_init__(self):
    for key, kind in _KEY_TYPES.items():
      value = getattr(self, key)
      if kind is float and isinstance(value, int) and not isinstance(value, bool):
        object.__setattr__(self, key, float(value))
      elif not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"video_folder: {key}={value!r} must be {_KIND_NAMES[kind]}")
    if not self.root:
      raise ValueError("video_folder: root='' must name the folder holding <label>/<video> files")
    if "," in self.root:
      raise ValueError(f"video_folder: root={self.root!r} contains ',', which separates config keys; rename the "
                       "folder or point root at a symlink to it")
    object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(self.root)))
    if self.frame_size < 8 or self.num_frames < 2 or self.frame_stride < 1:
      raise ValueError(f"video_folder: frame_size={self.frame_size}, num_frames={self.num_frames} and "
                       f"frame_stride={self.frame_stride} must be >= 8, >= 2 and >= 1")
    if not 0 <= self.input_frames < self.num_frames:
      raise ValueError(f"video_folder: input_frames={self.input_frames} must be in 0..{self.num_frames - 1} "
                       f"(num_frames={self.num_frames}, and at least one frame is predicted)")
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError(f"video_folder: test_fraction={self.test_fraction} must be in (0, 1), e.g. 0.1")

  @classmethod
  def parse(cls, config: str) -> "VideoFolderConfig":
    """Parses "root=/path,frame_size=64,..." (keys in any order; root required; others default)."""
    if not isinstance(config, str):
      raise TypeError(f"video_folder: config must be a str or a VideoFolderConfig, got {type(config).__name__}")
    values: dict[str, Any] = {}
    for item in config.split(","):
      item = item.strip()
      if not item:
        continue
      key, sep, raw = item.partition("=")
      key, raw = key.strip(), raw.strip()
      if not sep or key not in _KEY_TYPES:
        raise ValueError(f"video_folder: {item!r} in config {config!r} is not one of the keys "
                         f"{_valid_keys()} (given as key=value, comma separated)")
      if key in values:
        raise ValueError(f"video_folder: key {key!r} is given twice in config {config!r}")
      values[key] = _parse_value(key, raw, config)
    if "root" not in values:
      raise ValueError(f"video_folder: config {config!r} has no root; give root=<folder holding <label>/<video> "
                       f"files>, e.g. 'root=/data/videos,frame_size=64'. Keys: {_valid_keys()}")
    return cls(**values)

  @property
  def name(self) -> str:
    """Every key as key=value in a fixed order: `VideoFolderConfig.parse(config.name) == config`."""
    return ",".join(f"{key}={getattr(self, key)!r}" if _KEY_TYPES[key] is float else f"{key}={getattr(self, key)}"
                    for key in _KEY_TYPES)

  @property
  def data_name(self) -> str:
    """`name` less the keys that do not change the stored clips (input_frames)."""
    return ",".join(item for item in self.name.split(",") if not item.startswith("input_frames="))

  @property
  def tfds_config_name(self) -> str:
    """The TFDS builder config name (a directory name): vf_<hash of data_name>."""
    return "vf_" + hashlib.sha256(self.data_name.encode("utf-8")).hexdigest()[:16]

  @property
  def clip_span(self) -> int:
    """Video frames a clip covers: (num_frames - 1) * frame_stride + 1."""
    return (self.num_frames - 1) * self.frame_stride + 1


_KEY_TYPES: dict[str, type] = {"root": str, "frame_size": int, "num_frames": int, "frame_stride": int,
                               "input_frames": int, "test_fraction": float}
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}


def _valid_keys() -> str:
  return ", ".join(f"{key} ({_KIND_NAMES[kind]}{', required' if key == 'root' else ''})"
                   for key, kind in _KEY_TYPES.items())


def _parse_value(key: str, raw: str, config: str) -> Any:
  kind = _KEY_TYPES[key]
  if kind is str:
    return raw
  try:
    return kind(raw)
  except ValueError:
    raise ValueError(f"video_folder: {key}={raw!r} in config {config!r} must be {_KIND_NAMES[kind]}, e.g. "
                     f"{key}={getattr(VideoFolderConfig, key)!r}") from None


# ---- reading ROOT ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Catalog:
  """What ROOT holds: labels, their captions, and each split's videos as (path relative to ROOT, label id)."""

  labels: tuple[str, ...]
  label_captions: tuple[str, ...]
  split_folders: dict[str, str]  # TFDS split -> folder under ROOT ("" when splits are held out by hash)
  files: dict[str, tuple[tuple[str, int], ...]] | None = None  # None when only the labels were listed

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(split for split in _SPLIT_ORDER if split in self.split_folders)


def _is_video(name: str) -> bool:
  return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _subfolders(path: str) -> list[str]:
  with os.scandir(path) as entries:
    return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def _videos_under(folder: str) -> list[str]:
  """Paths of the videos under `folder` (recursively), relative to it, with '/' separators, sorted."""
  found = []
  for directory, subdirs, names in os.walk(folder):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    relative = os.path.relpath(directory, folder)
    for name in names:
      if _is_video(name):
        found.append(name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}")
  return sorted(found)


def _holds_a_video(folder: str) -> bool:
  for _, subdirs, names in os.walk(folder):
    subdirs[:] = [d for d in subdirs if not d.startswith(".")]
    if any(_is_video(name) for name in names):
      return True
  return False


def default_caption(label: str) -> str:
  """A label folder's caption: `_` and `-` become spaces ("playing_guitar" -> "playing guitar")."""
  return re.sub(r"[_-]+", " ", label).strip()


def _split_layout(root: str) -> dict[str, str]:
  """TFDS split -> split folder, or {} when ROOT holds label folders directly."""
  folders = _subfolders(root)
  named = [folder for folder in folders if folder in SPLIT_FOLDERS]
  if not named:
    return {}
  others = [folder for folder in folders if folder not in SPLIT_FOLDERS]
  if others:
    raise ValueError(f"video_folder: {root} mixes split folders ({', '.join(named)}) with other folders "
                     f"({', '.join(others[:5])}); lay it out as ROOT/<split>/<label>/<video> or as "
                     "ROOT/<label>/<video>, not both")
  layout: dict[str, str] = {}
  for folder in named:
    split = SPLIT_FOLDERS[folder]
    if split in layout:
      raise ValueError(f"video_folder: {root} has both {layout[split]!r} and {folder!r}, which are the same split "
                       f"{split!r}; keep one")
    layout[split] = folder
  if "train" not in layout:
    raise ValueError(f"video_folder: {root} has split folders ({', '.join(named)}) but no training split; add "
                     f"{os.path.join(root, 'train')} (or 'training')")
  return layout


def _read_captions(root: str, labels: list[str]) -> tuple[str, ...]:
  path = os.path.join(root, CAPTIONS_FILE)
  given: dict[str, str] = {}
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        given = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"video_folder: {path} is not valid JSON ({e}); it should map label folder names to "
                       'captions, e.g. {"playing_guitar": "someone plays a guitar"}') from e
    if not isinstance(given, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
      raise ValueError(f"video_folder: {path} must hold one JSON object mapping label folder names to caption "
                       'strings, e.g. {"playing_guitar": "someone plays a guitar"}')
    unknown = sorted(set(given) - set(labels))
    if unknown:
      logging.warning("video_folder: %s has captions for %d labels with no video folder (ignored): %s", path,
                      len(unknown), ", ".join(unknown[:10]))
  captions = []
  for label in labels:
    caption = given.get(label, default_caption(label))
    if not text.words(caption):
      raise ValueError(f"video_folder: label {label!r} has the caption {caption!r}, which has no words (letters or "
                       f"digits); give it one in {path}")
    captions.append(caption)
  return tuple(captions)


def _not_found(root: str, why: str) -> base.DataNotFoundError:
  return base.DataNotFoundError(
      f"video_folder: {why}; pass root=<folder> in --problem_config (e.g. 'root=/data/videos,frame_size=64') "
      f"holding ROOT/<label>/<video> files (mp4, avi, gif, webm, mov, ...) or ROOT/<split>/<label>/<video>, or "
      f"--data_dir pointing at data prepared from {root}")


def scan(config: VideoFolderConfig, *, list_files: bool = True) -> Catalog:
  """Reads ROOT's layout, labels and captions and, with list_files, every split's videos.

  Raises DataNotFoundError when ROOT is missing or holds no video, ValueError when its layout is ambiguous.
  """
  root = config.root
  if not os.path.isdir(root):
    raise _not_found(root, f"root {root} does not exist" if not os.path.exists(root) else
                     f"root {root} is not a folder")
  layout = _split_layout(root)
  split_roots = {split: os.path.join(root, folder) for split, folder in layout.items()} or {"": root}
  labels = sorted({label for folder in split_roots.values() for label in _subfolders(folder)
                   if _holds_a_video(os.path.join(folder, label))})
  if not labels:
    raise _not_found(root, f"{root} holds no label folder with a video in it (searched "
                     f"{', '.join(sorted(split_roots.values()))} for <label>/<file> with a video extension: "
                     f"{' '.join(sorted(VIDEO_EXTENSIONS))})")
  captions = _read_captions(root, labels)
  split_folders = layout or {"train": "", "test": ""}
  if not list_files:
    return Catalog(tuple(labels), captions, split_folders)
  files: dict[str, list[tuple[str, int]]] = {split: [] for split in split_folders}
  for prefix, folder in split_roots.items():
    for label_id, label in enumerate(labels):
      label_dir = os.path.join(folder, label)
      if not os.path.isdir(label_dir):
        continue
      for name in _videos_under(label_dir):
        relative = "/".join(part for part in (layout.get(prefix, ""), label, name) if part)
        split = prefix or ("test" if _held_out(relative, config.test_fraction) else "train")
        files[split].append((relative, label_id))
  return Catalog(tuple(labels), captions, split_folders, {split: tuple(f) for split, f in files.items()})


def _held_out(relative_path: str, fraction: float) -> bool:
  """Whether a video goes to `test`: a stable hash of its path relative to ROOT, as a number in [0, 1)."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def clip_from_video(video: np.ndarray, config: VideoFolderConfig) -> np.ndarray | None:
  """Frames 0, s, ..., (T - 1) * s of `video` [N, H, W, 3], centre-cropped and resized: uint8 [T, S, S, 3].

  None when the video is shorter than `config.clip_span` frames.
  """
  if len(video) < config.clip_span:
    return None
  frames = video[:config.clip_span:config.frame_stride]  # [T, H, W, 3]
  height, width = frames.shape[1:3]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  frames = frames[:, top:top + side, left:left + side]  # [T, side, side, 3]
  size = config.frame_size
  if side == size:
    return np.ascontiguousarray(frames)
  return np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR))
                   for frame in frames])  # [T, S, S, 3]


# ---- the TFDS builder ------------------------------------------------------------------------------------

class VideoFolderDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS builder over a user's video folders (local files only; no download).

  Its builder config is named `VideoFolderConfig.tfds_config_name` and described by `data_name`; label names
  and captions are only known once ROOT is read, so they are set while generating and read back from
  data_dir (label.labels.txt, metadata.json) afterwards. Not registered with TFDS by name: it cannot be built
  without a VideoFolderConfig.
  """

  name = "t2v_video_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  # See StochasticShapesDataset: TFDS 4.9's code_path would import importlib_resources.
  code_path = epath.Path(__file__)

  def __init__(self, *, video_folder: VideoFolderConfig, **kwargs):
    self.video_folder = video_folder
    config = tfds.core.BuilderConfig(name=video_folder.tfds_config_name, description=video_folder.data_name)
    super().__init__(config=config, **kwargs)

  def _create_builder_config(self, builder_config, version):
    # Every config is built from the user's problem config, none is predefined: take it as given (TFDS would
    # otherwise log "Using custom data configuration" each time a builder is made).
    del version
    return builder_config

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.video_folder
    size = config.frame_size
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(shape=(config.num_frames, size, size, 3)),
            "label": tfds.features.ClassLabel(),  # names: the sorted label folders, set by _split_generators
            "caption": tfds.features.Text(),
            "filename": tfds.features.Text(),  # relative to ROOT, e.g. "playing_guitar/clip01.mp4"
        }),
        supervised_keys=None,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    catalog = scan(self.video_folder)
    self.info.features["label"].names = list(catalog.labels)
    self.info.metadata["label_captions"] = list(catalog.label_captions)
    self.info.metadata["split_folders"] = dict(catalog.split_folders)
    self.info.metadata["config"] = self.video_folder.data_name
    self.info.metadata["skipped"] = {}
    return {split: self._generate_examples(split, files, catalog.label_captions)
            for split, files in catalog.files.items()}

  def _generate_examples(self, split: str, files: tuple[tuple[str, int], ...], captions: tuple[str, ...]):
    config = self.video_folder
    too_short: list[str] = []
    unreadable: list[str] = []
    for relative, label in files:
      try:
        video = video_io.read_video(os.path.join(config.root, relative), max_frames=config.clip_span)
      except video_io.VideoReadError as e:
        logging.warning("video_folder: skipping %s", e)
        unreadable.append(relative)
        continue
      clip = clip_from_video(video, config)
      if clip is None:
        too_short.append(relative)
        continue
      yield relative, {"video": clip, "label": label, "caption": captions[label], "filename": relative}
    kept = len(files) - len(too_short) - len(unreadable)
    self.info.metadata["skipped"][split] = {"too_short": len(too_short), "unreadable": len(unreadable)}
    if too_short:
      logging.warning("video_folder: split %r: skipped %d of %d videos with fewer than %d frames (num_frames=%d, "
                      "frame_stride=%d), e.g. %s", split, len(too_short), len(files), config.clip_span,
                      config.num_frames, config.frame_stride, ", ".join(too_short[:3]))
    if unreadable:
      logging.warning("video_folder: split %r: skipped %d of %d videos FFmpeg could not decode, e.g. %s", split,
                      len(unreadable), len(files), ", ".join(unreadable[:3]))
    logging.info("video_folder: split %r: %d clips from %d videos", split, kept, len(files))
    if kept == 0:
      why = (f"{len(files)} videos: {len(too_short)} shorter than {config.clip_span} frames, {len(unreadable)} "
             "unreadable" if files else
             f"no video falls in it (test_fraction={config.test_fraction} of the videos are held out)")
      raise base.DataNotFoundError(
          f"video_folder: split {split!r} of {config.root} has no usable clip ({why}); add videos, lower "
          "num_frames or frame_stride, or raise test_fraction")


# ---- the problem -----------------------------------------------------------------------------------------

class VideoFolder(base.Problem):
  """Your own videos, one folder per class (Moments in Time layout), captioned by folder name; decoded locally."""

  name = "video_folder"
  tfds_name = VideoFolderDataset.name
  train_split = "train"
  frames_key = "video"
  label_key = "label"
  caption_key = "caption"
  has_caption = True
  static_keys = ("filename",)

  def __init__(self, data_dir: str | None = None, *, config: str | VideoFolderConfig | None = None):
    """`config` is a VideoFolderConfig or its string form, e.g. "root=/data/videos,frame_size=64,num_frames=16"."""
    super().__init__(data_dir)
    if config is None:
      raise ValueError("video_folder needs a config naming the videos' folder: --problem_config='root=/data/videos' "
                       f"(keys: {_valid_keys()})")
    self.config = config if isinstance(config, VideoFolderConfig) else VideoFolderConfig.parse(config)
    self._catalog: Catalog | None = None
    self._catalog_is_prepared = False

  def __repr__(self) -> str:
    return f"VideoFolder(data_dir={self.data_dir!r}, config={self.config.name!r})"

  # ---- from the config -----------------------------------------------------------------------------

  @property
  def frame_shape(self) -> tuple[int, int, int]:
    return (self.config.frame_size, self.config.frame_size, 3)

  @property
  def num_frames(self) -> int:
    return self.config.num_frames

  @property
  def num_input_frames(self) -> int:
    return self.config.input_frames

  @property
  def num_target_frames(self) -> int:
    return self.config.num_frames - self.config.input_frames

  # ---- from the data: the prepared dataset, else ROOT --------------------------------------------------

  def catalog(self) -> Catalog:
    """Labels, captions and splits: from the prepared data in data_dir, else read from ROOT (files not listed).

    Raises DataNotFoundError when neither is there.
    """
    if self._catalog is None or not self._catalog_is_prepared:
      builder = self.builder()
      if self._builder_is_prepared(builder):
        info = builder.info
        self._catalog = Catalog(labels=tuple(info.features["label"].names),
                                label_captions=tuple(info.metadata["label_captions"]),
                                split_folders=dict(info.metadata["split_folders"]))
        self._catalog_is_prepared = True
      elif self._catalog is None:
        self._catalog = scan(self.config, list_files=False)
    return self._catalog

  @property
  def num_labels(self) -> int:
    return len(self.catalog().labels)

  @property
  def label_captions(self) -> tuple[str, ...]:
    return self.catalog().label_captions

  @property
  def vocabulary(self) -> tuple[str, ...]:
    return text.build_vocabulary(self.label_captions)

  @property
  def tfds_splits(self) -> tuple[str, ...]:
    return self.catalog().splits

  @property
  def eval_split(self) -> str:
    return "test" if "test" in self.tfds_splits else "validation"

  # ---- the data on disk ----------------------------------------------------------------------------

  def _make_builder(self) -> tfds.core.DatasetBuilder:
    return VideoFolderDataset(data_dir=self.data_dir, video_folder=self.config)

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    return (f"or call VideoFolder(data_dir, config={self.config.name!r}).prepare() to decode the videos under "
            f"{self.config.root} into it (no download)")

  def prepare(self, download: bool = False) -> None:
    """Decodes ROOT's videos into data_dir unless prepared already (`download` is ignored: nothing is).

    Raises DataNotFoundError when ROOT is missing or holds no video, or a split ends up with no usable clip.
    """
    del download
    builder = self.builder()
    if self._builder_is_prepared(builder):
      return
    self.catalog()  # a missing or empty ROOT fails here, before TFDS starts
    builder.download_and_prepare(file_format="tfrecord",
                                 download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    self._catalog = None
    self._catalog_is_prepared = False
