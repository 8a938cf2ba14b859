"""Differentiable sorting networks (Petersen et al., ICML 2021 and ICLR 2022).

A sorting network is a fixed sequence of layers; each layer is a set of disjoint comparators on
wire pairs ``(a, b)`` with ``a < b``, and a hard comparator puts the smaller value on ``a``. A
*relaxed* comparator mixes the two wires with ``alpha = cdf(steepness * (x_b - x_a))``::

  x_a <- alpha * x_a + (1 - alpha) * x_b        (soft min)
  x_b <- (1 - alpha) * x_a + alpha * x_b        (soft max)

and applies the same mix to columns ``a`` and ``b`` of a running matrix ``X`` that starts as the
identity. The result is a doubly stochastic *soft permutation matrix* with the convention

  sorted = x @ X,   X[r, c] = probability that input element r ends at sorted position c

(position 0 holds the smallest value; the papers write the transpose). As ``steepness`` grows,
``X`` becomes the hard permutation matrix of ``argsort`` and ``sorted`` becomes ``jnp.sort(x)``.

Networks are static index arrays (numpy), so they are constants under ``jax.jit``. Everything
here is a pure function; invalid sizes or names raise ``ValueError`` (a method's ``make`` turns
that into a ``ConfigError`` naming its config key).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

NETWORKS = ("odd_even", "bitonic")
DISTRIBUTIONS = ("cauchy", "logistic", "logistic_phi", "gaussian", "reciprocal", "optimal")

# A layer: two equal-length int arrays, the lower and the upper wire of each comparator.
Layer = tuple[np.ndarray, np.ndarray]


def _check_size(n) -> int:
  if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
    raise ValueError(f"sorting network size must be an integer >= 1, got {n!r}")
  return int(n)


@functools.lru_cache(maxsize=None)
def odd_even_network(n: int) -> tuple[Layer, ...]:
  """Odd-even transposition network on ``n`` wires: ``n`` layers of neighbour comparators.

  Layer ``l`` compares ``(i, i + 1)`` for ``i = l % 2, l % 2 + 2, ...``. Border wires without a
  partner are left alone (diffsort's "filler" comparators are identities).

  Args:
    n: number of wires, >= 1.

  Returns:
    ``n`` layers (empty for ``n = 1``), each ``(a, b)`` with ``a < b``.
  """
  n = _check_size(n)
  if n == 1:
    return ()
  layers = []
  for layer in range(n):
    a = np.arange(layer % 2, n - 1, 2)
    layers.append((a, a + 1))
  return tuple(layers)


def is_power_of_two(n: int) -> bool:
  return n >= 1 and n & (n - 1) == 0


@functools.lru_cache(maxsize=None)
def bitonic_network(n: int) -> tuple[Layer, ...]:
  """Bitonic sorting network on ``n = 2^k`` wires: ``k (k + 1) / 2`` layers of n/2 comparators.

  Uses the form in which every comparator sends its minimum to the lower wire: the first layer
  of each merge of blocks of size ``s`` compares ``i`` with its mirror ``i XOR (s - 1)`` (this
  turns two ascending halves into a bitonic sequence's half-cleaner), later layers compare ``i``
  with ``i XOR d`` for ``d = s/4, ..., 1``.

  Args:
    n: number of wires; a power of two.

  Returns:
    The layers, each ``(a, b)`` with ``a < b``.

  Raises:
    ValueError: ``n`` is not a power of two.
  """
  n = _check_size(n)
  if not is_power_of_two(n):
    raise ValueError(f"a bitonic sorting network needs a power-of-two size, got {n} "
                     "(use the odd_even network for other sizes)")
  wires = np.arange(n)
  layers = []
  block = 2
  while block <= n:
    for partner in [wires ^ (block - 1)] + [wires ^ d for d in _halvings(block // 4)]:
      a = wires[wires < partner]
      layers.append((a, partner[a]))
    block *= 2
  return tuple(layers)


def _halvings(d: int) -> list[int]:
  out = []
  while d >= 1:
    out.append(d)
    d //= 2
  return out


def network(name: str, n: int) -> tuple[Layer, ...]:
  """The sorting network ``name`` (one of :data:`NETWORKS`) on ``n`` wires.

  Raises:
    ValueError: unknown ``name``, or a size the network does not support.
  """
  if name == "odd_even":
    return odd_even_network(n)
  if name == "bitonic":
    return bitonic_network(n)
  raise ValueError(f"unknown sorting network {name!r}; choose one of {NETWORKS}")


def comparator_alpha(x_a: jax.Array, x_b: jax.Array, *, steepness: float,
                     distribution: str = "cauchy", art_lambda: float = 0.25) -> jax.Array:
  """Weight of the soft minimum's own wire: ``alpha = cdf(steepness * (x_b - x_a))``.

  ``alpha -> 1`` when ``x_a`` is much smaller than ``x_b`` (wires already in order), ``0.5``
  when they are equal, ``-> 0`` when they must swap. Monotone in ``x_b - x_a``.

  Args:
    x_a: values on the lower wires, any shape.
    x_b: values on the upper wires, same shape.
    steepness: inverse temperature of the relaxation (> 0; large = close to a hard sort).
    distribution: the sigmoid-like CDF: ``cauchy`` ``atan(v)/pi + 1/2`` (GroCo's choice),
      ``logistic`` ``sigmoid(v)``, ``logistic_phi`` ``sigmoid(v / (|x_a - x_b| + 1e-10)^lambda)``,
      ``gaussian`` ``Phi(v)``, ``reciprocal`` ``(v / (2 + |v|) + 1) / 2``, ``optimal`` (the
      ICLR 2022 optimal monotonic sigmoid: ``-1/(16v)`` below -1/4, ``1 - 1/(16v)`` above 1/4,
      ``v + 1/2`` between).
    art_lambda: the ``lambda`` of ``logistic_phi`` (diffsort's default 0.25).

  Returns:
    ``alpha`` in [0, 1], the shape of ``x_a``.
  """
  v = steepness * (x_b - x_a)
  if distribution == "cauchy":
    return jnp.arctan(v) / math.pi + 0.5
  if distribution == "logistic":
    return jax.nn.sigmoid(v)
  if distribution == "logistic_phi":
    return jax.nn.sigmoid(v / jnp.power(jnp.abs(x_a - x_b) + 1e-10, art_lambda))
  if distribution == "gaussian":
    return jax.scipy.stats.norm.cdf(v)
  if distribution == "reciprocal":
    return 0.5 * (v / (2.0 + jnp.abs(v)) + 1.0)
  if distribution == "optimal":
    # Each branch is evaluated everywhere; keep the unused 1/v finite so gradients stay finite.
    safe_v = jnp.where(jnp.abs(v) > 0.25, v, 1.0)
    return jnp.where(v < -0.25, -1.0 / (16.0 * safe_v),
                     jnp.where(v > 0.25, 1.0 - 1.0 / (16.0 * safe_v), v + 0.5))
  raise ValueError(f"unknown relaxation {distribution!r}; choose one of {DISTRIBUTIONS}")


def soft_sort(x: jax.Array, *, steepness: float, network_name: str = "odd_even",
              distribution: str = "cauchy", art_lambda: float = 0.25
              ) -> tuple[jax.Array, jax.Array]:
  """Differentiable ascending sort and its soft permutation matrix.

  Args:
    x: values to sort along the last axis, shape [..., n]; computed in float32.
    steepness: inverse temperature of every comparator (> 0): a number, or an array that
      broadcasts against [..., 1] (e.g. [S, 1, 1] for x of shape [S, B, n]).
    network_name: ``'odd_even'`` (any n) or ``'bitonic'`` (n a power of two).
    distribution: comparator relaxation, see :func:`comparator_alpha`.
    art_lambda: ``lambda`` of the ``logistic_phi`` relaxation.

  Returns:
    ``(sorted_x, perm)``: ``sorted_x`` [..., n] (soft ascending sort) and ``perm`` [..., n, n],
    doubly stochastic, with ``sorted_x == x @ perm`` (``perm[r, c]``: probability that input
    ``r`` lands at position ``c``).

  Raises:
    ValueError: unknown network or relaxation, a size the network does not support, or
      ``steepness <= 0``.
  """
  if not isinstance(steepness, jax.core.Tracer) and not np.all(np.asarray(steepness) > 0):
    # (A traced steepness, e.g. a schedule under jit, has no value to check yet.)
    raise ValueError(f"steepness must be > 0, got {steepness!r}")
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f"unknown relaxation {distribution!r}; choose one of {DISTRIBUTIONS}")
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[-1]
  layers = network(network_name, n)
  perm = jnp.broadcast_to(jnp.eye(n, dtype=jnp.float32), x.shape + (n,))
  for a, b in layers:
    x_a, x_b = x[..., a], x[..., b]
    alpha = comparator_alpha(x_a, x_b, steepness=steepness, distribution=distribution,
                             art_lambda=art_lambda)
    x = x.at[..., a].set(alpha * x_a + (1 - alpha) * x_b)
    x = x.at[..., b].set((1 - alpha) * x_a + alpha * x_b)
    # Columns a and b of perm follow the values on wires a and b.
    p_a, p_b, w = perm[..., a], perm[..., b], alpha[..., None, :]
    perm = perm.at[..., a].set(w * p_a + (1 - w) * p_b)
    perm = perm.at[..., b].set((1 - w) * p_a + w * p_b)
  return x, perm


def hard_permutation(x: jax.Array) -> jax.Array:
  """The exact permutation matrix of the ascending sort, same convention as :func:`soft_sort`.

  ``perm[r, c] = 1`` iff ``c == rank(r)`` with ``rank = argsort(argsort(x))``, so
  ``x @ perm == jnp.sort(x)`` (ties broken by index, as a stable sort).

  Args:
    x: [..., n] values.

  Returns:
    [..., n, n] float32 0/1 matrix.
  """
  rank = jnp.argsort(jnp.argsort(x, axis=-1, stable=True), axis=-1)
  return jax.nn.one_hot(rank, x.shape[-1], dtype=jnp.float32)
