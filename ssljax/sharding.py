"""Mesh and shardings: the only module that names a PartitionSpec.

Experiments declare ``config.mesh = (("data", -1),)`` (axis name -> size, -1 = all remaining
devices) and ``config.sharding_rules = ((".*", "replicate"),)`` (regex over ``/``-joined parameter
paths -> rule; the first match wins). Tuples, not lists, so the command line can override them.
Batches are sharded on ``data``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssljax.errors import ConfigError

RULES = ("replicate",)


def make_mesh(mesh_cfg: Sequence[Sequence[Any]], devices=None) -> Mesh:
  """Builds a device mesh from ``[(axis_name, size), ...]``; one size may be -1 (the rest)."""
  devices = list(jax.devices() if devices is None else devices)
  try:
    names = [str(name) for name, _ in mesh_cfg]
    sizes = [int(size) for _, size in mesh_cfg]
  except (TypeError, ValueError):
    raise ConfigError(
        f"mesh={mesh_cfg!r} must be a list of (axis_name, size) pairs, e.g. [('data', -1)]"
    ) from None
  if "data" not in names:
    raise ConfigError(f"mesh={mesh_cfg!r} needs a 'data' axis, e.g. [('data', -1)]")
  if sizes.count(-1) > 1:
    raise ConfigError(f"mesh={mesh_cfg!r} may have at most one axis of size -1")
  known = math.prod(s for s in sizes if s != -1)
  if any(s == 0 or s < -1 for s in sizes) or len(devices) % known:
    raise ConfigError(
        f"mesh={mesh_cfg!r} does not fit {len(devices)} devices; use sizes whose product divides "
        f"{len(devices)}, or -1 for one axis"
    )
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != len(devices):
    raise ConfigError(
        f"mesh={mesh_cfg!r} has {math.prod(sizes)} devices but {len(devices)} are available; "
        "make the sizes multiply to the device count or use -1 for the data axis"
    )
  return Mesh(np.asarray(devices).reshape(sizes), tuple(names))


def data_axis_size(mesh: Mesh) -> int:
  return mesh.shape["data"]


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over ``data``; everything else replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def path_str(path) -> str:
  """A pytree key path as ``a/b/0/c`` (dict keys, attribute names and indices alike)."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def tree_shardings(tree, mesh: Mesh, rules: Sequence[Sequence[str]]):
  """Maps a pytree of arrays (or ShapeDtypeStructs) to NamedShardings by regex rules over paths.

  Args:
    tree: the pytree (e.g. ``jax.eval_shape`` of the state initialiser).
    mesh: the device mesh.
    rules: ``[(regex, rule), ...]``; ``rule`` is one of :data:`RULES`. Every leaf must match a rule.

  Returns:
    A pytree of ``NamedSharding`` with the structure of ``tree``.
  """
  try:
    compiled = [(re.compile(pattern), str(rule)) for pattern, rule in rules]
  except (TypeError, ValueError, re.error) as e:
    raise ConfigError(
        f"sharding_rules={rules!r} must be a list of (regex, rule) pairs: {e}"
    ) from None
  for pattern, rule in compiled:
    if rule not in RULES:
      raise ConfigError(
          f"sharding_rules: rule {rule!r} for {pattern.pattern!r} is unknown; choose from {RULES}"
      )

  def one(path, leaf):
    name = path_str(path)
    for pattern, rule in compiled:
      if pattern.search(name):
        if rule == "replicate":
          return replicated(mesh)
    raise ConfigError(
        f"sharding_rules match no rule for parameter {name!r}; add a catch-all ('.*', 'replicate')"
    )

  return jax.tree_util.tree_map_with_path(one, tree)


def check_batch_divides(global_batch_size: int, mesh: Mesh, process_count: int) -> None:
  """Raises ConfigError unless the global batch splits evenly over processes and data shards."""
  n = data_axis_size(mesh)
  if global_batch_size % n or global_batch_size % process_count:
    m = math.lcm(n, process_count)
    raise ConfigError(
        f"input.batch_size={global_batch_size} does not divide over {n} data-parallel devices "
        f"and {process_count} processes; use a multiple of {m}"
    )


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's local batch into global arrays sharded on ``data``."""
  sharding = batch_sharding(mesh)
  return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
      for k, v in local_batch.items()
  }
