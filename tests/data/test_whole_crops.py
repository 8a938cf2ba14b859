"""Training crops come from the whole photo (RandomResizedCrop on the full image), not its centre.

Photos of any size are kept as a fixed-size canvas of the whole photo plus its own [H, W]
(``image_hw``); crop boxes are sampled on the photo's size and mapped onto the canvas.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.data import augment, sources

H, W = 40, 120  # A wide photo: 3:1.


def _reference_box(u, height, width, scale, ratio, attempts=10):
  """torchvision's RandomResizedCrop.get_params, written from its documented rule, driven by the
  same uniforms: per attempt an area ``H * W * U(scale)`` and ``exp(U(log ratio))``, ``w =
  round(sqrt(area * r))``, ``h = round(sqrt(area / r))``; the first that fits wins, placed at
  ``randint(0, H - h + 1)`` / ``randint(0, W - w + 1)``; else the central crop clamped to the ratio
  range."""
  u = np.asarray(u, np.float64)
  for i in range(attempts):
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[i])
    r = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[attempts + i])
    w, h = round(math.sqrt(area * r)), round(math.sqrt(area / r))
    if 0 < w <= width and 0 < h <= height:
      top = min(math.floor(u[2 * attempts] * (height - h + 1)), height - h)
      left = min(math.floor(u[2 * attempts + 1] * (width - w + 1)), width - w)
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, round(width / ratio[0])
  elif in_ratio > ratio[1]:
    w, h = round(height * ratio[1]), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def test_boxes_on_the_photo_size_are_torchvisions():
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  us = jax.random.uniform(jax.random.key(0), (2000, augment.CROP_UNIFORMS))
  sample = jax.jit(jax.vmap(lambda u: augment._sample_crop_box(
      u, jnp.float32(H), jnp.float32(W), scale=scale, ratio=ratio)))
  ours = np.stack([np.asarray(a) for a in sample(us)], axis=1)
  ref = np.array([_reference_box(u, H, W, scale, ratio) for u in np.asarray(us)], np.float64)
  # float32 uniforms in both; a rounding tie may land on the other integer in a few boxes.
  agree = np.all(np.abs(ours - ref) <= 1, axis=1)
  assert agree.mean() > 0.99, np.flatnonzero(~agree)[:5]
  fraction = ours[:, 2] * ours[:, 3] / (H * W)
  # The area fraction spans the range a 3:1 photo allows (a box of ratio <= 4/3 covers at most
  # 40 x 53 of its 40 x 120 pixels, 0.44), and boxes reach both edges of the wide photo.
  assert fraction.min() < 0.12 and 0.4 < fraction.max() <= 40 * 54 / (H * W)
  assert (ours[:, 1] == 0).any() and (ours[:, 1] + ours[:, 3] == W).any()
  np.testing.assert_allclose(fraction.mean(), (ref[:, 2] * ref[:, 3] / (H * W)).mean(), rtol=0.01)


def _striped_photo():
  """Red in the leftmost 10 columns, blue in the rightmost 10, grey between."""
  photo = np.full((H, W, 3), 128, np.uint8)
  photo[:, :10] = (255, 0, 0)
  photo[:, -10:] = (0, 0, 255)
  return photo


def _views(image, hw, count=256):
  recipe = augment.ViewRecipe(size=16, flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0,
                              mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
  images = jnp.broadcast_to(jnp.asarray(image), (count, *image.shape))
  batch = {"image": images}
  if hw is not None:
    batch["image_hw"] = jnp.broadcast_to(jnp.asarray(hw, jnp.int32), (count, 2))
  return np.asarray(recipe(jax.random.key(1), batch))


def test_crops_of_the_canvas_reach_both_sides_of_the_photo():
  photo = _striped_photo()
  canvas, hw = sources.resize_image(photo, 32, whole=True)
  assert canvas.shape == (32, 32, 3) and tuple(hw) == (H, W)
  views = _views(canvas, hw)
  red = (views[..., 0] > 0.8) & (views[..., 2] < 0.2)
  blue = (views[..., 2] > 0.8) & (views[..., 0] < 0.2)
  assert red.any(axis=(1, 2)).mean() > 0.05 and blue.any(axis=(1, 2)).mean() > 0.05
  # The centre-square path (whole_image=False) never sees either side of this photo.
  centre, _ = sources.resize_image(photo, 32, whole=False)
  views = _views(centre, None)
  assert not ((views[..., 0] > 0.8) & (views[..., 2] < 0.2)).any()
  assert not ((views[..., 2] > 0.8) & (views[..., 0] < 0.2)).any()


def _smooth_photo():
  y, x = np.mgrid[0:H, 0:W].astype(np.float32)
  return np.stack([x / W, y / H, 0.5 + 0.4 * np.sin(x / 15.0)], -1)


def test_a_canvas_crop_matches_the_same_crop_of_the_photo():
  """The box maps onto the canvas: same pixels as cropping the photo itself (up to resampling)."""
  photo = _smooth_photo()
  canvas = np.asarray(jax.image.resize(jnp.asarray(photo), (48, 48, 3), "linear", antialias=True))
  for seed in range(8):
    u = jax.random.uniform(jax.random.key(seed), (augment.CROP_UNIFORMS,))
    direct = augment.random_resized_crop(u, jnp.asarray(photo), size=16, scale=(0.2, 1.0),
                                         ratio=(3 / 4, 4 / 3))
    mapped = augment.random_resized_crop(u, jnp.asarray(canvas), size=16, scale=(0.2, 1.0),
                                         ratio=(3 / 4, 4 / 3), source_hw=jnp.array([H, W]))
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(direct), atol=0.04)


def test_evaluation_view_of_a_canvas_is_the_photos_centre():
  photo = _smooth_photo()
  canvas = np.asarray(jax.image.resize(jnp.asarray(photo), (48, 48, 3), "linear", antialias=True))
  as_uint8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)[None]  # noqa: E731
  kw = dict(size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
  direct = augment.preprocess_eval(as_uint8(photo), **kw)
  mapped = augment.preprocess_eval(as_uint8(canvas), source_hw=jnp.array([[H, W]]), **kw)
  np.testing.assert_allclose(np.asarray(mapped), np.asarray(direct), atol=0.04)
