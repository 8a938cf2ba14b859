"""Views of table rows: pure ``(rng, batch) -> view`` functions that run on device.

A table batch is ``{"x_num": float32 [B, D_num], "x_cat": int32 [B, D_cat]}`` (either key may be
absent; see :mod:`ssljax.data.tables`). Columns are numbered numeric first, then categorical, as
the feature tokenizer orders its tokens.

* :func:`scarf_corrupt` (SCARF, Bahri et al., ICLR 2022): in each row a random subset of
  ``round(rate * D)`` columns is replaced by draws from each column's empirical marginal, here the
  same column of a uniformly drawn row of the global batch.
* :func:`vime_mask_swap` (VIME, Yoon et al., NeurIPS 2020): each entry is masked with probability
  ``p`` and replaced by the same column of another row (a random permutation per column); the
  view also returns the mask, which VIME's mask-estimation head predicts.
* :func:`column_masks`: T-JEPA's context/target column sampler (Thimonier et al., ICLR 2025;
  ``t_jepa.md`` "Masking"), padded to fixed shapes so one compiled step serves every batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError

KEYS = ("x_num", "x_cat")


def _columns(batch) -> tuple[int, ...]:
  return tuple(batch[k].shape[1] if k in batch else 0 for k in KEYS)


def _replace_from_rows(rng, batch, mask_bd, rows_bd):
  """Entries where ``mask_bd`` is set take ``batch[rows_bd[b, j], j]`` (columns in key order)."""
  out = dict(batch)
  start = 0
  for key, width in zip(KEYS, _columns(batch), strict=True):
    if not width:
      continue
    x = batch[key]
    cols = slice(start, start + width)
    donor = jnp.take_along_axis(x, rows_bd[:, cols], axis=0)
    out[key] = jnp.where(mask_bd[:, cols], donor, x)
    start += width
  del rng
  return out


def _check_rate(value, key):
  if not 0.0 <= float(value) <= 1.0:
    raise ConfigError(f"{key}={value!r} must be in [0, 1]")
  return float(value)


@dataclasses.dataclass(frozen=True)
class ScarfCorruption:
  """SCARF's view: ``round(rate * D)`` columns per row redrawn from their batch marginal.

  Attributes:
    rate: the corruption rate (SCARF's default 0.6).
  """

  rate: float = 0.6
  modality = "table"

  def __post_init__(self):
    _check_rate(self.rate, "scarf.corruption_rate")

  def __call__(self, rng: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return scarf_corrupt(rng, batch, rate=self.rate)


def scarf_corrupt(rng, batch, *, rate: float):
  """``batch`` with ``round(rate * D)`` random columns of each row replaced by marginal draws.

  The corrupted set is uniform over subsets of that size (ranks of i.i.d. uniforms); each
  replaced entry of column j is column j of a row drawn uniformly from the batch (its empirical
  marginal; the row may be the row itself, as a draw from the marginal can be).
  """
  num_cols = sum(_columns(batch))
  b = next(batch[k].shape[0] for k in KEYS if k in batch)
  k_sub, k_rows = jax.random.split(rng)
  count = int(round(float(rate) * num_cols))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k_sub, (b, num_cols)), axis=1), axis=1)
  mask = ranks < count
  rows = jax.random.randint(k_rows, (b, num_cols), 0, b)
  return _replace_from_rows(rng, batch, mask, rows)


@dataclasses.dataclass(frozen=True)
class VimeMaskSwap:
  """VIME's view: entries masked with probability ``p``, swapped with another row's value."""

  p: float = 0.3
  modality = "table"

  def __post_init__(self):
    _check_rate(self.p, "vime.mask_prob")

  def __call__(self, rng: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return vime_mask_swap(rng, batch, p=self.p)


def vime_mask_swap(rng, batch, *, p: float):
  """``batch`` with Bernoulli(p) entries taken from a per-column permutation; adds ``mask``.

  ``mask`` is bool [B, D] (numeric columns first), True where the entry was swapped in (VIME
  counts an entry as masked even when the swapped-in value happens to be equal).
  """
  num_cols = sum(_columns(batch))
  b = next(batch[k].shape[0] for k in KEYS if k in batch)
  k_mask, k_perm = jax.random.split(rng)
  mask = jax.random.bernoulli(k_mask, p, (b, num_cols))
  perms = jax.vmap(lambda k: jax.random.permutation(k, b))(jax.random.split(k_perm, num_cols))
  out = _replace_from_rows(rng, batch, mask, perms.T)
  out["mask"] = mask
  return out


# ----------------------------------------------------------------------- T-JEPA column masks


def share_bounds(num_features: int, share: tuple[float, float], *, key: str) -> tuple[int, int]:
  """``(round(D * low), round(D * high))``, the low end raised to 1 (an empty set predicts
  nothing); ConfigError when the shares are not ``0 <= low <= high <= 1``."""
  low, high = (float(s) for s in share)
  if not 0.0 <= low <= high <= 1.0:
    raise ConfigError(f"{key}={tuple(share)!r} must be (low, high) with 0 <= low <= high <= 1")
  lo, hi = round(num_features * low), round(num_features * high)
  return max(1, lo), max(1, hi)


def column_masks(rng, batch_size: int, num_features: int, *, ctx_share, tgt_share,
                 num_preds: int = 4, num_encs: int = 1, tries: int = 32):
  """T-JEPA's sampler: per batch the sizes, per row the context and ``num_preds`` target sets.

  Per batch: ``n_ctx = min_ctx + round((max_ctx - min_ctx) * u)`` with ``u ~ U(0, 1)``, ``n_tgt``
  likewise from the target shares, redrawn until ``num_encs * n_ctx + n_tgt <= D`` (the first of
  ``tries`` draws that fits; the smallest sizes if none does, which the bounds check guarantees
  fit). Per row: a random permutation's first ``n_ctx`` columns are the context; each target set
  is ``n_tgt`` columns drawn uniformly from the rest (target sets may overlap each other, never
  the context). Indices are feature columns ``0 .. D - 1``, never a [REG] token.

  Returns a dict: ``ctx`` int32 [B, max_ctx], ``ctx_valid`` bool [max_ctx] (the first ``n_ctx``
  slots), ``tgt`` int32 [num_preds, B, max_tgt], ``tgt_valid`` bool [max_tgt], ``n_ctx``,
  ``n_tgt`` (int32 scalars). Padded slots hold valid but unused column indices.
  """
  if num_encs != 1:
    raise ConfigError(f"t_jepa.num_encs={num_encs}: only one context encoder is supported "
                      "(the published setting)")
  min_c, max_c = share_bounds(num_features, ctx_share, key="t_jepa.ctx_share")
  min_t, max_t = share_bounds(num_features, tgt_share, key="t_jepa.tgt_share")
  if min_c + min_t > num_features:
    raise ConfigError(
        f"t_jepa.ctx_share={tuple(ctx_share)} and t_jepa.tgt_share={tuple(tgt_share)}: even the "
        f"smallest context ({min_c}) and target ({min_t}) sets do not fit in {num_features} "
        "columns; lower the shares")
  k_size, k_ctx, k_tgt = jax.random.split(rng, 3)
  u = jax.random.uniform(k_size, (tries, 2))
  n_c = min_c + jnp.round((max_c - min_c) * u[:, 0]).astype(jnp.int32)
  n_t = min_t + jnp.round((max_t - min_t) * u[:, 1]).astype(jnp.int32)
  fits = num_encs * n_c + n_t <= num_features
  first = jnp.argmax(fits)
  n_ctx = jnp.where(fits.any(), n_c[first], min_c)
  n_tgt = jnp.where(fits.any(), n_t[first], min_t)
  width_c = min(max_c, num_features - min_t)
  width_t = min(max_t, num_features - min_c)
  perm = jnp.argsort(jax.random.uniform(k_ctx, (batch_size, num_features)), axis=1)
  rank = jnp.argsort(perm, axis=1)  # rank[b, j]: position of column j in row b's permutation
  in_ctx = rank < n_ctx
  keys = jax.random.uniform(k_tgt, (num_preds, batch_size, num_features))
  keys = jnp.where(in_ctx[None], 2.0, keys)  # context columns sort after every other column
  tgt = jnp.argsort(keys, axis=2)[..., :width_t]
  return {"ctx": perm[:, :width_c].astype(jnp.int32),
          "ctx_valid": jnp.arange(width_c) < n_ctx,
          "tgt": tgt.astype(jnp.int32),
          "tgt_valid": jnp.arange(width_t) < n_tgt,
          "n_ctx": n_ctx, "n_tgt": n_tgt}


@dataclasses.dataclass(frozen=True)
class TableRows:
  """The rows themselves (``x_num`` / ``x_cat`` only): the view of augmentation-free methods."""

  modality = "table"

  def __call__(self, rng: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    del rng
    return {k: batch[k] for k in KEYS if k in batch}
