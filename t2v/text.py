"""Captions as words: the one tokenisation rule t2v uses, in Python and in TensorFlow.

A caption is lower-cased and cut at every character that is not a letter or a digit:

    words("Small red circle, moving up-left")  == ["small", "red", "circle", "moving", "up", "left"]

Problems build their `vocabulary` with `build_vocabulary` over their training captions; caption encoders map
words to ids with the same rule in-graph (`tf_words`), so a caption typed by a user, a caption read from a
TFRecord and one passed to a hub module are tokenised identically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import tensorflow as tf

_WORD_RE = re.compile(r"[a-z0-9]+")
_SEPARATORS_RE = r"[^a-z0-9]+"


def words(caption: str) -> list[str]:
  """The words of `caption`: lower-cased runs of ASCII letters and digits."""
  if not isinstance(caption, str):
    raise TypeError(f"a caption must be a str, got {type(caption).__name__} {caption!r}")
  return _WORD_RE.findall(caption.lower())


def build_vocabulary(captions: Iterable[str]) -> tuple[str, ...]:
  """The sorted unique words of `captions`; raises ValueError when there are none."""
  vocabulary = sorted({word for caption in captions for word in words(caption)})
  if not vocabulary:
    raise ValueError("the captions contain no words (letters or digits); cannot build a vocabulary")
  return tuple(vocabulary)


def tf_words(captions: tf.Tensor) -> tf.RaggedTensor:
  """`words` in TensorFlow: string [B] -> ragged string [B, (words)], same rule as the Python function."""
  captions = tf.strings.lower(tf.convert_to_tensor(captions, tf.string))
  spaced = tf.strings.regex_replace(captions, _SEPARATORS_RE, " ")
  return tf.strings.split(tf.strings.strip(spaced))
