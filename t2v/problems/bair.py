"""BAIR robot pushing, action-free (Ebert et al. 2017), through TFDS `bair_robot_pushing_small`.

Clips are 30 frames of 64x64x3 from the robot's main camera (TFDS feature `image_main`); TFDS has a "train"
split (43,264 clips) and a "test" split (256 clips). The protocol of VideoFlow and SAVP: condition on 3 frames,
predict 10, so evaluation reads the first 13 frames of each test clip; training windows have the length the
model asks for.

Getting the data, all without network access once the raw files are on disk:
  * a TFDS directory where `bair_robot_pushing_small` is already prepared: pass it as `data_dir` (--data_dir);
  * the raw tarball bair_robot_pushing_dataset_v0.tar (30 GB): put it in `<data_dir>/downloads/manual/` and call
    `Bair(data_dir).prepare(download=True)`; TFDS finds it there, checks its checksum and prepares the data;
  * the tarball already extracted: `Bair(data_dir).prepare_from_raw(folder)`, where `folder` holds
    `softmotion30_44k/{train,test}/*.tfrecords`; TFDS's own parser converts the files (`Problem._prepare_from_local`).
`Bair(data_dir).prepare(download=True)` with network access downloads the tarball (TFDS's usual path).

The raw format: TFRecord files of tf.train.Example protos, one per clip, with per-frame keys
`{t}/image_main/encoded` and `{t}/image_aux1/encoded` (raw uint8 bytes of a 64x64x3 image, not PNG),
`{t}/action` (4 floats) and `{t}/endeffector_pos` (3 floats) for t in 0..29. `read_raw_bair_records` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from t2v.problems import base

RAW_TARBALL = "bair_robot_pushing_dataset_v0.tar"
RAW_FOLDER = "softmotion30_44k"  # the tarball's top folder, holding train/ and test/
RAW_FRAMES = 30
RAW_IMAGE_SHAPE = (64, 64, 3)


def read_raw_bair_records(paths: Iterable[str], key: str = "image_main") -> Iterator[np.ndarray]:
  """Yields the `key` camera of every clip in raw BAIR TFRecord files, in file order; uint8 [30, 64, 64, 3].

  Raises ValueError naming the file and the record when a record lacks a frame or holds an image of the wrong
  size, and base.CorruptRecordError naming the file when a record fails its checksum.
  """
  frame_bytes = int(np.prod(RAW_IMAGE_SHAPE))
  for path in paths:
    path = os.fspath(path)
    index = 0
    try:
      for record in tf.data.TFRecordDataset(path):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        frames = []
        for t in range(RAW_FRAMES):
          name = f"{t}/{key}/encoded"
          if name not in features or len(features[name].bytes_list.value) != 1:
            raise ValueError(f"{path}: record {index} has no single-image feature {name!r}; raw BAIR records hold "
                             f"{RAW_FRAMES} frames under '{{t}}/{key}/encoded' (is this the BAIR release?)")
          image = features[name].bytes_list.value[0]
          if len(image) != frame_bytes:
            raise ValueError(f"{path}: record {index} feature {name!r} holds {len(image)} bytes, expected "
                             f"{frame_bytes} (raw uint8 {RAW_IMAGE_SHAPE})")
          frames.append(np.frombuffer(image, np.uint8).reshape(RAW_IMAGE_SHAPE))
        yield np.stack(frames)  # [30, 64, 64, 3]
        index += 1
    except tf.errors.DataLossError as e:
      raise base.CorruptRecordError(f"{path}: record {index} is corrupt ({e.message}); copy or extract that file "
                                    "again") from e


def find_raw_split_dirs(raw_dir: str) -> dict[str, str]:
  """{"train": dir, "test": dir} of the extracted tarball under `raw_dir` (the tarball's parent or top folder)."""
  raw_dir = os.fspath(os.path.expanduser(raw_dir))
  for root in (os.path.join(raw_dir, RAW_FOLDER), raw_dir):
    dirs = {split: os.path.join(root, split) for split in ("train", "test")}
    if all(tf.io.gfile.isdir(d) and tf.io.gfile.listdir(d) for d in dirs.values()):
      return dirs
  raise FileNotFoundError(
      f"bair: no raw BAIR files under {raw_dir}; expected {RAW_FOLDER}/train/*.tfrecords and "
      f"{RAW_FOLDER}/test/*.tfrecords there (extract {RAW_TARBALL} into it) or train/ and test/ directly in it")


class Bair(base.Problem):
  """BAIR robot pushing (action-free), 64x64: 3 context frames, 10 predicted, as in VideoFlow and SAVP."""

  name = "bair"
  tfds_name = "bair_robot_pushing_small"
  frame_shape = RAW_IMAGE_SHAPE
  num_frames = RAW_FRAMES
  num_input_frames = 3
  num_target_frames = 10
  train_split = "train"
  eval_split = "test"
  tfds_splits = ("train", "test")
  frames_key = "image_main"

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    manual = os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
    return (f"or put {RAW_TARBALL} in {manual}/ and call Bair(data_dir).prepare(download=True), or extract it "
            f"and call Bair(data_dir).prepare_from_raw(<folder holding {RAW_FOLDER}/>)")

  def prepare_from_raw(self, raw_dir: str) -> None:
    """Prepares the TFDS dataset in data_dir from the extracted raw tarball under `raw_dir`, offline.

    TFDS's own `bair_robot_pushing_small` parser reads the files; the result is the dataset a download would
    have produced, read afterwards by `dataset()` as usual. Nothing happens when it is already prepared.
    """
    dirs = find_raw_split_dirs(raw_dir)
    self._prepare_from_local({split: {"filedir": d} for split, d in dirs.items()})
