"""The Barlow Twins method: its loss on the real network, sharded over 8 devices == 1 device."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments import barlow
from ssljax import losses, methods


def _setup():
  config = barlow.get_config("runlocal")
  method = methods.make(config, total_steps=100, steps_per_epoch=10)
  size = method.views[0].size
  params, state = method.init(jax.random.key(0), jnp.zeros((2, size, size, 3)))
  rng = np.random.default_rng(0)
  views = [jnp.asarray(rng.normal(size=(16, size, size, 3)), jnp.float32) for _ in range(2)]
  return config, method, params, state, views


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
  assert rep.shape == (16, 4 * 8)  # ResNet-18 at width 4: 8 x width features.


def _embed(method, params, state, x):
  from ssljax.methods.barlow import make_network

  net = make_network(barlow.get_config("runlocal"))
  (_, z), _ = net.apply({"params": params, **state}, x, train=True, mutable=["batch_stats"])
  return z


def test_sharded_loss_and_gradients_equal_single_device():
  """Global-batch semantics: BatchNorm and the cross-correlation see all 8 devices' samples."""
  _, method, params, state, views = _setup()

  def loss_fn(p, vs):
    loss, (new_state, _, _) = method.loss(p, state, vs, jax.random.key(1))
    return loss, new_state

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  with jax.default_device(jax.devices()[0]):
    (loss1, stats1), grads1 = grad_fn(params, views)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = [jax.device_put(v, NamedSharding(mesh, PartitionSpec("data"))) for v in views]
  replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
  (loss8, stats8), grads8 = grad_fn(replicated, sharded)
  assert len(sharded[0].sharding.device_set) == 8
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=1e-5)
  # Summation order differs across devices: allow float32 noise relative to the largest gradient
  # (biases before a BatchNorm have a true gradient of 0, so they hold only noise). Per-device
  # BatchNorm statistics (the bug that global-batch code rules out) would differ by O(1).
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale),
               grads8, grads1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stats8, stats1)
