"""EEGFormer's networks against the spec's test oracle: patching, spectral features, the quantiser
(nearest code, straight-through gradient), channel independence and the mask token."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models import eegformer as eeg


@pytest.mark.parametrize("length,patch,stride", [(51, 8, 4), (51, 8, 8), (15, 4, 2), (16, 16, 1),
                                                 (1501, 50, 50), (10, 3, 7)])
def test_patch_count_and_contents_follow_the_formula(length, patch, stride):
  want_n = (length - patch) // stride + 1  # N = floor((L - P) / S) + 1
  assert eeg.num_patches(length, patch, stride) == want_n
  x = np.random.default_rng(0).normal(size=(2, 3, length)).astype(np.float32)
  p = np.asarray(eeg.unfold_patches(jnp.asarray(x), patch, stride))
  assert p.shape == (2, 3, want_n, patch)
  for n in range(want_n):
    np.testing.assert_array_equal(p[:, :, n], x[:, :, n * stride:n * stride + patch])


def test_unfold_then_fold_with_stride_equal_patch_is_exact():
  x = jax.random.normal(jax.random.key(0), (2, 5, 48))
  for patch in (1, 4, 8, 48):
    np.testing.assert_array_equal(eeg.fold_patches(eeg.unfold_patches(x, patch, patch)), x)


def test_unfold_refuses_a_sequence_shorter_than_a_patch():
  with pytest.raises(ValueError, match="holds no patch"):
    eeg.unfold_patches(jnp.zeros((1, 1, 5)), 6, 1)


def _hann(n):
  return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n) if n > 1 else np.ones(1)


@pytest.mark.parametrize("taper", ["hann", "rect"])
@pytest.mark.parametrize("amplitude", ["log", "linear"])
def test_whole_series_spectrum_equals_numpy_on_each_rows_valid_part(taper, amplitude):
  # float64 NumPy: the rFFT of each channel's first `length` samples times the taper, zero-padded
  # to T (what the padded buffer holds), divided by `length`; then log(a + eps).
  t, c, eps = 30, 3, 1e-3
  rng = np.random.default_rng(1)
  lengths = np.array([30, 17, 1, 8])
  x = rng.normal(size=(4, t, c))
  x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
  want = np.zeros((4, c, t // 2 + 1))
  for b, n in enumerate(lengths):
    w = _hann(n) if taper == "hann" else np.ones(n)
    buf = np.zeros((t, c))
    buf[:n] = x[b, :n] * w[:, None]
    a = np.abs(np.fft.rfft(buf, axis=0)).T / n
    want[b] = np.log(a + eps) if amplitude == "log" else a
  got = eeg.spectral_features(jnp.asarray(x, jnp.float32), jnp.asarray(lengths), window=0,
                              taper=taper, amplitude=amplitude, log_eps=eps)
  assert got.shape == (4, c, eeg.spectral_length(t, 0))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_windowed_spectra_are_concatenated_in_time_order():
  t, window, eps = 50, 16, 1e-3  # 3 whole windows; the last 2 samples are dropped.
  x = np.random.default_rng(2).normal(size=(2, t, 2))
  parts = [np.abs(np.fft.rfft(x[:, f * window:(f + 1) * window] * _hann(window)[:, None],
                              axis=1)) / window for f in range(t // window)]
  want = np.log(np.concatenate(parts, axis=1) + eps).transpose(0, 2, 1)
  got = eeg.spectral_features(jnp.asarray(x, jnp.float32), None, window=window, log_eps=eps)
  assert got.shape[-1] == eeg.spectral_length(t, window) == 3 * 9
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_instance_norm_standardises_each_channel_of_each_series():
  x = np.random.default_rng(3).normal(3.0, 5.0, size=(2, 3, 40))
  want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(np.asarray(eeg.instance_norm(jnp.asarray(x, jnp.float32))), want,
                             rtol=1e-4, atol=1e-5)


def test_quantiser_returns_the_nearest_codebook_vector():
  rng = np.random.default_rng(4)
  h, codebook = rng.normal(size=(200, 6)), rng.normal(size=(11, 6))
  # Brute force in float64: the argmin of the Euclidean distance to every code.
  want = np.argmin(((h[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
  q, index, v = jax.jit(eeg.vector_quantize)(jnp.asarray(h, jnp.float32),
                                             jnp.asarray(codebook, jnp.float32))
  index = np.asarray(index)
  assert index.dtype == np.int32 and index.min() >= 0 and index.max() < 11
  np.testing.assert_array_equal(index, want)
  np.testing.assert_allclose(np.asarray(v), codebook[want], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(q), codebook[want], rtol=1e-5, atol=1e-6)


def test_straight_through_gradient_is_the_identity():
  h = jax.random.normal(jax.random.key(0), (5, 4))
  codebook = jax.random.normal(jax.random.key(1), (7, 4))
  jac = jax.jacobian(lambda h: eeg.vector_quantize(h, codebook)[0])(h)  # [5, 4, 5, 4]
  np.testing.assert_array_equal(np.asarray(jac).reshape(20, 20), np.eye(20))
  # And none of it reaches the codebook through q.
  jac_v = jax.jacobian(lambda v: eeg.vector_quantize(h, v)[0])(codebook)
  np.testing.assert_array_equal(np.asarray(jac_v), 0.0)


def test_code_statistics_count_codes_and_perplexity():
  s = eeg.code_statistics(jnp.asarray([0, 0, 1, 3]), 5)
  assert float(s["codes_used"]) == 3
  p = np.array([0.5, 0.25, 0.25])
  np.testing.assert_allclose(float(s["code_perplexity"]), np.exp(-(p * np.log(p)).sum()),
                             rtol=1e-6)
  assert float(eeg.code_statistics(jnp.zeros(9, jnp.int32), 5)["code_perplexity"]) == 1.0


def _encoder(pool="mean"):
  return eeg.EEGFormerEncoder(eeg.PatchEncoder(width=16, depth=2, num_heads=2, mlp_dim=32),
                              patch=4, stride=2, pool=pool)


def test_encoder_is_channel_independent_permuting_channels_permutes_outputs():
  enc = _encoder()
  x = jax.random.normal(jax.random.key(0), (3, 40, 5))
  batch = {"series": x, "length": jnp.asarray([40, 31, 12])}
  variables = enc.init(jax.random.key(1), batch)
  tokens = jax.jit(lambda b: enc.apply(variables, b, method=enc.tokens))
  _, h = tokens(batch)
  perm = np.array([3, 0, 4, 1, 2])
  _, h_perm = tokens({**batch, "series": x[..., perm]})
  np.testing.assert_allclose(np.asarray(h_perm), np.asarray(h)[:, perm], rtol=1e-5, atol=1e-5)
  # One channel's change leaves the other channels' outputs as they were (no mixing).
  _, h_changed = tokens({**batch, "series": x.at[..., 2].set(0.5 * x[..., 2] ** 2)})
  keep = [0, 1, 3, 4]
  np.testing.assert_allclose(np.asarray(h_changed)[:, keep], np.asarray(h)[:, keep], rtol=1e-5,
                             atol=1e-5)
  assert not np.allclose(np.asarray(h_changed)[:, 2], np.asarray(h)[:, 2], atol=1e-3)


def test_masked_patches_are_the_mask_token_whatever_their_values():
  pe = eeg.PatchEncoder(width=8, depth=1, num_heads=2, mlp_dim=16)
  x = jax.random.normal(jax.random.key(0), (2, 3, 6, 4))
  mask = jnp.zeros((2, 3, 6), bool).at[:, :, 2].set(True)
  variables = pe.init(jax.random.key(1), x, mask)
  a = pe.apply(variables, x, mask)
  b = pe.apply(variables, x.at[:, :, 2].set(100.0), mask)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
  assert not np.allclose(np.asarray(pe.apply(variables, x)), np.asarray(a), atol=1e-4)


def test_pooling_is_the_mean_over_channels_and_patches_or_per_channel():
  batch = {"series": jax.random.normal(jax.random.key(0), (2, 24, 3)),
           "valid": jnp.ones((2, 24), bool)}
  for pool, dim in (("mean", 16), ("channels", 3 * 16)):
    enc = _encoder(pool)
    variables = enc.init(jax.random.key(1), batch)
    _, h = enc.apply(variables, batch, method=enc.tokens)
    rep = enc.apply(variables, batch)
    assert rep.shape == (2, dim)
    want = h.mean(axis=(1, 2)) if pool == "mean" else h.mean(axis=2).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(rep), np.asarray(want), rtol=1e-6, atol=1e-6)
