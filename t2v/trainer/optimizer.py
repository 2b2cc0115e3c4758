"""Adam's update of a variable as one fused kernel, on Keras Adam's own slot variables.

Keras 3's `Adam.update_step` spells the update out in ~35 small ops per variable (casts, powers, the bias
correction, three assignments), recomputed for every variable: for VideoFlow's ~110 variables that is ~40 % of the
training step's graph, so ~40 % of what tf.function traces and grappler optimises before the first step, and ~110 x
5 passes over the weights at every step. `tf.raw_ops.ResourceApplyAdam` does the same update in one kernel per
variable, with the bias-correction powers and the hyperparameters built once per step. The slots stay Keras
Adam's (`_momentums`, `_velocities`), so checkpoints are unchanged: a run saved with either update resumes with
the other.

The maths, identical to Keras' (`tests/test_trainer.py` compares both, step by step): with t = iterations + 1,
  m <- m + (g - m)(1 - beta_1),  v <- v + (g^2 - v)(1 - beta_2),
  variable <- variable - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf


def tf_variable(variable):
  """The tf.Variable behind a Keras 3 variable (what tf.distribute's update and the raw ops expect)."""
  return variable.value if isinstance(variable, keras.Variable) else variable


def supports_fused_adam(optimizer: keras.optimizers.Optimizer) -> bool:
  """Whether `optimizer` is a built Keras Adam or AdamW without amsgrad (what `fused_adam_update` implements).

  AdamW's decoupled weight decay is not part of the fused update: the caller applies it first.
  """
  return (type(optimizer) in (keras.optimizers.Adam, keras.optimizers.AdamW) and not optimizer.amsgrad
          and optimizer.built)


def adam_slots(optimizer: keras.optimizers.Optimizer, variable) -> tuple[tf.Variable, tf.Variable]:
  """The tf.Variables (m, v) of Keras Adam's first and second moments of `variable` (a trained variable)."""
  index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
  return (tf_variable(optimizer._momentums[index]),  # pylint: disable=protected-access
          tf_variable(optimizer._velocities[index]))  # pylint: disable=protected-access


class AdamStepConstants(NamedTuple):
  """The scalars every variable's update shares in one step, float32 (see `adam_step_constants`)."""

  beta1_power: tf.Tensor  # beta_1^t
  beta2_power: tf.Tensor  # beta_2^t
  beta1: tf.Tensor
  beta2: tf.Tensor
  epsilon: tf.Tensor


def adam_step_constants(optimizer: keras.optimizers.Optimizer) -> AdamStepConstants:
  """The powers beta^t for the coming update (t = iterations + 1) and Adam's hyperparameters as tensors, built
  once per step rather than once per variable (three constants per variable were ~4 % of a VideoFlow step's
  graph)."""
  step = tf.cast(optimizer.iterations + 1, tf.float32)
  beta1, beta2 = tf.constant(optimizer.beta_1, tf.float32), tf.constant(optimizer.beta_2, tf.float32)
  return AdamStepConstants(tf.pow(beta1, step), tf.pow(beta2, step), beta1, beta2,
                           tf.constant(optimizer.epsilon, tf.float32))


def fused_adam_update(variable: tf.Variable, gradient: tf.Tensor, learning_rate: tf.Tensor, m: tf.Variable,
                      v: tf.Variable, constants: AdamStepConstants) -> None:
  """Keras Adam's `update_step(gradient, variable, learning_rate)` as one ResourceApplyAdam kernel.

  variable, m, v: the tf.Variables (under tf.distribute's `extended.update`, this device's components);
  constants: `adam_step_constants(optimizer)` of this step.
  """
  dtype = variable.dtype
  cast = lambda x: tf.cast(x, dtype)  # no op for float32 variables
  tf.raw_ops.ResourceApplyAdam(
      var=variable.handle, m=m.handle, v=v.handle, beta1_power=cast(constants.beta1_power),
      beta2_power=cast(constants.beta2_power), lr=cast(learning_rate), beta1=cast(constants.beta1),
      beta2=cast(constants.beta2), epsilon=cast(constants.epsilon), grad=cast(gradient), use_locking=False)


def apply_adam(optimizer: keras.optimizers.Optimizer, grads_and_vars, learning_rate) -> None:
  """`optimizer.apply_gradients(grads_and_vars)` with the fused update, outside tf.distribute (benchmarks, tools).

  Same update as the trainer's (no weight decay, no clipping); `learning_rate` is a float or scalar tensor.
  """
  if not supports_fused_adam(optimizer):
    raise ValueError(f"apply_adam needs a built keras Adam or AdamW without amsgrad, got {optimizer!r}: call "
                     "optimizer.build(variables) first, or use optimizer.apply_gradients")
  constants = adam_step_constants(optimizer)
  rate = tf.convert_to_tensor(learning_rate, tf.float32)
  for gradient, variable in grads_and_vars:
    if gradient is not None:
      fused_adam_update(tf_variable(variable), gradient, rate, *adam_slots(optimizer, variable), constants)
  optimizer.iterations.assign_add(1)
