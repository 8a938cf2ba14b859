"""GroCo: the group-ordering loss (spec test oracle), the method wiring, and config errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_setup import setup

from ssljax.errors import ConfigError
from ssljax.methods import _common, groco


def _np_soft_perm(x_m, steepness):
  """One row through the odd-even network, comparator by comparator (float64 numpy).

  Cauchy relaxation ``alpha = atan(s (x_b - x_a)) / pi + 1/2``; columns a, b of X mix like the
  values (diffsort, Petersen et al. 2021), X starting at the identity.
  """
  x = np.array(x_m, np.float64)
  m = len(x)
  perm = np.eye(m)
  for layer in range(m):
    for a in range(layer % 2, m - 1, 2):
      b = a + 1
      alpha = np.arctan(steepness * (x[b] - x[a])) / np.pi + 0.5
      x[a], x[b] = alpha * x[a] + (1 - alpha) * x[b], (1 - alpha) * x[a] + alpha * x[b]
      pa, pb = perm[:, a].copy(), perm[:, b].copy()
      perm[:, a], perm[:, b] = alpha * pa + (1 - alpha) * pb, (1 - alpha) * pa + alpha * pb
  return perm


def _np_groco(z_views, *, n_pos, topk, steepness=1.0):
  """The official GroCo loss (learning_by_sorting/losses/groco.py) re-derived in numpy."""

  def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)

  def bce(p, t):
    log = lambda q: np.maximum(np.log(np.maximum(q, 1e-300)), -100.0)  # noqa: E731
    return -np.mean(t * log(p) + (1 - t) * log(1 - p))

  total = 0.0
  for n, anchor in enumerate(z_views):
    a = unit(anchor.astype(np.float64))
    pos = np.stack([np.sum(a * unit(z), -1) for p, z in enumerate(z_views[:n_pos]) if p != n], 1)
    neg = a @ a.T
    np.fill_diagonal(neg, -np.inf)
    neg = np.sort(neg, axis=1)[:, -topk:]  # Top-k, ascending.
    sims = np.concatenate([neg, np.sort(pos, axis=1)], axis=1)
    perms = np.stack([_np_soft_perm(row, steepness) for row in sims])
    p_pos = np.clip(perms[:, :, topk:].sum(-1), 0, 1)
    p_neg = np.clip(perms[:, :, :topk].sum(-1), 0, 1)
    t_pos = np.broadcast_to(np.arange(sims.shape[1]) >= topk, p_pos.shape).astype(np.float64)
    total += 0.5 * (bce(p_pos, t_pos) + bce(p_neg, 1 - t_pos))
  return total / len(z_views)


def _views(seed, n_views=2, b=12, d=6):
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(b, d))
  return [(base + 0.5 * rng.normal(size=(b, d))).astype(np.float32) for _ in range(n_views)]


@pytest.mark.parametrize("n_views,n_pos,topk", [(2, 2, 4), (4, 4, 3), (4, 2, 5)])
def test_loss_matches_the_official_formula(n_views, n_pos, topk):
  # (4, 2, 5) is multi-crop: two full-size views are positives, the last two are small crops with
  # one more positive each (sorters of two sizes).
  zs = _views(0, n_views)
  want = _np_groco(zs, n_pos=n_pos, topk=topk, steepness=1.5)
  jitted = jax.jit(lambda zs: groco.groco_loss(zs, n_pos=n_pos, topk_neg=topk, steepness=1.5))
  np.testing.assert_allclose(float(jitted([jnp.asarray(z) for z in zs])), want, rtol=1e-5)


def _sims(pos_level, *, b=4, topk=5, n_pos=2, seed=0):
  rng = np.random.default_rng(seed)
  neg = np.sort(rng.uniform(-0.2, 0.4, size=(b, topk)), axis=1)
  pos = np.sort(pos_level + rng.uniform(0.0, 0.1, size=(b, n_pos)), axis=1)
  return jnp.asarray(np.concatenate([neg, pos], axis=1), jnp.float32)


# Jitted with static group size: one compilation serves every input of a shape.
_bce_terms = jax.jit(groco.group_ordering_bce, static_argnames=("num_neg",))


def test_loss_decreases_monotonically_as_positive_similarities_rise():
  levels = np.linspace(-0.9, 0.9, 13)
  losses = [float(sum(_bce_terms(_sims(lv), num_neg=5, steepness=1.0))) for lv in levels]
  assert np.all(np.diff(losses) < 0), losses


def test_positives_above_negatives_beat_positives_below():
  above = sum(_bce_terms(_sims(0.85), num_neg=5, steepness=1.0))
  below = sum(_bce_terms(_sims(-0.9), num_neg=5, steepness=1.0))
  assert float(above) < float(below)
  # With steepness 1 and similarities in [-1, 1] the relaxation stays soft: never zero (spec).
  assert float(above) > 0.05


@pytest.mark.parametrize("steepness", [0.5, 1.0, 20.0])
def test_positive_and_negative_bce_terms_agree(steepness):
  # Rows of the soft permutation sum to 1, so p- = 1 - p+ and the two BCE terms coincide.
  bce_pos, bce_neg = _bce_terms(_sims(0.1, b=16, seed=3), num_neg=5, steepness=steepness)
  np.testing.assert_allclose(float(bce_pos), float(bce_neg), atol=1e-6)
  terms = jax.jit(lambda zs: groco.groco_terms(zs, n_pos=2, topk_neg=4))(
      [jnp.asarray(z) for z in _views(1)])
  np.testing.assert_allclose(float(terms["bce_pos"]), float(terms["bce_neg"]), atol=1e-6)


@pytest.mark.parametrize("n_views,n_pos", [(2, 2), (4, 2)])
def test_a_joint_permutation_of_the_batch_leaves_the_loss_unchanged(n_views, n_pos):
  zs = [jnp.asarray(z) for z in _views(2, n_views, b=16)]
  order = np.random.default_rng(5).permutation(16)
  loss = jax.jit(lambda zs: groco.groco_loss(zs, n_pos=n_pos, topk_neg=6))
  a, b = loss(zs), loss([z[order] for z in zs])
  np.testing.assert_allclose(float(a), float(b), rtol=1e-6)


def test_gradient_flows_only_through_the_anchor_with_stop_grad():
  z1, z2 = (jnp.asarray(z) for z in _views(3))

  def one_anchor(anchor, positive, stop_grad):
    sims = groco.anchor_similarities(anchor, [positive], topk_neg=4, stop_grad=stop_grad)
    return sum(groco.group_ordering_bce(sims, num_neg=4, steepness=1.0))

  grad = jax.jit(jax.grad(one_anchor, argnums=(0, 1)), static_argnums=2)
  g_anchor, g_pos = grad(z1, z2, True)
  np.testing.assert_array_equal(g_pos, 0.0)
  assert float(jnp.abs(g_anchor).sum()) > 0
  _, g_pos = grad(z1, z2, False)
  assert float(jnp.abs(g_pos).sum()) > 0


def _knn_accuracy(emb, labels, k=5):
  e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  sim = e @ e.T
  np.fill_diagonal(sim, -np.inf)
  nearest = np.argsort(-sim, axis=1)[:, :k]
  votes = labels[nearest]
  pred = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
  return float(np.mean(pred == labels))


@pytest.mark.slow
def test_tiny_run_on_gaussian_clusters_improves_knn():
  # Spec: B=32, D=16 MLP, synthetic Gaussian clusters, noise views, topk 4. The class lives in 4
  # coordinates; 12 nuisance coordinates are large noise redrawn for every view, so a network
  # that learns what the two views share (GroCo's positives) discards them and k-NN improves.
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 4)) * 1.5

  def sample(labels, rng):
    signal = centres[labels] + 0.3 * rng.normal(size=(len(labels), 4))
    return signal, lambda: np.concatenate(
        [signal + 0.1 * rng.normal(size=signal.shape), 3.0 * rng.normal(size=(len(labels), 12))],
        axis=1).astype(np.float32)

  net = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(16)])
  eval_labels = np.repeat(np.arange(4), 50)
  _, eval_view = sample(eval_labels, np.random.default_rng(1))
  eval_x = eval_view()
  params = net.init(jax.random.key(0), eval_x[:2])
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, v1, v2):
    loss, grads = jax.value_and_grad(
        lambda p: groco.groco_loss([net.apply(p, v1), net.apply(p, v2)], n_pos=2, topk_neg=4))(
            params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  before = _knn_accuracy(np.asarray(net.apply(params, eval_x)), eval_labels)
  losses = []
  for _ in range(150):
    _, view = sample(rng.integers(0, 4, size=32), rng)
    params, opt, loss = step(params, opt, view(), view())
    losses.append(float(loss))
  after = _knn_accuracy(np.asarray(net.apply(params, eval_x)), eval_labels)
  assert after > before + 0.1, (before, after)
  assert np.mean(losses[-20:]) < np.mean(losses[:20])


def test_method_loss_is_groco_of_the_projections():
  config, method, params, state, views = setup("groco")
  loss, (_, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(1))
  net = _common.encoder_projector(config)

  @jax.jit
  def expected_loss(views):
    z = [_common.apply_train(net, params, state, v)[0][1] for v in views]
    return groco.groco_loss(z, n_pos=2, topk_neg=config.groco.topk_neg)

  expected = expected_loss(views)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  assert float(metrics["groco_loss"]) == float(loss)
  assert rep.shape == (16, 2 * config.encoder.width)  # resnet_tiny: 2 x width features.


def test_multicrop_config_builds_two_sorter_sizes():
  config, method, params, state, views = setup("groco", arg="views=multicrop,runlocal")
  assert len(views) == 6 and views[0].shape[1] == 2 * views[-1].shape[1]
  loss, _ = jax.jit(method.loss)(params, state, views, jax.random.key(1))
  assert np.isfinite(float(loss))


def test_bitonic_with_an_unsupported_size_names_the_key():
  # topk_neg 10 + 1 positive = 11 similarities per anchor: not a power of two.
  with pytest.raises(ConfigError, match="groco.topk_neg=10") as err:
    setup("groco", groco__sorting_network="bitonic")
  assert "groco.sorting_network='bitonic'" in str(err.value)
  assert "\n" not in str(err.value)
  # topk_neg 7 + 1 positive = 8 works.
  _, method, params, state, views = setup("groco", groco__sorting_network="bitonic",
                                          groco__topk_neg=7)
  assert np.isfinite(float(jax.jit(method.loss)(params, state, views, jax.random.key(0))[0]))


@pytest.mark.parametrize("key,value,match", [
    ("groco__topk_neg", 16, "groco.topk_neg=16"),  # runlocal batch is 16: at most 15 negatives.
    ("groco__topk_neg", 0, "groco.topk_neg=0"),
    ("groco__steepness", 0.0, "groco.steepness=0"),
    ("groco__distribution", "laplace", "groco.distribution='laplace'"),
    ("groco__sorting_network", "bubble", "groco.sorting_network='bubble'"),
    ("groco__positive_views", ("view1",), "groco.positive_views"),
])
def test_bad_config_values_name_the_key(key, value, match):
  with pytest.raises(ConfigError, match=match):
    setup("groco", **{key: value})
