"""ViT stochastic depth (``drop_path_rate``): off by default and in evaluation, per-sample drops
with the right expectation in training, the DeiT/DINO linear per-block rates, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.errors import ConfigError
from ssljax.models.vit import TransformerBlock, ViT, drop_path, drop_path_rates


def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


def _vit(rate=0.0, depth=3):
  return ViT(width=32, depth=depth, num_heads=2, mlp_dim=64, patch=4, image_size=16,
             drop_path_rate=rate)


def _images(batch=8, seed=1):
  return jax.random.normal(_key(seed), (batch, 16, 16, 3))


def test_rates_follow_linspace_from_zero_to_rate():
  # DINO / DeiT: dpr = torch.linspace(0, drop_path_rate, depth), written here with NumPy.
  np.testing.assert_allclose(drop_path_rates(0.1, 12), np.linspace(0.0, 0.1, 12), atol=1e-12)
  assert drop_path_rates(0.3, 1) == [0.0]
  assert drop_path_rates(0.0, 4) == [0.0] * 4


def test_rate_zero_is_the_plain_vit_with_or_without_an_rng():
  x = _images()
  plain = _vit(0.0)
  variables = plain.init(_key(), x, train=False)
  ref = plain.apply(variables, x, train=False)
  np.testing.assert_array_equal(plain.apply(variables, x, train=True), ref)
  np.testing.assert_array_equal(
    plain.apply(variables, x, train=True, rngs={"dropout": _key(3)}), ref)


def test_rate_above_zero_changes_nothing_in_eval_or_without_an_rng():
  x = _images()
  variables = _vit(0.0).init(_key(), x, train=False)  # Same parameters whatever the rate.
  ref = _vit(0.0).apply(variables, x, train=False)
  dropping = _vit(0.5)
  np.testing.assert_array_equal(
    dropping.apply(variables, x, train=False, rngs={"dropout": _key(3)}), ref)
  # A train-mode call without the rng (a teacher) is deterministic too.
  np.testing.assert_array_equal(dropping.apply(variables, x, train=True), ref)


def test_train_mode_with_an_rng_drops_whole_samples():
  x = _images(batch=16)
  variables = _vit(0.0).init(_key(), x, train=False)
  ref = np.asarray(_vit(0.0).apply(variables, x, train=False))
  out_a = np.asarray(_vit(0.5).apply(variables, x, train=True, rngs={"dropout": _key(3)}))
  out_b = np.asarray(_vit(0.5).apply(variables, x, train=True, rngs={"dropout": _key(4)}))
  assert not np.allclose(out_a, ref, atol=1e-4)
  assert not np.allclose(out_a, out_b, atol=1e-4)
  # The masks come from the rng stream: the same key gives the same output.
  np.testing.assert_array_equal(
    out_a, np.asarray(_vit(0.5).apply(variables, x, train=True, rngs={"dropout": _key(3)})))
  assert np.isfinite(out_a).all()


def test_drop_path_keeps_or_zeroes_each_sample_with_unbiased_scaling():
  rate = 0.3
  x = jnp.ones((20_000, 3, 4))
  out = np.asarray(drop_path(_key(7), x, rate))
  per_sample = out.reshape(out.shape[0], -1)
  # Each sample's whole branch is either zero or x / (1 - rate): one draw per sample.
  kept = np.all(np.isclose(per_sample, 1.0 / (1.0 - rate)), axis=1)
  dropped = np.all(per_sample == 0.0, axis=1)
  assert np.all(kept | dropped)
  # Bernoulli(0.3) over 20,000 samples: standard error 0.0032, so 0.015 is > 4 sigma.
  assert abs(dropped.mean() - rate) < 0.015
  assert abs(out.mean() - 1.0) < 0.025  # E[out] = x.
  np.testing.assert_array_equal(np.asarray(drop_path(_key(7), x, 0.0)), np.asarray(x))


def test_block_with_rate_one_half_drops_residual_branches_per_sample():
  # With both branches dropped a sample's block output is its input exactly (the identity); with
  # both kept it is the deterministic block's output with branches scaled by 1 / (1 - rate).
  block = TransformerBlock(num_heads=2, mlp_dim=16, drop_path=0.5)
  x = jax.random.normal(_key(2), (64, 5, 8))
  variables = block.init(_key(), x)
  out = np.asarray(block.apply(variables, x, deterministic=False, rngs={"dropout": _key(5)}))
  same = np.all(np.isclose(out, np.asarray(x), atol=1e-6), axis=(1, 2))
  # P(both dropped) = 0.25: some samples are the identity, most are not.
  assert 0 < same.sum() < 64
  np.testing.assert_array_equal(np.asarray(block.apply(variables, x)), np.asarray(
    block.apply(variables, x, deterministic=True, rngs={"dropout": _key(5)})))


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_bad_rate_raises_config_error_naming_the_key(rate):
  with pytest.raises(ConfigError, match="encoder.drop_path_rate"):
    _vit(rate).init(_key(), _images(2), train=False)
