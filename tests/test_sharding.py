"""Mesh construction and sharding rules."""

import jax
import jax.numpy as jnp
import pytest

from ssljax import sharding
from ssljax.errors import ConfigError
from ssljax.tools import sharding as sharding_tool


def test_mesh_from_config():
  mesh = sharding.make_mesh([("data", -1)])
  assert mesh.shape == {"data": 8}
  mesh = sharding.make_mesh([("data", 4), ("model", 2)])
  assert mesh.shape == {"data": 4, "model": 2}


def test_a_mesh_without_a_free_axis_may_use_the_first_devices():
  # One process: ("data", 1) is a one-device run (tests, debugging), on the first device.
  mesh = sharding.make_mesh([("data", 1)])
  assert mesh.shape == {"data": 1} and list(mesh.devices.flat) == jax.devices()[:1]
  assert sharding.make_mesh([("data", 3)]).devices.size == 3


@pytest.mark.parametrize("bad,needle", [
    ([("data", -1), ("model", 3)], "does not fit 8 devices"),
    ([("data", 16)], "8"),
    ([("model", -1)], "'data' axis"),
    ([("data", -1), ("model", -1)], "at most one"),
    ("data", "pairs"),
])
def test_bad_mesh(bad, needle):
  with pytest.raises(ConfigError, match=needle):
    sharding.make_mesh(bad)


def test_rules_map_every_leaf_and_reject_unknowns():
  mesh = sharding.make_mesh([("data", -1)])
  tree = {"params": {"w": jnp.zeros((4, 4))}, "step": jnp.zeros(())}
  shardings = sharding.tree_shardings(tree, mesh, [(".*", "replicate")])
  assert all(s.is_fully_replicated for s in jax.tree.leaves(shardings))
  with pytest.raises(ConfigError, match="match no rule for parameter 'step'"):
    sharding.tree_shardings(tree, mesh, [("params/.*", "replicate")])
  with pytest.raises(ConfigError, match="unknown"):
    sharding.tree_shardings(tree, mesh, [(".*", "shard_everything")])


def test_batch_divisibility_message():
  mesh = sharding.make_mesh([("data", -1)])
  sharding.check_batch_divides(16, mesh, 1)
  with pytest.raises(ConfigError, match=r"input.batch_size=12 .* multiple of 8"):
    sharding.check_batch_divides(12, mesh, 1)


# ------------------------------------------------------------------------------- fsdp rule


@pytest.mark.parametrize("shape,spec", [
    ((768, 3072), (None, "data")),  # Largest divisible dimension.
    ((3072, 768), ("data", None)),
    ((512, 512), (None, "data")),  # Tie: the last one.
    ((12, 64, 768), (None, None, "data")),
    ((16, 16, 3, 768), (None, None, None, "data")),
    ((1000, 36), ("data", None)),  # 1000 = 8 x 125; 36 is not a multiple of 8.
    ((999, 35), ()),  # No divisible dimension: replicated.
    ((64,), ()),  # Below the default 2**14 elements: replicated.
    ((), ()),  # Scalars: replicated.
])
def test_fsdp_spec_picks_the_largest_divisible_dim(shape, spec):
  assert tuple(sharding.fsdp_spec(shape, 8)) == tuple(spec)


def test_fsdp_spec_threshold_and_one_device():
  assert tuple(sharding.fsdp_spec((64,), 8, min_elements=0)) == ("data",)
  assert tuple(sharding.fsdp_spec((64,), 8, min_elements=65)) == ()
  assert tuple(sharding.fsdp_spec((64,), 8, min_elements=64)) == ("data",)
  assert tuple(sharding.fsdp_spec((4,), 8, min_elements=0)) == ()  # 4 < 8 devices.
  assert tuple(sharding.fsdp_spec((1024, 1024), 1)) == ()  # Nothing to split over.


def _state_like():
  """A TrainState-shaped tree: parameters, AdamW-style moments mirroring them, scalars."""
  params = {"method": {"encoder": {"dense": {"kernel": jnp.zeros((256, 128)),
                                             "bias": jnp.zeros((128,))}},
                       "head": {"kernel": jnp.zeros((128, 10))}}}
  return {"step": jnp.zeros((), jnp.int32), "rng": jnp.zeros((2,), jnp.uint32),
          "params": params, "opt_state": [{"mu": params, "nu": params}, {"count": jnp.zeros(())}]}


def _specs(tree, rules):
  mesh = sharding.make_mesh([("data", -1)])
  shardings = sharding.tree_shardings(tree, mesh, rules)
  return {sharding.path_str(p): tuple(s.spec)
          for p, s in jax.tree_util.tree_leaves_with_path(shardings)}


def test_fsdp_rules_shard_params_and_their_moments_alike():
  specs = _specs(_state_like(), [(".*", "fsdp")])
  kernel = "method/encoder/dense/kernel"
  assert specs[f"params/{kernel}"] == ("data", None)  # 32768 elements >= 2**14.
  assert specs[f"opt_state/0/mu/{kernel}"] == specs[f"opt_state/0/nu/{kernel}"] == ("data", None)
  assert specs["params/method/encoder/dense/bias"] == ()  # Small leaves stay replicated.
  assert specs["step"] == specs["rng"] == specs["opt_state/1/count"] == ()
  # fsdp:0 shards every leaf with a divisible dimension; head/kernel (128, 10) splits on 128.
  specs = _specs(_state_like(), [(".*", "fsdp:0")])
  assert specs["params/method/encoder/dense/bias"] == ("data",)
  assert specs["params/method/head/kernel"] == ("data", None)
  assert specs["rng"] == () and specs["step"] == ()  # (2,) does not divide over 8; a scalar.
  # The first matching rule wins: the head stays replicated, the rest is sharded.
  specs = _specs(_state_like(), [("head/", "replicate"), (".*", "fsdp:0")])
  assert specs["params/method/head/kernel"] == () == specs["opt_state/0/mu/method/head/kernel"]
  assert specs["params/method/encoder/dense/bias"] == ("data",)
  # Spaces around the rule are tolerated (a command-line override may add them).
  assert _specs(_state_like(), [(".*", " fsdp:0 ")])["params/method/head/kernel"] == ("data", None)


@pytest.mark.parametrize("rule", ["fsdp:", "fsdp:x", "fsdp:-3", "fsdp:2.5", "fsdp:1e4"])
def test_malformed_fsdp_rule(rule):
  with pytest.raises(ConfigError, match=f"rule '{rule}' for '.\\*' is malformed.*'fsdp:0'"):
    _specs(_state_like(), [(".*", rule)])


def test_unmatched_fsdp_pattern_names_it_and_how_to_list_paths():
  with pytest.raises(ConfigError) as e:
    _specs(_state_like(), [("encoderr/.*", "fsdp"), (".*", "replicate")])
  message = str(e.value)
  assert "'encoderr/.*'" in message and "python -m ssljax.tools.sharding" in message
  assert "\n" not in message
  # A pattern that matches but wins no leaf (shadowed by an earlier rule) is not a typo.
  _specs(_state_like(), [(".*", "replicate"), ("encoder/", "fsdp")])
  # Unknown rules name the choices, fsdp among them.
  with pytest.raises(ConfigError, match="unknown; choose from .*fsdp"):
    _specs(_state_like(), [(".*", "zero3")])


def test_per_device_bytes_from_shardings():
  mesh = sharding.make_mesh([("data", -1)])
  tree = _state_like()
  abstract = jax.eval_shape(lambda: tree)
  shardings = sharding.tree_shardings(abstract, mesh, [(".*", "fsdp")])
  placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)
  # By hand: three (256, 128) f32 kernels split 8 ways; everything else whole on every device.
  split = 3 * 256 * 128 * 4 // 8
  whole = 4 + 2 * 4 + 3 * (128 + 128 * 10) * 4 + 4
  assert sharding.per_device_bytes(placed) == split + whole
  assert set(sharding.bytes_by_device(placed).values()) == {split + whole}
  # Live arrays give the same answer as their abstract description.
  live = jax.jit(lambda: tree, out_shardings=shardings)()
  assert sharding.per_device_bytes(live) == split + whole
  replicated = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
      a.shape, a.dtype, sharding=sharding.replicated(mesh)), abstract)
  assert sharding.per_device_bytes(replicated) == split * 8 + whole
  with pytest.raises(TypeError, match="needs leaves with a sharding"):
    sharding.per_device_bytes(abstract)


def test_describe_lists_paths_specs_and_bytes():
  mesh = sharding.make_mesh([("data", -1)])
  lines = sharding_tool.describe(jax.eval_shape(_state_like), mesh, [(".*", "fsdp")])
  assert any(line.startswith("params/method/encoder/dense/kernel  (256, 128) float32  "
                             "('data', None)  16384 B/device") for line in lines), lines
  assert lines[-1].startswith("total ")
