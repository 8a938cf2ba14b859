"""GroCo (Shvetsova et al., ICCV 2023): learning by sorting with group ordering constraints.

For every anchor, its similarities to its positives (the other full-size views of the same image)
and to its ``topk_neg`` hardest negatives (other images, in the anchor's own view) are sorted by a
differentiable sorting network (:mod:`ssljax.sorting`). The loss is the binary cross-entropy
between the soft probability that each element lands in the positive block of ranks (the top
``|P|`` places) and its true group: only group membership counts, not the order within a group.

Config keys read (see ``experiments/groco.py``): ``encoder.*``, ``projector.*``,
``input.batch_size``, the views named by ``groco.positive_views`` and ``groco.local_views`` in
``input.views`` (each may carry ``crops``), and ``groco.topk_neg``, ``groco.steepness``,
``groco.sorting_network``, ``groco.distribution``, ``groco.art_lambda``, ``groco.stop_grad``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ssljax import sorting
from ssljax.errors import ConfigError
from ssljax.losses import l2_normalize
from ssljax.methods import Method, _common, identity_update

_HIGHEST = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------ loss


def _bce(p: jax.Array, target: jax.Array) -> jax.Array:
  """Mean binary cross-entropy with PyTorch ``BCELoss`` semantics (each log clamped at -100)."""

  def clamped_log(q):
    # log(0) = -inf would give a NaN gradient through the clamp; substitute before the log.
    return jnp.where(q > 0, jnp.log(jnp.where(q > 0, q, 1.0)), -100.0).clip(min=-100.0)

  return -jnp.mean(target * clamped_log(p) + (1 - target) * clamped_log(1 - p))


def group_ordering_bce(sims_bm: jax.Array, *, num_neg: int, steepness: float,
                       network_name: str = "odd_even", distribution: str = "cauchy",
                       art_lambda: float = 0.25) -> tuple[jax.Array, jax.Array]:
  """The two BCE terms of the group ordering constraint for pre-ordered similarity rows.

  Args:
    sims_bm: [B, M] rows ``[negatives ascending, positives ascending]``: the ground-truth order is
      the identity, the first ``num_neg`` ranks belong to negatives.
    num_neg: number of negatives per row (the size of the lower group of ranks).
    steepness, network_name, distribution, art_lambda: see :func:`ssljax.sorting.soft_sort`.

  Returns:
    ``(bce_pos, bce_neg)``: BCE of ``p+[r]`` (soft probability that element r lands in a positive
    rank) against ``r >= num_neg``, and of ``p-`` against ``r < num_neg``; each averaged over the
    B x M entries. Rows of the soft permutation sum to 1, so the two agree up to rounding.
  """
  m = sims_bm.shape[-1]
  _, perm_bmm = sorting.soft_sort(sims_bm, steepness=steepness, network_name=network_name,
                                  distribution=distribution, art_lambda=art_lambda)
  # Clipped as the official code does (sums of soft probabilities may overshoot by rounding).
  p_neg = jnp.clip(jnp.sum(perm_bmm[..., :num_neg], axis=-1), 0.0, 1.0)
  p_pos = jnp.clip(jnp.sum(perm_bmm[..., num_neg:], axis=-1), 0.0, 1.0)
  t_pos = jnp.broadcast_to((jnp.arange(m) >= num_neg).astype(jnp.float32), p_pos.shape)
  return _bce(p_pos, t_pos), _bce(p_neg, 1.0 - t_pos)


def anchor_similarities(anchor_bd: jax.Array, positives: Sequence[jax.Array], *, topk_neg: int,
                        stop_grad: bool = True) -> jax.Array:
  """One anchor view's pre-ordered similarity rows ``[top-k negatives, positives]``, ascending.

  Args:
    anchor_bd: [B, D] anchor embeddings (global batch).
    positives: each [B, D]: other views of the same images (row i is image i).
    topk_neg: how many of the most similar other images (in the anchor's own view) to keep.
    stop_grad: no gradient through positives and negatives (only through the anchor).

  Returns:
    [B, topk_neg + len(positives)] float32.
  """
  b = anchor_bd.shape[0]
  if topk_neg > b - 1:
    raise ValueError(f"topk_neg={topk_neg} needs a batch of more than {topk_neg} images, got {b}")
  sg = jax.lax.stop_gradient if stop_grad else (lambda x: x)
  a_bd = l2_normalize(anchor_bd, eps=1e-8)  # x / max(||x||, 1e-8), as torch's cosine.
  pos_bp = jnp.stack([jnp.sum(a_bd * sg(l2_normalize(p, eps=1e-8)), axis=-1) for p in positives],
                     axis=-1)
  neg_bb = jnp.matmul(a_bd, sg(a_bd).T, precision=_HIGHEST)
  neg_bb = jnp.where(jnp.eye(b, dtype=bool), -jnp.inf, neg_bb)  # An image is not its negative.
  neg_bk, _ = jax.lax.top_k(neg_bb, topk_neg)  # Hardest first; flipped to ascending below.
  return jnp.concatenate([neg_bk[:, ::-1], jnp.sort(pos_bp, axis=-1)], axis=-1)


def groco_terms(z_views: Sequence[jax.Array], *, n_pos: int, topk_neg: int,
                steepness: float = 1.0, network_name: str = "odd_even",
                distribution: str = "cauchy", art_lambda: float = 0.25,
                stop_grad: bool = True) -> dict[str, jax.Array]:
  """GroCo loss and its parts, averaged over the anchor views.

  Args:
    z_views: V arrays [B, D] of projected embeddings (global batch), full-size crops first.
    n_pos: how many leading views serve as positives (all V without small crops). A full-size
      anchor has ``n_pos - 1`` positives, a small-crop anchor ``n_pos``.
    topk_neg: hardest negatives per anchor.
    steepness, network_name, distribution, art_lambda: the sorting relaxation.
    stop_grad: gradient flows only through the anchor (official default True).

  Returns:
    Scalars: ``loss`` (mean over anchors of ``(bce_pos + bce_neg) / 2``), ``bce_pos``,
    ``bce_neg``, and ``pos_neg_gap`` (mean lowest positive minus mean highest negative
    similarity; positive once positives are separated from the hardest negatives).
  """
  z_views = [z.astype(jnp.float32) for z in z_views]  # Sorting is done in float32 (as AMP does).
  bce_pos, bce_neg, gap = [], [], []
  for n, anchor in enumerate(z_views):
    positives = [z for p, z in enumerate(z_views[:n_pos]) if p != n]
    sims_bm = anchor_similarities(anchor, positives, topk_neg=topk_neg, stop_grad=stop_grad)
    bp, bn = group_ordering_bce(sims_bm, num_neg=topk_neg, steepness=steepness,
                                network_name=network_name, distribution=distribution,
                                art_lambda=art_lambda)
    bce_pos.append(bp)
    bce_neg.append(bn)
    gap.append(jnp.mean(sims_bm[:, topk_neg]) - jnp.mean(sims_bm[:, topk_neg - 1]))
  bce_pos, bce_neg = jnp.mean(jnp.stack(bce_pos)), jnp.mean(jnp.stack(bce_neg))
  return {"loss": (bce_pos + bce_neg) / 2, "bce_pos": bce_pos, "bce_neg": bce_neg,
          "pos_neg_gap": jax.lax.stop_gradient(jnp.mean(jnp.stack(gap)))}


def groco_loss(z_views: Sequence[jax.Array], *, n_pos: int, topk_neg: int, **kwargs) -> jax.Array:
  """The scalar GroCo loss; arguments as :func:`groco_terms`."""
  return groco_terms(z_views, n_pos=n_pos, topk_neg=topk_neg, **kwargs)["loss"]


# ---------------------------------------------------------------------------------- method


def _check_int(value, key: str, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ConfigError(f"{key}={value!r} must be an integer >= {low}")
  return value


def _view_names(config, key: str) -> tuple[str, ...]:
  names = config.groco[key.split(".")[-1]]
  if isinstance(names, str) or not all(isinstance(n, str) for n in names):
    raise ConfigError(f"{key}={names!r} must be a tuple of view names in input.views")
  return tuple(names)


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds GroCo from an experiment config (keys in the module docstring)."""
  del total_steps, steps_per_epoch
  cfg = config.groco
  net = _common.encoder_projector(config)
  pos_names = _view_names(config, "groco.positive_views")
  local_names = _view_names(config, "groco.local_views")
  views = _common.view_recipes(config, pos_names + local_names)
  n_pos = sum(_common.view_count(config, n) for n in pos_names)
  n_local = len(views) - n_pos
  if n_pos < 2:
    raise ConfigError(f"groco.positive_views={pos_names} yield {n_pos} full-size view(s); GroCo "
                      "needs >= 2 so every anchor has a positive (add a view or crops=2)")
  topk = _check_int(cfg.topk_neg, "groco.topk_neg", 1)
  batch = int(config.input.batch_size)
  if topk > batch - 1:
    raise ConfigError(f"groco.topk_neg={topk} exceeds the {batch - 1} other images of a batch "
                      f"(input.batch_size={batch}); lower groco.topk_neg")
  steepness = _common.check_positive(cfg.steepness, "groco.steepness")
  art_lambda = _common.check_positive(cfg.art_lambda, "groco.art_lambda")
  if cfg.distribution not in sorting.DISTRIBUTIONS:
    raise ConfigError(f"groco.distribution={cfg.distribution!r} is unknown; choose one of "
                      f"{sorting.DISTRIBUTIONS}")
  network_name = cfg.sorting_network
  if network_name not in sorting.NETWORKS:
    raise ConfigError(f"groco.sorting_network={network_name!r} is unknown; choose one of "
                      f"{sorting.NETWORKS}")
  # Full-size anchors sort topk + n_pos - 1 values, small crops one more; both must fit.
  for size, who in ((topk + n_pos - 1, "full-size"), (topk + n_pos, "small-crop")):
    if who == "small-crop" and not n_local:
      continue
    try:
      sorting.network(network_name, size)
    except ValueError as e:
      raise ConfigError(
          f"groco.sorting_network={network_name!r} cannot sort the {size} similarities of a "
          f"{who} anchor (groco.topk_neg={topk} + {size - topk} positives): {e}; change "
          "groco.topk_neg or use groco.sorting_network='odd_even'") from None
  stop_grad = bool(cfg.stop_grad)

  def init(rng, images_bhwc):
    return _common.init_variables(net, rng, images_bhwc)

  def loss(params, method_state, views_in, rng):
    del rng
    # One pass per view, as the official encoder: each view has its own BatchNorm statistics.
    state, reps, zs = method_state, [], []
    for x in views_in:
      (h, z), state = _common.apply_train(net, params, state, x)
      reps.append(h)
      zs.append(z)
    terms = groco_terms(zs, n_pos=n_pos, topk_neg=topk, steepness=steepness,
                        network_name=network_name, distribution=cfg.distribution,
                        art_lambda=art_lambda, stop_grad=stop_grad)
    metrics = {"groco_loss": terms["loss"], "pos_neg_gap": terms["pos_neg_gap"]}
    return terms["loss"], (state, metrics, reps[0])

  def represent(params, method_state, images_bhwc):
    h, z = _common.apply_eval(net, params, method_state, images_bhwc)
    return _common.as_float32({"representation": h, "embedding": z})

  return Method(name="groco", views=views, init=init, loss=loss, update=identity_update,
                represent=represent, backbone=_common.submodule_backbone(net))
