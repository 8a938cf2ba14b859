"""Shared setup for the method tests: runlocal methods built and initialised once per session.

The contract test, the learning test and the per-method files ask for the same methods; building
a method is cheap, initialising it is not (an XLA compile). :func:`build` keeps one
``(config, method, params, state)`` per distinct request for the whole session, initialised with a
jitted ``init``; the same ``method`` object means ``jax.jit(method.loss)`` in two tests shares one
trace and one compiled program. Callers must not mutate what they get (JAX arrays cannot be).
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import data, methods, train
from ssljax.data import augment, interactions, series, tables


class Built(NamedTuple):
  config: Any
  method: methods.Method
  params: Any
  state: Any


# Parameter initialisers draw from an RBG key, as the trainer's init_state: XLA compiles a
# ResNet's init 3-4x faster than with threefry (the values themselves do not matter here).
INIT_KEY = jax.random.key(0, impl="rbg")
_BUILT: dict[tuple, Built] = {}
_VIEWS: dict[tuple, list] = {}


def config_of(name, arg="runlocal", **overrides):
  """``experiments/<name>.py:<arg>`` with ``overrides`` (``__`` separates levels).

  CPC's default data are Debian's Asterisk prompts, which a fresh machine lacks; its tests read
  the synthetic sounds ssljax generates (``data=wav:tones``) unless ``arg`` names the data.
  """
  if name == "cpc" and "data=" not in arg:
    arg = f"data=wav:tones,{arg}" if arg else "data=wav:tones"
  config = importlib.import_module(f"experiments.{name}").get_config(arg)
  for dotted, value in overrides.items():
    node = config
    *parents, last = dotted.split("__")
    for part in parents:
      node = node[part]
    node[last] = value
  return config


def build(name, arg="runlocal", total_steps=100, steps_per_epoch=10, **overrides) -> Built:
  """The method of ``experiments/<name>.py:<arg>`` and its initial params/state (cached).

  ``overrides`` set config fields, ``__`` separating levels (``byol__base_momentum=0.9``); their
  values must be hashable. A bad value raises (ConfigError) and is not cached.
  """
  key = (name, arg, total_steps, steps_per_epoch, tuple(sorted(overrides.items())))
  if key not in _BUILT:
    config = config_of(name, arg, **overrides)
    # Tables ship with scikit-learn and time series with aeon (no data dir needed); their
    # methods need the columns / the series' shape.
    info = data.get_info(config.input.data) if not is_image(config) else None
    method = methods.make(config, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                          info=info)
    if info is None:
      size = method.views[0].size
      example = jnp.zeros((2, size, size, 3))
    else:
      example = train.example_view(method, info.element_spec)
    params, state = jax.jit(method.init)(INIT_KEY, example)
    _BUILT[key] = Built(config, method, params, state)
  return _BUILT[key]


def setup(name, arg="runlocal", batch=16, total_steps=100, steps_per_epoch=10, **overrides):
  """``(config, method, params, state, views)`` for ``experiments/<name>.py:<arg>``.

  Image ``views`` are fixed normal noise, one [batch, size, size, 3] array per view the method
  takes; other modalities' views are the method's views of the first batch of its data.
  """
  config, method, params, state = build(name, arg, total_steps, steps_per_epoch, **overrides)
  config = config.copy_and_resolve_references()  # A test may edit its copy.
  if not all(isinstance(v, augment.ViewRecipe) for v in method.views):
    it = data.make_train_iterator(config.input.data, global_batch_size=batch, seed=0)
    batch_ = {k: jnp.asarray(v) for k, v in next(it).items()}
    return config, method, params, state, train.make_views(jax.random.key(1), batch_, method.views)
  sizes = tuple(v.size for v in method.views)
  if (sizes, batch) not in _VIEWS:
    rng = np.random.default_rng(0)
    _VIEWS[sizes, batch] = [jnp.asarray(rng.normal(size=(batch, s, s, 3)), jnp.float32)
                            for s in sizes]
  return config, method, params, state, list(_VIEWS[sizes, batch])


def is_table(config) -> bool:
  return tables.is_table(str(config.input.data.name))


def is_image(config) -> bool:
  """Neither a table, a time series nor interactions (those name their data source by a prefix
  or a name of their own)."""
  name = str(config.input.data.name)
  return not (tables.is_table(name) or series.is_series(name, config.input.data)
              or interactions.is_interactions(name))


def assert_loss_and_grads_same_on_8_devices(method, params, state, views, *, seed: int = 3):
  """The method's loss and gradients with the views split over the 8 test devices equal those on
  one device: whatever the loss takes over the batch (statistics, neighbours, balancing) is the
  global batch's, not each device's."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  def loss(p, vs):
    return method.loss(p, state, vs, jax.random.key(seed))[0]

  grad_fn = jax.jit(jax.value_and_grad(loss))
  with jax.default_device(jax.devices()[0]):
    loss1, grads1 = grad_fn(params, views)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = jax.device_put(views, NamedSharding(mesh, PartitionSpec("data")))
  loss8, grads8 = grad_fn(jax.device_put(params, NamedSharding(mesh, PartitionSpec())), sharded)
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=2e-5)
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5 * scale),
               grads8, grads1)
