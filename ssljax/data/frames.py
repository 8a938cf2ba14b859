"""Frame projections of a time series: the unitary Fourier basis and a complex Morlet wavelet frame.

Demirel & Holz, "Learning Without Augmenting: Unsupervised Time Series Representation Learning
via Frame Projections", NeurIPS 2025 (the official code's ``isoalign``). Instead of augmenting a
series, the method projects it onto two other frames and encodes each projection:

* :func:`fourier_view`: the orthonormal (unitary) real DFT along time,
  ``X[k] = T^{-1/2} sum_t x[t] exp(-2 pi i k t / T)`` for ``k = 0..T//2`` (numpy's
  ``rfft(norm="ortho")``), returned as amplitude ``|X|`` and phase ``angle(X)``. Parseval holds:
  ``sum |x|^2 = |X_0|^2 + 2 sum_{0<k<T/2} |X_k|^2 (+ |X_{T/2}|^2 for even T)``.
* :func:`cwt`: the continuous wavelet transform with PyWavelets' ``'cmor1-1'`` (complex Morlet,
  bandwidth B = 1, centre frequency C = 1), ``psi(t) = (pi B)^{-1/2} exp(-t^2 / B)
  exp(2 pi i C t)``, at 48 scales ``geomspace(1, 128, 48)``: 48 coefficients per timestamp, an
  overcomplete frame. The official code runs ``pywt.cwt`` (``method='conv'``, ``precision=12``)
  on the CPU for the whole training set and keeps ``|CWT|``.

Here the CWT is what ``pywt.cwt`` computes, as one fixed linear operator: PyWavelets integrates
the wavelet on ``2**precision`` points of [-8, 8] (``int_psi = cumsum(psi) * step``), resamples
it for scale ``a`` at ``floor(k / (a * step))``, ``k = 0..a*16`` (reversed), convolves, takes
``-sqrt(a) * diff`` and keeps the centre T outputs. Every step is linear and shift-invariant, so
scale ``a`` is a convolution ``coef_a[t] = sum_u x[u] h_a[t - u]`` with a kernel ``h_a`` on lags
``-(T-1)..T-1`` (:func:`cwt_kernels`, float64 NumPy, computed once per series length). On device
it is applied by FFT (:func:`cwt`), so nothing depends on PyWavelets and the cost is
``O(S T log T)`` per series and channel instead of the official Python double loop (pitfall 5 of
the spec). ``sampling_period`` in ``pywt.cwt`` only labels the frequencies, so the sampling rate
(25 Hz in the official PPG runs) does not enter. The wavelet is conjugated as recent PyWavelets
does; for a real series that conjugates the coefficients and leaves ``|CWT|`` unchanged.

:class:`FrameViews` is the method's one view: a pure ``(rng, batch) -> view`` function that
computes both projections of the batch on device, deterministically (no augmentation).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.data.series_views import valid_mask
from ssljax.errors import ConfigError

# PyWavelets' complex Morlet lives on [-8, 8] (``lower_bound`` / ``upper_bound`` of 'cmor').
MORLET_SUPPORT = (-8.0, 8.0)


def fourier_view(x_btc: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The unitary real DFT of each channel along time: ``(|X|, angle(X))``.

  Args:
    x_btc: float [B, T, C].

  Returns:
    ``(amplitude, phase)``, float32 [B, T//2 + 1, C] each; ``X = rfft(x, axis=time,
    norm="ortho")``, phase in (-pi, pi].
  """
  spec = jnp.fft.rfft(x_btc.astype(jnp.float32), axis=1, norm="ortho")
  return jnp.abs(spec).astype(jnp.float32), jnp.angle(spec).astype(jnp.float32)


def morlet_scales(num_scales: int = 48, min_scale: float = 1.0,
                  max_scale: float = 128.0) -> np.ndarray:
  """``geomspace(min_scale, max_scale, num_scales)``, the official scales (float64 [S])."""
  return np.geomspace(float(min_scale), float(max_scale), int(num_scales))


def scale_frequencies(scales, *, center: float = 1.0) -> np.ndarray:
  """Centre frequency of each scale in cycles per sample: ``C / a`` (pywt.scale2frequency)."""
  return float(center) / np.asarray(scales, np.float64)


def _integrated_morlet(bandwidth: float, center: float, precision: int):
  """``(conj(int_psi), step)``: the complex Morlet's running integral on 2**precision points."""
  lo, hi = MORLET_SUPPORT
  grid = np.linspace(lo, hi, 2 ** int(precision))
  psi = (np.exp(2j * np.pi * center * grid) * np.exp(-grid ** 2 / bandwidth)
         / np.sqrt(np.pi * bandwidth))
  step = grid[1] - grid[0]
  return np.conj(np.cumsum(psi) * step), step


@functools.lru_cache(maxsize=16)
def cwt_kernels(length: int, scales: tuple[float, ...], *, bandwidth: float = 1.0,
                center: float = 1.0, precision: int = 12) -> np.ndarray:
  """The convolution kernel of each scale of PyWavelets' CWT on series of ``length`` samples.

  ``coef_a[t] = sum_u x[u] h_a[t - u]`` for ``t, u`` in ``[0, length)``; see the module
  docstring for the steps of ``pywt.cwt`` this reproduces.

  Args:
    length: T, the series length.
    scales: the S scales (floats > 0).
    bandwidth, center: the complex Morlet's B and C (``'cmorB-C'``).
    precision: PyWavelets' ``precision`` (the wavelet is sampled on ``2**precision`` points).

  Returns:
    complex128 [S, 2T - 1]: ``h_a`` at lags ``-(T-1), ..., T-1``.
  """
  t = int(length)
  int_psi, step = _integrated_morlet(float(bandwidth), float(center), int(precision))
  width = MORLET_SUPPORT[1] - MORLET_SUPPORT[0]
  out = np.zeros((len(scales), 2 * t - 1), np.complex128)
  lags = np.arange(-(t - 1), t)
  for i, a in enumerate(scales):
    idx = (np.arange(a * width + 1) / (a * step)).astype(int)  # floor, as PyWavelets
    g = int_psi[idx[idx < int_psi.size]][::-1]  # the resampled integral, reversed (length L)
    # conv = x * g has T + L - 1 outputs; diff leaves T + L - 2, of which the centre T are kept,
    # from floor((L - 2) / 2) on: coef[t] = -sqrt(a) (conv[s + t + 1] - conv[s + t]).
    s = (g.size - 2) // 2
    if g.size < 2:
      raise ConfigError(f"wavelet scale {a} is too small for the complex Morlet at precision "
                        f"{precision}; use scales >= 1")
    padded = np.concatenate([[0.0], g, [0.0]])  # padded[j + 1] = g[j], zero outside [0, L)

    def g_at(j, padded=padded, size=g.size):
      return padded[np.clip(j + 1, 0, size + 1)] * ((j >= -1) & (j <= size))

    out[i] = -np.sqrt(a) * (g_at(s + lags + 1) - g_at(s + lags))
  return out


def cwt_matrix(length: int, scales, **kwargs) -> np.ndarray:
  """The CWT as a dense operator, complex128 [S, T, T]: ``coef = W @ x`` (tests, small T)."""
  h = cwt_kernels(int(length), tuple(float(a) for a in scales), **kwargs)
  t = int(length)
  lag = np.arange(t)[:, None] - np.arange(t)[None, :]  # t - u
  return h[:, lag + t - 1]


@functools.lru_cache(maxsize=16)
def _kernel_spectrum(length: int, scales: tuple[float, ...], bandwidth: float, center: float,
                     precision: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(Re, Im) of the FFT of each scale's kernel, float32 [S, N], and the FFT size N.

  With ``N >= 2T - 1`` the outputs at ``T-1 .. 2T-2`` of the circular convolution of the
  zero-padded series with the lag-ordered kernel equal the linear ones (no wrap-around).
  """
  h = cwt_kernels(length, scales, bandwidth=bandwidth, center=center, precision=precision)
  n = 1 << int(np.ceil(np.log2(2 * length - 1)))
  spec = np.fft.fft(h, n, axis=-1)
  return spec.real.astype(np.float32), spec.imag.astype(np.float32), n


def cwt(x_btc: jax.Array, scales, *, bandwidth: float = 1.0, center: float = 1.0,
        precision: int = 12) -> jax.Array:
  """Complex CWT coefficients of every channel, as ``pywt.cwt(x, scales, 'cmorB-C')``.

  Args:
    x_btc: float [B, T, C].
    scales: the S scales.
    bandwidth, center, precision: see :func:`cwt_kernels`.

  Returns:
    complex64 [B, S, T, C].
  """
  b, t, c = x_btc.shape
  re, im, n = _kernel_spectrum(int(t), tuple(float(a) for a in scales), float(bandwidth),
                               float(center), int(precision))
  kernel_sn = jax.lax.complex(jnp.asarray(re), jnp.asarray(im))
  x_spec = jnp.fft.fft(jnp.moveaxis(x_btc.astype(jnp.float32), 1, -1), n, axis=-1)  # [B, C, N]
  y = jnp.fft.ifft(x_spec[:, :, None, :] * kernel_sn[None, None], axis=-1)  # [B, C, S, N]
  coef = y[..., t - 1: 2 * t - 1]  # [B, C, S, T]
  return jnp.transpose(coef, (0, 2, 3, 1)).astype(jnp.complex64)


@dataclasses.dataclass(frozen=True)
class FrameViews:
  """The method's view: the series and its two frame projections, computed on device.

  ``(rng, batch) -> {"series": [B, T, C], "valid": bool [B, T], "fourier_amp": [B, F, C],
  "fourier_phase": [B, F, C], "wavelet": [B, S, T, C]}`` with ``F = T//2 + 1`` and ``wavelet``
  the modulus of :func:`cwt`. Deterministic: ``rng`` is unused. A series shorter than the
  buffer (``length < T``, e.g. ``uea:JapaneseVowels``) is projected with its zero padding, as a
  shorter signal zero-padded to T (every view sees the same padded signal).

  Attributes:
    num_scales, min_scale, max_scale: the wavelet scales ``geomspace(min, max, num)``.
    bandwidth, center: the complex Morlet's B and C (official ``'cmor1-1'``).
    precision: PyWavelets' wavelet sampling precision (its default, 12).
  """

  num_scales: int = 48
  min_scale: float = 1.0
  max_scale: float = 128.0
  bandwidth: float = 1.0
  center: float = 1.0
  precision: int = 12
  modality = "series"

  def __post_init__(self):
    if int(self.num_scales) < 1:
      raise ConfigError(f"frame_projections.num_scales={self.num_scales} must be >= 1")
    if not 1.0 <= float(self.min_scale) <= float(self.max_scale):
      raise ConfigError(f"frame_projections.min_scale={self.min_scale} and max_scale="
                        f"{self.max_scale} must satisfy 1 <= min_scale <= max_scale")
    if not (float(self.bandwidth) > 0 and float(self.center) > 0):
      raise ConfigError(f"frame_projections.bandwidth={self.bandwidth} and center="
                        f"{self.center} must be > 0")
    if not 4 <= int(self.precision) <= 16:
      raise ConfigError(f"frame_projections.precision={self.precision} must be in [4, 16] "
                        "(PyWavelets' default is 12)")

  @property
  def scales(self) -> np.ndarray:
    return morlet_scales(self.num_scales, self.min_scale, self.max_scale)

  def project(self, x_btc: jax.Array) -> dict[str, jax.Array]:
    """The two projections of ``x`` (no ``series`` / ``valid``)."""
    amp, phase = fourier_view(x_btc)
    coef = cwt(x_btc, self.scales, bandwidth=self.bandwidth, center=self.center,
               precision=self.precision)
    return {"fourier_amp": amp, "fourier_phase": phase,
            "wavelet": jnp.abs(coef).astype(jnp.float32)}

  def __call__(self, rng, batch):
    del rng  # Projections, not augmentations.
    x = batch["series"].astype(jnp.float32)
    valid = batch["valid"] if "valid" in batch else valid_mask(batch["length"], x.shape[1])
    return {"series": x, "valid": valid, **self.project(x)}
