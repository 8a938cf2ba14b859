"""Losses: pure functions over the global batch, plus the primitives they share.

Every loss takes arrays and keyword-only hyperparameters and returns a scalar. None of them calls a
collective: inside a jitted step the arrays are global (sharded on the mesh's ``data`` axis) and XLA
inserts the cross-device reductions, so batch statistics are over the global batch (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "barlow_twins_loss",
    "batch_standardize",
    "byol_loss",
    "cross_correlation",
    "dino_center",
    "dino_loss",
    "infonce_loss",
    "jepa_loss",
    "l2_normalize",
    "mae_loss",
    "mocov3_loss",
    "ntxent_loss",
    "off_diagonal",
    "simsiam_loss",
    "vicreg_loss",
    "vicreg_terms",
]

# Every matmul over the batch or the features runs in full float32, also on accelerators whose
# default matmul precision is bf16.
_HIGHEST = jax.lax.Precision.HIGHEST


def batch_standardize(z_bd: jax.Array, *, eps: float = 1e-5) -> jax.Array:
  """Standardises each column with batch statistics (BatchNorm without affine, training mode).

  Args:
    z_bd: [N, D] embeddings.
    eps: added to the biased (divide-by-N) variance, as PyTorch's BatchNorm1d does.

  Returns:
    [N, D] float32 array with zero column means and (almost) unit biased column variances.
  """
  z_bd = z_bd.astype(jnp.float32)
  mean_d = jnp.mean(z_bd, axis=0)
  var_d = jnp.mean(jnp.square(z_bd - mean_d), axis=0)
  return (z_bd - mean_d) * jax.lax.rsqrt(var_d + eps)


def cross_correlation(z1_bd: jax.Array, z2_bd: jax.Array, *, eps: float = 1e-5) -> jax.Array:
  """Empirical cross-correlation ``C = z1n^T z2n / N`` of two batch-standardised views.

  Args:
    z1_bd: [N, D] embeddings of view 1.
    z2_bd: [N, D] embeddings of view 2 (same rows = same images).
    eps: variance epsilon of the per-view standardisation.

  Returns:
    [D, D] float32 matrix; ``C[i, j]`` correlates dimension i of view 1 with dimension j of view 2.
  """
  if z1_bd.shape != z2_bd.shape or z1_bd.ndim != 2:
    raise ValueError(
        f"expected two [N, D] arrays of the same shape, got {z1_bd.shape}, {z2_bd.shape}")
  n = z1_bd.shape[0]
  z1n = batch_standardize(z1_bd, eps=eps)
  z2n = batch_standardize(z2_bd, eps=eps)
  # HIGHEST keeps the D x D sums in full float32 on accelerators whose default matmul is bf16.
  return jnp.matmul(z1n.T, z2n, precision=jax.lax.Precision.HIGHEST) / n


def off_diagonal(c_dd: jax.Array) -> jax.Array:
  """Returns ``c_dd`` with its diagonal set to zero ([D, D] -> [D, D])."""
  return c_dd * (1.0 - jnp.eye(c_dd.shape[0], c_dd.shape[1], dtype=c_dd.dtype))


def barlow_twins_loss(
    z1_bd: jax.Array, z2_bd: jax.Array, *, lambd: float = 0.0051, eps: float = 1e-5
) -> jax.Array:
  """Barlow Twins redundancy-reduction loss (Zbontar et al., 2021), official formula.

  ``L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` from
  :func:`cross_correlation`. Computed in float32 whatever the input dtype. Any loss scale
  (solo-learn's ``scale_loss``) is applied by the caller.

  Args:
    z1_bd: [N, D] projector outputs of view 1 (global batch).
    z2_bd: [N, D] projector outputs of view 2.
    lambd: weight of the off-diagonal (redundancy) term; 0.0051 in the official code.
    eps: variance epsilon of the batch standardisation (1e-5, as BatchNorm1d).

  Returns:
    Scalar float32 loss.
  """
  c_dd = cross_correlation(z1_bd, z2_bd, eps=eps)
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c_dd)))
  off_diag = jnp.sum(jnp.square(off_diagonal(c_dd)))
  return on_diag + lambd * off_diag


def _check_positive(name: str, value) -> None:
  """Raises ValueError if ``value`` is a known number <= 0; a traced value is not checked."""
  try:
    v = float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    # A traced scalar (e.g. a scheduled temperature inside jit) has no value yet.
    return
  if not v > 0.0:  # also rejects NaN
    raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_pair(a, b, names: str) -> None:
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f"{names}: expected two [N, D] arrays of the same shape, got "
                     f"{a.shape} and {b.shape}")


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """``x / max(||x||_2, eps)`` along ``axis`` (PyTorch ``F.normalize`` semantics), in float32.

  Args:
    x: array of any shape, e.g. [N, D].
    axis: the axis whose vectors are normalised.
    eps: lower bound on the norm, so an all-zero vector maps to zeros.

  Returns:
    float32 array of ``x``'s shape whose vectors along ``axis`` have unit norm (or are zero).
  """
  x = x.astype(jnp.float32)
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  # sqrt(max(|x|^2, eps^2)) == max(|x|, eps), but its gradient stays finite at x = 0, where
  # d sqrt/d sq is infinite (PyTorch's norm backward likewise gives 0 there).
  return x / jnp.sqrt(jnp.maximum(sq, eps * eps))


def _cosine(a_bd: jax.Array, b_bd: jax.Array) -> jax.Array:
  """Row-wise cosine similarity of two [N, D] arrays -> [N] float32."""
  return jnp.sum(l2_normalize(a_bd) * l2_normalize(b_bd), axis=-1)


def ntxent_loss(z1_bd: jax.Array, z2_bd: jax.Array, *, temperature: float) -> jax.Array:
  """SimCLR NT-Xent loss (Chen et al., 2020) over the global batch.

  The 2N L2-normalised embeddings are all anchors. Anchor i's positive is the other view of the
  same image; its softmax denominator runs over the 2N - 1 other embeddings (itself excluded).
  The loss is the mean over the 2N anchors of
  ``-log(exp(s_pos / tau) / sum_{j != i} exp(s_ij / tau))`` with cosine similarities ``s``.

  Args:
    z1_bd: [N, D] projector outputs of view 1 (global batch).
    z2_bd: [N, D] projector outputs of view 2 (same rows = same images).
    temperature: softmax temperature tau > 0 (SimCLR: 0.1 to 0.5).

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if the shapes differ or are not [N, D], or if ``temperature <= 0``.
  """
  _check_pair(z1_bd, z2_bd, "ntxent_loss")
  _check_positive("ntxent_loss temperature", temperature)
  z_md = jnp.concatenate([l2_normalize(z1_bd), l2_normalize(z2_bd)], axis=0)  # M = 2N anchors
  logits_mm = jnp.matmul(z_md, z_md.T, precision=_HIGHEST) / temperature
  m = z_md.shape[0]
  # Self-similarity is always the largest logit (1 / tau); it is removed from the denominator.
  logits_mm = jnp.where(jnp.eye(m, dtype=bool), -jnp.inf, logits_mm)
  lse_m = jax.nn.logsumexp(logits_mm, axis=-1)
  # Anchor i and anchor i + N share their positive logit, so the N row-wise dots suffice.
  pos_n = jnp.sum(z_md[: m // 2] * z_md[m // 2 :], axis=-1) / temperature
  return jnp.mean(lse_m) - jnp.mean(pos_n)


def byol_loss(p_bd: jax.Array, t_bd: jax.Array) -> jax.Array:
  """BYOL regression loss (Grill et al., 2020), one direction: ``mean_i 2 - 2 cos(p_i, t_i)``.

  The target is under ``stop_gradient`` here, so no gradient reaches the target network whatever
  the caller does. The method symmetrises: ``byol_loss(p1, t2) + byol_loss(p2, t1)``.

  Args:
    p_bd: [N, D] online predictions.
    t_bd: [N, D] target projections (of the other view).

  Returns:
    Scalar float32 loss in [0, 4].
  """
  _check_pair(p_bd, t_bd, "byol_loss")
  return jnp.mean(2.0 - 2.0 * _cosine(p_bd, jax.lax.stop_gradient(t_bd)))


def simsiam_loss(p_bd: jax.Array, z_bd: jax.Array) -> jax.Array:
  """SimSiam negative cosine (Chen & He, 2021), one direction: ``-mean_i cos(p_i, sg(z_i))``.

  The method computes ``simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2``; the stop-gradient
  on ``z`` is applied here.

  Args:
    p_bd: [N, D] predictor outputs.
    z_bd: [N, D] projector outputs (of the other view).

  Returns:
    Scalar float32 loss in [-1, 1].
  """
  _check_pair(p_bd, z_bd, "simsiam_loss")
  return -jnp.mean(_cosine(p_bd, jax.lax.stop_gradient(z_bd)))


def vicreg_terms(
    z1_bd: jax.Array, z2_bd: jax.Array, *, gamma: float = 1.0, eps: float = 1e-4
) -> dict[str, jax.Array]:
  """The three unweighted VICReg terms (Bardes et al., 2022) as in facebookresearch/vicreg.

  * ``invariance``: ``mean((z1 - z2)^2)`` over N and D (``F.mse_loss``).
  * ``variance``: per view ``mean_d relu(gamma - sqrt(var_d + eps))`` with the unbiased
    (divide-by-(N-1)) batch variance; the two views are AVERAGED (``/ 2`` each).
  * ``covariance``: per view ``sum_{i != j} Cov_ij^2 / D`` with
    ``Cov = (Z - mean)^T (Z - mean) / (N - 1)``; the two views are SUMMED.

  The official code averages the variance terms and sums the covariance terms, whereas
  solo-learn sums both; we follow the official code (so with solo-learn's weights the variance
  term weighs half as much here).

  Args:
    z1_bd: [N, D] expander outputs of view 1 (global batch, N >= 2).
    z2_bd: [N, D] expander outputs of view 2.
    gamma: target standard deviation of each dimension.
    eps: added to the variance before the square root (numerical stability).

  Returns:
    Dict of scalar float32 arrays with keys ``invariance``, ``variance``, ``covariance``.

  Raises:
    ValueError: if the shapes differ or are not [N, D], or N < 2.
  """
  _check_pair(z1_bd, z2_bd, "vicreg_terms")
  n, d = z1_bd.shape
  if n < 2:
    raise ValueError(f"vicreg_terms needs N >= 2 rows for an unbiased variance, got N={n}")
  z1_bd = z1_bd.astype(jnp.float32)
  z2_bd = z2_bd.astype(jnp.float32)

  def var_and_cov(z_bd):
    zc_bd = z_bd - jnp.mean(z_bd, axis=0)
    cov_dd = jnp.matmul(zc_bd.T, zc_bd, precision=_HIGHEST) / (n - 1)
    # The unbiased variances are the diagonal of Cov, computed directly as in the official code.
    std_d = jnp.sqrt(jnp.sum(jnp.square(zc_bd), axis=0) / (n - 1) + eps)
    var_term = jnp.mean(jax.nn.relu(gamma - std_d))
    cov_term = jnp.sum(jnp.square(off_diagonal(cov_dd))) / d
    return var_term, cov_term

  var1, cov1 = var_and_cov(z1_bd)
  var2, cov2 = var_and_cov(z2_bd)
  return {
      "invariance": jnp.mean(jnp.square(z1_bd - z2_bd)),
      "variance": var1 / 2 + var2 / 2,
      "covariance": cov1 + cov2,
  }


def vicreg_loss(
    z1_bd: jax.Array,
    z2_bd: jax.Array,
    *,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> jax.Array:
  """VICReg loss: ``sim_weight * inv + var_weight * var + cov_weight * cov``.

  The terms are those of :func:`vicreg_terms` (official facebookresearch/vicreg reductions: the
  two variance terms averaged, the two covariance terms summed; solo-learn sums both). Default
  weights are the official 25 / 25 / 1.

  Args:
    z1_bd: [N, D] expander outputs of view 1 (global batch, N >= 2).
    z2_bd: [N, D] expander outputs of view 2.
    sim_weight: weight of the invariance (MSE) term.
    var_weight: weight of the variance (hinge on the std) term.
    cov_weight: weight of the covariance term.
    gamma: target standard deviation of each dimension.
    eps: added to the variance before the square root.

  Returns:
    Scalar float32 loss.
  """
  t = vicreg_terms(z1_bd, z2_bd, gamma=gamma, eps=eps)
  return (sim_weight * t["invariance"] + var_weight * t["variance"]
          + cov_weight * t["covariance"])


def mocov3_loss(q_bd: jax.Array, k_bd: jax.Array, *, temperature: float) -> jax.Array:
  """MoCo v3 contrastive loss (Chen et al., 2021), one direction, in-batch negatives.

  ``CE(n(q) n(sg(k))^T / tau, labels = arange(N)) * 2 * tau``: query i's positive is key i, the
  other N - 1 keys of the global batch are its negatives (no queue). The ``2 * tau`` factor is the
  official one. The method computes ``mocov3_loss(q1, k2) + mocov3_loss(q2, k1)``; the
  stop-gradient on the momentum-encoder keys is applied here.

  Args:
    q_bd: [N, D] predictor outputs (queries) of one view.
    k_bd: [N, D] momentum-encoder projections (keys) of the other view.
    temperature: softmax temperature tau > 0 (MoCo v3: 0.2 for ViT, 1.0 for ResNet).

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if the shapes differ or are not [N, D], or if ``temperature <= 0``.
  """
  _check_pair(q_bd, k_bd, "mocov3_loss")
  _check_positive("mocov3_loss temperature", temperature)
  q_bd = l2_normalize(q_bd)
  k_bd = l2_normalize(jax.lax.stop_gradient(k_bd))
  logits_nn = jnp.matmul(q_bd, k_bd.T, precision=_HIGHEST) / temperature
  pos_n = jnp.sum(q_bd * k_bd, axis=-1) / temperature
  ce = jnp.mean(jax.nn.logsumexp(logits_nn, axis=-1) - pos_n)
  return ce * (2.0 * temperature)


def dino_loss(
    student_logits: Sequence[jax.Array],
    teacher_logits: Sequence[jax.Array],
    center_k: jax.Array,
    *,
    student_temp: float,
    teacher_temp: float | jax.Array,
) -> jax.Array:
  """DINO self-distillation cross-entropy (Caron et al., 2021), as the official ``DINOLoss``.

  Teacher probabilities ``P_t = softmax((t - center) / teacher_temp)`` (teacher and center under
  ``stop_gradient``); student log-probabilities ``log_softmax(s / student_temp)``. The loss is
  the average, over all pairs (teacher crop iq, student crop v) with ``v != iq``, of the batch
  mean of ``-sum_k P_t log P_s``. Student crops 0..G-1 must be the G global views the teacher
  saw, in the same order.

  Args:
    student_logits: V >= G arrays [N, K], one per crop (global crops first, then local).
    teacher_logits: G arrays [N, K], one per global crop.
    center_k: [K] (or [1, K]) running center of the teacher logits (see :func:`dino_center`).
    student_temp: student softmax temperature > 0 (0.1 in DINO).
    teacher_temp: teacher softmax temperature > 0 (0.04 to 0.07); may be a traced scalar (warm-up
      schedule), which is then not validated.

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if a known temperature is <= 0, there are fewer student than teacher crops, the
      crops' shapes differ, or there is no (iq, v != iq) pair.
  """
  _check_positive("dino_loss student_temp", student_temp)
  _check_positive("dino_loss teacher_temp", teacher_temp)
  student_logits, teacher_logits = list(student_logits), list(teacher_logits)
  n_s, n_t = len(student_logits), len(teacher_logits)
  if n_t > n_s:
    raise ValueError(f"dino_loss: the student must see every teacher crop first, got {n_s} "
                     f"student and {n_t} teacher crops")
  shapes = {tuple(x.shape) for x in student_logits + teacher_logits}
  if len(shapes) != 1 or len(next(iter(shapes))) != 2:
    raise ValueError(f"dino_loss: every crop must be the same [N, K] shape, got {sorted(shapes)}")
  n_pairs = n_t * n_s - n_t  # each teacher crop skips its own student crop
  if n_pairs <= 0:
    raise ValueError(f"dino_loss: no (teacher, student) crop pairs with different views for "
                     f"{n_s} student and {n_t} teacher crops")
  center_k = jax.lax.stop_gradient(jnp.asarray(center_k, jnp.float32))
  # The whole teacher distribution is a target: no gradient reaches the logits, the centre or a
  # traced (scheduled) temperature.
  p_t = [jax.lax.stop_gradient(jax.nn.softmax((t.astype(jnp.float32) - center_k) / teacher_temp,
                                              axis=-1)) for t in teacher_logits]
  log_p_s = [jax.nn.log_softmax(s.astype(jnp.float32) / student_temp, axis=-1)
             for s in student_logits]
  total = jnp.zeros((), jnp.float32)
  for iq, p_nk in enumerate(p_t):
    for v, log_nk in enumerate(log_p_s):
      if v == iq:
        continue
      total = total + jnp.mean(-jnp.sum(p_nk * log_nk, axis=-1))
  return total / n_pairs


def dino_center(
    center_k: jax.Array, teacher_logits: Sequence[jax.Array], *, momentum: float = 0.9
) -> jax.Array:
  """DINO center EMA: ``momentum * center + (1 - momentum) * mean of the teacher logits``.

  The mean is over every row of all teacher crops of the global batch (the official code sums the
  concatenated teacher output, all-reduces, and divides by ``len * world_size``). No gradient
  flows through it.

  Args:
    center_k: [K] (or [1, K]) current center.
    teacher_logits: G arrays [N, K], one per global crop.
    momentum: EMA momentum of the center (0.9 in DINO).

  Returns:
    New float32 center, ``center_k``'s shape.
  """
  t_mk = jnp.concatenate([jnp.asarray(t, jnp.float32) for t in teacher_logits], axis=0)
  batch_center_k = jnp.mean(jax.lax.stop_gradient(t_mk), axis=0)
  center_k = jax.lax.stop_gradient(jnp.asarray(center_k, jnp.float32))
  return momentum * center_k + (1.0 - momentum) * batch_center_k


def mae_loss(
    pred_bld: jax.Array,
    target_bld: jax.Array,
    mask_bl: jax.Array,
    *,
    norm_pix: bool = True,
    eps: float = 1e-6,
) -> jax.Array:
  """MAE reconstruction loss (He et al., 2022) on the masked patches, as official forward_loss.

  With ``norm_pix`` each target patch is normalised by its own statistics over D,
  ``(t - mean) / sqrt(var + eps)`` with the UNBIASED variance (``torch.var``'s default, as the
  official code). The per-patch loss is the mean over D of the squared error; the loss is its
  mask-weighted mean ``sum(loss_bl * mask_bl) / sum(mask_bl)`` (NaN if nothing is masked, as the
  official code).

  Args:
    pred_bld: [B, L, D] decoder predictions (D = patch pixels).
    target_bld: [B, L, D] patchified images; under ``stop_gradient``.
    mask_bl: [B, L] 1 for masked (removed, reconstructed) patches, 0 for visible ones.
    norm_pix: normalise each target patch (the official ``norm_pix_loss``).
    eps: added to the per-patch variance.

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if the shapes do not match.
  """
  if (pred_bld.ndim != 3 or pred_bld.shape != target_bld.shape
      or mask_bl.shape != pred_bld.shape[:2]):
    raise ValueError(f"mae_loss: expected pred/target [B, L, D] and mask [B, L], got "
                     f"{pred_bld.shape}, {target_bld.shape}, {mask_bl.shape}")
  target_bld = jax.lax.stop_gradient(target_bld.astype(jnp.float32))
  if norm_pix:
    mean_bl1 = jnp.mean(target_bld, axis=-1, keepdims=True)
    var_bl1 = jnp.var(target_bld, axis=-1, keepdims=True, ddof=1)
    target_bld = (target_bld - mean_bl1) / jnp.sqrt(var_bl1 + eps)
  loss_bl = jnp.mean(jnp.square(pred_bld.astype(jnp.float32) - target_bld), axis=-1)
  mask_bl = mask_bl.astype(jnp.float32)
  return jnp.sum(loss_bl * mask_bl) / jnp.sum(mask_bl)


def infonce_loss(anchor_bd: jax.Array, positive_bd: jax.Array, *,
                 temperature: float) -> jax.Array:
  """SCARF's InfoNCE: each anchor must pick its own positive among the batch's positives.

  ``mean_i -log(exp(s_ii / tau) / sum_k exp(s_ik / tau))`` with cosine similarities
  ``s_ik = cos(anchor_i, positive_k)``: one direction only, and the anchors are not each other's
  negatives (unlike SimCLR's NT-Xent). Writing the denominator as a mean over k rather than a sum
  (a form also in use) subtracts the constant ``log N`` and leaves the gradients unchanged.

  Args:
    anchor_bd: [N, D] embeddings of the original rows (global batch).
    positive_bd: [N, D] embeddings of their corrupted views (same row order).
    temperature: softmax temperature tau > 0 (SCARF: 1.0).

  Returns:
    Scalar float32 loss; ``log N`` when every similarity is equal.
  """
  if anchor_bd.ndim != 2 or anchor_bd.shape != positive_bd.shape:
    raise ValueError(f"infonce_loss: expected two [N, D] arrays of the same shape, got "
                     f"{anchor_bd.shape} and {positive_bd.shape}")
  a_bd = l2_normalize(anchor_bd)
  p_bd = l2_normalize(positive_bd)
  logits_bb = jnp.matmul(a_bd, p_bd.T, precision=_HIGHEST) / temperature
  pos_b = jnp.sum(a_bd * p_bd, axis=-1) / temperature
  return jnp.mean(jax.nn.logsumexp(logits_bb, axis=-1) - pos_b)


def jepa_loss(pred_kbth: jax.Array, target_kbth: jax.Array, valid) -> jax.Array:
  """Mean squared error over the valid target tokens.

  Args:
    pred_kbth: float [K, B, T, H], the predictor's outputs.
    target_kbth: float [K, B, T, H], the target encoder's outputs at the same columns.
    valid: bool, broadcastable to [K, B, T] (``column_masks``' ``tgt_valid`` [T]).

  Returns:
    Scalar: the mean of ``(pred - target)^2`` over every (k, b, valid t, h).
  """
  weight = jnp.broadcast_to(valid, pred_kbth.shape[:3]).astype(jnp.float32)[..., None]
  squared = jnp.square(pred_kbth.astype(jnp.float32) - target_kbth.astype(jnp.float32))
  count = jnp.maximum(weight.sum(), 1.0) * pred_kbth.shape[-1]
  return jnp.sum(squared * weight) / count
