"""On-device image corruptions with a severity: haze, motion blur, rain, occlusion.

These are the four "information-erasing" and weather factors of Trust-SSL (Boulila et al.,
arXiv 2604.21349) as per-image functions that run inside ``jax.jit`` and ``jax.vmap`` with fixed
output shapes. Every op takes a float32 image [H, W, 3] with values in [0, 1] (the layout
:func:`ssljax.data.augment.augment_image` returns *before* normalisation; a method that receives
normalised views un-normalises first, see ``ssljax/methods/trust_ssl.py``) and returns an image of
the same shape that stays in [0, 1]: every op is a convex blend of the input and constants in
[0, 1] (clipped against rounding).

Severity is a float in ``[0, MAX_SEVERITY]`` (may be traced). The paper's severities 1..5 map a
strength linearly from its level-1 value to its level-5 value (official code); below 1 the
strength ramps linearly from 0, so **severity 0 is the exact identity** for every factor and
fractional severities interpolate. Strengths (level 1 -> level 5):

* ``haze``: ``x (1 - beta) + 0.9 beta``, beta 0.1 -> 0.6 (atmospheric light 0.9).
* ``motion_blur``: horizontal box blur of length 5 -> 25 px, edge padding. A fractional length
  covers its end pixels partially, so the blur grows continuously with severity.
* ``rain``: ``20 * severity`` one-pixel-wide vertical streaks of length 4 -> 16 px at random
  places, blended towards white with opacity 0.05 -> 0.5.
* ``occlusion``: a black box covering 8% -> 30% of the area (square root of the fraction per
  side), at a random place.

Pixel lengths and streak counts are defined for a ``reference_size`` x ``reference_size`` image
(224, the paper's); on a side-``S`` image lengths scale by ``S / reference_size`` and streak counts
by its square, so a corruption covers the same fraction of any image. Tiny images (digits, CIFAR)
pass a smaller ``reference_size`` to keep the corruptions visible.

Differences from the official PyTorch code (``trust_ssl/data/corruptions.py``), on purpose:
motion blur pads with edge values (the official zero padding darkens the borders, which is a
brightness change, not a blur); rain brightens only the streak pixels (the official
``x (1 - i) + overlay * i`` also dims every other pixel by ``1 - i``, which mixes a global
darkening into "rain"); severities are continuous and 0 is the identity (official: integers
clamped to 1..5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError

FACTORS = ("haze", "motion_blur", "rain", "occlusion")
MAX_SEVERITY = 5.0
REFERENCE_SIZE = 224  # The paper's view side, where the pixel strengths below are defined.
HAZE_LIGHT = 0.9  # Atmospheric light A of the haze model.
HAZE_BETA = (0.1, 0.6)
MOTION_LENGTH = (5.0, 25.0)  # px at REFERENCE_SIZE
RAIN_OPACITY = (0.05, 0.5)
RAIN_LENGTH = (4.0, 16.0)  # px at REFERENCE_SIZE
RAIN_STREAKS_PER_LEVEL = 20  # at REFERENCE_SIZE
OCCLUSION_AREA = (0.08, 0.30)


def strength(severity, level1: float, level5: float):
  """Severity -> strength: 0 at severity 0, ``level1`` at 1, linear to ``level5`` at 5.

  Args:
    severity: float scalar (may be traced), clipped to [0, MAX_SEVERITY].
    level1, level5: the strength at severities 1 and 5.

  Returns:
    float32 scalar.
  """
  s = jnp.clip(jnp.asarray(severity, jnp.float32), 0.0, MAX_SEVERITY)
  return jnp.where(s < 1.0, s * level1, level1 + (level5 - level1) * (s - 1.0) / 4.0)


def _scale(image, reference_size: int) -> float:
  """Pixel-length scale of an [H, W, C] image relative to the reference side (static)."""
  return max(image.shape[0], image.shape[1]) / float(reference_size)


def haze(rng, image, severity, *, reference_size: int = REFERENCE_SIZE):
  """Atmospheric scattering ``x (1 - beta) + A beta`` with A = 0.9. [H, W, C] -> [H, W, C]."""
  del rng, reference_size  # Deterministic and size-free.
  beta = strength(severity, *HAZE_BETA)
  return image * (1.0 - beta) + HAZE_LIGHT * beta


def motion_blur(rng, image, severity, *, reference_size: int = REFERENCE_SIZE):
  """Horizontal box blur whose length grows with severity (edge padding). [H, W, C] -> same.

  A box of length ``L`` centred on a pixel covers the tap at offset ``k`` by
  ``clip((L + 1) / 2 - |k|, 0, 1)``; lengths <= 1 leave the image unchanged.
  """
  del rng
  scale = _scale(image, reference_size)
  length = strength(severity, *MOTION_LENGTH) * scale
  radius = max(1, math.ceil(MOTION_LENGTH[1] * scale / 2.0))  # static: the longest box
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.clip((length + 1.0) / 2.0 - jnp.abs(offsets), 0.0, 1.0)
  weights = weights / jnp.sum(weights)
  width = image.shape[1]
  padded = jnp.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
  taps = [padded[:, k:k + width] for k in range(2 * radius + 1)]
  # The weights sum to 1 only up to rounding: clip so the output stays in [0, 1].
  return jnp.clip(sum(weights[k] * tap for k, tap in enumerate(taps)), 0.0, 1.0)


def rain(rng, image, severity, *, reference_size: int = REFERENCE_SIZE):
  """Vertical white streaks (``20 * severity`` at the reference size). [H, W, C] -> same.

  Streak ``n`` starts at a uniformly random pixel and runs down; streaks past the count for this
  severity are masked out, so a higher severity adds streaks to (and lengthens) the same ones.
  """
  height, width = image.shape[0], image.shape[1]
  scale = _scale(image, reference_size)
  area = scale * scale
  max_streaks = max(1, math.ceil(RAIN_STREAKS_PER_LEVEL * MAX_SEVERITY * area))  # static
  s = jnp.clip(jnp.asarray(severity, jnp.float32), 0.0, MAX_SEVERITY)
  count = jnp.floor(RAIN_STREAKS_PER_LEVEL * s * area + 0.5)
  length = jnp.maximum(strength(severity, *RAIN_LENGTH) * scale, 1.0)
  opacity = strength(severity, *RAIN_OPACITY)
  u = jax.random.uniform(rng, (max_streaks, 2))
  top_n = jnp.floor(u[:, 0] * height)
  col_n = jnp.floor(u[:, 1] * width)
  active_n = jnp.arange(max_streaks) < count
  y_h = jnp.arange(height, dtype=jnp.float32)
  x_w = jnp.arange(width, dtype=jnp.float32)
  rows_nh = (active_n[:, None] & (y_h >= top_n[:, None]) & (y_h < top_n[:, None] + length))
  cols_nw = x_w == col_n[:, None]
  # (H, N) @ (N, W) marks each streak's pixels without an N x H x W intermediate.
  overlay_hw = jnp.minimum(
      jnp.matmul(rows_nh.T.astype(jnp.float32), cols_nw.astype(jnp.float32),
                 precision=jax.lax.Precision.HIGHEST), 1.0)
  alpha = (opacity * overlay_hw)[..., None]
  # Towards white (1.0) on the streaks only; the clip absorbs rounding above 1.
  return jnp.clip(image * (1.0 - alpha) + alpha, 0.0, 1.0)


def occlusion(rng, image, severity, *, reference_size: int = REFERENCE_SIZE):
  """A black box of area fraction 8% -> 30% at a random place. [H, W, C] -> [H, W, C]."""
  del reference_size  # The box is a fraction of the image.
  height, width = image.shape[0], image.shape[1]
  side = jnp.sqrt(strength(severity, *OCCLUSION_AREA))
  box_h, box_w = jnp.floor(height * side), jnp.floor(width * side)
  u = jax.random.uniform(rng, (2,))
  top = jnp.floor(u[0] * (height - box_h + 1.0))
  left = jnp.floor(u[1] * (width - box_w + 1.0))
  y = jnp.arange(height, dtype=jnp.float32)[:, None]
  x = jnp.arange(width, dtype=jnp.float32)[None, :]
  inside = (y >= top) & (y < top + box_h) & (x >= left) & (x < left + box_w)
  return jnp.where(inside[..., None], 0.0, image)


_OPS = {"haze": haze, "motion_blur": motion_blur, "rain": rain, "occlusion": occlusion}


def apply(name: str, rng, image, severity, *, reference_size: int = REFERENCE_SIZE):
  """The factor ``name`` (one of :data:`FACTORS`) on one image. [H, W, C] -> [H, W, C]."""
  if name not in _OPS:
    raise ConfigError(f"corruption {name!r} is unknown; choose from {list(FACTORS)}")
  return _OPS[name](rng, jnp.asarray(image, jnp.float32), severity,
                    reference_size=reference_size)


def corrupt_image(rng, image, factor, severity, *, factors: Sequence[str] = FACTORS,
                  reference_size: int = REFERENCE_SIZE):
  """Applies ``factors[factor]`` to one image, or nothing when ``factor < 0``.

  Args:
    rng: PRNG key.
    image: float32 [H, W, C] in [0, 1].
    factor: int32 scalar (may be traced): index into ``factors``, -1 for a clean image.
    severity: float scalar in [0, MAX_SEVERITY].
    factors: the factor names (static).
    reference_size: side at which pixel strengths are defined (static).

  Returns:
    float32 [H, W, C] in [0, 1]; exactly ``image`` where ``factor < 0``.
  """
  image = jnp.asarray(image, jnp.float32)
  branches = [lambda k, x, s, op=_OPS[n]: op(k, x, s, reference_size=reference_size)
              for n in factors]
  index = jnp.clip(jnp.asarray(factor, jnp.int32), 0, len(branches) - 1)
  out = jax.lax.switch(index, branches, rng, image, severity)
  return jnp.where(jnp.asarray(factor) >= 0, out, image)


def corrupt_batch(rng, images, factor_b, severity_b, *, factors: Sequence[str] = FACTORS,
                  reference_size: int = REFERENCE_SIZE):
  """:func:`corrupt_image` on each image of a batch with its own key, factor and severity.

  Args:
    rng: PRNG key.
    images: float32 [B, H, W, C] in [0, 1].
    factor_b: int32 [B], index into ``factors`` or -1 (clean).
    severity_b: float32 [B].
    factors, reference_size: as :func:`corrupt_image` (static).

  Returns:
    float32 [B, H, W, C] in [0, 1].
  """
  keys = jax.random.split(rng, images.shape[0])
  fn = lambda k, x, f, s: corrupt_image(  # noqa: E731
      k, x, f, s, factors=factors, reference_size=reference_size)
  return jax.vmap(fn)(keys, images, factor_b, severity_b)


def sample(rng, batch_size: int, *, num_factors: int, prob: float, severity: tuple[float, float]):
  """Draws which images are corrupted, by which factor and how strongly.

  Args:
    rng: PRNG key.
    batch_size: B (static).
    num_factors: how many factors to choose from (uniformly).
    prob: probability that an image is corrupted at all.
    severity: (low, high); the severity is uniform in this range.

  Returns:
    ``(factor_b, severity_b)``: int32 [B] (-1 = clean) and float32 [B].
  """
  k_on, k_factor, k_sev = jax.random.split(rng, 3)
  on_b = jax.random.uniform(k_on, (batch_size,)) < prob
  factor_b = jax.random.randint(k_factor, (batch_size,), 0, num_factors)
  severity_b = jax.random.uniform(k_sev, (batch_size,), minval=severity[0], maxval=severity[1])
  return jnp.where(on_b, factor_b, -1).astype(jnp.int32), severity_b


# ----------------------------------------------------------------------------- validation


def check_factors(names, *, key: str) -> tuple[str, ...]:
  """The factor names as a tuple, or a ConfigError naming ``key`` (unknown or repeated name)."""
  if isinstance(names, str) or not isinstance(names, Sequence | tuple | list):
    raise ConfigError(f"{key}={names!r} must be a list of corruption names from {list(FACTORS)}")
  names = tuple(names)
  for name in names:
    if name not in FACTORS:
      raise ConfigError(f"{key} has unknown corruption {name!r}; choose from {list(FACTORS)}")
  if len(set(names)) != len(names):
    raise ConfigError(f"{key}={list(names)} repeats a corruption; list each at most once")
  return names


def check_severity(value, *, key: str) -> tuple[float, float]:
  """``(low, high)`` from a number or a pair, or a ConfigError naming ``key``.

  Valid severities lie in [0, MAX_SEVERITY]; a single number means a fixed severity.
  """

  def ok(v):
    return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and 0.0 <= v <= MAX_SEVERITY)

  pair = tuple(value) if isinstance(value, list | tuple) else (value, value)
  if len(pair) != 2 or not all(ok(v) for v in pair) or pair[0] > pair[1]:
    raise ConfigError(f"{key}={value!r} must be a severity in [0, {MAX_SEVERITY:g}] or a pair "
                      f"(low, high) with 0 <= low <= high <= {MAX_SEVERITY:g}")
  return float(pair[0]), float(pair[1])
