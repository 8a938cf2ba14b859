"""Checks of user input to the data pipeline: batch sizes, label fractions, npz arrays.

Each failure is a :class:`~ssljax.errors.UserError` with one line naming the key or file and what
to do.
"""

from __future__ import annotations

import math

import numpy as np

from ssljax.errors import ConfigError, DataError


def check_label_fraction(fraction) -> float:
  """``input.label_fraction`` as a float in (0, 1], else a ConfigError naming the key."""
  try:
    value = float(fraction)
  except (TypeError, ValueError):
    value = math.nan
  if not 0.0 < value <= 1.0:
    raise ConfigError(f"input.label_fraction={fraction!r} must be in (0, 1] (the share of "
                      "training labels a semi-supervised method may see); e.g. 0.1")
  return value


def check_batch_size(global_batch_size, process_count: int, key="input.batch_size") -> int:
  if (not isinstance(global_batch_size, int | np.integer) or isinstance(global_batch_size, bool)
      or global_batch_size < 1):
    raise ConfigError(f"{key}={global_batch_size!r}: must be a positive int")
  if global_batch_size % process_count:
    raise ConfigError(f"{key}={global_batch_size}: must be divisible by the {process_count} "
                      f"processes; use a multiple of {process_count}")
  return int(global_batch_size) // process_count


def check_npz_pair(path, images, labels, prefix) -> tuple[np.ndarray, np.ndarray]:
  """Validates one (images, labels) pair of an npz; returns images as [N, H, W, C]."""
  where = f"input.data.path={path!r}"
  if images.dtype != np.uint8:
    raise DataError(f"{where}: '{prefix}images' has dtype {images.dtype}; store uint8 0..255 "
                    "(e.g. np.clip(x * 255, 0, 255).astype(np.uint8))")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise DataError(f"{where}: '{prefix}images' has shape {images.shape}; store a non-empty "
                    "[N, H, W, C] array with C = 1 or 3 (or [N, H, W] for grayscale)")
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{where}: '{prefix}labels' has shape {labels.shape} and dtype "
                    f"{labels.dtype}; store integer class ids of shape [N]")
  if len(labels) != len(images):
    raise DataError(f"{where}: {len(images)} '{prefix}images' but {len(labels)} "
                    f"'{prefix}labels'; store one label per image")
  if labels.size and labels.min() < 0:
    raise DataError(f"{where}: '{prefix}labels' has negative values; use class ids 0..K-1")
  return images, labels.astype(np.int32)
