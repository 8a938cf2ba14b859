r"""Lists a config's train-state paths, shapes, shardings and bytes per device (nothing runs).

  python -m ssljax.tools.sharding --config=experiments/mae.py:data=imagenet2012 \
      --config.sharding_rules='((".*", "fsdp"),)'

The paths are what ``config.sharding_rules`` match (``ssljax/sharding.py``). With rules that match
nothing, the paths are printed before the ``error:`` line, so the fix can be read off them.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import app, flags

from ssljax import sharding
from ssljax.tools import cli


def describe(abstract_state, mesh: jax.sharding.Mesh, rules) -> list[str]:
  """One line per leaf (path, shape, dtype, PartitionSpec, per-device bytes) plus a total line."""
  shardings = sharding.tree_shardings(abstract_state, mesh, rules)
  lines = []
  leaves = jax.tree_util.tree_leaves_with_path(abstract_state)
  for (path, leaf), sh in zip(leaves, jax.tree.leaves(shardings), strict=True):
    one = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sh)
    lines.append(f"{sharding.path_str(path)}  {tuple(leaf.shape)} {leaf.dtype}  "
                 f"{tuple(sh.spec)}  {sharding.per_device_bytes(one)} B/device")
  placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract_state, shardings)
  total = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize
              for a in jax.tree.leaves(abstract_state))
  lines.append(f"total {total} B; per device {sharding.per_device_bytes(placed)} B on "
               f"{mesh.devices.size} devices (mesh {dict(mesh.shape)})")
  return lines


def main(config) -> None:
  """Prints :func:`describe` of ``config``'s state; bad rules list the paths, then one error."""
  from ssljax import train
  from ssljax.errors import UserError
  from ssljax.tools import plan

  rules = tuple(tuple(r) for r in config.sharding_rules)
  config.sharding_rules = ((".*", "replicate"),)  # Build the shapes even when the rules are bad.
  from ssljax.data import interactions

  # Interaction data are read for their catalogue (``python -m ssljax.plan`` sizes one unread).
  name = str(config.input.data.name)
  try:
    run = train.build(config, info=None if interactions.is_interactions(name)
                      else plan.synthetic_info(config))
  except UserError as e:
    cli.fail(str(e))
  try:
    print("\n".join(describe(run.abstract_state, run.mesh, rules)))
  except UserError as e:  # Bad rules: show the paths they should match, then the error.
    print("\n".join(sharding.leaf_paths(run.abstract_state)))
    cli.fail(str(e))


if __name__ == "__main__":  # pragma: no cover - a command; describe() is tested.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  _config = cli.define_config_flag()

  def _run(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    main(cli.load_config(_config, argv))

  app.run(_run, flags_parser=lambda argv: cli.parse_flags(argv, flags.FLAGS))
