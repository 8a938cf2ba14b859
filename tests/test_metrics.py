"""RankMe: the spec's test oracle and a numpy reference."""

import numpy as np

from ssljax.metrics import rankme


def _with_singular_values(s, n=64, k=16, seed=0):
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(n, k)))
  v, _ = np.linalg.qr(rng.normal(size=(k, k)))
  return u @ np.diag(s) @ v.T


def test_equal_singular_values_give_their_count():
  for r in (1, 5, 16):
    s = np.zeros(16)
    s[:r] = 1.0
    assert abs(rankme(_with_singular_values(s)) - r) / r < 1e-4


def test_rank_one_and_constant_network():
  rng = np.random.default_rng(1)
  z = np.outer(rng.normal(size=100), rng.normal(size=8))
  assert abs(rankme(z) - 1.0) < 1e-3
  constant = np.tile(rng.normal(size=(1, 32)), (200, 1))
  assert abs(rankme(constant) - 1.0) < 1e-3


def test_invariances():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(256, 32))
  base = rankme(z)
  assert abs(rankme(3.5 * z) - base) < 1e-6
  assert abs(rankme(z[rng.permutation(256)]) - base) < 1e-6
  q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
  assert abs(rankme(z @ q) - base) < 1e-6


def test_monotone_in_smallest_singular_value():
  s = np.linspace(1.0, 0.1, 16)
  lo = rankme(_with_singular_values(s))
  s2 = s.copy()
  s2[-1] = 0.5
  assert rankme(_with_singular_values(s2)) > lo


def test_matches_formula_with_numpy_svd():
  # Spec reference: p_k = sigma_k / sum(sigma) + 1e-7; RankMe = exp(-sum p log p).
  z = np.random.default_rng(3).normal(size=(256, 32)).astype(np.float32)
  sigma = np.linalg.svd(z.astype(np.float64), compute_uv=False)
  p = sigma / sigma.sum() + 1e-7
  want = np.exp(-(p * np.log(p)).sum())
  np.testing.assert_allclose(rankme(z), want, rtol=1e-10)
  assert 1.0 < rankme(z) <= 32.0
