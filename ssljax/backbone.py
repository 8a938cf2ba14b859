"""Pretrained backbones as a product: restore, export, load, start from.

A method says where its backbone is (``Method.backbone``: the module and its variables inside the
training state). From a run's workdir:

* :func:`restore` reads a checkpoint's parameters and method state only (an Orbax partial
  restore: no optimiser state, no data iterator, no training data), with the config and the data's
  description the run wrote (``config.json``, ``data_info.json``);
* :func:`export` writes the backbone to a folder: ``variables.msgpack`` (flax msgpack of
  ``{"params": ..., "batch_stats": ...}``), ``backbone.json`` (what rebuilds it: the run's config
  and data description, the feature width, the input it reads) and, for ResNet-18/34/50,
  ``torchvision_<arch>.npz``, a PyTorch ``state_dict`` in torchvision's names and layouts;
* :func:`load_backbone` returns a pure ``apply(variables, x) -> [B, F]`` and the variables;
* :func:`start_from` puts an exported backbone into a freshly initialised state
  (``encoder.init_from``): every copy of the backbone in it (an EMA teacher's too).

Load in PyTorch (no ssljax needed)::

    import numpy as np, torch, torchvision
    model = torchvision.models.resnet50()
    state = {k: torch.from_numpy(v) for k, v in np.load("out/torchvision_resnet50.npz").items()}
    model.load_state_dict(state, strict=False)   # no fc: it is a backbone
    model.fc = torch.nn.Identity()

A ResNet with the ``cifar`` stem (3x3 conv, no max-pool) carries the same names; replace
``model.conv1`` with ``torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)`` and ``model.maxpool`` with
``torch.nn.Identity()`` before loading (``backbone.json`` says so under ``torchvision``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from etils import epath

from ssljax import methods
from ssljax.errors import CheckpointError, ConfigError, UserError

PyTree = Any
FORMAT = "ssljax-backbone"
FORMAT_VERSION = 1
VARIABLES_FILE = "variables.msgpack"
META_FILE = "backbone.json"
DATA_INFO_FILE = "data_info.json"


# ------------------------------------------------------------------------------ data description


def info_to_json(info) -> dict:
  """A :class:`ssljax.data.DatasetInfo` as JSON (what rebuilds a method without the data)."""
  return dataclasses.asdict(info)


def info_from_json(obj: dict):
  """The inverse of :func:`info_to_json`."""
  from ssljax.data import DatasetInfo

  fields = dict(obj)
  if fields.get("image_shape") is not None:
    fields["image_shape"] = tuple(fields["image_shape"])
  fields["features"] = tuple((str(n), tuple(s), str(d)) for n, s, d in fields.get("features", ()))
  fields["cardinalities"] = tuple(int(c) for c in fields.get("cardinalities", ()))
  return DatasetInfo(**fields)


# --------------------------------------------------------------------------------------- restore


class Restored(NamedTuple):
  """A run's method and trained variables, read back from its workdir."""

  config: mlc.ConfigDict
  info: Any  # DatasetInfo
  method: methods.Method
  params: PyTree  # the method's (``TrainState.params["method"]``)
  method_state: PyTree
  step: int


def config_from_json(obj: dict) -> mlc.ConfigDict:
  """A config written as JSON, its lists turned back into the tuples experiment files use (so
  ``--config.<field>='(a, b)'`` overrides work on it)."""

  def tuples(value):
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  return mlc.ConfigDict(tuples(obj))


def run_config(workdir) -> tuple[mlc.ConfigDict, dict]:
  """``(config, derived)`` from ``<workdir>/config.json`` (``derived``: the run's step counts)."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise CheckpointError(f"{workdir} has no config.json: it is not an ssljax run folder; pass "
                          "the --workdir of a run")
  resolved = json.loads(path.read_text())
  derived = resolved.pop("derived", {})
  return config_from_json(resolved), derived


def run_info(workdir, config):
  """The run's data description: ``data_info.json``, or the data itself for runs written before
  it existed."""
  path = epath.Path(workdir) / DATA_INFO_FILE
  if path.exists():
    return info_from_json(json.loads(path.read_text()))
  from ssljax import data

  return data.get_info(config.input.data)


def build_method(config, info, derived: dict | None = None) -> methods.Method:
  """The method of ``config`` for data described by ``info`` (no data read)."""
  derived = derived or {}
  return methods.make(config, total_steps=int(derived.get("total_steps", 1) or 1),
                      steps_per_epoch=int(derived.get("steps_per_epoch", 1) or 1),
                      num_classes=max(1, int(info.num_classes)), info=info)


def abstract_variables(method: methods.Method, info) -> tuple[PyTree, PyTree]:
  """Shapes of ``(params, method_state)`` that ``method.init`` builds for data like ``info``."""
  from ssljax import train

  def init(rng):
    return method.init(rng, train.example_view(method, info.element_spec))

  return jax.eval_shape(init, jax.random.key(0))


def checkpoint_steps(workdir) -> list[int]:
  """The finished checkpoint steps of a run, oldest first."""
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def restore(workdir, step: int | None = None) -> Restored:
  """The method, parameters and method state of ``workdir``'s checkpoint at ``step`` (latest).

  Reads only ``params`` and ``method_state`` (Orbax partial restore): not the optimiser state,
  not the data iterator, so it works on a machine that has only the run folder.

  Raises:
    CheckpointError: no config, no checkpoint, or one this config cannot read.
  """
  import orbax.checkpoint as ocp

  from ssljax import checkpoint
  from ssljax.writers import quiet_absl

  config, derived = run_config(workdir)
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"{workdir} has no checkpoint (checkpoints/<step>/ missing); train it "
                          "first or pass the --workdir of a run that saved one")
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise CheckpointError(f"{workdir} has no checkpoint at step {step}; it has {steps}")
  checkpoint.validate_directory(epath.Path(workdir) / "checkpoints", method=config.method)
  info = run_info(workdir, config)
  method = build_method(config, info, derived)
  params, method_state = abstract_variables(method, info)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  item = {"params": {"method": params}, "method_state": method_state}
  restore_args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=device, dtype=a.dtype),
                              item)
  path = epath.Path(workdir) / "checkpoints" / str(step) / "state"
  try:
    with quiet_absl():
      restored = ocp.PyTreeCheckpointer().restore(
          path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                            partial_restore=True))
  except Exception as e:  # noqa: BLE001 - one actionable line.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(f"cannot read the parameters of {path} ({first[:200]}); was it written "
                          "by this version of ssljax with this config.json?") from None
  _check_same_shapes(item, restored, where=str(path))
  return Restored(config, info, method, restored["params"]["method"], restored["method_state"],
                  step)


def _check_same_shapes(wanted, got, *, where: str) -> None:
  mismatch = first_mismatch(wanted, got)
  if mismatch:
    raise CheckpointError(f"{where}: {mismatch}; restore with the config.json that wrote it")


# ---------------------------------------------------------------------------------------- export


def backbone_variables(method: methods.Method, params, method_state) -> dict[str, PyTree]:
  """The backbone's variable collections inside a state (``Method.backbone``)."""
  if method.backbone is None:
    raise ConfigError(f"method={method.name!r} does not say where its backbone is "
                      "(Method.backbone); it cannot be exported")
  return method.backbone.variables(params, method_state)


def input_description(config, info) -> dict:
  """What the backbone reads, for a user feeding it outside ssljax."""
  if info.modality == "image":
    return {"modality": "image", "layout": "NHWC float32",
            "image_size": int(config.input.image_size),
            "mean": [float(v) for v in config.input.mean],
            "std": [float(v) for v in config.input.std],
            "note": "RGB in [0, 1], minus mean, divided by std; evaluation crops the centre "
                    f"{float(config.input.get('eval_crop_fraction', 1.0)):g} of the shorter side"}
  return {"modality": info.modality,
          "features": {name: {"shape": list(shape), "dtype": dtype}
                       for name, shape, dtype in info.features if name not in ("label", "mask")}}


def export(workdir, out, *, step: int | None = None, log: Callable[[str], None] = print) -> dict:
  """Writes ``workdir``'s backbone to the new folder ``out``; returns ``backbone.json``'s dict.

  Raises:
    UserError: ``out`` exists and is not empty (nothing is overwritten); the checkpoint cannot
      be read.
  """
  _check_free(out)
  run = restore(workdir, step)
  variables = backbone_variables(run.method, run.params, run.method_state)
  meta = write(out, run.method, run.config, run.info, variables, step=run.step, log=log)
  log(f"exported the {run.method.name} backbone of {workdir} at step {run.step} to {out} "
      f"({meta['feature_dim']}-d features" + (f"; {meta['torchvision']['file']}"
                                             if meta["torchvision"] else "") + ")")
  return meta


def _check_free(out) -> None:
  out = epath.Path(out)
  if out.exists() and any(out.iterdir()):
    raise UserError(f"--out={out} exists and is not empty; pass a new folder (nothing was "
                    "overwritten)")


def write(out, method: methods.Method, config, info, variables, *, step: int = 0,
          log: Callable[[str], None] = print) -> dict:
  """Writes backbone ``variables`` of ``method`` (built from ``config`` for data like ``info``)
  to the new folder ``out``: ``variables.msgpack``, ``backbone.json`` and, for a torchvision
  ResNet, ``torchvision_<arch>.npz``. Returns ``backbone.json``'s dict."""
  from ssljax import torchvision_export

  _check_free(out)
  out = epath.Path(out)
  variables = jax.tree.map(np.asarray, jax.device_get(variables))
  features = jax.eval_shape(lambda v, x: method.backbone.module.apply(v, x, train=False),
                            variables, _example_input(method, info))
  meta = {"format": FORMAT, "version": FORMAT_VERSION, "method": method.name, "step": int(step),
          "feature_dim": int(features.shape[-1]), "encoder": config.encoder.to_dict(),
          "input": input_description(config, info),
          "config": json.loads(config.to_json_best_effort()), "data_info": info_to_json(info),
          "collections": sorted(variables)}
  arch = torchvision_export.architecture(config)
  out.mkdir(parents=True, exist_ok=True)
  (out / VARIABLES_FILE).write_bytes(flax.serialization.msgpack_serialize(variables))
  if arch is None:
    meta["torchvision"] = None
    log(f"note: encoder.name={config.encoder.name!r} has no torchvision layout "
        f"({torchvision_export.WHY_NOT}); wrote the native format only")
  else:
    name = f"torchvision_{arch}.npz"
    np.savez(out / name, **torchvision_export.state_dict(variables, config))
    meta["torchvision"] = {"file": name, "architecture": arch,
                           "stem": str(config.encoder.get("stem", "imagenet")),
                           "note": torchvision_export.loading_note(config)}
  (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  return meta


def _example_input(method: methods.Method, info) -> PyTree:
  from ssljax import train

  return train.example_view(method, info.element_spec)


# ------------------------------------------------------------------------------------------ load


class Exported(NamedTuple):
  """An exported backbone: its module, variables and description (``backbone.json``)."""

  module: Any
  variables: dict[str, PyTree]
  meta: dict
  config: mlc.ConfigDict
  info: Any


def read(directory) -> Exported:
  """Reads an exported backbone folder (see :func:`export`).

  Raises:
    CheckpointError: the folder holds no backbone, or one that does not rebuild.
  """
  directory = epath.Path(directory)
  meta_path, var_path = directory / META_FILE, directory / VARIABLES_FILE
  if not meta_path.exists() or not var_path.exists():
    raise CheckpointError(f"{directory} holds no exported backbone ({META_FILE} and "
                          f"{VARIABLES_FILE} missing); write one with python -m ssljax.export "
                          "--workdir=<run> --out=<folder>")
  try:
    meta = json.loads(meta_path.read_text())
  except ValueError:
    raise CheckpointError(f"{meta_path} is not readable JSON; export the backbone again") from None
  if meta.get("format") != FORMAT:
    raise CheckpointError(f"{meta_path} is not an ssljax backbone (format "
                          f"{meta.get('format')!r})")
  config = config_from_json(meta["config"])
  info = info_from_json(meta["data_info"])
  method = build_method(config, info)
  module = method.backbone.module
  try:
    variables = flax.serialization.msgpack_restore(var_path.read_bytes())
  except Exception as e:  # noqa: BLE001
    raise CheckpointError(f"{var_path} is not readable ({type(e).__name__}); export the "
                          "backbone again") from None
  params, method_state = abstract_variables(method, info)
  wanted = backbone_variables(method, params, method_state)
  mismatch = first_mismatch(wanted, variables)
  if mismatch:
    raise CheckpointError(f"{var_path}: {mismatch}; it does not match the encoder its "
                          f"{META_FILE} describes")
  variables = jax.tree.map(jnp.asarray, variables)
  return Exported(module, variables, meta, config, info)


def load_backbone(directory) -> tuple[Callable[[PyTree, PyTree], jax.Array], dict[str, PyTree]]:
  """``(apply, variables)`` of an exported backbone: ``apply(variables, x)`` -> [B, F].

  ``x`` is what the backbone reads (``backbone.json``'s ``input``: for images, normalised NHWC
  float32 at ``image_size``). ``apply`` is pure and jit-able::

      apply, variables = ssljax.load_backbone("exported/")
      features = jax.jit(apply)(variables, images)
  """
  exported = read(directory)
  module = exported.module

  def apply(variables, x):
    return module.apply(variables, x, train=False)

  return apply, exported.variables


# ----------------------------------------------------------------------------------- start from


def first_mismatch(wanted: PyTree, got: PyTree) -> str | None:
  """The first difference in names or shapes between two variable trees, in words, or None."""
  from ssljax.sharding import path_str

  def flat(tree):
    return {path_str(p): _shape(a) for p, a in jax.tree_util.tree_leaves_with_path(tree)}

  want, have = flat(wanted), flat(got)
  # Trainable parameters first: "params/stem/conv/kernel" says more than a BatchNorm statistic.
  for name, shape in sorted(want.items(), key=lambda kv: not kv[0].startswith("params")):
    if name not in have:
      return f"parameter {name!r} {shape} is missing there"
    if have[name] != shape:
      return f"parameter {name!r} has shape {have[name]} there but {shape} here"
  extra = sorted(set(have) - set(want))
  if extra:
    return f"parameter {extra[0]!r} {have[extra[0]]} there has no counterpart here"
  return None


def _shape(a) -> tuple[int, ...]:
  return tuple(a.shape) if hasattr(a, "shape") else tuple(np.shape(a))


def _same_tree(a, b) -> bool:
  try:
    same = jax.tree.structure(a) == jax.tree.structure(b)
  except Exception:  # noqa: BLE001
    return False
  return same and all(_shape(x) == _shape(y)
                      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _replace_copies(tree, value):
  """``tree`` with every sub-dict shaped exactly like ``value`` replaced by ``value``."""
  if _same_tree(tree, value):
    # A copy each: two places holding one host array become one device buffer, which the
    # train step's donation then refuses ("donate the same buffer twice").
    return jax.tree.map(lambda a: np.array(a, copy=True), value), 1
  if isinstance(tree, dict):
    out, count = {}, 0
    for key, sub in tree.items():
      out[key], n = _replace_copies(sub, value)
      count += n
    return out, count
  return tree, 0


def check_fits(method: methods.Method, params, method_state, exported: Exported,
               directory) -> None:
  """CheckpointError unless ``exported`` has the names and shapes of the method's backbone
  (``params`` / ``method_state`` may be abstract)."""
  own = backbone_variables(method, params, method_state)
  mismatch = first_mismatch(own, exported.variables)
  if mismatch:
    raise CheckpointError(
        f"encoder.init_from={directory}: {mismatch} (exported "
        f"{exported.meta['encoder'].get('name')!r}); export a backbone of this run's encoder")


def start_from(method: methods.Method, params, method_state, directory,
               exported: Exported | None = None):
  """``(params, method_state)`` with the backbone exported in ``directory`` in place of every copy
  of the method's backbone (the online network's and, e.g., an EMA teacher's).

  Raises:
    CheckpointError: no backbone there, or one of another architecture (the first mismatching
      parameter and both shapes are named).
  """
  exported = read(directory) if exported is None else exported
  check_fits(method, params, method_state, exported, directory)
  state = {"params": params, "method_state": method_state}
  for collection, value in exported.variables.items():
    state, count = _replace_copies(state, value)
    if count == 0:
      raise CheckpointError(f"encoder.init_from={directory}: the backbone's {collection!r} "
                            "has no place in this method's state")
  return state["params"], state["method_state"]


def init_from_path(config) -> str | None:
  """``encoder.init_from`` when set (a folder written by :func:`export`), else None."""
  path = config.encoder.get("init_from") if "encoder" in config else None
  if not path:
    return None
  if not os.path.isdir(str(path)):
    raise ConfigError(f"encoder.init_from={path}: no such folder; pass a folder written by "
                      "python -m ssljax.export")
  return str(path)
