"""Checkpoints of a run: what is saved, where each worker writes, and how a run finds what to resume.

The chief writes `<output_dir>/ckpt-<step>` through a tf.train.CheckpointManager. Under multi-worker training
every worker must take part in saving (variables may need collective ops to be read), so the other workers
write the same checkpoint into a private temporary directory that `close()` removes: the standard TF pattern,
which keeps the output_dir the chief's alone. Every worker restores from the chief's output_dir (a shared
filesystem is assumed, as for any multi-worker TF job).
"""

from __future__ import annotations

import shutil
import tempfile

import tensorflow as tf


class Checkpoints:
  """tf.train.Checkpoint(**objects) saved every so often, keeping the newest `keep`.

  Args:
    output_dir: the run's directory (the chief writes here; everyone restores from here).
    chief: whether this process is the chief.
    keep: checkpoints kept (older ones are deleted).
    **objects: what to save, e.g. model=, optimizer=, step=.
  """

  def __init__(self, output_dir: str, chief: bool, keep: int, **objects):
    if keep < 1:
      raise ValueError(f"keep={keep} must be >= 1")
    self.output_dir = output_dir
    self.checkpoint = tf.train.Checkpoint(**objects)
    self._temporary_dir = None if chief else tempfile.mkdtemp(prefix="t2v-worker-checkpoints-")
    self.manager = tf.train.CheckpointManager(self.checkpoint, self._temporary_dir or output_dir,
                                              max_to_keep=keep)
    self.last_saved_step: int | None = None

  def latest(self) -> str | None:
    """The newest checkpoint in output_dir (the chief's), or None."""
    return tf.train.latest_checkpoint(self.output_dir)

  def save(self, step: int) -> str:
    """Saves as ckpt-<step> (at most once per step); returns its path prefix."""
    if self.last_saved_step != step:
      self.manager.save(checkpoint_number=step)
      self.last_saved_step = step
    return self.manager.latest_checkpoint

  def restore(self, path: str) -> None:
    """Restores every saved object from `path`; fails if something created here is missing from it."""
    self.checkpoint.restore(path).assert_existing_objects_matched()

  def close(self) -> None:
    """Removes a non-chief worker's temporary checkpoints."""
    if self._temporary_dir is not None:
      shutil.rmtree(self._temporary_dir, ignore_errors=True)
      self._temporary_dir = None
