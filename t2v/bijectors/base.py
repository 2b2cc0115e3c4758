"""The shared shape of t2v's flow bijectors: one method computes the output and its log-det together.

TFP asks for `_forward`, `_inverse` and `_forward_log_det_jacobian` separately; a flow step computes the
log-det as a by-product of the forward pass, so each t2v bijector implements `_forward_and_log_det` and
`_inverse_and_log_det` once and the TFP hooks are derived from them. The flow's hot path calls the fused
methods `forward_and_log_det` / `inverse_and_log_det` directly; everything else (tests, `tfb.Chain`,
`tfd.TransformedDistribution`) uses the TFP API.

All of them act on images [N, H, W, C] (event rank 3) and return the log-det per example, shape [N].
Step-stacked bijectors take `step`, an int or int32 scalar tensor selecting one slice of parameters that a
Keras layer holds for all K steps of a flow level (so a level can loop over steps with `tf.while_loop`
and trace one step, not K).
"""

from __future__ import annotations

import abc

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


def spatial_size(x: tf.Tensor) -> tf.Tensor:
  """H*W of an image batch [N, H, W, C], as float32 (log-dets of per-pixel maps scale with it)."""
  shape = tf.shape(x)
  return tf.cast(shape[1] * shape[2], x.dtype)


def per_example(value: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
  """Broadcasts a log-det that does not depend on x to one value per example: [N]."""
  return value * tf.ones(tf.shape(x)[:1], x.dtype)


class FlowBijector(tfb.Bijector, abc.ABC):
  """A bijector on [N, H, W, C] that computes its output and log-det in one pass."""

  def __init__(self, *, name: str, parameters: dict, validate_args: bool = False):
    super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return {}  # parameters live in Keras layers, not in batch-shaped tensors

  @abc.abstractmethod
  def _forward_and_log_det(self, x: tf.Tensor, **kwargs) -> tuple[tf.Tensor, tf.Tensor]:
    """(y, log|det dy/dx| per example [N])."""

  @abc.abstractmethod
  def _inverse_and_log_det(self, y: tf.Tensor, **kwargs) -> tuple[tf.Tensor, tf.Tensor]:
    """(x, log|det dx/dy| per example [N])."""

  def forward_and_log_det(self, x, **kwargs):
    return self._forward_and_log_det(x, **kwargs)

  def inverse_and_log_det(self, y, **kwargs):
    return self._inverse_and_log_det(y, **kwargs)

  def _forward(self, x, **kwargs):
    return self._forward_and_log_det(x, **kwargs)[0]

  def _inverse(self, y, **kwargs):
    return self._inverse_and_log_det(y, **kwargs)[0]

  def _forward_log_det_jacobian(self, x, **kwargs):
    return self._forward_and_log_det(x, **kwargs)[1]

  def _inverse_log_det_jacobian(self, y, **kwargs):
    return self._inverse_and_log_det(y, **kwargs)[1]
