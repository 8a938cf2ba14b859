"""Vision Transformer encoder (Dosovitskiy et al. 2021) and MAE decoder (He et al. 2022), Linen.

The encoder is the standard pre-LN ViT without a classifier: patch embedding (a conv with kernel =
stride = patch), a learned CLS token, position embeddings, ``depth`` transformer blocks and a final
LayerNorm. Its ``__call__`` returns the normalised CLS token, so it drops in wherever a ResNet
encoder does (``module(x_bhwc, train=...)`` -> [B, F] float32). :meth:`ViT.tokens` returns every
token and, given ``ids_keep_bk`` from :func:`random_masking`, encodes only the visible patches, as
the MAE encoder does.

Names such as ``'vit:S/16'`` pick a size from :data:`VIT_SIZES` and a patch size; see
:func:`parse_vit_name` and :func:`make_vit`.

Initialisation follows the official ViT/MAE code: xavier-uniform Dense kernels with zero biases, the
patch-embedding kernel xavier-uniform as a flattened [p*p*C, width] matrix, CLS token, learned
position embeddings and MAE mask token normal(0.02), LayerNorm scale 1 / bias 0 (eps 1e-6).
There is no BatchNorm and no dropout. The only training-time randomness is stochastic depth
(``drop_path_rate``, Huang et al. 2016, as DeiT/DINO use it): off by default, and active only in a
call with ``train=True`` that passes a ``'dropout'`` rng (``rngs={'dropout': key}``); see
:func:`drop_path`.
"""

import functools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax.errors import ConfigError

# size -> (width, depth, num_heads, mlp_dim). Ti/S come from DeiT (Touvron et al. 2021), B from
# ViT (Dosovitskiy et al. 2021). 'N' (nano) is ssljax's own demo size for CPU runs, not a
# published model.
VIT_SIZES = {
  "Ti": (192, 12, 3, 768),
  "S": (384, 12, 6, 1536),
  "B": (768, 12, 12, 3072),
  "N": (64, 4, 4, 256),
}
_SIZE_ALIASES = {"T": "Ti"}
POSEMBS = ("learn", "sincos2d")

_NAME_RE = re.compile(r"vit:([A-Za-z]+)/(\d+)")
_LN_EPS = 1e-6

dense_kernel_init = nn.initializers.xavier_uniform()
# The official MAE code applies xavier_uniform to the conv weight viewed as [width, p*p*C]: fans are
# p*p*C and width. Flax's Conv kernel is [p, p, C, width]; without these axes the default fan
# computation would multiply fan_out by the receptive field p*p.
patch_kernel_init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=-1)
token_init = nn.initializers.normal(stddev=0.02)


def parse_vit_name(name: str, *, key: str = "encoder.name") -> tuple[str, int]:
  """Splits a ViT name such as ``'vit:S/16'`` into its size and patch size.

  Args:
    name: ``'vit:<size>/<patch>'`` with size one of :data:`VIT_SIZES` (``'T'`` is an alias of
      ``'Ti'``) and a positive patch size.
    key: the config key the name came from, for the error message.

  Returns:
    ``(size, patch)``, e.g. ``('S', 16)``; the size is canonical (``'T'`` -> ``'Ti'``).

  Raises:
    ConfigError: the name does not have that form.
  """
  match = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
  size = match and _SIZE_ALIASES.get(match.group(1), match.group(1))
  if not match or size not in VIT_SIZES or int(match.group(2)) < 1:
    raise ConfigError(
      f"{key}={name!r} is not a ViT name; use 'vit:<size>/<patch>' with size one of "
      f"{', '.join(VIT_SIZES)} (T = Ti) and a positive patch size, e.g. 'vit:S/16'"
    )
  return size, int(match.group(2))


def check_patch_divides(
  image_size: int,
  patch: int,
  *,
  key: str,
  name: str | None = None,
  name_key: str = "encoder.name",
) -> None:
  """Checks that images of ``image_size`` pixels split into whole patches.

  Args:
    image_size: side length of the images (e.g. a view's crop size).
    patch: the ViT patch size.
    key: the config key ``image_size`` came from, e.g. ``'input.views.view1.size'``.
    name: the encoder name (e.g. ``'vit:S/16'``), quoted in the message when given.
    name_key: the config key of ``name``.

  Raises:
    ConfigError: ``image_size`` is not a positive multiple of ``patch``.
  """
  if image_size < patch or image_size % patch:
    source = f" ({name_key}={name!r})" if name is not None else ""
    raise ConfigError(
      f"{key}={image_size} is not divisible by the ViT patch size {patch}{source}; "
      f"use a multiple of {patch}"
    )


def patchify(images_bhwc: jax.Array, patch: int) -> jax.Array:
  """Cuts images into non-overlapping square patches.

  Args:
    images_bhwc: shape [B, H, W, C]; H and W divisible by ``patch``.
    patch: patch side length p.

  Returns:
    Shape [B, L, p*p*C] with L = (H/p) * (W/p). Patches are in row-major order (left to right,
    then top to bottom, as the ViT tokens); each is flattened in (p, p, C) order, i.e. the
    layout of the MAE reconstruction target.
  """
  b, h, w, c = images_bhwc.shape
  if h % patch or w % patch:
    raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
  gh, gw = h // patch, w // patch
  x = images_bhwc.reshape(b, gh, patch, gw, patch, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, gh, gw, p, p, C]
  return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(
  patches_bld: jax.Array, patch: int, *, height: int, width: int, channels: int
) -> jax.Array:
  """Inverse of :func:`patchify`.

  Args:
    patches_bld: shape [B, L, p*p*C] with L = (height/p) * (width/p).
    patch: patch side length p.
    height: image height H in pixels.
    width: image width W in pixels.
    channels: number of channels C.

  Returns:
    Shape [B, H, W, C].
  """
  b = patches_bld.shape[0]
  gh, gw = height // patch, width // patch
  if patches_bld.shape[1:] != (gh * gw, patch * patch * channels):
    raise ValueError(
      f"patches of shape {patches_bld.shape} do not tile a {height}x{width}x{channels} image "
      f"with patch size {patch}"
    )
  x = patches_bld.reshape(b, gh, gw, patch, patch, channels)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, gh, p, gw, p, C]
  return x.reshape(b, height, width, channels)


def random_masking(
  rng: jax.Array, batch_size: int, num_patches: int, *, mask_ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Draws an independent random subset of visible patches for every sample (MAE).

  As in the official MAE code, each sample's patches are shuffled by argsorting uniform noise and
  the first ``int(L * (1 - mask_ratio))`` of the shuffle are kept. That truncation is the official
  rounding; for L = 16, 64 and 196 at mask_ratio 0.75 it keeps L - floor(0.75 L) = 4, 16 and 49.

  Args:
    rng: PRNG key.
    batch_size: B.
    num_patches: L, patches per image.
    mask_ratio: fraction of patches removed, in [0, 1).

  Returns:
    ``(ids_keep_bk, mask_bl, ids_restore_bl)``:

    * ids_keep_bk: int32 [B, K], indices (into the original patch order) of the kept patches, in
      shuffled order; pass it to :meth:`ViT.tokens`.
    * mask_bl: float32 [B, L] in the original patch order; 1 = masked (removed), 0 = kept.
    * ids_restore_bl: int32 [B, L], the inverse permutation of the shuffle: gathering the
      shuffled sequence (kept tokens then mask tokens) with it restores the original order.

  Raises:
    ValueError: mask_ratio outside [0, 1), or so close to 1 that no patch would be kept.
  """
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio={mask_ratio} must be in [0, 1)")
  keep = int(num_patches * (1 - mask_ratio))
  if keep < 1:
    raise ValueError(
      f"mask_ratio={mask_ratio} keeps no patch of {num_patches}; use a smaller mask ratio"
    )
  noise_bl = jax.random.uniform(rng, (batch_size, num_patches))
  ids_shuffle_bl = jnp.argsort(noise_bl, axis=1).astype(jnp.int32)
  ids_restore_bl = jnp.argsort(ids_shuffle_bl, axis=1).astype(jnp.int32)
  ids_keep_bk = ids_shuffle_bl[:, :keep]
  # In shuffled order the first `keep` entries are visible; unshuffling puts the flags back at
  # their patches' original positions.
  mask_shuffled_bl = jnp.broadcast_to(
    (jnp.arange(num_patches) >= keep).astype(jnp.float32), (batch_size, num_patches)
  )
  mask_bl = jnp.take_along_axis(mask_shuffled_bl, ids_restore_bl, axis=1)
  return ids_keep_bk, mask_bl, ids_restore_bl


def sincos_posemb_2d(
  grid_h: int, grid_w: int, width: int, temperature: float = 10000.0
) -> jax.Array:
  """Fixed 2-D sine-cosine position embeddings (MAE's ``get_2d_sincos_pos_embed``).

  Each quarter of the channels encodes one of sin(x w), cos(x w), sin(y w), cos(y w), with x the
  column, y the row and frequencies w_i = temperature^(-i / (width/4)), i = 0 .. width/4 - 1.

  Args:
    grid_h: rows of the patch grid.
    grid_w: columns of the patch grid.
    width: embedding width, divisible by 4.
    temperature: base of the frequencies.

  Returns:
    Float32 array of shape [grid_h * grid_w, width], in row-major grid order.

  Raises:
    ValueError: width is not divisible by 4.
  """
  if width % 4:
    raise ValueError(f"width={width} of a 2-D sin-cos position embedding must be divisible by 4")
  # Shapes are static, so this is a trace-time numpy constant, not work in the compiled step.
  y_hw, x_hw = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
  quarter = width // 4
  omega = 1.0 / temperature ** (np.arange(quarter, dtype=np.float64) / quarter)
  x = np.outer(x_hw.reshape(-1), omega)
  y = np.outer(y_hw.reshape(-1), omega)
  emb = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return jnp.asarray(emb, jnp.float32)


def drop_path_rates(rate: float, depth: int) -> list[float]:
  """Per-block stochastic-depth rates: ``linspace(0, rate, depth)`` (DeiT's / DINO's decay rule).

  Block 0 is never dropped and the last block is dropped with probability ``rate``.
  """
  if depth == 1:
    return [0.0]
  return [rate * i / (depth - 1) for i in range(depth)]


def drop_path(rng: jax.Array, x_bld: jax.Array, rate: float) -> jax.Array:
  """Stochastic depth on a residual branch: each sample's whole branch output is kept or zeroed.

  ``out_b = x_b * m_b / (1 - rate)`` with ``m_b ~ Bernoulli(1 - rate)`` drawn once per sample
  (DeiT / DINO ``drop_path``), so ``E[out] = x`` and a dropped sample's block is the identity.

  Args:
    rng: PRNG key.
    x_bld: branch output, shape [B, ...].
    rate: drop probability in [0, 1).

  Returns:
    Same shape and dtype as ``x_bld``.
  """
  if rate <= 0.0:
    return x_bld
  keep = 1.0 - rate
  mask_b = jax.random.bernoulli(rng, keep, (x_bld.shape[0],) + (1,) * (x_bld.ndim - 1))
  return jnp.where(mask_b, x_bld / jnp.asarray(keep, x_bld.dtype), jnp.zeros_like(x_bld))


class TransformerBlock(nn.Module):
  """Pre-LN transformer block: ``x + MHSA(LN(x))``, then ``x + MLP(LN(x))`` (GELU MLP).

  Attributes:
    num_heads: attention heads; they must divide the input width.
    mlp_dim: hidden width of the MLP.
    drop_path: stochastic-depth rate of both residual branches (each draws its own per-sample
      mask from the ``'dropout'`` rng stream); used only when ``__call__`` gets
      ``deterministic=False``.
    dtype: compute dtype; parameters stay float32.
  """

  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_bld: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """Applies the block.

    Args:
      x_bld: tokens, shape [B, N, D].
      deterministic: skip stochastic depth (evaluation, or a call without a ``'dropout'`` rng).

    Returns:
      Shape [B, N, D], dtype ``self.dtype``.
    """
    stochastic = not deterministic and self.drop_path > 0.0

    def branch(y):
      return drop_path(self.make_rng("dropout"), y, self.drop_path) if stochastic else y

    width = x_bld.shape[-1]
    dense = dict(kernel_init=dense_kernel_init, bias_init=nn.initializers.zeros, dtype=self.dtype)
    y = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="ln1")(x_bld)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      # Low-precision softmax over long sequences loses the small attention weights.
      attention_fn=functools.partial(nn.dot_product_attention, force_fp32_for_softmax=True),
      deterministic=True,
      name="attn",
      **dense,
    )(y)
    x_bld = x_bld + branch(y)
    y = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="ln2")(x_bld)
    y = nn.Dense(self.mlp_dim, name="fc1", **dense)(y)
    # The exact (erf) GELU of PyTorch's nn.GELU, which the official MAE/DeiT models use; Flax's
    # default is the tanh approximation.
    y = nn.gelu(y, approximate=False)
    y = nn.Dense(width, name="fc2", **dense)(y)
    return x_bld + branch(y)


def _resize_posemb(posemb_hwd: jax.Array, grid_h: int, grid_w: int) -> jax.Array:
  # Bicubic without antialiasing, as DINO's interpolate_pos_encoding (F.interpolate) does; with
  # antialiasing a 14x14 -> 6x6 downscale would blur the embeddings more than the reference.
  return jax.image.resize(
    posemb_hwd, (grid_h, grid_w, posemb_hwd.shape[-1]), method="bicubic", antialias=False
  )


class ViT(nn.Module):
  """ViT encoder without a classifier: returns the CLS token (or all tokens).

  Parameters: ``patch_embed`` (Conv, kernel = stride = patch), ``cls_token`` [1, 1, width],
  ``pos_embed`` [1, 1 + L, width] (only with ``posemb='learn'``; row 0 belongs to the CLS token,
  L is the native grid's patch count), ``block0`` .. ``block{depth-1}`` (:class:`TransformerBlock`)
  and ``norm`` (final LayerNorm).

  Position embeddings: ``'learn'`` creates them for the native grid ``image_size / patch`` and
  bicubically resizes the grid part to the input's grid when that differs (e.g. 96 px DINO local
  crops with 224 px native); the CLS token keeps its own learned embedding. ``'sincos2d'`` uses
  fixed 2-D sin-cos embeddings computed for the input's grid and adds nothing to the CLS token, as
  MAE does.

  Two entry points share one code path: ``module.apply(v, x, train=...)`` returns the CLS token;
  ``module.apply(v, x, train=..., method='tokens')`` (or ``return_tokens=True``) returns all tokens.

  Attributes:
    width: token width D.
    depth: number of transformer blocks.
    num_heads: attention heads.
    mlp_dim: hidden width of the block MLPs.
    patch: patch size p.
    image_size: native square resolution; learned position embeddings are made for its grid.
    posemb: ``'learn'`` or ``'sincos2d'``.
    drop_path_rate: stochastic depth of the last block; block i drops its residual branches with
      probability ``drop_path_rates(drop_path_rate, depth)[i]`` (0 for the first). Applied only
      in ``train=True`` calls that pass a ``'dropout'`` rng, so one module serves a student that
      draws it and a teacher that does not (DINO builds its teacher without drop path).
    dtype: compute dtype; parameters and outputs stay float32.
  """

  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  patch: int
  image_size: int = 224
  posemb: str = "learn"
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @property
  def features(self) -> int:
    """Dimension of the returned CLS feature."""
    return self.width

  @nn.compact
  def __call__(
    self,
    x_bhwc: jax.Array,
    *,
    train: bool,
    ids_keep_bk: jax.Array | None = None,
    return_tokens: bool = False,
  ) -> jax.Array:
    """Encodes a batch of images.

    Args:
      x_bhwc: images, shape [B, H, W, C]; H and W divisible by ``patch`` (any may differ from
        ``image_size``).
      train: training mode; with ``drop_path_rate > 0`` and a ``'dropout'`` rng passed to
        ``apply`` it turns stochastic depth on (otherwise unused: no dropout or BatchNorm).
      ids_keep_bk: optional int [B, K] indices of the patches to encode (see
        :func:`random_masking`); the others are dropped after the position embeddings are added.
      return_tokens: return all tokens instead of the CLS token.

    Returns:
      Float32. The normalised CLS token, shape [B, width]; with ``return_tokens`` all normalised
      tokens, shape [B, 1 + K, width] (CLS first; K = L without ``ids_keep_bk``).

    Raises:
      ValueError: H or W (or, with learned embeddings, ``image_size``) not divisible by ``patch``.
      ConfigError: ``posemb`` is not one of ``'learn'``, ``'sincos2d'``.
    """
    if not 0.0 <= self.drop_path_rate < 1.0:
      raise ConfigError(
        f"encoder.drop_path_rate={self.drop_path_rate} must lie in [0, 1); DINO's ViT-S uses 0.1"
      )
    stochastic = train and self.drop_path_rate > 0.0 and self.has_rng("dropout")
    rates = drop_path_rates(self.drop_path_rate, self.depth)
    if self.posemb not in POSEMBS:
      raise ConfigError(
        f"encoder.posemb={self.posemb!r} is not supported; choose one of {', '.join(POSEMBS)}"
      )
    _, h, w, _ = x_bhwc.shape
    if h % self.patch or w % self.patch:
      raise ValueError(
        f"ViT input of {h}x{w} px is not divisible by the patch size {self.patch}; "
        f"resize or crop to a multiple of {self.patch}"
      )
    gh, gw = h // self.patch, w // self.patch
    x = nn.Conv(
      self.width,
      (self.patch, self.patch),
      strides=(self.patch, self.patch),
      padding="VALID",
      kernel_init=patch_kernel_init,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name="patch_embed",
    )(x_bhwc.astype(self.dtype))
    b = x.shape[0]
    x_bld = x.reshape(b, gh * gw, self.width)

    cls_token = self.param("cls_token", token_init, (1, 1, self.width))
    if self.posemb == "learn":
      if self.image_size % self.patch:
        raise ValueError(
          f"ViT image_size={self.image_size} is not divisible by the patch size {self.patch}; "
          "learned position embeddings need a whole native grid"
        )
      native = self.image_size // self.patch
      pos = self.param("pos_embed", token_init, (1, 1 + native * native, self.width))
      cls_pos, grid_pos = pos[0, :1], pos[0, 1:]
      if (gh, gw) != (native, native):
        grid_pos = _resize_posemb(grid_pos.reshape(native, native, -1), gh, gw)
        grid_pos = grid_pos.reshape(gh * gw, -1)
    else:
      cls_pos = jnp.zeros((1, self.width), jnp.float32)
      grid_pos = sincos_posemb_2d(gh, gw, self.width)

    x_bld = x_bld + grid_pos.astype(self.dtype)
    if ids_keep_bk is not None:
      # MAE drops patches after the position embedding, so kept tokens still know where they are.
      x_bld = jnp.take_along_axis(x_bld, ids_keep_bk[..., None].astype(jnp.int32), axis=1)
    cls_b1d = jnp.broadcast_to((cls_token + cls_pos).astype(self.dtype), (b, 1, self.width))
    x_bld = jnp.concatenate([cls_b1d, x_bld], axis=1)

    for i in range(self.depth):
      x_bld = TransformerBlock(
        self.num_heads, self.mlp_dim, drop_path=rates[i], dtype=self.dtype, name=f"block{i}"
      )(x_bld, deterministic=not stochastic)
    x_bld = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="norm")(x_bld)
    # Losses (softmaxes with small temperatures, cross-correlations) want float32 inputs.
    x_bld = x_bld.astype(jnp.float32)
    return x_bld if return_tokens else x_bld[:, 0]

  def tokens(
    self, x_bhwc: jax.Array, *, train: bool, ids_keep_bk: jax.Array | None = None
  ) -> jax.Array:
    """All normalised tokens; same as ``__call__(..., return_tokens=True)``.

    Args:
      x_bhwc: images, shape [B, H, W, C].
      train: training mode; see ``__call__``.
      ids_keep_bk: optional int [B, K] indices of the patches to encode.

    Returns:
      Float32 [B, 1 + K, width], CLS first (K = L without ``ids_keep_bk``).
    """
    return self(x_bhwc, train=train, ids_keep_bk=ids_keep_bk, return_tokens=True)


class MAEDecoder(nn.Module):
  """MAE decoder: fills in mask tokens, unshuffles, and predicts every patch's pixels.

  Parameters: ``embed`` (Dense to the decoder width), ``mask_token`` [1, 1, width],
  ``block0`` .. ``block{depth-1}`` (:class:`TransformerBlock`), ``norm`` (LayerNorm) and ``pred``
  (Dense to p*p*channels). Position embeddings are fixed 2-D sin-cos (zeros for the CLS token).

  Attributes:
    width: decoder width (512 in the official MAE).
    depth: decoder blocks (8 official).
    num_heads: attention heads (16 official).
    mlp_dim: hidden width of the block MLPs; None means 4 * width.
    patch: patch size p of the encoder.
    channels: image channels C to predict.
    dtype: compute dtype; parameters and outputs stay float32.
  """

  patch: int
  width: int = 512
  depth: int = 8
  num_heads: int = 16
  mlp_dim: int | None = None
  channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, tokens_b1kw: jax.Array, ids_restore_bl: jax.Array, *, grid: tuple[int, int]
  ) -> jax.Array:
    """Predicts the pixels of all patches from the encoded visible ones.

    Args:
      tokens_b1kw: encoder output, shape [B, 1 + K, W_enc] (CLS first, then the K kept patches in
        the order of ``ids_keep_bk``), e.g. :meth:`ViT.tokens` with ``ids_keep_bk``.
      ids_restore_bl: int [B, L] from :func:`random_masking`.
      grid: patch grid (rows, columns); rows * columns must equal L.

    Returns:
      Float32 [B, L, p*p*channels], patches in the original row-major order (the layout of
      :func:`patchify`).

    Raises:
      ValueError: the grid does not have L patches, or there are more tokens than patches.
    """
    b, n, _ = tokens_b1kw.shape
    num_patches = ids_restore_bl.shape[1]
    if grid[0] * grid[1] != num_patches:
      raise ValueError(
        f"grid={tuple(grid)} has {grid[0] * grid[1]} patches, ids_restore_bl has {num_patches}"
      )
    if n - 1 > num_patches:
      raise ValueError(f"{n - 1} visible tokens but only {num_patches} patches")
    dense = dict(kernel_init=dense_kernel_init, bias_init=nn.initializers.zeros, dtype=self.dtype)
    x = nn.Dense(self.width, name="embed", **dense)(tokens_b1kw.astype(self.dtype))
    mask_token = self.param("mask_token", token_init, (1, 1, self.width))

    # Shuffled order is [kept tokens, mask tokens]; ids_restore maps it back to patch order.
    masks = jnp.broadcast_to(mask_token.astype(self.dtype), (b, num_patches - (n - 1), self.width))
    x_shuffled = jnp.concatenate([x[:, 1:], masks], axis=1)
    x_patches = jnp.take_along_axis(x_shuffled, ids_restore_bl[..., None].astype(jnp.int32), axis=1)
    pos = sincos_posemb_2d(grid[0], grid[1], self.width).astype(self.dtype)
    x = jnp.concatenate([x[:, :1], x_patches + pos], axis=1)

    mlp_dim = self.mlp_dim if self.mlp_dim is not None else 4 * self.width
    for i in range(self.depth):
      x = TransformerBlock(self.num_heads, mlp_dim, dtype=self.dtype, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="norm")(x)
    x = nn.Dense(self.patch * self.patch * self.channels, name="pred", **dense)(x)
    # Drop the CLS token; the pixel loss is computed in float32.
    return x[:, 1:].astype(jnp.float32)


def make_vit(
  name: str,
  *,
  image_size: int,
  posemb: str = "learn",
  drop_path_rate: float = 0.0,
  dtype: Any = jnp.float32,
  key: str = "encoder.name",
  size_key: str = "input.image_size",
) -> tuple[ViT, int]:
  """Builds a ViT encoder from a name such as ``'vit:S/16'``.

  Args:
    name: ``'vit:<size>/<patch>'``; see :func:`parse_vit_name`.
    image_size: native resolution (learned position embeddings are made for its grid).
    posemb: ``'learn'`` or ``'sincos2d'``.
    drop_path_rate: stochastic depth of the last block (see :class:`ViT`); 0 = none.
    dtype: compute dtype.
    key: config key of ``name``, for error messages.
    size_key: config key of ``image_size``, for error messages.

  Returns:
    ``(module, feature_dim)`` with feature_dim the width (e.g. 384 for ViT-S).

  Raises:
    ConfigError: a bad name or posemb, or an image size the patch size does not divide.
  """
  size, patch = parse_vit_name(name, key=key)
  check_patch_divides(image_size, patch, key=size_key, name=name, name_key=key)
  if posemb not in POSEMBS:
    raise ConfigError(
      f"encoder.posemb={posemb!r} is not supported; choose one of {', '.join(POSEMBS)}"
    )
  width, depth, num_heads, mlp_dim = VIT_SIZES[size]
  module = ViT(
    width=width,
    depth=depth,
    num_heads=num_heads,
    mlp_dim=mlp_dim,
    patch=patch,
    image_size=image_size,
    posemb=posemb,
    drop_path_rate=float(drop_path_rate),
    dtype=dtype,
  )
  return module, module.features
