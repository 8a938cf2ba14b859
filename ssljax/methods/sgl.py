"""SGL (Wu, Wang, Feng, He, Chen, Lian, Xie, SIGIR 2021): self-supervised graph learning.

LightGCN (``ssljax.methods.lightgcn``) trained with BPR on the full training graph, plus an
auxiliary contrastive task between two randomly augmented versions of the graph. Each training
step draws two edge dropouts ``s'(G)``, ``s''(G)`` (SGL-ED: every interaction kept with
probability ``1 - rho``, ``sgl.drop_rate`` = rho; :func:`ssljax.models.graph.drop_edges`, both
directions of an interaction together, the kept graph re-normalised ``D'^-1/2 A' D'^-1/2`` on
device), propagates the same tables over each with the same LightGCN (K layers, layer mean with
layer 0, as the official code), and asks every node of the batch to recognise its other view:

  ``L = L_BPR + lambda1 (L_ssl^user + L_ssl^item) + lambda2 ||E^(0)||^2``

``L_ssl^user = mean over the batch's distinct users u of -log(exp(cos(z'_u, z''_u) / tau) /
sum over the batch's distinct users v of exp(cos(z'_u, z''_v) / tau))``
(:func:`ssljax.losses.node_infonce_loss`), and the same over the batch's distinct positive
items. ``lambda1`` is ``sgl.ssl_weight``, ``tau`` ``sgl.temperature``, ``lambda2``
``bpr.reg_weight`` (on the batch's layer-0 rows, as LightGCN). The BPR branch and evaluation use
the un-dropped graph.
``experiments/sgl.py`` sets ``lambda1`` = 0.02, not the paper's 0.1 (measured there: 0.1 holds the
ranking near its initialisation for the first ~400 steps of a short run).

Deviations, stated:

* The paper samples the two subgraphs once per epoch; here every step draws its own pair (as
  SSLRec's SGL, whose ``EdgeDrop`` runs in every ``cal_loss``). No per-epoch state is needed and
  the result is the same augmentation distribution.
* The paper's ``L_ssl`` sums over all users (its official TF code offers both the full-table and
  the in-batch denominators); here anchors and negatives are the batch's *distinct* users
  (items), as SELFRec's SGL and SimGCL (``tf.unique`` of the batch), so a user repeated in the
  batch is not its own negative. Both terms are batch means, as BPR's, so ``lambda1`` keeps the
  paper's ratio to the BPR term (whose official code sums both over the batch).
* Only edge dropout (SGL-ED, the variant the paper recommends); node dropout and random walk
  are not implemented.

Config keys read (``experiments/sgl.py``): ``sgl.layers``, ``sgl.drop_rate``,
``sgl.ssl_weight``, ``sgl.temperature`` and those of BPR-MF (``encoder.*``, ``bpr.*``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common, bpr
from ssljax.models import graph


def settings(config) -> dict:
  """``sgl.*`` checked: ``{"layers", "keep_rate", "ssl_weight", "temperature"}``.

  Raises:
    ConfigError: one line naming the bad key.
  """
  cfg = config.sgl
  layers = cfg.layers
  if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
    raise ConfigError(f"sgl.layers={layers!r} must be an integer >= 1 (the paper uses 3)")
  rho = cfg.drop_rate
  if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0 <= rho < 1:
    raise ConfigError(f"sgl.drop_rate={rho!r} must be a number in [0, 1): the share of edges "
                      "each augmented graph drops (the paper's rho = 0.1)")
  return {"layers": layers, "keep_rate": 1.0 - float(rho),
          "ssl_weight": _common.check_nonnegative(cfg.ssl_weight, "sgl.ssl_weight"),
          "temperature": _common.check_positive(cfg.temperature, "sgl.temperature")}


def ssl_loss(net, variables, method_state, batch, key, *, keep_rate: float, temperature: float,
             num_nodes: int):
  """``(L_ssl^user, L_ssl^item)`` of a batch: InfoNCE between two edge-dropped propagations.

  Args:
    net: the LightGCN encoder; ``variables`` its ``{"params", "graph"}``.
    method_state: holds ``sgl_edge_ids`` (int32 [2E], :func:`graph.undirected_edge_ids`).
    batch: ``{"user", "item"}`` int32 [B].
    key: PRNG key; ``split(key)`` draws the two graphs.
    keep_rate: 1 - rho; temperature: tau; num_nodes: U + I.

  Returns:
    Two float32 scalars.
  """
  g = variables["graph"]
  views = []
  for k in jax.random.split(key):
    weights = graph.drop_edges(k, g["rows"], g["cols"], keep_rate=keep_rate, num_nodes=num_nodes,
                               edge_ids=method_state["sgl_edge_ids"])
    dropped = {"params": variables["params"], "graph": {**g, "weights": weights}}
    views.append(net.apply(dropped, method=graph.LightGCN.tables)[:2])
  return batch_node_infonce(views, batch, temperature=temperature)


def batch_node_infonce(views, batch, *, temperature: float) -> tuple[jax.Array, jax.Array]:
  """InfoNCE between two views' embeddings of the batch's distinct users, and of its distinct
  items (:func:`ssljax.losses.node_infonce_loss`; SGL's and SimGCL's contrastive terms).

  Args:
    views: ``((users [U, d], items [I, d]), (users, items))`` of the two views.
    batch: ``{"user", "item"}`` int32 [B].
    temperature: tau.

  Returns:
    ``(user term, item term)``, float32 scalars.
  """
  (u1, i1), (u2, i2) = views
  user, user_ok = graph.unique_nodes(batch["user"])
  item, item_ok = graph.unique_nodes(batch["item"])
  return (losses.node_infonce_loss(u1[user], u2[user], temperature=temperature, valid_n=user_ok),
          losses.node_infonce_loss(i1[item], i2[item], temperature=temperature, valid_n=item_ok))


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds SGL-ED from an experiment config and the interactions' description ``info``."""
  del total_steps, steps_per_epoch
  s = settings(config)
  adjacency = bpr.training_data(config, info, "sgl").normalized_adjacency()
  num_nodes = int(info.cardinalities[0]) + int(info.cardinalities[1])
  edge_ids = graph.undirected_edge_ids(adjacency["rows"], adjacency["cols"], num_nodes)

  def extra_loss(net, variables, method_state, batch, key):
    ssl_user, ssl_item = ssl_loss(net, variables, method_state, batch, key,
                                  keep_rate=s["keep_rate"], temperature=s["temperature"],
                                  num_nodes=num_nodes)
    return (s["ssl_weight"] * (ssl_user + ssl_item),
            {"ssl_user": ssl_user, "ssl_item": ssl_item})

  method = bpr.make_pairwise(config, info=info, name="sgl", layers=s["layers"],
                             extra_loss=extra_loss)
  base_init = method.init

  def init(rng, example_view):
    params, state = base_init(rng, example_view)
    return params, {**state, "sgl_edge_ids": jnp.asarray(edge_ids)}

  return method._replace(init=init)
