"""Batch Styles Standardization against the test oracle of shared/methods/bss.md.

References are computed here with NumPy (float64 FFTs, ``fftshift`` and the spec's box indexing
rows ``[H//2 - h, H//2 + h]`` x cols ``[W//2 - w, W//2 + w]``), independently of the module's
unshifted-spectrum mask.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssljax.data import bss
from ssljax.errors import ConfigError


def _images(shape=(8, 16, 16, 3), seed=0):
  # Gaussian noise: every Fourier coefficient is O(1), so phases are well defined.
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _run(images, r, seed=0):
  """Output for a fixed area ratio ``r`` (r_min = r_max) and the reference index it used."""
  key = jax.random.key(seed)
  out = bss.standardize_batch_style(key, jnp.asarray(images), r_min=r, r_max=r)
  _, j = bss._sample_style(key, images.shape[0], r_min=r, r_max=r)
  return np.asarray(out, np.float64), int(j)


def _spec_box(r, height, width):
  """The spec's box on the *shifted* spectrum, shifted back to NumPy's unshifted layout."""
  box = np.zeros((height, width), bool)
  if r > 0:
    h, w = math.floor(math.sqrt(r) * height / 2), math.floor(math.sqrt(r) * width / 2)
    rows = slice(max(height // 2 - h, 0), height // 2 + h + 1)
    cols = slice(max(width // 2 - w, 0), width // 2 + w + 1)
    box[rows, cols] = True
  return np.fft.ifftshift(box)


def _paper_bss(images, r, j):
  """The paper's Algorithm 1 in float64: fftshift, swap the centred amplitude block, unshift."""
  _, height, width, _ = images.shape
  spectrum = np.fft.fftshift(np.fft.fft2(images.astype(np.float64), axes=(1, 2)), axes=(1, 2))
  amp, phase = np.abs(spectrum), np.angle(spectrum)
  if r > 0:
    h, w = math.floor(math.sqrt(r) * height / 2), math.floor(math.sqrt(r) * width / 2)
    rows = slice(max(height // 2 - h, 0), height // 2 + h + 1)
    cols = slice(max(width // 2 - w, 0), width // 2 + w + 1)
    amp[:, rows, cols] = amp[j, rows, cols]
  restyled = np.fft.ifftshift(amp * np.exp(1j * phase), axes=(1, 2))
  return np.real(np.fft.ifft2(restyled, axes=(1, 2)))


def _fft(x):
  return np.fft.fft2(np.asarray(x, np.float64), axes=(1, 2))


def test_r_zero_is_identity():
  images = _images()
  out, _ = _run(images, 0.0)
  np.testing.assert_allclose(out, images, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 16, 16, 3), (5, 15, 9, 2)])  # even and odd sides
def test_r_one_gives_every_image_the_reference_amplitude(shape):
  images = _images(shape, seed=1)
  out, j = _run(images, 1.0)
  amp_out, amp_ref = np.abs(_fft(out)), np.abs(_fft(images[j:j + 1]))
  np.testing.assert_allclose(amp_out, np.broadcast_to(amp_ref, amp_out.shape), atol=2e-4)
  # Each image keeps its own phase everywhere but at DC, which is the reference's (signed) sum.
  f_in, f_out = _fft(images), _fft(out)
  phasor_in, phasor_out = f_in / np.abs(f_in), f_out / np.abs(f_out)
  phasor_in[:, 0, 0], phasor_out[:, 0, 0] = 0, 0
  np.testing.assert_allclose(phasor_out, phasor_in, atol=1e-3)
  np.testing.assert_allclose(f_out[:, 0, 0], np.broadcast_to(f_in[j, 0, 0], f_out[:, 0, 0].shape),
                             atol=2e-4)


@pytest.mark.parametrize("r", [0.05, 0.3, 1.0])
def test_reference_image_is_the_only_one_unchanged(r):
  images = _images()
  out, j = _run(images, r, seed=3)
  unchanged = [np.allclose(out[i], images[i], atol=1e-5) for i in range(len(images))]
  assert unchanged == [i == j for i in range(len(images))]


@pytest.mark.parametrize("r, shape", [(0.05, (8, 16, 16, 3)), (0.3, (8, 16, 16, 3)),
                                      (0.6, (4, 15, 9, 2)), (0.01, (4, 32, 32, 1))])
def test_low_frequencies_shared_high_frequencies_and_phases_kept(r, shape):
  images = _images(shape, seed=2)
  out, j = _run(images, r, seed=5)
  box = _spec_box(r, shape[1], shape[2])[None, :, :, None]
  assert box.any() and not box.all()
  f_in, f_out = _fft(images), _fft(out)
  amp_in, amp_out = np.abs(f_in), np.abs(f_out)
  expected = np.where(box, amp_in[j:j + 1], amp_in)  # reference's amplitude inside, own outside
  np.testing.assert_allclose(amp_out, expected, atol=2e-4)
  # Outside the box the coefficients (amplitude and phase) are the input's own.
  np.testing.assert_allclose(np.where(box, 0, f_out), np.where(box, 0, f_in), atol=2e-4)
  # Inside the box every image keeps its own phase, except DC: it is the reference's mean, sign
  # included (zero-mean noise has either sign; see the module docstring).
  not_dc = np.ones(shape[1:3], bool)
  not_dc[0, 0] = False
  not_dc = not_dc[None, :, :, None]
  np.testing.assert_allclose(np.where(not_dc, f_out / amp_out, 0),
                             np.where(not_dc, f_in / amp_in, 0), atol=1e-3)
  np.testing.assert_allclose(f_out[:, 0, 0], np.broadcast_to(f_in[j, 0, 0], f_out[:, 0, 0].shape),
                             atol=2e-4)


@pytest.mark.parametrize("r, shape", [(0.0, (6, 16, 16, 3)), (0.02, (6, 16, 16, 3)),
                                      (0.3, (6, 16, 16, 3)), (1.0, (6, 16, 16, 3)),
                                      (0.45, (5, 15, 9, 1))])
def test_matches_the_papers_algorithm_on_pixels_in_unit_range(r, shape):
  images = np.random.default_rng(9).uniform(size=shape).astype(np.float32)
  out, j = _run(images, r, seed=11)
  np.testing.assert_allclose(out, _paper_bss(images, r, j), atol=1e-5)


def test_commutes_with_per_channel_normalisation():
  """Before or after (x - mean) / std gives the same views, as DC is copied with its sign."""
  images = np.random.default_rng(10).uniform(size=(8, 16, 16, 3)).astype(np.float32)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  normalise = lambda x: (x - mean) / std  # noqa: E731
  before, _ = _run(images, 0.2, seed=12)
  after, _ = _run(normalise(images).astype(np.float32), 0.2, seed=12)
  np.testing.assert_allclose(after, normalise(before), atol=1e-4)


def test_box_pins_the_library_convention():
  # 16 x 16, r = 0.3: h = w = floor(sqrt(0.3) * 8) = 4 -> shifted rows/cols 4..12 inclusive,
  # i.e. signed frequencies -4..4 (9 x 9 = 81 coefficients).
  box = np.asarray(bss._low_frequency_box(0.3, 16, 16))
  np.testing.assert_array_equal(box, _spec_box(0.3, 16, 16))
  assert box.sum() == 81
  shifted = np.fft.fftshift(box)
  assert shifted[4:13, 4:13].all() and shifted.sum() == 81
  # Odd sides and a tiny r (DC only), r = 0 (nothing), r = 1 (everything).
  for r, h, w in [(0.6, 15, 9), (1e-4, 16, 16), (0.0, 8, 8), (1.0, 16, 16), (1.0, 15, 9)]:
    np.testing.assert_array_equal(np.asarray(bss._low_frequency_box(r, h, w)),
                                  _spec_box(r, h, w), err_msg=f"r={r} {h}x{w}")
  assert np.asarray(bss._low_frequency_box(1e-4, 16, 16)).sum() == 1


@pytest.mark.parametrize("r", [1e-4, 0.05, 0.5])
def test_channel_means_equal_the_references(r):
  images = _images(seed=4) + np.arange(8, dtype=np.float32)[:, None, None, None]
  out, j = _run(images, r, seed=6)
  means = out.mean(axis=(1, 2))  # [B, C]
  np.testing.assert_allclose(means, np.broadcast_to(images[j].mean(axis=(0, 1)), means.shape),
                             atol=1e-4)


@pytest.mark.parametrize("r, shape", [(0.3, (4, 16, 16, 3)), (0.6, (4, 15, 9, 2)),
                                      (1.0, (4, 15, 9, 2))])
def test_inverse_fft_is_real(r, shape):
  images = jnp.asarray(_images(shape))
  spatial = bss._restyle_spectrum(images, jnp.float32(r), jnp.int32(1))
  assert float(jnp.max(jnp.abs(jnp.imag(spatial)))) < 1e-4
  assert float(jnp.max(jnp.abs(jnp.real(spatial) - images))) > 1e-2  # it did change something


def test_shape_dtype_determinism_and_randomness():
  images = jnp.asarray(_images())
  kwargs = dict(r_min=0.01, r_max=0.1)
  a = bss.standardize_batch_style(jax.random.key(0), images, **kwargs)
  b = bss.standardize_batch_style(jax.random.key(0), images, **kwargs)
  c = bss.standardize_batch_style(jax.random.key(1), images, **kwargs)
  assert a.shape == images.shape and a.dtype == jnp.float32
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_sampled_ratio_and_reference_cover_their_ranges():
  keys = jax.random.split(jax.random.key(0), 500)
  r, j = jax.vmap(functools.partial(bss._sample_style, batch=5, r_min=0.01, r_max=0.1))(keys)
  r, j = np.asarray(r), np.asarray(j)
  assert r.min() >= 0.01 and r.max() <= 0.1 and r.max() - r.min() > 0.08
  np.testing.assert_array_equal(np.unique(j), np.arange(5))


def test_jit_matches_eager():
  images = jnp.asarray(_images())
  fn = functools.partial(bss.standardize_batch_style, r_min=0.01, r_max=0.5)
  key = jax.random.key(7)
  np.testing.assert_allclose(jax.jit(fn)(key, images), fn(key, images), atol=1e-5)


def test_sharded_batch_matches_one_device():
  """8 devices: one reference for the whole global batch, the same output as on 1 device."""
  images = _images((16, 16, 16, 3), seed=8)
  fn = jax.jit(functools.partial(bss.standardize_batch_style, r_min=0.2, r_max=0.6))
  key = jax.random.key(3)
  single = fn(key, jax.device_put(images, jax.devices()[0]))
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded_in = jax.device_put(images, NamedSharding(mesh, PartitionSpec("data")))
  sharded = fn(key, sharded_in)
  assert len(sharded_in.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, atol=1e-5)
  # The reference (in general held by another device) styled every image: equal channel means.
  means = np.asarray(sharded).mean(axis=(1, 2))
  np.testing.assert_allclose(means, np.broadcast_to(means[0], means.shape), atol=1e-4)


@pytest.mark.parametrize("r_min, r_max, key", [
    (-0.1, 0.5, "input.bss.r_min"), (0.2, 1.5, "input.bss.r_max"), (0.5, 0.2, "input.bss.r_min"),
    ("0.1", 0.5, "input.bss.r_min"), (0.1, True, "input.bss.r_max"),
    (float("nan"), 0.5, "input.bss.r_min"),
])
def test_bad_config_raises_one_line_naming_the_key(r_min, r_max, key):
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
    bss.check_bss_config(dict(enabled=True, r_min=r_min, r_max=r_max))
  assert "\n" not in str(info.value)


def test_config_check_accepts_good_values_and_names_its_location():
  cfg = ml_collections.ConfigDict(dict(enabled=True, r_min=0.01, r_max=0.1))
  assert bss.check_bss_config(cfg) == (0.01, 0.1)
  assert bss.check_bss_config(dict(r_min=0, r_max=1)) == (0.0, 1.0)
  assert bss.check_bss_config(dict(r_min=0.3, r_max=0.3)) == (0.3, 0.3)
  with pytest.raises(ConfigError, match=r"views\.bss\.r_max"):
    bss.check_bss_config(dict(r_min=0.1), where="views.bss")
  with pytest.raises(ConfigError, match=r"input\.bss\.enabled"):
    bss.check_bss_config(dict(enabled="yes", r_min=0.1, r_max=0.2))
