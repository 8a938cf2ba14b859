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
import numpy as np

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

  ``max_train_length`` (the official ``max_train_length``, None = off): series longer than it
  are first cut into ``T // max_train_length`` consecutive sections as ``numpy.array_split`` cuts
  them (lengths ``ceil`` or ``floor`` of ``T / sections``), and each row trains on one of its
  sections that holds data, drawn uniformly; the crops are then drawn inside the section. The
  official code makes every section a training series of its own (dropping all-missing ones),
  so a draw of a series and then a section has the same distribution when the series are equally
  long.
  """

  temporal_unit: int = 0
  max_train_length: int | None = None
  modality = "series"

  def __post_init__(self):
    if int(self.temporal_unit) < 0:
      raise ConfigError(f"ts2vec.temporal_unit={self.temporal_unit} must be >= 0")
    if self.max_train_length is not None and int(self.max_train_length) < self.min_length():
      raise ConfigError(f"ts2vec.max_train_length={self.max_train_length} must be at least "
                        f"2^(temporal_unit+1) = {self.min_length()} (or None: off)")

  def min_length(self) -> int:
    return 2 ** (int(self.temporal_unit) + 1)

  def section_length(self, t: int) -> int:
    """The length of the buffers the crops come from, for series padded to ``t``."""
    if self.max_train_length is None or t <= int(self.max_train_length):
      return t
    return -(-t // (t // int(self.max_train_length)))

  def _section(self, rng, x, length):
    """One data-holding ``array_split`` section per row, at the front of a [B, P] buffer."""
    b, t = x.shape[0], x.shape[1]
    sections, size = t // int(self.max_train_length), self.section_length(t)
    bounds = np.array([len(c) for c in np.array_split(np.arange(t), sections)]).cumsum()
    starts = jnp.asarray(np.concatenate([[0], bounds[:-1]]), jnp.int32)
    ends = jnp.asarray(bounds, jnp.int32)
    with_data = jnp.sum(starts[None, :] < length[:, None], axis=1)  # >= 1 (length >= 1).
    pick = jnp.floor(jax.random.uniform(rng, (b,)) * with_data).astype(jnp.int32)
    start, end = starts[pick], ends[pick]
    padded = jnp.pad(x, ((0, 0), (0, size), (0, 0)))
    piece = jax.vmap(lambda row, s0: jax.lax.dynamic_slice_in_dim(row, s0, size, 0))(padded,
                                                                                      start)
    kept = jnp.clip(jnp.minimum(length, end) - start, 0, size).astype(length.dtype)
    inside = jnp.arange(size)[None, :] < kept[:, None]
    return jnp.where(inside[..., None], piece, 0.0), kept

  def __call__(self, rng, batch):
    x, length = batch["series"], batch["length"]
    if self.section_length(x.shape[1]) != x.shape[1]:
      rng, k_section = jax.random.split(rng)
      x, length = self._section(k_section, x, length)
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


@dataclasses.dataclass(frozen=True)
class TLossWindows:
  """T-Loss's reference, positive and negative windows (Franceschi, Dieuleveut & Jaggi, NeurIPS
  2019), each moved to the front of a length-T buffer.

  Each series ``b`` of the batch gets a reference window, a positive window inside it, and
  ``num_negatives`` (K) negative windows taken from OTHER rows of the batch (the official code
  draws the negatives' series from the whole training set, its own series included; a loss here
  sees the global batch, see :func:`ssljax.losses.tloss_sample_windows`). The draws are the
  official samplers':

  * every row spans the whole buffer (``length == T``; fixed-length data, the official
    ``TripletLoss``): :func:`ssljax.losses.tloss_sample_windows`, one positive length
    ``p ~ U{min_length..T}`` and one reference length ``r ~ U{p..T}`` shared by the batch, the
    reference at a uniform start per row, the positive at a uniform offset inside it, the
    negatives of length ``p`` at uniform starts;
  * otherwise (varying lengths, the official ``TripletLossVaryingLength``): the same draws per
    row within the row's own length ``n_b``: ``p_b ~ U{min(min_length, n_b)..n_b}``,
    ``r_b ~ U{p_b..n_b}``, the reference's start in ``[0, n_b - r_b]``, and each negative its own
    length ``U{min(min_length, n)..n}`` and start in ``[0, n - length]`` with ``n`` the length
    of the negative's row. No window ever covers padding.

  The official code tells the two cases apart once for the data set (NaN padding anywhere in the
  training set); here each batch decides, which differs only on batches of varying-length data
  whose rows all have the longest length (they get the fixed-length draws).

  Windows are cropped as the official code crops them, with static shapes: window ``[s, s + L)``
  becomes ``series[:L] = x[s : s + L]`` and zeros after, with ``valid = t < L``
  (:func:`ssljax.models.sequence.shift_to_front`); the causal encoder pooled over ``valid``
  then equals the encoder applied to the cropped window alone.

  Returns ``{"ref": {"series" [B, T, C], "valid" [B, T]}, "pos": {...}, "neg": {"series"
  [B, K, T, C], "valid" [B, K, T]}, "draws": {...}}``: every array has the batch as its leading
  axis (so the view shards, and splits into microbatches, along it; negatives are gathered from
  the global batch before any split). ``draws`` holds the windows as int32 indices:
  ``ref_start``, ``ref_len``, ``pos_start``, ``pos_len`` [B] and ``neg_row``, ``neg_start``,
  ``neg_len`` [B, K] (``neg_row[b, k]``: the batch row of example b's k-th negative).
  """

  num_negatives: int = 10
  min_length: int = 1
  modality = "series"

  def __post_init__(self):
    if int(self.num_negatives) < 1:
      raise ConfigError(f"tloss.num_negatives={self.num_negatives} must be >= 1")
    if int(self.min_length) < 1:
      raise ConfigError(f"tloss.min_length={self.min_length} must be >= 1")

  def __call__(self, rng, batch):
    from ssljax import losses  # The sampler of the fixed-length case.

    x = batch["series"]
    b, t = x.shape[0], x.shape[1]
    k, lo = int(self.num_negatives), int(self.min_length)
    if b < 2:
      raise ConfigError(f"T-Loss draws negatives from the other series of the batch; the batch "
                        f"has {b} (input.batch_size must be >= 2)")
    if lo > t:
      raise ConfigError(f"tloss.min_length={lo} is longer than the series ({t} timestamps)")
    length = jnp.clip(batch["length"].astype(jnp.int32), 1, t)
    k_fixed, k_vary = jax.random.split(rng)

    # Fixed length: the official TripletLoss (lengths shared by the batch).
    pos_start, pos_len, ref_start, ref_len, neg_row, neg_start = losses.tloss_sample_windows(
        k_fixed, b, t, num_negatives=k, min_length=lo)
    fixed = dict(ref_start=ref_start, ref_len=jnp.full((b,), ref_len, jnp.int32),
                 pos_start=pos_start, pos_len=jnp.full((b,), pos_len, jnp.int32),
                 neg_row=neg_row.T, neg_start=neg_start.T,
                 neg_len=jnp.full((b, k), pos_len, jnp.int32))

    # Varying lengths: the official TripletLossVaryingLength (per-row lengths within each row).
    ks = jax.random.split(k_vary, 7)
    p_len = jax.random.randint(ks[0], (b,), jnp.minimum(lo, length), length + 1)
    r_len = jax.random.randint(ks[1], (b,), p_len, length + 1)
    r_start = jax.random.randint(ks[2], (b,), 0, length - r_len + 1)
    p_start = r_start + jax.random.randint(ks[3], (b,), 0, r_len - p_len + 1)
    # A shift in {1..B-1} modulo B: uniform over the other rows.
    n_row = (jnp.arange(b, dtype=jnp.int32)[:, None]
             + jax.random.randint(ks[4], (b, k), 1, b)) % b
    n_full = length[n_row]
    n_len = jax.random.randint(ks[5], (b, k), jnp.minimum(lo, n_full), n_full + 1)
    n_start = jax.random.randint(ks[6], (b, k), 0, n_full - n_len + 1)
    varying = dict(ref_start=r_start, ref_len=r_len, pos_start=p_start, pos_len=p_len,
                   neg_row=n_row, neg_start=n_start, neg_len=n_len)

    vary = jnp.any(length < t)
    draws = {name: jnp.where(vary, varying[name], fixed[name]).astype(jnp.int32)
             for name in fixed}

    def window(x_btc, start_b, len_b):
      inside = jnp.arange(t)[None, :] < len_b[:, None]
      series = jnp.where(inside[..., None], _shift_rows(x_btc, start_b), 0.0)
      return {"series": series.astype(x_btc.dtype), "valid": inside}

    neg = window(x[draws["neg_row"].reshape(-1)], draws["neg_start"].reshape(-1),
                 draws["neg_len"].reshape(-1))
    neg = {"series": neg["series"].reshape(b, k, *x.shape[1:]),
           "valid": neg["valid"].reshape(b, k, t)}
    return {"ref": window(x, draws["ref_start"], draws["ref_len"]),
            "pos": window(x, draws["pos_start"], draws["pos_len"]),
            "neg": neg, "draws": draws}
