"""On-device image augmentation: per-image functions, vmapped over a batch with split keys.

Everything here runs inside ``jax.jit`` with fixed output shapes, so the host only ships uint8
batches and the accelerator does the work (host-side augmentation was the bottleneck of the public
TPU BYOL runs). One view of an image is::

  random resized crop -> horizontal flip -> colour jitter (p) -> grayscale (p) -> blur (p)
  -> solarise (p)                                  [then, per batch: normalise with mean/std]

Choices, documented once here:

* **Crop**: the box is sampled like torchvision's ``RandomResizedCrop``: up to 10 tries of
  ``area * U(scale)`` and ``exp(U(log ratio))`` with integer width/height, the first box that fits
  wins, else a central crop clamped to the ratio range. The box is resized to ``size x size`` with
  ``jax.image.scale_and_translate``, **bilinear with antialiasing** (the antialiasing matches
  PIL's downscaling; bilinear, unlike the official bicubic, cannot overshoot [0, 1]). A full-image
  box with ``size`` equal to the input side is the exact identity.
* **Colour jitter**: torchvision's ``ColorJitter`` factors (brightness ``U(max(0, 1-b), 1+b)``,
  contrast ``U(max(0, 1-c), 1+c)`` around the mean luma, saturation ``U(max(0, 1-s), 1+s)``, hue
  shift ``U(-h, h)`` turns via RGB<->HSV), applied in a **random order** per image, as torchvision
  does. An op whose strength is 0 is left out.
* **Grayscale**: ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B``, copied to 3 channels.
* **Blur**: ``sigma ~ U(blur_sigma)`` in pixels of the output view, separable Gaussian with radius
  ``max(1, size // 20, ceil(3 * sigma_max))`` capped at ``size - 1`` (kernel ``2 * radius + 1``;
  ``sigma_max`` is the recipe's upper ``blur_sigma``), reflect padding. At 224 px that is BYOL's
  23 taps (10% of the side); at 32 px the 10% rule alone would give 3 taps, which cannot represent
  sigma 2, so the kernel reaches 3 sigma_max (13 taps for sigma up to 2).
* **Solarise**: ``x -> 1 - x`` where ``x >= 0.5`` (threshold 128 of 255).

Every random op is gated by a Bernoulli draw with its probability; a probability of 0 skips the op
at trace time, so the op is then the exact identity. Each colour op clips to [0, 1]. All random
numbers of one view come from a single ``jax.random.uniform`` call on the image's key (the op
functions take slices of it), which keeps compile time low.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError, DataError

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as in PIL's convert('L') and torchvision.
_CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback.
CROP_UNIFORMS = 2 * _CROP_ATTEMPTS + 2  # area and log-ratio per attempt, then top and left
JITTER_UNIFORMS = 8  # 4 factors, 4 sort keys for the random order
# Layout of the per-image uniform vector drawn by augment_image.
_U_CROP = slice(0, CROP_UNIFORMS)
_U_JITTER = slice(CROP_UNIFORMS, CROP_UNIFORMS + JITTER_UNIFORMS)
(_U_FLIP, _U_JITTER_P, _U_GRAY, _U_SIGMA, _U_BLUR_P,
 _U_SOLARIZE) = range(CROP_UNIFORMS + JITTER_UNIFORMS, CROP_UNIFORMS + JITTER_UNIFORMS + 6)
_NUM_UNIFORMS = CROP_UNIFORMS + JITTER_UNIFORMS + 6


@dataclasses.dataclass(frozen=True)
class ViewRecipe:
  """How to make one augmented view (hashable, so it can be a static argument of ``jax.jit``).

  Attributes:
    size: output side in pixels (square).
    crop_scale: (low, high) fraction of the image area kept by the random resized crop.
    crop_ratio: (low, high) aspect ratio (width / height) range of the crop box.
    flip_prob: probability of a horizontal flip.
    jitter_prob: probability of colour jitter (all four ops together).
    brightness, contrast, saturation: jitter strengths; factors are drawn from U(1 - s, 1 + s).
    hue: hue shift strength in turns, in [0, 0.5]; the shift is drawn from U(-hue, hue).
    grayscale_prob: probability of converting to grayscale.
    blur_prob: probability of Gaussian blur.
    blur_sigma: (low, high) blur sigma range in pixels.
    solarize_prob: probability of solarisation.
    mean, std: per-channel normalisation applied by :func:`augment_batch` after augmenting.
  """

  size: int
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  jitter_prob: float = 0.8
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.2
  hue: float = 0.1
  grayscale_prob: float = 0.2
  blur_prob: float = 0.0
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  solarize_prob: float = 0.0
  mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
  std: tuple[float, float, float] = (0.229, 0.224, 0.225)

  modality = "image"  # The batch key it reads is ``image``; not a field.

  def __post_init__(self):
    _validate(dataclasses.asdict(self), where="ViewRecipe")

  def __call__(self, rng: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The view as a pure function of the batch: :func:`augment_batch` of ``batch['image']``.

    Whole-photo canvases (batches with ``image_hw``) are cropped on the photo's own size.
    """
    return augment_batch(rng, batch["image"], self, source_hw=batch.get("image_hw"))

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any], *, where: str = "view") -> ViewRecipe:
    """Builds a recipe from a ConfigDict or dict holding (a subset of) the fields above.

    Args:
      cfg: mapping of field name -> value; lists are accepted where tuples are expected.
      where: how error messages name the config entry, e.g. ``'config.views[0]'``.

    Raises:
      ConfigError: a key is unknown or missing (``size``), or a value is out of range.
    """
    values = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
      if key not in names:
        raise ConfigError(
            f"{where}.{key}: unknown view recipe key; use one of: {', '.join(names)}")
    if "size" not in values:
      raise ConfigError(f"{where}.size is missing; set the output side of the view, e.g. 32")
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in values.items()}
    _validate(values, where=where)
    return cls(**values)


def _validate(values: Mapping[str, Any], *, where: str) -> None:
  """Raises ConfigError naming the first bad field of a recipe given as a dict."""

  def fail(key, rule):
    raise ConfigError(f"{where}.{key}={values[key]!r}: {rule}")

  def is_number(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

  def is_range(v, *, low, high=math.inf):
    return (isinstance(v, tuple) and len(v) == 2 and all(is_number(t) for t in v)
            and low < v[0] <= v[1] <= high)

  size = values.get("size")
  if not isinstance(size, int) or isinstance(size, bool) or size < 1:
    fail("size", "must be an int >= 1 (the output side in pixels)")
  checks = {
      "crop_scale": (lambda v: is_range(v, low=0.0, high=1.0),
                     "must be (low, high) with 0 < low <= high <= 1, e.g. (0.08, 1.0)"),
      "crop_ratio": (lambda v: is_range(v, low=0.0),
                     "must be (low, high) with 0 < low <= high, e.g. (0.75, 1.333)"),
      "blur_sigma": (lambda v: is_range(v, low=0.0),
                     "must be (low, high) with 0 < low <= high, e.g. (0.1, 2.0)"),
      "hue": (lambda v: is_number(v) and 0 <= v <= 0.5, "must be a number in [0, 0.5]"),
      "mean": (lambda v: isinstance(v, tuple) and len(v) == 3 and all(map(is_number, v)),
               "must be 3 numbers (R, G, B)"),
      "std": (lambda v: isinstance(v, tuple) and len(v) == 3
              and all(is_number(t) and t > 0 for t in v), "must be 3 positive numbers (R, G, B)"),
  }
  for key in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
    checks[key] = (lambda v: is_number(v) and 0 <= v <= 1,
                   "is a probability; use a value in [0, 1]")
  for key in ("brightness", "contrast", "saturation"):
    checks[key] = (lambda v: is_number(v) and v >= 0, "must be a number >= 0")
  for key, (ok, rule) in checks.items():
    if key in values and not ok(values[key]):
      fail(key, rule)


# ----------------------------------------------------------------------------- crop and flip


def _between(u, low, high):
  """Maps uniforms in [0, 1) to [low, high); exactly ``low`` when low == high."""
  return low + (high - low) * u


def _sample_crop_box(u, height: int, width: int, *, scale, ratio):
  """Samples a RandomResizedCrop box (torchvision's rule; see module docstring).

  Args:
    u: float32 [CROP_UNIFORMS] uniforms in [0, 1).
    height, width: input size (static).
    scale, ratio: (low, high) area-fraction and aspect-ratio ranges.

  Returns:
    (top, left, box_height, box_width), float32 scalars holding integers.
  """
  if not isinstance(height, int):
    return _sample_crop_box_traced(u, height, width, scale=scale, ratio=ratio)
  u_area, u_ratio = u[:_CROP_ATTEMPTS], u[_CROP_ATTEMPTS:2 * _CROP_ATTEMPTS]
  u_top, u_left = u[2 * _CROP_ATTEMPTS], u[2 * _CROP_ATTEMPTS + 1]
  area = float(height * width)
  target = area * _between(u_area, *scale)
  aspect = jnp.exp(_between(u_ratio, math.log(ratio[0]), math.log(ratio[1])))
  ws = jnp.round(jnp.sqrt(target * aspect))
  hs = jnp.round(jnp.sqrt(target / aspect))
  fits = (ws >= 1) & (ws <= width) & (hs >= 1) & (hs <= height)
  first = jnp.argmax(fits)  # index of the first box that fits (0 if none; masked below)
  # The fallback depends only on static shapes, so compute it in Python.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    fw, fh = width, round(width / ratio[0])
  elif in_ratio > ratio[1]:
    fw, fh = round(height * ratio[1]), height
  else:
    fw, fh = width, height
  any_fits = fits.any()
  h = jnp.where(any_fits, hs[first], float(fh))
  w = jnp.where(any_fits, ws[first], float(fw))
  top_random = jnp.minimum(jnp.floor(u_top * (height - h + 1)), height - h)
  left_random = jnp.minimum(jnp.floor(u_left * (width - w + 1)), width - w)
  top = jnp.where(any_fits, top_random, float((height - fh) // 2))
  left = jnp.where(any_fits, left_random, float((width - fw) // 2))
  return top, left, h, w


def _sample_crop_box_traced(u, height, width, *, scale, ratio):
  """:func:`_sample_crop_box` for an image size known only on device (float32 scalars)."""
  height, width = jnp.asarray(height, jnp.float32), jnp.asarray(width, jnp.float32)
  u_area, u_ratio = u[:_CROP_ATTEMPTS], u[_CROP_ATTEMPTS:2 * _CROP_ATTEMPTS]
  u_top, u_left = u[2 * _CROP_ATTEMPTS], u[2 * _CROP_ATTEMPTS + 1]
  target = height * width * _between(u_area, *scale)
  aspect = jnp.exp(_between(u_ratio, math.log(ratio[0]), math.log(ratio[1])))
  ws = jnp.round(jnp.sqrt(target * aspect))
  hs = jnp.round(jnp.sqrt(target / aspect))
  fits = (ws >= 1) & (ws <= width) & (hs >= 1) & (hs <= height)
  first = jnp.argmax(fits)
  in_ratio = width / height
  fw = jnp.where(in_ratio > ratio[1], jnp.round(height * ratio[1]), width)
  fh = jnp.where(in_ratio < ratio[0], jnp.round(width / ratio[0]), height)
  any_fits = fits.any()
  h = jnp.where(any_fits, hs[first], fh)
  w = jnp.where(any_fits, ws[first], fw)
  top = jnp.where(any_fits, jnp.minimum(jnp.floor(u_top * (height - h + 1)), height - h),
                  jnp.floor((height - fh) / 2))
  left = jnp.where(any_fits, jnp.minimum(jnp.floor(u_left * (width - w + 1)), width - w),
                   jnp.floor((width - fw) / 2))
  return top, left, h, w


def random_resized_crop(u, image, *, size: int, scale, ratio, source_hw=None):
  """Crops a random box and resizes it to ``size x size`` (bilinear, antialiased).

  Args:
    u: float32 [CROP_UNIFORMS] uniforms in [0, 1) that choose the box.
    image: float32 [H, W, C].
    size: output side.
    scale, ratio: (low, high) area fraction and aspect-ratio ranges.
    source_hw: int [2], the size of the photo that ``image`` is a canvas of (the whole photo
      resized to H x W, aspect ratio not kept: ``ssljax.data.sources.resize_whole``), or None
      when ``image`` is the picture itself. The box is sampled on the photo's own size, so crops
      keep its aspect ratio and reach every side of it, then mapped onto the canvas.

  Returns:
    float32 [size, size, C].
  """
  height, width, channels = image.shape
  if source_hw is not None:
    src_h, src_w = (jnp.asarray(source_hw, jnp.float32)[i] for i in (0, 1))
    top, left, h, w = _sample_crop_box(u, src_h, src_w, scale=scale, ratio=ratio)
    sy, sx = height / src_h, width / src_w  # photo pixels -> canvas pixels
    top, left, h, w = top * sy, left * sx, h * sy, w * sx
  else:
    top, left, h, w = _sample_crop_box(u, height, width, scale=scale, ratio=ratio)
  # scale_and_translate maps input coordinate u to u * s + t; send [top, top + h) to [0, size).
  s = jnp.stack([size / h, size / w])
  t = -jnp.stack([top, left]) * s
  return jax.image.scale_and_translate(
      image, (size, size, channels), (0, 1), s, t, method="linear", antialias=True)


def horizontal_flip(image):
  """Mirrors left-right. [H, W, C] -> [H, W, C]."""
  return image[:, ::-1]


# ----------------------------------------------------------------------------- colour


def _luma(image):
  """[H, W, 3] -> [H, W, 1] ITU-R 601 luma."""
  return jnp.tensordot(image, jnp.asarray(_LUMA, image.dtype), axes=[[-1], [0]])[..., None]


def to_grayscale(image):
  """Luma replicated to 3 channels. [H, W, 3] -> [H, W, 3]."""
  return jnp.broadcast_to(_luma(image), image.shape)


def adjust_brightness(image, factor):
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image, factor):
  # torchvision blends with the mean of the grayscale image.
  mean = jnp.mean(_luma(image))
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image, factor):
  return jnp.clip(factor * image + (1.0 - factor) * _luma(image), 0.0, 1.0)


def rgb_to_hsv(image):
  """[..., 3] RGB in [0, 1] -> [..., 3] HSV, hue in turns [0, 1)."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  value = jnp.max(image, axis=-1)
  delta = value - jnp.min(image, axis=-1)
  saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
  safe = jnp.where(delta > 0, delta, 1.0)  # keeps gradients and values finite for grays
  rc, gc, bc = (value - r) / safe, (value - g) / safe, (value - b) / safe
  hue = jnp.where(r == value, bc - gc, jnp.where(g == value, 2.0 + rc - bc, 4.0 + gc - rc))
  hue = jnp.where(delta > 0, jnp.mod(hue / 6.0, 1.0), 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(image):
  """[..., 3] HSV (hue in turns) -> [..., 3] RGB."""
  h, s, v = image[..., 0], image[..., 1], image[..., 2]
  sector = jnp.floor(h * 6.0)
  f = h * 6.0 - sector
  sector = jnp.mod(sector, 6).astype(jnp.int32)
  p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
  # One row per hue sector: (R, G, B) picked from (v, t, p, q).
  table = jnp.stack([
      jnp.stack([v, t, p], -1), jnp.stack([q, v, p], -1), jnp.stack([p, v, t], -1),
      jnp.stack([p, q, v], -1), jnp.stack([t, p, v], -1), jnp.stack([v, p, q], -1)], axis=0)
  return jnp.take_along_axis(table, sector[None, ..., None], axis=0)[0]


def adjust_hue(image, shift):
  """Rotates hue by ``shift`` turns. [H, W, 3] -> [H, W, 3]."""
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
  return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def color_jitter(u, image, *, brightness: float, contrast: float, saturation: float,
                 hue: float):
  """torchvision's ColorJitter: random factors, ops applied in a random order.

  Args:
    u: float32 [JITTER_UNIFORMS] uniforms in [0, 1): 4 factors, then 4 sort keys for the order.
    image: float32 [H, W, 3] in [0, 1].
    brightness, contrast, saturation, hue: strengths (0 leaves that op out).

  Returns:
    float32 [H, W, 3] in [0, 1].
  """

  def factor(i, strength):
    return _between(u[i], max(0.0, 1.0 - strength), 1.0 + strength)

  ops: list[Callable] = []
  if brightness > 0:
    ops.append(lambda x: adjust_brightness(x, factor(0, brightness)))
  if contrast > 0:
    ops.append(lambda x: adjust_contrast(x, factor(1, contrast)))
  if saturation > 0:
    ops.append(lambda x: adjust_saturation(x, factor(2, saturation)))
  if hue > 0:
    ops.append(lambda x: adjust_hue(x, _between(u[3], -hue, hue)))
  if not ops:
    return image
  order = jnp.argsort(u[4:4 + len(ops)])  # a uniformly random permutation
  return jax.lax.fori_loop(
      0, len(ops), lambda i, x: jax.lax.switch(order[i], ops, x), image)


# ----------------------------------------------------------------------------- blur, solarise


def blur_radius(size: int, *, sigma_max: float) -> int:
  """Gaussian kernel radius for a view of side ``size`` blurred with sigmas up to ``sigma_max``.

  ``max(1, size // 20, ceil(3 * sigma_max))``: about 10% of the side (BYOL's 23 taps at 224 px)
  and at least 3 standard deviations of the widest blur, whose truncated tails then hold < 0.3% of
  the mass; capped at ``size - 1`` because reflect padding needs a radius below the side.
  """
  radius = max(1, size // 20, math.ceil(3.0 * float(sigma_max)))
  return max(0, min(radius, size - 1))


def gaussian_blur(image, sigma, *, radius: int):
  """Separable Gaussian blur with reflect padding.

  Args:
    image: float32 [H, W, C].
    sigma: scalar standard deviation in pixels.
    radius: kernel radius (kernel has ``2 * radius + 1`` taps), static.

  Returns:
    float32 [H, W, C].
  """
  if radius == 0:
    return image
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  weights = weights / jnp.sum(weights)

  def blur_axis(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode="reflect")
    n = x.shape[axis]
    taps = [jax.lax.slice_in_dim(padded, k, k + n, axis=axis) for k in range(2 * radius + 1)]
    return sum(w * tap for w, tap in zip(weights, taps, strict=True))

  return blur_axis(blur_axis(image, 0), 1)


def solarize(image, threshold: float = 0.5):
  """``x -> 1 - x`` for ``x >= threshold``. [H, W, C] -> [H, W, C]."""
  return jnp.where(image >= threshold, 1.0 - image, image)


# ----------------------------------------------------------------------------- views


def _maybe(u, prob: float, fn: Callable, x):
  """Applies ``fn`` when ``u < prob``; a static 0 or 1 needs no select (0 is the exact identity)."""
  if prob <= 0:
    return x
  if prob >= 1:
    return fn(x)
  return jnp.where(u < prob, fn(x), x)


def _to_rgb(image):
  """Tiles a 1-channel image to 3 channels; [..., C] -> [..., 3]."""
  channels = image.shape[-1]
  if channels == 3:
    return image
  if channels == 1:
    return jnp.broadcast_to(image, image.shape[:-1] + (3,))
  raise DataError(f"images have {channels} channels; use 1 (grayscale) or 3 (RGB) channels")


def augment_image(rng, image, recipe: ViewRecipe, source_hw=None):
  """One augmented view of one image (see the module docstring for the order and the ops).

  Args:
    rng: PRNG key.
    image: float32 [H, W, 3] (or [H, W, 1], tiled to RGB) in [0, 1].
    recipe: the view's recipe (static).
    source_hw: int [2] when ``image`` is a whole-photo canvas (see :func:`random_resized_crop`).

  Returns:
    float32 [recipe.size, recipe.size, 3] in [0, 1], not normalised.
  """
  # One draw for every random number of the view: each separate jax.random call adds its own
  # threefry kernel, and those dominated compile time.
  u = jax.random.uniform(rng, (_NUM_UNIFORMS,))
  x = _to_rgb(jnp.asarray(image, jnp.float32))
  x = random_resized_crop(u[_U_CROP], x, size=recipe.size, scale=recipe.crop_scale,
                          ratio=recipe.crop_ratio, source_hw=source_hw)
  x = jnp.clip(x, 0.0, 1.0)
  x = _maybe(u[_U_FLIP], recipe.flip_prob, horizontal_flip, x)
  jitter = lambda y: color_jitter(  # noqa: E731
      u[_U_JITTER], y, brightness=recipe.brightness, contrast=recipe.contrast,
      saturation=recipe.saturation, hue=recipe.hue)
  x = _maybe(u[_U_JITTER_P], recipe.jitter_prob, jitter, x)
  x = _maybe(u[_U_GRAY], recipe.grayscale_prob, to_grayscale, x)
  sigma = _between(u[_U_SIGMA], *recipe.blur_sigma)
  blur = lambda y: jnp.clip(  # noqa: E731
      gaussian_blur(y, sigma, radius=blur_radius(recipe.size, sigma_max=recipe.blur_sigma[1])),
      0.0, 1.0)
  x = _maybe(u[_U_BLUR_P], recipe.blur_prob, blur, x)
  return _maybe(u[_U_SOLARIZE], recipe.solarize_prob, solarize, x)


def plain_view(recipe: ViewRecipe) -> ViewRecipe:
  """The recipe without its augmentations: the whole image resized to ``recipe.size``, normalised.

  No crop (scale and ratio 1: a square image is kept whole; a wider or taller one gives its
  largest centred square, the crop sampler's fallback), flip, jitter, grayscale, blur or
  solarisation. ``input.plain_view_epochs`` trains on these views first.
  """
  return dataclasses.replace(recipe, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                             jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                             solarize_prob=0.0)


def _normalize(images, mean, std):
  return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment_batch(rng, images, recipe: ViewRecipe, source_hw=None):
  """Augments a uint8 batch, one independent key per image, then normalises.

  Args:
    rng: PRNG key.
    images: uint8 [B, H, W, C] with C in {1, 3}.
    recipe: the view's recipe (static).
    source_hw: int [B, 2] when the images are whole-photo canvases (``image_hw``), else None.

  Returns:
    float32 [B, recipe.size, recipe.size, 3], normalised with ``recipe.mean`` / ``recipe.std``.
  """
  x = _to_rgb(jnp.asarray(images).astype(jnp.float32) / 255.0)
  keys = jax.random.split(rng, x.shape[0])
  if source_hw is None:
    views = jax.vmap(augment_image, in_axes=(0, 0, None))(keys, x, recipe)
  else:
    views = jax.vmap(augment_image, in_axes=(0, 0, None, 0))(keys, x, recipe, source_hw)
  return _normalize(views, recipe.mean, recipe.std)


def preprocess_eval(images, *, size: int, mean, std, crop_fraction: float = 1.0,
                    source_hw=None):
  """Deterministic eval view: resize, centre crop, tile gray to RGB, normalise.

  Images whose sides are both <= ``size`` are resized to ``size x size`` (no crop; a no-op when
  they already are that size). Larger images have their shorter side resized to
  ``round(size / crop_fraction)`` and are centre-cropped to ``size x size``. The default
  ``crop_fraction=1.0`` (resize the shorter side to ``size``, then crop) approximates the usual
  ImageNet "resize 256, centre crop 224"; pass ``crop_fraction=0.875`` for exactly that ratio.

  Args:
    images: uint8 [B, H, W, C] with C in {1, 3}.
    size: output side.
    mean, std: 3 per-channel normalisation numbers each.
    crop_fraction: fraction of the resized shorter side kept by the centre crop, in (0, 1].

    source_hw: int [B, 2] when the images are whole-photo canvases (``image_hw``): the same
      resize-and-centre-crop, computed on each photo's own size (:func:`_eval_from_canvas`).

  Returns:
    float32 [B, size, size, 3].
  """
  x = _to_rgb(jnp.asarray(images).astype(jnp.float32) / 255.0)
  if source_hw is not None:
    x = jax.vmap(lambda im, hw: _eval_from_canvas(im, hw, size, crop_fraction))(x, source_hw)
    return _normalize(jnp.clip(x, 0.0, 1.0), mean, std)
  batch, height, width, _ = x.shape
  if height <= size and width <= size:
    if (height, width) != (size, size):
      x = jax.image.resize(x, (batch, size, size, 3), method="linear", antialias=True)
  else:
    short = round(size / crop_fraction)
    new_h = max(size, round(height * short / min(height, width)))
    new_w = max(size, round(width * short / min(height, width)))
    x = jax.image.resize(x, (batch, new_h, new_w, 3), method="linear", antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, top:top + size, left:left + size]
  return _normalize(jnp.clip(x, 0.0, 1.0), mean, std)


def _eval_from_canvas(canvas, source_hw, size: int, crop_fraction: float):
  """The photo's centre square of side ``min(H, W) * crop_fraction`` (the resize-shorter-side,
  centre-crop evaluation view), read from its canvas and resized to ``size x size``."""
  height, width, channels = canvas.shape
  src_h, src_w = (jnp.asarray(source_hw, jnp.float32)[i] for i in (0, 1))
  side = jnp.minimum(src_h, src_w) * min(1.0, float(crop_fraction))
  top, left = (src_h - side) / 2, (src_w - side) / 2
  sy, sx = height / src_h, width / src_w
  s = jnp.stack([size / (side * sy), size / (side * sx)])
  t = -jnp.stack([top * sy, left * sx]) * s
  return jax.image.scale_and_translate(
      canvas, (size, size, channels), (0, 1), s, t, method="linear", antialias=True)
