"""MYOW (Azabou et al., 2021): BYOL plus prediction of a *mined* view, another sample's target.

Config keys read (see ``experiments/myow.py``): ``encoder.*``, ``projector.*`` (g),
``predictor.*`` (q), ``projector_m.*`` (g', the mined-view projector), ``predictor_m.*`` (q'),
``myow.base_momentum`` / ``myow.final_momentum`` (EMA schedule
``tau_k = final - (final - base)(cos(pi k / K) + 1) / 2``), ``myow.knn_k`` (mine among the k
nearest), ``myow.warmup_epochs`` / ``myow.rampup_epochs`` / ``myow.max_weight`` (mined-loss
weight schedule, see :func:`mined_weight`), ``myow.layout`` (``'cascaded'``: g' after g;
``'parallel'``: g' on the representation), ``input.batch_size`` (bounds ``knn_k``) and the views
``input.views.view1`` / ``view2`` (strong) / ``mine`` (weak, for mining).

The loss is ``L_aug / (1 + w) + w L_mine / (1 + w)`` with the symmetric BYOL loss
``L_aug = (l(q1, t2) + l(q2, t1)) / 2`` and, for each sample i,
``L_mine = l(q'(g'(g(f(x_i)))), sg(g'_xi(g_xi(f_xi(x_m(i))))))``, where ``x_m(i)`` is drawn
uniformly from the k nearest neighbours of ``f(x_i)`` (cosine distance, online encoder) among
``f_xi`` of the candidate pool (target encoder), both on the weak ``mine`` view.

The candidate pool is the rest of the global batch (sample i itself masked out), not a second batch
from an independent loader as in the official code: a method sees one batch per step here. With a
shuffled loader the other rows of a batch are such an independent draw of B - 1 samples; under
data parallelism the pool is the global batch, as the official all-gathered pool.

The target network (f, g and g' copies) lives in ``method_state`` (``teacher``, ``teacher_m``) and
moves only by the EMA in ``update``; the predictors have no target copy. ``w`` is kept in
``method_state["myow_weight"]`` (set for the next step by ``update``); while it is 0 the mining
branch's loss and state are discarded (it is computed, then not selected: a ``lax.cond`` around
it ran ~10x slower on XLA:CPU than the mined passes cost).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common

VIEW_NAMES = ("view1", "view2", "mine")
LAYOUTS = ("cascaded", "parallel")
_HIGHEST = jax.lax.Precision.HIGHEST


# -------------------------------------------------------------------------- pure pieces


def mined_weight(step, *, warmup_epochs: float, rampup_epochs: float, max_weight: float,
                 steps_per_epoch: int):
  """The official mined-loss weight: 0, then a linear ramp, then ``max_weight``.

  ``w = 0`` before epoch ``warmup_epochs``; ``w = max_weight (e - warmup) / (rampup - warmup)``
  in between; ``w = max_weight`` from epoch ``rampup_epochs`` on (an absolute epoch, not a
  duration). With ``rampup_epochs == warmup_epochs`` the weight jumps at that epoch.

  Args:
    step: training step (int or traced scalar).
    warmup_epochs: epochs without the mined loss.
    rampup_epochs: epoch at which the ramp reaches ``max_weight`` (>= ``warmup_epochs``).
    max_weight: the final weight.
    steps_per_epoch: converts steps to (fractional) epochs.

  Returns:
    float32 scalar.
  """
  epoch = jnp.asarray(step, jnp.float32) / steps_per_epoch
  if rampup_epochs > warmup_epochs:
    frac = jnp.clip((epoch - warmup_epochs) / (rampup_epochs - warmup_epochs), 0.0, 1.0)
  else:
    frac = jnp.where(epoch < warmup_epochs, 0.0, 1.0)
  return (max_weight * frac).astype(jnp.float32)


def mine_views(y_bf: jax.Array, pool_pf: jax.Array, rng: jax.Array, *, k: int,
               exclude_self: bool = False) -> jax.Array:
  """For each anchor, one of its k nearest pool items (cosine distance), drawn uniformly.

  Args:
    y_bf: [B, F] anchor representations.
    pool_pf: [P, F] candidate representations.
    rng: key for the uniform choice among the k nearest.
    k: number of nearest neighbours to choose from (1 <= k <= P, or P - 1 with exclude_self).
    exclude_self: anchors and pool are the same samples (P == B): pool item i is never mined
      for anchor i.

  Returns:
    int32 [B] indices into the pool.
  """
  b, p = y_bf.shape[0], pool_pf.shape[0]
  if exclude_self and b != p:
    raise ValueError(f"mine_views: exclude_self needs as many anchors as pool items, got {b}, {p}")
  if not 1 <= k <= p - int(exclude_self):
    raise ValueError(f"mine_views: k={k} must be in [1, {p - int(exclude_self)}] for a pool of "
                     f"{p}" + (" (self excluded)" if exclude_self else ""))
  y_bf = jax.lax.stop_gradient(losses.l2_normalize(y_bf))
  pool_pf = jax.lax.stop_gradient(losses.l2_normalize(pool_pf))
  # Smallest distance 2 - 2 cos == largest cosine.
  sim_bp = jnp.matmul(y_bf, pool_pf.T, precision=_HIGHEST)
  if exclude_self:
    sim_bp = jnp.where(jnp.eye(b, dtype=bool), -jnp.inf, sim_bp)
  _, nearest_bk = jax.lax.top_k(sim_bp, k)
  choice_b = jax.random.randint(rng, (b,), 0, k)
  return jnp.take_along_axis(nearest_bk, choice_b[:, None], axis=1)[:, 0].astype(jnp.int32)


def _encode(module, x, *, train):
  """``EncoderHead`` up to the representation (used with ``module.apply(..., method=)``)."""
  return module.encoder(x, train=train)


def _project(module, h, *, train):
  """``EncoderHead``'s projector alone, on a representation."""
  return module.head(h, train=train)


# ------------------------------------------------------------------------------- method


def _config_int(value, key: str, *, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ConfigError(f"{key}={value!r} must be an integer >= {low}")
  return int(value)




def build(net: nn.Module, predictor: nn.Module, projector_m: nn.Module, predictor_m: nn.Module,
          *, views, knn_k: int, layout: str, base_momentum: float, final_momentum: float,
          schedule: dict, total_steps: int) -> Method:
  """MYOW from its networks (``make`` builds them from a config; tests pass small ones).

  Args:
    net: ``EncoderHead(encoder f, projector g)`` returning ``(representation, projection)``.
    predictor: q, on g's output.
    projector_m: g', on g's output (cascaded) or on the representation (parallel).
    predictor_m: q', on g''s output.
    views: the three view recipes (strong, strong, weak).
    knn_k: mine among this many nearest neighbours.
    layout: ``'cascaded'`` or ``'parallel'``.
    base_momentum, final_momentum: the EMA schedule's ends.
    schedule: keyword arguments of :func:`mined_weight` (except ``step``).
    total_steps: run length (EMA schedule).
  """
  cascaded = layout == "cascaded"

  def init(rng, images_bhwc):
    online_rng, m_rng, q_rng = jax.random.split(rng, 3)
    params, state = _common.init_online_and_target(net, predictor, online_rng, images_bhwc)
    h, z = _common.apply_eval(net, params["net"], state["net"], images_bhwc)
    g_params, g_state = _common.init_variables(projector_m, m_rng, z if cascaded else h)
    v = _common.apply_eval(projector_m, g_params, g_state, z if cascaded else h)
    q_params, q_state = _common.init_variables(predictor_m, q_rng, v)
    params = {**params, "projector_m": g_params, "predictor_m": q_params}
    state = {**state, "projector_m": g_state, "predictor_m": q_state,
             "teacher_m": {"params": g_params, "state": g_state},
             "myow_weight": mined_weight(0, **schedule)}
    return params, state

  def mined_loss(params, state, x_mine, rng):
    """``(L_mine, state, metrics)``: mine in the weak view's batch, predict the mined target."""
    teacher, teacher_m = state["teacher"], state["teacher_m"]
    y_bf, net_state = _common.apply_train(net, params["net"], state["net"], x_mine,
                                          method=_encode)
    pool_bf, teacher_state = _common.apply_train(net, teacher["params"], teacher["state"], x_mine,
                                                 method=_encode)
    pool_bf = jax.lax.stop_gradient(pool_bf)
    idx_b = mine_views(y_bf, pool_bf, rng, k=knn_k, exclude_self=True)
    # As the official code: the target's heads run on the mined rows (BatchNorm over them).
    target_in = pool_bf[idx_b]
    online_in = y_bf
    if cascaded:
      online_in, net_state = _common.apply_train(net, params["net"], net_state, y_bf,
                                                 method=_project)
      target_in, teacher_state = _common.apply_train(net, teacher["params"], teacher_state,
                                                     target_in, method=_project)
    v_bk, g_state = _common.apply_train(projector_m, params["projector_m"], state["projector_m"],
                                        online_in)
    q_bk, q_state = _common.apply_train(predictor_m, params["predictor_m"], state["predictor_m"],
                                        v_bk)
    t_bk, tm_state = _common.apply_train(projector_m, teacher_m["params"], teacher_m["state"],
                                         target_in)
    loss = losses.byol_loss(q_bk, t_bk)  # Stops the gradient at the target.
    state = {**state, "net": net_state, "projector_m": g_state, "predictor_m": q_state,
             "teacher": {"params": teacher["params"], "state": teacher_state},
             "teacher_m": {"params": teacher_m["params"], "state": tm_state}}
    # How far the mined neighbours are (cosine distance in representation space).
    dist = 2.0 - 2.0 * jnp.sum(losses.l2_normalize(jax.lax.stop_gradient(y_bf))
                               * losses.l2_normalize(pool_bf[idx_b]), axis=-1)
    return loss, state, {"mined_distance": jnp.mean(dist)}

  def skip_mining(params, state, x_mine, rng):
    del params, x_mine, rng
    return jnp.zeros((), jnp.float32), state, {"mined_distance": jnp.zeros((), jnp.float32)}

  def loss(params, method_state, views, rng):
    x1, x2, x_mine = views
    # The weight is a schedule value, not a parameter: no gradient may reach method_state.
    w = jax.lax.stop_gradient(method_state["myow_weight"])
    reps, preds, targets, byol_state = _common.online_and_target_pass(
        net, predictor, params, method_state, (x1, x2))
    state = {**method_state, **byol_state}
    aug = 0.5 * (losses.byol_loss(preds[0], targets[1]) + losses.byol_loss(preds[1], targets[0]))
    # Both branches are computed and one is selected: XLA:CPU runs a lax.cond's branch ~10x slower
    # than the same ops outside it (measured on the digits recipe), which cost more than the mined
    # passes do during the warm-up. Before the warm-up ends the mined branch's loss and state are
    # discarded, so the values are those of skipping it.
    on = w > 0
    mined = mined_loss(params, state, x_mine, rng)
    skipped = skip_mining(params, state, x_mine, rng)
    mine, state, metrics = jax.tree.map(lambda a, b: jnp.where(on, a, b), mined, skipped)
    total = aug / (1.0 + w) + mine * w / (1.0 + w)
    metrics = {"aug_loss": aug, "mined_loss": mine, "myow_weight": w, **metrics}
    return total, (state, metrics, reps[0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base_momentum, final=final_momentum,
                                       total_steps=total_steps)
    state = _common.update_target(params, method_state, momentum)
    teacher_m = state["teacher_m"]
    teacher_m = {"params": _common.ema(teacher_m["params"], params["projector_m"], momentum),
                 "state": teacher_m["state"]}
    # The weight the next step's loss uses.
    return {**state, "teacher_m": teacher_m, "myow_weight": mined_weight(step + 1, **schedule)}

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="myow", views=tuple(views), init=init, loss=loss, update=update,
                represent=represent, backbone=_common.submodule_backbone(net, _common.in_net))


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds MYOW from an experiment config (keys in the module docstring)."""
  m = config.myow
  base = _common.check_momentum(m.base_momentum, "myow.base_momentum")
  final = _common.check_momentum(m.final_momentum, "myow.final_momentum")
  knn_k = _config_int(m.knn_k, "myow.knn_k", low=1)
  batch = int(config.input.batch_size)
  if knn_k > batch - 1:
    raise ConfigError(f"myow.knn_k={knn_k} must be <= input.batch_size - 1 = {batch - 1} (the "
                      "pool is the rest of the batch); lower myow.knn_k")
  if m.layout not in LAYOUTS:
    raise ConfigError(f"myow.layout={m.layout!r} must be one of {LAYOUTS}")
  warmup = _common.check_nonnegative(m.warmup_epochs, "myow.warmup_epochs")
  rampup = _common.check_nonnegative(m.rampup_epochs, "myow.rampup_epochs")
  if rampup < warmup:
    raise ConfigError(f"myow.rampup_epochs={rampup} must be >= myow.warmup_epochs={warmup} (it "
                      "is the epoch at which the ramp ends, not the ramp's length)")
  schedule = dict(warmup_epochs=warmup, rampup_epochs=rampup,
                  max_weight=_common.check_nonnegative(m.max_weight, "myow.max_weight"),
                  steps_per_epoch=steps_per_epoch)
  views = _common.view_recipes(config, VIEW_NAMES)
  if views[0].size != views[1].size:
    raise ConfigError(f"input.views.view1.size={views[0].size} and view2.size={views[1].size} "
                      "must be equal")
  for name in VIEW_NAMES:
    if _common.view_count(config, name) != 1:
      raise ConfigError(f"input.views.{name}.crops must be 1 (MYOW takes one crop per view)")
  return build(_common.encoder_projector(config),
               _common.config_mlp(config, "predictor"),
               _common.config_mlp(config, "projector_m"),
               _common.config_mlp(config, "predictor_m"),
               views=views, knn_k=knn_k, layout=m.layout, base_momentum=base,
               final_momentum=final, schedule=schedule, total_steps=total_steps)
