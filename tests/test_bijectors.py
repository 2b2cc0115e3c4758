"""Each flow bijector and the whole per-frame flow: exact inverse, log-det = log|det| of the autodiff Jacobian
(eager and tf.function), data-dependent init, TFP composition and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from t2v import bijectors as t2vb

tfb, tfd = tfp.bijectors, tfp.distributions


def _randomise(layer, seed=0, stddev=0.1):
  """Moves zero-initialised weights (couplings start as identities) so the checks are not trivial."""
  rng = np.random.default_rng(seed)
  for v in layer.trainable_weights:
    v.assign(v.numpy() + rng.normal(0, stddev, v.shape).astype(np.float32))


def _jacobian_log_det(fn, x):
  """log|det J| of fn at one example x [H, W, C] by autodiff, in float64."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = tf.reshape(fn(x[None]), [-1])
  jacobian = tape.jacobian(y, x)
  d = int(np.prod(x.shape))
  sign, log_det = np.linalg.slogdet(tf.reshape(jacobian, [d, d]).numpy().astype(np.float64))
  assert sign != 0
  return log_det


def _cases():
  cond = tf.random.stateless_normal([2, 4, 4, 3], seed=[5, 5])
  actnorm = t2vb.ActNormParams(2, 6)
  conv = t2vb.InvertibleConvParams(2, 6, seed=1)
  affine = t2vb.CouplingNet(2, 3, 6, 8, cond_channels=3, activation="gated")
  additive = t2vb.CouplingNet(2, 3, 3, 8, activation="relu")
  steps = t2vb.FlowStepParams(3, 6, 8, "affine", "relu", cond_channels=3, seed=2)
  for layer in (actnorm, conv, affine, additive, steps):
    _randomise(layer)
  return {
      "actnorm": (t2vb.ActNorm(actnorm, 1), {}),
      "invertible_conv": (t2vb.InvertibleConv1x1(conv, 1), {}),
      "affine_coupling": (t2vb.AffineCoupling(affine, 1), {"cond": cond}),
      "additive_coupling": (t2vb.AdditiveCoupling(additive, 0), {}),
      "squeeze": (t2vb.Squeeze(), {}),
      "flow_step": (t2vb.FlowStep(steps, 2), {"cond": cond}),
      "flow_steps": (t2vb.FlowSteps(steps), {"cond": cond}),
  }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf_function"])
def test_inverse_and_log_det(name, graph):
  bijector, kwargs = CASES[name]
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[1, 2])
  forward = lambda x: bijector.forward_and_log_det(x, **kwargs)
  inverse = lambda y: bijector.inverse_and_log_det(y, **kwargs)
  if graph:
    forward, inverse = tf.function(forward, autograph=False), tf.function(inverse, autograph=False)
  y, log_det = forward(x)
  x_again, inverse_log_det = inverse(y)
  np.testing.assert_array_less(np.abs(x_again - x).max(), 1e-4)
  np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-5, atol=1e-4)
  for i in range(2):
    example_kwargs = {k: v[i:i + 1] for k, v in kwargs.items()}
    expected = _jacobian_log_det(lambda x: bijector.forward_and_log_det(x, **example_kwargs)[0], x[i])
    np.testing.assert_allclose(log_det[i], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tfp_api_agrees_with_fused_methods(name):
  bijector, kwargs = CASES[name]
  x = tf.random.stateless_normal([2, 4, 4, 6], seed=[3, 4])
  y, log_det = bijector.forward_and_log_det(x, **kwargs)
  if isinstance(bijector, tfb.Chain):
    kwargs = {"coupling": kwargs} if kwargs else {}
  np.testing.assert_allclose(bijector.forward(x, **kwargs), y, atol=1e-6)
  np.testing.assert_allclose(bijector.forward_log_det_jacobian(x, event_ndims=3, **kwargs), log_det, rtol=1e-5)
  np.testing.assert_allclose(bijector.inverse(y, **kwargs), x, atol=1e-4)


def test_actnorm_data_dependent_init():
  params = t2vb.ActNormParams(2, 5)
  x = 3.0 + 2.0 * tf.random.stateless_normal([16, 4, 4, 5], seed=[0, 1])
  params.initialize_from(x, 1)
  y = t2vb.ActNorm(params, 1).forward(x)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0.0, atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), 1.0, atol=1e-4)
  np.testing.assert_array_equal(params.bias.numpy()[0], 0.0)  # the other step is untouched


def test_invertible_conv_starts_orthogonal_with_lu_log_det():
  bijector = t2vb.InvertibleConv1x1(t2vb.InvertibleConvParams(1, 8, seed=3))
  w = bijector.weight().numpy()
  np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
  x = tf.random.stateless_normal([1, 3, 5, 8], seed=[0, 0])
  _, log_det = bijector.forward_and_log_det(x)
  np.testing.assert_allclose(log_det, 15 * np.linalg.slogdet(w)[1], atol=1e-4)


def test_affine_coupling_uses_sigmoid_scale():
  net = t2vb.CouplingNet(1, 2, 4, 4)
  x = tf.random.stateless_normal([1, 2, 2, 4], seed=[1, 1])
  y, log_det = t2vb.AffineCoupling(net).forward_and_log_det(x)
  s = 1 / (1 + np.exp(-2.0))  # the zero-initialised network gives scale sigmoid(0 + 2)
  np.testing.assert_allclose(y[..., 2:], x[..., 2:] * s, rtol=1e-6)
  np.testing.assert_allclose(log_det, 2 * 2 * 2 * np.log(s), rtol=1e-6)



def test_affine_coupling_reads_the_stored_interleaved_shift_scale_pairs():
  """Checkpoints store the last layer's outputs as (shift, raw) pairs, Glow's layout; the coupling reads them
  through a weight permutation. Checked against the formula applied to the stored weights by hand (numpy)."""
  net = t2vb.CouplingNet(2, 3, 6, 5)
  net.build(None)
  rng = np.random.default_rng(0)
  for weight in net.weights:
    weight.assign(rng.normal(0, 0.3, weight.shape).astype(np.float32))
  x = tf.constant(rng.normal(size=(2, 4, 4, 6)).astype(np.float32))
  step = 1
  w = lambda v: v.numpy()[step]
  conv = lambda a, k, b: tf.nn.conv2d(a, k, 1, "SAME").numpy() + b
  h = np.maximum(conv(x[..., :3], w(net.w1), w(net.b1)), 0)
  h = np.maximum(conv(h, w(net.w2), w(net.b2)), 0)
  h = conv(h, w(net.w3), w(net.b3)) * np.exp(3 * w(net.logs3))  # [2, 4, 4, 6] as stored: shift, raw, shift, ...
  shift, raw = h[..., 0::2], h[..., 1::2]
  scale = 1 / (1 + np.exp(-(raw + 2)))
  y, log_det = t2vb.AffineCoupling(net, step).forward_and_log_det(x)
  np.testing.assert_allclose(y[..., :3], x[..., :3])
  np.testing.assert_allclose(y[..., 3:], (x.numpy()[..., 3:] + shift) * scale, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(log_det, np.log(scale).sum(axis=(1, 2, 3)), rtol=1e-4)

def _glow(coupling="affine", cond_channels=0):
  glow = t2vb.MultiScaleGlow((8, 8, 2), num_levels=2, depth=3, hidden_channels=8, coupling=coupling,
                             cond_channels=cond_channels)
  x = tf.random.stateless_uniform([3, 8, 8, 2], seed=[1, 1]) - 0.5
  conds = None
  if cond_channels:
    conds = [tf.random.stateless_normal([3, 4, 4, cond_channels], seed=[2, 2]),
             tf.random.stateless_normal([3, 2, 2, cond_channels], seed=[3, 3])]
  glow.initialize(x, conds)
  _randomise(glow, stddev=0.05)
  return glow, x, conds


@pytest.mark.parametrize("coupling", ["affine", "additive"])
@pytest.mark.parametrize("cond_channels", [0, 2])
def test_multiscale_glow_inverse_and_log_det(coupling, cond_channels):
  glow, x, conds = _glow(coupling, cond_channels)
  zs, hs, log_det = glow.encode(x, conds)
  assert [tuple(z.shape[1:]) for z in zs] == [(4, 4, 4), (2, 2, 16)]
  assert [tuple(h.shape[1:]) for h in hs] == [(4, 4, 4)]
  np.testing.assert_array_less(np.abs(glow.decode(zs, conds) - x).max(), 1e-4)
  graph_zs, _, graph_log_det = tf.function(glow.encode, autograph=False)(x, conds)
  np.testing.assert_allclose(graph_log_det, log_det, rtol=1e-5)

  def flat(x, i):
    c = None if conds is None else [c[i:i + 1] for c in conds]
    zs, _, _ = glow.encode(x, c)
    return tf.concat([tf.reshape(z, [-1]) for z in zs], 0)

  for i in range(2):
    np.testing.assert_allclose(log_det[i], _jacobian_log_det(lambda x: flat(x, i), x[i]), rtol=1e-4, atol=1e-3)


def test_glow_in_transformed_distribution_gives_change_of_variables():
  glow, x, _ = _glow()
  level = glow.level_bijector(0)  # squeeze + K steps as one TFP bijector
  dist = tfd.TransformedDistribution(tfd.Independent(tfd.Normal(tf.zeros([4, 4, 8]), 1.0), 3), tfb.Invert(level))
  y, log_det = level.forward(x), level.forward_log_det_jacobian(x, event_ndims=3)
  expected = tfd.Independent(tfd.Normal(tf.zeros([4, 4, 8]), 1.0), 3).log_prob(y) + log_det
  np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-5)


def test_bad_input_is_refused_with_a_clear_message():
  with pytest.raises(ValueError, match="divisible by 2\\*\\*num_levels"):
    t2vb.MultiScaleGlow((12, 12, 3), num_levels=3, depth=1, hidden_channels=4)
  with pytest.raises(ValueError, match="coupling='sum'"):
    t2vb.FlowStepParams(1, 4, 4, coupling="sum")
  with pytest.raises(ValueError, match="odd|even"):
    t2vb.Squeeze().forward(tf.zeros([1, 3, 4, 1]))
  net = t2vb.CouplingNet(1, 2, 4, 4, cond_channels=3)
  with pytest.raises(ValueError, match="pass cond="):
    t2vb.AffineCoupling(net).forward(tf.zeros([1, 2, 2, 4]))
  with pytest.raises(ValueError, match="out_channels=4, got 2 and 2"):
    t2vb.AffineCoupling(t2vb.CouplingNet(1, 2, 2, 4)).forward(tf.zeros([1, 2, 2, 4]))
  glow, _, _ = _glow()
  with pytest.raises(ValueError, match="2 latents"):
    glow.decode([tf.zeros([1, 4, 4, 4])])


def test_bfloat16_coupling_convolutions_keep_the_flow_exactly_invertible_with_its_own_log_det():
  """conv_dtype="bfloat16" rounds the coupling networks, not the bijection: inverse(forward(x)) == x and the
  log-det equals the autodiff Jacobian's, and the networks do compute differently from float32."""
  x = tf.random.stateless_uniform([2, 8, 8, 2], seed=[1, 1]) - 0.5
  glows = {}
  for dtype in ("float32", "bfloat16"):
    keras.utils.set_random_seed(0)
    glow = t2vb.MultiScaleGlow((8, 8, 2), num_levels=2, depth=2, hidden_channels=8, coupling="affine",
                               conv_dtype=dtype)
    glow.initialize(x)
    _randomise(glow, stddev=0.05)
    glows[dtype] = glow
  zs, _, log_det = glows["bfloat16"].encode(x)
  np.testing.assert_array_less(np.abs(glows["bfloat16"].decode(zs) - x).max(), 1e-4)
  flat = lambda v, i: tf.concat([tf.reshape(z, [-1]) for z in glows["bfloat16"].encode(v)[0]], 0)
  np.testing.assert_allclose(log_det[0], _jacobian_log_det(lambda v: flat(v, 0), x[0]), rtol=1e-3, atol=1e-2)
  zs32, _, _ = glows["float32"].encode(x)
  assert 0 < np.abs(zs32[-1] - zs[-1]).max() < 0.1
  with pytest.raises(ValueError, match="conv_dtype='float16' must be one of float32, bfloat16"):
    t2vb.MultiScaleGlow((8, 8, 2), num_levels=2, depth=1, hidden_channels=4, conv_dtype="float16")
