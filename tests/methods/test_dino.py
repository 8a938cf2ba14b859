"""DINO: centring update, teacher on global crops only, temperature schedule, multi-crop input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import assert_loss_and_grads_same_on_8_devices, setup

from ssljax.errors import ConfigError
from ssljax.methods import _common, dino
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import DINOHead


def _teacher_logits(config, state, x):
  encoder, _ = _common.make_backbone(config)
  d = config.dino
  net = EncoderHead(encoder=encoder, head=DINOHead(
      hidden_dims=tuple(d.hidden_dims), bottleneck_dim=d.bottleneck_dim,
      num_prototypes=d.num_prototypes, use_bn=d.use_bn, dense_init=d.head_init,
      input_bn=d.head_input_bn))
  (_, z), _ = _common.apply_train(net, state["teacher"]["params"], state["teacher"]["state"], x)
  return z


# The digits default has no local crops (experiments/dino.py); these tests turn two on.
MULTI_CROP = dict(input__views__local__crops=2)


def test_views_are_two_global_then_local_crops():
  config, method, *_ = setup("dino", **MULTI_CROP)
  sizes = [v.size for v in method.views]
  assert sizes == [16, 16] + [8] * config.input.views.local.crops


def test_centre_update_matches_the_formula():
  config, method, params, state, views = setup("dino", **MULTI_CROP)
  state = {**state, "center": jnp.full_like(state["center"], 0.5)}
  _, (new_state, _, _) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  # Official update_center: c <- m c + (1 - m) * mean of the teacher output over both global crops
  # (the two crops go through the teacher together, as one batch).
  t = _teacher_logits(config, state, jnp.concatenate(views[:2]))
  expected = 0.9 * 0.5 + 0.1 * jnp.mean(t, axis=0)
  np.testing.assert_allclose(new_state["center"], expected, rtol=1e-5, atol=1e-6)


def test_teacher_sees_only_global_crops():
  _, method, params, state, views = setup("dino", **MULTI_CROP)
  loss_fn = jax.jit(lambda vs: method.loss(params, state, vs, jax.random.key(0)))
  loss_a, (state_a, _, _) = loss_fn(views)
  other_locals = views[:2] + [v + 1.0 for v in views[2:]]
  loss_b, (state_b, _, _) = loss_fn(other_locals)
  np.testing.assert_array_equal(state_a["center"], state_b["center"])
  jax.tree.map(np.testing.assert_array_equal, state_a["teacher"], state_b["teacher"])
  assert float(loss_a) != float(loss_b)  # The student does see the local crops.


def test_teacher_temperature_follows_the_official_warmup():
  # DINO main_dino.py: np.linspace(0.04, 0.07, 30) per epoch, then 0.07.
  kw = dict(start=0.04, end=0.07, warmup_epochs=30, steps_per_epoch=10)
  expected = np.concatenate([np.linspace(0.04, 0.07, 30), [0.07] * 5])
  got = [float(dino.teacher_temperature(e * 10 + 3, **kw)) for e in range(35)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  _, method, params, state, _ = setup("dino", steps_per_epoch=1)
  new = method.update(params, state, jnp.asarray(5))
  np.testing.assert_allclose(float(new["teacher_temp"]), 0.07, rtol=1e-6)


def test_bad_multi_crop_settings_name_the_key():
  # The local crops are optional (crops=0: none); the global ones are not.
  with pytest.raises(ConfigError, match="input.views.global1.crops=0 .* needs at least one"):
    setup("dino", input__views__global1__crops=0)
  with pytest.raises(ConfigError, match="input.views.local.crops=-1"):
    setup("dino", input__views__local__crops=-1)
  with pytest.raises(ConfigError, match="global2.size"):
    setup("dino", input__views__global2__size=12)
  with pytest.raises(ConfigError, match="dino.student_temp"):
    setup("dino", dino__student_temp=0.0)


def test_local_crops_are_optional():
  # crops=0 (solo-learn's CIFAR recipe has no local crops): the student sees the two global crops,
  # and the loss is the two cross-view terms only.
  _, method, params, state, views = setup("dino", input__views__local__crops=0)
  assert len(method.views) == 2
  loss, _ = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  assert np.isfinite(float(loss))


def test_fan_in_head_init_scales_with_the_input_width():
  # 'fan_in': kernel variance 1 / fan-in (LeCun normal); 'trunc_normal': the official std 0.02.
  x = jnp.ones((4, 64))
  for init, expected in (("fan_in", lambda fan_in: fan_in ** -0.5),
                         ("trunc_normal", lambda _: 0.02)):
    head = DINOHead(hidden_dims=(256,), bottleneck_dim=32, num_prototypes=16, dense_init=init)
    params = head.init(jax.random.key(0), x, train=False)["params"]
    for name, fan_in in (("dense0", 64), ("bottleneck", 256)):
      std = float(np.std(np.asarray(params[name]["kernel"])))
      # truncated_normal(0.02) keeps |x| < 2 sigma, whose std is 0.88 x sigma; lecun_normal
      # rescales its truncated draw to the full variance.
      np.testing.assert_allclose(std, expected(fan_in) * (0.88 if init == "trunc_normal" else 1.0),
                                 rtol=0.1)
  with pytest.raises(ConfigError, match="dino.head_init"):
    setup("dino", dino__head_init="xavier")


def _dino_on_a_mixture(dense_init: str, input_bn: bool, *, offset: float = 0.0, spread: float = 2.0,
                       k: int = 256, steps: int = 300):
  """DINO's head, loss, centre and EMA teacher on a Gaussian mixture (10 clusters in 32-d), views
  = the point plus small noise, a Dense-ReLU encoder, SGD. Returns the teacher's per-sample
  entropy, the entropy of its batch-mean distribution (both nats, at the last step) and the
  cluster purity of the teacher's argmax prototype over all points."""
  import optax
  from flax import linen as nn

  from ssljax import losses

  rng = np.random.default_rng(0)
  means = rng.normal(size=(10, 32)) * spread
  y = rng.integers(0, 10, 2000)
  x_all = (means[y] + rng.normal(size=(2000, 32)) + offset).astype(np.float32)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.relu(nn.Dense(64)(x))
      return DINOHead(hidden_dims=(64,), bottleneck_dim=32, num_prototypes=k,
                      dense_init=dense_init, input_bn=input_bn)(h, train=True)

  net = Net()
  variables = net.init(jax.random.key(0), x_all[:4])
  params, stats = variables["params"], {k_: v for k_, v in variables.items() if k_ != "params"}
  teacher, center = params, jnp.zeros((k,))
  tx = optax.sgd(0.1, momentum=0.9)
  opt = tx.init(params)

  def apply(p, s, x):
    out, new = net.apply({"params": p, **s}, x, mutable=list(s))
    return out, new

  @jax.jit
  def step(params, teacher, stats, center, opt, x1, x2):
    def loss_fn(params):
      s_out = [apply(params, stats, x)[0] for x in (x1, x2)]
      t_out = [jax.lax.stop_gradient(apply(teacher, stats, x)[0]) for x in (x1, x2)]
      return losses.dino_loss(s_out, t_out, center, student_temp=0.1, teacher_temp=0.04), t_out
    (_, t_out), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    params = optax.apply_updates(params, updates)
    teacher = jax.tree.map(lambda t, s: 0.99 * t + 0.01 * s, teacher, params)
    p_t = jax.nn.softmax((t_out[0] - center) / 0.04)
    center = losses.dino_center(center, t_out, momentum=0.9)
    p_mean = p_t.mean(0)
    return (params, teacher, center, opt, jnp.mean(-jnp.sum(p_t * jnp.log(p_t + 1e-12), -1)),
            -jnp.sum(p_mean * jnp.log(p_mean + 1e-12)))

  for _ in range(steps):
    x = x_all[rng.integers(0, 2000, 256)]
    noise = [rng.normal(size=x.shape).astype(np.float32) * 0.3 for _ in range(2)]
    params, teacher, center, opt, ent, mean_ent = step(params, teacher, stats, center, opt,
                                                       x + noise[0], x + noise[1])
  assign = np.asarray(apply(teacher, stats, x_all)[0]).argmax(1)
  purity = sum(np.bincount(y[assign == c]).max() for c in np.unique(assign)) / len(y)
  return float(ent), float(mean_ent), purity


def test_learns_the_clusters_of_a_gaussian_mixture():
  # Neither collapse: a sharp teacher per sample (entropy far below log K = 5.55) that spreads
  # its samples over many prototypes (the batch-mean entropy stays high), and the prototypes
  # follow the clusters (purity ~0.9; chance is ~0.1).
  ent, mean_ent, purity = _dino_on_a_mixture("fan_in", input_bn=False)
  assert ent < 1.5 and mean_ent > 2.5 and purity > 0.7, (ent, mean_ent, purity)


def test_head_input_bn_prevents_the_uniform_collapse_on_shifted_features():
  # Features sharing a large common component (every point shifted by 3, as a CNN's pooled ReLU
  # outputs are) with 1024 prototypes: the head gives every sample one output and centring makes
  # it uniform (teacher entropy ~ log 1024 = 6.93, chance purity); BN on the head's input features
  # removes the common component and the clusters are found.
  ent, mean_ent, purity = _dino_on_a_mixture("fan_in", input_bn=False, offset=3.0, spread=1.0,
                                             k=1024)
  assert ent > 6.5 and purity < 0.4, (ent, mean_ent, purity)
  ent, mean_ent, purity = _dino_on_a_mixture("fan_in", input_bn=True, offset=3.0, spread=1.0,
                                             k=1024)
  assert ent < 1.5 and mean_ent > 3.0 and purity > 0.8, (ent, mean_ent, purity)


def test_view_agreement_is_the_cosine_of_batch_centred_rows():
  # Rows x_i and x_i + y_i with x, y i.i.d. N(0, 1) over K = 4096 columns: the cosine of the
  # centred rows is <x, x + y> / (|x| |x + y|) -> 1 / sqrt(2); unrelated rows (y alone) -> 0.
  x, y = jax.random.normal(jax.random.key(0), (2, 64, 4096))
  np.testing.assert_allclose(float(dino.view_agreement(x, x + y)), 1 / np.sqrt(2), atol=0.02)
  assert abs(float(dino.view_agreement(x, y))) < 0.02
  # A per-column offset shared by all rows (what centring removes) changes nothing.
  np.testing.assert_allclose(float(dino.view_agreement(x + 5.0, x)), 1.0, rtol=1e-5)


def test_loss_logs_the_teachers_agreement_across_the_two_global_crops():
  _, method, params, state, views = setup("dino", input__views__local__crops=0)
  _, (_, metrics, _) = jax.jit(method.loss)(params, state, [views[0], views[0]], jax.random.key(0))
  np.testing.assert_allclose(float(metrics["teacher_view_agreement"]), 1.0, rtol=1e-5)
  _, (_, metrics, _) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  assert float(metrics["teacher_view_agreement"]) < 0.999


def test_dinov2_options_add_their_terms_to_the_loss():
  # centering='sinkhorn': the targets are Sinkhorn-Knopp's over both global crops (the centre is
  # not read); koleo_weight: + w * (KoLeo of each global crop's student backbone features).
  _, method, params, state, views = setup("dino", input__views__local__crops=0,
                                          dino__centering="sinkhorn", dino__koleo_weight=0.5)
  state = {**state, "center": jnp.full_like(state["center"], 7.0)}
  loss, (_, metrics, _) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  assert set(metrics) >= {"dino_loss", "koleo_loss", "teacher_entropy"}
  np.testing.assert_allclose(float(loss), float(metrics["dino_loss"]) +
                             0.5 * float(metrics["koleo_loss"]), rtol=1e-5)
  # The same network with the official centre gives another DINO term on the same draw.
  _, plain, *_ = setup("dino", input__views__local__crops=0, dino__koleo_weight=0.5)
  _, (_, m_plain, _) = jax.jit(plain.loss)(params, state, views, jax.random.key(0))
  assert abs(float(m_plain["dino_loss"]) - float(metrics["dino_loss"])) > 1e-3
  np.testing.assert_allclose(float(m_plain["koleo_loss"]), float(metrics["koleo_loss"]), rtol=1e-5)


def test_bad_dinov2_options_name_the_key():
  with pytest.raises(ConfigError, match="dino.centering='mean' must be one of"):
    setup("dino", dino__centering="mean")
  with pytest.raises(ConfigError, match="dino.sinkhorn_iterations=0"):
    setup("dino", dino__sinkhorn_iterations=0)
  with pytest.raises(ConfigError, match="dino.koleo_weight=-0.1"):
    setup("dino", dino__koleo_weight=-0.1)


def test_sinkhorn_and_koleo_see_the_global_batch():
  # Both normalise over the batch's rows (Sinkhorn-Knopp's column sums, KoLeo's neighbours): 8
  # devices must give 1 device's loss and gradients, as DINOv2's all-reduced sums do.
  _, method, params, state, views = setup("dino", input__views__local__crops=0, batch=16,
                                          dino__centering="sinkhorn", dino__koleo_weight=0.1)
  assert_loss_and_grads_same_on_8_devices(method, params, state, views)
