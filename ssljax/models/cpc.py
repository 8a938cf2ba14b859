"""CPC's networks (van den Oord, Li & Vinyals, "Representation Learning with Contrastive
Predictive Coding", 2018, section 3.1): a strided convolutional encoder of the raw waveform, a
GRU that summarises the past frames into a context, and the per-step linear predictors.

Shapes: the waveform is ``x`` float32 [B, L, C] (C = 1 for audio) with ``valid`` bool [B, L]
(a prefix: the samples that are data); the encoder gives frames ``z`` [B, F, D]; the GRU context
``c`` [B, F, H]; the predictors ``W_k c_t`` [K, B, F, D].

Padding: the convolutions are unpadded ('VALID'), so frame ``f`` reads the samples
``[f * S, f * S + R)`` (S = product of the strides, R = the receptive field); a frame is valid
when all of them are data (:func:`num_frames` of the clip's length). The GRU runs forward in
time, so the context at a valid frame reads valid frames only: nothing computed at a valid frame
depends on the padding.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.data.series_views import SeriesRows

NORMS = ("layer", "none")


def num_frames(length, kernels: Sequence[int], strides: Sequence[int]):
  """Frames of unpadded strided convolutions over ``length`` samples: per layer
  ``max(0, (n - kernel) // stride + 1)``. Works on ints and on integer arrays."""
  n = length
  for k, s in zip(kernels, strides, strict=True):
    n = jnp.maximum((n - k) // s + 1, 0) if isinstance(n, jax.Array) else max((n - k) // s + 1, 0)
  return n


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
  """Samples one output frame reads: ``1 + sum_i (k_i - 1) prod_{j<i} s_j``."""
  field, jump = 1, 1
  for k, s in zip(kernels, strides, strict=True):
    field += (k - 1) * jump
    jump *= s
  return field


class CPCEncoder(nn.Module):
  """g_enc: strided 1-D convolutions with ReLU, [B, L, C] -> [B, F, channels].

  The paper's: kernels (10, 8, 4, 4, 4), strides (5, 4, 2, 2, 2) (160 samples per frame, 10 ms at
  16 kHz), 512 channels. ``norm='layer'`` normalises each frame over its channels before the
  ReLU (per frame, so padding never enters the statistics; the paper names no normalisation,
  ``'none'``).
  """

  channels: int = 512
  kernels: tuple[int, ...] = (10, 8, 4, 4, 4)
  strides: tuple[int, ...] = (5, 4, 2, 2, 2)
  norm: str = "layer"

  @nn.compact
  def __call__(self, x_blc: jax.Array) -> jax.Array:
    h = x_blc.astype(jnp.float32)
    for i, (k, s) in enumerate(zip(self.kernels, self.strides, strict=True)):
      h = nn.Conv(self.channels, (k,), strides=(s,), padding="VALID", name=f"conv{i}")(h)
      if self.norm == "layer":
        h = nn.LayerNorm(name=f"norm{i}")(h)
      h = nn.relu(h)
    return h


class CPCNet(nn.Module):
  """The backbone: encoder + GRU context. ``__call__`` gives a clip's representation, the mean of
  the context over its valid frames [B, H]; :meth:`sequences` gives ``(z, c, valid frames)``.

  Reads ``{"series" [B, L, C], "valid" [B, L]}`` or ``{"series", "length"}``.
  """

  encoder: CPCEncoder
  context_dim: int = 256

  def setup(self):
    self.gru = nn.RNN(nn.GRUCell(features=self.context_dim), name="gru")

  def sequences(self, batch):
    """``(z [B, F, D], c [B, F, H], valid_frames bool [B, F])``."""
    if "valid" not in batch:
      batch = SeriesRows()(None, batch)
    x = batch["series"]
    # ``valid`` is a prefix (the data, then the padding), so its count is the clip's length.
    length = jnp.sum(batch["valid"].astype(jnp.int32), axis=1)
    z = self.encoder(x)
    c = self.gru(z)
    frames = num_frames(length, self.encoder.kernels, self.encoder.strides)
    return z, c, jnp.arange(z.shape[1])[None, :] < frames[:, None]

  def __call__(self, batch, *, train: bool = False):
    del train  # No dropout, no BatchNorm.
    _, c, valid = self.sequences(batch)
    return mean_pool_time(c, valid)


def mean_pool_time(h_btd: jax.Array, valid_bt: jax.Array) -> jax.Array:
  """[B, T, D] -> [B, D]: the mean over each row's valid steps (0 for a row with none)."""
  w = valid_bt.astype(h_btd.dtype)[..., None]
  return jnp.sum(h_btd * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


class CPCPredictors(nn.Module):
  """The K linear maps W_k (no bias, paper eq. 3): [B, F, H] -> [K, B, F, D] with
  ``out[k - 1] = W_k c_t``, the prediction of z_{t+k}. One matmul for all k. ``zero_init``:
  every W_k starts at 0 (else LeCun normal)."""

  num_steps: int
  out_dim: int
  zero_init: bool = False

  @nn.compact
  def __call__(self, c_bth: jax.Array) -> jax.Array:
    b, t, _ = c_bth.shape
    init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
    out = nn.Dense(self.num_steps * self.out_dim, use_bias=False, kernel_init=init,
                   name="w")(c_bth)
    return out.reshape(b, t, self.num_steps, self.out_dim).transpose(2, 0, 1, 3)
