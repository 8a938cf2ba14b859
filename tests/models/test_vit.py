"""ViT encoder and MAE decoder: names, patches, masking, shapes, parameter counts, position
embeddings at other resolutions, token selection, decoder unshuffling, jit and gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.errors import ConfigError
from ssljax.models import num_params
from ssljax.models.vit import (
  VIT_SIZES,
  MAEDecoder,
  ViT,
  check_patch_divides,
  make_vit,
  parse_vit_name,
  patchify,
  random_masking,
  sincos_posemb_2d,
  unpatchify,
)


# XLA compiles the 'rbg' generator faster on CPU than threefry; nothing here depends on which
# random numbers the initialisers draw.
def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


def _tiny_vit(posemb="learn", image_size=16, dtype=jnp.float32):
  return ViT(
    width=32,
    depth=1,
    num_heads=2,
    mlp_dim=64,
    patch=4,
    image_size=image_size,
    posemb=posemb,
    dtype=dtype,
  )


def _tiny_decoder(depth=1, dtype=jnp.float32):
  return MAEDecoder(patch=4, width=16, depth=depth, num_heads=2, channels=3, dtype=dtype)


def _images(batch, h, w=None, seed=1):
  return jax.random.normal(_key(seed), (batch, h, w or h, 3))


def _init(module, *args, **kwargs):
  return jax.jit(lambda key: module.init(key, *args, **kwargs))(_key())


# --- names and config checks -------------------------------------------------------------------


@pytest.mark.parametrize(
  "name, expected",
  [
    ("vit:S/16", ("S", 16)),
    ("vit:Ti/4", ("Ti", 4)),
    ("vit:T/16", ("Ti", 16)),
    ("vit:B/32", ("B", 32)),
    ("vit:N/4", ("N", 4)),
  ],
)
def test_parse_vit_name(name, expected):
  assert parse_vit_name(name) == expected


@pytest.mark.parametrize("name", ["vit:X/16", "vit:S", "vit:S/0", "resnet", "vit:s/16", "vit:S/1x"])
def test_parse_vit_name_rejects(name):
  with pytest.raises(ConfigError) as info:
    parse_vit_name(name, key="model.backbone")
  message = str(info.value)
  assert f"model.backbone={name!r}" in message
  assert "vit:<size>/<patch>" in message and "Ti, S, B, N" in message


def test_check_patch_divides():
  check_patch_divides(224, 16, key="input.image_size")
  check_patch_divides(96, 16, key="input.image_size")
  with pytest.raises(ConfigError) as info:
    check_patch_divides(30, 16, key="input.views.view1.size", name="vit:S/16")
  assert str(info.value) == (
    "input.views.view1.size=30 is not divisible by the ViT patch size 16 "
    "(encoder.name='vit:S/16'); use a multiple of 16"
  )
  with pytest.raises(ConfigError, match=r"crop=8 .* patch size 16; use a multiple of 16"):
    check_patch_divides(8, 16, key="crop")


def test_make_vit():
  module, dim = make_vit("vit:S/16", image_size=224)
  assert dim == module.features == 384
  assert (module.width, module.depth, module.num_heads, module.mlp_dim) == VIT_SIZES["S"]
  assert (module.patch, module.image_size, module.posemb) == (16, 224, "learn")
  with pytest.raises(ConfigError, match=r"data.size=100 .*\(enc.name='vit:B/16'\)"):
    make_vit("vit:B/16", image_size=100, key="enc.name", size_key="data.size")
  with pytest.raises(ConfigError, match="encoder.posemb='rope'"):
    make_vit("vit:N/4", image_size=16, posemb="rope")


# --- patches, masking, sin-cos -----------------------------------------------------------------


def test_patchify_known_layout():
  # Pixel (row r, column c, channel ch) holds 100 r + 10 c + ch, so every value names its origin.
  r, c, ch = np.meshgrid(np.arange(4), np.arange(4), np.arange(2), indexing="ij")
  image = jnp.asarray(100 * r + 10 * c + ch, jnp.float32)[None]
  expected = [
    [0, 1, 10, 11, 100, 101, 110, 111],  # top-left patch, flattened as (row, column, channel)
    [20, 21, 30, 31, 120, 121, 130, 131],  # top-right
    [200, 201, 210, 211, 300, 301, 310, 311],  # bottom-left
    [220, 221, 230, 231, 320, 321, 330, 331],  # bottom-right
  ]
  np.testing.assert_array_equal(patchify(image, 2), np.asarray([expected], np.float32))


@pytest.mark.parametrize("h, w, patch", [(8, 12, 4), (16, 16, 8), (6, 6, 1)])
def test_patchify_round_trip(h, w, patch):
  images = _images(2, h, w)
  patches = patchify(images, patch)
  assert patches.shape == (2, (h // patch) * (w // patch), patch * patch * 3)
  back = unpatchify(patches, patch, height=h, width=w, channels=3)
  np.testing.assert_array_equal(back, images)


@pytest.mark.parametrize(
  "num_patches, ratio", [(16, 0.75), (64, 0.75), (196, 0.75), (10, 0.6), (7, 0.5), (9, 0.0)]
)
def test_random_masking(num_patches, ratio):
  b = 4
  ids_keep, mask, ids_restore = random_masking(_key(3), b, num_patches, mask_ratio=ratio)
  keep = int(num_patches * (1 - ratio))
  if ratio == 0.75:  # the equality the docstring promises for these grids
    assert keep == num_patches - math.floor(0.75 * num_patches)
  ids_keep, mask, ids_restore = map(np.asarray, (ids_keep, mask, ids_restore))
  assert ids_keep.shape == (b, keep) and ids_restore.shape == (b, num_patches)
  assert mask.shape == (b, num_patches) and mask.dtype == np.float32
  np.testing.assert_array_equal(mask.sum(axis=1), num_patches - keep)
  for i in range(b):
    assert sorted(ids_restore[i]) == list(range(num_patches))
    assert len(set(ids_keep[i])) == keep
    expected_mask = np.ones(num_patches, np.float32)
    expected_mask[ids_keep[i]] = 0
    np.testing.assert_array_equal(mask[i], expected_mask)
    # Kept patch j sits at position j of the shuffled sequence.
    np.testing.assert_array_equal(ids_restore[i, ids_keep[i]], np.arange(keep))

  # The decoder's use: [kept tokens, placeholders] gathered with ids_restore is the original order
  # with placeholders exactly at the masked patches.
  tokens = np.arange(b * num_patches).reshape(b, num_patches) + 1
  shuffled = np.concatenate(
    [np.take_along_axis(tokens, ids_keep, 1), -np.ones((b, num_patches - keep), int)], axis=1
  )
  restored = np.take_along_axis(shuffled, ids_restore, 1)
  np.testing.assert_array_equal(restored, np.where(mask == 1, -1, tokens))
  if 0 < keep < num_patches:
    assert any((mask[i] != mask[0]).any() for i in range(1, b)), "samples share one mask"


@pytest.mark.parametrize("ratio", [1.0, -0.1, 0.9])
def test_random_masking_rejects(ratio):
  with pytest.raises(ValueError, match="mask_ratio"):
    random_masking(_key(), 2, 4, mask_ratio=ratio)  # 0.9 of 4 patches keeps none


def test_sincos_posemb_2d():
  emb = np.asarray(sincos_posemb_2d(2, 3, 8))
  assert emb.shape == (6, 8)
  omega = np.array([1.0, 1e-2])  # 10000^(-i / (8/4)) for i = 0, 1
  for k in range(6):
    row, col = divmod(k, 3)
    expected = np.concatenate(
      [np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)]
    )
    np.testing.assert_allclose(emb[k], expected, atol=1e-6)
  with pytest.raises(ValueError, match="divisible by 4"):
    sincos_posemb_2d(2, 2, 6)


# --- encoder -----------------------------------------------------------------------------------


# Every jit compile costs seconds on a small CPU, so the tiny models are initialised once per module
# and each test runs its variants inside one jitted program.
@pytest.fixture(scope="module")
def vit_vars():
  # Initialised at 8 px: the learned embeddings must still be made for the native 16 px grid.
  return _init(_tiny_vit(), _images(1, 8), train=False)


@pytest.fixture(scope="module")
def decoder_vars():
  identity = jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (2, 16))
  return _init(_tiny_decoder(), jnp.zeros((2, 17, 32)), identity, grid=(4, 4))


def test_vit_nano_shapes_params_and_init():
  module, dim = make_vit("vit:N/4", image_size=16)
  x = _images(2, 16)

  @jax.jit
  def run(key):
    variables = module.init(key, x, train=False)
    cls = module.apply(variables, x, train=True)
    return variables, cls, module.apply(variables, x, train=False, method="tokens")

  variables, out, tokens = run(_key())
  assert out.shape == (2, dim) and dim == module.features == 64 and out.dtype == jnp.float32
  assert tokens.shape == (2, 17, 64) and tokens.dtype == jnp.float32
  np.testing.assert_allclose(tokens[:, 0], out, atol=1e-6)

  params = variables["params"]
  assert set(variables) == {"params"}
  assert set(params) == {"patch_embed", "cls_token", "pos_embed", "norm"} | {
    f"block{i}" for i in range(4)
  }
  assert set(params["block0"]) == {"ln1", "attn", "ln2", "fc1", "fc2"}
  assert set(params["block0"]["attn"]) == {"query", "key", "value", "out"}
  assert params["pos_embed"].shape == (1, 1 + 16, 64)
  assert params["cls_token"].shape == (1, 1, 64)

  # Initialisation of the official code: xavier-uniform kernels (the patch embedding's over the
  # flattened [p*p*C, width] matrix; attention projections over [width, width]), zero biases,
  # normal(0.02) tokens and position embeddings.
  def assert_xavier(kernel, fan_in, fan_out):
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert 0.9 * bound < np.abs(kernel).max() <= bound

  assert params["patch_embed"]["kernel"].shape == (4, 4, 3, 64)
  assert_xavier(params["patch_embed"]["kernel"], 4 * 4 * 3, 64)
  assert_xavier(params["block0"]["attn"]["query"]["kernel"], 64, 64)
  assert_xavier(params["block0"]["attn"]["out"]["kernel"], 64, 64)
  assert_xavier(params["block0"]["fc1"]["kernel"], 64, 256)
  assert_xavier(params["block0"]["fc2"]["kernel"], 256, 64)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if jax.tree_util.keystr(path).endswith("['bias']"):
      np.testing.assert_array_equal(leaf, 0)
  assert abs(float(np.std(params["pos_embed"])) - 0.02) < 0.002
  np.testing.assert_array_equal(params["norm"]["scale"], 1)

  with pytest.raises(ValueError, match="not divisible by the patch size 4"):
    module.apply(variables, _images(2, 18), train=False)


def _vit_param_count(width, depth, mlp_dim, patch, image_size, channels=3):
  """Parameters of a ViT encoder without classifier, from the architecture."""
  num_patches = (image_size // patch) ** 2
  block = (
    2 * 2 * width  # two LayerNorms (scale and bias)
    + 4 * (width * width + width)  # query, key, value and output projections
    + (width * mlp_dim + mlp_dim)  # fc1
    + (mlp_dim * width + width)  # fc2
  )
  return (
    patch * patch * channels * width
    + width  # patch embedding
    + width  # CLS token
    + (1 + num_patches) * width  # learned position embeddings, CLS included
    + depth * block
    + 2 * width  # final LayerNorm
  )


# timm's model tables list vit_small_patch16_224 at 22.05M and vit_base_patch16_224 at 86.57M
# parameters (DeiT-S / ViT-B in DeiT's Table 1: 22M / 86M). Those counts include the 1000-way
# ImageNet classifier (width * 1000 + 1000); without it the encoders have 21.67M / 85.80M.
@pytest.mark.parametrize("size, published", [("S", 22.05e6), ("B", 86.57e6)])
def test_vit_param_count(size, published):
  module, dim = make_vit(f"vit:{size}/16", image_size=224)
  x = jnp.zeros((1, 224, 224, 3))
  variables = jax.eval_shape(lambda: module.init(_key(), x, train=False))
  width, depth, _, mlp_dim = VIT_SIZES[size]
  expected = _vit_param_count(width, depth, mlp_dim, 16, 224)
  assert num_params(variables["params"]) == expected
  with_classifier = expected + dim * 1000 + 1000
  assert abs(with_classifier - published) / published < 0.005


@pytest.mark.parametrize("posemb", ["learn", "sincos2d"])
def test_vit_other_resolutions(posemb, vit_vars):
  module = _tiny_vit(posemb, image_size=16)
  if posemb == "learn":
    variables = vit_vars
    assert variables["params"]["pos_embed"].shape == (1, 17, 32)
  else:
    # The learned parameters minus pos_embed are exactly the sincos model's parameters.
    params = {k: v for k, v in vit_vars["params"].items() if k != "pos_embed"}
    variables = {"params": params}
    shapes = jax.eval_shape(lambda: module.init(_key(), _images(1, 8), train=False))
    assert set(shapes["params"]) == set(params)
  sizes = [(16, 16), (8, 8), (8, 12), (24, 24)]
  images = [_images(2, h, w) for h, w in sizes]
  outputs = jax.jit(
    lambda v, xs: [module.apply(v, x, train=False, return_tokens=True) for x in xs]
  )(variables, images)
  for (h, w), tokens in zip(sizes, outputs, strict=True):
    assert tokens.shape == (2, 1 + (h // 4) * (w // 4), 32)
    assert np.isfinite(tokens).all()


def test_vit_tokens_with_ids_keep(vit_vars):
  module = _tiny_vit()
  x = _images(2, 16)
  all_in_order = jnp.broadcast_to(jnp.arange(16), (2, 16))
  perm = jax.vmap(lambda k: jax.random.permutation(k, 16))(jax.random.split(_key(5), 2))
  ids_keep, _, _ = random_masking(_key(6), 2, 16, mask_ratio=0.75)

  @jax.jit
  def run(v):
    tokens = lambda ids: module.apply(v, x, train=False, ids_keep_bk=ids, method=ViT.tokens)
    cls = module.apply(v, x, train=False)
    return cls, tokens(None), tokens(all_in_order), tokens(perm), tokens(ids_keep)

  cls, full, in_order, permuted, masked = run(vit_vars)
  np.testing.assert_allclose(in_order, full, atol=1e-5)
  np.testing.assert_allclose(in_order[:, 0], cls, atol=1e-5)
  # Position embeddings are added before the gather, so reordering the kept patches only reorders
  # their output tokens (attention is permutation-equivariant) and leaves CLS unchanged.
  np.testing.assert_allclose(permuted[:, 0], cls, atol=1e-5)
  np.testing.assert_allclose(
    permuted[:, 1:], jnp.take_along_axis(full[:, 1:], perm[..., None], 1), atol=1e-5
  )
  assert masked.shape == (2, 1 + 4, 32)


# --- decoder -----------------------------------------------------------------------------------


def test_mae_decoder_shapes_and_params(decoder_vars):
  decoder = _tiny_decoder()
  ids_keep, _, ids_restore = random_masking(_key(), 2, 16, mask_ratio=0.75)
  tokens = jax.random.normal(_key(2), (2, 1 + ids_keep.shape[1], 32))
  params = decoder_vars["params"]
  assert set(params) == {"embed", "mask_token", "block0", "norm", "pred"}
  assert params["mask_token"].shape == (1, 1, 16)
  assert params["embed"]["kernel"].shape == (32, 16)
  assert params["block0"]["fc1"]["kernel"].shape == (16, 64)  # mlp_dim defaults to 4 * width
  assert params["pred"]["kernel"].shape == (16, 4 * 4 * 3)
  out = jax.jit(lambda v: decoder.apply(v, tokens, ids_restore, grid=(4, 4)))(decoder_vars)
  assert out.shape == (2, 16, 4 * 4 * 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match="grid"):
    decoder.apply(decoder_vars, tokens, ids_restore, grid=(2, 4))


def test_mae_decoder_permutation_invariance(decoder_vars):
  # Without masking, feeding the tokens in any order together with the matching ids_restore must
  # give the same reconstruction as the identity order.
  decoder = _tiny_decoder()
  tokens = jax.random.normal(_key(2), (2, 1 + 16, 32))
  identity = jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (2, 16))
  perm = jax.vmap(lambda k: jax.random.permutation(k, 16))(jax.random.split(_key(7), 2))
  shuffled = jnp.concatenate(
    [tokens[:, :1], jnp.take_along_axis(tokens[:, 1:], perm[..., None], 1)], axis=1
  )

  @jax.jit
  def run(v):
    apply = lambda t, r: decoder.apply(v, t, r, grid=(4, 4))
    return apply(tokens, identity), apply(shuffled, jnp.argsort(perm, axis=1))

  reference, out = run(decoder_vars)
  np.testing.assert_allclose(out, reference, atol=1e-5)


def test_mae_decoder_places_tokens(decoder_vars):
  # With no blocks every output depends only on its own token and position, so a masked run must
  # reproduce the unmasked run at the kept patches and show the mask token at the others.
  decoder = _tiny_decoder(depth=0)
  variables = {"params": {k: v for k, v in decoder_vars["params"].items() if k != "block0"}}
  full = jax.random.normal(_key(2), (2, 1 + 16, 32))
  identity = jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (2, 16))
  ids_keep, mask, ids_restore = random_masking(_key(8), 2, 16, mask_ratio=0.5)
  kept = jnp.concatenate([full[:, :1], jnp.take_along_axis(full[:, 1:], ids_keep[..., None], 1)], 1)

  @jax.jit
  def run(v):
    apply = lambda t, r: decoder.apply(v, t, r, grid=(4, 4))
    return apply(full, identity), apply(kept, ids_restore)

  reference, out = map(np.asarray, run(variables))
  mask = np.asarray(mask, bool)
  np.testing.assert_allclose(out[~mask], reference[~mask], atol=1e-5)
  assert not np.allclose(out[mask], reference[mask], atol=1e-3)
  # A masked patch's prediction comes from the mask token and its position only: it is the same
  # for every sample in which that patch is masked.
  both = mask[0] & mask[1]
  assert both.any()
  np.testing.assert_allclose(out[0, both], out[1, both], atol=1e-6)


# --- jit, gradients, low precision -------------------------------------------------------------


def test_mae_jit_gradients(vit_vars, decoder_vars):
  encoder, decoder = _tiny_vit(), _tiny_decoder()
  x = _images(2, 16)
  ids_keep, mask, ids_restore = random_masking(_key(9), 2, 16, mask_ratio=0.75)

  def loss_fn(params):
    tokens = encoder.apply(params[0], x, train=True, ids_keep_bk=ids_keep, method="tokens")
    pred = decoder.apply(params[1], tokens, ids_restore, grid=(4, 4))
    per_patch = jnp.mean((pred - patchify(x, 4)) ** 2, axis=-1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))((vit_vars, decoder_vars))
  assert loss.dtype == jnp.float32 and np.isfinite(loss)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  # Gradients reach the patch embedding, the CLS token, the position embeddings and the mask token.
  for tree, name in [(grads[0], "patch_embed"), (grads[0], "cls_token"), (grads[0], "pos_embed")]:
    assert any(np.abs(g).sum() > 0 for g in jax.tree.leaves(tree["params"][name])), name
  assert np.abs(grads[1]["params"]["mask_token"]).sum() > 0


def test_bfloat16_compute(vit_vars, decoder_vars):
  # Parameters stay float32 whatever the compute dtype, so the float32 ones apply unchanged; the
  # outputs come back in float32.
  encoder, decoder = _tiny_vit(dtype=jnp.bfloat16), _tiny_decoder(dtype=jnp.bfloat16)
  x = _images(2, 16)
  ids_keep, _, ids_restore = random_masking(_key(9), 2, 16, mask_ratio=0.75)
  shapes = jax.eval_shape(lambda: encoder.init(_key(), x, train=False))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))

  @jax.jit
  def run(enc_vars, dec_vars):
    tokens = encoder.apply(enc_vars, x, train=False, ids_keep_bk=ids_keep, return_tokens=True)
    return tokens, decoder.apply(dec_vars, tokens, ids_restore, grid=(4, 4))

  tokens, pred = run(vit_vars, decoder_vars)
  assert tokens.dtype == pred.dtype == jnp.float32
  assert tokens.shape == (2, 5, 32) and pred.shape == (2, 16, 48)
  assert np.isfinite(pred).all()
