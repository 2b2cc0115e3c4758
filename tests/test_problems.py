"""Tests of t2v.problems: pipelines, determinism, ground truth, offline errors and raw-format parsing.

Every dataset lives in a pytest tmp dir; nothing is downloaded: sockets are blocked in every test, BAIR and
Moving MNIST are read through `tfds.testing.mock_data` or prepared from raw files written here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from t2v import registry
from t2v.problems import base
from t2v.problems import bair as bair_lib
from t2v.problems import stochastic_shapes as shapes_lib
from t2v.problems.bair import Bair
from t2v.problems.moving_mnist import MovingMnist
from t2v.problems.stochastic_shapes import StochasticShapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
  """Any Python-level connection attempt fails at once instead of retrying for minutes."""

  def refuse(*args, **kwargs):
    raise OSError("network access attempted in a t2v problems test")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> str:
  """A data_dir holding the "tiny" stochastic shapes config (64 train / 16 test videos)."""
  data_dir = str(tmp_path_factory.mktemp("tfds_shapes"))
  StochasticShapes(data_dir, config="tiny").prepare()
  return data_dir


@pytest.fixture(scope="session")
def mock_metadata_dir(tmp_path_factory) -> str:
  """TFDS metadata (dataset_info.json, no records) for moving_mnist and BAIR, for mock_data(USE_FILES)."""
  data_dir = str(tmp_path_factory.mktemp("tfds_metadata"))
  for name, splits in (("moving_mnist", {"test": 10}), ("bair_robot_pushing_small", {"train": 8, "test": 4})):
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict(
        [tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0) for split, n in splits.items()]))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)
  return data_dir


def _mock(data_dir: str, num_examples: int = 6):
  return tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=data_dir)


def _batches(ds: tf.data.Dataset, n: int) -> list[dict[str, np.ndarray]]:
  return [{k: v.numpy() for k, v in batch.items()} for batch in ds.take(n)]


def _concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _digest(batches: list[dict[str, np.ndarray]]) -> str:
  h = hashlib.sha256()
  for batch in batches:
    for key in sorted(batch):
      h.update(key.encode())
      h.update(batch[key].tobytes())
  return h.hexdigest()


# ---- stochastic shapes -------------------------------------------------------------------------------

def test_shapes_spec_and_registry():
  problem = registry.problem("stochastic_shapes")()
  assert problem.spec() == base.VideoSpec((64, 64, 3), num_input_frames=1, num_target_frames=4)
  assert problem.num_frames == 5 and (problem.train_split, problem.eval_split) == ("train", "test")
  small = StochasticShapes(config="tiny32")
  assert small.frame_shape == (32, 32, 3) and small.spec().num_frames == 5


def test_shapes_elements_shapes_and_dtypes(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  batch = _batches(problem.dataset("train", batch_size=4, num_frames=3, training=True), 1)[0]
  expected = {"video": (np.uint8, (4, 3, 64, 64, 3)), "shape": (np.int32, (4,)), "color": (np.int32, (4,)),
              "color_rgb": (np.uint8, (4, 3)), "size": (np.int32, (4,)), "direction": (np.int32, (4,)),
              "positions": (np.float32, (4, 3, 2)), "speed": (np.float32, (4,))}
  assert {k: (v.dtype.type, v.shape) for k, v in batch.items()} == expected
  assert "label" not in batch


def test_shapes_eval_is_one_ordered_pass_from_frame_zero(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  full = _batches(problem.dataset("test", batch_size=5, training=False), 100)
  assert [b["video"].shape[0] for b in full] == [5, 5, 5, 1]  # 16 videos, last batch kept
  again = _batches(problem.dataset("test", batch_size=5, training=False), 100)
  assert _digest(full) == _digest(again)
  first3 = _concat(_batches(problem.dataset("test", batch_size=16, num_frames=3, training=False), 1))
  full = _concat(full)
  np.testing.assert_array_equal(first3["video"], full["video"][:, :3])
  np.testing.assert_array_equal(first3["positions"], full["positions"][:, :3])
  dropped = _batches(problem.dataset("test", batch_size=5, training=False, drop_remainder=True), 100)
  assert len(dropped) == 3


def test_shapes_ground_truth_matches_pixels(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  data = _concat(_batches(problem.dataset("test", batch_size=16, training=False), 1))
  palette = np.array(list(shapes_lib.COLORS.values()), np.uint8)
  sizes = shapes_lib.CONFIGS["tiny"].sizes
  for i in range(16):
    video, positions = data["video"][i], data["positions"][i]  # [T, H, W, 3], [T, 2]
    color, size, speed = data["color_rgb"][i], int(data["size"][i]), float(data["speed"][i])
    np.testing.assert_array_equal(color, palette[data["color"][i]])
    assert size in sizes and speed == 4.0
    # The centre moves by speed * unit(direction) each frame and the shape stays inside the frame.
    unit = np.array(list(shapes_lib.DIRECTIONS.values()))[data["direction"][i]]
    np.testing.assert_allclose(np.diff(positions, axis=0), np.tile(speed * unit, (4, 1)), atol=1e-4)
    assert positions.min() - size >= 0 and positions.max() + size <= 63
    for t in range(5):
      y, x = np.round(positions[t]).astype(int)
      np.testing.assert_array_equal(video[t, y, x], color)  # the colour at the recorded centre
      painted = np.all(video[t] == color, axis=-1)
      assert np.all(video[t][~painted] == shapes_lib.BACKGROUND)  # everything else is grey
      rows, cols = np.nonzero(painted)
      # The painted pixels' bounding box is centred on the recorded position (within a pixel).
      np.testing.assert_allclose([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2], positions[t],
                                 atol=1.0)
    # The stored video is exactly the pure renderer's output for the recorded ground truth.
    rendered = shapes_lib.render_video(int(data["shape"][i]), color, size, int(data["direction"][i]),
                                       tuple(positions[0]), speed, 5, 64)
    np.testing.assert_array_equal(video, rendered)


def test_render_video_shapes():
  # Size 2 at (10, 10): the square is a 5x5 block; circle and triangle cover 13 of its pixels, differently.
  masks = {s: np.all(shapes_lib.render_video(s, (255, 0, 0), 2, "E", (10, 10), 3.0, 2, 24)[0] != 128, -1)
           for s in shapes_lib.SHAPES}
  assert masks["square"].sum() == 25 and masks["square"][8:13, 8:13].all()
  assert masks["circle"].sum() == 13 and masks["triangle"].sum() == 13
  assert not np.array_equal(masks["circle"], masks["triangle"]) and not (masks["circle"] & ~masks["square"]).any()
  assert masks["triangle"][8, 10] and not masks["triangle"][8, 9] and masks["triangle"][12, 8:13].all()
  moved = shapes_lib.render_video("square", (255, 0, 0), 2, "E", (10, 10), 3.0, 2, 24)[1]
  assert np.all(moved[8:13, 11:16] == (255, 0, 0))
  with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
    shapes_lib.render_video("hexagon", (255, 0, 0), 2, "E", (10, 10), 3.0, 2, 24)


def test_shapes_training_windows_vary_and_match_the_clips(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  clips = _concat(_batches(problem.dataset("train", batch_size=64, training=False), 1))
  windows = _concat(_batches(problem.dataset("train", batch_size=8, num_frames=3, training=True, seed=3), 12))
  starts = []
  for i in range(len(windows["video"])):
    # Find the clip and start this window was cut from; its frames must match that cut exactly.
    matches = [(j, s) for j in range(64) for s in range(3)
               if np.array_equal(clips["positions"][j, s:s + 3], windows["positions"][i])
               and clips["shape"][j] == windows["shape"][i] and clips["color"][j] == windows["color"][i]]
    assert matches, f"window {i} is no 3-frame cut of any clip"
    j, s = matches[0]
    np.testing.assert_array_equal(windows["video"][i], clips["video"][j, s:s + 3])
    starts.append(s)
  assert set(starts) == {0, 1, 2}


def test_shapes_training_is_deterministic_and_resumable(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")

  def make(seed):
    tf.random.set_seed(0)  # tf.data's shuffle mixes TF's global seed with its own; the trainer fixes both
    return problem.dataset("train", batch_size=4, num_frames=3, training=True, seed=seed)

  first = _batches(make(7), 20)  # 80 elements: past the end of the 64-video epoch
  assert _digest(first) == _digest(_batches(make(7), 20))
  assert _digest(first) != _digest(_batches(make(8), 20))
  assert _digest(first[5:8]) == _digest(_batches(make(7).skip(5), 3))  # how the trainer resumes
  # The same seed in a fresh process gives the same batches.
  code = (f"import sys; sys.path.insert(0, {REPO!r})\n"
          "import hashlib\n"
          "import tensorflow as tf; tf.random.set_seed(0)\n"
          "from t2v.problems.stochastic_shapes import StochasticShapes\n"
          f"ds = StochasticShapes({shapes_dir!r}, config='tiny').dataset('train', batch_size=4, num_frames=3, "
          "training=True, seed=7)\n"
          "h = hashlib.sha256()\n"
          "for batch in ds.take(20):\n"
          "  for key in sorted(batch):\n"
          "    h.update(key.encode()); h.update(batch[key].numpy().tobytes())\n"
          "print('DIGEST', h.hexdigest())\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert f"DIGEST {_digest(first)}" in out.stdout


def test_shapes_epochs_are_reshuffled(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  ds = problem.dataset("train", batch_size=64, training=True, seed=0)
  epoch1, epoch2 = (b["positions"] for b in _batches(ds, 2))
  key = lambda p: sorted(map(tuple, p.reshape(64, -1).round(3).tolist()))
  assert key(epoch1) == key(epoch2)  # both are whole epochs (the buffer holds all 64)...
  assert not np.array_equal(epoch1, epoch2)  # ...in different orders


def test_shapes_label_feature(shapes_dir):

  class LabelledShapes(StochasticShapes):
    num_labels = len(shapes_lib.SHAPES)
    label_key = "shape"

  batch = _batches(LabelledShapes(shapes_dir, config="tiny").dataset("test", batch_size=4, training=False), 1)[0]
  assert batch["label"].dtype == np.int32 and batch["label"].shape == (4,)
  np.testing.assert_array_equal(batch["label"], batch["shape"])


def test_shapes_small_config(tmp_path):
  problem = StochasticShapes(str(tmp_path), config="tiny32")
  problem.prepare()
  batch = _batches(problem.dataset("train", batch_size=2, training=True), 1)[0]
  assert batch["video"].shape == (2, 5, 32, 32, 3) and np.all(batch["speed"] == 2.0)
  with pytest.raises(ValueError, match="leaves the 32-pixel frame"):
    shapes_lib.StochasticShapesConfig(name="bad", frame_size=32, num_frames=10)


def test_shapes_start_jitter():
  # The centred config (the paper's generator): every video starts at the frame centre, so its first move lands
  # on one of 8 fixed positions and the position of a later frame gives the direction.
  centred = shapes_lib.CONFIGS["small_centred"]
  examples = [shapes_lib.sample_example(centred, "train", i) for i in range(200)]
  starts = np.array([e["positions"][0] for e in examples])
  np.testing.assert_array_equal(starts, np.full_like(starts, 16.0))
  first_moves = {tuple(np.round(e["positions"][1], 3)) for e in examples}
  assert len(first_moves) == 8
  for e in examples:  # direction = the sign pattern of (position - centre), the same in every later frame
    offsets = e["positions"][1:] - 16.0  # [T-1, 2]
    unit = np.array(shapes_lib.DIRECTIONS[tuple(shapes_lib.DIRECTIONS)[e["direction"]]])
    np.testing.assert_allclose(offsets / np.arange(1, 5)[:, None], np.tile(2.0 * unit, (4, 1)), atol=1e-5)
  # The same draws as the default config but for the start (shape, colour, size and direction are drawn before
  # it, so this guards the order of the draws; the start itself is checked above and below).
  default = shapes_lib.CONFIGS["small"]
  for i in range(20):
    a, b = shapes_lib.sample_example(default, "test", i), shapes_lib.sample_example(centred, "test", i)
    assert all(a[k] == b[k] for k in ("shape", "color", "size", "direction"))
  bounded = shapes_lib.StochasticShapesConfig(name="bounded", frame_size=32, start_jitter=2)
  jitters = np.array([shapes_lib.sample_example(bounded, "train", i)["positions"][0] - 16 for i in range(200)])
  assert np.abs(jitters).max() == 2 and len({tuple(j) for j in jitters}) == 25
  free = np.array([shapes_lib.sample_example(default, "train", i)["positions"][0] - 16 for i in range(200)])
  assert np.abs(free).max() > 2
  with pytest.raises(ValueError, match="start_jitter=-1 must be >= 0"):
    shapes_lib.StochasticShapesConfig(name="bad", start_jitter=-1)


def test_shapes_grid_diagonals():
  # The authors' generator: centred starts and diagonals of (+-speed, +-speed) px, so every frame is the previous
  # one translated by whole pixels (a one-cell shift of the 2x2-squeezed frame at 2 px/frame).
  grid, unit = shapes_lib.CONFIGS["small_centred_grid"], shapes_lib.CONFIGS["small_centred"]
  np.testing.assert_array_equal(shapes_lib.direction_vectors(True),
                                [[0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1], [1, 0], [1, 1]])
  np.testing.assert_allclose(np.linalg.norm(shapes_lib.direction_vectors(False), axis=-1), 1.0)
  directions = set()
  for i in range(100):
    e, same = shapes_lib.sample_example(grid, "train", i), shapes_lib.sample_example(unit, "train", i)
    assert all(e[k] == same[k] for k in ("shape", "color", "size", "direction"))  # only the path differs
    step = 2.0 * shapes_lib.direction_vectors(True)[e["direction"]]
    np.testing.assert_array_equal(e["positions"], 16.0 + np.arange(5)[:, None] * step[None])
    for t in range(1, 5):  # each frame is the previous one rolled by the step, on a grey background
      dy, dx = step.astype(int)
      np.testing.assert_array_equal(e["video"][t], np.roll(e["video"][t - 1], (dy, dx), axis=(0, 1)))
    directions.add(e["direction"])
    if e["direction"] % 2:  # a diagonal: the unit-vector config lands off the grid, the grid config on it
      assert not np.allclose(same["positions"][1], np.round(same["positions"][1]))
  assert len(directions) == 8



def test_shapes_jittered_grid_config():
  # small_grid: the jittered starts of `small` (the same clips' shape, colour, size, direction and start) with
  # the authors' whole-pixel diagonals.
  grid, small = shapes_lib.CONFIGS["small_grid"], shapes_lib.CONFIGS["small"]
  starts = set()
  for i in range(100):
    e, same = shapes_lib.sample_example(grid, "train", i), shapes_lib.sample_example(small, "train", i)
    assert all(e[k] == same[k] for k in ("shape", "color", "size", "direction"))
    np.testing.assert_array_equal(e["positions"][0], same["positions"][0])
    step = 2.0 * shapes_lib.direction_vectors(True)[e["direction"]]
    np.testing.assert_array_equal(e["positions"], e["positions"][:1] + np.arange(5)[:, None] * step[None])
    starts.add(tuple(e["positions"][0]))
  assert len(starts) > 20
  assert shapes_lib.CONFIGS["grid"].frame_size == 64 and shapes_lib.CONFIGS["grid"].grid_diagonals

def test_bad_arguments(shapes_dir):
  problem = StochasticShapes(shapes_dir, config="tiny")
  with pytest.raises(ValueError, match=r"num_frames=6 must be in 1\.\.5"):
    problem.dataset("train", batch_size=2, num_frames=6, training=True)
  with pytest.raises(ValueError, match=r"num_frames=0 must be in 1\.\.5"):
    problem.dataset("train", batch_size=2, num_frames=0, training=False)
  with pytest.raises(ValueError, match="unknown split 'validation'.*'train', 'test'"):
    problem.dataset("validation", batch_size=2, training=False)
  with pytest.raises(ValueError, match="batch_size=0 must be"):
    problem.dataset("train", batch_size=0, training=True)
  with pytest.raises(ValueError, match="unknown config 'huge'"):
    StochasticShapes(config="huge")
  with pytest.raises(ValueError, match="unknown split 'train'.*'test'.*'test\\[:90%\\]'"):
    MovingMnist("/nonexistent").dataset("train", batch_size=2, training=True)


def test_frame_shape_mismatch(shapes_dir):

  class WrongShape(StochasticShapes):
    frame_shape = (32, 32, 3)

  with pytest.raises(ValueError, match=r"t2v_stochastic_shapes/tiny.*\(64, 64, 3\).*\(32, 32, 3\)"):
    WrongShape(shapes_dir, config="tiny").dataset("train", batch_size=2, training=True)


def test_check_records_names_the_corrupt_file(shapes_dir, tmp_path):
  problem = StochasticShapes(shapes_dir, config="tiny")
  assert problem.check_records("train") == 64 and problem.check_records("test") == 16
  copy = tmp_path / "copy"
  shutil.copytree(shapes_dir, copy)
  broken = StochasticShapes(str(copy), config="tiny")
  path = str(broken.builder().info.splits["train"].filepaths[0])
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(b"\xff" * 16)
  with pytest.raises(base.CorruptRecordError, match=f"record \\d+ of {path}"):
    broken.check_records("train")
  with pytest.raises(tf.errors.DataLossError):
    _batches(broken.dataset("train", batch_size=64, training=False), 1)


# ---- missing data: no download, a quick DataNotFoundError -------------------------------------------

@pytest.mark.parametrize("problem_cls,fix", [(Bair, "prepare_from_raw"), (MovingMnist, "mnist_test_seq.npy"),
                                             (StochasticShapes, "prepare")])
def test_missing_data_raises_without_download(tmp_path, problem_cls, fix):
  data_dir = str(tmp_path / "empty")
  problem = problem_cls(data_dir)
  start = time.monotonic()
  with pytest.raises(base.DataNotFoundError) as error:
    problem.dataset(problem.train_split, batch_size=2, training=True)
  message = str(error.value)
  assert data_dir in message and "--data_dir" in message and fix in message and "\n" not in message
  assert problem.tfds_name in message
  if problem_cls is not StochasticShapes:  # shapes generates instead
    with pytest.raises(base.DataNotFoundError):
      problem.prepare()
  assert not problem.is_prepared()
  assert time.monotonic() - start < 5.0
  assert isinstance(error.value, FileNotFoundError)


# ---- BAIR ------------------------------------------------------------------------------------------

def _raw_bair_example(video: np.ndarray) -> bytes:
  """One clip in the original release's format: per-frame raw uint8 images and float vectors."""
  feature = {}
  for t in range(30):
    feature[f"{t}/image_main/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[video[t].tobytes()]))
    aux = video[t, ::-1].tobytes()
    feature[f"{t}/image_aux1/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[aux]))
    feature[f"{t}/action"] = tf.train.Feature(float_list=tf.train.FloatList(value=[t, 1.0, 2.0, 3.0]))
    feature[f"{t}/endeffector_pos"] = tf.train.Feature(float_list=tf.train.FloatList(value=[t, 0.5, 0.25]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="session")
def raw_bair(tmp_path_factory) -> tuple[str, dict[str, list[np.ndarray]]]:
  """An extracted raw tarball: softmotion30_44k/{train: 2 files x 2 clips, test: 1 file x 3 clips}."""
  root = tmp_path_factory.mktemp("bair_raw")
  rng = np.random.default_rng(0)
  videos = {"train": [], "test": []}
  for split, num_files, per_file in (("train", 2, 2), ("test", 1, 3)):
    split_dir = root / bair_lib.RAW_FOLDER / split
    split_dir.mkdir(parents=True)
    for f in range(num_files):
      with tf.io.TFRecordWriter(str(split_dir / f"traj_{f * 256}_to_{f * 256 + 255}.tfrecords")) as writer:
        for _ in range(per_file):
          video = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
          videos[split].append(video)
          writer.write(_raw_bair_example(video))
  return str(root), videos


def test_read_raw_bair_records(raw_bair, tmp_path):
  root, videos = raw_bair
  paths = sorted(tf.io.gfile.glob(os.path.join(root, bair_lib.RAW_FOLDER, "train", "*")))
  read = list(bair_lib.read_raw_bair_records(paths))
  assert len(read) == 4 and all(v.dtype == np.uint8 and v.shape == (30, 64, 64, 3) for v in read)
  for got, want in zip(read, videos["train"]):
    np.testing.assert_array_equal(got, want)
  aux = next(bair_lib.read_raw_bair_records(paths, key="image_aux1"))
  np.testing.assert_array_equal(aux, videos["train"][0][:, ::-1])
  bad = str(tmp_path / "bad.tfrecords")
  with tf.io.TFRecordWriter(bad) as writer:
    writer.write(tf.train.Example().SerializeToString())
  with pytest.raises(ValueError, match=f"{bad}: record 0 has no single-image feature '0/image_main/encoded'"):
    list(bair_lib.read_raw_bair_records([bad]))


def test_bair_prepare_from_raw_through_tfds_parser(raw_bair, tmp_path):
  root, videos = raw_bair
  data_dir = str(tmp_path / "tfds")
  problem = Bair(data_dir)
  problem.prepare_from_raw(root)
  problem.prepare()  # now present: no error, no download
  assert problem.spec() == base.VideoSpec((64, 64, 3), num_input_frames=3, num_target_frames=10)
  # The registered TFDS builder reads what was prepared, with TFDS's own parsing of the raw format.
  builder = tfds.builder("bair_robot_pushing_small", data_dir=data_dir)
  assert builder.info.splits["train"].num_examples == 4 and builder.info.splits["test"].num_examples == 3
  example = next(iter(builder.as_dataset(split="test")))
  assert example["action"].shape == (30, 4) and float(example["action"][7, 0]) == 7.0
  # The eval pipeline gives each test clip's first 13 frames (TFDS stores them in its own shuffled order).
  data = _concat(_batches(problem.dataset("test", batch_size=2, num_frames=13, training=False), 10))
  assert data["video"].shape == (3, 13, 64, 64, 3) and data["video"].dtype == np.uint8
  want = sorted(v[:13].tobytes() for v in videos["test"])
  assert sorted(v.tobytes() for v in data["video"]) == want
  # Training windows are 13-frame cuts of the train clips, with varying starts.
  train = _concat(_batches(problem.dataset("train", batch_size=4, num_frames=13, training=True, seed=1), 4))
  starts = set()
  for window in train["video"]:
    cuts = [(i, s) for i, v in enumerate(videos["train"]) for s in range(18) if np.array_equal(v[s:s + 13], window)]
    assert len(cuts) == 1
    starts.add(cuts[0][1])
  assert len(starts) > 1
  assert problem.check_records("train") == 4


def test_bair_prepare_from_raw_missing_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="softmotion30_44k/train"):
    Bair(str(tmp_path / "tfds")).prepare_from_raw(str(tmp_path))


def test_bair_pipeline_on_mock_data(mock_metadata_dir):
  with _mock(mock_metadata_dir, num_examples=6):
    problem = Bair("/nonexistent/never/read")
    problem.prepare()
    ds = problem.dataset("train", batch_size=4, num_frames=5, training=True, seed=2)
    first = _batches(ds, 3)
    assert all(b["video"].shape == (4, 5, 64, 64, 3) and b["video"].dtype == np.uint8 for b in first)
    assert set(first[0]) == {"video"}
    assert _digest(first) == _digest(_batches(problem.dataset("train", batch_size=4, num_frames=5, training=True,
                                                              seed=2), 3))
    clips = _concat(_batches(problem.dataset("test", batch_size=4, training=False), 10))
    assert clips["video"].shape == (6, 30, 64, 64, 3)
    starts = set()
    for window in _concat(first)["video"]:
      cuts = [s for clip in clips["video"] for s in range(26) if np.array_equal(clip[s:s + 5], window)]
      assert cuts, "a training window is no cut of a clip"
      starts.add(cuts[0])
    assert len(starts) > 1
    evals = _concat(_batches(problem.dataset("test", batch_size=4, num_frames=13, training=False), 10))
    np.testing.assert_array_equal(evals["video"], clips["video"][:, :13])


# ---- Moving MNIST ----------------------------------------------------------------------------------

def test_moving_mnist_pipeline_on_mock_data(mock_metadata_dir):
  with _mock(mock_metadata_dir, num_examples=5):
    problem = MovingMnist("/nonexistent/never/read")
    assert problem.spec() == base.VideoSpec((64, 64, 1), num_input_frames=10, num_target_frames=10)
    train = _batches(problem.dataset(problem.train_split, batch_size=2, num_frames=12, training=True), 3)
    assert all(b["video"].shape == (2, 12, 64, 64, 1) and b["video"].dtype == np.uint8 for b in train)
    evals = _batches(problem.dataset(problem.eval_split, batch_size=2, training=False), 10)
    assert [b["video"].shape for b in evals] == [(2, 20, 64, 64, 1)] * 2 + [(1, 20, 64, 64, 1)]
    assert _digest(evals) == _digest(_batches(problem.dataset(problem.eval_split, batch_size=2, training=False),
                                              10))


def test_moving_mnist_prepare_from_raw_and_split_carving(tmp_path):
  rng = np.random.default_rng(1)
  sequences = rng.integers(0, 256, (20, 10, 64, 64), dtype=np.uint8)  # the raw file is frames-first
  npy = str(tmp_path / "mnist_test_seq.npy")
  np.save(npy, sequences)
  problem = MovingMnist(str(tmp_path / "tfds"))
  problem.prepare_from_raw(npy)
  train = _concat(_batches(problem.dataset(problem.train_split, batch_size=4, training=False), 10))["video"]
  test = _concat(_batches(problem.dataset(problem.eval_split, batch_size=4, training=False), 10))["video"]
  assert train.shape == (9, 20, 64, 64, 1) and test.shape == (1, 20, 64, 64, 1)
  want = sorted(sequences[:, i, :, :, None].tobytes() for i in range(10))
  assert sorted(v.tobytes() for v in np.concatenate([train, test])) == want
  with pytest.raises(FileNotFoundError, match="no file"):
    problem.prepare_from_raw(str(tmp_path / "missing.npy"))
