"""Gradients by inversion (t2v/bijectors/reversible.py): equal to plain backprop for FlowSteps (both directions,
affine and additive, with conditioning; eager, tf.function, XLA), for MultiScaleGlow after data-dependent init,
for VideoFlow's whole loss (the latent prior's gradients included) and under MirroredStrategy over 2 logical
CPUs; reconstruction over 32 affine steps stays within a bound; no per-step activations are stacked; the backward
pass evaluates each coupling network once.

Every check runs on weights moved away from their initial values (the coupling nets' last layers start at zero,
which makes every coupling the identity): otherwise a wrong gradient of the coupling nets could not show.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import keras

from t2v import bijectors as t2vb
from t2v.models.cglow_video import CGlowVideo
from t2v.models.cglow_video_hparams import cglow_video_tiny
from t2v.models.videoflow import VideoFlow


@pytest.fixture(autouse=True)
def _seeded():
  """Every test starts from the same global seeds, so its random weights do not depend on the tests before it."""
  keras.utils.set_random_seed(0)
from t2v.models.videoflow_hparams import videoflow_tiny
from t2v.problems.spec import VideoSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4  # the bound on the relative error of a gradient, float32


def _randomise(weights, seed: int = 0, stddev: float = 0.05) -> None:
  """Adds N(0, stddev) to every trainable weight (the zero-initialised coupling outputs included)."""
  rng = np.random.default_rng(seed)
  for v in weights:
    v.assign(v.numpy() + rng.normal(0, stddev, v.shape).astype(np.float32))


def _assert_couplings_act(params: t2vb.FlowStepParams, x_a: tf.Tensor, cond=None) -> None:
  """The coupling nets' outputs are far from zero at every step: the test would see a wrong net gradient."""
  for k in range(params.num_steps):
    h = params.net(x_a, step=k, cond=cond)
    assert float(tf.math.reduce_std(h)) > 1e-2, f"coupling net {k} is still (nearly) the identity"


def _relative_errors(expected, got) -> dict[int, float]:
  """||got - expected|| / ||expected|| per tensor (IndexedSlices densified)."""
  errors = {}
  for i, (a, b) in enumerate(zip(expected, got)):
    a, b = tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy()
    assert np.all(np.isfinite(b)), f"gradient {i} is not finite"
    errors[i] = float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30))
  return errors


# Variables whose gradient is zero in exact arithmetic: softmax attention is invariant to a bias added to every
# key (it shifts each query's logits by one constant), so both computations give rounding noise there (~5e-9,
# against >= 1e-3 for every other variable of the caption-conditioned test), whose relative error means nothing.
ZERO_GRADIENT_SUFFIXES = ("key/bias",)


def _assert_same_gradients(expected, got, names) -> None:
  assert len(expected) == len(got) == len(names)
  norms = [np.linalg.norm(tf.convert_to_tensor(a).numpy()) for a in expected]
  noise = 1e-6 * max(norms)
  for i, error in _relative_errors(expected, got).items():
    if names[i].endswith(ZERO_GRADIENT_SUFFIXES):
      got_norm = np.linalg.norm(tf.convert_to_tensor(got[i]).numpy())
      assert norms[i] < noise and got_norm < noise, f"{names[i]}: gradient {norms[i]:.2e} / {got_norm:.2e}, " \
          f"expected rounding noise (< {noise:.2e})"
      continue
    assert error < RTOL, f"{names[i]}: relative error {error:.2e} >= {RTOL}"
    assert norms[i] > 0, f"{names[i]}: the gradient is zero: the test is trivial there"


def _steps(coupling: str, num_steps: int = 4, channels: int = 6, cond_channels: int = 0, seed: int = 2):
  params = t2vb.FlowStepParams(num_steps, channels, 8, coupling, "relu", cond_channels=cond_channels, seed=seed)
  _randomise(params.trainable_weights, seed=seed)
  return params


# ---- FlowSteps -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("coupling", ["affine", "additive"])
@pytest.mark.parametrize("cond_channels", [0, 3])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("mode", ["eager", "tf_function"])
def test_flow_steps_gradients_equal_plain_backprop(coupling, cond_channels, direction, mode):
  params = _steps(coupling, cond_channels=cond_channels)
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[1, 2])
  cond = tf.random.stateless_normal([2, 4, 4, cond_channels], seed=[3, 2]) if cond_channels else None
  _assert_couplings_act(params, x[..., :3], cond)
  weight = tf.random.stateless_normal([2, 4, 4, 6], seed=[1, 5])
  sources = [x] + ([cond] if cond_channels else [])

  def loss_and_grads(reversible):
    steps = t2vb.FlowSteps(params, reversible_gradients=reversible)
    apply = steps.forward_and_log_det if direction == "forward" else steps.inverse_and_log_det
    with tf.GradientTape() as tape:
      tape.watch(sources)
      y, log_det = apply(x, cond=cond)
      # both outputs carry an upstream gradient, with different weights per example
      loss = tf.reduce_sum(y * weight) + tf.reduce_sum(log_det * tf.constant([0.3, -0.7]))
    return loss, tape.gradient(loss, sources + params.trainable_weights)

  if mode == "tf_function":
    loss_and_grads = tf.function(loss_and_grads, autograph=False)
  plain_loss, plain = loss_and_grads(False)
  reversible_loss, reversible = loss_and_grads(True)
  np.testing.assert_allclose(reversible_loss, plain_loss, rtol=1e-6)
  names = ["x"] + (["cond"] if cond_channels else []) + [v.path for v in params.trainable_weights]
  _assert_same_gradients(plain, reversible, names)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_flow_steps_gradients_under_xla(coupling):
  params = _steps(coupling, cond_channels=2)
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[4, 2])
  cond = tf.random.stateless_normal([2, 4, 4, 2], seed=[4, 3])

  def grads(reversible):
    @tf.function(jit_compile=True, autograph=False)
    def run(x, cond):
      with tf.GradientTape() as tape:
        tape.watch([x, cond])
        y, log_det = t2vb.FlowSteps(params, reversible_gradients=reversible).forward_and_log_det(x, cond=cond)
        loss = tf.reduce_sum(tf.sin(y)) - tf.reduce_sum(log_det)
      return tape.gradient(loss, [x, cond] + params.trainable_weights)
    return run(x, cond)

  _assert_same_gradients(grads(False), grads(True), ["x", "cond"] + [v.path for v in params.trainable_weights])


def test_thirty_two_affine_steps_reconstruct_and_match_plain_gradients():
  """32 steps after data-dependent init, perturbed: decode(encode(x)) stays within 2e-4 (measured ~2e-5 with
  outputs up to ~10), and the gradients, which rebuild every step's input from the last, still match."""
  params = t2vb.FlowStepParams(32, 8, 16, "affine", "relu", seed=3)
  x = tf.random.stateless_normal([4, 8, 8, 8], seed=[1, 2])
  t2vb.FlowSteps(params).initialize(x)
  _randomise(params.trainable_weights, seed=1)
  _assert_couplings_act(params, x[..., :4])
  steps = t2vb.FlowSteps(params, reversible_gradients=True)
  y, log_det = steps.forward_and_log_det(x)
  assert float(tf.math.reduce_std(log_det)) > 0.1  # the couplings' log-det depends on the data: not trivial
  x_again, _ = steps.inverse_and_log_det(y)
  error = float(tf.reduce_max(tf.abs(x_again - x)))
  assert error < 2e-4, f"max |decode(encode(x)) - x| = {error:.2e} after 32 steps (|y| up to {np.abs(y).max():.1f})"
  weight = tf.random.stateless_normal(y.shape, seed=[9, 9])

  def grads(reversible):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y, log_det = t2vb.FlowSteps(params, reversible_gradients=reversible).forward_and_log_det(x)
      loss = tf.reduce_sum(y * weight) + tf.reduce_sum(log_det)
    return tape.gradient(loss, [x] + params.trainable_weights)

  _assert_same_gradients(grads(False), grads(True), ["x"] + [v.path for v in params.trainable_weights])


def _count_ops(concrete_function, op: str) -> int:
  """Nodes of type `op` anywhere in a traced function, its loop bodies and gradient functions included."""
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return sum(node.op == op for node in nodes)


def _stacked_accumulators(concrete_function) -> int:
  """TensorListPushBack ops: how while_v2 stores each iteration's activations for its gradient."""
  return _count_ops(concrete_function, "TensorListPushBack")


def _traced_train_grads(params, reversible: bool, direction: str = "forward"):
  """The concrete function of a loss's gradients through FlowSteps (x [2, 4, 4, 6], a 2-channel cond)."""
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[1, 2])
  cond = tf.random.stateless_normal([2, 4, 4, 2], seed=[1, 3])

  @tf.function(autograph=False)
  def train_grads(x, cond):
    with tf.GradientTape() as tape:
      tape.watch(x)
      steps = t2vb.FlowSteps(params, reversible_gradients=reversible)
      apply = steps.forward_and_log_det if direction == "forward" else steps.inverse_and_log_det
      y, log_det = apply(x, cond=cond)
      loss = tf.reduce_sum(y ** 2) - tf.reduce_sum(log_det)
    return tape.gradient(loss, [x] + params.trainable_weights)

  return train_grads.get_concrete_function(x, cond)


def test_reversible_steps_store_no_per_step_activations():
  params = _steps("affine", cond_channels=2)
  assert _stacked_accumulators(_traced_train_grads(params, False)) > 0  # the check can see plain backprop's stacks
  assert _stacked_accumulators(_traced_train_grads(params, True)) == 0


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_reversible_backward_evaluates_each_coupling_network_once(direction):
  """The backward loop inverts a coupling and recomputes it from one evaluation of its network: the traced
  training step holds the network's 3 convolutions twice (forward loop, backward loop), not three times."""
  params = _steps("affine", cond_channels=2)
  assert _count_ops(_traced_train_grads(params, True, direction), "Conv2D") == 2 * 3


def test_coupling_parts_compose_to_the_coupling():
  """network_output reads only the untouched half (same h from x and from y); the from-network maps are the
  coupling's own."""
  params = _steps("affine")
  coupling = t2vb.AffineCoupling(params.net, 1)
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[6, 1])
  y, log_det = coupling.forward_and_log_det(x)
  h = coupling.network_output(x)
  np.testing.assert_array_equal(coupling.network_output(y), h)
  y_from_h, log_det_from_h = coupling.forward_from_network(x, h)
  np.testing.assert_array_equal(y_from_h, y)
  np.testing.assert_array_equal(log_det_from_h, log_det)
  x_again, inverse_log_det = coupling.inverse_from_network(y, h)
  np.testing.assert_allclose(x_again, x, atol=1e-5)
  np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-6)


def test_weights_that_are_not_step_stacked_are_refused_with_the_fix():
  shared = tf.Variable(tf.ones([3]), name="shared_scale")  # one weight for all steps: no per-step slice
  forward = lambda k, x, conds: (x * shared, tf.zeros(tf.shape(x)[:1]))
  inverse = lambda k, y, conds: y / shared
  x = tf.ones([2, 3])
  with tf.GradientTape() as tape:
    y, _ = t2vb.reversible_chain(x, (), 2, forward, inverse)
  with pytest.raises(ValueError, match="shared_scale.*no leading axis of 2 steps.*pass them as conditioning"):
    tape.gradient(y, shared)


def test_bad_option_is_refused():
  with pytest.raises(TypeError, match="reversible_gradients='yes' must be True or False"):
    t2vb.FlowSteps(_steps("affine"), reversible_gradients="yes")
  with pytest.raises(TypeError, match="reversible_gradients=1 must be True or False"):
    t2vb.MultiScaleGlow((8, 8, 1), 2, 2, 4, reversible_gradients=1)
  forward = lambda k, x, conds: (2 * x, tf.zeros(tf.shape(x)[:1]))
  with pytest.raises(TypeError, match="stages=.* must be a non-empty sequence of Stage and CouplingStage"):
    t2vb.reversible_chain(tf.ones([2, 3]), (), 2, forward, lambda k, y, conds: y / 2, stages=[forward])


# ---- MultiScaleGlow and VideoFlow ----------------------------------------------------------------------

@pytest.mark.parametrize("coupling", ["affine", "additive"])
@pytest.mark.parametrize("cond_channels", [0, 2])
def test_glow_gradients_after_data_dependent_init_equal_plain_backprop(coupling, cond_channels):
  x = tf.random.stateless_normal([3, 8, 8, 2], seed=[7, 1])
  conds = None
  if cond_channels:
    conds = [tf.random.stateless_normal([3, 4, 4, cond_channels], seed=[2, 2]),
             tf.random.stateless_normal([3, 2, 2, cond_channels], seed=[3, 3])]
  glows = [t2vb.MultiScaleGlow((8, 8, 2), num_levels=2, depth=3, hidden_channels=8, coupling=coupling,
                               cond_channels=cond_channels, seed=5, reversible_gradients=reversible)
           for reversible in (False, True)]
  glows[1].set_weights(glows[0].get_weights())  # the same random coupling nets
  for glow in glows:
    glow.initialize(x, conds)  # eager, separately for each flow: it must give both the same ActNorm weights
  for a, b in zip(*(glow.weights for glow in glows)):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  for glow in glows:
    _randomise(glow.trainable_weights, seed=4)
  sources = [x] + (conds or [])

  def grads(glow):
    with tf.GradientTape() as tape:
      tape.watch(sources)
      zs, hs, log_det = glow.encode(x, conds)
      # every output of the flow carries gradient: latents, the h the prior conditions on, the log-det
      loss = (sum(tf.reduce_sum(tf.sin(z) * (i + 1)) for i, z in enumerate(zs))
              + sum(tf.reduce_sum(h ** 2) for h in hs) - tf.reduce_sum(log_det))
    return tape.gradient(loss, sources + glow.trainable_weights)

  names = ["x"] + [f"cond_{i}" for i in range(len(conds or []))] + [v.path for v in glows[0].trainable_weights]
  _assert_same_gradients(grads(glows[0]), grads(glows[1]), names)
  reversible_decode = tf.function(glows[1].decode, autograph=False)
  zs, _, _ = glows[1].encode(x, conds)
  np.testing.assert_array_less(np.abs(reversible_decode(zs, conds) - x).max(), 1e-4)


def _videoflow_pair(**overrides):
  """Two tiny VideoFlows, plain and reversible, with the same initialised and perturbed weights."""
  spec = VideoSpec((8, 8, 1), 1, 2)
  video = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 1)), tf.uint8)
  models = [VideoFlow(dataclasses.replace(videoflow_tiny(), reversible_gradients=reversible, num_train_frames=3,
                                          **overrides), spec) for reversible in (False, True)]
  models[0].initialize({"video": video})
  _randomise(models[0].trainable_weights, seed=6)
  models[1].set_weights(models[0].get_weights())
  return models, {"video": video, "seed": tf.constant([3, 4])}


@pytest.mark.parametrize("overrides", [{}, {"coupling": "additive", "coupling_activation": "gated"}],
                         ids=["affine", "additive_gated"])
def test_videoflow_loss_gradients_equal_plain_backprop(overrides):
  """The whole training loss: flow, latent priors (which read the flow's latents) and the unconditional term."""
  models, batch = _videoflow_pair(**overrides)
  assert models[1].glow.reversible_gradients and not models[0].glow.reversible_gradients

  @tf.function(autograph=False)
  def grads(model):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    return loss, tape.gradient(loss, model.trainable_weights)

  plain_loss, plain = grads(models[0])
  reversible_loss, reversible = grads(models[1])
  np.testing.assert_allclose(reversible_loss, plain_loss, rtol=1e-6)
  _assert_same_gradients(plain, reversible, [v.path for v in models[0].trainable_weights])


def test_cglow_video_loss_gradients_equal_plain_backprop(coupling="affine"):
  """The label-conditioned Glow (captions): head and tail flows whose couplings see the conditioning pyramids of
  the caption, the previous frame and the context state, so the gradients reach those through the conditioning."""
  spec = VideoSpec((8, 8, 3), 0, 3, has_caption=True, vocabulary=("blue", "circle", "moving", "red", "square"))
  rng = np.random.default_rng(1)
  batch = {"video": tf.constant(rng.integers(0, 256, (2, 3, 8, 8, 3)), tf.uint8),
           "caption": tf.constant(["red circle moving", "blue square moving"]), "seed": tf.constant([2, 5])}
  models = [CGlowVideo(dataclasses.replace(cglow_video_tiny(), condition="caption", coupling=coupling,
                                           reversible_gradients=reversible), spec) for reversible in (False, True)]
  models[0].initialize(batch)
  _randomise(models[0].trainable_weights, seed=7)
  models[1].set_weights(models[0].get_weights())
  assert models[1].head.glow.reversible_gradients and models[1].tail.glow.reversible_gradients
  assert not models[0].tail.glow.reversible_gradients

  @tf.function(autograph=False)
  def grads(model):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    return loss, tape.gradient(loss, model.trainable_weights)

  plain_loss, plain = grads(models[0])
  reversible_loss, reversible = grads(models[1])
  np.testing.assert_allclose(reversible_loss, plain_loss, rtol=1e-6)
  # the conditioning paths are among the checked (and non-zero) gradients: caption encoder, pyramids, state
  checked = {id(v) for v in models[0].trainable_weights}
  for part in (models[0].condition_encoder, models[0].head.pyramid, models[0].tail.pyramid,
               models[0].context_processor):
    assert part.trainable_weights and all(id(v) in checked for v in part.trainable_weights), part.name
  _assert_same_gradients(plain, reversible, [v.path for v in models[0].trainable_weights])


_MIRRORED_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from t2v.models.videoflow import VideoFlow
    from t2v.models.videoflow_hparams import videoflow_tiny
    from t2v.problems.spec import VideoSpec

    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    video = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8, 1)), tf.uint8)
    results, weights = {}, None
    for reversible in (False, True):
      hp = dataclasses.replace(videoflow_tiny(), reversible_gradients=reversible, num_train_frames=3)
      with strategy.scope():
        model = VideoFlow(hp, VideoSpec((8, 8, 1), 1, 2))
      if weights is None:
        model.initialize({"video": video})
        rng = np.random.default_rng(6)
        for v in model.trainable_weights:
          v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
        weights = model.get_weights()
      model.set_weights(weights)

      def replica_step(batch):  # as t2v.trainer's: per-replica gradients of the global-batch loss, all-reduced
        with tf.GradientTape() as tape:
          loss = tf.reduce_sum(model.compute_loss(batch, training=True)[0]) / 4
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, [loss] + grads)

      def shard(context):
        i = context.replica_id_in_sync_group
        return {"video": video[2 * i:2 * i + 2], "seed": tf.constant([5, 0]) + i}

      batch = strategy.experimental_distribute_values_from_function(shard)
      out = tf.function(lambda batch: strategy.run(replica_step, args=(batch,)), autograph=False)(batch)
      results[str(reversible)] = [t.numpy().tolist() for t in strategy.experimental_local_results(out)[0]]
    json.dump({"replicas": strategy.num_replicas_in_sync, **results}, open(sys.argv[1], "w"))
""")


def test_mirrored_train_step_with_reversible_gradients_matches_plain(tmp_path):
  result_path = tmp_path / "result.json"
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, str(result_path)], env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(result_path.read_text())
  assert result["replicas"] == 2
  plain, reversible = ([np.asarray(t) for t in result[key]] for key in ("False", "True"))
  np.testing.assert_allclose(reversible[0], plain[0], rtol=1e-6)  # the summed loss
  _assert_same_gradients(plain[1:], reversible[1:], [f"variable {i}" for i in range(len(plain) - 1)])
