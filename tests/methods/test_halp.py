"""HaLP: slerp geometry, the closed-form hardness limit, spherical k-means, and the method."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from method_setup import setup

from ssljax import kmeans, losses
from ssljax.errors import ConfigError
from ssljax.methods import halp


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _f32(x):
  return jnp.asarray(x, jnp.float32)


def _random_triples(n, d, seed):
  """Unit (k, p0, ps) with k . p0 - k . ps > 1e-2 (p0 is really the closer prototype)."""
  rng = np.random.default_rng(seed)
  k, p0, ps = (_unit(rng.normal(size=(4 * n, d))) for _ in range(3))
  swap = np.sum(k * p0, -1) < np.sum(k * ps, -1)
  p0[swap], ps[swap] = ps[swap].copy(), p0[swap].copy()
  keep = np.sum(k * (p0 - ps), -1) > 1e-2
  return k[keep][:n], p0[keep][:n], ps[keep][:n]


# ------------------------------------------------------------------------------ slerp


def test_slerp_endpoints_and_unit_norm():
  k, _, ps = _random_triples(32, 16, seed=0)
  np.testing.assert_allclose(halp.slerp(_f32(k), _f32(ps), 0.0), k, atol=1e-5)
  np.testing.assert_allclose(halp.slerp(_f32(k), _f32(ps), 1.0), ps, atol=1e-5)
  for t in np.linspace(0.0, 1.0, 11):
    g = halp.slerp(_f32(k), _f32(ps), jnp.full((32,), t))
    np.testing.assert_allclose(np.linalg.norm(g, axis=-1), 1.0, atol=1e-5)


def test_points_move_away_from_the_anchor_as_t_grows():
  k, _, ps = _random_triples(16, 8, seed=1)
  ts = np.linspace(0.0, 1.0, 21)
  sims = np.stack([np.sum(np.asarray(halp.slerp(_f32(k), _f32(ps), jnp.full((16,), t))) * k, -1)
                   for t in ts])
  assert np.all(np.diff(sims, axis=0) < 0)  # k . g(t) = cos(t w) strictly decreases.


# -------------------------------------------------------------------------- hardness limit


def test_at_t_max_the_point_is_equidistant_and_closer_to_p0_before():
  k, p0, ps = _random_triples(64, 16, seed=2)
  t_max = np.asarray(halp.hardness_limit(_f32(k), _f32(p0), _f32(ps)))
  assert np.all((t_max > 0) & (t_max < 1))
  g = np.asarray(halp.slerp(_f32(k), _f32(ps), _f32(t_max)))
  np.testing.assert_allclose(np.sum(g * p0, -1), np.sum(g * ps, -1), atol=1e-5)
  for frac in (0.0, 0.5, 0.95):
    g = np.asarray(halp.slerp(_f32(k), _f32(ps), _f32(frac * t_max)))
    assert np.all(np.sum(g * p0, -1) > np.sum(g * ps, -1))
  # Just past the limit the point is closer to the target prototype.
  g = np.asarray(halp.slerp(_f32(k), _f32(ps), _f32(np.minimum(t_max + 0.05, 1.0))))
  assert np.all(np.sum(g * p0, -1) < np.sum(g * ps, -1))


def test_t_max_matches_hand_computed_values_for_basis_prototypes():
  alpha = 0.2
  e1, e2, e3 = np.eye(3)
  k = np.array([math.cos(alpha), math.sin(alpha), 0.0])
  # k in the e1-e2 plane at angle alpha from p0 = e1; towards ps = e2 the path stays in the plane
  # and crosses the bisector at 45 degrees: t = (pi/4 - alpha) / (pi/2 - alpha).
  want = (math.pi / 4 - alpha) / (math.pi / 2 - alpha)
  np.testing.assert_allclose(float(halp.hardness_limit(_f32(k), _f32(e1), _f32(e2))),
                             want, rtol=1e-5)
  # Towards ps = e3 (w = pi/2): g . e1 = cos(t pi/2) cos(alpha), g . e3 = sin(t pi/2), equal at
  # t = (2/pi) atan(cos(alpha)).
  want = 2 / math.pi * math.atan(math.cos(alpha))
  np.testing.assert_allclose(float(halp.hardness_limit(_f32(k), _f32(e1), _f32(e3))), want,
                             rtol=1e-5)


def test_t_max_past_a_right_angle_uses_the_right_root():
  """p0 = 0 deg, ps = 150 deg, k = -20 deg: the bisector (75 deg) is 95 deg along a 170 deg path.

  Here K + cos w < 0, where the official ``atan`` would give a negative t; atan2 gives 95/170.
  """
  deg = math.pi / 180
  pt = lambda a: np.array([math.cos(a * deg), math.sin(a * deg)])
  t = float(halp.hardness_limit(_f32(pt(-20)), _f32(pt(0)), _f32(pt(150))))
  np.testing.assert_allclose(t, 95 / 170, rtol=1e-5)


# ------------------------------------------------------------------------ hallucination


def _prototypes(c, d, seed):
  return _f32(_unit(np.random.default_rng(seed).normal(size=(c, d))))


def test_positives_are_unit_norm_and_t_lies_in_the_lambda_range():
  keys = _f32(np.random.default_rng(3).normal(size=(32, 8)))
  protos = _prototypes(6, 8, seed=4)
  out = halp.hallucinate(keys, protos, jax.random.key(0), num_positives=10, lambda_pos=0.8)
  np.testing.assert_allclose(np.linalg.norm(out["positives"], axis=-1), 1.0, atol=1e-5)
  t, t_max = np.asarray(out["t"]), np.asarray(out["t_max"])
  assert np.all(t <= t_max + 1e-7) and np.all(t >= 0.2 * t_max - 1e-7)
  assert np.ptp(t / np.maximum(t_max, 1e-6)) > 0.5  # u really is drawn over [0, 0.8].
  # The target is never the anchor's own prototype (skip_closest=1); p0 is k's argmax.
  k = np.asarray(losses.l2_normalize(keys))
  p0 = np.argmax(k @ np.asarray(protos).T, -1)
  np.testing.assert_array_equal(out["p0"], p0)
  assert np.all(np.asarray(out["target"]) != p0[:, None])


def test_lambda_zero_gives_the_hardest_positives_equidistant_to_both_prototypes():
  keys = _f32(np.random.default_rng(5).normal(size=(16, 8)))
  protos = _prototypes(5, 8, seed=6)
  out = halp.hallucinate(keys, protos, jax.random.key(1), num_positives=6, lambda_pos=0.0)
  np.testing.assert_array_equal(out["t"], out["t_max"])
  p = np.asarray(protos)
  h = np.asarray(out["positives"])
  sim_p0 = np.sum(h * p[np.asarray(out["p0"])][:, None], -1)
  sim_ps = np.sum(h * p[np.asarray(out["target"])], -1)
  np.testing.assert_allclose(sim_p0, sim_ps, atol=1e-5)
  near = halp.hallucinate(keys, protos, jax.random.key(1), num_positives=6, lambda_pos=1e-4)
  np.testing.assert_allclose(near["t"], out["t_max"], atol=1e-4)


def test_skip_closest_two_never_targets_the_two_most_similar_prototypes():
  keys = _f32(np.random.default_rng(7).normal(size=(32, 8)))
  protos = _prototypes(6, 8, seed=8)
  out = halp.hallucinate(keys, protos, jax.random.key(2), num_positives=20, lambda_pos=0.5,
                         skip_closest=2, num_candidates=2)
  order = np.argsort(-np.asarray(losses.l2_normalize(keys)) @ np.asarray(protos).T, -1)
  target = np.asarray(out["target"])
  assert np.all((target == order[:, 2:3]) | (target == order[:, 3:4]))


def test_rank_filter_keeps_exactly_the_points_still_closest_to_p0():
  # Many prototypes in 3-D: some easy positives pass a third prototype's region.
  keys = _f32(np.random.default_rng(9).normal(size=(64, 3)))
  protos = _prototypes(12, 3, seed=10)
  # lambda = 0.6 keeps points off the exact p0 / ps boundary, where the argmax is a coin flip.
  out = halp.hallucinate(keys, protos, jax.random.key(3), num_positives=8, lambda_pos=0.6)
  nearest = np.argmax(np.asarray(out["positives"]) @ np.asarray(protos).T, -1)
  good = np.asarray(out["good"])
  np.testing.assert_array_equal(good, nearest == np.asarray(out["p0"])[:, None])
  assert good.any() and not good.all()


def test_halp_loss_value_and_gradients_reach_only_the_queries():
  rng = np.random.default_rng(11)
  q = _f32(rng.normal(size=(8, 6)))
  keys = _f32(rng.normal(size=(8, 6)))
  protos = _prototypes(4, 6, seed=12)

  def total(q, keys, protos):
    out = halp.hallucinate(keys, protos, jax.random.key(4), num_positives=5, lambda_pos=0.8)
    return halp.halp_loss(q, out["positives"], out["good"], temperature=0.07), out

  (value, out), grads = jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True)(
      q, keys, protos)
  # Reference: the spec's -(1/|G|) sum_{good} q_i . h_ij / T, written as a plain loop.
  qn, h, good = np.asarray(_unit(q)), np.asarray(out["positives"]), np.asarray(out["good"])
  terms = [qn[i] @ h[i, j] for i in range(8) for j in range(5) if good[i, j]]
  np.testing.assert_allclose(float(value), -np.mean(terms) / 0.07, rtol=1e-5)
  assert float(jnp.sum(jnp.abs(grads[0]))) > 0
  np.testing.assert_array_equal(grads[1], 0.0)  # Keys (the key encoder's output).
  np.testing.assert_array_equal(grads[2], 0.0)  # Prototypes.


def test_halp_loss_is_zero_without_good_positives():
  q, h = _f32(np.ones((2, 3))), _f32(np.ones((2, 4, 3)) / math.sqrt(3))
  assert float(halp.halp_loss(q, h, jnp.zeros((2, 4), bool), temperature=0.1)) == 0.0


# ----------------------------------------------------------------------------- k-means


def _clusters(centers, per, noise, seed):
  rng = np.random.default_rng(seed)
  pts = np.repeat(centers, per, axis=0) + noise * rng.normal(size=(len(centers) * per,
                                                                   centers.shape[1]))
  return _unit(pts)


def test_spherical_kmeans_recovers_well_separated_clusters():
  centers = _unit(np.random.default_rng(13).normal(size=(5, 8)))
  assert np.max(centers @ centers.T - 2 * np.eye(5)) < 0.8  # Well separated.
  x = _clusters(centers, per=40, noise=0.05, seed=14)
  for seed in range(3):
    got = np.asarray(jax.jit(lambda x, r: kmeans.spherical_kmeans(x, r, num_clusters=5))(
        _f32(x), jax.random.key(seed)))
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
    match = got @ centers.T  # [found, true]
    # One-to-one: each true centre has exactly one found centroid within cos > 0.99.
    assert sorted(np.argmax(match, axis=1)) == list(range(5)), match
    assert np.all(np.max(match, axis=1) > 0.99)


def test_kmeans_plus_plus_seeds_are_distinct_points():
  x = _clusters(np.eye(4), per=10, noise=0.01, seed=15)
  seeds = np.asarray(kmeans.kmeans_plus_plus(_f32(x), jax.random.key(0), num_clusters=4))
  # D^2 seeding on four tight, orthogonal clusters picks one point from each.
  assert sorted(np.argmax(seeds @ np.eye(4), axis=1)) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="num_clusters"):
    kmeans.spherical_kmeans(_f32(x), jax.random.key(0), num_clusters=41)


def test_toy_sphere_run_pulls_queries_towards_hallucinated_positives():
  """3-D sphere, 4 clusters: gradient steps on L_HaLP alone lower it and align q with h."""
  centers = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]], np.float64)
  keys = _f32(_clusters(_unit(centers), per=16, noise=0.1, seed=16))
  protos = kmeans.spherical_kmeans(keys, jax.random.key(0), num_clusters=4)
  assert np.all(np.max(np.asarray(protos) @ _unit(centers).T, axis=0) > 0.99)
  q0 = _f32(np.random.default_rng(17).normal(size=keys.shape))

  def loss_at(q, step):
    out = halp.hallucinate(keys, protos, jax.random.fold_in(jax.random.key(1), step),
                           num_positives=8, lambda_pos=0.8)
    return halp.halp_loss(q, out["positives"], out["good"], temperature=0.07)

  grad = jax.jit(jax.value_and_grad(loss_at))
  q, seen = q0, []
  for step in range(30):
    value, g = grad(q, step)
    seen.append(float(value))
    q = q - 3.0 * g  # The mean over N * P pairs makes per-query gradients small.
  assert seen[-1] < seen[0] - 5.0, seen
  # The same fresh draw of positives, scored with the first and last queries.
  assert float(loss_at(q, 99)) < float(loss_at(q0, 99))
  # Mean cosine between queries and their positives: from ~0 (random q) to near the ~0.8 that
  # one query can reach against positives spread towards several prototypes.
  assert -0.07 * seen[-1] > 0.7


# ------------------------------------------------------------------------------- method


def test_bad_config_values_name_the_key():
  with pytest.raises(ConfigError, match="halp.lambda_pos"):
    setup("halp", halp__lambda_pos=1.5)
  with pytest.raises(ConfigError, match="halp.skip_closest"):
    setup("halp", halp__skip_closest=4)
  with pytest.raises(ConfigError, match="halp.bank_size"):
    setup("halp", halp__bank_size=3)
  with pytest.raises(ConfigError, match="halp.temperature"):
    setup("halp", halp__temperature=0.0)


@pytest.fixture(scope="module")
def built():
  """runlocal HaLP with a 48-key bank (so a step of 32 keys shifts it) and one jitted grad."""
  config, method, params, state, views = setup("halp", halp__bank_size=48)

  def fn(params, state, views):
    return method.loss(params, state, views, jax.random.key(5))

  grad_fn = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=True))
  bank = _f32(_unit(np.random.default_rng(18).normal(size=(48, 32))))
  return config, method, params, state, views, grad_fn, bank


def _with(state, **halp_fields):
  return {**state, "halp": {**state["halp"], **{k: _f32(v) for k, v in halp_fields.items()}}}


def test_bank_is_fifo_and_halp_is_off_until_the_first_refresh(built):
  _, method, params, state, views, grad_fn, bank = built
  start = _with(state, bank=bank, count=16.0, step=2.0)  # Due step but the bank is not full.
  (loss, (new, metrics, _)), _ = grad_fn(params, start, views)
  assert float(metrics["halp_ready"]) == 0.0
  assert float(loss) == float(metrics["mocov3_loss"])  # Plain MoCo v3 before prototypes exist.
  np.testing.assert_array_equal(new["halp"]["bank"][:16], bank[32:])  # Oldest 32 keys dropped.
  np.testing.assert_allclose(np.linalg.norm(new["halp"]["bank"][16:], axis=-1), 1.0, atol=1e-5)
  assert float(new["halp"]["count"]) == 48.0
  np.testing.assert_array_equal(new["halp"]["prototypes"], state["halp"]["prototypes"])
  # update() records the next train step, which the schedule reads.
  assert float(method.update(params, new, jnp.asarray(6))["halp"]["step"]) == 7.0


def test_prototypes_refresh_on_schedule_and_state_gets_zero_gradient(built):
  config, _, params, state, views, grad_fn, bank = built
  every = config.halp.update_every
  due = _with(state, bank=bank, count=48.0, step=float(every))
  (loss, (new, metrics, _)), (g_params, g_state) = grad_fn(params, due, views)
  protos = np.asarray(new["halp"]["prototypes"])
  np.testing.assert_allclose(np.linalg.norm(protos, axis=-1), 1.0, atol=1e-5)
  # They are k-means centroids of the (old) bank: every one is a normalised mean of bank rows.
  assert np.all(np.max(protos @ np.asarray(bank).T, axis=1) > 0.3)
  assert float(metrics["halp_ready"]) == 1.0 and float(metrics["halp_good_fraction"]) > 0.5
  assert float(loss) != float(metrics["mocov3_loss"])
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(g_params)) > 0
  for g in jax.tree.leaves(g_state):  # Prototypes, bank, EMA teacher, BN statistics.
    np.testing.assert_array_equal(g, 0.0)
  # Off-schedule step: the prototypes are kept; HaLP stays on.
  later = {**new, "halp": {**new["halp"], "step": _f32(every + 1)}}
  (_, (newer, metrics, _)), _ = grad_fn(params, later, views)
  np.testing.assert_array_equal(newer["halp"]["prototypes"], protos)
  assert float(metrics["halp_ready"]) == 1.0


def test_sharded_loss_gradients_and_state_equal_single_device_with_halp_on(built):
  """The contract test runs from init (HaLP off); this covers k-means and hallucination."""
  config, _, params, state, views, grad_fn, bank = built
  due = _with(state, bank=bank, count=48.0, step=float(config.halp.update_every))
  with jax.default_device(jax.devices()[0]):
    (loss1, (state1, _, _)), (grads1, _) = grad_fn(params, due, views)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = [jax.device_put(v, NamedSharding(mesh, PartitionSpec("data"))) for v in views]
  rep = lambda t: jax.device_put(t, NamedSharding(mesh, PartitionSpec()))
  (loss8, (state8, _, _)), (grads8, _) = grad_fn(rep(params), rep(due), sharded)
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=2e-5, atol=1e-6)
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5 * scale),
               grads8, grads1)
  # The new prototypes are normalised means over cluster members summed in another order on 8
  # devices (CI saw 2.2e-5 on a 0.03 entry); a per-device k-means would differ by O(0.1).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), state8, state1)
