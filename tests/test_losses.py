"""Barlow Twins loss: reference values, the spec's test oracle, jit, and sharded == 1-device."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.test_util import check_grads

from ssljax import losses


def _inputs(n, d):
  """Deterministic inputs (no RNG), the same formula as in the reference script below."""
  i = np.arange(n)[:, None]
  j = np.arange(d)[None, :]
  z1 = np.sin(0.7 * i + 1.3 * j) + 0.1 * j
  z2 = np.cos(0.5 * i - 0.9 * j) * (1 + 0.05 * i)
  return jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32)


# Reference values: the official formula run in PyTorch float64 on the inputs above —
#   bn = torch.nn.BatchNorm1d(d, affine=False) (training mode, as in facebookresearch/barlowtwins)
#   c = bn(z1).T @ bn(z2) / n
#   loss = (diag(c) - 1)^2.sum() + lambd * offdiag(c)^2.sum()
# Printed by that script: (n, d, lambd) -> loss.
REFERENCE = {
    (8, 4, 0.0051): 3.862447465037654,
    (8, 4, 0.0): 3.832936676119391,
    (16, 6, 0.0051): 6.784604328838385,
    (16, 6, 0.0): 6.75607696493153,
}


@pytest.mark.parametrize("n,d,lambd", list(REFERENCE))
def test_reference_values(n, d, lambd):
  z1, z2 = _inputs(n, d)
  got = losses.barlow_twins_loss(z1, z2, lambd=lambd)
  np.testing.assert_allclose(float(got), REFERENCE[(n, d, lambd)], rtol=2e-5)


def test_matches_numpy_formula_on_random_inputs():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(64, 16)), rng.normal(size=(64, 16)) * 3 + 1
  def std(z):
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
  c = std(z1).T @ std(z2) / 64
  want = ((1 - np.diag(c)) ** 2).sum() + 0.0051 * (c ** 2).sum() - 0.0051 * (np.diag(c) ** 2).sum()
  got = losses.barlow_twins_loss(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_zero_for_identical_orthonormal_columns():
  # z = Q * sqrt(N) with Q's columns orthonormal and zero-mean => standardised z = z and C = I.
  n, d = 32, 8
  a = np.random.default_rng(1).normal(size=(n, d))
  a -= a.mean(0)
  q, _ = np.linalg.qr(a)
  z = jnp.asarray(q * math.sqrt(n), jnp.float32)
  c = losses.cross_correlation(z, z)
  np.testing.assert_allclose(np.asarray(c), np.eye(d), atol=1e-4)
  assert float(losses.barlow_twins_loss(z, z)) < 1e-6


def test_independent_views_expected_magnitudes():
  # Spec oracle: independent views => diagonal term ~ D, off-diagonal sum ~ D(D-1)/N.
  n, d = 4096, 16
  rng = np.random.default_rng(2)
  z1 = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  z2 = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  on = float(losses.barlow_twins_loss(z1, z2, lambd=0.0))
  off = (float(losses.barlow_twins_loss(z1, z2, lambd=1.0)) - on)
  assert abs(on - d) < 0.1 * d
  assert 0.7 * d * (d - 1) / n < off < 1.3 * d * (d - 1) / n


def test_invariances():
  rng = np.random.default_rng(3)
  z1 = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
  z2 = jnp.asarray(rng.normal(size=(64, 8)) + 0.5 * np.asarray(z1), jnp.float32)
  base = float(losses.barlow_twins_loss(z1, z2))
  scale = jnp.asarray(rng.uniform(0.5, 3.0, size=(8,)), jnp.float32)
  shift = jnp.asarray(rng.normal(size=(8,)), jnp.float32)
  # Per-feature positive scale and shift of either view.
  np.testing.assert_allclose(float(losses.barlow_twins_loss(z1 * scale + shift, z2)), base,
                             rtol=1e-4)
  np.testing.assert_allclose(float(losses.barlow_twins_loss(z1, z2 * scale - shift)), base,
                             rtol=1e-4)
  # Swapping the views transposes C: same loss.
  np.testing.assert_allclose(float(losses.barlow_twins_loss(z2, z1)), base, rtol=1e-5)
  # A common permutation of the rows leaves it unchanged; permuting one view does not.
  perm = rng.permutation(64)
  np.testing.assert_allclose(float(losses.barlow_twins_loss(z1[perm], z2[perm])), base, rtol=1e-5)
  assert abs(float(losses.barlow_twins_loss(z1[perm], z2)) - base) > 1e-2
  # A sign flip of one feature flips row 0 of C: the diagonal term changes.
  flipped = z1.at[:, 0].multiply(-1.0)
  c = losses.cross_correlation(z1, z2)
  c_flip = losses.cross_correlation(flipped, z2)
  np.testing.assert_allclose(np.asarray(c_flip[0]), -np.asarray(c[0]), rtol=1e-5, atol=1e-6)
  assert abs(float(losses.barlow_twins_loss(flipped, z2)) - base) > 1e-3


def test_float32_whatever_the_input_dtype():
  z1, z2 = _inputs(16, 6)
  got = losses.barlow_twins_loss(z1.astype(jnp.bfloat16), z2.astype(jnp.bfloat16))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), REFERENCE[(16, 6, 0.0051)], rtol=2e-2)


def test_off_diagonal():
  c = jnp.arange(9.0).reshape(3, 3)
  np.testing.assert_array_equal(np.asarray(losses.off_diagonal(c)),
                                np.array([[0, 1, 2], [3, 0, 5], [6, 7, 0]], np.float32))


def test_jit_and_gradients():
  z1, z2 = _inputs(16, 8)
  eager = losses.barlow_twins_loss(z1, z2)
  jitted = jax.jit(losses.barlow_twins_loss)(z1, z2)
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6)
  f = lambda a, b: losses.barlow_twins_loss(a, b, lambd=0.0)
  # float32 finite differences: loose tolerances, but a wrong gradient is off by O(1).
  check_grads(f, (z1, z2), order=1, modes=("rev",), atol=5e-2, rtol=5e-2)


def test_sharded_equals_single_device():
  """The global-batch loss on 8 devices equals the 1-device loss, value and gradients."""
  rng = np.random.default_rng(4)
  z1 = jnp.asarray(rng.normal(size=(64, 16)), jnp.float32)
  z2 = jnp.asarray(rng.normal(size=(64, 16)) + np.asarray(z1), jnp.float32)
  fn = jax.value_and_grad(losses.barlow_twins_loss, argnums=(0, 1))
  with jax.default_device(jax.devices()[0]):
    v1, (g1a, g1b) = jax.jit(fn)(z1, z2)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  s1, s2 = jax.device_put(z1, sharded), jax.device_put(z2, sharded)
  v8, (g8a, g8b) = jax.jit(fn)(s1, s2)
  assert len(s1.sharding.device_set) == 8
  np.testing.assert_allclose(float(v8), float(v1), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(g8a), np.asarray(g1a), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(g8b), np.asarray(g1b), rtol=1e-4, atol=1e-6)
