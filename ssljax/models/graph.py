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
