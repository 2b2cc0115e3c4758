"""Can VideoFlow's latent prior learn to continue a motion when its "latents" are the pixels themselves?

    python benchmarks/pixel_prior.py --loss=nll --steps=1000

An identity flow: stochastic-shapes clips (32x32, centred start, 2 px/frame, 5 frames, as the `small_centred`
config; --diagonals=grid moves diagonals by (+-2, +-2) px, the VideoFlow authors' generator's (+-1, +-1) steps,
so that every move is a whole-cell translation) are dequantised, centred, squeezed 2x2 (16x16x12: the cells of
VideoFlow's lowest level) and multiplied by --scale (the data-dependent actnorm brings the real latents to about
unit variance; at pixel scale the prior's sigma floor, e^-5, would dominate the bits). One `LatentPrior`
(conv3d_net, top-level style: no h) with K = --num_context past latents and `pad_context` is trained on them
with Adam, frames 1-4 scored given frame 0. Every --eval_every steps it prints, on held-out clips:
  bits_per_frame   -log p(z_t | z_<t) in bits per pixel dimension, per predicted frame (relative: add 8 and the
                   scale's log-det for a bpp). Frame 1 carries the 8-way choice of direction; frames 2-4 are
                   determined by the context, so a prior that continues the motion makes them much cheaper;
  mse_mu           the squared error of the prior's mean (T = 0) for frames 2-4 given the true earlier frames;
  mse_copy_prev    the same for "the next frame equals the last one" (what the temporal skip starts from).
--loss picks the training signal: nll (the exact likelihood, as VideoFlow trains), beta (the same loss, the
mean's gradient scaled by stop_gradient(sigma^(2 --beta)): `prior_mean_gradient_beta=--beta`), mse (the mean alone, by squared
error; sigma untrained), beta_then_nll (beta for the first half of the steps, then nll), nll_mse (nll plus
--mse_weight times the mean's squared error per dimension; the model's `prior_mean_error_weight` divides the
error by the copy baseline's instead, because the flow's latents change scale, which pixels do not).
--skip_kernel=k gives the prior the motion-compensated skip (`latent_skip_kernel=k`); frame 1's zero-padded
window then keeps the paper's skip unless --advect_padded (`latent_skip_kernel_padded`; session 15's figures were
measured with it). Prints JSON lines.
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

from t2v.models.videoflow_hparams import videoflow_cpu_multiscale
from t2v.models.videoflow_prior import LatentPrior
from t2v.problems import stochastic_shapes

_CONFIG = stochastic_shapes.CONFIGS["small_centred"]  # the clips' geometry: frame size, length, sizes, speed
FRAME_SIZE = _CONFIG.frame_size
NUM_FRAMES = _CONFIG.num_frames
SPEED = float(_CONFIG.speed)  # px/frame
SIZES = tuple(_CONFIG.sizes)
SQUEEZE = 2  # cells of VideoFlow's lowest level: 2x2 pixels
LOSSES = ("nll", "beta", "mse", "beta_then_nll", "nll_mse")
_CLIP_NORM = videoflow_cpu_multiscale().clip_grad_norm  # the prior's size and clipping are videoflow_cpu_multiscale's


def step_vector(direction: int, diagonals: str) -> np.ndarray:
  """(dy, dx) per frame in pixels: the dataset's unit vector times SPEED, or with --diagonals=grid the sign of
  each component times SPEED (whole pixels: the VideoFlow authors' (+-1, +-1) diagonal steps)."""
  return SPEED * stochastic_shapes.direction_vectors(grid_diagonals=diagonals == "grid")[direction]


def make_clips(num: int, seed: int, diagonals: str) -> np.ndarray:
  """uint8 [num, NUM_FRAMES, 32, 32, 3] clips of one shape moving from the frame centre."""
  rng = np.random.default_rng(seed)
  colors = list(stochastic_shapes.COLORS.values())
  clips = []
  for _ in range(num):
    step = step_vector(int(rng.integers(8)), diagonals)
    positions = np.full(2, FRAME_SIZE / 2.0)[None] + np.arange(NUM_FRAMES)[:, None] * step[None]  # [T, 2]
    # (centred: the config's start_jitter is 0)
    mask = stochastic_shapes.shape_mask(int(rng.integers(len(stochastic_shapes.SHAPES))),
                                        int(rng.choice(SIZES)), positions.astype(np.float32), FRAME_SIZE)
    color = np.asarray(colors[rng.integers(len(colors))], np.uint8)
    clips.append(np.where(mask[..., None], color, np.uint8(stochastic_shapes.BACKGROUND)))  # [T, H, W, 3]
  return np.stack(clips)


def to_latents(clips: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
  """Dequantised, centred, squeezed and scaled clips: float32 [N, T, 16, 16, 12]."""
  y = (clips.astype(np.float32) + rng.uniform(size=clips.shape)) / 256.0 - 0.5
  n, t, h, w, c = y.shape
  s = SQUEEZE
  y = y.reshape(n, t, h // s, s, w // s, s, c).transpose(0, 1, 2, 4, 3, 5, 6)  # [N, T, h, w, s, s, c]
  return (scale * y.reshape(n, t, h // s, w // s, s * s * c)).astype(np.float32)  # [N, T, h, w, 4c]


def run(steps: int, loss: str = "nll", diagonals: str = "grid", width: int = 32, depth: int = 1,
        num_context: int = 2, scale: float = 16.0, beta: float = 1.0, mse_weight: float = 1.0,
        skip_kernel: int = 0, advect_padded: bool = False, num_train: int = 4000, num_test: int = 400, batch_size: int = 32,
        learning_rate: float = 1e-3, eval_every: int = 250, seed: int = 0, log=print):
  """Trains the prior and returns the list of evaluations (each also passed to `log` as a JSON line)."""
  if loss not in LOSSES or diagonals not in ("unit", "grid"):
    raise ValueError(f"loss={loss!r} must be one of {LOSSES} and diagonals={diagonals!r} 'unit' or 'grid'")
  keras.utils.set_random_seed(seed)  # the prior's initial weights
  train = make_clips(num_train, seed, diagonals)
  z_test = to_latents(make_clips(num_test, seed + 1, diagonals), np.random.default_rng(seed + 2), scale)
  prior = LatentPrior(z_test.shape[2:], 0, "conv3d_net", num_context, depth, width, pad_context=True,
                      skip_kernel=skip_kernel, advect_padded=advect_padded, name="prior")
  prior.create_variables()
  optimizer = keras.optimizers.Adam(learning_rate)
  dims = FRAME_SIZE * FRAME_SIZE * 3 * math.log(2.0)  # nats -> bits per pixel dimension
  variables = prior.trainable_variables

  def teacher_forced_params(z, first):
    """(mu, log_sigma) [N, T - first, h, w, c] of frames first .. T-1 from the true earlier frames."""
    parts = prior.sequence_params(z, None, first)  # frames first ..: [(z_t [N, n, ...], mu, log_sigma [N*n, ...])]
    unfold = lambda x, target: tf.reshape(x, tf.shape(target))  # [N*n, h, w, c] -> [N, n, h, w, c]
    return (tf.concat([unfold(mu, target) for target, mu, _ in parts], 1),
            tf.concat([unfold(log_sigma, target) for target, _, log_sigma in parts], 1))

  def objective(kind, z):
    mu, log_sigma = teacher_forced_params(z, 1)
    squared_error = tf.reduce_mean((mu - z[:, 1:]) ** 2)
    if kind == "mse":
      return squared_error
    if kind == "beta":
      # the exact loss, the mean's gradient scaled by sigma^(2 beta) (z has no gradient, so the whole mean's
      # gradient is the mean change's, as with prior_mean_gradient_beta=beta)
      weight = tf.stop_gradient(tf.exp(2.0 * beta * log_sigma))
      mu = tf.stop_gradient(mu) + (mu - tf.stop_gradient(mu)) * weight
    nll = 0.5 * ((z[:, 1:] - mu) / tf.exp(log_sigma)) ** 2 + log_sigma + 0.5 * math.log(2.0 * math.pi)
    nll = tf.reduce_mean(tf.reduce_sum(nll, [2, 3, 4])) / dims
    return nll + mse_weight * squared_error if kind == "nll_mse" else nll

  def make_step(kind):
    @tf.function(autograph=False)
    def train_step(z):
      with tf.GradientTape() as tape:
        value = objective(kind, z)
      grads, _ = tf.clip_by_global_norm(tape.gradient(value, variables), _CLIP_NORM)
      optimizer.apply_gradients(zip(grads, variables))
      return value
    return train_step

  train_steps = {kind: make_step(kind) for kind in ({"beta", "nll"} if loss == "beta_then_nll" else {loss})}
  bits = tf.function(lambda z: -prior.sequence_log_prob(z, None, 1) / dims, autograph=False)
  means = tf.function(lambda z: teacher_forced_params(z, 2)[0], autograph=False)
  copy_error = float(((z_test[:, 1:-1] - z_test[:, 2:]) ** 2).mean())
  rng = np.random.default_rng(seed + 3)
  evaluations, start = [], time.perf_counter()

  def evaluate(step):
    record = {"step": step, "seconds": round(time.perf_counter() - start, 1),
              "bits_per_frame": bits(z_test).numpy().mean(0).round(4).tolist(),
              "mse_mu": round(float(((means(z_test).numpy() - z_test[:, 2:]) ** 2).mean()), 4),
              "mse_copy_prev": round(copy_error, 4)}
    evaluations.append(record)
    log(json.dumps(record))

  evaluate(0)
  for step in range(1, steps + 1):
    kind = loss if loss != "beta_then_nll" else ("beta" if step <= steps // 2 else "nll")
    index = rng.choice(num_train, batch_size, replace=False)
    train_steps[kind](to_latents(train[index], rng, scale))
    if step % eval_every == 0 or step == steps:
      evaluate(step)
  return evaluations


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--loss", choices=LOSSES, default="nll")
  parser.add_argument("--diagonals", choices=("unit", "grid"), default="grid")
  parser.add_argument("--width", type=int, default=32, help="prior_width (videoflow_cpu_multiscale: 32)")
  parser.add_argument("--depth", type=int, default=1, help="prior_depth (videoflow_cpu_multiscale: 1)")
  parser.add_argument("--num_context", type=int, default=2)
  parser.add_argument("--scale", type=float, default=16.0)
  parser.add_argument("--beta", type=float, default=1.0, help="b of --loss=beta and beta_then_nll")
  parser.add_argument("--mse_weight", type=float, default=1.0, help="the squared error's weight in nll_mse")
  parser.add_argument("--skip_kernel", type=int, default=0,
                      help="latent_skip_kernel: 0 the paper's skip, odd k the motion-compensated skip")
  parser.add_argument("--advect_padded", action="store_true",
                      help="with --skip_kernel, frame 1's zero-padded window advects too (latent_skip_kernel_padded)")
  parser.add_argument("--eval_every", type=int, default=250)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  for flag in ("steps", "width", "depth", "num_context", "eval_every"):
    if getattr(args, flag) < (0 if flag == "steps" else 1):
      raise SystemExit(f"--{flag}={getattr(args, flag)} is out of range")
  if not args.beta >= 0:
    raise SystemExit(f"--beta={args.beta} must be >= 0")
  if not 0 <= args.mse_weight < math.inf:
    raise SystemExit(f"--mse_weight={args.mse_weight} must be a finite number >= 0")
  run(args.steps, args.loss, args.diagonals, args.width, args.depth, args.num_context, args.scale, args.beta,
      args.mse_weight, args.skip_kernel, args.advect_padded, eval_every=args.eval_every, seed=args.seed)


if __name__ == "__main__":
  main()
