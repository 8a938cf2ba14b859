"""Classic SSL losses (SimCLR, BYOL, SimSiam, VICReg, MoCo v3, DINO, MAE): PyTorch reference values,
the spec's invariances, jit, stop-gradients, and sharded == 1-device."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssljax import losses


def _inputs(seed, *shapes):
  """Deterministic float32 inputs; the reference script below draws exactly these."""
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal(s).astype(np.float32)) for s in shapes]


# Reference values: TORCH_REFERENCE_SCRIPT (end of this file) run with torch 2.13.0+cpu in float64
# on the float32 inputs drawn by _inputs, each loss written the way its official code writes it:
#   SimCLR: 2N x 2N cosine similarities / tau, diagonal filled with -inf, F.cross_entropy with the
#     other view as label; BYOL: (2 - 2 * (F.normalize(p) * F.normalize(t)).sum(-1)).mean();
#   SimSiam: -F.cosine_similarity(p, z).mean(); VICReg: facebookresearch/vicreg VICReg.forward
#     (25/25/1, world size 1); MoCo v3: MoCo.contrastive_loss, nn.CrossEntropyLoss()(logits,
#     arange) * 2 * T; DINO: DINOLoss.forward with chunk (4 crops, 2 global; student_temp 0.1,
#     teacher temp 0.04); MAE: MaskedAutoencoderViT.forward_loss after patchify.
REF_NTXENT = {0.5: 2.7819227178150094, 0.1: 4.547981508976886}  # seed 0, (8, 16) x 2
REF_BYOL = 2.3414173399825047  # seed 1
REF_SIMSIAM = 0.10626412882434033  # seed 2
REF_VICREG = {  # seed 3
    "invariance": 2.143743411999492,
    "variance": 0.1247213238684047,
    "covariance": 4.727754643162832,
    "loss": 61.43937303986025,
}
REF_MOCOV3 = {0.2: 0.7202657787071853, 1.0: 3.824566015153369}  # seed 4
REF_DINO = 13.906414760878862  # seed 5: 4 student crops, 2 teacher crops, center, all (8, 10)
REF_MAE = {True: 2.0837916707178157, False: 2.0779817852381846}  # seed 6, mask = (m > 0)

RTOL = 1e-5


def _dino_inputs():
  s0, s1, s2, s3, t0, t1, c = _inputs(5, *[(8, 10)] * 6, (10,))
  return [s0, s1, s2, s3], [t0, t1], c


def _mae_inputs():
  pred, target, m = _inputs(6, (2, 6, 12), (2, 6, 12), (2, 6))
  return pred, target, (m > 0).astype(jnp.float32)


# ----------------------------------------------------------------------------- reference values


@pytest.mark.parametrize("tau", sorted(REF_NTXENT))
def test_ntxent_reference(tau):
  z1, z2 = _inputs(0, (8, 16), (8, 16))
  np.testing.assert_allclose(float(losses.ntxent_loss(z1, z2, temperature=tau)), REF_NTXENT[tau],
                             rtol=RTOL)


def test_byol_simsiam_reference():
  p, t = _inputs(1, (8, 16), (8, 16))
  np.testing.assert_allclose(float(losses.byol_loss(p, t)), REF_BYOL, rtol=RTOL)
  p, z = _inputs(2, (8, 16), (8, 16))
  np.testing.assert_allclose(float(losses.simsiam_loss(p, z)), REF_SIMSIAM, rtol=RTOL)


def test_vicreg_reference():
  z1, z2 = _inputs(3, (8, 16), (8, 16))
  terms = losses.vicreg_terms(z1, z2)
  assert set(terms) == {"invariance", "variance", "covariance"}
  for name, value in terms.items():
    np.testing.assert_allclose(float(value), REF_VICREG[name], rtol=RTOL, err_msg=name)
  np.testing.assert_allclose(float(losses.vicreg_loss(z1, z2)), REF_VICREG["loss"], rtol=RTOL)
  # The weights are applied to exactly these terms.
  got = losses.vicreg_loss(z1, z2, sim_weight=1.0, var_weight=2.0, cov_weight=3.0)
  want = REF_VICREG["invariance"] + 2 * REF_VICREG["variance"] + 3 * REF_VICREG["covariance"]
  np.testing.assert_allclose(float(got), want, rtol=RTOL)


@pytest.mark.parametrize("tau", sorted(REF_MOCOV3))
def test_mocov3_reference(tau):
  q, k = _inputs(4, (8, 16), (8, 16))
  np.testing.assert_allclose(float(losses.mocov3_loss(q, k, temperature=tau)), REF_MOCOV3[tau],
                             rtol=RTOL)


def test_dino_reference():
  s, t, c = _dino_inputs()
  got = losses.dino_loss(s, t, c, student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(float(got), REF_DINO, rtol=RTOL)
  # A [1, K] center (the official buffer's shape) broadcasts the same way.
  got = losses.dino_loss(s, t, c[None], student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(float(got), REF_DINO, rtol=RTOL)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_reference(norm_pix):
  pred, target, mask = _mae_inputs()
  assert 0 < float(mask.sum()) < mask.size  # both masked and visible patches
  got = losses.mae_loss(pred, target, mask, norm_pix=norm_pix)
  np.testing.assert_allclose(float(got), REF_MAE[norm_pix], rtol=RTOL)


def test_float32_whatever_the_input_dtype():
  z1, z2 = (z.astype(jnp.bfloat16) for z in _inputs(0, (8, 16), (8, 16)))
  for value in (losses.ntxent_loss(z1, z2, temperature=0.5), losses.byol_loss(z1, z2),
                losses.simsiam_loss(z1, z2), losses.vicreg_loss(z1, z2),
                losses.mocov3_loss(z1, z2, temperature=0.2), losses.l2_normalize(z1)):
    assert value.dtype == jnp.float32
  np.testing.assert_allclose(float(losses.ntxent_loss(z1, z2, temperature=0.5)), REF_NTXENT[0.5],
                             rtol=2e-2)


# ----------------------------------------------------------------------------- l2_normalize


def test_l2_normalize():
  x = jnp.asarray([[3.0, 4.0], [0.0, 0.0], [1e-14, 0.0]])
  got = np.asarray(losses.l2_normalize(x))
  # F.normalize: x / max(||x||, 1e-12); a zero row stays zero, a tiny one is divided by eps.
  np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0], [1e-2, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(losses.l2_normalize(x, axis=0))[:, 0],
                             [1.0, 0.0, 1e-14 / 3.0], rtol=1e-6)
  g = jax.grad(lambda v: jnp.sum(losses.l2_normalize(v)))(jnp.zeros((2, 3)))
  assert np.all(np.isfinite(np.asarray(g)))


# ----------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_ntxent_orthogonal_identical_views(tau):
  b = 6
  z = jnp.eye(b, 10)  # orthonormal rows
  want = math.log(1 + (2 * b - 2) * math.exp(-1 / tau))
  # atol: the loss is the float32 difference of two logits of size ~1/tau.
  np.testing.assert_allclose(float(losses.ntxent_loss(z, z, temperature=tau)), want, rtol=1e-5,
                             atol=1e-5)


def test_ntxent_invariances():
  z1, z2 = _inputs(0, (8, 16), (8, 16))
  base = float(losses.ntxent_loss(z1, z2, temperature=0.5))
  perm = np.random.default_rng(7).permutation(8)
  np.testing.assert_allclose(float(losses.ntxent_loss(z1[perm], z2[perm], temperature=0.5)),
                             base, rtol=1e-5)
  # Positive scaling, even a different factor per row, is undone by the normalisation.
  s = jnp.asarray(np.random.default_rng(8).uniform(0.1, 10.0, size=(8, 1)), jnp.float32)
  np.testing.assert_allclose(float(losses.ntxent_loss(3.0 * z1, z2 * s, temperature=0.5)), base,
                             rtol=1e-5)
  # Swapping the views only relabels the anchors.
  np.testing.assert_allclose(float(losses.ntxent_loss(z2, z1, temperature=0.5)), base, rtol=1e-5)
  # Pairing the wrong images changes it.
  assert abs(float(losses.ntxent_loss(z1[perm], z2, temperature=0.5)) - base) > 1e-3


def test_byol_simsiam_ranges():
  rng = np.random.default_rng(9)
  for _ in range(5):
    p, t = (jnp.asarray(rng.standard_normal((16, 8)), jnp.float32) for _ in range(2))
    assert 0.0 <= float(losses.byol_loss(p, t)) <= 4.0
    assert -1.0 <= float(losses.simsiam_loss(p, t)) <= 1.0
  assert abs(float(losses.byol_loss(p, p))) < 1e-6
  assert abs(float(losses.byol_loss(p, 2.5 * p))) < 1e-6
  np.testing.assert_allclose(float(losses.byol_loss(p, -p)), 4.0, rtol=1e-6)
  np.testing.assert_allclose(float(losses.simsiam_loss(p, p)), -1.0, rtol=1e-6)
  np.testing.assert_allclose(float(losses.simsiam_loss(p, -p)), 1.0, rtol=1e-6)


def test_vicreg_oracle():
  n, d = 32, 8
  a = np.random.default_rng(10).standard_normal((n, d))
  a -= a.mean(0)
  q, _ = np.linalg.qr(a)  # orthonormal columns; zero-mean, as they span the centred columns
  # Columns with unbiased std 2: variance hinge 0, covariance 0 (orthogonal, zero-mean columns).
  z = jnp.asarray(q * 2 * math.sqrt(n - 1), jnp.float32)
  terms = losses.vicreg_terms(z, z)
  assert float(terms["invariance"]) == 0.0
  assert float(terms["variance"]) == 0.0
  assert float(terms["covariance"]) < 1e-8
  # std >= 1 for every dim (not decorrelated): variance still 0, covariance not.
  z1, z2 = _inputs(11, (64, 8), (64, 8))
  z1 = z1 * 3.0 + z1[:, :1]
  terms = losses.vicreg_terms(z1, z1 * 2.0)
  assert float(terms["variance"]) == 0.0 and float(terms["covariance"]) > 1.0
  # Collapsed views: variance term is gamma - sqrt(eps) (both views averaged, not summed).
  const = jnp.ones((16, 4))
  np.testing.assert_allclose(float(losses.vicreg_terms(const, const)["variance"]),
                             1.0 - math.sqrt(1e-4), rtol=1e-6)
  np.testing.assert_allclose(float(losses.vicreg_terms(const, const, gamma=2.0)["variance"]),
                             2.0 - math.sqrt(1e-4), rtol=1e-6)
  # Covariance: the two views' terms are summed (not averaged).
  def one_view(z):
    cov = np.cov(np.asarray(z, np.float64), rowvar=False)  # unbiased, (N - 1)
    return (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / cov.shape[0]
  np.testing.assert_allclose(float(losses.vicreg_terms(z1, z2)["covariance"]),
                             one_view(z1) + one_view(z2), rtol=1e-5)


def test_mocov3_symmetric_and_gradient_scale():
  q1, q2, k1, k2 = _inputs(12, *[(16, 8)] * 4)
  sym = lambda a1, a2, b1, b2: (losses.mocov3_loss(a1, b2, temperature=0.2)
                                + losses.mocov3_loss(a2, b1, temperature=0.2))
  np.testing.assert_allclose(float(sym(q2, q1, k2, k1)), float(sym(q1, q2, k1, k2)), rtol=1e-6)
  # The 2*tau factor cancels the 1/tau of the logits: d loss / d n(q_i) = (2/N) sum_m (p_im - y_im)
  # k_m, so every row's gradient is bounded by 4/N whatever tau (without the factor it grows like
  # 1/tau), and for tau -> inf it tends to the tau-free (2/N) (mean_m k_m - k_i). It is NOT
  # tau-independent in between (the softmax p depends on tau).
  qn = losses.l2_normalize(q1)  # unit queries: d/dq is the tangential part of d/d n(q)
  kn = np.asarray(losses.l2_normalize(k1))
  grad = lambda tau: np.asarray(jax.grad(losses.mocov3_loss)(qn, k1, temperature=tau))
  n = qn.shape[0]
  norms = {tau: np.linalg.norm(grad(tau), axis=-1) for tau in (0.01, 0.1, 1.0, 100.0)}
  for tau, row_norms in norms.items():
    assert row_norms.max() <= 4.0 / n + 1e-6, tau
  assert norms[0.01].max() > 0.5 / n  # not trivially saturated at the smallest tau
  limit = 2.0 / n * (kn.mean(0, keepdims=True) - kn)
  limit -= np.sum(limit * np.asarray(qn), -1, keepdims=True) * np.asarray(qn)  # tangential part
  np.testing.assert_allclose(grad(1e4), limit, atol=1e-5)
  assert np.abs(grad(0.1) - limit).max() > 1e-2


def _entropy(logits):
  """Mean over rows of the entropy of softmax(logits), in float64."""
  x = np.asarray(logits, np.float64)
  log_p = x - x.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  return -np.sum(np.exp(log_p) * log_p, axis=-1).mean()


def test_dino_cross_entropy_at_least_entropy():
  s, t, c = _dino_inputs()
  for t_temp in (0.04, 0.07, 1.0):
    loss = float(losses.dino_loss(s, t, c, student_temp=0.1, teacher_temp=t_temp))
    # Each teacher crop is used by the 3 student crops other than its own: equal weights.
    entropy = np.mean([_entropy((np.asarray(x) - np.asarray(c)) / t_temp) for x in t])
    assert loss >= entropy - 1e-6
  # Equality when every student crop predicts the teacher's distribution exactly.
  t0 = t[0]
  s_same = [(t0 - c) * (0.1 / 0.07)] * 4
  loss = float(losses.dino_loss(s_same, [t0, t0], c, student_temp=0.1, teacher_temp=0.07))
  want = _entropy((np.asarray(t0) - np.asarray(c)) / 0.07)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_dino_pairs_skip_own_view():
  s, t, c = _dino_inputs()
  # Each teacher crop's own student crop is excluded: changing student crop 0 only moves the
  # (teacher 1, student 0) pair, and with a single teacher crop it changes nothing.
  f = lambda ss, tt: float(losses.dino_loss(ss, tt, c, student_temp=0.1, teacher_temp=0.04))
  s_mod = [s[0] * 5.0] + s[1:]
  assert f(s_mod, t[:1]) == pytest.approx(f(s, t[:1]), rel=1e-6)
  assert abs(f(s_mod, t) - f(s, t)) > 1e-3


def test_dino_center():
  _, t, c = _dino_inputs()
  got = losses.dino_center(c, t, momentum=0.9)
  want = 0.9 * np.asarray(c) + 0.1 * np.concatenate([np.asarray(x) for x in t]).mean(0)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
  assert got.shape == c.shape
  assert losses.dino_center(c[None], t).shape == (1, 10)
  # momentum 0: the center is the batch mean, and centring by it zeroes the mean teacher logit.
  batch_mean = losses.dino_center(c, t, momentum=0.0)
  centred = jnp.concatenate(t) - batch_mean
  np.testing.assert_allclose(np.asarray(centred.mean(0)), np.zeros(10), atol=1e-6)


def test_mae_mask_semantics():
  pred, target, mask = _mae_inputs()
  base = float(losses.mae_loss(pred, target, mask))
  visible = np.argwhere(np.asarray(mask) == 0)[0]
  masked = np.argwhere(np.asarray(mask) == 1)[0]
  bumped = pred.at[visible[0], visible[1]].add(10.0)
  assert float(losses.mae_loss(bumped, target, mask)) == base
  bumped = pred.at[masked[0], masked[1]].add(10.0)
  assert float(losses.mae_loss(bumped, target, mask)) > base + 1.0
  # norm_pix removes each patch's offset and scale from the target.
  t2 = target * 3.0 + 7.0
  np.testing.assert_allclose(float(losses.mae_loss(pred, t2, mask)), base, rtol=1e-5)


# ----------------------------------------------------------------------------- jit


def test_jit_equals_eager():
  z1, z2 = _inputs(0, (8, 16), (8, 16))
  s, t, c = _dino_inputs()
  pred, target, mask = _mae_inputs()
  cases = [
      (lambda a, b: losses.ntxent_loss(a, b, temperature=0.5), (z1, z2)),
      (losses.byol_loss, (z1, z2)),
      (losses.simsiam_loss, (z1, z2)),
      (losses.vicreg_loss, (z1, z2)),
      (lambda a, b: losses.mocov3_loss(a, b, temperature=0.2), (z1, z2)),
      (lambda ss, tt, cc: losses.dino_loss(ss, tt, cc, student_temp=0.1, teacher_temp=0.04),
       (s, t, c)),
      (losses.mae_loss, (pred, target, mask)),
  ]
  for fn, args in cases:
    # float32: XLA fuses and reorders the reductions under jit; a few ulps (eps = 1.2e-7) of the
    # result may differ from eager op-by-op (VICReg's loss differed by 1.07e-6 relative here).
    np.testing.assert_allclose(float(jax.jit(fn)(*args)), float(fn(*args)), rtol=4e-6)
  # The teacher temperature may be traced (a warm-up schedule inside the step).
  traced = jax.jit(lambda tt_temp: losses.dino_loss(s, t, c, student_temp=0.1,
                                                    teacher_temp=tt_temp))
  np.testing.assert_allclose(float(traced(jnp.float32(0.04))), REF_DINO, rtol=RTOL)


# ----------------------------------------------------------------------------- stop-gradients


def test_no_gradient_into_targets():
  p, t = _inputs(1, (8, 16), (8, 16))
  for fn in (losses.byol_loss, losses.simsiam_loss,
             lambda a, b: losses.mocov3_loss(a, b, temperature=0.2)):
    g_p, g_t = jax.grad(fn, argnums=(0, 1))(p, t)
    assert np.abs(np.asarray(g_p)).max() > 0
    np.testing.assert_array_equal(np.asarray(g_t), 0.0)
  s, tl, c = _dino_inputs()
  g_s, g_t, g_c = jax.grad(
      lambda ss, tt, cc: losses.dino_loss(ss, tt, cc, student_temp=0.1, teacher_temp=0.04),
      argnums=(0, 1, 2))(s, tl, c)
  assert np.abs(np.asarray(g_s[2])).max() > 0
  for g in [*g_t, g_c]:
    np.testing.assert_array_equal(np.asarray(g), 0.0)
  # A scheduled (traced) teacher temperature is part of the target too.
  g_temp = jax.grad(lambda tt_temp: losses.dino_loss(s, tl, c, student_temp=0.1,
                                                     teacher_temp=tt_temp))(jnp.float32(0.05))
  assert float(g_temp) == 0.0
  g_c, g_t = jax.grad(lambda cc, tt: jnp.sum(losses.dino_center(cc, tt)), argnums=(0, 1))(c, tl)
  for g in [g_c, *g_t]:
    np.testing.assert_array_equal(np.asarray(g), 0.0)
  pred, target, mask = _mae_inputs()
  g_pred, g_target = jax.grad(losses.mae_loss, argnums=(0, 1))(pred, target, mask)
  np.testing.assert_array_equal(np.asarray(g_target), 0.0)
  # Only the masked patches get a gradient.
  g_rows = np.abs(np.asarray(g_pred)).max(-1)
  assert np.all(g_rows[np.asarray(mask) == 0] == 0) and np.all(g_rows[np.asarray(mask) == 1] > 0)


# ----------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("name", ["ntxent", "vicreg", "mocov3"])
def test_sharded_equals_single_device(name):
  fn = {
      "ntxent": lambda a, b: losses.ntxent_loss(a, b, temperature=0.2),
      "vicreg": losses.vicreg_loss,
      "mocov3": lambda a, b: losses.mocov3_loss(a, b, temperature=0.2),
  }[name]
  z1, z2 = _inputs(13, (32, 16), (32, 16))
  z2 = z2 + z1  # correlated views, as in training
  vg = jax.jit(jax.value_and_grad(fn))
  with jax.default_device(jax.devices()[0]):
    v1, g1 = vg(z1, z2)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  s1, s2 = jax.device_put(z1, sharded), jax.device_put(z2, sharded)
  assert len(s1.sharding.device_set) == 8
  v8, g8 = vg(s1, s2)
  np.testing.assert_allclose(float(v8), float(v1), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(g8), np.asarray(g1), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan")])
def test_bad_temperature_raises(tau):
  z1, z2 = _inputs(0, (8, 16), (8, 16))
  with pytest.raises(ValueError, match="ntxent_loss temperature must be > 0"):
    losses.ntxent_loss(z1, z2, temperature=tau)
  with pytest.raises(ValueError, match="mocov3_loss temperature must be > 0"):
    losses.mocov3_loss(z1, z2, temperature=tau)
  s, t, c = _dino_inputs()
  with pytest.raises(ValueError, match="student_temp must be > 0"):
    losses.dino_loss(s, t, c, student_temp=tau, teacher_temp=0.04)
  with pytest.raises(ValueError, match="teacher_temp must be > 0"):
    losses.dino_loss(s, t, c, student_temp=0.1, teacher_temp=tau)
  with pytest.raises(ValueError, match="teacher_temp must be > 0"):
    losses.dino_loss(s, t, c, student_temp=0.1, teacher_temp=jnp.float32(tau))


def test_bad_shapes_raise():
  z1, z2 = _inputs(0, (8, 16), (8, 12))
  for fn in (lambda a, b: losses.ntxent_loss(a, b, temperature=0.5), losses.byol_loss,
             losses.simsiam_loss, losses.vicreg_loss,
             lambda a, b: losses.mocov3_loss(a, b, temperature=0.5)):
    with pytest.raises(ValueError, match="same shape"):
      fn(z1, z2)
  with pytest.raises(ValueError, match="N >= 2"):
    losses.vicreg_loss(z1[:1], z1[:1])
  s, t, c = _dino_inputs()
  with pytest.raises(ValueError, match="no .* pairs"):
    losses.dino_loss(s[:1], t[:1], c, student_temp=0.1, teacher_temp=0.04)
  with pytest.raises(ValueError, match="every teacher crop"):
    losses.dino_loss(s[:1], t, c, student_temp=0.1, teacher_temp=0.04)
  with pytest.raises(ValueError, match="same \\[N, K\\] shape"):
    losses.dino_loss([s[0], s[1][:4]], t, c, student_temp=0.1, teacher_temp=0.04)
  pred, target, mask = _mae_inputs()
  with pytest.raises(ValueError, match="mae_loss"):
    losses.mae_loss(pred, target, mask[:, :3])


# Re-run: save this string as ref.py and run it with any Python that has torch and numpy.
TORCH_REFERENCE_SCRIPT = r"""
import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def inputs(seed, *shapes):
  rng = np.random.default_rng(seed)
  return [torch.tensor(rng.standard_normal(s).astype(np.float32), dtype=torch.float64)
          for s in shapes]


def simclr(z1, z2, t):  # 2N x 2N similarities, self masked, cross-entropy on the positive
  z = F.normalize(torch.cat([z1, z2]), dim=1)
  n = z1.shape[0]
  sim = z @ z.T / t
  sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
  labels = torch.cat([torch.arange(n) + n, torch.arange(n)])
  return F.cross_entropy(sim, labels)


def byol(p, t):
  return (2 - 2 * (F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).sum(-1)).mean()


def simsiam(p, z):  # official D(p, z) = -F.cosine_similarity(p, z.detach(), dim=-1).mean()
  return -F.cosine_similarity(p, z, dim=-1).mean()


def off_diagonal(x):
  n, m = x.shape
  return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg(x, y):  # facebookresearch/vicreg VICReg.forward, world size 1
  n, d = x.shape
  repr_loss = F.mse_loss(x, y)
  x = x - x.mean(dim=0)
  y = y - y.mean(dim=0)
  std_x = torch.sqrt(x.var(dim=0) + 0.0001)
  std_y = torch.sqrt(y.var(dim=0) + 0.0001)
  std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
  cov_x = (x.T @ x) / (n - 1)
  cov_y = (y.T @ y) / (n - 1)
  cov_loss = off_diagonal(cov_x).pow_(2).sum().div(d) + off_diagonal(cov_y).pow_(2).sum().div(d)
  loss = 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss
  return repr_loss, std_loss, cov_loss, loss


def mocov3(q, k, t):  # MoCo.contrastive_loss, world size 1
  q = F.normalize(q, dim=1)
  k = F.normalize(k, dim=1)
  logits = torch.einsum("nc,mc->nm", [q, k]) / t
  labels = torch.arange(logits.shape[0], dtype=torch.long)
  return torch.nn.CrossEntropyLoss()(logits, labels) * (2 * t)


def dino(student_output, teacher_output, center, ncrops, student_temp, temp):  # DINOLoss.forward
  student_out = student_output / student_temp
  student_out = student_out.chunk(ncrops)
  teacher_out = F.softmax((teacher_output - center) / temp, dim=-1)
  teacher_out = teacher_out.detach().chunk(2)
  total_loss = 0
  n_loss_terms = 0
  for iq, q in enumerate(teacher_out):
    for v in range(len(student_out)):
      if v == iq:
        continue
      loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
      total_loss += loss.mean()
      n_loss_terms += 1
  return total_loss / n_loss_terms


def mae(target, pred, mask, norm_pix_loss):  # MaskedAutoencoderViT.forward_loss after patchify
  if norm_pix_loss:
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.e-6)**.5
  loss = (pred - target) ** 2
  loss = loss.mean(dim=-1)
  return (loss * mask).sum() / mask.sum()


print(torch.__version__)
z1, z2 = inputs(0, (8, 16), (8, 16))
print("ntxent", {t: simclr(z1, z2, t).item() for t in (0.5, 0.1)})
print("byol", byol(*inputs(1, (8, 16), (8, 16))).item())
print("simsiam", simsiam(*inputs(2, (8, 16), (8, 16))).item())
print("vicreg", [v.item() for v in vicreg(*inputs(3, (8, 16), (8, 16)))])
q, k = inputs(4, (8, 16), (8, 16))
print("mocov3", {t: mocov3(q, k, t).item() for t in (0.2, 1.0)})
s0, s1, s2, s3, t0, t1, c = inputs(5, *[(8, 10)] * 6, (10,))
print("dino", dino(torch.cat([s0, s1, s2, s3]), torch.cat([t0, t1]), c[None], 4, 0.1, 0.04).item())
pred, target, m = inputs(6, (2, 6, 12), (2, 6, 12), (2, 6))
mask = (m > 0).double()
print("mae", {b: mae(target, pred, mask, b).item() for b in (True, False)})
"""
