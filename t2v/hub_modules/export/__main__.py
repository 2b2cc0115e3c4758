"""python -m t2v.hub_modules.export --output_dir=RUN --export_dir=DIR [--modules=evaluator,generator,encoder]

Restores the run's hparams and latest (or --checkpoint) weights and writes one SavedModel per module, each with a
README.md; `hub.load(DIR/<module>)` then serves it without t2v.
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "A training run's --output_dir.")
flags.DEFINE_string("export_dir", None, "Where to write <export_dir>/<module>/.")
flags.DEFINE_list("modules", None, "Modules to export (default: all the model has: evaluator, generator, encoder).")
flags.DEFINE_string("checkpoint", None, "A checkpoint path in output_dir; default: the latest.")
flags.DEFINE_boolean("overwrite", False, "Replace modules already in export_dir.")
flags.mark_flags_as_required(["output_dir", "export_dir"])


def main(argv):
  del argv
  from t2v.hub_modules.export.lib import export  # pylint: disable=import-outside-toplevel
  from t2v.trainer.config import ConfigError  # pylint: disable=import-outside-toplevel
  try:
    paths = export(FLAGS.output_dir, FLAGS.export_dir, FLAGS.modules, FLAGS.checkpoint, FLAGS.overwrite)
  except ConfigError as e:
    print(f"t2v.hub_modules.export: error: {e}", file=sys.stderr)
    return 2
  for name, path in paths.items():
    print(f"{name}: {path}")
  return 0


if __name__ == "__main__":
  app.run(main)
