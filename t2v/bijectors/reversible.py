"""Gradients of a chain of invertible steps without storing its activations (RevNet, Gomez et al. 2017).

Plain backpropagation through K steps of flow keeps every step's intermediates (the coupling networks' hidden
activations, the largest tensors of the model) until the backward pass: memory grows linearly with K. A flow
step is invertible, so its input can be recomputed from its output instead of stored.

`reversible_chain` runs x_0 -> x_1 -> ... -> x_K = y, x_{p+1} = f_p(x_p), with log-det sum_p ldj_p, inside one
`tf.custom_gradient`:
  forward   a `tf.while_loop` with gradient recording stopped: only the chain's input x_0, its output y and the
            log-det [N] outlive the call (the tape keeps them for the backward pass).
  backward  a `tf.while_loop` over p = K-1 .. 0 carrying (x_{p+1}, dL/dx_{p+1}): reconstruct
            x_p = f_p^{-1}(x_{p+1}), recompute f_p(x_p) under a local `tf.GradientTape`, and pull back
            (dL/dx_{p+1}, dL/dlog_det) to dL/dx_p, dL/dconds and dL/d(step p's parameters).
So the backward pass holds one step's intermediates at a time, whatever K is; the price is one inverse and one
forward per step more than plain backprop. The reconstruction drifts by float rounding only (bounded in
tests/test_reversible.py over 32 affine steps).

Couplings halve that price. A step may be described to the backward pass as `stages` (maps applied in order,
composing to forward_step), each pulled back on its own:
  `Stage`          any invertible map: inverted, then recomputed under the tape (as above).
  `CouplingStage`  y = apply(x, h), x = undo(y, h), with h = network(.) reading only the part of its argument that
                   apply leaves untouched, so network(x) == network(y). The backward evaluates the network once,
                   on y and under the tape, and both inverts and recomputes from that h: the network (the
                   expensive part of a flow step) runs once per step in the backward pass instead of twice, and
                   its gradient still reaches x (through the untouched part), the conditioning and the weights.

Parameters: the steps read their weights from variables with a leading step axis, each step gathering its own
slice (`tf.gather(variable, index)`: what `bijectors.base.step_slice` does for an index; the plain loop,
`FlowSteps._loop`, reads them from TensorArrays unstacked before the loop instead). `tf.custom_gradient` finds those
variables itself (it watches variable reads) and hands them to the gradient function, which must return a full
[K, ...] gradient per variable: each step's slice gradient is written into a `tf.TensorArray` at the step's
index and the slices are stacked once at the end (O(K) work, no K x K scatter).

Works eagerly, under `tf.function`, XLA (`jit_compile=True`) and inside `tf.distribute` replica functions
(the variables handed over are then the replica's own; the trainer all-reduces their gradients as usual).
First-order gradients only: the custom gradient is not itself differentiable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import tensorflow as tf
# `stop_recording` has no public name: it is what `tf.recompute_grad` uses to run its forward pass untaped. Without
# it an eager GradientTape would record (and keep alive) every op of the forward loop.
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

# forward_step(index, x [N, ...], conds) -> (y [N, ...] of x's shape, log|det dy/dx| [N])
ForwardStep = Callable[[tf.Tensor, tf.Tensor, Sequence[tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]
# inverse_step(index, y, conds) -> x, the exact inverse of forward_step(index, ., conds)
InverseStep = Callable[[tf.Tensor, tf.Tensor, Sequence[tf.Tensor]], tf.Tensor]
# network(index, x, conds) -> h, a coupling's network output; apply(index, x, h) -> (y, log-det [N]);
# undo(index, y, h) -> x
Network = Callable[[tf.Tensor, tf.Tensor, Sequence[tf.Tensor]], tf.Tensor]
ApplyFromNetwork = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
UndoFromNetwork = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Stage:
  """An invertible map within a step, pulled back by inverting it and recomputing it under a tape."""
  forward: ForwardStep
  inverse: InverseStep


@dataclasses.dataclass(frozen=True)
class CouplingStage:
  """A coupling within a step, pulled back with one evaluation of its network (see the module docstring).

  `network(index, x, conds)` must read only the part of x that `apply` copies to its output unchanged (and `undo`
  back), so that it gives the same h on a coupling's input and on its output.
  """
  network: Network
  apply: ApplyFromNetwork
  undo: UndoFromNetwork


def reversible_chain(x: tf.Tensor, conds: Sequence[tf.Tensor], num_steps: int, forward_step: ForwardStep,
                     inverse_step: InverseStep, descending: bool = False, *,
                     stages: Sequence[Stage | CouplingStage] | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """Applies `num_steps` invertible steps to x; gradients by inversion instead of stored activations.

  Args:
    x: the chain's input [N, ...]; every step maps it to a tensor of the same shape.
    conds: conditioning tensors every step sees (may be empty); they get gradients too.
    num_steps: K.
    forward_step: step `index` (an int32 scalar tensor) applied to x: (y, log-det [N]).
    inverse_step: its inverse: y -> x.
    descending: run the steps in the index order K-1, ..., 0 instead of 0, ..., K-1 (the inverse of a chain).
    stages: the step as maps applied in this order, for the backward pass only: they must compose to
      forward_step (same output and summed log-det). None: the one `Stage(forward_step, inverse_step)`.

  Returns:
    (y [N, ...], log-det [N] summed over the steps): the same values as looping `forward_step` directly.
  """
  if num_steps < 1:
    raise ValueError(f"reversible_chain needs num_steps >= 1, got {num_steps}")
  stages = (Stage(forward_step, inverse_step),) if stages is None else tuple(stages)
  if not stages or not all(isinstance(stage, (Stage, CouplingStage)) for stage in stages):
    raise TypeError(f"reversible_chain stages={stages!r} must be a non-empty sequence of Stage and CouplingStage")
  x = tf.convert_to_tensor(x)
  conds = tuple(tf.convert_to_tensor(c) for c in conds)
  index_at = lambda position: num_steps - 1 - position if descending else position

  @tf.custom_gradient
  def chain(x, *conds):
    with record.stop_recording():  # nothing of the loop is kept for a backward pass
      def body(position, x, log_det):
        y, step_log_det = forward_step(index_at(position), x, conds)
        return position + 1, y, log_det + step_log_det

      _, y, log_det = tf.while_loop(lambda position, *_: position < num_steps, body,
                                    (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype)),
                                    parallel_iterations=1, maximum_iterations=num_steps)

    def grad(dy, dlog_det, variables=None):
      variables = list(variables or [])
      dy = tf.zeros_like(y) if dy is None else dy
      dlog_det = tf.zeros_like(log_det) if dlog_det is None else dlog_det
      dx, dconds, dvariables = _backward(y, dy, dlog_det, conds, variables, num_steps, index_at, stages)
      input_grads = [dx, *dconds]
      return (input_grads, dvariables) if variables else input_grads

    return (y, log_det), grad

  return chain(x, *conds)


def _backward(y, dy, dlog_det, conds, variables, num_steps, index_at, stages):
  """The backward loop of `reversible_chain`: (dL/dx, [dL/dcond], [dL/dvariable [K, ...]])."""
  for v in variables:
    if v.shape.rank is None or v.shape.rank < 1 or v.shape[0] != num_steps:
      raise ValueError(f"variable {v.name} of shape {v.shape} is read inside a {num_steps}-step reversible chain "
                       f"but has no leading axis of {num_steps} steps: reversible gradients need every weight the "
                       "steps read stacked per step (compute other inputs outside and pass them as conditioning, "
                       "or turn reversible_gradients off)")
  slices = [tf.TensorArray(v.dtype, size=num_steps, element_shape=v.shape[1:]) for v in variables]
  dconds = [tf.zeros_like(c) for c in conds]

  def body(position, y, dy, dconds, slices):
    index = index_at(num_steps - 1 - position)
    dvariables = [[] for _ in variables]  # every stage's gradients of the variables, summed into one slice
    for stage in reversed(stages):
      pull_back = _pull_back_coupling if isinstance(stage, CouplingStage) else _pull_back_by_recompute
      y, dy, dconds_stage, dvariables_stage = pull_back(stage, index, y, dy, dlog_det, conds, variables)
      dconds = [total if g is None else total + g for total, g in zip(dconds, dconds_stage)]
      for grads, g in zip(dvariables, dvariables_stage):
        grads.extend([] if g is None else [g])
    slices = [ta.write(index, _step_slice(g, v)) for ta, g, v in zip(slices, dvariables, variables)]
    return position + 1, y, dy, dconds, slices

  _, _, dx, dconds, slices = tf.while_loop(lambda position, *_: position < num_steps, body,
                                           (tf.constant(0), y, dy, dconds, slices), parallel_iterations=1,
                                           maximum_iterations=num_steps)
  return dx, dconds, [ta.stack() for ta in slices]


def _pull_back_by_recompute(stage: Stage, index, y, dy, dlog_det, conds, variables):
  """(x, dL/dx, [dL/dcond], [dL/dvariable]) of one stage: x = stage.inverse(y), then stage.forward(x) taped."""
  with record.stop_recording():  # the reconstruction itself needs no gradient
    x = tf.stop_gradient(stage.inverse(index, y, conds))
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch([x, *conds, *variables])
    y_again, log_det = stage.forward(index, x, conds)
  grads = tape.gradient([y_again, log_det], [x, *conds, *variables], output_gradients=[dy, dlog_det])
  return x, grads[0], grads[1:1 + len(conds)], grads[1 + len(conds):]


def _pull_back_coupling(stage: CouplingStage, index, y, dy, dlog_det, conds, variables):
  """`_pull_back_by_recompute` for a coupling, with its network evaluated once, on y.

  h = network(y) equals network(x) (it reads only the untouched part, the same in x and y), so the one taped
  evaluation serves both the inverse x = undo(y, h) and the recomputation y = apply(x, h). The network's input is
  then y's untouched part rather than x's: its gradient, taken w.r.t. y, is added to the gradient w.r.t. x (it is
  zero outside the untouched part, which is where x and y are the same tensor).
  """
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch([y, *conds, *variables])
    h = stage.network(index, y, conds)
    with tape.stop_recording():
      x = tf.stop_gradient(stage.undo(index, y, h))
    tape.watch(x)
    y_again, log_det = stage.apply(index, x, h)
  grads = tape.gradient([y_again, log_det], [x, y, *conds, *variables], output_gradients=[dy, dlog_det])
  dx = grads[0] if grads[1] is None else grads[0] + grads[1]
  return x, dx, grads[2:2 + len(conds)], grads[2 + len(conds):]


def _step_slice(grads, variable) -> tf.Tensor:
  """One step's gradient w.r.t. its slice of a [K, ...] variable, from `grads`, the IndexedSlices of its gathers
  that the step's stages returned (none where no stage reads it): all summed."""
  total = tf.zeros(variable.shape[1:], variable.dtype)
  for grad in grads:
    if not isinstance(grad, tf.IndexedSlices):
      raise TypeError(f"variable {variable.name} of shape {variable.shape} got a dense gradient from one flow step: "
                      "reversible gradients need step-stacked variables read one slice per step with "
                      "tf.gather(variable, step); read it that way or turn reversible_gradients off")
    total += tf.reduce_sum(grad.values, axis=0)  # every row is this step's slice (it gathers only its own)
  return total
