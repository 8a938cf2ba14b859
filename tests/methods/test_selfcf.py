"""SelfCF: the loss against its formula, each output perturbation (embedding dropout, edge pruning,
historical embedding) against the paper's definition, the method's loss and ranking score against
float64 NumPy on its own tables, stop-gradient, and one-line errors.

Every reference is float64 NumPy written here from the paper's / official code's equations:
LightGCN ``E = mean_k Â^k E^(0)`` (sparse ``Â x`` by ``np.add.at``), ``h(v) = v W + b``,
``D(p, z) = -mean cos(p, z)``, ``L = 1/2 D(h(e_u), ẽ_i) + 1/2 D(h(e_i), ẽ_u) + lambda/2 (sum
||e_u||^2 + sum ||e_i||^2)``, ``s(u, i) = h(e_u).e_i + e_u.h(e_i)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import build, config_of, setup

from ssljax import losses, methods
from ssljax.errors import ConfigError
from ssljax.methods import selfcf
from ssljax.models import graph


def _cos(a, b):
  return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _reference_loss(p_u, p_i, t_u, t_i, e_u, e_i, reg_weight):
  """Float64: 1/2 D(p_u, t_i) + 1/2 D(p_i, t_u) + lambda * 1/2 (sum e_u^2 + sum e_i^2)."""
  align = -0.5 * np.mean(_cos(p_u, t_i)) - 0.5 * np.mean(_cos(p_i, t_u))
  return align + reg_weight * 0.5 * (np.sum(e_u ** 2) + np.sum(e_i ** 2))


def _sparse_mm(g, x):
  """Float64 ``Â x`` from the non-zeros in ``g``."""
  out = np.zeros_like(x)
  np.add.at(out, np.asarray(g["rows"]), np.asarray(g["weights"], np.float64)[:, None]
            * x[np.asarray(g["cols"])])
  return out


def _lightgcn(params, g, layers):
  """Float64 final embeddings [U + I, d]: the mean of E^(0..K), E^(k+1) = Â E^(k)."""
  x = np.concatenate([params["net"]["user_embedding"],
                      params["net"]["item_embedding"]]).astype(np.float64)
  total = x.copy()
  for _ in range(layers):
    x = _sparse_mm(g, x)
    total += x
  return total / (layers + 1)


def _predictor(params, x):
  p = params["predictor"]
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


# ----------------------------------------------------------------------------------- the loss


def test_loss_matches_the_formula():
  rng = np.random.default_rng(0)
  p_u, p_i, t_u, t_i, e_u, e_i = rng.normal(size=(6, 32, 8))
  want = _reference_loss(p_u, p_i, t_u, t_i, e_u, e_i, 1e-3)
  args = [jnp.asarray(a, jnp.float32) for a in (p_u, p_i, t_u, t_i, e_u, e_i)]
  np.testing.assert_allclose(float(losses.selfcf_loss(*args, reg_weight=1e-3)), want, rtol=1e-5)
  jitted = jax.jit(lambda *a: losses.selfcf_loss(*a, reg_weight=1e-3))
  np.testing.assert_allclose(float(jitted(*args)), want, rtol=1e-5)
  # The cross pairing: swapping the targets changes the loss (user predicts the *item* target).
  swapped = _reference_loss(p_u, p_i, t_i, t_u, e_u, e_i, 1e-3)
  assert abs(swapped - want) > 1e-3
  # R is a sum over the batch, not a mean: doubling the batch doubles it.
  r = float(losses.selfcf_l2_sum(args[4], args[5]))
  r2 = float(losses.selfcf_l2_sum(jnp.concatenate([args[4]] * 2), jnp.concatenate([args[5]] * 2)))
  np.testing.assert_allclose(r2, 2 * r, rtol=1e-6)


def test_aligned_predictions_give_minus_one():
  # Oracle: predictions pointing along their (cross-paired) targets give D = -1 exactly, so
  # L = -1 + lambda R; scaling a target does not change the cosine.
  rng = np.random.default_rng(1)
  e_u, e_i = (jnp.asarray(a, jnp.float32) for a in rng.normal(size=(2, 16, 8)))
  got = losses.selfcf_loss(e_u, e_i, 3.0 * e_i, 0.5 * e_u, e_u, e_i, reg_weight=0.01)
  want = -1.0 + 0.01 * 0.5 * (np.sum(np.asarray(e_u, np.float64) ** 2)
                              + np.sum(np.asarray(e_i, np.float64) ** 2))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(losses.selfcf_alignment(e_u, e_i, e_i, e_u)), -1.0, rtol=1e-6)


def test_no_gradient_reaches_the_targets():
  rng = np.random.default_rng(2)
  p_u, p_i, t_u, t_i = (jnp.asarray(a, jnp.float32) for a in rng.normal(size=(4, 8, 4)))
  g = jax.grad(lambda t: losses.selfcf_alignment(p_u, p_i, t[0], t[1]))((t_u, t_i))
  for leaf in g:
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)


# ------------------------------------------------------------------------------ perturbations


def test_embedding_dropout_is_inverted_dropout():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(400, 64)), jnp.float32)
  key = jax.random.key(0)
  np.testing.assert_array_equal(np.asarray(selfcf.embedding_dropout(key, x, rate=0.0)),
                                np.asarray(x))
  out = np.asarray(selfcf.embedding_dropout(key, x, rate=0.5))
  kept = out != 0
  # Kept entries are x / (1 - p); about a share p is dropped.
  np.testing.assert_allclose(out[kept], np.asarray(x)[kept] / 0.5, rtol=1e-6)
  assert abs(1.0 - kept.mean() - 0.5) < 0.01
  # Unbiased: the mean over many masks approaches x.
  many = jax.vmap(lambda k: selfcf.embedding_dropout(k, x[:4], rate=0.3))(
      jax.random.split(key, 4000))
  np.testing.assert_allclose(np.asarray(many).mean(0), np.asarray(x[:4]), atol=0.1)


def _graph_of_state(name="selfcf", **overrides):
  _, method, params, state = build(name, **overrides)
  return method, params, state, {k: np.asarray(v) for k, v in state["graph"].items()}


def test_adjacency_is_symmetric_normalised_with_empty_diagonal_blocks():
  _, params, state, g = _graph_of_state()
  users = params["net"]["user_embedding"].shape[0]
  # Oracle: Â symmetric, zero user-user and item-item blocks, entries 1 / sqrt(d_r d_c).
  assert np.all((g["rows"] < users) != (g["cols"] < users))
  degree = np.bincount(g["rows"], minlength=users + params["net"]["item_embedding"].shape[0])
  np.testing.assert_allclose(g["weights"], 1.0 / np.sqrt(degree[g["rows"]] * degree[g["cols"]]),
                             rtol=1e-6)
  forward = set(zip(g["rows"].tolist(), g["cols"].tolist(), strict=True))
  assert forward == set(zip(g["cols"].tolist(), g["rows"].tolist(), strict=True))


def test_edge_pruning_keeps_the_stated_fraction_and_is_unbiased():
  _, _, _, g = _graph_of_state()
  n = int(max(g["rows"].max(), g["cols"].max())) + 1
  x = np.random.default_rng(4).normal(size=(n, 3))
  rows, cols, w = (jnp.asarray(g[k]) for k in ("rows", "cols", "weights"))
  exact = _sparse_mm(g, x)
  # p = 0: one plain propagation of the output, Â E_out.
  got = selfcf.edge_pruned_target(jax.random.key(0), jnp.asarray(x, jnp.float32), rows, cols, w,
                                  rate=0.0)
  np.testing.assert_allclose(np.asarray(got), exact, rtol=1e-4, atol=1e-6)
  # p = 0.1: about 90% of the non-zeros kept, each scaled by 1 / 0.9.
  pruned = np.asarray(selfcf.drop_edges_rescaled(jax.random.key(1), w, 0.1))
  kept = pruned != 0
  assert abs(kept.mean() - 0.9) < 0.01, kept.mean()
  np.testing.assert_allclose(pruned[kept], g["weights"][kept] / 0.9, rtol=1e-6)
  # Unbiased: the mean of Â_p E_out over many masks approaches Â E_out.
  small = jnp.asarray(x[:, :1], jnp.float32)
  mean = jax.jit(lambda ks: jax.vmap(lambda k: selfcf.edge_pruned_target(
      k, small, rows, cols, w, rate=0.1))(ks).mean(0))(jax.random.split(jax.random.key(2), 400))
  err = np.abs(np.asarray(mean)[:, 0] - exact[:, 0])
  assert err.mean() < 0.03 * np.abs(exact[:, 0]).mean(), (err.mean(), np.abs(exact).mean())


def test_historical_embedding_mixes_then_overwrites():
  rng = np.random.default_rng(5)
  memory = rng.normal(size=(10, 4))
  ids = np.asarray([2, 7, 2, 0])  # Id 2 twice: its last occurrence (position 2) is written.
  current = rng.normal(size=(4, 4))
  target, new = selfcf.historical_target(jnp.asarray(memory, jnp.float32), jnp.asarray(ids),
                                         jnp.asarray(current, jnp.float32), momentum=0.1)
  np.testing.assert_allclose(np.asarray(target), 0.1 * memory[ids] + 0.9 * current, rtol=1e-5,
                             atol=1e-6)
  want = memory.copy()
  want[[7, 2, 0]] = current[[1, 2, 3]]
  np.testing.assert_allclose(np.asarray(new), want, rtol=1e-6)  # Other rows unchanged.
  # m = 0: the target is the current embedding.
  target0, _ = selfcf.historical_target(jnp.asarray(memory, jnp.float32), jnp.asarray(ids),
                                        jnp.asarray(current, jnp.float32), momentum=0.0)
  np.testing.assert_allclose(np.asarray(target0), current, rtol=1e-6)


# --------------------------------------------------------------------------- the method's loss


def _method_reference(perturbation, **settings):
  """The method's loss at a setting with no randomness, against float64 NumPy."""
  overrides = dict(selfcf__perturbation=perturbation, selfcf__online_edge_drop="none",
                   selfcf__reg_weight=0.01, **{f"selfcf__{k}": v for k, v in settings.items()})
  config, method, params, state, views = setup("selfcf", **overrides)
  loss, (new_state, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(3))
  users = params["net"]["user_embedding"].shape[0]
  final = _lightgcn(params, state["graph"], config.selfcf.layers)
  user, item = (np.asarray(views[0][k]) for k in ("user", "item"))
  e_u, e_i = final[user], final[users + item]
  return loss, new_state, metrics, rep, dict(
      params=params, state=state, final=final, user=user, item=item, e_u=e_u, e_i=e_i,
      p_u=_predictor(params, e_u), p_i=_predictor(params, e_i), users=users)


def test_method_loss_with_dropout_zero_is_the_formula_on_the_online_output():
  loss, _, metrics, rep, r = _method_reference("ed", dropout=0.0)
  want = _reference_loss(r["p_u"], r["p_i"], r["e_u"], r["e_i"], r["e_u"], r["e_i"], 0.01)
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["selfcf_l2_sum"]),
                             0.5 * (np.sum(r["e_u"] ** 2) + np.sum(r["e_i"] ** 2)), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(rep), np.concatenate([r["e_u"], r["e_i"]], 1),
                             rtol=1e-4, atol=1e-6)


def test_method_loss_with_edge_pruning_zero_propagates_the_output_once():
  loss, _, _, _, r = _method_reference("ep", edge_drop=0.0)
  target = _sparse_mm(r["state"]["graph"], r["final"])
  t_u, t_i = target[r["user"]], target[r["users"] + r["item"]]
  want = _reference_loss(r["p_u"], r["p_i"], t_u, t_i, r["e_u"], r["e_i"], 0.01)
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)


def test_method_loss_with_history_reads_and_writes_the_memory():
  loss, new_state, _, _, r = _method_reference("he", momentum=0.3)
  hist = {k: np.asarray(v, np.float64) for k, v in r["state"]["history"].items()}
  t_u = 0.3 * hist["user"][r["user"]] + 0.7 * r["e_u"]
  t_i = 0.3 * hist["item"][r["item"]] + 0.7 * r["e_i"]
  want = _reference_loss(r["p_u"], r["p_i"], t_u, t_i, r["e_u"], r["e_i"], 0.01)
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)
  # After the step the batch's rows hold the online embeddings; the other rows are unchanged.
  new_user = np.asarray(new_state["history"]["user"])
  np.testing.assert_allclose(new_user[r["user"]], r["e_u"], rtol=1e-4, atol=1e-6)
  others = np.setdiff1d(np.arange(len(new_user)), r["user"])
  np.testing.assert_array_equal(new_user[others], np.asarray(r["state"]["history"]["user"])[others])
  new_item = np.asarray(new_state["history"]["item"])
  np.testing.assert_allclose(new_item[r["item"]], r["e_i"], rtol=1e-4, atol=1e-6)


def test_gradient_flows_only_through_the_predictions():
  # Oracle: the method's gradient equals that of the same loss with the targets replaced by
  # constant copies (computed outside the differentiated function).
  config, method, params, state, views = setup("selfcf", selfcf__dropout=0.0,
                                               selfcf__online_edge_drop="none")
  user, item = views[0]["user"], views[0]["item"]
  g = state["graph"]
  net = graph.LightGCN(num_users=params["net"]["user_embedding"].shape[0],
                       num_items=params["net"]["item_embedding"].shape[0],
                       dim=config.encoder.dim, layers=config.selfcf.layers,
                       num_edges=g["rows"].shape[0])

  def embeddings(p):
    users, items, _, _ = net.apply({"params": p["net"], "graph": g}, method=graph.LightGCN.tables)
    return users[user], items[item]

  t_u, t_i = embeddings(params)  # Constants: no gradient can flow through them.

  def with_constant_targets(p):
    e_u, e_i = embeddings(p)
    h = lambda x: x @ p["predictor"]["kernel"] + p["predictor"]["bias"]  # noqa: E731
    return losses.selfcf_loss(h(e_u), h(e_i), t_u, t_i, e_u, e_i, reg_weight=0.0)

  want = jax.grad(with_constant_targets)(params)
  got = jax.grad(lambda p: method.loss(p, state, views, jax.random.key(0))[0])(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got, want)


def test_online_edge_dropout_changes_the_forward_with_the_key():
  _, method, params, state, views = setup("selfcf", selfcf__dropout=0.0)
  loss = jax.jit(method.loss)
  a = float(loss(params, state, views, jax.random.key(0))[0])
  b = float(loss(params, state, views, jax.random.key(1))[0])
  assert a != b  # "uniform": each step drops edges at a fresh rate.
  _, method, params, state, views = setup("selfcf", selfcf__dropout=0.0,
                                          selfcf__online_edge_drop="none")
  loss = jax.jit(method.loss)
  assert (float(loss(params, state, views, jax.random.key(0))[0])
          == float(loss(params, state, views, jax.random.key(1))[0]))


@pytest.mark.parametrize("perturbation", ["ep", "he"])
def test_sharded_loss_and_history_equal_single_device(perturbation):
  # The contract test covers the default ("ed"); edge pruning and the history's scatter (ids
  # repeat within a batch) must give the same loss, gradients and memory on 8 devices.
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  _, method, params, state, views = setup("selfcf", selfcf__perturbation=perturbation)
  # Ids repeated across the 8 shards (user 3 on shards 0, 3 and 7; item 5 on 1, 2 and 7).
  user = np.asarray(views[0]["user"]).copy()
  item = np.asarray(views[0]["item"]).copy()
  user[[0, 7, 15]], item[[2, 5, 14]] = 3, 5
  views = [{"user": jnp.asarray(user), "item": jnp.asarray(item)}]
  fn = jax.jit(jax.value_and_grad(lambda p, s, v: method.loss(p, s, v, jax.random.key(4)),
                                  has_aux=True))
  with jax.default_device(jax.devices()[0]):
    (loss1, (state1, _, _)), grads1 = fn(params, state, views)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = [jax.device_put(v, NamedSharding(mesh, PartitionSpec("data"))) for v in views]
  replicated = jax.device_put((params, state), NamedSharding(mesh, PartitionSpec()))
  (loss8, (state8, _, _)), grads8 = fn(*replicated, sharded)
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=2e-5, atol=1e-6)
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5 * scale),
               grads8, grads1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), state8, state1)


# ----------------------------------------------------------------------------- the ranking score


@pytest.mark.parametrize("perturbation", ["ed", "he"])
def test_represent_scores_are_the_official_score(perturbation):
  config, method, params, state, views = setup("selfcf", selfcf__perturbation=perturbation)
  out = jax.jit(method.represent)(params, state, views[0])
  users = params["net"]["user_embedding"].shape[0]
  final = _lightgcn(params, state["graph"], config.selfcf.layers)
  e_u = final[np.asarray(views[0]["user"])]
  e_i = final[users + np.asarray(views[0]["item"])]
  h_u, h_i = _predictor(params, e_u), _predictor(params, e_i)
  # Every user against every item of the batch: s(u, i) = h(e_u).e_i + e_u.h(e_i).
  want = h_u @ e_i.T + e_u @ h_i.T
  got = np.asarray(out["user"], np.float64) @ np.asarray(out["item"], np.float64).T
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["representation"]), np.concatenate([e_u, e_i], 1),
                             rtol=1e-4, atol=1e-6)


def test_tables_are_xavier_uniform():
  _, _, params, _ = build("selfcf")
  for table in params["net"].values():
    rows, d = table.shape
    bound = np.sqrt(6.0 / (rows + d))
    t = np.asarray(table)
    assert np.abs(t).max() <= bound and np.abs(t).max() > 0.9 * bound
    np.testing.assert_allclose(t.std(), bound / np.sqrt(3.0), rtol=0.05)


# ---------------------------------------------------------------------------------------- errors


def test_bad_settings_name_the_key():
  with pytest.raises(ConfigError, match="selfcf.perturbation='xx'"):
    build("selfcf", selfcf__perturbation="xx")
  with pytest.raises(ConfigError, match="selfcf.layers=0"):
    build("selfcf", selfcf__layers=0)
  with pytest.raises(ConfigError, match="selfcf.dropout=1.0"):
    build("selfcf", selfcf__dropout=1.0)
  with pytest.raises(ConfigError, match="selfcf.edge_drop=-0.1"):
    build("selfcf", selfcf__edge_drop=-0.1)
  with pytest.raises(ConfigError, match="selfcf.momentum=1.5"):
    build("selfcf", selfcf__momentum=1.5)
  with pytest.raises(ConfigError, match="selfcf.reg_weight=-1"):
    build("selfcf", selfcf__reg_weight=-1.0)
  with pytest.raises(ConfigError, match="selfcf.online_edge_drop='always'"):
    build("selfcf", selfcf__online_edge_drop="always")
  with pytest.raises(ConfigError, match="encoder.dim=0"):
    build("selfcf", encoder__dim=0)
  with pytest.raises(ConfigError, match="perturbation='xx'"):
    config_of("selfcf", "perturbation=xx")
  with pytest.raises(ConfigError, match="train_split='valid'"):
    build("selfcf", input__data__train_split="valid")
  # Each message is one line.
  try:
    build("selfcf", selfcf__perturbation="xx")
  except ConfigError as e:
    assert "\n" not in str(e)


def test_released_variants_set_their_hyperparameters():
  for arg, layers, reg in (("perturbation=ed", 2, 0.0), ("perturbation=ep", 1, 1e-5),
                           ("perturbation=he", 4, 1e-5)):
    c = config_of("selfcf", arg)
    assert (c.selfcf.perturbation, c.selfcf.layers, c.selfcf.reg_weight) == (arg[-2:], layers,
                                                                              reg)
  assert methods.get("selfcf") is selfcf
