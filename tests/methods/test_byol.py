"""BYOL: EMA target network with the cosine momentum schedule, symmetric loss, stop-gradient."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax.errors import ConfigError
from ssljax.methods import _common


def test_update_is_ema_with_the_cosine_momentum():
  config, method, params, state, _ = setup("byol", total_steps=100)
  online = jax.tree.map(lambda p: p + 1.0, params)  # The online net moved away from the target.
  base = config.byol.base_momentum
  for step in (0, 50, 100):
    # BYOL paper, section 3.2: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2.
    tau = 1 - (1 - base) * (math.cos(math.pi * step / 100) + 1) / 2
    new = method.update(online, state, jnp.asarray(step))
    expected = jax.tree.map(lambda t, o, tau=tau: tau * t + (1 - tau) * o,
                            state["teacher"]["params"], online["net"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 new["teacher"]["params"], expected)
  # At the end of the schedule tau = 1: the target is frozen.
  frozen = method.update(online, state, jnp.asarray(100))
  jax.tree.map(np.testing.assert_array_equal, frozen["teacher"]["params"],
               state["teacher"]["params"])


def test_cosine_momentum_endpoints():
  assert float(_common.cosine_momentum(0, base=0.996, total_steps=10)) == pytest.approx(0.996)
  assert float(_common.cosine_momentum(10, base=0.996, total_steps=10)) == pytest.approx(1.0)
  assert float(_common.cosine_momentum(20, base=0.996, total_steps=10)) == pytest.approx(1.0)


def test_loss_is_symmetric_in_the_views_and_bounded():
  _, method, params, state, views = setup("byol")
  loss_fn = jax.jit(lambda vs: method.loss(params, state, vs, jax.random.key(0))[0])
  a, b = float(loss_fn(views)), float(loss_fn(views[::-1]))
  np.testing.assert_allclose(a, b, rtol=1e-5)
  assert 0.0 <= a <= 8.0  # Two directions, each in [0, 4].


def test_bad_momentum_names_the_key():
  with pytest.raises(ConfigError, match="byol.base_momentum"):
    setup("byol", byol__base_momentum=1.5)
