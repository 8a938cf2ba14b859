"""Losses: pure functions over the global batch, plus the primitives they share.

Every loss takes arrays and keyword-only hyperparameters and returns a scalar. None of them calls a
collective: inside a jitted step the arrays are global (sharded on the mesh's ``data`` axis) and XLA
inserts the cross-device reductions, so batch statistics are over the global batch (DESIGN.md §3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "barlow_twins_loss",
    "batch_standardize",
    "cross_correlation",
    "off_diagonal",
]


def batch_standardize(z_bd: jax.Array, *, eps: float = 1e-5) -> jax.Array:
  """Standardises each column with batch statistics (BatchNorm without affine, training mode).

  Args:
    z_bd: [N, D] embeddings.
    eps: added to the biased (divide-by-N) variance, as PyTorch's BatchNorm1d does.

  Returns:
    [N, D] float32 array with zero column means and (almost) unit biased column variances.
  """
  z_bd = z_bd.astype(jnp.float32)
  mean_d = jnp.mean(z_bd, axis=0)
  var_d = jnp.mean(jnp.square(z_bd - mean_d), axis=0)
  return (z_bd - mean_d) * jax.lax.rsqrt(var_d + eps)


def cross_correlation(z1_bd: jax.Array, z2_bd: jax.Array, *, eps: float = 1e-5) -> jax.Array:
  """Empirical cross-correlation ``C = z1n^T z2n / N`` of two batch-standardised views.

  Args:
    z1_bd: [N, D] embeddings of view 1.
    z2_bd: [N, D] embeddings of view 2 (same rows = same images).
    eps: variance epsilon of the per-view standardisation.

  Returns:
    [D, D] float32 matrix; ``C[i, j]`` correlates dimension i of view 1 with dimension j of view 2.
  """
  if z1_bd.shape != z2_bd.shape or z1_bd.ndim != 2:
    raise ValueError(
        f"expected two [N, D] arrays of the same shape, got {z1_bd.shape}, {z2_bd.shape}")
  n = z1_bd.shape[0]
  z1n = batch_standardize(z1_bd, eps=eps)
  z2n = batch_standardize(z2_bd, eps=eps)
  # HIGHEST keeps the D x D sums in full float32 on accelerators whose default matmul is bf16.
  return jnp.matmul(z1n.T, z2n, precision=jax.lax.Precision.HIGHEST) / n


def off_diagonal(c_dd: jax.Array) -> jax.Array:
  """Returns ``c_dd`` with its diagonal set to zero ([D, D] -> [D, D])."""
  return c_dd * (1.0 - jnp.eye(c_dd.shape[0], c_dd.shape[1], dtype=c_dd.dtype))


def barlow_twins_loss(
    z1_bd: jax.Array, z2_bd: jax.Array, *, lambd: float = 0.0051, eps: float = 1e-5
) -> jax.Array:
  """Barlow Twins redundancy-reduction loss (Zbontar et al., 2021), official formula.

  ``L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` from
  :func:`cross_correlation`. Computed in float32 whatever the input dtype. Any loss scale
  (solo-learn's ``scale_loss``) is applied by the caller.

  Args:
    z1_bd: [N, D] projector outputs of view 1 (global batch).
    z2_bd: [N, D] projector outputs of view 2.
    lambd: weight of the off-diagonal (redundancy) term; 0.0051 in the official code.
    eps: variance epsilon of the batch standardisation (1e-5, as BatchNorm1d).

  Returns:
    Scalar float32 loss.
  """
  c_dd = cross_correlation(z1_bd, z2_bd, eps=eps)
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c_dd)))
  off_diag = jnp.sum(jnp.square(off_diagonal(c_dd)))
  return on_diag + lambd * off_diag
