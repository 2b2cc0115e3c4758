"""Slices whose gradients are cheap: `tf.split` instead of `x[a:b]` on the flows' and priors' hot paths.

The gradient of a basic slice `x[..., a:b]` is `StridedSliceGrad`, which on CPU scatters into a zero tensor
element by element: profiling a `videoflow_cpu_multiscale` training step (TF 2.21, 2 cores) found it the single most
expensive kernel, about a third of the step's op time (2-3 ms per call on a [32, 32, 32, 12] tensor inside
the flow's `tf.while_loop`). The gradient of `tf.split` is one `ConcatV2` of the pieces' gradients (zeros for
the unused ones), a contiguous copy. These helpers slice along one axis of static size with `tf.split`, and fall
back to a basic slice where the size is only known when the graph runs.

    a, b = split_at(x, 6)                 # x[..., :6], x[..., 6:]
    y = take(z, 1, 3, axis=1)             # z[:, 1:3]
    w = windows(z, 3, axis=1)             # tf.signal.frame(z, 3, 1, axis=1): [B, T - 2, 3, ...]
"""

from __future__ import annotations

import tensorflow as tf


def split_at(x: tf.Tensor, index: int, axis: int = -1) -> tuple[tf.Tensor, tf.Tensor]:
  """(x[:index], x[index:]) along `axis` (negative indices count from the end of that axis)."""
  size = x.shape[axis]
  if size is None:
    raise ValueError(f"split_at needs a static size along axis {axis}, got shape {x.shape}")
  if index < 0:
    index += size
  if not 0 <= index <= size:
    raise ValueError(f"split index {index} is outside [0, {size}] for shape {x.shape} along axis {axis}")
  first, second = tf.split(x, [index, size - index], axis=axis)
  return first, second


def take(x: tf.Tensor, start: int, stop: int | None = None, axis: int = 0) -> tf.Tensor:
  """x[start:stop] along `axis` (Python slice semantics for the bounds; step 1)."""
  size = x.shape[axis]
  if size is None:  # the size is only known at run time: a basic slice
    index = [slice(None)] * (axis % x.shape.rank) + [slice(start, stop)]
    return x[tuple(index)]
  start, stop, _ = slice(start, stop).indices(size)
  stop = max(stop, start)
  if start == 0 and stop == size:
    return x
  sizes = [start, stop - start, size - stop]
  return tf.split(x, sizes, axis=axis)[1]


def windows(x: tf.Tensor, size: int, axis: int = 0) -> tf.Tensor:
  """Every run of `size` consecutive entries along `axis`, stacked on a new axis after it: x [..., n, ...] ->
  [..., n - size + 1, size, ...], window j holding entries j .. j + size - 1 (`tf.signal.frame(x, size, 1, axis)`).

  Built from `size` static slices (`take`): for a training step's prior windows that is ~20-40 graph ops with the
  gradient against tf.signal.frame's ~140, which handles dynamic sizes and strides this does not need.
  """
  rank = x.shape.rank
  axis %= rank
  n = x.shape[axis]
  if n is None or not 1 <= size <= n:
    raise ValueError(f"windows of {size} need a static size >= {size} along axis {axis}, got shape {x.shape}")
  if size == 1:
    return tf.expand_dims(x, axis + 1)
  count = n - size + 1
  return tf.stack([take(x, i, i + count, axis=axis) for i in range(size)], axis=axis + 1)
