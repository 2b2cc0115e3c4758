"""The decoder behind `python -m t2v.decoder`: sample a trained run and measure the samples.

    from t2v.decoder import decode
    results = decode("runs/videoflow_shapes", num_examples=16, num_decodes=4, temperatures=[0.0, 0.5, 1.0])

For each temperature it writes into `<decode_dir>/temperature_<T>/`:
  samples.npy        uint8 [examples, decodes, frames, H, W, C]: conditioning frames, then generated ones
  ground_truth.npy   uint8 [examples, frames', H, W, C]: the real clips (frames' <= frames when the rollout is
                     longer than the data's clips)
  metrics.json       every figure with its protocol (split, examples, decodes, frames given and predicted,
                     temperature, checkpoint)
  example_<i>.gif    the ground truth and every decode of example i side by side, conditioning frames framed in
                     blue and generated ones in red (as in VideoFlow's figures)
  example_<i>.mp4    the same video as H.264 MP4 (t2v.video_io.write_mp4: enlarged to >= 128 px, for browsers,
                     QuickTime and slides)
  example_<i>.png    the same as a grid of frames: a row per video, a column per frame
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from t2v import video_io
from t2v.trainer.restore import restore_run

_FVD_MIN_FRAMES = 16  # the I3D's temporal receptive field; FVD's protocol uses 16-frame clips
_SEED_STRIDE = 100003  # decodes d and batches b get sampling seeds (seed, d * stride + b): distinct, reproducible


def decode(output_dir: str, *, split: str | None = None, num_examples: int = 16, num_decodes: int = 4,
           temperatures: Sequence[float] = (0.5,), num_target_frames: int | None = None,
           decode_dir: str | None = None, seed: int = 0, data_dir: str | None = None,
           checkpoint: str | None = None, batch_size: int = 8, fps: float = 4.0, progress: bool = True,
           caption: str | None = None, label: int | None = None) -> dict[str, Any]:
  """Samples `num_decodes` continuations of the first `num_examples` clips of `split` at each temperature and
  writes them with their metrics; returns {temperature: metrics dict} (the metrics.json contents).

  `caption` or `label` (models conditioned on them) replaces every example's own: the videos are then samples of
  that caption or label, so the figures that compare them with the examples' ground truth are not computed; on
  captioned shapes the judge reports how many match the caption (label: the label's caption).
  """
  if num_examples < 1 or num_decodes < 1 or batch_size < 1 or not temperatures:
    raise ValueError(f"num_examples={num_examples}, num_decodes={num_decodes} and batch_size={batch_size} must be "
                     f">= 1 and temperatures={list(temperatures)} non-empty")
  if any(t < 0 for t in temperatures):
    raise ValueError(f"temperatures={list(temperatures)} must be >= 0")
  problem, model, config = restore_run(output_dir, data_dir, checkpoint)
  spec = model.spec
  split = split or problem.eval_split
  num_given = spec.num_input_frames
  num_predicted = num_target_frames or spec.num_target_frames
  if num_predicted < 1:
    raise ValueError(f"num_target_frames={num_target_frames} must be >= 1")
  num_real = min(num_given + num_predicted, problem.num_frames)  # frames of ground truth the data has
  step = int(os.path.basename(config["checkpoint"]).split("-")[-1])
  decode_dir = decode_dir or os.path.join(output_dir, f"decode_{split.replace('[', '_').replace(']', '')}_{step}")

  examples = read_examples(problem, split, num_examples, num_real, batch_size)
  truth = examples["video"]  # [E, num_real, H, W, C]
  num_examples = len(truth)
  requested = _requested_condition(model, caption, label)
  if requested:
    examples.update({key: np.repeat(np.asarray([value]), num_examples) for key, value in requested.items()})
    likelihood = None  # the ground truth belongs to other captions
  else:
    likelihood = _split_bpp(model, examples, num_given, seed, batch_size) if model.is_likelihood_model else None

  results = {}
  for temperature in temperatures:
    samples = sample_decodes(model, examples, num_given, num_predicted, num_decodes, temperature, seed, batch_size,
                      progress)  # [E, D, num_given + num_predicted, H, W, C]
    metrics = {
        "protocol": {
            "problem": config["problem"], "problem_config": config["problem_config"], "split": split,
            "checkpoint": config["checkpoint"], "step": step, "num_examples": num_examples,
            "num_decodes": num_decodes, "conditioning_frames": num_given, "predicted_frames": num_predicted,
            "ground_truth_frames": num_real, "temperature": temperature, "seed": seed,
        },
    }
    if requested:
      metrics["protocol"]["condition"] = {key: _text(value) for key, value in requested.items()}
    if likelihood is not None:
      metrics["bits_per_pixel"] = likelihood
    metrics.update(_sample_metrics(problem, examples, samples, num_given, compare_with_truth=not requested))
    out = os.path.join(decode_dir, f"temperature_{temperature:g}")
    _write(out, samples, truth, metrics, num_given, fps)
    results[f"{temperature:g}"] = metrics
  return results


def _text(value: Any) -> Any:
  return value.decode() if isinstance(value, bytes) else value


def _requested_condition(model, caption: str | None, label: int | None) -> dict[str, Any]:
  """{"caption": ...} or {"label": ...} from --caption / --label, checked against the model's spec."""
  spec = model.spec
  if caption is not None and label is not None:
    raise ValueError(f"caption={caption!r} and label={label!r}: give one of them")
  if caption is not None:
    if not spec.has_caption:
      raise ValueError(f"caption={caption!r}, but the run's problem has no captions: leave --caption out")
    from t2v import text  # pylint: disable=import-outside-toplevel
    unknown = sorted({word for word in text.words(caption) if word not in spec.vocabulary})
    if not text.words(caption) or unknown:
      raise ValueError(f"caption={caption!r} has {'no words' if not unknown else 'words the model never saw in training: ' + ', '.join(unknown)}; "
                       f"its vocabulary: {' '.join(spec.vocabulary)}")
    return {"caption": caption.encode()}
  if label is not None:
    if not 0 <= label < spec.num_labels:
      raise ValueError(f"label={label} must be in 0..{spec.num_labels - 1} (the run's problem has "
                       f"{spec.num_labels} labels)" if spec.num_labels else
                       f"label={label}, but the run's problem has no labels: leave --label out")
    requested: dict[str, Any] = {"label": np.int32(label)}
    if spec.has_caption and spec.label_captions:  # a captioned problem: the label's caption goes with it
      requested["caption"] = spec.label_captions[label].encode()
    return requested
  return {}


def read_examples(problem, split: str, num_examples: int, num_frames: int, batch_size: int) -> dict[str, np.ndarray]:
  """(Shared with t2v.experiments.) The first `num_examples` clips of `split` (num_frames each) and their other features, as numpy."""
  dataset = problem.dataset(split, batch_size=batch_size, num_frames=num_frames, training=False)
  parts: dict[str, list[np.ndarray]] = {}
  for batch in dataset.take(math.ceil(num_examples / batch_size)):
    for key, value in batch.items():
      parts.setdefault(key, []).append(value.numpy())
  if not parts:
    raise ValueError(f"split {split!r} of {problem.name} is empty")
  return {key: np.concatenate(values)[:num_examples] for key, values in parts.items()}


def _model_inputs(examples: dict[str, np.ndarray], start: int, stop: int, num_given: int) -> dict[str, tf.Tensor]:
  inputs = {"video": tf.constant(examples["video"][start:stop, :num_given])}
  for key in ("label", "caption"):
    if key in examples:
      inputs[key] = tf.constant(examples[key][start:stop])
  return inputs


def sample_decodes(model, examples, num_given, num_predicted, num_decodes, temperature, seed, batch_size, progress):
  """[E, D, num_given + num_predicted, H, W, C]: the given frames, then each decode's; decode d of batch b is
  seeded (seed, d * _SEED_STRIDE + b), so every caller (decoder, experiments) draws the same samples."""
  num_examples = len(examples["video"])
  bar = keras.utils.Progbar(num_decodes * num_examples, unit_name="video") if progress else None
  decodes = []
  for d in range(num_decodes):
    chunks = []
    for b, start in enumerate(range(0, num_examples, batch_size)):
      inputs = _model_inputs(examples, start, start + batch_size, num_given)
      generated = model.sample(inputs, num_predicted, temperature, seed=(seed, d * _SEED_STRIDE + b))
      chunks.append(np.concatenate([inputs["video"].numpy(), np.asarray(generated)], axis=1))
      if bar is not None:
        bar.add(len(inputs["video"]))
    decodes.append(np.concatenate(chunks))
  return np.stack(decodes, axis=1)  # [E, D, T, H, W, C]


def _split_bpp(model, examples, num_given, seed, batch_size) -> dict[str, Any]:
  """Bits per pixel of the ground truth's predicted frames given its first `num_given` (likelihood models)."""
  from t2v.metrics import bpp  # pylint: disable=import-outside-toplevel
  features = {key: examples[key] for key in ("video", "label", "caption") if key in examples}
  dataset = tf.data.Dataset.from_tensor_slices(features).batch(batch_size)
  return bpp.split_bits_per_pixel(model, dataset, num_given, seed)


def _sample_metrics(problem, examples, samples, num_given, compare_with_truth: bool = True) -> dict[str, Any]:
  """PSNR/SSIM over decodes (mean, best and worst of N) and, on (captioned) stochastic shapes, the shapes judge
  (and its caption accuracy). Without `compare_with_truth` only the judge runs."""
  from t2v.metrics import aggregate, psnr_ssim  # pylint: disable=import-outside-toplevel
  truth = examples["video"]
  num_real = truth.shape[1]
  out: dict[str, Any] = {}
  skipped: dict[str, str] = {}
  if not compare_with_truth:
    skipped["ground_truth_metrics"] = "the samples were drawn for a requested caption or label, not the examples'"
  elif num_real > num_given:
    predicted = samples[:, :, num_given:num_real]  # [E, D, T', H, W, C]: frames with a ground truth
    real = truth[:, num_given:]
    out["psnr"] = aggregate.over_decodes(psnr_ssim.psnr(predicted, real), higher_is_better=True)
    out["ssim"] = aggregate.over_decodes(psnr_ssim.ssim(predicted, real), higher_is_better=True)
    lpips_net = _optional("lpips", skipped, lambda: __import__("t2v.metrics.lpips", fromlist=["LPIPS"]).LPIPS("alex"))
    if lpips_net is not None:
      out["lpips_alex"] = aggregate.over_decodes(lpips_per_frame(lpips_net, predicted, real), higher_is_better=False)
      if samples.shape[1] >= 2:
        from t2v.metrics.lpips import pairwise_diversity, uint8_to_signed_unit  # pylint: disable=import-outside-toplevel
        diversity = [float(pairwise_diversity(uint8_to_signed_unit(_rgb(samples[e, :, num_given:])), lpips_net))
                     for e in range(len(samples))]
        out["diversity_lpips_alex"] = aggregate.mean_ci(np.asarray(diversity))
  if not compare_with_truth:
    pass
  elif samples.shape[2] >= _FVD_MIN_FRAMES and truth.shape[1] >= _FVD_MIN_FRAMES and len(samples) >= 2:
    i3d = _optional("fvd", skipped, lambda: __import__("t2v.metrics.i3d", fromlist=["I3D"]).I3D())
    if i3d is not None:
      from t2v.metrics import fvd  # pylint: disable=import-outside-toplevel
      generated = samples[:, :, :truth.shape[1]].reshape((-1,) + truth.shape[1:])  # every decode: [E*D, T, ...]
      out["fvd"] = {"value": fvd.fvd(truth, generated, i3d), "real_videos": len(truth),
                    "generated_videos": len(generated), "frames": truth.shape[1]}
  else:
    skipped["fvd"] = (f"needs >= {_FVD_MIN_FRAMES} frames of ground truth and samples and >= 2 examples "
                      f"(have {truth.shape[1]}, {samples.shape[2]}, {len(samples)})")
  if problem.name in ("stochastic_shapes", "captioned_shapes"):
    from t2v.metrics import shapes_judge  # pylint: disable=import-outside-toplevel
    if num_given:
      judged = shapes_judge.judge_continuation(truth[:, :num_given], samples[:, :, num_given:],
                                               config=problem.config)
    else:  # generated from a caption or label alone: nothing to continue
      judged = shapes_judge.judge_videos(samples, config=problem.config)
    summary = shapes_judge.summarize(judged)
    out["shapes_judge"] = summary.report()
    if "caption" in examples:
      captions = [_text(c) for c in examples["caption"]]
      from t2v.metrics import caption_judge  # pylint: disable=import-outside-toplevel
      scored = caption_judge.summarize_captions(judged, captions, heldout=problem.config.heldout,
                                               sizes=problem.config.sizes)
      out["shapes_judge"]["captions"] = {
          name: None if score is None else dataclasses.asdict(score)
          for name, score in (("overall", scored.overall), ("seen", scored.seen), ("heldout", scored.heldout))}
      out["shapes_judge"]["captions"]["checks_size"] = scored.checks_size
  if skipped:
    out["skipped"] = skipped
  return out


def _optional(name: str, skipped: dict[str, str], load):
  """A metric network whose weights may be absent (they ship in optional packages): None and a reason if so."""
  try:
    return load()
  except (FileNotFoundError, ImportError) as e:
    skipped[name] = str(e)
    return None


def _rgb(frames: np.ndarray) -> np.ndarray:
  return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def lpips_per_frame(net, predicted: np.ndarray, real: np.ndarray) -> np.ndarray:
  """LPIPS of every predicted frame [E, D, T, H, W, C] to its ground truth [E, T, H, W, C]: [E, D, T]."""
  num_examples, num_decodes, length = predicted.shape[:3]
  a = _rgb(predicted).reshape((-1,) + predicted.shape[3:-1] + (3,))  # [E*D*T, H, W, 3]
  b = _rgb(np.broadcast_to(real[:, None], predicted.shape)).reshape(a.shape)
  distances = np.concatenate([net.distance_uint8(a[i:i + 256], b[i:i + 256]).numpy() for i in range(0, len(a), 256)])
  return distances.reshape(num_examples, num_decodes, length)


def _write(out: str, samples: np.ndarray, truth: np.ndarray, metrics: dict[str, Any], num_given: int,
           fps: float) -> None:
  os.makedirs(out, exist_ok=True)
  np.save(os.path.join(out, "samples.npy"), samples)
  np.save(os.path.join(out, "ground_truth.npy"), truth)
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(jsonable(metrics), f, indent=2, sort_keys=True)
  length = samples.shape[2]
  for e in range(len(samples)):
    real = truth[e]
    if real.shape[0] < length:  # the rollout is longer than the data: hold the last real frame
      real = np.concatenate([real, np.repeat(real[-1:], length - real.shape[0], axis=0)])
    framed_real = video_io.add_border(real, num_conditioning=length)  # the ground truth is framed blue throughout
    framed = video_io.add_border(samples[e], num_conditioning=num_given)  # [D, T, H', W', 3]
    videos = np.concatenate([framed_real[None], framed])  # [1 + D, T, H', W', 3]: truth first
    tiled = video_io.tile_videos(videos)  # [T, H'', W'', 3]
    video_io.write_gif(os.path.join(out, f"example_{e}.gif"), tiled, fps)
    video_io.write_mp4(os.path.join(out, f"example_{e}.mp4"), tiled, fps)
    video_io.write_png(os.path.join(out, f"example_{e}.png"), video_io.frame_grid(videos))


def jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return jsonable(value.tolist())
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else str(value)
  if isinstance(value, np.integer):
    return int(value)
  return value
