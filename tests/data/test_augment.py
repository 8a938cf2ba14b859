"""Tests for ssljax.data.augment: shapes, ranges, determinism, each op alone, recipe validation."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.data import augment
from ssljax.data.augment import ViewRecipe
from ssljax.errors import ConfigError

# A view that changes nothing: full-image crop at the input size, every probability 0.
_OFF = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0,
            grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
_ALL_ON = dict(flip_prob=1.0, jitter_prob=1.0, grayscale_prob=1.0, blur_prob=1.0,
               solarize_prob=1.0)


# Tests call the jitted functions (one compile per recipe and shape); op-by-op eager execution
# compiles every primitive separately and is several times slower on CPU.
_augment_image = jax.jit(augment.augment_image, static_argnums=2)
_augment_batch = jax.jit(augment.augment_batch, static_argnums=2)
# Stochastic: every op may or may not fire.
_MIXED = ViewRecipe(size=8, blur_prob=0.5, solarize_prob=0.5)


def _image(seed, shape=(16, 16, 3)):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _only(size, **on):
  return ViewRecipe(size=size, **{**_OFF, **on})


def test_augment_batch_shapes_and_dtype():
  rng = np.random.default_rng(0)
  gray_recipe = ViewRecipe(size=8, **{**_OFF, "crop_scale": (0.5, 1.0)})
  for channels, recipe in ((3, _MIXED), (1, gray_recipe)):
    images = rng.integers(0, 256, size=(4, 12, 10, channels), dtype=np.uint8)
    out = _augment_batch(jax.random.key(0), images, recipe)
    assert out.shape == (4, 8, 8, 3) and out.dtype == jnp.float32
    assert np.isfinite(np.asarray(out)).all()


def test_augment_batch_normalises_with_mean_and_std():
  # With every op off the view is the image itself, so normalising is all that happens.
  images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
  mean, std = np.array([0.5, 0.25, 0.0]), np.array([0.5, 0.25, 2.0])
  out = np.asarray(_augment_batch(jax.random.key(0), images, _only(8, mean=tuple(mean),
                                                                   std=tuple(std))))
  np.testing.assert_allclose(out * std + mean, images / 255.0, atol=1e-5)


def test_range_is_unit_interval_with_every_op_on():
  recipe = ViewRecipe(size=12, **_ALL_ON)
  keys = jax.random.split(jax.random.key(1), 8)
  images = jnp.stack([_image(i) for i in range(8)])
  out = np.asarray(jax.jit(jax.vmap(augment.augment_image, in_axes=(0, 0, None)),
                           static_argnums=2)(keys, images, recipe))
  assert out.shape == (8, 12, 12, 3)
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_same_key_same_output_different_keys_differ():
  x = (_image(0, (4, 12, 10, 3)) * 255).astype(np.uint8)
  a = _augment_batch(jax.random.key(3), x, _MIXED)
  b = _augment_batch(jax.random.key(3), x, _MIXED)
  c = _augment_batch(jax.random.key(4), x, _MIXED)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_identity_when_every_probability_is_zero():
  x = _image(0)
  for seed in range(3):
    out = _augment_image(jax.random.key(seed), x, _only(16))
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_flip_alone_mirrors():
  x = _image(1)
  out = _augment_image(jax.random.key(0), x, _only(16, flip_prob=1.0))
  np.testing.assert_allclose(out, x[:, ::-1], atol=1e-6)


def test_solarize_alone_inverts_bright_pixels():
  x = np.broadcast_to(np.linspace(0.0, 1.0, 16, dtype=np.float32)[None, :, None], (16, 16, 3))
  out = np.asarray(_augment_image(jax.random.key(0), x, _only(16, solarize_prob=1.0)))
  expected = np.where(x >= 0.5, 1.0 - x, x)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  assert out.max() <= 0.5 + 1e-6


def test_grayscale_alone_gives_equal_channels_of_luma():
  x = _image(2)
  out = np.asarray(_augment_image(jax.random.key(0), x, _only(16, grayscale_prob=1.0)))
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-7)
  np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-7)
  np.testing.assert_allclose(out[..., 0], x @ np.array([0.299, 0.587, 0.114]), atol=1e-6)


def test_blur_alone_keeps_constant_mean_and_reduces_noise():
  recipe = _only(32, blur_prob=1.0, blur_sigma=(1.5, 2.0))
  const = np.full((32, 32, 3), 0.3, np.float32)
  out = np.asarray(_augment_image(jax.random.key(0), const, recipe))
  np.testing.assert_allclose(out, 0.3, atol=1e-6)
  noise = _image(3, (32, 32, 3))
  blurred = np.asarray(_augment_image(jax.random.key(0), noise, recipe))
  assert abs(blurred.mean() - noise.mean()) < 0.01  # reflect padding: mean almost unchanged
  assert blurred.var() < 0.5 * noise.var()


def test_blur_radius_covers_three_sigma_and_ten_percent():
  assert augment.blur_radius(224, sigma_max=2.0) == 11  # 23 taps, as in BYOL
  assert augment.blur_radius(32, sigma_max=2.0) == 6  # ceil(3 * 2); 32 // 20 = 1 would truncate
  assert augment.blur_radius(32, sigma_max=0.1) == 1
  assert augment.blur_radius(8, sigma_max=5.0) == 7  # capped below the side (reflect padding)
  assert augment.blur_radius(1, sigma_max=2.0) == 0


def _reference_blur(image_hwc, sigma):
  """Float64 NumPy reference: a direct 2-D Gaussian convolution with full support.

  The kernel ``exp(-(dy^2 + dx^2) / (2 sigma^2))`` spans every offset the image allows (radius
  ``side - 1``, the largest reflect padding can serve), normalised to sum 1; reflect padding (no
  edge repeat, as ``numpy.pad(mode='reflect')`` and torchvision's / PIL's blur borders).
  """
  h, w, _ = image_hwc.shape
  r = min(h, w) - 1
  offsets = np.arange(-r, r + 1, dtype=np.float64)
  kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2.0 * sigma ** 2))
  kernel /= kernel.sum()
  padded = np.pad(image_hwc.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
  out = np.zeros((h, w, image_hwc.shape[2]))
  for dy in range(2 * r + 1):
    for dx in range(2 * r + 1):
      out += kernel[dy, dx] * padded[dy:dy + h, dx:dx + w]
  return out


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_blur_matches_full_support_reference_at_32px(sigma):
  # The radius a recipe with blur_sigma=(0.1, 2.0) gets at 32 px (the CIFAR recipes).
  radius = augment.blur_radius(32, sigma_max=2.0)
  image = _image(5, (32, 32, 3))
  out = np.asarray(augment.gaussian_blur(jnp.asarray(image), jnp.float32(sigma), radius=radius))
  np.testing.assert_allclose(out, _reference_blur(image, sigma), atol=1e-3)


def test_jitter_alone_changes_image_within_range():
  x = _image(4)
  recipe = _only(16, jitter_prob=1.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
  outs = [np.asarray(_augment_image(jax.random.key(s), x, recipe)) for s in range(4)]
  for out in outs:
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, x, atol=1e-3)
  assert not np.allclose(outs[0], outs[1])


def test_brightness_alone_scales_pixels():
  x = _image(5) * 0.5  # stays below 1 after a factor <= 1.4
  recipe = _only(16, jitter_prob=1.0, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0)
  out = np.asarray(_augment_image(jax.random.key(0), x, recipe))
  ratio = out / np.maximum(x, 1e-6)
  factor = np.median(ratio)
  assert 0.6 <= factor <= 1.4
  np.testing.assert_allclose(out, x * factor, atol=1e-5)


def test_hsv_round_trip_and_reference():
  x = _image(6, (64, 3))
  hsv = np.asarray(jax.jit(augment.rgb_to_hsv)(x))
  reference = np.array([colorsys.rgb_to_hsv(*p) for p in x])
  np.testing.assert_allclose(hsv, reference, atol=1e-6)
  np.testing.assert_allclose(jax.jit(augment.hsv_to_rgb)(hsv), x, atol=1e-6)


def test_hue_shift_turns_red_into_green():
  red = np.zeros((2, 2, 3), np.float32)
  red[..., 0] = 1.0
  out = np.asarray(jax.jit(augment.adjust_hue)(red, 1.0 / 3.0))
  np.testing.assert_allclose(out[0, 0], [0.0, 1.0, 0.0], atol=1e-6)


def test_crop_box_follows_torchvision_rule():
  sample = jax.jit(augment._sample_crop_box, static_argnames=("height", "width", "scale", "ratio"))
  # Scale 1/4, square ratio of a 16x16 image: an 8x8 box inside the image.
  u = np.random.default_rng(0).uniform(size=(5, augment.CROP_UNIFORMS)).astype(np.float32)
  for row in u:
    top, left, h, w = map(float, sample(row, height=16, width=16, scale=(0.25, 0.25),
                                        ratio=(1.0, 1.0)))
    assert (h, w) == (8.0, 8.0)
    assert 0 <= top <= 8 and 0 <= left <= 8 and top == int(top) and left == int(left)
  # A 4:1 box of the full area never fits a square: central fallback clamped to the ratio.
  top, left, h, w = map(float, sample(u[0], height=16, width=16, scale=(1.0, 1.0),
                                      ratio=(4.0, 4.0)))
  assert (top, left, h, w) == (6.0, 0.0, 4.0, 16.0)


def test_crop_keeps_a_contiguous_region():
  rows = np.broadcast_to(np.arange(16, dtype=np.float32)[:, None, None] / 15.0, (16, 16, 3))
  recipe = ViewRecipe(size=8, **{**_OFF, "crop_scale": (0.25, 0.25)})
  out = np.asarray(_augment_image(jax.random.key(7), rows, recipe))[:, 0, 0]
  assert np.all(np.diff(out) > 0)  # rows stay in order
  np.testing.assert_allclose(np.diff(out), 1.0 / 15.0, atol=1e-5)  # 8 rows of 16 -> 1:1 scale


def test_jit_matches_eager():
  # The slowest test here: eager mode compiles each primitive on its own.
  x = _image(8, (12, 10, 3))
  eager = augment.augment_image(jax.random.key(9), x, _MIXED)
  jitted = jax.jit(functools.partial(augment.augment_image, recipe=_MIXED))(jax.random.key(9), x)
  np.testing.assert_allclose(eager, jitted, atol=1e-5)


def test_preprocess_eval_shapes_and_identity():
  preprocess = jax.jit(augment.preprocess_eval, static_argnames=("size", "mean", "std"))
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
  out = preprocess(images, size=8, mean=(0, 0, 0), std=(1, 1, 1))
  assert out.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(np.asarray(out) * 255.0, np.repeat(images, 3, -1), atol=1e-4)
  assert preprocess(images, size=16, mean=(0, 0, 0), std=(1, 1, 1)).shape == (
      2, 16, 16, 3)
  wide = np.zeros((2, 20, 40, 3), np.uint8)
  wide[:, :, 10:30] = 255  # the centre crop of the resized image is all white
  out = preprocess(wide, size=10, mean=(0, 0, 0), std=(1, 1, 1))
  assert out.shape == (2, 10, 10, 3)
  np.testing.assert_allclose(np.asarray(out)[:, :, 1:-1], 1.0, atol=1e-5)


def test_from_config_accepts_lists_and_dicts():
  cfg = {"size": 32, "crop_scale": [0.2, 1.0], "blur_prob": 1.0, "solarize_prob": 0.2}
  recipe = ViewRecipe.from_config(cfg)
  assert recipe == ViewRecipe(size=32, crop_scale=(0.2, 1.0), blur_prob=1.0, solarize_prob=0.2)
  hash(recipe)  # usable as a static jit argument


@pytest.mark.parametrize("cfg,key", [
    ({"size": 8, "blurr_prob": 0.1}, "blurr_prob"),
    ({"crop_scale": (0.1, 1.0)}, "size"),
    ({"size": 0}, "size"),
    ({"size": 8, "flip_prob": 1.5}, "flip_prob"),
    ({"size": 8, "solarize_prob": -0.1}, "solarize_prob"),
    ({"size": 8, "crop_scale": (0.9, 0.1)}, "crop_scale"),
    ({"size": 8, "crop_scale": (0.0, 1.0)}, "crop_scale"),
    ({"size": 8, "crop_ratio": (1.0,)}, "crop_ratio"),
    ({"size": 8, "blur_sigma": (2.0, 0.1)}, "blur_sigma"),
    ({"size": 8, "hue": 0.7}, "hue"),
    ({"size": 8, "brightness": -1.0}, "brightness"),
    ({"size": 8, "std": (0.2, 0.0, 0.2)}, "std"),
])
def test_bad_recipe_raises_config_error_naming_the_key(cfg, key):
  with pytest.raises(ConfigError, match=rf"views\[0\]\.{key}"):
    ViewRecipe.from_config(cfg, where="views[0]")


def test_bad_direct_construction_raises_config_error():
  with pytest.raises(ConfigError, match="ViewRecipe.grayscale_prob"):
    ViewRecipe(size=8, grayscale_prob=2.0)
