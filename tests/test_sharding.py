"""Mesh construction and sharding rules."""

import jax
import jax.numpy as jnp
import pytest

from ssljax import sharding
from ssljax.errors import ConfigError


def test_mesh_from_config():
  mesh = sharding.make_mesh([("data", -1)])
  assert mesh.shape == {"data": 8}
  mesh = sharding.make_mesh([("data", 4), ("model", 2)])
  assert mesh.shape == {"data": 4, "model": 2}


@pytest.mark.parametrize("bad,needle", [
    ([("data", 3)], "does not fit 8 devices"),
    ([("data", 16)], "8"),
    ([("model", -1)], "'data' axis"),
    ([("data", -1), ("model", -1)], "at most one"),
    ("data", "pairs"),
])
def test_bad_mesh(bad, needle):
  with pytest.raises(ConfigError, match=needle):
    sharding.make_mesh(bad)


def test_rules_map_every_leaf_and_reject_unknowns():
  mesh = sharding.make_mesh([("data", -1)])
  tree = {"params": {"w": jnp.zeros((4, 4))}, "step": jnp.zeros(())}
  shardings = sharding.tree_shardings(tree, mesh, [(".*", "replicate")])
  assert all(s.is_fully_replicated for s in jax.tree.leaves(shardings))
  with pytest.raises(ConfigError, match="match no rule for parameter 'step'"):
    sharding.tree_shardings(tree, mesh, [("params/.*", "replicate")])
  with pytest.raises(ConfigError, match="unknown"):
    sharding.tree_shardings(tree, mesh, [(".*", "shard_everything")])


def test_batch_divisibility_message():
  mesh = sharding.make_mesh([("data", -1)])
  sharding.check_batch_divides(16, mesh, 1)
  with pytest.raises(ConfigError, match=r"input.batch_size=12 .* multiple of 8"):
    sharding.check_batch_divides(12, mesh, 1)
