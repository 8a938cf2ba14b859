"""Two-tower retrieval encoder: a query (user) tower and an item tower over categorical fields.

The item tower (Yao et al., CIKM 2021, §3-4; the towers of Yi et al., RecSys 2019) embeds each
of an item's k categorical fields, mean-pools the values of multi-valued fields (a bag; padding
and dropped values excluded), concatenates the k field vectors, runs a small ReLU MLP and L2
normalises: ``H(x) = MLP(concat_f pool_f(x)) / ||.||``. An item with no value in a field (code
0 only, or every value dropped) reads the field's row 0, a trainable "no value" embedding, so a
view's input is never all zero while one of its fields is kept (the normalisation of a zero
vector has an unbounded gradient). The query tower does the same with a
single field, the user id. The score of a (user, item) pair is the cosine ``<Q(u), H(x)>``.

Field masking (the SSL augmentation of ``ssljax.methods.two_tower``) multiplies each field's
pooled vector by ``keep_k[f]`` in {0, 1}: a masked field contributes the constant zero vector,
which is no table row and receives no gradient (the frozen default of the paper's pitfall 4).

Tables are plain ``params`` of shape [rows, embed_dim] whose names end in ``_embedding``
(``user_embedding`` [U, e], ``item_<field>_embedding`` [V_f, e]; the item id's table has exactly
I rows), so ``sharding_rules`` such as ``(("user_embedding|item_id_embedding", "rows"), ...)``
can split the catalogue-sized ones by rows. The items' feature codes are the Linen variable
collection ``"features"`` (``<field>``: int32 [I, L_f]) that the caller fills from its
``method_state``, so they are never HLO constants.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Field(NamedTuple):
  """One categorical item field.

  Attributes:
    name: its name (``id`` for the item id).
    rows: rows of its table: the vocabulary including code 0 for padded fields, I for the id.
    width: values per item L (> 1: a multi-valued field, mean-pooled; value dropout applies).
    padded: code 0 pads the bag and is left out of the mean; an empty bag reads row 0 ("no
      value"). Every field but the id, whose code is the item index itself (read from no
      collection).
  """

  name: str
  rows: int
  width: int
  padded: bool = True


def safe_name(name: str) -> str:
  """``name`` with every character outside ``[A-Za-z0-9_]`` replaced by ``_`` (parameter and
  collection names; ``/`` would break the sharding rules' paths)."""
  return re.sub(r"\W", "_", str(name))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """``x / max(||x||, eps)`` over the last axis, float32."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), -1, keepdims=True), eps * eps))


def pool(table: jax.Array, codes_nl: jax.Array, weights_nl: jax.Array) -> jax.Array:
  """Weighted mean of a bag of table rows: ``sum_l w_l T[c_l] / sum_l w_l``; an empty bag (no
  weight left) reads row 0, the field's "no value" embedding.

  Args:
    table: [V, e]; codes_nl: int [N, L]; weights_nl: float [N, L] (0 leaves a value out).

  Returns:
    [N, e].
  """
  rows = table[codes_nl]
  weight_n1 = jnp.sum(weights_nl, axis=1, keepdims=True)
  mean = jnp.sum(weights_nl[..., None] * rows, axis=1) / jnp.maximum(weight_n1, 1e-12)
  return jnp.where(weight_n1 > 0, mean, table[0][None, :])


class TwoTower(nn.Module):
  """Query tower over the user id, item tower(s) over the item fields; both L2 normalised.

  Attributes:
    num_users, num_items: U and I.
    fields: the item fields (:class:`Field`), in the order of the masks' k entries; the id
      field (``padded=False``) reads its code from the item index.
    embed_dim: e, the width of every table.
    hidden_dims: hidden widths of both towers' ReLU MLPs (empty: a linear map).
    dim: d, the output width.
    init_std: the tables' initial normal standard deviation.
    ssl_tower: also build a second item tower ``G`` (``ssl_item_*`` parameters) for the SSL
      task's second view (``two_tower.share_item_tower=False``).

  Variables: ``params``: ``user_embedding`` [U, e], ``query_mlp_<j>``, ``item_<f>_embedding``
  [rows_f, e], ``item_mlp_<j>`` (and the ``ssl_item_*`` copies); the collection ``features``:
  ``<f>`` int32 [I, L_f] for every padded field.
  """

  num_users: int
  num_items: int
  fields: Sequence[Field]
  embed_dim: int
  hidden_dims: Sequence[int]
  dim: int
  init_std: float = 0.1
  ssl_tower: bool = False

  def setup(self):
    init = nn.initializers.normal(self.init_std)
    e = self.embed_dim
    self.user_embedding = self.param("user_embedding", init, (self.num_users, e))
    self.query_mlp = self._mlp("query_mlp")
    towers = ["item"] + (["ssl_item"] if self.ssl_tower else [])
    self.tables = {t: {f.name: self.param(f"{t}_{safe_name(f.name)}_embedding", init, (f.rows, e))
                       for f in self.fields} for t in towers}
    self.mlps = {t: self._mlp(f"{t}_mlp") for t in towers}
    self.features = {f.name: self.variable("features", safe_name(f.name), jnp.zeros,
                                           (self.num_items, f.width), jnp.int32)
                     for f in self.fields if f.padded}

  def _mlp(self, prefix: str) -> list[nn.Dense]:
    widths = [*self.hidden_dims, self.dim]
    return [nn.Dense(w, name=f"{prefix}_{j}") for j, w in enumerate(widths)]

  @staticmethod
  def _run(layers, x):
    for layer in layers[:-1]:
      x = nn.relu(layer(x))
    return l2_normalize(layers[-1](x))

  def query(self, user: jax.Array) -> jax.Array:
    """``Q(u)`` [B, d] (unit norm) of user indices int [B]."""
    return self._run(self.query_mlp, self.user_embedding[user])

  def codes(self, item: jax.Array) -> dict[str, jax.Array]:
    """Each field's codes int32 [N, L_f] of item indices int [N] (the id's: the index)."""
    return {f.name: self.features[f.name].value[item] if f.padded else item[:, None]
            for f in self.fields}

  def encode(self, codes: dict[str, jax.Array], *, keep_k: jax.Array | None = None,
             value_weights: dict[str, jax.Array] | None = None, tower: str = "item"
             ) -> jax.Array:
    """``H(x)`` [N, d] (unit norm) of items given by their field codes.

    Args:
      codes: field name -> int [N, L_f].
      keep_k: float or bool [k]: 0 masks field f for every row (its pooled vector is zero);
        None keeps all.
      value_weights: field name -> float [N, L_f] multiplying each value's pooling weight
        (value dropout); missing fields weigh 1.
      tower: ``"item"`` (H) or ``"ssl_item"`` (G, when built).
    """
    parts = []
    for f_index, f in enumerate(self.fields):
      c = codes[f.name]
      w = (c != 0).astype(jnp.float32) if f.padded else jnp.ones(c.shape, jnp.float32)
      if value_weights is not None and f.name in value_weights:
        w = w * value_weights[f.name]
      v = pool(self.tables[tower][f.name], c, w)
      if keep_k is not None:
        v = v * keep_k[f_index].astype(v.dtype)
      parts.append(v)
    return self._run(self.mlps[tower], jnp.concatenate(parts, axis=-1))

  def items(self, item: jax.Array, *, keep_k: jax.Array | None = None, drop_key=None,
            drop_rate: float = 0.0, tower: str = "item") -> jax.Array:
    """``H(x)`` [N, d] of item indices int [N], optionally masked and with value dropout.

    ``drop_key`` / ``drop_rate``: each value of a multi-valued field (L_f > 1) is left out of
    its bag independently with probability ``drop_rate`` (the second stage of the paper's
    augmentation); single-valued fields are never dropped.
    """
    codes = self.codes(item)
    weights = None
    if drop_key is not None and drop_rate > 0:
      multi = [f for f in self.fields if f.width > 1]
      keys = jax.random.split(drop_key, max(len(multi), 1))
      weights = {f.name: jax.random.bernoulli(k, 1.0 - drop_rate, codes[f.name].shape
                                              ).astype(jnp.float32)
                 for f, k in zip(multi, keys, strict=False)}
    return self.encode(codes, keep_k=keep_k, value_weights=weights, tower=tower)

  def pairs(self, batch) -> dict[str, jax.Array]:
    """``{"user": Q(u) [B, d], "item": H(x) [B, d]}`` of a batch ``{"user", "item"}`` int [B]."""
    return {"user": self.query(batch["user"]), "item": self.items(batch["item"])}

  def init_all(self, batch) -> jax.Array:
    """Touches every parameter (both item towers) for ``init``; returns :meth:`__call__`'s."""
    if self.ssl_tower:
      self.items(batch["item"], tower="ssl_item")
    return self(batch)

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    """The backbone: ``concat(Q(u), H(x))`` [B, 2d] of a batch ``{"user", "item"}`` int [B]."""
    del train
    out = self.pairs(batch)
    return jnp.concatenate([out["user"], out["item"]], axis=-1)
