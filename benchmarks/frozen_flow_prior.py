"""Can a trained VideoFlow's prior learn more of the dynamics when its flow is held fixed?

    python benchmarks/frozen_flow_prior.py --output_dir=runs/videoflow_shapes --steps=2500

Restores the latest checkpoint, encodes --num_train training clips once with the flow (a seeded dequantisation),
and then trains the priors alone on those latents (Adam, teacher forcing, every frame after the problem's
conditioning frames scored, the flow untouched). Every --eval_every steps it scores --num_examples test clips
and prints, per predicted frame, the priors' log-density in bits per dimension of the frame (summed over levels,
and per level; so a frame's bpp = 8 - log-det bits + these bits), and the flow's log-det bits of the test clips
encoded afresh (unchanged from step to step: the flow is not trained). On stochastic shapes the first predicted frame
carries the 8-way choice of direction and the later ones are determined by the context: a prior that learns to
continue the motion lowers the later frames' bits below the first's, one that only fits appearance lowers all
of them alike. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import t2v  # noqa: F401  (before TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)
import keras
import tensorflow as tf

from t2v.models.likelihood import dequantize
from t2v.trainer.restore import restore_run

_CENTRE = 0.5  # VideoFlow's flow sees y - 1/2 (t2v/models/videoflow.py)
# Clips per encoding batch. With the same seed for every batch, the test clips get exactly the dequantisation
# noise that shapes_quality.py and the model's own log_prob_bpp give them, so step 0 reproduces its bpp.
_ENCODE_BATCH = 50
_CLIP_NORM = 50.0  # the global gradient-norm clip of the VideoFlow presets (hparams clip_grad_norm)


def _encode(encode, problem, split: str, num_examples: int):
  """Per-level latents zs [N, T, h, w, c], their h [N, T, h, w, cond] and the log-dets [N, T] of N clips, by
  `encode` (video -> the model's encode_latents of it)."""
  parts = []
  for batch in problem.dataset(split, batch_size=_ENCODE_BATCH, training=False).take(
      -(-num_examples // _ENCODE_BATCH)):
    zs, hs, log_det = encode(batch["video"])
    parts.append(([z.numpy() for z in zs], [h.numpy() for h in hs], log_det.numpy()))
  zs = [np.concatenate([p[0][i] for p in parts])[:num_examples] for i in range(len(parts[0][0]))]
  hs = [np.concatenate([p[1][i] for p in parts])[:num_examples] for i in range(len(parts[0][1]))]
  return zs, hs, np.concatenate([p[2] for p in parts])[:num_examples]


def trained_variables(model, first: int) -> list:
  """The variables of the priors that score frames first .. T-1: each conditional prior's, and a level's
  unconditional (first-frame) prior's only where it scores one of them (frames before min_context use it:
  K >= 2 without pad_context). The flow's variables are never among them."""
  variables = []
  for prior in model.priors:
    scores_first_frames = prior.min_context > first
    variables += [v for v in prior.trainable_variables
                  if scores_first_frames or "first_frame_prior" not in v.path]
  return variables


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--num_train", type=int, default=2000, help="training clips encoded once")
  parser.add_argument("--num_examples", type=int, default=200, help="test clips scored")
  parser.add_argument("--steps", type=int, default=2500)
  parser.add_argument("--eval_every", type=int, default=500)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  problem, model, config = restore_run(args.output_dir, args.data_dir)
  if config["model"] != "videoflow":
    raise SystemExit(f"{args.output_dir!r} holds a {config['model']} run; this tool trains VideoFlow's priors")
  for flag in ("num_train", "num_examples", "eval_every", "batch_size"):
    if getattr(args, flag) < 1:
      raise SystemExit(f"--{flag}={getattr(args, flag)} must be >= 1")
  if args.steps < 0:
    raise SystemExit(f"--steps={args.steps} must be >= 0")
  if args.batch_size > args.num_train:
    raise SystemExit(f"--batch_size={args.batch_size} must be <= --num_train={args.num_train}")
  first = problem.spec().num_input_frames
  start = time.perf_counter()
  encode = tf.function(lambda video: model.encode_latents(dequantize(video, tf.constant([args.seed, 0])) - _CENTRE))
  train_zs, train_hs, _ = _encode(encode, problem, "train", args.num_train)
  if len(train_zs[0]) < args.num_train:
    raise SystemExit(f"--num_train={args.num_train}: the train split has only {len(train_zs[0])} clips; ask for "
                     "fewer")
  dims = model.num_dims * math.log(2.0)  # nats -> bits per dimension of the frame

  def prior_bits(zs, hs):
    """Per level, -log p(z_t | z_<t, h_t) in bits per frame dimension: [B, T - first] each."""
    return [-prior.sequence_log_prob(zs[level], hs[level] if level < len(hs) else None, first) / dims
            for level, prior in enumerate(model.priors)]

  variables = trained_variables(model, first)
  optimizer = keras.optimizers.Adam(args.learning_rate)

  @tf.function(autograph=False)
  def train_step(zs, hs):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.add_n(prior_bits(zs, hs)))
    grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), _CLIP_NORM)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  evaluate = tf.function(prior_bits, autograph=False)
  result = {"checkpoint": config["checkpoint"], "num_train": args.num_train, "learning_rate": args.learning_rate,
            "batch_size": args.batch_size, "evaluations": []}

  def record(step):
    # the test clips encoded afresh, so that a flow that changed would show in its log-det
    test_zs, test_hs, test_log_det = _encode(encode, problem, problem.eval_split, args.num_examples)
    result["num_examples"] = len(test_log_det)
    log_det_bits = test_log_det[:, first:] / dims  # [N, T - first]
    levels = [bits.numpy() for bits in evaluate(test_zs, test_hs)]  # each [N, T - first]
    total = sum(levels)
    result["evaluations"].append({
        "step": step, "prior_bits_per_frame": total.mean(0).round(4).tolist(),
        "bpp_per_frame": (8.0 - log_det_bits + total).mean(0).round(4).tolist(),
        "log_det_bits_per_frame": log_det_bits.mean(0).round(4).tolist(),
        "prior_bits_per_level_per_frame": [bits.mean(0).round(4).tolist() for bits in levels]})

  record(0)
  rng = np.random.default_rng(args.seed)
  for step in range(1, args.steps + 1):
    index = np.sort(rng.choice(args.num_train, args.batch_size, replace=False))
    train_step([z[index] for z in train_zs], [h[index] for h in train_hs])
    if step % args.eval_every == 0 or step == args.steps:
      record(step)
  result["seconds"] = round(time.perf_counter() - start, 1)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
