"""Optimisers (LARS, SGD, AdamW), LR schedules (warm-up + cosine; infinite), weight-decay masks.

Everything is configured by ``config.optim`` (an ``ml_collections.ConfigDict``); the fields and
their defaults are in :func:`default_config`. A missing field takes its default, so a recipe only
names what it changes.

LARS follows the official Barlow Twins code (facebookresearch/barlowtwins ``main.py``), per
parameter tensor ``p`` with gradient ``g``::

  g <- g + wd * p                                  (not for 1-D params when exclude_bias_bn)
  q  = eta * ||p|| / ||g||, or 1 if a norm is 0    (not for 1-D params when exclude_bias_bn)
  g <- q * g
  mu <- momentum * mu + g
  p  <- p - lr_t * mu

The learning rate multiplies the momentum buffer, not the gradient that enters it. ``optax.lars``
scales before its momentum trace, which equals the above only for a constant LR, so we compose the
chain ourselves. ``clip_lr`` is solo-learn's option (from NVIDIA apex LARC): the trust ratio
becomes ``min(q / lr_t, 1)``, i.e. the effective step size is ``min(eta * ||p|| / ||g||, lr_t)``.
solo-learn's LARS also uses ``||g|| + wd ||p||`` in the denominator and adds an eps; we keep the
official ``||g + wd p||``.
"""

import math
import numbers
import re
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssljax.errors import ConfigError
from ssljax.sharding import path_str

OPTIMIZERS = ("lars", "sgd", "adamw")
LR_SCALINGS = ("none", "linear")
SCHEDULES = ("cosine", "infinite")
COOLDOWN_STYLES = ("cosine", "inv_sqrt", "linear")


def default_config() -> ml_collections.ConfigDict:
  """Every ``config.optim`` field with its default (the official Barlow Twins LARS recipe)."""
  return ml_collections.ConfigDict(
    dict(
      name="lars",
      lr=0.2,  # Peak LR before batch scaling (official: 0.2 for weights).
      lr_scaling="linear",  # 'linear': lr * global_batch / base_batch_size; 'none': lr as given.
      base_batch_size=256,
      weight_decay=1e-6,
      momentum=0.9,  # sgd, lars.
      eta=0.001,  # LARS trust coefficient (official 0.001; solo-learn 0.02).
      clip_lr=False,  # LARS only: trust ratio min(q / lr_t, 1) (solo-learn / apex LARC).
      exclude_bias_bn=True,  # 1-D params (biases, BN): no weight decay, no LARS adaptation.
      bias_bn_lr_scale=1.0,  # LR multiplier for 1-D params (official ImageNet: 0.0048 / 0.2).
      warmup_epochs=10.0,
      warmup_steps=-1,  # >= 0 overrides warmup_epochs.
      min_lr_ratio=0.001,  # Cosine ends at peak * min_lr_ratio (official 0.001; solo-learn 0).
      b1=0.9,  # adamw.
      b2=0.999,  # adamw.
      # Cosine weight-decay schedule from weight_decay to this value over the run (DINO's
      # 0.04 -> 0.4); a negative value keeps the decay constant.
      weight_decay_end=-1.0,
      # Regex over parameter paths (e.g. 'method/predictor/.*'): these keep the peak LR for the
      # whole run, no warm-up or decay (SimSiam's predictor). '' = none.
      constant_lr_params="",
      # Per-tensor gradient-norm clipping, as DINO's clip_gradients: g <- g * min(1, c / ||g||).
      # 0 = off.
      clip_grad_norm=0.0,
      # Regex over parameter paths held fixed (no update, no weight decay) for the first
      # freeze_epochs of the run (DINO's frozen last layer in epoch 1). '' = none.
      freeze_params="",
      freeze_epochs=0.0,
      # LR schedule: 'cosine' (warm-up + cosine decay to peak * min_lr_ratio) or 'infinite'
      # (warm-up, cooldown to a constant LR, constant, exponential anneal; make_schedule).
      schedule="cosine",
      # The 'infinite' schedule's phases, as fractions of the run (cooldown_end_frac is where the
      # cooldown *ends*, not its length) and its LRs as fractions of the peak LR.
      cooldown_end_frac=0.15,
      constant_end_frac=0.80,  # 1.0: never anneal (keep the constant LR to continue training).
      constant_lr_ratio=0.1,  # eta_const = peak * this.
      anneal_min_lr_ratio=0.01,  # eta_min = peak * this; > 0, as the anneal is exponential.
      cooldown_style="cosine",  # 'cosine', 'inv_sqrt' or 'linear'.
      inv_sqrt_alpha=10.0,  # Timescale of the 'inv_sqrt' cooldown.
      # Which task of a continual stream this run is: tasks >= 1 skip warm-up and cooldown and
      # start at eta_const. The 'cosine' schedule ignores it (the repeated-cosine baseline).
      task_index=0,
    )
  )


_DEFAULTS = default_config().to_dict()


def _get(optim_cfg: Any, key: str) -> Any:
  return optim_cfg.get(key, _DEFAULTS[key])


def _fail(key: str, value: Any, what: str) -> NoReturn:
  raise ConfigError(f"optim.{key}={value!r}: {what}")


def _check_range(
  cfg: Any,
  key: str,
  *,
  low: float,
  high: float = math.inf,
  low_open: bool = False,
  high_open: bool = False,
) -> float:
  """Returns ``cfg[key]`` (or its default) as a float, or raises naming ``optim.<key>``."""
  value = _get(cfg, key)
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    _fail(key, value, "must be a number")
  too_low = value <= low if low_open else value < low
  too_high = value >= high if high_open else value > high
  if too_low or too_high or math.isnan(value):
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    _fail(key, value, f"must lie in {lo}{low}, {high}{hi}; set a value in that range")
  return float(value)


def _check_steps(total_steps: int, steps_per_epoch: int, global_batch_size: int) -> None:
  # These come from the trainer (epochs x data-set size), but a bad epoch count is a user error.
  for name, value in (
    ("total_steps", total_steps),
    ("steps_per_epoch", steps_per_epoch),
    ("global_batch_size", global_batch_size),
  ):
    if int(value) != value or value < 1:
      raise ConfigError(
        f"{name}={value!r} must be a positive integer; check the run length and batch size"
      )


def peak_lr(optim_cfg: Any, *, global_batch_size: int) -> float:
  """The LR reached at the end of warm-up: ``lr``, times ``batch / base_batch_size`` if linear."""
  lr = _check_range(optim_cfg, "lr", low=0.0, low_open=True)
  scaling = _get(optim_cfg, "lr_scaling")
  if scaling not in LR_SCALINGS:
    _fail("lr_scaling", scaling, f"choose one of {', '.join(LR_SCALINGS)}")
  if scaling == "none":
    return lr
  base = _get(optim_cfg, "base_batch_size")
  if isinstance(base, bool) or not isinstance(base, numbers.Integral) or base < 1:
    _fail("base_batch_size", base, "must be a positive integer (256 is standard)")
  return lr * global_batch_size / base


def warmup_steps(optim_cfg: Any, *, total_steps: int, steps_per_epoch: int) -> int:
  """Resolves ``warmup_steps`` (if >= 0) or ``round(warmup_epochs * steps_per_epoch)``."""
  steps = _get(optim_cfg, "warmup_steps")
  if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < -1:
    _fail("warmup_steps", steps, "must be an integer >= 0, or -1 to use optim.warmup_epochs")
  key = "warmup_steps"
  if steps == -1:
    key = "warmup_epochs"
    steps = round(_check_range(optim_cfg, key, low=0.0) * steps_per_epoch)
  if steps > total_steps:
    _fail(
      key,
      _get(optim_cfg, key),
      f"warm-up of {steps} steps exceeds the run's {total_steps} steps; "
      "shorten the warm-up or train longer",
    )
  return steps


def make_schedule(
  optim_cfg: Any, *, total_steps: int, steps_per_epoch: int, global_batch_size: int
) -> optax.Schedule:
  """The LR schedule named by ``optim.schedule``: ``'cosine'`` (default) or ``'infinite'``.

  ``'cosine'`` is the official Barlow Twins rule, with ``W`` warm-up steps and ``T`` total steps::

    lr(s) = peak * s / W                                   for s < W
    q     = 0.5 * (1 + cos(pi * (s - W) / (T - W)))
    lr(s) = peak * q + peak * min_lr_ratio * (1 - q)      for W <= s (held at the end after T)

  ``'infinite'`` is :func:`infinite_schedule` with the same warm-up and peak.

  Args:
    optim_cfg: ``config.optim``.
    total_steps: optimiser steps in the whole run.
    steps_per_epoch: steps per epoch (converts ``warmup_epochs``).
    global_batch_size: batch size across all devices (for ``lr_scaling='linear'``).

  Returns:
    A function of the step count (int scalar array) returning the float32 LR.
  """
  _check_steps(total_steps, steps_per_epoch, global_batch_size)
  kind = _get(optim_cfg, "schedule")
  if kind not in SCHEDULES:
    _fail("schedule", kind, f"unknown LR schedule; choose one of {', '.join(SCHEDULES)}")
  peak = peak_lr(optim_cfg, global_batch_size=global_batch_size)
  warmup = warmup_steps(optim_cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  if kind == "infinite":
    return _infinite_from_config(optim_cfg, peak=peak, warmup=warmup, total_steps=total_steps)
  end = peak * _check_range(optim_cfg, "min_lr_ratio", low=0.0, high=1.0)
  # optax's decay_steps counts the warm-up too; a run that is all warm-up holds the peak after.
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0, peak_value=peak, warmup_steps=warmup,
    decay_steps=max(total_steps, warmup + 1), end_value=end)


def infinite_schedule(
  *,
  peak: float,
  constant_lr: float,
  min_lr: float,
  warmup_steps: float,
  cooldown_end: float,
  constant_end: float,
  total_steps: float,
  cooldown_style: str = "cosine",
  inv_sqrt_alpha: float = 10.0,
  task_index: int = 0,
) -> optax.Schedule:
  """The infinite LR schedule of Ibrahim et al. 2024, as used by Singh et al. 2025 (continual SSL).

  Breakpoints ``W = warmup_steps <= C = cooldown_end <= A = constant_end <= T = total_steps`` (in
  steps) and LRs ``peak >= constant_lr >= min_lr > 0``. For task 0::

    lr(s) = peak * s / W                                          s <= W   (warm-up; none if W = 0)
    lr(s) = cooldown(p), p = (s - W) / (C - W)                    W < s <= C
    lr(s) = constant_lr                                           C < s <= A
    lr(s) = constant_lr * (min_lr / constant_lr) ** ((s - A) / (T - A))   A < s (held after T)

  with ``cooldown(p)`` going from ``peak`` (p = 0) to ``constant_lr`` (p = 1):

  * ``'cosine'``: ``constant_lr + (peak - constant_lr) / 2 * (1 + cos(pi p))``;
  * ``'inv_sqrt'``: ``peak + (constant_lr - peak) f(p) / f(1)``, with
    ``f(p) = 1 / sqrt(1 + alpha p) - 1``;
  * ``'linear'``: ``peak - (peak - constant_lr) p``.

  A later task (``task_index >= 1``) has no warm-up or cooldown: ``constant_lr`` up to ``A``, then
  the same exponential anneal, so a new task re-starts at ``constant_lr``, never at ``peak``. With
  ``A = T`` the run never anneals (keep its checkpoint to continue the stream; anneal a copy).

  Args:
    peak: LR at the end of warm-up.
    constant_lr: LR of the constant phase.
    min_lr: LR at the end of the anneal.
    warmup_steps: ``W``.
    cooldown_end: ``C``, the step where the cooldown ends (not its length).
    constant_end: ``A``, the step where the anneal starts.
    total_steps: ``T``, the step where the anneal ends.
    cooldown_style: ``'cosine'``, ``'inv_sqrt'`` or ``'linear'``.
    inv_sqrt_alpha: timescale of the ``'inv_sqrt'`` cooldown.
    task_index: 0 for the first task of a stream, >= 1 for later ones.

  Returns:
    A function of the step count (int or float scalar array) returning the float32 LR.
  """
  if not 0 <= warmup_steps <= cooldown_end <= constant_end <= total_steps:
    raise ValueError("infinite_schedule needs 0 <= warmup_steps <= cooldown_end <= constant_end "
                     f"<= total_steps, got {warmup_steps}, {cooldown_end}, {constant_end}, "
                     f"{total_steps}")
  if not peak >= constant_lr >= min_lr > 0:
    raise ValueError(f"infinite_schedule needs peak >= constant_lr >= min_lr > 0, got {peak}, "
                     f"{constant_lr}, {min_lr}")
  if cooldown_style not in COOLDOWN_STYLES:
    raise ValueError(f"cooldown_style={cooldown_style!r}; choose one of {COOLDOWN_STYLES}")
  first_task = task_index == 0
  warm, cool = float(warmup_steps), float(cooldown_end)
  cool_steps, anneal_steps = cool - warm, float(total_steps - constant_end)
  log_ratio = math.log(min_lr / constant_lr)  # float64 here: only the exponent is float32.
  inv_sqrt_end = 1.0 / math.sqrt(1.0 + inv_sqrt_alpha) - 1.0

  def cooldown(p):
    if cooldown_style == "cosine":
      return constant_lr + 0.5 * (peak - constant_lr) * (1.0 + jnp.cos(jnp.pi * p))
    if cooldown_style == "linear":
      return peak - (peak - constant_lr) * p
    f = 1.0 / jnp.sqrt(1.0 + inv_sqrt_alpha * p) - 1.0
    return peak + (constant_lr - peak) * f / inv_sqrt_end

  def schedule(step):
    s = jnp.asarray(step, jnp.float32)
    if anneal_steps > 0:
      q = jnp.clip((s - constant_end) / anneal_steps, 0.0, 1.0)
      lr = constant_lr * jnp.exp(log_ratio * q)  # exactly constant_lr for s <= A (q = 0)
    else:
      lr = jnp.full_like(s, constant_lr)
    if first_task and cool_steps > 0:  # A zero-length cooldown is a step from peak to constant.
      p = jnp.clip((s - warm) / cool_steps, 0.0, 1.0)
      lr = jnp.where(s <= cool, cooldown(p), lr)
    if first_task and warm > 0:
      lr = jnp.where(s <= warm, peak * s / warm, lr)
    return lr.astype(jnp.float32)

  return schedule


def _infinite_from_config(optim_cfg: Any, *, peak: float, warmup: int,
                          total_steps: int) -> optax.Schedule:
  """Validates the ``'infinite'`` fields of ``optim_cfg`` and builds :func:`infinite_schedule`."""
  cooldown_frac = _check_range(optim_cfg, "cooldown_end_frac", low=0.0, high=1.0)
  constant_frac = _check_range(optim_cfg, "constant_end_frac", low=0.0, high=1.0)
  if constant_frac < cooldown_frac:
    _fail("constant_end_frac", constant_frac,
          f"must be >= optim.cooldown_end_frac={cooldown_frac} (the constant phase follows the "
          "cooldown)")
  constant_ratio = _check_range(optim_cfg, "constant_lr_ratio", low=0.0, high=1.0, low_open=True)
  min_ratio = _check_range(optim_cfg, "anneal_min_lr_ratio", low=0.0, high=constant_ratio,
                           low_open=True)
  style = _get(optim_cfg, "cooldown_style")
  if style not in COOLDOWN_STYLES:
    _fail("cooldown_style", style, f"choose one of {', '.join(COOLDOWN_STYLES)}")
  alpha = _check_range(optim_cfg, "inv_sqrt_alpha", low=0.0, low_open=True)
  task = _get(optim_cfg, "task_index")
  if isinstance(task, bool) or not isinstance(task, numbers.Integral) or task < 0:
    _fail("task_index", task, "must be an integer >= 0 (0: the first task, with warm-up)")
  cooldown_end = cooldown_frac * total_steps
  if task == 0 and cooldown_end < warmup:
    _fail("cooldown_end_frac", cooldown_frac,
          f"the cooldown would end at step {cooldown_end:g}, before the {warmup}-step warm-up "
          "ends; raise optim.cooldown_end_frac or shorten the warm-up")
  return infinite_schedule(
    peak=peak, constant_lr=peak * constant_ratio, min_lr=peak * min_ratio, warmup_steps=warmup,
    cooldown_end=cooldown_end, constant_end=constant_frac * total_steps,
    total_steps=total_steps, cooldown_style=style, inv_sqrt_alpha=alpha, task_index=int(task))


def decay_mask(params: Any) -> Any:
  """True for parameters with ndim > 1 (kernels), False for biases and BatchNorm scale/bias.

  A tensor whose name ends in ``bias`` is a bias whatever its rank (the table tokenizer's
  per-column bias rows [D, H], which the official T-JEPA code does not decay).
  """

  def is_kernel(path, p):
    name = str(getattr(path[-1], "key", getattr(path[-1], "name", ""))) if path else ""
    return jnp.ndim(p) > 1 and not name.endswith("bias")

  return jax.tree_util.tree_map_with_path(is_kernel, params)


class LarsTrustState(NamedTuple):
  count: jnp.ndarray  # Steps taken; clip_lr needs the current LR.


def scale_by_lars_trust(
  *, eta: float, lr_schedule: optax.Schedule | None = None
) -> optax.GradientTransformation:
  """Multiplies each update by ``q = eta * ||p|| / ||u||`` (1 where either norm is 0).

  Args:
    eta: trust coefficient.
    lr_schedule: if given, clip as solo-learn's ``clip_lr``: ``q <- min(q / lr_t, 1)``, with
      ``lr_t`` the tensors' own LR this step (their parameter group's).

  Returns:
    A stateful transformation (it counts steps) that needs ``params`` in ``update``.
  """

  def init_fn(params):
    del params
    return LarsTrustState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("scale_by_lars_trust needs params in update()")

    def scale(u, p):
      p_norm = jnp.linalg.norm(p.astype(jnp.float32))
      u_norm = jnp.linalg.norm(u.astype(jnp.float32))
      q = eta * p_norm / jnp.where(u_norm > 0, u_norm, 1.0)
      if lr_schedule is not None:
        lr = lr_schedule(state.count)
        # At lr = 0 (the first warm-up step) the step is 0 whatever q is; avoid inf.
        q = jnp.where(lr > 0, jnp.minimum(q / jnp.where(lr > 0, lr, 1.0), 1.0), 1.0)
      q = jnp.where((p_norm > 0) & (u_norm > 0), q, 1.0)
      return (u * q).astype(u.dtype)

    updates = jax.tree.map(scale, updates, params)
    return updates, LarsTrustState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def _optimizer_hparams(optim_cfg: Any) -> dict[str, Any]:
  name = _get(optim_cfg, "name")
  if name not in OPTIMIZERS:
    _fail("name", name, f"unknown optimizer; choose one of {', '.join(OPTIMIZERS)}")
  hp = dict(
    name=name,
    weight_decay=_check_range(optim_cfg, "weight_decay", low=0.0),
    bias_bn_lr_scale=_check_range(optim_cfg, "bias_bn_lr_scale", low=0.0),
  )
  for key in ("exclude_bias_bn", "clip_lr"):
    hp[key] = _get(optim_cfg, key)
    if not isinstance(hp[key], bool):
      _fail(key, hp[key], "must be True or False")
  if name in ("lars", "sgd"):
    hp["momentum"] = _check_range(optim_cfg, "momentum", low=0.0, high=1.0, high_open=True)
  if name == "lars":
    hp["eta"] = _check_range(optim_cfg, "eta", low=0.0, low_open=True)
  hp["clip_grad_norm"] = _check_range(optim_cfg, "clip_grad_norm", low=0.0)
  hp["freeze_epochs"] = _check_range(optim_cfg, "freeze_epochs", low=0.0)
  wd_end = _get(optim_cfg, "weight_decay_end")
  if isinstance(wd_end, bool) or not isinstance(wd_end, numbers.Real) or math.isnan(wd_end):
    _fail("weight_decay_end", wd_end, "must be a number (negative: constant weight decay)")
  hp["weight_decay_end"] = float(wd_end)
  for key in ("constant_lr_params", "freeze_params"):
    hp[key] = _get(optim_cfg, key)
    if not isinstance(hp[key], str):
      _fail(key, hp[key], "must be a regex string over parameter paths ('' for none)")
    try:
      re.compile(hp[key])
    except re.error as e:
      _fail(key, hp[key], f"is not a valid regex ({e})")
  if name == "adamw":
    hp["b1"] = _check_range(optim_cfg, "b1", low=0.0, high=1.0, high_open=True)
    hp["b2"] = _check_range(optim_cfg, "b2", low=0.0, high=1.0, high_open=True)
  return hp


def path_mask(pattern: str, *, key: str = "pattern") -> Callable[[Any], Any]:
  """A mask function: True for parameters whose path (``method/predictor/out/kernel``) matches.

  Raises:
    ConfigError: (when the mask is applied) the pattern matches no parameter; names ``key``, the
      config field it came from, and shows what the paths look like.
  """
  compiled = re.compile(pattern)

  def mask(params):
    paths = jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), params)
    matched = jax.tree.map(lambda p: bool(compiled.search(p)), paths)
    if not any(jax.tree.leaves(matched)):
      example = next(iter(jax.tree.leaves(paths)), "")
      raise ConfigError(f"{key}={pattern!r} matches no parameter (paths look like {example!r}); "
                        "list them with `python -m ssljax.tools.sharding --config=...`")
    return matched

  return mask


def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
  """DINO's ``clip_gradients``: each gradient tensor times ``min(1, c / (||g|| + 1e-6))``."""

  def update_fn(updates, state, params=None):
    del params

    def clip(g):
      norm = jnp.linalg.norm(g.astype(jnp.float32))
      return (g * jnp.minimum(1.0, max_norm / (norm + 1e-6))).astype(g.dtype)

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


class CountState(NamedTuple):
  count: jnp.ndarray


def zero_while(mask: Callable[[Any], Any], steps: int) -> optax.GradientTransformation:
  """Zeroes the updates of masked parameters during the first ``steps`` optimiser steps."""

  def init_fn(params):
    mask(params)  # A pattern that matches nothing fails here, when the run is built.
    return CountState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    frozen = state.count < steps
    updates = jax.tree.map(lambda u, m: jnp.where(frozen, jnp.zeros_like(u), u) if m else u,
                           updates, mask(updates))
    return updates, CountState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def weight_decay_schedule(start: float, end: float, total_steps: int) -> optax.Schedule:
  """DINO's cosine weight-decay schedule: ``end + (start - end) (1 + cos(pi s / T)) / 2``."""
  cosine = optax.cosine_decay_schedule(init_value=start - end, decay_steps=max(total_steps, 1))
  return lambda step: end + cosine(step)


def _as_schedule(lr) -> optax.Schedule:
  return lr if callable(lr) else optax.constant_schedule(lr)


def _group_optimizer(hp: dict[str, Any], lr, *, weight_decay, vectors: bool
                     ) -> optax.GradientTransformation:
  """One parameter group's optimiser with learning rate ``lr`` (a schedule or a constant).

  ``vectors``: the group holds 1-D tensors (biases, norm scales), which take no weight decay and
  no LARS adaptation when ``exclude_bias_bn``.
  """
  plain = vectors and hp["exclude_bias_bn"]
  decay = 0.0 if plain else weight_decay
  if hp["name"] == "adamw":
    return optax.adamw(lr, b1=hp["b1"], b2=hp["b2"], eps=1e-8, weight_decay=decay)
  if hp["name"] == "sgd":
    return optax.chain(optax.add_decayed_weights(decay), optax.sgd(lr, momentum=hp["momentum"]))
  chain = [optax.add_decayed_weights(decay)]
  if not plain:
    chain.append(scale_by_lars_trust(eta=hp["eta"],
                                     lr_schedule=_as_schedule(lr) if hp["clip_lr"] else None))
  # The LR multiplies the momentum buffer (official Barlow Twins LARS), unlike optax.lars.
  chain += [optax.trace(decay=hp["momentum"]), optax.scale_by_learning_rate(lr)]
  return optax.chain(*chain)


def _group_labels(constant: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
  """Labels ``'<scheduled|constant>/<matrix|vector>'`` per parameter, for ``optax.partition``."""

  def labels(params):
    const = constant(params) if constant is not None else jax.tree.map(lambda _: False, params)
    kernel = decay_mask(params)
    return jax.tree.map(lambda c, k: ("constant" if c else "scheduled") + ("/matrix" if k
                                                                          else "/vector"),
                        const, kernel)

  return labels


def make_optimizer(
  optim_cfg: Any, *, total_steps: int, steps_per_epoch: int, global_batch_size: int,
  separate: dict[str, optax.GradientTransformation] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimiser named by ``optim_cfg.name`` and its LR schedule.

  All three share: weight decay on kernels only when ``exclude_bias_bn`` (else on every tensor),
  the :func:`make_schedule` LR, and ``bias_bn_lr_scale`` on the LR of 1-D tensors. Parameters are
  split into groups with ``optax.partition`` (kernels / 1-D tensors, scheduled / constant LR), each
  group its own optimiser, as PyTorch's parameter groups:

  * ``lars``: the official Barlow Twins LARS (module docstring), momentum ``momentum``.
  * ``sgd``: ``g + wd * p`` into a momentum buffer, ``p <- p - lr_t * mu`` (PyTorch SGD;
    ``optax.add_decayed_weights`` then ``optax.sgd``).
  * ``adamw``: ``optax.adamw``: Adam moments, then decoupled decay scaled by the LR, as PyTorch's
    AdamW (eps 1e-8).

  Options used by single recipes: ``weight_decay_end`` (cosine decay schedule, DINO),
  ``constant_lr_params`` (SimSiam's fixed-LR predictor), ``clip_grad_norm`` (DINO's per-tensor
  clipping), ``freeze_params`` / ``freeze_epochs`` (DINO's last layer in epoch 1). PyTorch skips a
  frozen tensor entirely; here its Adam moments still see its (zeroed) gradients, so they start
  from zero when it unfreezes, with the run's bias correction rather than a fresh one.

  Args:
    optim_cfg: ``config.optim``.
    total_steps: optimiser steps in the whole run.
    steps_per_epoch: steps per epoch.
    global_batch_size: batch size across all devices.
    separate: top-level keys of the parameter dict that get their own optimiser instead (the
      trainer's ``online_probe``: see :func:`probe_optimizer`); none of the above touches them.

  Returns:
    ``(optimizer, schedule)``; log ``schedule(step)`` as the learning rate.

  Raises:
    ConfigError: naming the first ``optim.*`` field that is unknown or out of range; a
      ``freeze_params`` / ``constant_lr_params`` regex that matches no parameter raises when
      the optimiser is initialised.
  """
  hp = _optimizer_hparams(optim_cfg)
  schedule = make_schedule(
    optim_cfg,
    total_steps=total_steps,
    steps_per_epoch=steps_per_epoch,
    global_batch_size=global_batch_size,
  )
  weight_decay: Any = hp["weight_decay"]
  if hp["weight_decay_end"] >= 0:
    weight_decay = weight_decay_schedule(hp["weight_decay"], hp["weight_decay_end"], total_steps)
  vector_scale = hp["bias_bn_lr_scale"]
  peak = peak_lr(optim_cfg, global_batch_size=global_batch_size)
  lrs = {"scheduled/matrix": schedule, "scheduled/vector": lambda s: vector_scale * schedule(s),
         "constant/matrix": peak, "constant/vector": vector_scale * peak}
  groups = {label: _group_optimizer(hp, lr, weight_decay=weight_decay,
                                    vectors=label.endswith("vector"))
            for label, lr in lrs.items()}
  constant = None
  if hp["constant_lr_params"]:
    constant = path_mask(hp["constant_lr_params"], key="optim.constant_lr_params")
  chain = [optax.partition(groups, _group_labels(constant))]
  if hp["clip_grad_norm"] > 0:
    chain.insert(0, clip_by_tensor_norm(hp["clip_grad_norm"]))
  freeze_steps = round(hp["freeze_epochs"] * steps_per_epoch)
  if hp["freeze_params"] and freeze_steps > 0:
    frozen = path_mask(hp["freeze_params"], key="optim.freeze_params")
    # Before (no gradient) and after (no weight decay or momentum) the update moves a frozen one.
    chain = [zero_while(frozen, freeze_steps), *chain, zero_while(frozen, freeze_steps)]
  tx = optax.chain(*chain)
  if separate:
    tx = optax.partition({"__main__": tx, **separate}, _top_level_labels(tuple(separate)))
  return tx, schedule


def _top_level_labels(keys: tuple[str, ...]) -> Callable[[Any], Any]:
  def labels(params):
    return {k: jax.tree.map(lambda _, k=k: k if k in keys else "__main__", v)
            for k, v in params.items()}

  return labels


PROBE_OPTIMIZERS = ("sgd", "adam")


def probe_optimizer(name: str, *, lr: float, momentum: float = 0.9,
                    where: str = "eval.online_probe") -> optax.GradientTransformation:
  """The online probe's own optimiser: constant LR, no weight decay, no LARS, no warm-up.

  As solo-learn's classifier parameter group, the linear probe trained beside the SSL loss must
  not inherit the backbone's LARS trust ratio, weight decay and warm-up-from-zero schedule (they
  under-report ``online_probe_top1``).

  Args:
    name: ``'sgd'`` (with ``momentum``) or ``'adam'``.
    lr: the constant learning rate.
    momentum: SGD momentum.
    where: config prefix for error messages.
  """
  if name not in PROBE_OPTIMIZERS:
    raise ConfigError(f"{where}_optimizer={name!r} is unknown; choose one of "
                      f"{', '.join(PROBE_OPTIMIZERS)}")
  if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
    raise ConfigError(f"{where}_lr={lr!r} must be a number > 0")
  if name == "adam":
    return optax.adam(float(lr))
  if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
    raise ConfigError(f"{where}_momentum={momentum!r} must be a number in [0, 1)")
  return optax.sgd(float(lr), momentum=float(momentum))
