"""MoCo v3 (Chen, Xie and He, ICCV 2021): match queries to an EMA key encoder's keys by InfoNCE.

Config keys read (see ``experiments/mocov3.py``): ``encoder.*``, ``projector.*``, ``predictor.*``,
``mocov3.temperature``, ``mocov3.base_momentum`` / ``mocov3.final_momentum`` (cosine schedule to
1) and the views ``input.views.view1`` / ``input.views.view2``. Keys are the whole global batch
(in-batch negatives, no queue), which is what the official code's all-gather builds. The key
encoder (backbone + projector, no predictor) lives in ``method_state["teacher"]``.
"""

from __future__ import annotations

from ssljax import losses
from ssljax.methods import Method, _common

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds MoCo v3 from an experiment config."""
  del steps_per_epoch
  net = _common.encoder_projector(config)
  predictor = _common.config_mlp(config, "predictor")
  temperature = _common.check_positive(config.mocov3.temperature, "mocov3.temperature")
  base = _common.check_momentum(config.mocov3.base_momentum, "mocov3.base_momentum")
  final = _common.check_momentum(config.mocov3.final_momentum, "mocov3.final_momentum")

  def init(rng, images_bhwc):
    return _common.init_online_and_target(net, predictor, rng, images_bhwc)

  def loss(params, method_state, views, rng):
    del rng
    reps, preds, targets, state = _common.online_and_target_pass(net, predictor, params,
                                                                 method_state, views)
    loss = (losses.mocov3_loss(preds[0], targets[1], temperature=temperature)
            + losses.mocov3_loss(preds[1], targets[0], temperature=temperature))
    return loss, (state, {"mocov3_loss": loss}, reps[0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    return _common.update_target(params, method_state, momentum)

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="mocov3", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=update, represent=represent,
                backbone=_common.submodule_backbone(net, _common.in_net))
