"""Exporting a trained run as TF Hub modules: `python -m t2v.hub_modules.export` (flags in __main__.py)."""


def export(*args, **kwargs):
  """See `t2v.hub_modules.export.lib.export` (imported lazily: no TensorFlow import until called)."""
  from t2v.hub_modules.export.lib import export as _export  # pylint: disable=import-outside-toplevel
  return _export(*args, **kwargs)
