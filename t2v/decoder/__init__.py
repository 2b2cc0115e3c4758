"""Decoding: samples, ground truth, GIFs and the papers' metrics from a trained run (`python -m t2v.decoder`)."""


def decode(*args, **kwargs):
  """See `t2v.decoder.lib.decode` (imported lazily: importing t2v.decoder does not import TensorFlow)."""
  from t2v.decoder.lib import decode as _decode  # pylint: disable=import-outside-toplevel
  return _decode(*args, **kwargs)
