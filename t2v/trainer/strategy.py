"""Choosing the tf.distribute strategy, and which worker is the chief.

    auto          MirroredStrategy over all GPUs when there are several, else OneDeviceStrategy (GPU:0 or
                  CPU:0). Never probes for a TPU: it stays offline and instant.
    one_device    OneDeviceStrategy on GPU:0, else CPU:0.
    mirrored      MirroredStrategy over all local GPUs, else over all logical CPU devices.
    multi_worker  MultiWorkerMirroredStrategy from the TF_CONFIG environment variable.
    tpu           TPUStrategy(TPUClusterResolver()).

`make_strategy` must run before any TensorFlow op: MultiWorkerMirroredStrategy configures collective ops at
start-up and fails once the eager context exists.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from t2v.trainer.config import STRATEGIES
from t2v.trainer.config import ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The strategy `name` (one of STRATEGIES); ConfigError when it cannot be had here."""
  if name not in STRATEGIES:
    raise ConfigError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
  if name == "multi_worker":
    if "TF_CONFIG" in os.environ:
      try:
        json.loads(os.environ["TF_CONFIG"])
      except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); set it as "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}') from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as e:
      raise ConfigError(f"--strategy=tpu found no TPU ({type(e).__name__}: {e}); use --strategy=auto") from e
    return tf.distribute.TPUStrategy(resolver)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "mirrored":
    if gpus:
      return tf.distribute.MirroredStrategy([device.name for device in gpus])
    # Over CPUs TF's default is collective ops whose keys restart with every MirroredStrategy, so a second run
    # in the same process (tests, notebooks) collides with the first ("Shape mismatch in the collective
    # instance"); reducing on one device has no keys, and CPUs share memory anyway.
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "auto" and len(gpus) > 1:
    return tf.distribute.MirroredStrategy([device.name for device in gpus])
  return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
  """(task type, task index) of this process in a multi-worker cluster; (None, 0) otherwise."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return None, 0
  return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the output_dir: the `chief` task, else worker 0, else the only process."""
  task_type, task_id = task(strategy)
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  jobs = strategy.cluster_resolver.cluster_spec().jobs
  return task_type == "worker" and task_id == 0 and "chief" not in jobs

