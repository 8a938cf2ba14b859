"""ssljax's BatchNorm against flax.linen.BatchNorm: same variables, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models.norm import BatchNorm, channel_moments


def test_channel_moments_match_the_definition():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 4, 7)) * 3.0 + 1.5
  mean, var = channel_moments(x)
  ref = np.asarray(x, np.float64).reshape(-1, 7)
  np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-5)
  np.testing.assert_allclose(var, ref.var(0), rtol=1e-4)  # Biased variance, as Flax.


@pytest.mark.parametrize("kwargs", [
    dict(momentum=0.9, epsilon=1e-5),
    dict(momentum=0.9, epsilon=1e-5, use_scale=False, use_bias=False),
    dict(momentum=0.8, epsilon=1e-3, dtype=jnp.bfloat16),
    dict(momentum=0.9, epsilon=1e-5, scale_init=nn.initializers.zeros),
])
def test_matches_flax(kwargs):
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 16)) * 2.0 + 0.5
  ours, theirs = BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
  v_ours = ours.init(jax.random.PRNGKey(2), x, use_running_average=False)
  v_theirs = theirs.init(jax.random.PRNGKey(2), x, use_running_average=False)
  assert jax.tree.structure(v_ours) == jax.tree.structure(v_theirs)
  # Make scale/bias non-trivial so the gradient and the affine part are really compared.
  v = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(3), a.shape), v_theirs)
  tol = 2e-2 if kwargs.get("dtype") == jnp.bfloat16 else 1e-5

  def run(module, variables, train):
    def f(params, x):
      y, upd = module.apply({**variables, "params": params}, x, use_running_average=not train,
                            mutable=["batch_stats"])
      return jnp.sum(jnp.sin(y.astype(jnp.float32))), (y, upd)
    params = variables.get("params", {})
    (_, (y, upd)), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, x)
    return y, upd, grads

  for train in (True, False):
    y1, s1, g1 = run(ours, v, train)
    y2, s2, g2 = run(theirs, v, train)
    assert y1.dtype == y2.dtype
    np.testing.assert_allclose(np.asarray(y1, np.float32), np.asarray(y2, np.float32),
                               rtol=tol, atol=tol)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s1, s2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 10), g1, g2)


@pytest.mark.parametrize("shape", [
    (4, 32, 32, 8),    # 1024 positions: one 32-row window stage, then 32 rows summed.
    (3, 37, 41, 5),    # 1517 positions: padded windows, two stages.
    (2, 5, 3),         # 5 positions: no window at all.
    (64, 7),           # No spatial axes: a plain sum.
])
def test_channel_sums_match_float64(shape):
  from ssljax.models.norm import channel_sums
  x = jax.random.normal(jax.random.PRNGKey(4), shape) * 3.0 + 1.5
  ref = np.asarray(x, np.float64).reshape(-1, shape[-1]).sum(0)
  got = jax.jit(channel_sums)(x)
  assert got.shape == (shape[-1],) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref, rtol=2e-6)


def test_channel_sums_on_a_large_activation_are_accurate():
  # 131,072 positions per channel (a ResNet stage-1 activation at batch 128): summing them in
  # windows of 32 keeps the float32 error small (measured 3.8e-7); XLA's single
  # 32x32x32-window reduction of the same array measured 2.6e-6. The bound is between the two.
  from ssljax.models.norm import channel_sums
  x = jax.random.normal(jax.random.PRNGKey(5), (128, 32, 32, 4)) * 3.0 + 1.0
  ref = np.asarray(x, np.float64).reshape(-1, 4).sum(0)
  err = np.max(np.abs(np.asarray(jax.jit(channel_sums)(x)) - ref) / np.abs(ref))
  assert err < 1e-6, err


def test_channel_sums_keep_a_sharded_batch_local():
  # Over a batch sharded on 8 devices the windows never cross the batch axis, so the compiled sum
  # is local partial sums plus one all-reduce; no activation is gathered or exchanged.
  from jax.sharding import Mesh, NamedSharding
  from jax.sharding import PartitionSpec as P

  from ssljax.models.norm import channel_sums
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  x = jax.device_put(jax.random.normal(jax.random.PRNGKey(6), (16, 12, 12, 8)),
                     NamedSharding(mesh, P("data")))
  f = jax.jit(channel_sums)
  hlo = f.lower(x).compile().as_text()
  assert "all-gather" not in hlo and "collective-permute" not in hlo and "all-to-all" not in hlo
  assert "all-reduce" in hlo
  ref = np.asarray(x, np.float64).reshape(-1, 8).sum(0)
  np.testing.assert_allclose(f(x), ref, rtol=2e-6)
