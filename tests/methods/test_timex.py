"""TimeX: its losses against float64 NumPy written here from the paper's formulas (and the
released code's where the flag asks for it), the straight-through mask, mask application, the
attribution metrics against scikit-learn, the frozen reference, loading an exported classifier,
and the spec's toy: explanations of a trained classifier beat a random mask."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_setup import build

from ssljax import backbone, data, losses
from ssljax.data import synth_series
from ssljax.evals import explain
from ssljax.models import timex as tm

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------- references (float64 NumPy)


def np_cos(z):
  z = z / np.linalg.norm(z, axis=-1, keepdims=True)
  return z @ z.T


def np_mbc(z, ze):
  """Paper eq. 4: mean over all (i, j) of (cos(z_i, z_j) - cos(ze_i, ze_j))^2."""
  return np.mean((np_cos(z) - np_cos(ze)) ** 2)


def np_softmax(a):
  e = np.exp(a - a.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_js(p, q):
  """JS(P||Q) = 0.5 KL(P||M) + 0.5 KL(Q||M), M = (P + Q) / 2, for two probability vectors."""
  m = 0.5 * (p + q)
  return 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))


def np_lc(logits_e, logits):
  """Paper eq. 5, averaged over the unordered pairs i < j."""
  pe, p = np_softmax(logits_e), np_softmax(logits)
  terms = [(np_js(pe[i], pe[j]) - np_js(p[i], p[j])) ** 2
           for i, j in itertools.combinations(range(len(p)), 2)]
  return np.mean(terms), len(terms)


def np_lc_released(logits_e, logits):
  """The released LabelConsistencyLoss: kl_div(log_p, m, reduction='mean') = mean[m log(m / p)]
  over every element of every pair, 0.5 (that for P + that for Q) per side, squared difference."""
  def side(lg):
    p = np_softmax(lg)
    i, j = np.triu_indices(len(p), k=1)
    m = 0.5 * (p[i] + p[j])
    return 0.5 * np.mean(m * np.log(m / p[i])) + 0.5 * np.mean(m * np.log(m / p[j]))
  return (side(logits_e) - side(logits)) ** 2


def np_gsat(p, r):
  return np.mean(p * np.log(p / r + 1e-6) + (1 - p) * np.log((1 - p) / (1 - r + 1e-6) + 1e-6))


def np_connect(p):
  d = p[:, 1:] - p[:, :-1]
  return np.sqrt(np.sum(d ** 2)) / d.size


# --------------------------------------------------------------------------------------- MBC


def test_mbc_matches_the_formula_and_jit():
  z, ze = RNG.normal(size=(8, 17)), RNG.normal(size=(8, 12))
  got = losses.timex_mbc_loss(jnp.asarray(z, jnp.float32), jnp.asarray(ze, jnp.float32))
  np.testing.assert_allclose(float(got), np_mbc(z, ze), rtol=1e-5)
  jitted = jax.jit(losses.timex_mbc_loss)(jnp.asarray(z, jnp.float32), jnp.asarray(ze, jnp.float32))
  np.testing.assert_allclose(float(jitted), float(got), rtol=1e-6)


def test_mbc_zero_under_rotation_invariant_to_scale_positive_on_perturbation():
  z = RNG.normal(size=(10, 17))
  q, _ = np.linalg.qr(RNG.normal(size=(17, 17)))  # A global rotation keeps every cosine.
  f = lambda a, b: float(losses.timex_mbc_loss(jnp.asarray(a, jnp.float32),  # noqa: E731
                                               jnp.asarray(b, jnp.float32)))
  assert f(z, z @ q) < 1e-10
  scales = RNG.uniform(0.1, 10.0, size=(10, 1))
  ze = RNG.normal(size=(10, 17))
  np.testing.assert_allclose(f(z, ze * scales), f(z, ze), rtol=1e-5)
  moved = (z @ q).copy()
  moved[3] = RNG.normal(size=17)
  assert f(z, moved) > 1e-3 and f(z, moved) == pytest.approx(np_mbc(z, moved), rel=1e-4)


# ---------------------------------------------------------------------------------------- LC


def test_label_consistency_is_the_per_pair_form():
  le, lg = RNG.normal(size=(7, 4)) * 2, RNG.normal(size=(7, 4)) * 2
  want, pairs = np_lc(le, lg)
  assert pairs == 7 * 6 // 2
  got = losses.timex_label_consistency_loss(jnp.asarray(le, jnp.float32),
                                            jnp.asarray(lg, jnp.float32))
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  assert float(losses.timex_label_consistency_loss(jnp.asarray(lg), jnp.asarray(lg))) == 0.0


def test_label_consistency_released_reduction_flag():
  le, lg = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3)) * 3
  got = losses.timex_label_consistency_loss(jnp.asarray(le, jnp.float32),
                                            jnp.asarray(lg, jnp.float32),
                                            faithful_lc_reduction=True)
  np.testing.assert_allclose(float(got), np_lc_released(le, lg), rtol=1e-4, atol=1e-12)
  # The two forms differ (the released one compares two batch means).
  assert abs(float(got) - np_lc(le, lg)[0]) > 1e-6


def test_js_symmetric_and_bounded():
  a, b = RNG.normal(size=(50, 5)) * 4, RNG.normal(size=(50, 5)) * 4
  la, lb = jax.nn.log_softmax(jnp.asarray(a)), jax.nn.log_softmax(jnp.asarray(b))
  ab, ba = losses.timex_js_divergence(la, lb), losses.timex_js_divergence(lb, la)
  np.testing.assert_allclose(ab, ba, rtol=1e-6, atol=1e-7)
  assert np.all(np.asarray(ab) >= -1e-7) and np.all(np.asarray(ab) <= math.log(2) + 1e-6)
  want = [np_js(np_softmax(x), np_softmax(y)) for x, y in zip(a, b, strict=True)]
  np.testing.assert_allclose(ab, want, rtol=1e-4, atol=1e-7)
  one_hot = jnp.log(jnp.asarray([[1.0, 1e-30], [1e-30, 1.0]]))  # Disjoint supports: ln 2.
  np.testing.assert_allclose(losses.timex_js_divergence(one_hot[:1], one_hot[1:]), math.log(2),
                             rtol=1e-5)


# ------------------------------------------------------------------------ mask regularisers


def test_gsat_matches_formula_and_is_smallest_at_r():
  p = RNG.uniform(0.01, 0.99, size=(4, 30, 1))
  np.testing.assert_allclose(float(losses.timex_gsat_loss(jnp.asarray(p), r=0.3)),
                             np_gsat(p, 0.3), rtol=1e-5)
  grid = np.linspace(0.02, 0.98, 49)
  values = [float(losses.timex_gsat_loss(jnp.full((2, 5, 1), v), r=0.5)) for v in grid]
  assert grid[int(np.argmin(values))] == pytest.approx(0.5)
  assert abs(values[int(np.argmin(values))]) < 1e-5


def test_connectivity_matches_formula_and_is_zero_for_constant_masks():
  p = RNG.uniform(size=(3, 20, 2))
  np.testing.assert_allclose(float(losses.timex_connect_loss(jnp.asarray(p))), np_connect(p),
                             rtol=1e-5)
  const = np.repeat(RNG.uniform(size=(3, 1, 2)), 20, axis=1)
  assert float(losses.timex_connect_loss(jnp.asarray(const))) == 0.0


def test_padding_is_no_data_for_the_mask_terms_and_the_mask_generator():
  # Row 1 has 7 valid timestamps of 12: the terms equal the formulas on its valid prefix (the
  # mean of the KL over valid entries; connectivity over pairs of valid neighbours only), and
  # the mask generator's p at valid timestamps ignores what the padding holds.
  p = RNG.uniform(0.05, 0.95, size=(2, 12, 1))
  valid = np.ones((2, 12), bool)
  valid[1, 7:] = False
  kl = lambda q: q * np.log(q / 0.5 + 1e-6) + (1 - q) * np.log((1 - q) / (0.5 + 1e-6) + 1e-6)  # noqa: E731
  want = np.concatenate([kl(p[0]).ravel(), kl(p[1, :7]).ravel()]).mean()
  got = losses.timex_gsat_loss(jnp.asarray(p), r=0.5, valid_bt=jnp.asarray(valid))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  d = [np.diff(p[0], axis=0), np.diff(p[1, :7], axis=0)]
  want = np.sqrt(sum(np.sum(x ** 2) for x in d)) / sum(x.size for x in d)
  got = losses.timex_connect_loss(jnp.asarray(p), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  gen = tm.MaskGenerator(d_pe=16)
  x = jnp.asarray(RNG.normal(size=(2, 12, 1)), jnp.float32)
  memory = jnp.asarray(RNG.normal(size=(2, 12, 17)), jnp.float32)  # D = C + d_pe.
  params = gen.init(jax.random.key(0), x, memory, valid_bt=jnp.asarray(valid))
  p1 = gen.apply(params, x, memory, valid_bt=jnp.asarray(valid))
  junk = jnp.where(jnp.asarray(valid)[..., None], x, 50.0)
  p2 = gen.apply(params, junk, memory, valid_bt=jnp.asarray(valid))
  np.testing.assert_allclose(p1[1, :7], p2[1, :7], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- straight-through mask


def test_ste_mask_is_the_hard_sample_with_a_gradient():
  p = jnp.asarray(RNG.uniform(0.05, 0.95, size=(4, 30, 1)), jnp.float32)
  key = jax.random.key(3)
  m = tm.gumbel_ste_mask(key, p, tau=1.0)
  assert set(np.unique(np.asarray(m)).tolist()) <= {0.0, 1.0}
  # The same Gumbel draws by hand: keep where log p + g1 > log(1 - p) + g0.
  g = np.asarray(jax.random.gumbel(key, (*p.shape, 2)))
  pn = np.asarray(p, np.float64)
  hard = (np.log(pn + 1e-9) + g[..., 1] > np.log(1 - pn + 1e-9) + g[..., 0]).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(m), hard)
  grad = jax.grad(lambda q: jnp.sum(tm.gumbel_ste_mask(key, q) * jnp.arange(30.0)[:, None]))(p)
  assert float(jnp.sum(jnp.abs(grad))) > 0
  # Frequencies follow p.
  draws = jax.vmap(lambda k: tm.gumbel_ste_mask(k, jnp.full((1,), 0.3)))(
      jax.random.split(key, 4000))
  assert abs(float(jnp.mean(draws)) - 0.3) < 0.03


def test_mask_application():
  x = jnp.asarray(RNG.normal(size=(2, 6, 3)), jnp.float32)
  base = jnp.asarray(RNG.normal(size=(2, 6, 3)), jnp.float32)
  kept, keep = tm.apply_mask(x, jnp.ones_like(x), base)
  np.testing.assert_array_equal(kept, x)
  np.testing.assert_array_equal(keep, 1.0)
  dropped, keep = tm.apply_mask(x, jnp.zeros_like(x), base)
  np.testing.assert_array_equal(dropped, base)
  np.testing.assert_array_equal(keep, 0.0)
  m = jnp.zeros((2, 6, 1)).at[:, 2].set(1.0)  # Univariate: the input is left, attention masked.
  same, keep = tm.apply_mask(x[..., :1], m, None)
  np.testing.assert_array_equal(same, x[..., :1])
  np.testing.assert_array_equal(keep, m[..., 0])


def test_masked_timestamp_output_does_not_see_its_input():
  """No residual around attention: a masked timestamp's own output is the same whatever its
  value (the released layers' edit). Its value still moves the softmax normaliser of the other
  rows (the released masking multiplies after the softmax), so G(X, M) is not fully blind."""
  net = tm.SeriesTransformer(dropout=0.0)
  x = jnp.asarray(RNG.normal(size=(2, 12, 1)), jnp.float32)
  keep = jnp.ones((2, 12)).at[:, 5].set(0.0)
  params = net.init(jax.random.key(0), x)
  _, h1 = net.apply(params, x, keep_bt=keep)
  _, h2 = net.apply(params, x.at[:, 5].set(100.0), keep_bt=keep)
  np.testing.assert_allclose(h1[:, 5], h2[:, 5], rtol=1e-5, atol=1e-6)
  _, h3 = net.apply(params, x.at[:, 5].set(100.0))
  assert float(jnp.max(jnp.abs(h3[:, 5] - h1[:, 5]))) > 1e-2  # Unmasked: it does.


# ---------------------------------------------------------------------- attribution metrics


def test_attribution_metrics_match_scikit_learn():
  from sklearn.metrics import auc, average_precision_score, precision_recall_curve

  truth = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0])
  scores = np.array([0.1, 0.9, 0.4, 0.4, 0.2, 0.7, 0.0, 0.3, 0.4, 0.8, 0.05, 0.6])
  auprc, aup, aur = explain.series_metrics(scores, truth)
  s = explain.normalize(scores)
  prec, rec, thr = precision_recall_curve(truth, s)
  assert auprc == pytest.approx(average_precision_score(truth, s))
  assert aup == pytest.approx(auc(thr, prec[:-1]))
  assert aur == pytest.approx(auc(thr, rec[:-1]))
  perfect = explain.series_metrics(truth.astype(float), truth)
  assert perfect[0] == pytest.approx(1.0)
  batch = explain.explanation_metrics(np.stack([scores, truth]), np.stack([truth, truth]))
  assert batch["explain_auprc"] == pytest.approx((auprc + 1.0) / 2)


# ----------------------------------------------------------------------------- the method


def _built(stage="explainer"):
  """``(config, info, method, params, state)`` of the runlocal config, initialised once per session
  (shared with the contract test: the explainer's init compiles for tens of seconds on CPU)."""
  built = build("timex") if stage == "explainer" else build("timex", timex__stage="classifier")
  return built.config, data.get_info(built.config.input.data), *built[1:]


def _batch(x):
  return {"series": jnp.asarray(x), "length": jnp.full((len(x),), x.shape[1], jnp.int32)}


def _views(method, x):
  return [v(jax.random.key(0), _batch(x)) for v in method.views]


def test_reference_is_frozen_state_and_explainer_copies_load_from_an_export(tmp_path):
  clf_config, info, clf_method, clf_params, _ = _built("classifier")
  _, _, method, params, state = _built("explainer")
  out = tmp_path / "exported"
  backbone.write(out, clf_method, clf_config, info, {"params": clf_params}, log=lambda _: None)
  x = synth_series.generate("FreqShapes", 16, seed=0).series
  views = _views(method, x)
  params, state = backbone.start_from(method, params, state, str(out))
  for tree in (params["explainer"], state["reference"]):
    jax.tree.map(np.testing.assert_array_equal, tree, clf_params)
  # The reference sits in the state (never an optimiser parameter) and gets no gradient.
  grads = jax.jit(jax.grad(lambda p, s: method.loss(p, s, views, jax.random.key(3))[0],
                           argnums=(0, 1)))(params, state)
  assert "reference" not in grads[0]
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads[1]))
  assert float(jnp.max(jnp.abs(grads[0]["maskgen"]["time_prob"]["kernel"]))) > 0
  # With the explainer equal to the reference and a keep-everything mask, predictions agree.
  out = jax.jit(method.represent)(params, state, _batch(x))
  assert out["saliency"].shape == (16, 50, 1)
  want = jax.jit(clf_method.represent)(clf_params, {}, _batch(x))
  np.testing.assert_allclose(out["representation"], want["representation"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["logits"], want["logits"], rtol=1e-5, atol=1e-6)


def test_evaluation_is_deterministic():
  _, _, method, params, state = _built()
  x = synth_series.generate("FreqShapes", 8, seed=1).series
  a = jax.jit(method.represent)(params, state, _batch(x))
  b = jax.jit(method.represent)(params, state, _batch(x))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def _fit(method, params, state, x, y, *, steps, lr, weight_decay, seed):
  tx = optax.adamw(lr, weight_decay=weight_decay)
  opt = tx.init(params)

  @jax.jit
  def step(params, state, opt, xb, yb, key):
    views = [v(key, _batch_traced(xb)) for v in method.views]
    kw = {"labels": yb} if method.uses_labels else {}
    (_, (state, _, _)), g = jax.value_and_grad(
        lambda p: method.loss(p, state, views, key, **kw), has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), state, opt

  rng = np.random.default_rng(seed)
  for i in range(steps):
    rows = rng.choice(len(x), 64, replace=False)
    params, state, opt = step(params, state, opt, x[rows], y[rows], jax.random.key(i))
  return params, state


def _batch_traced(x):
  return {"series": x, "length": jnp.full((x.shape[0],), x.shape[1], jnp.int32)}


def test_toy_explanations_beat_a_random_mask():
  """The spec's toy: a classifier trained on FreqShapes-like data (class = spike shape and
  period, the spikes' timestamps known), frozen; TimeX fitted on it briefly on CPU; the saliency's
  AUPRC against the spikes clearly above a random saliency's."""
  train = synth_series.generate("FreqShapes", 2000, seed=10)
  test = synth_series.generate("FreqShapes", 200, seed=11)
  _, _, clf_method, params, _ = _built("classifier")
  params, _ = _fit(clf_method, params, {}, train.series, train.label, steps=400, lr=1e-3,
                   weight_decay=0.1, seed=0)
  logits = jax.jit(clf_method.represent)(params, {}, _batch(test.series))["logits"]
  assert float(np.mean(np.argmax(logits, -1) == test.label)) > 0.8
  _, _, method, ex_params, state = _built("explainer")
  ex_params = {**ex_params, "explainer": params}
  state = {**state, "reference": params}
  ex_params, state = _fit(method, ex_params, state, train.series, train.label, steps=TOY_STEPS,
                          lr=1e-3, weight_decay=1e-3, seed=1)
  saliency = jax.jit(method.represent)(ex_params, state, _batch(test.series))["saliency"]
  got = explain.explanation_metrics(np.asarray(saliency), test.salient)
  rand = explain.explanation_metrics(np.random.default_rng(0).uniform(size=test.salient.shape),
                                     test.salient, prefix="random_")
  assert got["explain_auprc"] > rand["random_auprc"] + TOY_MARGIN, (got, rand)


TOY_STEPS = 300
TOY_MARGIN = 0.15
