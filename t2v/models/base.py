"""The contract between every t2v model and the trainer, decoder and hub exporter.

A batch is a dict of tensors: `video` uint8 [B, T, H, W, C] and, where the problem has them, `label` int32 [B]
and `caption` string [B]. The trainer adds `seed`, an int32 [2] stateless seed that models use for any
randomness of the step (e.g. dequantisation noise), so that a resumed run repeats an uninterrupted one exactly.
A model never reads files and never sees a Problem: it gets a `VideoSpec`.

The trainer calls, in this order:
  1. `model = ModelClass(hparams, spec)` inside the strategy scope;
  2. `model.initialize(init_batch)` once, eagerly, in cross-replica context, before step 0 (data-dependent
     initialisation such as actnorm; a no-op for models without it); the batch is the same on every worker;
  3. `per_example_loss, metrics = model.compute_loss(batch, training=True)` inside `strategy.run`; the trainer
     averages over the *global* batch and differentiates with a GradientTape.
"""

from __future__ import annotations

import abc

import keras
import tensorflow as tf

from t2v.hparams import HParams
from t2v.problems.spec import VideoSpec


class VideoModel(keras.Model, abc.ABC):
  """Base class of t2v models.

  Subclasses set `hparams_class` (the dataclass their presets return) and `is_likelihood_model` (True when
  `compute_loss` is the negative log-likelihood in bits per pixel and `log_prob_bpp` is exact).
  """

  hparams_class: type[HParams] = HParams
  is_likelihood_model: bool = False

  def __init__(self, hparams: HParams, spec: VideoSpec, **kwargs):
    super().__init__(**kwargs)
    if not isinstance(hparams, self.hparams_class):
      raise TypeError(f"{type(self).__name__} needs {self.hparams_class.__name__} hparams, got "
                      f"{type(hparams).__name__}: pick one of this model's hparams sets (--registry_help)")
    self.hparams = hparams
    self.spec = spec

  @property
  def num_dims(self) -> int:
    """D: sub-pixels of one frame (the denominator of bits per pixel)."""
    height, width, channels = self.spec.frame_shape
    return height * width * channels

  @property
  def num_train_frames(self) -> int:
    """Length of the random temporal window each training example is cut to."""
    return self.hparams.num_train_frames or self.spec.num_frames

  def initialize(self, batch: dict[str, tf.Tensor]) -> None:
    """Data-dependent initialisation from one batch (eager, cross-replica). Default: nothing to do."""
    del batch

  @property
  def is_initialized(self) -> bool:
    return True

  @abc.abstractmethod
  def compute_loss(self, batch: dict[str, tf.Tensor], training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Returns (per-example loss [B], per-example metrics {name: [B]}) for one batch."""

  @abc.abstractmethod
  def sample(self, inputs: dict[str, tf.Tensor], num_frames: int, temperature: float = 1.0,
             seed: tuple[int, int] | tf.Tensor = (0, 0)) -> tf.Tensor:
    """Generates `num_frames` frames after the conditioning frames `inputs['video']`.

    Returns uint8 [B, num_frames, H, W, C] (conditioning frames not included). Same seed, same video.
    """

  def log_prob_bpp(self, batch: dict[str, tf.Tensor], num_input_frames: int) -> tf.Tensor:
    """Bits per pixel of each frame after the first `num_input_frames`, given those: float32 [B, T - n]."""
    raise TypeError(f"{type(self).__name__} is not a likelihood model: it has no log_prob_bpp")
