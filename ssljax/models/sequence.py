"""Time-series encoders: TS2Vec's dilated convolutions and T-Loss's causal CNN.

Both read ``x`` float32 [B, T, C] (batch, time, channels) and an optional ``valid`` bool [B, T]
(True where a timestamp is data; padding and NaN timestamps are False).

* :class:`TS2VecEncoder` (Yue et al., "TS2Vec: Towards Universal Representation of Time Series",
  AAAI 2022; the official ``TSEncoder``): NaN timestamps -> 0, a per-timestamp Linear(C, hidden),
  random timestamp masking in training, ``depth + 1`` residual blocks of two 'same'-padded dilated
  convolutions (dilation ``2**i``, exact GELU), then dropout. A representation per timestamp,
  [B, T, out_dim]; :func:`max_pool_time` gives the official ``encoding_window='full_series'``.
* :class:`CausalCNNEncoder` (Franceschi et al., "Unsupervised Scalable Representation Learning
  for Multivariate Time Series", NeurIPS 2019; the official ``CausalCNNEncoder``): ``depth + 1``
  residual blocks of two weight-normalised causal convolutions with LeakyReLU, a max over time and
  Linear(reduced_size, out_dim), [B, out_dim]. :func:`shift_to_front` makes encoding a window of a
  longer series exact (see there).

Initialisation is PyTorch's default for ``nn.Linear`` / ``nn.Conv1d`` (weight and bias
U(-1/sqrt(fan_in), 1/sqrt(fan_in))), which the official code keeps. ``dtype`` is the compute
dtype; parameters and the returned values stay float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# PyTorch's kaiming_uniform_(a=sqrt(5)) weight init for Linear / Conv1d: U(+-1/sqrt(fan_in)). For
# a flax conv kernel [k, C_in, C_out], fan_in = k * C_in, as in PyTorch.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  """PyTorch's default bias init for a layer with ``fan_in`` inputs: U(-1/sqrt(fan_in), ...)."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _nan_free(x_btc: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x with every channel of a NaN timestamp set to 0, bool [B, T] True where no NaN)."""
  finite_bt = ~jnp.isnan(x_btc).any(axis=-1)
  return jnp.where(finite_bt[..., None], x_btc, 0.0), finite_bt


def max_pool_time(h_btd: jax.Array, valid_bt: jax.Array | None = None) -> jax.Array:
  """[B, T, D] -> [B, D]: the max over each row's valid timestamps (all of them if ``None``).

  TS2Vec's ``encoding_window='full_series'`` (a max-pool over the whole series). A row with no
  valid timestamp gives 0 (and no gradient).
  """
  if valid_bt is None:
    return jnp.max(h_btd, axis=1)
  valid_bt = valid_bt.astype(bool)
  low = jnp.finfo(h_btd.dtype).min
  pooled = jnp.max(jnp.where(valid_bt[..., None], h_btd, low), axis=1)
  return jnp.where(valid_bt.any(axis=1)[:, None], pooled, 0.0).astype(h_btd.dtype)


# ---------------------------------------------------------------------------------------------
# TS2Vec.


def _gelu(x):
  return jax.nn.gelu(x, approximate=False)  # PyTorch's F.gelu default: the exact erf form.


class SamePadConv(nn.Module):
  """The official ``SamePadConv``: a dilated conv that keeps the length T, [B, T, C] -> [B, T, F].

  ``receptive_field = (kernel - 1) * dilation + 1``; both sides are zero-padded by
  ``receptive_field // 2``, and when ``receptive_field`` is even the last output is dropped (with
  kernel 3 it is always odd and the padding is ``dilation`` on each side).
  """

  features: int
  kernel: int = 3
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc):
    receptive_field = (self.kernel - 1) * self.dilation + 1
    return _TapConv(self.features, self.kernel, self.dilation, receptive_field // 2,
                    dtype=self.dtype, name="conv")(x_btc)


class _TapConv(nn.Module):
  """A 1-D dilated convolution with padding ``(pad, pad)``, first T outputs only.

  ``y[t] = b + sum_k x[t + k * dilation - pad] @ W[k]`` (zero outside ``[0, T)``), with
  ``nn.Conv``'s parameters (``kernel`` [k, C_in, F], ``bias`` [F]). Taps that read outside the
  series at every t are left out: the deep blocks' dilations exceed short series (1024 against
  GunPoint's 150), where only the centre tap reads data, and a convolution over the whole padded
  input would cost up to 15 times the work (benchmarks/NOTES.md section 9).
  """

  features: int
  kernel: int
  dilation: int
  pad: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc):
    t, c = x_btc.shape[1], x_btc.shape[2]
    w = self.param("kernel", torch_kernel_init, (self.kernel, c, self.features))
    bias = self.param("bias", torch_bias_init(self.kernel * c), (self.features,))
    x, w = x_btc.astype(self.dtype), w.astype(self.dtype)
    taps = [k for k in range(self.kernel) if -t < k * self.dilation - self.pad < t]
    if taps == [k for k in range(self.kernel) if k * self.dilation == self.pad]:
      y = jnp.einsum("btc,cf->btf", x, w[taps[0]])  # Only the unshifted tap reads the series.
    else:
      y = jax.lax.conv_general_dilated(x, w, (1,), [(self.pad, self.pad)],
                                       rhs_dilation=(self.dilation,),
                                       dimension_numbers=("NWC", "WIO", "NWC"))[:, :t]
    return y + bias.astype(self.dtype)


class TS2VecBlock(nn.Module):
  """The official ``ConvBlock``: ``conv2(gelu(conv1(gelu(x)))) + residual``.

  The residual is ``x``, or a 1x1 conv of ``x`` (``projector``) when the widths differ or the
  block is the final one (the official code gives the last block a projector either way).

  Attributes:
    features: output width.
    kernel: conv kernel size.
    dilation: dilation of both convs.
    final: the last block of the stack (always has a projector).
    dtype: compute dtype.
  """

  features: int
  kernel: int = 3
  dilation: int = 1
  final: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc, keep_bt=None):
    """``keep_bt`` (bool [B, T], optional): zero every conv output outside it (see
    ``TS2VecEncoder.zero_invalid``)."""
    zero = (lambda v: v) if keep_bt is None else (lambda v: jnp.where(keep_bt[..., None], v, 0))
    c = x_btc.shape[-1]
    residual = x_btc
    if c != self.features or self.final:
      residual = nn.Conv(self.features, kernel_size=(1,), dtype=self.dtype,
                         kernel_init=torch_kernel_init, bias_init=torch_bias_init(c),
                         name="projector")(x_btc)
    conv = dict(kernel=self.kernel, dilation=self.dilation, dtype=self.dtype)
    y = zero(SamePadConv(self.features, **conv, name="conv1")(_gelu(x_btc)))
    y = SamePadConv(self.features, **conv, name="conv2")(_gelu(y))
    return zero(y + residual)


class TS2VecEncoder(nn.Module):
  """TS2Vec's encoder, [B, T, C] -> per-timestamp representations [B, T, out_dim].

  As the official ``TSEncoder``: timestamps where any channel is NaN are invalid and set to 0;
  ``Linear(C, hidden)`` per timestamp; a keep-mask [B, T] (training: Bernoulli(1 - mask_prob) per
  timestamp, drawn from the ``'mask'`` rng collection; evaluation: all kept; an explicit ``mask``
  overrides both) and'ed with ``valid`` and the NaN mask zeroes the projected vectors; blocks
  ``i = 0..depth`` with dilation ``2**i`` (width ``hidden``, ``out_dim`` for the last); then
  ``Dropout(repr_dropout)`` (``'dropout'`` rng collection, training only).

  Attributes:
    hidden: width of the projection and of the first ``depth`` blocks (official 64).
    out_dim: representation width (official 320).
    depth: blocks of width ``hidden``; one more maps to ``out_dim`` (official 10).
    kernel: conv kernel size (official 3).
    repr_dropout: dropout on the representations (official 0.1).
    mask_prob: probability that a timestamp is masked in training (official 0.5, ``binomial``).
    zero_invalid: also zero every conv output at timestamps outside ``valid``. With a series (or a
      crop) at the front of a longer buffer, this equals encoding it alone with the official zero
      padding; without it the convs read the zeroed projections of the invalid timestamps but
      also their own bias-driven outputs there (the official behaviour for NaN timestamps).
    dtype: compute dtype; parameters and the output stay float32.
  """

  hidden: int = 64
  out_dim: int = 320
  depth: int = 10
  kernel: int = 3
  repr_dropout: float = 0.1
  mask_prob: float = 0.5
  zero_invalid: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc, *, valid=None, mask=None, train: bool = False):
    """Encodes a batch of series.

    Args:
      x_btc: float [B, T, C]; NaN marks a missing value (its whole timestamp becomes invalid).
      valid: optional bool [B, T], True where a timestamp is data.
      mask: optional bool [B, T], True = keep; replaces the random mask (and applies at eval).
      train: draw the random timestamp mask and apply dropout.

    Returns:
      float32 [B, T, out_dim].
    """
    b, t, c = x_btc.shape
    x_btc, finite_bt = _nan_free(x_btc.astype(jnp.float32))
    valid_bt = jnp.ones((b, t), bool) if valid is None else valid.astype(bool)
    h = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=torch_kernel_init,
                 bias_init=torch_bias_init(c), name="input_fc")(x_btc.astype(self.dtype))
    if mask is None and train and self.mask_prob > 0:
      mask = jax.random.bernoulli(self.make_rng("mask"), 1.0 - self.mask_prob, (b, t))
    keep_bt = valid_bt & finite_bt
    if mask is not None:
      keep_bt = keep_bt & mask.astype(bool)
    h = jnp.where(keep_bt[..., None], h, 0)
    widths = [self.hidden] * self.depth + [self.out_dim]
    for i, width in enumerate(widths):
      h = TS2VecBlock(width, kernel=self.kernel, dilation=2**i, final=i == self.depth,
                      dtype=self.dtype, name=f"block{i}")(
                        h, valid_bt if self.zero_invalid else None)
    h = nn.Dropout(self.repr_dropout, deterministic=not train)(h)
    return h.astype(jnp.float32)


def ts2vec_receptive_field(depth: int = 10, kernel: int = 3) -> int:
  """Timestamps one output of :class:`TS2VecEncoder` reads: ``1 + sum_i 2 (kernel - 1) 2**i``.

  The window is centred for odd kernels: output t reads inputs ``t - r .. t + r`` with
  ``r = (receptive_field - 1) // 2``.
  """
  return 1 + sum(2 * (kernel - 1) * 2**i for i in range(depth + 1))


# ---------------------------------------------------------------------------------------------
# T-Loss causal CNN.


def weight_norm_kernel(v, g):
  """PyTorch's ``weight_norm`` (``dim=0``): ``g * v / ||v||`` with one norm per output channel.

  ``v``: a flax conv kernel [k, C_in, C_out]; ``g``: [C_out].
  """
  return g * v / jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))))


class CausalConv(nn.Module):
  """A weight-normalised causal conv, [B, T, C] -> [B, T, F]: output t reads inputs <= t.

  As ``weight_norm(Conv1d(padding=(kernel - 1) * dilation))`` followed by ``Chomp1d``: left
  zero-padding only. Parameters ``v`` (the direction, PyTorch's init), ``g`` (initialised to
  ``||v||``, so the weight equals ``v`` at init) and ``bias``.
  """

  features: int
  kernel: int = 3
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc):
    c = x_btc.shape[-1]
    v = self.param("v", torch_kernel_init, (self.kernel, c, self.features))
    g = self.param("g", lambda _: jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1))))
    bias = self.param("bias", torch_bias_init(self.kernel * c), (self.features,))
    w = weight_norm_kernel(v, g).astype(self.dtype)
    x = x_btc.astype(self.dtype)
    if self.dilation >= x_btc.shape[1]:
      # Every tap but the last reads only the left padding (the deep blocks' dilations exceed
      # short series): the same output at a fraction of the work (as _TapConv).
      y = jnp.einsum("btc,cf->btf", x, w[-1])
    else:
      y = jax.lax.conv_general_dilated(
        x, w, window_strides=(1,), padding=[((self.kernel - 1) * self.dilation, 0)],
        rhs_dilation=(self.dilation,), dimension_numbers=("NWC", "WIO", "NWC"))
    return y + bias.astype(self.dtype)


class CausalConvBlock(nn.Module):
  """The official ``CausalConvolutionBlock``: ``lrelu(conv2(lrelu(conv1(x)))) + residual``.

  The residual is ``x``, or a 1x1 conv (``upordownsample``, not weight-normalised) when the widths
  differ. ``final`` adds a LeakyReLU after the sum; the official ``CausalCNN`` never sets it.
  """

  features: int
  kernel: int = 3
  dilation: int = 1
  final: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_btc):
    c = x_btc.shape[-1]
    conv = dict(kernel=self.kernel, dilation=self.dilation, dtype=self.dtype)
    y = nn.leaky_relu(CausalConv(self.features, **conv, name="conv1")(x_btc), 0.01)
    y = nn.leaky_relu(CausalConv(self.features, **conv, name="conv2")(y), 0.01)
    residual = x_btc
    if c != self.features:
      residual = nn.Conv(self.features, kernel_size=(1,), dtype=self.dtype,
                         kernel_init=torch_kernel_init, bias_init=torch_bias_init(c),
                         name="upordownsample")(x_btc)
    out = y + residual
    return nn.leaky_relu(out, 0.01) if self.final else out


class CausalCNNEncoder(nn.Module):
  """T-Loss's encoder, [B, T, C] -> [B, out_dim] (or per-timestamp features with ``pool=False``).

  As the official ``CausalCNNEncoder``: ``CausalCNN`` (blocks ``i = 0..depth-1`` of width
  ``channels`` with dilation ``2**i``, then one of width ``reduced_size`` with dilation
  ``2**depth``), ``AdaptiveMaxPool1d(1)`` over time, ``Linear(reduced_size, out_dim)``.

  ``valid`` only chooses the timestamps pooled over: the convolutions read the whole buffer (a NaN
  timestamp is set to 0 and not pooled). Being causal, a prefix ``valid`` (padding at the end)
  equals encoding the series cropped to its length. A window ``[s, s + L)`` given as ``valid``
  pools the window's features computed with the series' history before ``s``; the official T-Loss
  encodes the cropped window alone, which :func:`shift_to_front` reproduces exactly.

  Attributes:
    channels: width of the first ``depth`` blocks (official 40).
    depth: blocks of width ``channels`` (official 10).
    reduced_size: width of the last block, the pooled features (official 160).
    out_dim: representation width (official 320).
    kernel: conv kernel size (official 3).
    final_activation: LeakyReLU after the last block's sum (the block's ``final`` flag; the
      official encoder leaves it off).
    dtype: compute dtype; parameters and the output stay float32.
  """

  channels: int = 40
  depth: int = 10
  reduced_size: int = 160
  out_dim: int = 320
  kernel: int = 3
  final_activation: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    conv = dict(kernel=self.kernel, dtype=self.dtype)
    self.blocks = [CausalConvBlock(self.channels, dilation=2**i, **conv)
                   for i in range(self.depth)] + [
      CausalConvBlock(self.reduced_size, dilation=2**self.depth, final=self.final_activation,
                      **conv)]
    self.linear = nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=torch_kernel_init,
                           bias_init=torch_bias_init(self.reduced_size))

  def features(self, x_btc):
    """Per-timestamp features before pooling, float32 [B, T, reduced_size] (NaN timestamps -> 0)."""
    h, _ = _nan_free(x_btc.astype(jnp.float32))
    h = h.astype(self.dtype)
    for block in self.blocks:
      h = block(h)
    return h.astype(jnp.float32)

  def head(self, pooled_bd):
    """``Linear(reduced_size, out_dim)`` on pooled features [B, reduced_size] -> [B, out_dim]."""
    return self.linear(pooled_bd.astype(self.dtype)).astype(jnp.float32)

  def __call__(self, x_btc, *, valid=None, pool: bool = True, train: bool = False):
    """Encodes a batch of series.

    Args:
      x_btc: float [B, T, C]; NaN marks a missing value (its whole timestamp is set to 0).
      valid: optional bool [B, T]: the timestamps to max-pool over (all by default).
      pool: False returns the per-timestamp features [B, T, reduced_size] (pool them with
        :func:`max_pool_time`, then :meth:`head`).
      train: unused (no dropout or normalisation); kept for the common signature.

    Returns:
      float32 [B, out_dim], or [B, T, reduced_size] with ``pool=False``.
    """
    del train
    h = self.features(x_btc)
    if not pool:
      if self.is_initializing():  # Creates the head's parameters too.
        self.head(jnp.zeros((1, self.reduced_size), jnp.float32))
      return h
    finite_bt = ~jnp.isnan(x_btc).any(axis=-1)
    keep_bt = finite_bt if valid is None else finite_bt & valid.astype(bool)
    return self.head(max_pool_time(h, keep_bt))


def shift_to_front(x_btc: jax.Array, start_b, length) -> tuple[jax.Array, jax.Array]:
  """Moves the window ``[start_b, start_b + length)`` of each row to t = 0.

  Row b becomes ``x[b, (start_b + t) mod T]``, zeroed (and invalid) at ``t >= length``. Causal
  convolutions with left zero-padding make :class:`CausalCNNEncoder` applied to the result with
  ``valid`` equal to the encoder applied to each cropped window ``x[b, start_b : start_b +
  length_b]`` alone, as the official T-Loss encodes its sampled sub-series, with static shapes.

  Args:
    x_btc: [B, T, C].
    start_b: int [B] (or a scalar), the first timestamp of each window.
    length: int [B] or a scalar, the window lengths; ``start_b + length <= T``.

  Returns:
    ``(x_shifted [B, T, C], valid bool [B, T])``.
  """
  b, t = x_btc.shape[:2]
  start_b = jnp.broadcast_to(jnp.asarray(start_b, jnp.int32), (b,))
  length_b = jnp.broadcast_to(jnp.asarray(length, jnp.int32), (b,))
  idx_bt = (start_b[:, None] + jnp.arange(t)[None, :]) % t
  taken = jnp.take_along_axis(x_btc, idx_bt[..., None], axis=1)
  valid_bt = jnp.arange(t)[None, :] < length_b[:, None]
  return jnp.where(valid_bt[..., None], taken, 0).astype(x_btc.dtype), valid_bt
