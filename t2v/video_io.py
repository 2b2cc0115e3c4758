"""Videos as files: animated GIF encoding (Pillow) and a grid helper, used by summaries and the decoder.

    frames = np.zeros([10, 64, 64, 3], np.uint8)           # uint8 [T, H, W, C], C = 1 (grey) or 3 (RGB)
    data = encode_gif(frames, fps=4)                        # bytes of an animated GIF that loops forever
    grid = tile_videos(np.stack([real, fake]), columns=2)   # [T, H', W', C]: videos side by side
    write_gif("samples/step_100.gif", grid, fps=4)

Nothing here imports TensorFlow: frames are NumPy arrays (a tf.Tensor is converted with np.asarray).
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image

# GIF frame delays are stored in hundredths of a second, so rates above 50 fps are not representable.
_MAX_GIF_FPS = 50.0


def _as_frames(frames: Any) -> np.ndarray:
  """Checks and returns `frames` as uint8 [T, H, W, C] with C in {1, 3}."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise ValueError(f"frames must be uint8, got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
  if frames.ndim != 4 or frames.shape[0] < 1 or frames.shape[-1] not in (1, 3):
    raise ValueError(f"frames must be [T, H, W, C] with T >= 1 and C = 1 (grey) or 3 (RGB), got shape "
                     f"{frames.shape}")
  return frames


def encode_gif(frames: Any, fps: float = 4.0) -> bytes:
  """Encodes uint8 [T, H, W, C] frames (C = 1 grey, C = 3 RGB) as an animated GIF looping forever.

  RGB frames are reduced to a 256-colour adaptive palette per frame (exact for the few colours of synthetic
  data, close for natural video). Pillow merges consecutive identical frames into one longer frame.
  """
  frames = _as_frames(frames)
  if not 0 < fps <= _MAX_GIF_FPS:
    raise ValueError(f"fps={fps} must be in (0, {_MAX_GIF_FPS:g}] (GIF delays are in 1/100 s)")
  if frames.shape[-1] == 1:
    images = [Image.fromarray(frame[..., 0], mode="L") for frame in frames]
  else:
    images = [Image.fromarray(frame, mode="RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                          dither=Image.Dither.NONE)
              for frame in frames]
  buffer = io.BytesIO()
  duration_ms = int(round(1000.0 / fps))
  images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
  return buffer.getvalue()


def write_gif(path: str | os.PathLike, frames: Any, fps: float = 4.0) -> None:
  """Writes `encode_gif(frames, fps)` to `path`, creating its directory."""
  data = encode_gif(frames, fps)
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def tile_videos(videos: Any, columns: int | None = None, padding: int = 1, pad_value: int = 255) -> np.ndarray:
  """Lays N videos out on a grid, row by row: uint8 [N, T, H, W, C] -> [T, H', W', C].

  Args:
    videos: N videos of the same shape.
    columns: videos per row; None puts them all on one row.
    padding: pixels of `pad_value` between neighbouring videos (none around the border).
    pad_value: grey level of the padding.

  Returns:
    [T, rows * (H + padding) - padding, columns * (W + padding) - padding, C] with
    rows = ceil(N / columns); empty cells of the last row are `pad_value`.
  """
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.shape[0] < 1:
    raise ValueError(f"videos must be [N, T, H, W, C] with N >= 1, got shape {videos.shape}")
  if videos.dtype != np.uint8:
    raise ValueError(f"videos must be uint8, got {videos.dtype}")
  num, length, height, width, channels = videos.shape
  columns = num if columns is None else columns
  if columns < 1 or padding < 0 or not 0 <= pad_value <= 255:
    raise ValueError(f"columns={columns} must be >= 1, padding={padding} >= 0 and pad_value={pad_value} in 0..255")
  columns = min(columns, num)
  rows = -(-num // columns)
  grid = np.full([length, rows * (height + padding) - padding, columns * (width + padding) - padding, channels],
                 pad_value, np.uint8)  # [T, H', W', C]
  for index in range(num):
    top = (index // columns) * (height + padding)
    left = (index % columns) * (width + padding)
    grid[:, top:top + height, left:left + width, :] = videos[index]
  return grid


# VideoFlow's figures frame conditioning frames in blue and generated ones in red.
CONDITIONING_COLOR = (0, 0, 255)
GENERATED_COLOR = (255, 0, 0)


def add_border(videos: Any, num_conditioning: int, width: int = 2) -> np.ndarray:
  """Frames [..., T, H, W, C] -> RGB [..., T, H + 2w, W + 2w, 3] framed blue for the first `num_conditioning`
  frames and red for the rest (grey videos are repeated to RGB)."""
  videos = np.asarray(videos)
  if videos.dtype != np.uint8 or videos.ndim < 4 or videos.shape[-1] not in (1, 3):
    raise ValueError(f"videos must be uint8 [..., T, H, W, C] with C in (1, 3), got {videos.dtype} {videos.shape}")
  if videos.shape[-1] == 1:
    videos = np.repeat(videos, 3, axis=-1)
  length = videos.shape[-4]
  if not 0 <= num_conditioning <= length or width < 0:
    raise ValueError(f"num_conditioning={num_conditioning} must be in [0, {length}] and width={width} >= 0")
  pad = [(0, 0)] * (videos.ndim - 3) + [(width, width), (width, width), (0, 0)]
  framed = np.pad(videos, pad)  # [..., T, H + 2w, W + 2w, 3]
  colors = np.array([CONDITIONING_COLOR] * num_conditioning + [GENERATED_COLOR] * (length - num_conditioning),
                    np.uint8)  # [T, 3]
  mask = np.ones(framed.shape[-3:-1], bool)
  mask[width:framed.shape[-3] - width, width:framed.shape[-2] - width] = False  # [H', W']: the border ring
  framed[..., mask, :] = np.broadcast_to(colors[:, None, :], framed[..., mask, :].shape)
  return framed


def write_png(path: str | os.PathLike, image: Any) -> None:
  """Writes a uint8 [H, W, C] image (C = 1 or 3) as PNG, creating its directory."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"image must be uint8 [H, W, C] with C in (1, 3), got {image.dtype} {image.shape}")
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")


def frame_grid(videos: Any, padding: int = 1, pad_value: int = 255) -> np.ndarray:
  """N videos [N, T, H, W, C] -> one image [N*(H+p)-p, T*(W+p)-p, C]: a row per video, a column per frame."""
  videos = np.asarray(videos)
  if videos.ndim != 5:
    raise ValueError(f"videos must be [N, T, H, W, C], got shape {videos.shape}")
  num, length = videos.shape[:2]
  frames = videos.reshape((num * length, 1) + videos.shape[2:])  # [N*T, 1, H, W, C]: each frame a 1-frame video
  return tile_videos(frames, columns=length, padding=padding, pad_value=pad_value)[0]
