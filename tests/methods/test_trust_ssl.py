"""Trust-SSL: Dempster-Shafer fusion, evidential head, gates, stop-gradient, schedules, the loss's
reduction to NT-Xent, corruption of normalised views, and config errors (spec's test oracle)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax import losses
from ssljax.data import corruptions as corr
from ssljax.errors import ConfigError
from ssljax.methods import _common
from ssljax.methods import trust_ssl as ts

M = 5


def _onehot(i, scale=1.0):
  return scale * np.eye(M, dtype=np.float32)[i]


# ------------------------------------------------------------------------ fusion and the gate


def test_conflict_and_ignorance_oracle():
  u0 = np.zeros((), np.float32)
  # Identical one-hot beliefs: no conflict.
  k, i = ts.dempster_fusion(_onehot(2), _onehot(2), u0, u0)
  assert float(k) == 0.0 and float(i) == 0.0  # u1 = u2 = 0 -> I = 0
  # Disjoint one-hot beliefs: total conflict, clamped to 0.999.
  k, _ = ts.dempster_fusion(_onehot(0), _onehot(3), u0, u0)
  np.testing.assert_allclose(float(k), 0.999, rtol=1e-6)
  # Uniform beliefs with u = 0.9 on both views: large fused ignorance.
  b = np.full((M,), 0.1 / M, np.float32)
  u = np.float32(0.9)
  k, i = ts.dempster_fusion(b, b, u, u, eps=0.1)
  assert float(i) > 0.5
  # Reference from the definitions: K = sum_{i != j} b1_i b2_j, I = u1 u2 / (1 - K) + eps |u1-u2|.
  rng = np.random.default_rng(0)
  b1, b2 = rng.dirichlet(np.ones(M)) * 0.7, rng.dirichlet(np.ones(M)) * 0.6
  u1, u2 = 0.3, 0.4
  k_ref = sum(b1[p] * b2[q] for p in range(M) for q in range(M) if p != q)
  i_ref = u1 * u2 / (1 - k_ref) + 0.1 * abs(u1 - u2)
  k, i = ts.dempster_fusion(b1.astype(np.float32), b2.astype(np.float32), np.float32(u1),
                            np.float32(u2), eps=0.1)
  np.testing.assert_allclose([float(k), float(i)], [k_ref, i_ref], rtol=1e-5)


def test_conflict_grows_as_beliefs_rotate_apart():
  # b2 moves its mass from prototype 0 (agreeing with b1) to prototype 1: K = theta exactly.
  thetas = np.linspace(0.0, 1.0, 11)
  ks = [float(ts.dempster_fusion(_onehot(0), (1 - t) * _onehot(0) + t * _onehot(1),
                                 np.float32(0), np.float32(0))[0]) for t in thetas]
  np.testing.assert_allclose(ks, np.minimum(thetas, 0.999), atol=1e-6)
  assert np.all(np.diff(ks) > 0)


def test_evidential_beliefs_and_ignorance_sum_to_one_and_follow_the_dirichlet_formulas():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(4, 3, 6)).astype(np.float32)
  kernel = rng.normal(size=(3, 6, M)).astype(np.float32)
  bias = rng.normal(size=(3, M)).astype(np.float32)
  b, u = ts.evidential_beliefs(z, kernel, bias, prior=0.05)
  np.testing.assert_allclose(np.sum(b, -1) + u, 1.0, rtol=1e-6)
  # Reference: e = softplus(A z + c), S = sum(e + beta), b = e / S, u = beta M / S.
  e = np.log1p(np.exp(np.einsum("btd,tdm->btm", z, kernel) + bias))
  s = np.sum(e + 0.05, -1, keepdims=True)
  np.testing.assert_allclose(b, e / s, rtol=1e-5)
  np.testing.assert_allclose(u, 0.05 * M / s[..., 0], rtol=1e-5)
  # More evidence -> less ignorance.
  us = [float(ts.evidential_beliefs(z, kernel, bias + shift, prior=0.05)[1].mean())
        for shift in (-5.0, 0.0, 5.0, 20.0)]
  assert np.all(np.diff(us) < 0)


@pytest.mark.parametrize("lambda_min", [0.05, 0.5, 1.0])
def test_gates_stay_in_lambda_min_to_one(lambda_min):
  rng = np.random.default_rng(2)
  k = np.concatenate([[0.0, 0.999], rng.uniform(0, 0.999, 50)]).astype(np.float32)
  i = np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 50)]).astype(np.float32)
  w = np.asarray(ts.evidential_gate(k, i, a=2.0, g=3.0, lambda_min=lambda_min))
  assert w.min() >= lambda_min - 1e-6 and w.max() <= 1.0 + 1e-6
  assert float(ts.evidential_gate(0.0, 0.0, a=2.0, g=3.0, lambda_min=lambda_min)) == 1.0
  z1 = losses.l2_normalize(jnp.asarray(rng.normal(size=(8, 3, 4)), jnp.float32))
  for z2 in (z1, -z1, losses.l2_normalize(jnp.asarray(rng.normal(size=(8, 3, 4)), jnp.float32))):
    for tau in (1e-4, 0.5, 10.0):  # tau clamped at 1e-3: sigmoid saturates but stays bounded
      w = np.asarray(ts.cosine_gate(z1, z2, jnp.full((3,), math.log(tau)), lambda_min=lambda_min))
      assert w.min() >= lambda_min - 1e-6 and w.max() <= 1.0 + 1e-6


def test_residual_passes_no_gradient_to_the_weight_and_rescales_the_cosine_gradient():
  rng = np.random.default_rng(3)
  z1 = losses.l2_normalize(jnp.asarray(rng.normal(size=(6, 2, 4)), jnp.float32))
  z2 = losses.l2_normalize(jnp.asarray(rng.normal(size=(6, 2, 4)), jnp.float32))
  kernel = jnp.asarray(rng.normal(size=(2, 4, M)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(2, M)), jnp.float32)

  def gate(z1, z2, kernel, bias):
    b1, u1 = ts.evidential_beliefs(z1, kernel, bias, prior=0.05)
    b2, u2 = ts.evidential_beliefs(z2, kernel, bias, prior=0.05)
    k, i = ts.dempster_fusion(b1, b2, u1, u2)
    return ts.evidential_gate(k, i, a=2.0, g=3.0, lambda_min=0.3)

  def l_add(z1, z2, kernel, bias):
    return ts.additive_residual(z1, z2, gate(z1, z2, kernel, bias))

  grads = jax.grad(l_add, argnums=(0, 1, 2, 3))(z1, z2, kernel, bias)
  # d L_add / d (gate parameters) = 0.
  np.testing.assert_array_equal(grads[2], 0.0)
  np.testing.assert_array_equal(grads[3], 0.0)
  # The embedding gradient equals that of mean(w_const (1 - cos)) with w as a numeric constant.
  w_const = np.asarray(gate(z1, z2, kernel, bias))

  def weighted(z1, z2):
    return jnp.mean(w_const * (1.0 - jnp.sum(z1 * z2, -1)))

  ref = jax.grad(weighted, argnums=(0, 1))(z1, z2)
  np.testing.assert_allclose(grads[0], ref[0], rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(grads[1], ref[1], rtol=1e-6, atol=1e-8)


def test_ntxent_on_identical_orthogonal_views_has_the_analytic_value():
  # Rows e_i: the positive has logit 1/tau, the 2B - 2 negatives logit 0.
  b = 4
  z = jnp.eye(8, dtype=jnp.float32)[:b]
  for tau in (0.1, 0.5):
    expected = math.log(1 + (2 * b - 2) * math.exp(0.0) / math.exp(1 / tau))
    # float32 cancellation in lse - positive (both ~1/tau): compare with an absolute tolerance.
    np.testing.assert_allclose(float(losses.ntxent_loss(z, z, temperature=tau)), expected,
                               rtol=1e-5, atol=5e-6)


def test_schedules_follow_the_paper():
  kw = dict(value=0.2, start=100, end=150)
  got = [float(ts.lambda_sel_at(e, **kw)) for e in (0, 100, 125, 150, 199)]
  np.testing.assert_allclose(got, [0.0, 0.0, 0.1, 0.2, 0.2], atol=1e-7)
  assert float(ts.lambda_sel_at(0, value=0.2, start=0, end=0)) == pytest.approx(0.2)
  # Cosine 0.5 -> 0.05 over 200 epochs: 0.05 + 0.225 (1 + cos(pi e / 200)).
  for e in (0, 50, 100, 200, 300):
    ref = 0.05 + 0.225 * (1 + math.cos(math.pi * min(e, 200) / 200))
    got = float(ts.lambda_min_at(e, start=0.5, end=0.05, epochs=200))
    assert got == pytest.approx(ref, abs=1e-6)


# ------------------------------------------------------------------------ the method


def test_loss_reduces_to_ntxent_and_to_an_unweighted_residual():
  config, method, params, state, views = setup("trust_ssl", arg="runlocal,clean", batch=8)
  assert "aux" not in params and "gate" not in params  # gate parameters are not trained
  loss_fn = jax.jit(method.loss)
  t = config.trust_ssl
  net = _common.encoder_projector(config)
  head = ts.FactorHead(num_factors=t.num_factors, factor_dim=t.factor_dim,
                       hidden_dim=t.factor_hidden)

  @jax.jit
  def reference(params, state, views):
    """NT-Xent of the projections and the unweighted residual mean(1 - cos(z1, z2))."""
    (h1, g1), st = _common.apply_train(net, params["net"], state["net"], views[0])
    (h2, g2), _ = _common.apply_train(net, params["net"], st, views[1])
    z1, fst = _common.apply_train(head, params["factor"], state["factor"], h1)
    z2, _ = _common.apply_train(head, params["factor"], fst, h2)
    return (losses.ntxent_loss(g1, g2, temperature=t.temperature),
            jnp.mean(1.0 - jnp.sum(z1 * z2, -1)), h1)

  base, residual, h1 = reference(params, state, views)
  base, residual = float(base), float(residual)
  # lambda_sel = 0: exactly NT-Xent.
  loss, (_, metrics, rep) = loss_fn(params, {**state, "lambda_sel": jnp.float32(0)}, views,
                                    jax.random.key(0))
  np.testing.assert_allclose(float(loss), base, rtol=1e-6)
  np.testing.assert_allclose(rep, h1, rtol=1e-5, atol=1e-6)
  # lambda_min = 1 makes every trust weight 1: NT-Xent + lambda_sel * mean(1 - cos(z1, z2)).
  loss, (_, metrics, _) = loss_fn(
      params, {**state, "lambda_sel": jnp.float32(0.7), "lambda_min": jnp.float32(1.0)}, views,
      jax.random.key(0))
  assert float(metrics["trust"]) == pytest.approx(1.0)
  np.testing.assert_allclose(float(loss), base + 0.7 * residual, rtol=1e-5)


def test_corrupting_loss_adds_half_the_aux_loss_and_state_gets_no_gradient():
  config, method, params, state, views = setup("trust_ssl", batch=8)
  assert set(params) == {"net", "factor", "aux"}
  assert set(state["gate"]) == {"kernel", "bias"}

  def loss_of(p, s):
    return method.loss(p, s, views, jax.random.key(1))

  grad_fn = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True))
  zero_sel = {**state, "lambda_sel": jnp.float32(0)}
  (loss, (new_state, metrics, _)), (_, g_state) = grad_fn(params, zero_sel)
  np.testing.assert_allclose(float(loss), float(metrics["ntxent_loss"] + 0.5 * metrics["aux_loss"]),
                             rtol=1e-6)
  (loss, (_, metrics, _)), (g_params, g_state) = grad_fn(params, state)
  np.testing.assert_allclose(
      float(loss), float(metrics["ntxent_loss"] + 0.2 * metrics["align_loss"]
                         + 0.5 * metrics["aux_loss"]), rtol=1e-6)
  for g in jax.tree.leaves(g_state):
    np.testing.assert_array_equal(g, 0.0)  # gate, schedules, BatchNorm statistics
  assert float(jnp.abs(g_params["factor"]["factors"]["kernel"]).sum()) > 0
  assert 0.0 <= float(metrics["conflict"]) <= 0.999 and 0.0 <= float(metrics["ignorance"]) <= 1
  # The loss leaves the gate as it is; update sets the next step's per-epoch schedules.
  jax.tree.map(np.testing.assert_array_equal, new_state["gate"], state["gate"])


def test_update_sets_the_per_epoch_schedules():
  _, method, params, state, _ = setup(
      "trust_ssl", batch=8, steps_per_epoch=10, trust_ssl__sel_start_epoch=2.0,
      trust_ssl__sel_end_epoch=4.0, trust_ssl__lambda_min_epochs=10.0)
  assert float(state["lambda_sel"]) == 0.0 and float(state["lambda_min"]) == pytest.approx(0.5)
  for step, epoch in ((28, 2), (29, 3), (49, 5), (99, 10)):
    new = method.update(params, state, jnp.asarray(step))  # schedules of step + 1
    assert float(new["lambda_sel"]) == pytest.approx(0.2 * min(max(epoch - 2, 0) / 2, 1))
    ref = 0.05 + 0.225 * (1 + math.cos(math.pi * epoch / 10))
    assert float(new["lambda_min"]) == pytest.approx(ref, abs=1e-6)


def test_cosine_gate_and_scalar_ablations_run():
  _, method, params, state, views = setup("trust_ssl", arg="runlocal,gate=cosine,scalar", batch=8)
  assert state["gate"]["log_tau"].shape == (1,)
  np.testing.assert_allclose(np.exp(state["gate"]["log_tau"]), 0.5, rtol=1e-6)
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, jax.random.key(2))
  assert np.isfinite(float(loss)) and "conflict" not in metrics
  assert float(state["lambda_min"]) - 1e-6 <= float(metrics["trust"]) <= 1.0


def test_views_are_corrupted_in_pixel_space_and_clean_ones_kept_bit_for_bit():
  mean, std = np.array([0.3, 0.4, 0.5], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
  images = np.random.default_rng(4).uniform(size=(16, 12, 12, 3)).astype(np.float32)
  view = (images - mean) / std
  kw = dict(mean=tuple(mean), std=tuple(std), factors=corr.FACTORS, prob=0.5,
            severity=(1.0, 5.0), reference_size=24)
  rng = jax.random.key(5)
  out, label = ts.corrupt_normalized(rng, jnp.asarray(view), **kw)
  out, label = np.asarray(out), np.asarray(label)
  clean = label == 0
  assert 0 < clean.sum() < 16 and label.max() <= len(corr.FACTORS)
  np.testing.assert_array_equal(out[clean], view[clean])
  # Reference: the same draws, applied to the [0, 1] images, then normalised.
  sample_rng, op_rng = jax.random.split(rng)
  factor_b, severity_b = corr.sample(sample_rng, 16, num_factors=4, prob=0.5,
                                     severity=(1.0, 5.0))
  np.testing.assert_array_equal(label, np.asarray(factor_b) + 1)
  ref = jax.jit(functools.partial(corr.corrupt_batch, reference_size=24))(
      op_rng, jnp.asarray(images), factor_b, severity_b)
  np.testing.assert_allclose(out[~clean] * std + mean, np.asarray(ref)[~clean], atol=2e-6)
  assert np.abs(out[~clean] - view[~clean]).max() > 0.1
  # Severity 0 is the identity also through the normalisation round trip.
  out0, _ = ts.corrupt_normalized(rng, jnp.asarray(view), **{**kw, "prob": 1.0,
                                                              "severity": (0.0, 0.0)})
  np.testing.assert_allclose(np.asarray(out0), view, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("trust_ssl__corruptions", ("haze", "fog"), "trust_ssl.corruptions"),
    ("trust_ssl__severity", (1.0, 6.0), "trust_ssl.severity"),
    ("trust_ssl__severity", (-1.0, 2.0), "trust_ssl.severity"),
    ("trust_ssl__gate", "multiplicative", "trust_ssl.gate"),
    ("trust_ssl__corruption_prob", 1.5, "trust_ssl.corruption_prob"),
    ("trust_ssl__lambda_min_end", 2.0, "trust_ssl.lambda_min_end"),
    ("trust_ssl__sel_end_epoch", -1.0, "trust_ssl.sel_end_epoch"),
])
def test_bad_config_values_name_the_key(key, value, match):
  with pytest.raises(ConfigError, match=match.replace(".", r"\.")):
    setup("trust_ssl", batch=8, **{key: value})
