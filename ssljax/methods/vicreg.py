"""VICReg (Bardes, Ponce and LeCun, ICLR 2022): invariance, variance and covariance terms.

Config keys read (see ``experiments/vicreg.py``): ``encoder.*``, ``projector.*``,
``vicreg.sim_weight`` / ``var_weight`` / ``cov_weight`` (25 / 25 / 1; ``var_weight`` multiplies the
MEAN of the two views' variance terms, as the official code, so solo-learn's 25 on their sum is
50 here) and the views
``input.views.view1`` / ``input.views.view2``. Variance and covariance are over the global batch,
as the official code computes them after gathering every device's embeddings.
"""

from __future__ import annotations

from ssljax import losses
from ssljax.methods import Method, _common, identity_update

VIEW_NAMES = ("view1", "view2")


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds VICReg from an experiment config."""
  del total_steps, steps_per_epoch
  net = _common.encoder_projector(config)
  weights = {k: _common.check_positive(config.vicreg[k], f"vicreg.{k}")
             for k in ("sim_weight", "var_weight", "cov_weight")}

  def init(rng, images_bhwc):
    return _common.init_variables(net, rng, images_bhwc)

  def loss(params, method_state, views, rng):
    del rng
    (h1, z1), state = _common.apply_train(net, params, method_state, views[0])
    (_, z2), state = _common.apply_train(net, params, state, views[1])
    terms = losses.vicreg_terms(z1, z2)
    loss = (weights["sim_weight"] * terms["invariance"] + weights["var_weight"] * terms["variance"]
            + weights["cov_weight"] * terms["covariance"])
    return loss, (state, {f"vicreg_{k}": v for k, v in terms.items()}, h1)

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params, method_state, images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="vicreg", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=identity_update, represent=represent,
                backbone=_common.submodule_backbone(net))
