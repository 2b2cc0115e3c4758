"""TensorBoard summaries of a run: scalars under <output_dir>/train and /eval, animated GIF samples.

Only the chief writes; other workers get no-op writers. Everything is written with tf.summary.write and the
plugin metadata TensorBoard's dashboards read, so it works without the tensorboard package (which
tf.summary.scalar/image need): a scalar is a float32 tensor tagged with the `scalars` plugin, and an animated GIF
is what the image plugin stores for any encoded image, a string tensor [width, height, encoded bytes] tagged with
the `images` plugin (TensorBoard plays a GIF it is given).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from t2v import video_io

# TensorBoard's plugin names (tensorboard/plugins/{scalar,image}/metadata.py); their plugin data may be empty.
SCALARS_PLUGIN = "scalars"
IMAGES_PLUGIN = "images"


def plugin_metadata(plugin: str, description: str = "") -> tf.compat.v1.SummaryMetadata:
  """SummaryMetadata telling TensorBoard which dashboard shows a summary."""
  metadata = tf.compat.v1.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin
  metadata.plugin_data.content = b""
  metadata.summary_description = description
  return metadata


class Summaries:
  """The train and eval writers of one run; no-ops where `enabled` is False (non-chief workers)."""

  def __init__(self, output_dir: str, enabled: bool):
    self.output_dir = output_dir
    self.enabled = enabled
    if enabled:
      self._writers = {name: tf.summary.create_file_writer(os.path.join(output_dir, name))
                       for name in ("train", "eval")}
    else:
      self._writers = {name: tf.summary.create_noop_writer() for name in ("train", "eval")}

  def scalars(self, writer: str, step: int, values: dict[str, float]) -> None:
    """Writes each scalar of `values` at `step` under `writer` ("train" or "eval")."""
    if not self.enabled:
      return
    metadata = plugin_metadata(SCALARS_PLUGIN)
    with self._writers[writer].as_default(step=step):
      for name, value in values.items():
        tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=metadata)
    self._writers[writer].flush()

  def video_grid(self, writer: str, tag: str, step: int, grid: np.ndarray, fps: float,
                 description: str = "") -> bytes:
    """Writes uint8 [T, H, W, C] as an animated GIF image summary; returns the GIF bytes."""
    gif = video_io.encode_gif(grid, fps)
    if self.enabled:
      height, width = grid.shape[1:3]
      tensor = tf.constant([str(width).encode(), str(height).encode(), gif])
      with self._writers[writer].as_default(step=step):
        tf.summary.write(tag, tensor, metadata=plugin_metadata(IMAGES_PLUGIN, description))
      self._writers[writer].flush()
    return gif

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
