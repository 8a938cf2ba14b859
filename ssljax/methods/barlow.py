"""Barlow Twins (Zbontar et al., ICML 2021): make the cross-correlation of two views the identity.

Config keys read (see ``experiments/barlow.py``): ``encoder.*``, ``projector.*``,
``barlow.lambd`` (off-diagonal weight, 0.0051), ``barlow.scale_loss`` (solo-learn's loss scale;
1.0 in the official code), and the views ``input.views.view1`` / ``input.views.view2`` (asymmetric
blur and solarisation probabilities). The loss sees the global batch: its standardisation and
cross-correlation are over every device's samples, as the official SyncBN + all-reduce code does.
"""

from __future__ import annotations

import jax.numpy as jnp

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common, identity_update
from ssljax.models.compose import EncoderHead

VIEW_NAMES = ("view1", "view2")


def make_network(config) -> EncoderHead:
  """Encoder + projector from ``config.encoder`` and ``config.projector``."""
  return _common.encoder_projector(config)


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds the Barlow Twins method from an experiment config."""
  del total_steps, steps_per_epoch  # No schedules of its own.
  net = make_network(config)
  lambd = float(config.barlow.lambd)
  scale_loss = float(config.barlow.scale_loss)
  if lambd < 0:
    raise ConfigError(f"barlow.lambd={lambd} must be >= 0")
  if scale_loss <= 0:
    raise ConfigError(f"barlow.scale_loss={scale_loss} must be > 0")

  def init(rng, images_bhwc):
    variables = net.init(rng, images_bhwc, train=False)
    return variables["params"], {"batch_stats": variables["batch_stats"]}

  def forward(params, batch_stats, x_bhwc):
    (h_bf, z_bk), new_vars = net.apply(
        {"params": params, "batch_stats": batch_stats}, x_bhwc, train=True, mutable=["batch_stats"]
    )
    return h_bf, z_bk, new_vars["batch_stats"]

  def loss(params, method_state, views, rng):
    del rng  # Barlow Twins is deterministic given its views.
    x1, x2 = views
    # Two separate passes, as the official code: each view gets its own BatchNorm batch statistics,
    # and the running statistics are updated once per view.
    h1, z1, stats = forward(params, method_state["batch_stats"], x1)
    _, z2, stats = forward(params, stats, x2)
    bt = losses.barlow_twins_loss(z1, z2, lambd=lambd)
    metrics = {"barlow_loss": bt}
    return scale_loss * bt, ({"batch_stats": stats}, metrics, h1)

  def represent(params, method_state, images_bhwc):
    h_bf, z_bk = net.apply(
        {"params": params, "batch_stats": method_state["batch_stats"]}, images_bhwc, train=False
    )
    return {"representation": h_bf.astype(jnp.float32), "embedding": z_bk.astype(jnp.float32)}

  return Method(
      name="barlow",
      views=_common.view_recipes(config, VIEW_NAMES),
      init=init,
      loss=loss,
      update=identity_update,
      represent=represent,
      backbone=_common.submodule_backbone(net),
  )

