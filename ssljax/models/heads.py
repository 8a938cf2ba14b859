"""Projector and predictor heads: MLPs with BatchNorm between layers."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models.norm import batch_norm

# PyTorch's nn.Linear default (kaiming_uniform, a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
# i.e. variance 1 / (3 fan_in). The reference recipes tuned their LRs with it, so we keep it.
dense_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class MLP(nn.Module):
  """``[Dense -> BatchNorm -> ReLU] * len(hidden_dims) -> Dense(out_dim) [-> BatchNorm]``.

  A Barlow Twins projector is ``MLP(hidden_dims=(8192, 8192), out_dim=8192, use_bias=False)``;
  solo-learn's CIFAR one is ``MLP(hidden_dims=(2048, 2048), out_dim=2048)``.

  Attributes:
    hidden_dims: widths of the hidden layers (may be empty: a linear head).
    out_dim: output width.
    use_bias: give every Dense a bias (zero-initialised). The official Barlow Twins projector has
      none; a bias before BatchNorm is redundant anyway.
    last_bn: apply BatchNorm without scale and bias after the last Dense (SimSiam/MoCo-v3 style).
    hidden_bn: BatchNorm after each hidden Dense (False: ``Dense -> ReLU``, SimCLR v1 /
      solo-learn's SimCLR projector).
    bn_momentum: running-average decay (Flax convention: 0.9 == PyTorch's 0.1).
    bn_epsilon: BatchNorm epsilon.
    dtype: compute dtype; parameters and the output stay float32.
    cpu_kernels: ssljax's XLA:CPU BatchNorm instead of Flax's (``ssljax.cpu``); same variables.
  """

  hidden_dims: Sequence[int]
  out_dim: int
  use_bias: bool = True
  last_bn: bool = False
  hidden_bn: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_bd: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Applies the head.

    Args:
      x_bd: features, shape [B, D_in].
      train: use batch statistics and update the running ones in ``'batch_stats'``.

    Returns:
      Float32 array of shape [B, out_dim].
    """
    bn = dict(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      dtype=self.dtype,
    )
    dense = dict(use_bias=self.use_bias, kernel_init=dense_kernel_init, dtype=self.dtype)
    x = x_bd.astype(self.dtype)
    for i, width in enumerate(self.hidden_dims):
      x = nn.Dense(width, name=f"dense{i}", **dense)(x)
      if self.hidden_bn:
        x = batch_norm(self.cpu_kernels, name=f"bn{i}", **bn)(x)
      x = nn.relu(x)
    x = nn.Dense(self.out_dim, name="out", **dense)(x)
    if self.last_bn:
      x = batch_norm(self.cpu_kernels, use_scale=False, use_bias=False, name="out_bn", **bn)(x)
    # Losses (cross-correlations, softmaxes over large batches) want float32 inputs.
    return x.astype(jnp.float32)


DINO_HEAD_INITS = ("trunc_normal", "fan_in")


class DINOHead(nn.Module):
  """DINO's projection head: MLP -> L2-normalise -> weight-normalised linear to prototypes.

  ``Dense -> GELU`` for ``len(hidden_dims)`` layers, ``Dense(bottleneck_dim)``, L2 normalisation,
  then a bias-free linear layer to ``num_prototypes`` whose weight columns are normalised to unit
  length (``norm_last_layer=True`` in the official code: weight norm with the gain fixed at 1).
  Dense layers use truncated-normal(0.02) kernels and zero biases, as the official head
  (``dense_init='trunc_normal'``), or kernels of variance 1 / fan-in (``dense_init='fan_in'``).
  The official scale suits wide inputs (384-2048 features): on a narrow backbone (64 features) it
  leaves the bottleneck output with a norm of ~0.03 before the L2 normalisation, whose gradient
  then scales as 1 / 0.03, and the first steps grow the bottleneck bias past the input-dependent
  part (measured on the digits demo; ``experiments/dino.py``).

  Attributes:
    hidden_dims: widths of the hidden layers (2048, 2048 in the official head).
    bottleneck_dim: width before normalisation (256).
    num_prototypes: output width K (65536 for ViT on ImageNet; 4096 in solo-learn's CIFAR recipe).
    use_bn: BatchNorm after each hidden Dense (official default False).
    dense_init: 'trunc_normal' (official, std 0.02) or 'fan_in' (variance 1 / fan-in) Dense
      kernels.
    input_bn: BatchNorm on the head's input features (not in the official head). Backbone
      features that share a large common component (a small CNN's pooled ReLU outputs: pairwise
      cosine ~0.8 between digits at init) otherwise drive the head to one output for every sample,
      which centring turns into the uniform collapse; standardising them per batch removes it.
    dtype: compute dtype; the output is float32.
    cpu_kernels: ssljax's XLA:CPU BatchNorm instead of Flax's when ``use_bn``.
  """

  hidden_dims: Sequence[int] = (2048, 2048)
  bottleneck_dim: int = 256
  num_prototypes: int = 65536
  use_bn: bool = False
  dense_init: str = "trunc_normal"
  input_bn: bool = False
  dtype: Any = jnp.float32
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_bd: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[B, D_in] features -> [B, num_prototypes] float32 logits."""
    init = nn.initializers.truncated_normal(0.02)
    if self.dense_init not in DINO_HEAD_INITS:
      raise ValueError(f"DINOHead dense_init={self.dense_init!r} must be one of {DINO_HEAD_INITS}")
    dense_init = init if self.dense_init == "trunc_normal" else nn.initializers.lecun_normal()
    x = x_bd.astype(self.dtype)
    if self.input_bn:
      x = batch_norm(self.cpu_kernels, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, name="input_bn")(x)
    for i, width in enumerate(self.hidden_dims):
      x = nn.Dense(width, kernel_init=dense_init, dtype=self.dtype, name=f"dense{i}")(x)
      if self.use_bn:
        x = batch_norm(self.cpu_kernels, use_running_average=not train, momentum=0.9,
                       epsilon=1e-5, dtype=self.dtype, name=f"bn{i}")(x)
      x = nn.gelu(x, approximate=False)
    x = nn.Dense(self.bottleneck_dim, kernel_init=dense_init, dtype=self.dtype,
                 name="bottleneck")(x)
    x = x.astype(jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    v = self.param("last_layer", init, (self.bottleneck_dim, self.num_prototypes), jnp.float32)
    w = v / jnp.maximum(jnp.linalg.norm(v, axis=0, keepdims=True), 1e-12)
    return jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST)
