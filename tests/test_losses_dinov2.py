"""DINOv2's additions to DINO: Sinkhorn-Knopp teacher targets and the KoLeo regulariser.

References are written here in NumPy float64 from the papers' formulas (DINOv2, Oquab et al.
2023, section 4 and its ``sinkhorn_knopp_teacher``; SwAV, Caron et al. 2020, eq. 3 and its
algorithm 1; KoLeo, Sablayrolles et al. 2019, eq. 5), in the exp domain where ssljax works in
log space.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import losses


def _sinkhorn_reference(t_mk: np.ndarray, temp: float, iterations: int) -> np.ndarray:
  # Q = exp(scores / eps), total mass 1; then per iteration each prototype (column) to mass 1/K and
  # each sample (row) to mass 1/M; rows scaled by M at the end so each is a distribution.
  q = np.exp(t_mk / temp)
  q /= q.sum()
  m, k = q.shape
  for _ in range(iterations):
    q /= q.sum(axis=0, keepdims=True)
    q /= k
    q /= q.sum(axis=1, keepdims=True)
    q /= m
  return q * m


def _koleo_reference(x_nd: np.ndarray, eps: float = 1e-8) -> float:
  x = x_nd / np.linalg.norm(x_nd, axis=1, keepdims=True)
  out = []
  for i in range(len(x)):
    others = [j for j in range(len(x)) if j != i]
    j = max(others, key=lambda j: float(x[i] @ x[j]))  # nearest by cosine, self excluded
    out.append(-np.log(np.linalg.norm(x[i] - x[j] + eps) + eps))
  return float(np.mean(out))


def _logits(seed, *shapes):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("iterations", [1, 3])
def test_sinkhorn_targets_match_the_formula(iterations):
  t = _logits(0, (6, 10), (6, 10))  # two global crops of 6 rows, 10 prototypes
  ref = _sinkhorn_reference(np.concatenate(t) / 4.0, 0.25, iterations)
  got = losses.sinkhorn_knopp_targets([jnp.asarray(x / 4.0, jnp.float32) for x in t],
                                      teacher_temp=0.25, iterations=iterations)
  assert len(got) == 2 and got[0].shape == (6, 10)
  np.testing.assert_allclose(np.concatenate(got), ref, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(np.concatenate(got).sum(1), 1.0, rtol=1e-5)


def test_sinkhorn_balances_prototypes_where_centring_does_not():
  # Every row prefers prototype 0 by the same margin, plus a little per-row detail: the centred
  # softmax gives every row nearly the same target, Sinkhorn-Knopp shares the prototypes out.
  rng = np.random.default_rng(1)
  t = np.zeros((32, 8))
  t[:, 0] = 1.0
  t += 0.02 * rng.normal(size=t.shape)
  t = jnp.asarray(t, jnp.float32)
  sk = np.asarray(losses.sinkhorn_knopp_targets([t], teacher_temp=0.04, iterations=3)[0])
  col_mass = sk.sum(0) / sk.sum()
  np.testing.assert_allclose(col_mass, 1 / 8, atol=0.02)
  softmax = np.asarray(jax.nn.softmax(t / 0.04, axis=-1))
  assert softmax.sum(0)[0] / softmax.sum() > 0.99  # one prototype takes the whole batch


def test_sinkhorn_survives_logits_whose_exp_overflows():
  # exp(1000 / 0.04) overflows float32; the log-space version gives the exp-domain answer of the
  # shifted scores (a constant shift cancels in the normalisations).
  t = _logits(2, (5, 7))[0]
  got = losses.sinkhorn_knopp_targets([jnp.asarray(t + 1000.0, jnp.float32)], teacher_temp=1.0)
  np.testing.assert_allclose(got[0], _sinkhorn_reference(t, 1.0, 3), rtol=1e-4, atol=1e-7)
  assert np.all(np.isfinite(np.asarray(got[0])))


def test_dino_loss_with_sinkhorn_is_the_cross_entropy_to_its_targets():
  s = [jnp.asarray(x, jnp.float32) for x in _logits(3, (6, 10), (6, 10), (6, 10))]
  t = [jnp.asarray(x, jnp.float32) for x in _logits(4, (6, 10), (6, 10))]
  q = np.split(_sinkhorn_reference(np.concatenate([np.asarray(x, np.float64) for x in t]), 0.05,
                                   3), 2)
  log_p = [np.asarray(jax.nn.log_softmax(np.asarray(x, np.float64) / 0.1, axis=-1)) for x in s]
  # Pairs (teacher crop iq, student crop v != iq): (0, 1), (0, 2), (1, 0), (1, 2).
  want = np.mean([np.mean(-np.sum(q[iq] * log_p[v], -1))
                  for iq in range(2) for v in range(3) if v != iq])
  center = jnp.full((10,), 123.0)  # ignored by the Sinkhorn teacher
  got = losses.dino_loss(s, t, center, student_temp=0.1, teacher_temp=0.05, centering="sinkhorn")
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  with pytest.raises(ValueError, match="centering='median'"):
    losses.dino_loss(s, t, center, student_temp=0.1, teacher_temp=0.05, centering="median")
  with pytest.raises(ValueError, match="iterations=0"):
    losses.sinkhorn_knopp_targets(t, teacher_temp=0.05, iterations=0)


def test_koleo_matches_the_formula_and_pushes_neighbours_apart():
  x = _logits(5, (9, 4))[0]
  got = losses.koleo_loss(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(float(got), _koleo_reference(x), rtol=1e-5)
  # Its gradient step spreads the rows: the nearest-neighbour distances grow.
  xj = jnp.asarray(x, jnp.float32)
  step = xj - 0.05 * jax.grad(losses.koleo_loss)(xj)
  assert float(losses.koleo_loss(step)) < float(got)
  with pytest.raises(ValueError, match="koleo_loss"):
    losses.koleo_loss(jnp.ones((1, 4)))
