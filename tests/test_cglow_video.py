"""Conditional Glow video (Donahue 2019): invertibility under a fixed condition, gradients reaching the label and
caption embeddings, the context state, exact bits per pixel, sampling, bad inputs, and training that lowers the
held-out bpp (own loop on synthetic clips, and the real trainer on captioned shapes)."""

from __future__ import annotations

import dataclasses
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from t2v import registry, text
from t2v.hparams import HParamsError
from t2v.layers.conditioning import BOS_ID, NUM_RESERVED_IDS, PAD_ID, UNK_ID, CaptionEncoder
from t2v.models.cglow_video import CGlowVideo
from t2v.models.cglow_video_hparams import cglow_video_tiny
from t2v.models.likelihood import dequantize
from t2v.problems.spec import VideoSpec
from t2v.problems.stochastic_shapes import COLORS, DIRECTIONS, SHAPES, render_video
from t2v.trainer import optimizer as optimizer_lib

_COLOR_NAMES = ("red", "green", "blue")
_DIRECTION_NAMES = tuple(DIRECTIONS)
VOCABULARY = text.build_vocabulary(f"{c} {s} moving {d}" for c, s, d in
                                   itertools.product(_COLOR_NAMES, SHAPES, _DIRECTION_NAMES))


def _spec(frame_size=8, num_frames=3, **overrides) -> VideoSpec:
  values = dict(frame_shape=(frame_size, frame_size, 3), num_input_frames=0, num_target_frames=num_frames,
                num_labels=len(SHAPES), has_caption=True, vocabulary=VOCABULARY)
  return VideoSpec(**{**values, **overrides})


def _model(condition="label", spec=None, **overrides) -> CGlowVideo:
  keras.utils.set_random_seed(0)
  hp = dataclasses.replace(cglow_video_tiny(), condition=condition, **overrides)
  return CGlowVideo(hp, spec or _spec())


def _clips(num, seed, frame_size=8, num_frames=3) -> dict[str, tf.Tensor]:
  """Synthetic shapes clips: label = the shape, caption "<colour> <shape> moving <direction>"."""
  rng = np.random.default_rng(seed)
  videos, labels, captions = [], [], []
  for _ in range(num):
    shape, color, direction = (int(rng.integers(len(SHAPES))), int(rng.integers(len(_COLOR_NAMES))),
                               int(rng.integers(len(DIRECTIONS))))
    start = tuple(frame_size // 2 + int(j) for j in rng.integers(-1, 2, 2))
    videos.append(render_video(shape, COLORS[_COLOR_NAMES[color]], frame_size // 8 + 1, direction, start, 1.0,
                               num_frames, frame_size))
    labels.append(shape)
    captions.append(f"{_COLOR_NAMES[color]} {SHAPES[shape]} moving {_DIRECTION_NAMES[direction]}")
  return {"video": tf.constant(np.stack(videos)), "label": tf.constant(labels, tf.int32),
          "caption": tf.constant(captions)}


def _randomise(model, stddev=0.05, seed=0):
  """Moves the zero-initialised layers (identity couplings, N(0, I) priors) so every path carries signal."""
  rng = np.random.default_rng(seed)
  for v in model.trainable_weights:
    v.assign(v.numpy() + rng.normal(0, stddev, v.shape).astype(np.float32))


def _centred(batch):
  return dequantize(batch["video"], noise="midpoint") - 0.5  # [B, T, H, W, C]


# ---- §III-A: the conditional flow ---------------------------------------------------------------------

@pytest.mark.parametrize("condition,overrides", [
    ("caption", {"caption_encoder": "transformer"}), ("caption", {"caption_encoder": "bag_of_words"}),
    ("label", {}), ("none", {"tail_state": False})])
def test_the_constructor_creates_every_variable_that_running_the_model_uses(condition, overrides):
  """Every part builds its weights from shapes (no eager pass): training, scoring and sampling find them all, with
  the shapes they need, and create none."""
  model = _model(condition, **overrides)
  before = {id(v): tuple(v.shape) for v in model.weights}
  batch = {**_clips(2, seed=5), "seed": tf.constant([1, 1])}
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
  grads = tape.gradient(loss, model.trainable_weights)
  for given in (0, 1):  # the head draws frame 0; the tail continues a given frame
    model.sample({key: value[:, :given] if key == "video" else value for key, value in batch.items()
                  if key != "seed"}, 2, 0.5)
  assert {id(v): tuple(v.shape) for v in model.weights} == before
  assert len(grads) == len(model.trainable_weights) and sum(g is None for g in grads) == 0


@pytest.mark.parametrize("conv_dtype", ["float32", "bfloat16"])
def test_conditional_flows_invert_exactly_for_a_fixed_condition_and_depend_on_it(conv_dtype):
  model = _model("label", conv_dtype=conv_dtype)
  assert model.head.glow.conv_dtype == model.tail.glow.conv_dtype == conv_dtype
  batch = _clips(4, seed=0)
  model.initialize(batch)
  _randomise(model)
  y = _centred(batch)
  label_map = model.condition_map(batch)  # [4, 8, 8, E]
  state = model.context_states(y[:, :1])[:, 0]  # s_0
  for flow, x, condition in ((model.head, y[:, 0], label_map),
                             (model.tail, y[:, 1], model.tail_condition_map(y[:, 0], state, label_map))):
    zs, _, _, _ = flow.encode(x, condition)
    np.testing.assert_allclose(flow.decode(zs, condition), x, atol=1e-4, err_msg=flow.name)
    # Another condition (other labels) gives other latents of the same frames.
    other = model.condition_map({"label": (batch["label"] + 1) % len(SHAPES)})
    if flow is model.tail:
      other = model.tail_condition_map(y[:, 0], state, other)
    other_zs, _, _, _ = flow.encode(x, other)
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(zs, other_zs)) > 1e-3, flow.name


def test_head_log_prob_is_prior_plus_log_det_by_autodiff():
  """log p(x | c) = log N(z; mu(c, h), sigma(c, h)) + log|det dz/dx|, with the Jacobian by autodiff."""
  spec = _spec(frame_size=4, num_frames=2)
  model = _model("label", spec=spec)
  _randomise(model)
  x = tf.random.stateless_uniform([1, 4, 4, 3], seed=[3, 3]) - 0.5
  label_map = model.condition_map({"label": tf.constant([2])})
  with tf.GradientTape() as tape:
    tape.watch(x)
    zs, hs, _, conds = model.head.encode(x, label_map)
    z = tf.concat([tf.reshape(z, [-1]) for z in zs], 0)  # [48]
  _, log_det = np.linalg.slogdet(tf.reshape(tape.jacobian(z, x), [48, 48]).numpy().astype(np.float64))
  prior = 0.0
  for level, z_level in enumerate(zs):
    mu, log_sigma = model.head._prior_params(level, hs[level] if level < len(hs) else None, conds, 1)
    prior += float(tf.reduce_sum(-0.5 * ((z_level - mu) / tf.exp(log_sigma)) ** 2 - log_sigma
                                 - 0.5 * np.log(2 * np.pi)))
  np.testing.assert_allclose(float(model.head.log_prob(x, label_map)[0]), prior + log_det, rtol=1e-4, atol=1e-3)


def test_uniform_density_scores_exactly_eight_bits(monkeypatch):
  model = _model("none")
  batch = _clips(2, seed=1)
  monkeypatch.setattr(model, "frame_log_probs", lambda y, c: tf.zeros(tf.shape(y)[:2]))  # log p = 0: uniform
  np.testing.assert_array_equal(model.log_prob_bpp(batch, 0, seed=tf.constant([0, 1])), np.full([2, 3], 8.0))
  loss, metrics = model.compute_loss({**batch, "seed": tf.constant([0, 2])}, training=False)
  np.testing.assert_array_equal(loss, [8.0, 8.0])
  np.testing.assert_array_equal(metrics["bpp_first_frame"], [8.0, 8.0])
  np.testing.assert_array_equal(metrics["bpp_tail"], [8.0, 8.0])


def test_bpp_layout_first_frame_and_tail():
  model = _model("label")
  batch = {**_clips(2, seed=2), "seed": tf.constant([5, 5])}
  model.initialize(batch)
  per_frame = model.log_prob_bpp(batch, 0, seed=tf.constant([5, 5])).numpy()  # [2, 3]
  loss, metrics = model.compute_loss(batch, training=True)
  np.testing.assert_allclose(metrics["bpp_first_frame"], per_frame[:, 0], rtol=1e-5)
  np.testing.assert_allclose(metrics["bpp_tail"], per_frame[:, 1:].mean(1), rtol=1e-5)
  np.testing.assert_allclose(loss, per_frame.mean(1), rtol=1e-5)
  np.testing.assert_allclose(model.log_prob_bpp(batch, 1, seed=tf.constant([5, 5])), per_frame[:, 1:], rtol=1e-5)


# ---- the embeddings train ------------------------------------------------------------------------------

def _embedding_variable(model):
  encoder = model.condition_encoder
  return encoder.embeddings if model.hparams.condition == "label" else encoder.token_embedding.embeddings


@pytest.mark.parametrize("condition,encoder", [("label", "transformer"), ("caption", "transformer"),
                                               ("caption", "bag_of_words")])
def test_loss_gradient_reaches_the_condition_embeddings(condition, encoder):
  model = _model(condition, caption_encoder=encoder)
  batch = {**_clips(4, seed=3), "seed": tf.constant([1, 1])}
  model.initialize(batch)
  _randomise(model)  # the couplings' and priors' zero-initialised output layers would block every path
  variable = _embedding_variable(model)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
  grad = tf.convert_to_tensor(tape.gradient(loss, variable)).numpy()
  used = (np.unique(batch["label"]) if condition == "label" else
          np.unique(model.condition_encoder.token_ids(batch["caption"]).numpy()))
  used = np.setdiff1d(used, [PAD_ID])  # padding is masked out of the pooled caption vector
  unused = np.setdiff1d(np.arange(variable.shape[0]), np.append(used, PAD_ID))
  for row in used:
    assert np.abs(grad[row]).max() > 0, f"no gradient for embedding row {row}"
  assert np.abs(grad[unused]).max(initial=0) == 0
  before = variable.numpy()
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.apply_gradients([(tf.convert_to_tensor(grad), variable)])
  moved = np.abs(variable.numpy() - before).max(axis=tuple(range(1, variable.shape.rank)))
  assert (moved[used] > 0).all() and (moved[unused] == 0).all()


def test_caption_embeddings_move_when_training_from_the_real_initialisation():
  """The paper's label embeddings did not train; ours do from the real (zero-output) initialisation: here the
  caption's, below (in the training run) the label's."""
  model = _model("caption")
  batch = _clips(8, seed=4)
  model.initialize(batch)
  variables = model.trainable_variables
  before = _embedding_variable(model).numpy()
  optimizer = keras.optimizers.Adam(1e-3)
  for step in range(3):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss({**batch, "seed": tf.constant([step, 0])}, training=True)[0])
    grads = tape.gradient(loss, variables)
    assert all(g is not None for g in grads), "a variable gets no gradient: the trainer would leave it untrained"
    optimizer.apply_gradients(zip(grads, variables))
  assert np.abs(_embedding_variable(model).numpy() - before).max() > 1e-5


# ---- §III-C: the context state -----------------------------------------------------------------------------

def test_context_state_updates_and_conditions_the_tail():
  model = _model("label")
  batch = _clips(2, seed=5)
  model.initialize(batch)
  y = _centred(batch)
  states = model.context_states(y).numpy()  # s_0, s_1, s_2: [2, 3, 8, 8, S]
  assert np.abs(states[:, 0]).max() > 0 and np.abs(states[:, 1] - states[:, 0]).max() > 0  # the real init moves s
  _randomise(model)
  state = tf.Variable(model.context_states(y[:, :1])[:, 0])
  label_map = model.condition_map(batch)
  with tf.GradientTape() as tape:
    log_prob = model.tail.log_prob(y[:, 1], model.tail_condition_map(y[:, 0], state, label_map))
  assert np.abs(tape.gradient(log_prob, state).numpy()).max() > 0


@pytest.mark.parametrize("tail_state", [True, False])
def test_tail_is_causal_and_reaches_back_only_through_the_state(tail_state):
  """log p(x_t | past) ignores later frames; it sees x_{t-2} only through the state (not with prev_frame only)."""
  model = _model("none", tail_state=tail_state)
  _randomise(model)
  y = tf.Variable(_centred(_clips(1, seed=6)))
  for t in range(3):
    with tf.GradientTape() as tape:
      log_prob = model.frame_log_probs(y, None)[0, t]
    grad = np.abs(tape.gradient(log_prob, y).numpy()[0]).max(axis=(1, 2, 3))  # [T]
    assert (grad[t + 1:] == 0).all() and grad[t] > 0
    if t == 2:
      assert grad[1] > 0 and (grad[0] > 0) == tail_state


# ---- sampling ---------------------------------------------------------------------------------------

def test_sample_shapes_seeds_and_zero_temperature():
  model = _model("label")
  batch = _clips(3, seed=7)
  model.initialize(batch)
  _randomise(model, stddev=0.02)
  inputs = {"video": batch["video"][:, :0], "label": batch["label"]}
  a = model.sample(inputs, 3, temperature=1.0, seed=(1, 2))
  assert a.dtype == tf.uint8 and a.shape == (3, 3, 8, 8, 3)
  np.testing.assert_array_equal(a, model.sample(inputs, 3, temperature=1.0, seed=(1, 2)))
  assert np.any(a.numpy() != model.sample(inputs, 3, temperature=1.0, seed=(3, 4)).numpy())
  np.testing.assert_array_equal(model.sample(inputs, 3, 0.0, seed=(1, 2)), model.sample(inputs, 3, 0.0, seed=(9, 9)))
  given = model.sample({**inputs, "video": batch["video"][:, :2]}, 2, temperature=0.5, seed=(1, 2))
  assert given.shape == (3, 2, 8, 8, 3)


# ---- bad inputs -----------------------------------------------------------------------------------------

def test_bad_inputs_fail_with_the_fix():
  model = _model("label")
  batch = _clips(2, seed=8)
  with pytest.raises(ValueError, match=r"needs inputs\['label'\]"):
    model.sample({"video": batch["video"][:, :0]}, 2)
  with pytest.raises(ValueError, match=r"needs features\['label'\]"):
    model.compute_loss({"video": batch["video"]}, training=True)
  with pytest.raises(ValueError, match=r"labels \[7\] are outside 0..2"):
    model.sample({"video": batch["video"][:, :0], "label": tf.constant([0, 7])}, 2)
  with pytest.raises(ValueError, match="needs a problem with labels"):
    _model("label", spec=_spec(num_labels=0))
  with pytest.raises(ValueError, match="needs a problem with captions"):
    _model("caption", spec=_spec(has_caption=False, vocabulary=()))
  with pytest.raises(ValueError, match="num_train_frames=1 trains the head only"):
    _model("label", num_train_frames=1)
  with pytest.raises(HParamsError, match="caption_width=6 must be divisible by caption_heads=4"):
    dataclasses.replace(cglow_video_tiny(), caption_width=6, caption_heads=4)


def test_unknown_caption_words_are_named_and_refused():
  model = _model("caption")
  video = tf.zeros([2, 0, 8, 8, 3], tf.uint8)
  captions = tf.constant(["red circle moving E", "Purple circle, moving sideways"])
  assert model.unknown_words(["red circle", "purple Circle sideways"]) == {1: ["purple", "sideways"]}
  with pytest.raises(ValueError, match=r"caption 1 'Purple circle, moving sideways': purple, sideways"):
    model.sample({"video": video, "caption": captions}, 1)
  assert model.sample({"video": video, "caption": captions}, 1, allow_unknown_words=True).shape == (2, 1, 8, 8, 3)


def test_caption_token_ids():
  encoder = CaptionEncoder(("circle", "red", "up"), (4, 4), 2, width=4, kind="bag_of_words", max_words=4)
  ids = encoder.token_ids(tf.constant(["Red CIRCLE!", "purple circle", "", "up up up up up"])).numpy()
  word = lambda w: NUM_RESERVED_IDS + ("circle", "red", "up").index(w)
  np.testing.assert_array_equal(ids, [[BOS_ID, word("red"), word("circle"), PAD_ID],
                                      [BOS_ID, UNK_ID, word("circle"), PAD_ID],
                                      [BOS_ID, PAD_ID, PAD_ID, PAD_ID],
                                      [BOS_ID, word("up"), word("up"), word("up")]])
  with pytest.raises(ValueError, match="not single words"):
    CaptionEncoder(("red circle",), (4, 4), 2)


# ---- presets ----------------------------------------------------------------------------------------------

def test_ablation_presets_wire_the_tail_as_table_one():
  expected = {  # preset: (condition, tail condition map channels at tiny sizes: frame 3 + state S + label E)
      "cglow_video_init": ("none", 0), "cglow_video_prev_frame": ("none", 3),
      "cglow_video_state": ("none", 3 + 4), "cglow_video_state_label": ("label", 3 + 4 + 4)}
  tiny = cglow_video_tiny()
  sizes = {key: getattr(tiny, key) for key in ("num_levels", "depth", "hidden_channels", "pyramid_channels",
                                                "condition_channels", "state_channels", "state_hidden_channels")}
  for name, (condition, tail_channels) in expected.items():
    hp = registry.hparams_set(name)
    assert hp.condition == condition and hp.clip_grad_norm > 0 and hp.warmup_steps > 0, name
    model = CGlowVideo(dataclasses.replace(hp, **sizes), _spec())
    assert model.tail.condition_channels == tail_channels, name
    assert model.head.condition_channels == (0 if condition == "none" else sizes["condition_channels"]), name
  for name in ("cglow_video_base", "cglow_video_cpu", "cglow_video_tiny"):
    assert registry.hparams_set(name).condition in ("label", "caption"), name


# ---- training lowers held-out bpp ------------------------------------------------------------------------

def test_a_short_training_run_lowers_held_out_bpp_and_trains_the_label_embeddings():
  model = _model("label")
  train, held_out = _clips(64, seed=10), {**_clips(16, seed=11), "seed": tf.constant([0, 0])}
  model.initialize({key: value[:16] for key, value in train.items()})
  variables = model.trainable_variables
  embeddings = model.condition_encoder.embeddings.numpy()
  optimizer = keras.optimizers.Adam(1e-2)
  optimizer.build(variables)

  @tf.function(autograph=False)  # as the trainer's step: no AutoGraph, its fused Adam update
  def step(batch):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_loss(batch, training=True)[0])
    grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 50.0)
    optimizer_lib.apply_adam(optimizer, zip(grads, variables), 1e-2)

  evaluate = tf.function(lambda batch: model.compute_loss(batch, training=False)[1], autograph=False)
  before = {k: float(tf.reduce_mean(v)) for k, v in evaluate(held_out).items()}
  for i in range(60):
    rows = np.random.default_rng(i).choice(64, 8, replace=False)
    step({**{k: tf.gather(v, rows) for k, v in train.items()}, "seed": tf.constant([i, 1])})
  after = {k: float(tf.reduce_mean(v)) for k, v in evaluate(held_out).items()}
  assert after["bpp"] < before["bpp"] - 0.5, (before, after)
  assert after["bpp_first_frame"] < before["bpp_first_frame"] and after["bpp_tail"] < before["bpp_tail"]
  moved = np.abs(model.condition_encoder.embeddings.numpy() - embeddings).max(axis=(1, 2, 3))  # [labels]
  assert (moved > 1e-4).all(), moved


@pytest.mark.slow  # 37-46 s on 2 cores; the default run keeps the trainer's cglow runs of the decoder's fixture
# (tests/conftest.py) and test_a_short_training_run_lowers_held_out_bpp_and_trains_the_label_embeddings
def test_trainer_trains_cglow_video_on_captioned_shapes(tmp_path):
  """The real trainer (warm-up, clipping, non-finite skipping, samples) on captioned shapes; the held-out bpp of
  the step-30 checkpoint is below the step-0 one's, for the first frame and for the tail."""
  captioned_shapes = pytest.importorskip("t2v.problems.captioned_shapes")
  from t2v import trainer  # pylint: disable=import-outside-toplevel
  from t2v.trainer.restore import restore_run  # pylint: disable=import-outside-toplevel
  data_dir, output_dir = str(tmp_path / "tfds"), str(tmp_path / "run")
  captioned_shapes.CaptionedShapes(data_dir, config="tiny32").prepare()
  result = trainer.run(problem="captioned_shapes", problem_config="tiny32", model="cglow_video",
                       hparams_set="cglow_video_tiny", hparams_overrides="learning_rate=1e-2", data_dir=data_dir,
                       output_dir=output_dir, train_steps=30, eval_steps=2, eval_every=0, checkpoint_every=0,
                       log_every=10, strategy="one_device", num_samples=2)
  assert result["step"] == 30 and result["skipped_steps"] == 0
  assert {"bpp", "bpp_first_frame", "bpp_tail"} <= set(result["eval"])
  assert (tmp_path / "run" / "samples" / "step_30.gif").stat().st_size > 0  # sampled from the test captions
  bpp = {}
  for step in (0, 30):
    problem, model, _ = restore_run(output_dir, data_dir, checkpoint=f"{output_dir}/ckpt-{step}")
    held_out = next(iter(problem.dataset(problem.eval_split, batch_size=8, training=False)))
    bpp[step] = model.log_prob_bpp(held_out, 0, seed=tf.constant([0, 0])).numpy()  # [8, 5]
  assert bpp[30].mean() < bpp[0].mean() - 0.3, (bpp[0].mean(0), bpp[30].mean(0))
  assert bpp[30][:, 0].mean() < bpp[0][:, 0].mean() and bpp[30][:, 1:].mean() < bpp[0][:, 1:].mean()
