"""What a model needs to know about a problem's data, and nothing about how it is read."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """Shape and conditioning of a problem's videos.

  frame_shape: (H, W, C) of uint8 frames.
  num_input_frames: frames a model conditions on at evaluation (e.g. 3 on BAIR).
  num_target_frames: frames it predicts at evaluation (e.g. 10 on BAIR).
  num_labels: number of class labels in the `label` feature; 0 when the data has none.
  has_caption: whether elements carry a `caption` string.
  vocabulary: the words of the training captions (t2v.text.words of each, sorted, unique); a caption encoder
    is built from it, so it travels with the run's config.json and its hub modules. () when has_caption is False.
  label_captions: the caption of each label id (len num_labels), e.g. the folder name of a video_folder class;
    () when labels have no caption.
  """

  frame_shape: tuple[int, int, int]
  num_input_frames: int
  num_target_frames: int
  num_labels: int = 0
  has_caption: bool = False
  vocabulary: tuple[str, ...] = ()
  label_captions: tuple[str, ...] = ()

  def __post_init__(self):
    if len(self.frame_shape) != 3 or min(self.frame_shape) < 1:
      raise ValueError(f"frame_shape={self.frame_shape} must be (H, W, C) with positive sizes")
    if self.num_input_frames < 0 or self.num_target_frames < 1:
      raise ValueError(f"num_input_frames={self.num_input_frames} must be >= 0 and "
                       f"num_target_frames={self.num_target_frames} >= 1")
    if self.label_captions and len(self.label_captions) != self.num_labels:
      raise ValueError(f"label_captions has {len(self.label_captions)} entries but num_labels={self.num_labels}; "
                       "give one caption per label or none")
    if self.has_caption and not self.vocabulary:
      raise ValueError("has_caption=True needs the training captions' vocabulary (VideoSpec.vocabulary)")

  @property
  def num_frames(self) -> int:
    """Frames of one evaluation clip: inputs then targets."""
    return self.num_input_frames + self.num_target_frames

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> "VideoSpec":
    values = dict(values)
    values["frame_shape"] = tuple(values["frame_shape"])
    for key in ("vocabulary", "label_captions"):
      if key in values:
        values[key] = tuple(values[key])
    return cls(**values)
