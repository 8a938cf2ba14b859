"""T-Loss (Franceschi, Dieuleveut & Jaggi, "Unsupervised Scalable Representation Learning for
Multivariate Time Series", NeurIPS 2019).

Each step draws, for every series of the batch, a reference window, a positive window inside it
and K negative windows from other series (``ssljax.data.series_views.TLossWindows``: the official
``TripletLoss`` draws for fixed-length data, ``TripletLossVaryingLength``'s per-series draws
within each series' own length otherwise). One encoder f (``ssljax.models.sequence.
CausalCNNEncoder``: a stack of dilated causal convolutions, a max over the window's timestamps,
a Linear) maps each window to a vector, and the triplet loss (``ssljax.losses.tloss_triplet_loss``)
pulls f(reference) towards f(positive) and away from the f(negative)s:
``-log sig(<r, p>) - (negative_penalty / K) sum_k log sig(-<r, n_k>)``.

Static shapes: each window sits at the front of a length-T buffer with a ``valid`` mask; the
encoder being causal with left zero-padding, pooling its features over ``valid`` equals encoding
the cropped window alone, as the official code does (tested in ``tests/methods/test_tloss.py``).

Evaluation, as the official ``encode``: the encoder on each whole series (its ``length`` first
timestamps), max-pooled, then the Linear: the 320-dimensional representation (``representation``
and ``embedding`` alike), fed to the SVM protocol (``ssljax.evals.svm``).

Config keys (``experiments/tloss.py``): ``encoder.*`` (``name='causal_cnn'``, ``channels``,
``depth``, ``reduced_size``, ``width`` = the output dimension, ``kernel``),
``tloss.num_negatives``, ``tloss.negative_penalty``, ``tloss.min_length``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ssljax import losses
from ssljax.data.series_views import SeriesRows, TLossWindows
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import sequence


class EncodedSeries(nn.Module):
  """The backbone: a series batch ``{"series", "length"}`` (or ``{"series", "valid"}``) -> the
  causal CNN pooled over the valid timestamps, then its Linear, [B, D]. Given a training view
  (the trainer sizes the online probe on the first view), its reference windows."""

  encoder: nn.Module

  def __call__(self, batch, *, train: bool = False):
    if "ref" in batch:  # A training view: its reference windows.
      batch = batch["ref"]
    if "valid" not in batch:
      batch = SeriesRows()(None, batch)
    return self.encoder(batch["series"], valid=batch["valid"], train=train)


def make_encoder(config) -> nn.Module:
  enc = config.encoder
  if str(enc.name) != "causal_cnn":
    raise ConfigError(f"encoder.name={enc.name!r}: T-Loss trains its causal CNN encoder; use "
                      "encoder.name='causal_cnn'")
  channels, depth = int(enc.channels), int(enc.depth)
  reduced, width, kernel = int(enc.reduced_size), int(enc.width), int(enc.get("kernel", 3))
  if min(channels, reduced, width, kernel) < 1 or depth < 0:
    raise ConfigError(f"encoder.channels={channels}, encoder.reduced_size={reduced}, "
                      f"encoder.width={width}, encoder.kernel={kernel} must be >= 1 and "
                      f"encoder.depth={depth} >= 0")
  return sequence.CausalCNNEncoder(channels=channels, depth=depth, reduced_size=reduced,
                                   out_dim=width, kernel=kernel)


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds T-Loss from an experiment config and the data's description ``info``."""
  del total_steps, steps_per_epoch
  t = _common.check_series(info, "tloss")
  cfg = config.tloss
  penalty = float(cfg.negative_penalty)
  if not penalty > 0:
    raise ConfigError(f"tloss.negative_penalty={penalty} must be > 0")
  windows = TLossWindows(num_negatives=int(cfg.num_negatives),
                         min_length=int(cfg.get("min_length", 1)))
  if windows.min_length > t:
    raise ConfigError(f"tloss.min_length={windows.min_length} is longer than the series ({t} "
                      "timestamps)")
  if int(config.input.batch_size) < 2:
    raise ConfigError(f"input.batch_size={config.input.batch_size}: T-Loss draws its negatives "
                      "from the other series of the batch; use a batch of at least 2")
  net = EncodedSeries(make_encoder(config))

  def init(rng, example_view):
    params, _ = _common.init_variables(net, rng, example_view)
    return params, {}

  def loss(params, method_state, views, rng):
    del rng  # The windows are the view's draws; the encoder has no dropout.
    w = views[0]
    b, k = w["neg"]["valid"].shape[:2]
    # One encoder call on [B, 2 + K, T, C] (the batch stays the leading axis): reference,
    # positive, then the K negatives of each row.
    series = jnp.concatenate([w["ref"]["series"][:, None], w["pos"]["series"][:, None],
                              w["neg"]["series"]], axis=1)
    valid = jnp.concatenate([w["ref"]["valid"][:, None], w["pos"]["valid"][:, None],
                             w["neg"]["valid"]], axis=1)
    z = net.apply({"params": params},
                  {"series": series.reshape(b * (2 + k), *series.shape[2:]),
                   "valid": valid.reshape(b * (2 + k), -1)}, train=True)
    z = z.reshape(b, 2 + k, -1)
    ref, pos, neg = z[:, 0], z[:, 1], jnp.swapaxes(z[:, 2:], 0, 1)
    value = losses.tloss_triplet_loss(ref, pos, neg, negative_penalty=penalty)
    size = lambda m: jnp.mean(jnp.sum(m, axis=-1).astype(jnp.float32))  # noqa: E731
    metrics = {"ref_length": size(w["ref"]["valid"]), "pos_length": size(w["pos"]["valid"]),
               "neg_length": size(w["neg"]["valid"])}
    return value, (method_state, metrics, ref)

  def represent(params, method_state, batch):
    del method_state
    h = net.apply({"params": params}, batch, train=False)
    return _common.as_float32({"representation": h, "embedding": h})

  def backbone_variables(params, method_state):
    del method_state
    return {"params": params}

  return Method(name="tloss", views=(windows,), init=init, loss=loss,
                update=identity_update, represent=represent,
                backbone=Backbone(module=net, variables=backbone_variables))

