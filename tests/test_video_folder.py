"""Tests of the video_folder problem: tiny mp4/avi/gif videos written here with PyAV and Pillow, prepared into a
tmp data_dir and read back through the pipeline; the split-folder layout, captions.json, the config string's
round trip, and every missing-data and bad-config error. Sockets are blocked: nothing may reach the network."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds

from t2v import registry
from t2v import video_io
from t2v.problems import base
from t2v.problems import video_folder as vf
from t2v.problems.video_folder import VideoFolder, VideoFolderConfig

NUM_FRAMES, STRIDE, SIZE = 4, 2, 16  # clips use frames 0, 2, 4, 6: videos need 7 frames
CONFIG = f"frame_size={SIZE},num_frames={NUM_FRAMES},frame_stride={STRIDE},test_fraction=0.5"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
  """Any Python-level connection attempt fails at once."""

  def refuse(*args, **kwargs):
    raise OSError("network access attempted in a video_folder test")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


def ramp_video(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
  """A smooth random colour field brightening by 20 grey levels a frame: uint8 [T, H, W, 3]."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(20, 80, [1, 3, 3, 3])
  field = np.kron(coarse, np.ones([1, -(-height // 3), -(-width // 3), 1]))[:, :height, :width]  # [1, H, W, 3]
  return (field + 20 * np.arange(num_frames)[:, None, None, None]).astype(np.uint8)  # [T, H, W, 3]


def write_video(path: str, frames: np.ndarray) -> None:
  """Writes frames as the container path's extension says: gif (Pillow), mp4 (libx264) or avi (mpeg4)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.endswith(".gif"):
    video_io.write_gif(path, frames, fps=4)
    return
  with av.open(path, mode="w") as container:
    stream = container.add_stream("libx264" if path.endswith(".mp4") else "mpeg4", rate=4)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


# The flat layout. With test_fraction=0.5 the path hash holds out the two "test" videos (asserted below).
FLAT_VIDEOS = {  # relative path -> (split, frames, height, width)
    "playing_guitar/c.gif": ("train", 8, 32, 32),
    "playing_guitar/g.mp4": ("train", 8, 24, 40),
    "playing_guitar/b.avi": ("test", 8, 40, 24),
    "jumping-jacks/a.mp4": ("train", 9, 32, 48),
    "jumping-jacks/e.avi": ("train", 7, 16, 16),
    "jumping-jacks/g.mp4": ("test", 8, 16, 16),
    "playing_guitar/short.avi": ("train", 5, 16, 16),  # 5 < 7 frames: skipped
}


def make_flat_root(root: str) -> None:
  for index, (relative, (split, length, height, width)) in enumerate(FLAT_VIDEOS.items()):
    assert vf._held_out(relative, 0.5) == (split == "test"), relative  # the hash the layout relies on
    write_video(os.path.join(root, relative), ramp_video(length, height, width, seed=index))
  with open(os.path.join(root, "playing_guitar", "broken.mp4"), "w") as f:  # unreadable: skipped
    f.write("not a video")
  with open(os.path.join(root, "playing_guitar", "notes.txt"), "w") as f:  # not a video extension: ignored
    f.write("ignored")
  os.makedirs(os.path.join(root, "empty_label"))  # no video: not a label
  os.makedirs(os.path.join(root, ".hidden"))


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> VideoFolder:
  root = str(tmp_path_factory.mktemp("videos"))
  make_flat_root(root)
  problem = VideoFolder(str(tmp_path_factory.mktemp("tfds")), config=f"root={root},{CONFIG}")
  problem.prepare()
  return problem


def read_split(problem: VideoFolder, split: str) -> dict[str, np.ndarray]:
  parts: dict[str, list[np.ndarray]] = {}
  for batch in problem.dataset(split, batch_size=3, training=False):
    for key, value in batch.items():
      parts.setdefault(key, []).append(value.numpy())
  return {key: np.concatenate(values) for key, values in parts.items()}


def test_flat_layout_spec_and_pipeline(flat):
  spec = flat.spec()
  assert spec.frame_shape == (SIZE, SIZE, 3) and spec.num_input_frames == 1 and spec.num_target_frames == 3
  assert spec.num_labels == 2 and spec.has_caption
  assert spec.label_captions == ("jumping jacks", "playing guitar")  # sorted folders, '-' and '_' as spaces
  assert spec.vocabulary == ("guitar", "jacks", "jumping", "playing")
  assert flat.tfds_splits == ("train", "test") and flat.eval_split == "test"
  for split in ("train", "test"):
    data = read_split(flat, split)
    expected = sorted(path for path, (s, length, _, _) in FLAT_VIDEOS.items() if s == split and length >= 7)
    filenames = [name.decode() for name in data["filename"]]
    assert sorted(filenames) == expected
    assert data["video"].shape == (len(expected), NUM_FRAMES, SIZE, SIZE, 3) and data["video"].dtype == np.uint8
    for name, label, caption in zip(filenames, data["label"], data["caption"]):
      folder = name.split("/")[0]
      assert label == ["jumping-jacks", "playing_guitar"].index(folder)
      assert caption.decode() == vf.default_caption(folder)
  # The GIF is lossless: the stored clip is frames 0, 2, 4, 6 halved (32 -> 16), exactly what clip_from_video
  # makes, and each frame is 2x2 block averages of its source frame (within the bilinear filter's weights).
  train = read_split(flat, "train")
  gif = list(train["filename"]).index(b"playing_guitar/c.gif")
  source = video_io.read_video(os.path.join(flat.config.root, "playing_guitar/c.gif"))
  np.testing.assert_array_equal(train["video"][gif], vf.clip_from_video(source, flat.config))
  blocks = source[0:7:2].reshape(4, 16, 2, 16, 2, 3).mean(axis=(2, 4))
  assert np.abs(train["video"][gif] - blocks).mean() < 4  # a wrong stride would be >= 20 grey levels off
  # Training windows: random 2-frame windows of shuffled clips, with labels and captions.
  batch = next(iter(flat.dataset("train", batch_size=2, num_frames=2, training=True, seed=0)))
  assert batch["video"].shape == (2, 2, SIZE, SIZE, 3) and batch["label"].shape == (2,)
  assert batch["caption"].shape == (2,)


def test_centre_crop_and_skip_counts(flat):
  wide = np.zeros([7, 24, 40, 3], np.uint8)  # left and right 8 columns red and blue, the centre square green
  wide[:, :, :8, 0] = 255
  wide[:, :, 8:32, 1] = 255
  wide[:, :, 32:, 2] = 255
  clip = vf.clip_from_video(wide, flat.config)
  assert clip.shape == (NUM_FRAMES, SIZE, SIZE, 3)
  np.testing.assert_array_equal(clip, np.broadcast_to(np.array([0, 255, 0], np.uint8), clip.shape))
  assert vf.clip_from_video(wide[:6], flat.config) is None  # 6 < (4 - 1) * 2 + 1 frames
  metadata = flat.builder().info.metadata
  assert metadata["skipped"] == {"train": {"too_short": 1, "unreadable": 1}, "test": {"too_short": 0,
                                                                                    "unreadable": 0}}


def test_prepared_data_needs_no_root(flat, tmp_path):
  """Restoring a run reads labels, captions and clips from data_dir even when ROOT is gone."""
  root = str(tmp_path / "copy")
  shutil.copytree(flat.config.root, root)
  prepared = VideoFolder(flat.data_dir, config=f"root={root},{CONFIG}")
  prepared.prepare()
  shutil.rmtree(root)
  again = VideoFolder(flat.data_dir, config=prepared.config.name)
  assert again.is_prepared() and again.spec() == flat.spec()
  assert read_split(again, "test")["video"].shape[0] == 2


def test_split_folders_layout(tmp_path, caplog):
  root = tmp_path / "mit"
  for relative, length in (("training/bowing/x.mp4", 8), ("training/bowing/y.gif", 8),
                           ("training/clapping/z.avi", 8), ("training/clapping/too_short.gif", 3),
                           ("validation/clapping/v.mp4", 8), ("validation/bowing/w.gif", 8)):
    write_video(str(root / relative), ramp_video(length, 16, 16, seed=length))
  problem = VideoFolder(str(tmp_path / "tfds"), config=f"root={root},{CONFIG}")
  assert problem.tfds_splits == ("train", "validation") and problem.eval_split == "validation"
  with caplog.at_level(logging.WARNING):
    problem.prepare()
  assert "skipped 1 of 4 videos with fewer than 7 frames" in caplog.text
  assert problem.spec().label_captions == ("bowing", "clapping")
  assert problem.builder().info.features["label"].names == ["bowing", "clapping"]
  data = read_split(problem, "validation")
  assert sorted(data["filename"]) == [b"validation/bowing/w.gif", b"validation/clapping/v.mp4"]
  assert sorted(read_split(problem, "train")["filename"]) == [
      b"training/bowing/x.mp4", b"training/bowing/y.gif", b"training/clapping/z.avi"]
  with pytest.raises(ValueError, match="unknown split 'test'.*'train', 'validation'"):
    problem.dataset("test", batch_size=1, training=False)
  # train/test folders; then the layouts refused.
  other = tmp_path / "tt"
  write_video(str(other / "train" / "a" / "1.gif"), ramp_video(8, 16, 16, 0))
  write_video(str(other / "test" / "a" / "2.gif"), ramp_video(8, 16, 16, 1))
  assert VideoFolder(str(tmp_path / "tfds"), config=f"root={other}").tfds_splits == ("train", "test")
  os.makedirs(other / "dancing")
  with pytest.raises(ValueError, match=r"mixes split folders \(test, train\) with other folders \(dancing\)"):
    VideoFolder(str(tmp_path / "tfds"), config=f"root={other}").spec()
  os.rmdir(other / "dancing")
  os.makedirs(other / "training")
  with pytest.raises(ValueError, match="both 'train' and 'training'"):
    VideoFolder(str(tmp_path / "tfds"), config=f"root={other}").spec()
  shutil.rmtree(other / "train")
  shutil.rmtree(other / "training")
  with pytest.raises(ValueError, match="no training split"):
    VideoFolder(str(tmp_path / "tfds"), config=f"root={other}").spec()


def test_captions_json(tmp_path):
  root = tmp_path / "videos"
  for label in ("playing_guitar", "jumping-jacks"):
    for name in ("a.gif", "e.gif", "g.gif"):
      write_video(str(root / label / name), ramp_video(8, 16, 16, 0))
  (root / "captions.json").write_text(json.dumps({"playing_guitar": "A person strums a guitar",
                                                  "unknown_label": "ignored, with a warning"}))
  problem = VideoFolder(str(tmp_path / "tfds"), config=f"root={root},{CONFIG}")
  assert problem.label_captions == ("jumping jacks", "A person strums a guitar")
  assert problem.vocabulary == ("a", "guitar", "jacks", "jumping", "person", "strums")
  problem.prepare()
  captions = {name.decode(): caption.decode() for split in ("train", "test")
              for name, caption in zip(*(read_split(problem, split)[key] for key in ("filename", "caption")))}
  assert len(captions) == 6
  assert captions["playing_guitar/e.gif"] == "A person strums a guitar"
  assert captions["jumping-jacks/a.gif"] == "jumping jacks"
  assert VideoFolder(problem.data_dir, config=problem.config.name).label_captions == problem.label_captions
  (root / "captions.json").write_text("{not json")
  with pytest.raises(ValueError, match="captions.json is not valid JSON"):
    VideoFolder(str(tmp_path / "other"), config=f"root={root}").spec()
  (root / "captions.json").write_text(json.dumps({"jumping-jacks": "!!!"}))
  with pytest.raises(ValueError, match="label 'jumping-jacks' has the caption '!!!', which has no words"):
    VideoFolder(str(tmp_path / "other"), config=f"root={root}").spec()
  (root / "captions.json").write_text(json.dumps(["a list"]))
  with pytest.raises(ValueError, match="must hold one JSON object"):
    VideoFolder(str(tmp_path / "other"), config=f"root={root}").spec()


def test_config_string_round_trip(tmp_path):
  from t2v.trainer.lib import _problem_config_name  # pylint: disable=import-outside-toplevel
  assert registry.problem("video_folder") is VideoFolder
  problem = VideoFolder(str(tmp_path), config=f" num_frames=8 , root={tmp_path}/videos,input_frames=2")
  config = problem.config
  assert config == VideoFolderConfig(root=f"{tmp_path}/videos", num_frames=8, input_frames=2)
  assert config.name == (f"root={tmp_path}/videos,frame_size=64,num_frames=8,frame_stride=1,input_frames=2,"
                         "test_fraction=0.1")
  recorded = _problem_config_name(problem)  # what the trainer writes into config.json
  assert recorded == config.name and VideoFolder(str(tmp_path), config=recorded).config == config
  assert problem.num_input_frames == 2 and problem.num_target_frames == 6
  assert VideoFolderConfig.parse("root=~/v").root == os.path.expanduser("~/v")  # absolute, so runs agree
  assert VideoFolderConfig.parse("root=rel").root == os.path.abspath("rel")
  # The TFDS directory name is safe and ignores input_frames (the stored clips are the same).
  assert config.tfds_config_name.startswith("vf_") and tfds.core.naming.is_valid_dataset_name(
      config.tfds_config_name)
  same_data = VideoFolderConfig.parse(f"root={tmp_path}/videos,num_frames=8")
  assert same_data.tfds_config_name == config.tfds_config_name
  assert VideoFolderConfig.parse(f"root={tmp_path}/videos").tfds_config_name != config.tfds_config_name


@pytest.mark.parametrize("config,message", [
    ("root=/v,fps=3", r"'fps=3' .* is not one of the keys root \(a string, required\), frame_size"),
    ("root=/v,frame_size", r"'frame_size' .* is not one of the keys"),
    ("root=/v,frame_size=sixty", r"frame_size='sixty' .* must be an integer, e.g. frame_size=64"),
    ("root=/v,num_frames=2.5", r"num_frames='2.5' .* must be an integer"),
    ("root=/v,test_fraction=half", r"test_fraction='half' .* must be a number"),
    ("frame_size=64", r"has no root; give root=<folder"),
    ("root=/v,root=/w", r"key 'root' is given twice"),
    ("root=/v,num_frames=4,input_frames=4", r"input_frames=4 must be in 0..3"),
    ("root=/v,num_frames=1", r"num_frames=1 .* must be >= 8, >= 2 and >= 1"),
    ("root=/v,test_fraction=1", r"test_fraction=1.0 must be in \(0, 1\)"),
    ("root=", r"root='' must name the folder"),
])
def test_bad_config(config, message):
  with pytest.raises(ValueError, match=message):
    VideoFolder(None, config=config)


def test_bad_config_objects():
  with pytest.raises(ValueError, match="needs a config naming the videos' folder"):
    VideoFolder(None)
  with pytest.raises(ValueError, match="contains ','"):
    VideoFolderConfig(root="/a,b")
  with pytest.raises(ValueError, match="frame_size='64' must be an integer"):
    VideoFolderConfig(root="/v", frame_size="64")


def test_missing_or_empty_root(tmp_path):
  missing = VideoFolder(str(tmp_path / "tfds"), config=f"root={tmp_path}/nowhere")
  for call in (missing.spec, missing.prepare,
               lambda: missing.dataset("train", batch_size=1, training=False)):
    with pytest.raises(base.DataNotFoundError, match=f"root {tmp_path}/nowhere does not exist; pass root="):
      call()
  empty = tmp_path / "empty"
  os.makedirs(empty / "label")
  (empty / "label" / "readme.txt").write_text("no videos here")
  with pytest.raises(base.DataNotFoundError, match="holds no label folder with a video in it"):
    VideoFolder(str(tmp_path / "tfds"), config=f"root={empty}").prepare()
  # Every video of the held-out split too short: prepare fails and leaves nothing prepared.
  short = tmp_path / "short"
  write_video(str(short / "jumping-jacks" / "c.gif"), ramp_video(8, 16, 16, 0))  # train at test_fraction=0.5
  write_video(str(short / "jumping-jacks" / "short.avi"), ramp_video(3, 16, 16, 0))  # test at test_fraction=0.5
  assert vf._held_out("jumping-jacks/short.avi", 0.5) and not vf._held_out("jumping-jacks/c.gif", 0.5)
  problem = VideoFolder(str(tmp_path / "tfds"), config=f"root={short},{CONFIG}")
  with pytest.raises(base.DataNotFoundError, match=r"split 'test' of .* has no usable clip \(1 videos: 1 shorter"):
    problem.prepare()
  assert not problem.is_prepared()
  with pytest.raises(base.DataNotFoundError, match=r"is not prepared .* VideoFolder\(data_dir, config="):
    problem.dataset("train", batch_size=1, training=False)
