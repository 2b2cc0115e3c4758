"""A small but real likelihood model, to test the trainer's mechanics in seconds; also a launcher for
subprocess tests.

ToyModel predicts every frame pixel by pixel with a discretised logistic whose mean and log-scale come from one
3x3 convolution over the previous frame (a zero frame before the first). `initialize` sets the convolution's
bias from the data (mean and log-std per channel), like actnorm. The loss is the exact negative log-likelihood
in bits per pixel, and `sample` draws from the same distribution frame by frame.

    PYTHONPATH=.:tests python tests/toy_model.py run '<json kwargs of t2v.trainer.run>' result.json
    PYTHONPATH=.:tests python tests/toy_model.py cli --model=toy --output_dir=...

`run` registers the toy model, calls t2v.trainer.run (or each of a JSON list of kwargs) and writes the results
as JSON; `cli` registers it and runs the real command line.

With T2V_TEST_LOGICAL_CPUS=n in the environment the launcher splits the CPU into n logical devices first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import keras
import tensorflow as tf

from t2v import hparams as hparams_lib
from t2v import registry
from t2v.models.base import VideoModel

# The registry entries the tests add (see `register`).
MODELS = {"toy": "toy_model:ToyModel"}
HPARAMS_SETS = {"toy_tiny": "toy_model:toy_tiny"}
DEFAULT_HPARAMS_SET = {"toy": "toy_tiny"}


def register(setitem=None) -> None:
  """Adds the toy model to t2v.registry; `setitem` is e.g. pytest's monkeypatch.setitem (undone after a test)."""
  setitem = setitem or (lambda table, key, value: table.__setitem__(key, value))
  for table, entries in ((registry.MODELS, MODELS), (registry.HPARAMS_SETS, HPARAMS_SETS),
                         (registry.DEFAULT_HPARAMS_SET, DEFAULT_HPARAMS_SET)):
    for key, value in entries.items():
      setitem(table, key, value)


@dataclasses.dataclass
class ToyHParams(hparams_lib.HParams):
  """ToyModel's hparams: the trainer's fields plus a few to exercise parsing and failure paths."""

  batch_size: int = 4
  init_batch_size: int = 4
  learning_rate: float = 1e-2
  num_train_frames: int = 2
  kernel_scale: float = 0.01  # stddev of the initial convolution kernel
  # Indices of compute_loss(training=True) calls in this process whose loss is NaN ("3,4"), to test skipping.
  nan_loss_steps: str = ""
  nan_replica: str = hparams_lib.choice("all", "all", "0", "1")  # whose loss is NaN at those calls
  use_bias: bool = True
  # What the convolution sees: the previous frame, or always a zero frame (frames modelled independently).
  condition_on: str = hparams_lib.choice("previous", "previous", "nothing")

  def validate(self) -> None:
    super().validate()
    try:
      self.nan_steps()
    except ValueError as e:
      raise hparams_lib.HParamsError(f"hparams nan_loss_steps={self.nan_loss_steps!r} must be comma-separated "
                                     "integers, e.g. '3,4'") from e

  def nan_steps(self) -> tuple[int, ...]:
    return tuple(int(part) for part in self.nan_loss_steps.replace(";", ",").split(",") if part.strip())


def toy_tiny() -> ToyHParams:
  """Toy preset: batch 4, 2-frame windows, lr 1e-2."""
  return ToyHParams()


_HALF_BIN = 1.0 / 255.0  # half the width of one of 256 levels on [-1, 1]


class _Holder:
  """Not trackable: what it holds is not saved in checkpoints."""


class ToyModel(VideoModel):
  """Per-pixel discretised logistic given the previous frame (one 3x3 convolution)."""

  hparams_class = ToyHParams
  is_likelihood_model = True

  def __init__(self, hparams: ToyHParams, spec, **kwargs):
    super().__init__(hparams, spec, **kwargs)
    channels = spec.frame_shape[-1]
    self.conv = keras.layers.Conv2D(
        2 * channels, 3, padding="same", use_bias=hparams.use_bias,
        kernel_initializer=keras.initializers.RandomNormal(stddev=hparams.kernel_scale))
    self._initialized = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                        name="initialized")
    self._nan_steps = hparams.nan_steps()
    self._calls = _Holder()
    if self._nan_steps:
      self._calls.count = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  @property
  def is_initialized(self) -> bool:
    return bool(self._initialized.numpy())

  def _distribution(self, previous: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and log-scale on [-1, 1] of each pixel given the previous frame [N, H, W, C]."""
    out = self.conv(previous)  # [N, H, W, 2C]
    mean, log_scale = tf.split(out, 2, axis=-1)
    return mean, tf.clip_by_value(log_scale, -7.0, 7.0)

  def _previous_frames(self, x: tf.Tensor) -> tf.Tensor:
    """[B, T, H, W, C] -> the frame before each: a zero frame, then x[:, :-1] (all zeros: condition_on=nothing)."""
    if self.hparams.condition_on == "nothing":
      return tf.zeros_like(x)
    return tf.concat([tf.zeros_like(x[:, :1]), x[:, :-1]], axis=1)

  def log_prob_pixels(self, video: tf.Tensor) -> tf.Tensor:
    """Log-probability (nats) of every pixel of uint8 video [B, T, H, W, C] given the previous frame."""
    x = tf.cast(video, tf.float32) / 127.5 - 1.0  # [B, T, H, W, C] on [-1, 1]
    shape = tf.shape(x)
    previous = tf.reshape(self._previous_frames(x), tf.concat([[-1], shape[2:]], 0))  # [B*T, H, W, C]
    mean, log_scale = self._distribution(previous)
    centred = tf.reshape(x, tf.shape(mean)) - mean
    inverse_scale = tf.exp(-log_scale)
    upper = inverse_scale * (centred + _HALF_BIN)
    lower = inverse_scale * (centred - _HALF_BIN)
    log_cdf_upper = upper - tf.nn.softplus(upper)  # log sigmoid(upper): the bin of level 0 reaches -inf
    log_survival_lower = -tf.nn.softplus(lower)  # log (1 - sigmoid(lower)): the bin of 255 reaches +inf
    bin_mass = tf.sigmoid(upper) - tf.sigmoid(lower)
    mid = inverse_scale * centred
    log_pdf_mid = mid - log_scale - 2.0 * tf.nn.softplus(mid) + math.log(2 * _HALF_BIN)  # narrow-bin fallback
    log_middle = tf.where(bin_mass > 1e-5, tf.math.log(tf.maximum(bin_mass, 1e-12)), log_pdf_mid)
    flat_x = tf.reshape(x, tf.shape(mean))
    log_prob = tf.where(flat_x < -0.999, log_cdf_upper, tf.where(flat_x > 0.999, log_survival_lower, log_middle))
    return tf.reshape(log_prob, shape)  # [B, T, H, W, C]

  def compute_loss(self, batch, training: bool):
    log_prob = self.log_prob_pixels(batch["video"])  # [B, T, H, W, C]
    bpp = -tf.reduce_mean(log_prob, axis=[1, 2, 3, 4]) / math.log(2.0)  # [B]
    if training and self._nan_steps:
      call = self._calls.count.assign_add(1) - 1
      poisoned = tf.reduce_any(tf.equal(call, tf.constant(self._nan_steps, tf.int64)))
      if self.hparams.nan_replica != "all":
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        poisoned &= tf.equal(replica, int(self.hparams.nan_replica))
      bpp = tf.where(poisoned, tf.fill(tf.shape(bpp), float("nan")), bpp)
    return bpp, {"bpp": bpp}

  def log_prob_bpp(self, batch, num_input_frames: int) -> tf.Tensor:
    log_prob = self.log_prob_pixels(batch["video"])[:, num_input_frames:]
    return -tf.reduce_mean(log_prob, axis=[2, 3, 4]) / math.log(2.0)  # [B, T - n]

  def initialize(self, batch) -> None:
    """Builds the convolution and sets its bias to the per-channel mean and log-std of the batch."""
    x = tf.cast(batch["video"], tf.float32) / 127.5 - 1.0  # [B, T, H, W, C]
    self.conv.build((None,) + tuple(self.spec.frame_shape))
    if self.hparams.use_bias:
      mean = tf.reduce_mean(x, axis=[0, 1, 2, 3])  # [C]
      log_std = tf.math.log(tf.math.reduce_std(x, axis=[0, 1, 2, 3]) + 1e-2)  # [C]
      self.conv.bias.assign(tf.concat([mean, log_std], 0))
    self._initialized.assign(1)

  def sample(self, inputs, num_frames: int, temperature: float = 1.0, seed=(0, 0)) -> tf.Tensor:
    video = tf.convert_to_tensor(inputs["video"])  # [B, Tc, H, W, C]
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    if video.shape[1] and self.hparams.condition_on == "previous":
      previous = tf.cast(video[:, -1], tf.float32) / 127.5 - 1.0
    else:
      previous = tf.zeros([tf.shape(video)[0]] + list(self.spec.frame_shape), tf.float32)
    frames = []
    for t in range(num_frames):
      mean, log_scale = self._distribution(previous)
      u = tf.random.stateless_uniform(tf.shape(mean), seed=tf.random.experimental.stateless_fold_in(seed, t),
                                      minval=1e-5, maxval=1.0 - 1e-5)
      x = mean + temperature * tf.exp(log_scale) * (tf.math.log(u) - tf.math.log1p(-u))
      levels = tf.round((tf.clip_by_value(x, -1.0, 1.0) + 1.0) * 127.5)  # [B, H, W, C] in 0..255
      frames.append(tf.cast(levels, tf.uint8))
      if self.hparams.condition_on == "previous":
        previous = levels / 127.5 - 1.0
    return tf.stack(frames, axis=1)  # [B, num_frames, H, W, C]


# ---- launcher --------------------------------------------------------------------------------------------

def _main(argv: list[str]) -> int:
  count = int(os.environ.get("T2V_TEST_LOGICAL_CPUS", "0"))
  if count:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
  register()
  if argv[1:2] == ["cli"]:
    from absl import app  # pylint: disable=import-outside-toplevel
    from t2v.trainer import __main__ as trainer_main  # pylint: disable=import-outside-toplevel
    app.run(trainer_main.main, argv=[argv[0]] + argv[2:])
    return 0
  if argv[1:2] == ["run"] and len(argv) == 4:
    from t2v import trainer  # pylint: disable=import-outside-toplevel
    runs = json.loads(argv[2])
    results = []
    for kwargs in runs if isinstance(runs, list) else [runs]:
      try:
        results.append(trainer.run(**kwargs))
      except trainer.ConfigError as e:  # recorded, so one launch can test several runs
        results.append({"error": f"{type(e).__name__}: {e}"})
    with open(argv[3], "w") as f:
      json.dump(results if isinstance(runs, list) else results[0], f)
    return 0
  print(f"usage: {argv[0]} run '<json kwargs or list of them>' result.json | cli --flags...", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(_main(sys.argv))
