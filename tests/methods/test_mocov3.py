"""MoCo v3: symmetric contrastive loss against the EMA key encoder's keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax import losses
from ssljax.errors import ConfigError


def test_loss_is_symmetric_and_positive():
  _, method, params, state, views = setup("mocov3")
  loss_fn = jax.jit(lambda vs: method.loss(params, state, vs, jax.random.key(0))[0])
  np.testing.assert_allclose(float(loss_fn(views)), float(loss_fn(views[::-1])), rtol=1e-5)
  assert float(loss_fn(views)) > 0  # 2 tau times a cross-entropy over 16 keys, per direction.


def test_update_moves_keys_towards_queries():
  _, method, params, state, _ = setup("mocov3", total_steps=10)
  online = jax.tree.map(lambda p: p + 1.0, params)
  new = method.update(online, state, jnp.asarray(0))
  m = 0.99  # runlocal keeps the recipe's base momentum; step 0 of the cosine schedule.
  leaf = lambda t: jax.tree.leaves(t)[0]
  np.testing.assert_allclose(leaf(new["teacher"]["params"]),
                             m * leaf(state["teacher"]["params"]) + (1 - m) * leaf(online["net"]),
                             rtol=1e-5, atol=1e-6)


def test_loss_uses_global_batch_negatives():
  """Each direction is the InfoNCE over all N keys: matches mocov3_loss on the embeddings."""
  q = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8)), jnp.float32)
  k = q + 0.1
  one = losses.mocov3_loss(q, k, temperature=0.2)
  halves = (losses.mocov3_loss(q[:8], k[:8], temperature=0.2)
            + losses.mocov3_loss(q[8:], k[8:], temperature=0.2)) / 2
  assert abs(float(one) - float(halves)) > 1e-3  # Per-device negatives would be a different loss.


def test_zero_temperature_names_the_key():
  with pytest.raises(ConfigError, match="mocov3.temperature"):
    setup("mocov3", mocov3__temperature=0.0)
