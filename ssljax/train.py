"""The trainer: one readable file, in the order a run happens.

Sections: state, step, setup (mesh, input, model, shardings, checkpoint), evaluation, loop.
``train_step`` is a module-level pure function, so a notebook or benchmark can jit it directly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from jax.experimental import multihost_utils

from ssljax import backbone, checkpoint, data, methods, optim, sharding, writers
from ssljax.data import augment, checks
from ssljax.data import bss as batch_style
from ssljax.errors import CheckpointError, ConfigError, UserError
from ssljax.evals.evaluator import Evaluator

PyTree = Any


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue; Orbax saves it whole.

  ``params`` is ``{"method": ...}`` plus ``"online_probe"`` when the online probe is on;
  ``method_state`` holds what gradients never reach (BatchNorm statistics, EMA teachers, ...).
  """

  step: jax.Array
  rng: jax.Array
  params: PyTree
  opt_state: PyTree
  method_state: PyTree


NOT_FEATURES = ("label", "labelled", "mask")  # Batch keys that views never read.


def example_batch(element_spec, batch_size: int = 2) -> dict[str, jax.Array]:
  """Zeros shaped like a batch of the data's features (the element spec less its labels)."""
  return {k: jnp.zeros((batch_size, *shape), dtype) for k, (shape, dtype) in element_spec.items()
          if k not in NOT_FEATURES}


def example_view(method: methods.Method, element_spec, batch_size: int = 2) -> PyTree:
  """Zeros shaped like the method's first view of an example batch: what its encoder reads.

  Only the view's output shape is computed (``jax.eval_shape``), so no augmentation is compiled.
  """
  shapes = jax.eval_shape(method.views[0], jax.random.key(0),
                          example_batch(element_spec, batch_size))
  return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)


def init_state(rng: jax.Array, *, method: methods.Method, tx: optax.GradientTransformation,
               element_spec, num_classes: int, online_probe: bool) -> TrainState:
  """Creates the initial TrainState (jit it with ``out_shardings`` to create it sharded).

  ``method.init`` receives an example of its first view, built from the data's ``element_spec``
  (:func:`example_view`), so neither the trainer nor a method assumes images.
  """
  init_rng, state_rng = jax.random.split(rng)
  # Parameter initialisers draw from an RBG key: XLA compiles threefry for every parameter of a
  # ResNet several times slower on CPU, and the initial values need no sharding invariance.
  init_rng = jax.random.wrap_key_data(jax.random.bits(init_rng, (4,), jnp.uint32), impl="rbg")
  example = example_view(method, element_spec)
  params, method_state = method.init(init_rng, example)
  params = {"method": params}
  if online_probe:
    rep = method.represent(params["method"], method_state, example)
    feat = rep["representation"].shape[-1]
    params["online_probe"] = {
        "kernel": jnp.zeros((feat, num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=state_rng,
      params=params,
      opt_state=tx.init(params),
      method_state=method_state,
  )


# ---------------------------------------------------------------------------------------------
# Step
# ---------------------------------------------------------------------------------------------


def make_views(rng: jax.Array, batch, view_fns, *,
               bss: tuple[float, float] | None = None, step=None,
               plain_view_steps: int = 0) -> list[PyTree]:
  """Applies each view function ``(rng, batch) -> view`` to the batch, each with its own key.

  ``batch`` is the dict of features (an array is taken as ``{"image": array}``); label keys are
  not passed on. Image views (``augment.ViewRecipe``) augment on device. ``bss=(r_min, r_max)``
  then standardises each image view's batch style (Fourier amplitude, BSS), every view with its
  own reference image and area ratio (``input.bss``). While ``step < plain_view_steps``
  (``input.plain_view_epochs``) each image view is instead its recipe's
  :func:`augment.plain_view` (the whole image, no augmentation); both are computed and one is
  selected, as XLA:CPU runs a ``where`` faster than a ``cond``.
  """
  if not isinstance(batch, dict):
    batch = {"image": batch}
  features = {k: v for k, v in batch.items() if k not in NOT_FEATURES}
  views = []
  for i, view_fn in enumerate(view_fns):
    view_rng = jax.random.fold_in(rng, i)
    view = view_fn(view_rng, features)
    if bss is not None and isinstance(view_fn, augment.ViewRecipe):
      view = batch_style.standardize_batch_style(
          jax.random.fold_in(view_rng, 1 << 20), view, r_min=bss[0], r_max=bss[1])
    if plain_view_steps > 0 and isinstance(view_fn, augment.ViewRecipe):
      plain = augment.plain_view(view_fn)(view_rng, features)
      view = jnp.where(jnp.asarray(step) < plain_view_steps, plain, view)
    views.append(view)
  return views


def visible_labels(batch: dict[str, jax.Array]) -> jax.Array:
  """The batch's labels with -1 where ``input.label_fraction`` hides them (int32 [B]).

  All -1 for data without labels (or with regression targets, which no classifier reads).
  """
  if "label" not in batch or not jnp.issubdtype(batch["label"].dtype, jnp.integer):
    size = next(iter(jax.tree.leaves(batch))).shape[0]
    return jnp.full((size,), -1, jnp.int32)
  labels = batch["label"]
  if "labelled" in batch:
    labels = jnp.where(batch["labelled"], labels, -1)
  return labels


def _online_probe_loss(probe, rep_bf, labels_b):
  """Linear probe on the stopped representation; only visible labels (>= 0) count."""
  logits = jax.lax.stop_gradient(rep_bf).astype(jnp.float32) @ probe["kernel"] + probe["bias"]
  seen = (labels_b >= 0).astype(jnp.float32)
  count = jnp.maximum(seen.sum(), 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels_b, 0))
  top1 = jnp.sum((jnp.argmax(logits, -1) == labels_b) * seen) / count
  return jnp.sum(ce * seen) / count, top1


def _microbatches(x: jax.Array, k: int) -> jax.Array:
  """[B, ...] -> [k, B / k, ...]; microbatch j takes rows j, j + k, j + 2k, ...

  Strided rather than contiguous, so that every device's rows of a ``data``-sharded batch stay on
  that device (each microbatch is itself evenly sharded; no data moves between devices).
  """
  return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, method: methods.Method,
               tx: optax.GradientTransformation, bss: tuple[float, float] | None = None,
               grad_accum_steps: int = 1,
               plain_view_steps: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on a global batch: augment, loss, update, method update.

  Args:
    state: the current TrainState.
    batch: the data's features as global arrays (images: ``{"image": uint8 [B, H, W, C],
      "label": int32 [B]}``; tables: ``x_num`` / ``x_cat``; ``label`` only for labelled data),
      plus ``"labelled"`` bool [B] when ``input.label_fraction`` < 1.
    method: the method's functions (static).
    tx: the optimiser (static).
    bss: ``(r_min, r_max)`` of batch style standardisation, or None (static).
    plain_view_steps: steps at the start whose image views are un-augmented (static; see
      :func:`make_views`).
    grad_accum_steps: k > 1 splits the augmented batch into k microbatches of B / k, runs the
      loss and its gradient on each in turn (``lax.scan``: activations of one microbatch live at a
      time) and applies the mean gradient once. State the loss threads through (BatchNorm
      statistics) is carried from one microbatch to the next. For a loss that is a mean of
      per-sample terms with no batch statistics this equals the big-batch step; losses over the
      batch (contrastive negatives, cross-correlations, BatchNorm) see B / k samples at a time.

  Returns:
    The new state and a dict of scalar metrics (``loss``, method metrics, ``finite``); with
    microbatches each is the mean over them.
  """
  rng = jax.random.fold_in(state.rng, state.step)  # A resumed run draws the same numbers.
  view_rng, loss_rng = jax.random.split(rng)
  views = make_views(view_rng, batch, method.views, bss=bss, step=state.step,
                     plain_view_steps=plain_view_steps)
  labels = visible_labels(batch)

  def loss_fn(params, method_state, views, labels, rng):
    label_kwargs = {"labels": labels} if method.uses_labels or method.metric_labels else {}
    loss, (method_state, metrics, rep) = method.loss(
        params["method"], method_state, views, rng, **label_kwargs)
    total = loss
    metrics = dict(metrics)
    if "online_probe" in params:
      probe_loss, probe_top1 = _online_probe_loss(params["online_probe"], rep, labels)
      total = total + probe_loss
      metrics.update(online_probe_loss=probe_loss, online_probe_top1=probe_top1)
    return total, (loss, method_state, metrics)

  grad_fn = jax.grad(loss_fn, has_aux=True)
  if grad_accum_steps == 1:
    grads, (loss, method_state, metrics) = grad_fn(
        state.params, state.method_state, views, labels, loss_rng)
  else:
    k = grad_accum_steps

    def micro(carry, xs):
      grad_sum, method_state = carry
      views_j, labels_j, j = xs
      grads, (loss, method_state, metrics) = grad_fn(
          state.params, method_state, views_j, labels_j, jax.random.fold_in(loss_rng, j))
      grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
      return (grad_sum, method_state), (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    xs = ([jax.tree.map(lambda a: _microbatches(a, k), v) for v in views],
          _microbatches(labels, k), jnp.arange(k))
    (grad_sum, method_state), (losses, metrics) = jax.lax.scan(
        micro, (zeros, state.method_state), xs)
    grads = jax.tree.map(lambda g: g / k, grad_sum)
    loss = jnp.mean(losses)
    metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  method_state = method.update(params["method"], method_state, state.step)
  grad_norm = optax.global_norm(grads)
  # Params too: a finite loss with an overflowing update would otherwise be checkpointed as good.
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(params))
  metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": finite}
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            method_state=method_state)
  return new_state, metrics


# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
  """Everything built from a config before the loop starts."""

  config: Any
  mesh: jax.sharding.Mesh
  method: methods.Method
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  info: data.DatasetInfo
  total_steps: int
  steps_per_epoch: int
  state_shardings: PyTree
  abstract_state: PyTree
  init_fn: Any
  step_fn: Any
  # encoder.init_from: (folder, backbone.Exported) that create_state starts the backbone from.
  init_from: Any = None


def total_steps_of(config, steps_per_epoch: int) -> int:
  """``total_steps`` when it is positive, else ``total_epochs`` worth of steps."""
  if int(config.total_steps) > 0:
    return int(config.total_steps)
  if float(config.total_epochs) <= 0:
    raise ConfigError("set total_steps > 0 or total_epochs > 0 (both are <= 0)")
  return max(1, int(math.ceil(float(config.total_epochs) * steps_per_epoch)))


def build(config, info: data.DatasetInfo | None = None) -> Run:
  """Mesh, data info, method, optimiser, shardings and the jitted step for ``config``.

  Args:
    config: the experiment config.
    info: the data set's DatasetInfo; read from the data set when None (benchmarks pass a
      synthetic one so they need no data).
  """
  mesh = sharding.make_mesh(config.mesh)
  batch_size = int(config.input.batch_size)
  if batch_size <= 0:
    raise ConfigError(f"input.batch_size={batch_size} must be positive")
  sharding.check_batch_divides(batch_size, mesh, jax.process_count())
  accum = accum_steps_of(config, mesh)
  label_fraction(config)  # A bad value fails here, before anything compiles.
  info = data.get_info(config.input.data) if info is None else info
  steps_per_epoch = max(1, info.num_train // batch_size)
  total = total_steps_of(config, steps_per_epoch)
  method = methods.make(config, total_steps=total, steps_per_epoch=steps_per_epoch,
                        num_classes=info.num_classes, info=info)
  check_views_fit_data(method, info)
  if method.uses_labels and info.task != "classification":
    raise ConfigError(f"method={method.name!r} trains a classifier but {info.name!r} has no class "
                      "labels here; use labelled data (input.data.labels=True)")
  online_probe = bool(config.eval.online_probe)
  if online_probe and (info.task != "classification" or info.num_classes < 1):
    writers.info(f"note: eval.online_probe is off: {info.name!r} has no class labels here",
                 enabled=jax.process_index() == 0)
    online_probe = False
  tx, schedule = optim.make_optimizer(config.optim, total_steps=total,
                                      steps_per_epoch=steps_per_epoch,
                                      global_batch_size=batch_size,
                                      separate=probe_optimizers(config) if online_probe else None)
  if method.optimizer is not None:
    tx = method.optimizer(tx)
  init_fn = functools.partial(init_state, method=method, tx=tx, element_spec=info.element_spec,
                              num_classes=info.num_classes, online_probe=online_probe)
  rng = jax.random.PRNGKey(int(config.seed))
  abstract = jax.eval_shape(init_fn, rng)
  state_sh = sharding.tree_shardings(abstract, mesh, config.sharding_rules)
  step_fn = jax.jit(
      functools.partial(train_step, method=method, tx=tx, bss=bss_setting(config),
                        grad_accum_steps=accum,
                        plain_view_steps=plain_view_steps(config, method, steps_per_epoch)),
      in_shardings=(state_sh, sharding.batch_sharding(mesh)),
      out_shardings=(state_sh, sharding.replicated(mesh)),
      donate_argnums=(0,),
  )
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_sh)
  init_from = None
  folder = backbone.init_from_path(config)
  if folder is not None:  # Checked here, before a workdir exists: a wrong folder is one line.
    exported = backbone.read(folder)
    backbone.check_fits(method, abstract.params["method"], abstract.method_state, exported,
                        folder)
    init_from = (folder, exported)
  return Run(config, mesh, method, tx, schedule, info, total, steps_per_epoch, state_sh, abstract,
             init_fn, step_fn, init_from)


def check_views_fit_data(method: methods.Method, info: data.DatasetInfo) -> None:
  """ConfigError when a view of the method reads another modality than the data holds."""
  for view in method.views:
    wanted = getattr(view, "modality", None)
    if wanted is not None and wanted != info.modality:
      raise ConfigError(
          f"method={method.name!r} makes {wanted} views but input.data.name={info.name!r} holds "
          f"{info.modality} data; use a method for {info.modality} data (tables: t_jepa, scarf; "
          "time series: ts2vec, tloss) "
          f"or {wanted} data")


def probe_optimizers(config) -> dict[str, optax.GradientTransformation] | None:
  """The online probe's own optimiser (``eval.online_probe_*``) when the probe is on.

  Its parameters sit apart from the method's (``params["online_probe"]``), so the backbone's LARS,
  weight decay and warm-up never reach them (solo-learn's classifier parameter group).
  """
  ev = config.eval
  if not bool(ev.online_probe):
    return None
  return {"online_probe": optim.probe_optimizer(
      str(ev.get("online_probe_optimizer", "sgd")), lr=ev.get("online_probe_lr", 0.1),
      momentum=ev.get("online_probe_momentum", 0.9))}


def accum_steps_of(config, mesh: jax.sharding.Mesh) -> int:
  """``grad_accum_steps`` (1 when absent), checked to split the batch evenly over devices."""
  k = config.get("grad_accum_steps", 1)
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise ConfigError(f"grad_accum_steps={k!r} must be an integer >= 1 (1 = no accumulation)")
  batch_size = int(config.input.batch_size)
  n = sharding.data_axis_size(mesh)
  if batch_size % (k * n):
    raise ConfigError(
        f"input.batch_size={batch_size} does not split into grad_accum_steps={k} microbatches over "
        f"{n} data-parallel devices; use a batch size that is a multiple of {k * n}")
  return k


def label_fraction(config) -> float:
  """``input.label_fraction`` (1 when the config has none), checked to be in (0, 1]."""
  return checks.check_label_fraction(config.input.get("label_fraction", 1.0))


def bss_setting(config) -> tuple[float, float] | None:
  """``(r_min, r_max)`` when ``input.bss.enabled`` (0 <= r_min <= r_max <= 1), else None."""
  cfg = config.input.get("bss")
  if cfg is None or not bool(cfg.enabled):
    return None
  return batch_style.check_bss_config(cfg, where="input.bss")


def plain_view_steps(config, method, steps_per_epoch: int) -> int:
  """Steps of ``input.plain_view_epochs`` (0 when the config has none), checked.

  Raises:
    ConfigError: a negative or non-numeric value, or a value > 0 for a method without image
      views (only image views have a plain version).
  """
  epochs = config.input.get("plain_view_epochs", 0.0)
  if isinstance(epochs, bool) or not isinstance(epochs, int | float) or not epochs >= 0:
    raise ConfigError(f"input.plain_view_epochs={epochs!r} must be a number of epochs >= 0 "
                      "(0: augmented views from the first step)")
  if epochs > 0 and not any(isinstance(v, augment.ViewRecipe) for v in method.views):
    raise ConfigError(f"input.plain_view_epochs={epochs!r} applies to image views, and "
                      f"method={method.name!r} has none here; set it to 0")
  return int(round(float(epochs) * steps_per_epoch))


def create_state(run: Run) -> TrainState:
  """The initial state, created already sharded; with ``encoder.init_from`` every copy of the
  backbone in it holds the exported backbone (:func:`ssljax.backbone.start_from`)."""
  rng = jax.random.PRNGKey(int(run.config.seed))
  state = jax.jit(run.init_fn, out_shardings=run.state_shardings)(rng)
  if run.init_from is None:
    return state
  folder, exported = run.init_from
  params, method_state = backbone.start_from(
      run.method, jax.device_get(state.params["method"]), jax.device_get(state.method_state),
      folder, exported)
  state = dataclasses.replace(state, params={**state.params, "method": params},
                              method_state=method_state)
  writers.info(f"encoder.init_from: the backbone starts from {folder} (step "
               f"{exported.meta.get('step')} of {exported.meta.get('method')})",
               enabled=jax.process_index() == 0)
  return jax.device_put(state, run.state_shardings)


# ---------------------------------------------------------------------------------------------
# Loop
# ---------------------------------------------------------------------------------------------


class NonFiniteLoss(UserError):
  """The loss or the gradients became NaN/inf."""


class _StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks, so it can checkpoint before exiting."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread (e.g. some notebook kernels): leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def requested(self, *, sync: bool) -> bool:
    flag = self.signum is not None
    if sync and jax.process_count() > 1:  # Every process must stop at the same step.
      flag = bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
    return flag

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def restore_latest(config, workdir: str) -> tuple[Run, TrainState]:
  """Builds ``config`` and restores the latest checkpoint in ``workdir`` (for notebooks, evals).

  Raises:
    CheckpointError: ``workdir`` has no ssljax checkpoint of this config.
  """
  run = build(config)
  ckpt = checkpoint.Checkpointer(epath.Path(workdir) / "checkpoints", method=run.method.name,
                                 every_steps=int(config.checkpoint_every_steps),
                                 keep=int(config.keep_checkpoints))
  try:
    if ckpt.latest_step is None:
      raise CheckpointError(f"{ckpt.directory} has no checkpoint; train first with this --workdir")
    train_iter = data.make_train_iterator(config.input.data,
                                          global_batch_size=int(config.input.batch_size),
                                          seed=int(config.seed),
                                          label_fraction=label_fraction(config))
    state = ckpt.restore(ckpt.latest_step, run.abstract_state, train_iter)
  finally:
    ckpt.close()
  return run, state


def _write_json(path: epath.Path, obj: Any) -> None:
  path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints), evaluates, returns results.

  Writes ``config.json``, ``metrics.jsonl``, ``results.json``, ``checkpoints/`` and TensorBoard
  event files into ``workdir`` (process 0 writes the logs; all processes write checkpoints).
  """
  t_start = time.perf_counter()
  lead = jax.process_index() == 0
  workdir = epath.Path(workdir)
  # Config, devices and data are checked before anything is created, so a run that cannot start
  # leaves no (empty) workdir behind.
  run = build(config)
  cfg = run.config
  # The probe data and evaluators are checked here too (eval.data, eval.evals).
  evaluator = Evaluator(cfg, run.method, run.mesh, run.info)
  train_iter = data.make_train_iterator(
      cfg.input.data, global_batch_size=int(cfg.input.batch_size), seed=int(cfg.seed),
      label_fraction=label_fraction(cfg))
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create --workdir={workdir} ({e.strerror or e}); "
                    "pass a folder you can write to") from None
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", method=run.method.name,
                                 every_steps=int(cfg.checkpoint_every_steps),
                                 keep=int(cfg.keep_checkpoints))
  writer = None
  try:
    if ckpt.latest_step is not None:
      state = ckpt.restore(ckpt.latest_step, run.abstract_state, train_iter)
      writers.info(f"resuming from {ckpt.directory / str(ckpt.latest_step)}", enabled=lead)
      evaluator.resume(_logged_metrics(workdir, up_to=ckpt.latest_step))
    else:
      state = create_state(run)
    if lead:
      resolved = json.loads(cfg.to_json_best_effort())
      resolved["derived"] = {"total_steps": run.total_steps,
                             "steps_per_epoch": run.steps_per_epoch,
                             "num_devices": int(run.mesh.devices.size),
                             "num_processes": jax.process_count()}
      _write_json(workdir / "config.json", resolved)
      # What rebuilds the method without the data (ssljax.export / evaluate on another machine).
      _write_json(workdir / backbone.DATA_INFO_FILE, backbone.info_to_json(run.info))
    writer = writers.MetricWriter(workdir, enabled=lead)
    start = int(jax.device_get(state.step))
    progress = writers.Progress(run.total_steps, start_step=start, enabled=lead)
    devices = int(run.mesh.devices.size)
    writers.info(
        f"training {run.method.name} on {run.info.name} for {run.total_steps} steps "
        f"(batch {cfg.input.batch_size}, {devices} device{'s' * (devices != 1)}, "
        f"start step {start})", enabled=lead)
    at_init = {}
    if start == 0 and bool(cfg.eval.get("at_init", False)):
      first = evaluator.run(state)
      writer.write(0, first)  # The curves in metrics.jsonl / TensorBoard start at step 0.
      writers.info("at initialisation: " + json.dumps(first), enabled=lead)
      # The raw-feature and popularity baselines do not depend on the network: reported once,
      # not as init_*; nor is the model selection over evaluations (best_*).
      at_init = {f"init_{k}": v for k, v in first.items()
                 if not k.startswith(("raw_", "gbdt_", "pop_", "best_", "evals_since_best"))}
    train_seconds = 0.0
    if evaluator.stop_reason:  # A restarted run that had already stopped early.
      writers.info(f"not training further: {evaluator.stop_reason}", enabled=lead)
    else:
      with _StopSignal() as stop:
        state, train_seconds = _loop(run, state, train_iter, ckpt, writer, evaluator, progress,
                                     stop, start)
    results = {**at_init, **evaluator.run(state)}
    end = int(jax.device_get(state.step))
    results.update(step=end, wall_time_s=round(time.perf_counter() - t_start, 2),
                   # Training alone after the first (compiling) step, evaluations not counted.
                   train_time_s=round(train_seconds, 2), steps_per_epoch=run.steps_per_epoch)
    if end > start + 1:
      results["train_time_per_epoch_s"] = round(
          train_seconds * run.steps_per_epoch / (end - start - 1), 3)
    if evaluator.stop_reason:
      results["stopped_early"] = evaluator.stop_reason
    if lead:
      _write_json(workdir / "results.json", results)
      writers.info("results: " + json.dumps(results), enabled=lead)
    return results
  finally:
    if writer is not None:
      writer.close()
    ckpt.close()


def _logged_metrics(workdir: epath.Path, *, up_to: int) -> list[dict[str, Any]]:
  """The ``metrics.jsonl`` records of steps <= ``up_to`` (those after the restored checkpoint
  are retrained), oldest first; empty when the file is missing or unreadable."""
  path = workdir / "metrics.jsonl"
  records = []
  try:
    lines = path.read_text().splitlines()
  except OSError:
    return records
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue  # A line cut short by a crash.
    if isinstance(record, dict) and isinstance(record.get("step"), int) and (
        record["step"] <= up_to):
      records.append(record)
  return records


def _loop(run: Run, state, train_iter, ckpt, writer, evaluator, progress, stop, start):
  cfg = run.config
  lead = jax.process_index() == 0
  batch_size = int(cfg.input.batch_size)
  log_every = max(1, int(cfg.log_every_steps))
  eval_every = int(cfg.eval.every_steps)
  rankme_every = int(cfg.eval.rankme_every_steps)
  multi = jax.process_count() > 1
  window = (start, time.perf_counter())  # (step, time) of the last samples/s measurement.

  def due(every: int, step: int) -> bool:
    return every > 0 and step % every == 0

  eval_seconds = 0.0  # Time spent in evaluations and RankMe (not training).
  compiled = None  # When the first step (which compiles) had finished.

  def settle(step: int, metrics, state, *, log: bool) -> None:
    """Fetches a finished step's metrics, stops the run if it diverged, logs when asked."""
    nonlocal window, eval_seconds, compiled
    m = jax.device_get(metrics)
    if not bool(m.pop("finite")):
      last = ckpt.latest_step if ckpt.latest_step is not None else "none"
      raise NonFiniteLoss(
          f"loss or gradients became NaN/inf at step {step}; the last good checkpoint "
          f"(step {last}) is kept in {ckpt.directory}; lower optim.lr or check the data")
    if step == start + 1:
      progress.restart_clock(step)  # Compilation counts neither in time left nor in samples/s.
      window = (step, time.perf_counter())
      compiled = window[1]
    if not log:
      return
    now = time.perf_counter()
    if step > window[0]:
      m["samples_per_sec"] = batch_size * (step - window[0]) / max(now - window[1], 1e-9)
    m["learning_rate"] = float(run.schedule(step - 1))
    m["epoch"] = step / run.steps_per_epoch
    t_eval = time.perf_counter()
    if due(rankme_every, step):
      m.update(evaluator.rankme(state))
    if due(eval_every, step) and step != run.total_steps:
      m.update(evaluator.run(state))
    eval_seconds += time.perf_counter() - t_eval
    writer.write(step, m)
    progress.line(step, m)
    window = (step, time.perf_counter())  # Evaluation time is not training time.

  pending = None  # A step whose metrics are fetched one step late, so dispatch stays ahead.
  for step in range(start, run.total_steps):
    batch = sharding.global_batch(next(train_iter), run.mesh)
    state, metrics = run.step_fn(state, batch)
    done = step + 1
    if pending is not None:
      settle(*pending, log=False)
      pending = None
    stopping = (not multi or done % log_every == 0) and stop.requested(sync=multi)
    save = ckpt.should_save(done) or stopping or done == run.total_steps
    log = (due(log_every, done) or due(rankme_every, done) or due(eval_every, done)
           or done == run.total_steps)
    if save or log:
      settle(done, metrics, state, log=log)  # Never checkpoint a diverged state.
      if save and ckpt.save(done, state, train_iter, force=True):
        ckpt.latest_step = done
    else:
      pending = (done, metrics, state)
    if evaluator.stop_reason:  # Early stopping (an evaluator's patience ran out).
      if ckpt.latest_step != done and ckpt.save(done, state, train_iter, force=True):
        ckpt.latest_step = done
      writers.info(f"stopping early at step {done}: {evaluator.stop_reason}", enabled=lead)
      break
    if stopping:
      name = signal.Signals(stop.signum).name if stop.signum else "a stop signal"
      writers.info(f"received {name} at step {done}; checkpoint saved in {ckpt.directory}; "
                   "run the same command again to resume", enabled=lead)
      raise SystemExit(128 + int(stop.signum or signal.SIGTERM))
  if pending is not None:
    settle(*pending, log=False)
  # Seconds of training after the first step: time since it finished, evaluations taken out.
  trained = time.perf_counter() - compiled - eval_seconds if compiled is not None else 0.0
  return state, max(trained, 0.0)
