"""MYOW (Azabou et al., 2021): BYOL plus prediction of a *mined* view, another sample's target.

Config keys read (see ``experiments/myow.py``): ``encoder.*``, ``projector.*`` (g),
``predictor.*`` (q), ``projector_m.*`` (g', the mined-view projector), ``predictor_m.*`` (q'),
``myow.base_momentum`` / ``myow.final_momentum`` (EMA schedule
``tau_k = final - (final - base)(cos(pi k / K) + 1) / 2``), ``myow.knn_k`` (mine among the k
nearest), ``myow.exclude_self`` (may an anchor mine its own image; below),
``myow.warmup_epochs`` / ``myow.rampup_epochs`` / ``myow.max_weight`` (mined-loss weight
schedule, see :func:`mined_weight`), ``myow.layout`` (``'cascaded'``: g' after g;
``'parallel'``: g' on the representation), ``input.batch_size`` (bounds ``knn_k``) and the views
``input.views.view1`` / ``view2`` (strong) / ``mine`` (weak; drawn twice, for the anchors and for
the pool).

The loss is ``L_aug / (1 + w) + w L_mine / (1 + w)`` with the symmetric BYOL loss
``L_aug = (l(q1, t2) + l(q2, t1)) / 2``, ``l(u, v) = 2 - 2 cos(u, v)`` (the official
``CosineLoss``) and, for each sample i,
``L_mine = l(q'(g'(g(f(a_i)))), sg(g'_xi(g_xi(f_xi(p_m(i))))))``. ``a`` and ``p`` are two
independent draws of the weak ``mine`` view of the batch (anchors and pool), and ``m(i)`` is drawn
uniformly from the k nearest neighbours of ``f(a_i)`` (online encoder) among ``f_xi(p_1..p_B)``
(target encoder) in cosine distance ``2 - 2 cos`` (:func:`mine_views`).

The pool, as the official code builds it. Its CIFAR script (nerdslab/myow
``scripts/cifar-train.py``) passes one ``DataLoader`` as both ``train_dataloader`` and
``view_pool_dataloader``; the trainer (``self_supervised/trainer/myow_trainer.py``) opens an
iterator on each at every epoch, and both follow the sampler's order for that epoch, so each pool
batch holds the training batch's own images, augmented by the weak transform independently of
the anchors' weak view, and all-gathered over the GPUs (the global batch). (Its transforms are
torchvision's applied to a batch tensor, which draw one crop and flip for the whole batch; here
each image draws its own.) The miner (``model/myow_factory.py``) masks nothing, so an anchor may
mine its own image, and for those anchors the mined term is a BYOL term between two weak views
of one image in the second projection space; for the others it is a cross-image attraction. How
often an anchor mines itself depends on the data and the representation: on the digits demo
about 1% of the anchors did (for the others another digit's pool entry was nearer), in the
learning test's tiny ResNet about 20% (``mined_self_fraction``). ``myow.exclude_self`` chooses:

* ``False`` (the default, the official behaviour): the anchor's own pool entry may be mined;
* ``True``: it is masked, every mined target is another image of the batch (the paper's
  "across-sample" view taken literally).

Metrics of the miner, reported every step (the miner runs every step, also while ``w = 0``, when
its choice is not used): ``mined_distance`` (mean cosine distance of the mined pairs),
``mined_self_fraction`` (anchors that mined their own image; only when self is allowed) and,
when the trainer passes labels, ``mined_label_agreement`` (:func:`label_agreement`). Labels only
ever reach that metric, never the loss.

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
    exclude_self: anchors and pool are the same samples (P == B, row i of each the same
      image): pool item i is never mined for anchor i. False: no mask, as the official miner
      (``myow_factory.py``), so an anchor may get its own image back.

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


def label_agreement(idx_b: jax.Array, labels_b: jax.Array,
                    pool_labels_p: jax.Array | None = None) -> jax.Array:
  """The fraction of anchors whose mined pool item has the anchor's label (a metric, no loss).

  Counts only the anchors i with ``labels_b[i] >= 0`` and ``pool_labels_p[idx_b[i]] >= 0``
  (-1 marks a hidden label, ``input.label_fraction`` < 1, or data without labels):
  ``sum_i [y_i = y'_m(i)] / #counted``, 0 when no anchor counts.

  Args:
    idx_b: int [B] mined pool indices (:func:`mine_views`).
    labels_b: int [B] anchor labels, -1 where hidden.
    pool_labels_p: int [P] pool labels, -1 where hidden; the anchors' when None (the pool is the
      batch).

  Returns:
    float32 scalar in [0, 1].
  """
  pool_labels_p = labels_b if pool_labels_p is None else pool_labels_p
  mined_b = jnp.take(pool_labels_p, idx_b, axis=0)
  counted_b = (labels_b >= 0) & (mined_b >= 0)
  agree = jnp.sum((counted_b & (mined_b == labels_b)).astype(jnp.float32))
  return agree / jnp.maximum(jnp.sum(counted_b.astype(jnp.float32)), 1.0)


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
          schedule: dict, total_steps: int, exclude_self: bool = False) -> Method:
  """MYOW from its networks (``make`` builds them from a config; tests pass small ones).

  Args:
    net: ``EncoderHead(encoder f, projector g)`` returning ``(representation, projection)``.
    predictor: q, on g's output.
    projector_m: g', on g's output (cascaded) or on the representation (parallel).
    predictor_m: q', on g''s output.
    views: the three view recipes (strong, strong, weak). The method's views are these and the
      weak one again: ``loss`` takes ``[x1, x2, anchors, pool]``, the last two independent
      draws of the weak view of the same images.
    knn_k: mine among this many nearest neighbours.
    layout: ``'cascaded'`` or ``'parallel'``.
    base_momentum, final_momentum: the EMA schedule's ends.
    schedule: keyword arguments of :func:`mined_weight` (except ``step``).
    total_steps: run length (EMA schedule).
    exclude_self: mask each anchor's own image in the pool (see the module docstring).
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

  def mined_loss(params, state, x_anchor, x_pool, rng):
    """``(L_mine, state, idx_b, dist_b)``: mine the pool view's batch, predict the mined target."""
    teacher, teacher_m = state["teacher"], state["teacher_m"]
    y_bf, net_state = _common.apply_train(net, params["net"], state["net"], x_anchor,
                                          method=_encode)
    pool_bf, teacher_state = _common.apply_train(net, teacher["params"], teacher["state"], x_pool,
                                                 method=_encode)
    pool_bf = jax.lax.stop_gradient(pool_bf)
    idx_b = mine_views(y_bf, pool_bf, rng, k=knn_k, exclude_self=exclude_self)
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
    dist_b = 2.0 - 2.0 * jnp.sum(losses.l2_normalize(jax.lax.stop_gradient(y_bf))
                                 * losses.l2_normalize(pool_bf[idx_b]), axis=-1)
    return loss, state, idx_b, dist_b

  def miner_metrics(idx_b, dist_b, labels_b):
    metrics = {"mined_distance": jnp.mean(dist_b)}
    if not exclude_self:
      own_b = idx_b == jnp.arange(idx_b.shape[0], dtype=idx_b.dtype)
      metrics["mined_self_fraction"] = jnp.mean(own_b.astype(jnp.float32))
    if labels_b is not None:
      metrics["mined_label_agreement"] = label_agreement(idx_b, labels_b)
    return metrics

  def loss(params, method_state, views, rng, labels=None):
    """``views``: ``[x1, x2, anchors, pool]``; ``labels``: int32 [B] (-1 hidden) or None, read by
    the ``mined_label_agreement`` metric only."""
    x1, x2, x_anchor, x_pool = views
    # The weight is a schedule value, not a parameter: no gradient may reach method_state.
    w = jax.lax.stop_gradient(method_state["myow_weight"])
    reps, preds, targets, byol_state = _common.online_and_target_pass(
        net, predictor, params, method_state, (x1, x2))
    state = {**method_state, **byol_state}
    aug = 0.5 * (losses.byol_loss(preds[0], targets[1]) + losses.byol_loss(preds[1], targets[0]))
    # The mined branch is computed and then selected or not: XLA:CPU runs a lax.cond's branch ~10x
    # slower than the same ops outside it (measured on the digits recipe), which cost more than
    # the mined passes do during the warm-up. Before the warm-up ends the mined branch's loss and
    # state are discarded, so the values are those of skipping it.
    on = w > 0
    mine, mined_state, idx_b, dist_b = mined_loss(params, state, x_anchor, x_pool, rng)
    mine = jnp.where(on, mine, 0.0)
    state = jax.tree.map(lambda a, b: jnp.where(on, a, b), mined_state, state)
    total = aug / (1.0 + w) + mine * w / (1.0 + w)
    metrics = {"aug_loss": aug, "mined_loss": mine, "myow_weight": w,
               **miner_metrics(idx_b, dist_b, labels)}
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

  # ``metric_labels`` (labels passed to the loss for metrics only) where this ssljax has it; not
  # ``uses_labels``, which marks a loss that trains on labels and requires labelled data.
  label_flag = {"metric_labels": True} if "metric_labels" in Method._fields else {}
  views = tuple(views)
  return Method(name="myow", views=views + views[2:3], init=init, loss=loss, update=update,
                represent=represent, backbone=_common.submodule_backbone(net, _common.in_net),
                **label_flag)


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds MYOW from an experiment config (keys in the module docstring)."""
  m = config.myow
  base = _common.check_momentum(m.base_momentum, "myow.base_momentum")
  final = _common.check_momentum(m.final_momentum, "myow.final_momentum")
  knn_k = _config_int(m.knn_k, "myow.knn_k", low=1)
  # A run's config.json written before the key existed (export and evaluate rebuild the method
  # from it; the miner does not change the backbone) reads as the default.
  exclude_self = m.get("exclude_self", False)
  if not isinstance(exclude_self, bool):
    raise ConfigError(f"myow.exclude_self={exclude_self!r} must be True or False")
  batch = int(config.input.batch_size)
  if knn_k > batch - int(exclude_self):
    pool = "the batch less the anchor" if exclude_self else "the batch"
    raise ConfigError(f"myow.knn_k={knn_k} must be <= {batch - int(exclude_self)} (the pool is "
                      f"{pool}, input.batch_size={batch}); lower myow.knn_k")
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
               final_momentum=final, schedule=schedule, total_steps=total_steps,
               exclude_self=exclude_self)
