"""TS2Vec's pieces as the method wires them: the loss on a valid prefix, the crop alignment, SWA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax import losses
from ssljax.data import series_views


@pytest.mark.parametrize("length", [2, 3, 7, 12])
@pytest.mark.parametrize("alpha,unit", [(0.5, 0), (0.0, 0), (1.0, 0), (0.5, 1)])
def test_masked_loss_equals_the_official_loss_on_the_slice(length, alpha, unit):
  # The official loss sees only the overlap, z[:, :length]; ours sees fixed-size arrays whose tail
  # holds anything, and must not read it.
  k1, k2 = jax.random.split(jax.random.key(length))
  z1, z2 = jax.random.normal(k1, (5, 12, 6)), jax.random.normal(k2, (5, 12, 6))
  want = losses.ts2vec_hierarchical_loss(z1[:, :length], z2[:, :length], alpha=alpha,
                                         temporal_unit=unit)
  junk = jax.random.normal(jax.random.key(99), z1.shape) * 50
  tail = (jnp.arange(12) >= length)[None, :, None]
  got = jax.jit(lambda a, b, n: losses.ts2vec_hierarchical_loss_masked(
      a, b, n, alpha=alpha, temporal_unit=unit))(jnp.where(tail, junk, z1),
                                                   jnp.where(tail, -junk, z2), length)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)


def test_align_overlap_moves_crop_a_onto_crop_b():
  z_a = jnp.arange(2 * 8, dtype=jnp.float32).reshape(2, 8, 1)
  z_b = 100 + z_a
  za, zb, keep = series_views.align_overlap(z_a, z_b, 3, 4)
  np.testing.assert_array_equal(np.asarray(za[0, :, 0]), [3, 4, 5, 6, 0, 0, 0, 0])
  np.testing.assert_array_equal(np.asarray(zb[1, :, 0]), [108, 109, 110, 111, 0, 0, 0, 0])
  assert list(np.asarray(keep)) == [True] * 4 + [False] * 4


def test_swa_is_the_uniform_average_of_the_weights_seen():
  _, method, params, state, views = setup("ts2vec")
  seen = [jax.tree.map(lambda p, i=i: p + i, params) for i in range(3)]  # weights after steps 0-2
  for step, p in enumerate(seen):
    state = method.update(p, state, jnp.asarray(step))
  want = jax.tree.map(lambda *ps: sum(ps) / 3, *seen)
  for a, b in zip(jax.tree.leaves(state["swa"]), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
  # Evaluation reads the average, not the current weights.
  rows = {"series": views[0]["a"]["series"], "length": jnp.full((16,), 150, jnp.int32)}
  a = method.represent(seen[-1], state, rows)["representation"]
  b = method.represent(state["swa"], state, rows)["representation"]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.parametrize("override,message", [
    ({"input.data.name": "digits"}, "method='ts2vec' trains on time series"),
    ({"ts2vec.temporal_unit": 9}, "crops of at least 1024 timestamps, longer than the series"),
    ({"input.data.name": "ucr:NoSuchSet"}, "not among the sets that ship with aeon"),
    ({"input.data.normalize": "zscore"}, "input.data.normalize='zscore': choose one of"),
])
def test_bad_settings_stop_before_anything_is_built(override, message, tmp_path):
  from experiments import ts2vec
  from ssljax import train
  from ssljax.errors import ConfigError

  config = ts2vec.get_config("runlocal")
  config.update_from_flattened_dict(override)
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_default_run_length_follows_the_official_size_rule(tmp_path):
  # ts2vec.py's fit: n_iters = 200 if train_data.size <= 100000 else 600 (N x T x C values).
  from experiments import common  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for n, want in ((100, 200), (101, 600)):  # 100 x 250 x 4 = 100,000 values; 101 x ... above.
    path = tmp_path / f"s{n}.npz"
    np.savez(path, train_series=rng.normal(size=(n, 250, 4)), train_labels=np.arange(n) % 2,
             test_series=rng.normal(size=(4, 250, 4)), test_labels=np.arange(4) % 2)
    assert common.ts2vec_iterations({"name": "npz", "path": str(path)}) == want
  assert common.ts2vec_iterations({"name": "npz", "path": None}) == 200  # Path not given yet.
