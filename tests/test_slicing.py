"""t2v.slicing: the split-based slices equal basic slicing, in value and gradient, static or dynamic sizes."""

import numpy as np
import pytest
import tensorflow as tf

from t2v.slicing import split_at, take, windows


def _value_and_grad(fn, x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
    loss = tf.reduce_sum(y * y)
  return y, tape.gradient(loss, x)


@pytest.mark.parametrize("start, stop, axis", [(0, 2, 1), (1, None, 1), (-1, None, 1), (2, 2, 1), (0, None, 1),
                                               (3, 7, -1), (-3, -1, -1), (5, 100, 0)])
def test_take_equals_a_basic_slice_in_value_and_gradient(start, stop, axis):
  x = tf.random.stateless_normal([3, 4, 2, 8], seed=[0, 1])
  index = [slice(None)] * (axis % 4) + [slice(start, stop)]
  want_y, want_g = _value_and_grad(lambda v: v[tuple(index)], x)
  got_y, got_g = _value_and_grad(lambda v: take(v, start, stop, axis=axis), x)
  np.testing.assert_array_equal(got_y, want_y)
  np.testing.assert_array_equal(got_g, want_g)


def test_take_and_split_at_in_a_graph_with_a_dynamic_size():
  x = tf.random.stateless_normal([2, 5, 6], seed=[2, 3])

  @tf.function(input_signature=[tf.TensorSpec([None, None, 6])])
  def f(v):
    return take(v, 1, 3, axis=1), split_at(v, 4)  # time is dynamic (fallback), channels static (split)

  middle, (a, b) = f(x)
  np.testing.assert_array_equal(middle, x[:, 1:3])
  np.testing.assert_array_equal(a, x[..., :4])
  np.testing.assert_array_equal(b, x[..., 4:])


def test_split_at_matches_slicing_and_refuses_bad_indices():
  x = tf.reshape(tf.range(24.0), [2, 3, 4])
  a, b = split_at(x, -1)
  np.testing.assert_array_equal(a, x[..., :3])
  np.testing.assert_array_equal(b, x[..., 3:])
  a, b = split_at(x, 1, axis=1)
  np.testing.assert_array_equal(a, x[:, :1])
  with pytest.raises(ValueError, match="split index 5 is outside"):
    split_at(x, 5)


@pytest.mark.parametrize("size, axis", [(1, 1), (2, 1), (4, 1), (3, -1), (5, 0)])
def test_windows_equal_tf_signal_frame_in_value_and_gradient(size, axis):
  x = tf.random.stateless_normal([5, 4, 2, 8], seed=[4, 5])
  want_y, want_g = _value_and_grad(lambda v: tf.signal.frame(v, size, 1, axis=axis), x)
  got_y, got_g = _value_and_grad(lambda v: windows(v, size, axis=axis), x)
  np.testing.assert_array_equal(got_y, want_y)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-6)


def test_windows_refuse_a_window_longer_than_the_axis():
  with pytest.raises(ValueError, match="windows of 5 need a static size >= 5 along axis 1"):
    windows(tf.zeros([2, 4, 3]), 5, axis=1)
