"""BPR-MF: the BPR loss and L2 penalty against their formulas, the negative sampler, the method's
loss against the formula on its own tables, and one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, config_of, setup

from ssljax import losses, methods
from ssljax.data import DatasetInfo
from ssljax.errors import ConfigError
from ssljax.models import graph


def test_bpr_loss_matches_the_formula():
  rng = np.random.default_rng(0)
  pos, neg = rng.normal(size=(2, 32)) * 3
  # -log sigmoid(x) = log(1 + exp(-x)), x = pos - neg, in float64.
  want = np.mean(np.log1p(np.exp(-(pos - neg))))
  np.testing.assert_allclose(float(losses.bpr_loss(jnp.asarray(pos), jnp.asarray(neg))), want,
                             rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(losses.bpr_loss)(pos, neg)), want, rtol=1e-5)
  # Equal scores: log 2 per pair (the oracle of SSLRec's spec, as a mean here).
  np.testing.assert_allclose(float(losses.bpr_loss(jnp.ones(5), jnp.ones(5))), np.log(2.0),
                             rtol=1e-6)
  # Several negatives per positive broadcast: [B, 1] against [B, n].
  negs = rng.normal(size=(32, 3))
  want = np.mean(np.log1p(np.exp(-(pos[:, None] - negs))))
  np.testing.assert_allclose(float(losses.bpr_loss(pos[:, None], negs)), want, rtol=1e-5)


def test_embedding_l2_matches_the_formula():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
  want = 0.5 * (np.sum(a ** 2) + np.sum(b ** 2)) / 6
  np.testing.assert_allclose(float(losses.embedding_l2(jnp.asarray(a), jnp.asarray(b))), want,
                             rtol=1e-5)


def _random_csr(seed, users=17, items=30):
  rng = np.random.default_rng(seed)
  matrix = rng.random((users, items)) < 0.3
  matrix[3] = False  # A user with no training items.
  matrix[5] = True  # And one with every item.
  indptr = np.r_[0, np.cumsum(matrix.sum(1))].astype(np.int32)
  return matrix, indptr, np.nonzero(matrix)[1].astype(np.int32)


def test_csr_contains_is_set_membership():
  matrix, indptr, indices = _random_csr(0)
  steps = graph.search_steps(int(np.diff(indptr).max()))
  users, items = np.meshgrid(np.arange(17), np.arange(30), indexing="ij")
  got = jax.jit(graph.csr_contains, static_argnames="steps")(
      jnp.asarray(indptr), jnp.asarray(indices), users, items, steps=steps)
  np.testing.assert_array_equal(np.asarray(got), matrix)


def test_negatives_avoid_training_items_and_are_uniform():
  matrix, indptr, indices = _random_csr(1)
  steps = graph.search_steps(int(np.diff(indptr).max()))
  users = jnp.asarray(np.repeat(np.arange(17), 200), jnp.int32)
  neg = graph.sample_negatives(jax.random.key(0), users, jnp.asarray(indptr), jnp.asarray(indices),
                               num_items=30, num=2, tries=12, steps=steps)
  neg = np.asarray(neg)
  assert neg.shape == (17 * 200, 2) and neg.min() >= 0 and neg.max() < 30
  u = np.asarray(users)
  positive = matrix[u[:, None], neg]
  # User 5 has every item (no negative exists); for the others 12 tries leave a positive with
  # probability <= 0.3^12 per draw.
  assert not positive[u != 5].any()
  # Uniform over the free items: user 0's draws cover its free items about evenly.
  free = np.flatnonzero(~matrix[0])
  counts = np.bincount(neg[u == 0].ravel(), minlength=30)[free]
  assert counts.min() > 0 and counts.max() < 4 * counts.mean()


def test_loss_is_bpr_plus_l2_on_the_tables():
  config, method, params, state, views = setup("bpr", bpr__reg_weight=0.01)
  rng = jax.random.key(7)
  loss, (new_state, metrics, rep) = jax.jit(method.loss)(params, state, views, rng)
  user, item = (np.asarray(views[0][k]) for k in ("user", "item"))
  csr = state["train_items"]
  steps = graph.search_steps(int(np.diff(np.asarray(csr["indptr"])).max()))
  neg = np.asarray(graph.sample_negatives(
      rng, jnp.asarray(user), csr["indptr"], csr["indices"],
      num_items=params["item_embedding"].shape[0], num=1, tries=4, steps=steps))[:, 0]
  # Float64: s = <e_u, e_i>; BPR mean log(1 + exp(-(s_ui - s_uj))) + 0.01 * 0.5 * sum ||e||^2 / B.
  eu = np.asarray(params["user_embedding"], np.float64)[user]
  ei = np.asarray(params["item_embedding"], np.float64)[item]
  ej = np.asarray(params["item_embedding"], np.float64)[neg]
  x = np.sum(eu * ei, 1) - np.sum(eu * ej, 1)
  reg = 0.5 * (np.sum(eu ** 2) + np.sum(ei ** 2) + np.sum(ej ** 2)) / len(user)
  np.testing.assert_allclose(float(loss), np.mean(np.log1p(np.exp(-x))) + 0.01 * reg,
                             rtol=1e-5)
  np.testing.assert_allclose(float(metrics["embedding_l2"]), reg, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(rep), np.concatenate([eu, ei], 1), rtol=1e-6)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_represent_gives_user_and_item_vectors():
  _, method, params, state, views = setup("bpr")
  out = jax.jit(method.represent)(params, state, views[0])
  d = params["user_embedding"].shape[1]
  assert out["user"].shape == (16, d) and out["item"].shape == (16, d)
  np.testing.assert_array_equal(np.asarray(out["user"]),
                                np.asarray(params["user_embedding"])[views[0]["user"]])
  np.testing.assert_array_equal(np.asarray(out["representation"]),
                                np.concatenate([out["user"], out["item"]], 1))


def test_bad_settings_name_the_key():
  with pytest.raises(ConfigError, match="encoder.dim=0"):
    build("bpr", encoder__dim=0)
  with pytest.raises(ConfigError, match="bpr.num_negatives=0"):
    build("bpr", bpr__num_negatives=0)
  with pytest.raises(ConfigError, match="bpr.reg_weight=-1"):
    build("bpr", bpr__reg_weight=-1.0)
  images = DatasetInfo(name="digits", num_classes=10, image_shape=(8, 8, 1), num_train=10,
                       num_eval=10)
  with pytest.raises(ConfigError, match="trains on user-item interactions"):
    methods.make(config_of("bpr"), total_steps=10, steps_per_epoch=2, info=images)
