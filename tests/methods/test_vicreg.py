"""VICReg: the method combines the official terms with the configured weights."""

import jax
import numpy as np
import pytest
from method_setup import setup

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import _common


def test_loss_is_vicreg_of_the_projections():
  config, method, params, state, views = setup("vicreg")
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  net = _common.encoder_projector(config)
  z = [_common.apply_train(net, params, state, v)[0][1] for v in views]
  np.testing.assert_allclose(float(loss), float(losses.vicreg_loss(z[0], z[1])), rtol=1e-5)
  recombined = (25 * metrics["vicreg_invariance"] + 25 * metrics["vicreg_variance"]
                + metrics["vicreg_covariance"])
  np.testing.assert_allclose(float(loss), float(recombined), rtol=1e-5)


def test_negative_weight_names_the_key():
  with pytest.raises(ConfigError, match="vicreg.cov_weight"):
    setup("vicreg", vicreg__cov_weight=-1.0)
