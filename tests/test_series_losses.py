"""TS2Vec and T-Loss losses against float64 NumPy references written from the papers' equations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import losses

# ------------------------------------------------------------------ NumPy references (float64)


def _neg_log_softmax_others(sim, row, col):
  """-log softmax of ``sim[row]`` over the entries j != row, at ``col``."""
  others = [j for j in range(sim.shape[-1]) if j != row]
  lse = np.logaddexp.reduce(sim[row, others])
  return lse - sim[row, col]


def _ref_instance(z1, z2):
  b, t, _ = z1.shape
  if b == 1:
    return 0.0
  z = np.concatenate([z1, z2], axis=0)  # [2B, T, D]
  first, second = [], []
  for s in range(t):
    sim = z[:, s] @ z[:, s].T  # [2B, 2B]
    for i in range(b):
      first.append(_neg_log_softmax_others(sim, i, b + i))
      second.append(_neg_log_softmax_others(sim, b + i, i))
  return (np.mean(first) + np.mean(second)) / 2


def _ref_temporal(z1, z2):
  b, t, _ = z1.shape
  if t == 1:
    return 0.0
  z = np.concatenate([z1, z2], axis=1)  # [B, 2T, D]
  first, second = [], []
  for n in range(b):
    sim = z[n] @ z[n].T  # [2T, 2T]
    for s in range(t):
      first.append(_neg_log_softmax_others(sim, s, t + s))
      second.append(_neg_log_softmax_others(sim, t + s, s))
  return (np.mean(first) + np.mean(second)) / 2


def _ref_max_pool(z):
  b, t, d = z.shape
  out = np.empty((b, t // 2, d))
  for s in range(t // 2):
    out[:, s] = np.maximum(z[:, 2 * s], z[:, 2 * s + 1])
  return out


def _ref_hierarchical(z1, z2, alpha, temporal_unit):
  loss, depth = 0.0, 0
  while z1.shape[1] > 1:
    if alpha != 0:
      loss += alpha * _ref_instance(z1, z2)
    if depth >= temporal_unit and alpha != 1:
      loss += (1 - alpha) * _ref_temporal(z1, z2)
    depth += 1
    z1, z2 = _ref_max_pool(z1), _ref_max_pool(z2)
  if z1.shape[1] == 1:
    if alpha != 0:
      loss += alpha * _ref_instance(z1, z2)
    depth += 1
  return loss / depth


def _views(b, t, d=6, seed=0):
  rng = np.random.default_rng(seed + 100 * b + t)
  z1 = rng.normal(size=(b, t, d))
  z2 = z1 + 0.5 * rng.normal(size=(b, t, d))
  return z1, z2


def _f32(x):
  return jnp.asarray(x, jnp.float32)


# ------------------------------------------------------------------ TS2Vec

SHAPES = [(1, 1), (1, 5), (3, 1), (2, 2), (4, 7), (3, 8), (5, 13)]


@pytest.mark.parametrize("b,t", SHAPES)
def test_instance_and_temporal_match_reference(b, t):
  z1, z2 = _views(b, t)
  inst = jax.jit(losses.ts2vec_instance_loss)(_f32(z1), _f32(z2))
  temp = jax.jit(losses.ts2vec_temporal_loss)(_f32(z1), _f32(z2))
  np.testing.assert_allclose(float(inst), _ref_instance(z1, z2), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(temp), _ref_temporal(z1, z2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("b,t", SHAPES)
def test_hierarchical_matches_reference(b, t):
  z1, z2 = _views(b, t, seed=1)
  settings = list(itertools.product([0.0, 0.5, 1.0], [0, 1]))  # (alpha, temporal_unit)

  @jax.jit
  def all_settings(a, c):  # One compilation for the six settings.
    return jnp.stack([losses.ts2vec_hierarchical_loss(a, c, alpha=alpha, temporal_unit=unit)
                      for alpha, unit in settings])

  got = np.asarray(all_settings(_f32(z1), _f32(z2)))
  want = [_ref_hierarchical(z1, z2, alpha, unit) for alpha, unit in settings]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"settings {settings}")


def test_masking_equals_the_official_tril_triu_layout():
  # The official code drops the diagonal by shifting: row i keeps columns j < i in place and
  # moves columns j > i one to the left, so i -> B + i sits at B + i - 1 and B + i -> i at i.
  b, t = 4, 5
  z1, z2 = _views(b, t, seed=2)

  def drop_diagonal(sim):  # [..., M, M] -> [..., M, M - 1]
    return np.tril(sim, -1)[..., :-1] + np.triu(sim, 1)[..., 1:]

  def nls(logits):
    return np.logaddexp.reduce(logits, axis=-1, keepdims=True) - logits

  z = np.concatenate([z1, z2], axis=0).transpose(1, 0, 2)
  lg = nls(drop_diagonal(z @ z.transpose(0, 2, 1)))
  i = np.arange(b)
  inst = (lg[:, i, b + i - 1].mean() + lg[:, b + i, i].mean()) / 2
  z = np.concatenate([z1, z2], axis=1)
  lg = nls(drop_diagonal(z @ z.transpose(0, 2, 1)))
  s = np.arange(t)
  temp = (lg[:, s, t + s - 1].mean() + lg[:, t + s, s].mean()) / 2
  got_inst = jax.jit(losses.ts2vec_instance_loss)(_f32(z1), _f32(z2))
  got_temp = jax.jit(losses.ts2vec_temporal_loss)(_f32(z1), _f32(z2))
  np.testing.assert_allclose(float(got_inst), inst, rtol=1e-5)
  np.testing.assert_allclose(float(got_temp), temp, rtol=1e-5)


def test_gradients_are_finite():
  z1, z2 = _views(3, 6, seed=3)
  grads = jax.jit(jax.grad(losses.ts2vec_hierarchical_loss, argnums=(0, 1)))(_f32(z1), _f32(z2))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)


def test_separated_identical_views_beat_random_ones():
  # One orthogonal, large-norm vector per (series, timestamp): each view's positive dominates
  # every softmax, at every scale (the max of two non-negative one-hots stays orthogonal).
  b, t = 4, 8
  z = 5.0 * np.eye(b * t).reshape(b, t, b * t)
  loss = jax.jit(losses.ts2vec_hierarchical_loss)
  separated = float(loss(_f32(z), _f32(z)))
  r1, r2 = _views(b, t, d=b * t, seed=4)
  random = float(loss(_f32(r1), _f32(r2)))
  assert separated < 1e-3 < random
  assert separated < 0.01 * random


def test_ts2vec_rejects_bad_shapes():
  with pytest.raises(ValueError):
    losses.ts2vec_instance_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4, 4)))
  with pytest.raises(ValueError):
    losses.ts2vec_hierarchical_loss(jnp.zeros((2, 0, 4)), jnp.zeros((2, 0, 4)))


# ------------------------------------------------------------------ T-Loss


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def _ref_triplet(ref, pos, neg, negative_penalty):
  b, k = ref.shape[0], neg.shape[0]
  total = 0.0
  for n in range(b):
    total -= _log_sigmoid(ref[n] @ pos[n])
    for j in range(k):
      total -= negative_penalty / k * _log_sigmoid(-(ref[n] @ neg[j, n]))
  return total / b


@pytest.mark.parametrize("b,k,penalty", [(1, 1, 1.0), (4, 3, 1.0), (6, 5, 5.0)])
def test_triplet_matches_reference(b, k, penalty):
  rng = np.random.default_rng(b + k)
  ref, pos = rng.normal(size=(b, 8)), rng.normal(size=(b, 8))
  neg = rng.normal(size=(k, b, 8))
  fn = jax.jit(lambda r, p, n: losses.tloss_triplet_loss(r, p, n, negative_penalty=penalty))
  got = float(fn(_f32(ref), _f32(pos), _f32(neg)))
  np.testing.assert_allclose(got, _ref_triplet(ref, pos, neg, penalty), rtol=1e-5)


def test_triplet_default_averages_the_negatives():
  # Official code: multiplicative_ratio = negative_penalty / K; penalty K gives the paper's sum.
  rng = np.random.default_rng(0)
  ref, pos, neg = (rng.normal(size=s).astype(np.float32) for s in [(3, 4), (3, 4), (4, 3, 4)])
  pos_only = -np.mean(_log_sigmoid(np.sum(ref.astype(np.float64) * pos, -1)))
  avg = float(losses.tloss_triplet_loss(ref, pos, neg)) - pos_only
  summed = float(losses.tloss_triplet_loss(ref, pos, neg, negative_penalty=4.0)) - pos_only
  np.testing.assert_allclose(summed, 4 * avg, rtol=1e-5)


def test_triplet_rejects_bad_shapes():
  with pytest.raises(ValueError):
    losses.tloss_triplet_loss(jnp.zeros((3, 4)), jnp.zeros((3, 4)), jnp.zeros((2, 4, 4)))
  with pytest.raises(ValueError):
    losses.tloss_triplet_loss(jnp.zeros((3, 4)), jnp.zeros((3, 4)), jnp.zeros((0, 3, 4)))


@pytest.mark.parametrize("b,length,k,min_length", [(2, 1, 1, 1), (5, 9, 4, 1), (3, 16, 2, 5)])
def test_sampler_windows_are_valid(b, length, k, min_length):
  seeds = 512
  sample = jax.jit(jax.vmap(lambda key: losses.tloss_sample_windows(
      key, b, length, num_negatives=k, min_length=min_length)))
  out = sample(jax.random.split(jax.random.PRNGKey(0), seeds))
  pos_start, pos_len, ref_start, ref_len, neg_row, neg_start = (np.asarray(x) for x in out)
  assert pos_start.shape == ref_start.shape == (seeds, b)
  assert pos_len.shape == ref_len.shape == (seeds,)
  assert neg_row.shape == neg_start.shape == (seeds, k, b)
  pl, rl = pos_len[:, None], ref_len[:, None]
  assert np.all((min_length <= pos_len) & (pos_len <= ref_len) & (ref_len <= length))
  assert np.all((0 <= ref_start) & (ref_start + rl <= length))
  assert np.all((ref_start <= pos_start) & (pos_start + pl <= ref_start + rl))  # pos in ref
  assert np.all((0 <= neg_start) & (neg_start + pl[:, None] <= length))
  assert np.all((0 <= neg_row) & (neg_row < b))
  assert np.all(neg_row != np.arange(b))  # never the anchor's own row
  # The draws cover their ranges.
  assert set(pos_len) == set(range(min_length, length + 1))
  for row in range(b):
    assert set(neg_row[..., row].ravel()) == set(range(b)) - {row}


def test_sampler_rejects_bad_arguments():
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError):
    losses.tloss_sample_windows(key, 1, 8, num_negatives=2)
  with pytest.raises(ValueError):
    losses.tloss_sample_windows(key, 4, 8, num_negatives=0)
  with pytest.raises(ValueError):
    losses.tloss_sample_windows(key, 4, 8, num_negatives=2, min_length=9)


def test_window_mask():
  start = np.array([[0, 3], [5, 2]])
  got = np.asarray(jax.jit(losses.window_mask, static_argnums=2)(start, 3, 8))
  want = np.zeros((2, 2, 8), bool)
  for idx in np.ndindex(start.shape):
    want[idx][start[idx]:start[idx] + 3] = True
  np.testing.assert_array_equal(got, want)
  # Per-window lengths; a window may be empty.
  got = np.asarray(losses.window_mask(np.array([1, 4]), np.array([2, 0]), 6))
  np.testing.assert_array_equal(got, [[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
