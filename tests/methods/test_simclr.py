"""SimCLR: the method's loss is NT-Xent of its network's per-view embeddings."""

import jax
import numpy as np
import pytest
from method_setup import setup

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import _common


def test_loss_is_ntxent_of_the_projections():
  config, method, params, state, views = setup("simclr")
  loss, (_, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(1))
  net = _common.encoder_projector(config)
  z = [_common.apply_train(net, params, state, v)[0][1] for v in views]
  expected = losses.ntxent_loss(z[0], z[1], temperature=config.simclr.temperature)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  assert float(metrics["ntxent_loss"]) == float(loss)
  assert rep.shape == (16, 2 * config.encoder.width)  # resnet_tiny: 2 x width features.


def test_zero_temperature_names_the_key():
  with pytest.raises(ConfigError, match="simclr.temperature=0"):
    setup("simclr", simclr__temperature=0.0)
