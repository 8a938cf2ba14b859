"""``input.plain_view_epochs``: un-augmented image views for the first epochs of a run."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import train
from ssljax.data import augment
from ssljax.data.augment import ViewRecipe
from ssljax.errors import ConfigError

STRONG = ViewRecipe(size=16, crop_scale=(0.2, 1.0), flip_prob=0.5, jitter_prob=0.8,
                    grayscale_prob=0.2, blur_prob=0.5, solarize_prob=0.2,
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _images(shape=(4, 16, 16, 3), seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_plain_view_is_the_whole_image_normalised_whatever_the_key():
  images = _images()
  plain = augment.plain_view(STRONG)
  assert plain.size == STRONG.size and plain.mean == STRONG.mean and plain.std == STRONG.std
  a = plain(jax.random.key(0), {"image": images})
  b = plain(jax.random.key(1), {"image": images})
  np.testing.assert_array_equal(a, b)
  # A 16 px image at a 16 px view: the image itself, normalised by the recipe's mean and std.
  want = (images.astype(np.float32) / 255.0 - 0.5) / 0.25
  np.testing.assert_allclose(a, want, atol=1e-4)
  # The augmented recipe differs from it under the same key.
  assert not np.allclose(STRONG(jax.random.key(0), {"image": images}), a, atol=1e-3)


def test_make_views_switches_from_plain_to_augmented_at_the_step():
  batch = {"image": _images(), "label": np.zeros(4, np.int32)}
  rng = jax.random.key(3)
  augmented = train.make_views(rng, batch, [STRONG, STRONG])
  plain = [augment.plain_view(STRONG)(rng, batch) for _ in range(2)]

  def views_at(step):
    return jax.jit(lambda s: train.make_views(rng, batch, [STRONG, STRONG], step=s,
                                              plain_view_steps=5))(jnp.asarray(step))

  # Jitted against eager: the same ops, float32 rounding apart.
  for got, want in zip(views_at(4), plain, strict=True):
    np.testing.assert_allclose(got, want, atol=1e-4)
  for got, want in zip(views_at(5), augmented, strict=True):
    np.testing.assert_allclose(got, want, atol=1e-4)
  assert not np.allclose(plain[0], augmented[0], atol=1e-2)


def test_bad_plain_view_epochs_name_the_key():
  config = importlib.import_module("experiments.simclr").get_config("runlocal")
  config.input.plain_view_epochs = -1.0
  with pytest.raises(ConfigError, match="input.plain_view_epochs=-1.0 must be a number"):
    train.plain_view_steps(config, None, 10)
  # Tables have no image view to make plain.
  table = importlib.import_module("experiments.scarf").get_config("runlocal")
  table.input.plain_view_epochs = 2.0

  class _Method:
    name = "scarf"
    views = (lambda rng, batch: batch,)

  with pytest.raises(ConfigError, match="method='scarf' has none here"):
    train.plain_view_steps(table, _Method(), 10)
  config.input.plain_view_epochs = 2.5
  assert train.plain_view_steps(config, _Images(), 10) == 25


class _Images:
  name = "simclr"
  views = (STRONG,)


def test_dino_digits_recipe_scales_its_plain_epochs_to_the_28px_runs():
  dino = importlib.import_module("experiments.dino")
  assert dino.get_config().input.plain_view_epochs == 32.0  # 40% of the 80 digits epochs
  c = dino.get_config("data=mnist5k")
  np.testing.assert_allclose(c.input.plain_view_epochs, 32.0 * c.total_epochs / 80.0)
  assert dino.get_config("data=cifar10").input.plain_view_epochs == 0.0
