"""BYOL (Grill et al., NeurIPS 2020): predict an EMA target network's projection of the other view.

Config keys read (see ``experiments/byol.py``): ``encoder.*``, ``projector.*``, ``predictor.*``,
``byol.base_momentum`` / ``byol.final_momentum`` (EMA schedule
``tau_k = final - (final - base)(cos(pi k / K) + 1) / 2``) and the views ``input.views.view1`` /
``input.views.view2``. The target network's weights live in ``method_state["teacher"]`` and are
moved only by the EMA in ``update``; the loss stops gradients at the target's outputs.
"""

from __future__ import annotations

import jax

from ssljax import losses
from ssljax.methods import Method, _common
from ssljax.models.compose import EncoderHead

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds BYOL from an experiment config."""
  del steps_per_epoch
  encoder, _ = _common.make_backbone(config)
  net = EncoderHead(encoder=encoder, head=_common.make_mlp(config.projector, where="projector"))
  predictor = _common.make_mlp(config.predictor, where="predictor")
  base = _common.check_momentum(config.byol.base_momentum, "byol.base_momentum")
  final = _common.check_momentum(config.byol.final_momentum, "byol.final_momentum")

  def init(rng, images_bhwc):
    net_rng, pred_rng = jax.random.split(rng)
    net_params, net_state = _common.init_variables(net, net_rng, images_bhwc)
    h, z = _common.apply_eval(net, net_params, net_state, images_bhwc)
    pred_params, pred_state = _common.init_variables(predictor, pred_rng, z)
    # The target starts as a copy of the online network (BYOL, Algorithm 1).
    teacher = {"params": net_params, "state": net_state}
    params = {"net": net_params, "predictor": pred_params}
    return params, {"net": net_state, "predictor": pred_state, "teacher": teacher}

  def loss(params, method_state, views, rng):
    del rng
    net_state, pred_state = method_state["net"], method_state["predictor"]
    teacher = method_state["teacher"]
    online, targets = [], []
    for x in views:  # One pass per view, as the official code: per-view BatchNorm statistics.
      (h, z), net_state = _common.apply_train(net, params["net"], net_state, x)
      p, pred_state = _common.apply_train(predictor, params["predictor"], pred_state, z)
      (_, t), teacher_state = _common.apply_train(net, teacher["params"], teacher["state"], x)
      teacher = {"params": teacher["params"], "state": teacher_state}
      online.append((h, p))
      targets.append(jax.lax.stop_gradient(t))
    loss = (losses.byol_loss(online[0][1], targets[1])
            + losses.byol_loss(online[1][1], targets[0]))
    state = {"net": net_state, "predictor": pred_state, "teacher": teacher}
    return loss, (state, {"byol_loss": loss}, online[0][0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    teacher = method_state["teacher"]
    teacher = {"params": _common.ema(teacher["params"], params["net"], momentum),
               "state": teacher["state"]}
    return {**method_state, "teacher": teacher}

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="byol", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=update, represent=represent)
