"""Tests for ssljax.data.corruptions: identity at severity 0, range, monotonicity, reference
values from the published formulas, batching, and config validation."""

import functools

import jax
import numpy as np
import pytest

from ssljax.data import corruptions as corr
from ssljax.errors import ConfigError

# One compile per (factor, image shape, reference size); severity is traced.
_apply = jax.jit(corr.apply, static_argnums=0, static_argnames="reference_size")


def _image(seed, side=32):
  return np.random.default_rng(seed).uniform(size=(side, side, 3)).astype(np.float32)


@pytest.mark.parametrize("name", corr.FACTORS)
def test_severity_zero_is_the_exact_identity(name):
  x = _image(0)
  out = _apply(name, jax.random.key(1), x, 0.0, reference_size=32)
  np.testing.assert_array_equal(np.asarray(out), x)


@pytest.mark.parametrize("name", corr.FACTORS)
def test_outputs_stay_in_unit_range_and_keep_the_shape(name):
  for x in (_image(1), np.zeros((32, 32, 3), np.float32), np.ones((32, 32, 3), np.float32)):
    for s in (0.5, 1.0, 2.5, 5.0):
      out = np.asarray(_apply(name, jax.random.key(2), x, s, reference_size=32))
      assert out.shape == x.shape and out.dtype == np.float32
      assert out.min() >= 0.0 and out.max() <= 1.0, (name, s)


@pytest.mark.parametrize("name", corr.FACTORS)
def test_every_factor_changes_the_image_at_severity_one(name):
  x = _image(3) * 0.8  # Below 1 so rain's white streaks are visible.
  out = np.asarray(_apply(name, jax.random.key(4), x, 1.0, reference_size=32))
  assert np.abs(out - x).max() > 1e-3


def test_strength_interpolates_the_paper_levels():
  # Spec table: levels 1 -> 5 interpolate linearly; below 1 the strength ramps from 0.
  assert float(corr.strength(0.0, 0.1, 0.6)) == 0.0
  np.testing.assert_allclose(float(corr.strength(0.5, 0.1, 0.6)), 0.05, rtol=1e-6)
  np.testing.assert_allclose(float(corr.strength(1.0, 0.1, 0.6)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(corr.strength(3.0, 0.1, 0.6)), 0.35, rtol=1e-6)
  np.testing.assert_allclose(float(corr.strength(5.0, 0.1, 0.6)), 0.6, rtol=1e-6)
  np.testing.assert_allclose(float(corr.strength(9.0, 0.1, 0.6)), 0.6, rtol=1e-6)  # clipped


def test_haze_matches_the_scattering_formula_and_brightens_with_severity():
  x = _image(5) * 0.5
  means = []
  for s, beta in ((1, 0.1), (2, 0.225), (3, 0.35), (4, 0.475), (5, 0.6)):
    out = np.asarray(_apply("haze", jax.random.key(0), x, float(s), reference_size=32))
    # Spec: x (1 - beta) + 0.9 beta, beta from 0.1 (severity 1) to 0.6 (severity 5).
    np.testing.assert_allclose(out, x * (1 - beta) + 0.9 * beta, rtol=1e-6, atol=1e-7)
    means.append(out.mean())
  assert np.all(np.diff(means) > 0)


def test_motion_blur_is_a_horizontal_box_of_the_paper_length():
  # At the reference size, severity 1 is a 5-px and severity 5 a 25-px box (spec table).
  x = _image(6, side=40)
  for s, length in ((1.0, 5), (5.0, 25)):
    out = np.asarray(_apply("motion_blur", jax.random.key(0), x, s, reference_size=40))
    r = length // 2
    padded = np.pad(x, ((0, 0), (r, r), (0, 0)), mode="edge")
    expected = np.mean([padded[:, k:k + 40] for k in range(length)], axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  # Rows are untouched (horizontal blur): a vertical-only pattern is a fixed point.
  stripes = np.broadcast_to((np.arange(40) % 2)[:, None, None], (40, 40, 3)).astype(np.float32)
  out = np.asarray(_apply("motion_blur", jax.random.key(0), stripes, 5.0, reference_size=40))
  np.testing.assert_allclose(out, stripes, atol=1e-6)


def test_motion_blur_smooths_more_with_severity():
  x = _image(7)
  tv = [np.abs(np.diff(np.asarray(_apply("motion_blur", jax.random.key(0), x, s,
                                         reference_size=32)), axis=1)).mean()
        for s in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
  assert np.all(np.diff(tv) < 0), tv


def test_occlusion_blacks_out_the_paper_area():
  # Box side floor(S sqrt(frac)), frac 0.08 (severity 1) -> 0.30 (severity 5): 63 and 122 px.
  x = np.ones((224, 224, 3), np.float32)
  for s, side in ((1.0, 63), (5.0, 122)):
    out = np.asarray(_apply("occlusion", jax.random.key(8), x, s, reference_size=224))
    black = np.all(out == 0.0, axis=-1)
    assert black.sum() == side * side
    rows, cols = np.nonzero(black)
    assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
    assert np.all(out[~black] == 1.0)


def test_rain_streaks_grow_with_severity():
  # At the reference size: 20 * severity vertical streaks of 4 -> 16 px, opacity 0.05 -> 0.5.
  x = np.zeros((64, 64, 3), np.float32)
  key = jax.random.key(9)
  wet = []
  for s in (1.0, 2.0, 3.0, 4.0, 5.0):
    out = np.asarray(_apply("rain", key, x, s, reference_size=64))
    opacity = 0.05 + (0.5 - 0.05) * (s - 1) / 4
    values = np.unique(out)
    np.testing.assert_allclose(values[values > 0], opacity, rtol=1e-5)  # streaks on black
    wet.append(out[..., 0] > 0)
  counts = [w.sum() for w in wet]
  assert counts[0] <= 20 * 4  # at most 20 streaks of 4 px
  assert all(np.all(a <= b) for a, b in zip(wet, wet[1:], strict=False))  # same streaks, longer
  assert counts[-1] > counts[0]


def test_haze_and_rain_brightness_increase_with_severity_on_a_natural_image():
  x = _image(10) * 0.6
  for name in ("haze", "rain"):
    means = [float(np.asarray(_apply(name, jax.random.key(0), x, s, reference_size=32)).mean())
             for s in (0.0, 1.0, 3.0, 5.0)]
    assert np.all(np.diff(means) > 0), (name, means)


def test_corrupt_batch_matches_single_images_and_keeps_clean_rows():
  images = np.stack([_image(i, side=16) for i in range(5)])
  factor_b = np.array([-1, 0, 1, 2, 3], np.int32)
  severity_b = np.array([4.0, 2.0, 3.0, 5.0, 1.5], np.float32)
  rng = jax.random.key(11)
  fn = jax.jit(functools.partial(corr.corrupt_batch, reference_size=16))
  out = np.asarray(fn(rng, images, factor_b, severity_b))
  np.testing.assert_array_equal(out[0], images[0])
  keys = jax.random.split(rng, 5)
  for i in range(1, 5):
    expected = _apply(corr.FACTORS[factor_b[i]], keys[i], images[i], float(severity_b[i]),
                      reference_size=16)
    np.testing.assert_allclose(out[i], np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_sample_respects_probability_and_severity_range():
  f0, _ = corr.sample(jax.random.key(0), 64, num_factors=4, prob=0.0, severity=(1.0, 5.0))
  assert np.all(np.asarray(f0) == -1)
  f1, s1 = corr.sample(jax.random.key(0), 64, num_factors=4, prob=1.0, severity=(2.0, 3.0))
  f1, s1 = np.asarray(f1), np.asarray(s1)
  assert f1.min() >= 0 and f1.max() <= 3 and len(set(f1.tolist())) == 4
  assert s1.min() >= 2.0 and s1.max() <= 3.0


def test_bad_names_and_severities_raise_config_errors_naming_the_key():
  assert corr.check_factors(["haze", "rain"], key="k") == ("haze", "rain")
  with pytest.raises(ConfigError, match=r"my\.key has unknown corruption 'fog'"):
    corr.check_factors(("haze", "fog"), key="my.key")
  with pytest.raises(ConfigError, match="my.key"):
    corr.check_factors(("haze", "haze"), key="my.key")
  with pytest.raises(ConfigError, match="my.key"):
    corr.check_factors("haze", key="my.key")
  assert corr.check_severity(3, key="s") == (3.0, 3.0)
  assert corr.check_severity((0, 5), key="s") == (0.0, 5.0)
  for bad in (6.0, -0.5, (1.0, 7.0), (4.0, 2.0), True, float("nan")):
    with pytest.raises(ConfigError, match="sev.key"):
      corr.check_severity(bad, key="sev.key")
  with pytest.raises(ConfigError, match="unknown"):
    corr.apply("snow", jax.random.key(0), _image(0), 1.0)
