"""Frame projections (Demirel & Holz, "Learning Without Augmenting: Unsupervised Time Series
Representation Learning via Frame Projections", NeurIPS 2025; ``IsoAlign`` in the official code).

No augmentation: each series x is projected onto two other frames (``ssljax.data.frames``): the
unitary Fourier basis (``|X_F|``, ``angle(X_F)`` of ``rfft(x, norm="ortho")``) and an
overcomplete complex Morlet wavelet frame (``|CWT(x)|``, 48 scales), and each domain has its own
encoder (``ssljax.models.frames``): f_t (1-D ResNet), f_F (two-branch conv net), f_W (2-D conv
net), each to 128-d, with a projector P each.

Stage 1 (``frame_projections.stage=1``, pre-training): with ``z = normalize(P(f(.)))`` per domain,
``L = NT(z_t, z_W) + NT(z_t, z_F) + NT(z_W, z_F) + w (mean|M_F(z_t) - z_F| + mean|M_W(z_t) -
z_W|)`` (``ssljax.losses.frame_projections_loss``), NT-Xent at tau = 0.15, M_F / M_W the
``ConvMapping`` predictors (hidden 64), ``w = 1/B`` as the official code (``l1_weight=-1``; the
spec's pitfall 2) or a fixed weight (``l1_weight >= 0``). Everything trains jointly.

Stage 2 (``frame_projections.stage=2``, latent mappers): the stage-1 encoders frozen, two fresh
``ConvMapping`` nets (hidden 1) learn ``map_F: h_t -> h_F`` and ``map_W: h_t -> h_W`` (the
encoders' 128-d outputs before the projectors) with an L1 loss
(``ssljax.losses.frame_projections_mapper_loss``). The run starts from the stage-1 backbone
exported by ``python -m ssljax.export`` (``encoder.init_from``, required); the frozen encoders sit
in ``method_state["frozen"]``, outside the parameters the optimiser sees, so they do not move (a
zero gradient under Adam with weight decay would not freeze them). Summing the two L1 losses
under one Adam equals the official two optimisers: each mapper's gradient comes from its own term
only, and Adam is elementwise.

The backbone (``represent``, ``export``) holds all five nets, ``{"time", "fourier", "wavelet",
"map_f", "map_w"}`` (so a stage-1 export fits stage 2's ``encoder.init_from``); its feature
(``frame_projections.feature``):

* ``mapped`` — the paper's inference feature ``[map_F(h_t), h_t, map_W(h_t)]`` (384-d): only the
  time encoder and the mappers run, on the raw series alone. Stage 2's default.
* ``domains`` — ``[h_F, h_t, h_W]`` with each encoder on its own projection of x (384-d; the
  targets the mappers learn; the projections are computed from x inside). Stage 1's default: its
  mappers are not trained yet, so ``mapped`` is refused there.
* ``time`` — ``h_t`` alone (128-d).

Series of different lengths (``uea:JapaneseVowels``) are used as the data source pads them: zeros
after ``length``, in every view (the Fourier and wavelet projections of the zero-padded buffer),
and the time encoder's mean over time runs over the whole buffer, as for a fixed-length window.

Config keys (``experiments/frame_projections.py``): ``encoder.*`` (``name='frames'``, ``width``
= every encoder's output and the projection size (official 128; the Fourier branches start at
width / 8 channels, the wavelet net at width / 4), ``base_filters``, ``kernel``, ``blocks``,
``dropout`` (time ResNet), ``fourier_kernel``, ``wavelet_kernel``), ``frame_projections.*``
(``stage``, ``feature``, ``temperature``, ``l1_weight``, ``predictor_hidden``, ``mapper_hidden``,
the wavelet's ``num_scales``, ``min_scale``, ``max_scale``, ``bandwidth``, ``center``,
``precision``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data.frames import FrameViews
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import frames as fm

FEATURES = ("auto", "mapped", "domains", "time")
MAPPERS = ("map_f", "map_w")


class FrameNet(nn.Module):
  """The backbone: a series batch ``{"series", ...}`` -> its feature [B, F] (see the module
  docstring); the projections are read from the batch when the view computed them, else computed
  from ``series``."""

  time: nn.Module
  fourier: nn.Module
  wavelet: nn.Module
  map_f: nn.Module
  map_w: nn.Module
  views: FrameViews
  feature: str = "domains"

  def _projections(self, batch):
    return batch if "wavelet" in batch else self.views.project(batch["series"])

  def encode(self, batch, *, train: bool = False):
    """``(h_t, h_F, h_W)``, [B, D] each: every encoder on its own projection of the series."""
    proj = self._projections(batch)
    h_t = self.time(batch["series"], train=train)
    h_f = self.fourier(proj["fourier_amp"], proj["fourier_phase"])
    h_w = self.wavelet(proj["wavelet"], train=train)
    return h_t, h_f, h_w

  def time_embedding(self, batch, *, train: bool = False):
    return self.time(batch["series"], train=train)

  def mapped(self, h_t):
    """``(map_F(h_t), map_W(h_t))``, the latent mappers' predictions of h_F and h_W."""
    return self.map_f(h_t), self.map_w(h_t)

  def init_all(self, batch):
    h_t, _, _ = self.encode(batch)
    return self.mapped(h_t)

  def __call__(self, batch, *, train: bool = False):
    if self.feature == "time":
      return self.time(batch["series"], train=train)
    if self.feature == "mapped":
      h_t = self.time(batch["series"], train=train)
      f, w = self.mapped(h_t)
      return jnp.concatenate([f, h_t, w], axis=-1)
    h_t, h_f, h_w = self.encode(batch, train=train)
    return jnp.concatenate([h_f, h_t, h_w], axis=-1)


class PretrainHeads(nn.Module):
  """Stage 1's heads: projectors P_t, P_F, P_W and predictors M_F, M_W.

  ``(h_t, h_F, h_W)`` -> ``(z_t, z_F, z_W, M_F(z_t), M_W(z_t))`` with ``z = normalize(P(h))``.
  """

  width: int = 128
  predictor_hidden: int = 64

  @nn.compact
  def __call__(self, h_t, h_f, h_w):
    proj = lambda h, name: losses.l2_normalize(  # noqa: E731
        fm.Projector(self.width, self.width, name=name)(h))
    z_t, z_f, z_w = proj(h_t, "proj_t"), proj(h_f, "proj_f"), proj(h_w, "proj_w")
    pred_f = fm.ConvMapping(self.predictor_hidden, name="pred_f")(z_t)
    pred_w = fm.ConvMapping(self.predictor_hidden, name="pred_w")(z_t)
    return z_t, z_f, z_w, pred_f, pred_w


def _positive_int(value, key: str) -> int:
  if isinstance(value, bool) or int(value) != value or int(value) < 1:
    raise ConfigError(f"{key}={value!r} must be an integer >= 1")
  return int(value)


def make_views(config) -> FrameViews:
  cfg = config.frame_projections
  return FrameViews(num_scales=_positive_int(cfg.num_scales, "frame_projections.num_scales"),
                    min_scale=float(cfg.min_scale), max_scale=float(cfg.max_scale),
                    bandwidth=float(cfg.bandwidth), center=float(cfg.center),
                    precision=int(cfg.precision))


def make_net(config, feature: str) -> FrameNet:
  """The backbone of ``config`` giving ``feature`` ('mapped', 'domains' or 'time')."""
  enc, cfg = config.encoder, config.frame_projections
  if str(enc.name) != "frames":
    raise ConfigError(f"encoder.name={enc.name!r}: frame projections trains its own three "
                      "encoders; use encoder.name='frames'")
  width = _positive_int(enc.width, "encoder.width")
  if width % 8:
    raise ConfigError(f"encoder.width={width} must be a multiple of 8 (the Fourier encoder's two "
                      "branches end in 4 x fourier_width channels each; the wavelet encoder in "
                      "4 x wavelet_width)")
  dropout = float(enc.dropout)
  if not 0.0 <= dropout < 1.0:
    raise ConfigError(f"encoder.dropout={dropout} must be in [0, 1)")
  cpu = _common.cpu_kernels(config)
  time = fm.ResNet1DEncoder(
      base_filters=_positive_int(enc.base_filters, "encoder.base_filters"),
      kernel=_positive_int(enc.kernel, "encoder.kernel"),
      blocks=int(enc.blocks), out_dim=width, dropout=dropout, cpu_kernels=cpu)
  if int(enc.blocks) < 0:
    raise ConfigError(f"encoder.blocks={enc.blocks} must be >= 0")
  # The official Fourier encoder ends in 64 + 64 channels and the wavelet one in 128: both
  # widths follow ``width`` (16 and 32 at width 128) unless set.
  fourier = fm.FourierEncoder(width=width // 8, kernel=_positive_int(enc.fourier_kernel,
                                                                    "encoder.fourier_kernel"))
  wavelet = fm.WaveletEncoder(width=width // 4, kernel=_positive_int(enc.wavelet_kernel,
                                                                    "encoder.wavelet_kernel"),
                              cpu_kernels=cpu)
  hidden = _positive_int(cfg.mapper_hidden, "frame_projections.mapper_hidden")
  return FrameNet(time=time, fourier=fourier, wavelet=wavelet, map_f=fm.ConvMapping(hidden),
                  map_w=fm.ConvMapping(hidden), views=make_views(config), feature=feature)


def settings(config) -> tuple[int, str]:
  """``(stage, feature)`` of ``config``, checked."""
  cfg = config.frame_projections
  stage = cfg.stage
  if isinstance(stage, bool) or stage not in (1, 2):
    raise ConfigError(f"frame_projections.stage={stage!r} must be 1 (pre-training) or 2 (latent "
                      "mappers, from a stage-1 backbone)")
  feature = str(cfg.feature)
  if feature not in FEATURES:
    raise ConfigError(f"frame_projections.feature={feature!r}: choose one of {FEATURES}")
  if feature == "auto":
    feature = "domains" if stage == 1 else "mapped"
  if stage == 1 and feature == "mapped":
    raise ConfigError("frame_projections.feature='mapped' needs the stage-2 latent mappers; in "
                      "stage 1 use 'domains' or 'time' (or train stage 2, see "
                      "experiments/frame_projections.py)")
  return int(stage), feature


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds frame projections (stage 1 or 2) from an experiment config and the data's ``info``."""
  del total_steps, steps_per_epoch
  _common.check_series(info, "frame_projections")
  cfg = config.frame_projections
  stage, feature = settings(config)
  temperature = _common.check_positive(cfg.temperature, "frame_projections.temperature")
  l1_weight = float(cfg.l1_weight)
  if l1_weight < 0 and l1_weight != -1.0:
    raise ConfigError(f"frame_projections.l1_weight={l1_weight} must be -1 (the official 1/B) "
                      "or >= 0")
  if stage == 1 and int(config.input.batch_size) < 2:
    raise ConfigError(f"input.batch_size={config.input.batch_size}: the NT-Xent negatives are "
                      "the other series of the batch; use a batch of at least 2")
  if stage == 2 and not config.encoder.get("init_from"):
    raise ConfigError("frame_projections.stage=2 trains the latent mappers of a stage-1 "
                      "backbone: set encoder.init_from to the folder python -m ssljax.export "
                      "wrote from the stage-1 run")
  net = make_net(config, feature)
  width = int(config.encoder.width)
  heads = PretrainHeads(width, _positive_int(cfg.predictor_hidden,
                                             "frame_projections.predictor_hidden"))
  views = net.views

  def init(rng, example_view):
    k_net, k_heads, k_map = jax.random.split(rng, 3)
    variables = dict(net.init(k_net, example_view, method=FrameNet.init_all))
    net_params, batch_stats = variables.pop("params"), variables.get("batch_stats", {})
    if stage == 2:
      fresh = net.init(k_map, example_view, method=FrameNet.init_all)["params"]
      return ({k: fresh[k] for k in MAPPERS},
              {"frozen": {"params": net_params, "batch_stats": batch_stats}})
    h = jnp.zeros((example_view["series"].shape[0], width), jnp.float32)
    head_params = heads.init(k_heads, h, h, h)["params"]
    params = {"net": {k: v for k, v in net_params.items() if k not in MAPPERS},
              "heads": head_params}
    return params, {"batch_stats": batch_stats,
                    "mappers": {k: net_params[k] for k in MAPPERS}}

  def backbone_variables(params, method_state):
    if stage == 2:
      frozen = method_state["frozen"]
      return {"params": {**frozen["params"], **params}, "batch_stats": frozen["batch_stats"]}
    return {"params": {**params["net"], **method_state["mappers"]},
            "batch_stats": method_state["batch_stats"]}

  def feature_of(variables, h_t, h_f, h_w):
    if feature == "time":
      return h_t
    if feature == "mapped":
      f, w = net.apply(variables, h_t, method=FrameNet.mapped)
      return jnp.concatenate([f, h_t, w], axis=-1)
    return jnp.concatenate([h_f, h_t, h_w], axis=-1)

  def loss_stage1(params, method_state, views_, rng):
    view = views_[0]
    variables = backbone_variables(params, method_state)
    (h_t, h_f, h_w), new = net.apply(variables, view, train=True, rngs={"dropout": rng},
                                     mutable=["batch_stats"], method=FrameNet.encode)
    z_t, z_f, z_w, pred_f, pred_w = heads.apply({"params": params["heads"]}, h_t, h_f, h_w)
    terms = losses.frame_projections_terms(z_t, z_f, z_w, pred_f, pred_w,
                                           temperature=temperature)
    value = losses.frame_projections_loss(z_t, z_f, z_w, pred_f, pred_w, temperature=temperature,
                                          l1_weight=None if l1_weight < 0 else l1_weight)
    state = {"batch_stats": new["batch_stats"], "mappers": method_state["mappers"]}
    return value, (state, terms, feature_of(variables, h_t, h_f, h_w))

  def loss_stage2(params, method_state, views_, rng):
    del rng  # Frozen encoders in evaluation mode (no dropout), as the official model.eval().
    variables = jax.lax.stop_gradient(backbone_variables(params, method_state))
    h_t, h_f, h_w = net.apply(variables, views_[0], train=False, method=FrameNet.encode)
    map_f, map_w = net.apply({**variables, "params": {**variables["params"], **params}}, h_t,
                             method=FrameNet.mapped)
    value = losses.frame_projections_mapper_loss(map_f, h_f, map_w, h_w)
    metrics = {"l1_f": jnp.mean(jnp.abs(map_f - h_f)), "l1_w": jnp.mean(jnp.abs(map_w - h_w))}
    rep = feature_of(backbone_variables(params, method_state), h_t, h_f, h_w)
    return value, (method_state, metrics, rep)

  def represent(params, method_state, batch):
    variables = backbone_variables(params, method_state)
    rep = net.apply(variables, batch, train=False)
    if stage == 2:
      return _common.as_float32({"representation": rep, "embedding": rep})
    # The embedding is the loss's space: the three normalised projections [z_F, z_t, z_W].
    h_t, h_f, h_w = net.apply(variables, batch, method=FrameNet.encode)
    z_t, z_f, z_w, _, _ = heads.apply({"params": params["heads"]}, h_t, h_f, h_w)
    return _common.as_float32({"representation": rep,
                               "embedding": jnp.concatenate([z_f, z_t, z_w], axis=-1)})

  return Method(name="frame_projections", views=(views,), init=init,
                loss=loss_stage1 if stage == 1 else loss_stage2, update=identity_update,
                represent=represent, backbone=Backbone(module=net, variables=backbone_variables))
