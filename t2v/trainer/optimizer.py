"""Adam's update of a variable as one fused kernel, on Keras Adam's own slot variables.

Keras 3's `Adam.update_step` spells the update out in ~35 small ops per variable (casts, powers, the bias
correction, three assignments), recomputed for every variable: for VideoFlow's ~110 variables that is ~40 % of the
training step's graph, so ~40 % of what tf.function traces and grappler optimises before the first step, and ~110 x
5 passes over the weights at every step. `tf.raw_ops.ResourceApplyAdam` does the same update in one kernel per
variable, with the bias-correction powers computed once per step. The slots stay Keras Adam's (`_momentums`,
`_velocities`), so checkpoints are unchanged: a run saved with either update resumes with the other.

The maths, identical to Keras' (`tests/test_trainer.py` compares both, step by step): with t = iterations + 1,
  m <- m + (g - m)(1 - beta_1),  v <- v + (g^2 - v)(1 - beta_2),
  variable <- variable - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon).
"""

from __future__ import annotations

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


def adam_powers(optimizer: keras.optimizers.Optimizer) -> tuple[tf.Tensor, tf.Tensor]:
  """(beta_1^t, beta_2^t) float32 for the coming update, t = iterations + 1: computed once per step."""
  step = tf.cast(optimizer.iterations + 1, tf.float32)
  return (tf.pow(tf.constant(optimizer.beta_1, tf.float32), step),
          tf.pow(tf.constant(optimizer.beta_2, tf.float32), step))


def fused_adam_update(optimizer: keras.optimizers.Optimizer, variable: tf.Variable, gradient: tf.Tensor,
                      learning_rate: tf.Tensor, m: tf.Variable, v: tf.Variable,
                      powers: tuple[tf.Tensor, tf.Tensor]) -> None:
  """Keras Adam's `update_step(gradient, variable, learning_rate)` as one ResourceApplyAdam kernel.

  variable, m, v: the tf.Variables (under tf.distribute's `extended.update`, this device's components);
  powers: `adam_powers(optimizer)`.
  """
  dtype = variable.dtype
  tf.raw_ops.ResourceApplyAdam(
      var=variable.handle, m=m.handle, v=v.handle,
      beta1_power=tf.cast(powers[0], dtype), beta2_power=tf.cast(powers[1], dtype),
      lr=tf.cast(learning_rate, dtype), beta1=tf.constant(optimizer.beta_1, dtype),
      beta2=tf.constant(optimizer.beta_2, dtype), epsilon=tf.constant(optimizer.epsilon, dtype),
      grad=tf.cast(gradient, dtype), use_locking=False)


def apply_adam(optimizer: keras.optimizers.Optimizer, grads_and_vars, learning_rate) -> None:
  """`optimizer.apply_gradients(grads_and_vars)` with the fused update, outside tf.distribute (benchmarks, tools).

  Same update as the trainer's (no weight decay, no clipping); `learning_rate` is a float or scalar tensor.
  """
  if not supports_fused_adam(optimizer):
    raise ValueError(f"apply_adam needs a built keras Adam or AdamW without amsgrad, got {optimizer!r}: call "
                     "optimizer.build(variables) first, or use optimizer.apply_gradients")
  powers = adam_powers(optimizer)
  rate = tf.convert_to_tensor(learning_rate, tf.float32)
  for gradient, variable in grads_and_vars:
    if gradient is not None:
      fused_adam_update(optimizer, tf_variable(variable), gradient, rate, *adam_slots(optimizer, variable), powers)
  optimizer.iterations.assign_add(1)
