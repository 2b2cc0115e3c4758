"""Typed hparams overrides, registry names, the trainer's run record and its command-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from t2v import hparams as hparams_lib
from t2v import registry
from t2v.trainer import config as config_lib
import toy_model

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
LAUNCHER = os.path.join(TESTS, "toy_model.py")


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
  toy_model.register(monkeypatch.setitem)


def _env() -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS]), TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_CONFIG", None)
  return env


# ---- hparams ----------------------------------------------------------------------------------------------

def test_overrides_are_parsed_to_each_fields_type():
  hp = hparams_lib.override(toy_model.toy_tiny(),
                            "batch_size=8, learning_rate=1e-3,use_bias=false,condition_on=nothing,"
                            "nan_loss_steps=3;4,warmup_steps=1e2")
  assert (hp.batch_size, hp.learning_rate, hp.use_bias, hp.condition_on, hp.nan_loss_steps, hp.warmup_steps) == (
      8, 1e-3, False, "nothing", "3;4", 100)
  assert type(hp.batch_size) is int and type(hp.learning_rate) is float and hp.use_bias is False
  assert hp.nan_steps() == (3, 4)
  assert hparams_lib.override(hp, {"use_bias": True}).use_bias is True
  for text in ("true", "1", "yes", "True"):
    assert hparams_lib.override(hp, f"use_bias={text}").use_bias is True


@pytest.mark.parametrize("text, message", [
    ("batch_size=2.5", r"batch_size='2.5' is not a valid int"),
    ("batch_size=0", r"batch_size=0 must be >= 1"),
    ("learning_rate=fast", r"learning_rate='fast' is not a valid float"),
    ("learning_rate=-1", r"learning_rate=-1.0 must be >= 0"),
    ("use_bias=maybe", r"use_bias='maybe' is not a valid bool"),
    ("condition_on=sideways", r"condition_on='sideways' is not one of previous, nothing"),
    ("nan_loss_steps=x", r"nan_loss_steps='x' must be comma-separated integers"),
    ("batch_size", r"'batch_size' is not of the form key=value"),
])
def test_bad_override_values_name_the_value_and_the_fix(text, message):
  with pytest.raises(hparams_lib.HParamsError, match=message):
    hparams_lib.override(toy_model.toy_tiny(), text)


def test_unknown_key_lists_the_valid_keys():
  with pytest.raises(hparams_lib.HParamsError) as info:
    hparams_lib.override(toy_model.toy_tiny(), "learning_rat=1")
  message = str(info.value)
  assert "unknown hparams key 'learning_rat' for ToyHParams" in message
  for key in ("learning_rate", "batch_size", "nan_loss_steps", "condition_on"):
    assert key in message
  with pytest.raises(hparams_lib.HParamsError, match="unknown hparams typo for ToyHParams; valid keys: batch_size"):
    toy_model.ToyHParams.from_dict({"typo": 1})


def test_json_round_trip():
  hp = hparams_lib.override(toy_model.toy_tiny(), "learning_rate=0.5,use_bias=false,condition_on=nothing")
  again = toy_model.ToyHParams.from_json(hp.to_json())
  assert again == hp and hparams_lib.diff(hp, again) == {}
  assert hparams_lib.diff(toy_model.toy_tiny(), hp) == {
      "learning_rate": (1e-2, 0.5), "use_bias": (True, False), "condition_on": ("previous", "nothing")}


# ---- registry -----------------------------------------------------------------------------------------------

def test_unknown_names_list_the_valid_ones():
  with pytest.raises(registry.RegistryError, match=r"unknown problem 'nope'; valid problems: bair, "
                     r"captioned_shapes, moving_mnist, stochastic_shapes, video_folder"):
    registry.check_names("nope", "toy", None)
  with pytest.raises(registry.RegistryError, match=r"unknown model 'nope'; valid models: .*toy.*videoflow"):
    registry.check_names("stochastic_shapes", "nope", None)
  with pytest.raises(registry.RegistryError, match=r"unknown hparams set 'nope'; valid hparams sets: .*toy_tiny"):
    registry.check_names("stochastic_shapes", "toy", "nope")
  with pytest.raises(registry.RegistryError, match="unknown model 'nope'"):
    registry.model("nope")
  with pytest.raises(registry.RegistryError, match="unknown model 'nope'"):
    config_lib.resolve_hparams("nope", None)
  with pytest.raises(registry.RegistryError, match="unknown hparams set 'nope'"):
    config_lib.resolve_hparams("toy", "nope")


def test_resolve_hparams_takes_the_models_default_set():
  name, hp = config_lib.resolve_hparams("toy", None, "learning_rate=0.25")
  assert name == "toy_tiny" and isinstance(hp, toy_model.ToyHParams) and hp.learning_rate == 0.25


# ---- the run record -----------------------------------------------------------------------------------------

def _config(**hparams) -> dict:
  return config_lib.make_config(problem="stochastic_shapes", problem_config="tiny32", model="toy",
                                hparams_set="toy_tiny", hparams=hparams_lib.override(toy_model.toy_tiny(), hparams),
                                spec={"frame_shape": (32, 32, 3), "num_input_frames": 1, "num_target_frames": 4,
                                      "num_labels": 0, "has_caption": False})


def test_config_compare(tmp_path):
  recorded = _config()
  config_lib.write_config(str(tmp_path), recorded)
  assert config_lib.read_config(str(tmp_path)) == recorded
  assert config_lib.compare(recorded, _config(), "dir", allow_hparams_change=False) == {}
  with pytest.raises(config_lib.ConfigError, match=r"other hparams \(learning_rate: 0.01 -> 0.5\).*"
                     r"--allow_hparams_change"):
    config_lib.compare(recorded, _config(learning_rate=0.5), "dir", allow_hparams_change=False)
  assert config_lib.compare(recorded, _config(learning_rate=0.5), "dir", allow_hparams_change=True) == {
      "learning_rate": (0.01, 0.5)}
  other_model = dict(_config(), model="videoflow")
  with pytest.raises(config_lib.ConfigError, match="holds a run of model 'toy'"):
    config_lib.compare(recorded, other_model, "dir", allow_hparams_change=True)
  other_spec = dict(_config(), spec=dict(recorded["spec"], num_input_frames=2))
  with pytest.raises(config_lib.ConfigError, match="spec"):
    config_lib.compare(recorded, other_spec, "dir", allow_hparams_change=True)
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="cannot read"):
    config_lib.read_config(str(tmp_path))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  from t2v.problems.stochastic_shapes import StochasticShapes  # pylint: disable=import-outside-toplevel
  path = str(tmp_path_factory.mktemp("tfds"))
  StochasticShapes(path, config="tiny32").prepare()
  return path


def test_resume_with_a_conflicting_override_is_refused_unless_allowed(data_dir, tmp_path):
  from t2v import trainer  # pylint: disable=import-outside-toplevel
  kwargs = dict(problem="stochastic_shapes", problem_config="tiny32", model="toy", data_dir=data_dir,
                output_dir=str(tmp_path), eval_steps=1, strategy="one_device", num_samples=0)
  trainer.run(train_steps=1, **kwargs)
  before = (tmp_path / "config.json").read_text()
  with pytest.raises(trainer.ConfigError, match=r"learning_rate: 0.01 -> 0.02"):
    trainer.run(train_steps=2, hparams_overrides="learning_rate=0.02", **kwargs)
  assert (tmp_path / "config.json").read_text() == before
  result = trainer.run(train_steps=2, hparams_overrides="learning_rate=0.02", allow_hparams_change=True, **kwargs)
  assert result["step"] == 2
  assert json.loads((tmp_path / "config.json").read_text())["hparams"]["learning_rate"] == 0.02

  # The same refusal from the command line: status 2, one line, no traceback.
  process = subprocess.run(
      [sys.executable, LAUNCHER, "cli", "--model=toy", "--problem_config=tiny32", f"--data_dir={data_dir}",
       f"--output_dir={tmp_path}", "--train_steps=3", "--hparams=learning_rate=0.03", "--strategy=one_device"],
      env=_env(), capture_output=True, text=True, timeout=240)
  assert process.returncode == 2, process.stderr[-3000:]
  assert "Traceback" not in process.stderr
  assert process.stderr.strip().splitlines()[-1].startswith(
      "t2v.trainer: error: output_dir") and "learning_rate: 0.02 -> 0.03" in process.stderr


# ---- the command line -------------------------------------------------------------------------------------------

def _trainer_cli_without_tensorflow(*flags: str) -> tuple[int, str, bool]:
  """Runs `python -m t2v.trainer flags`; returns (exit status, stderr, whether TensorFlow got imported)."""
  code = ("import runpy, sys\n"
          f"sys.argv = ['t2v.trainer', *{list(flags)!r}]\n"
          "try:\n"
          "  runpy.run_module('t2v.trainer', run_name='__main__', alter_sys=True)\n"
          "  status = 0\n"
          "except SystemExit as e:\n"
          "  status = e.code\n"
          "print(status, 'tensorflow' in sys.modules)\n")
  process = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120,
                           cwd=REPO)
  status, imported = process.stdout.split()[-2:]
  return int(status), process.stderr, imported == "True"


@pytest.mark.parametrize("flags, message", [
    (("--model=nope",), "unknown model 'nope'; valid models: cglow_video, videoflow"),
    (("--problem=nope",), "unknown problem 'nope'; valid problems: bair, captioned_shapes, moving_mnist, "
                          "stochastic_shapes, video_folder"),
    (("--hparams_set=nope",), "unknown hparams set 'nope'; valid hparams sets: "),
    (("--hparams=learning_rat=1",), "unknown hparams key 'learning_rat' for "),
    (("--hparams=batch_size=x",), "hparams batch_size='x' is not a valid int"),
])
def test_cli_rejects_bad_names_with_one_line_before_importing_tensorflow(flags, message):
  status, stderr, imported_tensorflow = _trainer_cli_without_tensorflow(*flags)
  assert status == 2
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"t2v.trainer: error: {message}"), stderr
  assert not imported_tensorflow


def test_cli_registry_help_lists_every_name():
  process = subprocess.run([sys.executable, "-m", "t2v.trainer", "--registry_help"], env=_env(),
                           capture_output=True, text=True, timeout=240, cwd=REPO)
  assert process.returncode == 0, process.stderr[-3000:]
  for name in (*registry.PROBLEMS, *registry.MODELS, *registry.HPARAMS_SETS):
    if name not in toy_model.MODELS and name not in toy_model.HPARAMS_SETS:
      assert f"  {name} " in process.stdout, name


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_importing_t2v_sets_the_onednn_default_and_keeps_the_users_choice(preset, expected):
  """t2v turns on TensorFlow's oneDNN CPU kernels unless TF_ENABLE_ONEDNN_OPTS is set (t2v/__init__.py)."""
  env = {k: v for k, v in _env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if preset is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = preset
  code = "import os, t2v; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
  process = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
  assert process.returncode == 0, process.stderr[-3000:]
  assert process.stdout.strip() == expected
