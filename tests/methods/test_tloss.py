"""T-Loss as the method wires it: the windows of its view, the loss against encoding the cropped
windows one by one (the official code's way), and the whole-series representation."""

import jax
import jax.numpy as jnp
import method_setup
import numpy as np
import pytest
from method_setup import setup

from ssljax import data, losses, methods
from ssljax.data.series_views import TLossWindows
from ssljax.errors import ConfigError
from ssljax.methods import tloss

B, T, K = 6, 20, 4
# Fixed-length rows (the official TripletLoss), and varying lengths (TripletLossVaryingLength)
# down to one timestamp.
LENGTHS = {"fixed": [T] * B, "varying": [T, 1, 7, 3, 12, 2]}


def _batch(lengths, t=T, c=2):
  x = np.array(jax.random.normal(jax.random.key(5), (len(lengths), t, c)))
  x[np.arange(t)[None, :] >= np.asarray(lengths)[:, None]] = 0.0  # Zero padding, as the data.
  return {"series": jnp.asarray(x), "length": jnp.asarray(lengths, jnp.int32)}


@pytest.mark.parametrize("kind", ["fixed", "varying"])
@pytest.mark.parametrize("min_length", [1, 3])
def test_windows_lie_inside_their_series_and_pos_inside_ref(kind, min_length):
  batch = _batch(LENGTHS[kind])
  view = TLossWindows(num_negatives=K, min_length=min_length)
  d = jax.jit(jax.vmap(lambda key: view(key, batch)["draws"]))(
      jax.random.split(jax.random.key(0), 256))
  d = {k: np.asarray(v) for k, v in d.items()}
  n = np.asarray(LENGTHS[kind])
  lo = np.minimum(min_length, n)
  rs, rl, ps, pl = d["ref_start"], d["ref_len"], d["pos_start"], d["pos_len"]
  assert np.all((lo <= pl) & (pl <= rl) & (rl <= n))
  assert np.all((0 <= rs) & (rs + rl <= n))  # Never past the series' own length.
  assert np.all((rs <= ps) & (ps + pl <= rs + rl))  # The positive inside the reference.
  row, ns, nl = d["neg_row"], d["neg_start"], d["neg_len"]
  assert np.all(row != np.arange(B)[:, None])  # Negatives from other rows...
  for b in range(B):
    assert set(row[:, b].ravel()) == set(range(B)) - {b}  # ...any of them.
  n_neg = n[row]
  assert np.all((np.minimum(min_length, n_neg) <= nl) & (nl <= n_neg))
  assert np.all((0 <= ns) & (ns + nl <= n_neg))
  if kind == "fixed":  # One positive length and one reference length per step; negatives too.
    assert np.all(pl == pl[:, :1]) and np.all(rl == rl[:, :1]) and np.all(nl == pl[:, :, None])
    assert set(pl.ravel()) == set(range(min_length, T + 1))
  else:  # Each row's own lengths, covering its range.
    for b in range(B):
      assert set(pl[:, b]) == set(range(lo[b], n[b] + 1))
    assert len(set(pl[0])) > 1


@pytest.mark.parametrize("kind", ["fixed", "varying"])
def test_windows_are_the_cropped_series_at_the_front(kind):
  batch = _batch(LENGTHS[kind])
  out = jax.jit(TLossWindows(num_negatives=K))(jax.random.key(3), batch)
  x, d = np.asarray(batch["series"]), {k: np.asarray(v) for k, v in out["draws"].items()}
  assert out["neg"]["series"].shape == (B, K, T, 2) and out["neg"]["valid"].shape == (B, K, T)
  # Every array has the batch as its leading axis (the view shards along it).
  assert all(a.shape[0] == B for a in jax.tree.leaves(out))

  def check(window, row, start, size):
    np.testing.assert_array_equal(window["series"][:size], x[row, start:start + size])
    np.testing.assert_array_equal(window["series"][size:], 0.0)
    np.testing.assert_array_equal(window["valid"], np.arange(T) < size)

  o = jax.tree.map(np.asarray, out)
  for b in range(B):
    check({n: o["ref"][n][b] for n in ("series", "valid")}, b, d["ref_start"][b], d["ref_len"][b])
    check({n: o["pos"][n][b] for n in ("series", "valid")}, b, d["pos_start"][b], d["pos_len"][b])
    for k in range(K):
      check({n: o["neg"][n][b, k] for n in ("series", "valid")}, d["neg_row"][b, k],
            d["neg_start"][b, k], d["neg_len"][b, k])


def _encode_alone(config, params, crops):
  """The method's encoder on each cropped window on its own, as the official code encodes them
  (windows of one length share a call)."""
  encode = jax.jit(tloss.make_encoder(config).apply)
  out = [None] * len(crops)
  for size in {len(c) for c in crops}:
    idx = [i for i, c in enumerate(crops) if len(c) == size]
    z = encode({"params": params["encoder"]}, jnp.stack([jnp.asarray(crops[i]) for i in idx]))
    for i, z_i in zip(idx, z, strict=True):
      out[i] = z_i
  return jnp.stack(out)


def _gunpoint(config, batch=8):
  it = data.make_train_iterator(config.input.data, global_batch_size=batch, seed=0)
  return {k: jnp.asarray(v) for k, v in next(it).items() if k in ("series", "length")}


@pytest.mark.parametrize("kind", ["fixed", "varying"])
def test_loss_equals_the_triplet_loss_of_the_cropped_windows_encoded_alone(kind):
  config, method, params, state, _ = setup("tloss")
  batch = _gunpoint(config)
  if kind == "varying":  # The same series cut to lengths from 1 to T - 1 (zeros after).
    t = batch["series"].shape[1]
    lengths = jnp.asarray([t - 1, 1, 2, 9, 5, 3, 12, 4], jnp.int32)  # Few window sizes.
    keep = jnp.arange(t)[None, :] < lengths[:, None]
    batch = {"series": jnp.where(keep[..., None], batch["series"], 0.0), "length": lengths}
  views = [jax.jit(method.views[0])(jax.random.key(4), batch)]
  x = np.asarray(batch["series"])
  d = {k: np.asarray(v) for k, v in views[0]["draws"].items()}
  b, k = d["neg_row"].shape
  if kind == "varying":
    assert len(set(d["pos_len"])) > 1 and np.all(d["ref_start"] + d["ref_len"] <= lengths)
  got, (_, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(0))

  def crop(row, start, size):
    return x[row, start:start + size]

  ref = _encode_alone(config, params, [crop(i, d["ref_start"][i], d["ref_len"][i])
                                       for i in range(b)])
  pos = _encode_alone(config, params, [crop(i, d["pos_start"][i], d["pos_len"][i])
                                       for i in range(b)])
  neg = _encode_alone(config, params, [crop(d["neg_row"][i, j], d["neg_start"][i, j],
                                            d["neg_len"][i, j])
                                       for j in range(k) for i in range(b)]).reshape(k, b, -1)
  want = losses.tloss_triplet_loss(ref, pos, neg,
                                   negative_penalty=float(config.tloss.negative_penalty))
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rep), np.asarray(ref), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(metrics["pos_length"]), d["pos_len"].mean(), rtol=1e-6)


def test_represent_is_the_pooled_encoding_of_each_whole_series():
  config, method, params, state, _ = setup("tloss")
  batch = _gunpoint(config)
  t = batch["series"].shape[1]
  lengths = jnp.asarray([t, 3, 60, t, 1, 100, t - 1, 20], jnp.int32)
  keep = jnp.arange(t)[None, :] < lengths[:, None]
  batch = {"series": jnp.where(keep[..., None], batch["series"], 0.0), "length": lengths}
  out = jax.jit(method.represent)(params, state, batch)
  assert out["representation"].shape == (8, int(config.encoder.width))
  np.testing.assert_array_equal(out["representation"], out["embedding"])
  alone = _encode_alone(config, params, [batch["series"][i, :int(lengths[i])] for i in range(8)])
  np.testing.assert_allclose(out["representation"], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override,message", [
    ({"encoder.name": "ts2vec"}, "use encoder.name='causal_cnn'"),
    ({"tloss.negative_penalty": 0.0}, "tloss.negative_penalty=0.0 must be > 0"),
    ({"tloss.num_negatives": 0}, "tloss.num_negatives=0 must be >= 1"),
    ({"tloss.min_length": 151}, "tloss.min_length=151 is longer than the series"),
    ({"input.batch_size": 1}, "use a batch of at least 2"),
])
def test_bad_settings_raise(override, message):
  config = method_setup.config_of("tloss")
  config.update_from_flattened_dict(override)
  info = data.get_info(config.input.data)
  with pytest.raises(ConfigError, match=message):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)
