"""Encoders and heads (Flax Linen); parameters are plain pytrees passed to ``init``/``apply``."""

import math

import jax

from ssljax.models.heads import MLP
from ssljax.models.resnet import ARCHITECTURES, ResidualBlock, ResNet, make_encoder

__all__ = ["ARCHITECTURES", "MLP", "ResNet", "ResidualBlock", "make_encoder", "num_params"]


def num_params(params) -> int:
  """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
