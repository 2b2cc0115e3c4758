"""Held-out bits per pixel and sample validity of a trained VideoFlow run on stochastic shapes.

    python benchmarks/shapes_quality.py --output_dir=runs/videoflow_shapes --temperature=0.5

Restores the latest checkpoint, scores the first --num_examples test clips (bits per pixel of the target frames
given the first frame, the problem's protocol; "bpp_unseen" and "valid_rate_unseen": on the clips whose video is
not also in the training split), rolls out --num_decodes samples per example at each temperature
and judges each conditioning + generated video with the stochastic shapes judge (one shape, same colour and
size, straight constant-speed motion in one of the 8 directions, continuing the conditioning frame). Prints JSON:
per temperature the whole videos' valid and object-kept rates, and "first_move", the same judge on the
conditioning frames and the first generated frame alone: whether the model makes the 8-way choice of the first
predicted frame (a valid step, and how evenly its directions spread: 3 bits is uniform), apart from whether it
then keeps the motion going.

--num_given=2 conditions the samples on two real frames instead (a diagnostic, not the problem's protocol: the
direction is then known, so it measures whether the model continues a motion rather than whether it picks one).
Then "valid_by_true_direction" splits both valid rates by the clip's true direction, e.g. to tell axis-aligned
moves from diagonal ones.

--reencode rolls out one frame at a time and conditions each next frame on the previous generated frames as
8-bit images, encoded again by the flow, rather than on their sampled latents (a diagnostic: the model is a
density over 8-bit frames, and its prior was trained on latents of encoded real frames only).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import t2v  # noqa: F401  (before TensorFlow: t2v's CPU-kernel default, see t2v/__init__.py)
import tensorflow as tf

from t2v.metrics import shapes_judge
from t2v.problems import stochastic_shapes
from t2v.trainer.restore import restore_run

_TOP_REASONS = 6  # reasons printed per summary, the most frequent first


def _top_reasons(summary: shapes_judge.JudgeSummary) -> dict[str, int]:
  return dict(sorted(summary.reason_counts.items(), key=lambda kv: -kv[1])[:_TOP_REASONS])


def _valid_by_direction(judged: list[list[shapes_judge.Judgement]], directions: np.ndarray) -> dict[str, float]:
  """Valid rate of the decodes of the clips whose true direction is each of the 8 DIRECTIONS (None: no clip)."""
  valid = np.asarray([[j.valid for j in row] for row in judged], np.float64)  # [N, D]
  names = tuple(stochastic_shapes.DIRECTIONS)
  return {name: (round(float(valid[directions == k].mean()), 3) if (directions == k).any() else None)
          for k, name in enumerate(names)}


def _seen_in_train(problem, videos: np.ndarray) -> np.ndarray:
  """bool [N]: whether each test video [N, T, H, W, C] is, frame for frame, also a video of the training split
  (at 32x32 the jittered configs draw ~7700 distinct videos for 10000 training clips, and ~40 % of the test clips
  recur). Streams the training split; only the N test videos are held."""
  index: dict[bytes, list[int]] = {}
  for i, video in enumerate(videos.reshape(len(videos), -1)):
    index.setdefault(bytes(video), []).append(i)
  seen = np.zeros(len(videos), bool)
  for batch in problem.dataset(problem.train_split, batch_size=500, training=False):
    for video in batch["video"].numpy().reshape(-1, videos[0].size):
      seen[index.get(bytes(video), [])] = True
  return seen


def _rollout(model, context: np.ndarray, num_frames: int, temperature: float, seed: tuple[int, int],
             reencode: bool) -> np.ndarray:
  """uint8 [N, num_frames, H, W, C] after context: one `model.sample` call, or (reencode) one per frame, each
  frame's uint8 output appended to the context that the next call encodes (frame t's seed: (seed[0], seed[1] +
  100000 t))."""
  if not reencode:
    return model.sample({"video": context}, num_frames, temperature, seed=seed).numpy()
  video = context
  for t in range(num_frames):
    frame = model.sample({"video": video}, 1, temperature, seed=(seed[0], seed[1] + 100000 * t)).numpy()
    video = np.concatenate([video, frame], axis=1)
  return video[:, context.shape[1]:]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--num_examples", type=int, default=200)
  parser.add_argument("--num_decodes", type=int, default=4)
  parser.add_argument("--temperature", type=float, nargs="+", default=[0.5])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_given", type=int, default=0,
                      help="real frames the samples continue (default: the problem's conditioning frames)")
  parser.add_argument("--reencode", action="store_true",
                      help="roll out one frame at a time, each generated frame quantised to 8 bits and encoded "
                           "again as context (the model's conditional of the next 8-bit frame given 8-bit frames), "
                           "instead of continuing from the sampled latents")
  args = parser.parse_args()

  problem, model, config = restore_run(args.output_dir, args.data_dir)
  spec = problem.spec()
  batches = problem.dataset(problem.eval_split, batch_size=50, training=False).take(-(-args.num_examples // 50))
  score = tf.function(lambda video: model.log_prob_bpp({"video": video}, spec.num_input_frames,
                                                       seed=tf.constant([args.seed, 0])))
  bpp, videos, truth = [], [], []
  for batch in batches:
    bpp.append(score(batch["video"]).numpy())
    videos.append(batch["video"].numpy())
    truth.append({k: batch[k].numpy() for k in ("shape", "color", "direction")})
  bpp = np.concatenate(bpp)[:args.num_examples]  # [N, num_target_frames]
  videos = np.concatenate(videos)[:args.num_examples]
  directions = np.concatenate([t["direction"] for t in truth])[:args.num_examples]  # [N]
  seen = _seen_in_train(problem, videos)  # [N]
  result = {"checkpoint": config["checkpoint"], "num_examples": len(videos),
            "bpp": float(bpp.mean()), "bpp_per_frame": bpp.mean(0).round(4).tolist(),
            # the clips whose video is not also a training video: held out in fact, not only by split
            "num_unseen": int((~seen).sum()), "bpp_unseen": float(bpp[~seen].mean()) if (~seen).any() else None,
            "samples": {}}
  num_given = args.num_given or spec.num_input_frames
  if not 1 <= num_given < spec.num_frames:
    raise SystemExit(f"--num_given={num_given} must be in [1, {spec.num_frames - 1}]")
  result["num_given"] = num_given
  result["reencode"] = args.reencode
  context = videos[:, :num_given]
  for temperature in args.temperature:
    decodes = []
    for d in range(args.num_decodes):
      frames = [_rollout(model, context[i:i + 50], spec.num_frames - num_given, temperature,
                         (args.seed, 1000 * d + i), args.reencode) for i in range(0, len(context), 50)]
      decodes.append(np.concatenate(frames))
    generated = np.stack(decodes, axis=1)  # [N, D, T, H, W, 3]
    judged = shapes_judge.judge_continuation(context, generated, config=problem.config)
    summary = shapes_judge.summarize(judged)
    judged_first = shapes_judge.judge_continuation(context, generated[:, :, :1], config=problem.config)
    first = shapes_judge.summarize(judged_first)
    result["samples"][str(temperature)] = {
        "num_decodes": args.num_decodes, "valid_rate": summary.valid_rate,
        "object_kept_rate": summary.object_kept_rate,
        "direction_entropy_bits": summary.direction_entropy_bits,
        "reasons": _top_reasons(summary),
        "valid_rate_unseen": (float(np.mean([[j.valid for j in row] for row, s in zip(judged, seen) if not s]))
                              if (~seen).any() else None),
        "first_move": {"num_videos": first.num_videos,  # the frames each judged video had:
                       "num_frames": sorted({len(j.centroids) for row in judged_first for j in row}),
                       "valid_rate": first.valid_rate, "direction_entropy_bits": first.direction_entropy_bits,
                       "example_direction_entropy_bits": first.example_direction_entropy_bits,
                       "reasons": _top_reasons(first)},
    }
    if num_given >= 2:  # the context fixes the direction: split the valid rates by it
      result["samples"][str(temperature)]["valid_by_true_direction"] = {
          "whole": _valid_by_direction(judged, directions), "first_move": _valid_by_direction(judged_first,
                                                                                             directions)}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
