"""Views of time series: pure ``(rng, batch) -> view`` functions that run on device.

A series batch is ``{"series": float32 [B, T, C], "length": int32 [B]}`` (see
:mod:`ssljax.data.series`): timestamps at or after a row's ``length`` are padding. Every view
returns fixed shapes, so one compiled step serves every batch; what varies from step to step (a
crop's length) is carried as a ``valid`` mask [B, T] and as traced scalars.

* :class:`SeriesRows`: the series as they are, with ``valid`` (evaluation, frame-free methods).
* :class:`TS2VecCrops`: TS2Vec's two overlapping random crops (Yue et al., AAAI 2022, section
  3.2 "Contextual Consistency"; the official sampler's draws): one crop length, left/right bounds
  and extensions per step, shared by the batch; one offset per series.
* :func:`jitter`, :func:`scaling`, :func:`time_mask`: the classic series augmentations (Gaussian
  noise, a per-channel scale, a random share of timestamps zeroed).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError


def valid_mask(length_b: jax.Array, t: int) -> jax.Array:
  """bool [B, T]: the timestamps of each row that are data (``t < length``)."""
  return jnp.arange(t)[None, :] < length_b[:, None]


@dataclasses.dataclass(frozen=True)
class SeriesRows:
  """The series unchanged: ``{"series": [B, T, C], "valid": bool [B, T]}``."""

  modality = "series"

  def __call__(self, rng, batch):
    del rng
    x = batch["series"]
    return {"series": x, "valid": valid_mask(batch["length"], x.shape[1])}


def _shift_rows(x_btc: jax.Array, start_b: jax.Array) -> jax.Array:
  """Row b becomes ``x[b, start_b + t]`` for each t, zero where that index is outside [0, T)."""
  t = x_btc.shape[1]
  idx = start_b[:, None] + jnp.arange(t)[None, :]
  inside = (idx >= 0) & (idx < t)
  taken = jnp.take_along_axis(x_btc, jnp.clip(idx, 0, t - 1)[..., None], axis=1)
  return jnp.where(inside[..., None], taken, 0.0)


@dataclasses.dataclass(frozen=True)
class TS2VecCrops:
  """TS2Vec's pair of overlapping crops, each moved to the front of a length-T buffer.

  The draws follow the official sampler (with ``T`` the padded length): crop length
  ``l ~ U{2^(u+1), ..., T}`` (``u`` = ``temporal_unit``), overlap ``[left, left + l)`` with
  ``left ~ U{0, ..., T - l}``, extensions ``eleft ~ U{0, ..., left}`` and
  ``eright ~ U{left + l, ..., T}``, all shared by the batch, and a per-series offset
  ``o ~ U{-eleft, ..., T - eright}``. Crop ``a`` is ``x[o + eleft : o + left + l]``, crop ``b`` is
  ``x[o + left : o + eright]``; their common part, the overlap, starts at ``left - eleft`` in
  ``a`` and at 0 in ``b``.

  Returns ``{"a": {"series", "valid"}, "b": {"series", "valid"}, "overlap": l,
  "a_start": left - eleft}`` (``overlap`` and ``a_start`` int32 [B], the same in every row).
  ``valid`` is True on the crop's timestamps that are data; an encoder that zeroes everything
  outside ``valid`` after each layer computes exactly what it computes on the cropped series
  alone.
  """

  temporal_unit: int = 0
  modality = "series"

  def __post_init__(self):
    if int(self.temporal_unit) < 0:
      raise ConfigError(f"ts2vec.temporal_unit={self.temporal_unit} must be >= 0")

  def min_length(self) -> int:
    return 2 ** (int(self.temporal_unit) + 1)

  def __call__(self, rng, batch):
    x, length = batch["series"], batch["length"]
    b, t = x.shape[0], x.shape[1]
    if t < self.min_length():
      raise ConfigError(f"TS2Vec crops need series of at least 2^(temporal_unit+1) = "
                        f"{self.min_length()} timestamps; these have {t} (lower "
                        "ts2vec.temporal_unit)")
    k = jax.random.split(rng, 5)
    crop = jax.random.randint(k[0], (), self.min_length(), t + 1)
    left = jax.random.randint(k[1], (), 0, t - crop + 1)
    right = left + crop
    eleft = jax.random.randint(k[2], (), 0, left + 1)
    eright = jax.random.randint(k[3], (), right, t + 1)
    offset = jax.random.randint(k[4], (b,), -eleft, t - eright + 1)
    observed = valid_mask(length, t)

    def one(start_b, size):
      series = _shift_rows(x, start_b)
      seen = _shift_rows(observed[..., None].astype(x.dtype), start_b)[..., 0] > 0
      inside = jnp.arange(t)[None, :] < size
      return {"series": jnp.where(inside[..., None], series, 0.0), "valid": seen & inside}

    # The two scalars repeated per row, so the view shards along the batch like the series.
    per_row = lambda v: jnp.full((b,), v, jnp.int32)  # noqa: E731
    return {"a": one(offset + eleft, right - eleft), "b": one(offset + left, eright - left),
            "overlap": per_row(crop), "a_start": per_row(left - eleft)}


def align_overlap(z_a_btd: jax.Array, z_b_btd: jax.Array, a_start, overlap):
  """The two crops' representations of the overlap, both moved to timestamps ``[0, overlap)``.

  Returns ``(za, zb, valid_t)``: za / zb [B, T, D] (the rest zero) and bool [T].
  """
  t = z_a_btd.shape[1]
  za = jnp.roll(z_a_btd, -a_start, axis=1)
  keep = jnp.arange(t) < overlap
  za = jnp.where(keep[None, :, None], za, 0.0)
  zb = jnp.where(keep[None, :, None], z_b_btd, 0.0)
  return za, zb, keep


def jitter(rng, x_btc: jax.Array, *, sigma: float) -> jax.Array:
  """Gaussian noise of std ``sigma`` added to every value."""
  return x_btc + sigma * jax.random.normal(rng, x_btc.shape, x_btc.dtype)


def scaling(rng, x_btc: jax.Array, *, sigma: float) -> jax.Array:
  """Each channel of each series multiplied by a draw of N(1, sigma^2)."""
  b, _, c = x_btc.shape
  return x_btc * (1.0 + sigma * jax.random.normal(rng, (b, 1, c), x_btc.dtype))


def time_mask(rng, x_btc: jax.Array, *, rate: float) -> tuple[jax.Array, jax.Array]:
  """Each timestamp zeroed with probability ``rate``; returns ``(x, kept bool [B, T])``."""
  kept = jax.random.bernoulli(rng, 1.0 - rate, x_btc.shape[:2])
  return jnp.where(kept[..., None], x_btc, 0.0), kept
