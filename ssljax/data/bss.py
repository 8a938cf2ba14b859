"""Batch Styles Standardization (BSS): one Fourier-amplitude "style" for a whole batch of a view.

Scalbert, Vakalopoulou & Couzinié-Devy, "Towards Domain-Invariant Self-Supervised Learning with
Batch Styles Standardization" (ICLR 2024). For a batch ``X_1..X_N`` of one augmented view, draw one
area ratio ``r ~ U(r_min, r_max)`` and one reference index ``j``; every image keeps its own Fourier
phase and high-frequency amplitude, but takes the reference's low-frequency amplitude::

  F_i = FFT2(X_i)                       (per channel, over H and W)
  box = {(k_y, k_x) : |k_y| <= h, |k_x| <= w},  h = floor(sqrt(r) H / 2), w = floor(sqrt(r) W / 2)
  F'_i = |F_j| exp(i angle(F_i))  inside the box,  F_i  outside
  X'_i = Re(IFFT2(F'_i))

Choices, documented once here:

* **Box** (the library convention of ``shared/methods/bss.md``): signed frequencies, symmetric
  about DC. After ``fftshift`` it is rows ``[H//2 - h, H//2 + h]`` x cols ``[W//2 - w, W//2 + w]``;
  we build the same set directly on the unshifted spectrum (``|k| = min(k, n - k)``), which avoids
  the two shifts. The set is closed under ``k -> -k``, so Hermitian symmetry survives and the
  inverse FFT is real up to round-off. ``r == 0`` swaps nothing (not even DC); any ``r > 0``
  includes DC, so every output's per-channel mean becomes the reference's. ``r == 1`` swaps the
  whole amplitude.
* **DC** (the channel sums) is copied whole from the reference, sign included. The paper's
  amplitude swap keeps each image's own DC phase, i.e. the sign of its channel mean; for images
  with non-negative pixels (every DC phase is 0) the two are identical, but on normalised views a
  channel whose mean has the other sign would get ``-mean_j``. Copying DC makes BSS commute with the
  per-channel normalisation ``(x - mean) / std``, so applying it before or after normalising gives
  the same views, and every output's channel means equal the reference's (the spec's oracle).
* **Outside the box** the spectrum is passed through untouched (not rebuilt from amplitude and
  phase), so high frequencies are exact and ``r == 0`` is the identity up to FFT round-off.
* **Distributed training**: the function works on the *global* batch (a jitted global array sharded
  on ``data``); XLA fetches the reference's spectrum from whichever device holds it, so the whole
  global batch shares one style, as in the paper's single-GPU setting, rather than one style per
  device.
* No clipping: the output may leave the input's value range (e.g. [0, 1] or the normalised range);
  the encoders here take unbounded floats.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError


def check_bss_config(cfg: Any, where: str = "input.bss") -> tuple[float, float]:
  """Validates a BSS config entry (``r_min``, ``r_max``; ``enabled`` if present).

  Args:
    cfg: a ``ConfigDict`` or mapping with ``r_min`` and ``r_max`` (and optionally ``enabled``).
    where: the config path of ``cfg``, used in error messages.

  Returns:
    ``(r_min, r_max)`` as floats.

  Raises:
    ConfigError: one line naming the offending key unless ``0 <= r_min <= r_max <= 1``.
  """
  if "enabled" in cfg and not isinstance(cfg["enabled"], bool):
    raise ConfigError(f"{where}.enabled={cfg['enabled']!r} must be True or False")
  values = {}
  for key in ("r_min", "r_max"):
    if key not in cfg:
      raise ConfigError(f"{where}.{key} is missing; set a spectrum area ratio in [0, 1]")
    value = cfg[key]
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
        or not 0.0 <= value <= 1.0):
      raise ConfigError(f"{where}.{key}={value!r} must be a number in [0, 1] (a fraction of the "
                        "spectrum area)")
    values[key] = float(value)
  if values["r_min"] > values["r_max"]:
    raise ConfigError(f"{where}.r_min={values['r_min']!r} exceeds {where}.r_max="
                      f"{values['r_max']!r}; set r_min <= r_max")
  return values["r_min"], values["r_max"]


def _sample_style(rng: jax.Array, batch: int, *, r_min: float, r_max: float):
  """Draws the area ratio ``r ~ U(r_min, r_max)`` and the reference index ``j ~ U{0..batch-1}``."""
  r_key, j_key = jax.random.split(rng)
  r = jax.random.uniform(r_key, (), jnp.float32, minval=r_min, maxval=r_max)
  j = jax.random.randint(j_key, (), 0, batch)
  return r, j


def _low_frequency_box(r: jax.Array, height: int, width: int) -> jax.Array:
  """Boolean ``[H, W]`` mask of the symmetric low-frequency box on the unshifted spectrum."""
  r = jnp.asarray(r, jnp.float32)
  root = jnp.sqrt(r)
  h = jnp.floor(root * height / 2)
  w = jnp.floor(root * width / 2)
  ky = jnp.arange(height)
  kx = jnp.arange(width)
  # |signed frequency| of each unshifted index (Nyquist of an even side counts as n / 2).
  ky = jnp.minimum(ky, height - ky)
  kx = jnp.minimum(kx, width - kx)
  box = (ky[:, None] <= h) & (kx[None, :] <= w)
  return box & (r > 0)  # r == 0 means no swap at all, not a DC-only swap.


def _restyle_spectrum(images: jax.Array, r: jax.Array, j: jax.Array) -> jax.Array:
  """The complex inverse FFT of the restyled spectra (its real part is the output).

  Args:
    images: float ``[B, H, W, C]``.
    r: scalar area ratio in [0, 1].
    j: scalar int reference index in ``[0, B)``.

  Returns:
    complex64 ``[B, H, W, C]``; the imaginary part is round-off.
  """
  _, height, width, _ = images.shape
  spectrum = jnp.fft.fft2(images.astype(jnp.float32), axes=(1, 2))  # [B, H, W, C] complex64
  reference = jnp.take(spectrum, j, axis=0)  # [H, W, C]
  # exp(i angle(F)): angle(0) = 0, so a zero coefficient takes the reference amplitude as real.
  swapped = jnp.abs(reference)[None] * jnp.exp(1j * jnp.angle(spectrum))
  # DC whole from the reference (module docstring): the sign of the mean as well as its size.
  is_dc = (jnp.arange(height) == 0)[:, None] & (jnp.arange(width) == 0)[None, :]
  swapped = jnp.where(is_dc[None, :, :, None], reference[None], swapped)
  box = _low_frequency_box(r, height, width)[None, :, :, None]  # all channels alike
  return jnp.fft.ifft2(jnp.where(box, swapped, spectrum), axes=(1, 2))


def standardize_batch_style(
  rng: jax.Array, images_bhwc: jax.Array, *, r_min: float, r_max: float
) -> jax.Array:
  """Gives every image of the batch the low-frequency Fourier amplitude of one random image.

  One ``r ~ U(r_min, r_max)`` and one reference index for the whole batch (apply it to each view
  separately, with that view's key, so views of one image get different styles).

  Args:
    rng: PRNG key.
    images_bhwc: float32 ``[B, H, W, C]`` (one view of the batch, after augmentation).
    r_min: smallest fraction of the spectrum area to swap, in [0, 1].
    r_max: largest fraction, in ``[r_min, 1]``.

  Returns:
    ``[B, H, W, C]`` in the input's dtype: the real part of the inverse FFT.
  """
  if images_bhwc.ndim != 4:
    raise ValueError(f"standardize_batch_style expects [B, H, W, C] images, got shape "
                     f"{images_bhwc.shape}")
  r, j = _sample_style(rng, images_bhwc.shape[0], r_min=r_min, r_max=r_max)
  return jnp.real(_restyle_spectrum(images_bhwc, r, j)).astype(images_bhwc.dtype)
