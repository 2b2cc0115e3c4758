"""Tests of t2v.video_io's MP4 writer and video reader: round trips through H.264, GIF, AVI, MOV and WebM, and
every kind of bad input. Videos are a few frames of 32x32 or smaller, so the whole file runs in seconds."""

from __future__ import annotations

import io
import os

import av
import numpy as np
import pytest

from t2v import video_io


def smooth_video(num_frames: int, height: int, width: int) -> np.ndarray:
  """Colourful sinusoids drifting a pixel or two per frame: uint8 [T, H, W, 3], easy for any codec."""
  t = np.arange(num_frames)[:, None, None]
  y = np.arange(height)[None, :, None]
  x = np.arange(width)[None, None, :]
  channels = np.broadcast_arrays(128 + 100 * np.sin((x + 2 * t) / 5.0), 128 + 100 * np.cos((y - t) / 6.0),
                                 128 + 80 * np.sin((x + y) / 7.0 + t))
  return np.stack(channels, axis=-1).astype(np.uint8)  # [T, H, W, 3]


def write_with_pyav(path: str, frames: np.ndarray, codec: str, fps: int = 4) -> None:
  """Writes RGB frames [T, H, W, 3] with PyAV in the container named by path's extension."""
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


def undo_upscale(decoded: np.ndarray, height: int, width: int) -> np.ndarray:
  """Averages each k x k block of an encode_mp4 video back to one pixel: float [T, H, W, 3]."""
  factor, _, _ = video_io.mp4_upscale(height, width)
  kept = decoded[:, :factor * height, :factor * width].astype(np.float64)
  return kept.reshape(len(decoded), height, factor, width, factor, 3).mean(axis=(2, 4))


def test_mp4_round_trip_is_h264_yuv420p_and_close():
  video = smooth_video(6, 32, 24)
  data = video_io.encode_mp4(video, fps=4)
  factor, height, width = video_io.mp4_upscale(32, 24)
  assert (factor, height, width) == (6, 192, 144)  # the short side 24 -> 144 >= 128
  with av.open(io.BytesIO(data)) as container:  # what browsers and QuickTime need
    stream = container.streams.video[0]
    assert container.format.name.startswith("mov,mp4")
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert stream.average_rate == 4
  decoded = video_io.read_video(data)
  assert decoded.shape == (6, 192, 144, 3) and decoded.dtype == np.uint8
  assert np.abs(undo_upscale(decoded, 32, 24) - video).mean() < 8


def test_mp4_grey_odd_sizes_and_large_frames(tmp_path):
  grey = smooth_video(3, 21, 33)[..., :1]  # [T, 21, 33, 1]
  path = tmp_path / "nested" / "grey.mp4"
  video_io.write_mp4(path, grey, fps=2.5)  # creates the directory
  factor, height, width = video_io.mp4_upscale(21, 33)
  assert (factor, height, width) == (7, 148, 232)  # 147 x 231, padded to even
  decoded = video_io.read_video(path)
  assert decoded.shape == (3, 148, 232, 3)
  assert np.abs(undo_upscale(decoded, 21, 33) - grey).mean() < 8  # grey in, equal RGB channels out
  np.testing.assert_allclose(decoded[:, 147], decoded[:, 146], atol=8)  # the padding repeats the last row
  with av.open(os.fspath(path)) as container:
    assert container.streams.video[0].average_rate == 2.5
  big = smooth_video(2, 131, 200)
  assert video_io.mp4_upscale(131, 200) == (1, 132, 200)  # no enlarging, one row of padding
  assert video_io.read_video(video_io.encode_mp4(big, fps=4)).shape == (2, 132, 200, 3)


def test_gif_reads_back_exactly_and_max_frames(tmp_path):
  video = np.zeros([5, 16, 20, 3], np.uint8)  # few colours: the GIF palette is exact
  for t in range(5):
    video[t, :, 4 * t:4 * t + 4] = (255, 0, 0)
    video[t, 8:, :, 2] = 200
  path = tmp_path / "clip.gif"
  video_io.write_gif(path, video, fps=4)
  np.testing.assert_array_equal(video_io.read_video(path), video)
  np.testing.assert_array_equal(video_io.read_video(path.read_bytes(), max_frames=2), video[:2])


@pytest.mark.parametrize("filename,codec", [("clip.avi", "mpeg4"), ("clip_mjpeg.avi", "mjpeg"),
                                            ("clip.mov", "mpeg4"), ("clip.webm", "libvpx")])
def test_other_containers_read_back(tmp_path, filename, codec):
  video = smooth_video(7, 32, 32)
  path = str(tmp_path / filename)
  write_with_pyav(path, video, codec)
  decoded = video_io.read_video(path)
  assert decoded.shape == (7, 32, 32, 3) and decoded.dtype == np.uint8
  assert np.abs(decoded.astype(float) - video).mean() < 12  # lossy codecs at their default quality
  assert video_io.read_video(path, max_frames=3).shape == (3, 32, 32, 3)


def test_bad_input(tmp_path):
  with pytest.raises(FileNotFoundError, match="no video file at .*missing.mp4"):
    video_io.read_video(tmp_path / "missing.mp4")
  with pytest.raises(video_io.VideoReadError, match="is not a file"):
    video_io.read_video(tmp_path)
  text = tmp_path / "notes.mp4"
  text.write_text("not a video at all")
  with pytest.raises(video_io.VideoReadError, match=r"notes.mp4 is not a video FFmpeg can read"):
    video_io.read_video(text)
  with pytest.raises(video_io.VideoReadError, match=r"<5 bytes of video data> is not a video"):
    video_io.read_video(b"hello")
  audio = str(tmp_path / "sound.wav")
  with av.open(audio, mode="w") as container:  # a container whose only stream is audio
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros([1, 800], np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    container.mux(stream.encode(frame))
    container.mux(stream.encode())
  with pytest.raises(video_io.VideoReadError, match=r"sound.wav holds no video stream \(its streams: audio"):
    video_io.read_video(audio)
  empty = str(tmp_path / "empty.avi")
  with av.open(empty, mode="w") as container:  # a video stream with no frames
    stream = container.add_stream("mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
  with pytest.raises(video_io.VideoReadError, match="empty.avi has a video stream but no frames"):
    video_io.read_video(empty)
  with pytest.raises(ValueError, match="max_frames=0"):
    video_io.read_video(text, max_frames=0)
  with pytest.raises(ValueError, match="uint8"):
    video_io.encode_mp4(np.zeros([2, 8, 8, 3], np.float32))
  with pytest.raises(ValueError, match="fps=0"):
    video_io.encode_mp4(np.zeros([2, 8, 8, 3], np.uint8), fps=0)
