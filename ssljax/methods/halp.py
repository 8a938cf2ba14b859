"""HaLP (Shah et al., CVPR 2023): hallucinated latent positives on top of MoCo v3.

Extra positives are made directly on the unit sphere: each detached key ``k`` is moved along the
great circle towards another cluster prototype ``p_s``, as far as the closed-form hardness limit
``t_max`` where it would stop being closest to its own prototype ``p0``; ``lambda_pos`` draws
``t`` in ``[(1 - lambda) t_max, t_max]``. The query of the other view is pulled towards these
positives: ``L_HaLP = -mean_{good (i, j)} q_i . h_ij / T`` (no negatives, as the official code).

The base is MoCo v3 (``ssljax/methods/mocov3.py``: online net + predictor, EMA key encoder,
in-batch negatives), where the paper uses MoCo v2 with a queue. Per direction the loss is
``mocov3_loss(q, k) + 2 T mu L_HaLP(q, h(k))``: ``mocov3_loss`` is ``2 T`` times the InfoNCE
cross-entropy, so this keeps the paper's ``CE + mu L_HaLP`` weighting.

Prototypes come from spherical k-means (:mod:`ssljax.kmeans`) over a FIFO bank of the last
``bank_size`` keys. All of it lives in ``method_state["halp"]``: ``bank`` [bank_size, D],
``count`` (keys in the bank), ``prototypes`` [C, D], ``ready`` (1 once prototypes exist) and
``step`` (the train step, set by ``update``). At a step ``s >= start_epoch * steps_per_epoch``
with ``s % update_every == 0`` and a full bank, the loss first refreshes the prototypes from the
bank (with its ``rng``, so a resumed run is identical), then uses them; before the first refresh
HaLP is off and the loss is plain MoCo v3. Keys, prototypes and positives are constants
(``stop_gradient``): only the query branch is trained by ``L_HaLP``.

Config keys read (see ``experiments/halp.py``): ``encoder.*``, ``projector.*``, ``predictor.*``,
the views ``input.views.view1`` / ``input.views.view2``, and ``halp.temperature``,
``halp.base_momentum``, ``halp.final_momentum`` (MoCo v3), ``halp.mu`` (weight of L_HaLP),
``halp.lambda_pos`` (hardness, in [0, 1]), ``halp.num_positives``, ``halp.num_prototypes``,
``halp.skip_closest``, ``halp.num_candidates``, ``halp.update_every``, ``halp.bank_size``,
``halp.kmeans_iters``, ``halp.start_epoch``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ssljax import kmeans, losses
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common

VIEW_NAMES = ("view1", "view2")
_HIGHEST = jax.lax.Precision.HIGHEST
# Clamp cosines before arccos so that sin(w) > 0 (official code: +1e-8 guards; spec: 1 - 1e-7).
_COS_CLAMP = 1.0 - 1e-7


# ------------------------------------------------------------------------------ the geometry


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(a * b, axis=-1)


def _angle(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.arccos(jnp.clip(_dot(a, b), -_COS_CLAMP, _COS_CLAMP))


def slerp(k: jax.Array, p: jax.Array, t: jax.Array) -> jax.Array:
  """Great-circle path ``g(t) = [sin((1-t) w) k + sin(t w) p] / sin w``, ``w = arccos(k . p)``.

  Args:
    k: [..., D] unit start points (the anchors).
    p: [..., D] unit end points (the target prototypes), broadcastable with ``k``.
    t: [...] fractions of the way (0 gives ``k``, 1 gives ``p``).

  Returns:
    [..., D] points on the sphere (unit norm up to round-off).
  """
  w = _angle(k, p)[..., None]
  t = jnp.asarray(t, jnp.float32)[..., None]
  return (jnp.sin((1.0 - t) * w) * k + jnp.sin(t * w) * p) / jnp.sin(w)


def hardness_limit(k: jax.Array, p0: jax.Array, ps: jax.Array) -> jax.Array:
  """Largest ``t`` with ``slerp(k, ps, t)`` still at least as close to ``p0`` as to ``ps``.

  Solving ``g(t) . (p0 - ps) = 0`` gives ``tan(t w) = sin w / (K + cos w)`` with
  ``K = (1 - ps . p0) / (k . (p0 - ps))`` (paper, Eq. for t_max). The official code takes
  ``atan`` of the ratio; ``atan2`` is the same where ``K + cos w > 0`` and also gives the right
  root (``t w`` in (pi/2, w)) where it is negative, which ``atan`` would send below 0.

  Args:
    k: [..., D] unit anchors with ``k . p0 >= k . ps``.
    p0: [..., D] the anchor's closest prototype.
    ps: [..., D] the target prototype.

  Returns:
    [...] ``t_max`` in [0, 1]; 0 when the anchor is already equidistant.
  """
  w = _angle(k, ps)
  margin = jnp.maximum(_dot(k, p0 - ps), 0.0)
  big_k = (1.0 - _dot(ps, p0)) / (margin + 1e-8)
  return jnp.clip(jnp.arctan2(jnp.sin(w), big_k + jnp.cos(w)) / w, 0.0, 1.0)


def hallucinate(keys_nd: jax.Array, prototypes_cd: jax.Array, rng: jax.Array, *,
                num_positives: int, lambda_pos: float, skip_closest: int = 1,
                num_candidates: int = 20) -> dict[str, jax.Array]:
  """HaLP positives for each key, as the official generator (without gradients).

  For each key and each of ``P = num_positives`` draws: ``p0`` is the most similar prototype;
  ``ps`` is drawn uniformly from the prototypes ranked ``skip_closest .. skip_closest +
  num_candidates - 1`` by similarity (those that exist); ``t = (1 - u) t_max`` with
  ``u ~ U(0, lambda_pos)``; the positive is ``normalize(slerp(k, ps, t))``. It is "good" when its
  most similar prototype is still ``p0`` (the rank filter).

  Args:
    keys_nd: [N, D] keys (normalised here, under stop_gradient).
    prototypes_cd: [C, D] unit prototypes, C >= skip_closest + 1 (under stop_gradient).
    rng: PRNG key.
    num_positives: P, positives per key.
    lambda_pos: hardness control in [0, 1]; 0 gives the hardest positives (t = t_max).
    skip_closest: how many of the most similar prototypes are never targets (1 skips p0).
    num_candidates: how many prototypes after those are candidate targets.

  Returns:
    Dict with ``positives`` [N, P, D] (unit norm), ``good`` [N, P] bool, ``t`` and ``t_max``
    [N, P], and the prototype indices ``p0`` [N] and ``target`` [N, P].
  """
  k_nd = losses.l2_normalize(jax.lax.stop_gradient(keys_nd))
  protos_cd = jax.lax.stop_gradient(prototypes_cd.astype(jnp.float32))
  n, c = k_nd.shape[0], protos_cd.shape[0]
  n_cand = min(num_candidates, c - skip_closest)
  if n_cand < 1:
    raise ValueError(f"hallucinate: {c} prototypes leave no target after skipping "
                     f"{skip_closest}")
  order_nc = jnp.argsort(-jnp.matmul(k_nd, protos_cd.T, precision=_HIGHEST), axis=-1)
  pick_rng, u_rng = jax.random.split(rng)
  rank_np = jax.random.randint(pick_rng, (n, num_positives), 0, n_cand) + skip_closest
  ps_np = jnp.take_along_axis(order_nc, rank_np, axis=1)
  p0_n = order_nc[:, 0]
  k_n1d, p0_n1d, ps_npd = k_nd[:, None], protos_cd[p0_n][:, None], protos_cd[ps_np]
  t_max_np = hardness_limit(k_n1d, p0_n1d, ps_npd)
  t_np = (1.0 - lambda_pos * jax.random.uniform(u_rng, (n, num_positives))) * t_max_np
  h_npd = losses.l2_normalize(slerp(k_n1d, ps_npd, t_np))
  good_np = kmeans.assign(h_npd, protos_cd) == p0_n[:, None]
  return {"positives": h_npd, "good": good_np, "t": t_np, "t_max": t_max_np, "p0": p0_n,
          "target": ps_np}


def halp_loss(q_nd: jax.Array, positives_npd: jax.Array, good_np: jax.Array, *,
              temperature: float) -> jax.Array:
  """``-sum_{good (i, j)} n(q_i) . h_ij / (T (|good| + 1e-8))``: pull queries to positives.

  Args:
    q_nd: [N, D] queries (normalised here; the only input that gets a gradient).
    positives_npd: [N, P, D] unit hallucinated positives (under stop_gradient).
    good_np: [N, P] which positives passed the rank filter.
    temperature: T > 0.

  Returns:
    Scalar float32 loss; 0 when no positive is good.
  """
  h_npd = jax.lax.stop_gradient(positives_npd)
  sim_np = jnp.einsum("nd,npd->np", losses.l2_normalize(q_nd), h_npd, precision=_HIGHEST)
  good_np = good_np.astype(jnp.float32)
  return -jnp.sum(good_np * sim_np) / (jnp.sum(good_np) + 1e-8) / temperature


# ---------------------------------------------------------------------------------- config


def _int(value, key: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
  return int(value)


def _number(value, key: str, lo: float, hi: float = math.inf) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
    raise ConfigError(f"{key}={value!r} must be a number in [{lo}, {hi}]")
  return float(value)


# ---------------------------------------------------------------------------------- method


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds HaLP (MoCo v3 base) from an experiment config."""
  cfg = config.halp
  net = _common.encoder_projector(config)
  predictor = _common.config_mlp(config, "predictor")
  temperature = _common.check_positive(cfg.temperature, "halp.temperature")
  base = _common.check_momentum(cfg.base_momentum, "halp.base_momentum")
  final = _common.check_momentum(cfg.final_momentum, "halp.final_momentum")
  mu = _number(cfg.mu, "halp.mu", 0.0)
  lambda_pos = _number(cfg.lambda_pos, "halp.lambda_pos", 0.0, 1.0)
  num_positives = _int(cfg.num_positives, "halp.num_positives", 1)
  num_prototypes = _int(cfg.num_prototypes, "halp.num_prototypes", 2)
  skip_closest = _int(cfg.skip_closest, "halp.skip_closest", 1)
  if skip_closest >= num_prototypes:
    raise ConfigError(f"halp.skip_closest={skip_closest} must be < halp.num_prototypes="
                      f"{num_prototypes} so that some prototype is left as a target")
  num_candidates = _int(cfg.num_candidates, "halp.num_candidates", 1)
  update_every = _int(cfg.update_every, "halp.update_every", 1)
  bank_size = _int(cfg.bank_size, "halp.bank_size", num_prototypes)
  kmeans_iters = _int(cfg.kmeans_iters, "halp.kmeans_iters", 0)
  start_step = round(_number(cfg.start_epoch, "halp.start_epoch", 0.0) * steps_per_epoch)
  out_dim = int(config.predictor.out_dim)
  if int(config.projector.out_dim) != out_dim:
    raise ConfigError(f"projector.out_dim={config.projector.out_dim} must equal "
                      f"predictor.out_dim={out_dim}: queries are compared with keys")

  def init(rng, images_bhwc):
    params, state = _common.init_online_and_target(net, predictor, rng, images_bhwc)
    halp = {"bank": jnp.zeros((bank_size, out_dim), jnp.float32),
            "count": jnp.zeros((), jnp.float32),
            "prototypes": jnp.zeros((num_prototypes, out_dim), jnp.float32),
            "ready": jnp.zeros((), jnp.float32),
            "step": jnp.zeros((), jnp.float32)}
    return params, {**state, "halp": halp}

  def refresh(halp, rng):
    """Prototypes from the bank when the schedule says so (else unchanged), and ``ready``."""
    step = halp["step"].astype(jnp.int32)
    due = ((step >= start_step) & (step % update_every == 0) & (halp["count"] >= bank_size))
    prototypes = jax.lax.cond(
        due, lambda bank, _, key: kmeans.spherical_kmeans(
            bank, key, num_clusters=num_prototypes, num_iters=kmeans_iters),
        lambda _, old, key: old, halp["bank"], halp["prototypes"], rng)
    return prototypes, jnp.maximum(halp["ready"], due.astype(jnp.float32))

  def loss(params, method_state, views, rng):
    reps, preds, targets, state = _common.online_and_target_pass(net, predictor, params,
                                                                 method_state, views)
    keys = [losses.l2_normalize(t) for t in targets]  # Already under stop_gradient.
    halp = jax.tree.map(jax.lax.stop_gradient, method_state["halp"])
    kmeans_rng, rng0, rng1 = jax.random.split(rng, 3)
    prototypes, ready = refresh(halp, kmeans_rng)
    moco = (losses.mocov3_loss(preds[0], targets[1], temperature=temperature)
            + losses.mocov3_loss(preds[1], targets[0], temperature=temperature))
    kwargs = dict(num_positives=num_positives, lambda_pos=lambda_pos,
                  skip_closest=skip_closest, num_candidates=num_candidates)
    # The query of one view is paired with positives hallucinated from the other view's key.
    gen = [hallucinate(keys[1], prototypes, rng0, **kwargs),
           hallucinate(keys[0], prototypes, rng1, **kwargs)]
    halp_terms = [halp_loss(q, g["positives"], g["good"], temperature=temperature)
                  for q, g in zip(preds, gen, strict=True)]
    halp_term = ready * (halp_terms[0] + halp_terms[1])
    total = moco + 2.0 * temperature * mu * halp_term
    bank = jnp.concatenate([halp["bank"], *keys], axis=0)[-bank_size:]
    count = jnp.minimum(halp["count"] + sum(k.shape[0] for k in keys), bank_size)
    state = {**state, "halp": {**halp, "bank": bank, "count": count, "prototypes": prototypes,
                               "ready": ready}}
    good = jnp.mean(jnp.concatenate([g["good"] for g in gen]).astype(jnp.float32))
    metrics = {"mocov3_loss": moco, "halp_loss": halp_term, "halp_ready": ready,
               "halp_good_fraction": ready * good,
               "halp_t_mean": ready * jnp.mean(jnp.concatenate([g["t"] for g in gen]))}
    return total, (state, metrics, reps[0])

  def update(params, method_state, step):
    momentum = _common.cosine_momentum(step, base=base, final=final, total_steps=total_steps)
    state = _common.update_target(params, method_state, momentum)
    # The next loss call is train step ``step + 1``; it decides when prototypes are refreshed.
    step_next = jnp.asarray(step, jnp.float32) + 1.0
    return {**state, "halp": {**state["halp"], "step": step_next}}

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="halp", views=_common.view_recipes(config, VIEW_NAMES), init=init,
                loss=loss, update=update, represent=represent,
                backbone=_common.submodule_backbone(net, _common.in_net))
