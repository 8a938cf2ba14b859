"""MLP heads: shapes, biases, where BatchNorm sits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models import MLP


def _init(module, x):
  return module.init(jax.random.key(0), x, train=False)


def test_projector_shapes_and_layout():
  module = MLP(hidden_dims=(16, 12), out_dim=8)
  x = jnp.ones((4, 6))
  variables = _init(module, x)
  params = variables["params"]
  assert set(params) == {"dense0", "bn0", "dense1", "bn1", "out"}
  assert params["dense0"]["kernel"].shape == (6, 16)
  assert params["dense1"]["kernel"].shape == (16, 12)
  assert params["out"]["kernel"].shape == (12, 8)
  assert params["out"]["bias"].shape == (8,)
  # BatchNorm between layers, none after the last Dense by default.
  assert set(variables["batch_stats"]) == {"bn0", "bn1"}
  out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out.shape == (4, 8) and out.dtype == jnp.float32


def test_no_bias():
  params = _init(MLP(hidden_dims=(16,), out_dim=8, use_bias=False), jnp.ones((2, 6)))["params"]
  assert "bias" not in params["dense0"] and "bias" not in params["out"]
  # BatchNorm keeps its own affine parameters.
  assert set(params["bn0"]) == {"scale", "bias"}


def test_last_bn_has_no_affine_and_standardises():
  module = MLP(hidden_dims=(16,), out_dim=8, last_bn=True)
  x = jax.random.normal(jax.random.key(1), (32, 6))
  variables = _init(module, x)
  assert "out_bn" not in variables["params"]
  assert set(variables["batch_stats"]) == {"bn0", "out_bn"}
  out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.std(0), 1.0, atol=1e-2)


def test_linear_head_without_hidden_layers():
  module = MLP(hidden_dims=(), out_dim=3)
  variables = _init(module, jnp.ones((2, 5)))
  assert set(variables["params"]) == {"out"}
  assert module.apply(variables, jnp.ones((2, 5)), train=False).shape == (2, 3)


@pytest.mark.parametrize("train", [False, True])
def test_bfloat16_compute_keeps_float32_params(train):
  module = MLP(hidden_dims=(16,), out_dim=8, dtype=jnp.bfloat16)
  variables = _init(module, jnp.ones((4, 6)))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, _ = module.apply(variables, jnp.ones((4, 6)), train=train, mutable=["batch_stats"])
  assert out.dtype == jnp.float32
