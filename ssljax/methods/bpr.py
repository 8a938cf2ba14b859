"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained to rank observed items first.

Each user ``u`` and item ``i`` has an embedding (``e_u``, ``e_i`` in R^d); the score is
``s(u, i) = <e_u, e_i>``. For every training interaction (u, i) of the batch the loss draws
``bpr.num_negatives`` items j uniformly among those u has not interacted with in training (on
device, :func:`ssljax.models.graph.sample_negatives`) and minimises
``mean -log sigmoid(s(u, i) - s(u, j))`` (:func:`ssljax.losses.bpr_loss`), plus
``bpr.reg_weight`` times the L2 of the batch's embeddings (:func:`ssljax.losses.embedding_l2`).
Evaluation ranks all items for every user by ``s`` (``ssljax.evals.ranking``).

The same pairwise recipe trains LightGCN (``ssljax.methods.lightgcn``): its encoder propagates
the tables over the user-item graph first; :func:`make_pairwise` builds both.

Data-set-level arrays live in ``method_state`` (never HLO constants): ``train_items`` (each
user's training items as CSR, read by the negative sampler) and, for graph encoders, ``graph``
(the normalised adjacency, the encoder's Linen collection). Gradients never reach them.

Config keys read (``experiments/bpr.py``): ``encoder.dim``, ``encoder.init_std``,
``bpr.num_negatives``, ``bpr.reg_weight``, ``bpr.negative_tries``, and ``input.data`` (the
interactions, read once to build the state).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import graph


def training_data(config, info, method: str) -> interactions.Interactions:
  """The run's interactions (read once, cached), checked against the data description ``info``.

  Raises:
    ConfigError: the data are not interactions, or training reads another split than 'train'.
  """
  if info is None or info.modality != "interactions":
    spec = sorted(info.element_spec) if info is not None else []
    name = info.name if info is not None else config.input.data.name
    raise ConfigError(f"method={method!r} trains on user-item interactions; "
                      f"input.data.name={name!r} yields {spec} (use ml-latest-small, "
                      "interactions or inter)")
  if str(config.input.data.train_split) != "train":
    raise ConfigError(f"input.data.train_split={config.input.data.train_split!r}: method="
                      f"{method!r} trains on the 'train' interactions (the graph and the "
                      "negatives are built from them); keep train_split='train'")
  data = interactions.load(config.input.data)
  if (data.num_users, data.num_items) != tuple(info.cardinalities):
    raise ConfigError(f"input.data: {data.num_users} users and {data.num_items} items but the "
                      f"data description says {tuple(info.cardinalities)}; rebuild the run")
  return data


def make_pairwise(config, *, info, name: str, layers: int, encoder=graph.LightGCN,
                  extra_loss=None) -> Method:
  """A BPR-trained recommender over ``LightGCN(layers)`` (``layers=0``: matrix factorisation).

  Args:
    config: the experiment config (``encoder.*``, ``bpr.*``, ``input.data``).
    info: the data set's description (``cardinalities`` = (U, I)).
    name: the method's name.
    layers: propagation layers K of the encoder.
    encoder: the encoder's class, :class:`ssljax.models.graph.LightGCN` or a subclass (or a
      ``functools.partial`` of one) taking LightGCN's constructor arguments; its ``tables``
      give the BPR branch's embeddings (SimGCL's encoder leaves layer 0 out of the mean).
    extra_loss: ``None`` (BPR-MF, LightGCN) or ``(net, variables, method_state, batch, key) ->
      (scalar, metrics)``, a term added to the loss (SGL's and SimGCL's contrastive losses):
      ``net`` the encoder, ``variables`` its ``{"params", "graph"}``, ``batch`` the
      ``{"user", "item"}`` int32 [B] view, ``key`` a PRNG key other than the negatives'.
  """
  data = training_data(config, info, name)
  enc, cfg = config.encoder, config.bpr
  dim = int(enc.dim)
  if dim < 1:
    raise ConfigError(f"encoder.dim={dim} must be >= 1 (embedding width)")
  init_std = _common.check_positive(enc.get("init_std", 0.1), "encoder.init_std")
  num_neg = int(cfg.get("num_negatives", 1))
  tries = int(cfg.get("negative_tries", 4))
  if num_neg < 1 or tries < 1:
    raise ConfigError(f"bpr.num_negatives={num_neg} and bpr.negative_tries={tries} must be >= 1")
  reg_weight = _common.check_nonnegative(cfg.get("reg_weight", 0.0), "bpr.reg_weight")
  adjacency = data.normalized_adjacency() if layers > 0 else None
  net = encoder(num_users=data.num_users, num_items=data.num_items, dim=dim,
                layers=layers, num_edges=len(adjacency["rows"]) if layers else 0,
                init_std=init_std)
  indptr, indices = data.csr("train")
  steps = graph.search_steps(int(np.diff(indptr).max(initial=0)))
  num_items = data.num_items
  views = (interactions.InteractionPairs(),)

  def init(rng, example_view):
    params, collections = _common.init_variables(net, rng, example_view)
    state = {"train_items": {"indptr": jnp.asarray(indptr), "indices": jnp.asarray(indices)}}
    if layers > 0:
      state["graph"] = {k: jnp.asarray(adjacency[k]) for k in graph.GRAPH_KEYS}
    del collections  # The placeholder graph: replaced by the data set's.
    return params, state

  def variables(params, method_state):
    out = {"params": params}
    if "graph" in method_state:
      out["graph"] = jax.lax.stop_gradient(method_state["graph"])
    return out

  def loss(params, method_state, views, rng):
    batch = views[0]
    user, item = batch["user"], batch["item"]
    items_csr = method_state["train_items"]
    neg = graph.sample_negatives(rng, user, items_csr["indptr"], items_csr["indices"],
                                 num_items=num_items, num=num_neg, tries=tries, steps=steps)
    users, items, ego_u, ego_i = net.apply(variables(params, method_state),
                                           method=type(net).tables)
    u_bd, p_bd, n_bnd = users[user], items[item], items[neg]
    pos_b = jnp.sum(u_bd * p_bd, axis=-1)
    neg_bn = jnp.einsum("bd,bnd->bn", u_bd, n_bnd)
    ranking = losses.bpr_loss(pos_b[:, None], neg_bn)
    reg = losses.embedding_l2(ego_u[user], ego_i[item], ego_i[neg].reshape(-1, dim))
    value = ranking + reg_weight * reg
    metrics = {"bpr_loss": ranking, "embedding_l2": reg,
               "pairwise_accuracy": jnp.mean((pos_b[:, None] > neg_bn).astype(jnp.float32))}
    if extra_loss is not None:
      term, extra_metrics = extra_loss(net, variables(params, method_state), method_state, batch,
                                       jax.random.fold_in(rng, 1))
      value = value + term
      metrics.update(extra_metrics)
    return value, (method_state, metrics, jnp.concatenate([u_bd, p_bd], axis=-1))

  def represent(params, method_state, batch):
    out = net.apply(variables(params, method_state), batch, method=graph.LightGCN.pairs)
    both = jnp.concatenate([out["user"], out["item"]], axis=-1)
    return _common.as_float32({"representation": both, "embedding": both, **out})

  return Method(name=name, views=views, init=init, loss=loss, update=identity_update,
                represent=represent, backbone=Backbone(module=net, variables=variables))


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds BPR-MF from an experiment config and the interactions' description ``info``."""
  del total_steps, steps_per_epoch
  return make_pairwise(config, info=info, name="bpr", layers=0)
