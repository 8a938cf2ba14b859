"""SelfCF (Zhou, Sun, Liu, Zhang, Miao, ACM TORS 2023; arXiv 2107.03019): CF without negatives.

A single online network, LightGCN over the user-item graph (``ssljax.models.graph.LightGCN``,
xavier-uniform tables as the official code), gives the final embeddings ``e_u``, ``e_i`` of a
batch of observed (user, item) pairs. There is no second network: the target is a *perturbed copy
of the online output* under stop-gradient, ``ẽ = Perturb(e)``, and a linear predictor
``h(v) = W v + b`` (d x d) is trained to match the target of the *other* side of each pair:

  ``L = 1/2 D(h(e_u), ẽ_i) + 1/2 D(h(e_i), ẽ_u) + lambda R``,
  ``D(p, z) = -mean_b cos(p_b, sg(z_b))``, ``R = 1/2 (sum_b ||e_u||^2 + sum_b ||e_i||^2)``

(:func:`ssljax.losses.selfcf_loss`; ``R`` is a *sum* over the batch, as the official ``L2Loss``,
so ``lambda`` is tied to the batch size). No negatives are sampled. ``selfcf.perturbation``
chooses the perturbation (the paper's three output augmentations):

* ``"ed"`` embedding dropout (the default; SELFCF_ed): ``ẽ = Dropout_p(e)``, inverted dropout
  (kept entries times ``1 / (1 - p)``), ``p = selfcf.dropout``; :func:`embedding_dropout`.
* ``"ep"`` edge pruning (SELFCF_ep): drop each non-zero of ``Â = D^-1/2 A D^-1/2`` with
  probability ``p = selfcf.edge_drop`` (kept ones times ``1 / (1 - p)``) and propagate the online
  output of *all* nodes once more, ``ẽ = Â_p E_out``; :func:`edge_pruned_target`.
* ``"he"`` historical embedding (SELFCF_he): ``ẽ = m E_hist[id] + (1 - m) e``, then
  ``E_hist[id] <- e`` (the current online output; duplicates of an id in a batch: the last
  occurrence wins); ``m = selfcf.momentum``, ``E_hist`` initialised N(0, 1) and kept in
  ``method_state["history"]``; :func:`historical_target`.

As in the official encoder (BUIR's LightGCN), every *training* forward of the online network also
drops the edges of ``Â`` with a rate drawn uniformly from [0, 1) per step (kept edges times
``1 / (1 - rate)``): ``selfcf.online_edge_drop="uniform"`` (the default, faithful) or ``"none"``.
Evaluation uses the full ``Â``.

The ranking score mixes predicted and raw embeddings (official ``full_sort_predict``):
``s(u, i) = h(e_u) . e_i + e_u . h(e_i)``. ``represent`` returns ``user = [h(e_u), e_u]`` and
``item = [e_i, h(e_i)]`` (2d each) so that the evaluator's ``<user, item>`` is exactly ``s``;
its ``representation`` is the backbone's ``[e_u, e_i]``.

Data-set-level arrays live in ``method_state`` (never HLO constants): ``graph`` (the normalised
adjacency, the encoder's Linen collection) and, for ``"he"``, ``history`` (``user`` [U, d],
``item`` [I, d]); gradients never reach them. ``update`` is the identity: the history is rewritten
inside the loss. The BPR-MF backbone of the paper (with its ``linear_weight`` penalty on the
predictor) is not implemented here.

Config keys read (``experiments/selfcf.py``): ``encoder.dim``, ``selfcf.perturbation``,
``selfcf.layers``, ``selfcf.dropout``, ``selfcf.edge_drop``, ``selfcf.momentum``,
``selfcf.reg_weight``, ``selfcf.online_edge_drop``, and ``input.data`` (the interactions).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.methods.bpr import training_data
from ssljax.models import graph

PERTURBATIONS = ("ed", "ep", "he")
ONLINE_EDGE_DROP = ("uniform", "none")


# ----------------------------------------------------------------------------- perturbations


def drop_edges_rescaled(rng: jax.Array, weights_e: jax.Array, rate) -> jax.Array:
  """Edge dropout on the non-zeros of a sparse matrix, kept values rescaled (no renormalisation).

  Each entry is kept with probability ``1 - rate`` and then divided by ``1 - rate``, so
  ``E[drop_edges_rescaled(w)] = w``; a dropped entry becomes 0, which :func:`graph.propagate`
  treats as an absent edge. This is the official ``sparse_dropout`` (SelfCF's edge pruning and
  BUIR's online edge dropout), not SGL's re-normalised subgraph
  (:func:`ssljax.models.graph.drop_edges`).

  Args:
    rng: PRNG key.
    weights_e: float [nnz] values of ``Â``.
    rate: drop probability in [0, 1) (a Python float or a traced scalar).

  Returns:
    float [nnz], ``weights_e * keep / (1 - rate)``.
  """
  keep = jax.random.uniform(rng, weights_e.shape) >= rate
  return jnp.where(keep, weights_e / (1.0 - rate), 0.0).astype(weights_e.dtype)


def embedding_dropout(rng: jax.Array, x_bd: jax.Array, *, rate: float) -> jax.Array:
  """SELFCF_ed's target: inverted dropout ``mask * x / (1 - rate)``, always in training mode.

  Args:
    rng: PRNG key.
    x_bd: [B, d] online embeddings (the caller stops their gradient).
    rate: drop probability in [0, 1); 0 is the identity.

  Returns:
    [B, d].
  """
  if rate == 0.0:
    return x_bd
  keep = jax.random.bernoulli(rng, 1.0 - rate, x_bd.shape)
  return jnp.where(keep, x_bd / (1.0 - rate), 0.0)


def edge_pruned_target(rng: jax.Array, out_nd: jax.Array, rows: jax.Array, cols: jax.Array,
                       weights: jax.Array, *, rate: float) -> jax.Array:
  """SELFCF_ep's target for all nodes: one propagation of the online output over a pruned ``Â``.

  ``ẽ = Â_p E_out`` where ``Â_p`` is :func:`drop_edges_rescaled` of ``Â`` at ``rate`` (not a
  re-run of the encoder: the layer-mean output itself is propagated once).

  Args:
    rng: PRNG key.
    out_nd: [N, d] online output of the N = U + I nodes (users then items).
    rows, cols, weights: ``Â``'s non-zeros (:func:`ssljax.models.graph.propagate`).
    rate: drop probability in [0, 1); 0 gives ``Â E_out``.

  Returns:
    [N, d].
  """
  pruned = drop_edges_rescaled(rng, weights, rate) if rate > 0.0 else weights
  return graph.propagate(out_nd, rows, cols, pruned, sorted_rows=True)


def historical_target(memory_nd: jax.Array, ids_b: jax.Array, current_bd: jax.Array, *,
                      momentum: float) -> tuple[jax.Array, jax.Array]:
  """SELFCF_he: the target mixes a memory of past outputs with the current one, then overwrites.

  ``ẽ_b = m E_hist[id_b] + (1 - m) e_b`` with the memory as it was before this batch; then
  ``E_hist[id_b] <- e_b``. When an id occurs several times in the batch the last occurrence is
  written (the official in-place assignment's "last write wins"), deterministically: XLA's
  scatter leaves the order of duplicate writes unspecified, so only the last position of each id
  writes and the others are sent out of bounds (dropped).

  Args:
    memory_nd: [N, d] the memory of one node type (users or items).
    ids_b: int [B] rows of the batch.
    current_bd: [B, d] the online outputs of the batch (the caller stops their gradient).
    momentum: m in [0, 1]; 0 makes the target the current embedding.

  Returns:
    ``(target [B, d], new memory [N, d])``.
  """
  target = momentum * memory_nd[ids_b] + (1.0 - momentum) * current_bd
  positions = jnp.arange(ids_b.shape[0], dtype=jnp.int32)
  last = jnp.full((memory_nd.shape[0],), -1, jnp.int32).at[ids_b].max(positions)
  write_to = jnp.where(last[ids_b] == positions, ids_b, memory_nd.shape[0])
  new_memory = memory_nd.at[write_to].set(current_bd.astype(memory_nd.dtype), mode="drop")
  return target, new_memory


# --------------------------------------------------------------------------------- the method


def _torch_linear_init(dim: int):
  """PyTorch ``nn.Linear``'s default: kernel and bias uniform in +-1 / sqrt(fan_in)."""
  bound = 1.0 / dim ** 0.5

  def bias_init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return dict(kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
              bias_init=bias_init)


def _rate(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
    raise ConfigError(f"{key}={value!r} must be a number in [0, 1) (a drop probability)")
  return float(value)


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds SelfCF from an experiment config and the interactions' description ``info``."""
  del total_steps, steps_per_epoch
  data = training_data(config, info, "selfcf")
  cfg = config.selfcf
  dim = int(config.encoder.dim)
  if dim < 1:
    raise ConfigError(f"encoder.dim={dim} must be >= 1 (embedding width)")
  perturbation = cfg.perturbation
  if perturbation not in PERTURBATIONS:
    raise ConfigError(f"selfcf.perturbation={perturbation!r} is unknown; choose 'ed' (embedding "
                      "dropout), 'ep' (edge pruning) or 'he' (historical embedding)")
  layers = cfg.layers
  if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
    raise ConfigError(f"selfcf.layers={layers!r} must be an integer >= 1 (LightGCN layers; the "
                      "released configs use 1-4)")
  online_drop = cfg.online_edge_drop
  if online_drop not in ONLINE_EDGE_DROP:
    raise ConfigError(f"selfcf.online_edge_drop={online_drop!r} is unknown; choose 'uniform' "
                      "(a rate drawn from U[0, 1) per step, the official code) or 'none'")
  dropout = _rate(cfg.dropout, "selfcf.dropout")
  edge_drop = _rate(cfg.edge_drop, "selfcf.edge_drop")
  momentum = _common.check_momentum(cfg.momentum, "selfcf.momentum")
  reg_weight = _common.check_nonnegative(cfg.reg_weight, "selfcf.reg_weight")

  adjacency = data.normalized_adjacency()
  num_users, num_items = data.num_users, data.num_items
  net = graph.LightGCN(num_users=num_users, num_items=num_items, dim=dim, layers=layers,
                       num_edges=len(adjacency["rows"]))
  predictor = nn.Dense(dim, **_torch_linear_init(dim))
  views = (interactions.InteractionPairs(),)

  def init(rng, example_view):
    del example_view  # The tables' shapes come from the data set.
    _, pred_rng, user_rng, item_rng, hist_rng = jax.random.split(rng, 5)
    # The LightGCN's parameters with xavier-uniform tables (the official encoder's), bound
    # sqrt(6 / (rows + d)); its graph collection is the data set's, in the state.
    xavier = nn.initializers.xavier_uniform()
    net_params = {"user_embedding": xavier(user_rng, (num_users, dim)),
                  "item_embedding": xavier(item_rng, (num_items, dim))}
    pred_params = predictor.init(pred_rng, jnp.zeros((1, dim)))["params"]
    state = {"graph": {k: jnp.asarray(adjacency[k]) for k in graph.GRAPH_KEYS}}
    if perturbation == "he":
      u_rng, i_rng = jax.random.split(hist_rng)
      state["history"] = {"user": jax.random.normal(u_rng, (num_users, dim)),
                          "item": jax.random.normal(i_rng, (num_items, dim))}
    return {"net": net_params, "predictor": pred_params}, state

  def variables(params, method_state, weights=None):
    g = dict(jax.lax.stop_gradient(method_state["graph"]))
    if weights is not None:
      g["weights"] = weights
    return {"params": params["net"], "graph": g}

  def predict(params, x):
    return predictor.apply({"params": params["predictor"]}, x)

  def loss(params, method_state, views, rng):
    batch = views[0]
    user, item = batch["user"], batch["item"]
    online_rng, rate_rng, target_rng, item_rng = jax.random.split(rng, 4)
    g = jax.lax.stop_gradient(method_state["graph"])
    weights = None
    if online_drop == "uniform":
      weights = drop_edges_rescaled(online_rng, g["weights"], jax.random.uniform(rate_rng))
    users, items, _, _ = net.apply(variables(params, method_state, weights),
                                   method=graph.LightGCN.tables)
    e_u, e_i = users[user], items[item]
    state = method_state
    if perturbation == "ed":
      t_u = embedding_dropout(target_rng, jax.lax.stop_gradient(e_u), rate=dropout)
      t_i = embedding_dropout(item_rng, jax.lax.stop_gradient(e_i), rate=dropout)
    elif perturbation == "ep":
      out = jax.lax.stop_gradient(jnp.concatenate([users, items], axis=0))
      pruned = edge_pruned_target(target_rng, out, g["rows"], g["cols"], g["weights"],
                                  rate=edge_drop)
      t_u, t_i = pruned[user], pruned[num_users + item]
    else:
      hist = method_state["history"]
      t_u, mem_u = historical_target(hist["user"], user, jax.lax.stop_gradient(e_u),
                                     momentum=momentum)
      t_i, mem_i = historical_target(hist["item"], item, jax.lax.stop_gradient(e_i),
                                     momentum=momentum)
      state = {**method_state, "history": {"user": mem_u, "item": mem_i}}
    p_u, p_i = predict(params, e_u), predict(params, e_i)
    value = losses.selfcf_loss(p_u, p_i, t_u, t_i, e_u, e_i, reg_weight=reg_weight)
    metrics = {"selfcf_alignment": losses.selfcf_alignment(p_u, p_i, t_u, t_i),
               "selfcf_l2_sum": losses.selfcf_l2_sum(e_u, e_i)}
    return value, (state, metrics, jnp.concatenate([e_u, e_i], axis=-1))

  def represent(params, method_state, batch):
    out = net.apply(variables(params, method_state), batch, method=graph.LightGCN.pairs)
    e_u, e_i = out["user"], out["item"]
    h_u, h_i = predict(params, e_u), predict(params, e_i)
    rep = jnp.concatenate([e_u, e_i], axis=-1)
    return _common.as_float32({
        "representation": rep, "embedding": jnp.concatenate([h_u, h_i], axis=-1),
        # <user, item> = h(e_u) . e_i + e_u . h(e_i): the official full_sort_predict.
        "user": jnp.concatenate([h_u, e_u], axis=-1),
        "item": jnp.concatenate([e_i, h_i], axis=-1)})

  return Method(name="selfcf", views=views, init=init, loss=loss, update=identity_update,
                represent=represent, backbone=Backbone(module=net, variables=variables))
