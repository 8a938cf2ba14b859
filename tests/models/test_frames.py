"""Frame projections' transforms (unitary rFFT, complex Morlet CWT) and encoders.

References are float64 NumPy written here from the published definitions: numpy's FFT for the
unitary DFT, PyWavelets' ``cwt`` algorithm (``method='conv'``: the integrated wavelet resampled
per scale, ``np.convolve``, ``-sqrt(a) * np.diff``, the centre crop) re-implemented step by step,
and PyTorch's definitions of Conv1d / ConvTranspose1d written as loops.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.data import frames
from ssljax.models import frames as fm

SCALES = frames.morlet_scales()


def _pywt_cwt_reference(x, scales, *, bandwidth=1.0, center=1.0, precision=12):
  """pywt.cwt(x, scales, f'cmor{B}-{C}', method='conv') step by step, float64, complex [S, T]."""
  grid = np.linspace(-8.0, 8.0, 2 ** precision)
  psi = (np.exp(2j * np.pi * center * grid) * np.exp(-grid ** 2 / bandwidth)
         / np.sqrt(np.pi * bandwidth))
  step = grid[1] - grid[0]
  int_psi = np.conj(np.cumsum(psi) * step)
  out = []
  for a in scales:
    j = (np.arange(a * (grid[-1] - grid[0]) + 1) / (a * step)).astype(int)
    j = j[j < int_psi.size]
    conv = np.convolve(x, int_psi[j][::-1])
    coef = -np.sqrt(a) * np.diff(conv)
    d = (coef.size - x.size) / 2.0
    out.append(coef[math.floor(d):-math.ceil(d)] if d > 0 else coef)
  return np.asarray(out)


# ----------------------------------------------------------------------------------- Fourier


@pytest.mark.parametrize("t", [128, 150, 29])
def test_rfft_view_is_unitary_and_parseval_holds(t):
  x = np.random.default_rng(t).normal(size=(3, t, 2))
  amp, phase = jax.jit(frames.fourier_view)(jnp.asarray(x, jnp.float32))
  assert amp.shape == phase.shape == (3, t // 2 + 1, 2)
  want = np.fft.rfft(x, axis=1) / np.sqrt(t)
  np.testing.assert_allclose(amp, np.abs(want), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(amp) * np.exp(1j * np.asarray(phase)), want, atol=1e-5)
  # Parseval: |X_0|^2 + 2 sum_{0<k<T/2} |X_k|^2 (+ |X_{T/2}|^2 when T is even) = sum |x|^2.
  a2 = np.asarray(amp, np.float64) ** 2
  inner = a2[:, 1:-1] if t % 2 == 0 else a2[:, 1:]
  energy = a2[:, 0] + 2 * inner.sum(axis=1) + (a2[:, -1] if t % 2 == 0 else 0.0)
  np.testing.assert_allclose(energy, (x ** 2).sum(axis=1), rtol=1e-5)


# --------------------------------------------------------------------------------------- CWT


@pytest.mark.parametrize("t", [150, 29, 7])
def test_cwt_equals_pywavelets_algorithm(t):
  x = np.random.default_rng(t).normal(size=t)
  want = _pywt_cwt_reference(x, SCALES)
  got = np.asarray(jax.jit(lambda v: frames.cwt(v, SCALES))(jnp.asarray(x[None, :, None],
                                                                        jnp.float32)))
  assert got.shape == (1, 48, t, 1)
  scale = np.abs(want).max()
  np.testing.assert_allclose(got[0, :, :, 0], want, atol=2e-6 * scale)
  np.testing.assert_allclose(frames.cwt_matrix(t, SCALES) @ x, want, atol=1e-12 * scale)


def test_cwt_is_linear_and_shaped_channels_by_scales_by_time():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(2, 2, 100, 3))
  a, b = 1.7, -0.4
  f = jax.jit(lambda v: frames.cwt(v, SCALES))
  cx, cy, cxy = (np.asarray(f(jnp.asarray(v, jnp.float32))) for v in (x, y, a * x + b * y))
  assert cx.shape == (2, 48, 100, 3) and np.iscomplexobj(cx)  # [B, S, T, C]: (C, 48, T) each
  np.testing.assert_allclose(cxy, a * cx + b * cy, atol=1e-4 * np.abs(cxy).max())
  # Each channel is transformed on its own.
  solo = np.asarray(f(jnp.asarray(x[:, :, 1:2], jnp.float32)))
  np.testing.assert_allclose(solo[..., 0], cx[..., 1], atol=1e-5 * np.abs(solo).max())


@pytest.mark.parametrize("k", [10, 18, 25])
def test_a_sinusoid_peaks_at_the_scale_of_the_nearest_centre_frequency(k):
  # A sinusoid of frequency f = 1 / SCALES[k] cycles per sample (inside the Nyquist band), long
  # enough that the centre timestamps are free of edge effects at that scale.
  f = 1.0 / SCALES[k]
  t = 1024
  x = np.cos(2 * np.pi * f * np.arange(t) + 0.3)
  view = frames.FrameViews()
  out = jax.jit(view)(None, {"series": jnp.asarray(x[None, :, None], jnp.float32),
                             "length": jnp.asarray([t], jnp.int32)})
  energy = np.asarray(out["wavelet"])[0, :, t // 4: 3 * t // 4, 0].mean(axis=1)
  nearest = np.argmin(np.abs(frames.scale_frequencies(SCALES, center=1.0) - f))
  assert nearest == k
  assert int(np.argmax(energy)) == nearest, energy


def test_frame_views_give_every_projection():
  x = np.random.default_rng(1).normal(size=(4, 40, 2)).astype(np.float32)
  batch = {"series": jnp.asarray(x), "length": jnp.asarray([40, 40, 30, 12], jnp.int32)}
  out = jax.jit(frames.FrameViews(num_scales=6))(jax.random.key(0), batch)
  assert out["fourier_amp"].shape == (4, 21, 2) and out["wavelet"].shape == (4, 6, 40, 2)
  np.testing.assert_array_equal(out["valid"][2], np.arange(40) < 30)
  want = np.abs(np.stack([_pywt_cwt_reference(x[1, :, c].astype(np.float64),
                                              frames.morlet_scales(6)) for c in range(2)], -1))
  np.testing.assert_allclose(out["wavelet"][1], want, atol=1e-5 * want.max())


# ----------------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("t,c", [(150, 1), (100, 6), (29, 12), (24, 1), (128, 9)])
def test_every_encoder_gives_128_features_for_any_length(t, c):
  x = jnp.asarray(np.random.default_rng(t).normal(size=(3, t, c)), jnp.float32)
  view = frames.FrameViews()(None, {"series": x, "length": jnp.full((3,), t, jnp.int32)})
  key = jax.random.key(0)
  for module, args in ((fm.ResNet1DEncoder(), (x,)),
                       (fm.FourierEncoder(), (view["fourier_amp"], view["fourier_phase"])),
                       (fm.WaveletEncoder(), (view["wavelet"],))):
    kw = {} if isinstance(module, fm.FourierEncoder) else {"train": False}
    variables = module.init(key, *args, **kw)
    out = module.apply(variables, *args, **kw)
    assert out.shape == (3, 128), (type(module).__name__, out.shape)
    assert np.all(np.isfinite(out))


def test_resnet_follows_the_official_channel_and_stride_plan():
  x = jnp.zeros((2, 150, 3))
  variables = fm.ResNet1DEncoder().init(jax.random.key(0), x)
  params = variables["params"]
  assert params["stem"]["kernel"].shape == (5, 3, 32)
  widths = [params[f"block{i}"]["conv1"]["kernel"].shape[1:] for i in range(8)]
  assert widths == [(32, 32)] * 4 + [(32, 64)] + [(64, 64)] * 3
  assert "bn1" not in params["block0"] and "bn1" in params["block1"]
  assert params["head"]["kernel"].shape == (64, 128)
  # Length after the blocks: halved (ceil) in blocks 1, 3, 5, 7: 150 -> 75 -> 38 -> 19 -> 10.
  _, inter = fm.ResNet1DEncoder().apply(variables, x, capture_intermediates=True)
  assert inter["intermediates"]["block7"]["__call__"][0].shape == (2, 10, 64)


def test_fourier_and_wavelet_final_linears_are_sized_by_the_input():
  amp = jnp.zeros((2, 101, 1))  # T = 200: 101 bins -> 51 -> 26, the official Linear(26, 1).
  params = fm.FourierEncoder().init(jax.random.key(0), amp, amp)["params"]
  assert params["amplitude"]["pool"]["kernel"].shape == (26, 1)
  w = jnp.zeros((2, 48, 200, 1))  # 48 x 200 -> 6 x 25: the official Linear(25, 1), Linear(6, 1).
  params = fm.WaveletEncoder().init(jax.random.key(0), w)["params"]
  assert params["time_pool"]["kernel"].shape == (25, 1)
  assert params["scale_pool"]["kernel"].shape == (6, 1)
  assert params["conv3"]["kernel"].shape == (5, 5, 64 + 1, 96)


def _torch_conv_mapping(x_bd, w1_kio, b1, w2_kh, b2):
  """PyTorch's Conv1d(1->H, k, stride 2, pad k//2) -> ReLU -> ConvTranspose1d(H->1, k, stride 2,
  pad k//2, output_padding 1), written as loops over the definitions (float64)."""
  k, d = w1_kio.shape[0], x_bd.shape[1]
  p = k // 2
  xp = np.pad(x_bd, [(0, 0), (p, p)])
  n_mid = (d + 2 * p - k) // 2 + 1
  h = np.zeros((x_bd.shape[0], n_mid, w1_kio.shape[2]))
  for i in range(n_mid):
    h[:, i] = np.einsum("bk,kh->bh", xp[:, 2 * i: 2 * i + k], w1_kio[:, 0, :]) + b1
  h = np.maximum(h, 0.0)
  n_out = (n_mid - 1) * 2 - 2 * p + k + 1
  y = np.zeros((x_bd.shape[0], n_out + 2 * p + 1))
  for i in range(n_mid):  # y[2 i + j - p] += h[i] . w[j]
    for j in range(k):
      y[:, 2 * i + j] += h[:, i] @ w2_kh[j]
  return y[:, p: p + n_out] + b2


@pytest.mark.parametrize("hidden", [64, 1])
def test_conv_mapping_keeps_length_128_and_is_pytorchs_conv_and_transpose(hidden):
  x = np.random.default_rng(hidden).normal(size=(4, 128))
  module = fm.ConvMapping(hidden)
  params = module.init(jax.random.key(hidden), jnp.asarray(x, jnp.float32))["params"]
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(7), p.shape),
                        params)  # Nonzero biases too.
  got = module.apply({"params": params}, jnp.asarray(x, jnp.float32))
  assert got.shape == (4, 128)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  want = _torch_conv_mapping(x, p["conv"]["kernel"], p["conv"]["bias"],
                             p["deconv_kernel"][:, :, 0], p["deconv_bias"])
  assert want.shape == (4, 128)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_pools_follow_the_official_padding():
  x = np.random.default_rng(0).normal(size=(2, 7, 3))
  got = np.asarray(fm.max_pool_same(jnp.asarray(x)))
  want = np.maximum(np.concatenate([x, np.zeros((2, 1, 3))], 1)[:, 0::2],
                    np.concatenate([x, np.zeros((2, 1, 3))], 1)[:, 1::2])  # zero pad, then max
  np.testing.assert_allclose(got, want)
  img = np.random.default_rng(1).normal(size=(2, 8, 12, 2))
  pooled = np.asarray(fm.avg_pool_ceil(jnp.asarray(img), 4))  # Full windows: AvgPool2d(4).
  np.testing.assert_allclose(pooled, img.reshape(2, 2, 4, 3, 4, 2).mean(axis=(2, 4)), rtol=1e-6)
  odd = np.asarray(fm.avg_pool_ceil(jnp.asarray(img[:, :, :10]), 4))  # Last window: 2 columns.
  np.testing.assert_allclose(odd[:, :, -1], img[:, :, 8:10].reshape(2, 2, 4, 2, 2).mean((2, 3)),
                             rtol=1e-6)
  padded = np.asarray(fm.pad_channels(jnp.ones((1, 2, 32)), 64))
  assert padded.shape == (1, 2, 64) and padded[0, 0, 16:48].all() and not padded[0, 0, :16].any()
