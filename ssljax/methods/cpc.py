"""CPC (van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding",
2018), on raw audio (its section 3.1) or any series long enough for the encoder.

A strided convolutional encoder g_enc (``ssljax.models.cpc.CPCEncoder``) maps the waveform to
frames z_t (one per 160 samples with the paper's strides); a GRU g_ar summarises z_{<=t} into
the context c_t; for each step k = 1..K a linear map W_k predicts z_{t+k} from c_t, scored by
``f_k = z^T W_k c_t`` (eq. 3). The loss (``ssljax.losses.cpc_loss``, eq. 4, averaged over k) is
InfoNCE: the true z_{t+k} against every other valid frame of the GLOBAL batch, the same clip's
other timesteps and every frame of the other clips (the paper's "mixed speaker" negatives with
the whole minibatch as the negative set). Padding is respected exactly: the convolutions are
unpadded and a frame is valid when its whole receptive field is data, the GRU is causal, and
invalid frames are never anchors, positives or negatives.

The view is the clip as it is (``SeriesRows``; CPC needs no augmentation). Representation for the
probes: the context c_t averaged over the clip's valid frames. The context (not z) because it is
what the paper evaluates and what the loss makes predictive of the future (z only has to be
predictable); the mean (not the max) because the probes' labels describe the whole clip, and the
mean weighs every frame of it, where a max keeps the few frames with extreme activations (a
click, an onset). Measured (GPU sweep, ``wav:tones``, 400 steps of random-W_k CPC, 3 seeds, 5-NN
on each pooling of the same network): mean context 90%, last context 86%, max context 83%, mean
z 79%.

Deviations from the paper, for a 2-core CPU default (``experiments/cpc.py``): narrower encoder
and GRU (128 and 128 where the paper has 512 and 256), fewer steps (K = 6 where the paper has
12), a LayerNorm over channels after each convolution (``encoder.norm='layer'``, per frame, so
the padding never enters its statistics; ``'none'`` is the paper's stack, which ended within a
few points of it in a one-seed GPU sweep), 1 s clips at 8 kHz (the paper: 16 kHz LibriSpeech).

The predictors W_k start at zero (``cpc.zero_init``; the paper does not say how they start): the
loss then starts at exactly log(valid frames) with a useful gradient on W_k, where random W_k
give random scores that the first ~100 steps only shrink towards uniform (a plateau at
log(valid frames) before anything is learnt). On the synthetic ``wav:tones`` (GPU sweep, 3
seeds, 150 steps of the default) kNN rises by 36 points over its init with zero W_k and by 15
with random ones.

Config keys (``experiments/cpc.py``): ``encoder.*`` (``name='cpc'``, ``channels``, ``kernels``,
``strides``, ``norm``, ``context_dim``), ``cpc.steps`` (K), ``cpc.zero_init``.
"""

from __future__ import annotations

import jax.numpy as jnp

from ssljax import losses
from ssljax.data.series_views import SeriesRows
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import cpc as cpc_models


def make_net(config) -> cpc_models.CPCNet:
  """The backbone (encoder + GRU) from ``config.encoder``."""
  enc = config.encoder
  if str(enc.name) != "cpc":
    raise ConfigError(f"encoder.name={enc.name!r}: CPC trains its strided convolutional encoder "
                      "and GRU; use encoder.name='cpc'")
  kernels = tuple(int(k) for k in enc.kernels)
  strides = tuple(int(s) for s in enc.strides)
  if not kernels or len(kernels) != len(strides) or min(kernels + strides) < 1:
    raise ConfigError(f"encoder.kernels={kernels} and encoder.strides={strides} must be "
                      "equally long lists of integers >= 1")
  channels, context = int(enc.channels), int(enc.context_dim)
  if min(channels, context) < 1:
    raise ConfigError(f"encoder.channels={channels} and encoder.context_dim={context} must be "
                      ">= 1")
  norm = str(enc.get("norm", "layer"))
  if norm not in cpc_models.NORMS:
    raise ConfigError(f"encoder.norm={norm!r}: choose one of {cpc_models.NORMS}")
  encoder = cpc_models.CPCEncoder(channels=channels, kernels=kernels, strides=strides, norm=norm)
  return cpc_models.CPCNet(encoder=encoder, context_dim=context)


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds CPC from an experiment config and the data's description ``info``."""
  del total_steps, steps_per_epoch
  length = _common.check_series(info, "cpc")
  net = make_net(config)
  steps = config.cpc.steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ConfigError(f"cpc.steps={steps!r} must be an integer >= 1 (the K future frames "
                      "predicted)")
  kernels, strides = net.encoder.kernels, net.encoder.strides
  frames = cpc_models.num_frames(length, kernels, strides)
  if frames <= steps:
    raise ConfigError(
        f"the series have {length} samples, {frames} frames after the encoder (receptive field "
        f"{cpc_models.receptive_field(kernels, strides)} samples); cpc.steps={steps} needs more "
        "than that many frames: lengthen the clips (input.data.seconds) or lower cpc.steps")
  predictors = cpc_models.CPCPredictors(num_steps=steps, out_dim=net.encoder.channels,
                                        zero_init=bool(config.cpc.get("zero_init", True)))

  def init(rng, example_view):
    net_params, _ = _common.init_variables(net, rng, example_view)
    _, c, _ = net.apply({"params": net_params}, example_view, method=net.sequences)
    return {"net": net_params, "predictors": predictors.init(rng, c)["params"]}, {}

  def loss(params, method_state, views, rng):
    del rng  # No augmentation, no dropout: the loss is a function of the batch.
    z, c, valid = net.apply({"params": params["net"]}, views[0], method=net.sequences)
    pred = predictors.apply({"params": params["predictors"]}, c)
    loss_k, acc_k = losses.cpc_step_losses(pred, z, valid)
    metrics = {"cpc_accuracy": jnp.mean(acc_k), "cpc_accuracy_k1": acc_k[0],
               f"cpc_accuracy_k{steps}": acc_k[-1], "valid_frames": jnp.mean(
                   jnp.sum(valid, axis=1).astype(jnp.float32))}
    return jnp.mean(loss_k), (method_state, metrics, cpc_models.mean_pool_time(c, valid))

  def represent(params, method_state, batch):
    del method_state
    h = net.apply({"params": params["net"]}, batch)
    return _common.as_float32({"representation": h, "embedding": h})

  def backbone_variables(params, method_state):
    del method_state
    return {"params": params["net"]}

  return Method(name="cpc", views=(SeriesRows(),), init=init, loss=loss, update=identity_update,
                represent=represent, backbone=Backbone(module=net, variables=backbone_variables))
