"""Spherical k-means in JAX: unit-norm centroids of unit-norm points, as a pure function.

Used by HaLP (``ssljax/methods/halp.py``) to turn recent keys into prototypes. The official
HaLP code runs geomstats' Riemannian k-means on the host; here the whole thing is jit-able:
k-means++ seeding with squared geodesic distances, then a fixed number of Lloyd steps whose
centroid is the normalised mean of the cluster (the extrinsic mean, the usual spherical k-means
update). A fixed step count keeps the cost static and the function reverse-differentiable (no
while loop), although callers treat the result as a constant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["assign", "kmeans_plus_plus", "spherical_kmeans"]

_HIGHEST = jax.lax.Precision.HIGHEST


def _normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-24))


def assign(x_nd: jax.Array, centroids_cd: jax.Array) -> jax.Array:
  """Index of the most similar (largest dot product) centroid for each row -> [N] int32."""
  return jnp.argmax(jnp.matmul(x_nd, centroids_cd.T, precision=_HIGHEST), axis=-1)


def kmeans_plus_plus(x_nd: jax.Array, rng: jax.Array, *, num_clusters: int) -> jax.Array:
  """k-means++ seeding on the sphere (Arthur and Vassilvitskii, 2007).

  The first centroid is a uniformly drawn point; each next one is drawn with probability
  proportional to the squared geodesic distance ``arccos(x . c)^2`` to the nearest centroid chosen
  so far.

  Args:
    x_nd: [N, D] unit-norm points.
    rng: a JAX PRNG key.
    num_clusters: C, the number of centroids (<= N).

  Returns:
    [C, D] float32 centroids, each one of the points.
  """
  n = x_nd.shape[0]
  first_rng, rest_rng = jax.random.split(rng)
  first = jax.random.randint(first_rng, (), 0, n)
  centroids_cd = jnp.zeros((num_clusters, x_nd.shape[1]), jnp.float32).at[0].set(x_nd[first])
  # Squared geodesic distance of each point to its nearest chosen centroid.
  dist_n = _sq_geodesic(x_nd, x_nd[first])

  def body(i, carry):
    centroids_cd, dist_n = carry
    # A point already chosen has weight 0; if every weight is 0 (duplicate points) the tiny floor
    # makes the draw uniform instead of undefined.
    logits_n = jnp.log(dist_n + 1e-12)
    idx = jax.random.categorical(jax.random.fold_in(rest_rng, i), logits_n)
    centroids_cd = centroids_cd.at[i].set(x_nd[idx])
    return centroids_cd, jnp.minimum(dist_n, _sq_geodesic(x_nd, x_nd[idx]))

  centroids_cd, _ = jax.lax.fori_loop(1, num_clusters, body, (centroids_cd, dist_n))
  return centroids_cd


def _sq_geodesic(x_nd: jax.Array, c_d: jax.Array) -> jax.Array:
  cos_n = jnp.clip(jnp.matmul(x_nd, c_d, precision=_HIGHEST), -1.0, 1.0)
  return jnp.square(jnp.arccos(cos_n))


def spherical_kmeans(x_nd: jax.Array, rng: jax.Array, *, num_clusters: int,
                     num_iters: int = 20) -> jax.Array:
  """Spherical k-means: k-means++ seeding, then ``num_iters`` Lloyd steps.

  Each Lloyd step assigns every point to its most similar centroid and moves each centroid to the
  normalised sum of its points. A centroid that loses all its points keeps its position (so the
  output always has C unit vectors).

  Args:
    x_nd: [N, D] points (normalised here; N >= num_clusters).
    rng: a JAX PRNG key (only the seeding is random).
    num_clusters: C >= 1.
    num_iters: Lloyd steps after seeding (Lloyd's fixed point is usually reached within ~10).

  Returns:
    [C, D] float32 unit-norm centroids.

  Raises:
    ValueError: if ``num_clusters`` is not in [1, N] or ``num_iters < 0``.
  """
  n = x_nd.shape[0]
  if not 1 <= num_clusters <= n:
    raise ValueError(f"spherical_kmeans: num_clusters={num_clusters} must be in [1, N={n}]")
  if num_iters < 0:
    raise ValueError(f"spherical_kmeans: num_iters={num_iters} must be >= 0")
  x_nd = _normalize(x_nd)
  centroids_cd = kmeans_plus_plus(x_nd, rng, num_clusters=num_clusters)

  def lloyd(_, centroids_cd):
    onehot_nc = jax.nn.one_hot(assign(x_nd, centroids_cd), num_clusters, dtype=jnp.float32)
    sum_cd = jnp.matmul(onehot_nc.T, x_nd, precision=_HIGHEST)
    empty_c1 = jnp.sum(onehot_nc, axis=0)[:, None] == 0
    return jnp.where(empty_c1, centroids_cd, _normalize(sum_cd))

  return jax.lax.fori_loop(0, num_iters, lloyd, centroids_cd)
