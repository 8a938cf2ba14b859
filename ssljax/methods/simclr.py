"""SimCLR (Chen et al., ICML 2020): contrast each image's two views against the whole batch.

Config keys read (see ``experiments/simclr.py``): ``encoder.*``, ``projector.*``,
``simclr.temperature`` and the views ``input.views.view1`` / ``input.views.view2``. The NT-Xent
loss sees the global batch, so every device's samples are negatives for every anchor (the
official code all-gathers the embeddings for the same effect).
"""

from __future__ import annotations

from ssljax import losses
from ssljax.methods import Method, _common, identity_update

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds SimCLR from an experiment config."""
  del total_steps, steps_per_epoch
  net = _common.encoder_projector(config)
  temperature = _common.check_positive(config.simclr.temperature, "simclr.temperature")

  def init(rng, images_bhwc):
    return _common.init_variables(net, rng, images_bhwc)

  def loss(params, method_state, views, rng):
    del rng
    # One pass per view: each view has its own BatchNorm batch statistics (solo-learn, official).
    (h1, z1), state = _common.apply_train(net, params, method_state, views[0])
    (_, z2), state = _common.apply_train(net, params, state, views[1])
    nce = losses.ntxent_loss(z1, z2, temperature=temperature)
    return nce, (state, {"ntxent_loss": nce}, h1)

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params, method_state, images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="simclr", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=identity_update, represent=represent,
                backbone=_common.submodule_backbone(net))
