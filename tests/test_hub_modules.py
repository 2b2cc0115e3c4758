"""Hub modules: export a tiny trained VideoFlow, hub.load it in a fresh process without t2v, same numbers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from t2v.hub_modules.export import export
from t2v.trainer.config import ConfigError
from t2v.trainer.restore import restore_run

import hub_consumer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter in which t2v cannot be imported (even where it is pip-installed, as in CI).
CONSUMER = r"""
import sys
sys.modules["t2v"] = None  # any `import t2v...` now raises ImportError
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
export_dir, data = sys.argv[1], np.load(sys.argv[2])
out = {}
evaluator = hub.load(export_dir + "/evaluator")
result = evaluator.log_prob(data["inputs"], data["targets"])
out["bpp"], out["bpp_per_frame"] = result["bits_per_pixel"].numpy(), result["bits_per_pixel_per_frame"].numpy()
generator = hub.load(export_dir + "/generator")
out["frames"] = generator.sample(data["inputs"], tf.constant(6), tf.constant(0.7), tf.constant([3, 4]))["frames"].numpy()
encoder = hub.load(export_dir + "/encoder")
latents = encoder.encode(data["inputs"][:, 0])
for name, value in latents.items():
  out["latent_" + name] = value.numpy()
out["decoded"] = encoder.decode(latents)["frames"].numpy()
bad_inputs = {
    "channels": data["inputs"][..., :1],
    "dtype": tf.constant(data["inputs"], tf.float32),  # (TF converts numpy arrays to the signature's dtype)
    "rank": data["inputs"][:, 0],
    "frame_size": np.zeros([3, 1, 16, 16, 3], np.uint8),
}
for name, bad in bad_inputs.items():
  try:
    evaluator.log_prob(bad, data["targets"])
    out["bad_" + name] = np.array("")
  except (TypeError, ValueError) as e:
    out["bad_" + name] = np.array(str(e))
np.savez(sys.argv[3], **out)
"""


@pytest.fixture
def run(tiny_videoflow_run):
  return tiny_videoflow_run


def test_exported_modules_match_the_python_model_in_a_fresh_process(run, tmp_path):
  output_dir, data_dir = run
  export_dir = str(tmp_path / "export")
  paths = export(output_dir, export_dir)
  assert sorted(paths) == ["encoder", "evaluator", "generator"]
  readme = open(os.path.join(export_dir, "evaluator", "README.md")).read()
  assert "log_prob(inputs, targets)" in readme and "bpp" in readme and "hub.load" in readme
  assert not [name for name in os.listdir(export_dir) if name.startswith(".export-")]  # staging removed

  problem, model, _ = restore_run(output_dir, data_dir)
  clips = next(iter(problem.dataset(problem.eval_split, batch_size=3, training=False)))["video"].numpy()
  inputs, targets = clips[:, :1], clips[:, 1:]
  out = hub_consumer.consume(CONSUMER, export_dir, tmp_path, inputs=inputs, targets=targets)

  expected_bpp = model.log_prob_bpp({"video": tf.constant(clips)}, 1, seed=tf.constant([0, 0])).numpy()
  np.testing.assert_allclose(out["bpp_per_frame"], expected_bpp, atol=1e-4)
  np.testing.assert_allclose(out["bpp"], expected_bpp.mean(1), atol=1e-4)
  expected_frames = model.sample({"video": tf.constant(inputs)}, 6, 0.7, seed=(3, 4)).numpy()
  np.testing.assert_array_equal(out["frames"], expected_frames)
  for level, z in enumerate(model.encode_frames(tf.constant(inputs[:, 0]))):
    np.testing.assert_allclose(out[f"latent_level_{level}"], z.numpy(), atol=1e-4)
  np.testing.assert_array_equal(out["decoded"], inputs[:, 0])  # encode -> decode is exact
  for name in ("channels", "dtype", "rank", "frame_size"):  # refused at the call, naming the expected spec
    message = str(out[f"bad_{name}"])
    assert "TensorSpec(shape=(None, 1, 32, 32, 3), dtype=tf.uint8" in message, (name, message[:500])


def test_export_refusals(run, tmp_path):
  output_dir, _ = run
  with pytest.raises(ConfigError, match="holds no t2v run"):
    export(str(tmp_path / "nothing"), str(tmp_path / "export"))
  with pytest.raises(ConfigError, match="unknown module"):
    export(output_dir, str(tmp_path / "export"), modules=["decoder"])
  export(output_dir, str(tmp_path / "export"), modules=["encoder"])
  before = sorted(os.listdir(tmp_path / "export" / "encoder"))
  with pytest.raises(ConfigError, match="already exist"):
    export(output_dir, str(tmp_path / "export"), modules=["encoder"])
  assert sorted(os.listdir(tmp_path / "export" / "encoder")) == before
  untrained = tmp_path / "untrained"
  untrained.mkdir()
  (untrained / "config.json").write_text(open(os.path.join(output_dir, "config.json")).read())
  with pytest.raises(ConfigError, match="has no checkpoint"):
    export(str(untrained), str(tmp_path / "export2"))
  # A checkpoint of another architecture under this config.json: refused by name, nothing exported.
  import json
  mismatched = tmp_path / "mismatched"
  mismatched.mkdir()
  config = json.loads(open(os.path.join(output_dir, "config.json")).read())
  config["hparams"]["hidden_channels"] = 4
  (mismatched / "config.json").write_text(json.dumps(config))
  checkpoint = tf.train.latest_checkpoint(output_dir)
  for path in tf.io.gfile.glob(checkpoint + "*"):
    tf.io.gfile.copy(path, str(mismatched / os.path.basename(path)))
  tf.io.gfile.copy(os.path.join(output_dir, "checkpoint"), str(mismatched / "checkpoint"))
  with pytest.raises(ConfigError, match="does not fit"):
    export(str(mismatched), str(tmp_path / "export3"))
  assert not os.path.exists(tmp_path / "export3" / "evaluator")
