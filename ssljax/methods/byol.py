"""BYOL (Grill et al., NeurIPS 2020): predict an EMA target network's projection of the other view.

Config keys read (see ``experiments/byol.py``): ``encoder.*``, ``projector.*``, ``predictor.*``,
``byol.base_momentum`` / ``byol.final_momentum`` (EMA schedule
``tau_k = final - (final - base)(cos(pi k / K) + 1) / 2``) and the views ``input.views.view1`` /
``input.views.view2``. The target network's weights live in ``method_state["teacher"]`` and are
moved only by the EMA in ``update``; the loss stops gradients at the target's outputs.
"""

from __future__ import annotations

from ssljax import losses
from ssljax.methods import Method, _common

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds BYOL from an experiment config."""
  del steps_per_epoch
  net = _common.encoder_projector(config)
  predictor = _common.config_mlp(config, "predictor")
  base = _common.check_momentum(config.byol.base_momentum, "byol.base_momentum")
  final = _common.check_momentum(config.byol.final_momentum, "byol.final_momentum")

  def init(rng, images_bhwc):
    return _common.init_online_and_target(net, predictor, rng, images_bhwc)

  def loss(params, method_state, views, rng):
    del rng
    reps, preds, targets, state = _common.online_and_target_pass(net, predictor, params,
                                                                 method_state, views)
    loss = losses.byol_loss(preds[0], targets[1]) + losses.byol_loss(preds[1], targets[0])
    return loss, (state, {"byol_loss": loss}, reps[0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    return _common.update_target(params, method_state, momentum)

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="byol", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=update, represent=represent,
                backbone=_common.submodule_backbone(net, _common.in_net))
