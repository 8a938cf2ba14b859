"""ResNet encoders (He et al. 2016) in Flax Linen, without the classifier.

The layout follows torchvision's ResNet v1.5 (the stride of a bottleneck block sits on its 3x3
conv), so parameter counts and published hyperparameters carry over. Two stems:

* ``'imagenet'``: 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool (224 px inputs become 56 px).
* ``'cifar'``: 3x3/1 conv -> BN -> ReLU, no max-pool (32 px inputs stay 32 px into stage 1), as
  solo-learn and SimCLR use for small images.

BatchNorm statistics live in the ``'batch_stats'`` collection; call the module with
``mutable=['batch_stats']`` when ``train=True``.

``cpu_kernels=True`` (set from the config's ``cpu_kernels``, see ``ssljax.cpu``) swaps in the
XLA:CPU workarounds: ssljax's BatchNorm and an identity ``lax.cond`` before each training conv.
With False (the default) the model is plain Flax; the variables are the same either way.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError
from ssljax.models.norm import batch_norm

# torchvision initialises convs with kaiming_normal_(mode='fan_out', nonlinearity='relu'): an
# untruncated normal with variance 2 / (k * k * out_channels).
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
# name -> (stage sizes, block kind); the standard depths of He et al. 2016, plus a tiny one.
ARCHITECTURES = {
  "resnet18": ((2, 2, 2, 2), "basic"),
  "resnet34": ((3, 4, 6, 3), "basic"),
  "resnet50": ((3, 4, 6, 3), "bottleneck"),
  # Not a published model: two stages of one basic block (6 convs, features = 2 x width). The
  # `runlocal` variants and the method tests use it, so a test compiles in a fraction of a
  # ResNet-18's time; the standard depths are covered by tests/models/test_resnet.py.
  "resnet_tiny": ((1, 1), "basic"),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
  # PyTorch-style symmetric padding: 'SAME' would pad (2, 3) for a stride-2 7x7 conv on an even
  # input, shifting every feature map by half a pixel relative to the reference models.
  p = kernel // 2
  return ((p, p), (p, p))


@jax.custom_vjp
def _materialized(x: jax.Array, witness: jax.Array) -> jax.Array:
  """``x``, passed through a conditional that XLA:CPU cannot fuse across.

  XLA:CPU re-computes a convolution's input (BatchNorm + ReLU, a cheap elementwise producer)
  inside the transpose that lays it out as [C, H, W, B] for the kernel gradient, and that fused
  loop walks the activation at channel stride: 86 ms instead of 22 ms for a [128, 32, 32, 64]
  activation (benchmarks/NOTES.md). Routing the forward value through ``lax.cond`` makes it a
  materialised buffer, so the backward pass transposes it with XLA's tiled transpose. Both branches
  are the identity; the predicate is read from ``witness`` (the conv kernel) only so that
  XLA cannot fold the conditional away. The backward pass is the identity.
  """
  return _materialized_fwd(x, witness)[0]


def _materialized_fwd(x, witness):
  keep = jnp.isfinite(witness.reshape(-1)[0])
  return jax.lax.cond(keep, lambda v: v, lambda v: v * 1, x), None


def _materialized_bwd(_, g):
  return g, None


_materialized.defvjp(_materialized_fwd, _materialized_bwd)


class _ConvBN(nn.Module):
  """Conv (no bias) followed by BatchNorm; the unit every ResNet layer is made of."""

  features: int
  kernel: int
  stride: int = 1
  zero_scale: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    if train and self.cpu_kernels and not self.is_initializing():
      # The kernel exists once the module is applied with parameters; it only feeds the predicate.
      x = _materialized(x, self.variables["params"]["conv"]["kernel"])
    x = nn.Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=(self.stride, self.stride),
      padding=_pad(self.kernel),
      use_bias=False,
      kernel_init=conv_kernel_init,
      dtype=self.dtype,
      name="conv",
    )(x)
    return batch_norm(
      self.cpu_kernels,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      scale_init=nn.initializers.zeros if self.zero_scale else nn.initializers.ones,
      dtype=self.dtype,
      name="bn",
    )(x)


class ResidualBlock(nn.Module):
  """A basic (two 3x3 convs) or bottleneck (1x1 -> 3x3 -> 1x1, expansion 4) residual block.

  Attributes:
    features: channels of the block's inner convs; the output has ``features * expansion``.
    block: ``'basic'`` or ``'bottleneck'``.
    stride: spatial stride (on the 3x3 conv, as in ResNet v1.5).
    zero_init_residual: initialise the last BN scale to 0, so the block starts as its shortcut.
  """

  features: int
  block: str
  stride: int = 1
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_bhwc: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Applies the block.

    Args:
      x_bhwc: input, shape [B, H, W, C_in].
      train: use batch statistics and update the running ones.

    Returns:
      Shape [B, H / stride, W / stride, features * expansion].
    """
    bn = dict(dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              cpu_kernels=self.cpu_kernels)
    out_features = self.features * _EXPANSION[self.block]
    if self.block == "basic":
      y = nn.relu(_ConvBN(self.features, 3, self.stride, name="conv1", **bn)(x_bhwc, train=train))
      y = _ConvBN(out_features, 3, zero_scale=self.zero_init_residual, name="conv2", **bn)(
        y, train=train
      )
    else:
      y = nn.relu(_ConvBN(self.features, 1, name="conv1", **bn)(x_bhwc, train=train))
      y = nn.relu(_ConvBN(self.features, 3, self.stride, name="conv2", **bn)(y, train=train))
      y = _ConvBN(out_features, 1, zero_scale=self.zero_init_residual, name="conv3", **bn)(
        y, train=train
      )
    shortcut = x_bhwc
    if self.stride != 1 or x_bhwc.shape[-1] != out_features:
      shortcut = _ConvBN(out_features, 1, self.stride, name="shortcut", **bn)(x_bhwc, train=train)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet feature extractor: stem, four stages, global average pool (no classifier).

  Attributes:
    stage_sizes: number of blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block: ``'basic'`` or ``'bottleneck'``.
    width: channels of the first stage; each later stage doubles them.
    stem: ``'imagenet'`` (7x7/2 conv + 3x3/2 max-pool) or ``'cifar'`` (3x3/1 conv, no pool).
    zero_init_residual: last BN scale of every block starts at 0 (Barlow Twins, BYOL recipes).
    dtype: compute dtype; parameters and the returned features stay float32.
    bn_momentum: running-average decay of BatchNorm (Flax convention: 0.9 == PyTorch's 0.1).
    bn_epsilon: BatchNorm epsilon.
    cpu_kernels: use the XLA:CPU workarounds (module docstring); same variables either way.
  """

  stage_sizes: Sequence[int]
  block: str
  width: int = 64
  stem: str = "imagenet"
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  cpu_kernels: bool = False

  @property
  def features(self) -> int:
    """Dimension of the pooled output."""
    return self.width * 2 ** (len(self.stage_sizes) - 1) * _EXPANSION[self.block]

  @nn.compact
  def __call__(self, x_bhwc: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Encodes a batch of images.

    Args:
      x_bhwc: images, shape [B, H, W, C] (any float dtype; normalised by the caller).
      train: use batch statistics and update the running ones in ``'batch_stats'``.

    Returns:
      Pooled features, float32, shape [B, self.features].
    """
    _check_choice(self.block, BLOCKS, "encoder.block")
    _check_choice(self.stem, STEMS, "encoder.stem")
    bn = dict(dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              cpu_kernels=self.cpu_kernels)
    x = x_bhwc.astype(self.dtype)
    if self.stem == "imagenet":
      x = nn.relu(_ConvBN(self.width, 7, 2, name="stem", **bn)(x, train=train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=_pad(3))
    else:
      x = nn.relu(_ConvBN(self.width, 3, 1, name="stem", **bn)(x, train=train))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = ResidualBlock(
          features=self.width * 2**i,
          block=self.block,
          # Every stage after the first halves the resolution in its first block.
          stride=2 if i > 0 and j == 0 else 1,
          zero_init_residual=self.zero_init_residual,
          name=f"stage{i + 1}_block{j + 1}",
          **bn,
        )(x, train=train)
    # Pool in float32: a bf16 mean over 49+ positions loses digits the losses then amplify.
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def _check_choice(value: str, choices: Sequence[str], key: str) -> None:
  if value not in choices:
    raise ConfigError(f"{key}={value!r} is not supported; choose one of {', '.join(choices)}")


def make_encoder(
  name: str,
  *,
  stem: str = "imagenet",
  width: int = 64,
  zero_init_residual: bool = False,
  dtype: Any = jnp.float32,
  cpu_kernels: bool = False,
) -> tuple[nn.Module, int]:
  """Builds a ResNet encoder by name.

  Args:
    name: ``'resnet18'``, ``'resnet34'``, ``'resnet50'`` or ``'resnet_tiny'`` (tests, smoke runs).
    stem: ``'imagenet'`` or ``'cifar'``.
    width: channels of the first stage (64 is the standard model).
    zero_init_residual: zero-initialise the last BN scale of every residual block.
    dtype: compute dtype.
    cpu_kernels: use the XLA:CPU workarounds (module docstring).

  Returns:
    ``(module, feature_dim)``; feature_dim is 8 * width (basic blocks) or 32 * width
    (bottleneck), i.e. 512 / 2048 at width 64; 2 * width for ``'resnet_tiny'``.

  Raises:
    ConfigError: unknown name or stem, or a non-positive width.
  """
  _check_choice(name, tuple(ARCHITECTURES), "encoder.name")
  _check_choice(stem, STEMS, "encoder.stem")
  if not isinstance(width, int) or width < 1:
    raise ConfigError(f"encoder.width={width!r} must be a positive integer (64 is standard)")
  stage_sizes, block = ARCHITECTURES[name]
  module = ResNet(
    stage_sizes=stage_sizes,
    block=block,
    width=width,
    stem=stem,
    zero_init_residual=zero_init_residual,
    dtype=dtype,
    cpu_kernels=bool(cpu_kernels),
  )
  return module, module.features
