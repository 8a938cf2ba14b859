"""Encoders for table rows: a feature tokenizer (FT-Transformer style) and a post-norm transformer.

Exactly as ``t_jepa.md`` "Architecture" describes the official T-JEPA code:

* :class:`FeatureTokenizer`: numerical column j -> ``x_j * W_j + b_j``; categorical column j ->
  ``E_j[x_j] + b_j``; ``n_reg`` learned [REG] tokens in front. Token order: [REG] tokens, numerical
  columns, categorical columns. Output [B, n_reg + D, H].
* :func:`sinusoidal_positions`: the fixed sin-cos encoding added to every token; its base is a
  parameter (the official code uses 100, not 10000).
* :class:`TabularEncoder`: ``L`` post-norm transformer blocks (ReLU FFN, dropout), then Dropout ->
  LayerNorm -> Linear(H, H) -> Dropout -> LayerNorm. An optional key mask [B, T] hides padded
  tokens from attention (T-JEPA's context encoder sees only its context columns).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_INIT = nn.initializers.truncated_normal(0.02)  # the published T-JEPA script's init


def torch_parameter_init(key, shape, dtype=jnp.float32):
  """U(-1/sqrt(H), 1/sqrt(H)) for a [rows, H] table: PyTorch's ``kaiming_uniform_(a=sqrt(5))``.

  The official tokenizer's weight and bias are raw ``nn.Parameter`` tensors initialised so (fan-in
  = the last dimension, H); the published script's ``init_weights`` re-initialises only
  ``nn.Linear``, ``nn.Embedding`` and ``nn.LayerNorm`` modules, so they keep it.
  """
  bound = 1.0 / np.sqrt(shape[-1])
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def packed_xavier_init(key, shape, dtype=jnp.float32):
  """Xavier-uniform of PyTorch's packed attention input projection [3 P, P], for one of q, k, v.

  ``nn.MultiheadAttention`` keeps its ``in_proj_weight`` (a raw parameter, not an ``nn.Linear``)
  at ``xavier_uniform_`` of the packed [3 P, P] matrix: bound sqrt(6 / (P + 3 P)). ``shape`` is
  flax's [P, heads, P / heads] kernel of one projection.
  """
  fan_in = shape[0]
  fan_out = int(np.prod(shape[1:]))
  bound = np.sqrt(6.0 / (fan_in + 3 * fan_out))
  return jax.random.uniform(key, shape, dtype, -bound, bound)


class FeatureTokenizer(nn.Module):
  """``{"x_num": [B, D_num], "x_cat": [B, D_cat]}`` -> tokens [B, n_reg + D_num + D_cat, H].

  Attributes:
    width: token width H.
    cardinalities: codes per categorical column (the reserved code 0 included).
    n_reg: [REG] tokens prepended (0 is the paper's "no REG" ablation).
  """

  width: int
  cardinalities: Sequence[int] = ()
  n_reg: int = 1

  @nn.compact
  def __call__(self, batch):
    parts = []
    b = next(batch[k].shape[0] for k in ("x_num", "x_cat") if k in batch)
    if self.n_reg:
      reg = self.param("reg", torch_parameter_init, (self.n_reg, self.width))
      parts.append(jnp.broadcast_to(reg, (b, self.n_reg, self.width)))
    if "x_num" in batch:
      d = batch["x_num"].shape[1]
      w = self.param("num_weight", torch_parameter_init, (d, self.width))
      bias = self.param("num_bias", torch_parameter_init, (d, self.width))
      parts.append(batch["x_num"][..., None].astype(jnp.float32) * w + bias)
    if "x_cat" in batch and len(self.cardinalities):
      codes = batch["x_cat"]
      offsets = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int32)
      table = self.param("cat_embedding", _INIT, (int(sum(self.cardinalities)), self.width))
      bias = self.param("cat_bias", torch_parameter_init, (len(self.cardinalities), self.width))
      parts.append(table[codes + offsets] + bias)
    return jnp.concatenate(parts, axis=1)


def sinusoidal_positions(length: int, width: int, base: float = 100.0) -> np.ndarray:
  """[length, width] sin (even channels) / cos (odd channels) of ``pos * base^(-2i / width)``."""
  pos = np.arange(length, dtype=np.float64)[:, None]
  div = np.exp(-np.arange(0, width, 2, dtype=np.float64) * np.log(base) / width)
  out = np.zeros((length, width), np.float32)
  out[:, 0::2] = np.sin(pos * div)
  out[:, 1::2] = np.cos(pos * div)[:, : width // 2]
  return out


class Block(nn.Module):
  """Post-norm transformer block: x = LN(x + MHA(x)); x = LN(x + FFN(x)) (ReLU)."""

  heads: int
  ffn: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask=None, *, train: bool = False):
    attn_mask = None if mask is None else nn.make_attention_mask(mask, mask)
    h = nn.MultiHeadDotProductAttention(num_heads=self.heads, kernel_init=packed_xavier_init,
                                        out_kernel_init=_INIT,
                                        dropout_rate=self.dropout,
                                        deterministic=not train)(x, x, mask=attn_mask)
    x = nn.LayerNorm()(x + nn.Dropout(self.dropout, deterministic=not train)(h))
    h = nn.Dense(self.ffn, kernel_init=_INIT)(x)
    h = nn.Dense(x.shape[-1], kernel_init=_INIT)(nn.relu(h))
    return nn.LayerNorm()(x + nn.Dropout(self.dropout, deterministic=not train)(h))


class TabularEncoder(nn.Module):
  """Tokens [B, T, H] -> [B, T, H]: ``depth`` blocks, then the official output head."""

  depth: int = 4
  heads: int = 8
  ffn: int = 256
  dropout: float = 0.1

  @nn.compact
  def __call__(self, tokens, mask=None, *, train: bool = False):
    x = tokens
    for _ in range(self.depth):
      x = Block(self.heads, self.ffn, self.dropout)(x, mask, train=train)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    x = nn.LayerNorm()(drop(x))
    return nn.LayerNorm()(drop(nn.Dense(x.shape[-1], kernel_init=_INIT)(x)))


class TableMLP(nn.Module):
  """``{"x_num": [B, D_num], "x_cat": [B, D_cat]}`` -> [B, width]: an MLP over one row (SCARF's f).

  Each categorical column j has its own embedding table (``cardinalities[j]`` rows of
  ``cat_dim``); the looked-up codes are concatenated after ``x_num``, then ``depth`` layers of
  ``Dense(width) -> ReLU``. One-hot codes into the first Dense would be the same function with
  ``cat_dim = width`` per column; a narrow embedding keeps wide categorical columns cheap.

  Attributes:
    width: hidden and output width (SCARF: 256).
    depth: Dense + ReLU layers (SCARF: 4).
    cardinalities: codes per categorical column (the reserved code 0 included).
    cat_dim: embedding width of each categorical column.
  """

  width: int = 256
  depth: int = 4
  cardinalities: Sequence[int] = ()
  cat_dim: int = 8

  @nn.compact
  def __call__(self, batch, *, train: bool = False):
    del train  # No dropout or BatchNorm: the same function in training and evaluation.
    parts = []
    if "x_num" in batch:
      parts.append(batch["x_num"].astype(jnp.float32))
    if "x_cat" in batch and len(self.cardinalities):
      codes = batch["x_cat"]
      # One table for all columns; column j's codes start after the codes of columns < j.
      offsets = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int32)
      table = self.param("cat_embedding", nn.initializers.normal(1.0),
                         (int(sum(self.cardinalities)), self.cat_dim))
      parts.append(table[codes + offsets].reshape(codes.shape[0], -1))
    x = jnp.concatenate(parts, axis=1)
    for i in range(self.depth):
      x = nn.relu(nn.Dense(self.width, name=f"dense{i}")(x))
    return x
