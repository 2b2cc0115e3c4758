"""The Problem base class: a TFDS dataset turned into deterministic tf.data pipelines of uint8 video.

A problem says only what is specific to its data (the TFDS name, the feature holding the frames, the label and
ground-truth keys, the frame shape and clip length, the evaluation protocol). Everything else lives here:

    problem = Bair(data_dir="/data/tfds")
    problem.prepare()                                   # DataNotFoundError, not a download, when absent
    ds = problem.dataset(problem.train_split, batch_size=16, num_frames=13, training=True, seed=0)
    batch = next(iter(ds))                              # {"video": uint8 [16, 13, 64, 64, 3]}

Training pipelines are infinite, shuffled with `seed` and cut into random temporal windows whose starts are
stateless functions of (seed, element index), so rebuilding the pipeline with the same seed and `.skip(step)`
continues exactly where a run stopped. tf.data mixes TF's global seed into the shuffle seed: a run that calls
`tf.random.set_seed` must call it with the same value before rebuilding the dataset. Evaluation pipelines are one
pass, unshuffled, with windows starting at frame 0.

Frames are read still encoded (PNG) and only the frames of the chosen window are decoded.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from etils import epath
import tensorflow as tf
import tensorflow_datasets as tfds

from t2v.problems.spec import VideoSpec

# Encoded videos held in the shuffle buffer. At BAIR's ~200 KB per encoded clip this is ~200 MB of host memory.
DEFAULT_SHUFFLE_BUFFER = 1024

# One base split with an optional TFDS slice ("train", "test[:90%]"); unions ("train+test") are not accepted.
_SPLIT_RE = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_-]*)(?P<slice>\[[^\]]*\])?$")


class DataNotFoundError(FileNotFoundError):
  """A problem's TFDS data is not prepared in the data_dir; the message says where it looked and what to do."""


class CorruptRecordError(IOError):
  """A TFDS record file failed its checksum or could not be read; the message names the file."""


@functools.cache
def _local_files_builder_class(registered: type) -> type:
  """A subclass of the TFDS builder `registered` whose splits come from local files instead of a download."""

  class LocalFilesBuilder(registered, skip_registration=True):
    name = registered.name
    # TFDS 4.9's code_path imports importlib_resources, which TFDS does not install on Python >= 3.9. Pointing
    # it here also means no registered checksums, so nothing is ever checked against a download URL.
    code_path = epath.Path(__file__)

    def __init__(self, *, split_kwargs: dict[str, dict[str, Any]], **kwargs):
      self._split_kwargs = split_kwargs
      super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {split: self._generate_examples(**kwargs) for split, kwargs in self._split_kwargs.items()}

  LocalFilesBuilder.__name__ = LocalFilesBuilder.__qualname__ = f"{registered.__name__}FromLocalFiles"
  return LocalFilesBuilder


class Problem:
  """A video dataset read through TFDS: splits, evaluation protocol and tf.data pipelines.

  Subclasses set the class attributes below (or properties, when they follow a builder config) and, where the
  TFDS builder is not found by name, override `_make_builder`. Problems never read model hparams.

  Attributes:
    name: the registry name (t2v.registry.PROBLEMS).
    tfds_name: the TFDS builder name.
    frame_shape: (H, W, C) of the stored uint8 frames.
    num_frames: length T of a stored clip.
    num_input_frames, num_target_frames: the evaluation protocol (conditioning frames, predicted frames).
    train_split, eval_split: TFDS split strings (slicing allowed, e.g. "test[:90%]").
    num_labels: classes of the `label` feature (0: no label).
    has_caption: whether elements carry a `caption` (a tf.string scalar per clip).
    vocabulary: with has_caption, the words of the training captions (sorted, unique; see t2v.text), usually a
      property computed from the data.
    label_captions: the caption of each label id, or () (see VideoSpec).
    tfds_splits: the base split names the TFDS builder has; `dataset` accepts these with optional slicing.
    frames_key: the feature holding the frames ([T, H, W, C] images or a Video feature).
    label_key: the feature copied to `label` (int32) when num_labels > 0.
    caption_key: the feature copied to `caption` (tf.string) when has_caption.
    static_keys: per-clip ground-truth features passed through unchanged (integers as int32).
    temporal_keys: per-frame ground-truth features [T, ...], windowed with the video.
    shuffle_buffer: elements in the training shuffle buffer.
  """

  name: str = ""
  tfds_name: str = ""
  frame_shape: tuple[int, int, int] = (0, 0, 0)
  num_frames: int = 0
  num_input_frames: int = 0
  num_target_frames: int = 0
  train_split: str = "train"
  eval_split: str = "test"
  num_labels: int = 0
  has_caption: bool = False
  vocabulary: tuple[str, ...] = ()
  label_captions: tuple[str, ...] = ()

  tfds_splits: tuple[str, ...] = ("train", "test")
  frames_key: str = ""
  label_key: str | None = None
  caption_key: str | None = None
  static_keys: tuple[str, ...] = ()
  temporal_keys: tuple[str, ...] = ()
  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER

  def __init__(self, data_dir: str | None = None):
    self.data_dir = os.fspath(os.path.expanduser(data_dir)) if data_dir is not None else None

  def __repr__(self) -> str:
    return f"{type(self).__name__}(data_dir={self.data_dir!r})"

  # ---- what models see -----------------------------------------------------------------------------

  def spec(self) -> VideoSpec:
    """The VideoSpec models are built from."""
    return VideoSpec(frame_shape=tuple(self.frame_shape), num_input_frames=self.num_input_frames,
                     num_target_frames=self.num_target_frames, num_labels=self.num_labels,
                     has_caption=self.has_caption, vocabulary=tuple(self.vocabulary),
                     label_captions=tuple(self.label_captions))

  # ---- the data on disk ----------------------------------------------------------------------------

  def builder(self) -> tfds.core.DatasetBuilder:
    """A fresh TFDS builder over `data_dir` (fresh so it sees data prepared since the last call)."""
    return self._make_builder()

  def _make_builder(self) -> tfds.core.DatasetBuilder:
    """Hook: the TFDS builder. Default: the registered builder `tfds_name`."""
    return tfds.builder(self.tfds_name, data_dir=self.data_dir)

  @staticmethod
  def _builder_is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    # dataset_info.json is written last by download_and_prepare, after every record file.
    return (builder.data_path / "dataset_info.json").exists()

  def is_prepared(self) -> bool:
    """Whether the prepared TFDS dataset is in data_dir. Never touches the network."""
    return self._builder_is_prepared(self.builder())

  def prepare(self, download: bool = False) -> None:
    """Makes the data available or raises DataNotFoundError; downloads only when `download=True`.

    With download=True the TFDS builder's own download_and_prepare runs: it fetches the raw files, unless they
    are already in `<data_dir>/downloads/manual/` (see `_missing_data_hint`), in which case nothing is fetched.
    """
    builder = self.builder()
    if self._builder_is_prepared(builder):
      return
    if not download:
      raise self._not_found_error(builder)
    try:
      builder.download_and_prepare()
    except ModuleNotFoundError as e:
      if e.name != "importlib_resources":
        raise
      raise ModuleNotFoundError(
          f"{self.name}: TFDS {tfds.__version__} needs the package importlib_resources to prepare "
          f"{self.tfds_name!r} (it does not install it on Python >= 3.9); pip install importlib_resources",
          name=e.name) from e

  def _prepare_from_local(self, split_kwargs: dict[str, dict[str, Any]]) -> None:
    """Runs the registered TFDS builder's own `_generate_examples(**kwargs)` on local raw files, per split.

    Only `_split_generators` (which downloads) is replaced, so the records are parsed by TFDS's code and land
    where the registered builder reads them: `<data_dir>/<tfds_name>/<version>`. No-op when already prepared.
    """
    builder = _local_files_builder_class(tfds.builder_cls(self.tfds_name))(split_kwargs=split_kwargs,
                                                                           data_dir=self.data_dir)
    if not self._builder_is_prepared(builder):
      builder.download_and_prepare(file_format="tfrecord")

  def _prepared_builder(self) -> tfds.core.DatasetBuilder:
    builder = self.builder()
    if not self._builder_is_prepared(builder):
      raise self._not_found_error(builder)
    return builder

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    """Hook: how to make the data available offline (one clause, no trailing period)."""
    return (f"or call {type(self).__name__}(data_dir=...).prepare(download=True) on a machine with network "
            "access")

  def _not_found_error(self, builder: tfds.core.DatasetBuilder) -> DataNotFoundError:
    where = self.data_dir if self.data_dir is not None else f"the TFDS default {builder.data_dir_root}"
    return DataNotFoundError(
        f"{self.name}: TFDS dataset {builder.info.full_name!r} is not prepared in data_dir {where} "
        f"(no {builder.data_path / 'dataset_info.json'}); pass --data_dir pointing at a prepared TFDS "
        f"directory, {self._missing_data_hint(builder)}")

  # ---- validation ----------------------------------------------------------------------------------

  def _check_split(self, split: str) -> str:
    """Returns the base split name of `split` or raises ValueError listing the valid ones."""
    match = _SPLIT_RE.match(split) if isinstance(split, str) else None
    if match is None or match.group("base") not in self.tfds_splits:
      raise ValueError(
          f"{self.name}: unknown split {split!r}; valid splits are {', '.join(map(repr, self.tfds_splits))}, "
          f"optionally sliced as TFDS allows (e.g. {self.tfds_splits[0] + '[:90%]'!r}); this problem trains on "
          f"{self.train_split!r} and evaluates on {self.eval_split!r}")
    return match.group("base")

  def _frames_feature(self, builder: tfds.core.DatasetBuilder) -> Any:
    features = builder.info.features
    if isinstance(features, tfds.features.Sequence):  # a top-level Sequence of dicts (BAIR)
      return features.feature[self.frames_key]
    return features[self.frames_key]

  def _check_stored_shape(self, builder: tfds.core.DatasetBuilder) -> None:
    """Compares the stored frame shape and clip length with the problem's, from the builder's info."""
    stored = tuple(builder.info.features.shape[self.frames_key])  # (T, H, W, C)
    stored_length, stored_frame = stored[0], stored[1:]
    if stored_frame != tuple(self.frame_shape):
      raise ValueError(
          f"{self.name}: TFDS dataset {builder.info.full_name!r} at {builder.data_path} stores "
          f"{self.frames_key!r} frames of shape {stored_frame}, but the problem expects {tuple(self.frame_shape)}; "
          "point --data_dir at data prepared for this problem (or pick the matching builder config)")
    if stored_length != self.num_frames:
      raise ValueError(
          f"{self.name}: TFDS dataset {builder.info.full_name!r} at {builder.data_path} stores clips of "
          f"{stored_length} frames, but the problem expects {self.num_frames}; point --data_dir at data prepared "
          "for this problem (or pick the matching builder config)")

  def _frames_are_encoded(self, builder: tfds.core.DatasetBuilder) -> bool:
    """Whether the frames feature is a sequence of encoded images (decoded here, window only)."""
    feature = self._frames_feature(builder)
    if isinstance(builder.info.features, tfds.features.Sequence):
      return isinstance(feature, tfds.features.Image)
    return isinstance(feature, tfds.features.Sequence) and isinstance(feature.feature, tfds.features.Image)

  def _decoders(self, builder: tfds.core.DatasetBuilder) -> dict[str, Any] | None:
    """Skips TFDS's decoding of every image feature: ours are decoded after windowing, the others dropped."""
    features = builder.info.features
    inner = features.feature if isinstance(features, tfds.features.Sequence) else features
    decoders = {}
    for key, feature in inner.items():
      image = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
      if isinstance(image, tfds.features.Image):
        decoders[key] = tfds.decode.SkipDecoding()
    return decoders or None

  # ---- pipelines -----------------------------------------------------------------------------------

  def dataset(self, split: str, *, batch_size: int, num_frames: int | None = None, training: bool,
              seed: int = 0, drop_remainder: bool | None = None) -> tf.data.Dataset:
    """A tf.data pipeline of batched clips.

    Args:
      split: a TFDS split of this problem (`train_split`, `eval_split`, or any of `tfds_splits`, sliceable).
      batch_size: examples per batch, >= 1.
      num_frames: window length T in 1..`num_frames` of the stored clip; None takes the whole clip.
      training: True: random windows (uniform start), shuffled, repeated forever, full batches only.
        False: windows start at frame 0, one pass in stored order.
      seed: makes training pipelines reproducible: the same seed gives the same batches in the same order.
      drop_remainder: evaluation only (training always drops): drop a last partial batch. Default False.

    Returns:
      Elements {"video": uint8 [B, T, H, W, C]} plus "label" int32 [B] when num_labels > 0, "caption" string [B]
      when has_caption, and the problem's ground-truth features (static ones [B, ...], temporal ones
      [B, T, ...] cut to the same window).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"{self.name}: batch_size={batch_size!r} must be an integer >= 1")
    clip_length = self.num_frames
    if num_frames is None:
      num_frames = clip_length
    if not isinstance(num_frames, int) or not 1 <= num_frames <= clip_length:
      raise ValueError(f"{self.name}: num_frames={num_frames!r} must be in 1..{clip_length} (the stored clip "
                       "length); use None for whole clips")
    if training and drop_remainder is False:
      raise ValueError(f"{self.name}: drop_remainder=False with training=True; training batches are always "
                       "full (leave drop_remainder=None)")
    self._check_split(split)
    builder = self._prepared_builder()
    self._check_stored_shape(builder)
    encoded = self._frames_are_encoded(builder)

    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=self._decoders(builder),
                            read_config=tfds.ReadConfig(try_autocache=False))
    ds = ds.map(self._select, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
      ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
      ds = ds.repeat()
    # The index after repeat numbers every element ever produced, so each gets its own window start.
    ds = ds.enumerate()
    window = functools.partial(self._window, num_frames=num_frames, clip_length=clip_length,
                               random_start=training and num_frames < clip_length, seed=seed, encoded=encoded)
    ds = ds.map(window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True if training else bool(drop_remainder))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)

  def _select(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Keeps the frames, the label and the ground-truth features; integers become int32."""
    selected = {self.frames_key: example[self.frames_key]}
    if self.num_labels > 0:
      if self.label_key is None:
        raise ValueError(f"{self.name}: num_labels={self.num_labels} but no label_key names the label feature")
      selected["label"] = tf.cast(example[self.label_key], tf.int32)
    if self.has_caption:
      if self.caption_key is None:
        raise ValueError(f"{self.name}: has_caption=True but no caption_key names the caption feature")
      selected["caption"] = tf.convert_to_tensor(example[self.caption_key], tf.string)
    for key in self.static_keys + self.temporal_keys:
      value = example[key]
      selected[key] = tf.cast(value, tf.int32) if value.dtype in (tf.int64, tf.int16, tf.int8) else value
    return selected

  def _window(self, index: tf.Tensor, example: dict[str, tf.Tensor], *, num_frames: int, clip_length: int,
              random_start: bool, seed: int, encoded: bool) -> dict[str, tf.Tensor]:
    """Cuts frames [start, start + num_frames) and decodes them; start is 0 unless `random_start`."""
    if random_start:
      # Stateless: the start depends only on (seed, index), never on how many times the pipeline was built.
      start = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), index]), minval=0,
                                          maxval=clip_length - num_frames + 1, dtype=tf.int32)
    else:
      start = tf.constant(0, tf.int32)
    frames = example[self.frames_key][start:start + num_frames]
    height, width, channels = self.frame_shape
    if encoded:  # frames: string [T]
      frames = tf.map_fn(
          lambda png: tf.io.decode_image(png, channels=channels, dtype=tf.uint8, expand_animations=False),
          frames, fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8))
    video = tf.ensure_shape(tf.cast(frames, tf.uint8), [num_frames, height, width, channels])  # [T, H, W, C]
    out = {"video": video}
    for key, value in example.items():
      if key == self.frames_key:
        continue
      out[key] = value[start:start + num_frames] if key in self.temporal_keys else value
    return out

  # ---- integrity -----------------------------------------------------------------------------------

  def check_records(self, split: str) -> int:
    """Reads every record file of `split`'s base split, verifying checksums; returns the record count.

    tf.data reports a corrupt record as a DataLossError that does not say which file it came from; when
    training hits one, call this to name the file. Raises CorruptRecordError naming the file and the record.
    """
    base = self._check_split(split)
    builder = self._prepared_builder()
    split_info = builder.info.splits[base]
    file_format = builder.info.file_format
    if file_format is not None and file_format != tfds.core.FileFormat.TFRECORD:
      raise ValueError(f"{self.name}: check_records reads TFRecord files, but {builder.data_path} holds "
                       f"{file_format.value} files; prepare the dataset with the default tfrecord format")
    count = 0
    for path in split_info.filepaths:
      index = 0
      try:
        for _ in tf.data.TFRecordDataset(os.fspath(path)):
          index += 1
      except (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.OutOfRangeError) as e:
        raise CorruptRecordError(
            f"{self.name}: record {index} of {path} is unreadable ({type(e).__name__}: {e.message}); delete "
            f"{builder.data_path} and prepare the dataset again, or copy that file again") from e
      count += index
    return count
