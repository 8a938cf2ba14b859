"""SimSiam (Chen and He, CVPR 2021): predict the other view's projection, stop-gradient, no EMA.

Config keys read (see ``experiments/simsiam.py``): ``encoder.*``, ``projector.*`` (3 layers, BN on
the output), ``predictor.*`` (bottleneck 512) and the views ``input.views.view1`` /
``input.views.view2``. The paper's fixed predictor LR is ``optim.constant_lr_params``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.methods import Method, _common, identity_update

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds SimSiam from an experiment config."""
  del total_steps, steps_per_epoch
  net = _common.encoder_projector(config)
  predictor = _common.config_mlp(config, "predictor")

  def init(rng, images_bhwc):
    net_rng, pred_rng = jax.random.split(rng)
    net_params, net_state = _common.init_variables(net, net_rng, images_bhwc)
    _, z = _common.apply_eval(net, net_params, net_state, images_bhwc)
    pred_params, pred_state = _common.init_variables(predictor, pred_rng, z)
    return ({"net": net_params, "predictor": pred_params},
            {"net": net_state, "predictor": pred_state})

  def loss(params, method_state, views, rng):
    del rng
    net_state, pred_state = method_state["net"], method_state["predictor"]
    out = []
    for x in views:
      (h, z), net_state = _common.apply_train(net, params["net"], net_state, x)
      p, pred_state = _common.apply_train(predictor, params["predictor"], pred_state, z)
      out.append((h, z, p))
    (h1, z1, p1), (_, z2, p2) = out
    loss = 0.5 * (losses.simsiam_loss(p1, z2) + losses.simsiam_loss(p2, z1))
    # Collapse monitor from the paper: per-dimension std of n(z), ~1/sqrt(d) when healthy, 0 when
    # collapsed.
    z_std = jnp.mean(jnp.std(losses.l2_normalize(z1), axis=0))
    metrics = {"simsiam_loss": loss, "z_std": z_std}
    return loss, ({"net": net_state, "predictor": pred_state}, metrics, h1)

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="simsiam", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=identity_update, represent=represent,
                backbone=_common.submodule_backbone(net, _common.in_net))
