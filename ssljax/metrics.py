"""Label-free metrics of embeddings."""

from __future__ import annotations

import numpy as np

__all__ = ["normalized_std", "rankme"]


def rankme(z_nk, *, eps: float = 1e-7, center: bool = False,
           max_samples: int | None = 25_600) -> float:
  """RankMe: effective rank of an embedding matrix (Garrido et al., ICML 2023).

  ``p_k = sigma_k / ||sigma||_1 + eps`` (eps added after normalising, as the paper's reference
  helper does) and ``RankMe = exp(-sum_k p_k log p_k)``. Higher is better; ~1 means collapse.

  The SVD runs on the host in float64 (numpy): it is not additive over shards, mixed-precision SVD
  is unstable, and N x K here is at most 25,600 x K.

  Args:
    z_nk: [N, K] embeddings (any array convertible with ``np.asarray``; a sharded ``jax.Array`` is
      gathered to the host).
    eps: added to each normalised singular value (1e-7, the paper's float32 value).
    center: subtract the column mean first (the reference formula does not).
    max_samples: use at most this many rows (the paper uses 25,600); None uses all.

  Returns:
    The effective rank, a float in about [1, min(N, K)].
  """
  z = np.asarray(z_nk, dtype=np.float64)
  if z.ndim != 2:
    raise ValueError(f"rankme expects an [N, K] matrix, got shape {z.shape}")
  if max_samples is not None:
    z = z[:max_samples]
  if center:
    z = z - z.mean(axis=0, keepdims=True)
  sigma = np.linalg.svd(z, compute_uv=False)
  total = sigma.sum()
  if total <= 0.0:
    return 1.0  # An all-zero matrix is fully collapsed.
  p = sigma / total + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def normalized_std(z_nk) -> float:
  """Mean per-dimension standard deviation of the l2-normalised rows of ``z_nk``.

  The collapse indicator of SimSiam (Chen & He, CVPR 2021, section 4.1): for embeddings spread
  over the unit sphere it is about ``1 / sqrt(K)``; for a collapsed embedding (every row the same
  direction) it is 0. Multiply by ``sqrt(K)`` for a value in about [0, 1].

  Args:
    z_nk: [N, K] embeddings (host or device array).

  Returns:
    ``mean_k std_n(z_nk / ||z_n||)``, population std, in float64 on the host.
  """
  z = np.asarray(z_nk, dtype=np.float64)
  if z.ndim != 2:
    raise ValueError(f"normalized_std expects an [N, K] matrix, got shape {z.shape}")
  z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  return float(np.mean(np.std(z, axis=0)))
