"""BatchNorm with a hand-written backward pass, a drop-in for ``flax.linen.BatchNorm``.

Same variables (``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``), same
arguments and the same forward arithmetic as Flax's default (statistics in float32, biased
variance E[x^2] - E[x]^2 clipped at 0, running averages ``m * old + (1 - m) * new``, not updated
during ``init``), so checkpoints and configs carry over. The difference is the backward pass:
autodiff of the normalisation emits four per-channel reductions, which XLA's CPU backend runs as
trees of reduce-windows in its generic loop emitter; :func:`batch_normalize` uses the textbook
formula, which needs two. On a ResNet-18 conv + BN block the forward + backward got ~13% faster on
CPU (benchmarks/NOTES.md). Every per-channel sum goes through :func:`channel_sums`, which keeps
XLA:CPU from choosing a cache-hostile reduction (the Barlow Twins benchmark step got ~1.3x faster
from that alone).

Both are XLA:CPU workarounds: on GPU/TPU Flax's BatchNorm is as fast. Models therefore take a
``cpu_kernels`` flag (resolved once from the config, see ``ssljax.cpu``) and build their norms with
:func:`batch_norm`, which returns this module or ``flax.linen.BatchNorm``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def channel_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel (last axis) mean and biased variance over all other axes, in float32.

  Sums by :func:`channel_sums`. Matrix-vector products (``ones @ x``) were tried and withdrawn: a
  GEMV adds its N terms one after another (relative error ~1e-6 at N = 4096), which broke the
  8-device vs 1-device gradient agreement of tests/methods/test_contract.py for several methods.

  Args:
    x: any shape [..., C], any float dtype.

  Returns:
    ``(mean_c, var_c)``, float32 [C] each; the variance is E[x^2] - E[x]^2, clipped at 0.
  """
  x = x.astype(jnp.float32)
  n = x.size // x.shape[-1]
  mean = channel_sums(x) / n
  return mean, jnp.maximum(0.0, channel_sums(x * x) / n - mean * mean)


_WINDOW = 32


def channel_sums(x: jax.Array) -> jax.Array:
  """Per-channel (last axis) sums over all other axes, in float32.

  For inputs with spatial axes ([B, ..., C]), the positions within each sample are first
  summed in windows of 32 rows (``lax.reduce_window`` on [B, positions, C], repeated until at most
  32 remain), then the rest with ``jnp.sum``. XLA:CPU otherwise rewrites one big reduction over
  [B, H, W] into a reduce-window whose 32x32x32 window walks the array with a channel stride,
  reloading every cache line once per channel: 24 ms against 1.2 ms for [128, 32, 32, 64] on the
  development machine, and the staged sum is also more accurate (max relative error 1e-7 against
  3e-6 in float64 checks; benchmarks/NOTES.md). The batch axis is never windowed, so a batch
  sharded over devices stays a local reduction plus one all-reduce. Inputs without spatial axes use
  ``jnp.sum``.
  """
  x = x.astype(jnp.float32)
  if x.ndim < 3:
    return jnp.sum(x, axis=tuple(range(x.ndim - 1)))
  f = x.reshape(x.shape[0], -1, x.shape[-1])
  while f.shape[1] > _WINDOW:
    pad = -f.shape[1] % _WINDOW
    f = jax.lax.reduce_window(f, 0.0, jax.lax.add, (1, _WINDOW, 1), (1, _WINDOW, 1),
                              ((0, 0), (0, pad), (0, 0)))
  return jnp.sum(f, axis=(0, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BN: ``((x - mean) * rsqrt(var + eps) * scale + bias, mean, var)``.

  Statistics over every axis but the last, in float32. The output takes the promoted dtype of
  ``x`` and float32. The hand-written backward pass is the textbook one,
  ``dx = scale * r / N * (N dy - sum(dy) - xhat * sum(dy * xhat))`` with ``r = rsqrt(var + eps)``,
  with two per-channel sums where autodiff emits four reductions.
  ``mean`` and ``var`` are returned for the running averages only: no gradient flows back
  through them.
  """
  out, _ = _batch_normalize_fwd(x, scale, bias, epsilon)
  return out


def _batch_normalize_fwd(x, scale, bias, epsilon):
  mean, var = channel_moments(x)
  r = jax.lax.rsqrt(var + epsilon)
  y = (x - mean) * (r * scale) + bias
  return (y, mean, var), (x, mean, r, scale)


def _batch_normalize_bwd(epsilon, res, cotangents):
  del epsilon
  x, mean, r, scale = res
  dy = cotangents[0].astype(jnp.float32)  # Cotangents of mean and var are ignored (see above).
  n = x.size // x.shape[-1]
  xhat = ((x - mean) * r).astype(jnp.float32)
  dbias = channel_sums(dy)
  dscale = channel_sums(dy * xhat)
  dx = (scale * r / n) * (n * dy - dbias - xhat * dscale)
  return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


batch_normalize.defvjp(_batch_normalize_fwd, _batch_normalize_bwd)


class BatchNorm(nn.Module):
  """Batch normalisation over every axis but the last (features); see the module docstring.

  Attributes:
    use_running_average: normalise with the running statistics (evaluation) instead of the
      batch's own (training, which also updates the running ones).
    momentum: decay of the running averages (0.9 == PyTorch's momentum 0.1).
    epsilon: added to the variance.
    dtype: dtype of the output (None: the input's); statistics are float32 regardless.
    param_dtype: dtype of ``scale`` and ``bias``.
    use_bias, use_scale: learn a shift / a scale.
    bias_init, scale_init: their initialisers.
  """

  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Any = nn.initializers.zeros
  scale_init: Any = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    use_running_average = nn.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    features = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                            (features,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (features,))
    scale = (self.param("scale", self.scale_init, (features,), self.param_dtype)
             if self.use_scale else jnp.ones((features,), self.param_dtype))
    bias = (self.param("bias", self.bias_init, (features,), self.param_dtype)
            if self.use_bias else jnp.zeros((features,), self.param_dtype))
    if use_running_average:
      # As Flax: y = (x - mean) * (rsqrt(var + eps) * scale) + bias, in the promoted dtype.
      y = (x - ra_mean.value) * (jax.lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
    else:
      y, mean, var = batch_normalize(x, scale, bias, self.epsilon)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    dtype = self.dtype
    if dtype is None:  # As Flax: the promoted dtype of the input and the parameters used.
      dtype = x.dtype if not (self.use_scale or self.use_bias) else jnp.promote_types(
          x.dtype, self.param_dtype)
    return jnp.asarray(y, dtype)


def batch_norm(cpu_kernels: bool, **kwargs) -> nn.Module:
  """:class:`BatchNorm` when ``cpu_kernels`` (XLA:CPU), else ``flax.linen.BatchNorm``.

  Both take the same arguments and create the same variables, so a checkpoint written with either
  loads into the other.
  """
  return (BatchNorm if cpu_kernels else nn.BatchNorm)(**kwargs)
