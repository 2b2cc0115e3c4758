"""`python -m t2v.trainer`: train a registered model on a registered problem (the only place flags live).

    python -m t2v.trainer --model=videoflow                       # VideoFlow on stochastic shapes, on CPU
    python -m t2v.trainer --problem=bair --hparams_set=videoflow_bair_quant --data_dir=/data/tfds
        --strategy=mirrored --train_steps=600000                  # (one command line)
    python -m t2v.trainer --registry_help                         # every problem, model and hparams set

Running the same command again resumes from the newest checkpoint in --output_dir. SIGTERM or Ctrl-C saves a
checkpoint and exits cleanly. A bad name, hparams key or value, output_dir or missing data exits with status 2
and one line saying what to change, before any training work (before TensorFlow is imported where possible).
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

from t2v import hparams as hparams_lib
from t2v import registry
from t2v.trainer import config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("problem", None, "Registered problem (--registry_help lists them); default: the model's "
                    f"default, {registry.DEFAULT_PROBLEM!r} for most models.")
flags.DEFINE_string("problem_config", None, "The problem's config, e.g. 'tiny' for stochastic_shapes; "
                    "default: the problem's default.")
flags.DEFINE_string("model", "videoflow", "Registered model.")
flags.DEFINE_string("hparams_set", None, "Registered hparams set; default: the model's default set (or, when "
                    "resuming, the set recorded in --output_dir).")
flags.DEFINE_string("hparams", "", "Overrides of the hparams set: 'key=value,key2=value2'.")
flags.DEFINE_string("output_dir", None, "Run directory; default ./t2v_runs/<problem>-<model>-<hparams_set>.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir of the problem; default: the problem's default.")
flags.DEFINE_integer("train_steps", 1500, "Total training steps (counting those already in --output_dir).",
                     lower_bound=0)
flags.DEFINE_integer("eval_steps", 10, "Batches per evaluation; 0: the whole eval split.", lower_bound=0)
flags.DEFINE_integer("eval_every", 500, "Evaluate every N steps (0: only at the end).", lower_bound=0)
flags.DEFINE_integer("checkpoint_every", 250, "Checkpoint every N steps (0: only at the start and end).",
                     lower_bound=0)
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.", lower_bound=1)
flags.DEFINE_integer("log_every", 50, "Log and write train summaries every N steps.", lower_bound=1)
flags.DEFINE_enum("strategy", "auto", config_lib.STRATEGIES,
                  "tf.distribute strategy: auto (several GPUs: mirrored, "
                  "else one device; never probes for a TPU), one_device, mirrored, multi_worker (TF_CONFIG), tpu.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and samples.", lower_bound=0)
flags.DEFINE_float("sample_temperature", 0.5, "Temperature of the samples written at each evaluation (VideoFlow §5.2: 0.5-0.6 looks best).",
                   lower_bound=0.0)
flags.DEFINE_boolean("allow_hparams_change", False, "Resume even though --hparams/--hparams_set differ from "
                     "those recorded in --output_dir.")
flags.DEFINE_boolean("registry_help", False, "Print every registered problem, model and hparams set, and exit.")

# Exit status of a usage error: a bad name, hparams, output_dir or missing data.
_USAGE_ERROR = 2


def _fail(error: BaseException) -> int:
  message = " ".join(str(error).split())  # one line
  print(f"t2v.trainer: error: {message}", file=sys.stderr)
  return _USAGE_ERROR


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
  if FLAGS.registry_help:
    print(registry.help_text())
    return 0
  try:
    # Cheap checks first: names and hparams are validated without importing TensorFlow.
    problem = FLAGS.problem or registry.default_problem(FLAGS.model)
    registry.check_names(problem, FLAGS.model, FLAGS.hparams_set)
    config_lib.resolve_hparams(FLAGS.model, FLAGS.hparams_set, FLAGS.hparams)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines drown the log
    from t2v.trainer import lib  # pylint: disable=import-outside-toplevel
    lib.run(problem=problem, problem_config=FLAGS.problem_config, model=FLAGS.model,
            hparams_set=FLAGS.hparams_set, hparams_overrides=FLAGS.hparams, output_dir=FLAGS.output_dir,
            data_dir=FLAGS.data_dir, train_steps=FLAGS.train_steps, eval_steps=FLAGS.eval_steps,
            eval_every=FLAGS.eval_every, checkpoint_every=FLAGS.checkpoint_every,
            keep_checkpoints=FLAGS.keep_checkpoints, log_every=FLAGS.log_every, strategy=FLAGS.strategy,
            seed=FLAGS.seed, sample_temperature=FLAGS.sample_temperature,
            allow_hparams_change=FLAGS.allow_hparams_change)
  except (registry.RegistryError, hparams_lib.HParamsError, config_lib.ConfigError) as e:
    return _fail(e)
  except OSError as e:  # DataNotFoundError (a FileNotFoundError) and CorruptRecordError (an IOError)
    from t2v.problems.base import CorruptRecordError, DataNotFoundError  # pylint: disable=import-outside-toplevel
    if isinstance(e, (DataNotFoundError, CorruptRecordError)):
      return _fail(e)
    raise
  logging.flush()
  return 0


if __name__ == "__main__":
  app.run(main)
