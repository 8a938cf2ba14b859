"""MYOW: the mined-view miner, the weight schedule, the loss's wiring and a tiny mining run.

Reference values come from the formulas of the spec (shared/methods/myow.md) and the official
code (nerdslab/myow): ``l(u, v) = 2 - 2 cos(u, v)``, k-NN by cosine distance, the weight ramp
``w = max_w (step - warm) / (ramp - warm)`` and ``L = L_aug / (1 + w) + w L_mine / (1 + w)``.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest
from method_setup import setup

from experiments import byol as exp_byol
from experiments import myow as exp
from ssljax import losses, methods
from ssljax.errors import ConfigError
from ssljax.methods import _common, myow
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import MLP

_CACHE = {}


def _runlocal(**overrides):
  """The runlocal method (mined loss on, weight 1), cached: building and init compile slowly."""
  key = tuple(sorted(overrides.items()))
  if key not in _CACHE:
    _CACHE[key] = setup("myow", **overrides)
  return _CACHE[key]


def _grad_fn(**overrides):
  """One compiled ``value_and_grad`` (params and state) of the runlocal loss, shared by tests.

  ``(params, state, rng, labels, views=None)``: the mined weight is a traced entry of the state,
  so w = 0 and w = 1 run the same program; ``labels`` (int32 [16], -1 hidden) feed the label
  metric only; ``views`` default to the setup's four (independent noise).
  """
  key = ("grad",) + tuple(sorted(overrides.items()))
  if key not in _CACHE:
    _, method, _, _, default_views = _runlocal(**overrides)

    def loss_of(params, state, rng, labels, views=default_views):
      return method.loss(params, state, views, rng, labels=labels)

    _CACHE[key] = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True))
  return _CACHE[key]


# Labels of the 16 runlocal samples: 4 classes, two of them hidden (-1).
LABELS = jnp.asarray([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, -1, 3, 0, 1, 2, -1], jnp.int32)


def _tree_allclose(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


# ------------------------------------------------------------------------------ l(u, v)


def test_normalised_l2_loss_values_and_scale_invariance():
  u = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)), jnp.float32)
  assert float(losses.byol_loss(u, u)) == pytest.approx(0.0, abs=1e-6)
  assert float(losses.byol_loss(u, -u)) == pytest.approx(4.0, abs=1e-6)
  v = jnp.flip(u, axis=0)
  ref = float(losses.byol_loss(u, v))
  assert float(losses.byol_loss(3.0 * u, 0.25 * v)) == pytest.approx(ref, abs=1e-6)


# ----------------------------------------------------------------------------- the miner


def test_miner_finds_the_exact_copy_of_each_anchor():
  rng = np.random.default_rng(1)
  anchors = rng.normal(size=(6, 8)).astype(np.float32)
  perm = rng.permutation(10)
  pool = rng.normal(size=(10, 8)).astype(np.float32)
  pool[perm[:6]] = 2.5 * anchors  # The copies (scaled: cosine distance ignores the norm).
  idx = myow.mine_views(jnp.asarray(anchors), jnp.asarray(pool), jax.random.key(0), k=1)
  np.testing.assert_array_equal(idx, perm[:6])


def test_miner_excludes_self_when_the_pool_is_the_batch():
  rng = np.random.default_rng(2)
  half = rng.normal(size=(5, 4)).astype(np.float32)
  y = jnp.asarray(np.concatenate([half, half]))  # Row i and row i + 5 are the same sample.
  idx = myow.mine_views(y, y, jax.random.key(0), k=1, exclude_self=True)
  np.testing.assert_array_equal(idx, np.r_[np.arange(5, 10), np.arange(5)])
  # Without the mask every anchor would mine itself (or its copy, an equal-distance tie).
  idx = myow.mine_views(y, y, jax.random.key(0), k=1)
  assert np.all(np.asarray(idx) % 5 == np.arange(10) % 5)


def test_miner_without_exclusion_may_return_the_anchor_itself():
  """exclude_self=False (the official miner): pool row i is anchor i's own image, seen by the
  target network; k = 1 returns the argmax of cosine similarity over the whole pool, self
  included (NumPy reference), which is mostly the anchor itself when the two views are close."""
  rng = np.random.default_rng(4)
  pool = rng.normal(size=(12, 6))
  anchors = pool + rng.normal(size=pool.shape)  # A second, noisy view of each row.
  an = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
  pn = pool / np.linalg.norm(pool, axis=1, keepdims=True)
  sim = an @ pn.T  # float64
  ref = np.argmax(sim, axis=1)
  assert np.sum(ref == np.arange(12)) == 8  # 8 of the 12 anchors are nearest to themselves.
  idx = myow.mine_views(jnp.asarray(anchors, jnp.float32), jnp.asarray(pool, jnp.float32),
                        jax.random.key(0), k=1)
  np.testing.assert_array_equal(idx, ref)
  # With the mask the same anchors get their nearest other row.
  np.fill_diagonal(sim, -np.inf)
  idx = myow.mine_views(jnp.asarray(anchors, jnp.float32), jnp.asarray(pool, jnp.float32),
                        jax.random.key(0), k=1, exclude_self=True)
  np.testing.assert_array_equal(idx, np.argmax(sim, axis=1))
  assert not np.any(np.asarray(idx) == np.arange(12))


def test_label_agreement_by_hand():
  labels = jnp.asarray([0, 1, 1, 2, -1, 0], jnp.int32)
  idx = jnp.asarray([5, 2, 0, 4, 1, 3], jnp.int32)
  # Pairs (anchor label, mined label): (0, 0) agree, (1, 1) agree, (1, 0), (2, -1) not counted,
  # (-1, 1) not counted, (0, 2): 2 of the 4 counted pairs agree.
  assert float(myow.label_agreement(idx, labels)) == pytest.approx(0.5)
  # A separate pool's labels, and nothing to count.
  pool = jnp.asarray([3, 3, 1, 1, 0, 0], jnp.int32)  # Mined: 0, 1, 3, 0, 3, 1 -> (0,0) (1,1).
  assert float(myow.label_agreement(idx, labels, pool)) == pytest.approx(2 / 5)
  hidden = jnp.full((6,), -1, jnp.int32)
  assert float(myow.label_agreement(idx, hidden)) == 0.0


@pytest.mark.parametrize("exclude_self", [False, True])
def test_miner_draws_uniformly_among_the_k_nearest(exclude_self):
  rng = np.random.default_rng(3)
  y = rng.normal(size=(8, 5)).astype(np.float32)
  pool = y if exclude_self else rng.normal(size=(12, 5)).astype(np.float32)
  k = 3
  # Brute-force reference: distance 2 - 2 cos, self masked, k smallest.
  yn = y / np.linalg.norm(y, axis=1, keepdims=True)
  pn = pool / np.linalg.norm(pool, axis=1, keepdims=True)
  dist = 2 - 2 * yn @ pn.T
  if exclude_self:
    np.fill_diagonal(dist, np.inf)
  nearest = np.argsort(dist, axis=1)[:, :k]
  mine = jax.jit(lambda key: myow.mine_views(y, pool, key, k=k, exclude_self=exclude_self))
  seen = np.stack([np.asarray(mine(jax.random.key(s))) for s in range(200)])  # [200, B]
  assert seen.dtype == np.int32
  assert seen.min() >= 0 and seen.max() < pool.shape[0]
  for i in range(y.shape[0]):
    assert set(seen[:, i]) == set(nearest[i])  # Only the k nearest, and each of them drawn.
    counts = np.bincount(seen[:, i], minlength=pool.shape[0])[nearest[i]]
    assert counts.min() > 200 / k / 2  # Roughly uniform (expected 67 each).


def test_miner_rejects_k_larger_than_the_pool():
  y = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="k=4"):
    myow.mine_views(y, y, jax.random.key(0), k=4, exclude_self=True)


# ------------------------------------------------------------------------ weight schedule


def test_weight_schedule_with_the_cifar_settings():
  m = exp.get_config("data=cifar10").myow
  kw = dict(warmup_epochs=m.warmup_epochs, rampup_epochs=m.rampup_epochs,
            max_weight=m.max_weight, steps_per_epoch=10)
  assert (m.warmup_epochs, m.rampup_epochs, m.max_weight) == (100, 110, 1.0)

  def w(epoch):
    return float(myow.mined_weight(round(epoch * 10), **kw))

  for epoch in (0, 50, 99.9, 100):
    assert w(epoch) == 0.0
  assert w(105) == pytest.approx(0.5)
  assert w(102) == pytest.approx(0.2)
  for epoch in (110, 111, 800):
    assert w(epoch) == pytest.approx(1.0)
  # Equal warm-up and ramp-up epochs: a step from 0 to the maximum.
  step = dict(kw, rampup_epochs=100.0, max_weight=2.0)
  assert float(myow.mined_weight(999, **step)) == 0.0
  assert float(myow.mined_weight(1000, **step)) == 2.0


def test_update_sets_the_next_steps_weight():
  _, _, params, state, _ = _runlocal()  # Only the schedule differs; the shapes are the same.
  config = exp.get_config("runlocal")
  config.myow.warmup_epochs, config.myow.rampup_epochs = 100.0, 110.0
  method = methods.make(config, total_steps=10_000, steps_per_epoch=10)
  update = jax.jit(method.update)
  # update after step s prepares step s + 1: step 1050 is epoch 105.
  assert float(update(params, state, jnp.asarray(0))["myow_weight"]) == 0.0
  assert float(update(params, state, jnp.asarray(1049))["myow_weight"]) == pytest.approx(0.5)
  assert float(update(params, state, jnp.asarray(1099))["myow_weight"]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ EMA


def test_update_is_ema_of_encoder_projector_and_second_projector():
  config, method, params, state, _ = _runlocal()
  online = jax.tree.map(lambda p: p + 1.0, params)
  base = config.myow.base_momentum
  for step in (0, 50, 100):
    # tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2: tau(0) = tau_base, tau(K) = 1.
    tau = 1 - (1 - base) * (math.cos(math.pi * step / 100) + 1) / 2
    if step == 0:
      assert tau == pytest.approx(base)
    new = method.update(online, state, jnp.asarray(step))
    for teacher, key in (("teacher", "net"), ("teacher_m", "projector_m")):
      expected = jax.tree.map(lambda t, o, tau=tau: tau * t + (1 - tau) * o,
                              state[teacher]["params"], online[key])
      _tree_allclose(new[teacher]["params"], expected, rtol=1e-5, atol=1e-6)
  frozen = method.update(online, state, jnp.asarray(100))  # tau = 1 at the end.
  for teacher in ("teacher", "teacher_m"):
    jax.tree.map(np.testing.assert_array_equal, frozen[teacher]["params"],
                 state[teacher]["params"])
  # The predictors have no target copy.
  assert set(state) == {"net", "predictor", "projector_m", "predictor_m", "teacher", "teacher_m",
                        "myow_weight"}


# ------------------------------------------------------------------------------ the loss


def test_with_weight_zero_the_loss_is_byols_symmetric_loss_and_nothing_is_mined():
  _, method, params, state, views = _runlocal()
  state0 = {**state, "myow_weight": jnp.zeros((), jnp.float32)}
  byol_config = exp_byol.get_config("runlocal")
  byol = methods.make(byol_config, total_steps=100, steps_per_epoch=10)
  byol_params = {k: params[k] for k in ("net", "predictor")}
  byol_state = {k: state[k] for k in ("net", "predictor", "teacher")}

  def byol_loss(p):
    return byol.loss(p, byol_state, views[:2], jax.random.key(0))

  (loss, (new_state, metrics, _)), (grads, _) = _grad_fn()(params, state0, jax.random.key(0),
                                                                 LABELS)
  (ref, (ref_state, _, _)), ref_grads = jax.jit(
      jax.value_and_grad(byol_loss, has_aux=True))(byol_params)
  # The spec's L_aug halves each direction; ssljax's BYOL sums the two directions.
  np.testing.assert_allclose(float(loss), 0.5 * float(ref), rtol=1e-6)
  # Float32 noise only (the programs differ), relative to the largest gradient.
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(ref_grads))
  _tree_allclose({k: grads[k] for k in byol_params}, jax.tree.map(lambda g: 0.5 * g, ref_grads),
                 rtol=1e-4, atol=1e-5 * scale)
  for key in ("projector_m", "predictor_m"):
    jax.tree.map(lambda g: np.testing.assert_array_equal(g, 0.0), grads[key])
  # No mining pass: its BatchNorm statistics stay put, the BYOL ones match BYOL's.
  for key in ("projector_m", "predictor_m", "teacher_m"):
    jax.tree.map(np.testing.assert_array_equal, new_state[key], state[key])
  _tree_allclose({k: new_state[k] for k in byol_state}, ref_state, rtol=1e-5, atol=1e-6)
  assert float(metrics["mined_loss"]) == 0.0


def _bn_apply(module, params, stats, x):
  """A training-mode Flax call by hand (batch statistics), for the reference below."""
  return module.apply({"params": params, **stats}, x, train=True, mutable=["batch_stats"])[0]


@pytest.mark.parametrize("exclude_self", [False, True])
def test_loss_matches_the_formula_with_mining_on(exclude_self):
  """w = 1, k = 1: L = L_aug / 2 + L_mine / 2 with the mined target built by hand, and the
  miner's metrics (self fraction, label agreement) recomputed from the same neighbours."""
  overrides = {} if not exclude_self else {"myow__exclude_self": True}
  config, method, params, state, views = _runlocal(**overrides)
  assert float(state["myow_weight"]) == 1.0 and config.myow.knn_k == 1
  assert config.myow.exclude_self is exclude_self
  # The pool's weak view: the anchors' images again, slightly changed (a second weak view), so
  # that row i of the pool is anchor i's own image and often its nearest.
  noise = np.random.default_rng(6).normal(size=views[2].shape).astype(np.float32)
  views = [*views[:3], views[2] + 0.5 * noise]
  (loss, (_, metrics, _)), _ = _grad_fn(**overrides)(params, state, jax.random.key(5), LABELS,
                                                     views)

  net = _common.encoder_projector(config)  # Same modules as make() builds.
  proj_m = MLP(hidden_dims=(32,), out_dim=16)
  pred_m = MLP(hidden_dims=(32,), out_dim=16)
  t, tm = state["teacher"], state["teacher_m"]
  assert len(views) == 4  # view1, view2, the anchors' weak view, the pool's weak view.

  def encode(p, s, x):
    return net.apply({"params": p, **s}, x, train=True, mutable=["batch_stats"],
                     method=lambda m, x, train: m.encoder(x, train=train))[0]

  def project(p, s, h):
    return net.apply({"params": p, **s}, h, train=True, mutable=["batch_stats"],
                     method=lambda m, h, train: m.head(h, train=train))[0]

  y = np.asarray(encode(params["net"], state["net"], views[2]))  # Online encoder, anchors.
  pool = np.asarray(encode(t["params"], t["state"], views[3]))  # Target encoder, pool.
  yn = y / np.linalg.norm(y, axis=1, keepdims=True)
  pn = pool / np.linalg.norm(pool, axis=1, keepdims=True)
  sim = yn.astype(np.float64) @ pn.T.astype(np.float64)
  if exclude_self:
    np.fill_diagonal(sim, -np.inf)  # Row i of the pool is anchor i's own image.
  m = np.argmax(sim, axis=1)  # k = 1: the nearest neighbour, no randomness.
  q = _bn_apply(pred_m, params["predictor_m"], state["predictor_m"],
                _bn_apply(proj_m, params["projector_m"], state["projector_m"],
                          project(params["net"], state["net"], y)))
  target = _bn_apply(proj_m, tm["params"], tm["state"],
                     project(t["params"], t["state"], pool[m]))
  qn = np.asarray(q) / np.linalg.norm(q, axis=1, keepdims=True)
  tn = np.asarray(target) / np.linalg.norm(target, axis=1, keepdims=True)
  mined = np.mean(2 - 2 * np.sum(qn * tn, axis=1))
  np.testing.assert_allclose(float(metrics["mined_loss"]), mined, rtol=1e-4)
  np.testing.assert_allclose(float(loss), float(metrics["aug_loss"]) / 2 + mined / 2, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["mined_distance"]),
                             np.mean(2 - 2 * sim[np.arange(16), m]), rtol=1e-4, atol=1e-6)
  labels = np.asarray(LABELS)
  counted = (labels >= 0) & (labels[m] >= 0)
  np.testing.assert_allclose(float(metrics["mined_label_agreement"]),
                             np.sum(counted & (labels[m] == labels)) / np.sum(counted), rtol=1e-6)
  if exclude_self:
    assert "mined_self_fraction" not in metrics
  else:
    own = np.mean(m == np.arange(16))
    assert 0 < own < 1  # Some anchors mine themselves (the mask would change those), not all.
    np.testing.assert_allclose(float(metrics["mined_self_fraction"]), own)


def test_labels_reach_only_the_metric():
  """The loss, its gradients and the new state are the same whatever the labels are."""
  _, _, params, state, _ = _runlocal()
  hidden = jnp.full_like(LABELS, -1)
  (loss, (new_state, metrics, _)), grads = _grad_fn()(params, state, jax.random.key(3), LABELS)
  (loss2, (new_state2, metrics2, _)), grads2 = _grad_fn()(params, state, jax.random.key(3), hidden)
  assert float(loss) == float(loss2)
  jax.tree.map(np.testing.assert_array_equal, (grads, new_state), (grads2, new_state2))
  assert float(metrics2["mined_label_agreement"]) == 0.0  # Nothing to count.
  # Without labels (a trainer that passes none) the metric is not reported.
  _, method, _, _, views = _runlocal()
  _, (_, metrics3, _) = jax.jit(method.loss)(params, state, views, jax.random.key(3))
  assert "mined_label_agreement" not in metrics3 and "mined_self_fraction" in metrics3


def test_no_gradient_reaches_the_targets_or_the_weight_and_the_mined_loss_trains_the_encoder():
  _, _, params, state, _ = _runlocal()
  (_, (_, metrics, _)), (g_params, g_state) = _grad_fn()(params, state, jax.random.key(1), LABELS)
  assert float(metrics["myow_weight"]) == 1.0
  for g in jax.tree.leaves(g_state):  # teacher, teacher_m, BN statistics, myow_weight.
    np.testing.assert_array_equal(g, 0.0)
  for key in ("projector_m", "predictor_m"):
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(g_params[key])) > 0
  # The mined loss reaches the encoder through the anchor's online representation.
  state0 = {**state, "myow_weight": jnp.zeros((), jnp.float32)}
  _, (g0, _) = _grad_fn()(params, state0, jax.random.key(1), LABELS)
  # w = 1: g = g_aug / 2 + g_mine / 2 and w = 0: g0 = g_aug, so 2 g - g0 is the mined part.
  mined = jax.tree.map(lambda a, b: 2 * a - b, g_params["net"]["encoder"], g0["net"]["encoder"])
  size = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(mined))
  assert size > 1e-2 * sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(g0["net"]["encoder"]))


def test_parallel_layout_puts_the_second_projector_on_the_representation():
  config, method, params, state, views = _runlocal(myow__layout="parallel")
  rep_dim = method.represent(params, state, views[0])["representation"].shape[1]
  assert params["projector_m"]["dense0"]["kernel"].shape[0] == rep_dim
  loss, _ = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  assert np.isfinite(float(loss))


@pytest.mark.parametrize("key,value,match", [
    ("myow__knn_k", 17, "myow.knn_k"),  # The pool is the runlocal batch of 16.
    ("myow__knn_k", 0, "myow.knn_k"),
    ("myow__layout", "stacked", "myow.layout"),
    ("myow__rampup_epochs", 50.0, "myow.rampup_epochs"),
    ("myow__max_weight", -1.0, "myow.max_weight"),
    ("myow__base_momentum", 1.5, "myow.base_momentum"),
])
def test_bad_config_values_name_the_key(key, value, match):
  config = exp.get_config("runlocal")
  config.myow.warmup_epochs, config.myow.rampup_epochs = 100.0, 110.0
  node, last = config, key.split("__")
  for part in last[:-1]:
    node = node[part]
  node[last[-1]] = value
  with pytest.raises(ConfigError, match=match):
    methods.make(config, total_steps=10, steps_per_epoch=5)


def test_exclude_self_defaults_to_the_official_behaviour_and_bounds_k():
  for arg in ("", "data=cifar10", "runlocal"):
    assert exp.get_config(arg).myow.exclude_self is False
  config = exp.get_config("runlocal")
  assert config.input.batch_size == 16
  config.myow.knn_k = 16  # The whole batch, self included.
  method = methods.make(config, total_steps=10, steps_per_epoch=5)
  assert len(method.views) == 4 and method.views[3] == method.views[2]
  config.myow.exclude_self = True
  with pytest.raises(ConfigError, match=r"myow.knn_k=16 must be <= 15"):
    methods.make(config, total_steps=10, steps_per_epoch=5)
  config.myow.knn_k = 15
  methods.make(config, total_steps=10, steps_per_epoch=5)
  # Not a bool (a hand-edited config.json; ConfigDict itself refuses to cast "yes" to a bool).
  config.myow = mlc.ConfigDict({**config.myow.to_dict(), "exclude_self": "yes"})
  with pytest.raises(ConfigError, match=r"myow.exclude_self='yes' must be True or False"):
    methods.make(config, total_steps=10, steps_per_epoch=5)


# ----------------------------------------------------------- tiny run: a Gaussian mixture


@pytest.mark.slow
def test_mined_neighbours_share_the_cluster_on_a_gaussian_mixture():
  """2-D mixture of 4 clusters, MLP encoder, identity weak view: mined pairs share the cluster."""
  centres = jnp.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0], [0.0, -4.0]], jnp.float32)
  batch, steps = 128, 200
  net = EncoderHead(encoder=MLP(hidden_dims=(64,), out_dim=16),
                    head=MLP(hidden_dims=(64,), out_dim=16))
  method = myow.build(net, MLP(hidden_dims=(64,), out_dim=16), MLP(hidden_dims=(32,), out_dim=8),
                      MLP(hidden_dims=(32,), out_dim=8), views=(), knn_k=3, layout="cascaded",
                      base_momentum=0.99, final_momentum=1.0, total_steps=steps,
                      schedule=dict(warmup_epochs=0.0, rampup_epochs=0.0, max_weight=1.0,
                                    steps_per_epoch=10), exclude_self=True)

  def sample(key, n):
    k_lab, k_pt = jax.random.split(key)
    labels = jax.random.randint(k_lab, (n,), 0, 4)
    return centres[labels] + 0.7 * jax.random.normal(k_pt, (n, 2)), labels

  params, state = method.init(jax.random.key(0), jnp.zeros((4, 2)))
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, state, i):
    key = jax.random.fold_in(jax.random.key(1), i)
    k_x, k1, k2, k_loss = jax.random.split(key, 4)
    x, labels = sample(k_x, batch)
    # Strong views: Gaussian jitter; weak (mining) views of anchors and pool: the point itself.
    views = [x + 0.5 * jax.random.normal(k1, x.shape), x + 0.5 * jax.random.normal(k2, x.shape),
             x, x]
    (loss, (state, metrics, _)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, state, views, k_loss, labels=labels)
    updates, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
    return params, opt, method.update(params, state, i), metrics

  for i in range(steps):
    params, opt, state, metrics = step(params, opt, state, jnp.asarray(i))
  assert np.isfinite(float(metrics["mined_loss"]))
  assert float(metrics["mined_label_agreement"]) > 0.9  # The last training batch's pairs.

  # Mine as the loss does (online anchors, target pool, self excluded) on a fresh batch.
  x, labels = sample(jax.random.key(99), 512)
  encode = nn.apply(lambda m, x: m.encoder(x, train=False), net)
  y = encode({"params": params["net"], **state["net"]}, x)
  t = state["teacher"]
  pool = encode({"params": t["params"], **t["state"]}, x)
  idx = myow.mine_views(y, pool, jax.random.key(7), k=3, exclude_self=True)
  agreement = float(jnp.mean(labels[idx] == labels))
  assert agreement > 0.9, agreement  # Chance is about 0.25.
