"""SEPT: the views, the encoders and the tri-training losses against float64 NumPy written here
from the paper's equations (as the official QRec code computes them), the warm-up switch, beta = 0
as plain BPR on the preference view, and one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_setup import build, setup

from ssljax import losses
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import sept

# ------------------------------------------------------------------------------- tiny graphs


def _toy(users=8, items=7, seed=0):
  """R [U, I] and a directed S [U, U] with triangles, a user without ties (7) and an item
  nobody trained on (6)."""
  rng = np.random.default_rng(seed)
  r = (rng.random((users, items)) < 0.4).astype(np.float64)
  r[:, 6] = 0.0
  r[np.arange(users), np.arange(users) % 6] = 1.0  # Every user has a training item.
  s = np.zeros((users, users))
  for a, b in [(0, 1), (1, 2), (0, 2), (2, 0), (3, 4), (4, 3), (4, 5), (5, 3), (6, 0), (1, 6)]:
    s[a, b] = 1.0
  user, item = np.nonzero(r)
  src, dst = np.nonzero(s)
  data = interactions.Interactions(
      name="toy", num_users=users, num_items=items,
      pairs={"train": (user.astype(np.int32), item.astype(np.int32)),
             "valid": (np.zeros(0, np.int32),) * 2, "test": (np.zeros(0, np.int32),) * 2},
      user_ids=np.arange(users).astype(str), item_ids=np.arange(items).astype(str),
      social=(src.astype(np.int32), dst.astype(np.int32)))
  return r, s, data


def _norm(m):
  """Dense D^-1/2 M D^-1/2, D = row sums, inf -> 0 (the official ``normalization``)."""
  d = m.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
  return inv[:, None] * m * inv[None, :]


def _dense(adj, n):
  out = np.zeros((n, n))
  np.add.at(out, (adj["rows"], adj["cols"]), adj["weights"])
  return out


@pytest.mark.parametrize("mode", ["directed", "mutual", "symmetric"])
def test_views_are_the_dense_formulas(mode):
  r, s, data = _toy()
  s_mode = {"directed": s, "mutual": s * s.T, "symmetric": np.maximum(s, s.T)}[mode]
  got_s = sept.social_matrix(data, mode).toarray()
  np.testing.assert_array_equal(got_s, s_mode)
  views = sept.view_adjacencies(data, sept.social_matrix(data, mode))
  eye = np.eye(8)
  friend = _norm((s_mode @ s_mode) * s_mode + eye)  # Paper eq. 3: A_f, A_s.
  sharing = _norm((r @ r.T) * s_mode + eye)
  np.testing.assert_allclose(_dense(views["friend"], 8), friend, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(_dense(views["sharing"], 8), sharing, rtol=1e-6, atol=1e-7)
  for adj in views.values():  # Sorted by row (the sorted segment sum relies on it).
    assert np.all(np.diff(adj["rows"]) >= 0)
  off = ~np.eye(8, dtype=bool)
  f_nz, s_nz = _dense(views["friend"], 8) != 0, _dense(views["sharing"], 8) != 0
  # Friend view: off-diagonal only on ties that close a triangle (a->b with a->c->b).
  closes = (s_mode > 0) & ((s_mode @ s_mode) > 0)
  np.testing.assert_array_equal(f_nz & off, closes & off)
  # Sharing view: off-diagonal only on ties whose ends share an item.
  np.testing.assert_array_equal(s_nz & off, (s_mode > 0) & ((r @ r.T) > 0) & off)
  assert np.all(np.diag(f_nz)) and np.all(np.diag(s_nz))
  if mode != "directed":  # Symmetric S, symmetric views.
    np.testing.assert_allclose(friend, friend.T)
    np.testing.assert_allclose(_dense(views["sharing"], 8), _dense(views["sharing"], 8).T,
                               atol=1e-7)


def test_normalize_keeps_zero_rows_zero():
  import scipy.sparse as sp

  m = np.array([[0.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  got = _dense(sept.normalize(sp.csr_matrix(m)), 3)
  np.testing.assert_allclose(got, _norm(m), rtol=1e-6)
  np.testing.assert_array_equal(got[2], 0.0)


def test_joint_graph_dropout_and_normalisation():
  r, s, data = _toy()
  joint, n_ui, n_s = sept.joint_structure(data, sept.social_matrix(data, "directed"))
  assert (n_ui, n_s) == (int(r.sum()), int(s.sum()))
  j = {k: jnp.asarray(v) for k, v in joint.items()}
  n = 8 + 7

  def weights(keep_rate, key):
    return np.asarray(jax.jit(lambda k: sept.drop_joint_edges(
        k, j, num_ui=n_ui, num_social=n_s, keep_rate=keep_rate, num_nodes=n))(key))

  # rho = 0: norm([[S, R], [R^T, 0]]) with the row sums (social edges in their stored direction).
  a = np.block([[s, r], [r.T, np.zeros((7, 7))]])
  got = np.zeros((n, n))
  np.add.at(got, (joint["rows"], joint["cols"]), weights(1.0, jax.random.key(0)))
  np.testing.assert_allclose(got, _norm(a), rtol=1e-6, atol=1e-7)
  # rho = 0.3: floor(0.7 n) of each edge set kept, an interaction's two entries together, and the
  # kept graph renormalised.
  w = weights(0.7, jax.random.key(1))
  kept = np.zeros(n_ui + n_s, bool)
  kept[joint["draw"][w > 0]] = True
  assert kept[:n_ui].sum() == int(0.7 * n_ui) and kept[n_ui:].sum() == int(0.7 * n_s)
  entry_kept = kept[joint["draw"]]
  assert np.array_equal(entry_kept, w > 0) or np.all(w[entry_kept] >= 0)
  a_kept = np.zeros((n, n))
  a_kept[joint["rows"][entry_kept], joint["cols"][entry_kept]] = 1.0
  got = np.zeros((n, n))
  np.add.at(got, (joint["rows"], joint["cols"]), w)
  np.testing.assert_allclose(got, _norm(a_kept), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(a_kept[:8, 8:], a_kept[8:, :8].T)  # R kept symmetrically.
  # Another key draws another graph.
  assert not np.array_equal(weights(0.7, jax.random.key(2)) > 0, w > 0)


def test_encoder_is_layer0_plus_normalised_layers():
  rng = np.random.default_rng(0)
  a = rng.random((6, 6)) * (rng.random((6, 6)) < 0.5)
  a[5] = 0.0  # An empty row: its layers are zero, normalised to zero.
  x0 = rng.normal(size=(6, 3))
  rows, cols = np.nonzero(a)
  got = sept.propagate_views(jnp.asarray(x0, jnp.float32), jnp.asarray(rows, jnp.int32),
                             jnp.asarray(cols, jnp.int32), jnp.asarray(a[rows, cols], jnp.float32),
                             layers=2)
  want, x = x0.copy(), x0
  for _ in range(2):  # Z = X^0 + sum_l X^l / ||X^l|| (zero rows stay zero).
    x = a @ x
    n = np.linalg.norm(x, axis=1, keepdims=True)
    want += np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.0)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- tri-training maths


def _probs64(z, aug, valid):
  """P[u, w] = softmax over valid w of cos(z_u, aug_w) (paper eq. 8), float64."""
  zn = z / np.linalg.norm(z, axis=1, keepdims=True)
  an = aug / np.linalg.norm(aug, axis=1, keepdims=True)
  logits = np.where(valid[None, :], zn @ an.T, -np.inf)
  e = np.exp(logits - logits.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def test_label_probs_rows_sum_to_one_and_topk_is_distinct():
  rng = np.random.default_rng(0)
  z, aug = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
  valid = np.ones(12, bool)
  valid[[3, 7]] = False  # Padding rows (a repeated user).
  p = np.asarray(losses.sept_label_probs(jnp.asarray(z), jnp.asarray(aug), valid_n=valid))
  np.testing.assert_allclose(p, _probs64(z, aug, valid), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
  assert np.all(p[:, ~valid] == 0)
  p2 = np.asarray(losses.sept_label_probs(jnp.asarray(aug), jnp.asarray(z), valid_n=valid))
  for include_self in (True, False):
    index, ok = losses.sept_pseudo_labels(jnp.asarray(p), jnp.asarray(p2), k=4, valid_n=valid,
                                          include_self=include_self)
    index, ok = np.asarray(index), np.asarray(ok)
    assert index.shape == (12, 4) and ok.all()
    for u in range(12):
      assert len(set(index[u])) == 4 and valid[index[u]].all()
      assert include_self or u not in index[u]
      # The top K of (P1 + P2) / 2 over the allowed columns (paper eq. 9).
      score = np.where(valid, (p[u] + p2[u]) / 2, -np.inf)
      if not include_self:
        score[u] = -np.inf
      np.testing.assert_array_equal(np.sort(index[u]), np.sort(np.argsort(-score)[:4]))
  # Fewer valid users than K: the surplus positives are flagged, not counted.
  few = np.zeros(12, bool)
  few[:3] = True
  _, ok = losses.sept_pseudo_labels(jnp.asarray(p), jnp.asarray(p2), k=4, valid_n=few)
  assert np.asarray(ok).sum(1).max() == 3


def test_identical_views_give_identical_pseudo_labels():
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(10, 4)), jnp.float32)
  aug = jnp.asarray(rng.normal(size=(10, 4)), jnp.float32)
  valid = jnp.ones(10, bool)
  p = losses.sept_label_probs(z, aug, valid_n=valid)
  labels = [losses.sept_pseudo_labels(p, p, k=3, valid_n=valid)[0] for _ in range(3)]
  _, terms = sept.tri_training_loss(z, z, z, aug, valid_n=valid, positives=3, temperature=0.1)
  for other in labels[1:]:
    np.testing.assert_array_equal(labels[0], other)
  # The three encoders then see the same positives and the same loss.
  np.testing.assert_allclose(terms["ssl_friend"], terms["ssl_sharing"], rtol=1e-6)
  np.testing.assert_allclose(terms["ssl_friend"], terms["ssl_preference"], rtol=1e-6)


def test_infonce_closed_form_and_more_positives_never_hurt():
  n = 6
  eye = jnp.eye(n, dtype=jnp.float32)  # Anchor = its positive's direction, others orthogonal.
  valid = jnp.ones(n, bool)
  valid4 = jnp.asarray([True] * 4 + [False] * 2)
  # tau = 0.1 leaves a term of 5e-4 (float32 cancellation: absolute tolerance); tau = 1 a large one.
  for tau, tol in ((0.1, dict(rtol=0, atol=2e-6)), (1.0, dict(rtol=1e-5))):
    got = losses.sept_neighbour_infonce(eye, eye, jnp.arange(n)[:, None], valid_n=valid,
                                        temperature=tau)
    per = -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + (n - 1)))
    np.testing.assert_allclose(float(got), n * per, **tol)
    # Padding rows are neither anchors nor candidates: |U_b| counts the valid users only.
    got = losses.sept_neighbour_infonce(eye, eye, jnp.arange(n)[:, None], valid_n=valid4,
                                        temperature=tau)
    per4 = -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + 3))
    np.testing.assert_allclose(float(got), 4 * per4, **tol)
  tau = 0.1
  # Random embeddings: float64 reference of eq. 10, and adding positives never raises it.
  rng = np.random.default_rng(0)
  z, aug = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
  zn = z / np.linalg.norm(z, axis=1, keepdims=True)
  an = aug / np.linalg.norm(aug, axis=1, keepdims=True)
  e = np.exp(zn @ an.T / tau)
  previous = np.inf
  order = np.stack([rng.permutation(9) for _ in range(9)])  # Positives added one at a time.
  for k in range(1, 10):
    pos = order[:, :k]
    want = -np.sum(np.log(np.take_along_axis(e, pos, 1).sum(1) / e.sum(1)))
    got = float(losses.sept_neighbour_infonce(jnp.asarray(z), jnp.asarray(aug), jnp.asarray(pos),
                                              valid_n=jnp.ones(9, bool), temperature=tau))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got <= previous + 1e-6
    previous = got
  np.testing.assert_allclose(previous, 0.0, atol=1e-5)  # Every candidate a positive.


# ------------------------------------------------------------------------------ the method


def _at_step(state, step):
  return {**state, "sept": {"step": jnp.asarray(step, jnp.int32)}}


def test_beta_zero_is_bpr_on_the_preference_view():
  """beta = 0: the loss is L_rec (float64 reference) in both phases, and its gradients are those
  of beta > 0 during the warm-up, bit for bit."""
  config, method0, params, state, views = setup("sept", sept__beta=0.0, sept__reg_weight=0.01)
  _, method1, _, _, _ = setup("sept", sept__beta=0.005, sept__reg_weight=0.01,
                              sept__warmup_fraction=0.5)
  rng = jax.random.key(3)
  def grad(method, step):
    fn = jax.value_and_grad(lambda p, s: method.loss(p, s, views, rng), has_aux=True)
    return jax.jit(fn)(params, _at_step(state, step))

  (l0, (_, m0, _)), g0 = grad(method0, 99)
  (l1, (_, m1, _)), g1 = grad(method1, 10)  # Warm-up: 50 of the 100 steps.
  assert float(m1["joint_phase"]) == 0.0 and "ssl_loss" not in m0
  assert float(l0) == float(l1)
  jax.tree.map(np.testing.assert_array_equal, g0, g1)
  # Float64: preference view Z = E0 + sum_l normalize(A_r^l E0), E0 = 0.5 V (QRec's /2);
  # L_rec = -sum log(sigmoid(<z_u, z_i> - <z_u, z_j>) + 1e-7) + lambda (|E_U|^2 + |E_I|^2) / 2.
  g = {k: np.asarray(v) for k, v in state["graph"].items()}
  num_users = params["user_embedding"].shape[0]
  e0 = 0.5 * np.concatenate([params["user_embedding"], params["item_embedding"]]).astype(
      np.float64)
  x, z = e0, e0.copy()
  for _ in range(config.sept.layers):
    nxt = np.zeros_like(x)
    np.add.at(nxt, g["rows"], g["weights"][:, None] * x[g["cols"]])
    x = nxt
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    z += np.where(norm > 0, x / np.where(norm > 0, norm, 1), 0)
  csr = state["train_items"]
  steps = sept.graph.search_steps(int(np.diff(np.asarray(csr["indptr"])).max()))
  user, item = (np.asarray(views[0][k]) for k in ("user", "item"))
  neg = np.asarray(sept.graph.sample_negatives(
      rng, jnp.asarray(user), csr["indptr"], csr["indices"],
      num_items=params["item_embedding"].shape[0], num=1, tries=4, steps=steps))[:, 0]
  zu, zi, zj = z[user], z[num_users + item], z[num_users + neg]
  diff = np.sum(zu * zi, 1) - np.sum(zu * zj, 1)
  want = -np.sum(np.log(1 / (1 + np.exp(-diff)) + 1e-7)) + 0.01 * 0.5 * np.sum(e0 ** 2)
  np.testing.assert_allclose(float(l0), want, rtol=1e-5)
  # Its gradient is plain BPR's: a jnp rewrite of the same formula, differentiated.
  def reference(p):
    e = 0.5 * jnp.concatenate([p["user_embedding"], p["item_embedding"]])
    x, total = e, e
    for _ in range(config.sept.layers):
      x = jax.ops.segment_sum(g["weights"][:, None] * x[g["cols"]], g["rows"],
                              num_segments=e.shape[0])
      total = total + x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    d = (jnp.sum(total[user] * total[num_users + item], 1)
         - jnp.sum(total[user] * total[num_users + neg], 1))
    return -jnp.sum(jnp.log(jax.nn.sigmoid(d) + 1e-7)) + 0.01 * 0.5 * jnp.sum(e ** 2)
  g_ref = jax.grad(reference)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g0, g_ref)


def test_warmup_switches_at_a_third_of_training():
  assert sept.warmup_steps(120 * 5, 5) == 40 * 5  # QRec's LastFM: 120 epochs, 40 warm-up.
  assert sept.warmup_steps(100, 10) == 30 and sept.warmup_steps(7, 10) == 2
  assert sept.warmup_steps(100, 10, 0.0) == 0
  _, method, params, state, views = setup("sept", total_steps=90, steps_per_epoch=10,
                                          sept__warmup_fraction=1 / 3)
  loss = jax.jit(method.loss)
  rng = jax.random.key(0)
  before, (_, m_before, _) = loss(params, _at_step(state, 29), views, rng)
  after, (_, m_after, _) = loss(params, _at_step(state, 30), views, rng)
  assert float(m_before["joint_phase"]) == 0.0 and float(m_before["ssl_loss"]) == 0.0
  assert float(before) == float(m_before["rec_loss"])
  assert float(m_after["joint_phase"]) == 1.0 and float(m_after["ssl_loss"]) > 0
  np.testing.assert_allclose(float(after), float(m_after["rec_loss"])
                             + 0.005 * float(m_after["ssl_loss"]), rtol=1e-6)
  # ``update`` after train step s readies step s + 1.
  assert int(jax.jit(method.update)(params, state, jnp.asarray(29))["sept"]["step"]) == 30
  # The joint phase's first update (number 30) starts a fresh Adam, as the official second
  # optimiser: its update there equals a new Adam's first update on the same gradient.
  tx = method.optimizer(optax.adam(0.1))
  w = {"w": jnp.ones(2)}
  opt = tx.init(w)
  for i in range(31):
    u, opt = tx.update({"w": jnp.asarray([1.0, -1.0]) * (1 + i % 3)}, opt, w)
  fresh, _ = optax.adam(0.1).update({"w": jnp.asarray([1.0, -1.0]) * (1 + 30 % 3)},
                                    optax.adam(0.1).init(w), w)
  np.testing.assert_allclose(u["w"], fresh["w"], rtol=1e-6)
  assert setup("sept")[1].optimizer is None  # runlocal: no warm-up, nothing to restart.


def test_joint_graph_is_redrawn_per_epoch_only():
  _, method, params, state, views = setup("sept")  # runlocal: no warm-up, 10 steps per epoch.
  loss = jax.jit(method.loss)
  rng = jax.random.key(0)
  ssl = [float(loss(params, _at_step(state, s), views, rng)[1][1]["ssl_loss"])
         for s in (10, 19, 20)]
  assert ssl[0] == ssl[1] != ssl[2]


def test_reset_at_step_restarts_adam():
  tx = sept.reset_at_step(optax.adam(0.1), 2)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  grads = [{"w": jnp.asarray([1.0, -2.0, 0.5]) * (i + 1)} for i in range(4)]
  out = []
  for g in grads:
    u, state = tx.update(g, state, params)
    out.append(u)
  fresh = optax.adam(0.1)
  u_fresh, _ = fresh.update(grads[2], fresh.init(params), params)
  np.testing.assert_allclose(out[2]["w"], u_fresh["w"], rtol=1e-6)
  base = optax.adam(0.1)
  s = base.init(params)
  for g in grads[:3]:
    u_base, s = base.update(g, s, params)
  assert not np.allclose(u_base["w"], out[2]["w"])


def test_bad_settings_are_one_line_errors():
  with pytest.raises(ConfigError, match=r"sept.beta=-1.0 must be a number >= 0"):
    build("sept", sept__beta=-1.0)
  with pytest.raises(ConfigError, match=r"sept.drop_rate=1.0 must be a number in \[0, 1\)"):
    build("sept", sept__drop_rate=1.0)
  with pytest.raises(ConfigError, match=r"sept.positives=0 must be an integer >= 1"):
    build("sept", sept__positives=0)
  with pytest.raises(ConfigError, match=r"sept.social_mode='both'"):
    build("sept", sept__social_mode="both")
  with pytest.raises(ConfigError) as e:  # Data without a social graph.
    build("sept", input__data__name="ml-latest-small")
  assert "set input.data.social_path" in str(e.value) and "\n" not in str(e.value)


def test_batch_users_is_a_fixed_size_unique():
  rng = np.random.default_rng(0)
  user = rng.integers(0, 9, size=20).astype(np.int32)
  ids, valid = jax.jit(sept.batch_users, static_argnums=1)(jnp.asarray(user), 12)
  ids, valid = np.asarray(ids), np.asarray(valid)
  assert ids.shape == (12,)  # min(B = 20, U = 12).
  np.testing.assert_array_equal(ids[valid], np.unique(user))
  assert valid.sum() == len(np.unique(user)) and not valid[len(np.unique(user)):].any()
  ids, valid = sept.batch_users(jnp.asarray([3, 3, 1]), 12)  # B < U: size B.
  np.testing.assert_array_equal(np.asarray(ids)[np.asarray(valid)], [1, 3])
