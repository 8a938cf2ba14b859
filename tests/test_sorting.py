"""Differentiable sorting networks: hard limit, double stochasticity, relaxations, networks."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import sorting

# Jitted (the network unrolls into many small ops; one compilation beats op-by-op dispatch).
# steepness stays a traced argument, so one compilation serves every value.
_soft_sort = jax.jit(sorting.soft_sort, static_argnames=("network_name", "distribution"))


def _reference_soft_sort(x_bn, *, steepness, alpha_fn):
  """diffsort's matrix formulation of the odd-even network, written out in numpy.

  Each layer is four matrices: ``split_a``/``split_b`` pick the lower/upper wire of every pair
  (an unpaired border wire is paired with itself, an identity "filler"), ``combine_min``/
  ``combine_max`` write the soft min/max back. ``x <- min @ Cmin^T + max @ Cmax^T`` and the same
  for the columns of ``X``, starting from the identity (Petersen et al., 2021, eqs. 2-4).
  """
  b, n = x_bn.shape
  x = x_bn.astype(np.float64)
  perm = np.tile(np.eye(n), (b, 1, 1))
  for layer in range(n):
    pairs, wire = [], 0
    while wire < n:
      if wire >= layer % 2 and wire + 1 < n:
        pairs.append((wire, wire + 1))
        wire += 2
      else:
        pairs.append((wire, wire))
        wire += 1
    k = len(pairs)
    split_a, split_b = np.zeros((k, n)), np.zeros((k, n))
    comb_min, comb_max = np.zeros((n, k)), np.zeros((n, k))
    for j, (lo, hi) in enumerate(pairs):
      split_a[j, lo], split_b[j, hi] = 1, 1
      comb_min[lo, j] = 1
      comb_max[hi, j] = 1 if hi != lo else 0  # A filler writes its wire once.
    a, bb = x @ split_a.T, x @ split_b.T
    alpha = alpha_fn(steepness * (bb - a))
    a_x, b_x = perm @ split_a.T, perm @ split_b.T
    w_min = alpha[:, None, :] * a_x + (1 - alpha)[:, None, :] * b_x
    w_max = (1 - alpha)[:, None, :] * a_x + alpha[:, None, :] * b_x
    perm = w_min @ comb_min.T + w_max @ comb_max.T
    x = (alpha * a + (1 - alpha) * bb) @ comb_min.T + ((1 - alpha) * a + alpha * bb) @ comb_max.T
  return x, perm


def _cauchy(v):
  return np.arctan(v) / np.pi + 0.5


def _hard_perm_np(x_bn):
  # X[r, rank(r)] = 1 with rank = argsort(argsort(x)) (code convention sorted = x @ X).
  rank = np.argsort(np.argsort(x_bn, axis=-1, kind="stable"), axis=-1, kind="stable")
  return np.eye(x_bn.shape[-1])[rank]


def _distinct(rng, b, n):
  # Distinct values at least 0.05 apart, shuffled.
  return np.stack([rng.permutation(n) * 0.1 + rng.uniform(-0.02, 0.02, n) for _ in range(b)])


@pytest.mark.parametrize("network_name,n", [("odd_even", 2), ("odd_even", 7), ("odd_even", 12),
                                            ("bitonic", 8), ("bitonic", 16)])
@pytest.mark.parametrize("distribution", ["cauchy", "logistic", "gaussian", "optimal"])
def test_high_steepness_gives_the_hard_sort_and_permutation(network_name, n, distribution):
  x = _distinct(np.random.default_rng(n), 4, n)
  sorted_x, perm = _soft_sort(jnp.asarray(x, jnp.float32), steepness=1e6,
                                     network_name=network_name, distribution=distribution)
  np.testing.assert_allclose(sorted_x, np.sort(x, axis=-1), atol=1e-4)
  np.testing.assert_allclose(perm, _hard_perm_np(x), atol=1e-3)
  np.testing.assert_array_equal(sorting.hard_permutation(jnp.asarray(x)), _hard_perm_np(x))


@pytest.mark.parametrize("network_name,n", [("odd_even", 5), ("odd_even", 12), ("bitonic", 8)])
@pytest.mark.parametrize("distribution", sorting.DISTRIBUTIONS)
def test_soft_permutation_is_doubly_stochastic(network_name, n, distribution):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, n)), jnp.float32)
  # Three steepnesses at once (a broadcastable array): very soft, GroCo's 1, nearly hard.
  steepness = jnp.asarray([0.1, 1.0, 30.0])[:, None, None]
  sorted_x, perm = _soft_sort(jnp.broadcast_to(x, (3, 3, n)), steepness=steepness,
                                     network_name=network_name, distribution=distribution)
  x = jnp.broadcast_to(x, (3, 3, n))
  assert perm.shape == (3, 3, n, n) and sorted_x.shape == (3, 3, n)
  np.testing.assert_allclose(perm.sum(-1), 1.0, atol=1e-5)  # Rows: every input goes somewhere.
  np.testing.assert_allclose(perm.sum(-2), 1.0, atol=1e-5)  # Columns: every rank is filled.
  assert float(perm.min()) >= -1e-6 and float(perm.max()) <= 1 + 1e-6
  # The convention sorted = x @ X.
  np.testing.assert_allclose(jnp.einsum("...n,...nm->...m", x, perm), sorted_x, atol=1e-5)


def test_matches_the_matrix_formulation_of_diffsort():
  x = np.random.default_rng(2).normal(size=(5, 9))
  want_x, want_perm = _reference_soft_sort(x, steepness=2.0, alpha_fn=_cauchy)
  got_x, got_perm = _soft_sort(jnp.asarray(x, jnp.float32), steepness=2.0)
  np.testing.assert_allclose(got_x, want_x, atol=1e-5)
  np.testing.assert_allclose(got_perm, want_perm, atol=1e-5)


def test_two_elements_by_hand():
  # One comparator: alpha = atan(s (x1 - x0)) / pi + 1/2, X = [[a, 1 - a], [1 - a, a]].
  alpha = math.atan(1.5 * (-0.2 - 0.3)) / math.pi + 0.5
  sorted_x, perm = sorting.soft_sort(jnp.asarray([0.3, -0.2]), steepness=1.5)
  np.testing.assert_allclose(perm, [[alpha, 1 - alpha], [1 - alpha, alpha]], rtol=1e-6)
  np.testing.assert_allclose(sorted_x, [alpha * 0.3 - (1 - alpha) * 0.2,
                                        (1 - alpha) * 0.3 - alpha * 0.2], rtol=1e-6)


@pytest.mark.parametrize("network_name", sorting.NETWORKS)
def test_sorted_input_with_big_gaps_gives_the_identity(network_name):
  x = jnp.arange(8, dtype=jnp.float32)[None] * 10.0
  sorted_x, perm = _soft_sort(x, steepness=1e3, network_name=network_name)
  np.testing.assert_allclose(perm[0], np.eye(8), atol=1e-3)
  np.testing.assert_allclose(sorted_x, x, atol=1e-2)


@pytest.mark.parametrize("distribution", sorting.DISTRIBUTIONS)
def test_alpha_is_one_half_at_zero_and_monotone(distribution):
  d = jnp.linspace(-3.0, 3.0, 601)
  alpha = sorting.comparator_alpha(jnp.zeros_like(d), d, steepness=2.0, distribution=distribution)
  at_zero = sorting.comparator_alpha(jnp.asarray(0.7), jnp.asarray(0.7), steepness=2.0,
                                     distribution=distribution)
  np.testing.assert_allclose(at_zero, 0.5, atol=1e-7)
  assert float(jnp.min(jnp.diff(alpha))) >= 0.0
  assert float(alpha[0]) < 0.5 < float(alpha[-1])
  assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0


def test_cauchy_and_logistic_reference_values():
  a = sorting.comparator_alpha(jnp.asarray(0.0), jnp.asarray(0.5), steepness=2.0)
  assert float(a) == pytest.approx(math.atan(1.0) / math.pi + 0.5)  # = 0.75
  a = sorting.comparator_alpha(jnp.asarray(0.0), jnp.asarray(0.5), steepness=2.0,
                               distribution="logistic")
  assert float(a) == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 9])
def test_odd_even_network_shape_and_it_sorts_every_zero_one_input(n):
  layers = sorting.odd_even_network(n)
  assert len(layers) == (n if n > 1 else 0)
  _assert_sorts_all_binary(layers, n)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_bitonic_network_shape_and_it_sorts_every_zero_one_input(n):
  layers = sorting.bitonic_network(n)
  k = int(math.log2(n))
  assert len(layers) == k * (k + 1) // 2
  assert all(len(a) == n // 2 and np.all(a < b) for a, b in layers)
  _assert_sorts_all_binary(layers, n)


def _assert_sorts_all_binary(layers, n):
  # 0-1 principle (Knuth): a comparator network sorts every input iff it sorts every 0/1 input.
  v = np.asarray(list(itertools.product((0, 1), repeat=n))).reshape(-1, n)
  for a, b in layers:
    v[:, a], v[:, b] = np.minimum(v[:, a], v[:, b]), np.maximum(v[:, a], v[:, b])
  assert np.all(np.diff(v, axis=1) >= 0)


@pytest.mark.parametrize("n", [3, 6, 12])
def test_bitonic_rejects_sizes_that_are_not_powers_of_two(n):
  with pytest.raises(ValueError, match="power-of-two"):
    sorting.soft_sort(jnp.zeros((n,)), steepness=1.0, network_name="bitonic")


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="unknown sorting network"):
    sorting.network("bubble", 4)
  with pytest.raises(ValueError, match="unknown relaxation"):
    sorting.soft_sort(jnp.zeros((4,)), steepness=1.0, distribution="laplace")
  with pytest.raises(ValueError, match="steepness"):
    sorting.soft_sort(jnp.zeros((4,)), steepness=0.0)
  with pytest.raises(ValueError, match=">= 1"):
    sorting.odd_even_network(0)


def test_jit_and_gradients():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6)), jnp.float32)

  def mass_on_max(x):
    return sorting.soft_sort(x, steepness=1.0)[1][..., -1]  # P(input r lands on the maximum).

  eager = mass_on_max(x)
  np.testing.assert_allclose(jax.jit(mass_on_max)(x), eager, rtol=1e-6)
  g = jax.jit(jax.grad(lambda x: mass_on_max(x)[0, 0]))(x)
  assert np.all(np.isfinite(g))
  # Raising an element raises its probability of being the maximum; other rows play no part.
  assert float(g[0, 0]) > 0 and np.all(g[1] == 0)
