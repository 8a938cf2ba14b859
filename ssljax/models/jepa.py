"""JEPA predictors: from the context tokens' outputs, predict the outputs at target positions.

:class:`TokenPredictor` is I-JEPA's transformer predictor (Assran et al., CVPR 2023) as T-JEPA
uses it for table rows (``t_jepa.md`` "Architecture", item 6): the context encoder's outputs are
projected H -> P and given a fixed sin-cos embedding of their positions; one learned mask token
per target position, plus that position's embedding, is appended; a
:class:`ssljax.models.tabular.TabularEncoder` of width P (``depth`` post-norm blocks and the
encoder's own output head, Dropout -> LayerNorm -> Linear(P, P) -> Dropout -> LayerNorm, as the
official ``TransformerPredictor`` builds it) and a LayerNorm run over the joint sequence; the
target slots are projected P -> H.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ssljax.models.tabular import TabularEncoder, sinusoidal_positions

_INIT = nn.initializers.truncated_normal(0.02)


class TokenPredictor(nn.Module):
  """Context outputs [B, C, H] -> predictions [K, B, T, H] at K sets of T target positions.

  Attributes:
    width: the predictor's width P.
    out_width: the encoder's token width H (the width of what is predicted).
    depth: transformer blocks.
    heads: attention heads (must divide ``width``).
    ffn: hidden width of each block's feed-forward layer.
    num_positions: length of the position table (every position a token can have).
    dropout: dropout rate inside the blocks.
    base: base of the sin-cos position embedding (I-JEPA's 10000).
  """

  width: int
  out_width: int
  depth: int
  heads: int
  ffn: int
  num_positions: int
  dropout: float = 0.0
  base: float = 10000.0

  @nn.compact
  def __call__(self, ctx_bch, ctx_pos_bc, ctx_mask_bc, tgt_pos_kbt, tgt_mask, *,
               train: bool = False):
    """Predicts the token outputs at ``tgt_pos_kbt``.

    Args:
      ctx_bch: float [B, C, H], the context encoder's outputs (padded slots allowed).
      ctx_pos_bc: int [B, C], the position of each context token in the full sequence.
      ctx_mask_bc: bool [B, C], False for padded context slots (hidden from attention).
      tgt_pos_kbt: int [K, B, T], the positions to predict, K sets per row.
      tgt_mask: bool, broadcastable to [K, B, T]; False for padded target slots.
      train: dropout on.

    Returns:
      float [K, B, T, H]; padded target slots hold values that carry no meaning.
    """
    pe = jnp.asarray(sinusoidal_positions(self.num_positions, self.width, base=self.base))
    k, b, t = tgt_pos_kbt.shape
    c = ctx_bch.shape[1]
    x = nn.Dense(self.width, kernel_init=_INIT, name="embed")(ctx_bch) + pe[ctx_pos_bc]
    mask_token = self.param("mask_token", _INIT, (self.width,))
    queries = mask_token + pe[tgt_pos_kbt]
    # The K target sets of a row are independent predictions: fold K into the batch, each copy
    # of the context seeing only its own mask tokens (I-JEPA's repeat_interleave_batch).
    seq = jnp.concatenate([jnp.broadcast_to(x[None], (k, b, c, self.width)), queries], axis=2)
    seq = seq.reshape(k * b, c + t, self.width)
    keys = jnp.concatenate([jnp.broadcast_to(ctx_mask_bc[None], (k, b, c)),
                            jnp.broadcast_to(tgt_mask, (k, b, t))], axis=2)
    keys = keys.reshape(k * b, c + t)
    seq = TabularEncoder(self.depth, self.heads, self.ffn, self.dropout)(seq, keys, train=train)
    seq = nn.LayerNorm()(seq)
    out = nn.Dense(self.out_width, kernel_init=_INIT, name="out")(seq[:, c:])
    return out.reshape(k, b, t, self.out_width)
