"""Moving MNIST (Srivastava et al. 2015) through TFDS `moving_mnist`: two digits bouncing in 64x64x1 frames.

TFDS holds the authors' 10,000 test sequences of 20 frames (feature `image_sequence`) in its only split,
"test". This problem carves it with TFDS slicing: it trains on the first 90% ("test[:90%]", 9,000 clips) and
evaluates on the last 10% ("test[90%:]", 1,000 clips); any other slice of "test" can be passed to `dataset`.
Protocol: condition on 10 frames, predict 10.

Getting the data, without network access once the raw file is on disk:
  * a TFDS directory where `moving_mnist` is prepared: pass it as `data_dir` (--data_dir);
  * the raw file mnist_test_seq.npy: put it in `<data_dir>/downloads/manual/` and call
    `MovingMnist(data_dir).prepare(download=True)` (TFDS checks its checksum), or call
    `MovingMnist(data_dir).prepare_from_raw(path_to_npy)`, which runs TFDS's own parser on it.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from t2v.problems import base

RAW_FILE = "mnist_test_seq.npy"  # uint8 [20, 10000, 64, 64]: frames first


class MovingMnist(base.Problem):
  """Moving MNIST, 64x64x1, 20 frames: 10 context, 10 predicted; TFDS's single split carved 90/10."""

  name = "moving_mnist"
  tfds_name = "moving_mnist"
  frame_shape = (64, 64, 1)
  num_frames = 20
  num_input_frames = 10
  num_target_frames = 10
  train_split = "test[:90%]"
  eval_split = "test[90%:]"
  tfds_splits = ("test",)
  frames_key = "image_sequence"

  def _missing_data_hint(self, builder: tfds.core.DatasetBuilder) -> str:
    manual = os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
    return (f"or put {RAW_FILE} in {manual}/ and call MovingMnist(data_dir).prepare(download=True), or call "
            f"MovingMnist(data_dir).prepare_from_raw(<path to {RAW_FILE}>)")

  def prepare_from_raw(self, npy_path: str) -> None:
    """Prepares the TFDS dataset in data_dir from a local mnist_test_seq.npy with TFDS's own parser, offline."""
    npy_path = os.fspath(os.path.expanduser(npy_path))
    if not tf.io.gfile.exists(npy_path):
      raise FileNotFoundError(f"moving_mnist: no file {npy_path}; pass the path of {RAW_FILE} (uint8 "
                              "[20, N, 64, 64], from the Moving MNIST page)")
    self._prepare_from_local({"test": {"data_path": npy_path}})
