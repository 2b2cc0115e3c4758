"""Caption accuracy: does a video generated from a caption show what the caption says? (captioned shapes)

Built on the stochastic shapes judge (t2v.metrics.shapes_judge): a video matches its caption when the judge finds
it valid and its detected shape, colour, size and direction are those the caption names
(t2v.problems.captioned_shapes.parse_caption reads the caption).

    summary = judge_captions(videos, captions, heldout=[("triangle", "red"), ("square", "blue")])
    summary.overall.accuracy, summary.heldout.accuracy      # valid and showing the caption's shape, colour,
    summary.overall.attribute_accuracy["color"]             # size and direction; per attribute
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import numpy as np

# the judge's own helpers for matching ground truth to judgements, shared within t2v.metrics
from t2v.metrics.shapes_judge import (_COLOR_NAMES, _DIRECTION_NAMES, Judgement, _broadcast_truth, _expectation, _name,
                                      judge_videos, matches)
from t2v.problems.captioned_shapes import SIZE_WORDS, parse_caption
from t2v.problems.stochastic_shapes import SHAPES, StochasticShapesConfig


Caption = str | bytes | Mapping[str, object]

_CAPTION_ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "direction")


@dataclasses.dataclass(frozen=True)
class CaptionScore:
  """How well a group of videos shows its captions.

  Attributes:
    num_videos: videos in the group.
    valid_rate: the fraction judged valid.
    accuracy: the caption accuracy: the fraction that are valid and show every attribute their caption names
      (`matches_caption`); 0 for an empty group.
    attribute_accuracy: per attribute ("shape", "color", "size", "direction"), among the videos whose caption
      names it, the fraction whose detected attribute equals it, valid or not (undetected disagrees; the judge
      reports a direction only for a valid motion). An attribute no caption names, and "size" when sizes are not
      checked, is absent.
  """

  num_videos: int
  valid_rate: float
  accuracy: float
  attribute_accuracy: dict[str, float]


@dataclasses.dataclass(frozen=True)
class CaptionSummary:
  """Caption accuracy overall and, given held-out combinations, on seen and on held-out ones separately.

  Attributes:
    overall: every video.
    seen: the videos whose (shape, colour) is not held out; None when no `heldout` was given.
    heldout: the videos whose (shape, colour) is held out; None when no `heldout` was given.
    checks_size: whether caption sizes were checked (see judge_captions).
    matched: per video, in the flat order of the judgements, whether it matches its caption.
  """

  overall: CaptionScore
  seen: CaptionScore | None
  heldout: CaptionScore | None
  checks_size: bool
  matched: tuple[bool, ...]


def _caption_attributes(caption: Caption, sizes: Sequence[int] | None) -> dict[str, object]:
  """The attributes `caption` names as the judge reports them (names; size r in pixels), unnamed ones left out.

  A string (or UTF-8 bytes) is read with parse_caption; a mapping holds some of "shape", "color", "size",
  "direction" as names or dataset indices, its size a word in SIZE_WORDS or r in pixels. A size word becomes
  pixels through `sizes` (the dataset's three, any order); with sizes None it is left out, i.e. not checked.
  """
  if isinstance(caption, (str, bytes)):
    attributes: Mapping[str, object] = parse_caption(caption)
  elif isinstance(caption, Mapping):
    attributes = caption
    unknown = set(attributes) - set(_CAPTION_ATTRIBUTES)
    if unknown:
      raise ValueError(f"shapes_judge: unknown caption attributes {sorted(unknown)}; use some of "
                       f"{', '.join(_CAPTION_ATTRIBUTES)}, as parse_caption returns them")
  else:
    raise ValueError(f"shapes_judge: a caption must be a str, UTF-8 bytes or a mapping of attributes, got "
                     f"{type(caption).__name__} {caption!r}")
  named: dict[str, object] = {}
  for key, names in (("shape", SHAPES), ("color", _COLOR_NAMES), ("direction", _DIRECTION_NAMES)):
    if attributes.get(key) is not None:
      named[key] = _name(attributes[key], names, key)
  size = attributes.get("size")
  if isinstance(size, str):
    if size not in SIZE_WORDS:
      raise ValueError(f"shapes_judge: unknown size {size!r}; expected one of {', '.join(SIZE_WORDS)} or r in "
                       "pixels")
    if sizes is not None:
      if len(sizes) != len(SIZE_WORDS):
        raise ValueError(f"shapes_judge: sizes={tuple(sizes)} must be the dataset's {len(SIZE_WORDS)} sizes, the "
                         f"{', '.join(SIZE_WORDS)} of the captions")
      named["size"] = int(sorted(sizes)[SIZE_WORDS.index(size)])
  elif size is not None:
    named["size"] = int(size)
  return named


def matches_caption(result: Judgement, caption: Caption, *, sizes: Sequence[int] | None = None) -> bool:
  """Whether `result` is valid and shows every attribute `caption` names.

  Args:
    result: the judgement of a generated video.
    caption: e.g. "small red circle moving up-left" (or the bytes a tf.data pipeline yields), or attributes as
      parse_caption returns them; an attribute it does not name is not checked.
    sizes: the dataset's sizes in pixels (e.g. StochasticShapesConfig.sizes), to tell what "small" means; None
      checks no size word (a size given in pixels is checked either way).
  """
  return matches(result, **_caption_attributes(caption, sizes))


def _caption_score(results: Sequence[Judgement], attributes: Sequence[dict[str, object]],
                   matched: Sequence[bool], check_size: bool) -> CaptionScore:
  num = len(results)
  accuracy: dict[str, float] = {}
  for key in _CAPTION_ATTRIBUTES:
    if key == "size" and not check_size:
      continue
    pairs = [(getattr(r, key), a[key]) for r, a in zip(results, attributes) if key in a]
    if pairs:
      accuracy[key] = float(np.mean([detected == wanted for detected, wanted in pairs]))
  return CaptionScore(num_videos=num,
                      valid_rate=float(np.mean([r.valid for r in results])) if num else 0.0,
                      accuracy=float(np.mean(matched)) if num else 0.0,
                      attribute_accuracy=accuracy)


def summarize_captions(results: Sequence[Judgement] | Sequence[Sequence[Judgement]],
                       captions: Sequence[Caption] | np.ndarray, *,
                       heldout: Iterable[tuple[str, str]] | Sequence[bool] | np.ndarray | None = None,
                       sizes: Sequence[int] | None = None) -> CaptionSummary:
  """Caption accuracy of judged videos, overall and on held-out (shape, colour) combinations.

  Args:
    results: judgements, flat [N] or nested [E][D] (as judge_videos returns them).
    captions: the caption each video was generated from, [N], or per example [E] (broadcast over decodes) for
      nested results: strings, UTF-8 bytes (e.g. batch["caption"].numpy()) or parse_caption-style mappings.
    heldout: which videos show held-out combinations: bools [N] (or [E]), e.g. `split == "test_heldout"`, or
      the held-out (shape, colour) pairs, e.g. CaptionedShapes(...).heldout_combinations, matched against each
      caption's shape and colour (a caption naming neither is not held out). None: no seen / held-out split.
    sizes: the dataset's sizes in pixels; None leaves caption sizes unchecked (see matches_caption).

  Returns:
    A CaptionSummary; its `seen` and `heldout` are None without `heldout`.
  """
  nested = bool(results) and not isinstance(results[0], Judgement)
  groups: list[list[Judgement]] = [list(group) for group in results] if nested else [list(results)]
  flat = [r for group in groups for r in group]
  per_video = _broadcast_truth("caption", captions, groups, nested, what="captions")
  attributes = [_caption_attributes(caption, sizes) for caption in per_video]
  matched = [matches(r, **a) for r, a in zip(flat, attributes)]
  check_size = sizes is not None
  overall = _caption_score(flat, attributes, matched, check_size)
  if heldout is None:
    return CaptionSummary(overall=overall, seen=None, heldout=None, checks_size=check_size, matched=tuple(matched))

  flags_given = isinstance(heldout, np.ndarray) and heldout.dtype == bool
  if not flags_given and not isinstance(heldout, (str, bytes, Mapping)):
    heldout = list(heldout)
    flags_given = bool(heldout) and all(isinstance(f, (bool, np.bool_)) for f in heldout)
  if flags_given:
    is_heldout = [bool(f) for f in _broadcast_truth("heldout", heldout, groups, nested, what="heldout flags")]
  else:
    pairs = set()
    for pair in heldout:
      pair = tuple(pair) if isinstance(pair, (list, np.ndarray)) else pair
      if (not isinstance(pair, tuple) or len(pair) != 2 or pair[0] not in SHAPES
          or pair[1] not in _COLOR_NAMES):
        raise ValueError(f"shapes_judge: heldout entry {pair!r} must be a (shape, colour) pair, e.g. ('triangle', "
                         "'red'), or pass one bool per video instead")
      pairs.add((pair[0], pair[1]))
    is_heldout = [(a.get("shape"), a.get("color")) in pairs for a in attributes]
  scores = {}
  for name, wanted in (("seen", False), ("heldout", True)):
    pick = [i for i, flag in enumerate(is_heldout) if flag == wanted]
    scores[name] = _caption_score([flat[i] for i in pick], [attributes[i] for i in pick],
                                  [matched[i] for i in pick], check_size)
  return CaptionSummary(overall=overall, seen=scores["seen"], heldout=scores["heldout"], checks_size=check_size,
                        matched=tuple(matched))


def judge_captions(videos: np.ndarray, captions: Sequence[Caption] | np.ndarray, *,
                   heldout: Iterable[tuple[str, str]] | Sequence[bool] | np.ndarray | None = None,
                   config: StochasticShapesConfig | None = None, check_size: bool = True) -> CaptionSummary:
  """Judges videos generated from captions: caption accuracy overall and on held-out combinations.

  A video counts as correct when it is valid (see the module docstring) and shows its caption's shape, colour,
  direction and, with `check_size`, size. Size is checked by default: on rendered ground truth the judge's size
  estimate is within 0.4 px of the true r at 32 and 64 px, and the dataset's sizes are >= 1 px apart; pass
  check_size=False to score shape, colour and direction only (e.g. for a model whose samples have soft edges).

  Args:
    videos: uint8 [N, T, H, W, 3] or [E, D, T, H, W, 3], conditioning frames (if any) included.
    captions: one per video, or per example for [E, D, ...] videos; see summarize_captions.
    heldout: bools per video (or example), or the held-out (shape, colour) pairs; see summarize_captions.
    config: the dataset config (a CaptionedShapesConfig is one), for sizes and speed; None derives them from the
      frame size with the dataset's rule.
    check_size: check the size word of each caption against the measured size.
  """
  results = judge_videos(videos, config=config)
  sizes = _expectation(np.asarray(videos).shape[-2], config).sizes if check_size else None
  return summarize_captions(results, captions, heldout=heldout, sizes=sizes)
