"""python -m t2v.experiments --experiment=NAME --output_dir=RUN [--out_dir=DIR --num_examples=16 --num_decodes=4 ...]

VideoFlow's paper experiments on a trained run (see t2v/experiments/lib.py), each writing results.json and PNG
plots into --out_dir (default RUN/experiments/NAME/):

  temperature_sweep   Figures 3/4: PSNR, SSIM, LPIPS (mean, best of N) and diversity vs --temperatures
  best_of_n           Figure 4: per-frame best / mean / worst of N PSNR and SSIM for N in --ns, at --temperature
  interpolation       §5.3: latent interpolation at each level and at all (--pairs, --num_points)
  rollout             §5.4: --rollout_frames-frame rollouts at --temperature: GIF, contact sheet, drift
  out_of_sequence     §5.5: bpp of X_t as the next frame after the first frames (--num_frames)

An unknown experiment, a bad value or missing data exits with status 2 and one line saying what to change.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from t2v.experiments import NAMES

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, f"One of: {', '.join(NAMES)}.")
flags.DEFINE_string("output_dir", None, "A training run's --output_dir (its config.json and checkpoints).")
flags.DEFINE_string("out_dir", None, "Where to write; default: <output_dir>/experiments/<experiment>.")
flags.DEFINE_string("checkpoint", None, "A checkpoint path in output_dir; default: the latest.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir of the run's problem; default: the problem's default.")
flags.DEFINE_string("split", None, "Split to read clips from; default: the problem's evaluation split.")
flags.DEFINE_integer("num_examples", 16, "Clips of the split (interpolation: pairs).", lower_bound=1)
flags.DEFINE_integer("num_decodes", 4, "Samples per clip (temperature_sweep, best_of_n, rollout).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the samples (and of out_of_sequence's dequantisation noise).",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 8, "Clips processed at once.", lower_bound=1)
flags.DEFINE_list("temperatures", ["0", "0.25", "0.5", "0.75", "1.0"], "temperature_sweep: the temperatures.")
flags.DEFINE_float("temperature", 0.5, "best_of_n, rollout: the sampling temperature.", lower_bound=0.0)
flags.DEFINE_list("ns", None, "best_of_n: the N of best / worst of N; default 1,2,4,... up to --num_decodes.")
flags.DEFINE_boolean("lpips", True, "temperature_sweep: score LPIPS-Alex (when its weights are installed) and use "
                     "it for diversity; --nolpips uses pixel MSE for diversity.")
flags.DEFINE_string("pairs", "clips", "interpolation: 'clips' (frame 0 of two clips) or 'first_last' (frames 0 "
                    "and last of one clip).")
flags.DEFINE_integer("num_points", 8, "interpolation: frames per path, end points included.", lower_bound=2)
flags.DEFINE_integer("rollout_frames", 100, "rollout: frames generated after the conditioning frames.",
                     lower_bound=1)
flags.DEFINE_integer("num_frames", None, "out_of_sequence: score X_t for t up to this (1-based); default: the "
                     "problem's conditioning + predicted frames.", lower_bound=1)
flags.mark_flag_as_required("output_dir")

_USAGE_ERROR = 2


def _fail(error: BaseException | str) -> int:
  print(f"t2v.experiments: error: {' '.join(str(error).split())}", file=sys.stderr)
  return _USAGE_ERROR


def _numbers(name: str, values: list[str], kind: type) -> list:
  try:
    return [kind(value) for value in values]
  except ValueError:
    raise ValueError(f"--{name}={','.join(values)} must be a comma-separated list of {kind.__name__}s, e.g. "
                     f"{'0,0.5,1' if kind is float else '1,2,4'}") from None


def _arguments(name: str) -> dict:
  """The keyword arguments of experiment `name` from the flags."""
  common = {"out_dir": FLAGS.out_dir, "data_dir": FLAGS.data_dir, "split": FLAGS.split,
            "checkpoint": FLAGS.checkpoint, "num_examples": FLAGS.num_examples, "batch_size": FLAGS.batch_size}
  sampled = {"num_decodes": FLAGS.num_decodes, "seed": FLAGS.seed, "progress": True}
  if name == "temperature_sweep":
    return {**common, **sampled, "temperatures": _numbers("temperatures", FLAGS.temperatures, float),
            "lpips": FLAGS.lpips}
  if name == "best_of_n":
    ns = None if FLAGS.ns is None else _numbers("ns", FLAGS.ns, int)
    return {**common, **sampled, "temperature": FLAGS.temperature, "ns": ns}
  if name == "interpolation":
    return {**common, "pairs": FLAGS.pairs, "num_points": FLAGS.num_points}
  if name == "rollout":
    return {**common, **sampled, "temperature": FLAGS.temperature, "num_frames": FLAGS.rollout_frames}
  return {**common, "seed": FLAGS.seed, "num_frames": FLAGS.num_frames}  # out_of_sequence


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return _fail(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
  if FLAGS.experiment not in NAMES:  # before TensorFlow is imported: a typo fails at once
    return _fail(f"unknown --experiment={FLAGS.experiment!r}; valid: {', '.join(NAMES)}")
  try:
    kwargs = _arguments(FLAGS.experiment)
  except ValueError as e:
    return _fail(e)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  from t2v.experiments import lib  # pylint: disable=import-outside-toplevel
  from t2v.problems.base import DataNotFoundError  # pylint: disable=import-outside-toplevel
  from t2v.trainer.config import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    results = lib.run(FLAGS.experiment, FLAGS.output_dir, **kwargs)
  except (ConfigError, DataNotFoundError, ValueError) as e:
    return _fail(e)
  out_dir = FLAGS.out_dir or os.path.join(FLAGS.output_dir, "experiments", FLAGS.experiment)
  print(f"t2v.experiments: {FLAGS.experiment}: wrote {lib.RESULTS_FILE} and "
        f"{', '.join(sorted(set(results['files'].values())))} to {out_dir}")
  return 0


if __name__ == "__main__":
  app.run(main)
