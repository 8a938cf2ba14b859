"""SimGCL: the noise's norm and sign, the (noisy) propagation and the method's loss recomputed in
float64 NumPy from the paper's equations, the cl_weight = 0 loss against LightGCN's, one-line
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, setup

from ssljax.errors import ConfigError
from ssljax.models import graph


def _infonce_np(z1, z2, tau):
  """Float64 InfoNCE: mean_n -log(exp(cos(z1_n, z2_n)/tau) / sum_m exp(cos(z1_n, z2_m)/tau))."""
  a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
  b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
  logits = a @ b.T / tau
  top = logits.max(1, keepdims=True)
  lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
  return float(np.mean(lse - np.diag(logits)))


def _propagate_np(e0, g, layers, *, include_ego, key=None, eps=0.0):
  """Float64 (noisy) LightGCN: x <- A_hat x (sparse, np.add.at), then, with a key, x <- x +
  eps sign(x) u / ||u||, u ~ U(0, 1) drawn with fold_in(key, k) at layer k; mean of layers
  0..K (include_ego) or 1..K."""
  x = e0
  total = e0.copy() if include_ego else np.zeros_like(e0)
  for k in range(1, layers + 1):
    nxt = np.zeros_like(x)
    np.add.at(nxt, g["rows"], g["weights"][:, None] * x[g["cols"]])
    x = nxt
    if key is not None:
      u = np.asarray(jax.random.uniform(jax.random.fold_in(key, k), x.shape), np.float64)
      x = x + eps * np.sign(x) * u / np.linalg.norm(u, axis=1, keepdims=True)
    total += x
  return total / (layers + int(include_ego))


def test_noise_has_norm_eps_and_the_sign_of_the_embedding():
  rng = np.random.default_rng(0)
  e = rng.normal(size=(50, 16)).astype(np.float32)
  e[3, 5] = 0.0  # A zero coordinate gets no noise.
  for eps in (0.1, 0.9):
    out = np.asarray(jax.jit(lambda k, x, eps=eps: graph.perturb_embeddings(k, x, eps=eps))(
        jax.random.key(1), jnp.asarray(e)))
    delta = out.astype(np.float64) - e
    norms = np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), eps, rtol=1e-5)
    assert norms[3] < eps
    assert delta[3, 5] == 0.0
    nz = e != 0
    np.testing.assert_array_equal(np.sign(delta[nz]), np.sign(e[nz]))


def test_perturbed_lightgcn_clean_and_noisy_tables_are_the_formula():
  _, _, params, state, _ = setup("simgcl")
  g = {k: np.asarray(v) for k, v in state["graph"].items()}
  e0 = np.concatenate([params["user_embedding"], params["item_embedding"]]).astype(np.float64)
  num_users = params["user_embedding"].shape[0]
  variables = {"params": params, "graph": state["graph"]}
  key = jax.random.key(5)
  for include_ego in (True, False):
    net = graph.PerturbedLightGCN(num_users=num_users, num_items=e0.shape[0] - num_users,
                                  dim=e0.shape[1], layers=2, num_edges=len(g["rows"]),
                                  include_ego=include_ego)
    u, i, ego_u, _ = net.apply(variables, method=graph.PerturbedLightGCN.tables)
    want = _propagate_np(e0, g, 2, include_ego=include_ego)
    np.testing.assert_allclose(np.concatenate([u, i]), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(ego_u), np.asarray(params["user_embedding"]))
    u, i, _, _ = jax.jit(lambda v, k, n=net: n.apply(v, k, eps=0.1,
                                                     method=graph.PerturbedLightGCN.tables))(
                                                         variables, key)
    want = _propagate_np(e0, g, 2, include_ego=include_ego, key=key, eps=0.1)
    np.testing.assert_allclose(np.concatenate([u, i]), want, rtol=1e-5, atol=1e-6)
  # include_ego=True without noise is LightGCN exactly (same operations).
  lgcn = graph.LightGCN(num_users=num_users, num_items=e0.shape[0] - num_users, dim=e0.shape[1],
                        layers=2, num_edges=len(g["rows"]))
  a = lgcn.apply(variables, method=graph.LightGCN.tables)
  net = graph.PerturbedLightGCN(num_users=num_users, num_items=e0.shape[0] - num_users,
                                dim=e0.shape[1], layers=2, num_edges=len(g["rows"]))
  b = net.apply(variables, method=graph.PerturbedLightGCN.tables)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cl_weight_zero_with_layer0_is_lightgcn():
  _, lgcn, *_ = setup("lightgcn")
  _, method, params, state, views = setup("simgcl", simgcl__cl_weight=0.0,
                                          simgcl__include_ego=True)
  rng = jax.random.key(3)
  loss, _ = jax.jit(method.loss)(params, state, views, rng)
  want, _ = jax.jit(lgcn.loss)(params, state, views, rng)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)


def test_loss_is_bpr_without_layer0_plus_infonce_of_two_noisy_views():
  config, method, params, state, views = setup("simgcl")
  assert not config.simgcl.include_ego
  layers, eps, lam = config.simgcl.layers, config.simgcl.eps, config.simgcl.cl_weight
  rng = jax.random.key(3)
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, rng)
  g = {k: np.asarray(v) for k, v in state["graph"].items()}
  num_users = params["user_embedding"].shape[0]
  e0 = np.concatenate([params["user_embedding"], params["item_embedding"]]).astype(np.float64)
  clean = _propagate_np(e0, g, layers, include_ego=False)
  csr = state["train_items"]
  steps = graph.search_steps(int(np.diff(np.asarray(csr["indptr"])).max()))
  user, item = (np.asarray(views[0][k]) for k in ("user", "item"))
  neg = np.asarray(graph.sample_negatives(
      rng, jnp.asarray(user), csr["indptr"], csr["indices"], num_items=e0.shape[0] - num_users,
      num=1, tries=4, steps=steps))[:, 0]
  eu, ei, ej = clean[user], clean[num_users + item], clean[num_users + neg]
  x = np.sum(eu * ei, 1) - np.sum(eu * ej, 1)
  bpr = np.mean(np.log1p(np.exp(-x)))
  reg = 0.5 * (np.sum(e0[user] ** 2) + np.sum(e0[num_users + item] ** 2)
               + np.sum(e0[num_users + neg] ** 2)) / len(user)
  # The two views: noise keys fold_in(fold_in(rng, 1), v), v = 0, 1; anchors and negatives are
  # the batch's distinct users (items).
  key = jax.random.fold_in(rng, 1)
  v1, v2 = (_propagate_np(e0, g, layers, include_ego=False, key=jax.random.fold_in(key, v),
                          eps=eps) for v in range(2))
  users = np.unique(user)
  items = num_users + np.unique(item)
  cl_user = _infonce_np(v1[users], v2[users], config.simgcl.temperature)
  cl_item = _infonce_np(v1[items], v2[items], config.simgcl.temperature)
  np.testing.assert_allclose(float(metrics["bpr_loss"]), bpr, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["cl_user"]), cl_user, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["cl_item"]), cl_item, rtol=1e-4)
  want = bpr + config.bpr.reg_weight * reg + lam * (cl_user + cl_item)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_bad_settings_name_the_key():
  for key, value, match in [("simgcl__temperature", 0.0, "simgcl.temperature=0.0"),
                            ("simgcl__temperature", -0.2, "simgcl.temperature=-0.2"),
                            ("simgcl__eps", -0.1, "simgcl.eps=-0.1"),
                            ("simgcl__cl_weight", -1.0, "simgcl.cl_weight=-1.0"),
                            ("simgcl__layers", 0, "simgcl.layers=0")]:
    with pytest.raises(ConfigError, match=match) as info:
      build("simgcl", **{key: value})
    assert "\n" not in str(info.value)
