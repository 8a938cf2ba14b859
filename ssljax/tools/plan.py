r"""Plans a run before renting the hardware: compiles the train step for N devices, runs nothing.

  python -m ssljax.plan --config=experiments/barlow.py:data=imagenet2012 --devices=8,64,256
  python -m ssljax.plan --config=experiments/barlow.py:runlocal --devices=2,4 --json
  python -m ssljax.plan --config=experiments/bpr.py --num_users=1000000 --num_items=10000000 \
      --devices=8 --memory=80GiB \
      --config.sharding_rules='(("item_embedding|user_embedding", "rows"), (".*", "replicate"))'

(``python -m ssljax.tools.plan`` is the same command.)

For every device count it builds the run (``train.build``) on that many fake CPU devices, lowers
and compiles the jitted train step on abstract inputs (``ShapeDtypeStruct`` state and batch, so no
array is allocated) and prints, per device: the state (params + optimizer + method state) bytes
from the state's shardings, XLA's ``memory_analysis()`` (argument, output, temp, alias and
generated-code bytes), an estimated peak, XLA's ``cost_analysis()`` FLOPs, the per-device batch
and the compile time. Any ``--config.<key>=...`` override is honoured (``sharding_rules``,
``input.batch_size``, ``compute_dtype``, ...).

How to read the numbers:

* They come from the **CPU** compiler (device counts are faked with
  ``--xla_force_host_platform_device_count``, one subprocess per count). Buffer assignment,
  fusion and rematerialisation on GPU/TPU differ, so treat memory as an estimate of the order of
  magnitude: the state bytes are exact, the activation (temp) bytes are usually an upper bound of
  what a GPU/TPU compiler needs.
* ``peak`` = argument + output + temp - alias bytes: everything live at once if no buffer is freed
  early; the donated state is counted once (its output aliases the argument).
* ``flops`` is XLA's HLO cost analysis of the partitioned program, i.e. **per device** (checked by
  planning 1 vs 2 devices: the per-device count halves, the global count stays put). The global
  step is ``flops x devices``. Multiply-add counts as 2; XLA's count of convolutions and dots is
  the usual one, elementwise ops count 1 per element.
* The batch is uint8 images of the shape the input pipeline yields for the recipe's data set
  (``batch_shape`` in the output), with that data set's class count and train size (which set the
  online probe size and the schedule, not the step cost); nothing is read from disk.
* The graph is the **accelerator** one: ``cpu_kernels`` is forced off (Flax's BatchNorm, no
  XLA:CPU-only identity conds; ``ssljax.cpu``), whatever the config says, because a plan sizes
  a GPU/TPU slice. The record says so (``cpu_kernels: false``).
* ``leaf_bytes_per_device`` (JSON) gives every state leaf's bytes on the fullest device, by path
  (what ``sharding_rules`` match); ``--memory=80GiB`` adds a line per device count saying
  whether the estimated peak fits that much memory per device.

Recommendation models (data ``ml-latest-small``, ``interactions``, ``inter``) are sized from
their catalogue, given as flags, and no interaction is read: ``--num_users=U --num_items=I``
(required for such data) and ``--num_interactions=E`` (training interactions, default 10 per
user; they size what ``method_state`` holds, e.g. each user's training items and the graph). The
method is built on a stand-in data set of those sizes whose arrays hold no values (the state is
abstract, so only shapes matter) and the step is compiled for a batch of ``input.batch_size``
(user, item) int32 pairs. Methods that need side information (the two-tower model's item
features) cannot be sized this way yet and say so. With 10^7 items at d = 64 a float32 table is
2.56 GB, x3 with Adam's moments: shard it over the devices with the ``rows`` rule
(``ssljax.sharding``), e.g. ``--config.sharding_rules='(("item_embedding|user_embedding",
"rows"), (".*", "replicate"))'``; the catalogue's sizes must then divide by the device count.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from ssljax.tools import cli  # noqa: E402

# What the input pipeline yields per data set: (image shape, classes, train examples). Data sets
# whose images are resized on the host (imagenet2012, imagenette, folder) use input.data.image_size.
_KNOWN_DATA = {
    "digits": ((8, 8, 1), 10, 1347),
    "ssljax_digits": ((8, 8, 1), 10, 1347),
    "cifar10": ((32, 32, 3), 10, 50_000),
    "cifar100": ((32, 32, 3), 100, 50_000),
    "stl10": ((96, 96, 3), 10, 5_000),
    "imagenette": (None, 10, 9_469),
    "imagenet2012": (None, 1000, 1_281_167),
}
_RESIZED = ("imagenet2012", "imagenette", "folder")
_DEFAULT_CLASSES, _DEFAULT_TRAIN = 1000, 1_281_167  # Unknown data: ImageNet-sized (upper bound).
_MARK = "SSLJAX_PLAN_JSON "
_CONFIG = _DEVICES = _JSON = _CHILD = None  # absl flag holders, set by _define_flags().
_USERS = _ITEMS = _INTERACTIONS = _MEMORY = None
_INTERACTIONS_PER_USER = 10  # --num_interactions' default, per user.
NOTE = ("the accelerator graph (cpu_kernels off: no XLA:CPU-only ops) compiled by the CPU "
        "compiler on fake devices: memory is an estimate (GPU/TPU buffer assignment and fusion "
        "differ; temp is usually an upper bound), flops are XLA's HLO count per device; peak = "
        "argument + output + temp - alias")


def parse_devices(text: str) -> list[int]:
  """``'8,64,256'`` -> ``[8, 64, 256]``; a ConfigError for empty, non-integer or < 1 entries."""
  from ssljax.errors import ConfigError

  counts = []
  for item in str(text).split(","):
    item = item.strip()
    try:
      count = int(item)
    except ValueError:
      count = 0
    if count < 1:
      raise ConfigError(f"--devices={text}: entry {item!r} is not a positive integer; pass a "
                        "comma-separated list such as --devices=8,64,256")
    counts.append(count)
  return counts


_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30,
          "gib": 2**30, "t": 2**40, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9,
          "tb": 10**12}


def parse_memory(text: str) -> int:
  """``'80GiB'`` -> bytes. K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000;
  a bare number is bytes. A ConfigError naming ``--memory`` for anything else."""
  from ssljax.errors import ConfigError

  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
  if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
    raise ConfigError(f"--memory={text}: give the memory of one device as a positive size, e.g. "
                      "--memory=80GiB (units B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)")
  return int(float(match.group(1)) * _UNITS[match.group(2)])


class Catalogue(NamedTuple):
  """The sizes of a recommendation data set that size its model (``--num_users`` ...)."""

  num_users: int
  num_items: int
  num_interactions: int  # Training interactions.


def catalogue_of(config, num_users: int = 0, num_items: int = 0,
                 num_interactions: int = 0) -> Catalogue | None:
  """The catalogue flags checked against the config: a Catalogue for interaction data, None else.

  Raises:
    ConfigError: interaction data without ``--num_users`` / ``--num_items``, a size < 1, or
      catalogue flags for data that are not interactions.
  """
  from ssljax.data import interactions
  from ssljax.errors import ConfigError

  name = str(config.input.data.name)
  given = any(int(v) for v in (num_users, num_items, num_interactions))
  if not interactions.is_interactions(name):
    if given:
      raise ConfigError(f"--num_users/--num_items/--num_interactions size recommendation data, "
                        f"but input.data.name={name!r} is not interactions; leave them out")
    return None
  if int(num_users) < 1 or int(num_items) < 1 or int(num_interactions) < 0:
    raise ConfigError(f"input.data.name={name!r} holds interactions: plan sizes the model from "
                      "its catalogue without reading it; pass --num_users=U and --num_items=I "
                      "(>= 1) and optionally --num_interactions=E (training interactions, "
                      f"default {_INTERACTIONS_PER_USER} per user)")
  interactions_ = int(num_interactions) or _INTERACTIONS_PER_USER * int(num_users)
  return Catalogue(int(num_users), int(num_items), interactions_)


def _zeros(n: int, dtype):
  """``n`` values that take no memory (a broadcast scalar): shapes are all a plan reads."""
  import numpy as np

  return np.broadcast_to(np.zeros((), dtype), (int(n),))


def sizing_interactions(name: str, cat: Catalogue):
  """A stand-in :class:`ssljax.data.interactions.Interactions` with ``cat``'s sizes.

  The splits hold ``E`` training and ``E / 8`` validation and test pairs (the 8:1:1 default);
  every array is a broadcast zero of the right length except the CSR row pointers (even rows),
  so a 10^8-interaction catalogue costs no memory here: the state that the method builds from
  them is abstract (``jax.eval_shape``), only shapes reach the compiler.
  """
  import numpy as np

  from ssljax.data import interactions

  class _Sized(interactions.Interactions):
    def csr(self, split):
      n = len(self.split(split)[0])
      rows = np.arange(self.num_users + 1, dtype=np.int64) * n // self.num_users
      return rows.astype(np.int32), _zeros(n, np.int32)

    def popularity(self):
      return _zeros(self.num_items, np.float32)

    def normalized_adjacency(self):
      n = 2 * len(self.split("train")[0])
      return {"rows": _zeros(n, np.int32), "cols": _zeros(n, np.int32),
              "weights": _zeros(n, np.float32)}

  held_out = max(1, cat.num_interactions // 8)
  pairs = {split: (_zeros(n, np.int32), _zeros(n, np.int32)) for split, n in (
      ("train", cat.num_interactions), ("valid", held_out), ("test", held_out))}
  return _Sized(name=name, num_users=cat.num_users, num_items=cat.num_items, pairs=pairs,
                user_ids=_zeros(cat.num_users, np.str_), item_ids=_zeros(cat.num_items, np.str_))


@contextlib.contextmanager
def _catalogue_data(config, cat: Catalogue | None):
  """Within: ``interactions.load`` gives :func:`sizing_interactions` (nothing is read)."""
  if cat is None:
    yield
    return
  from ssljax.data import interactions

  stand_in = sizing_interactions(str(config.input.data.name), cat)
  original = interactions.load
  interactions.load = lambda data_cfg: stand_in
  try:
    yield
  finally:
    interactions.load = original


def synthetic_info(config, cat: Catalogue | None = None):
  """A DatasetInfo for the recipe's data set without reading it (see the module docstring)."""
  from ssljax import data
  from ssljax.data import interactions

  name = str(config.input.data.name)
  if cat is not None:
    return data.DatasetInfo(name=name, num_classes=0, image_shape=None,
                            num_train=cat.num_interactions,
                            num_eval=max(1, cat.num_interactions // 8),
                            features=interactions.ELEMENT_SPEC, task="ranking",
                            cardinalities=(cat.num_users, cat.num_items))
  shape, classes, num_train = _KNOWN_DATA.get(name, (None, _DEFAULT_CLASSES, _DEFAULT_TRAIN))
  if shape is None:
    side = (int(config.input.data.image_size) if name in _RESIZED
            else int(config.input.image_size))
    shape = (side, side, 3)
  return data.DatasetInfo(name=name, num_classes=classes, image_shape=tuple(shape),
                          num_train=num_train, num_eval=1)


def _shard_bytes(leaf) -> int:
  shape = leaf.sharding.shard_shape(leaf.shape)
  return math.prod(shape) * leaf.dtype.itemsize


def plan_here(config, cat: Catalogue | None = None) -> dict:
  """Plans ``config`` on this process's devices (all of them); returns the JSON-able record.

  ``cat``: the catalogue of interaction data (:func:`catalogue_of`), which is then not read.
  """
  import jax
  import numpy as np

  from ssljax import sharding, train

  info = synthetic_info(config, cat)
  t0 = time.perf_counter()
  with config.unlocked():
    config.cpu_kernels = "false"  # Plan the accelerator graph, not the XLA:CPU workarounds.
  with warnings.catch_warnings(), _catalogue_data(config, cat):
    warnings.simplefilter("ignore")  # Nothing runs here, so the CPU-gradient warning is moot.
    run = train.build(config, info=info)
  batch_size = int(config.input.batch_size)
  batch_sh = sharding.batch_sharding(run.mesh)
  if info.image_shape is None:  # Interactions: (user, item) int32 pairs.
    batch = {k: jax.ShapeDtypeStruct((batch_size, *shape), dtype, sharding=batch_sh)
             for k, (shape, dtype) in info.element_spec.items()}
  else:
    batch = {
        "image": jax.ShapeDtypeStruct((batch_size, *info.image_shape), np.uint8,
                                      sharding=batch_sh),
        "label": jax.ShapeDtypeStruct((batch_size,), np.int32, sharding=batch_sh),
    }
  if train.label_fraction(config) < 1.0:
    batch["labelled"] = jax.ShapeDtypeStruct((batch_size,), np.bool_, sharding=batch_sh)
  t1 = time.perf_counter()
  lowered = run.step_fn.lower(run.abstract_state, batch)
  t2 = time.perf_counter()
  compiled = lowered.compile()
  t3 = time.perf_counter()

  state = run.abstract_state
  parts = {
      "params": state.params, "opt_state": state.opt_state, "method_state": state.method_state,
  }
  part_bytes = {k: sum(_shard_bytes(x) for x in jax.tree.leaves(v)) for k, v in parts.items()}
  state_bytes = sum(_shard_bytes(x) for x in jax.tree.leaves(state))
  leaf_bytes = {sharding.path_str(p): _shard_bytes(x)
                for p, x in jax.tree_util.tree_leaves_with_path(state)}
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))

  mem = compiled.memory_analysis()
  memory = {
      "argument": int(mem.argument_size_in_bytes), "output": int(mem.output_size_in_bytes),
      "temp": int(mem.temp_size_in_bytes), "alias": int(mem.alias_size_in_bytes),
      "generated_code": int(mem.generated_code_size_in_bytes),
  }
  peak = memory["argument"] + memory["output"] + memory["temp"] - memory["alias"]
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):  # Older JAX: one dict per program.
    cost = cost[0] if cost else {}
  flops = float((cost or {}).get("flops", float("nan")))
  devices = jax.device_count()
  data_shards = sharding.data_axis_size(run.mesh)
  catalogue = {} if cat is None else {
      "num_users": cat.num_users, "num_items": cat.num_items,
      "num_train_interactions": cat.num_interactions}
  batch_shape = [batch_size, *(info.image_shape or ())]
  return {
      "devices": devices, "backend": jax.default_backend(),
      "mesh": {str(k): int(v) for k, v in run.mesh.shape.items()},
      "method": str(config.method), "encoder": str(config.encoder.name), "cpu_kernels": False,
      "global_batch": batch_size, "batch_per_device": batch_size // data_shards,
      "batch_shape": batch_shape, "views": len(run.method.views),
      "modality": info.modality, **catalogue,
      "num_params": int(num_params),
      "state_bytes_per_device": int(state_bytes),
      **{f"{k}_bytes_per_device": int(v) for k, v in part_bytes.items()},
      "leaf_bytes_per_device": leaf_bytes,
      "memory_per_device": memory, "peak_bytes_per_device": int(peak),
      "flops_per_device": flops, "flops_global": flops * devices,
      "build_s": round(t1 - t0, 2), "lower_s": round(t2 - t1, 2), "compile_s": round(t3 - t2, 2),
  }


def _child_env(count: int) -> dict[str, str]:
  env = dict(os.environ)
  kept = [f for f in env.get("XLA_FLAGS", "").split()
          if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join([*kept, f"--xla_force_host_platform_device_count={count}"])
  env["JAX_PLATFORMS"] = "cpu"  # The fake devices are CPU devices, also on a GPU machine.
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return env


def plan_in_subprocess(count: int, argv: list[str]) -> dict:
  """Runs ``python -m ssljax.tools.plan <argv> --devices=<count> --_child``; returns its record.

  Raises:
    UserError: the child failed (its ``error:`` line, or its last stderr line if it crashed).
  """
  from ssljax.errors import UserError

  cmd = [sys.executable, "-m", "ssljax.tools.plan", *argv, f"--devices={count}", "--_child",
         "--nojson"]
  proc = subprocess.run(cmd, env=_child_env(count), capture_output=True, text=True)
  records = [line[len(_MARK):] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
  if proc.returncode == 0 and records:
    return json.loads(records[-1])
  lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
  last = lines[-1] if lines else f"no output (exit status {proc.returncode})"
  if last.startswith("error: "):
    raise UserError(f"{count} devices: {last[len('error: '):]}")
  raise UserError(f"planning for {count} devices crashed (exit status {proc.returncode}): {last}")


def _size(n: float) -> str:
  for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(n) >= scale:
      return f"{n / scale:.2f} {unit}"
  return f"{int(n)} B"


def _flops(n: float) -> str:
  for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
    if abs(n) >= scale:
      return f"{n / scale:.2f} {unit}"
  return f"{n:.0f}"


def format_table(records: list[dict]) -> str:
  """One aligned text table of plan records, one row per device count."""
  header = ["devices", "batch/dev", "state/dev", "argument", "output", "temp", "alias", "code",
            "peak/dev", "flops/dev", "flops/step", "compile_s"]
  rows = [header]
  for r in records:
    m = r["memory_per_device"]
    rows.append([str(r["devices"]), str(r["batch_per_device"]), _size(r["state_bytes_per_device"]),
                 _size(m["argument"]), _size(m["output"]), _size(m["temp"]), _size(m["alias"]),
                 _size(m["generated_code"]), _size(r["peak_bytes_per_device"]),
                 _flops(r["flops_per_device"]), _flops(r["flops_global"]),
                 f"{r['lower_s'] + r['compile_s']:.1f}"])
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def _describe(config, records: list[dict]) -> str:
  r = records[0]
  rules = [tuple(x) for x in config.sharding_rules]
  dtype = config.get("compute_dtype", "float32")
  if r.get("modality") == "interactions":
    examples = (f"(user, item) pairs; {r['num_users']:,} users, {r['num_items']:,} items, "
                f"{r['num_train_interactions']:,} training interactions (not read)")
  else:
    examples = f"{'x'.join(str(d) for d in r['batch_shape'][1:])} uint8"
  return (f"plan: {r['method']} / {r['encoder']}, global batch {r['global_batch']} of "
          f"{examples}, {r['views']} views, "
          f"{r['num_params']:,} params, compute {dtype}, sharding_rules {rules}")


def fit_line(record: dict, memory: int) -> str:
  """Whether ``record``'s estimated peak (and its state) fits ``memory`` bytes per device."""
  peak, state = record["peak_bytes_per_device"], record["state_bytes_per_device"]
  n = record["devices"]
  head = (f"{n} devices: peak {_size(peak)} (state {_size(state)}: params "
          f"{_size(record['params_bytes_per_device'])}, optimizer "
          f"{_size(record['opt_state_bytes_per_device'])}, method state "
          f"{_size(record['method_state_bytes_per_device'])}) per device")
  if peak <= memory:
    return f"fits: {head} <= {_size(memory)}"
  return (f"does not fit: {head} > {_size(memory)}; use more devices, shard the largest leaves "
          "(sharding_rules 'fsdp', or 'rows' for embedding tables) or a smaller batch")


def _define_flags() -> None:
  """Defines the command's flags (only when run as a command, so importing this module is free)."""
  global _CONFIG, _DEVICES, _JSON, _CHILD
  _CONFIG = cli.define_config_flag()
  _DEVICES = flags.DEFINE_string("devices", "8", "Comma-separated device counts, e.g. 8,64,256.")
  _JSON = flags.DEFINE_bool("json", False, "Print one JSON document instead of the table.")
  _CHILD = flags.DEFINE_bool("_child", False, "Internal: plan one count in this process.")
  global _USERS, _ITEMS, _INTERACTIONS, _MEMORY
  _USERS = flags.DEFINE_integer("num_users", 0, "Recommendation data: users U (not read).")
  _ITEMS = flags.DEFINE_integer("num_items", 0, "Recommendation data: items I (not read).")
  _INTERACTIONS = flags.DEFINE_integer(
      "num_interactions", 0,
      f"Recommendation data: training interactions (0: {_INTERACTIONS_PER_USER} per user).")
  _MEMORY = flags.DEFINE_string("memory", "", "Memory of one device, e.g. 80GiB: say whether "
                                "the plan fits it.")
  flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ssljax.errors import UserError

  config = cli.load_config(_CONFIG, sys.argv)
  try:
    cat = catalogue_of(config, _USERS.value, _ITEMS.value, _INTERACTIONS.value)
    memory = parse_memory(_MEMORY.value) if _MEMORY.value else None
    if _CHILD.value:
      print(_MARK + json.dumps(plan_here(config, cat)), flush=True)
      return
    counts = parse_devices(_DEVICES.value)
    passed = sys.argv[1:]  # The child's own --devices/--nojson come last and win.
    records = []
    for count in counts:
      print(f"compiling for {count} devices ...", file=sys.stderr, flush=True)
      records.append(plan_in_subprocess(count, passed))
      r = records[-1]
      print(f"  {count} devices: compiled in {r['lower_s'] + r['compile_s']:.1f} s",
            file=sys.stderr, flush=True)
  except UserError as e:
    cli.fail(str(e))
  if memory is not None:
    for r in records:
      r["memory_limit_bytes"] = memory
      r["fits"] = bool(r["peak_bytes_per_device"] <= memory)
  if _JSON.value:
    print(json.dumps({"note": NOTE, "plans": records}, indent=1))
  else:
    print(_describe(config, records))
    print(format_table(records))
    for r in records if memory is not None else ():
      print(fit_line(r, memory))
    print(f"note: {NOTE}")


def run_command() -> None:
  """``python -m ssljax.plan`` / ``python -m ssljax.tools.plan``: flags, then :func:`main`."""
  _define_flags()
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, flags.FLAGS))


if __name__ == "__main__":
  run_command()
