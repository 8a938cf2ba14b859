"""Encoders and heads (Flax Linen); parameters are plain pytrees passed to ``init``/``apply``."""

import math

import jax

from ssljax.models.heads import MLP, DINOHead
from ssljax.models.resnet import ARCHITECTURES, ResidualBlock, ResNet, make_encoder
from ssljax.models.vit import VIT_SIZES, MAEDecoder, ViT, make_vit

__all__ = ["ARCHITECTURES", "DINOHead", "MAEDecoder", "MLP", "ResNet", "ResidualBlock",
           "VIT_SIZES", "ViT", "make_encoder", "make_vit", "num_params"]


def num_params(params) -> int:
  """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
