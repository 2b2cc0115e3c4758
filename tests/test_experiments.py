"""python -m t2v.experiments on tiny trained VideoFlows: every experiment's files, numbers and their consistency, the
command line, and the decoder and out-of-sequence scoring on BAIR-format data prepared offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from t2v import trainer
from t2v.decoder import decode
from t2v.experiments import NAMES, lib
from t2v.problems import bair as bair_lib
from t2v.problems.bair import Bair
from t2v.trainer.restore import restore_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"num_examples": 2, "batch_size": 2}


@pytest.fixture
def run_dir(tiny_videoflow_run):
  return tiny_videoflow_run


def _read(out_dir) -> dict:
  results = json.loads((out_dir / lib.RESULTS_FILE).read_text())
  for name in results["files"].values():  # every file listed exists; every PNG decodes
    assert (out_dir / name).is_file(), name
    if name.endswith(".png"):
      with Image.open(out_dir / name) as image:
        image.load()
        assert image.size[0] > 0 and image.size[1] > 0
  return results


def test_names_match_the_library():
  assert tuple(lib.EXPERIMENTS) == NAMES


def test_temperature_sweep(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  temperatures = [0.0, 0.5, 1.0]
  returned = lib.temperature_sweep(output_dir, data_dir=data_dir, temperatures=temperatures, num_decodes=2,
                                   out_dir=str(tmp_path / "sweep"), **TINY)
  results = _read(tmp_path / "sweep")
  assert returned == results
  protocol = results["protocol"]
  assert protocol["experiment"] == "temperature_sweep" and protocol["temperatures"] == temperatures
  assert (protocol["num_examples"], protocol["num_decodes"], protocol["conditioning_frames"],
          protocol["predicted_frames"], protocol["step"]) == (2, 2, 1, 4, 2)
  assert set(results["files"]) == {"quality", "diversity"}
  for metric in ("psnr", "ssim"):
    curves = results["quality"][metric]
    assert all(len(curves[which]["value"]) == 3 for which in ("mean", "best", "worst"))
    for best, mean, worst in zip(curves["best"]["value"], curves["mean"]["value"], curves["worst"]["value"]):
      assert best >= mean - 1e-9 and mean >= worst - 1e-9
  zero = results["per_temperature"]["0"]
  assert zero["psnr"]["best"]["overall"]["mean"] == zero["psnr"]["worst"]["overall"]["mean"]  # T=0: identical
  diversity = results["diversity"]
  assert len(diversity["value"]) == 3 and all(v >= 0 for v in diversity["value"])
  if "lpips_alex" in results.get("skipped", {}):
    assert diversity["metric"] == "pixel_mse" and "lpips_alex" not in results["quality"]
  else:
    assert diversity["metric"] == "lpips_alex" and len(results["quality"]["lpips_alex"]["mean"]["value"]) == 3
    curves = results["quality"]["lpips_alex"]  # lower is better: best <= mean <= worst
    assert all(b <= m + 1e-6 <= w + 2e-6 for b, m, w in zip(curves["best"]["value"], curves["mean"]["value"],
                                                           curves["worst"]["value"]))
  assert diversity["value"][0] < 1e-4 < diversity["value"][2]  # T=0: every decode is the mean
  # One temperature of the sweep is the decoder's pass with the same seeds.
  decoded = decode(output_dir, data_dir=data_dir, num_decodes=2, temperatures=[0.5], decode_dir=str(tmp_path / "dec"),
                   progress=False, **TINY)["0.5"]
  assert results["per_temperature"]["0.5"]["psnr"] == decoded["psnr"]


def test_temperature_sweep_without_lpips_uses_pixel_mse(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = lib.temperature_sweep(output_dir, data_dir=data_dir, temperatures=[0.0, 1.0], num_decodes=2,
                                  lpips=False, out_dir=str(tmp_path), **TINY)
  assert results["diversity"]["metric"] == "pixel_mse" and "lpips_alex" in results["skipped"]
  assert set(results["quality"]) == {"psnr", "ssim"}
  assert results["diversity"]["value"][0] == 0.0 and results["diversity"]["value"][1] > 0
  samples = results["per_temperature"]["1"]
  assert samples["diversity"]["mean"] == results["diversity"]["value"][1]
  _read(tmp_path)


def test_best_of_n(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = lib.best_of_n(output_dir, data_dir=data_dir, num_decodes=2, temperature=0.5, out_dir=str(tmp_path),
                          **TINY)
  assert results == _read(tmp_path)
  assert results["ns"] == [1, 2] and results["frames"] == [2, 3, 4, 5]
  assert results["protocol"]["temperature"] == 0.5
  for metric in ("psnr", "ssim"):
    one = results[metric]["1"]
    assert one["best"]["per_frame"] == one["mean"]["per_frame"] == one["worst"]["per_frame"]  # N=1: one decode
    two = results[metric]["2"]
    assert len(two["best"]["per_frame"]["mean"]) == 4 and len(two["best"]["per_frame"]["ci95"]) == 4
    best, mean, worst = (two[w]["overall"]["mean"] for w in ("best", "mean", "worst"))
    assert best >= mean >= worst and best > worst  # T=0.5: the two decodes differ
  assert lib.default_ns(6) == [1, 2, 4, 6] and lib.default_ns(1) == [1]


def test_interpolation_endpoints_are_the_decoded_frames(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = lib.interpolation(output_dir, data_dir=data_dir, num_points=4, out_dir=str(tmp_path), **TINY)
  assert results == _read(tmp_path)
  assert set(results["levels"]) == {"0", "1", "all"} and results["protocol"]["num_pairs"] == 2
  assert results["latent_shapes"] == [[16, 16, 6], [8, 8, 24]]  # split at level 0, the rest on top
  paths = np.load(tmp_path / "paths.npz")
  a, b = paths["a"], paths["b"]
  assert a.shape == b.shape == (2, 32, 32, 3) and not np.array_equal(a, b)
  _, model, _ = restore_run(output_dir, data_dir)
  za, zb = model.encode_frames(a), model.encode_frames(b)
  decoded_a = model.decode_frames(za).numpy()
  np.testing.assert_array_equal(paths["reconstruction_a"], decoded_a)
  for name in ("0", "1", "all"):
    path = paths[f"level_{name}"]
    assert path.shape == (2, 4, 32, 32, 3) and path.dtype == np.uint8
    np.testing.assert_array_equal(path[:, 0], decoded_a)  # alpha = 0: a's latents everywhere
    change = results["levels"][name]["change_from_start"]["mean"]
    assert len(change) == 4 and change[0] == 0.0
    assert results["levels"][name]["endpoint_change"]["mean"] == pytest.approx(change[-1])
    assert len(results["levels"][name]["step_change"]["mean"]) == 3
  np.testing.assert_array_equal(paths["level_all"][:, -1], model.decode_frames(zb).numpy())  # alpha = 1: b
  for level in (0, 1):  # alpha = 1 at one level: b's latents there, a's elsewhere
    mixed = [zb[i] if i == level else za[i] for i in range(2)]
    np.testing.assert_array_equal(paths[f"level_{level}"][:, -1], model.decode_frames(mixed).numpy())
  with Image.open(tmp_path / "level_all.png") as strip:
    assert strip.size == (6 * 37 - 1, 2 * 37 - 1)  # a, 4 points, b; a row per pair; 36-px framed frames


def test_rollout(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = lib.rollout(output_dir, data_dir=data_dir, num_frames=6, num_decodes=2, out_dir=str(tmp_path), **TINY)
  assert results == _read(tmp_path)
  samples = np.load(tmp_path / "samples.npy")
  assert samples.shape == (2, 2, 7, 32, 32, 3)  # 1 given + 6 generated
  assert results["frames"] == list(range(7)) and results["protocol"]["rollout_frames"] == 6
  curves = results["samples"]
  assert all(len(curves[key]["mean"]) == 7 for key in ("mean_intensity", "pixel_variance",
                                                       "mean_intensity_drift", "pixel_variance_drift"))
  assert len(curves["frame_change"]["mean"]) == 6 and len(results["ground_truth"]["mean_intensity"]["mean"]) == 5
  assert curves["mean_intensity_drift"]["mean"][0] == 0.0  # drift is measured from the given frame
  assert curves["mean_intensity"]["mean"][0] == pytest.approx(samples[:, :, 0].mean())
  assert results["summary"]["final_mean_intensity_drift"]["mean"] == pytest.approx(
      curves["mean_intensity_drift"]["mean"][-1])
  judge = results["shapes_judge"]
  assert judge["judged_frames"] == 4 and 0.0 <= judge["valid_rate"] <= judge["object_kept_rate"] <= 1.0  # 5 frames
  with Image.open(tmp_path / "rollout.gif") as gif:
    assert gif.n_frames == 7 and gif.size == (3 * 36 + 2, 2 * 36 + 1)  # truth + 2 decodes; a row per clip
  with Image.open(tmp_path / "contact_sheet.png") as sheet:
    assert sheet.size == (7 * 36 + 6, 6 * 36 + 5)  # every frame (<= 20); a row per video
  assert results["contact_sheet_frames"] == list(range(7))


def test_out_of_sequence(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = lib.out_of_sequence(output_dir, data_dir=data_dir, out_dir=str(tmp_path), **TINY)
  assert results == _read(tmp_path)
  assert results["t"] == [2, 3, 4, 5] and results["frame_index"] == [1, 2, 3, 4]
  assert len(results["bpp"]["mean"]) == 4 and np.shape(results["per_clip"]) == (2, 4)
  per_clip = np.asarray(results["per_clip"])
  np.testing.assert_allclose(results["bpp"]["mean"], per_clip.mean(axis=0))
  assert np.all(np.isfinite(per_clip)) and np.all(per_clip > 0)
  # Each value is model.next_frame_bpp of that frame after the clip's first frame.
  problem, model, _ = restore_run(output_dir, data_dir)
  clips = next(iter(problem.dataset("test", batch_size=2, num_frames=5, training=False)))["video"]
  for i, t in enumerate(results["frame_index"]):
    np.testing.assert_allclose(per_clip[:, i], model.next_frame_bpp(clips[:, :1], clips[:, t], seed=(0, 0)),
                               rtol=1e-6)
  shorter = lib.out_of_sequence(output_dir, data_dir=data_dir, num_frames=3, out_dir=str(tmp_path / "3"), **TINY)
  assert shorter["t"] == [2, 3]


def test_bad_arguments_fail_before_restoring(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  with pytest.raises(ValueError, match="unknown experiment 'nope'; valid: temperature_sweep, best_of_n"):
    lib.run("nope", output_dir)
  with pytest.raises(ValueError, match=r"ns=\[1, 8\] must be .* 1..num_decodes=2"):
    lib.best_of_n(str(tmp_path), ns=[1, 8], num_decodes=2)
  with pytest.raises(ValueError, match="pairs='middle' must be one of clips, first_last"):
    lib.interpolation(str(tmp_path), pairs="middle")
  with pytest.raises(ValueError, match=r"temperatures=\[-1.0\] must be"):
    lib.temperature_sweep(str(tmp_path), temperatures=[-1])
  with pytest.raises(ValueError, match="num_frames=9 must be in 2..5"):
    lib.out_of_sequence(output_dir, data_dir=data_dir, num_frames=9)


def _command(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "t2v.experiments", *args], env=env, capture_output=True, text=True,
                        timeout=120)


def test_command_line(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  result = _command("--experiment=temperature", f"--output_dir={output_dir}")
  assert result.returncode == 2
  assert result.stderr.strip() == ("t2v.experiments: error: unknown --experiment='temperature'; valid: "
                                   f"{', '.join(NAMES)}")
  result = _command("--experiment=interpolation", f"--output_dir={output_dir}", f"--data_dir={data_dir}",
                    "--num_examples=2", "--pairs=first_last", "--num_points=3")
  assert result.returncode == 0, result.stderr[-2000:]
  out = os.path.join(output_dir, "experiments", "interpolation")
  results = json.loads(open(os.path.join(out, lib.RESULTS_FILE)).read())
  assert results["protocol"]["pairs"] == "first_last"
  assert results["protocol"]["pair_frames"].startswith("frames 0 and 4")  # tiny32 clips hold 5 frames
  assert np.load(os.path.join(out, "paths.npz"))["level_all"].shape == (2, 3, 32, 32, 3)
  result = _command("--experiment=best_of_n", f"--output_dir={output_dir}", "--ns=1,x")
  assert result.returncode == 2 and "--ns=1,x must be a comma-separated list of ints" in result.stderr
  assert "Traceback" not in result.stderr


# ---- BAIR-format data, prepared offline --------------------------------------------------------------------

def _raw_bair_example(video: np.ndarray) -> bytes:
  """One clip in the original release's format: per-frame raw uint8 images and float vectors."""
  feature = {}
  for t in range(bair_lib.RAW_FRAMES):
    image = video[t].tobytes()
    feature[f"{t}/image_main/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    feature[f"{t}/image_aux1/encoded"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    feature[f"{t}/action"] = tf.train.Feature(float_list=tf.train.FloatList(value=[t, 0.0, 0.0, 0.0]))
    feature[f"{t}/endeffector_pos"] = tf.train.Feature(float_list=tf.train.FloatList(value=[t, 0.0, 0.0]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _pushing_clip(rng: np.random.Generator) -> np.ndarray:
  """A 30-frame 64x64 clip: a smooth background and a block moving a few pixels per frame."""
  y, x = np.mgrid[0:64, 0:64]
  background = np.stack([96 + y, 96 + x, np.full_like(y, 128)], axis=-1)  # [64, 64, 3]
  video = np.repeat(background[None], bair_lib.RAW_FRAMES, axis=0).astype(np.int32)
  start, velocity, color = rng.integers(8, 40, 2), rng.integers(-1, 2, 2), rng.integers(0, 256, 3)
  for t in range(bair_lib.RAW_FRAMES):
    top, left = np.clip(start + t * velocity, 0, 52)
    video[t, top:top + 12, left:left + 12] = color
  return video.astype(np.uint8)


@pytest.fixture(scope="module")
def bair_run(tmp_path_factory):
  """Raw BAIR TFRecords (train: 2 clips, test: 2), prepared offline; videoflow_tiny trained 1 step on them."""
  raw = tmp_path_factory.mktemp("bair_raw")
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    split_dir = raw / bair_lib.RAW_FOLDER / split
    split_dir.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split_dir / "traj_0_to_255.tfrecords")) as writer:
      for _ in range(2):
        writer.write(_raw_bair_example(_pushing_clip(rng)))
  data_dir = str(tmp_path_factory.mktemp("bair_tfds"))
  Bair(data_dir).prepare_from_raw(str(raw))
  output_dir = str(tmp_path_factory.mktemp("bair_run"))
  trainer.run(problem="bair", model="videoflow", hparams_set="videoflow_tiny", data_dir=data_dir,
              output_dir=output_dir, train_steps=1, eval_steps=1, eval_every=0, checkpoint_every=0,
              strategy="one_device", num_samples=0)
  return output_dir, data_dir


def test_bair_decode_and_out_of_sequence(bair_run, tmp_path):
  output_dir, data_dir = bair_run
  metrics = decode(output_dir, data_dir=data_dir, num_examples=2, num_decodes=2, temperatures=[0.5],
                   decode_dir=str(tmp_path / "decode"), batch_size=2, progress=False)["0.5"]
  protocol = metrics["protocol"]
  assert (protocol["problem"], protocol["conditioning_frames"], protocol["predicted_frames"]) == ("bair", 3, 10)
  assert len(metrics["bits_per_pixel"]["per_frame"]["mean"]) == 10  # frames 4..13 given 1..3
  assert len(metrics["psnr"]["best"]["per_frame"]["mean"]) == 10
  assert metrics["psnr"]["best"]["overall"]["mean"] >= metrics["psnr"]["worst"]["overall"]["mean"]
  assert "fvd" in metrics["skipped"]  # 13-frame clips: FVD needs 16
  out = tmp_path / "decode" / "temperature_0.5"
  assert np.load(out / "samples.npy").shape == (2, 2, 13, 64, 64, 3)
  assert (out / "example_0.gif").is_file() and (out / "example_0.png").is_file()

  results = lib.out_of_sequence(output_dir, data_dir=data_dir, num_examples=2, out_dir=str(tmp_path / "oos"))
  assert results == _read(tmp_path / "oos")
  assert results["t"] == list(range(4, 14)) and results["protocol"]["conditioning_frames"] == 3  # the paper's 4..13
  assert len(results["bpp"]["mean"]) == 10 and np.shape(results["per_clip"]) == (2, 10)
  assert all(math.isfinite(v) and v > 0 for v in results["bpp"]["mean"])
