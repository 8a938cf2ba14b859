"""LightGCN: the propagation against the dense formula on a small graph, the method's loss against
BPR on the propagated tables, and one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, setup

from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.models import graph


def _small_graph(seed=0, users=6, items=9):
  rng = np.random.default_rng(seed)
  r = rng.random((users, items)) < 0.35
  r[:, 8] = False  # An item nobody trained on: degree 0, its embedding never moves.
  r[0, 0] = True
  user, item = np.nonzero(r)
  data = interactions.Interactions(
      name="toy", num_users=users, num_items=items,
      pairs={"train": (user.astype(np.int32), item.astype(np.int32)),
             "valid": (np.zeros(0, np.int32),) * 2, "test": (np.zeros(0, np.int32),) * 2},
      user_ids=np.arange(users).astype(str), item_ids=np.arange(items).astype(str))
  return r, data


def _dense_lightgcn(r, e0, layers):
  """Float64: A = [[0, R], [R^T, 0]], A_hat = D^-1/2 A D^-1/2 (0 rows for degree 0),
  E^(k+1) = A_hat E^(k), E = mean of E^(0..K) (LightGCN eqs. 7-8)."""
  u, i = r.shape
  a = np.block([[np.zeros((u, u)), r], [r.T, np.zeros((i, i))]]).astype(np.float64)
  d = a.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
  a_hat = inv[:, None] * a * inv[None, :]
  x, total = e0, e0.copy()
  for _ in range(layers):
    x = a_hat @ x
    total += x
  return total / (layers + 1)


@pytest.mark.parametrize("layers", [1, 3])
def test_propagation_is_the_dense_formula(layers):
  r, data = _small_graph()
  adj = data.normalized_adjacency()
  net = graph.LightGCN(num_users=6, num_items=9, dim=4, layers=layers,
                       num_edges=len(adj["rows"]))
  example = {"user": jnp.zeros((2,), jnp.int32), "item": jnp.zeros((2,), jnp.int32)}
  params = net.init(jax.random.key(0), example)["params"]
  variables = {"params": params, "graph": {k: jnp.asarray(v) for k, v in adj.items()}}
  users, items, ego_u, ego_i = jax.jit(
      lambda v: net.apply(v, method=graph.LightGCN.tables))(variables)
  e0 = np.concatenate([np.asarray(params["user_embedding"]),
                       np.asarray(params["item_embedding"])]).astype(np.float64)
  want = _dense_lightgcn(r, e0, layers)
  np.testing.assert_allclose(np.concatenate([users, items]), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(ego_i), np.asarray(params["item_embedding"]))
  # The untrained-on item: the layer mean of its own embedding and K zero layers.
  np.testing.assert_allclose(np.asarray(items[8]), e0[6 + 8] / (layers + 1), rtol=1e-6)
  # The backbone is concat(user, item) of a batch.
  batch = {"user": jnp.asarray([0, 5]), "item": jnp.asarray([8, 1])}
  out = net.apply(variables, batch)
  np.testing.assert_allclose(np.asarray(out)[:, 4:], want[[6 + 8, 6 + 1]], rtol=1e-5, atol=1e-6)


def test_loss_is_bpr_on_the_propagated_tables():
  config, method, params, state, views = setup("lightgcn", bpr__reg_weight=0.1)
  rng = jax.random.key(3)
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, rng)
  g = {k: np.asarray(v) for k, v in state["graph"].items()}
  num_users, num_items = params["user_embedding"].shape[0], params["item_embedding"].shape[0]
  e0 = np.concatenate([params["user_embedding"], params["item_embedding"]]).astype(np.float64)
  x, total = e0, e0.copy()
  for _ in range(config.lightgcn.layers):  # Sparse A_hat x in float64 (np.add.at).
    nxt = np.zeros_like(x)
    np.add.at(nxt, g["rows"], g["weights"][:, None] * x[g["cols"]])
    x = nxt
    total += x
  final = total / (config.lightgcn.layers + 1)
  csr = state["train_items"]
  steps = graph.search_steps(int(np.diff(np.asarray(csr["indptr"])).max()))
  user, item = (np.asarray(views[0][k]) for k in ("user", "item"))
  neg = np.asarray(graph.sample_negatives(rng, jnp.asarray(user), csr["indptr"], csr["indices"],
                                          num_items=num_items, num=1, tries=4, steps=steps))[:, 0]
  eu, ei, ej = final[user], final[num_users + item], final[num_users + neg]
  x = np.sum(eu * ei, 1) - np.sum(eu * ej, 1)
  # The L2 penalty reads the layer-0 rows (eq. 15), not the propagated ones.
  reg = 0.5 * (np.sum(e0[user] ** 2) + np.sum(e0[num_users + item] ** 2)
               + np.sum(e0[num_users + neg] ** 2)) / len(user)
  np.testing.assert_allclose(float(metrics["bpr_loss"]), np.mean(np.log1p(np.exp(-x))),
                             rtol=1e-5)
  np.testing.assert_allclose(float(loss), np.mean(np.log1p(np.exp(-x))) + 0.1 * reg, rtol=1e-5)


def test_bad_settings_name_the_key():
  with pytest.raises(ConfigError, match="lightgcn.layers=0"):
    build("lightgcn", lightgcn__layers=0)
  with pytest.raises(ConfigError, match="train_split='valid'"):
    build("lightgcn", input__data__train_split="valid")
