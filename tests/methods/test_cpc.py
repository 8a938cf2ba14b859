"""CPC as the method wires it: the InfoNCE over future frames against the paper's equation, the
padding (no frame past a clip's length is read), the frame count, config errors, and (slow) that
it learns on a folder of synthetic .wav files written here."""

import importlib
import math
import os
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_setup import setup

from ssljax import data, losses, methods, train
from ssljax.errors import ConfigError
from ssljax.models import cpc as cpc_models


def _reference_step_losses(pred, z, valid):
  """Eq. 4 of van den Oord et al. (2018) in float64 loops: for each step k and each anchor (b, t)
  with t + k a valid frame of row b, -log( exp(z_{b,t+k} . q) / sum_{(b',t') valid}
  exp(z_{b',t'} . q) ) with q = W_k c_{b,t} = pred[k-1, b, t]; the mean over the anchors of each
  k; the accuracy is the share of anchors whose positive has the highest score."""
  pred, z = np.asarray(pred, np.float64), np.asarray(z, np.float64)
  k_steps, b_size, t_size, _ = pred.shape
  candidates = [(b, t) for b in range(b_size) for t in range(t_size) if valid[b, t]]
  out_loss, out_acc = [], []
  for k in range(1, k_steps + 1):
    terms, hits = [], []
    for b in range(b_size):
      for t in range(t_size):
        if t + k < t_size and valid[b, t + k]:
          q = pred[k - 1, b, t]
          scores = np.array([z[bb, tt] @ q for bb, tt in candidates])
          pos = z[b, t + k] @ q
          top = scores.max()
          terms.append(-(pos - (top + np.log(np.sum(np.exp(scores - top))))))
          hits.append(pos >= top)
    out_loss.append(np.mean(terms) if terms else 0.0)
    out_acc.append(np.mean(hits) if hits else 0.0)
  return np.array(out_loss), np.array(out_acc)


def _draw(b=4, t=9, d=5, k=3, lengths=(9, 6, 2, 0), seed=0):
  rng = np.random.default_rng(seed)
  pred = rng.normal(size=(k, b, t, d)).astype(np.float32)
  z = rng.normal(size=(b, t, d)).astype(np.float32)
  valid = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
  return pred, z, valid


@pytest.mark.parametrize("lengths", [(9, 9, 9, 9), (9, 6, 2, 0), (3, 1, 4, 1)])
def test_infonce_matches_the_papers_equation(lengths):
  pred, z, valid = _draw(lengths=lengths)
  want_loss, want_acc = _reference_step_losses(pred, z, valid)
  got_loss, got_acc = jax.jit(losses.cpc_step_losses)(pred, z, valid)
  np.testing.assert_allclose(np.asarray(got_loss), want_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_acc), want_acc, atol=1e-6)
  total = float(jax.jit(losses.cpc_loss)(pred, z, valid))
  np.testing.assert_allclose(total, np.mean(want_loss), rtol=1e-5)


def test_equal_scores_give_log_of_the_valid_frames_and_perfect_scores_zero():
  _, _, valid = _draw()
  z = np.zeros((4, 9, 5), np.float32)
  loss = losses.cpc_loss(np.ones((3, 4, 9, 5), np.float32), z, valid)
  np.testing.assert_allclose(float(loss), math.log(valid.sum()), rtol=1e-6)
  # One-hot frames, predictions that point at the right one with a large margin: loss -> 0.
  b, t, k = 2, 6, 2
  z = np.eye(b * t, dtype=np.float32).reshape(b, t, b * t)
  pred = np.zeros((k, b, t, b * t), np.float32)
  for s in range(1, k + 1):
    pred[s - 1, :, :t - s] = 50.0 * z[:, s:]
  step_loss, acc = losses.cpc_step_losses(pred, z, np.ones((b, t), bool))
  assert float(jnp.max(step_loss)) < 1e-6 and np.all(np.asarray(acc) == 1.0)


def test_padded_frames_are_never_anchors_positives_or_negatives():
  pred, z, valid = _draw(lengths=(9, 6, 2, 0))
  junk = np.random.default_rng(7).normal(size=z.shape).astype(np.float32) * 100.0
  z_junk = np.where(valid[..., None], z, junk)
  pred_junk = np.where(valid[None, ..., None], pred, junk[None])
  want = losses.cpc_step_losses(pred, z, valid)
  got = losses.cpc_step_losses(pred_junk, z_junk, valid)
  np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
  # A row without valid frames still gives finite gradients (zeros).
  g = jax.grad(lambda p: losses.cpc_loss(p, z, valid))(pred)
  assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[:, 3] == 0.0)


def _net(channels=8, context=6):
  enc = cpc_models.CPCEncoder(channels=channels)
  return cpc_models.CPCNet(encoder=enc, context_dim=context)


def test_frames_count_and_the_paper_downsampling():
  kernels, strides = (10, 8, 4, 4, 4), (5, 4, 2, 2, 2)
  assert math.prod(strides) == 160 and cpc_models.receptive_field(kernels, strides) == 465
  net = _net()
  encode = jax.jit(lambda v, x: net.apply(v, {"series": x, "valid": jnp.ones(x.shape[:2], bool)},
                                          method=net.sequences))
  variables = net.init(jax.random.key(0), {"series": jnp.zeros((1, 465, 1)),
                                           "valid": jnp.ones((1, 465), bool)})
  for n in (465, 466, 624, 625, 2000):
    z, _, valid = encode(variables, jnp.zeros((1, n, 1)))
    assert z.shape[1] == cpc_models.num_frames(n, kernels, strides) == int(valid.sum())
    # Frame f reads samples [160 f, 160 f + 465): the last one ends inside the clip.
    assert 160 * (z.shape[1] - 1) + 465 <= n < 160 * z.shape[1] + 465
  assert cpc_models.num_frames(464, kernels, strides) == 0


def test_valid_frames_and_contexts_equal_encoding_the_clip_alone():
  net = _net()
  t = 2000
  lengths = np.array([2000, 1300, 700, 100])
  rng = np.random.default_rng(3)
  x = rng.normal(size=(4, t, 1)).astype(np.float32)
  garbage = np.where(np.arange(t)[None, :, None] < lengths[:, None, None], x, 9.0)
  zeros = np.where(np.arange(t)[None, :, None] < lengths[:, None, None], x, 0.0)
  batch = lambda s: {"series": jnp.asarray(s), "length": jnp.asarray(lengths, jnp.int32)}  # noqa
  variables = net.init(jax.random.key(1), batch(zeros))
  z, c, valid = net.apply(variables, batch(garbage), method=net.sequences)
  for i, n in enumerate(lengths):
    alone = {"series": jnp.asarray(x[i:i + 1, :n]), "valid": jnp.ones((1, n), bool)}
    za, ca, va = net.apply(variables, alone, method=net.sequences)
    f = za.shape[1]
    assert int(valid[i].sum()) == f == int(va.sum())
    np.testing.assert_allclose(np.asarray(z[i, :f]), np.asarray(za[0]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(c[i, :f]), np.asarray(ca[0]), atol=1e-5)
  # The representation (the mean context over valid frames) ignores what the padding holds.
  np.testing.assert_allclose(np.asarray(net.apply(variables, batch(garbage))),
                             np.asarray(net.apply(variables, batch(zeros))), atol=1e-6)


def test_method_loss_and_representation_ignore_the_padding():
  _, method, params, state, views = setup("cpc")
  view = views[0]
  valid = np.asarray(view["valid"])
  assert not valid.all()  # The synthetic clips are shorter than the 1 s buffer.
  junk = np.where(valid[..., None], np.asarray(view["series"]), 5.0)
  other = {"series": jnp.asarray(junk), "valid": view["valid"]}
  loss_fn = jax.jit(method.loss)
  a, (_, metrics, rep_a) = loss_fn(params, state, [view], jax.random.key(0))
  b, (_, _, rep_b) = loss_fn(params, state, [other], jax.random.key(0))
  np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(rep_a), np.asarray(rep_b), atol=1e-6)
  assert 0.0 <= float(metrics["cpc_accuracy"]) <= 1.0
  # Untrained, every W_k is zero (cpc.zero_init): all scores are equal and the loss is exactly
  # log(number of valid frames in the batch), the InfoNCE of a uniform guess.
  frames = float(metrics["valid_frames"]) * valid.shape[0]
  np.testing.assert_allclose(float(a), math.log(frames), rtol=1e-5)
  length = jnp.sum(view["valid"], axis=1).astype(jnp.int32)
  rep = jax.jit(method.represent)(params, state, {"series": jnp.asarray(junk), "length": length})
  np.testing.assert_allclose(np.asarray(rep["representation"]), np.asarray(rep_a), atol=1e-5)


def test_config_errors_name_the_key():
  from method_setup import config_of

  config = config_of("cpc")
  info = data.get_info(config.input.data)
  config.cpc.steps = 60  # 1 s at 8 kHz gives 48 frames.
  with pytest.raises(ConfigError, match="cpc.steps=60"):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)
  config = config_of("cpc")
  config.encoder.name = "resnet18"
  with pytest.raises(ConfigError, match="encoder.name"):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)
  config = config_of("cpc")
  config.encoder.strides = (5, 4)
  with pytest.raises(ConfigError, match="encoder.kernels"):
    methods.make(config, total_steps=10, steps_per_epoch=5, info=info)


# ----------------------------------------------------------------------- learning (slow)


def _write_sounds(root, per_class=40, rate=8000, seed=0):
  """Four classes of sounds, each clip with its own pitch, phase, loudness, length and noise:
  steady tones, rising chirps, falling chirps, and gated noise bursts (16-bit mono)."""
  rng = np.random.default_rng(seed)
  for kind in ("tone", "up", "down", "bursts"):
    os.makedirs(root / kind)
    for i in range(per_class):
      n = int(rate * rng.uniform(0.6, 1.0))
      t = np.arange(n) / rate
      f = np.exp(rng.uniform(np.log(200), np.log(1200)))
      phase = rng.uniform(0, 2 * np.pi)
      if kind == "tone":
        y = np.sin(2 * np.pi * f * t + phase)
      elif kind in ("up", "down"):
        sweep = 1.5 * (1 if kind == "up" else -1)  # 1.5 octaves over the clip.
        inst = f * 2.0 ** (sweep * t / t[-1])
        y = np.sin(2 * np.pi * np.cumsum(inst) / rate + phase)
      else:
        y = rng.normal(size=n) * (np.sin(2 * np.pi * rng.uniform(3, 8) * t + phase) > 0)
      y = rng.uniform(0.2, 0.7) * y / np.abs(y).max() + rng.normal(size=n) * 0.02
      pcm = np.clip(np.round(y * 32767), -32768, 32767).astype("<i2")
      with wave.open(str(root / kind / f"{i:03d}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@pytest.mark.slow
def test_learns_on_synthetic_wav_files_without_collapse(tmp_path):
  _write_sounds(tmp_path / "sounds")
  c = importlib.import_module("experiments.cpc").get_config("data=wav,steps=120")
  c.input.data.path = str(tmp_path / "sounds")
  c.input.batch_size = 16
  c.encoder.channels = 64
  c.encoder.context_dim = 64
  c.mesh = (("data", 1),)
  c.checkpoint_every_steps = c.total_steps
  c.eval.evals = "classification"
  c.eval.linear = False
  c.eval.at_init = True
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  summary = {k: round(results[k], 4) for k in ("init_knn_top1", "knn_top1", "rankme",
                                               "init_rankme", "embedding_std")}
  assert results["knn_top1"] >= results["init_knn_top1"] + 0.05, summary
  assert results["rankme"] > 4.0, summary
  assert results["embedding_std"] * math.sqrt(results["embedding_dim"]) > 0.1, summary
