"""FST, "Learning from Future" (Du et al., NeurIPS 2022): mean teacher with a virtual student.

Semi-supervised classification from a few labels (``input.label_fraction``). The student
``theta`` (``params``) sees the strong view, an EMA teacher ``phi`` (``method_state``) the weak
view; the per-step objective is::

  L(theta; phi) = CE_labelled(f_theta(strong), y)
                  + lambda_u * mean_b 1[max q_b >= tau] CE(f_theta(strong_b), argmax q_b)
  q = softmax(stop_gradient(f_phi(weak)))

FST-D (the official ``fst_d.py``, K = ``lookahead_steps`` virtual steps on the same batch)::

  phi_0 = phi; theta_0 = theta
  for k < K:  phi_{k+1} = EMA(phi_k, theta_k)
              theta_{k+1} = theta_k - eta grad L(theta_k; phi_{k+1})
  phi' = EMA(phi_K, theta_K)                      # teacher of the K-th virtual ("future") student
  loss = L(theta; phi')                           # the real loss, at the restored student

with ``EMA(phi, theta) = a_t phi + (1 - a_t) theta`` and ``a_t = min(1 - 1/(t+1), alpha)``,
``t`` the number of real steps taken (``method_state["step"]``, float32); all K+1 EMA updates of
one step use the same ``a_t``. ``phi'`` is returned as the new teacher, so the teacher moves inside
the loss and ``update`` is the identity. ``K = 0`` is exactly the mean teacher
(``phi_t = EMA(phi_{t-1}, theta_t)``, loss ``L(theta_t; phi_t)``). Step 0 is a plain step, as the
official code (``a_0 = 0`` makes the teacher a copy of the student; the virtual LR is 0 there).

Choices about the official code, stated explicitly:

* **Virtual steps use plain SGD** ``theta - eta grad`` with ``eta = fst.virtual_lr``, computed
  with an inner ``jax.grad``, not the real optimiser (official: the real optimiser, AdamW): the
  optimiser state belongs to the trainer, outside the loss.
* **Nothing leaks across virtual steps** (the functional version restores everything): the
  official code restores only the student's weights, so Adam moments and BatchNorm running
  statistics of the virtual passes leak into the real step. Here the optimiser state is untouched,
  and the student's and teacher's BatchNorm statistics from the virtual passes are discarded; the
  new state holds those of the real pass (student on the strong view, teacher ``phi'`` on the weak
  view). There is no ``leak_optimizer_state`` flag.
* Everything in the look-ahead is under stop-gradient: the real loss is differentiated at fixed
  ``phi'`` (the official code detaches the pseudo-labels the same way).
* Pseudo-labels are DACS's per-image weight reduced to classification: one "pixel" per image, so
  the weight is the mask ``max q >= tau``. Both networks run in training mode (batch statistics),
  as mean-teacher code does. ``represent`` evaluates the student.
* FST-W (K virtual students on K future batches) is not implemented: the trainer hands a loss
  one batch.

Cost: K + 1 forward/backward passes of the student and K + 1 forward passes of the teacher per
step.

Config keys read (see ``experiments/fst.py``): ``encoder.*``, the views ``input.views.strong`` /
``input.views.weak`` and ``fst.*``: ``lookahead_steps`` (K >= 0, integer), ``virtual_lr``
(eta >= 0), ``ema_alpha`` (alpha in [0, 1)), ``threshold`` (tau in [0, 1]),
``unlabelled_weight`` (lambda_u >= 0; 0 is the labelled-only baseline).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ssljax import methods
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common
from ssljax.methods import self_training as st

PyTree = Any
# The student's view comes first: the representation returned for the online probe is of view 0.
VIEW_NAMES = ("strong", "weak")

# (theta, phi) -> (loss, aux): the objective whose teacher FST looks ahead with.
Objective = Callable[[PyTree, PyTree], tuple[jax.Array, Any]]


def ema_coefficient(step, *, alpha: float) -> jax.Array:
  """The mean-teacher EMA coefficient ``a_t = min(1 - 1/(t+1), alpha)`` (DACS / FST)."""
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(1.0 - 1.0 / (t + 1.0), alpha)


def future_teacher(objective: Objective, theta: PyTree, phi: PyTree, *, lookahead_steps: int,
                   virtual_lr, ema_coef) -> PyTree:
  """The teacher after ``lookahead_steps`` virtual SGD steps of the student (FST-D).

  Args:
    objective: ``(theta, phi) -> (loss, aux)``, the loss of student ``theta`` with teacher
      ``phi``.
    theta: the current student parameters (not changed; gradients stopped).
    phi: the current teacher parameters (gradients stopped).
    lookahead_steps: K >= 0 (static); 0 gives the mean teacher ``EMA(phi, theta)``.
    virtual_lr: eta, the virtual plain-SGD step size (scalar, may be traced).
    ema_coef: a_t, the EMA coefficient of every teacher update (scalar, may be traced).

  Returns:
    ``phi' = EMA(phi_K, theta_K)`` under stop-gradient, a pytree like ``phi``.
  """
  theta = jax.lax.stop_gradient(theta)
  phi = jax.lax.stop_gradient(phi)
  grad_fn = jax.grad(lambda th, ph: objective(th, ph)[0])

  def virtual_step(_, carry):
    th, ph = carry
    ph = _common.ema(ph, th, ema_coef)
    g = grad_fn(th, ph)
    return jax.tree.map(lambda p, d: p - virtual_lr * d, th, g), ph

  # Unrolled (K copies of the inner forward/backward in the program): in a lax.fori_loop the
  # same step ran 24x slower on XLA:CPU (0.78 s against 0.032 s per training step of the digits
  # recipe, K = 1), and K is 1 to 3 in the recipes, so compile time grows little.
  for i in range(lookahead_steps):
    theta, phi = virtual_step(i, (theta, phi))
  return jax.lax.stop_gradient(_common.ema(phi, theta, ema_coef))


def fst_loss(objective: Objective, theta: PyTree, phi: PyTree, *, lookahead_steps: int,
             virtual_lr, ema_coef) -> tuple[jax.Array, tuple[PyTree, Any]]:
  """The real FST loss ``L(theta; phi')`` and the future teacher ``phi'``.

  Returns:
    ``(loss, (phi', aux))``; gradients reach ``theta`` only through the real objective.
  """
  phi_future = future_teacher(objective, theta, phi, lookahead_steps=lookahead_steps,
                              virtual_lr=virtual_lr, ema_coef=ema_coef)
  loss, aux = objective(theta, phi_future)
  return loss, (phi_future, aux)


def _check_steps(value, key: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ConfigError(f"{key}={value!r} must be an integer >= 0 (0 = plain mean teacher)")
  return int(value)


def _check_alpha(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
    raise ConfigError(f"{key}={value!r} must be a number in [0, 1) (teacher EMA coefficient)")
  return float(value)


def make(config, *, total_steps: int, steps_per_epoch: int, num_classes: int = 10) -> Method:
  """Builds FST-D from an experiment config."""
  del total_steps, steps_per_epoch
  cfg = config.fst
  steps = _check_steps(cfg.lookahead_steps, "fst.lookahead_steps")
  virtual_lr = _common.check_nonnegative(cfg.virtual_lr, "fst.virtual_lr")
  alpha = _check_alpha(cfg.ema_alpha, "fst.ema_alpha")
  threshold = st.check_threshold(cfg.threshold, "fst.threshold")
  weight = _common.check_nonnegative(cfg.unlabelled_weight, "fst.unlabelled_weight")
  views = _common.view_recipes(config, VIEW_NAMES)
  st.check_views(views, VIEW_NAMES)
  net = st.classifier_net(config, num_classes)

  def init(rng, images_bhwc):
    params, state = _common.init_variables(net, rng, images_bhwc)
    teacher = {"params": params, "state": state}
    return {"net": params}, {"net": state, "teacher": teacher, "step": jnp.zeros((), jnp.float32)}

  def loss(params, method_state, views, rng, labels=None):
    del rng
    strong, weak = views
    if labels is None:  # Called without labels: all hidden.
      labels = jnp.full((strong.shape[0],), -1, jnp.int32)
    student_state = method_state["net"]
    teacher_state = method_state["teacher"]["state"]

    def objective(theta, phi):
      (_, t_logits), t_state = _common.apply_train(net, phi, teacher_state, weak)
      q = jax.nn.softmax(jax.lax.stop_gradient(t_logits).astype(jnp.float32))
      (h, logits), s_state = _common.apply_train(net, theta, student_state, strong)
      sup = st.masked_cross_entropy(logits, labels)
      unsup, mask = st.pseudo_label_loss(logits, q, threshold=threshold)
      metrics = {"supervised_loss": sup, "pseudo_label_loss": unsup,
                 **st.pseudo_label_metrics(q, mask, labels)}
      return sup + weight * unsup, (h, s_state, t_state, metrics)

    # Float32 (exact to 2^24 steps): a state leaf the contract differentiates must be real.
    t = jax.lax.stop_gradient(method_state["step"])
    # Step 0 is a plain step (the official code's first iteration only initialises the EMA).
    eta = jnp.where(t > 0, virtual_lr, 0.0)
    phi = jax.lax.stop_gradient(method_state["teacher"]["params"])
    total, (phi_future, (h, s_state, t_state, metrics)) = fst_loss(
        objective, params["net"], phi, lookahead_steps=steps, virtual_lr=eta,
        ema_coef=ema_coefficient(t, alpha=alpha))
    new_state = {"net": s_state, "teacher": {"params": phi_future, "state": t_state},
                 "step": t + 1}
    return total, (new_state, {**metrics, "ema_coef": ema_coefficient(t, alpha=alpha)}, h)

  return Method(name="fst", views=views, init=init, loss=loss, update=methods.identity_update,
                represent=st.classifier_represent(net), uses_labels=True,
                backbone=st.classifier_backbone(net))
