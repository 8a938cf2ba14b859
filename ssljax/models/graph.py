"""Recommendation encoders over user and item embedding tables, and their graph operations.

:class:`LightGCN` (He et al., SIGIR 2020) propagates the embeddings ``E^(0)`` of the users and
items over the symmetric normalised user-item adjacency ``Â = D^-1/2 A D^-1/2`` (eq. 7,
``E^(k+1) = Â E^(k)``) and represents each node by the mean of its layers (eq. 8, ``alpha_k =
1 / (K + 1)``). With ``layers=0`` it is plain matrix factorisation (BPR-MF's encoder). The
adjacency is its ``2E`` non-zeros (``ssljax.data.interactions.Interactions.normalized_adjacency``),
held in the Linen variable collection ``"graph"`` (so it travels in ``method_state``, never as an
HLO constant) and applied as a gather and a segment sum: no dense N x N matrix.

Device-side helpers for the training examples: :func:`csr_contains` (is item i among user u's
training items, by binary search in a CSR) and :func:`sample_negatives` (uniform negatives that
reject the user's training items).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

GRAPH_KEYS = ("rows", "cols", "weights")


def propagate(x_nd: jax.Array, rows: jax.Array, cols: jax.Array, weights: jax.Array, *,
              sorted_rows: bool = False) -> jax.Array:
  """``Â x`` for the sparse ``Â`` given by its non-zeros.

  Args:
    x_nd: node features [N, D].
    rows, cols: int32 [nnz]: entry ``(rows[e], cols[e])`` of ``Â`` holds ``weights[e]``.
    weights: float32 [nnz].
    sorted_rows: ``rows`` is non-decreasing (lets XLA use a sorted segment sum).

  Returns:
    [N, D]: ``out[r] = sum over e with rows[e] == r of weights[e] * x[cols[e]]``.
  """
  messages = weights[:, None].astype(x_nd.dtype) * x_nd[cols]
  return jax.ops.segment_sum(messages, rows, num_segments=x_nd.shape[0],
                             indices_are_sorted=sorted_rows)


class LightGCN(nn.Module):
  """User and item embedding tables, propagated ``layers`` times over the graph, layer mean.

  Attributes:
    num_users, num_items: table rows U and I.
    dim: embedding width d.
    layers: propagation layers K (0: matrix factorisation, no graph).
    num_edges: non-zeros of ``Â`` (2 x training interactions); the ``graph`` collection's size.
    init_std: the tables' initial normal standard deviation (0.1, the official code's).

  Variables: ``params`` ``user_embedding`` [U, d] and ``item_embedding`` [I, d]; with
  ``layers > 0`` the collection ``graph`` (``rows``, ``cols`` int32, ``weights`` float32
  [num_edges]; nodes are users then items) that the caller fills with the data set's adjacency.
  """

  num_users: int
  num_items: int
  dim: int
  layers: int = 0
  num_edges: int = 0
  init_std: float = 0.1

  def setup(self):
    init = nn.initializers.normal(self.init_std)
    self.user_embedding = self.param("user_embedding", init, (self.num_users, self.dim))
    self.item_embedding = self.param("item_embedding", init, (self.num_items, self.dim))
    if self.layers > 0:
      shapes = {"rows": jnp.int32, "cols": jnp.int32, "weights": jnp.float32}
      self.graph = {k: self.variable("graph", k, jnp.zeros, (self.num_edges,), dtype)
                    for k, dtype in shapes.items()}

  def tables(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(users [U, d], items [I, d], ego users [U, d], ego items [I, d])``: the final (layer
    mean) embeddings and the layer-0 tables (what the L2 penalty reads)."""
    ego_u, ego_i = self.user_embedding, self.item_embedding
    if self.layers == 0:
      return ego_u, ego_i, ego_u, ego_i
    rows, cols, weights = (self.graph[k].value for k in GRAPH_KEYS)
    x = jnp.concatenate([ego_u, ego_i], axis=0)
    total = x
    for _ in range(self.layers):
      x = propagate(x, rows, cols, weights, sorted_rows=True)
      total = total + x
    mean = total / (self.layers + 1)
    return mean[:self.num_users], mean[self.num_users:], ego_u, ego_i

  def pairs(self, batch) -> dict[str, jax.Array]:
    """``{"user": [B, d], "item": [B, d]}``: the final embeddings of a batch of (user, item)."""
    users, items, _, _ = self.tables()
    return {"user": users[batch["user"]], "item": items[batch["item"]]}

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    """The backbone: ``concat(user, item)`` [B, 2d] of a batch ``{"user", "item"}`` int [B]."""
    del train
    out = self.pairs(batch)
    return jnp.concatenate([out["user"], out["item"]], axis=-1)


def search_steps(max_row: int) -> int:
  """Binary-search iterations that find any position in a CSR row of ``max_row`` entries."""
  return int(math.ceil(math.log2(max_row + 1))) + 1


def csr_contains(indptr: jax.Array, indices: jax.Array, user: jax.Array, item: jax.Array, *,
                 steps: int) -> jax.Array:
  """Whether ``item`` is in row ``user`` of a CSR with sorted rows (vectorised binary search).

  Args:
    indptr: int32 [U + 1]; indices: int32 [nnz], each row's items sorted.
    user: int [...]; item: int, broadcastable with ``user``.
    steps: iterations (:func:`search_steps` of the longest row; static).

  Returns:
    bool, the broadcast shape of ``user`` and ``item``.
  """
  user, item = jnp.broadcast_arrays(user, item)
  end = indptr[user + 1]
  lo, hi = indptr[user], end
  last = max(indices.shape[0] - 1, 0)
  for _ in range(steps):  # Invariant: the first position holding a value >= item is in [lo, hi].
    mid = (lo + hi) // 2
    right = indices[jnp.clip(mid, 0, last)] < item
    active = lo < hi
    lo = jnp.where(active & right, mid + 1, lo)
    hi = jnp.where(active & ~right, mid, hi)
  return (lo < end) & (indices[jnp.clip(lo, 0, last)] == item)


def sample_negatives(key: jax.Array, user_b: jax.Array, indptr: jax.Array, indices: jax.Array, *,
                     num_items: int, num: int = 1, tries: int = 4, steps: int) -> jax.Array:
  """Uniform negative items for each user that are not among its training items.

  Draws ``tries`` uniform candidates per negative and keeps the first that is not a training
  item of the user (the last one when all are, probability ``p^tries`` for a user who has
  interacted with a share ``p`` of the catalogue): rejection sampling, as RecBole's uniform
  sampler, with a bounded number of draws so it stays one fixed-shape computation.

  Args:
    key: PRNG key.
    user_b: int32 [B].
    indptr, indices: the training items' CSR (:func:`csr_contains`).
    num_items: catalogue size I.
    num: negatives per example.
    tries: candidates per negative.
    steps: :func:`search_steps` of the longest training row.

  Returns:
    int32 [B, num].
  """
  cand = jax.random.randint(key, (user_b.shape[0], num, tries), 0, num_items, jnp.int32)
  seen = csr_contains(indptr, indices, user_b[:, None, None], cand, steps=steps)
  free = ~seen
  first = jnp.where(free.any(-1), jnp.argmax(free, axis=-1), tries - 1)
  return jnp.take_along_axis(cand, first[..., None], axis=-1)[..., 0]


# ---------------------------------------------------------------------------------------------
# SGL / SimGCL: graph augmentations (edge dropout, embedding noise) and the batch's unique nodes
# (ssljax.methods.sgl, ssljax.methods.simgcl; general, for any method over the user-item graph)
# ---------------------------------------------------------------------------------------------


def undirected_edge_ids(rows, cols, num_nodes: int):
  """One id per undirected edge of a symmetric sparse matrix, shared by ``(r, c)`` and ``(c, r)``.

  Host-side (NumPy), once per data set: with these ids a random mask drawn per non-zero and read
  through ``mask[ids]`` keeps or drops both directions of an edge together (what dropping an
  interaction (u, i) from ``R`` does to ``A = [[0, R], [R^T, 0]]``).

  Args:
    rows, cols: int [nnz], the non-zeros of a structurally symmetric matrix (any order).
    num_nodes: N, the matrix's size.

  Returns:
    int32 [nnz]: ``min(e, mirror(e))`` where ``mirror(e)`` is the position of ``(cols[e],
    rows[e])``.

  Raises:
    ValueError: some ``(r, c)`` has no ``(c, r)`` (the matrix is not symmetric).
  """
  import numpy as np  # Host-side only; the module's other functions are jnp.

  rows = np.asarray(rows, np.int64)
  cols = np.asarray(cols, np.int64)
  key = rows * num_nodes + cols
  order = np.argsort(key, kind="stable")
  mirror_key = cols * num_nodes + rows
  pos = np.minimum(np.searchsorted(key[order], mirror_key), max(len(key) - 1, 0))
  mirror = order[pos] if len(key) else pos
  if len(key) and not np.array_equal(key[mirror], mirror_key):
    raise ValueError("undirected_edge_ids: the matrix is not symmetric (an entry (r, c) has no "
                     "(c, r))")
  return np.minimum(np.arange(len(key)), mirror).astype(np.int32)


def drop_edges(key: jax.Array, rows: jax.Array, cols: jax.Array, *, keep_rate: float,
               num_nodes: int, edge_ids: jax.Array | None = None) -> jax.Array:
  """Edge dropout with re-normalisation: the weights of ``D'^-1/2 (M ⊙ A) D'^-1/2``.

  SGL's edge dropout (Wu et al., SIGIR 2021: ``s(G) = (V, M ⊙ E)``, ``M`` a Bernoulli mask) on
  the binary adjacency ``A`` whose non-zeros are ``(rows, cols)``, followed by the LightGCN
  normalisation (He et al., eq. 7) of the kept graph: ``m_e`` ~ Bernoulli(keep_rate) per edge,
  ``d'_n = sum over e with rows[e] == n of m_e`` (the kept degree, a segment sum), and
  ``w_e = m_e / sqrt(d'_rows[e] d'_cols[e])``. The sparsity pattern keeps its shape (dropped
  edges get weight 0), so the result plugs into :func:`propagate` with the same ``rows``, ``cols``
  under ``jit``. A node that loses every edge has degree 0 and an all-zero row. With
  ``keep_rate = 1`` the weights are ``D^-1/2 A D^-1/2`` (to float32 rounding).

  Args:
    key: PRNG key.
    rows, cols: int32 [nnz], the non-zeros of a symmetric binary ``A`` (N = ``num_nodes``).
    keep_rate: probability ``1 - rho`` of keeping an edge (SGL's drop ratio rho = 0.1).
    num_nodes: N.
    edge_ids: int32 [nnz] from :func:`undirected_edge_ids`: both directions of an edge share one
      draw, so the kept graph stays symmetric. ``None``: every non-zero draws its own (a directed
      dropout; then ``D'`` is the kept out-degree).

  Returns:
    float32 [nnz], the kept graph's normalised weights.
  """
  keep = jax.random.bernoulli(key, keep_rate, rows.shape)
  if edge_ids is not None:
    keep = keep[edge_ids]
  mask = keep.astype(jnp.float32)
  degree = jax.ops.segment_sum(mask, rows, num_segments=num_nodes)
  inv_sqrt = jnp.where(degree > 0, jax.lax.rsqrt(jnp.maximum(degree, 1.0)), 0.0)
  return mask * inv_sqrt[rows] * inv_sqrt[cols]


def perturb_embeddings(key: jax.Array, x_nd: jax.Array, *, eps: float) -> jax.Array:
  """SimGCL's noise (Yu et al., SIGIR 2022): ``e' = e + eps * sign(e) ⊙ Δ / ||Δ||_2``.

  ``Δ`` ~ U(0, 1)^d per row, so the added vector has norm ``eps`` (the radius of the
  hypersphere the paper samples on) and lies in the same orthant as ``e`` (it never flips a
  sign; a zero coordinate of ``e`` gets no noise).

  Args:
    key: PRNG key.
    x_nd: [N, d] embeddings.
    eps: the noise's norm (the paper's 0.1; SSLRec uses 0.9 on Gowalla).

  Returns:
    [N, d], ``x_nd``'s dtype.
  """
  noise = jax.random.uniform(key, x_nd.shape, jnp.float32)
  unit = noise / jnp.linalg.norm(noise, axis=-1, keepdims=True)
  return x_nd + (eps * jnp.sign(x_nd) * unit).astype(x_nd.dtype)


class PerturbedLightGCN(LightGCN):
  """:class:`LightGCN` whose propagation can add SimGCL's noise after every layer.

  ``tables(key, eps=...)`` propagates ``E^(k+1) = Â E^(k)`` and, when ``key`` is given, replaces
  each propagated layer by :func:`perturb_embeddings` of it (layer ``k`` >= 1 draws with
  ``fold_in(key, k)``; the noisy layer is what the next layer propagates, as in SimGCL's official
  code). ``tables()`` without a key is the clean propagation. The mean runs over layers 0..K
  (LightGCN's eq. 8) or, with ``include_ego=False``, over layers 1..K only: SimGCL's official
  code (SELFRec, ``model/graph/SimGCL.py``) leaves the layer-0 embedding out of both its clean
  and its perturbed encoder.

  Attributes:
    include_ego: the layer mean includes ``E^(0)`` (needs ``layers >= 1`` when False).
  """

  include_ego: bool = True

  def tables(self, key: jax.Array | None = None, *,
             eps: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(users [U, d], items [I, d], ego users [U, d], ego items [I, d])``, noisy when ``key``
    is given (``eps`` the noise's norm per row and layer)."""
    ego_u, ego_i = self.user_embedding, self.item_embedding
    if self.layers == 0:
      return ego_u, ego_i, ego_u, ego_i
    rows, cols, weights = (self.graph[k].value for k in GRAPH_KEYS)
    x = jnp.concatenate([ego_u, ego_i], axis=0)
    total = x if self.include_ego else jnp.zeros_like(x)
    for k in range(1, self.layers + 1):
      x = propagate(x, rows, cols, weights, sorted_rows=True)
      if key is not None:
        x = perturb_embeddings(jax.random.fold_in(key, k), x, eps=eps)
      total = total + x
    mean = total / (self.layers + int(self.include_ego))
    return mean[:self.num_users], mean[self.num_users:], ego_u, ego_i


def unique_nodes(ids_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The distinct ids of a batch, at a fixed shape: ``(sorted ids [B], first occurrence [B])``.

  ``jnp.unique`` needs a static size under ``jit``; instead the ids are sorted and a mask marks
  the first of each run, so ``ids[mask]`` are the distinct ids (what ``torch.unique`` gives
  SimGCL's and SGL's contrastive losses in SELFRec). Pass the mask to
  :func:`ssljax.losses.node_infonce_loss` as ``valid_n``.
  """
  ids = jnp.sort(ids_b)
  first = jnp.concatenate([jnp.ones((1,), bool), ids[1:] != ids[:-1]])
  return ids, first
