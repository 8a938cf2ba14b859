"""EEGFormer's networks (Chen et al., "EEGFormer: Towards Transferable and Interpretable Large-Scale
EEG Foundation Model", arXiv 2401.10278): spectral patches, a channel-independent transformer
encoder, a vector quantiser and a shallow transformer decoder.

No official code exists; the pieces follow the paper's description as third-party summaries give
it (the spec in the project's methods notes), and every choice they leave open is a field:

* Input features (:func:`spectral_features`): per channel, the amplitude of the FFT of the whole
  series (``window=0``: one FFT per segment, the paper's 12-s windows) or of consecutive
  non-overlapping windows of ``window`` samples (their spectra concatenated), a Hann or
  rectangular taper, log or linear amplitude; then instance normalisation per channel
  (:func:`instance_norm`). A sequence of L values per channel.
* Patching (:func:`unfold_patches`): patches of P values with stride S along that sequence,
  ``N = floor((L - P) / S) + 1`` of them (:func:`num_patches`).
* :class:`PatchEncoder`: ``e_{c,n} = W_p x_{c,n} + W_pos[n]`` (learned W_p: P -> D, learned
  position embedding), masked patches' ``W_p x`` replaced by a learned mask token, then
  pre-LN transformer blocks (``ssljax.models.vit.TransformerBlock``) over each channel's patch
  sequence on its own (channels folded into the batch: one set of weights, no mixing across
  channels) and a final LayerNorm: ``h`` [B, C, N, D].
* :func:`vector_quantize`: the nearest codebook vector ``v_k*``, ``k* = argmin_k ||h - v_k||``,
  with the straight-through gradient ``q = h + sg(v - h)``.
* :class:`PatchDecoder`: a Dense to the decoder width, a learned position embedding, a few
  transformer blocks and a linear head to the patch length P: the reconstructed patches.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError
from ssljax.models import vit

TAPERS = ("hann", "rect")
AMPLITUDES = ("log", "linear")
POOLS = ("mean", "channels")


# --------------------------------------------------------------------------------- features


def spectral_length(t: int, window: int) -> int:
  """L, the length of each channel's spectral sequence for series of T timestamps.

  ``window=0``: T // 2 + 1 frequency bins of one FFT over the series. ``window=W > 0``: the
  ``T // W`` whole windows' ``W // 2 + 1`` bins each, one after the other.
  """
  if window == 0:
    return t // 2 + 1
  return (t // window) * (window // 2 + 1)


def _periodic_hann(n, size: int) -> jax.Array:
  """[..., size]: the periodic Hann taper of length ``n`` (``0.5 - 0.5 cos(2 pi t / n)`` for
  ``t < n``, scipy's ``get_window('hann', n)``), zero from ``n`` on; 1 where ``n == 1``."""
  n = jnp.asarray(n, jnp.float32)[..., None]
  t = jnp.arange(size, dtype=jnp.float32)
  w = 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * t / jnp.maximum(n, 1.0))
  w = jnp.where(n > 1, w, 1.0)
  return jnp.where(t < n, w, 0.0)


def spectral_features(x_btc: jax.Array, length_b: jax.Array | None = None, *, window: int = 0,
                      taper: str = "hann", amplitude: str = "log",
                      log_eps: float = 1e-3) -> jax.Array:
  """Per-channel FFT amplitudes, the encoder's input sequence (EEGFormer's frequency domain).

  ``window=0``: each channel's amplitude spectrum ``|rfft(w * x)| / n`` over the whole series,
  ``n`` the row's ``length`` (padding after it is zero, which the FFT sees as zero-padding: the
  spectrum of the valid part, interpolated) and ``w`` the taper over those ``n`` samples.
  ``window=W > 0``: the same over each of the ``T // W`` consecutive windows of W samples
  (``n = W``; the tail is dropped), spectra concatenated in time order; padded windows give the
  spectrum of zeros. ``amplitude='log'`` returns ``log(a + log_eps)``, ``'linear'`` ``a``.

  Args:
    x_btc: float [B, T, C] series.
    length_b: int [B] valid timestamps per row (None: all T); read only when ``window=0``.
    window, taper, amplitude, log_eps: see above.

  Returns:
    float32 [B, C, L], L = :func:`spectral_length` (T, window).
  """
  b, t, c = x_btc.shape
  x_bct = jnp.swapaxes(x_btc.astype(jnp.float32), 1, 2)
  if window == 0:
    n_b = jnp.full((b,), t, jnp.int32) if length_b is None else jnp.asarray(length_b, jnp.int32)
    w_bt = _periodic_hann(n_b, t) if taper == "hann" else (
        jnp.arange(t)[None, :] < n_b[:, None]).astype(jnp.float32)
    amp = jnp.abs(jnp.fft.rfft(x_bct * w_bt[:, None, :], axis=-1))
    amp = amp / jnp.maximum(n_b, 1).astype(jnp.float32)[:, None, None]
  else:
    frames = t // window
    x_bcfw = x_bct[..., :frames * window].reshape(b, c, frames, window)
    w_w = _periodic_hann(window, window) if taper == "hann" else jnp.ones((window,))
    amp = jnp.abs(jnp.fft.rfft(x_bcfw * w_w, axis=-1)) / window
    amp = amp.reshape(b, c, frames * (window // 2 + 1))
  return jnp.log(amp + log_eps) if amplitude == "log" else amp


def instance_norm(x_bcl: jax.Array, *, eps: float = 1e-5) -> jax.Array:
  """Each (series, channel) standardised over its L values: ``(x - mean) / sqrt(var + eps)``."""
  mean = jnp.mean(x_bcl, axis=-1, keepdims=True)
  var = jnp.var(x_bcl, axis=-1, keepdims=True)
  return (x_bcl - mean) / jnp.sqrt(var + eps)


# --------------------------------------------------------------------------------- patching


def num_patches(length: int, patch: int, stride: int) -> int:
  """``N = floor((L - P) / S) + 1``: the patches of length P, stride S that fit in L values."""
  return (length - patch) // stride + 1


def unfold_patches(x_bcl: jax.Array, patch: int, stride: int) -> jax.Array:
  """[B, C, L] -> [B, C, N, P]: patch n is ``x[..., n S : n S + P]`` (values past the last
  whole patch are dropped)."""
  n = num_patches(x_bcl.shape[-1], patch, stride)
  if n < 1:
    raise ValueError(f"a sequence of {x_bcl.shape[-1]} values holds no patch of {patch}")
  idx_np = stride * jnp.arange(n)[:, None] + jnp.arange(patch)[None, :]
  return x_bcl[..., idx_np]


def fold_patches(patches_bcnp: jax.Array) -> jax.Array:
  """[B, C, N, P] -> [B, C, N * P]: the inverse of :func:`unfold_patches` when S = P."""
  *lead, n, p = patches_bcnp.shape
  return patches_bcnp.reshape(*lead, n * p)


# -------------------------------------------------------------------------------- quantiser


def vector_quantize(h_md: jax.Array, codebook_kd: jax.Array):
  """Nearest-codebook quantisation with the straight-through gradient (VQ-VAE, van den Oord et
  al. 2017, eq. 1-2; EEGFormer's quantiser).

  Args:
    h_md: float [M, D] encoder outputs.
    codebook_kd: float [K, D] codebook V.

  Returns:
    ``(q_md, index_m, v_md)``: ``v = V[k*]`` with ``k* = argmin_k ||h - v_k||^2`` (int32 in
    [0, K)); ``q = h + sg(v - h)`` equals ``v`` in value and passes the gradient to ``h``
    unchanged (dq/dh = I). ``v`` keeps its gradient to the codebook (for the codebook loss).
  """
  h_md = h_md.astype(jnp.float32)
  codebook_kd = codebook_kd.astype(jnp.float32)
  # ||h - v||^2 = ||h||^2 - 2 h.v + ||v||^2; ||h||^2 does not change the argmin.
  d_mk = (jnp.sum(jnp.square(codebook_kd), axis=-1)[None, :]
          - 2.0 * jnp.matmul(h_md, codebook_kd.T, precision=jax.lax.Precision.HIGHEST))
  index_m = jnp.argmin(jax.lax.stop_gradient(d_mk), axis=-1).astype(jnp.int32)
  v_md = codebook_kd[index_m]
  q_md = h_md + jax.lax.stop_gradient(v_md - h_md)
  return q_md, index_m, v_md


def code_statistics(index_m: jax.Array, num_codes: int) -> dict[str, jax.Array]:
  """Usage of the codes in one batch: ``codes_used`` (codes hit at least once) and
  ``code_perplexity`` = exp(entropy of the code histogram), K when uniform, 1 when collapsed."""
  counts = jnp.zeros((num_codes,), jnp.float32).at[index_m].add(1.0)
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return {"codes_used": jnp.sum(counts > 0).astype(jnp.float32),
          "code_perplexity": jnp.exp(entropy)}


# ---------------------------------------------------------------------------------- modules


class PatchEncoder(nn.Module):
  """Patches [B, C, N, P] -> ``h`` [B, C, N, D], each channel's sequence encoded on its own.

  Parameters: ``patch_embed`` (Dense P -> D), ``pos_embed`` [N, D], ``mask_token`` [D],
  ``block0`` ... (:class:`ssljax.models.vit.TransformerBlock`) and ``norm`` (LayerNorm).

  Attributes:
    width: D. depth: transformer blocks. num_heads: attention heads (divide D).
    mlp_dim: the blocks' MLP width. dtype: compute dtype; outputs are float32.
  """

  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, patches_bcnp: jax.Array, mask_bcn: jax.Array | None = None) -> jax.Array:
    """``mask_bcn`` (bool, True = masked): those patches' embeddings become the mask token."""
    b, c, n, _ = patches_bcnp.shape
    e = nn.Dense(self.width, kernel_init=vit.dense_kernel_init, dtype=self.dtype,
                 name="patch_embed")(patches_bcnp.astype(self.dtype))
    token = self.param("mask_token", vit.token_init, (self.width,))
    if mask_bcn is not None:
      e = jnp.where(mask_bcn[..., None], token.astype(self.dtype), e)
    pos = self.param("pos_embed", vit.token_init, (n, self.width))
    x = (e + pos.astype(self.dtype)).reshape(b * c, n, self.width)  # Channels into the batch.
    for i in range(self.depth):
      x = vit.TransformerBlock(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
    return x.astype(jnp.float32).reshape(b, c, n, self.width)


class PatchDecoder(nn.Module):
  """Quantised tokens [B, C, N, D] -> reconstructed patches [B, C, N, P], per channel.

  Parameters: ``embed`` (Dense D -> width), ``pos_embed`` [N, width], ``block0`` ...,
  ``norm`` and ``pred`` (Dense width -> P).
  """

  patch: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, q_bcnd: jax.Array) -> jax.Array:
    b, c, n, _ = q_bcnd.shape
    dense = dict(kernel_init=vit.dense_kernel_init, dtype=self.dtype)
    x = nn.Dense(self.width, name="embed", **dense)(q_bcnd.astype(self.dtype))
    pos = self.param("pos_embed", vit.token_init, (n, self.width))
    x = (x + pos.astype(self.dtype)).reshape(b * c, n, self.width)
    for i in range(self.depth):
      x = vit.TransformerBlock(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
    x = nn.Dense(self.patch, name="pred", **dense)(x)
    return x.astype(jnp.float32).reshape(b, c, n, self.patch)


class EEGFormerEncoder(nn.Module):
  """The backbone: a series batch -> patches -> ``h``; called plainly, the pooled ``h``.

  A batch is ``{"series": [B, T, C], "length": [B]}`` or ``{"series", "valid": [B, T]}`` (a
  valid prefix). ``__call__`` returns the representation for probes: ``pool='mean'`` the mean of
  ``h`` over channels and patches, [B, D]; ``pool='channels'`` each channel's mean over patches,
  concatenated, [B, C * D].

  Attributes:
    encoder: the :class:`PatchEncoder`. patch, stride: P, S. window, taper, amplitude, log_eps:
    :func:`spectral_features`. pool: see above.
  """

  encoder: PatchEncoder
  patch: int
  stride: int
  window: int = 0
  taper: str = "hann"
  amplitude: str = "log"
  log_eps: float = 1e-3
  pool: str = "mean"

  def patches(self, batch) -> jax.Array:
    """The normalised spectral patches [B, C, N, P] (no parameters; the reconstruction target)."""
    x = batch["series"]
    length = batch["length"] if "length" in batch else jnp.sum(batch["valid"], axis=-1)
    f = spectral_features(x, length, window=self.window, taper=self.taper,
                          amplitude=self.amplitude, log_eps=self.log_eps)
    return unfold_patches(instance_norm(f), self.patch, self.stride)

  def tokens(self, batch, mask_bcn: jax.Array | None = None):
    """``(patches [B, C, N, P], h [B, C, N, D])``."""
    patches = self.patches(batch)
    return patches, self.encoder(patches, mask_bcn)

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    del train  # No dropout, no BatchNorm.
    _, h = self.tokens(batch)
    if self.pool == "mean":
      return jnp.mean(h, axis=(1, 2))
    return jnp.mean(h, axis=2).reshape(h.shape[0], -1)


class EEGFormerNet(nn.Module):
  """Encoder, the quantiser's input projection and the decoder (the codebook is held by the
  method: a parameter or EMA state).

  ``code_dim=0`` quantises ``h`` itself (codes of width D); ``code_dim=d > 0`` quantises a linear
  projection ``z = W_q h`` of width d (parameter ``quant_proj``; a low-dimensional code lookup),
  leaving the encoder's output, which the probes read, continuous.
  """

  encoder: EEGFormerEncoder
  decoder: PatchDecoder
  code_dim: int = 0

  def setup(self):
    self.quant_proj = (nn.Dense(self.code_dim, kernel_init=vit.dense_kernel_init)
                       if self.code_dim else None)

  def __call__(self, batch, *, train: bool = False):
    """Initialisation path: the decoder on the unquantised ``z`` (shapes only)."""
    del train
    _, h = self.encoder.tokens(batch)
    return self.decoder(self.project(h))

  def encode(self, batch, mask_bcn=None):
    """``(patches [B, C, N, P], h [B, C, N, D])``."""
    return self.encoder.tokens(batch, mask_bcn)

  def project(self, h_bcnd):
    """The quantiser's input ``z`` [B, C, N, code_dim or D]."""
    return h_bcnd if self.quant_proj is None else self.quant_proj(h_bcnd)

  def decode(self, q_bcnd):
    return self.decoder(q_bcnd)


def check_choice(value, choices, key: str) -> str:
  if value not in choices:
    raise ConfigError(f"{key}={value!r} is not supported; choose one of {', '.join(choices)}")
  return value
