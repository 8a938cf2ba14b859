"""Trust-SSL (Boulila et al., arXiv 2604.21349): SimCLR plus a trust-weighted alignment residual.

The loss keeps SimCLR's NT-Xent on the projector embeddings ``g`` and *adds* a per-sample,
per-factor alignment term on a factor head ``z`` [B, T, d] whose weight ("trust") ``w`` is low
when the two views conflict or are uncertain, e.g. because one of them is hazy or occluded::

  L = NTXent(g1, g2) + lambda_sel(epoch) * mean_{b,t} sg(w_bt) (1 - cos(z1_bt, z2_bt))
      + aux_weight * CE(aux(0.5 (h1 + h2)), corruption label)

``sg`` is stop-gradient: the backbone gradient of the residual is a re-weighting of the plain
cosine-alignment gradient, and nothing is learnt through ``w`` (the paper's additive residual,
as opposed to a multiplicative gate on the base loss). ``w`` comes from either

* the **evidential gate** (default): per factor, ``M`` prototype evidences
  ``e = softplus(A_t z + c_t)``, Dirichlet ``alpha = e + beta``, belief ``b = e / S`` and
  ignorance ``u = beta M / S`` (``S = sum alpha``); Dempster-Shafer conflict
  ``K = (sum b1)(sum b2) - b1 . b2`` (clamped to [0, 0.999]) and fused ignorance
  ``I = u1 u2 / (1 - K) + eps |u1 - u2|`` (clamped to [0, 1]);
  ``w = lambda_min + (1 - lambda_min) exp(-a K - g I)``; or
* the **cosine gate** ablation: ``w = lambda_min + (1 - lambda_min) sigmoid(cos(z1, z2) / tau_t)``.

``num_factors=1`` is the paper's "scalar uncertainty" ablation. ``lambda_sel`` is 0 up to
``sel_start_epoch``, ramps linearly to its maximum at ``sel_end_epoch`` (a step there when the two
are equal); ``lambda_min`` follows a cosine from ``lambda_min_start`` to ``lambda_min_end`` over
``lambda_min_epochs``. Both change per epoch (as the official code), computed in ``update`` and
kept in ``method_state`` so a resumed run continues the schedule.

**Corruptions.** With ``trust_ssl.corruptions`` non-empty, each image's second view is corrupted
with probability ``corruption_prob`` by a uniformly chosen factor (``ssljax/data/corruptions.py``:
haze, motion blur, rain, occlusion) at a severity uniform in ``trust_ssl.severity``. The views
arrive normalised (``augment_batch`` normalises with the view recipe's mean/std), so the method
un-normalises with the recipe's mean/std, corrupts in [0, 1] and normalises again. The auxiliary
classifier (``h -> 256 -> 1 + #factors``, ReLU) predicts which factor was applied (0 = clean).

Differences from the official code (``trust_ssl/models/trust_ssl.py``), each on purpose:

* The official pretraining applies no corruption and trains the auxiliary classifier on the
  constant label 0 (a no-op target); here the views are corrupted on device as described above,
  so the classifier has a real target and the gate sees degraded pairs. With
  ``corruptions=()`` there is no auxiliary head, which is what the official target amounts to.
* The evidential heads (``A_t``, ``c_t``) and the cosine gate's ``log tau_t`` only feed the
  stop-gradient weight, so in the official code they never receive a gradient and stay at their
  PyTorch initialisation (its test docstring mentions an auxiliary loss and an ``L_anchor`` for
  them that the code does not have). We reproduce that behaviour explicitly: they are drawn once
  at ``init`` with PyTorch's ``nn.Linear`` initialisation and live in ``method_state`` (not in
  ``params``), so the optimiser's weight decay cannot shrink them either. The gate is thus a fixed
  random-prototype Dempster-Shafer measure on the *trained* factor embeddings.
* NT-Xent negatives are the global batch (official: per-GPU batch under DataParallel).
* ``sel_start_epoch == sel_end_epoch`` is a step to the maximum at that epoch (official: 0 until
  one epoch later).

Config keys read (see ``experiments/trust_ssl.py``): ``encoder.*``, ``projector.*``, the views
``input.views.view1`` / ``view2`` and ``trust_ssl.*``: ``temperature``, ``num_factors``,
``factor_dim``, ``factor_hidden``, ``gate`` (``'evidential'`` or ``'cosine'``),
``num_prototypes``, ``prior``, ``conflict_weight`` (a), ``ignorance_weight`` (g),
``ignorance_eps``, ``cosine_tau``, ``lambda_sel``, ``sel_start_epoch``, ``sel_end_epoch``,
``lambda_min_start``, ``lambda_min_end``, ``lambda_min_epochs``, ``corruptions``,
``corruption_prob``, ``severity``, ``corruption_reference_size``, ``aux_weight``, ``aux_hidden``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax import losses
from ssljax.data import corruptions as corr
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common
from ssljax.models.heads import MLP, dense_kernel_init
from ssljax.models.norm import batch_norm

VIEW_NAMES = ("view1", "view2")
CORRUPTED_VIEW = 1  # The second view is the one that may be degraded ("clean vs degraded").
GATES = ("evidential", "cosine")
CONFLICT_MAX = 0.999  # K clamp: keeps 1 / (1 - K) in I finite.


# ------------------------------------------------------------------------------ the math


class FactorHead(nn.Module):
  """``z^t = normalize(W_t ReLU(BN(W0 h)))`` for T factors: [B, F] -> [B, T, d].

  Attributes:
    num_factors: T.
    factor_dim: d.
    hidden_dim: width of the shared stem (512 in the paper).
    cpu_kernels: ssljax's XLA:CPU BatchNorm instead of Flax's (``ssljax.cpu``).
  """

  num_factors: int
  factor_dim: int
  hidden_dim: int = 512
  cpu_kernels: bool = False

  @nn.compact
  def __call__(self, h_bf, *, train: bool):
    s = nn.Dense(self.hidden_dim, use_bias=False, kernel_init=dense_kernel_init, name="stem")(h_bf)
    s = batch_norm(self.cpu_kernels, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   name="bn")(s)
    s = nn.relu(s)
    # T bias-free linear maps from the stem, one per factor (one kernel [hidden, T, d]).
    z = nn.DenseGeneral((self.num_factors, self.factor_dim), use_bias=False,
                        kernel_init=dense_kernel_init, name="factors")(s)
    return losses.l2_normalize(z)


def evidential_beliefs(z_btd, kernel_tdm, bias_tm, *, prior: float):
  """Subjective-logic opinion of each factor embedding over M prototypes.

  Args:
    z_btd: [B, T, d] factor embeddings.
    kernel_tdm: [T, d, M] per-factor evidence maps ``A_t``.
    bias_tm: [T, M] per-factor biases ``c_t``.
    prior: Dirichlet prior ``beta`` > 0 per prototype.

  Returns:
    ``(belief_btm, ignorance_bt)`` with ``sum_m belief + ignorance = 1``.
  """
  logits = jnp.einsum("btd,tdm->btm", z_btd, kernel_tdm,
                      precision=jax.lax.Precision.HIGHEST) + bias_tm
  evidence = jax.nn.softplus(logits)
  strength_bt1 = jnp.sum(evidence + prior, axis=-1, keepdims=True)  # S = sum of alpha
  num_prototypes = kernel_tdm.shape[-1]
  return evidence / strength_bt1, prior * num_prototypes / strength_bt1[..., 0]


def dempster_fusion(b1_btm, b2_btm, u1_bt, u2_bt, *, eps: float = 0.1):
  """Dempster-Shafer conflict ``K`` and fused ignorance ``I`` of two opinions.

  ``K = sum_{i != j} b1_i b2_j = (sum b1)(sum b2) - sum_i b1_i b2_i`` (mass the two views give to
  incompatible prototypes), clamped to [0, 0.999]; ``I = u1 u2 / (1 - K) + eps |u1 - u2|``
  (Dempster's normalised joint ignorance plus a penalty for unequal ignorance), clamped to [0, 1].

  Args:
    b1_btm, b2_btm: [..., M] beliefs of the two views.
    u1_bt, u2_bt: [...] ignorances.
    eps: weight of ``|u1 - u2|``.

  Returns:
    ``(K, I)``, each of shape [...].
  """
  agree = jnp.sum(b1_btm * b2_btm, axis=-1)
  conflict = jnp.clip(jnp.sum(b1_btm, -1) * jnp.sum(b2_btm, -1) - agree, 0.0, CONFLICT_MAX)
  ignorance = u1_bt * u2_bt / (1.0 - conflict) + eps * jnp.abs(u1_bt - u2_bt)
  return conflict, jnp.clip(ignorance, 0.0, 1.0)


def evidential_gate(conflict, ignorance, *, a: float, g: float, lambda_min):
  """``w = lambda_min + (1 - lambda_min) exp(-a K - g I)``, in [lambda_min, 1]."""
  return lambda_min + (1.0 - lambda_min) * jnp.exp(-a * conflict - g * ignorance)


def cosine_gate(z1_btd, z2_btd, log_tau_t, *, lambda_min):
  """``w = lambda_min + (1 - lambda_min) sigmoid(cos(z1, z2) / tau_t)``, tau clamped >= 1e-3.

  Args:
    z1_btd, z2_btd: [B, T, d] unit-norm factor embeddings.
    log_tau_t: [T] log temperatures.
    lambda_min: the lower bound of ``w``.

  Returns:
    [B, T] weights in [lambda_min, 1].
  """
  tau_t = jnp.maximum(jnp.exp(log_tau_t), 1e-3)
  cos_bt = jnp.sum(z1_btd * z2_btd, axis=-1)
  return lambda_min + (1.0 - lambda_min) * jax.nn.sigmoid(cos_bt / tau_t)


def additive_residual(z1_btd, z2_btd, w_bt):
  """``mean_{b,t} sg(w) (1 - cos(z1, z2))``: no gradient reaches ``w``. Inputs unit-norm."""
  cos_bt = jnp.sum(z1_btd * z2_btd, axis=-1)
  return jnp.mean(jax.lax.stop_gradient(w_bt) * (1.0 - cos_bt))


def lambda_sel_at(epoch, *, value: float, start: float, end: float):
  """0 up to ``start``, linear to ``value`` at ``end``, then ``value`` (per epoch)."""
  epoch = jnp.asarray(epoch, jnp.float32)
  if end <= start:
    return jnp.where(epoch >= end, value, 0.0).astype(jnp.float32)
  return (value * jnp.clip((epoch - start) / (end - start), 0.0, 1.0)).astype(jnp.float32)


def lambda_min_at(epoch, *, start: float, end: float, epochs: float):
  """Cosine from ``start`` (epoch 0) to ``end`` (epoch ``epochs``), then ``end``."""
  frac = jnp.clip(jnp.asarray(epoch, jnp.float32) / epochs, 0.0, 1.0)
  return (end + 0.5 * (start - end) * (1.0 + jnp.cos(math.pi * frac))).astype(jnp.float32)


def corrupt_normalized(rng, view_bhwc, *, mean, std, factors, prob: float, severity,
                       reference_size: int):
  """Corrupts a random subset of a *normalised* view batch (the trainer normalises views).

  Un-normalises with the view recipe's ``mean`` / ``std``, applies
  :func:`ssljax.data.corruptions.corrupt_batch` in [0, 1], and normalises again.

  Args:
    rng: PRNG key.
    view_bhwc: float32 [B, H, W, 3], normalised.
    mean, std: the view recipe's per-channel normalisation.
    factors: corruption names; each corrupted image gets one, uniformly.
    prob: probability that an image is corrupted.
    severity: (low, high) severity range.
    reference_size: side at which the corruption strengths are defined.

  Returns:
    ``(view_bhwc, label_b)``: the view (clean images bit for bit unchanged) and int32 [B] labels,
    0 for clean and ``1 + index`` of the factor applied.
  """
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  sample_rng, op_rng = jax.random.split(rng)
  factor_b, severity_b = corr.sample(sample_rng, view_bhwc.shape[0], num_factors=len(factors),
                                     prob=prob, severity=severity)
  images = jnp.clip(view_bhwc * std + mean, 0.0, 1.0)
  images = corr.corrupt_batch(op_rng, images, factor_b, severity_b, factors=tuple(factors),
                              reference_size=reference_size)
  corrupted = (images - mean) / std
  # Clean samples keep their view bit for bit (no round trip through un-normalising).
  view = jnp.where((factor_b >= 0)[:, None, None, None], corrupted, view_bhwc)
  return view, factor_b + 1


# ------------------------------------------------------------------------------ config checks


def _number(value, key: str, *, low: float = -math.inf, high: float = math.inf) -> float:
  if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
      or not low <= value <= high):
    raise ConfigError(f"{key}={value!r} must be a number in [{low:g}, {high:g}]")
  return float(value)


def _count(value, key: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{key}={value!r} must be an integer >= 1")
  return int(value)


# ------------------------------------------------------------------------------ the method


def make(config, *, total_steps: int, steps_per_epoch: int) -> Method:
  """Builds Trust-SSL from an experiment config (keys in the module docstring)."""
  del total_steps
  t = config.trust_ssl
  temperature = _common.check_positive(t.temperature, "trust_ssl.temperature")
  num_factors = _count(t.num_factors, "trust_ssl.num_factors")
  factor_dim = _count(t.factor_dim, "trust_ssl.factor_dim")
  factor_hidden = _count(t.factor_hidden, "trust_ssl.factor_hidden")
  if t.gate not in GATES:
    raise ConfigError(f"trust_ssl.gate={t.gate!r} is unknown; choose one of {list(GATES)}")
  gate = t.gate
  num_prototypes = _count(t.num_prototypes, "trust_ssl.num_prototypes")
  prior = _common.check_positive(t.prior, "trust_ssl.prior")
  a = _number(t.conflict_weight, "trust_ssl.conflict_weight", low=0.0)
  g = _number(t.ignorance_weight, "trust_ssl.ignorance_weight", low=0.0)
  eps = _number(t.ignorance_eps, "trust_ssl.ignorance_eps", low=0.0)
  cosine_tau = _common.check_positive(t.cosine_tau, "trust_ssl.cosine_tau")
  sel_kw = dict(value=_number(t.lambda_sel, "trust_ssl.lambda_sel", low=0.0),
                start=_number(t.sel_start_epoch, "trust_ssl.sel_start_epoch", low=0.0),
                end=_number(t.sel_end_epoch, "trust_ssl.sel_end_epoch", low=0.0))
  if sel_kw["end"] < sel_kw["start"]:
    raise ConfigError(f"trust_ssl.sel_end_epoch={t.sel_end_epoch} must be >= "
                      f"trust_ssl.sel_start_epoch={t.sel_start_epoch}")
  min_kw = dict(start=_number(t.lambda_min_start, "trust_ssl.lambda_min_start", low=0, high=1),
                end=_number(t.lambda_min_end, "trust_ssl.lambda_min_end", low=0, high=1),
                epochs=_common.check_positive(t.lambda_min_epochs, "trust_ssl.lambda_min_epochs"))
  factors = corr.check_factors(t.corruptions, key="trust_ssl.corruptions")
  corruption_prob = _number(t.corruption_prob, "trust_ssl.corruption_prob", low=0.0, high=1.0)
  severity = corr.check_severity(t.severity, key="trust_ssl.severity")
  reference_size = _count(t.corruption_reference_size, "trust_ssl.corruption_reference_size")
  aux_weight = _number(t.aux_weight, "trust_ssl.aux_weight", low=0.0)
  aux_hidden = _count(t.aux_hidden, "trust_ssl.aux_hidden")
  corrupting = bool(factors) and corruption_prob > 0
  views = _common.view_recipes(config, VIEW_NAMES)
  corrupt_kw = dict(mean=views[CORRUPTED_VIEW].mean, std=views[CORRUPTED_VIEW].std,
                    factors=factors, prob=corruption_prob, severity=severity,
                    reference_size=reference_size)

  net = _common.encoder_projector(config)
  factor_head = FactorHead(num_factors=num_factors, factor_dim=factor_dim,
                           hidden_dim=factor_hidden, cpu_kernels=_common.cpu_kernels(config))
  # Official: Linear(F, 256) -> ReLU -> Linear(256, classes); class 0 = clean.
  aux_head = MLP(hidden_dims=(aux_hidden,), out_dim=1 + len(factors), hidden_bn=False)

  def schedules(step):
    epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
    return {"lambda_sel": lambda_sel_at(epoch, **sel_kw),
            "lambda_min": lambda_min_at(epoch, **min_kw)}

  def init(rng, images_bhwc):
    net_rng, factor_rng, gate_rng, aux_rng = jax.random.split(rng, 4)
    net_params, net_state = _common.init_variables(net, net_rng, images_bhwc)
    h, _ = _common.apply_eval(net, net_params, net_state, images_bhwc)
    factor_params, factor_state = _common.init_variables(factor_head, factor_rng, h)
    params = {"net": net_params, "factor": factor_params}
    if corrupting:
      params["aux"], _ = _common.init_variables(aux_head, aux_rng, h)
    if gate == "evidential":
      # PyTorch nn.Linear(d, M) initialisation, U(-1/sqrt(d), 1/sqrt(d)) for weight and bias.
      bound = 1.0 / math.sqrt(factor_dim)
      k_rng, b_rng = jax.random.split(gate_rng)
      gate_state = {
          "kernel": jax.random.uniform(k_rng, (num_factors, factor_dim, num_prototypes),
                                       minval=-bound, maxval=bound),
          "bias": jax.random.uniform(b_rng, (num_factors, num_prototypes),
                                     minval=-bound, maxval=bound)}
    else:
      gate_state = {"log_tau": jnp.full((num_factors,), math.log(cosine_tau), jnp.float32)}
    state = {"net": net_state, "factor": factor_state, "gate": gate_state, **schedules(0)}
    return params, state

  def gate_weights(gate_state, z1, z2, lambda_min):
    if gate == "evidential":
      b1, u1 = evidential_beliefs(z1, gate_state["kernel"], gate_state["bias"], prior=prior)
      b2, u2 = evidential_beliefs(z2, gate_state["kernel"], gate_state["bias"], prior=prior)
      conflict, ignorance = dempster_fusion(b1, b2, u1, u2, eps=eps)
      w = evidential_gate(conflict, ignorance, a=a, g=g, lambda_min=lambda_min)
      return w, {"conflict": jnp.mean(conflict), "ignorance": jnp.mean(ignorance)}
    return cosine_gate(z1, z2, gate_state["log_tau"], lambda_min=lambda_min), {}

  def loss(params, method_state, views, rng):
    view1, view2 = views[0], views[1]
    metrics = {}
    if corrupting:
      view2, label_b = corrupt_normalized(rng, view2, **corrupt_kw)
    # One pass per view: each view has its own BatchNorm batch statistics (as SimCLR).
    (h1, g1), net_state = _common.apply_train(net, params["net"], method_state["net"], view1)
    (h2, g2), net_state = _common.apply_train(net, params["net"], net_state, view2)
    base = losses.ntxent_loss(g1, g2, temperature=temperature)
    z1, factor_state = _common.apply_train(factor_head, params["factor"], method_state["factor"],
                                           h1)
    z2, factor_state = _common.apply_train(factor_head, params["factor"], factor_state, h2)
    # Schedules and gate parameters are not trained: no gradient may reach method_state.
    gate_state = jax.lax.stop_gradient(method_state["gate"])
    lambda_sel = jax.lax.stop_gradient(method_state["lambda_sel"])
    lambda_min = jax.lax.stop_gradient(method_state["lambda_min"])
    w_bt, gate_metrics = gate_weights(gate_state, z1, z2, lambda_min)
    w_bt = jax.lax.stop_gradient(w_bt)
    align = additive_residual(z1, z2, w_bt)
    total = base + lambda_sel * align
    if corrupting:
      logits, _ = _common.apply_train(aux_head, params["aux"], {}, 0.5 * (h1 + h2))
      aux = optax.softmax_cross_entropy_with_integer_labels(logits, label_b).mean()
      total = total + aux_weight * aux
      hit = (label_b > 0).astype(jnp.float32)
      w_b = jnp.mean(w_bt, axis=-1)
      metrics.update(
          aux_loss=aux, corrupted_fraction=jnp.mean(hit),
          trust_corrupted=jnp.sum(w_b * hit) / jnp.maximum(jnp.sum(hit), 1.0),
          trust_clean=jnp.sum(w_b * (1 - hit)) / jnp.maximum(jnp.sum(1 - hit), 1.0))
    metrics.update(ntxent_loss=base, align_loss=align, trust=jnp.mean(w_bt),
                   lambda_sel=lambda_sel, lambda_min=lambda_min, **gate_metrics)
    state = {**method_state, "net": net_state, "factor": factor_state}
    return total, (state, metrics, h1)

  def update(params, method_state, step):
    del params
    return {**method_state, **schedules(step + 1)}

  def represent(params, method_state, images_bhwc):
    h, g_emb = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": g_emb})

  return Method(name="trust_ssl", views=views, init=init, loss=loss, update=update,
                represent=represent, backbone=_common.submodule_backbone(net, _common.in_net))
