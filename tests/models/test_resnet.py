"""ResNet encoder: shapes, parameter counts, stems, zero-init residuals, BatchNorm state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.errors import ConfigError
from ssljax.models import ResidualBlock, ResNet, make_encoder, num_params
from ssljax.models.resnet import conv_kernel_init


# XLA compiles the 'rbg' generator several times faster on CPU than the default threefry, and the
# properties tested here do not depend on which random numbers the initialisers draw.
def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


def _init(module, x):
  # One jitted program compiles faster than the op-by-op (eager) initialisation of a whole net.
  return jax.jit(lambda key: module.init(key, x, train=False))(_key())


def _init_shapes(module, image_size, batch=2):
  x = jnp.zeros((batch, image_size, image_size, 3))
  return jax.eval_shape(lambda: _init(module, x))


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet_tiny"])
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_output_shape(name, stem):
  module, dim = make_encoder(name, stem=stem, width=8)
  # Channels double per stage: 4 stages of basic blocks end at 8 x width, bottlenecks at 32 x;
  # the tiny one's 2 stages at 2 x width.
  assert dim == {"resnet50": 8 * 32, "resnet_tiny": 8 * 2}.get(name, 8 * 8)
  x = jnp.zeros((2, 32, 32, 3))
  variables = _init_shapes(module, 32)
  out = jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
  assert out.shape == (2, dim)
  assert out.dtype == jnp.float32


def _conv_bn(k, c_in, c_out):
  # Conv without bias (k*k*c_in*c_out) followed by BatchNorm (scale and bias: 2*c_out). Running
  # mean/var are not parameters (they sit in 'batch_stats'), just as torchvision's count excludes
  # buffers.
  return k * k * c_in * c_out + 2 * c_out


def _resnet_param_count(stage_sizes, bottleneck, width=64):
  """Counts conv + BN parameters of a torchvision-layout ResNet without its fc layer."""
  total = _conv_bn(7, 3, width)  # stem
  c_in = width
  for i, blocks in enumerate(stage_sizes):
    planes = width * 2**i
    c_out = planes * (4 if bottleneck else 1)
    for j in range(blocks):
      if bottleneck:
        total += _conv_bn(1, c_in, planes) + _conv_bn(3, planes, planes)
        total += _conv_bn(1, planes, c_out)
      else:
        total += _conv_bn(3, c_in, planes) + _conv_bn(3, planes, planes)
      if (i > 0 and j == 0) or c_in != c_out:
        total += _conv_bn(1, c_in, c_out)  # projection shortcut
      c_in = c_out
  return total


@pytest.mark.parametrize(
  "name, stage_sizes, bottleneck, expected",
  [
    # torchvision's totals minus the fc layer (512*1000+1000 or 2048*1000+1000 parameters):
    # resnet18 11,689,512 - 513,000; resnet34 21,797,672 - 513,000; resnet50 25,557,032 - 2,049,000.
    ("resnet18", (2, 2, 2, 2), False, 11_176_512),
    ("resnet34", (3, 4, 6, 3), False, 21_284_672),
    ("resnet50", (3, 4, 6, 3), True, 23_508_032),
  ],
)
def test_param_count_matches_standard(name, stage_sizes, bottleneck, expected):
  assert _resnet_param_count(stage_sizes, bottleneck) == expected
  module, _ = make_encoder(name)
  variables = _init_shapes(module, 64, batch=1)
  assert num_params(variables["params"]) == expected
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))


def _stage_resolutions(stem):
  module, _ = make_encoder("resnet18", stem=stem, width=8)
  x = jnp.zeros((1, 32, 32, 3))
  variables = _init_shapes(module, 32, batch=1)
  apply = lambda v: module.apply(
    v, x, train=False, capture_intermediates=True, mutable=["intermediates"]
  )
  _, state = jax.eval_shape(apply, variables)
  inter = state["intermediates"]
  return [inter[f"stage{i}_block1"]["__call__"][0].shape[1:3] for i in (1, 2, 3, 4)]


def test_cifar_stem_keeps_resolution():
  assert _stage_resolutions("cifar") == [(32, 32), (16, 16), (8, 8), (4, 4)]
  assert _stage_resolutions("imagenet") == [(8, 8), (4, 4), (2, 2), (1, 1)]


# Small nets keep the number of distinct parameter shapes (each one an XLA compile of the random
# initialiser on CPU) low; the wiring under test is the same as in the full-size models.
def _tiny(block="basic", **kwargs):
  return ResNet(stage_sizes=(2, 1), block=block, width=4, stem="cifar", **kwargs)


@pytest.mark.parametrize("block, last", [("basic", "conv2"), ("bottleneck", "conv3")])
def test_zero_init_residual_zeroes_last_bn_scale(block, last):
  x = jnp.zeros((1, 8, 8, 3))
  params = _init(_tiny(block, zero_init_residual=True), x)["params"]
  blocks = [k for k in params if k.startswith("stage")]
  assert blocks == ["stage1_block1", "stage1_block2", "stage2_block1"]
  for name in blocks:
    np.testing.assert_array_equal(params[name][last]["bn"]["scale"], 0.0)
    # The other BN scales (and the projection shortcut's) keep their default of 1.
    np.testing.assert_array_equal(params[name]["conv1"]["bn"]["scale"], 1.0)
  np.testing.assert_array_equal(params["stage2_block1"]["shortcut"]["bn"]["scale"], 1.0)
  plain = _init(_tiny(block), x)["params"]
  np.testing.assert_array_equal(plain["stage1_block1"][last]["bn"]["scale"], 1.0)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_block_is_identity(block):
  features = 8 if block == "basic" else 2
  module = ResidualBlock(features=features, block=block, zero_init_residual=True)
  # Block inputs come after a ReLU, so they are non-negative and relu(0 + x) == x.
  x = jax.nn.relu(jax.random.normal(_key(1), (2, 5, 5, 8)))
  variables = _init(module, x)
  for train in (False, True):
    out = module.apply(variables, x, train=train, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_conv_init_is_kaiming_fan_out():
  kernel = conv_kernel_init(_key(), (3, 3, 64, 64), jnp.float32)
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2.0 / (3 * 3 * 64)), rtol=0.05)


def test_batch_stats_update_only_in_train_mode():
  module = _tiny()
  x = jax.random.normal(_key(1), (4, 8, 8, 3)) * 2.0 + 1.0
  variables = _init(module, x)
  assert set(variables) == {"params", "batch_stats"}
  apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
  _, updated = apply(variables, x, train=True, mutable=("batch_stats",))
  changed = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updated["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))
  # Eval mode reads the running statistics and leaves them as they are.
  out_eval, state = apply(variables, x, train=False, mutable=("batch_stats",))
  same = jax.tree.map(
    lambda a, b: bool(jnp.all(a == b)), variables["batch_stats"], state["batch_stats"]
  )
  assert all(jax.tree.leaves(same))
  assert out_eval.shape == (4, module.features)


def test_bfloat16_compute_keeps_float32_params_and_output():
  module = _tiny(dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 3))
  variables = _init(module, x)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, _ = jax.jit(lambda v: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
  assert out.shape == (2, 8) and out.dtype == jnp.float32


@pytest.mark.parametrize(
  "kwargs, key",
  [
    (dict(name="resnet101"), "encoder.name"),
    (dict(name="resnet18", stem="tiny"), "encoder.stem"),
    (dict(name="resnet18", width=0), "encoder.width"),
  ],
)
def test_bad_config_raises(kwargs, key):
  name = kwargs.pop("name")
  with pytest.raises(ConfigError, match=key):
    make_encoder(name, **kwargs)


def _grads(module, variables, x):
  def loss(params):
    y, _ = module.apply({**variables, "params": params}, x, train=True, mutable=("batch_stats",))
    return jnp.sum(jnp.sin(y))
  f = jax.jit(jax.value_and_grad(loss))
  return f, f(variables["params"])


def _float64_grads(variables, x):
  """Gradients of the plain Flax model in float64: the reference for the float32 paths."""
  with jax.enable_x64(True):
    module, _ = make_encoder("resnet18", stem="cifar", width=8, dtype=jnp.float64)
    v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    _, (_, grads) = _grads(module, v64, np.asarray(x, np.float64))
    return jax.tree.map(np.asarray, grads)


def _assert_close_to(grads, reference):
  # float32 against float64: measured within 6e-6 of each leaf's largest entry (ResNet-18 w8,
  # batch 8-16). A wrong formula or a miscompiled kernel is off by percents (see below).
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
    np.testing.assert_allclose(g, r, rtol=0, atol=1e-4 * float(np.abs(r).max()) + 1e-7)


def test_cpu_kernels_keep_the_variables_and_the_values():
  # cpu_kernels=True (ssljax.cpu): ssljax's BatchNorm and each training-mode conv input through
  # resnet._materialized (a lax.cond both of whose branches are the identity, so XLA cannot
  # re-fuse BN + ReLU into the kernel gradient's transpose). Speed only: the same variables (a
  # checkpoint of one loads into the other), the same loss as the plain Flax model, and
  # gradients that match the float64 reference. (Measured on jaxlib 0.10.2: under ssljax's
  # XLA:CPU convolution flag, the *plain* Flax graph's kernel gradient of one conv is 1.2% off
  # the float64 reference, which is why "auto" keeps the CPU kernels on the CPU backend.)
  cpu, _ = make_encoder("resnet18", stem="cifar", width=8, cpu_kernels=True)
  plain, _ = make_encoder("resnet18", stem="cifar", width=8, cpu_kernels=False)
  x = jax.random.normal(_key(2), (8, 16, 16, 3))
  variables = _init(cpu, x)
  assert jax.tree.structure(variables) == jax.tree.structure(_init(plain, x))
  f, (loss_m, grads_m) = _grads(cpu, variables, x)
  assert " conditional(" in f.lower(variables["params"]).compile().as_text()  # The path is taken.
  f_plain, (loss_p, _) = _grads(plain, variables, x)
  assert " conditional(" not in f_plain.lower(variables["params"]).compile().as_text()
  np.testing.assert_allclose(loss_m, loss_p, rtol=1e-5)
  _assert_close_to(grads_m, _float64_grads(variables, x))


def test_cpu_materialised_conv_inputs_change_no_value(monkeypatch):
  # The identity cond alone: bit-for-bit the same program otherwise, so a tight tolerance.
  from ssljax.models import resnet

  module, _ = make_encoder("resnet18", stem="cifar", width=8, cpu_kernels=True)
  x = jax.random.normal(_key(2), (8, 16, 16, 3))
  variables = _init(module, x)
  _, (loss_m, grads_m) = _grads(module, variables, x)
  monkeypatch.setattr(resnet, "_materialized", lambda v, witness: v)
  f_plain, (loss_p, grads_p) = _grads(module, variables, x)
  assert " conditional(" not in f_plain.lower(variables["params"]).compile().as_text()
  np.testing.assert_allclose(loss_m, loss_p, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_m,
               grads_p)


@pytest.mark.slow
def test_cpu_kernels_under_sharded_kernels():
  # The conditional's predicate reads one element of the conv kernel. With kernels split over 8
  # devices (an FSDP layout) and the batch split too, the step still compiles and gives the
  # float64 reference's values.
  from jax.sharding import Mesh, NamedSharding
  from jax.sharding import PartitionSpec as P

  cpu, _ = make_encoder("resnet18", stem="cifar", width=8, cpu_kernels=True)
  x = jax.random.normal(_key(3), (16, 16, 16, 3))
  variables = _init(cpu, x)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  split = lambda a: jax.device_put(  # noqa: E731 - last axis split where it divides by 8.
      a, NamedSharding(mesh, P(*([None] * (a.ndim - 1)), "data") if a.shape[-1] % 8 == 0
                       else P()))
  sharded = {**variables, "params": jax.tree.map(split, variables["params"])}
  x8 = jax.device_put(x, NamedSharding(mesh, P("data")))
  assert not sharded["params"]["stem"]["conv"]["kernel"].sharding.is_fully_replicated
  f, (_, grads_m) = _grads(cpu, sharded, x8)
  assert " conditional(" in f.lower(sharded["params"]).compile().as_text()
  _assert_close_to(grads_m, _float64_grads(variables, x))
