"""DINO: centring update, teacher on global crops only, temperature schedule, multi-crop input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax.errors import ConfigError
from ssljax.methods import _common, dino
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import DINOHead


def _teacher_logits(config, state, x):
  encoder, _ = _common.make_backbone(config)
  d = config.dino
  net = EncoderHead(encoder=encoder, head=DINOHead(
      hidden_dims=tuple(d.hidden_dims), bottleneck_dim=d.bottleneck_dim,
      num_prototypes=d.num_prototypes, use_bn=d.use_bn))
  (_, z), _ = _common.apply_train(net, state["teacher"]["params"], state["teacher"]["state"], x)
  return z


def test_views_are_two_global_then_local_crops():
  config, method, *_ = setup("dino")
  sizes = [v.size for v in method.views]
  assert sizes == [16, 16] + [8] * config.input.views.local.crops


def test_centre_update_matches_the_formula():
  config, method, params, state, views = setup("dino")
  state = {**state, "center": jnp.full_like(state["center"], 0.5)}
  _, (new_state, _, _) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  # Official update_center: c <- m c + (1 - m) * mean of the teacher output over both global crops
  # (the two crops go through the teacher together, as one batch).
  t = _teacher_logits(config, state, jnp.concatenate(views[:2]))
  expected = 0.9 * 0.5 + 0.1 * jnp.mean(t, axis=0)
  np.testing.assert_allclose(new_state["center"], expected, rtol=1e-5, atol=1e-6)


def test_teacher_sees_only_global_crops():
  _, method, params, state, views = setup("dino")
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
