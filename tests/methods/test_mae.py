"""MAE: masked-patch reconstruction on a ViT; bad encoder or patch settings are config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax.errors import ConfigError


def test_loss_depends_on_the_mask_draw_and_reports_cls():
  config, method, params, state, views = setup("mae")
  loss_fn = jax.jit(lambda rng: method.loss(params, state, views, rng))
  loss_a, (_, _, cls) = loss_fn(jax.random.key(0))
  loss_b, _ = loss_fn(jax.random.key(1))
  assert float(loss_a) != float(loss_b)  # A different random mask per key.
  assert cls.shape == (16, 64)  # The nano ViT's CLS token.


def test_visible_patches_do_not_enter_the_loss_target():
  """Changing the pixels of a patch that is kept visible changes only the encoder input: with
  the mask fixed, the loss is computed on masked patches, whose targets are unchanged."""
  from ssljax.models import vit

  # Raw pixel targets: with norm_pix every normalised patch has the same squared norm, so a zero
  # prediction would give a constant loss and the check below could not fail.
  _, method, params, state, views = setup("mae", mae__norm_pix=False)
  rng = jax.random.key(3)
  ids_keep, mask, _ = vit.random_masking(rng, 16, 16, mask_ratio=0.75)
  assert int(mask.sum()) == 16 * 12  # int(16 * 0.25) = 4 kept of 16 in every sample.
  # Zero the decoder's prediction head: the prediction is then constant, so the loss depends only
  # on the targets of the masked patches.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x) if "pred" in jax.tree_util.keystr(p) else x, params)
  patches = vit.patchify(views[0], 4)
  visible = (1 - mask)[..., None]
  changed = vit.unpatchify(patches + 3.0 * visible, 4, height=16, width=16, channels=3)
  loss_fn = jax.jit(lambda x: method.loss(params, state, [x], rng)[0])
  np.testing.assert_allclose(float(loss_fn(views[0])), float(loss_fn(changed)), rtol=1e-5)
  masked_changed = vit.unpatchify(patches + 3.0 * mask[..., None] * jnp.linspace(0, 1, 48), 4,
                                  height=16, width=16, channels=3)
  assert abs(float(loss_fn(masked_changed)) - float(loss_fn(views[0]))) > 1e-3


def test_bad_settings_name_the_key():
  with pytest.raises(ConfigError, match="input.views.view.size=18 is not divisible"):
    setup("mae", input__views__view__size=18)
  with pytest.raises(ConfigError, match="needs a ViT encoder"):
    setup("mae", encoder__name="resnet18")
  with pytest.raises(ConfigError, match="mae.mask_ratio"):
    setup("mae", mae__mask_ratio=1.0)
