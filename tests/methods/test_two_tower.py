"""Two-tower + CFM (Yao et al., CIKM 2021): the losses against float64 NumPy written from the
paper's equations, the MI table against a brute-force count, the masks' properties, the SSL
batch's sampling, alpha = 0 against the plain two-tower, and one-line errors."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, config_of, setup

from ssljax import data as data_lib
from ssljax import losses, methods
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import two_tower
from ssljax.models.towers import TwoTower


def _np_normalize(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_batch_softmax(q, x, tau, log_q=None):
  """Float64: logit_ij = cos(q_i, x_j) / tau [- log p_j]; mean_i (logsumexp_j logit_ij -
  logit_ii) (the in-batch softmax; Yi et al. 2019's logQ correction when log_q is given)."""
  logits = _np_normalize(q) @ _np_normalize(x).T / tau
  if log_q is not None:
    logits = logits - log_q[None, :]
  m = logits.max(1, keepdims=True)
  lse = (m + np.log(np.exp(logits - m).sum(1, keepdims=True)))[:, 0]
  return float(np.mean(lse - np.diag(logits)))


# ------------------------------------------------------------------------------------ losses


def test_batch_softmax_matches_numpy_with_and_without_logq():
  rng = np.random.default_rng(0)
  q, x = rng.normal(size=(2, 12, 5))
  p = rng.dirichlet(np.ones(12))
  for tau in (0.1, 0.5):
    want = _np_batch_softmax(q, x, tau)
    got = losses.batch_softmax_loss(jnp.asarray(q), jnp.asarray(x), temperature=tau)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    want = _np_batch_softmax(q, x, tau, np.log(p))
    got = jax.jit(lambda a, b, c, t=tau: losses.batch_softmax_loss(a, b, temperature=t,
                                                                   log_q_b=c))(q, x, np.log(p))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
  # The correction changes the loss (it is not a constant shift of every row).
  assert abs(_np_batch_softmax(q, x, 0.1, np.log(p)) - _np_batch_softmax(q, x, 0.1)) > 1e-3


def test_batch_softmax_goes_to_zero_for_perfect_one_hot_scores():
  eye = np.eye(6)
  values = [float(losses.batch_softmax_loss(jnp.asarray(eye), jnp.asarray(eye), temperature=t))
            for t in (1.0, 0.1, 0.01)]
  # Float64 formula: -log(e^{1/t} / (e^{1/t} + 5)) = log(1 + 5 e^{-1/t}).
  np.testing.assert_allclose(values, [math.log1p(5 * math.exp(-1 / t)) for t in (1, .1, .01)],
                             rtol=1e-5, atol=1e-7)
  assert values[-1] < 1e-6


def test_ssl_infonce_is_log_n_for_identical_views_and_drops_when_aligned():
  z = np.tile(np.random.default_rng(1).normal(size=(1, 8)), (10, 1))
  np.testing.assert_allclose(float(losses.cfm_ssl_loss(jnp.asarray(z), jnp.asarray(z),
                                                       temperature=0.2)), math.log(10), rtol=1e-5)
  # z_i = z'_i with orthogonal rows: every positive scores 1, every negative 0.
  eye = np.eye(10, 16)
  aligned = float(losses.cfm_ssl_loss(jnp.asarray(eye), jnp.asarray(eye), temperature=0.2))
  np.testing.assert_allclose(aligned, math.log1p(9 * math.exp(-5)), rtol=1e-5)
  assert aligned < math.log(10)


# --------------------------------------------------------------------- mutual information


def _synthetic_catalogue(seed=0, items=500):
  """Fields A, B deterministic functions of a latent cluster; C, D noisy copies of A, B (30%
  resampled); E, F independent noise; G multi-valued (1-3 tags, the first from the cluster)."""
  rng = np.random.default_rng(seed)
  cluster = rng.integers(0, 5, items)
  a = 1 + cluster
  b = 1 + (3 * cluster + 1) % 5
  c = np.where(rng.random(items) < 0.3, rng.integers(1, 6, items), a)
  d = np.where(rng.random(items) < 0.3, rng.integers(1, 6, items), b)
  e, f = rng.integers(1, 6, (2, items))
  g = np.zeros((items, 3), np.int64)
  g[:, 0] = 1 + cluster
  extra = rng.integers(0, 3, items)
  for i in range(items):
    g[i, 1:1 + extra[i]] = rng.choice(np.arange(6, 10), extra[i], replace=False)
  g[:7] = 0  # Items with no tag: "no value".
  return {k: v.reshape(items, -1) for k, v in zip("ABCDEFG", (a, b, c, d, e, f, g),
                                                   strict=True)}


def _brute_mi(a, b):
  """Float64 MI over items counted one by one: an item with value sets S_a, S_b adds
  1 / (N |S_a| |S_b|) to every (v_a, v_b) of S_a x S_b ({0} when it has no value)."""
  joint, pa, pb = collections.Counter(), collections.Counter(), collections.Counter()
  n = len(a)
  for row_a, row_b in zip(a, b, strict=True):
    sa = [v for v in row_a if v != 0] or [0]
    sb = [v for v in row_b if v != 0] or [0]
    for va in sa:
      pa[va] += 1 / (n * len(sa))
      for vb in sb:
        joint[va, vb] += 1 / (n * len(sa) * len(sb))
    for vb in sb:
      pb[vb] += 1 / (n * len(sb))
  return sum(p * math.log(p / (pa[va] * pb[vb])) for (va, vb), p in joint.items())


def test_mutual_information_matches_brute_force():
  codes = _synthetic_catalogue()
  names = ["id", *codes]
  table = two_tower.mutual_information(codes, names)
  assert table.shape == (8, 8)
  np.testing.assert_array_equal(table, table.T)
  np.testing.assert_array_equal(np.diag(table), 0.0)
  np.testing.assert_array_equal(table[0], 0.0)  # The item id is left out (pitfall 3).
  for i, a in enumerate(names[1:], 1):
    for j, b in enumerate(names[1:], 1):
      if i != j:
        np.testing.assert_allclose(table[i, j], _brute_mi(codes[a], codes[b]), rtol=1e-9,
                                   atol=1e-12)
  idx = {n: i for i, n in enumerate(names)}
  # A and B share the cluster exactly: MI = H(cluster) ~ log 5.
  assert table[idx["A"], idx["B"]] > 1.4
  assert table[idx["A"], idx["B"]] > table[idx["A"], idx["C"]] > table[idx["A"], idx["E"]]
  assert table[idx["A"], idx["E"]] < 0.1 and table[idx["A"], idx["G"]] > 0.5


# ------------------------------------------------------------------------------------ masks


def test_masks_are_complementary_half_sized_and_reproducible():
  mi = jnp.asarray(two_tower.mutual_information(_synthetic_catalogue(), ["id", *"ABCDEFG"]))
  for k in (2, 5, 8):
    table = mi[:k, :k]
    for masking, seed_in in (("rfm", True), ("cfm", True), ("cfm", False)):
      seen = set()
      for i in range(40):
        key = jax.random.key(i)
        m = two_tower.field_mask(key, table, masking=masking, include_seed=seed_in)
        assert m.shape == (k,) and int(m.sum()) == k // 2
        np.testing.assert_array_equal(
            m, two_tower.field_mask(key, table, masking=masking, include_seed=seed_in))
        keep1, keep2 = two_tower.view_keeps(m, masking)
        np.testing.assert_array_equal(keep1 + keep2, 1.0)  # Union = all, intersection = none.
        assert 0 < float(keep1.sum()) < k and 0 < float(keep2.sum()) < k
        seen.add(tuple(np.asarray(m)))
      assert len(seen) > 1  # Different keys, different masks.
  keep1, keep2 = two_tower.view_keeps(
      two_tower.field_mask(jax.random.key(0), mi, masking="none"), "none")
  np.testing.assert_array_equal(keep1, 1.0)
  np.testing.assert_array_equal(keep2, 1.0)


def test_cfm_masks_correlated_fields_together_far_more_often_than_rfm():
  names = ["A", "B", "C", "D", "E", "F"]
  mi = jnp.asarray(two_tower.mutual_information(_synthetic_catalogue(), names))
  def same_side(masking):
    masks = np.asarray(jax.vmap(lambda k: two_tower.field_mask(k, mi, masking=masking))(
        jax.random.split(jax.random.key(0), 3000)))
    return float(np.mean(masks[:, 0] == masks[:, 1])), masks

  rfm, _ = same_side("rfm")
  cfm, masks = same_side("cfm")
  # RFM: P(A, B on the same side) = 2 C(4, 1) / C(6, 3) = 0.4.
  assert abs(rfm - 0.4) < 0.04
  assert cfm > rfm + 0.25, (cfm, rfm)
  # With seed A (masked with 2 partners), B is one of them: B is masked whenever A is and the
  # mask is {A, B, x}; over all draws, {A, B} together in view 1 is far above RFM's 0.2.
  both = float(np.mean(masks[:, 0] & masks[:, 1]))
  assert both > 0.3, both


def test_masked_fields_are_a_frozen_zero_for_the_whole_batch():
  _, method, params, state, views = setup("two_tower")
  net, var = method.backbone.module, method.backbone.variables(params, state)
  fields = [f.name for f in net.fields]
  items = jnp.arange(32, dtype=jnp.int32)
  g = fields.index("genres")
  keep = jnp.ones(len(fields)).at[g].set(0.0)

  def encode(p, codes):
    return net.apply({**var, "params": p}, codes, keep_k=keep, method=TwoTower.encode)

  codes = net.apply(var, items, method=TwoTower.codes)
  grads = jax.grad(lambda p: jnp.sum(encode(p, codes) ** 2))(params)
  np.testing.assert_array_equal(grads["item_genres_embedding"], 0.0)
  assert float(jnp.abs(grads["item_year_embedding"]).sum()) > 0
  # Any genre codes give the same output: no row of any item reads the masked field.
  other = {**codes, "genres": jnp.ones_like(codes["genres"])}
  np.testing.assert_array_equal(encode(params, codes), encode(params, other))


# ------------------------------------------------------------------------- method and loss


def _plain_loss(method, state, views, tau):
  """The plain two-tower objective, built here from the towers and the data's frequencies."""
  net, batch = method.backbone.module, views[0]
  data = interactions.load(config_of("two_tower").input.data)
  counts = data.popularity().astype(np.float64)
  log_q = jnp.asarray(np.log(np.maximum(counts, 1) / counts.sum()), jnp.float32)

  def loss(params):
    var = method.backbone.variables(params, state)
    q = net.apply(var, batch["user"], method=TwoTower.query)
    x = net.apply(var, batch["item"], method=TwoTower.items)
    return losses.batch_softmax_loss(q, x, temperature=tau, log_q_b=log_q[batch["item"]]), (q, x)

  return loss, np.asarray(log_q, np.float64)


def test_alpha_zero_is_the_plain_two_tower_loss_and_gradients_to_rounding():
  _, method, params, state, views = setup("two_tower", two_tower__alpha=0.0)
  plain, log_q = _plain_loss(method, state, views, 0.1)
  rng = jax.random.key(3)
  (value, (_, metrics, _)), grads = jax.jit(jax.value_and_grad(method.loss, has_aux=True))(
      params, state, views, rng)
  (want, (q, x)), want_grads = jax.jit(jax.value_and_grad(plain, has_aux=True))(params)
  assert "ssl_loss" not in metrics
  # The same computation compiled as two programs: XLA may fuse and order their float32 sums
  # differently (seen: 1 ulp of the loss, 5e-7 of a gradient of size 6 on one machine, exact on
  # another), so equal to rounding, relative to each leaf's largest value.
  np.testing.assert_allclose(float(value), float(want), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-6, atol=1e-6 * float(np.abs(b).max()) + 1e-30), grads, want_grads)
  # And the plain loss is the formula (float64 NumPy on the towers' outputs, logQ corrected).
  item = np.asarray(views[0]["item"])
  np.testing.assert_allclose(float(value), _np_batch_softmax(
      np.asarray(q, np.float64), np.asarray(x, np.float64), 0.1, log_q[item]), rtol=1e-5)
  # Same for every masking: with alpha = 0 the SSL task is off.
  for masking in ("rfm", "none"):
    _, m2, p2, s2, v2 = setup("two_tower", two_tower__alpha=0.0, two_tower__masking=masking)
    np.testing.assert_allclose(float(jax.jit(m2.loss)(p2, s2, v2, rng)[0]), float(value),
                               rtol=1e-6)


def test_ssl_term_is_added_with_alpha_and_reaches_the_shared_item_tower():
  _, method, params, state, views = setup("two_tower", two_tower__alpha=0.5)
  plain, _ = _plain_loss(method, state, views, 0.1)
  rng = jax.random.key(4)
  (value, (_, metrics, _)), grads = jax.jit(jax.value_and_grad(method.loss, has_aux=True))(
      params, state, views, rng)
  (main, _), main_grads = jax.value_and_grad(plain, has_aux=True)(params)
  np.testing.assert_allclose(float(metrics["main_loss"]), float(main), rtol=1e-6)
  np.testing.assert_allclose(float(value), float(main) + 0.5 * float(metrics["ssl_loss"]),
                             rtol=1e-6)
  assert float(metrics["masked_fields"]) == 2  # floor(5 / 2) of id, genres, year, bins, pop.
  # Pitfall 5: L_self's gradient reaches the item tower L_main uses (rows of items outside the
  # main batch move), never the query tower.
  id_grad = np.asarray(grads["item_id_embedding"])
  outside = np.setdiff1d(np.arange(id_grad.shape[0]), np.asarray(views[0]["item"]))
  assert np.abs(id_grad[outside]).sum() > 0
  np.testing.assert_array_equal(np.asarray(main_grads["item_id_embedding"])[outside], 0.0)
  # (Jitted against not: float32 noise only.)
  np.testing.assert_allclose(grads["user_embedding"], main_grads["user_embedding"], rtol=1e-4,
                             atol=1e-6)


def test_ssl_batch_is_uniform_over_the_catalogue_not_the_main_batch():
  _, method, params, state, views = setup("two_tower", two_tower__alpha=0.5)
  rng = jax.random.key(5)
  loss = jax.jit(method.loss)
  ssl = float(loss(params, state, views, rng)[1][1]["ssl_loss"])
  other = [{"user": views[0]["user"], "item": (views[0]["item"] + 17) % 9066}]
  assert float(loss(params, state, other, rng)[1][1]["ssl_loss"]) == ssl  # Pitfall 1.
  draws = np.asarray(jax.vmap(lambda k: two_tower.ssl_items(k, 50, 100))(
      jax.random.split(jax.random.key(0), 400)))
  assert all(len(np.unique(row)) == 50 for row in draws)  # Distinct within a batch.
  counts = np.bincount(draws.ravel(), minlength=100)
  # Uniform: each item expected 200 times; a chi-square with 99 d.o.f. stays under 160.
  assert np.sum((counts - 200.0) ** 2 / 200.0) < 160


def test_state_holds_the_fields_the_mi_table_and_the_item_frequencies():
  config, method, params, state, _ = setup("two_tower")
  data = interactions.load(config.input.data)
  counts = data.popularity().astype(np.float64)
  np.testing.assert_allclose(np.asarray(state["log_q"]),
                             np.log(np.maximum(counts, 1) / counts.sum()), rtol=1e-5)
  names = [f.name for f in method.backbone.module.fields]
  assert names == ["id", "genres", "year", "year_bins", "popularity"]
  np.testing.assert_array_equal(state["features"]["genres"], data.item_features["genres"])
  # Popularity buckets from the training interactions only: 1 + floor(log2(1 + n)).
  np.testing.assert_array_equal(np.asarray(state["features"]["popularity"])[:, 0],
                                1 + np.floor(np.log2(1 + counts)).astype(int))
  # year_bins is a function of year: their MI is year_bins' entropy, the table's largest.
  mi = np.asarray(state["mi"])
  assert mi.argmax() in (2 * 5 + 3, 3 * 5 + 2)
  year_bins = np.asarray(state["features"]["year_bins"])[:, 0]
  p = np.bincount(year_bins) / len(year_bins)
  np.testing.assert_allclose(mi[2, 3], -np.sum(p[p > 0] * np.log(p[p > 0])), rtol=1e-5)


def test_represent_gives_unit_vectors_whose_product_is_the_cosine_score():
  _, method, params, state, views = setup("two_tower")
  out = jax.jit(method.represent)(params, state, views[0])
  np.testing.assert_allclose(np.linalg.norm(out["user"], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(out["item"], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(out["representation"]),
                                np.concatenate([out["user"], out["item"]], 1))


def _interactions_without_features(tmp_path):
  path = tmp_path / "inter.csv"
  rows = [f"{u},{i}" for u in range(6) for i in range(8) if (u + i) % 3]
  path.write_text("user_id,item_id\n" + "\n".join(rows) + "\n")
  config = config_of("two_tower", "runlocal,data=interactions")
  config.input.data.path = str(path)
  return config


def test_bad_settings_name_the_key(tmp_path):
  with pytest.raises(ConfigError, match="two_tower.temperature=0"):
    build("two_tower", two_tower__temperature=0.0)
  with pytest.raises(ConfigError, match="two_tower.temperature=-1"):
    build("two_tower", two_tower__temperature=-1.0)
  with pytest.raises(ConfigError, match="two_tower.masking='random'"):
    build("two_tower", two_tower__masking="random")
  with pytest.raises(ConfigError, match="two_tower.value_dropout=1"):
    build("two_tower", two_tower__value_dropout=1.0)
  with pytest.raises(ConfigError, match="two_tower.alpha=-0.1"):
    build("two_tower", two_tower__alpha=-0.1)
  with pytest.raises(ConfigError, match="binned_fields names 'genres'"):
    build("two_tower", two_tower__binned_fields=("genres",))
  config = _interactions_without_features(tmp_path)
  info = data_lib.get_info(config.input.data)
  with pytest.raises(ConfigError, match="set input.data.item_path") as e:
    methods.make(config, total_steps=10, steps_per_epoch=2, info=info)
  assert "\n" not in str(e.value)


def test_separate_ssl_tower_gets_only_the_ssl_gradient():
  _, method, params, state, views = setup("two_tower", two_tower__share_item_tower=False,
                                          two_tower__alpha=0.5)
  assert set(params) >= {"ssl_item_id_embedding", "ssl_item_mlp_0", "item_id_embedding"}
  grads = jax.jit(jax.grad(lambda p: method.loss(p, state, views, jax.random.key(6))[0]))(params)
  # G encodes view 2 (its tables of the fields view 2 masks get none: the frozen zero).
  g = sum(float(jnp.abs(x).sum()) for k, v in grads.items() if k.startswith("ssl_item_")
          for x in jax.tree.leaves(v))
  assert g > 0
  # The representation (and so the ranking) reads H only.
  moved = {**params, "ssl_item_mlp_0": jax.tree.map(lambda a: a + 1.0, params["ssl_item_mlp_0"])}
  np.testing.assert_array_equal(method.represent(params, state, views[0])["item"],
                                method.represent(moved, state, views[0])["item"])
