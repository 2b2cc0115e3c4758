"""Typed hyperparameters: a dataclass base, preset functions, "k=v" overrides and a JSON round trip.

Why dataclasses and not ml_collections: they are in the standard library, every field has a Python type the
override parser can enforce, a misspelt key is an error at construction, and `dataclasses.replace` makes a preset
a three-line function. Choices (e.g. coupling in {"affine", "additive"}) are declared in the field's metadata and
checked in `validate`.

    hp = videoflow_cpu()                          # a preset: a function returning a dataclass instance
    hp = override(hp, "learning_rate=1e-3,depth=4")
    hp.to_json() / type(hp).from_json(text)
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any


class HParamsError(ValueError):
  """A bad hparams key or value; the message names the bad item and the valid choices."""


def choice(default: str, *choices: str) -> Any:
  """A string field restricted to `choices` (checked by `HParams.validate`)."""
  if default not in choices:
    raise ValueError(f"default {default!r} is not one of {choices}")
  return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


@dataclasses.dataclass
class HParams:
  """What every model trains with: optimisation, stability and the training window.

  Model hparams subclass this and add their own fields; presets are functions returning an instance.
  """

  # Optimisation (Adam, as in every paper t2v implements).
  batch_size: int = 16  # global batch, split over replicas
  learning_rate: float = 3e-4
  adam_beta1: float = 0.9
  adam_beta2: float = 0.999
  adam_epsilon: float = 1e-8
  warmup_steps: int = 0  # linear warm-up from 0 to learning_rate
  decay_steps: int = 0  # linear decay to 0 over the last `decay_steps` of --train_steps (0: none)
  weight_decay: float = 0.0
  # Stability (the label-conditioned Glow paper needed all three).
  clip_grad_norm: float = 0.0  # global-norm clipping; 0 disables
  max_nonfinite_steps: int = 5  # this many skipped non-finite steps in a row restore the last good checkpoint
  lr_factor_on_restore: float = 1.0  # multiply the learning rate by this after each such restore
  # Data-dependent initialisation (actnorm): one dedicated batch before step 0.
  init_batch_size: int = 32
  # Frames per training example (a random temporal window); 0 uses the problem's whole clip length.
  num_train_frames: int = 0

  # ---- validation, overrides, serialisation -------------------------------------------------------

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    hints = typing.get_type_hints(type(self))
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      _check_type(f.name, value, hints[f.name])
      choices = f.metadata.get("choices")
      if choices and value not in choices:
        raise HParamsError(f"hparams {f.name}={value!r} is not one of {', '.join(choices)}")
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise HParamsError(f"hparams {f.name}={value!r} must be >= 0")
    if self.batch_size < 1:
      raise HParamsError(f"hparams batch_size={self.batch_size} must be >= 1")

  def keys(self) -> list[str]:
    return [f.name for f in dataclasses.fields(self)]

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict[str, Any]):
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise HParamsError(f"unknown hparams {', '.join(unknown)} for {cls.__name__}; valid keys: "
                         f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    return cls(**values)

  @classmethod
  def from_json(cls, text: str):
    return cls.from_dict(json.loads(text))


def _check_type(name: str, value: Any, hint: Any) -> None:
  if hint is float and isinstance(value, int) and not isinstance(value, bool):
    return
  if hint is int and isinstance(value, bool):
    raise HParamsError(f"hparams {name}={value!r} must be an int, not a bool")
  if hint in (int, float, str, bool) and not isinstance(value, hint):
    raise HParamsError(f"hparams {name}={value!r} must be of type {hint.__name__}")


def _parse_value(name: str, text: str, hint: Any) -> Any:
  text = text.strip()
  try:
    if hint is bool:
      lowered = text.lower()
      if lowered in ("true", "1", "yes"):
        return True
      if lowered in ("false", "0", "no"):
        return False
      raise ValueError
    if hint is int:
      as_float = float(text)
      if as_float != int(as_float):
        raise ValueError
      return int(as_float)
    if hint is float:
      return float(text)
    if hint is str:
      return text
  except ValueError:
    pass
  else:
    raise HParamsError(f"hparams {name} has unsupported type {hint}")
  raise HParamsError(f"hparams {name}={text!r} is not a valid {getattr(hint, '__name__', hint)}")


def parse_overrides(text: str) -> dict[str, str]:
  """'a=1,b=x' -> {'a': '1', 'b': 'x'} (values still strings; `override` types them)."""
  pairs = {}
  for item in filter(None, (part.strip() for part in (text or "").split(","))):
    if "=" not in item:
      raise HParamsError(f"hparams override {item!r} is not of the form key=value")
    key, value = item.split("=", 1)
    pairs[key.strip()] = value
  return pairs


def override(hparams: HParams, text_or_dict: str | dict[str, Any]) -> HParams:
  """Returns a copy of `hparams` with "k=v,k2=v2" (or a dict) applied, each value checked against its type."""
  pairs = parse_overrides(text_or_dict) if isinstance(text_or_dict, str) else dict(text_or_dict)
  hints = typing.get_type_hints(type(hparams))
  valid = hparams.keys()
  changes = {}
  for key, value in pairs.items():
    if key not in valid:
      raise HParamsError(f"unknown hparams key {key!r} for {type(hparams).__name__}; valid keys: {', '.join(valid)}")
    changes[key] = _parse_value(key, value, hints[key]) if isinstance(value, str) else value
  return dataclasses.replace(hparams, **changes)


def diff(a: HParams, b: HParams) -> dict[str, tuple[Any, Any]]:
  """Keys whose values differ between two hparams of the same class: {key: (a_value, b_value)}."""
  return {k: (getattr(a, k), getattr(b, k)) for k in a.keys() if getattr(a, k) != getattr(b, k)}
