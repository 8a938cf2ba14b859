"""Losses: pure functions over the global batch, plus the primitives they share.

Every loss takes arrays and keyword-only hyperparameters and returns a scalar. None of them calls a
collective: inside a jitted step the arrays are global (sharded on the mesh's ``data`` axis) and XLA
inserts the cross-device reductions, so batch statistics are over the global batch (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

__all__ = [
    "barlow_twins_loss",
    "batch_standardize",
    "byol_loss",
    "cross_correlation",
    "dino_center",
    "dino_cross_entropy",
    "dino_loss",
    "dino_teacher_targets",
    "infonce_loss",
    "jepa_loss",
    "koleo_loss",
    "l2_normalize",
    "mae_loss",
    "mocov3_loss",
    "ntxent_loss",
    "off_diagonal",
    "simsiam_loss",
    "sinkhorn_knopp_targets",
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
    centering: str = "center",
    sinkhorn_iterations: int = 3,
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
    centering: ``"center"`` (DINO's running centre, above) or ``"sinkhorn"`` (DINOv2's
      Sinkhorn-Knopp teacher, :func:`sinkhorn_knopp_targets`, which ignores ``center_k``).
    sinkhorn_iterations: Sinkhorn-Knopp iterations (3 in DINOv2 and SwAV).

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if a known temperature is <= 0, there are fewer student than teacher crops, the
      crops' shapes differ, or there is no (iq, v != iq) pair.
  """
  _check_positive("dino_loss student_temp", student_temp)
  _check_positive("dino_loss teacher_temp", teacher_temp)
  _check_dino_crops(student_logits, teacher_logits)
  p_t = dino_teacher_targets(teacher_logits, center_k, teacher_temp=teacher_temp,
                             centering=centering, sinkhorn_iterations=sinkhorn_iterations)
  return dino_cross_entropy(student_logits, p_t, student_temp=student_temp)


def _check_dino_crops(student: Sequence[jax.Array], teacher: Sequence[jax.Array]) -> int:
  """Validates DINO's crops (see :func:`dino_loss`); returns the number of (teacher, student)
  pairs of different crops."""
  student, teacher = list(student), list(teacher)
  n_s, n_t = len(student), len(teacher)
  if n_t > n_s:
    raise ValueError(f"dino_loss: the student must see every teacher crop first, got {n_s} "
                     f"student and {n_t} teacher crops")
  shapes = {tuple(x.shape) for x in student + teacher}
  if len(shapes) != 1 or len(next(iter(shapes))) != 2:
    raise ValueError(f"dino_loss: every crop must be the same [N, K] shape, got {sorted(shapes)}")
  n_pairs = n_t * n_s - n_t  # each teacher crop skips its own student crop
  if n_pairs <= 0:
    raise ValueError(f"dino_loss: no (teacher, student) crop pairs with different views for "
                     f"{n_s} student and {n_t} teacher crops")
  return n_pairs


def dino_cross_entropy(
    student_logits: Sequence[jax.Array],
    teacher_targets: Sequence[jax.Array],
    *,
    student_temp: float,
) -> jax.Array:
  """:func:`dino_loss` from the teacher's target distributions (:func:`dino_teacher_targets`), so
  a caller that also logs the targets computes them once.

  Args:
    student_logits: V >= G arrays [N, K], global crops first.
    teacher_targets: G arrays [N, K] of probabilities, one per global crop (no gradient taken).
    student_temp: student softmax temperature > 0.

  Returns:
    Scalar float32: the mean over pairs (iq, v != iq) of the batch mean of ``-sum_k P_t log P_s``.
  """
  _check_positive("dino_loss student_temp", student_temp)
  n_pairs = _check_dino_crops(student_logits, teacher_targets)
  p_t = [jax.lax.stop_gradient(jnp.asarray(p, jnp.float32)) for p in teacher_targets]
  log_p_s = [jax.nn.log_softmax(s.astype(jnp.float32) / student_temp, axis=-1)
             for s in student_logits]
  total = jnp.zeros((), jnp.float32)
  for iq, p_nk in enumerate(p_t):
    for v, log_nk in enumerate(log_p_s):
      if v == iq:
        continue
      total = total + jnp.mean(-jnp.sum(p_nk * log_nk, axis=-1))
  return total / n_pairs


DINO_CENTERINGS = ("center", "sinkhorn")


def dino_teacher_targets(
    teacher_logits: Sequence[jax.Array],
    center_k: jax.Array,
    *,
    teacher_temp: float | jax.Array,
    centering: str = "center",
    sinkhorn_iterations: int = 3,
) -> list[jax.Array]:
  """The teacher's target distributions of :func:`dino_loss`, one [N, K] array per global crop.

  ``centering="center"``: ``softmax((t - center) / teacher_temp)`` (DINO); ``"sinkhorn"``:
  :func:`sinkhorn_knopp_targets` (DINOv2), ``center_k`` unused. The whole distribution is a
  target: no gradient reaches the logits, the centre or a traced (scheduled) temperature.
  """
  if centering not in DINO_CENTERINGS:
    raise ValueError(f"dino_loss: centering={centering!r} must be one of {DINO_CENTERINGS}")
  if centering == "sinkhorn":
    p_t = sinkhorn_knopp_targets(teacher_logits, teacher_temp=teacher_temp,
                                 iterations=sinkhorn_iterations)
  else:
    center_k = jnp.asarray(center_k, jnp.float32)
    p_t = [jax.nn.softmax((t.astype(jnp.float32) - center_k) / teacher_temp, axis=-1)
           for t in teacher_logits]
  return [jax.lax.stop_gradient(p) for p in p_t]


def sinkhorn_knopp_targets(
    teacher_logits: Sequence[jax.Array],
    *,
    teacher_temp: float | jax.Array,
    iterations: int = 3,
) -> list[jax.Array]:
  """Teacher targets by Sinkhorn-Knopp (DINOv2, Oquab et al. 2023; SwAV, Caron et al. 2020).

  Instead of subtracting a running centre, the teacher's scores over the rows of ALL its crops
  (``M = G * N`` rows of the global batch) are balanced so that every prototype gets the same
  share of the batch: ``Q = exp(t / teacher_temp)`` is normalised to total mass 1, then
  ``iterations`` times each prototype's column is scaled to mass ``1 / K`` and each row to mass
  ``1 / M``; the targets are the rows times ``M`` (each sums to 1). DINOv2's
  ``sinkhorn_knopp_teacher`` computes the same (its sums are all-reduced over devices; here the
  batch is global). A teacher that gives every image nearly the same scores therefore still sets
  different, sharp targets, which is what centring cannot do at the start of a run whose views
  barely agree (``experiments/dino.py``).

  The normalisations run in log space (``logsumexp``), the same values without the overflow of
  ``exp(t / 0.04)`` on large logits or an all-zero column from underflow.

  Args:
    teacher_logits: G arrays [N, K], one per global crop.
    teacher_temp: the temperature (the entropic regularisation's epsilon) > 0.
    iterations: number of (column, row) normalisation rounds >= 1.

  Returns:
    G float32 arrays [N, K] whose rows sum to 1.
  """
  _check_positive("sinkhorn_knopp_targets teacher_temp", teacher_temp)
  if int(iterations) < 1:
    raise ValueError(f"sinkhorn_knopp_targets: iterations={iterations} must be >= 1")
  t_mk = jnp.concatenate([jnp.asarray(t, jnp.float32) for t in teacher_logits], axis=0)
  m, k = t_mk.shape
  # The same normalisations in log space: no exp overflows or underflows to an empty column.
  log_q = t_mk / teacher_temp
  log_q = log_q - logsumexp(log_q)
  for _ in range(int(iterations)):
    log_q = log_q - logsumexp(log_q, axis=0, keepdims=True) - jnp.log(k)
    log_q = log_q - logsumexp(log_q, axis=1, keepdims=True) - jnp.log(m)
  q_mk = jnp.exp(log_q) * m
  return list(jnp.split(q_mk, len(teacher_logits), axis=0))


def koleo_loss(x_nd: jax.Array, *, eps: float = 1e-8) -> jax.Array:
  """KoLeo regulariser (Sablayrolles et al., ICLR 2019; used by DINOv2, Oquab et al. 2023).

  The Kozachenko-Leonenko estimate of the differential entropy of the L2-normalised rows, up to
  constants: ``-mean_i log(||x_i - x_nn(i) + eps|| + eps)``, where ``nn(i)`` is row i's nearest
  other row by cosine (chosen without gradient, as DINOv2's ``KoLeoLoss``; the distance itself
  is differentiable in both rows). Minimising it spreads the batch's rows apart, the repulsion
  that a contrastive loss has and self-distillation lacks.

  Args:
    x_nd: [N, D] features, N >= 2 (normalised here).
    eps: added as PyTorch's ``PairwiseDistance(eps=1e-8)`` and the official log do.

  Returns:
    Scalar float32 loss.
  """
  x_nd = jnp.asarray(x_nd, jnp.float32)
  if x_nd.ndim != 2 or x_nd.shape[0] < 2:
    raise ValueError(f"koleo_loss: expected [N >= 2, D] features, got shape {x_nd.shape}")
  x_nd = l2_normalize(x_nd)
  sims = jax.lax.stop_gradient(jnp.matmul(x_nd, x_nd.T, precision=_HIGHEST))
  sims = jnp.where(jnp.eye(x_nd.shape[0], dtype=bool), -jnp.inf, sims)
  nn_idx = jnp.argmax(sims, axis=1)
  dist = jnp.linalg.norm(x_nd - x_nd[nn_idx] + eps, axis=-1)
  return -jnp.mean(jnp.log(dist + eps))


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


# ------------------------------------------------------------------ TS2Vec on a valid prefix


def _masked_neg_log_softmax_pairs(sim_nmm, valid_m, first, second):
  """-log softmax of ``sim`` rows over the other valid columns, at (first[i], second[i])."""
  m = sim_nmm.shape[-1]
  allowed = valid_m[None, :] & ~jnp.eye(m, dtype=bool)
  logits = jnp.where(allowed[None], sim_nmm, -jnp.inf)
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -logp[:, first, second]


def ts2vec_instance_loss_masked(z1_btd: jax.Array, z2_btd: jax.Array, length) -> jax.Array:
  """:func:`ts2vec_instance_loss` on the first ``length`` timestamps (a traced scalar) only."""
  b, t, _ = z1_btd.shape
  if b == 1:
    return jnp.zeros((), jnp.float32)
  z = jnp.concatenate([z1_btd, z2_btd], axis=0).transpose(1, 0, 2)  # [T, 2B, D]
  sim = jnp.matmul(z, z.transpose(0, 2, 1), precision=jax.lax.Precision.HIGHEST)
  i = jnp.arange(b)
  rows = jnp.ones((2 * b,), bool)
  a = _masked_neg_log_softmax_pairs(sim, rows, i, b + i)  # [T, B]
  c = _masked_neg_log_softmax_pairs(sim, rows, b + i, i)
  keep = (jnp.arange(t) < length)[:, None]
  count = jnp.maximum(jnp.minimum(length, t), 1) * b
  return (jnp.sum(jnp.where(keep, a, 0.0)) + jnp.sum(jnp.where(keep, c, 0.0))) / (2.0 * count)


def ts2vec_temporal_loss_masked(z1_btd: jax.Array, z2_btd: jax.Array, length) -> jax.Array:
  """:func:`ts2vec_temporal_loss` on the first ``length`` timestamps (a traced scalar) only:
  the other timestamps take no part in any softmax."""
  b, t, _ = z1_btd.shape
  z = jnp.concatenate([z1_btd, z2_btd], axis=1)  # [B, 2T, D]
  sim = jnp.matmul(z, z.transpose(0, 2, 1), precision=jax.lax.Precision.HIGHEST)
  keep_t = jnp.arange(t) < length
  valid = jnp.concatenate([keep_t, keep_t])
  s = jnp.arange(t)
  a = _masked_neg_log_softmax_pairs(sim, valid, s, t + s)  # [B, T]
  c = _masked_neg_log_softmax_pairs(sim, valid, t + s, s)
  count = jnp.maximum(jnp.minimum(length, t), 1) * b
  total = (jnp.sum(jnp.where(keep_t[None], a, 0.0)) + jnp.sum(jnp.where(keep_t[None], c, 0.0)))
  return jnp.where(length > 1, total / (2.0 * count), 0.0)


def ts2vec_hierarchical_loss_masked(z1_btd: jax.Array, z2_btd: jax.Array, length, *,
                                    alpha: float = 0.5, temporal_unit: int = 0) -> jax.Array:
  """:func:`ts2vec_hierarchical_loss` of ``z1[:, :length]`` and ``z2[:, :length]`` for a traced
  ``length``, on arrays of a fixed length T (TS2Vec's crop length changes every step).

  Scale ``s`` holds ``length // 2**s`` valid timestamps (max-pooling by 2 drops an odd last
  one, as ``F.max_pool1d``); a scale with more than one adds the instance and temporal terms, the
  scale with exactly one adds the instance term, and the sum is divided by the number of scales
  with at least one timestamp: what the official loop computes on the sliced arrays.
  """
  length = jnp.asarray(length, jnp.int32)
  z1, z2 = z1_btd.astype(jnp.float32), z2_btd.astype(jnp.float32)
  total = jnp.zeros((), jnp.float32)
  scales = jnp.zeros((), jnp.float32)
  level, cur = 0, length
  while z1.shape[1] >= 1:
    inst = ts2vec_instance_loss_masked(z1, z2, cur) if alpha != 0 else 0.0
    term = alpha * inst
    if level >= temporal_unit and alpha != 1:
      term = term + jnp.where(cur > 1, (1 - alpha) * ts2vec_temporal_loss_masked(z1, z2, cur),
                              0.0)
    total = total + jnp.where(cur >= 1, term, 0.0)
    scales = scales + (cur >= 1).astype(jnp.float32)
    if z1.shape[1] == 1:
      break
    z1, z2 = _max_pool_time2(z1), _max_pool_time2(z2)
    cur, level = cur // 2, level + 1
  return total / jnp.maximum(scales, 1.0)


def _max_pool_time2(z_btd: jax.Array) -> jax.Array:
  """Max over pairs of timestamps (kernel 2, stride 2; an odd last timestamp is dropped)."""
  b, t, d = z_btd.shape
  t2 = t // 2
  return jnp.max(z_btd[:, :2 * t2].reshape(b, t2, 2, d), axis=2)


# ------------------------------------------------------------------ TS2Vec (fixed length)


def _check_series_pair(z1_btd: jax.Array, z2_btd: jax.Array, name: str) -> None:
  if z1_btd.ndim != 3 or z1_btd.shape != z2_btd.shape:
    raise ValueError(f"{name}: expected two [B, T, D] arrays of the same shape, got "
                     f"{z1_btd.shape} and {z2_btd.shape}")


def ts2vec_instance_loss(z1_btd: jax.Array, z2_btd: jax.Array) -> jax.Array:
  """TS2Vec instance-wise contrastive loss (Yue et al., "TS2Vec: Towards Universal Representation
  of Time Series", AAAI 2022).

  At each timestamp t the 2B representations of both views are contrasted: the logits of row i are
  its plain dot products (no normalisation, no temperature) with the 2B - 1 other rows (itself
  excluded), and its positive is the same series in the other view. The loss is
  ``(mean_{t,i} -log p_t(i -> B + i) + mean_{t,i} -log p_t(B + i -> i)) / 2``, as the official
  code (which drops the diagonal with a tril/triu shift; here it is masked to -inf instead).

  Args:
    z1_btd: [B, T, D] timestamp representations of view 1 (global batch).
    z2_btd: [B, T, D] representations of view 2 (same rows = same series, same timestamps).

  Returns:
    Scalar float32 loss; 0 when B == 1 (no other series to contrast with).
  """
  _check_series_pair(z1_btd, z2_btd, "ts2vec_instance_loss")
  # Every timestamp valid: the masked form with the full length (one implementation of both).
  return ts2vec_instance_loss_masked(z1_btd.astype(jnp.float32), z2_btd.astype(jnp.float32),
                                     z1_btd.shape[1])


def ts2vec_temporal_loss(z1_btd: jax.Array, z2_btd: jax.Array) -> jax.Array:
  """TS2Vec temporal contrastive loss (Yue et al., AAAI 2022).

  Within each series the 2T timestamps of both views are contrasted: the logits of timestamp s are
  its dot products with the 2T - 1 other timestamps of the same series (itself excluded), and its
  positive is the same timestamp in the other view. The loss is
  ``(mean_{b,t} -log p_b(t -> T + t) + mean_{b,t} -log p_b(T + t -> t)) / 2``.

  Args:
    z1_btd: [B, T, D] timestamp representations of view 1.
    z2_btd: [B, T, D] representations of view 2 (same rows, same timestamps).

  Returns:
    Scalar float32 loss; 0 when T == 1.
  """
  _check_series_pair(z1_btd, z2_btd, "ts2vec_temporal_loss")
  if z1_btd.shape[1] == 1:
    return jnp.zeros((), jnp.float32)
  return ts2vec_temporal_loss_masked(z1_btd.astype(jnp.float32), z2_btd.astype(jnp.float32),
                                     z1_btd.shape[1])


def ts2vec_hierarchical_loss(z1_btd: jax.Array, z2_btd: jax.Array, *, alpha: float = 0.5,
                             temporal_unit: int = 0) -> jax.Array:
  """TS2Vec hierarchical contrastive loss (Yue et al., AAAI 2022, Algorithm 1).

  At every scale with T > 1 it adds ``alpha * instance + (1 - alpha) * temporal`` (the temporal
  term only from scale ``temporal_unit`` on), then max-pools both views along time (kernel 2,
  stride 2; an odd last timestamp is dropped, as ``F.max_pool1d``). The final scale with T == 1
  adds ``alpha * instance``. The sum is divided by the number of scales. A zero-weight term is
  skipped, as in the official code. T is static, so the loop unrolls under jit.

  Args:
    z1_btd: [B, T, D] timestamp representations of view 1 (global batch), T >= 1.
    z2_btd: [B, T, D] representations of view 2 (same rows, same timestamps).
    alpha: weight of the instance term; ``1 - alpha`` weighs the temporal term (official: 0.5).
    temporal_unit: the first scale (0 = the input resolution) with a temporal term.

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: if the shapes differ, are not [B, T, D], or T == 0.
  """
  _check_series_pair(z1_btd, z2_btd, "ts2vec_hierarchical_loss")
  if z1_btd.shape[1] < 1:
    raise ValueError(f"ts2vec_hierarchical_loss: needs T >= 1, got shape {z1_btd.shape}")
  z1, z2 = z1_btd.astype(jnp.float32), z2_btd.astype(jnp.float32)
  loss = jnp.zeros((), jnp.float32)
  depth = 0
  while z1.shape[1] > 1:
    if alpha != 0:
      loss = loss + alpha * ts2vec_instance_loss(z1, z2)
    if depth >= temporal_unit and alpha != 1:
      loss = loss + (1 - alpha) * ts2vec_temporal_loss(z1, z2)
    depth += 1
    z1, z2 = _max_pool_time2(z1), _max_pool_time2(z2)
  if z1.shape[1] == 1:
    if alpha != 0:
      loss = loss + alpha * ts2vec_instance_loss(z1, z2)
    depth += 1
  return loss / depth


# ------------------------------------------------------------------ T-Loss


def tloss_triplet_loss(ref_bd: jax.Array, pos_bd: jax.Array, neg_kbd: jax.Array, *,
                       negative_penalty: float = 1.0) -> jax.Array:
  """T-Loss triplet loss with time-based negative sampling (Franceschi, Dieuleveut & Jaggi,
  "Unsupervised Scalable Representation Learning for Multivariate Time Series", NeurIPS 2019).

  ``-mean_b log sig(<r_b, p_b>) - (negative_penalty / K) sum_k mean_b log sig(-<r_b, n_kb>)``
  with sig the logistic sigmoid and r, p, n the representations of the reference, positive and
  negative windows. This is the official code's weighting (``multiplicative_ratio =
  negative_penalty / nb_random_samples``, ``negative_penalty`` = 1 by default): the K negative
  terms are averaged. The paper's Eq. (1) sums them, which is ``negative_penalty = K``.

  Args:
    ref_bd: [B, D] representations of the reference windows (global batch).
    pos_bd: [B, D] representations of the positive windows (sub-windows of the references).
    neg_kbd: [K, B, D] representations of the K negative windows of each example.
    negative_penalty: weight of the (averaged) negative terms, > 0.

  Returns:
    Scalar float32 loss.

  Raises:
    ValueError: on inconsistent shapes, K == 0, or ``negative_penalty <= 0``.
  """
  _check_pair(ref_bd, pos_bd, "tloss_triplet_loss")
  if neg_kbd.ndim != 3 or neg_kbd.shape[1:] != ref_bd.shape or neg_kbd.shape[0] < 1:
    raise ValueError(f"tloss_triplet_loss: expected negatives [K >= 1, B, D] with [B, D] = "
                     f"{ref_bd.shape}, got {neg_kbd.shape}")
  _check_positive("tloss_triplet_loss negative_penalty", negative_penalty)
  ref = ref_bd.astype(jnp.float32)
  pos_b = jnp.sum(ref * pos_bd.astype(jnp.float32), axis=-1)
  neg_kb = jnp.einsum("bd,kbd->kb", ref, neg_kbd.astype(jnp.float32), precision=_HIGHEST)
  k = neg_kbd.shape[0]
  neg_term = jnp.sum(jnp.mean(jax.nn.log_sigmoid(-neg_kb), axis=1))
  return -jnp.mean(jax.nn.log_sigmoid(pos_b)) - (negative_penalty / k) * neg_term


def tloss_sample_windows(rng: jax.Array, batch_size: int, length: int, *, num_negatives: int,
                         min_length: int = 1):
  """Draws T-Loss's reference, positive and negative windows (Franceschi et al., NeurIPS 2019).

  As the official sampler, with one draw of the lengths per step, shared by the batch:
  ``pos_len ~ U{min_length..length}`` (official: ``min_length`` = 1), ``ref_len ~
  U{pos_len..length}``; per example a reference window ``[ref_start, ref_start + ref_len)`` at a
  uniform start, a positive window of length ``pos_len`` at a uniform offset inside it, and K
  negative windows of length ``pos_len`` at uniform starts in ``[0, length - pos_len]``.

  Deviation: the official code draws each negative's series from the whole training set (its own
  series included). Losses here see the global batch only, so each negative's series is drawn
  uniformly from the OTHER rows of the batch (never the anchor's own row).

  JAX needs static shapes, so windows are returned as starts and (traced) lengths, not slices;
  :func:`window_mask` turns them into [..., T] masks, e.g. for an encoder that max-pools over the
  masked timestamps. To reproduce encoding the slice itself, the encoder must also ignore the
  timestamps outside the mask (e.g. zero them before a causal convolution).

  Args:
    rng: a PRNG key.
    batch_size: B >= 2 (static).
    length: the series length T >= 1 (static); all windows lie in ``[0, length)``. The official
      ``compared_length`` cap corresponds to passing ``min(compared_length, T)``.
    num_negatives: K >= 1 negative windows per example (official ``nb_random_samples``: 10).
    min_length: smallest positive/negative window length, in ``[1, length]``.

  Returns:
    ``(pos_start_b, pos_len, ref_start_b, ref_len, neg_row_kb, neg_start_kb)``: int32 arrays, the
    two lengths scalars, ``neg_row_kb[k, b]`` the batch row of example b's k-th negative.

  Raises:
    ValueError: if an argument is outside the ranges above.
  """
  if batch_size < 2:
    raise ValueError(f"tloss_sample_windows: needs batch_size >= 2 (negatives come from other "
                     f"rows), got {batch_size}")
  if length < 1 or not 1 <= min_length <= length:
    raise ValueError(f"tloss_sample_windows: needs 1 <= min_length <= length, got "
                     f"min_length={min_length}, length={length}")
  if num_negatives < 1:
    raise ValueError(f"tloss_sample_windows: num_negatives must be >= 1, got {num_negatives}")
  k_pos, k_ref, k_ref_start, k_offset, k_row, k_neg = jax.random.split(rng, 6)
  b, k = batch_size, num_negatives
  pos_len = jax.random.randint(k_pos, (), min_length, length + 1, dtype=jnp.int32)
  ref_len = jax.random.randint(k_ref, (), pos_len, length + 1, dtype=jnp.int32)
  ref_start_b = jax.random.randint(k_ref_start, (b,), 0, length - ref_len + 1, dtype=jnp.int32)
  offset_b = jax.random.randint(k_offset, (b,), 0, ref_len - pos_len + 1, dtype=jnp.int32)
  # A shift in {1..B-1} modulo B: uniform over the other rows.
  shift_kb = jax.random.randint(k_row, (k, b), 1, b, dtype=jnp.int32)
  neg_row_kb = (jnp.arange(b, dtype=jnp.int32)[None, :] + shift_kb) % b
  neg_start_kb = jax.random.randint(k_neg, (k, b), 0, length - pos_len + 1, dtype=jnp.int32)
  return ref_start_b + offset_b, pos_len, ref_start_b, ref_len, neg_row_kb, neg_start_kb


def window_mask(start_b: jax.Array, length, total_T: int) -> jax.Array:
  """Marks the timestamps ``[start, start + length)`` of each window.

  Args:
    start_b: [...] integer window starts, e.g. [B] or [K, B].
    length: window length, a scalar (possibly traced) or an array of ``start_b``'s shape.
    total_T: the series length T (static).

  Returns:
    bool [..., T] mask (``start_b``'s shape plus T).
  """
  t = jnp.arange(total_T)
  start = jnp.asarray(start_b)[..., None]
  end = start + jnp.asarray(length)[..., None]
  return (t >= start) & (t < end)


# ------------------------------------------------------------------ EEGFormer (VQ reconstruction)


def vq_codebook_loss(h_md: jax.Array, v_md: jax.Array) -> jax.Array:
  """VQ-VAE's codebook term ``mean ||sg[h] - v||^2`` (van den Oord et al. 2017, eq. 3, second
  term; the mean over the M vectors and D dimensions): its gradient reaches only the codebook.

  Args:
    h_md: [M, D] encoder outputs. v_md: [M, D] their selected codebook vectors (with gradient to
      the codebook, e.g. ``codebook[index]``).
  """
  h_md = jax.lax.stop_gradient(h_md.astype(jnp.float32))
  return jnp.mean(jnp.square(h_md - v_md.astype(jnp.float32)))


def vq_commitment_loss(h_md: jax.Array, v_md: jax.Array) -> jax.Array:
  """VQ-VAE's commitment term ``mean ||h - sg[v]||^2`` (eq. 3, third term, without beta): its
  gradient reaches only the encoder. Shapes as :func:`vq_codebook_loss`."""
  v_md = jax.lax.stop_gradient(v_md.astype(jnp.float32))
  return jnp.mean(jnp.square(h_md.astype(jnp.float32) - v_md))


def masked_patch_mse(pred_bcnp: jax.Array, target_bcnp: jax.Array,
                     mask_bcn: jax.Array | None = None) -> jax.Array:
  """Patch reconstruction error: the mean over P of ``(pred - sg[target])^2`` per patch, averaged
  over the patches where ``mask_bcn`` is set (all patches when None).

  Args:
    pred_bcnp, target_bcnp: [B, C, N, P]. mask_bcn: [B, C, N] 1 = scored (masked) patch.
  """
  target = jax.lax.stop_gradient(target_bcnp.astype(jnp.float32))
  err_bcn = jnp.mean(jnp.square(pred_bcnp.astype(jnp.float32) - target), axis=-1)
  if mask_bcn is None:
    return jnp.mean(err_bcn)
  mask_bcn = mask_bcn.astype(jnp.float32)
  return jnp.sum(err_bcn * mask_bcn) / jnp.maximum(jnp.sum(mask_bcn), 1.0)


def eegformer_loss(pred_bcnp: jax.Array, target_bcnp: jax.Array, h_md: jax.Array,
                   v_md: jax.Array, mask_bcn: jax.Array | None = None, *, beta: float = 0.25,
                   codebook_weight: float = 1.0) -> jax.Array:
  """EEGFormer's objective, the VQ-VAE form (Chen et al. 2024, arXiv 2401.10278; exact weights
  not published): ``||x - x_hat||^2 + codebook_weight ||sg[h] - v||^2 + beta ||h - sg[v]||^2``.

  The reconstruction term is :func:`masked_patch_mse` (the masked patches only when ``mask_bcn``
  is given); the other two are :func:`vq_codebook_loss` and :func:`vq_commitment_loss`.
  ``codebook_weight=0`` drops the codebook term (an EMA-updated codebook).

  Returns:
    Scalar float32.
  """
  return (masked_patch_mse(pred_bcnp, target_bcnp, mask_bcn)
          + codebook_weight * vq_codebook_loss(h_md, v_md)
          + beta * vq_commitment_loss(h_md, v_md))


# ------------------------------------------------------------------ CPC


def cpc_step_losses(pred_kbtd: jax.Array, z_btd: jax.Array, valid_bt: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """CPC's InfoNCE for each prediction step k = 1..K (van den Oord, Li & Vinyals, "Representation
  Learning with Contrastive Predictive Coding", 2018, eq. 4), and its top-1 accuracy.

  The score of a candidate frame z_j for the prediction of z_{t+k} from the context c_t is the
  log-bilinear ``f_k(z_j, c_t) = z_j^T W_k c_t`` (eq. 3; ``pred[k-1, b, t] = W_k c_{b,t}``).
  For each anchor (b, t) whose target frame t + k is valid in row b:
  ``l_{b,t,k} = -log( exp(f_k(z_{b,t+k}, c_{b,t})) / sum_{(b',t') valid} exp(f_k(z_{b',t'},
  c_{b,t})) )``.
  Negatives: EVERY other valid frame of the GLOBAL batch, those of the same row at other
  timesteps and all valid frames of the other rows (the paper's "mixed speaker" negatives, with
  the whole minibatch as the negative set rather than a random subset of it). Frames that are not
  valid (padding) are never a positive, a negative or an anchor.

  Args:
    pred_kbtd: [K, B, T, D], the predictions W_k c_t.
    z_btd: [B, T, D], the encoder's frames.
    valid_bt: bool [B, T], the valid frames of each row (a prefix).

  Returns:
    ``(loss_k, accuracy_k)``, float32 [K]: ``loss_k[k-1]`` the mean of ``l_{b,t,k}`` over the
    step's anchors (0 when it has none), ``accuracy_k`` the share of anchors whose positive
    scores highest among the valid frames.
  """
  k_steps, b, t, d = pred_kbtd.shape
  if z_btd.shape != (b, t, d) or valid_bt.shape != (b, t):
    raise ValueError(f"cpc_step_losses: expected pred [K, B, T, D], z [B, T, D], valid [B, T]; "
                     f"got {pred_kbtd.shape}, {z_btd.shape}, {valid_bt.shape}")
  valid_bt = valid_bt.astype(bool)
  z_nd = z_btd.astype(jnp.float32).reshape(b * t, d)
  column = valid_bt.reshape(b * t)
  rows = jnp.arange(b)[:, None] * t
  losses_k, accs_k = [], []
  for k in range(1, k_steps + 1):
    logits_nn = jnp.matmul(pred_kbtd[k - 1].astype(jnp.float32).reshape(b * t, d), z_nd.T,
                           precision=_HIGHEST)
    # The positive of anchor (b, t) is column b * T + t + k (clipped: those anchors are dropped).
    target_bt = rows + jnp.minimum(jnp.arange(t)[None, :] + k, t - 1)
    pos_bt = jnp.take_along_axis(logits_nn, target_bt.reshape(-1, 1), axis=1).reshape(b, t)
    # A finite floor, not -inf: rows without any valid column keep finite (zero) gradients.
    masked_nn = jnp.where(column[None, :], logits_nn, -1e30)
    lse_bt = jax.nn.logsumexp(masked_nn, axis=1).reshape(b, t)
    best_bt = jnp.max(masked_nn, axis=1).reshape(b, t)
    anchor_bt = jnp.zeros((b, t), bool)
    if k < t:
      anchor_bt = anchor_bt.at[:, :t - k].set(valid_bt[:, k:])
    count = jnp.maximum(jnp.sum(anchor_bt), 1).astype(jnp.float32)
    losses_k.append(jnp.sum(jnp.where(anchor_bt, lse_bt - pos_bt, 0.0)) / count)
    accs_k.append(jnp.sum(anchor_bt & (pos_bt >= best_bt)) / count)
  return jnp.stack(losses_k), jnp.stack(accs_k)


def cpc_loss(pred_kbtd: jax.Array, z_btd: jax.Array, valid_bt: jax.Array) -> jax.Array:
  """CPC's loss: the mean over the K steps of :func:`cpc_step_losses` (the paper sums the K
  InfoNCE terms; the mean divides it by K). Scalar float32; ``log(number of valid frames)``
  when every score is equal."""
  return jnp.mean(cpc_step_losses(pred_kbtd, z_btd, valid_bt)[0])


# ------------------------------------------------------------------ TimeX (explanations by MBC)


def timex_mbc_loss(z_bd: jax.Array, z_e_bd: jax.Array) -> jax.Array:
  """TimeX's model behaviour consistency (Queen et al., NeurIPS 2023, eq. 4; the official
  ``EmbedConsistencyLoss``): ``mean_{i,j} (cos(z_i, z_j) - cos(z^E_i, z^E_j))^2`` over the B x B
  cosine-similarity matrices of the reference embeddings ``z_bd`` and the explanation embeddings
  ``z_e_bd`` ([B, D] and [B, D'], the widths may differ). Scalar float32."""

  def cosine_bb(z):
    z = z.astype(jnp.float32)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    return z @ z.T

  return jnp.mean(jnp.square(cosine_bb(z_bd) - cosine_bb(z_e_bd)))


def timex_js_divergence(logp_nk: jax.Array, logq_nk: jax.Array) -> jax.Array:
  """Jensen-Shannon divergence of each row pair of log-probabilities [N, K] -> [N]:
  ``JS(P||Q) = 0.5 KL(P||M) + 0.5 KL(Q||M)``, ``M = (P + Q) / 2``; symmetric, in [0, ln 2]."""
  p, q = jnp.exp(logp_nk), jnp.exp(logq_nk)
  log_m = jnp.log(0.5 * (p + q) + 1e-30)
  return 0.5 * (jnp.sum(p * (logp_nk - log_m), -1) + jnp.sum(q * (logq_nk - log_m), -1))


def timex_label_consistency_loss(logits_e_bk: jax.Array, logits_bk: jax.Array, *,
                                 faithful_lc_reduction: bool = False) -> jax.Array:
  """TimeX's label consistency (paper eq. 5) over the B (B - 1) / 2 unordered pairs i < j:
  ``mean_{i<j} (JS(y^E_i || y^E_j) - JS(y_i || y_j))^2`` with y = softmax(logits) of the
  reference model ``logits_bk`` and y^E of the explainer ``logits_e_bk`` ([B, K] each). The paper
  sums over the pairs; the mean divides by their number so ``lam_label`` keeps the released scale.

  ``faithful_lc_reduction=True`` reproduces the released ``LabelConsistencyLoss`` instead: its
  "JS" is ``0.5 [KL(M||P) + KL(M||Q)]`` averaged over every element of every pair
  (``F.kl_div(..., reduction='mean')``), one scalar per side, and the loss is the squared
  difference of those two batch means.
  """
  b = logits_bk.shape[0]
  i, j = jnp.triu_indices(b, k=1)
  lse = jax.nn.log_softmax(logits_e_bk.astype(jnp.float32), axis=-1)
  ls = jax.nn.log_softmax(logits_bk.astype(jnp.float32), axis=-1)
  if not faithful_lc_reduction:
    return jnp.mean(jnp.square(timex_js_divergence(lse[i], lse[j])
                               - timex_js_divergence(ls[i], ls[j])))

  def released(lp, lq):  # 0.5 mean[m (log m - lp)] + 0.5 mean[m (log m - lq)], m = (p + q) / 2.
    m = 0.5 * (jnp.exp(lp) + jnp.exp(lq))
    log_m = jnp.log(m + 1e-30)
    return 0.5 * jnp.mean(m * (log_m - lp)) + 0.5 * jnp.mean(m * (log_m - lq))

  return jnp.square(released(lse[i], lse[j]) - released(ls[i], ls[j]))


def timex_gsat_loss(p: jax.Array, *, r: float = 0.5, valid_bt=None) -> jax.Array:
  """The GSAT sparsity prior on mask probabilities ``p`` (any shape, in [0, 1]): the mean of
  ``KL(Bern(p) || Bern(r)) = p log(p / r) + (1 - p) log((1 - p) / (1 - r))`` (the official
  ``GSATLoss``, with its 1e-6 guards inside the logs); minimal at p = r. With ``valid_bt`` (bool
  [B, T], ``p`` [B, T, C]) the mean runs over the valid timestamps only (padding is no data)."""
  p = p.astype(jnp.float32)
  kl = p * jnp.log(p / r + 1e-6) + (1.0 - p) * jnp.log((1.0 - p) / (1.0 - r + 1e-6) + 1e-6)
  if valid_bt is None:
    return jnp.mean(kl)
  w = jnp.broadcast_to(valid_bt[..., None], kl.shape).astype(jnp.float32)
  return jnp.sum(kl * w) / jnp.maximum(jnp.sum(w), 1.0)


def timex_connect_loss(p_btc: jax.Array, valid_bt=None) -> jax.Array:
  """TimeX's connectivity (smoothness) term, the official ``ConnectLoss``: the Frobenius norm of
  the time differences ``p[:, 1:] - p[:, :-1]`` divided by their number of entries
  (``B (T - 1) C``). 0 for a mask constant in time. With ``valid_bt`` (bool [B, T]) only the
  differences between two valid timestamps count, and their number is the divisor."""
  diff = (p_btc[:, 1:] - p_btc[:, :-1]).astype(jnp.float32)
  if valid_bt is None:
    return jnp.sqrt(jnp.sum(jnp.square(diff))) / diff.size
  w = jnp.broadcast_to((valid_bt[:, 1:] & valid_bt[:, :-1])[..., None], diff.shape)
  return jnp.sqrt(jnp.sum(jnp.where(w, jnp.square(diff), 0.0))) / jnp.maximum(
      jnp.sum(w.astype(jnp.float32)), 1.0)


def poly1_cross_entropy(logits_bk: jax.Array, labels_b: jax.Array, *,
                        epsilon: float = 1.0) -> jax.Array:
  """Poly-1 cross-entropy (Leng et al., ICLR 2022; the TimeX classifiers' training loss) per
  example: ``CE + epsilon (1 - p_y)``. ``labels_b`` int [B] in [0, K). Returns [B] float32."""
  logp = jax.nn.log_softmax(logits_bk.astype(jnp.float32), axis=-1)
  logp_y = jnp.take_along_axis(logp, labels_b[:, None].astype(jnp.int32), axis=-1)[:, 0]
  return -logp_y + epsilon * (1.0 - jnp.exp(logp_y))


# ------------------------------------------------------------------ Frame projections (IsoAlign)


def frame_projections_terms(z_t_bd: jax.Array, z_f_bd: jax.Array, z_w_bd: jax.Array,
                            pred_f_bd: jax.Array, pred_w_bd: jax.Array, *,
                            temperature: float = 0.15) -> dict[str, jax.Array]:
  """The five pre-training terms of frame projections (Demirel & Holz, NeurIPS 2025).

  With ``z`` the L2-normalised projections of the time (t), Fourier (f) and wavelet (w)
  embeddings of the same B series, and ``pred_f`` / ``pred_w`` the predictors' outputs from
  normalised ``z_t``: the cross-domain NT-Xent losses (:func:`ntxent_loss`, i.e. the official
  ``cont_loss``: 2B x 2B cosine similarities, positive of row i at (i + B) mod 2B, every other
  row but i a negative, mean over the 2B rows of -log softmax at tau) and the predictors' element
  mean absolute errors (the official ``l1_loss``; the targets keep their gradient, as there).

  Args:
    z_t_bd, z_f_bd, z_w_bd: [B, D] projections (normalised here; already-normalised is fine).
    pred_f_bd, pred_w_bd: [B, D] predictions of normalised ``z_f`` and ``z_w``.
    temperature: tau (official 0.15, hard-coded there).

  Returns:
    ``{"nt_tw", "nt_tf", "nt_wf", "l1_f", "l1_w"}``, float32 scalars.
  """
  z_t, z_f, z_w = l2_normalize(z_t_bd), l2_normalize(z_f_bd), l2_normalize(z_w_bd)
  l1 = lambda p, z: jnp.mean(jnp.abs(p.astype(jnp.float32) - z))  # noqa: E731
  return {"nt_tw": ntxent_loss(z_t, z_w, temperature=temperature),
          "nt_tf": ntxent_loss(z_t, z_f, temperature=temperature),
          "nt_wf": ntxent_loss(z_w, z_f, temperature=temperature),
          "l1_f": l1(pred_f_bd, z_f), "l1_w": l1(pred_w_bd, z_w)}


def frame_projections_loss(z_t_bd: jax.Array, z_f_bd: jax.Array, z_w_bd: jax.Array,
                           pred_f_bd: jax.Array, pred_w_bd: jax.Array, *,
                           temperature: float = 0.15, l1_weight: float | None = None) -> jax.Array:
  """Frame projections' pre-training loss (the official ``IsoAlign.calc_loss``):

  ``L = NT(z_t, z_w) + NT(z_t, z_f) + NT(z_w, z_f) + w (mean|pred_f - z_f| + mean|pred_w - z_w|)``

  with the terms of :func:`frame_projections_terms`. ``l1_weight`` None is the official
  ``w = 1 / B`` (the element means divided by the batch size once more; the spec's pitfall 2:
  1/1024 at the official batch, so the predictors barely matter in pre-training).

  Returns:
    Scalar float32.
  """
  terms = frame_projections_terms(z_t_bd, z_f_bd, z_w_bd, pred_f_bd, pred_w_bd,
                                  temperature=temperature)
  w = 1.0 / z_t_bd.shape[0] if l1_weight is None else l1_weight
  return terms["nt_tw"] + terms["nt_tf"] + terms["nt_wf"] + w * (terms["l1_f"] + terms["l1_w"])


def frame_projections_mapper_loss(map_f_bd: jax.Array, h_f_bd: jax.Array, map_w_bd: jax.Array,
                                  h_w_bd: jax.Array) -> jax.Array:
  """Stage 2 of frame projections: the latent mappers' loss (official ``train_mappers``),
  ``mean|map_F(h_t) - h_F| + mean|map_W(h_t) - h_W|`` over [B, D] arrays; the frozen encoders'
  embeddings ``h_F``, ``h_W`` are targets (no gradient)."""
  h_f = jax.lax.stop_gradient(h_f_bd.astype(jnp.float32))
  h_w = jax.lax.stop_gradient(h_w_bd.astype(jnp.float32))
  return (jnp.mean(jnp.abs(map_f_bd.astype(jnp.float32) - h_f))
          + jnp.mean(jnp.abs(map_w_bd.astype(jnp.float32) - h_w)))


# ---------------------------------------------------------------------------------------------
# Recommendation: BPR-MF, LightGCN (ssljax.methods.bpr, ssljax.methods.lightgcn)
# ---------------------------------------------------------------------------------------------


def bpr_loss(pos_b: jax.Array, neg_b: jax.Array) -> jax.Array:
  """Bayesian personalised ranking (Rendle et al., UAI 2009, eq. 4 without the prior term).

  ``mean_b -log sigmoid(pos_b - neg_b) = mean_b softplus(neg_b - pos_b)``: each user should
  score its observed item above a sampled unobserved one.

  Args:
    pos_b: scores of the (user, observed item) pairs [B] (or [B, n] with n negatives each,
      broadcast against ``neg_b``).
    neg_b: scores of the (user, negative item) pairs, same shape.

  Returns:
    Scalar float32 (log 2 when every score is equal).
  """
  diff = pos_b.astype(jnp.float32) - neg_b.astype(jnp.float32)
  return jnp.mean(jax.nn.softplus(-diff))


def embedding_l2(*embeddings_bd: jax.Array) -> jax.Array:
  """``0.5 * sum_e ||e||_F^2 / B``: the L2 penalty on the embeddings a batch reads.

  LightGCN (He et al., SIGIR 2020, eq. 15) regularises the layer-0 embeddings
  ``lambda ||E^(0)||^2``; the official code applies it to the rows of the batch's users,
  positive and negative items, halved and divided by the batch size B (rows of the first array).
  """
  size = embeddings_bd[0].shape[0]
  total = sum(jnp.sum(jnp.square(e.astype(jnp.float32))) for e in embeddings_bd)
  return 0.5 * total / size


# ---------------------------------------------------------------------------------------------
# SelfCF (ssljax.methods.selfcf)
# ---------------------------------------------------------------------------------------------


def selfcf_alignment(pred_u_bd: jax.Array, pred_i_bd: jax.Array, target_u_bd: jax.Array,
                     target_i_bd: jax.Array) -> jax.Array:
  """SelfCF's cross-paired negative cosine (Zhou et al., TORS 2023; the official ``loss_fn``).

  ``1/2 D(h(e_u), ẽ_i) + 1/2 D(h(e_i), ẽ_u)`` with ``D(p, z) = -mean_b cos(p_b, sg(z_b))``
  (:func:`simsiam_loss`): the user's prediction regresses the perturbed *item* embedding of its
  pair, and the item's prediction the perturbed *user* embedding. The targets are under
  ``stop_gradient`` here.

  Args:
    pred_u_bd, pred_i_bd: [B, d] predictor outputs ``h(e_u)``, ``h(e_i)`` of the batch's pairs.
    target_u_bd, target_i_bd: [B, d] perturbed online embeddings ``ẽ_u``, ``ẽ_i``.

  Returns:
    Scalar float32 in [-1, 1] (-1 when every prediction points along its target).
  """
  return 0.5 * simsiam_loss(pred_u_bd, target_i_bd) + 0.5 * simsiam_loss(pred_i_bd, target_u_bd)


def selfcf_l2_sum(*embeddings_bd: jax.Array) -> jax.Array:
  """``1/2 sum_e ||e||_F^2``: SelfCF's penalty ``R`` on the batch's final embeddings.

  A *sum* over the batch (the official ``L2Loss``), unlike :func:`embedding_l2`'s mean, so its
  weight interacts with the batch size.
  """
  return 0.5 * sum(jnp.sum(jnp.square(e.astype(jnp.float32))) for e in embeddings_bd)


def selfcf_loss(pred_u_bd: jax.Array, pred_i_bd: jax.Array, target_u_bd: jax.Array,
                target_i_bd: jax.Array, online_u_bd: jax.Array, online_i_bd: jax.Array, *,
                reg_weight: float = 0.0) -> jax.Array:
  """SelfCF's loss ``L = 1/2 D(h(e_u), ẽ_i) + 1/2 D(h(e_i), ẽ_u) + lambda R``.

  Args:
    pred_u_bd, pred_i_bd, target_u_bd, target_i_bd: as :func:`selfcf_alignment`.
    online_u_bd, online_i_bd: [B, d] the online embeddings ``e_u``, ``e_i`` (before the
      predictor) that ``R = 1/2 (sum ||e_u||^2 + sum ||e_i||^2)`` reads (:func:`selfcf_l2_sum`).
    reg_weight: lambda >= 0.

  Returns:
    Scalar float32.
  """
  return (selfcf_alignment(pred_u_bd, pred_i_bd, target_u_bd, target_i_bd)
          + reg_weight * selfcf_l2_sum(online_u_bd, online_i_bd))


# ---------------------------------------------------------------------------------------------
# SGL / SimGCL: InfoNCE between two views of the same graph nodes (ssljax.methods.sgl, simgcl)
# ---------------------------------------------------------------------------------------------


def node_infonce_loss(z1_nd: jax.Array, z2_nd: jax.Array, *, temperature: float,
                      valid_n: jax.Array | None = None) -> jax.Array:
  """InfoNCE between two views of N graph nodes, over the valid nodes only.

  SGL (Wu et al., SIGIR 2021) and SimGCL (Yu et al., SIGIR 2022) contrast each node's two views
  ``z'``, ``z''`` against the other nodes' second views:
  ``mean over valid n of -log(exp(s(z'_n, z''_n) / tau) / sum over valid m of exp(s(z'_n, z''_m)
  / tau))``, ``s`` the cosine similarity. One direction, the positive inside the denominator
  (SELFRec's ``InfoNCE``); a batch's users and items are contrasted separately. ``valid_n``
  lets a fixed-shape batch hold repeated or padded rows (:func:`ssljax.models.graph.unique_nodes`
  marks the first occurrence of each node): invalid rows are neither anchors nor candidates.
  With every row valid this is :func:`infonce_loss`.

  Args:
    z1_nd: [N, d] the nodes' first view.
    z2_nd: [N, d] their second view (same row order).
    temperature: tau > 0 (SGL and SimGCL: 0.2).
    valid_n: bool [N] or None (all valid).

  Returns:
    Scalar float32; ``log(#valid)`` when every similarity is equal (e.g. identical rows).
  """
  _check_pair(z1_nd, z2_nd, "node_infonce_loss")
  _check_positive("node_infonce_loss temperature", temperature)
  a_nd = l2_normalize(z1_nd)
  p_nd = l2_normalize(z2_nd)
  logits_nn = jnp.matmul(a_nd, p_nd.T, precision=_HIGHEST) / temperature
  pos_n = jnp.sum(a_nd * p_nd, axis=-1) / temperature
  if valid_n is None:
    return jnp.mean(jax.nn.logsumexp(logits_nn, axis=-1) - pos_n)
  valid_n = valid_n.astype(bool)
  logits_nn = jnp.where(valid_n[None, :], logits_nn, -jnp.inf)
  per_n = jnp.where(valid_n, jax.nn.logsumexp(logits_nn, axis=-1) - pos_n, 0.0)
  return jnp.sum(per_n) / jnp.maximum(jnp.sum(valid_n), 1)


# ---------------------------------------------------------------------------------------------
# SEPT: tri-training pseudo-labels and neighbour discrimination (ssljax.methods.sept)
# ---------------------------------------------------------------------------------------------


def _masked_cosine(z_nd: jax.Array, aug_nd: jax.Array, valid_n: jax.Array) -> jax.Array:
  """``cos(z_u, aug_w)`` [N, N], ``-inf`` in the columns of invalid ``w``."""
  _check_pair(z_nd, aug_nd, "sept")
  cos_nn = jnp.matmul(l2_normalize(z_nd), l2_normalize(aug_nd).T, precision=_HIGHEST)
  return jnp.where(valid_n.astype(bool)[None, :], cos_nn, -jnp.inf)


def sept_label_probs(z_nd: jax.Array, aug_nd: jax.Array, *, valid_n: jax.Array) -> jax.Array:
  """SEPT's label prediction of one encoder (Yu et al., KDD 2021, eq. 8; QRec ``label_prediction``).

  ``P[u, w] = softmax_w(cos(z_u, z~_w))`` over the valid users ``w`` of the batch (no
  temperature), ``z`` the encoder's user embeddings and ``z~`` those of the perturbed graph.

  Args:
    z_nd: [N, d] the encoder's embeddings of the batch's users (padded, see ``valid_n``).
    aug_nd: [N, d] the same users' embeddings on the perturbed graph.
    valid_n: bool [N]: the rows that are distinct users of the batch (the others are padding).

  Returns:
    float32 [N, N]; each row sums to 1 over the valid columns, invalid columns hold 0.
  """
  return jax.nn.softmax(_masked_cosine(z_nd, aug_nd, valid_n), axis=-1)


def sept_pseudo_labels(p1_nn: jax.Array, p2_nn: jax.Array, *, k: int, valid_n: jax.Array,
                       include_self: bool = True) -> tuple[jax.Array, jax.Array]:
  """SEPT's pseudo-labels for one encoder from the other two: ``TopK_w((P1[u, w] + P2[u, w]) / 2)``.

  The eq. 9 of the paper as its official code computes it (QRec ``generate_pesudo_labels``):
  the K users with the highest mean predicted probability. Indices carry no gradient.

  Args:
    p1_nn, p2_nn: [N, N] the other two encoders' :func:`sept_label_probs`.
    k: positives per user K (static).
    valid_n: bool [N] the valid rows/columns.
    include_self: whether ``w = u`` may be picked (the official code: yes; its exclusion is
      commented out there).

  Returns:
    ``(index int32 [N, K], ok bool [N, K])``: the positives' row indices and whether each is a
    valid user (False only when fewer than K (+1 without self) valid users are left).
  """
  score_nn = jax.lax.stop_gradient((p1_nn + p2_nn) / 2)
  valid_n = valid_n.astype(bool)
  allowed_nn = jnp.broadcast_to(valid_n[None, :], score_nn.shape)
  if not include_self:
    allowed_nn = allowed_nn & ~jnp.eye(score_nn.shape[0], dtype=bool)
  score_nn = jnp.where(allowed_nn, score_nn, -jnp.inf)
  _, index_nk = jax.lax.top_k(score_nn, k)
  ok_nk = jnp.take_along_axis(allowed_nn, index_nk, axis=-1)
  return index_nk.astype(jnp.int32), ok_nk


def sept_neighbour_infonce(z_nd: jax.Array, aug_nd: jax.Array, positives_nk: jax.Array, *,
                           valid_n: jax.Array, positive_ok_nk: jax.Array | None = None,
                           temperature: float = 0.1) -> jax.Array:
  """SEPT's neighbour-discrimination loss of one encoder (paper eq. 10; QRec
  ``neighbor_discrimination``), a SUM over the valid anchors:

  ``-sum_u log(sum_{p in Pos(u)} exp(cos(z_u, z~_p) / tau) / sum_w exp(cos(z_u, z~_w) / tau))``

  ``w`` runs over the valid users of the batch (the positives included, the anchor itself too).

  Args:
    z_nd: [N, d] the encoder's embeddings of the batch's users.
    aug_nd: [N, d] the same users on the perturbed graph.
    positives_nk: int [N, K] row indices of each anchor's positives (:func:`sept_pseudo_labels`).
    valid_n: bool [N] the valid anchors and candidates.
    positive_ok_nk: bool [N, K] which positives count (default all).
    temperature: tau > 0 (the official 0.1).

  Returns:
    Scalar float32 >= 0 (0 when every candidate is a positive).
  """
  _check_positive("sept_neighbour_infonce temperature", temperature)
  valid_n = valid_n.astype(bool)
  logits_nn = _masked_cosine(z_nd, aug_nd, valid_n) / temperature
  pos_nk = jnp.take_along_axis(logits_nn, positives_nk, axis=-1)
  ok_nk = jnp.isfinite(pos_nk)  # A positive in an invalid column is no positive.
  if positive_ok_nk is not None:
    ok_nk = ok_nk & positive_ok_nk.astype(bool)
  counted_n = valid_n & ok_nk.any(-1)
  # Rows without a positive get a finite stand-in (masked below), so no inf reaches a gradient.
  pos_nk = jnp.where(ok_nk, pos_nk, jnp.where(counted_n[:, None], -jnp.inf, 0.0))
  per_n = jax.nn.logsumexp(logits_nn, axis=-1) - jax.nn.logsumexp(pos_nk, axis=-1)
  return jnp.sum(jnp.where(counted_n, per_n, 0.0))


# ---------------------------------------------------------------------------------------------
# two-tower / CFM (ssljax.methods.two_tower): in-batch softmax with logQ, SSL InfoNCE on items
# ---------------------------------------------------------------------------------------------


def batch_softmax_loss(query_bd: jax.Array, item_bd: jax.Array, *, temperature: float,
                       log_q_b: jax.Array | None = None) -> jax.Array:
  """In-batch (sampled) softmax of a two-tower model, optionally logQ-corrected.

  Yao et al., CIKM 2021, the main task's loss (the batch softmax of Yi et al., RecSys 2019):
  with the cosine ``s(q_i, x_j)`` of the batch's i-th query and j-th item,
  ``logit_ij = s(q_i, x_j) / tau - log p_j`` (Yi et al.'s sampling-bias correction, eq. 3-4,
  when ``log_q_b`` is given; plain ``s / tau`` otherwise) and
  ``L = -(1/B) sum_i log(exp(logit_ii) / sum_j exp(logit_ij))``: every other item of the batch is
  a negative. ``p_j`` is the probability that item j fills a batch slot (under uniform sampling
  of the training pairs: its share of the training interactions).

  Args:
    query_bd: [B, d] query-tower outputs (normalised here: cosine scores).
    item_bd: [B, d] item-tower outputs of the same rows' positive items.
    temperature: tau > 0.
    log_q_b: float [B] ``log p_j`` of each row's item, or None (no correction).

  Returns:
    Scalar float32; ``log B`` when every logit of each row is equal.
  """
  _check_pair(query_bd, item_bd, "batch_softmax_loss")
  _check_positive("batch_softmax_loss temperature", temperature)
  q_bd = l2_normalize(query_bd)
  x_bd = l2_normalize(item_bd)
  logits_bb = jnp.matmul(q_bd, x_bd.T, precision=_HIGHEST) / temperature
  if log_q_b is not None:
    logits_bb = logits_bb - log_q_b.astype(jnp.float32)[None, :]
  return jnp.mean(jax.nn.logsumexp(logits_bb, axis=-1) - jnp.diagonal(logits_bb))


def cfm_ssl_loss(z1_nd: jax.Array, z2_nd: jax.Array, *, temperature: float) -> jax.Array:
  """The SSL task of Yao et al. (CIKM 2021): InfoNCE between two augmented views of N items.

  ``L_self = -(1/N) sum_i log(exp(s(z_i, z'_i) / tau) / sum_j exp(s(z_i, z'_j) / tau))``, ``s``
  the cosine, ``z_i = H(h(x_i))``, ``z'_i = G(g(x_i))`` (the two complementary-masked views):
  the candidates of ``z_i`` are every second view of the batch. It is
  :func:`batch_softmax_loss` without correction, with the views in place of queries and items.

  Args:
    z1_nd: [N, d] first views; z2_nd: [N, d] second views, same rows = same items.
    temperature: tau > 0.

  Returns:
    Scalar float32; ``log N`` when every view is identical.
  """
  return batch_softmax_loss(z1_nd, z2_nd, temperature=temperature)
