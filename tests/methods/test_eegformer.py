"""EEGFormer as the method wires it: the VQ loss against a float64 NumPy reference, which part of
the loss reaches the codebook and which the encoder, the EMA codebook update, and a toy run on
synthetic 4-channel motifs (codes used, codes predictive of the motif, reconstruction falls)."""

import jax
import jax.numpy as jnp
import method_setup
import numpy as np
import optax
import pytest

from ssljax import data, losses, methods
from ssljax.data.sources import DatasetInfo
from ssljax.errors import ConfigError
from ssljax.methods import eegformer
from ssljax.models import eegformer as eeg


def _numpy_loss(pred, target, h, codebook, mask, beta, codebook_weight):
  """The spec's loss in float64 NumPy: nearest code by brute force, then
  mean_masked(mean_P (x - x_hat)^2) + w mean (h - v)^2 + beta mean (h - v)^2 (the values of the
  codebook and commitment terms are equal; only their gradients differ)."""
  k = np.argmin(((h[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
  v = codebook[k]
  err = ((pred - target) ** 2).mean(-1)
  recon = err.mean() if mask is None else (err * mask).sum() / mask.sum()
  vq = ((h - v) ** 2).mean()
  return recon + codebook_weight * vq + beta * vq


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("beta,codebook_weight", [(0.25, 1.0), (0.25, 0.0), (1.0, 1.0)])
def test_loss_equals_the_numpy_reference(masked, beta, codebook_weight):
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(3, 4, 5, 6)), rng.normal(size=(3, 4, 5, 6))
  h, codebook = rng.normal(size=(60, 8)), rng.normal(size=(9, 8))
  mask = (rng.random((3, 4, 5)) < 0.4).astype(np.float64) if masked else None
  want = _numpy_loss(pred, target, h, codebook, mask, beta, codebook_weight)

  def ours(pred, target, h, codebook, mask):
    _, _, v = eeg.vector_quantize(h, codebook)
    return losses.eegformer_loss(pred, target, h, v, mask, beta=beta,
                                 codebook_weight=codebook_weight)

  f32 = lambda a: None if a is None else jnp.asarray(a, jnp.float32)  # noqa: E731
  got = jax.jit(ours)(f32(pred), f32(target), f32(h), f32(codebook), f32(mask))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_loss_is_zero_when_h_is_a_code_and_the_decoder_reconstructs_x():
  rng = np.random.default_rng(1)
  codebook = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)
  h = codebook[jnp.asarray(rng.integers(0, 7, size=30))]
  q, _, v = eeg.vector_quantize(h, codebook)
  np.testing.assert_array_equal(np.asarray(q), np.asarray(h))
  x = jnp.asarray(rng.normal(size=(2, 3, 5, 4)), jnp.float32)
  for mask in (None, jnp.ones((2, 3, 5))):
    assert float(losses.eegformer_loss(x, x, h, v, mask, beta=0.25)) == 0.0
  assert float(losses.eegformer_loss(x + 0.1, x, h, v, beta=0.25)) > 0


def test_codebook_term_trains_only_the_codebook_and_commitment_only_the_encoder():
  rng = np.random.default_rng(2)
  h = jnp.asarray(rng.normal(size=(20, 4)), jnp.float32)
  codebook = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)

  def term(fn):
    return jax.grad(lambda h, v: fn(h, eeg.vector_quantize(h, v)[2]), argnums=(0, 1))(h, codebook)

  g_h, g_v = term(losses.vq_codebook_loss)
  np.testing.assert_array_equal(np.asarray(g_h), 0.0)
  # d/dv mean (h - v)^2 = -2 (h - v) / (M D), summed over the h assigned to each code.
  k = np.asarray(eeg.vector_quantize(h, codebook)[1])
  want = np.zeros((6, 4))
  np.add.at(want, k, -2 * (np.asarray(h) - np.asarray(codebook)[k]) / h.size)
  np.testing.assert_allclose(np.asarray(g_v), want, rtol=1e-5, atol=1e-7)
  g_h, g_v = term(losses.vq_commitment_loss)
  np.testing.assert_array_equal(np.asarray(g_v), 0.0)
  np.testing.assert_allclose(np.asarray(g_h),
                             2 * (np.asarray(h) - np.asarray(codebook)[k]) / h.size, rtol=1e-5,
                             atol=1e-7)
  # The reconstruction term reaches h through the straight-through estimator, never the codebook.
  g_h, g_v = jax.grad(lambda h, v: jnp.sum(eeg.vector_quantize(h, v)[0] ** 2), (0, 1))(h, codebook)
  np.testing.assert_array_equal(np.asarray(g_v), 0.0)
  np.testing.assert_allclose(np.asarray(g_h), 2 * np.asarray(codebook)[k], rtol=1e-6)


def test_masked_patch_mse_scores_only_the_masked_patches():
  pred = jnp.zeros((1, 1, 3, 2))
  target = jnp.asarray([[[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]]])
  mask = jnp.asarray([[[0.0, 1.0, 1.0]]])
  np.testing.assert_allclose(float(losses.masked_patch_mse(pred, target, mask)), (4 + 9) / 2)
  np.testing.assert_allclose(float(losses.masked_patch_mse(pred, target)), (1 + 4 + 9) / 3)


def test_ema_update_follows_the_formula_initialises_from_data_and_reseeds_dead_codes():
  rng = np.random.default_rng(3)
  k, d, decay, threshold = 5, 3, 0.9, 1.0
  size = np.array([4.0, 0.5, 2.0, 1.05, 3.0])
  embed_sum = rng.normal(size=(k, d))
  counts = np.array([6.0, 0.0, 1.0, 0.0, 3.0])
  sums, picks = rng.normal(size=(k, d)), rng.normal(size=(k, d))
  state = {"codebook": jnp.zeros((k, d)), "cluster_size": jnp.asarray(size),
           "embed_sum": jnp.asarray(embed_sum), "dead_codes": jnp.zeros(()),
           "batch": {"counts": jnp.asarray(counts), "sums": jnp.asarray(sums),
                     "candidates": jnp.asarray(picks)}}
  new = eegformer.ema_codebook_update(state, jnp.asarray(7), decay=decay,
                                      dead_threshold=threshold)
  # VQ-VAE appendix A.1 with Laplace smoothing, in float64.
  n = decay * size + (1 - decay) * counts
  m = decay * embed_sum + (1 - decay) * sums
  smoothed = (n + 1e-5) / (n.sum() + k * 1e-5) * n.sum()
  want = m / smoothed[:, None]
  dead = n < threshold  # code 1 (0.45) and code 3 (0.945)
  assert list(dead) == [False, True, False, True, False]
  want[dead] = picks[dead]
  np.testing.assert_allclose(np.asarray(new["codebook"]), want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(new["cluster_size"]), np.where(dead, threshold, n),
                             rtol=1e-6)
  assert float(new["dead_codes"]) == 2
  first = eegformer.ema_codebook_update(state, jnp.asarray(0), decay=decay,
                                        dead_threshold=threshold)
  np.testing.assert_allclose(np.asarray(first["codebook"]), picks, rtol=1e-6)


def test_method_loss_is_the_eegformer_loss_of_its_pieces():
  # The literal objective (codebook term, no masking): the method's loss against the pieces
  # computed one by one with the same parameters.
  config, method, params, state, views = method_setup.setup(
      "eegformer", eegformer__codebook_update="loss", eegformer__mask_ratio=0.0)
  value, (_, metrics, rep) = jax.jit(method.loss)(params, state, views, jax.random.key(0))
  net, _ = eegformer.make_net(config, length=views[0]["series"].shape[1])

  @jax.jit
  def pieces(params, view):
    target, h = net.apply({"params": params["net"]}, view, method=net.encode)
    q, k, _ = eeg.vector_quantize(h.reshape(-1, h.shape[-1]), params["codebook"])
    return target, h, net.apply({"params": params["net"]}, q.reshape(h.shape),
                                method=net.decode), k

  target, h, pred, k = pieces(params, views[0])
  want = _numpy_loss(np.asarray(pred, np.float64), np.asarray(target, np.float64),
                     np.asarray(h, np.float64).reshape(-1, h.shape[-1]),
                     np.asarray(params["codebook"], np.float64), None, 0.25, 1.0)
  np.testing.assert_allclose(float(value), want, rtol=1e-4)
  assert int(metrics["codes_used"]) == len(set(np.asarray(k).tolist()))
  np.testing.assert_allclose(np.asarray(rep), np.asarray(h).mean(axis=(1, 2)), rtol=1e-5,
                             atol=1e-6)
  # Only the codes in use get a gradient.
  g = jax.jit(jax.grad(lambda p: method.loss(p, state, views, jax.random.key(0))[0]))(params)
  used = np.zeros(params["codebook"].shape[0], bool)
  used[np.asarray(k)] = True
  norms = np.abs(np.asarray(g["codebook"])).sum(-1)
  assert np.all(norms[used] > 0) and np.all(norms[~used] == 0)


def test_masking_scores_the_masked_share_of_patches():
  config, method, params, state, views = method_setup.setup("eegformer",
                                                            eegformer__mask_ratio=0.5)
  loss = jax.jit(method.loss)
  value, (new_state, metrics, _) = loss(params, state, views, jax.random.key(0))
  # EMA mode: the batch statistics count every token once, masked or not.
  b, t, c = views[0]["series"].shape
  counts = np.asarray(new_state["batch"]["counts"])
  n = eeg.num_patches(eeg.spectral_length(t, int(config.eegformer.window)),
                      int(config.eegformer.patch), int(config.eegformer.stride))
  assert counts.sum() == b * c * n
  assert float(metrics["codes_used"]) == (counts > 0).sum()
  # Another draw of the mask scores other patches: another loss.
  other, _ = loss(params, state, views, jax.random.key(1))
  assert float(other) != float(value)


# ------------------------------------------------------------------------------------- toy


def _motifs(rng, count, t=128, c=4):
  """Each series: 4 channels of one motif type (0 sinusoid bursts, 1 spikes, 2 random-walk noise),
  plus a little white noise."""
  labels = rng.integers(0, 3, size=count)
  x = 0.05 * rng.normal(size=(count, t, c))
  time = np.arange(t)
  for i, y in enumerate(labels):
    for ch in range(c):
      if y == 0:
        centre, freq = rng.uniform(30, 98), rng.uniform(0.15, 0.3)
        x[i, :, ch] += np.exp(-0.5 * ((time - centre) / 12) ** 2) * np.sin(
            2 * np.pi * freq * time + rng.uniform(0, 6.3))
      elif y == 1:
        x[i, rng.choice(t, 3, replace=False), ch] += rng.choice([-3.0, 3.0], 3)
      else:
        walk = np.cumsum(rng.normal(size=t))
        x[i, :, ch] += (walk - walk.mean()) / (walk.std() + 1e-8)
  return x.astype(np.float32), labels


def test_toy_motifs_use_several_codes_that_predict_the_motif_and_reconstruction_improves():
  rng = np.random.default_rng(0)
  x_train, y_train = _motifs(rng, 192)
  x_test, y_test = _motifs(rng, 96)
  config = method_setup.config_of("eegformer")
  config.encoder.update(dict(width=32, depth=2, num_heads=2, mlp_dim=64))
  config.eegformer.update(dict(num_codes=16, decoder_width=32, decoder_depth=1, decoder_heads=2,
                               decoder_mlp_dim=64, window=0, patch=8, stride=4, mask_ratio=0.0))
  info = DatasetInfo(name="toy", num_classes=3, image_shape=None, num_train=192, num_eval=96,
                     features=(("series", (128, 4), "float32"), ("length", (), "int32")))
  method = methods.make(config, total_steps=150, steps_per_epoch=6, info=info)
  full = lambda x: {"series": jnp.asarray(x), "length": jnp.full((len(x),), 128, jnp.int32)}  # noqa
  params, state = method.init(jax.random.key(0), method.views[0](None, full(x_train[:2])))
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, state, opt, batch, i):
    view = method.views[0](None, batch)
    (_, (state, metrics, _)), g = jax.value_and_grad(method.loss, has_aux=True)(
        params, state, [view], jax.random.fold_in(jax.random.key(1), i))
    updates, opt = tx.update(g, opt, params)
    params = optax.apply_updates(params, updates)
    return params, method.update(params, state, i), opt, metrics

  recon = []
  for i in range(150):
    idx = rng.choice(192, 32, replace=False)
    params, state, opt, metrics = step(params, state, opt, full(x_train[idx]), jnp.asarray(i))
    recon.append(float(metrics["recon_mse"]))
  assert np.mean(recon[-10:]) < 0.9 * np.mean(recon[:10]), (recon[:10], recon[-10:])

  # Code histograms per series (the encoder on the unmasked series, then the codebook).
  net, _ = eegformer.make_net(config, length=128)

  @jax.jit
  def codes(batch):
    _, h = net.apply({"params": params["net"]}, batch, method=net.encode)
    z = net.apply({"params": params["net"]}, h, method=net.project)
    return eeg.vector_quantize(z.reshape(-1, z.shape[-1]), state["codebook"])[1]

  def histogram(x):
    k = np.asarray(codes(full(x))).reshape(len(x), -1)
    return np.stack([np.bincount(row, minlength=16) for row in k]).astype(np.float64)

  h_train, h_test = histogram(x_train), histogram(x_test)
  assert (h_train.sum(0) > 0).sum() > 1  # More than one code in use.
  # Multinomial naive Bayes on the code counts (Laplace smoothing 1), fitted on the training
  # series: the spec's "codes are predictive of the motif".
  log_p = np.log(np.stack([h_train[y_train == y].sum(0) + 1 for y in range(3)]))
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  accuracy = np.mean(np.argmax(h_test @ log_p.T, axis=1) == y_test)
  assert accuracy > 0.6, accuracy  # Chance is 1/3.


@pytest.mark.parametrize("override,message", [
    ({"encoder.name": "ts2vec"}, "use encoder.name='eegformer'"),
    ({"eegformer.patch": 61}, "eegformer.patch=61 is longer than each channel's spectral"),
    ({"eegformer.mask_ratio": 0.99}, "eegformer.mask_ratio=0.99 masks no patch or every"),
    ({"eegformer.codebook_update": "kmeans"}, "eegformer.codebook_update='kmeans' is not"),
    ({"eegformer.amplitude": "db"}, "eegformer.amplitude='db' is not supported"),
    ({"eegformer.window": 1}, "eegformer.window=1 must be 0"),
    ({"eegformer.window": 101}, "eegformer.window=101 is longer than the series"),
    ({"encoder.num_heads": 3}, "encoder.num_heads=3 must divide encoder.width=16"),
    ({"eegformer.num_codes": 0}, "eegformer.num_codes=0 must be an integer >= 1"),
    ({"eegformer.beta": -1.0}, "eegformer.beta=-1.0 must be a number >= 0"),
    ({"eegformer.code_dim": -2}, "eegformer.code_dim=-2 must be 0"),
])
def test_bad_settings_raise(override, message):
  config = method_setup.config_of("eegformer")
  config.update_from_flattened_dict(override)
  info = data.get_info(config.input.data)
  with pytest.raises(ConfigError, match=message):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)
