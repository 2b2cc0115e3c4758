"""python -m t2v.decoder --output_dir=RUN [--num_examples=16 --num_decodes=4 --temperature=0.0,0.5,1.0 ...]
                        [--caption="small red circle moving up-left" | --label=3]

Restores a training run's hparams and latest checkpoint, samples continuations of its evaluation clips and writes
samples.npy, ground_truth.npy, metrics.json, GIFs and PNG grids per temperature (see t2v/decoder/lib.py).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "A training run's --output_dir (its config.json and checkpoints).")
flags.DEFINE_string("checkpoint", None, "A checkpoint path in output_dir; default: the latest.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir of the run's problem; default: the problem's default.")
flags.DEFINE_string("split", None, "Split to decode; default: the problem's evaluation split.")
flags.DEFINE_integer("num_examples", 16, "Clips of the split to condition on.", lower_bound=1)
flags.DEFINE_integer("num_decodes", 4, "Samples per clip (best-of-N uses them; the papers use 100).", lower_bound=1)
flags.DEFINE_list("temperature", ["0.5"], "Sampling temperatures, one pass each, e.g. 0.0,0.5,1.0.")
flags.DEFINE_integer("num_target_frames", None, "Frames to generate; default: the problem's (longer is allowed).",
                     lower_bound=1)
flags.DEFINE_string("decode_dir", None, "Where to write; default: <output_dir>/decode_<split>_<step>.")
flags.DEFINE_integer("seed", 0, "Seed of the samples and of the dequantisation noise of bits per pixel.",
                     lower_bound=0)
flags.DEFINE_integer("batch_size", 8, "Clips sampled at once.", lower_bound=1)
flags.DEFINE_string("caption", None, "Sample this caption instead of each example's own (caption-conditioned "
                    "models), e.g. 'small red circle moving up-left'.")
flags.DEFINE_integer("label", None, "Sample this label id instead of each example's own (label-conditioned models).",
                     lower_bound=0)
flags.mark_flag_as_required("output_dir")


def _fail(error: Exception) -> int:
  print(f"t2v.decoder: error: {error}", file=sys.stderr)
  return 2


def main(argv):
  del argv
  try:
    temperatures = [float(t) for t in FLAGS.temperature]
  except ValueError:
    return _fail(ValueError(f"--temperature={','.join(FLAGS.temperature)} must be a comma-separated list of "
                            "numbers, e.g. 0.0,0.5,1.0"))
  from t2v.decoder.lib import decode  # pylint: disable=import-outside-toplevel
  from t2v.trainer.config import ConfigError  # pylint: disable=import-outside-toplevel
  from t2v.problems.base import DataNotFoundError  # pylint: disable=import-outside-toplevel
  try:
    results = decode(FLAGS.output_dir, split=FLAGS.split, num_examples=FLAGS.num_examples,
                     num_decodes=FLAGS.num_decodes, temperatures=temperatures,
                     num_target_frames=FLAGS.num_target_frames, decode_dir=FLAGS.decode_dir, seed=FLAGS.seed,
                     data_dir=FLAGS.data_dir, checkpoint=FLAGS.checkpoint, batch_size=FLAGS.batch_size,
                     caption=FLAGS.caption, label=FLAGS.label)
  except (ConfigError, DataNotFoundError, ValueError) as e:
    return _fail(e)
  for temperature, metrics in results.items():
    headline = {key: value for key, value in metrics.items() if key != "protocol"}
    print(f"temperature {temperature}: {json.dumps(headline, default=str)[:2000]}")
  return 0


if __name__ == "__main__":
  app.run(main)
