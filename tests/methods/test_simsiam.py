"""SimSiam: negative cosine with stop-gradient, predictor at a constant LR."""

import jax
import numpy as np
from method_setup import setup

from ssljax import optim


def test_loss_in_range_and_symmetric():
  _, method, params, state, views = setup("simsiam")
  loss_fn = jax.jit(lambda vs: method.loss(params, state, vs, jax.random.key(0)))
  loss, (_, metrics, _) = loss_fn(views)
  assert -1.0 <= float(loss) <= 1.0
  np.testing.assert_allclose(float(loss), float(loss_fn(views[::-1])[0]), rtol=1e-5)
  assert 0 < float(metrics["z_std"]) <= 1.0


def test_constant_lr_rule_selects_exactly_the_predictor():
  config, _, params, _, _ = setup("simsiam")
  mask = optim.path_mask(config.optim.constant_lr_params)({"method": params})
  flags = jax.tree.leaves(mask["method"]["predictor"])
  assert flags and all(flags)
  assert not any(jax.tree.leaves(mask["method"]["net"]))
