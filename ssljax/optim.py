"""Optimisers (LARS, SGD, AdamW), the warm-up + cosine schedule, and weight-decay masks.

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
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssljax.errors import ConfigError

OPTIMIZERS = ("lars", "sgd", "adamw")
LR_SCALINGS = ("none", "linear")


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
  """Linear warm-up from 0 to the peak LR, then cosine down to ``peak * min_lr_ratio``.

  The official Barlow Twins rule, with ``W`` warm-up steps and ``T`` total steps::

    lr(s) = peak * s / W                                   for s < W
    q     = 0.5 * (1 + cos(pi * (s - W) / (T - W)))
    lr(s) = peak * q + peak * min_lr_ratio * (1 - q)      for W <= s (held at the end after T)

  Args:
    optim_cfg: ``config.optim``.
    total_steps: optimiser steps in the whole run.
    steps_per_epoch: steps per epoch (converts ``warmup_epochs``).
    global_batch_size: batch size across all devices (for ``lr_scaling='linear'``).

  Returns:
    A function of the step count (int scalar array) returning the float32 LR.
  """
  _check_steps(total_steps, steps_per_epoch, global_batch_size)
  peak = peak_lr(optim_cfg, global_batch_size=global_batch_size)
  end = peak * _check_range(optim_cfg, "min_lr_ratio", low=0.0, high=1.0)
  warmup = warmup_steps(optim_cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
  decay_steps = max(total_steps - warmup, 1)

  def schedule(step):
    s = jnp.asarray(step, jnp.float32)
    warm = peak * s / max(warmup, 1)
    frac = jnp.clip((s - warmup) / decay_steps, 0.0, 1.0)
    q = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return jnp.where(s < warmup, warm, peak * q + end * (1.0 - q))

  return schedule


def decay_mask(params: Any) -> Any:
  """True for parameters with ndim > 1 (kernels), False for biases and BatchNorm scale/bias."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def _is_vector(params: Any) -> Any:
  return jax.tree.map(lambda p: jnp.ndim(p) <= 1, params)


class LarsTrustState(NamedTuple):
  count: jnp.ndarray  # Steps taken; clip_lr needs the current LR.


def scale_by_lars_trust(
  *, eta: float, lr_schedule: optax.Schedule | None = None, vector_lr_scale: float = 1.0
) -> optax.GradientTransformation:
  """Multiplies each update by ``q = eta * ||p|| / ||u||`` (1 where either norm is 0).

  Args:
    eta: trust coefficient.
    lr_schedule: if given, clip as solo-learn's ``clip_lr``: ``q <- min(q / lr_t, 1)``, with
      ``lr_t`` the tensor's own LR this step.
    vector_lr_scale: the LR multiplier of 1-D tensors, so their clip uses their own LR.

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
        lr = lr_schedule(state.count) * (vector_lr_scale if jnp.ndim(p) <= 1 else 1.0)
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
  if name == "adamw":
    hp["b1"] = _check_range(optim_cfg, "b1", low=0.0, high=1.0, high_open=True)
    hp["b2"] = _check_range(optim_cfg, "b2", low=0.0, high=1.0, high_open=True)
  return hp


def make_optimizer(
  optim_cfg: Any, *, total_steps: int, steps_per_epoch: int, global_batch_size: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimiser named by ``optim_cfg.name`` and its LR schedule.

  All three share: weight decay on kernels only when ``exclude_bias_bn`` (else on every tensor),
  the :func:`make_schedule` LR, and ``bias_bn_lr_scale`` on the LR of 1-D tensors.

  * ``lars``: the official Barlow Twins LARS (module docstring), momentum ``momentum``.
  * ``sgd``: ``g + wd * p`` into a momentum buffer, ``p <- p - lr_t * mu`` (PyTorch SGD).
  * ``adamw``: ``optax.adamw`` (decoupled decay, scaled by the LR as in PyTorch's AdamW).

  Args:
    optim_cfg: ``config.optim``.
    total_steps: optimiser steps in the whole run.
    steps_per_epoch: steps per epoch.
    global_batch_size: batch size across all devices.

  Returns:
    ``(optimizer, schedule)``; log ``schedule(step)`` as the learning rate.

  Raises:
    ConfigError: naming the first ``optim.*`` field that is unknown or out of range.
  """
  hp = _optimizer_hparams(optim_cfg)
  schedule = make_schedule(
    optim_cfg,
    total_steps=total_steps,
    steps_per_epoch=steps_per_epoch,
    global_batch_size=global_batch_size,
  )
  masked_decay: Callable[[Any], Any] | None = decay_mask if hp["exclude_bias_bn"] else None
  if hp["name"] == "adamw":
    chain = [
      optax.adamw(
        schedule, b1=hp["b1"], b2=hp["b2"], weight_decay=hp["weight_decay"], mask=masked_decay
      )
    ]
  else:
    chain = [optax.add_decayed_weights(hp["weight_decay"], mask=masked_decay)]
    if hp["name"] == "lars":
      trust = scale_by_lars_trust(
        eta=hp["eta"],
        lr_schedule=schedule if hp["clip_lr"] else None,
        vector_lr_scale=hp["bias_bn_lr_scale"],
      )
      chain.append(optax.masked(trust, masked_decay) if masked_decay else trust)
    chain += [optax.trace(decay=hp["momentum"]), optax.scale_by_learning_rate(schedule)]
  if hp["bias_bn_lr_scale"] != 1.0:
    # The LR enters every chain linearly, so scaling the final update scales the 1-D tensors' LR.
    chain.append(optax.masked(optax.scale(hp["bias_bn_lr_scale"]), _is_vector))
  return optax.chain(*chain), schedule
