"""The one registry of t2v: literal names of problems, models and hparams sets, imported lazily.

Nothing registers itself by being imported: adding a problem, model or preset means adding a line here. Looking
a name up imports only the module that defines it, so `--registry_help` and flag errors are instant.
"""

from __future__ import annotations

import importlib
from typing import Any

PROBLEMS: dict[str, str] = {
    "stochastic_shapes": "t2v.problems.stochastic_shapes:StochasticShapes",
    "bair": "t2v.problems.bair:Bair",
    "moving_mnist": "t2v.problems.moving_mnist:MovingMnist",
    "captioned_shapes": "t2v.problems.captioned_shapes:CaptionedShapes",
    "video_folder": "t2v.problems.video_folder:VideoFolder",
}

MODELS: dict[str, str] = {
    "videoflow": "t2v.models.videoflow:VideoFlow",
    "cglow_video": "t2v.models.cglow_video:CGlowVideo",
}

HPARAMS_SETS: dict[str, str] = {
    "videoflow_base": "t2v.models.videoflow_hparams:videoflow_base",
    "videoflow_cpu": "t2v.models.videoflow_hparams:videoflow_cpu",
    "videoflow_cpu_multiscale": "t2v.models.videoflow_hparams:videoflow_cpu_multiscale",
    "videoflow_tiny": "t2v.models.videoflow_hparams:videoflow_tiny",
    "videoflow_shapes": "t2v.models.videoflow_hparams:videoflow_shapes",
    "videoflow_bair_quant": "t2v.models.videoflow_hparams:videoflow_bair_quant",
    "videoflow_bair_qual": "t2v.models.videoflow_hparams:videoflow_bair_qual",
    "cglow_video_base": "t2v.models.cglow_video_hparams:cglow_video_base",
    "cglow_video_init": "t2v.models.cglow_video_hparams:cglow_video_init",
    "cglow_video_prev_frame": "t2v.models.cglow_video_hparams:cglow_video_prev_frame",
    "cglow_video_state": "t2v.models.cglow_video_hparams:cglow_video_state",
    "cglow_video_state_label": "t2v.models.cglow_video_hparams:cglow_video_state_label",
    "cglow_video_state_caption": "t2v.models.cglow_video_hparams:cglow_video_state_caption",
    "cglow_video_cpu": "t2v.models.cglow_video_hparams:cglow_video_cpu",
    "cglow_video_tiny": "t2v.models.cglow_video_hparams:cglow_video_tiny",
}

# The hparams set a model trains with when --hparams_set is not given.
DEFAULT_HPARAMS_SET: dict[str, str] = {
    "videoflow": "videoflow_cpu",
    "cglow_video": "cglow_video_cpu",
}

DEFAULT_PROBLEM = "stochastic_shapes"

# The problem a model trains on when --problem is not given, where it is not DEFAULT_PROBLEM (a caption-conditioned
# model needs captions).
DEFAULT_PROBLEM_FOR_MODEL: dict[str, str] = {
    "cglow_video": "captioned_shapes",
}


class RegistryError(LookupError):
  """An unknown name; the message lists the valid ones."""


def _load(kind: str, table: dict[str, str], name: str) -> Any:
  if name not in table:
    raise RegistryError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table))}")
  module_name, attr = table[name].split(":")
  return getattr(importlib.import_module(module_name), attr)


def problem(name: str):
  """The Problem class registered as `name`."""
  return _load("problem", PROBLEMS, name)


def model(name: str):
  """The model class registered as `name`."""
  return _load("model", MODELS, name)


def hparams_set(name: str):
  """A fresh hparams instance from the preset function registered as `name`."""
  return _load("hparams set", HPARAMS_SETS, name)()


def default_hparams_set(model_name: str) -> str:
  if model_name not in DEFAULT_HPARAMS_SET:
    raise RegistryError(f"unknown model {model_name!r}; valid models: {', '.join(sorted(MODELS))}")
  return DEFAULT_HPARAMS_SET[model_name]


def default_problem(model_name: str) -> str:
  """The problem `model_name` trains on when none is named."""
  return DEFAULT_PROBLEM_FOR_MODEL.get(model_name, DEFAULT_PROBLEM)


def check_names(problem_name: str, model_name: str, hparams_set_name: str | None) -> None:
  """Fails with RegistryError, before anything is imported, if any name is unknown."""
  for kind, table, name in (("problem", PROBLEMS, problem_name), ("model", MODELS, model_name),
                            ("hparams set", HPARAMS_SETS, hparams_set_name)):
    if name is not None and name not in table:
      raise RegistryError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table))}")


def _first_doc_line(kind: str, table: dict[str, str], name: str) -> str:
  try:
    doc = (_load(kind, table, name).__doc__ or "").strip()
  except Exception as e:  # an optional dependency missing must not hide the rest of the listing
    return f"(unavailable: {e})"
  return doc.splitlines()[0] if doc else ""


def help_text() -> str:
  """A listing of every registered name with the first line of its docstring."""
  lines = []
  for kind, table in (("problem", PROBLEMS), ("model", MODELS), ("hparams set", HPARAMS_SETS)):
    lines.append(f"{kind}s:")
    for name in sorted(table):
      lines.append(f"  {name:24s} {_first_doc_line(kind, table, name)}")
  return "\n".join(lines)
