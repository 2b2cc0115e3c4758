"""Memory and time of a VideoFlow training step against flow depth, with and without reversible gradients.

    python benchmarks/flow_memory_benchmark.py      # all three tables (defaults: videoflow_cpu_multiscale at 32x32,
                                                    # batch 8, 2-frame windows)
    python benchmarks/flow_memory_benchmark.py --depths=4,8 --time_rounds=0 --budget_mib=0     # memory only
    python benchmarks/flow_memory_benchmark.py --hparams_set=videoflow_shapes --frame_size=64 --batch_size=4

Table 1, memory: K = 4, 8, 16, 32 steps per level (`depth`, every level), `reversible_gradients` off and on, each
configuration in a fresh process (one's memory cannot leak into the next's figures):
  step MiB   the training step's own working memory: the peak of TensorFlow's allocator over the steps minus what
             it held before them (weights, optimizer slots, the batch). On a CPU the allocator is made a BFC
             allocator (TF_CPU_ALLOCATOR_USE_BFC=true) so that `tf.config.experimental.get_memory_info` reports a
             peak; on a GPU it is the GPU's own.
  RSS MiB    the process's peak resident memory (`resource.getrusage` maxrss): everything, the TF runtime, traced
             graphs and weights included.
  growth     step MiB at the largest K over step MiB at the smallest.

Table 2, time: for each K one process builds both models with the same weights and alternates their training
steps for --time_rounds rounds, so that both see the same load on a shared machine; it reports the median wall
time and the median CPU time (all threads) per step, and reversible over plain.

Table 3, frames at a fixed memory budget (--budget_mib > 0): at depth --frames_depth, the largest
num_train_frames (frames per training window; frames per step = batch_size x num_train_frames) whose step MiB
fits the budget, per mode: doubling, then bisection, one process per probe.

The training step is `videoflow_benchmark.py`'s: Adam on the model's `compute_loss` under `tf.function`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import t2v  # noqa: F401  (before TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- in a child process ------------------------------------------------------------------------------------

def _build(config: dict, reversible: bool, weights=None):
  """(train_step, batch, model) of VideoFlow with `config`'s overrides, initialised (or given `weights`)."""
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  from t2v import registry  # pylint: disable=import-outside-toplevel
  from t2v.hparams import override  # pylint: disable=import-outside-toplevel
  from t2v.problems.spec import VideoSpec  # pylint: disable=import-outside-toplevel
  from t2v.trainer import optimizer as optimizer_lib  # pylint: disable=import-outside-toplevel

  hp = override(registry.hparams_set(config["hparams_set"]), {
      "depth": config["depth"], "reversible_gradients": reversible, "batch_size": config["batch_size"],
      "num_train_frames": config["num_train_frames"]})
  size, channels = config["frame_size"], config["channels"]
  model = registry.model("videoflow")(hp, VideoSpec((size, size, channels), hp.num_cond_frames or 1, 1))
  rng = np.random.default_rng(0)
  video = tf.constant(rng.integers(0, 256, (hp.batch_size, hp.num_train_frames, size, size, channels)), tf.uint8)
  if weights is None:
    model.initialize({"video": video[:, :2]})  # data-dependent init: the same 2 frames whatever the window length
  else:
    model.set_weights(weights)
  optimizer = keras.optimizers.Adam(hp.learning_rate)
  optimizer.build(model.trainable_variables)

  @tf.function(autograph=False)
  def train_step(batch):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer_lib.apply_adam(optimizer, zip(grads, model.trainable_variables), hp.learning_rate)  # as the trainer
    return loss

  return train_step, {"video": video, "seed": tf.constant([1, 2])}, model


def memory_config(config: dict) -> dict:
  """One mode: the step's peak allocator memory above what was resident before it, and the peak RSS."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  train_step, batch, model = _build(config, config["reversible"])
  device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
  resident = tf.config.experimental.get_memory_info(device)["current"]
  tf.config.experimental.reset_memory_stats(device)
  for _ in range(config["steps"]):
    train_step(batch).numpy()
  peak = tf.config.experimental.get_memory_info(device)["peak"]
  mib = 1024 * 1024
  return {**config, "device": device, "step_mib": round((peak - resident) / mib, 1),
          "resident_mib": round(resident / mib, 1),
          "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "num_weights": int(sum(np.prod(v.shape) for v in model.trainable_variables))}


def time_config(config: dict) -> dict:
  """Both modes in one process, same weights, steps alternated: median wall and CPU seconds per step."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  plain, batch, model = _build(config, False)
  reversible, _, _ = _build(config, True, weights=model.get_weights())
  steps = {"plain": plain, "reversible": reversible}
  for step in steps.values():
    step(batch).numpy()  # traces
  wall, cpu = {name: [] for name in steps}, {name: [] for name in steps}
  for _ in range(config["rounds"]):
    for name, step in steps.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      step(batch).numpy()
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - cpu_start)
  median = lambda values: round(float(np.median(values)), 4)
  return {**config, **{f"{name}_seconds": median(wall[name]) for name in steps},
          **{f"{name}_cpu_seconds": median(cpu[name]) for name in steps}}


def measure(kind: str, config: dict, timeout: float) -> dict:
  """`memory_config` or `time_config` in a fresh Python process (its own allocator and peak RSS)."""
  env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  try:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), f"--{kind}_child", json.dumps(config)],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    row = {**config, "error": f"timed out after {timeout:.0f} s"}
  else:
    if done.returncode == 0:
      row = json.loads(done.stdout.strip().splitlines()[-1])
    else:
      tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
      row = {**config, "error": f"exit {done.returncode}: {tail[0][:200]}"}
  print(json.dumps(row), file=sys.stderr, flush=True)
  return row


# ---- the tables --------------------------------------------------------------------------------------------

def _config(args, depth: int, frames: int, **extra) -> dict:
  return {"hparams_set": args.hparams_set, "frame_size": args.frame_size, "channels": args.channels,
          "batch_size": args.batch_size, "num_train_frames": frames, "depth": depth, **extra}


def memory_table(args) -> None:
  rows = [measure("memory", _config(args, depth, args.num_train_frames, reversible=reversible, steps=2),
                  args.timeout)
          for depth in args.depths for reversible in (False, True)]
  print(f"\nTable 1, memory: {args.hparams_set}, {args.frame_size}x{args.frame_size}x{args.channels}, batch "
        f"{args.batch_size} x {args.num_train_frames} frames, {rows[0].get('device', '?')}")
  print(f"{'K':>3} {'reversible':>10} {'step MiB':>9} {'RSS MiB':>8} {'weights':>9}")
  for row in rows:
    if "error" in row:
      print(f"{row['depth']:>3} {str(row['reversible']):>10}  {row['error']}")
    else:
      print(f"{row['depth']:>3} {str(row['reversible']):>10} {row['step_mib']:>9.1f} {row['rss_mib']:>8.0f} "
            f"{row['num_weights']:>9}")
  ok = [row for row in rows if "error" not in row]
  for reversible in (False, True):
    mode = [row for row in ok if row["reversible"] == reversible]
    if len(mode) >= 2:
      low, high = min(mode, key=lambda r: r["depth"]), max(mode, key=lambda r: r["depth"])
      print(f"growth K={low['depth']} -> K={high['depth']}, reversible={reversible}: step MiB "
            f"{high['step_mib'] / low['step_mib']:.2f}x, RSS {high['rss_mib'] / low['rss_mib']:.2f}x")


def time_table(args) -> None:
  rows = [measure("time", _config(args, depth, args.num_train_frames, rounds=args.time_rounds), args.timeout)
          for depth in args.depths]
  print(f"\nTable 2, time per training step (median of {args.time_rounds} alternated steps per mode)")
  print(f"{'K':>3} {'plain s':>8} {'rev s':>8} {'ratio':>6} {'plain CPU s':>12} {'rev CPU s':>10} {'ratio':>6}")
  for row in rows:
    if "error" in row:
      print(f"{row['depth']:>3}  {row['error']}")
      continue
    print(f"{row['depth']:>3} {row['plain_seconds']:>8.3f} {row['reversible_seconds']:>8.3f} "
          f"{row['reversible_seconds'] / row['plain_seconds']:>5.2f}x {row['plain_cpu_seconds']:>12.3f} "
          f"{row['reversible_cpu_seconds']:>10.3f} {row['reversible_cpu_seconds'] / row['plain_cpu_seconds']:>5.2f}x")


def frames_table(args) -> None:
  print(f"\nTable 3: the largest num_train_frames whose step MiB <= {args.budget_mib:g} at K={args.frames_depth} "
        f"(batch {args.batch_size}; frames per step = batch x num_train_frames)")
  print(f"{'reversible':>10} {'frames':>6} {'step MiB':>9} {'next tried':>10} {'its MiB':>8}")
  for reversible in (False, True):
    probe = lambda frames, rev=reversible: measure(
        "memory", _config(args, args.frames_depth, frames, reversible=rev, steps=1), args.timeout)
    fits = lambda row: "error" not in row and row["step_mib"] <= args.budget_mib
    best, failed = None, None
    frames = 2  # the least VideoFlow trains on: one conditioning frame and one target
    while frames <= args.max_frames:
      row = probe(frames)
      if not fits(row):
        failed = row
        break
      best, frames = row, frames * 2
    if best is not None and failed is not None:  # bisect between the last fit and the first miss
      low, high = best["num_train_frames"], failed["num_train_frames"]
      while high - low > 1:
        row = probe((low + high) // 2)
        if fits(row):
          best, low = row, row["num_train_frames"]
        else:
          failed, high = row, row["num_train_frames"]
    shown = lambda row: f"{row['step_mib']:.1f}" if row and "error" not in row else (row or {}).get("error", "-")
    print(f"{str(reversible):>10} {best['num_train_frames'] if best else 'none':>6} {shown(best):>9} "
          f"{failed['num_train_frames'] if failed else '-':>10} {shown(failed):>8}"
          + ("" if failed else f"   (stopped at --max_frames={args.max_frames})"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--memory_child", help=argparse.SUPPRESS)
  parser.add_argument("--time_child", help=argparse.SUPPRESS)
  parser.add_argument("--hparams_set", default="videoflow_cpu_multiscale")
  parser.add_argument("--frame_size", type=int, default=32)
  parser.add_argument("--channels", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--num_train_frames", type=int, default=2, help="frames per window in tables 1 and 2")
  parser.add_argument("--depths", default="4,8,16,32", help="K values of tables 1 and 2 (comma-separated)")
  parser.add_argument("--time_rounds", type=int, default=10, help="table 2's steps per mode; 0 skips table 2")
  parser.add_argument("--budget_mib", type=float, default=256.0, help="table 3's budget; 0 skips table 3")
  parser.add_argument("--frames_depth", type=int, default=16, help="K of table 3")
  parser.add_argument("--max_frames", type=int, default=64, help="table 3 stops probing here")
  parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process")
  args = parser.parse_args()
  if args.memory_child or args.time_child:
    child = memory_config if args.memory_child else time_config
    print(json.dumps(child(json.loads(args.memory_child or args.time_child))))
    return
  args.depths = [int(d) for d in args.depths.split(",") if d.strip()]
  if args.depths and min(args.depths) < 1:
    raise SystemExit(f"--depths={args.depths} must list positive depths, e.g. --depths=4,8,16,32")
  if args.num_train_frames < 2:
    raise SystemExit(f"--num_train_frames={args.num_train_frames} must be >= 2 (one conditioning, one target)")
  start = time.perf_counter()
  if args.depths:
    memory_table(args)
    if args.time_rounds > 0:
      time_table(args)
  if args.budget_mib > 0:
    frames_table(args)
  print(f"\n({time.perf_counter() - start:.0f} s in all, {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
  main()
