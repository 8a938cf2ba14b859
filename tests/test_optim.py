"""Optimisers and schedules against closed-form and hand-written (official-code) references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssljax import optim
from ssljax.errors import ConfigError


def _cfg(**overrides):
  cfg = optim.default_config()
  cfg.update(overrides)
  return cfg


def _official_lr(step, *, peak, warmup, total, ratio):
  """barlowtwins main.py adjust_learning_rate, with base = peak."""
  if step < warmup:
    return peak * step / warmup
  step, total = step - warmup, total - warmup
  q = 0.5 * (1 + math.cos(math.pi * step / total))
  return peak * q + peak * ratio * (1 - q)


def test_schedule_matches_official_formula():
  cfg = _cfg(lr=0.2, lr_scaling="linear", warmup_epochs=2.5, min_lr_ratio=0.001)
  # 2.5 epochs of 4 steps = 10 warm-up steps; peak = 0.2 * 2048 / 256 = 1.6.
  schedule = optim.make_schedule(cfg, total_steps=50, steps_per_epoch=4, global_batch_size=2048)
  peak, end = 1.6, 1.6 * 0.001
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(30)), (peak + end) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(50)), end, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(80)), end, rtol=1e-5)  # held after the end
  ref = [_official_lr(s, peak=peak, warmup=10, total=50, ratio=0.001) for s in range(51)]
  np.testing.assert_allclose(jax.vmap(schedule)(jnp.arange(51)), ref, rtol=1e-5, atol=1e-7)


def test_schedule_warmup_steps_override_and_no_warmup():
  cfg = _cfg(lr=0.5, lr_scaling="none", warmup_steps=0, warmup_epochs=10.0, min_lr_ratio=0.0)
  schedule = optim.make_schedule(cfg, total_steps=20, steps_per_epoch=1, global_batch_size=7)
  np.testing.assert_allclose(float(schedule(0)), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(20)), 0.0, atol=1e-7)


@pytest.mark.parametrize("scaling, batch, expected", [("linear", 512, 0.6), ("linear", 128, 0.15),
                                                     ("none", 512, 0.3)])
def test_linear_batch_scaling(scaling, batch, expected):
  cfg = _cfg(lr=0.3, lr_scaling=scaling, base_batch_size=256, warmup_steps=5)
  schedule = optim.make_schedule(cfg, total_steps=10, steps_per_epoch=2, global_batch_size=batch)
  np.testing.assert_allclose(float(schedule(5)), expected, rtol=1e-6)


def test_decay_mask():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4))}, "bn": {"scale": jnp.ones(4),
            "bias": jnp.ones(4)}, "dense": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}}
  assert optim.decay_mask(params) == {
    "conv": {"kernel": True}, "bn": {"scale": False, "bias": False},
    "dense": {"kernel": True, "bias": False},
  }


def _official_lars(params, grads, mu, *, lr_w, lr_b, wd, eta, momentum, exclude, clip):
  """One step of barlowtwins main.py's LARS (plus solo-learn's clip_lr) on a flat dict."""
  new_params = {}
  for name, p in params.items():
    g, vector = grads[name], p.ndim == 1
    lr = lr_b if vector else lr_w
    if not (exclude and vector):
      g = g + wd * p
      p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(g)
      q = eta * p_norm / g_norm if p_norm > 0 and g_norm > 0 else 1.0
      if clip and p_norm > 0 and g_norm > 0:
        q = min(q / lr, 1.0) if lr > 0 else 1.0
      g = q * g
    mu[name] = momentum * mu[name] + g
    new_params[name] = p - lr * mu[name]
  return new_params


@pytest.mark.parametrize(
  "exclude, clip, eta, bias_scale",
  [(True, False, 0.001, 0.024), (False, False, 0.02, 1.0), (True, True, 0.02, 0.024)],
)
def test_lars_matches_official_update(exclude, clip, eta, bias_scale):
  rng = np.random.default_rng(0)
  params = {
    "w": rng.normal(size=(3, 4)),
    "k": rng.normal(size=(2, 2, 3)) * 0.01,
    "zero_w": np.zeros((2, 2)),  # norm 0: trust ratio 1
    "b": rng.normal(size=(4,)),
  }
  cfg = _cfg(name="lars", lr=0.2, lr_scaling="linear", weight_decay=0.05, eta=eta, momentum=0.9,
             exclude_bias_bn=exclude, clip_lr=clip, bias_bn_lr_scale=bias_scale,
             warmup_steps=2, min_lr_ratio=0.001)
  tx, schedule = optim.make_optimizer(cfg, total_steps=6, steps_per_epoch=3, global_batch_size=512)
  state = tx.init(jax.tree.map(jnp.asarray, params))
  update = jax.jit(tx.update)
  ref_params, mu = dict(params), {k: np.zeros_like(v) for k, v in params.items()}
  jax_params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
  for step in range(5):  # warm-up (incl. lr 0 at step 0), peak and cosine
    grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
    lr = _official_lr(step, peak=0.4, warmup=2, total=6, ratio=0.001)
    ref_params = _official_lars(ref_params, grads, mu, lr_w=lr, lr_b=lr * bias_scale, wd=0.05,
                                eta=eta, momentum=0.9, exclude=exclude, clip=clip)
    updates, state = update(jax.tree.map(jnp.asarray, grads), state, jax_params)
    jax_params = optax.apply_updates(jax_params, updates)
    for k in params:
      np.testing.assert_allclose(jax_params[k], ref_params[k], rtol=2e-5, atol=1e-7, err_msg=k)
  assert not np.allclose(ref_params["w"], params["w"])


@pytest.mark.parametrize("name", ["lars", "sgd", "adamw"])
def test_optimizers_reduce_a_quadratic(name):
  lr = {"lars": 1.0, "sgd": 0.05, "adamw": 0.05}[name]
  cfg = _cfg(name=name, lr=lr, lr_scaling="none", weight_decay=1e-4, eta=0.02, warmup_steps=5,
             min_lr_ratio=0.0)
  tx, _ = optim.make_optimizer(cfg, total_steps=100, steps_per_epoch=10, global_batch_size=32)
  target = {"w": jnp.full((4, 3), 2.0), "b": jnp.full((3,), -1.0)}
  loss = lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in target)
  params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}

  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), None
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=100)
    return params

  assert loss(run(params)) < 0.1 * loss(params)


def test_bias_bn_lr_scale_applies_to_vectors_only():
  cfg = _cfg(name="sgd", lr=1.0, lr_scaling="none", weight_decay=0.0, momentum=0.0,
             warmup_steps=0, bias_bn_lr_scale=0.5)
  tx, _ = optim.make_optimizer(cfg, total_steps=10, steps_per_epoch=1, global_batch_size=1)
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
  updates, _ = tx.update(params, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -1.0)
  np.testing.assert_allclose(updates["b"], -0.5)


def test_missing_fields_take_defaults():
  tx, schedule = optim.make_optimizer({"name": "sgd", "lr": 0.1, "lr_scaling": "none"},
                                      total_steps=300, steps_per_epoch=20, global_batch_size=8)
  np.testing.assert_allclose(float(schedule(200)), 0.1, rtol=1e-6)  # end of 10 warm-up epochs
  np.testing.assert_allclose(float(schedule(300)), 0.1 * 0.001, rtol=1e-5)
  assert tx.init({"w": jnp.ones((2, 2))}) is not None


@pytest.mark.parametrize(
  "overrides, key",
  [
    (dict(name="adam"), "optim.name"),
    (dict(lr=0.0), "optim.lr"),
    (dict(lr=-1.0), "optim.lr"),
    (dict(lr_scaling="sqrt"), "optim.lr_scaling"),
    (dict(base_batch_size=0), "optim.base_batch_size"),
    (dict(weight_decay=-1e-4), "optim.weight_decay"),
    (dict(momentum=1.0), "optim.momentum"),
    (dict(eta=0.0), "optim.eta"),
    (dict(clip_lr="yes"), "optim.clip_lr"),
    (dict(exclude_bias_bn=1), "optim.exclude_bias_bn"),
    (dict(bias_bn_lr_scale=-0.1), "optim.bias_bn_lr_scale"),
    (dict(warmup_epochs=11.0), "optim.warmup_epochs"),
    (dict(warmup_epochs=-1.0), "optim.warmup_epochs"),
    (dict(warmup_steps=101), "optim.warmup_steps"),
    (dict(warmup_steps=-2), "optim.warmup_steps"),
    (dict(min_lr_ratio=1.5), "optim.min_lr_ratio"),
    (dict(name="adamw", b2=1.0), "optim.b2"),
    (dict(name="adamw", b1=-0.1), "optim.b1"),
  ],
)
def test_bad_values_raise_config_error_naming_the_key(overrides, key):
  # A plain dict: a ConfigDict would itself refuse some of these types before we see them.
  cfg = dict(optim.default_config().to_dict(), **overrides)
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
    optim.make_optimizer(cfg, total_steps=100, steps_per_epoch=10,
                         global_batch_size=256)
  assert "\n" not in str(info.value)


def test_bad_run_length_raises():
  with pytest.raises(ConfigError, match="total_steps"):
    optim.make_schedule(_cfg(), total_steps=0, steps_per_epoch=1, global_batch_size=256)


# ----------------------------------------------------------------- options of single recipes


def _run(cfg, params, grads, steps, total=10):
  tx, schedule = optim.make_optimizer(cfg, total_steps=total, steps_per_epoch=2,
                                      global_batch_size=256)
  state = tx.init(params)
  history = []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history, schedule


def test_constant_lr_params_keep_the_peak_lr():
  """SimSiam's predictor: plain SGD steps of size peak LR while the rest follows the schedule."""
  cfg = dict(name="sgd", lr=0.5, lr_scaling="none", momentum=0.0, weight_decay=0.0,
             warmup_epochs=0.0, min_lr_ratio=0.0, constant_lr_params="predictor/")
  params = {"predictor": {"w": jnp.zeros((2, 2))}, "net": {"w": jnp.zeros((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  history, schedule = _run(cfg, params, grads, steps=3)
  for s, p in enumerate(history, start=1):
    np.testing.assert_allclose(p["predictor"]["w"], -0.5 * s)
    expected = -sum(float(schedule(k)) for k in range(s))
    np.testing.assert_allclose(p["net"]["w"], expected, rtol=1e-6)
  assert float(history[-1]["net"]["w"][0, 0]) > -1.5  # The scheduled LR did decay.


def test_freeze_params_hold_still_then_train():
  cfg = dict(name="adamw", lr=0.1, lr_scaling="none", weight_decay=0.5, warmup_epochs=0.0,
             freeze_params="last_layer", freeze_epochs=1.0)  # 1 epoch = 2 steps here.
  params = {"last_layer": {"w": jnp.ones((2, 2))}, "body": {"w": jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  history, _ = _run(cfg, params, grads, steps=3)
  for p in history[:2]:  # Neither the gradient nor the weight decay moved it.
    np.testing.assert_array_equal(p["last_layer"]["w"], 1.0)
    assert float(p["body"]["w"][0, 0]) < 1.0
  assert float(history[2]["last_layer"]["w"][0, 0]) < 1.0


def test_clip_grad_norm_is_per_tensor():
  """DINO's rule: g * min(1, c / (||g|| + 1e-6)) for each tensor on its own."""
  cfg = dict(name="sgd", lr=1.0, lr_scaling="none", momentum=0.0, weight_decay=0.0,
             warmup_epochs=0.0, min_lr_ratio=1.0, clip_grad_norm=3.0)
  params = {"big": jnp.zeros((4,)), "small": jnp.zeros((4,))}
  grads = {"big": jnp.full((4,), 10.0), "small": jnp.full((4,), 0.5)}  # Norms 20 and 1.
  (p,), _ = _run(cfg, params, grads, steps=1)
  np.testing.assert_allclose(p["big"], -10.0 * 3.0 / (20.0 + 1e-6), rtol=1e-6)
  np.testing.assert_allclose(p["small"], -0.5, rtol=1e-6)


def test_weight_decay_end_follows_dino_cosine():
  schedule = optim.weight_decay_schedule(0.04, 0.4, 100)
  for step in (0, 25, 50, 100, 150):  # DINO utils.cosine_scheduler, no warm-up, held after T.
    q = 0.5 * (1 + math.cos(math.pi * min(step, 100) / 100))
    np.testing.assert_allclose(float(schedule(step)), 0.4 + (0.04 - 0.4) * q, rtol=1e-6)


@pytest.mark.parametrize("overrides,key", [
    (dict(constant_lr_params="("), "optim.constant_lr_params"),
    (dict(freeze_params=3), "optim.freeze_params"),
    (dict(clip_grad_norm=-1.0), "optim.clip_grad_norm"),
    (dict(freeze_epochs=-1.0), "optim.freeze_epochs"),
    (dict(weight_decay_end="x"), "optim.weight_decay_end"),
])
def test_bad_new_options_name_the_key(overrides, key):
  cfg = dict(optim.default_config().to_dict(), **overrides)
  with pytest.raises(ConfigError, match=key):
    optim.make_optimizer(cfg, total_steps=100, steps_per_epoch=10, global_batch_size=256)


# ----------------------------------------------------------------- the infinite LR schedule
# References below are the paper form written out in float64 (shared/methods/infinite_lr.md,
# "Schedule shape"), independently of ssljax.optim.infinite_schedule.

_INF = dict(schedule="infinite", lr=1.0, lr_scaling="none", warmup_steps=50,
            cooldown_end_frac=0.15, constant_end_frac=0.80, constant_lr_ratio=0.1,
            anneal_min_lr_ratio=0.01)
_W, _C, _A, _T = 50, 150, 800, 1000  # warm-up end, cooldown end, anneal start, run end
_PEAK, _CONST, _MIN = 1.0, 0.1, 0.01


def _paper_lr(t, *, style="cosine", task=0, alpha=10.0):
  """eta(t) of the paper form with the breakpoints above (<= at every boundary)."""
  if task == 0 and t <= _W:
    return _PEAK * t / _W
  if task == 0 and t <= _C:
    s = (t - _W) / (_C - _W)
    if style == "cosine":
      return _CONST + (_PEAK - _CONST) / 2 * (1 + math.cos(math.pi * s))
    if style == "linear":
      return _PEAK - (_PEAK - _CONST) * s
    f = lambda u: 1 / math.sqrt(1 + alpha * u) - 1  # noqa: E731
    return _PEAK + (_CONST - _PEAK) * f(s) / f(1)
  if t <= _A:
    return _CONST
  return _CONST * (_MIN / _CONST) ** ((min(t, _T) - _A) / (_T - _A))


def _infinite(**overrides):
  cfg = dict(optim.default_config().to_dict(), **_INF)
  cfg.update(overrides)
  return optim.make_schedule(cfg, total_steps=_T, steps_per_epoch=10, global_batch_size=256)


def test_infinite_schedule_values_at_phase_boundaries():
  schedule = _infinite()
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(_W)), _PEAK, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(_C)), _CONST, rtol=1e-6)
  for t in (_C + 1, 400, _A - 1, _A):  # constant on (C, A]
    assert float(schedule(t)) == np.float32(_CONST), t
  np.testing.assert_allclose(float(schedule(_T)), _MIN, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(_T + 300)), _MIN, rtol=1e-5)  # held after the end


@pytest.mark.parametrize("style", ["cosine", "inv_sqrt", "linear"])
def test_infinite_schedule_matches_the_paper_formula(style):
  schedule = jax.jit(_infinite(cooldown_style=style))
  steps = [0, 7, 25, 49, 50, 51, 63, 100, 137, 149, 150, 151, 500, 800, 801, 850, 900, 999, 1000]
  for t in steps:
    np.testing.assert_allclose(float(schedule(t)), _paper_lr(t, style=style), rtol=1e-5,
                               atol=1e-8, err_msg=f"step {t}")


@pytest.mark.parametrize("style", ["cosine", "inv_sqrt", "linear"])
def test_infinite_schedule_is_continuous_at_every_boundary(style):
  # Float32 steps: one-sided limits 1e-3 steps either side. The steepest slope here (inv_sqrt's
  # start, 0.9 * (alpha / 2) / |f(1)| / 100 = 0.9 * 5 / 0.70 / 100 ~ 0.064 per step) moves the LR
  # < 1e-4 over 1e-3 steps;
  # a real jump would be >= the smallest LR gap (0.09 at C, 0.1 at W, ...).
  schedule = _infinite(cooldown_style=style)
  for b in (_W, _C, _A, _T):
    left, at, right = (float(schedule(jnp.float32(b + d))) for d in (-1e-3, 0.0, 1e-3))
    assert abs(left - at) < 3e-4 and abs(right - at) < 3e-4, (b, left, at, right)


def test_infinite_schedule_is_monotone_after_warmup_and_exponential_when_annealing():
  lrs = np.asarray(jax.vmap(_infinite())(jnp.arange(_W, _T + 1)), np.float64)
  assert np.all(np.diff(lrs) <= 1e-7)
  log_lr = np.log(lrs[_A - _W:])  # t = A..T
  slope = np.log(_MIN / _CONST) / (_T - _A)
  np.testing.assert_allclose(log_lr, np.log(_CONST) + slope * np.arange(_T - _A + 1), atol=2e-6)


def test_later_tasks_start_at_the_constant_lr():
  schedule = _infinite(task_index=2)
  lrs = np.asarray(jax.vmap(schedule)(jnp.arange(_T + 1)))
  assert lrs[0] == np.float32(_CONST) and lrs.max() <= np.float32(_CONST)
  np.testing.assert_allclose(lrs[_A], _CONST, rtol=1e-6)
  np.testing.assert_allclose(lrs[_T], _MIN, rtol=1e-5)
  for t in (0, 300, 850, 1000):
    np.testing.assert_allclose(lrs[t], _paper_lr(t, task=2), rtol=1e-5)


def test_infinite_schedule_without_anneal_or_warmup():
  schedule = _infinite(constant_end_frac=1.0)  # never anneal: continue the stream from here
  np.testing.assert_allclose(float(schedule(_T)), _CONST, rtol=1e-6)
  schedule = _infinite(warmup_steps=0)  # cooldown starts at the peak
  np.testing.assert_allclose(float(schedule(0)), _PEAK, rtol=1e-6)
  # Cosine cooldown from 0 to 150: at 75 halfway between peak and constant.
  np.testing.assert_allclose(float(schedule(75)), (_PEAK + _CONST) / 2, rtol=1e-5)


def test_repeated_cosine_baseline_ignores_the_task_index():
  """Each task of the baseline re-warms: 0 at step 0, peak at warm-up end, lr*min_lr_ratio at T."""
  cfg = _cfg(lr=0.5, lr_scaling="none", warmup_steps=10, min_lr_ratio=0.01, task_index=3)
  schedule = optim.make_schedule(cfg, total_steps=100, steps_per_epoch=10, global_batch_size=8)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(100)), 0.005, rtol=1e-5)


def test_infinite_schedule_drives_the_optimizer_and_scales_with_the_batch():
  # Plain SGD without momentum or decay on unit gradients: each update is -lr_t.
  cfg = dict(optim.default_config().to_dict(), **_INF)
  cfg.update(name="sgd", momentum=0.0, weight_decay=0.0, lr=0.5, lr_scaling="linear",
             base_batch_size=256)
  tx, schedule = optim.make_optimizer(cfg, total_steps=_T, steps_per_epoch=10,
                                      global_batch_size=512)
  np.testing.assert_allclose(float(schedule(_W)), 1.0, rtol=1e-6)  # 0.5 * 512 / 256
  params = {"w": jnp.zeros((2, 2))}
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(3):
    updates, state = update(jax.tree.map(jnp.ones_like, params), state, params)
    np.testing.assert_allclose(updates["w"], -_paper_lr(t), rtol=1e-6, atol=1e-9)


def test_presets_carry_the_schedule_fields():
  """experiments/common.py's presets copy default_config(), so a locked config can override."""
  from experiments import common

  for preset in (common.lars(lr=0.3), common.sgd(lr=0.1), common.adamw(lr=1e-3)):
    for key in ("schedule", "cooldown_end_frac", "constant_end_frac", "constant_lr_ratio",
                "anneal_min_lr_ratio", "cooldown_style", "inv_sqrt_alpha", "task_index"):
      assert key in preset, key
    assert preset.schedule == "cosine"


@pytest.mark.parametrize("overrides, key", [
    (dict(schedule="step"), "optim.schedule"),
    (dict(cooldown_end_frac=0.9, constant_end_frac=0.5), "optim.constant_end_frac"),
    (dict(constant_end_frac=1.2), "optim.constant_end_frac"),
    (dict(cooldown_end_frac=-0.1), "optim.cooldown_end_frac"),
    (dict(cooldown_end_frac=0.04), "optim.cooldown_end_frac"),  # ends inside the 50-step warm-up
    (dict(constant_lr_ratio=0.0), "optim.constant_lr_ratio"),
    (dict(constant_lr_ratio=1.5), "optim.constant_lr_ratio"),
    (dict(anneal_min_lr_ratio=0.0), "optim.anneal_min_lr_ratio"),
    (dict(anneal_min_lr_ratio=0.2), "optim.anneal_min_lr_ratio"),  # above constant_lr_ratio
    (dict(cooldown_style="exp"), "optim.cooldown_style"),
    (dict(cooldown_style="inv_sqrt", inv_sqrt_alpha=0.0), "optim.inv_sqrt_alpha"),
    (dict(task_index=-1), "optim.task_index"),
    (dict(task_index=1.5), "optim.task_index"),
])
def test_bad_infinite_settings_raise_config_error_naming_the_key(overrides, key):
  cfg = dict(optim.default_config().to_dict(), **_INF)
  cfg.update(overrides)
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
    optim.make_optimizer(cfg, total_steps=_T, steps_per_epoch=10, global_batch_size=256)
  assert "\n" not in str(info.value)


# --------------------------------------------------------------- parameter groups (optax.partition)


def test_online_probe_has_its_own_optimizer():
  """The probe's SGD step is -lr * g at every step: no LARS ratio, no weight decay, no warm-up.

  The backbone's LARS is still at LR 0 on its first warm-up step, so it does not move at all.
  """
  cfg = _cfg(name="lars", lr=0.3, lr_scaling="none", weight_decay=0.5, eta=0.02, warmup_steps=5)
  probe = optim.probe_optimizer("sgd", lr=0.1, momentum=0.0)
  tx, _ = optim.make_optimizer(cfg, total_steps=10, steps_per_epoch=1, global_batch_size=8,
                               separate={"online_probe": probe})
  params = {"method": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)},
            "online_probe": {"kernel": jnp.ones((2, 4)), "bias": jnp.ones(4)}}
  grads = jax.tree.map(lambda p: 2.0 * jnp.ones_like(p), params)
  state = tx.init(params)
  for _ in range(2):
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["online_probe"]["kernel"], -0.2, rtol=1e-6)
    np.testing.assert_allclose(updates["online_probe"]["bias"], -0.2, rtol=1e-6)
  first, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(first["method"]["w"], 0.0)


def test_probe_optimizer_settings_are_checked():
  with pytest.raises(ConfigError, match="eval.online_probe_optimizer='lars'"):
    optim.probe_optimizer("lars", lr=0.1)
  with pytest.raises(ConfigError, match="eval.online_probe_lr=0.0"):
    optim.probe_optimizer("sgd", lr=0.0)
  assert optim.probe_optimizer("adam", lr=1e-3).init({"w": jnp.ones(2)}) is not None


@pytest.mark.parametrize("key", ["freeze_params", "constant_lr_params"])
def test_a_parameter_regex_that_matches_nothing_is_an_error(key):
  cfg = dict(name="sgd", lr=0.5, lr_scaling="none", warmup_epochs=0.0, freeze_epochs=1.0,
             **{key: "predictr/"})
  tx, _ = optim.make_optimizer(cfg, total_steps=10, steps_per_epoch=2, global_batch_size=8)
  params = {"method": {"predictor": {"w": jnp.zeros((2, 2))}}}
  with pytest.raises(ConfigError, match=rf"optim\.{key}='predictr/' matches no parameter") as e:
    tx.init(params)
  assert "method/predictor/w" in str(e.value) and "\n" not in str(e.value)


def test_decay_mask_treats_named_bias_rows_as_biases():
  # The table tokenizer's per-column bias rows are 2-D but are biases (official T-JEPA: no decay).
  params = {"tok": {"num_weight": jnp.zeros((3, 4)), "num_bias": jnp.zeros((3, 4))},
            "dense": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros((2,))}}
  assert optim.decay_mask(params) == {"tok": {"num_weight": True, "num_bias": False},
                                      "dense": {"kernel": True, "bias": False}}
