"""SGL: edge dropout against the dense formula of the kept graph, the node InfoNCE against its
formula, the method's loss against BPR + InfoNCE recomputed in float64 NumPy, one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, setup

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.models import graph


def _symmetric_graph(seed=0, users=7, items=10, p=0.4):
  """Non-zeros (rows, cols) of A = [[0, R], [R^T, 0]] sorted by (rows, cols), and R."""
  rng = np.random.default_rng(seed)
  r = rng.random((users, items)) < p
  r[0, 0] = True
  u, i = np.nonzero(r)
  rows = np.concatenate([u, users + i])
  cols = np.concatenate([users + i, u])
  order = np.lexsort((cols, rows))
  return rows[order].astype(np.int32), cols[order].astype(np.int32), r


def _normalised_dense(a):
  """Float64 D^-1/2 A D^-1/2 with D the row sums (0 rows and columns for degree 0)."""
  d = a.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-300)), 0.0)
  return inv[:, None] * a * inv[None, :]


def _infonce_np(z1, z2, tau):
  """Float64 InfoNCE: mean_n -log(exp(cos(z1_n, z2_n)/tau) / sum_m exp(cos(z1_n, z2_m)/tau))."""
  a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
  b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
  logits = a @ b.T / tau
  top = logits.max(1, keepdims=True)
  lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
  return float(np.mean(lse - np.diag(logits)))


def test_node_infonce_is_the_formula_on_the_valid_rows():
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
  valid = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0], bool)
  got = jax.jit(lambda a, b, v: losses.node_infonce_loss(a, b, temperature=0.2, valid_n=v))(
      jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), _infonce_np(z1[valid], z2[valid], 0.2), rtol=1e-5)
  # Without a mask: every row.
  got = losses.node_infonce_loss(jnp.asarray(z1), jnp.asarray(z2), temperature=0.5)
  np.testing.assert_allclose(float(got), _infonce_np(z1, z2, 0.5), rtol=1e-5)
  # Identical rows: every similarity is equal, the loss is log(#valid candidates).
  same = jnp.ones((9, 5))
  np.testing.assert_allclose(
      float(losses.node_infonce_loss(same, same, temperature=0.2, valid_n=jnp.asarray(valid))),
      np.log(valid.sum()), rtol=1e-6)
  np.testing.assert_allclose(float(losses.node_infonce_loss(same, same, temperature=0.2)),
                             np.log(9), rtol=1e-6)
  with pytest.raises(ValueError, match="temperature"):
    losses.node_infonce_loss(same, same, temperature=0.0)


def test_undirected_edge_ids_pair_both_directions():
  rows, cols, _ = _symmetric_graph()
  ids = graph.undirected_edge_ids(rows, cols, 17)
  where = {(r, c): e for e, (r, c) in enumerate(zip(rows, cols, strict=True))}
  for e, (r, c) in enumerate(zip(rows, cols, strict=True)):
    assert ids[e] == ids[where[c, r]] == min(e, where[c, r])
  assert len(np.unique(ids)) == len(rows) // 2
  with pytest.raises(ValueError, match="not symmetric"):
    graph.undirected_edge_ids(np.array([0, 1]), np.array([1, 2]), 3)


def test_drop_edges_keep_one_is_the_normalised_adjacency():
  rows, cols, r = _symmetric_graph()
  n = r.shape[0] + r.shape[1]
  a = np.zeros((n, n))
  a[rows, cols] = 1.0
  want = _normalised_dense(a)[rows, cols]
  ids = jnp.asarray(graph.undirected_edge_ids(rows, cols, n))
  got = graph.drop_edges(jax.random.key(0), jnp.asarray(rows), jnp.asarray(cols), keep_rate=1.0,
                         num_nodes=n, edge_ids=ids)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)  # float32 rounding of 1/sqrt.


@pytest.mark.parametrize("keep_rate", [0.5, 0.8])
def test_dropped_weights_are_the_normalised_kept_graph(keep_rate):
  rows, cols, r = _symmetric_graph(seed=3)
  n = r.shape[0] + r.shape[1]
  ids = jnp.asarray(graph.undirected_edge_ids(rows, cols, n))
  fn = jax.jit(lambda k: graph.drop_edges(k, jnp.asarray(rows), jnp.asarray(cols),
                                          keep_rate=keep_rate, num_nodes=n, edge_ids=ids))
  for seed in range(3):
    w = np.asarray(fn(jax.random.key(seed)))
    kept = w > 0  # A kept edge has both ends of degree >= 1, so a positive weight.
    a = np.zeros((n, n))
    a[rows[kept], cols[kept]] = 1.0
    np.testing.assert_array_equal(a, a.T)  # Both directions kept or dropped together.
    assert 0 < kept.sum() < len(rows)
    np.testing.assert_allclose(w, _normalised_dense(a)[rows, cols], rtol=1e-6)


def test_kept_fraction_is_the_keep_rate():
  rows, cols, r = _symmetric_graph(seed=5, users=60, items=80, p=0.5)  # ~2,400 interactions.
  n = r.shape[0] + r.shape[1]
  ids = jnp.asarray(graph.undirected_edge_ids(rows, cols, n))
  edges = len(rows) // 2
  for keep in (0.9, 0.5):
    w = graph.drop_edges(jax.random.key(7), jnp.asarray(rows), jnp.asarray(cols), keep_rate=keep,
                         num_nodes=n, edge_ids=ids)
    frac = float(np.mean(np.asarray(w) > 0))
    assert abs(frac - keep) < 4 * np.sqrt(keep * (1 - keep) / edges), (keep, frac)


def test_unique_nodes_marks_each_distinct_id_once():
  ids, first = graph.unique_nodes(jnp.asarray([4, 1, 4, 0, 1, 1, 9], jnp.int32))
  np.testing.assert_array_equal(np.asarray(ids)[np.asarray(first)], [0, 1, 4, 9])


def _propagate_np(e0, g, layers, weights=None):
  """Float64 LightGCN: x <- A_hat x (sparse, np.add.at), mean of layers 0..K (eq. 8)."""
  w = g["weights"] if weights is None else weights
  x, total = e0, e0.copy()
  for _ in range(layers):
    nxt = np.zeros_like(x)
    np.add.at(nxt, g["rows"], w[:, None] * x[g["cols"]])
    x = nxt
    total += x
  return total / (layers + 1)


def test_ssl_weight_zero_is_lightgcn_and_ssl_terms_are_infonce_on_dropped_graphs():
  _, lgcn, *_ = setup("lightgcn")
  config, method, params, state, views = setup("sgl", sgl__ssl_weight=0.0)
  rng = jax.random.key(3)
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, rng)
  plain = {k: v for k, v in state.items() if k != "sgl_edge_ids"}
  want, _ = jax.jit(lgcn.loss)(params, plain, views, rng)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)

  # With lambda1 > 0: BPR + reg + lambda1 (ssl_user + ssl_item), and each ssl term is
  # InfoNCE (float64 NumPy) between two float64 propagations over drop_edges' graphs (checked
  # against the dense formula above), drawn with split(fold_in(rng, 1)).
  config, method, params, state, views = setup("sgl")
  lam, keep = config.sgl.ssl_weight, 1.0 - config.sgl.drop_rate
  assert lam > 0
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, rng)
  plain = {k: v for k, v in state.items() if k != "sgl_edge_ids"}
  want, _ = jax.jit(lgcn.loss)(params, plain, views, rng)
  np.testing.assert_allclose(
      float(loss), float(want) + lam * float(metrics["ssl_user"] + metrics["ssl_item"]),
      rtol=1e-5)
  g = {k: np.asarray(v) for k, v in state["graph"].items()}
  num_users = params["user_embedding"].shape[0]
  n = num_users + params["item_embedding"].shape[0]
  e0 = np.concatenate([params["user_embedding"], params["item_embedding"]]).astype(np.float64)
  tables = []
  for k in jax.random.split(jax.random.fold_in(rng, 1)):
    w = graph.drop_edges(k, state["graph"]["rows"], state["graph"]["cols"], keep_rate=keep,
                         num_nodes=n, edge_ids=state["sgl_edge_ids"])
    tables.append(_propagate_np(e0, g, config.sgl.layers, np.asarray(w, np.float64)))
  users = np.unique(np.asarray(views[0]["user"]))
  items = num_users + np.unique(np.asarray(views[0]["item"]))
  np.testing.assert_allclose(float(metrics["ssl_user"]),
                             _infonce_np(tables[0][users], tables[1][users], 0.2), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["ssl_item"]),
                             _infonce_np(tables[0][items], tables[1][items], 0.2), rtol=1e-4)


def test_bad_settings_name_the_key():
  for key, value, match in [("sgl__drop_rate", -0.1, "sgl.drop_rate=-0.1"),
                            ("sgl__drop_rate", 1.0, "sgl.drop_rate=1.0"),
                            ("sgl__temperature", 0.0, "sgl.temperature=0.0"),
                            ("sgl__ssl_weight", -1.0, "sgl.ssl_weight=-1.0"),
                            ("sgl__layers", 0, "sgl.layers=0")]:
    with pytest.raises(ConfigError, match=match) as info:
      build("sgl", **{key: value})
    assert "\n" not in str(info.value)
