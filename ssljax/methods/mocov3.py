"""MoCo v3 (Chen, Xie and He, ICCV 2021): match queries to an EMA key encoder's keys by InfoNCE.

Config keys read (see ``experiments/mocov3.py``): ``encoder.*``, ``projector.*``, ``predictor.*``,
``mocov3.temperature``, ``mocov3.base_momentum`` / ``mocov3.final_momentum`` (cosine schedule to
1) and the views ``input.views.view1`` / ``input.views.view2``. Keys are the whole global batch
(in-batch negatives, no queue), which is what the official code's all-gather builds. The key
encoder (backbone + projector, no predictor) lives in ``method_state["teacher"]``.
"""

from __future__ import annotations

import jax

from ssljax import losses
from ssljax.methods import Method, _common
from ssljax.models.compose import EncoderHead

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds MoCo v3 from an experiment config."""
  del steps_per_epoch
  encoder, _ = _common.make_backbone(config)
  net = EncoderHead(encoder=encoder, head=_common.make_mlp(config.projector, where="projector"))
  predictor = _common.make_mlp(config.predictor, where="predictor")
  temperature = _common.check_positive(config.mocov3.temperature, "mocov3.temperature")
  base = _common.check_momentum(config.mocov3.base_momentum, "mocov3.base_momentum")
  final = _common.check_momentum(config.mocov3.final_momentum, "mocov3.final_momentum")

  def init(rng, images_bhwc):
    net_rng, pred_rng = jax.random.split(rng)
    net_params, net_state = _common.init_variables(net, net_rng, images_bhwc)
    _, z = _common.apply_eval(net, net_params, net_state, images_bhwc)
    pred_params, pred_state = _common.init_variables(predictor, pred_rng, z)
    teacher = {"params": net_params, "state": net_state}  # The key encoder starts as a copy.
    params = {"net": net_params, "predictor": pred_params}
    return params, {"net": net_state, "predictor": pred_state, "teacher": teacher}

  def loss(params, method_state, views, rng):
    del rng
    net_state, pred_state = method_state["net"], method_state["predictor"]
    teacher = method_state["teacher"]
    queries, keys, h1 = [], [], None
    for x in views:
      (h, z), net_state = _common.apply_train(net, params["net"], net_state, x)
      q, pred_state = _common.apply_train(predictor, params["predictor"], pred_state, z)
      (_, k), teacher_state = _common.apply_train(net, teacher["params"], teacher["state"], x)
      teacher = {"params": teacher["params"], "state": teacher_state}
      h1 = h if h1 is None else h1
      queries.append(q)
      keys.append(jax.lax.stop_gradient(k))
    loss = (losses.mocov3_loss(queries[0], keys[1], temperature=temperature)
            + losses.mocov3_loss(queries[1], keys[0], temperature=temperature))
    state = {"net": net_state, "predictor": pred_state, "teacher": teacher}
    return loss, (state, {"mocov3_loss": loss}, h1)

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    teacher = method_state["teacher"]
    teacher = {"params": _common.ema(teacher["params"], params["net"], momentum),
               "state": teacher["state"]}
    return {**method_state, "teacher": teacher}

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="mocov3", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=update, represent=represent)
