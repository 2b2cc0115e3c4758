"""What a training run is, recorded in `<output_dir>/config.json`, and the checks that keep runs apart.

This module imports neither TensorFlow nor any model, so the command line can reject a bad name, hparams key or
output_dir in a fraction of a second. `config.json` holds:

    {"t2v_version": ..., "problem": "stochastic_shapes", "problem_config": "default", "model": "videoflow",
     "hparams_set": "videoflow_cpu", "hparams": {...every field...}, "spec": {...VideoSpec...}}

A run resumes only into an output_dir whose config.json names the same problem, problem config, model and spec;
changed hparams (or hparams set) are refused unless explicitly allowed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import Any

from t2v import hparams as hparams_lib
from t2v import registry

CONFIG_FILE = "config.json"

# The --strategy values (t2v.trainer.strategy builds them); here so the command line needs no TensorFlow.
STRATEGIES: tuple[str, ...] = ("auto", "one_device", "mirrored", "multi_worker", "tpu")

# Keys that say which run an output_dir holds; a difference in any of them is never allowed.
_IDENTITY_KEYS = ("problem", "problem_config", "model")


class ConfigError(ValueError):
  """A bad trainer argument, or an output_dir holding another run; the message names the value and the fix."""


def t2v_version() -> str:
  """The installed t2v version, or "unknown" when running from a source tree that is not installed."""
  import t2v  # pylint: disable=import-outside-toplevel
  version = getattr(t2v, "__version__", None)
  if version:
    return str(version)
  try:
    return importlib.metadata.version("t2v")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def resolve_hparams(model: str, hparams_set: str | None,
                    overrides: str | dict[str, Any] = "") -> tuple[str, hparams_lib.HParams]:
  """(hparams set name, preset with `overrides` applied); `hparams_set=None` takes the model's default.

  Raises RegistryError for an unknown name and HParamsError for a bad override; imports only the preset module.
  """
  name = hparams_set if hparams_set is not None else registry.default_hparams_set(model)
  return name, hparams_lib.override(registry.hparams_set(name), overrides or "")


def default_output_dir(problem: str, model: str, hparams_set: str) -> str:
  """./t2v_runs/<problem>-<model>-<hparams_set>."""
  return os.path.join("t2v_runs", f"{problem}-{model}-{hparams_set}")


def make_config(*, problem: str, problem_config: str | None, model: str, hparams_set: str,
                hparams: hparams_lib.HParams, spec: dict[str, Any]) -> dict[str, Any]:
  """The JSON-ready record of a run."""
  return _normalise({
      "t2v_version": t2v_version(),
      "problem": problem,
      "problem_config": problem_config,
      "model": model,
      "hparams_set": hparams_set,
      "hparams": hparams.to_dict(),
      "spec": spec,
  })


def _normalise(value: Any) -> Any:
  """What `value` reads back as from JSON (tuples become lists), so records compare equal to fresh ones."""
  return json.loads(json.dumps(value, sort_keys=True))


def _full_spec(spec: dict[str, Any]) -> Any:
  """A recorded spec with the fields added to VideoSpec since it was written at their defaults."""
  from t2v.problems.spec import VideoSpec  # pylint: disable=import-outside-toplevel
  try:
    return _normalise(VideoSpec.from_dict(spec).to_dict())
  except (TypeError, ValueError):  # not a VideoSpec this t2v can read: compare as recorded
    return _normalise(spec)


def read_config(output_dir: str) -> dict[str, Any] | None:
  """The recorded config of `output_dir`, or None when it has none."""
  path = os.path.join(output_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ConfigError(f"cannot read {path} ({e}); fix or delete it, or pick another --output_dir") from e
  missing = [key for key in _IDENTITY_KEYS + ("hparams_set", "hparams", "spec") if key not in config]
  if not isinstance(config, dict) or missing:
    raise ConfigError(f"{path} is not a t2v run config (missing {', '.join(missing) or 'everything'}); "
                      "pick another --output_dir")
  return config


def write_config(output_dir: str, config: dict[str, Any]) -> None:
  """Writes config.json atomically (a reader never sees half a file)."""
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, CONFIG_FILE)
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(temporary, path)


def check_identity(recorded: dict[str, Any] | None, output_dir: str, **requested: Any) -> None:
  """Refuses an output_dir recorded for another problem, problem config or model (never overridable).

  `requested` holds any of problem=, problem_config=, model= (a None problem_config is not compared).
  """
  if recorded is None:
    return
  for key, value in requested.items():
    if key == "problem_config" and value is None:
      continue
    if recorded.get(key) != value:
      raise ConfigError(
          f"output_dir {output_dir} holds a run of {key} {recorded.get(key)!r} (its {CONFIG_FILE}), not "
          f"{value!r}; pick another --output_dir, or pass --{key}={recorded.get(key)} to resume that run")


def compare(recorded: dict[str, Any], new: dict[str, Any], output_dir: str,
            allow_hparams_change: bool) -> dict[str, tuple[Any, Any]]:
  """Checks a resume: returns the changed hparams {key: (old, new)}, or raises ConfigError.

  Problem, problem config, model and spec must match. Changed hparams (and hparams set) are refused unless
  `allow_hparams_change`, in which case they are returned so the caller can log and record them. Hparams the
  record lacks (added to t2v after the run was written) are not refused: they are returned as changes from
  "<absent>" and take the preset's values.
  """
  check_identity(recorded, output_dir, **{key: new[key] for key in _IDENTITY_KEYS})
  if _full_spec(recorded["spec"]) != _full_spec(new["spec"]):
    raise ConfigError(f"output_dir {output_dir} holds a run on data of spec {recorded['spec']}, but this "
                      f"problem now has spec {new['spec']}; pick another --output_dir")
  changes: dict[str, tuple[Any, Any]] = {}
  if recorded["hparams_set"] != new["hparams_set"]:
    changes["hparams_set"] = (recorded["hparams_set"], new["hparams_set"])
  old_hparams, new_hparams = recorded["hparams"], new["hparams"]
  added: dict[str, tuple[Any, Any]] = {}  # hparams t2v gained after the run was recorded: they take their values
  for key in sorted(set(old_hparams) | set(new_hparams)):
    old, value = old_hparams.get(key, "<absent>"), new_hparams.get(key, "<absent>")
    if old == "<absent>":
      added[key] = (old, value)
    elif old != value:
      changes[key] = (old, value)
  if changes and not allow_hparams_change:
    listed = ", ".join(f"{key}: {old!r} -> {value!r}" for key, (old, value) in changes.items())
    raise ConfigError(
        f"output_dir {output_dir} holds a run with other hparams ({listed}); rerun with the recorded values "
        f"(see its {CONFIG_FILE}), pick another --output_dir, or pass --allow_hparams_change to resume with "
        "the new ones")
  return {**changes, **added}
