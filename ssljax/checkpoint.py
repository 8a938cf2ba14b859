"""Checkpoints: a thin wrapper over ``orbax.checkpoint.CheckpointManager``.

Each checkpoint step holds three items: ``state`` (the whole TrainState pytree), ``data`` (the grain
iterator's position, one JSON file per process, so a resumed run continues the exact data order)
and ``meta`` (a small JSON marker that says this is an ssljax checkpoint and of which method).
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from ssljax.errors import CheckpointError
from ssljax.sharding import path_str
from ssljax.writers import quiet_absl

FORMAT = "ssljax-checkpoint"
FORMAT_VERSION = 1
_ITEMS = ("state", "data", "meta")


def _step_dirs(directory: epath.Path) -> tuple[list[epath.Path], list[epath.Path]]:
  """Splits the entries of ``directory`` into finished step folders and anything else."""
  steps, others = [], []
  for child in directory.iterdir():
    name = child.name
    if ".orbax-checkpoint-tmp" in name:
      continue  # An interrupted save; Orbax cleans these up and never restores them.
    (steps if name.isdigit() and child.is_dir() else others).append(child)
  return steps, others


def validate_directory(directory: str | os.PathLike, *, method: str | None = None) -> int | None:
  """Checks that ``directory`` is absent, empty, or an ssljax checkpoint folder.

  Args:
    directory: the checkpoint folder (``<workdir>/checkpoints``).
    method: when given, the method the checkpoints must have been written by.

  Returns:
    The latest step found, or None when there is nothing to resume.

  Raises:
    CheckpointError: the folder holds something that is not an ssljax checkpoint (nothing in it is
      touched).
  """
  directory = epath.Path(directory)
  if not directory.exists():
    return None
  if not directory.is_dir():
    raise CheckpointError(
        f"{directory} is not a folder; pass a --workdir whose checkpoints/ is free")
  steps, others = _step_dirs(directory)
  if not steps and not others:
    return None
  hint = "pass a new --workdir (nothing in it was changed)"
  if others or not steps:
    bad = sorted(p.name for p in others)[:3]
    raise CheckpointError(f"{directory} is not an ssljax checkpoint folder (found {bad}); {hint}")
  latest = max(steps, key=lambda p: int(p.name))
  meta_file = latest / "meta" / "metadata"
  try:
    meta = json.loads(meta_file.read_text())
  except Exception:  # noqa: BLE001 - any unreadable marker means "not ours".
    raise CheckpointError(
        f"{latest} is not an ssljax checkpoint (no readable {meta_file.name} marker); {hint}"
    ) from None
  if meta.get("format") != FORMAT:
    raise CheckpointError(
        f"{latest} is not an ssljax checkpoint (format {meta.get('format')!r}); {hint}")
  if method is not None and meta.get("method") != method:
    raise CheckpointError(
        f"{latest} was written by method {meta.get('method')!r}, not {method!r}; {hint}"
    )
  return int(latest.name)


class Checkpointer:
  """Saves and restores (TrainState, data iterator) pairs in ``directory``.

  Args:
    directory: where checkpoints live (``<workdir>/checkpoints``).
    method: the method name, written to each checkpoint's marker and checked on restore.
    every_steps: periodic save interval (``save(..., force=True)`` saves regardless).
    keep: how many checkpoints to keep.
  """

  def __init__(self, directory: str | os.PathLike, *, method: str, every_steps: int, keep: int):
    self.directory = epath.Path(directory)
    self.method = method
    self.latest_step = validate_directory(self.directory, method=method)
    self.every_steps = max(1, int(every_steps))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, int(keep)),
        save_interval_steps=max(1, int(every_steps)),
        create=True,
        # The state must be safe on disk before a SIGTERM handler exits the process.
        enable_async_checkpointing=False,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  def should_save(self, step: int) -> bool:
    """Whether ``step`` is on the periodic save interval (Orbax's own also saves the first step)."""
    return step > 0 and step % self.every_steps == 0

  def save(self, step: int, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
    """Saves at ``step`` if the interval says so (or ``force``); returns whether it saved."""
    if not force and not self.should_save(step):
      return False
    if step in self._manager.all_steps():
      return False  # Never overwrite a checkpoint that exists.
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method, "step": int(step)}
    saved = self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            meta=ocp.args.JsonSave(meta),
        ),
        force=force,
    )
    self._manager.wait_until_finished()
    return bool(saved)

  def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
    """Restores ``step`` into the structure/shardings of ``abstract_state``; moves the iterator."""
    self._check_shapes(step, abstract_state)
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state),
              data=grain.checkpoint.CheckpointRestore(data_iterator),
          ),
      )
    except Exception as e:  # noqa: BLE001 - surface as one actionable line.
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise CheckpointError(
          f"cannot restore {self.directory / str(step)} into this config ({first[:200]}); "
          "resume with the config that wrote it, or pass a new --workdir"
      ) from None
    return restored["state"]

  def _check_shapes(self, step: int, abstract_state: Any) -> None:
    """Compares stored array shapes with the config's before restoring (a failed Orbax restore
    leaves background tasks that print tracebacks at exit)."""
    path = self.directory / str(step) / "state"
    try:
      with quiet_absl():
        stored = ocp.StandardCheckpointer().metadata(path).item_metadata
      stored_shapes = {path_str(p): tuple(m.shape) for p, m in
                       jax.tree_util.tree_leaves_with_path(stored)}
    except Exception:  # noqa: BLE001 - no readable metadata: let restore() report it.
      return
    wanted = {path_str(p): tuple(a.shape) for p, a in
              jax.tree_util.tree_leaves_with_path(abstract_state)}
    hint = "resume with the config that wrote it, or pass a new --workdir"
    for name, shape in wanted.items():
      if name in stored_shapes and stored_shapes[name] != shape:
        raise CheckpointError(
            f"{path} holds {name} with shape {stored_shapes[name]} but this config builds "
            f"{shape}; {hint}")
    if len(stored_shapes) != len(wanted):
      raise CheckpointError(f"{path} holds {len(stored_shapes)} arrays but this config builds "
                            f"{len(wanted)}; {hint}")

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
