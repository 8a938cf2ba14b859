"""The ``fsdp`` sharding rule on a real train state: memory split 8 ways, same results as replicate.

The expected per-device bytes are computed here from the rule's definition (a leaf of >= 2**14
elements with a dimension divisible by 8 holds 1/8 per device, any other leaf is whole on every
device) and from the live arrays' ``addressable_shards``, not from ``sharding.per_device_bytes``,
which is checked against them.
"""

import collections
import math

import jax
import numpy as np
import pytest

from experiments import mae
from ssljax import data, sharding, train
from ssljax.errors import ConfigError

N = 8  # tests/conftest.py's fake CPU devices.


def _info(size):
  return data.DatasetInfo(name="synthetic", num_classes=10, image_shape=(size, size, 3),
                          num_train=1000, num_eval=100)


def _vit_b_config(rules):
  c = mae.get_config("data=imagenet2012")  # ViT-B/16 encoder at 224 px, AdamW.
  c.sharding_rules = rules
  # The full ViT-B/16 encoder; one decoder block instead of eight and no online probe keep the
  # live state at ~1.1 GB (params + AdamW mu and nu) and its creation under a minute on 2 cores.
  c.mae.decoder_depth = 1
  c.eval.online_probe = False
  return c


def _expected_per_device(tree, *, min_elements=2**14):
  """Bytes per device under ``(".*", "fsdp")`` on 8 devices, from the rule's definition."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    nbytes = math.prod(leaf.shape) * leaf.dtype.itemsize
    splits = math.prod(leaf.shape) >= min_elements and any(d % N == 0 for d in leaf.shape)
    total += nbytes // N if splits else nbytes
  return total


def _live_bytes_by_device(tree):
  counts = collections.Counter()
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      counts[shard.device] += shard.data.nbytes
  return counts


@pytest.fixture(scope="module")
def vit_b():
  """ViT-B/16 MAE state created for real (not abstract) with ``(".*", "fsdp")`` on 8 devices."""
  run = train.build(_vit_b_config(((".*", "fsdp"),)), info=_info(224))
  state = train.create_state(run)
  jax.block_until_ready(state)
  yield run, state
  del state


@pytest.mark.slow
def test_vit_b_state_is_split_eight_ways(vit_b):
  run, state = vit_b
  params = state.params["method"]["encoder"]
  n_params = sum(x.size for x in jax.tree.leaves(params))
  assert 85e6 < n_params < 87e6, n_params  # ViT-B/16 has 86M parameters: this is the real model.

  total = sum(x.nbytes for x in jax.tree.leaves(state))
  small = sum(x.nbytes for x in jax.tree.leaves(state) if x.size < 2**14)
  live = _live_bytes_by_device(state)
  assert sorted(d.id for d in live) == list(range(N))
  expected = _expected_per_device(state)
  for device, held in live.items():
    assert held == expected, (device, held, expected)
    assert held <= total / N * 1.05 + small, (held, total)
  # The planning helper reads the same number from shardings alone, live or abstract.
  assert sharding.per_device_bytes(state) == expected
  assert sharding.per_device_bytes(run.abstract_state) == expected

  # Parameters and both AdamW moments of a large leaf: 1/8 of it per device, on its largest dim.
  by_path = {sharding.path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(state)}
  for layer, shape, shard in (("fc1", (768, 3072), (768, 3072 // N)),
                              ("fc2", (3072, 768), (3072 // N, 768))):
    suffix = f"method/encoder/block0/{layer}/kernel"
    found = {p: x for p, x in by_path.items() if p.endswith(suffix)}
    assert {p.split("/")[0] for p in found} == {"params", "opt_state"}
    assert any("/mu/" in p for p in found) and any("/nu/" in p for p in found), sorted(found)
    for x in found.values():
      assert x.shape == shape and {s.data.shape for s in x.addressable_shards} == {shard}

  # The same state under the replicate rule (abstract: 8 live copies would need ~9 GB of RAM).
  replicated = train.build(_vit_b_config(((".*", "replicate"),)), info=_info(224))
  assert sharding.per_device_bytes(replicated.abstract_state) == total
  assert expected < total / N * 1.05 + small < total / 7


def _tiny_config(rule):
  c = mae.get_config("runlocal")  # ssljax's nano ViT (width 64, 4 blocks) at 16 px, AdamW.
  c.sharding_rules = ((".*", rule),)
  return c


def _batch(run, size, seed):
  rng = np.random.default_rng(seed)
  batch_size = int(run.config.input.batch_size)
  return sharding.global_batch({
      "image": rng.integers(0, 256, size=(batch_size, size, size, 3), dtype=np.uint8),
      "label": rng.integers(0, 10, size=(batch_size,), dtype=np.int32),
  }, run.mesh)


def _train(rule, steps=3):
  config = _tiny_config(rule)
  size = int(config.input.image_size)
  run = train.build(config, info=_info(size))
  state = train.create_state(run)
  initial = jax.tree.map(np.asarray, state.params)
  sharded = [not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params)]
  losses = []
  for i in range(steps):
    state, metrics = run.step_fn(state, _batch(run, size, seed=i))
    losses.append(float(metrics["loss"]))
  out_sharded = [not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params)]
  assert out_sharded == sharded  # The step keeps the state in its declared layout.
  return initial, losses, jax.tree.map(np.asarray, state), sharded


@pytest.mark.slow
def test_fsdp_steps_equal_replicated_steps():
  init_f, losses_f, state_f, sharded_f = _train("fsdp:0")
  init_r, losses_r, state_r, sharded_r = _train("replicate")
  assert not any(sharded_r)
  # fsdp:0 really splits the tiny model: every leaf with a dimension divisible by 8 (all but a
  # few, e.g. a 4x4 patch kernel's (4, 4, 3, 64) splits on 64 too).
  assert sum(sharded_f) > 0.9 * len(sharded_f), (sum(sharded_f), len(sharded_f))
  jax.tree.map(np.testing.assert_array_equal, init_f, init_r)  # Same initial values.
  assert len(set(losses_r)) == 3  # The steps train (different losses), so equality means something.
  # float32: the sharded step sums gradients with reduce-scatters instead of all-reduces, so the
  # reduction order differs by a few ulps. Measured: losses agree to 1e-7 relative, every leaf of
  # the state to < 1e-5 of its largest value, except one kind of leaf (below).
  np.testing.assert_allclose(losses_f, losses_r, rtol=1e-6)
  checked = 0
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state_f), jax.tree.leaves(state_r),
                          strict=True):
    name = sharding.path_str(path)
    if name.endswith("attn/key/bias"):
      # Attention key biases get a zero gradient in exact arithmetic (q . b_k is the same for every
      # key, and softmax ignores a constant), so their gradients are pure rounding noise (~1e-10)
      # that AdamW normalises into lr-sized random moves: only bounded, never equal.
      limit = 1e-8 if "/mu/" in name else 1e-16 if "/nu/" in name else 3 * 2 * 1e-3  # 3 x 2 lr.
      assert np.abs(a).max() <= limit and np.abs(b).max() <= limit, name
      continue
    scale = float(np.abs(b).max()) if b.size else 0.0
    # Query biases reach the loss only through q . k differences across keys, so their gradients
    # are small and their rounding relatively large: 2.2e-5 of the leaf's largest value on one
    # machine (block3's query bias, both sides in float32), under 1e-5 on another.
    rel = 1e-4 if name.endswith("attn/query/bias") else 1e-5
    np.testing.assert_allclose(a, b, rtol=0, atol=rel * scale + 1e-30, err_msg=name)
    checked += 1
  assert checked > 100, checked


def test_build_rejects_unmatched_fsdp_pattern():
  config = _tiny_config("replicate")
  config.sharding_rules = (("encoderr/.*", "fsdp"), (".*", "replicate"))
  with pytest.raises(ConfigError, match=r"fsdp pattern 'encoderr/\.\*' matches no path.*"
                                        r"python -m ssljax\.tools\.sharding"):
    train.build(config, info=_info(16))


@pytest.mark.parametrize("rule", ["fsdp:", "fsdp:many", "fsdp:-1", "fsdp:1.5"])
def test_build_rejects_malformed_fsdp_rule(rule):
  config = _tiny_config(rule)
  with pytest.raises(ConfigError, match=f"rule '{rule}' for '.*' is malformed"):
    train.build(config, info=_info(16))
