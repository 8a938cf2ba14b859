"""FST-D: mean teacher with a look-ahead (virtual future student); oracle items of the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_setup import setup

from experiments import fst as fst_experiment
from ssljax import methods
from ssljax.errors import ConfigError
from ssljax.methods import _common, fst
from ssljax.methods import self_training as st


def _close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_ema_schedule():
  # a_t = min(1 - 1/(t+1), alpha): a_0 = 0, a_1 = 0.5, a_2 = 2/3, then held at alpha.
  assert float(fst.ema_coefficient(0, alpha=0.99)) == 0.0
  assert float(fst.ema_coefficient(1, alpha=0.99)) == 0.5
  assert float(fst.ema_coefficient(2, alpha=0.99)) == pytest.approx(2 / 3)
  assert float(fst.ema_coefficient(10_000, alpha=0.99)) == pytest.approx(0.99)
  assert float(fst.ema_coefficient(10**6, alpha=0.999)) == pytest.approx(0.999)


def _moved_state(params, state, *, step, seed=0):
  """A teacher that differs from the student, at real step ``step``."""
  leaves, tree = jax.tree.flatten(params["net"])
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
  teacher = {"params": jax.tree.unflatten(tree, noisy), "state": state["teacher"]["state"]}
  return {**state, "teacher": teacher, "step": jnp.asarray(step, jnp.float32)}


B = 8  # A small batch keeps these tests quick on a shared CPU.
LABELS = jnp.asarray(np.where(np.arange(B) % 2 == 0, np.arange(B) % 10, -1), jnp.int32)


_BASE = {}


def _setup(**fst_overrides):
  """``(config, method, params, state, views)``: one init per session, the method rebuilt.

  The parameters do not depend on the ``fst.*`` keys, so only ``methods.make`` reruns.
  """
  if not _BASE:
    config, _, params, state, views = setup("fst", batch=B)
    _BASE.update(config=config, params=params, state=state, views=views)
  config = _BASE["config"].copy_and_resolve_references()
  for key, value in fst_overrides.items():
    config.fst[key] = value
  method = methods.make(config, total_steps=100, steps_per_epoch=10)
  return config, method, _BASE["params"], _BASE["state"], _BASE["views"]


def _jit_loss(method):
  """The method's loss, jitted once per test (labels as an argument)."""
  fn = jax.jit(lambda p, s, v, y: method.loss(p, s, v, jax.random.key(0), labels=y))
  return lambda params, state, views, labels=LABELS: fn(params, state, views, labels)


def test_k0_is_exactly_the_mean_teacher():
  config, method, params, state, views = _setup(lookahead_steps=0, ema_alpha=0.9)
  state = _moved_state(params, state, step=5)
  # By hand: phi_t = a phi_{t-1} + (1 - a) theta_t with a = min(1 - 1/6, 0.9) = 5/6, then
  # L = CE on visible labels (student, strong view) + mean_b 1[max q >= tau] CE(student, argmax q)
  # with q the softmax of the teacher phi_t on the weak view.
  a = 5 / 6
  phi = jax.tree.map(lambda t, s: a * t + (1 - a) * s, state["teacher"]["params"], params["net"])
  net = st.classifier_net(config, 10)
  strong, weak = views
  fwd = jax.jit(lambda p, s, x: _common.apply_train(net, p, s, x)[0][1])
  t_logits = fwd(phi, state["teacher"]["state"], weak)
  s_logits = fwd(params["net"], state["net"], strong)
  q = np.asarray(jax.nn.softmax(t_logits))
  tau = float(np.median(q.max(-1)))  # Some examples pass, some do not.
  mask = q.max(-1) >= tau
  assert 0 < mask.sum() < B
  config.fst.threshold = tau
  method = methods.make(config, total_steps=100, steps_per_epoch=10)
  seen = np.asarray(LABELS) >= 0
  sup = optax.softmax_cross_entropy_with_integer_labels(s_logits[seen],
                                                        np.asarray(LABELS)[seen]).mean()
  unsup = np.sum(mask * optax.softmax_cross_entropy_with_integer_labels(
      s_logits, q.argmax(-1))) / B
  loss, (new_state, metrics, _) = _jit_loss(method)(params, state, views)
  np.testing.assert_allclose(float(loss), float(sup + unsup), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["mask_rate"]), mask.mean(), rtol=1e-6)
  _close(new_state["teacher"]["params"], phi)
  assert float(new_state["step"]) == 6.0
  np.testing.assert_allclose(float(metrics["ema_coef"]), a, rtol=1e-6)


def test_zero_virtual_lr_gives_ema_of_the_unchanged_student():
  _, method, params, state, views = _setup(lookahead_steps=2, virtual_lr=0.0, ema_alpha=0.9)
  state = _moved_state(params, state, step=3)
  _, (new_state, _, _) = _jit_loss(method)(params, state, views)
  # K = 2 virtual steps that do not move theta: three EMA updates towards the same theta,
  # phi' = a^3 phi + (1 - a^3) theta with a = min(1 - 1/4, 0.9) = 0.75.
  a3 = 0.75**3
  expected = jax.tree.map(lambda t, s: a3 * t + (1 - a3) * s, state["teacher"]["params"],
                          params["net"])
  _close(new_state["teacher"]["params"], expected)


def test_lookahead_moves_the_teacher_and_step_zero_is_a_plain_step():
  _, method, params, state, views = _setup(lookahead_steps=1, virtual_lr=1.0, threshold=0.0)
  loss_fn = _jit_loss(method)
  # Step 0: a_0 = 0 and no virtual move, so the teacher becomes a copy of the student.
  _, (s0, _, _) = loss_fn(params, _moved_state(params, state, step=0), views)
  _close(s0["teacher"]["params"], params["net"])
  # Later steps: the future teacher differs from the plain mean teacher's.
  moved = _moved_state(params, state, step=4)
  _, (s1, _, _) = loss_fn(params, moved, views)
  a = 0.8
  mean_teacher = jax.tree.map(lambda t, s: a * t + (1 - a) * s, moved["teacher"]["params"],
                              params["net"])
  diff = max(float(jnp.abs(x - y).max()) for x, y in zip(
      jax.tree.leaves(s1["teacher"]["params"]), jax.tree.leaves(mean_teacher), strict=True))
  assert diff > 1e-4


def _linear_problem():
  rng = np.random.default_rng(0)
  x_l = rng.normal(size=(5, 3))
  y_l = rng.normal(size=(5,))
  x_u = rng.normal(size=(7, 3))
  theta = rng.normal(size=(3,))
  phi = rng.normal(size=(3,))
  return x_l, y_l, x_u, theta, phi


def test_linear_regression_toy_matches_closed_form():
  """One FST step on L(w; phi) = 1/2 mean (X_l w - y)^2 + 1/2 mean (X_u w - X_u phi)^2."""
  x_l, y_l, x_u, theta, phi = _linear_problem()

  def objective(w, p):
    sup = 0.5 * jnp.mean((x_l @ w - y_l) ** 2)
    unsup = 0.5 * jnp.mean((x_u @ w - jax.lax.stop_gradient(x_u @ p)) ** 2)
    return sup + unsup, None

  def grad_by_hand(w, p):  # d/dw of the objective with the teacher's targets fixed.
    return x_l.T @ (x_l @ w - y_l) / 5 + x_u.T @ (x_u @ (w - p)) / 7

  a, eta, lr = 0.7, 0.05, 0.1
  for k in (1, 2):
    # Closed form of FST-D with K virtual steps, written out from the algorithm.
    w, p = theta.copy(), phi.copy()
    for _ in range(k):
      p = a * p + (1 - a) * w
      w = w - eta * grad_by_hand(w, p)
    p_future = a * p + (1 - a) * w
    g_real = grad_by_hand(theta, p_future)  # Real gradient at the restored student.
    theta_next = theta - lr * g_real
    loss_fn = lambda w, k=k: fst.fst_loss(objective, w, jnp.asarray(phi), lookahead_steps=k,
                                          virtual_lr=eta, ema_coef=a)
    (_, (phi_future, _)), g = jax.value_and_grad(loss_fn, has_aux=True)(jnp.asarray(theta))
    np.testing.assert_allclose(phi_future, p_future, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, g_real, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(theta - lr * g, theta_next, rtol=1e-5, atol=1e-6)
  # K = 0: the future teacher is the mean teacher.
  phi0 = fst.future_teacher(objective, jnp.asarray(theta), jnp.asarray(phi), lookahead_steps=0,
                            virtual_lr=eta, ema_coef=a)
  np.testing.assert_allclose(phi0, a * phi + (1 - a) * theta, rtol=1e-6)


def test_hidden_labels_contribute_no_supervised_loss():
  _, method, params, state, views = _setup(threshold=1.0)
  hidden = jnp.full((B,), -1, jnp.int32)
  loss_fn = _jit_loss(method)
  loss, (_, metrics, _) = loss_fn(params, state, views, hidden)
  assert float(metrics["supervised_loss"]) == 0.0
  assert float(metrics["mask_rate"]) == 0.0 and float(loss) == 0.0
  _, (_, m2, _) = loss_fn(params, state, views)
  assert float(m2["supervised_loss"]) > 0.0


def test_baseline_variant_is_labelled_only():
  config = fst_experiment.get_config("runlocal,baseline")
  assert config.fst.unlabelled_weight == 0.0 and config.fst.lookahead_steps == 0
  assert methods.make(config, total_steps=10, steps_per_epoch=5).uses_labels
  assert fst_experiment.get_config("lookahead=3").fst.lookahead_steps == 3
  assert fst_experiment.get_config("data=cifar10").input.label_fraction == 0.08


@pytest.mark.parametrize("key,value", [("lookahead_steps", -1),
                                       ("ema_alpha", 1.0), ("ema_alpha", -0.1),
                                       ("threshold", 1.5), ("virtual_lr", -0.1),
                                       ("unlabelled_weight", -1.0)])
def test_bad_values_name_the_key(key, value):
  with pytest.raises(ConfigError, match=f"fst.{key}"):
    _setup(**{key: value})
