"""TS2Vec (Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022).

Two overlapping random crops of each series (``ssljax.data.series_views.TS2VecCrops``) go through
one encoder (``ssljax.models.sequence.TS2VecEncoder``: input projection, random timestamp
masking, a stack of dilated convolutions) and give a representation per timestamp. On the
overlap, the hierarchical contrastive loss (``ssljax.losses.ts2vec_hierarchical_loss_masked``)
contrasts each timestamp with the same timestamp of the other series (instance-wise) and with the
other timestamps of the same series (temporal), at every scale of a max-pooling pyramid.

As the official code: evaluation uses a uniform average of the encoder's weights over all
training steps (stochastic weight averaging, kept in ``method_state["swa"]``), and a series'
representation is the max over its timestamps of the averaged encoder's output on the whole
series (``encoding_window='full_series'``), fed to the SVM protocol (``ssljax.evals.svm``).

Static shapes: the crops' length changes every step, so each crop sits at the front of a
length-T buffer with a ``valid`` mask; the encoder zeroes everything outside ``valid`` after each
layer, which equals encoding the crop alone with the official zero padding, and the loss reads
only the overlap's ``overlap`` timestamps at each scale (tested against the unmasked loss on the
sliced arrays).

Config keys (``experiments/ts2vec.py``): ``encoder.*`` (``hidden``, ``width`` = the output
dimension, ``depth``, ``kernel``, ``repr_dropout``, ``mask_prob``), ``ts2vec.alpha``,
``ts2vec.temporal_unit``, ``ts2vec.swa``, ``ts2vec.max_train_length`` (series longer than it
train on sections of it, see ``TS2VecCrops``; None = off).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data.series_views import SeriesRows, TS2VecCrops, align_overlap
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common
from ssljax.models import sequence


class PooledSeries(nn.Module):
  """The backbone: a series batch ``{"series", "length"}`` (or ``{"series", "valid"}``) -> the
  max over valid timestamps of the per-timestamp representations, [B, D]. Given a training view
  pair (the trainer sizes the online probe on the first view), its first crop."""

  encoder: nn.Module

  def __call__(self, batch, *, train: bool = False):
    if "a" in batch:  # A training view pair: its first crop.
      batch = batch["a"]
    if "valid" not in batch:
      batch = SeriesRows()(None, batch)
    h = self.encoder(batch["series"], valid=batch["valid"], train=train)
    return sequence.max_pool_time(h, batch["valid"])


def make_encoder(config) -> nn.Module:
  enc = config.encoder
  if str(enc.name) != "ts2vec":
    raise ConfigError(f"encoder.name={enc.name!r}: TS2Vec trains its dilated convolutional "
                      "encoder; use encoder.name='ts2vec'")
  hidden, width, depth = int(enc.hidden), int(enc.width), int(enc.depth)
  if min(hidden, width, depth + 1) < 1:
    raise ConfigError(f"encoder.hidden={hidden}, encoder.width={width} must be >= 1 and "
                      f"encoder.depth={depth} >= 0")
  return sequence.TS2VecEncoder(hidden=hidden, out_dim=width, depth=depth,
                                kernel=int(enc.get("kernel", 3)),
                                repr_dropout=float(enc.get("repr_dropout", 0.1)),
                                mask_prob=float(enc.get("mask_prob", 0.5)),
                                zero_invalid=True)


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds TS2Vec from an experiment config and the data's description ``info``."""
  del total_steps, steps_per_epoch
  t = _common.check_series(info, "ts2vec")
  cfg = config.ts2vec
  alpha = float(cfg.alpha)
  if not 0.0 <= alpha <= 1.0:
    raise ConfigError(f"ts2vec.alpha={alpha} must be in [0, 1]")
  unit = int(cfg.temporal_unit)
  max_len = cfg.get("max_train_length", None)
  crops = TS2VecCrops(unit, None if max_len is None else int(max_len))
  if crops.section_length(t) < crops.min_length():
    raise ConfigError(f"ts2vec.temporal_unit={unit}: crops of at least {crops.min_length()} "
                      f"timestamps, longer than the series ({t}); lower ts2vec.temporal_unit")
  use_swa = bool(cfg.get("swa", True))
  net = PooledSeries(make_encoder(config))

  def init(rng, example_view):
    params, _ = _common.init_variables(net, rng, example_view["a"])
    return params, ({"swa": params} if use_swa else {})

  def loss(params, method_state, views, rng):
    pair = views[0]
    k_a, k_b = jax.random.split(rng)

    def encode(crop, key):
      k_mask, k_drop = jax.random.split(key)
      return net.apply({"params": params}, crop["series"], valid=crop["valid"], train=True,
                       rngs={"mask": k_mask, "dropout": k_drop},
                       method=lambda m, x, **kw: m.encoder(x, **kw))

    z_a, z_b = encode(pair["a"], k_a), encode(pair["b"], k_b)
    overlap = pair["overlap"][0]
    za, zb, _ = align_overlap(z_a, z_b, pair["a_start"][0], overlap)
    value = losses.ts2vec_hierarchical_loss_masked(za, zb, overlap, alpha=alpha,
                                                   temporal_unit=unit)
    h = sequence.max_pool_time(z_a, pair["a"]["valid"])
    return value, (method_state, {"overlap": overlap.astype(jnp.float32)}, h)

  def update(params, method_state, step):
    if not use_swa:
      return method_state
    # torch.optim.swa_utils.AveragedModel after every step: avg += (p - avg) / (n + 1), n the
    # number of models averaged so far (the first update copies the weights).
    n = step.astype(jnp.float32)
    swa = jax.tree.map(lambda a, p: a + (p - a) / (n + 1.0), method_state["swa"], params)
    return {"swa": swa}

  def eval_params(params, method_state):
    return method_state["swa"] if use_swa else params

  def represent(params, method_state, batch):
    h = net.apply({"params": eval_params(params, method_state)}, batch, train=False)
    return _common.as_float32({"representation": h, "embedding": h})

  def backbone_variables(params, method_state):
    return {"params": eval_params(params, method_state)}

  return Method(name="ts2vec", views=(crops,), init=init, loss=loss, update=update,
                represent=represent, backbone=Backbone(module=net, variables=backbone_variables))
