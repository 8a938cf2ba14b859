"""SEPT (Yu, Yin, Gao, Xia, Zhang, Hung, KDD 2021): socially-aware self-supervised tri-training.

A LightGCN-style recommender whose user embeddings are also trained by self-supervision built
from a user-user social graph ``S`` (``Interactions.social``). Three encoders share one pair of
base tables ``E_U`` [U, d], ``E_I`` [I, d] (trained variables ``V`` times
``sept.table_scale`` = 0.5, the official code's ``/= 2``; initialised truncated normal, std
``encoder.init_std`` = 0.005) and differ in the graph they propagate over:

* preference view: the user-item graph ``A_r = norm([[0, R], [R^T, 0]])`` (users and items);
* friend view: ``A_f = norm((S S) ⊙ S + I)`` over users: the ties that close a triangle, weighted
  by the number of common friends, plus self-loops;
* sharing view: ``A_s = norm((R R^T) ⊙ S + I)`` over users: the ties between users who share
  items, weighted by the number of shared items, plus self-loops;

with ``norm(M) = D^-1/2 M D^-1/2``, ``D`` the row sums of ``M`` (a zero row stays zero), ``R``
the binary training interactions. A fourth propagation, over the *perturbed joint graph* (the
user-item edges in both directions plus the social edges as stored, each edge set keeping
``floor((1 - rho) n)`` of its ``n`` edges drawn without replacement, ``rho`` =
``sept.drop_rate``, then ``norm``), gives the "unlabeled examples" ``z~``; it is redrawn once per
epoch. Each encoder is ``Z = X^0 + sum_{l=1..L} normalize(X^l)``, ``X^{l+1} = A X^l`` (layer 0 not
normalised, layers >= 1 L2-normalised, summed; paper eqs. 4-6 as the official code).

Losses (sums over the batch, as the official code):

* ``L_rec = -sum_b log(sigmoid(<z^r_u, z^r_i> - <z^r_u, z^r_j>) + 1e-7) + lambda (||E_U||^2 +
  ||E_I||^2) / 2`` (BPR on the preference view, one uniform negative ``j`` outside the user's
  training items; the penalty on the whole tables every step; ``sept.reg_weight`` = lambda).
* Tri-training (paper eqs. 8-10): over the batch's distinct users ``U_b``, each encoder ``v``
  predicts ``P_v[u, w] = softmax_w cos(z^v_u, z~_w)``; the friend encoder's positives are the
  ``K`` (``sept.positives``) users with the highest ``(P_s + P_r) / 2``, the sharing encoder's
  from ``(P_f + P_r) / 2``, the preference encoder's from ``(P_f + P_s) / 2``; then
  ``L_v = -sum_u log(sum_{p in Pos_v(u)} e^{cos(z^v_u, z~_p) / tau} / sum_{w in U_b}
  e^{cos(z^v_u, z~_w) / tau})`` (:func:`ssljax.losses.sept_neighbour_infonce`, tau =
  ``sept.temperature`` = 0.1) and ``L_ssl = L_f + L_s + L_r``.
* ``L = L_rec + beta L_ssl`` (``sept.beta`` = 0.005, the official ``ss_rate``), except during the
  warm-up: the first ``floor(E / 3)`` of the run's E epochs optimise ``L_rec`` only
  (``sept.warmup_fraction`` = 1/3; a run shorter than 3 epochs warms up for a third of its
  steps). Only the preference encoder recommends (``represent``).

Choices the official code makes that the paper does not say, kept as its defaults and exposed:

* ``sept.social_mode``: ``directed`` (default: ``S`` as the file stores it; the official
  "bidirectional" matrix is ``S ⊙ S``, a no-op on a binary ``S``), ``mutual`` (``S ⊙ S^T``, the
  reciprocated ties, what the code meant) or ``symmetric`` (``S`` or ``S^T``). The same ``S``
  enters the views and the joint graph (in ``directed`` mode the joint graph is asymmetric
  before its row-sum normalisation, as the official code).
* ``sept.include_self`` (default True): a user may be among its own pseudo-labels (the official
  code's exclusion of the diagonal is commented out).
* Pseudo-labels and candidates are the distinct users of the batch only (results depend on the
  batch size).

The batch's distinct users under ``jit`` (:func:`batch_users`): a fixed-size unique. The B
user ids are sorted, the first of each run marked, and the marked ones gathered to the front of
``M = min(B, U)`` rows (``jnp.nonzero`` with a static size); the rows past their count are
padding, masked everywhere: never an anchor, a candidate, a positive or part of a softmax. So
every SEPT matrix has the fixed shape [M, M] and the values of the ``|U_b|`` distinct users
(``tf.unique`` in the official code).

Deviations, stated:

* The official code trains the two phases with two separate Adam optimisers (the joint phase's
  moments start at zero). Here the method wraps ``config.optim``'s optimiser with
  :func:`reset_at_step` (``Method.optimizer``): its state restarts from ``init`` at the first
  joint step, which is what a second, fresh Adam does.
* The warm-up switch and the joint graph's epoch are read from a step counter in
  ``method_state`` (``sept.step``, advanced by ``update``); the joint graph's edges are drawn
  from ``fold_in(key(config.seed), epoch)`` on device, so a resumed run draws the same graphs.
* With ``drop_rate = 0`` the official code's "perturbed" graph is the plain user-item graph
  without social edges; here it is the whole joint graph (the formula at rho = 0).
* The official BPR term is ``-log(sigmoid(.))`` in one version and ``-log(sigmoid(.) + 1e-7)`` in
  the spec; the latter is used.

Config keys read (``experiments/sept.py``): ``encoder.dim``, ``encoder.init_std``,
``sept.layers``, ``sept.beta``, ``sept.drop_rate``, ``sept.positives``, ``sept.temperature``,
``sept.reg_weight``, ``sept.social_mode``, ``sept.include_self``, ``sept.warmup_fraction``,
``sept.table_scale``, ``sept.negative_tries``, ``seed`` and ``input.data`` (with a social graph).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax import losses
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, bpr
from ssljax.models import graph

SOCIAL_MODES = ("directed", "mutual", "symmetric")
VIEWS = ("friend", "sharing")
BPR_EPS = 1e-7


# ------------------------------------------------------------------------- settings and views


def settings(config) -> dict:
  """``sept.*`` checked.

  Raises:
    ConfigError: one line naming the bad key.
  """
  cfg = config.sept
  layers = cfg.layers
  if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
    raise ConfigError(f"sept.layers={layers!r} must be an integer >= 1 (the official code: 2)")
  rho = cfg.drop_rate
  if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0 <= rho < 1:
    raise ConfigError(f"sept.drop_rate={rho!r} must be a number in [0, 1): the share of edges "
                      "the perturbed joint graph drops (the official rho = 0.3)")
  k = cfg.positives
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise ConfigError(f"sept.positives={k!r} must be an integer >= 1: the pseudo-labels K per "
                      "user (the official ins_cnt = 10)")
  beta = cfg.beta
  if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta >= 0:
    raise ConfigError(f"sept.beta={beta!r} must be a number >= 0: the weight of the "
                      "self-supervised loss (the official ss_rate = 0.005; 0: LightGCN-style BPR)")
  mode = cfg.social_mode
  if mode not in SOCIAL_MODES:
    raise ConfigError(f"sept.social_mode={mode!r}: choose one of {list(SOCIAL_MODES)}")
  include_self = cfg.include_self
  if not isinstance(include_self, bool):
    raise ConfigError(f"sept.include_self={include_self!r} must be True or False")
  warmup = cfg.warmup_fraction
  if isinstance(warmup, bool) or not isinstance(warmup, int | float) or not 0 <= warmup < 1:
    raise ConfigError(f"sept.warmup_fraction={warmup!r} must be a number in [0, 1): the share "
                      "of the run that optimises L_rec only (the official 1/3)")
  tries = cfg.negative_tries
  if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
    raise ConfigError(f"sept.negative_tries={tries!r} must be an integer >= 1")
  return {"layers": layers, "keep_rate": 1.0 - float(rho), "positives": k, "beta": float(beta),
          "social_mode": mode, "include_self": include_self, "warmup_fraction": float(warmup),
          "negative_tries": tries,
          "temperature": _common.check_positive(cfg.temperature, "sept.temperature"),
          "reg_weight": _common.check_nonnegative(cfg.reg_weight, "sept.reg_weight"),
          "table_scale": _common.check_positive(cfg.table_scale, "sept.table_scale")}


def warmup_steps(total_steps: int, steps_per_epoch: int, fraction: float = 1 / 3) -> int:
  """Steps of the warm-up (``L_rec`` only): ``floor(fraction E)`` whole epochs of the run's
  ``E = floor(total_steps / steps_per_epoch)`` (the official ``iteration > maxIter / 3``), or
  ``floor(fraction total_steps)`` steps when the run is too short for a whole warm-up epoch."""
  epochs = int(total_steps) // int(steps_per_epoch)
  whole = int(np.floor(fraction * epochs + 1e-9)) * int(steps_per_epoch)
  return whole if whole > 0 else int(np.floor(fraction * int(total_steps) + 1e-9))


def social_matrix(data: interactions.Interactions, mode: str):
  """``S`` [U, U] (scipy CSR, binary float64) of the run's social graph under ``mode``.

  Raises:
    ConfigError: the data have no social graph, or it has no edge (under ``mode``).
  """
  import scipy.sparse as sp

  if data.social is None:
    raise ConfigError(f"method='sept' needs a user-user social graph and input.data.name="
                      f"{data.name!r} has none: set input.data.social_path to a file of (user, "
                      "friend) pairs (or use input.data.name='synth-social')")
  src, dst = data.social_matrix(symmetric=mode == "symmetric")
  n = data.num_users
  s = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
  if mode == "mutual":
    s = s.multiply(s.T).tocsr()
  s.eliminate_zeros()
  if s.nnz == 0:
    raise ConfigError(f"input.data.social_path: no social edge is left under sept.social_mode="
                      f"{mode!r}; give a file with ties between the data's users")
  return s


def normalize(m) -> dict[str, np.ndarray]:
  """``D^-1/2 M D^-1/2`` of a sparse square ``M`` (D its row sums, ``inf -> 0``) as
  ``{"rows", "cols" int32, "weights" float32}`` sorted by (row, col)."""
  coo = m.tocoo()
  degree = np.asarray(m.sum(axis=1)).ravel()
  inv = np.zeros_like(degree)
  inv[degree > 0] = degree[degree > 0] ** -0.5
  weights = inv[coo.row] * coo.data * inv[coo.col]
  order = np.lexsort((coo.col, coo.row))
  return {"rows": coo.row[order].astype(np.int32), "cols": coo.col[order].astype(np.int32),
          "weights": weights[order].astype(np.float32)}


def view_adjacencies(data: interactions.Interactions, s) -> dict[str, dict[str, np.ndarray]]:
  """The friend and sharing views' normalised adjacencies (host, scipy; once per data set).

  ``friend``: ``norm((S S) ⊙ S + I)``; ``sharing``: ``norm((R R^T) ⊙ S + I)``; ``R`` [U, I] the
  binary training interactions, ``S`` from :func:`social_matrix` (paper eq. 3 as the official
  ``get_social_related_views``).
  """
  import scipy.sparse as sp

  user, item = data.split("train")
  r = sp.csr_matrix((np.ones(len(user)), (user, item)), shape=(data.num_users, data.num_items))
  eye = sp.identity(data.num_users, format="csr")
  friend = (s @ s).multiply(s) + eye
  sharing = (r @ r.T).multiply(s) + eye
  return {"friend": normalize(sp.csr_matrix(friend)), "sharing": normalize(sp.csr_matrix(sharing))}


def joint_structure(data: interactions.Interactions, s) -> tuple[dict[str, np.ndarray], int, int]:
  """The perturbed joint graph's non-zeros before dropout, nodes users then items.

  Each training interaction (u, i) is two entries ``(u, U + i)`` and ``(U + i, u)`` sharing one
  draw ``e`` (its position in the training split); each social edge ``(a, b)`` of ``S`` is one
  entry with draw ``E_ui + j`` (as stored: directed unless ``S`` is symmetric). Sorted by row.

  Returns:
    ``({"rows", "cols", "draw"} int32 [2 E_ui + E_s], E_ui, E_s)``.
  """
  user, item = data.split("train")
  n_ui = len(user)
  social = s.tocoo()
  n_s = int(social.nnz)
  node_item = item.astype(np.int64) + data.num_users
  rows = np.concatenate([user, node_item, social.row]).astype(np.int64)
  cols = np.concatenate([node_item, user, social.col]).astype(np.int64)
  draw = np.concatenate([np.arange(n_ui), np.arange(n_ui), n_ui + np.arange(n_s)])
  order = np.lexsort((cols, rows))
  return ({"rows": rows[order].astype(np.int32), "cols": cols[order].astype(np.int32),
           "draw": draw[order].astype(np.int32)}, n_ui, n_s)


def drop_joint_edges(key: jax.Array, joint: dict[str, jax.Array], *, num_ui: int, num_social: int,
                     keep_rate: float, num_nodes: int) -> jax.Array:
  """Weights [nnz] of ``norm(kept joint graph)``: ``floor(keep_rate n)`` of each edge set kept,
  drawn without replacement (the official ``random.sample``), dropped edges weight 0, then
  ``w_e = 1 / sqrt(d_row d_col)`` with ``d`` the kept graph's row sums (0 for an empty row)."""
  masks = []
  for k, n in zip(jax.random.split(key), (num_ui, num_social), strict=True):
    kept = int(np.floor(keep_rate * n + 1e-9))
    order = jax.random.permutation(k, n)
    masks.append(jnp.zeros((n,), jnp.float32).at[order[:kept]].set(1.0))
  mask = jnp.concatenate(masks)[joint["draw"]]
  rows, cols = joint["rows"], joint["cols"]
  degree = jax.ops.segment_sum(mask, rows, num_segments=num_nodes, indices_are_sorted=True)
  inv = jnp.where(degree > 0, jax.lax.rsqrt(jnp.maximum(degree, 1.0)), 0.0)
  return mask * inv[rows] * inv[cols]


# ------------------------------------------------------------------------------ the encoders


def propagate_views(x0_nd: jax.Array, rows: jax.Array, cols: jax.Array, weights: jax.Array, *,
                    layers: int) -> jax.Array:
  """``X^0 + sum_{l=1..L} normalize(X^l)``, ``X^{l+1} = A X^l`` (sparse ``A``; layer 0 not
  normalised, later layers L2-normalised per row, summed: the official SEPT encoders).

  Args:
    x0_nd: [N, d] layer 0. rows, cols, weights: the non-zeros of ``A`` [N, N], sorted by row.
    layers: L.

  Returns:
    float32 [N, d].
  """
  x = x0_nd
  total = x0_nd.astype(jnp.float32)
  for _ in range(layers):
    x = graph.propagate(x, rows, cols, weights, sorted_rows=True)
    total = total + losses.l2_normalize(x)
  return total


def _truncated_normal(std: float):
  def init(key, shape, dtype=jnp.float32):  # TF's: a normal cut at 2 std, std the untruncated.
    return (std * jax.random.truncated_normal(key, -2.0, 2.0, shape)).astype(dtype)
  return init


class SEPTEncoder(nn.Module):
  """The shared base tables and the preference-view encoder (what recommends).

  Attributes:
    num_users, num_items: U and I. dim: d. layers: L. num_edges: non-zeros of ``A_r``.
    init_std: truncated-normal std of the variables. table_scale: ``E = table_scale * V``.

  Variables: ``params`` ``user_embedding`` [U, d] and ``item_embedding`` [I, d] (``V``);
  collection ``graph`` (``rows``, ``cols``, ``weights`` [num_edges]) holding ``A_r``.
  """

  num_users: int
  num_items: int
  dim: int
  layers: int
  num_edges: int
  init_std: float = 0.005
  table_scale: float = 0.5

  def setup(self):
    init = _truncated_normal(self.init_std)
    self.user_embedding = self.param("user_embedding", init, (self.num_users, self.dim))
    self.item_embedding = self.param("item_embedding", init, (self.num_items, self.dim))
    shapes = {"rows": jnp.int32, "cols": jnp.int32, "weights": jnp.float32}
    self.graph = {k: self.variable("graph", k, jnp.zeros, (self.num_edges,), dtype)
                  for k, dtype in shapes.items()}

  def base(self) -> tuple[jax.Array, jax.Array]:
    """``(E_U [U, d], E_I [I, d])``: the scaled base tables every view starts from."""
    return self.table_scale * self.user_embedding, self.table_scale * self.item_embedding

  def tables(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(z^r users [U, d], z^r items [I, d], E_U, E_I)``: the preference view."""
    ego_u, ego_i = self.base()
    rows, cols, weights = (self.graph[k].value for k in graph.GRAPH_KEYS)
    z = propagate_views(jnp.concatenate([ego_u, ego_i]), rows, cols, weights, layers=self.layers)
    return z[:self.num_users], z[self.num_users:], ego_u, ego_i

  def pairs(self, batch) -> dict[str, jax.Array]:
    users, items, _, _ = self.tables()
    return {"user": users[batch["user"]], "item": items[batch["item"]]}

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    """The backbone: ``concat(z^r_u, z^r_i)`` [B, 2d] of a batch ``{"user", "item"}``."""
    del train
    out = self.pairs(batch)
    return jnp.concatenate([out["user"], out["item"]], axis=-1)


# ------------------------------------------------------------------------------ the losses


def rec_loss(z_u_bd, z_i_bd, z_j_bd, ego_u, ego_i, *, reg_weight: float):
  """``(L_rec, bpr sum, table L2)``: ``-sum_b log(sigmoid(<z_u, z_i> - <z_u, z_j>) + 1e-7) +
  lambda (||E_U||^2 + ||E_I||^2) / 2`` (the official ``rec_loss``)."""
  diff_b = jnp.sum(z_u_bd * z_i_bd, -1) - jnp.sum(z_u_bd * z_j_bd, -1)
  bpr_sum = -jnp.sum(jnp.log(jax.nn.sigmoid(diff_b) + BPR_EPS))
  l2 = 0.5 * (jnp.sum(jnp.square(ego_u)) + jnp.sum(jnp.square(ego_i)))
  return bpr_sum + reg_weight * l2, bpr_sum, l2


def tri_training_loss(z_f_nd, z_s_nd, z_r_nd, aug_nd, *, valid_n, positives: int,
                      temperature: float, include_self: bool = True):
  """``(L_ssl, {"ssl_friend", "ssl_sharing", "ssl_preference"})`` over the batch's users.

  Args:
    z_f_nd, z_s_nd, z_r_nd: [N, d] the three encoders' embeddings of the batch's sorted users.
    aug_nd: [N, d] the same users on the perturbed joint graph.
    valid_n: bool [N] the distinct users (:func:`ssljax.models.graph.unique_nodes`).
    positives: K. temperature: tau. include_self: see :func:`ssljax.losses.sept_pseudo_labels`.
  """
  probs = {v: losses.sept_label_probs(z, aug_nd, valid_n=valid_n)
           for v, z in (("f", z_f_nd), ("s", z_s_nd), ("r", z_r_nd))}
  terms = {}
  for v, z, (a, b) in (("friend", z_f_nd, "sr"), ("sharing", z_s_nd, "fr"),
                       ("preference", z_r_nd, "fs")):
    index, ok = losses.sept_pseudo_labels(probs[a], probs[b], k=positives, valid_n=valid_n,
                                          include_self=include_self)
    terms[f"ssl_{v}"] = losses.sept_neighbour_infonce(
        z, aug_nd, index, valid_n=valid_n, positive_ok_nk=ok, temperature=temperature)
  return sum(terms.values()), terms


def batch_users(user_b: jax.Array, num_users: int) -> tuple[jax.Array, jax.Array]:
  """The distinct users of a batch at a fixed size ``M = min(B, U)``: ``(ids int32 [M], valid
  bool [M])``.

  :func:`ssljax.models.graph.unique_nodes` sorts the ids and marks the first of each run;
  ``jnp.nonzero(..., size=M)`` gathers those first occurrences to the front (a batch cannot
  hold more than ``M`` distinct users), and the rows past their count repeat the first user and
  are marked invalid. The distinct users come out sorted, so the result depends on the batch's
  set of users only, not on its order.
  """
  size = min(int(user_b.shape[0]), int(num_users))
  ids, first = graph.unique_nodes(user_b)
  (position,) = jnp.nonzero(first, size=size, fill_value=0)
  return ids[position], jnp.arange(size) < jnp.sum(first)


def reset_at_step(tx: optax.GradientTransformation, step: int) -> optax.GradientTransformation:
  """``tx`` whose state restarts from ``tx.init`` at update number ``step``: the official SEPT's
  second Adam (fresh moments for the joint phase) for a trainer that lets a method wrap its
  optimiser. The counter is the wrapper's own."""

  def init(params):
    return {"count": jnp.zeros((), jnp.int32), "inner": tx.init(params)}

  def update(updates, state, params=None):
    fresh = jax.tree.map(jnp.zeros_like, state["inner"])  # Adam's init: zero moments and count.
    inner = jax.tree.map(lambda f, s: jnp.where(state["count"] == step, f, s), fresh,
                         state["inner"])
    updates, inner = tx.update(updates, inner, params)
    return updates, {"count": state["count"] + 1, "inner": inner}

  return optax.GradientTransformation(init, update)


# ------------------------------------------------------------------------------ the method


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds SEPT from an experiment config and the interactions' description ``info``."""
  s = settings(config)
  data = bpr.training_data(config, info, "sept")
  dim = int(config.encoder.dim)
  if dim < 1:
    raise ConfigError(f"encoder.dim={dim} must be >= 1 (embedding width)")
  init_std = _common.check_positive(config.encoder.get("init_std", 0.005), "encoder.init_std")
  social = social_matrix(data, s["social_mode"])
  views_adj = view_adjacencies(data, social)
  joint, num_ui, num_social = joint_structure(data, social)
  adjacency = data.normalized_adjacency()
  num_users, num_items = data.num_users, data.num_items
  net = SEPTEncoder(num_users=num_users, num_items=num_items, dim=dim, layers=s["layers"],
                    num_edges=len(adjacency["rows"]), init_std=init_std,
                    table_scale=s["table_scale"])
  indptr, indices = data.csr("train")
  steps = graph.search_steps(int(np.diff(indptr).max(initial=0)))
  warmup = warmup_steps(total_steps, steps_per_epoch, s["warmup_fraction"])
  seed = int(config.get("seed", 0))
  spe = int(steps_per_epoch)

  def init(rng, example_view):
    params, _ = _common.init_variables(net, rng, example_view)  # The placeholder graph dropped.
    state = {"train_items": {"indptr": jnp.asarray(indptr), "indices": jnp.asarray(indices)},
             "graph": {k: jnp.asarray(adjacency[k]) for k in graph.GRAPH_KEYS},
             **{v: {k: jnp.asarray(views_adj[v][k]) for k in graph.GRAPH_KEYS} for v in VIEWS},
             "joint": {k: jnp.asarray(v) for k, v in joint.items()},
             "sept": {"step": jnp.zeros((), jnp.int32)}}
    return params, state

  def variables(params, method_state):
    return {"params": params, "graph": jax.lax.stop_gradient(method_state["graph"])}

  def ssl_loss(method_state, user_b, z_r, ego_u, ego_i):
    """``L_ssl`` and its terms for the batch's users (the joint phase)."""
    graphs = jax.lax.stop_gradient({k: method_state[k] for k in (*VIEWS, "joint")})
    z = {v: propagate_views(ego_u, *(graphs[v][k] for k in graph.GRAPH_KEYS),
                            layers=s["layers"]) for v in VIEWS}
    epoch = method_state["sept"]["step"] // spe
    weights = drop_joint_edges(jax.random.fold_in(jax.random.key(seed), epoch), graphs["joint"],
                               num_ui=num_ui, num_social=num_social, keep_rate=s["keep_rate"],
                               num_nodes=num_users + num_items)
    aug = propagate_views(jnp.concatenate([ego_u, ego_i]), graphs["joint"]["rows"],
                          graphs["joint"]["cols"], weights, layers=s["layers"])[:num_users]
    ids, valid = batch_users(user_b, num_users)
    return tri_training_loss(z["friend"][ids], z["sharing"][ids], z_r[ids], aug[ids],
                             valid_n=valid, positives=s["positives"],
                             temperature=s["temperature"], include_self=s["include_self"])

  def loss(params, method_state, views, rng):
    batch = views[0]
    user, item = batch["user"], batch["item"]
    items_csr = method_state["train_items"]
    neg = graph.sample_negatives(rng, user, items_csr["indptr"], items_csr["indices"],
                                 num_items=num_items, num=1, tries=s["negative_tries"],
                                 steps=steps)[:, 0]
    users, items, ego_u, ego_i = net.apply(variables(params, method_state),
                                           method=SEPTEncoder.tables)
    u_bd, p_bd, n_bd = users[user], items[item], items[neg]
    value, bpr_sum, l2 = rec_loss(u_bd, p_bd, n_bd, ego_u, ego_i, reg_weight=s["reg_weight"])
    metrics = {"rec_loss": value, "bpr_loss": bpr_sum, "embedding_l2": l2,
               "pairwise_accuracy": jnp.mean((jnp.sum(u_bd * p_bd, -1)
                                              > jnp.sum(u_bd * n_bd, -1)).astype(jnp.float32))}
    if s["beta"] > 0:
      joint = method_state["sept"]["step"] >= warmup
      zero = jnp.zeros((), jnp.float32)
      ssl, terms = jax.lax.cond(
          joint, lambda: ssl_loss(method_state, user, users, ego_u, ego_i),
          lambda: (zero, {f"ssl_{v}": zero for v in ("friend", "sharing", "preference")}))
      value = value + s["beta"] * ssl
      metrics.update(terms, ssl_loss=ssl, joint_phase=joint.astype(jnp.float32))
    return value, (method_state, metrics, jnp.concatenate([u_bd, p_bd], axis=-1))

  def update(params, method_state, step):
    del params  # The next loss call is train step ``step + 1``.
    return {**method_state, "sept": {"step": jnp.asarray(step, jnp.int32) + 1}}

  def represent(params, method_state, batch):
    out = net.apply(variables(params, method_state), batch, method=SEPTEncoder.pairs)
    both = jnp.concatenate([out["user"], out["item"]], axis=-1)
    return _common.as_float32({"representation": both, "embedding": both, **out})

  # The joint phase starts its own Adam (fresh moments), as the official two optimisers do.
  restart = (lambda tx: reset_at_step(tx, warmup)) if warmup > 0 else None
  return Method(name="sept", views=(interactions.InteractionPairs(),), init=init, loss=loss,
                update=update, represent=represent,
                backbone=Backbone(module=net, variables=variables), optimizer=restart)
