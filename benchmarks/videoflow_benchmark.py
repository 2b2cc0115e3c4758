"""VideoFlow speed and memory on this machine: training frames/s, achieved FLOP/s against the measured conv peak,
peak memory, time to the first step, and the time to sample 20 frames.

    python benchmarks/videoflow_benchmark.py --hparams_set=videoflow_cpu
    python benchmarks/videoflow_benchmark.py --hparams_set=videoflow_bair_qual --batch_size=4 --steps=3
    # plain Glow, 4 levels x 32 steps x 512 channels (the public PyTorch Glow configuration): VideoFlow's flow
    # with the pointwise prior, batch 2 x 2 frames = 4 images per step
    python benchmarks/videoflow_benchmark.py --hparams_set=videoflow_base --batch_size=2 --frame_size=32 \
        --hparams=num_levels=4,depth=32,hidden_channels=512,prior=pointwise,reversible_gradients=False --skip_sampling

Each configuration runs in its own process so that its peak resident memory is its own. FLOPs are counted
analytically from the architecture (multiply-adds of every convolution and 1x1 matrix product, x2), because
TensorFlow's graph profiler counts a `tf.while_loop` body once, not once per flow step; a training step is
taken as 3x the forward FLOPs (forward + backward w.r.t. activations and weights). The step time is the median of
`--steps` steps and the conv peak the best half-second window of a 4-second run (this machine is a shared VM whose
speed varies from run to run). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import t2v  # noqa: F401  (before TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)


def measure_conv_peak(seconds: float = 4.0, window: float = 0.5, dtype: str = "float32",
                      batch: int = 8, channels: int = 256) -> float:
  """FLOP/s of a large 3x3 convolution, the best the machine does on this model's dominant op.

  The best rate over `window`-second windows: on a shared virtual machine a single long average swings by 2x
  from run to run (measured here: 88 to 219 GFLOP/s), the best window much less. On a GPU, pass a larger
  batch and width (main does: 64 x 512) so that one call is not bound by its launch.
  """
  import tensorflow as tf
  x = tf.cast(tf.random.normal([batch, 32, 32, channels]), dtype)  # in the model's conv_dtype: its reachable bound
  w = tf.cast(tf.random.normal([3, 3, channels, channels]), dtype)
  conv = tf.function(lambda x: tf.nn.conv2d(x, w, 1, "SAME"))
  conv(x).numpy()
  flops = 2 * batch * 32 * 32 * 9 * channels * channels
  best, end = 0.0, time.perf_counter() + seconds
  while time.perf_counter() < end:
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < window:
      conv(x).numpy()
      runs += 1
    best = max(best, flops * runs / (time.perf_counter() - start))
  return best


def flow_forward_flops(hp, frame_shape) -> int:
  """FLOPs of the per-frame Glow on one frame: coupling networks and 1x1 convolutions."""
  height, width, channels = frame_shape
  total = 0
  c = channels
  for level in range(hp.num_levels):
    c *= 4
    pixels = (height // 2 ** (level + 1)) * (width // 2 ** (level + 1))
    pre = 2 * hp.hidden_channels if hp.coupling_activation == "gated" else hp.hidden_channels
    c_in = c - c // 2
    c_out = 2 * (c // 2) if hp.coupling == "affine" else c // 2
    per_step = 9 * c_in * pre + hp.hidden_channels * pre + 9 * hp.hidden_channels * c_out + c * c
    total += 2 * pixels * per_step * hp.depth
    if level < hp.num_levels - 1:
      c = c - c // 2
  return total


def prior_forward_flops(model) -> int:
  """FLOPs of every level's conditional prior for one frame (counted from the built layers' kernels).

  conv3d_net's time-causal kernels [kt, kh, kw, in, out] run on all K frames of the window, each tap that can see
  a frame of it (CausalConv3D skips the kt - min(kt, K) taps that would see only padding); its 2-D kernels
  (the h projection, the output conv) and every other kind's run once per frame.
  """
  total = 0
  for prior, (h, w, _) in zip(model.priors, model.glow.latent_shapes):
    k = prior.num_context
    for weight in prior.weights:
      if weight.path.endswith("kernel") and len(weight.shape) >= 4 and "first_frame" not in weight.path:
        shape = [int(size) for size in weight.shape]
        macs = 1
        for size in shape:
          macs *= size
        if len(shape) == 5:  # [kt, kh, kw, in, out] over the K frames, only the taps that see them
          macs = macs // shape[0] * min(shape[0], k) * k
        total += 2 * h * w * macs
  return total


def run_config(args) -> dict:
  import keras
  import tensorflow as tf

  from t2v import registry
  from t2v.hparams import override
  from t2v.problems.spec import VideoSpec
  from t2v.trainer import optimizer as optimizer_lib

  launch = time.perf_counter()
  hp = override(registry.hparams_set(args.hparams_set), args.hparams)
  if args.batch_size:
    hp = override(hp, {"batch_size": args.batch_size})
  size = args.frame_size
  spec = VideoSpec((size, size, args.channels), hp.num_cond_frames or 1, 1)
  model = registry.model("videoflow")(hp, spec)
  frames = model.num_train_frames
  rng = tf.random.Generator.from_seed(0)
  video = tf.cast(rng.uniform([hp.batch_size, frames, size, size, args.channels], 0, 256, tf.int32), tf.uint8)
  batch = {"video": video}
  model.initialize(batch)
  optimizer = keras.optimizers.Adam(hp.learning_rate)
  optimizer.build(model.trainable_variables)  # as the trainer does: slots created eagerly, one trace, not two

  @tf.function(jit_compile=args.xla, autograph=False)
  def train_step(batch):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer_lib.apply_adam(optimizer, zip(grads, model.trainable_weights), hp.learning_rate)  # the trainer's update
    return loss

  train_step(batch).numpy()
  first_step = time.perf_counter() - launch
  from t2v.trainer.lib import seconds_since_launch  # pylint: disable=import-outside-toplevel
  since_process_start = seconds_since_launch()
  step_times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    train_step(batch).numpy()
    step_times.append(time.perf_counter() - start)
  step_time = sorted(step_times)[len(step_times) // 2]  # the median: robust to a neighbour's burst on a shared VM
  num_frames = hp.batch_size * frames
  flops = 3 * (num_frames * flow_forward_flops(hp, spec.frame_shape)
               + hp.batch_size * (frames - model.num_cond_frames) * prior_forward_flops(model))
  sample_time = None
  if not args.skip_sampling:
    context = video[:1, :model.num_cond_frames]
    model.sample({"video": context}, 2, 0.5).numpy()  # trace
    start = time.perf_counter()
    model.sample({"video": context}, 20, 0.5).numpy()
    sample_time = round(time.perf_counter() - start, 2)
  return {
      "hparams_set": args.hparams_set, "hparams": args.hparams, "conv_dtype": hp.conv_dtype, "frame_size": size,
      "batch_size": hp.batch_size,
      "frames_per_example": frames, "xla": args.xla, "seconds_to_first_step": round(first_step, 2),
      "seconds_from_process_start_to_first_step": round(since_process_start, 2),
      "step_seconds": round(step_time, 4), "step_seconds_min_mean_max": [
          round(min(step_times), 4), round(sum(step_times) / len(step_times), 4), round(max(step_times), 4)],
      "train_frames_per_second": round(num_frames / step_time, 2),
      "train_step_gflop": round(flops / 1e9, 2), "achieved_gflops": round(flops / step_time / 1e9, 2),
      "sample_20_frames_seconds": sample_time,
      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      # on a GPU the step's memory is the device allocator's peak, not the process's resident memory
      "peak_gpu_mib": (round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20, 1)
                       if tf.config.list_physical_devices("GPU") else None),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--hparams_set", default="videoflow_cpu")
  parser.add_argument("--hparams", default="")
  parser.add_argument("--batch_size", type=int, default=0, help="0: the preset's")
  parser.add_argument("--frame_size", type=int, default=64)
  parser.add_argument("--channels", type=int, default=3)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--xla", action="store_true", help="jit_compile the training step")
  parser.add_argument("--skip_sampling", action="store_true", help="measure training only")
  args = parser.parse_args()
  result = run_config(args)
  import tensorflow as tf
  gpus = tf.config.list_physical_devices("GPU")
  peak = measure_conv_peak(dtype=result["conv_dtype"], **({"batch": 64, "channels": 512} if gpus else {}))
  result["conv_peak_gflops"] = round(peak / 1e9, 2)
  result["fraction_of_conv_peak"] = round(result["achieved_gflops"] * 1e9 / peak, 3)
  result["device"] = f"{len(gpus)} GPU" if gpus else f"CPU, {os.cpu_count()} cores"
  print(json.dumps(result))


if __name__ == "__main__":
  main()
