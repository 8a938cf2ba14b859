"""Time-series encoders: TS2Vec's dilated convolutions and T-Loss's causal CNN."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models import num_params
from ssljax.models.sequence import (
  CausalCNNEncoder,
  SamePadConv,
  TS2VecEncoder,
  max_pool_time,
  shift_to_front,
  ts2vec_receptive_field,
  weight_norm_kernel,
)

SMALL_TS2VEC = dict(hidden=8, out_dim=6, depth=2, repr_dropout=0.0)
SMALL_CAUSAL = dict(channels=8, depth=3, reduced_size=16, out_dim=12)


def _series(key, b=3, t=20, c=2):
  return jax.random.normal(jax.random.PRNGKey(key), (b, t, c))


@functools.cache
def _variables(module, channels=2):
  """The module's variables for ``channels`` input channels (any length), computed once: an init
  compiles a random draw per parameter, the slow part of these tests."""
  return jax.jit(module.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, channels)))


def test_default_configs_shapes_and_parameter_counts():
  x = jax.ShapeDtypeStruct((2, 16, 1), jnp.float32)  # Shapes only: nothing is compiled.
  key = jax.random.PRNGKey(1)
  enc = TS2VecEncoder()
  params = jax.eval_shape(enc.init, key, x)["params"]
  # Linear(1, 64); 10 blocks of two 64->64 k3 convs; 64->320, 320->320 k3 convs + 1x1 projector.
  assert num_params(params) == 128 + 10 * 2 * (64 * 64 * 3 + 64) + (
    64 * 320 * 3 + 320) + (320 * 320 * 3 + 320) + (64 * 320 + 320) == 637248
  assert jax.eval_shape(enc.apply, {"params": params}, x).shape == (2, 16, 320)

  cnn = CausalCNNEncoder()
  params = jax.eval_shape(cnn.init, key, x)["params"]
  # Per causal conv v, g (one per output channel) and bias; 1x1 convs where widths change.
  assert num_params(params) == (
    (40 * 3 + 80) + (40 * 40 * 3 + 80) + (40 + 40)  # Block 0: 1 -> 40.
    + 9 * 2 * (40 * 40 * 3 + 80)  # Blocks 1..9: 40 -> 40.
    + (40 * 160 * 3 + 320) + (160 * 160 * 3 + 320) + (40 * 160 + 160)  # Block 10: 40 -> 160.
    + (160 * 320 + 320)) == 247720  # Linear(160, 320).
  assert jax.eval_shape(cnn.apply, {"params": params}, x).shape == (2, 320)
  pre = jax.eval_shape(lambda p, v: cnn.apply(p, v, pool=False), {"params": params}, x)
  assert pre.shape == (2, 16, 160)
  # Initialising with pool=False creates the same parameters.
  assert num_params(jax.eval_shape(lambda k, v: cnn.init(k, v, pool=False), key, x)) == 247720


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_pad_conv_matches_the_official_padding(kernel, dilation):
  x = _series(2, b=2, t=11, c=3)
  conv = SamePadConv(4, kernel=kernel, dilation=dilation)
  params = _variables(conv, channels=3)["params"]
  y = np.asarray(conv.apply({"params": params}, x))
  w, bias = np.asarray(params["conv"]["kernel"]), np.asarray(params["conv"]["bias"])
  # PyTorch: pad receptive_field // 2 on both sides, conv, drop the last output if it is even.
  pad = ((kernel - 1) * dilation + 1) // 2
  xp = np.pad(np.asarray(x), ((0, 0), (pad, pad), (0, 0)))
  ref = np.stack([sum(xp[:, t + j * dilation] @ w[j] for j in range(kernel)) + bias
                  for t in range(11)], axis=1)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [15, 16])
@pytest.mark.parametrize("kernel", [2, 3])
def test_ts2vec_keeps_the_length(t, kernel):
  x = _series(4, t=t)
  enc = TS2VecEncoder(**SMALL_TS2VEC, kernel=kernel)
  assert enc.apply(_variables(enc), x).shape == (3, t, 6)


def test_ts2vec_receptive_field():
  enc = TS2VecEncoder(**SMALL_TS2VEC)
  x = _series(6, b=1, t=41)
  variables = _variables(enc)
  t0 = 20
  y = enc.apply(variables, x)
  y2 = enc.apply(variables, x.at[0, t0].add(1.0))
  changed = np.asarray(jnp.any(y != y2, axis=-1))[0]
  r = (ts2vec_receptive_field(depth=2, kernel=3) - 1) // 2
  assert r == (2 * 2 * (1 + 2 + 4)) // 2  # Sum over blocks of 2 (kernel - 1) dilation, halved.
  expected = np.abs(np.arange(41) - t0) <= r
  np.testing.assert_array_equal(changed, expected)


def test_ts2vec_masking():
  enc = TS2VecEncoder(**SMALL_TS2VEC)
  x, x2 = _series(8), _series(9)
  variables = _variables(enc)
  rngs = {"mask": jax.random.PRNGKey(11)}
  none_kept = jnp.zeros(x.shape[:2], bool)
  masked = enc.apply(variables, x, mask=none_kept)
  # Every projected vector is zero: the output no longer depends on the input.
  np.testing.assert_allclose(masked, enc.apply(variables, x2, mask=none_kept), atol=1e-6)
  # mask_prob=1 in training masks everything; mask_prob=0 in training is evaluation.
  np.testing.assert_allclose(
    TS2VecEncoder(**SMALL_TS2VEC, mask_prob=1.0).apply(variables, x, train=True, rngs=rngs),
    masked, atol=1e-6)
  np.testing.assert_allclose(
    TS2VecEncoder(**SMALL_TS2VEC, mask_prob=0.0).apply(variables, x, train=True),
    enc.apply(variables, x), atol=1e-6)
  # The random mask differs between draws; evaluation masks nothing (an all-True mask).
  a = enc.apply(variables, x, train=True, rngs=rngs)
  b = enc.apply(variables, x, train=True, rngs={"mask": jax.random.PRNGKey(12)})
  assert not np.allclose(a, b)
  np.testing.assert_allclose(enc.apply(variables, x, mask=jnp.ones(x.shape[:2], bool)),
                             enc.apply(variables, x), atol=1e-6)


def test_ts2vec_dropout_only_in_training():
  enc = TS2VecEncoder(**{**SMALL_TS2VEC, "repr_dropout": 0.5}, mask_prob=0.0)
  x = _series(13)
  variables = _variables(TS2VecEncoder(**SMALL_TS2VEC))  # Same parameters.
  y = enc.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(15)})
  assert 0.3 < float(jnp.mean(y == 0)) < 0.7
  assert float(jnp.mean(enc.apply(variables, x) == 0)) < 0.01


def test_ts2vec_nan_timestamps_are_invalid():
  enc = TS2VecEncoder(**SMALL_TS2VEC)
  x = _series(16)
  nan_bt = jnp.zeros(x.shape[:2], bool).at[0, 3].set(True).at[2, 10:14].set(True)
  x_nan = jnp.where(nan_bt[..., None], jnp.array([jnp.nan, 1.0]), x)  # One NaN channel.
  variables = _variables(enc)
  y = enc.apply(variables, x_nan)
  assert bool(jnp.all(jnp.isfinite(y)))
  ref = enc.apply(variables, jnp.where(nan_bt[..., None], 0.0, x), valid=~nan_bt)
  np.testing.assert_allclose(y, ref, atol=1e-6)

  def loss(params):
    h = enc.apply({"params": params}, x_nan, train=True, rngs={"mask": jax.random.PRNGKey(1)})
    return jnp.sum(max_pool_time(h, ~nan_bt))

  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_ts2vec_zero_invalid_equals_encoding_the_crop_alone():
  enc = TS2VecEncoder(**SMALL_TS2VEC, zero_invalid=True)
  length, t = 9, 24
  crop = _series(18, b=2, t=length)
  buffer = jnp.concatenate([crop, 5.0 + _series(19, b=2, t=t - length)], axis=1)
  valid = jnp.broadcast_to(jnp.arange(t) < length, (2, t))
  variables = _variables(TS2VecEncoder(**SMALL_TS2VEC))  # zero_invalid adds no parameter.
  alone = enc.apply(variables, crop)
  y = enc.apply(variables, buffer, valid=valid)
  np.testing.assert_allclose(y[:, :length], alone, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(y[:, length:], 0.0)
  # Without zero_invalid the crop's last timestamps see the convs' outputs on the padding.
  y_plain = TS2VecEncoder(**SMALL_TS2VEC).apply(variables, buffer, valid=valid)
  assert not np.allclose(y_plain[:, :length], alone, atol=1e-4)


def test_max_pool_time_ignores_invalid_timestamps():
  h = _series(21, b=3, t=7, c=4)
  valid = jnp.array([[1, 0, 1, 0, 0, 0, 0], [1] * 7, [0] * 7], bool)
  h_big = jnp.where(valid[..., None], h, 1e6)  # Invalid timestamps would win the max.
  pooled = max_pool_time(h_big, valid)
  np.testing.assert_allclose(pooled[0], jnp.maximum(h[0, 0], h[0, 2]))
  np.testing.assert_allclose(pooled[1], h[1].max(axis=0))
  np.testing.assert_array_equal(pooled[2], 0.0)  # No valid timestamp.
  np.testing.assert_allclose(max_pool_time(h), h.max(axis=1))
  g = jax.grad(lambda v: jnp.sum(max_pool_time(v, valid)))(h_big)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.sum(g)) == 4 * 2
  np.testing.assert_array_equal(g[~valid], 0.0)


def test_causal_cnn_is_causal():
  enc = CausalCNNEncoder(**SMALL_CAUSAL)
  x = _series(22, b=2, t=30)
  variables = _variables(enc)
  t0 = 12
  h = enc.apply(variables, x, pool=False)
  h2 = enc.apply(variables, x.at[:, t0].add(1.0), pool=False)
  np.testing.assert_array_equal(h[:, :t0], h2[:, :t0])
  assert bool(jnp.all(jnp.any(h[:, t0] != h2[:, t0], axis=-1)))
  # Pooling over valid timestamps: padding at the end does not matter.
  valid = jnp.broadcast_to(jnp.arange(30) < t0, (2, 30))
  np.testing.assert_allclose(enc.apply(variables, x, valid=valid),
                             enc.apply(variables, x[:, :t0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [12, [12, 7, 20]])
def test_shift_to_front_equals_encoding_the_cropped_window(length):
  enc = CausalCNNEncoder(**SMALL_CAUSAL, final_activation=True)
  x = _series(24, b=3, t=32)
  start = jnp.array([0, 5, 10])
  variables = _variables(CausalCNNEncoder(**SMALL_CAUSAL))  # final_activation has no parameter.
  shifted, valid = shift_to_front(x, start, jnp.asarray(length))
  y = enc.apply(variables, shifted, valid=valid)
  lengths = np.broadcast_to(np.asarray(length), (3,))
  for b in range(3):
    s, n = int(start[b]), int(lengths[b])
    np.testing.assert_array_equal(shifted[b, :n], x[b, s:s + n])
    np.testing.assert_array_equal(valid[b], np.arange(32) < n)
    alone = enc.apply(variables, x[b:b + 1, s:s + n])[0]
    np.testing.assert_allclose(y[b], alone, rtol=1e-5, atol=1e-5)
  # Pooling the window in place (with the series' history) is a different function.
  in_place = jnp.arange(32)[None, :] - start[:, None]
  in_place = (in_place >= 0) & (in_place < jnp.broadcast_to(jnp.asarray(length), (3,))[:, None])
  assert not np.allclose(enc.apply(variables, x, valid=in_place)[1:], y[1:], atol=1e-4)


def test_causal_cnn_weight_norm_starts_at_v():
  params = _variables(CausalCNNEncoder(**SMALL_CAUSAL))["params"]
  convs = [block[name] for block in (params[f"blocks_{i}"] for i in range(4))
           for name in ("conv1", "conv2")]
  for conv in convs:
    np.testing.assert_allclose(weight_norm_kernel(conv["v"], conv["g"]), conv["v"], rtol=1e-6,
                               atol=1e-7)
  # After init, g scales each output channel's filter to norm g.
  conv = dict(convs[0], g=2.0 * convs[0]["g"])
  w = weight_norm_kernel(conv["v"], conv["g"])
  np.testing.assert_allclose(jnp.sqrt(jnp.sum(w**2, axis=(0, 1))), conv["g"], rtol=1e-5)


def test_causal_cnn_nan_timestamps():
  enc = CausalCNNEncoder(**SMALL_CAUSAL)
  x = _series(28)
  x_nan = x.at[1, 4, 0].set(jnp.nan).at[2, 15:, :].set(jnp.nan)
  variables = _variables(enc)
  y = enc.apply(variables, x_nan)
  assert bool(jnp.all(jnp.isfinite(y)))
  np.testing.assert_allclose(y[2], enc.apply(variables, x[2:3, :15])[0], rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(enc.apply({"params": p}, x_nan))))(
    variables["params"])
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
