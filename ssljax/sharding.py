"""Mesh and shardings: the only module that names a PartitionSpec.

Experiments declare ``config.mesh = (("data", -1),)`` (axis name -> size, -1 = all remaining
devices) and ``config.sharding_rules = ((".*", "replicate"),)``: ``(regex, rule)`` pairs over the
``/``-joined paths of the whole TrainState (``step``, ``rng``, ``params/method/encoder/...``,
``opt_state/0/mu/method/encoder/...``, ``method_state/...``); for each leaf the first pattern that
matches (``re.search``) wins. Tuples, not lists, so the command line can override them. Batches are
always sharded on ``data``.

Rules:

* ``"replicate"``: every device holds the whole leaf (plain data parallelism).
* ``"fsdp"`` (fully sharded data parallel, ZeRO-3 style): the leaf is split along the ``data`` axis
  on its largest dimension divisible by the data-axis size (on a tie, the last such dimension), so
  each of the N data-parallel devices holds 1/N of it. Leaves with fewer than 2**14 elements
  (biases, norm scales, counters), scalars and leaves without a divisible dimension stay
  replicated; ``"fsdp:<min_elements>"`` sets that threshold (``"fsdp:0"`` shards every leaf that
  can be split). The optimizer state mirrors the parameter paths, so ``((".*", "fsdp"),)`` shards
  parameters, their optimizer moments and parameter-shaped method state (EMA teachers) alike.
  Use it when params + optimizer state do not fit on one device, or to free memory for a larger
  batch: inside the jitted step XLA all-gathers each weight where it is used and reduce-scatters
  its gradient, so the results equal the replicated run (up to float reduction order) at the cost
  of that extra communication. With one data-parallel device it is the same as ``"replicate"``.
  Every ``fsdp`` pattern must match some leaf (a typo is an error, not a silent replication).
* ``"rows"`` (row-sharded embedding tables): the leaf's **first** dimension is split over the
  ``data`` axis, whatever its size, so each of the N devices holds a contiguous block of 1/N of
  the rows; ``"rows:<axis>"`` splits over another axis of ``config.mesh`` (replicated over the
  others). For recommendation models whose catalogue outgrows one device::

    sharding_rules = (("item_embedding|user_embedding", "rows"), (".*", "replicate"))

  The optimizer moments mirror the parameter paths (``opt_state/0/mu/method/item_embedding``),
  so they follow the table, as with ``fsdp``. Inside the jitted step XLA turns the batch's row
  lookups into gathers from the shards (and the gradient into scatters onto them), so the step
  and the full-ranking evaluation equal the replicated run up to float reduction order. Every
  ``rows`` pattern must match some leaf, and every leaf it matches must have a first dimension
  divisible by the axis size (else one ConfigError naming the leaf: pad the catalogue to a
  multiple of the device count, or choose a device count that divides it). Unlike ``fsdp`` it
  never picks another dimension and never leaves a small leaf replicated: write the pattern for
  the tables only.

See the paths and the resulting per-device bytes of a config with::

  python -m ssljax.tools.sharding --config=experiments/mae.py:data=imagenet2012 \
      --config.sharding_rules='((".*", "fsdp"),)'

and size a recommendation model's catalogue without its data with ``python -m ssljax.plan
--config=experiments/bpr.py --num_users=... --num_items=... --memory=80GiB``
(:mod:`ssljax.tools.plan`).
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssljax.errors import ConfigError

RULES = ("replicate", "fsdp", "fsdp:<min_elements>", "rows", "rows:<mesh axis>")
# Below this many elements a leaf is cheaper to replicate than to gather in every step.
FSDP_MIN_ELEMENTS = 2**14
PATHS_HINT = "list the state's paths with `python -m ssljax.tools.sharding --config=<your config>`"


def make_mesh(mesh_cfg: Sequence[Sequence[Any]], devices=None) -> Mesh:
  """Builds a device mesh from ``[(axis_name, size), ...]``; one size may be -1 (the rest).

  With a -1 axis the mesh spans every device. Without one, in a single-process run, the mesh
  may be smaller than the device count and uses the first devices (``[("data", 1)]``: one
  device, e.g. for a test or a debugging run on a multi-GPU machine); a multi-process run must
  span every process's devices.
  """
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
  if any(s == 0 or s < -1 for s in sizes) or (-1 in sizes and len(devices) % known):
    raise ConfigError(
        f"mesh={mesh_cfg!r} does not fit {len(devices)} devices; use positive sizes whose product "
        f"divides {len(devices)}, or -1 for one axis"
    )
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if math.prod(sizes) > len(devices) or (math.prod(sizes) < len(devices)
                                         and jax.process_count() > 1):
    raise ConfigError(
        f"mesh={mesh_cfg!r} has {math.prod(sizes)} devices but {len(devices)} are available"
        f"{' in all processes' if jax.process_count() > 1 else ''}; make the sizes multiply to "
        "the device count or use -1 for the data axis"
    )
  devices = devices[:math.prod(sizes)]
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
  return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def leaf_paths(tree) -> list[str]:
  """The ``/``-joined path of every leaf of ``tree``, in tree order (what the rules match)."""
  return [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


class Rule(NamedTuple):
  """One parsed ``(regex, rule)`` pair of ``config.sharding_rules``."""

  pattern: re.Pattern
  kind: str  # "replicate", "fsdp" or "rows".
  min_elements: int  # fsdp: leaves with fewer elements stay replicated.
  axis: str = "data"  # rows: the mesh axis the first dimension is split over.


def parse_rules(rules: Sequence[Sequence[str]]) -> list[Rule]:
  """Parses ``config.sharding_rules``; raises ConfigError naming a bad pattern or rule."""
  try:
    pairs = [(re.compile(pattern), str(rule).strip()) for pattern, rule in rules]
  except (TypeError, ValueError, re.error) as e:
    raise ConfigError(
        f"sharding_rules={rules!r} must be a list of (regex, rule) pairs: {e}"
    ) from None
  parsed = []
  for pattern, rule in pairs:
    kind, colon, arg = rule.partition(":")
    kind = kind.strip()
    if kind == "replicate" and not colon:
      parsed.append(Rule(pattern, "replicate", 0))
    elif kind == "fsdp":
      min_elements = FSDP_MIN_ELEMENTS
      if colon:
        try:
          min_elements = int(arg.strip())
        except ValueError:
          min_elements = -1
        if min_elements < 0:
          raise ConfigError(
              f"sharding_rules: rule {rule!r} for {pattern.pattern!r} is malformed; write 'fsdp' "
              f"(leaves of >= {FSDP_MIN_ELEMENTS} elements) or 'fsdp:<min_elements>' with an "
              "integer >= 0, e.g. 'fsdp:0'")
      parsed.append(Rule(pattern, "fsdp", min_elements))
    elif kind == "rows":
      axis = arg.strip() if colon else "data"
      if not axis:
        raise ConfigError(
            f"sharding_rules: rule {rule!r} for {pattern.pattern!r} is malformed; write 'rows' "
            "(first dimension over the data axis) or 'rows:<mesh axis>', e.g. 'rows:model'")
      parsed.append(Rule(pattern, "rows", 0, axis))
    else:
      raise ConfigError(
          f"sharding_rules: rule {rule!r} for {pattern.pattern!r} is unknown; choose from {RULES}"
      )
  return parsed


def fsdp_spec(shape: Sequence[int], data_size: int, *, min_elements: int = FSDP_MIN_ELEMENTS
              ) -> PartitionSpec:
  """The ``fsdp`` rule's PartitionSpec for a leaf of ``shape`` on a data axis of ``data_size``.

  ``"data"`` goes on the largest dimension divisible by ``data_size`` (the last one on a tie);
  scalars, leaves of fewer than ``min_elements`` elements and leaves without such a dimension are
  replicated (``PartitionSpec()``).
  """
  shape = tuple(int(d) for d in shape)
  if data_size <= 1 or not shape or math.prod(shape) < min_elements:
    return PartitionSpec()
  divisible = [i for i, d in enumerate(shape) if d >= data_size and d % data_size == 0]
  if not divisible:
    return PartitionSpec()
  axis = max(divisible, key=lambda i: (shape[i], i))
  return PartitionSpec(*[("data" if i == axis else None) for i in range(len(shape))])


def rows_spec(path: str, shape: Sequence[int], mesh: Mesh, axis: str = "data") -> PartitionSpec:
  """The ``rows`` rule's PartitionSpec: the first dimension of ``shape`` split over ``axis``.

  Raises:
    ConfigError: ``axis`` is not an axis of ``mesh``, the leaf is a scalar, or its first
      dimension (row count) is not divisible by the axis size.
  """
  if axis not in mesh.shape:
    raise ConfigError(
        f"sharding_rules: rule 'rows:{axis}' names mesh axis {axis!r} but the mesh has axes "
        f"{tuple(mesh.shape)}; add ({axis!r}, size) to config.mesh or write 'rows' (the data "
        "axis)")
  shape = tuple(int(d) for d in shape)
  if not shape:
    raise ConfigError(
        f"sharding_rules: a 'rows' pattern matches the scalar {path!r}, which has no rows to "
        "split; narrow the pattern to the embedding tables (e.g. 'item_embedding')")
  size = int(mesh.shape[axis])
  if shape[0] % size:
    up = -(-shape[0] // size) * size
    raise ConfigError(
        f"sharding_rules: 'rows' cannot split {path!r} ({shape[0]} rows) over the {size} devices "
        f"of mesh axis {axis!r}: {size} does not divide {shape[0]}; pad the catalogue to "
        f"{up} rows (a multiple of {size}) or use a device count that divides {shape[0]}")
  return PartitionSpec(axis, *([None] * (len(shape) - 1)))


def tree_shardings(tree, mesh: Mesh, rules: Sequence[Sequence[str]]):
  """Maps a pytree of arrays (or ShapeDtypeStructs) to NamedShardings by regex rules over paths.

  Args:
    tree: the pytree (e.g. ``jax.eval_shape`` of the state initialiser).
    mesh: the device mesh.
    rules: ``[(regex, rule), ...]``; ``rule`` is ``"replicate"``, ``"fsdp"``,
      ``"fsdp:<min_elements>"``, ``"rows"`` or ``"rows:<mesh axis>"`` (module docstring). Every
      leaf must match a rule and every fsdp or rows pattern must match at least one leaf.

  Returns:
    A pytree of ``NamedSharding`` with the structure of ``tree``.
  """
  parsed = parse_rules(rules)
  paths = leaf_paths(tree)
  for rule in parsed:
    if rule.kind in ("fsdp", "rows") and not any(rule.pattern.search(p) for p in paths):
      example = next((p for p in paths if p.startswith("params/")), paths[0] if paths else "")
      raise ConfigError(
          f"sharding_rules: {rule.kind} pattern {rule.pattern.pattern!r} matches no path of the "
          f"train state (paths look like {example!r}); {PATHS_HINT}")
  data_size = data_axis_size(mesh)

  def one(path, leaf):
    name = path_str(path)
    for rule in parsed:
      if rule.pattern.search(name):
        if rule.kind == "fsdp":
          spec = fsdp_spec(np.shape(leaf), data_size, min_elements=rule.min_elements)
          return NamedSharding(mesh, spec)
        if rule.kind == "rows":
          return NamedSharding(mesh, rows_spec(name, np.shape(leaf), mesh, rule.axis))
        return replicated(mesh)
    raise ConfigError(
        f"sharding_rules match no rule for parameter {name!r}; add a catch-all ('.*', 'replicate')"
    )

  return jax.tree_util.tree_map_with_path(one, tree)


def _leaf_bytes_by_device(leaf) -> dict[Any, int]:
  sharding = getattr(leaf, "sharding", None)
  if sharding is None:
    raise TypeError(f"per_device_bytes needs leaves with a sharding, got {type(leaf).__name__} "
                    f"{getattr(leaf, 'shape', '')}; pass jax.Arrays or ShapeDtypeStructs with "
                    "sharding= (e.g. train.build(config).abstract_state)")
  shape = tuple(leaf.shape)
  itemsize = leaf.dtype.itemsize  # Typed PRNG keys too (key<fry> is 8 bytes).
  out = {}
  for device, index in sharding.devices_indices_map(shape).items():
    elements = math.prod(len(range(*s.indices(d))) for s, d in zip(index, shape, strict=True))
    out[device] = elements * itemsize
  return out


def bytes_by_device(tree) -> dict[Any, int]:
  """Bytes each device holds of ``tree`` (jax.Arrays or ShapeDtypeStructs with shardings)."""
  total = collections.Counter()
  for leaf in jax.tree.leaves(tree):
    total.update(_leaf_bytes_by_device(leaf))
  return dict(total)


def per_device_bytes(tree) -> int:
  """The most bytes any one device holds of ``tree``, from each leaf's sharding (no transfer).

  Works on live jax.Arrays and on ``jax.ShapeDtypeStruct(..., sharding=...)`` alike (e.g.
  ``train.build(config).abstract_state``), so memory can be planned before anything is allocated.
  """
  counts = bytes_by_device(tree)
  return max(counts.values()) if counts else 0


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
