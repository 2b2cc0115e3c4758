"""K steps of flow (Glow §3): each step is ActNorm -> invertible 1x1 conv -> coupling.

`FlowStep` is one step as a `tfb.Chain` of the three bijectors. `FlowSteps` is a whole stack of K steps whose
parameters live in three Keras layers with a leading step axis; its forward pass is a `tf.while_loop` over the
step index, so `tf.function` traces one step, not K, and tracing time does not grow with depth.

With `reversible_gradients=True` both directions run through `reversible.reversible_chain`: the backward pass
rebuilds each step's input from its output with the inverse instead of keeping the K steps' activations, so the
memory of a training step does not grow with K (values and gradients are the same; see `reversible.py`). A step is
described to it as two stages, ActNorm + 1x1 conv (cheap: inverted and recomputed) and the coupling, whose network
the backward pass then evaluates once per step instead of twice.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp
# `could_possibly_record` has no public name; reversible.py uses the same module (`stop_recording`)
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

from t2v.bijectors.actnorm import ActNorm, ActNormParams
from t2v.bijectors.base import FlowBijector, StepSlices
from t2v.bijectors.coupling import AdditiveCoupling, AffineCoupling, CouplingNet, coupling_out_channels
from t2v.bijectors.invertible_conv import InvertibleConv1x1, InvertibleConvParams
from t2v.bijectors.reversible import CouplingStage, Stage, reversible_chain

tfb = tfp.bijectors

_COUPLINGS = {"affine": AffineCoupling, "additive": AdditiveCoupling}


class FlowStepParams(keras.layers.Layer):
  """Parameters of K steps of flow over `channels` channels (actnorm, 1x1 conv and coupling net)."""

  def __init__(self, num_steps: int, channels: int, hidden_channels: int, coupling: str = "affine",
               activation: str = "relu", cond_channels: int = 0, seed: int = 0, conv_dtype: str = "float32",
               **kwargs):
    super().__init__(**kwargs)
    if coupling not in _COUPLINGS:
      raise ValueError(f"coupling={coupling!r} must be one of {sorted(_COUPLINGS)}")
    if channels < 2:
      raise ValueError(f"a coupling needs at least 2 channels, got {channels}: squeeze first")
    # ---- config
    self.num_steps = num_steps
    self.channels = channels
    self.hidden_channels = hidden_channels
    self.coupling = coupling
    self.activation = activation
    self.cond_channels = cond_channels
    self.seed = seed
    self.conv_dtype = conv_dtype
    # ---- layers
    self.actnorm = ActNormParams(num_steps, channels, name="actnorm")
    self.conv = InvertibleConvParams(num_steps, channels, seed=seed, name="invertible_conv")
    self.net = CouplingNet(num_steps, channels - channels // 2, coupling_out_channels(coupling, channels),
                           hidden_channels, cond_channels=cond_channels, activation=activation,
                           conv_dtype=conv_dtype, name="coupling_net")

  def get_config(self):
    return {**super().get_config(), "num_steps": self.num_steps, "channels": self.channels,
            "hidden_channels": self.hidden_channels, "coupling": self.coupling, "activation": self.activation,
            "cond_channels": self.cond_channels, "seed": self.seed, "conv_dtype": self.conv_dtype}


class FlowStep(tfb.Chain):
  """One step of flow: ActNorm, then the invertible 1x1 conv, then the coupling (a `tfb.Chain`).

  With a conditioning tensor, call `step.forward(x, coupling={"cond": c})` (TFP routes kwargs by name).
  """

  def __init__(self, params: FlowStepParams, step: int | tf.Tensor = 0, name: str = "flow_step"):
    self.actnorm = ActNorm(params.actnorm, step)
    self.conv = InvertibleConv1x1(params.conv, step)
    self.coupling = _COUPLINGS[params.coupling](params.net, step, name="coupling")
    super().__init__([self.coupling, self.conv, self.actnorm], name=name)  # Chain applies right to left

  def forward_and_log_det(self, x, cond=None):
    x, ldj_actnorm = self.actnorm.forward_and_log_det(x)
    x, ldj_conv = self.conv.forward_and_log_det(x)
    y, ldj_coupling = self.coupling.forward_and_log_det(x, cond=cond)
    return y, ldj_actnorm + ldj_conv + ldj_coupling

  def inverse_and_log_det(self, y, cond=None):
    y, ldj_coupling = self.coupling.inverse_and_log_det(y, cond=cond)
    y, ldj_conv = self.conv.inverse_and_log_det(y)
    x, ldj_actnorm = self.actnorm.inverse_and_log_det(y)
    return x, ldj_actnorm + ldj_conv + ldj_coupling

  def mix_forward_and_log_det(self, x):
    """The step before its coupling: ActNorm, then the 1x1 conv. (x [N, H, W, C] -> same shape, log-det [N])."""
    x, ldj_actnorm = self.actnorm.forward_and_log_det(x)
    y, ldj_conv = self.conv.forward_and_log_det(x)
    return y, ldj_actnorm + ldj_conv

  def mix_inverse_and_log_det(self, y):
    """The inverse of `mix_forward_and_log_det`."""
    y, ldj_conv = self.conv.inverse_and_log_det(y)
    x, ldj_actnorm = self.actnorm.inverse_and_log_det(y)
    return x, ldj_actnorm + ldj_conv


class FlowSteps(FlowBijector):
  """All K steps of a flow level, looped with `tf.while_loop` over the step index.

  Args:
    params: the step-stacked parameters of the K steps.
    reversible_gradients: compute gradients by inverting the steps one at a time (RevNet-style) instead of
      storing every step's activations: memory independent of K, about one more forward pass of compute.
      Gradients are first order only (no `tape.jacobian` of a gradient, no Hessians) when on.
  """

  def __init__(self, params: FlowStepParams, name: str = "flow_steps", *, reversible_gradients: bool = False):
    parameters = dict(locals())
    if not isinstance(reversible_gradients, bool):
      raise TypeError(f"reversible_gradients={reversible_gradients!r} must be True or False")
    self._params = params
    self._reversible_gradients = reversible_gradients
    super().__init__(name=name, parameters=parameters)

  @property
  def num_steps(self) -> int:
    return self._params.num_steps

  @property
  def reversible_gradients(self) -> bool:
    return self._reversible_gradients

  def step(self, k) -> FlowStep:
    return FlowStep(self._params, k)

  def _loop(self, x, cond, reverse_order: bool, apply):
    k_max = self.num_steps
    # Under a gradient tape the steps read their parameters from TensorArrays unstacked here (an O(K) gradient,
    # see StepSlices); without one (sampling, scoring) a gather per step reads them without that copy.
    slices = StepSlices(self._params.weights, k_max) if record.could_possibly_record() else None

    def body(k, x, ldj):
      index = k_max - 1 - k if reverse_order else k
      x, step_ldj = apply(self.step(index if slices is None else slices.at(index)), x)
      return k + 1, x, ldj + step_ldj

    # maximum_iterations: XLA needs a static bound on the loop to differentiate it (its gradient stacks)
    _, x, ldj = tf.while_loop(lambda k, *_: k < k_max, body, (tf.constant(0), x, tf.zeros(tf.shape(x)[:1])),
                              parallel_iterations=1, maximum_iterations=k_max)
    return x, ldj

  def _reversible_loop(self, x, cond, reverse_order: bool):
    """Both directions as a `reversible_chain` over the step index; the inverse runs steps K-1 .. 0.

    The backward pass sees each step as two stages, mix (ActNorm, 1x1 conv) and coupling, in the order the
    direction applies them, so that it evaluates the coupling network once per step (see `reversible.py`).
    """
    step_cond = lambda conds: conds[0] if conds else None
    forward = lambda k, x, conds: self.step(k).forward_and_log_det(x, cond=step_cond(conds))
    inverse = lambda k, y, conds: self.step(k).inverse_and_log_det(y, cond=step_cond(conds))
    mix_forward = lambda k, x, conds: self.step(k).mix_forward_and_log_det(x)
    mix_inverse = lambda k, y, conds: self.step(k).mix_inverse_and_log_det(y)
    network = lambda k, x, conds: self.step(k).coupling.network_output(x, cond=step_cond(conds))
    coupling_forward = lambda k, x, h: self.step(k).coupling.forward_from_network(x, h)
    coupling_inverse = lambda k, y, h: self.step(k).coupling.inverse_from_network(y, h)
    first = lambda stage_fn: lambda *args: stage_fn(*args)[0]
    if reverse_order:  # the coupling's inverse first, then the mix's
      apply, undo = inverse, forward
      stages = (CouplingStage(network, coupling_inverse, first(coupling_forward)),
                Stage(mix_inverse, first(mix_forward)))
    else:
      apply, undo = forward, inverse
      stages = (Stage(mix_forward, first(mix_inverse)),
                CouplingStage(network, coupling_forward, first(coupling_inverse)))
    return reversible_chain(x, () if cond is None else (cond,), self.num_steps, apply, first(undo),
                            descending=reverse_order, stages=stages)

  def _forward_and_log_det(self, x, cond=None):
    if self._reversible_gradients:
      return self._reversible_loop(x, cond, False)
    return self._loop(x, cond, False, lambda step, x: step.forward_and_log_det(x, cond=cond))

  def _inverse_and_log_det(self, y, cond=None):
    if self._reversible_gradients:
      return self._reversible_loop(y, cond, True)
    return self._loop(y, cond, True, lambda step, y: step.inverse_and_log_det(y, cond=cond))

  def initialize(self, x: tf.Tensor, cond: tf.Tensor | None = None) -> tf.Tensor:
    """Data-dependent init of every step's ActNorm on `x` (eager); returns the output of the last step."""
    for k in range(self.num_steps):
      self._params.actnorm.initialize_from(x, k)
      x, _ = self.step(k).forward_and_log_det(x, cond=cond)
    return x
