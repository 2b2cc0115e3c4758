"""Where a trained VideoFlow's bits go on stochastic shapes: the flow's log-determinant and, per level, the prior's
log-density in the latent cells the object covers against the background's.

    python benchmarks/shapes_bits.py --output_dir=runs/videoflow_shapes

Restores the latest checkpoint and scores frame --frame of the first --num_examples test clips given the frames
before it. A level's cell (i, j) covers a 2^(l+1) x 2^(l+1) block of pixels; it is an object cell when any pixel of
that block differs from the grey background in the scored frame. Bits are per dimension of the frame, so the
parts add up to the frame's bits per pixel: bpp = 8 - log_det_bits - sum over levels of the prior's log-density.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

import t2v  # noqa: F401  (before TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)
import tensorflow as tf

from t2v.models.likelihood import dequantize
from t2v.models.videoflow_prior import gaussian
from t2v.problems.stochastic_shapes import BACKGROUND
from t2v.trainer.restore import restore_run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--num_examples", type=int, default=32)
  parser.add_argument("--frame", type=int, default=1, help="the frame scored, given the frames before it")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  problem, model, config = restore_run(args.output_dir, args.data_dir)
  if config["model"] != "videoflow":
    raise SystemExit(f"{args.output_dir!r} holds a {config['model']} run; this tool reads VideoFlow's latents")
  if not 1 <= args.frame < problem.spec().num_frames:
    raise SystemExit(f"--frame={args.frame} must be in [1, {problem.spec().num_frames - 1}]")
  batch = next(iter(problem.dataset(problem.eval_split, batch_size=args.num_examples, training=False)))
  video = batch["video"][:, :args.frame + 1]  # [B, frame + 1, H, W, C]
  zs, hs, log_det = model.encode_latents(dequantize(video, tf.constant([args.seed, 0])) - 0.5)
  dims = model.num_dims * math.log(2.0)  # nats -> bits per dimension of the frame
  foreground = np.any(video.numpy()[:, -1].astype(np.int32) != BACKGROUND, axis=-1)  # [B, H, W]
  num_examples, height = foreground.shape[:2]
  result = {"checkpoint": config["checkpoint"], "num_examples": int(num_examples), "frame": args.frame,
            "bpp": float(tf.reduce_mean(model.log_prob_bpp({"video": video}, args.frame,
                                                           seed=tf.constant([args.seed, 0])))),
            "log_det_bits": float(tf.reduce_mean(log_det[:, -1]) / dims), "levels": []}
  if model.hparams.prior_shift_mixture and args.frame < model.hparams.num_context_latents:
    raise SystemExit(f"--frame={args.frame} is scored by the mixture of translations (prior_shift_mixture), which "
                     "has no per-cell bits: pick --frame >= num_context_latents="
                     f"{model.hparams.num_context_latents}")
  for level, prior in enumerate(model.priors):
    z = zs[level]  # [B, T, h, w, c]
    h = hs[level] if level < len(hs) else None
    state = prior.context_state(z[:, :-1], None if h is None else h[:, :-1])
    mu, log_sigma, _ = prior.params(state, None if h is None else h[:, -1], args.frame)
    target = z[:, -1]
    nll = -gaussian(mu, log_sigma).distribution.log_prob(target).numpy()  # per dimension: [B, h, w, c] nats
    cells = nll.shape[1]
    block = height // cells
    objects = foreground.reshape(num_examples, cells, block, cells, block).any(axis=(2, 4))  # [B, h, w]
    sigma = np.exp(log_sigma.numpy())
    residual = np.abs((target - mu).numpy())
    per_cell = nll.sum(-1)  # [B, h, w]
    result["levels"].append({
        "level": level, "latent_shape": list(nll.shape[1:]), "object_cell_fraction": float(objects.mean()),
        "prior_nll_bits": {"object_cells": float(per_cell[objects].sum() / num_examples / dims),
                           "background_cells": float(per_cell[~objects].sum() / num_examples / dims)},
        "sigma": {"object_cells": float(sigma[objects].mean()), "background_cells": float(sigma[~objects].mean())},
        "abs_residual": {"object_cells": float(residual[objects].mean()),
                         "background_cells": float(residual[~objects].mean())},
    })
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
