"""The Barlow Twins method: its loss is the scaled Barlow Twins loss of the network's projections.

(8 devices == 1 device is the contract test's, for every method.)
"""

import jax
import numpy as np
from method_setup import setup

from experiments import barlow
from ssljax import losses


def _setup():
  return setup("barlow")


def test_loss_is_scaled_barlow_of_the_projections():
  config, method, params, state, views = _setup()
  loss, (_, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(1))
  np.testing.assert_allclose(float(loss), config.barlow.scale_loss * float(metrics["barlow_loss"]),
                             rtol=1e-6)
  # Recompute from the network's embeddings in training mode (batch statistics per view).
  net_loss = losses.barlow_twins_loss(
      _embed(method, params, state, views[0]), _embed(method, params, state, views[1]),
      lambd=config.barlow.lambd)
  np.testing.assert_allclose(float(metrics["barlow_loss"]), float(net_loss), rtol=1e-4)
  assert rep.shape == (16, 2 * 8)  # runlocal's resnet_tiny at width 8: 2 x width features.


def _embed(method, params, state, x):
  from ssljax.methods.barlow import make_network

  net = make_network(barlow.get_config("runlocal"))
  (_, z), _ = net.apply({"params": params, **state}, x, train=True, mutable=["batch_stats"])
  return z
