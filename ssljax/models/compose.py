"""Composition of an encoder and a head into one Linen module."""

from __future__ import annotations

import flax.linen as nn
import jax


class EncoderHead(nn.Module):
  """Backbone followed by a projector: returns ``(representation, embedding)``.

  Attributes:
    encoder: a module called as ``encoder(x, train=...)`` -> [B, F].
    head: a module called as ``head(h, train=...)`` -> [B, K].
  """

  encoder: nn.Module
  head: nn.Module

  def __call__(self, x_bhwc: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    h_bf = self.encoder(x_bhwc, train=train)
    z_bk = self.head(h_bf, train=train)
    return h_bf, z_bk
