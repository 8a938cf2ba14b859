"""Shared setup for the per-method tests: a runlocal method with random input views."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import methods


def setup(name, arg="runlocal", batch=16, total_steps=100, steps_per_epoch=10, **overrides):
  """``(config, method, params, state, views)`` for ``experiments/<name>.py:<arg>``.

  ``overrides`` set config fields, ``__`` separating levels (``byol__base_momentum=0.9``).
  """
  config = importlib.import_module(f"experiments.{name}").get_config(arg)
  for dotted, value in overrides.items():
    node = config
    *parents, last = dotted.split("__")
    for part in parents:
      node = node[part]
    node[last] = value
  method = methods.make(config, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  size = method.views[0].size
  params, state = method.init(jax.random.key(0), jnp.zeros((2, size, size, 3)))
  rng = np.random.default_rng(0)
  views = [jnp.asarray(rng.normal(size=(batch, v.size, v.size, 3)), jnp.float32)
           for v in method.views]
  return config, method, params, state, views
