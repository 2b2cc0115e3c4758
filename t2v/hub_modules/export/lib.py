"""Export a trained run as TF Hub modules (TF2 SavedModels read by `hub.load` or `tf.saved_model.load`).

    paths = export("runs/videoflow_shapes", "exports/videoflow_shapes")   # evaluator/, generator/, encoder/

Each module is written into a temporary directory inside `export_dir` and moved into place only when complete, so
a failed export never leaves a half-written module. Each gets a README.md like a tfhub.dev page.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from t2v.trainer.config import ConfigError
from t2v.trainer.restore import restore_run

# model name -> the module building its hub modules (MODULES, signatures_doc; optionally readme_examples)
MODEL_MODULES: dict[str, str] = {"videoflow": "t2v.hub_modules.videoflow", "cglow_video": "t2v.hub_modules.cglow_video"}

_DESCRIPTIONS = {
    "evaluator": "Scores videos: bits per pixel of target frames given conditioning frames.",
    "generator": "Generates frames after conditioning frames, at a temperature, reproducibly from a seed.",
    "encoder": "Maps frames to the model's per-level latent codes and back, exactly.",
}


def export(output_dir: str, export_dir: str, modules: Sequence[str] | None = None, checkpoint: str | None = None,
           overwrite: bool = False) -> dict[str, str]:
  """Writes the hub modules of the run in `output_dir` into `export_dir`/<module>; returns {module: path}."""
  from t2v.trainer import config as config_lib  # pylint: disable=import-outside-toplevel
  recorded = config_lib.read_config(output_dir)
  if recorded is None:
    raise ConfigError(f"{output_dir!r} holds no t2v run (no config.json): pass the --output_dir of a training run")
  if recorded["model"] not in MODEL_MODULES:
    raise ConfigError(f"model {recorded['model']!r} has no hub modules yet; exportable models: "
                      f"{', '.join(sorted(MODEL_MODULES))}")
  builders = importlib.import_module(MODEL_MODULES[recorded["model"]])
  modules = list(modules or builders.MODULES)
  unknown = [name for name in modules if name not in builders.MODULES]
  if unknown:
    raise ConfigError(f"unknown module(s) {', '.join(unknown)} for {recorded['model']}; valid: "
                      f"{', '.join(builders.MODULES)}")
  targets = {name: os.path.join(export_dir, name) for name in modules}
  existing = [path for path in targets.values() if os.path.exists(path)]
  if existing and not overwrite:
    raise ConfigError(f"{', '.join(existing)} already exist(s): pick another --export_dir or pass --overwrite")

  _, model, config = restore_run(output_dir, checkpoint=checkpoint)
  figures = latest_eval_figures(output_dir)
  docs = builders.signatures_doc(model)
  examples = builders.readme_examples(model) if hasattr(builders, "readme_examples") else {}
  os.makedirs(export_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=export_dir)
  try:
    for name in modules:
      path = os.path.join(staging, name)
      tf.saved_model.save(builders.MODULES[name](model), path)
      with open(os.path.join(path, "README.md"), "w") as f:
        f.write(_readme(name, docs[name], config, figures, model, examples.get(name)))
    for name, target in targets.items():
      if os.path.exists(target):
        shutil.rmtree(target)
      os.replace(os.path.join(staging, name), target)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return targets


def latest_eval_figures(output_dir: str) -> dict[str, Any]:
  """The last evaluation's scalars written by the trainer ({} when it never evaluated)."""
  figures: dict[str, Any] = {}
  for path in sorted(glob.glob(os.path.join(output_dir, "eval", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          if event.step >= figures.get("step", -1):
            figures["step"] = event.step
            figures[value.tag] = float(tf.make_ndarray(value.tensor))
  return figures


def _readme(name: str, signature: str, config: dict[str, Any], figures: dict[str, Any], model,
            example: str | None = None) -> str:
  spec = model.spec
  h, w, c = spec.frame_shape
  tc, tt = spec.num_input_frames, spec.num_target_frames
  example = example or {
      "evaluator": (f"inputs = np.zeros([2, {tc}, {h}, {w}, {c}], np.uint8)\n"
                    f"targets = np.zeros([2, {tt}, {h}, {w}, {c}], np.uint8)\n"
                    "print(module.log_prob(inputs, targets)[\"bits_per_pixel\"])"),
      "generator": (f"inputs = np.zeros([2, {tc}, {h}, {w}, {c}], np.uint8)\n"
                    "frames = module.sample(inputs, tf.constant(20), tf.constant(0.5), tf.constant([0, 1]))[\"frames\"]\n"
                    "print(frames.shape)"),
      "encoder": (f"frames = np.zeros([2, {h}, {w}, {c}], np.uint8)\n"
                  "latents = module.encode(frames)\n"
                  "print({k: v.shape for k, v in latents.items()}, module.decode(latents)[\"frames\"].shape)"),
  }[name]
  evaluation = (", ".join(f"{k} {v:.4f}" for k, v in figures.items() if k != "step") + f" at step {figures['step']}"
                if figures else "none recorded")
  return f"""# {config['model']} {name}

{_DESCRIPTIONS[name]} Exported by t2v from a run of `{config['model']}` on `{config['problem']}`
(config `{config['problem_config']}`), hparams set `{config['hparams_set']}`, checkpoint `{os.path.basename(config['checkpoint'])}`.

## Signature

{signature}

Inputs are uint8 videos; the batch is dynamic. A tensor of the wrong dtype, rank, frame size or frame count is
refused when the function is called, with the expected `TensorSpec` in the message. NumPy arrays are converted to
the signature's dtype by TensorFlow: pass uint8 values in 0..255, not floats in [0, 1].

## Evaluation during training (the trainer's last eval, {tt} frames given {tc})

{evaluation}

## Example (no t2v needed)

```python
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub

module = hub.load("path/to/{name}")
{example}
```

## Hyperparameters

```json
{json.dumps(config['hparams'], indent=2, sort_keys=True)}
```
"""
