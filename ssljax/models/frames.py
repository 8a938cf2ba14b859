"""Encoders of the frame-projections method (Demirel & Holz, NeurIPS 2025; official ``isoalign``).

One encoder per frame, each [B, ...] -> [B, 128] (the official sizes; all widths are attributes):

* :class:`ResNet1DEncoder` — the time encoder f_t, the official ``ResNet1D`` (Hong et al.'s 1-D
  ResNet): a 'same' conv (kernel 5) + BN + ReLU, ``blocks`` pre-activation residual blocks of two
  'same' convs (BN, ReLU, dropout 0.5 before each conv but the first block's first), stride 2 in
  every second block (the shortcut max-pooled), channels doubled every fourth block (the shortcut
  zero-padded on both sides), a final BN + ReLU, the mean over time and Linear -> ``out_dim``.
* :class:`FourierEncoder` — f_F on ``(|X_F|, angle(X_F))`` [B, F, C] each: two branches of a
  conv (C -> 16, kernel 3) + ReLU and two residual blocks (16 -> 32 -> 64, stride 2, no BN), then
  a Linear over the remaining length to 1; the two 64-d outputs concatenated (128).
* :class:`WaveletEncoder` — f_W on the scalogram ``|CWT|`` [B, S, T, C]: four conv (kernel 5) +
  BN + ReLU blocks (32, 64, 96, 128 channels; strides 1, 2, 2, 2), the input average-pooled by 2
  and 4 concatenated before the third and fourth, then a Linear over time and one over scales.
* :class:`ConvMapping` — the predictors M_F, M_W and the stage-2 latent mappers: the 128-d vector
  as a one-channel signal, Conv1d(1 -> hidden, k3, stride 2, pad 1), ReLU,
  ConvTranspose1d(hidden -> 1, k3, stride 2, pad 1, output_padding 1): [B, D] -> [B, D], D even.
* :class:`Projector` — Linear(128, 128), ReLU, Linear(128, 128).

The official Linear layers over the remaining length / time / scales are hard-coded for a few
input lengths (pitfall 4 of the spec); here every such Linear is sized by the input's shape, so any
length works. Where the official wavelet encoder concatenates average pools that only line up when
T is a multiple of 4, the pools here average the last, partial window over the samples it has
(equal to PyTorch's ``AvgPool2d`` whenever that one fits), so the shapes line up for every T.
Initialisation is PyTorch's default (U(+-1/sqrt(fan_in)) for weights and biases), BatchNorm is
PyTorch's (momentum 0.1, eps 1e-5). Inputs are channels-last.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax.models.norm import batch_norm
from ssljax.models.sequence import torch_bias_init, torch_kernel_init


def _dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  return nn.Dense(features, kernel_init=torch_kernel_init, bias_init=torch_bias_init(fan_in),
                  name=name)


def _conv(features: int, kernel, fan_in: int, *, stride=1, padding="SAME",
          name: str | None = None) -> nn.Conv:
  kernel = tuple(kernel) if isinstance(kernel, tuple | list) else (kernel,)
  stride = tuple(stride) if isinstance(stride, tuple | list) else (stride,) * len(kernel)
  return nn.Conv(features, kernel, strides=stride, padding=padding,
                 kernel_init=torch_kernel_init, bias_init=torch_bias_init(fan_in), name=name)


def max_pool_same(x_btc: jax.Array) -> jax.Array:
  """The official ``MyMaxPool1dPadSame(2)``: one zero appended when T is odd, then the max over
  pairs: [B, T, C] -> [B, ceil(T / 2), C]."""
  b, t, c = x_btc.shape
  if t % 2:
    x_btc = jnp.concatenate([x_btc, jnp.zeros((b, 1, c), x_btc.dtype)], axis=1)
  return jnp.max(x_btc.reshape(b, -1, 2, c), axis=2)


def pad_channels(x: jax.Array, features: int) -> jax.Array:
  """Zero channels added on both sides (the first half rounded down), as the official shortcut."""
  extra = features - x.shape[-1]
  if extra <= 0:
    return x
  before = extra // 2
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(before, extra - before)])


def avg_pool_ceil(x_bhwc: jax.Array, k: int) -> jax.Array:
  """k x k average pooling with stride k over [B, H, W, C] -> [B, ceil(H/k), ceil(W/k), C]; a
  trailing partial window averages the samples it holds (PyTorch's ``AvgPool2d(k)`` on the full
  windows)."""
  b, h, w, c = x_bhwc.shape
  hp, wp = -(-h // k) * k, -(-w // k) * k
  pad = [(0, 0), (0, hp - h), (0, wp - w), (0, 0)]
  sums = jnp.pad(x_bhwc, pad).reshape(b, hp // k, k, wp // k, k, c).sum(axis=(2, 4))
  count = np.pad(np.ones((h, w)), pad[1:3]).reshape(hp // k, k, wp // k, k).sum(axis=(1, 3))
  return sums / jnp.asarray(count, x_bhwc.dtype)[None, :, :, None]


class ResidualBlock1D(nn.Module):
  """The official ``BasicBlock``: [B, T, C_in] -> [B, T / stride, features].

  ``(BN, ReLU, dropout)`` (skipped in the first block) -> conv(stride) -> BN, ReLU, dropout ->
  conv; the shortcut is max-pooled when ``stride == 2`` and zero-padded in channels.

  Attributes:
    features: output channels.
    kernel: conv kernel size.
    stride: 1 or 2 (downsample).
    first: the network's first block (no pre-activation on the input).
    use_bn: BatchNorm before each ReLU (the time encoder; the Fourier encoder has none).
    dropout: dropout rate before each conv (0: none).
    cpu_kernels: ssljax's XLA:CPU BatchNorm (same variables).
  """

  features: int
  kernel: int
  stride: int = 1
  first: bool = False
  use_bn: bool = True
  dropout: float = 0.0
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_btc, *, train: bool = False):
    c = x_btc.shape[-1]

    def act(y, name):
      if self.use_bn:
        y = batch_norm(self.cpu_kernels, use_running_average=not train, momentum=0.9,
                       epsilon=1e-5, name=name)(y)
      y = nn.relu(y)
      if self.dropout > 0:
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
      return y

    y = x_btc if self.first else act(x_btc, "bn1")
    y = _conv(self.features, self.kernel, self.kernel * c, stride=self.stride, name="conv1")(y)
    y = act(y, "bn2")
    y = _conv(self.features, self.kernel, self.kernel * self.features, name="conv2")(y)
    shortcut = max_pool_same(x_btc) if self.stride == 2 else x_btc
    return y + pad_channels(shortcut, self.features)


class ResNet1DEncoder(nn.Module):
  """The time encoder f_t, [B, T, C] -> [B, out_dim] (official ``ResNet1D``, ``backbone=True``).

  Attributes:
    base_filters: channels of the first conv and blocks (official 32).
    kernel: conv kernel size (official 5).
    blocks: residual blocks (official 8: channels 32, 32, 32, 32, 64, 64, 64, 64; stride 2 in
      blocks 1, 3, 5, 7).
    out_dim: output width (official 128).
    dropout: dropout rate in the blocks (official 0.5).
    downsample_gap, increase_filter_gap: stride 2 every ``downsample_gap`` blocks (at block index
      ``i % gap == 1``), channels doubled every ``increase_filter_gap`` blocks (official 2, 4).
    cpu_kernels: ssljax's XLA:CPU BatchNorm (same variables).
  """

  base_filters: int = 32
  kernel: int = 5
  blocks: int = 8
  out_dim: int = 128
  dropout: float = 0.5
  downsample_gap: int = 2
  increase_filter_gap: int = 4
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_btc, *, train: bool = False):
    bn = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    y = _conv(self.base_filters, self.kernel, self.kernel * x_btc.shape[-1], name="stem")(x_btc)
    y = nn.relu(batch_norm(self.cpu_kernels, name="stem_bn", **bn)(y))
    features = self.base_filters
    for i in range(self.blocks):
      if i > 0 and i % self.increase_filter_gap == 0:
        features = self.base_filters * 2 ** ((i - 1) // self.increase_filter_gap) * 2
      stride = 2 if i % self.downsample_gap == 1 else 1
      y = ResidualBlock1D(features, self.kernel, stride=stride, first=i == 0,
                          dropout=self.dropout, cpu_kernels=self.cpu_kernels,
                          name=f"block{i}")(y, train=train)
    y = nn.relu(batch_norm(self.cpu_kernels, name="final_bn", **bn)(y))
    return _dense(self.out_dim, y.shape[-1], name="head")(jnp.mean(y, axis=1))


class _FourierBranch(nn.Module):
  """One branch of :class:`FourierEncoder`: [B, F, C] -> [B, 4 * width]."""

  width: int = 16
  kernel: int = 3

  @nn.compact
  def __call__(self, x_bfc):
    y = nn.relu(_conv(self.width, self.kernel, self.kernel * x_bfc.shape[-1], name="conv")(x_bfc))
    y = ResidualBlock1D(2 * self.width, self.kernel, stride=2, first=True, use_bn=False,
                        name="block1")(y)
    y = ResidualBlock1D(4 * self.width, self.kernel, stride=2, use_bn=False, name="block2")(y)
    # The official Linear(remaining length, 1), applied to each channel's sequence.
    length = y.shape[1]
    return _dense(1, length, name="pool")(jnp.swapaxes(y, 1, 2))[..., 0]


class FourierEncoder(nn.Module):
  """f_F: ``(amplitude, phase)`` [B, F, C] each -> [B, 8 * width] (official 128 = 64 + 64).

  Attributes:
    width: channels of each branch's first conv (official 16; the blocks have 2x and 4x).
    kernel: conv kernel size (official 3).
  """

  width: int = 16
  kernel: int = 3

  @nn.compact
  def __call__(self, amp_bfc, phase_bfc):
    a = _FourierBranch(self.width, self.kernel, name="amplitude")(amp_bfc)
    p = _FourierBranch(self.width, self.kernel, name="phase")(phase_bfc)
    return jnp.concatenate([a, p], axis=-1)


class WaveletEncoder(nn.Module):
  """f_W: the scalogram [B, S, T, C] -> [B, 4 * width] (official ``UNET_2D_simp`` encoder, 128).

  Conv(k, explicit padding k // 2, bias) + BN + ReLU blocks of width, 2x, 3x, 4x ``width``
  channels with strides 1, 2, 2, 2; the input average-pooled by 2 and by 4 is concatenated before
  the third and the fourth block; then a Linear over the remaining time steps to 1 and a Linear
  over the remaining scales to 1.

  Attributes:
    width: channels of the first block (official 32).
    kernel: square conv kernel size (official 5).
    cpu_kernels: ssljax's XLA:CPU BatchNorm (same variables).
  """

  width: int = 32
  kernel: int = 5
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, x_bstc, *, train: bool = False):
    pad = self.kernel // 2

    def block(y, features, stride, name):
      fan_in = self.kernel * self.kernel * y.shape[-1]
      y = _conv(features, (self.kernel, self.kernel), fan_in, stride=stride,
                padding=((pad, pad), (pad, pad)), name=name)(y)
      y = batch_norm(self.cpu_kernels, use_running_average=not train, momentum=0.9,
                     epsilon=1e-5, name=f"{name}_bn")(y)
      return nn.relu(y)

    y = block(x_bstc, self.width, 1, "conv1")
    y = block(y, 2 * self.width, 2, "conv2")
    y = block(jnp.concatenate([y, avg_pool_ceil(x_bstc, 2)], axis=-1), 3 * self.width, 2,
              "conv3")
    y = block(jnp.concatenate([y, avg_pool_ceil(x_bstc, 4)], axis=-1), 4 * self.width, 2,
              "conv4")  # [B, S', T', 4w]
    y = _dense(1, y.shape[2], name="time_pool")(jnp.moveaxis(y, 2, -1))[..., 0]  # [B, S', 4w]
    return _dense(1, y.shape[1], name="scale_pool")(jnp.swapaxes(y, 1, 2))[..., 0]


class ConvMapping(nn.Module):
  """The official ``ConvMapping``: [B, D] -> [B, D] through a one-channel conv and its transpose.

  ``h = relu(conv(x))`` with Conv1d(1 -> hidden, kernel 3, stride 2, padding 1) (length D/2), then
  ConvTranspose1d(hidden -> 1, kernel 3, stride 2, padding 1, output_padding 1), which in PyTorch's
  definition scatters ``y[2 i + k - 1] += h[i] . w[:, k]`` (plus the bias) and keeps length D.

  Attributes:
    hidden: channels between the two convolutions (64 for the pre-training predictors, 1 for the
      stage-2 latent mappers).
    kernel: kernel size of both (official 3).
  """

  hidden: int = 64
  kernel: int = 3

  @nn.compact
  def __call__(self, x_bd):
    d, k = x_bd.shape[-1], self.kernel
    pad = k // 2
    h = _conv(self.hidden, k, k, stride=2, padding=((pad, pad),), name="conv")(x_bd[..., None])
    h = nn.relu(h)  # [B, ceil(D / 2), hidden]
    # ConvTranspose1d(stride 2, padding p, output_padding 1) == a stride-1 convolution of h dilated
    # by 2 (zeros between samples) padded by (k-1-p, k-1-p+1), with the kernel flipped in time.
    # Weight [k, hidden] and bias: PyTorch's init for this layer draws them from U(+-1/sqrt(k)).
    w = self.param("deconv_kernel", torch_bias_init(k), (k, self.hidden, 1))
    bias = self.param("deconv_bias", torch_bias_init(k), (1,))
    y = jax.lax.conv_general_dilated(h, w[::-1], (1,), [(k - 1 - pad, k - pad)],
                                     lhs_dilation=(2,), dimension_numbers=("NWC", "WIO", "NWC"))
    return (y + bias)[..., :d, 0]


class Projector(nn.Module):
  """Linear(D, hidden) - ReLU - Linear(hidden, out_dim), PyTorch init (official projectors)."""

  hidden: int = 128
  out_dim: int = 128

  @nn.compact
  def __call__(self, x_bd):
    y = nn.relu(_dense(self.hidden, x_bd.shape[-1], name="fc1")(x_bd))
    return _dense(self.out_dim, self.hidden, name="fc2")(y)
