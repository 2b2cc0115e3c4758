"""Videos as files: GIF (Pillow) and H.264 MP4 (PyAV) encoding, decoding any container, and grid helpers.

    frames = np.zeros([10, 64, 64, 3], np.uint8)           # uint8 [T, H, W, C], C = 1 (grey) or 3 (RGB)
    data = encode_gif(frames, fps=4)                        # bytes of an animated GIF that loops forever
    grid = tile_videos(np.stack([real, fake]), columns=2)   # [T, H', W', C]: videos side by side
    write_gif("samples/step_100.gif", grid, fps=4)
    write_mp4("samples/step_100.mp4", grid, fps=4)          # H.264, upscaled so players show sharp pixels
    video = read_video("clip.avi", max_frames=16)           # uint8 [T, H, W, 3] from mp4/avi/gif/webm/mov/...

PyAV is t2v's one video-container library: its wheel bundles FFmpeg (with libx264), so nothing needs a system
ffmpeg. Nothing here imports TensorFlow: frames are NumPy arrays (a tf.Tensor is converted with np.asarray).
"""

from __future__ import annotations

import fractions
import io
import os
from typing import Any

import av
from av.video.reformatter import Colorspace
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


# ---- MP4 (H.264) ---------------------------------------------------------------------------------------

# H.264 in yuv420p (colour stored at half resolution in both axes) is what every browser and QuickTime play, and
# it needs even frame sizes. Players smooth small videos when they scale them up, so frames are first enlarged by
# an integer nearest-neighbour factor until the short side has at least this many pixels.
MP4_MIN_SHORT_SIDE = 128
# x264's constant rate factor: 0 is lossless, 23 its default; 18 keeps 1-pixel borders and flat colours crisp.
_MP4_CRF = 18
# FFmpeg's code for BT.709 (as primaries, transfer and matrix) and for limited ("MPEG", 16..235) range. Written
# into the stream so players convert back to RGB with the matrix the frames were converted with, not a guess.
_BT709 = 1
_LIMITED_RANGE = 1
# Frame rates are stored as fractions; 1001 keeps NTSC rates such as 30000/1001 exact.
_MAX_FPS_DENOMINATOR = 1001


def mp4_upscale(height: int, width: int) -> tuple[int, int, int]:
  """How encode_mp4 enlarges [H, W] frames: (k, H', W').

  k is the least integer >= 1 with k * min(H, W) >= MP4_MIN_SHORT_SIDE (1 for frames that large already); each
  pixel becomes a k x k block, then the bottom and right edges are repeated to even sizes H' >= k * H and
  W' >= k * W. `decoded[:, :k * H, :k * W]` reshaped to [T, H, k, W, k, 3] and averaged over the k axes undoes it.
  """
  if height < 1 or width < 1:
    raise ValueError(f"frame size {height}x{width} must be positive")
  factor = max(1, -(-MP4_MIN_SHORT_SIDE // min(height, width)))
  return factor, factor * height + (factor * height) % 2, factor * width + (factor * width) % 2


def encode_mp4(frames: Any, fps: float = 4.0) -> bytes:
  """Encodes uint8 [T, H, W, C] frames (C = 1 grey, C = 3 RGB) as an H.264 MP4 that browsers and QuickTime play.

  Frames are enlarged and padded as `mp4_upscale` says (a 32x32 clip becomes 128x128), converted to BT.709
  limited-range yuv420p (tagged so), and encoded by libx264 at CRF 18 (close to lossless for flat synthetic
  frames; expect a mean absolute error of a few grey levels on natural ones). The file is built in memory with
  its index at the end (FFmpeg's faststart needs a second pass over a real file), which players read whole.
  """
  frames = _as_frames(frames)
  if not (np.isfinite(fps) and fps > 0):
    raise ValueError(f"fps={fps} must be a positive finite number of frames per second")
  rate = fractions.Fraction(fps).limit_denominator(_MAX_FPS_DENOMINATOR)
  if rate <= 0:
    raise ValueError(f"fps={fps} is too small to store as a frame rate (it rounds to 0); use at least "
                     f"1/{_MAX_FPS_DENOMINATOR}")
  _, height, width, _ = frames.shape
  factor, out_height, out_width = mp4_upscale(height, width)
  buffer = io.BytesIO()
  with av.open(buffer, mode="w", format="mp4") as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = out_width, out_height, "yuv420p"
    stream.options = {"crf": str(_MP4_CRF)}
    codec = stream.codec_context
    codec.colorspace = codec.color_primaries = codec.color_trc = _BT709
    codec.color_range = _LIMITED_RANGE
    for index, frame in enumerate(frames):
      frame = np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)  # [kH, kW, C]
      frame = np.pad(frame, [(0, out_height - frame.shape[0]), (0, out_width - frame.shape[1]), (0, 0)],
                     mode="edge")  # [H', W', C]
      if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
      picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(
          format="yuv420p", src_colorspace=Colorspace.ITU709, dst_colorspace=Colorspace.ITU709)
      picture.pts = index
      picture.time_base = 1 / rate
      container.mux(stream.encode(picture))
    container.mux(stream.encode())  # flush the frames x264 holds back for B-frame decisions
  return buffer.getvalue()


def write_mp4(path: str | os.PathLike, frames: Any, fps: float = 4.0) -> None:
  """Writes `encode_mp4(frames, fps)` to `path`, creating its directory."""
  data = encode_mp4(frames, fps)
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


# ---- reading any container -----------------------------------------------------------------------------

class VideoReadError(ValueError):
  """A file or byte string that FFmpeg cannot read as video; the message names it and says what was wrong."""


def read_video(path_or_bytes: str | os.PathLike | bytes, *, max_frames: int | None = None) -> np.ndarray:
  """Decodes the first video stream of any container FFmpeg reads (mp4, avi, gif, webm, mov, ...) to RGB.

  Args:
    path_or_bytes: a file path, or the file's contents as bytes.
    max_frames: stop after this many frames (>= 1), decoding no further; None decodes every frame.

  Returns:
    uint8 [T, H, W, 3], H and W those of the first frame (later frames of another size are resized to it).
    Rotation metadata (phone videos) is not applied.

  Raises:
    FileNotFoundError: no file at the path.
    VideoReadError: the data is not a container FFmpeg can read, holds no video stream, fails to decode, or has
      no frames.
  """
  if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
    raise ValueError(f"max_frames={max_frames!r} must be an integer >= 1 or None (every frame)")
  if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
    name = f"<{len(path_or_bytes)} bytes of video data>"
    source: Any = io.BytesIO(bytes(path_or_bytes))
  else:
    name = os.fspath(path_or_bytes)
    if not os.path.exists(name):
      raise FileNotFoundError(f"no video file at {name!r}; check the path")
    if not os.path.isfile(name):
      raise VideoReadError(f"{name!r} is not a file (a directory?); pass the path of a video file")
    source = name
  try:
    container = av.open(source, mode="r")
  except av.error.FFmpegError as e:
    raise VideoReadError(f"{name} is not a video FFmpeg can read ({e.strerror or e}); expected a container such as "
                         "mp4, avi, gif, webm or mov") from e
  frames = []
  with container:
    if not container.streams.video:
      kinds = sorted({stream.type for stream in container.streams}) or ["none"]
      raise VideoReadError(f"{name} holds no video stream (its streams: {', '.join(kinds)}; container "
                           f"{container.format.name!r})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
      for frame in container.decode(stream):
        if frames and (frame.height, frame.width) != frames[0].shape[:2]:
          frame = frame.reformat(width=frames[0].shape[1], height=frames[0].shape[0])
        frames.append(frame.to_ndarray(format="rgb24"))  # [H, W, 3]
        if max_frames is not None and len(frames) >= max_frames:
          break
    except av.error.FFmpegError as e:
      raise VideoReadError(f"{name}: decoding failed after {len(frames)} frames ({e.strerror or e}); the file "
                           "may be truncated or corrupt") from e
  if not frames:
    raise VideoReadError(f"{name} has a video stream but no frames could be decoded from it")
  return np.stack(frames)  # [T, H, W, 3]


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
