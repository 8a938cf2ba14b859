"""MAE (He et al., CVPR 2022): reconstruct the pixels of masked patches from the visible ones.

Config keys read (see ``experiments/mae.py``): ``encoder.*`` (a ViT, e.g. ``vit:B/16``),
``mae.mask_ratio`` (0.75), ``mae.norm_pix`` (per-patch normalised target), ``mae.decoder_width``
/ ``decoder_depth`` / ``decoder_heads`` (512 / 8 / 16 in the paper) and the single view
``input.views.view``. Each sample gets its own random mask (drawn from the step's key), the
encoder sees only the visible patches, and the loss is the MSE on the masked patches only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import vit

VIEW_NAMES = ("view",)


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds MAE from an experiment config."""
  del total_steps, steps_per_epoch
  if not _common.is_vit(config):
    raise ConfigError(f"method='mae' needs a ViT encoder; encoder.name={config.encoder.name!r} "
                      "is not one (use e.g. 'vit:B/16')")
  m = config.mae
  mask_ratio = float(m.mask_ratio)
  if not 0.0 < mask_ratio < 1.0:
    raise ConfigError(f"mae.mask_ratio={m.mask_ratio!r} must lie in (0, 1) (paper: 0.75)")
  encoder, _ = _common.make_backbone(config)
  patch = encoder.patch
  decoder = vit.MAEDecoder(patch=patch, width=int(m.decoder_width), depth=int(m.decoder_depth),
                           num_heads=int(m.decoder_heads), dtype=_common.compute_dtype(config))
  norm_pix = bool(m.norm_pix)

  def init(rng, images_bhwc):
    enc_rng, dec_rng = jax.random.split(rng)
    enc_params = encoder.init(enc_rng, images_bhwc, train=False)["params"]
    tokens = encoder.apply({"params": enc_params}, images_bhwc, train=False, return_tokens=True)
    b, h, w, _ = images_bhwc.shape
    grid = (h // patch, w // patch)
    ids = jnp.broadcast_to(jnp.arange(grid[0] * grid[1]), (b, grid[0] * grid[1]))
    dec_params = decoder.init(dec_rng, tokens, ids, grid=grid)["params"]
    # No BatchNorm, no teacher: the method state is empty.
    return {"encoder": enc_params, "decoder": dec_params}, {}

  def loss(params, method_state, views, rng):
    (x,) = views
    b, h, w, _ = x.shape
    grid = (h // patch, w // patch)
    ids_keep, mask, ids_restore = vit.random_masking(rng, b, grid[0] * grid[1],
                                                     mask_ratio=mask_ratio)
    tokens = encoder.apply({"params": params["encoder"]}, x, train=True, ids_keep_bk=ids_keep,
                           return_tokens=True)
    pred = decoder.apply({"params": params["decoder"]}, tokens, ids_restore, grid=grid)
    # The target is the normalised input's patches, as the official code (imgs are normalised).
    loss = losses.mae_loss(pred, vit.patchify(x, patch), mask, norm_pix=norm_pix)
    return loss, (method_state, {"mae_loss": loss}, tokens[:, 0])

  def represent(params, method_state, images_bhwc):
    del method_state
    cls = encoder.apply({"params": params["encoder"]}, images_bhwc, train=False)
    # RankMe is taken on the encoder's CLS feature: MAE has no projector.
    return _common.as_float32({"representation": cls, "embedding": cls})

  return Method(name="mae", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=identity_update, represent=represent,
                backbone=Backbone(encoder, lambda p, s: {"params": p["encoder"]}))
