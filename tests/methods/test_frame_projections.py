"""Frame projections: the NT-Xent oracle, the total loss against a float64 reference, the method's
wiring, and the two stages end to end (stage 1 -> export -> stage 2 from ``encoder.init_from``).

References are float64 NumPy written here from the published formulas: the official
``IsoAlign.cont_loss`` (similarities of the 2B normalised rows, positive of row i at (i + B) mod
2B, the other 2B - 2 rows but i as negatives, cross-entropy summed and divided by 2B) and
``calc_loss`` (three such losses plus the predictors' element-mean L1 divided by B).
"""

import json

import jax
import jax.numpy as jnp
import method_setup
import numpy as np
import pytest

from ssljax import backbone, data, losses, methods, train
from ssljax.errors import ConfigError
from ssljax.methods import frame_projections as fp

TAU = 0.15


def _nt_reference(a, b, tau=TAU):
  """The official cont_loss on normalised float64 rows."""
  n = len(a)
  r = np.concatenate([a, b]) / np.linalg.norm(np.concatenate([a, b]), axis=1, keepdims=True)
  sim = r @ r.T
  total = 0.0
  for i in range(2 * n):
    pos = sim[i, (i + n) % (2 * n)]
    neg = [sim[i, j] for j in range(2 * n) if j not in (i, (i + n) % (2 * n))]
    logits = np.array([pos] + neg) / tau
    total += -(logits[0] - np.log(np.exp(logits).sum()))
  return total / (2 * n)


def _normalize(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("b", [2, 4, 7])
def test_ntxent_of_identical_embeddings_is_log_2b_minus_1(b):
  z = jnp.ones((b, 8))
  np.testing.assert_allclose(float(losses.ntxent_loss(z, z, temperature=TAU)),
                             np.log(2 * b - 1), rtol=1e-6)


def test_ntxent_of_orthogonal_pairs_is_exact():
  b = 4
  a = jnp.eye(b, 6) * 3.0  # Mutually orthogonal, a_i = b_i (norms do not matter).
  got = float(losses.ntxent_loss(a, a, temperature=TAU))
  want = np.log(1 + (2 * b - 2) * np.exp(-1 / TAU))
  # float32: logsumexp (~1/tau = 6.7) minus the positive logit leaves ~1e-6 absolute rounding.
  np.testing.assert_allclose(got, want, atol=2e-6)
  np.testing.assert_allclose(want, 0.00760, atol=1e-5)  # the spec quotes 0.00760 (0.007607)


def test_ntxent_is_symmetric_and_the_official_cont_loss():
  a, b = np.random.default_rng(0).normal(size=(2, 6, 5))
  ab = float(losses.ntxent_loss(jnp.asarray(a), jnp.asarray(b), temperature=TAU))
  ba = float(losses.ntxent_loss(jnp.asarray(b), jnp.asarray(a), temperature=TAU))
  np.testing.assert_allclose(ab, ba, rtol=1e-6)
  np.testing.assert_allclose(ab, _nt_reference(a, b), rtol=1e-5)


# ---------------------------------------------------------------------------------- total loss


@pytest.mark.parametrize("l1_weight", [None, 0.5])
def test_total_loss_equals_a_float64_reference(l1_weight):
  rng = np.random.default_rng(3)
  b, d = 6, 16
  z_t, z_f, z_w, p_f, p_w = rng.normal(size=(5, b, d))
  got = jax.jit(lambda *a: losses.frame_projections_loss(*a, temperature=TAU,
                                                         l1_weight=l1_weight))(
      *(jnp.asarray(v, jnp.float32) for v in (z_t, z_f, z_w, p_f, p_w)))
  nz_t, nz_f, nz_w = _normalize(z_t), _normalize(z_f), _normalize(z_w)
  w = 1.0 / b if l1_weight is None else l1_weight  # Official: l1_loss(...) / batch_size.
  want = (_nt_reference(nz_t, nz_w) + _nt_reference(nz_t, nz_f) + _nt_reference(nz_w, nz_f)
          + w * (np.abs(p_f - nz_f).mean() + np.abs(p_w - nz_w).mean()))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_mapper_loss_is_l1_and_its_targets_get_no_gradient():
  rng = np.random.default_rng(4)
  m_f, h_f, m_w, h_w = (jnp.asarray(v, jnp.float32) for v in rng.normal(size=(4, 5, 8)))
  value, grads = jax.value_and_grad(losses.frame_projections_mapper_loss, argnums=(0, 1, 2, 3))(
      m_f, h_f, m_w, h_w)
  want = np.abs(np.asarray(m_f) - np.asarray(h_f)).mean() + np.abs(
      np.asarray(m_w) - np.asarray(h_w)).mean()
  np.testing.assert_allclose(float(value), want, rtol=1e-6)
  assert np.abs(grads[0]).sum() > 0 and np.abs(grads[2]).sum() > 0
  np.testing.assert_array_equal(grads[1], 0.0)
  np.testing.assert_array_equal(grads[3], 0.0)


# ------------------------------------------------------------------------------------- wiring


def test_stage1_loss_is_the_total_loss_of_the_method_heads():
  config, method, params, state, views = method_setup.setup("frame_projections")
  value, (new_state, metrics, rep) = jax.jit(method.loss)(params, state, views,
                                                          jax.random.key(0))
  b = views[0]["series"].shape[0]
  want = (metrics["nt_tw"] + metrics["nt_tf"] + metrics["nt_wf"]
          + (metrics["l1_f"] + metrics["l1_w"]) / b)
  np.testing.assert_allclose(float(value), float(want), rtol=1e-6)
  width = int(config.encoder.width)
  assert rep.shape == (b, 3 * width)  # stage 1's feature: [h_F, h_t, h_W]
  # The mappers sit in the state in stage 1 and are untouched (stage 2 trains them).
  jax.tree.map(np.testing.assert_array_equal, new_state["mappers"], state["mappers"])
  assert set(params["net"]) == {"time", "fourier", "wavelet"}


def test_views_are_deterministic_projections():
  _, method, _, _, _ = method_setup.setup("frame_projections")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 150, 1)), jnp.float32)
  batch = {"series": x, "length": jnp.full((2,), 150, jnp.int32)}
  a, b = (method.views[0](jax.random.key(k), batch) for k in (0, 1))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  np.testing.assert_array_equal(a["series"], x)


@pytest.mark.parametrize("override,message", [
    ({"frame_projections.stage": 3}, "frame_projections.stage=3 must be 1"),
    ({"frame_projections.stage": 2}, "set encoder.init_from"),
    ({"frame_projections.feature": "mapped"}, "needs the stage-2 latent mappers"),
    ({"frame_projections.feature": "all"}, "frame_projections.feature='all'"),
    ({"frame_projections.l1_weight": -0.5}, "l1_weight=-0.5 must be -1"),
    ({"frame_projections.temperature": 0.0}, "frame_projections.temperature=0.0 must be"),
    ({"frame_projections.min_scale": 0.5}, "must satisfy 1 <= min_scale <= max_scale"),
    ({"encoder.name": "ts2vec"}, "use encoder.name='frames'"),
    ({"encoder.width": 12}, "encoder.width=12 must be a multiple of 8"),
    ({"input.batch_size": 1}, "use a batch of at least 2"),
])
def test_bad_settings_raise(override, message):
  config = method_setup.config_of("frame_projections")
  config.update_from_flattened_dict(override)
  info = data.get_info(config.input.data)
  with pytest.raises(ConfigError, match=message):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)


# ------------------------------------------------------------------------- two stages, in full


def test_stage2_trains_only_the_mappers_of_the_exported_stage1_backbone(tmp_path):
  """Stage 1 -> export -> stage 2 through the trainer: the frozen encoders do not move, the
  mappers do, and the exported stage-2 backbone maps a raw series batch to the 3 x width feature
  [map_F(h_t), h_t, map_W(h_t)] without any projection."""
  def short(config, steps):
    config.total_steps = steps
    config.eval.evals = "classification"
    config.eval.at_init = False
    config.eval.linear = False
    config.mesh = (("data", 1),)
    return config

  c1 = short(method_setup.config_of("frame_projections"), 4)
  train.train_and_evaluate(c1, str(tmp_path / "s1"))
  backbone.export(str(tmp_path / "s1"), str(tmp_path / "b1"), log=lambda _: None)
  exported = backbone.read(str(tmp_path / "b1"))

  c2 = short(method_setup.config_of("frame_projections", "runlocal,stage=2"), 6)
  c2.encoder.init_from = str(tmp_path / "b1")
  results = train.train_and_evaluate(c2, str(tmp_path / "s2"))
  assert np.isfinite(results["knn_top1"])
  run = backbone.restore(str(tmp_path / "s2"))
  frozen = run.method_state["frozen"]
  jax.tree.map(np.testing.assert_array_equal, frozen, exported.variables)
  trained = run.params
  assert set(trained) == {"map_f", "map_w"}
  assert any(not np.allclose(trained[k]["conv"]["kernel"], frozen["params"][k]["conv"]["kernel"])
             for k in fp.MAPPERS)
  # Losses logged: the mappers' L1 went down.
  rows = [json.loads(line) for line in open(tmp_path / "s2" / "metrics.jsonl") if "loss" in line]
  assert rows[-1]["loss"] < rows[0]["loss"]

  backbone.export(str(tmp_path / "s2"), str(tmp_path / "b2"), log=lambda _: None)
  apply, variables = backbone.load_backbone(str(tmp_path / "b2"))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 150, 1)), jnp.float32)
  feature = apply(variables, {"series": x})  # the raw series only
  width = int(c2.encoder.width)
  assert feature.shape == (3, 3 * width)
  net = run.method.backbone.module
  h_t = net.apply(variables, {"series": x}, method=fp.FrameNet.time_embedding)
  np.testing.assert_allclose(feature[:, width:2 * width], h_t, rtol=1e-6)
  m_f, m_w = net.apply(variables, h_t, method=fp.FrameNet.mapped)
  np.testing.assert_allclose(feature[:, :width], m_f, rtol=1e-6)
  np.testing.assert_allclose(feature[:, 2 * width:], m_w, rtol=1e-6)


def _sinusoids(rng, n, t=128):
  """Two classes by frequency band (cycles/sample), random phase and amplitude, noise."""
  label = np.arange(n) % 2
  freq = np.where(label == 0, rng.uniform(0.05, 0.08, n), rng.uniform(0.08, 0.11, n))
  amp, phase = rng.uniform(0.5, 2.0, n), rng.uniform(0, 2 * np.pi, n)
  x = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * np.arange(t) + phase[:, None])
  x = x + 0.8 * rng.normal(size=x.shape)
  return x[..., None].astype(np.float32), label.astype(np.int32)


@pytest.mark.slow
def test_toy_two_stages_beat_the_random_encoder_and_infer_from_x_alone(tmp_path):
  """The spec's end-to-end toy: 20 epochs of the 3-view loss, then the mappers; the frozen
  384-d [map_F(h_t), h_t, map_W(h_t)] + logistic regression beats the random-init network's."""
  import optax
  from sklearn.linear_model import LogisticRegression

  rng = np.random.default_rng(0)
  (xtr, ytr), (xte, yte) = _sinusoids(rng, 64), _sinusoids(rng, 200)
  np.savez(tmp_path / "toy.npz", train_series=xtr, train_labels=ytr, test_series=xte,
           test_labels=yte)

  def config(stage):
    c = method_setup.config_of("frame_projections", f"runlocal,stage={stage}")
    c.input.data.name, c.input.data.path = "npz", str(tmp_path / "toy.npz")
    c.encoder.update(dict(width=128, base_filters=8, blocks=2, dropout=0.0, init_from="toy"))
    return c

  info = data.get_info(config(1).input.data)
  m1 = methods.make(config(1), total_steps=80, steps_per_epoch=4, info=info)
  m2 = methods.make(config(2), total_steps=80, steps_per_epoch=4, info=info)
  example = train.example_view(m1, info.element_spec)
  p1, s1 = m1.init(jax.random.key(0), example)
  p2, s2 = m2.init(jax.random.key(1), example)
  init_vars = m1.backbone.variables(p1, s1)

  def fit(method, params, state, epochs=20, batch=16):
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, state, opt, x, key):
      views = [method.views[0](None, {"series": x, "length": jnp.full((batch,), 128)})]
      (_, (state, _, _)), g = jax.value_and_grad(method.loss, has_aux=True)(params, state, views,
                                                                           key)
      updates, opt = tx.update(g, opt, params)
      return optax.apply_updates(params, updates), state, opt

    for epoch in range(epochs):
      order = np.random.default_rng(epoch).permutation(len(xtr))
      for i in range(len(xtr) // batch):
        x = jnp.asarray(xtr[order[i * batch:(i + 1) * batch]])
        params, state, opt = step(params, state, opt, x, jax.random.key(epoch * 100 + i))
    return params, state

  p1, s1 = fit(m1, p1, s1)
  p2, _ = fit(m2, p2, {"frozen": m1.backbone.variables(p1, s1)})
  trained_vars = m2.backbone.variables(p2, {"frozen": m1.backbone.variables(p1, s1)})
  random_vars = m2.backbone.variables(
      m2.init(jax.random.key(1), example)[0], {"frozen": init_vars})
  apply = jax.jit(lambda v, x: m2.backbone.module.apply(v, {"series": x}))  # x alone

  def accuracy(variables):
    ftr, fte = np.asarray(apply(variables, xtr)), np.asarray(apply(variables, xte))
    assert ftr.shape == (64, 384)
    clf = LogisticRegression(max_iter=5000).fit(ftr, ytr)
    return clf.score(fte, yte)

  trained, random = accuracy(trained_vars), accuracy(random_vars)
  assert trained > random, (trained, random)
