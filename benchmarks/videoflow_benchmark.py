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

The conv peak is what one large convolution reaches; a model's own convolutions are narrower or smaller and reach
less. So the script also times the step's convolutions alone at their own shapes (`conv_shape_bound_seconds`:
forward, input and filter gradients of each, in a `tf.while_loop` as the flow runs them) and reports
`shape_bound_fraction_of_conv_peak`, the most that a step could reach with no other work, and
`fraction_of_shape_bound`, how much of the step is its convolutions.
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


def conv_workload(hp, model, frame_shape, frames: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
  """The convolutions of one training step's forward pass: (calls, n, h, w, kh, kw, in, out) per entry, one call
  being a convolution of [n, h, w, in] with a [kh, kw, in, out] kernel.

  The per-frame Glow runs on all batch x frames frames at once, `depth` sequential calls per level of each of its
  coupling network's three convolutions and the 1x1 invertible convolution (a matrix product in the model). Each
  prior's kernels are read from the built layers: a time-causal kernel [kt, kh, kw, in, out] is one 2-D call per
  tap that can see a frame of the K-frame window (CausalConv3D skips the kt - min(kt, K) taps that would see only
  padding), over the K frames of every predicted frame's window; a 2-D kernel (the h projection, the output conv)
  and every other kind's run once per predicted frame. Dilation is left out (a dilated call is timed undilated).
  """
  batch = hp.batch_size
  height, width, channels = frame_shape
  workload = []
  c = channels
  for level in range(hp.num_levels):
    c *= 4
    h, w = height // 2 ** (level + 1), width // 2 ** (level + 1)
    pre = 2 * hp.hidden_channels if hp.coupling_activation == "gated" else hp.hidden_channels
    c_in = c - c // 2
    c_out = 2 * (c // 2) if hp.coupling == "affine" else c // 2
    n = batch * frames
    workload += [(hp.depth, n, h, w, 3, 3, c_in, pre), (hp.depth, n, h, w, 1, 1, hp.hidden_channels, pre),
                 (hp.depth, n, h, w, 3, 3, hp.hidden_channels, c_out), (hp.depth, n, h, w, 1, 1, c, c)]
    if level < hp.num_levels - 1:
      c = c - c // 2
  predicted = batch * (frames - model.num_cond_frames)
  for prior, (h, w, _) in zip(model.priors, model.glow.latent_shapes):
    k = prior.num_context
    for weight in prior.weights:
      if weight.path.endswith("kernel") and len(weight.shape) >= 4 and "first_frame" not in weight.path:
        shape = [int(size) for size in weight.shape]
        if len(shape) == 5:  # [kt, kh, kw, in, out] over the K frames, only the taps that see them
          workload.append((min(shape[0], k), predicted * k, h, w, *shape[1:]))
        else:
          workload.append((1, predicted, h, w, *shape))
  return workload


def forward_flops(workload) -> int:
  """Multiply-adds x 2 of every convolution in the workload."""
  return sum(2 * calls * n * h * w * kh * kw * c_in * c_out for calls, n, h, w, kh, kw, c_in, c_out in workload)


def time_conv_workload(workload, dtype: str = "float32", samples: int = 5, max_loop: int = 8) -> float:
  """Seconds that the workload's convolutions take alone on this machine: forward, input gradient and filter
  gradient of each call, the best of `samples` runs of a `tf.while_loop` over min(calls, max_loop) of them (as the
  flow loops over its steps), scaled to the workload's calls. This is the bound that the model's convolution
  shapes put on a training step: narrow or small convolutions run far below the large-convolution peak."""
  import tensorflow as tf
  total = 0.0
  timed = {}
  for calls, *shape in workload:
    key = tuple(shape)
    if key not in timed:
      n, h, w, kh, kw, c_in, c_out = shape
      x = tf.cast(tf.random.normal([n, h, w, c_in]), dtype)
      kernel = tf.cast(tf.random.normal([kh, kw, c_in, c_out]) * 0.05, dtype)
      dy = tf.cast(tf.random.normal([n, h, w, c_out]), dtype)
      reps = min(calls, max_loop)

      def body(i, acc, x=x, kernel=kernel, dy=dy):
        y = tf.nn.conv2d(x, kernel, 1, "SAME")
        dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                                            strides=[1, 1, 1, 1], padding="SAME")
        dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                             strides=[1, 1, 1, 1], padding="SAME")
        # one element of each result keeps all three alive without adding work of their size
        return i + 1, acc + tf.cast(y[0, 0, 0, 0] + dx[0, 0, 0, 0] + dk[0, 0, 0, 0], tf.float32)

      loop = tf.function(lambda reps=reps, body=body: tf.while_loop(
          lambda i, acc: i < reps, body, (tf.constant(0), tf.constant(0.0)))[1], autograph=False)
      start = time.perf_counter()
      loop().numpy()  # trace, and oneDNN's first run of the shape
      best = float("inf")
      for _ in range(samples if time.perf_counter() - start < 2.0 else 2):  # fewer runs of a long loop
        start = time.perf_counter()
        loop().numpy()
        best = min(best, (time.perf_counter() - start) / reps)
      timed[key] = best
    total += calls * timed[key]
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
  workload = conv_workload(hp, model, spec.frame_shape, frames)
  flops = 3 * forward_flops(workload)
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
      "sample_20_frames_seconds": sample_time, "conv_workload": workload,
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
  parser.add_argument("--skip_shape_bound", action="store_true",
                      help="do not time the step's convolutions alone at their own shapes")
  args = parser.parse_args()
  result = run_config(args)
  import tensorflow as tf
  gpus = tf.config.list_physical_devices("GPU")
  peak = measure_conv_peak(dtype=result["conv_dtype"], **({"batch": 64, "channels": 512} if gpus else {}))
  result["conv_peak_gflops"] = round(peak / 1e9, 2)
  result["fraction_of_conv_peak"] = round(result["achieved_gflops"] * 1e9 / peak, 3)
  if not args.skip_shape_bound:
    bound = time_conv_workload(result.pop("conv_workload"), result["conv_dtype"])
    result["conv_shape_bound_seconds"] = round(bound, 4)  # the step's convolutions alone, at their own shapes
    result["shape_bound_fraction_of_conv_peak"] = round(result["train_step_gflop"] / bound / peak * 1e9, 3)
    result["fraction_of_shape_bound"] = round(bound / result["step_seconds"], 3)
  else:
    result.pop("conv_workload")
  result["device"] = f"{len(gpus)} GPU" if gpus else f"CPU, {os.cpu_count()} cores"
  print(json.dumps(result))


if __name__ == "__main__":
  main()
