"""TimeX (Queen, Hartvigsen, Koker, He, Tsiligkaridis & Zitnik, "Encoding Time-Series Explanations
through Self-Supervised Model Behavior Consistency", NeurIPS 2023).

TimeX explains a FROZEN pretrained time-series classifier f = F o G. A mask generator H^E gives
each timestamp (and channel) a probability p of being kept; a hard straight-through Gumbel sample
M of it masks the series; an explanation encoder G^E (initialised as a copy of G) embeds the
masked series, z^E = G^E(X, M), and F^E predicts from it. Training asks the explanation space to
keep the relations between samples that G and f induce (model behaviour consistency), not each
sample's output:

  L = beta_exp (w_gsat L_m + w_con L_con) + beta_sim (L_MBC + lam L_LC)

* L_MBC (``ssljax.losses.timex_mbc_loss``, paper eq. 4): the B x B cosine similarities of z = G(X)
  against those of z^E; with "side assimilation" (the released default) the same loss between z
  and the landmarks matched to z^E (matching on a stopped z^E, so only the landmarks learn from
  it). Landmarks: ``n_landmarks`` vectors, each z^E matched by a hard Gumbel-softmax (tau 0.1)
  over the log-softmax of its cosine similarities to them.
* L_LC (``timex_label_consistency_loss``, eq. 5): per pair i < j, the squared difference of the
  Jensen-Shannon divergences between the explainer's predictions F^E(z^E) and between the frozen
  model's predictions f(X), averaged over the B (B - 1) / 2 pairs. ``timex.faithful_lc_reduction``
  reproduces the released code's batch-mean form instead (see the loss's docstring).
* L_m (``timex_gsat_loss``): KL(Bern(p) || Bern(r)) towards r = 0.5; L_con
  (``timex_connect_loss``): the norm of p's time differences.
* The classification loss of the released trainer is on the frozen model and contributes nothing;
  it is left out.

How the mask reaches G^E (``ssljax.models.timex.apply_mask``): univariate series, the mask is G^E's
attention mask (the reference transformer, whose layers drop the residual around attention);
multivariate, ``M X + (1 - M) B`` with B ~ N(mu_t, sigma_t) of the current global batch (the
released code: of the whole training set) plus the attention mask ``hardtanh(sum_c M)``.

Two stages, both this module (``timex.stage``):

1. ``'classifier'``: trains f = F o G (``ssljax.models.timex.SeriesClassifier``, the paper's small
   transformer) with Poly-1 cross-entropy on the labels (``uses_labels``); export it with
   ``python -m ssljax.export``.
2. ``'explainer'`` (the default): TimeX. ``encoder.init_from=<exported folder>`` puts the exported
   f into BOTH the frozen reference (``method_state["reference"]``, never an optimiser parameter,
   read under stop_gradient; Adam's momentum cannot move it) and the trainable copy G^E, F^E
   (``params["explainer"]``). Without ``init_from`` (tests) the reference is a random network:
   real use needs ``init_from``.

Deterministic evaluation (the released code samples Gumbel noise at test time too): ``represent``
returns ``saliency`` = p [B, T, C] and uses M = (p > 0.5). Its ``representation`` is G^E on the
whole series (what ``Method.backbone`` / export give); ``embedding`` is z^E; ``logits`` are the
frozen model's (``classifier_top1``: the explained model's accuracy) and ``logits_explainer``
F^E(z^E) (``classifier_top1_explainer``). ``ssljax.evals.explain`` scores the saliency against the
ground truth of ``synth:*`` data (AUPRC, AUP, AUR).

Deviations from the released code, and why: the landmarks start as N(0, 1) draws (the released
scripts set them to G's embeddings of a stratified training sample, which ``init`` cannot see; the
landmarks do not reach the masks under side assimilation); F^E is the copy of F that init_from
loads (released: a fresh MLP of the same shape); the mask generator and G^E run without dropout;
the multivariate baseline statistics are the batch's (train) and a running average (evaluation);
no ReduceLROnPlateau / early stopping on a validation split (a constant learning rate).

Config keys (``experiments/timex.py``): ``encoder.*`` (``name='timex_transformer'``, ``d_pe``,
``heads``, ``ffn``, ``depth``, ``dropout``, ``init_from``), ``timex.*`` (``stage``, ``beta_exp``,
``beta_sim``, ``lam_label``, ``w_gsat``, ``w_connect``, ``r``, ``tau``, ``n_landmarks``,
``landmark_tau``, ``side_assimilation``, ``faithful_lc_reduction``, ``poly1_epsilon``,
``maskgen_heads``, ``maskgen_ffn``, ``maskgen_depth``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data import synth_series
from ssljax.data.series_views import SeriesRows
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import timex as tm

STAGES = ("explainer", "classifier")
BASELINE_MOMENTUM = 0.99  # Running baseline statistics (multivariate evaluation).


def make_classifier(config, *, channels: int, length: int, num_classes: int):
  """f = F o G from ``config.encoder`` for series of ``channels`` channels and ``length`` steps."""
  enc = config.encoder
  if str(enc.name) != "timex_transformer":
    raise ConfigError(f"encoder.name={enc.name!r}: TimeX explains its reference transformer; use "
                      "encoder.name='timex_transformer'")
  d_pe, heads = int(enc.d_pe), int(enc.heads)
  if d_pe < 2 or d_pe % 2:
    raise ConfigError(f"encoder.d_pe={d_pe} must be an even number >= 2")
  width = channels + d_pe
  if heads < 1 or width % heads:
    raise ConfigError(f"encoder.heads={heads} must divide the model width {width} (channels "
                      f"{channels} + encoder.d_pe {d_pe})")
  if int(enc.ffn) < 1 or int(enc.depth) < 1 or not 0.0 <= float(enc.dropout) < 1.0:
    raise ConfigError(f"encoder.ffn={enc.ffn} and encoder.depth={enc.depth} must be >= 1 and "
                      f"encoder.dropout={enc.dropout} in [0, 1)")
  if num_classes < 2:
    raise ConfigError(f"TimeX explains a classifier: the data has {num_classes} classes; use "
                      "labelled data with >= 2 classes")
  encoder = tm.SeriesTransformer(d_pe=d_pe, heads=heads, ffn=int(enc.ffn), depth=int(enc.depth),
                                 dropout=float(enc.dropout), max_len=length)
  return tm.SeriesClassifier(encoder=encoder, num_classes=num_classes)


def _check_explain_data(config) -> None:
  evals = config.eval.get("evals", "auto")
  names = [n.strip() for n in evals.split(",")] if isinstance(evals, str) else list(evals)
  if "explain" in names:
    probe = config.eval.get("data", {}).get("name") or config.input.data.name
    if not synth_series.is_synth(str(probe)):
      raise ConfigError(f"eval.evals names 'explain' but the probe data {probe!r} has no ground "
                        "truth saliency; use input.data.name='synth:<Name>' or drop 'explain'")


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds TimeX's stage ``timex.stage`` from an experiment config and the data's ``info``."""
  del total_steps, steps_per_epoch
  t = _common.check_series(info, "timex")
  channels = int(info.element_spec["series"][0][1])
  cfg = config.timex
  stage = str(cfg.stage)
  if stage not in STAGES:
    raise ConfigError(f"timex.stage={stage!r}: choose 'classifier' (train the model to explain) "
                      "or 'explainer' (TimeX on a classifier loaded with encoder.init_from)")
  clf = make_classifier(config, channels=channels, length=t, num_classes=int(info.num_classes))
  if stage == "classifier":
    return _classifier_method(clf, epsilon=_common.check_nonnegative(cfg.poly1_epsilon,
                                                                      "timex.poly1_epsilon"))
  _check_explain_data(config)
  return _explainer_method(config, clf, channels=channels, length=t)


# ------------------------------------------------------------------------- stage 1: f = F o G


def _classifier_method(clf, *, epsilon: float) -> Method:
  view = SeriesRows()

  def init(rng, example_view):
    params, _ = _common.init_variables(clf, rng, example_view)
    return params, {}

  def loss(params, method_state, views, rng, *, labels):
    batch = views[0]
    logits, z, _ = clf.apply({"params": params}, batch, train=True, method=clf.classify,
                             rngs={"dropout": rng})
    seen = labels >= 0
    per = losses.poly1_cross_entropy(logits, jnp.maximum(labels, 0), epsilon=epsilon)
    count = jnp.maximum(jnp.sum(seen), 1)
    value = jnp.sum(jnp.where(seen, per, 0.0)) / count
    top1 = jnp.sum(jnp.where(seen, jnp.argmax(logits, -1) == labels, False)) / count
    return value, (method_state, {"train_top1": top1}, z)

  def represent(params, method_state, batch):
    del method_state
    logits, z, _ = clf.apply({"params": params}, batch, method=clf.classify)
    return _common.as_float32({"representation": z, "embedding": z, "logits": logits})

  return Method(name="timex", views=(view,), init=init, loss=loss, update=identity_update,
                represent=represent, uses_labels=True,
                backbone=Backbone(module=clf, variables=lambda p, s: {"params": p}))


# ---------------------------------------------------------------------------- stage 2: TimeX


def _explainer_method(config, clf, *, channels: int, length: int) -> Method:
  cfg, enc = config.timex, config.encoder
  weights = {k: _common.check_nonnegative(cfg[k], f"timex.{k}")
             for k in ("beta_exp", "beta_sim", "lam_label", "w_gsat", "w_connect")}
  r = float(cfg.r)
  if not 0.0 < r < 1.0:
    raise ConfigError(f"timex.r={cfg.r!r} must be in (0, 1) (the sparsity prior's keep rate)")
  tau = _common.check_positive(cfg.tau, "timex.tau")
  landmark_tau = _common.check_positive(cfg.landmark_tau, "timex.landmark_tau")
  n_landmarks = int(cfg.n_landmarks)
  if n_landmarks < 1:
    raise ConfigError(f"timex.n_landmarks={cfg.n_landmarks} must be >= 1")
  side = bool(cfg.side_assimilation)
  faithful = bool(cfg.faithful_lc_reduction)
  width = channels + int(enc.d_pe)
  heads = int(cfg.maskgen_heads)
  if heads < 1 or width % heads or int(cfg.maskgen_ffn) < 1 or int(cfg.maskgen_depth) < 1:
    raise ConfigError(f"timex.maskgen_heads={heads} must divide the width {width}; "
                      "timex.maskgen_ffn and timex.maskgen_depth must be >= 1")
  # encoder_pret: G's architecture, randomly initialised and trained with H^E (released default).
  pret = tm.SeriesTransformer(d_pe=int(enc.d_pe), heads=int(enc.heads), ffn=int(enc.ffn),
                              depth=int(enc.depth), dropout=0.0, max_len=length)
  maskgen = tm.MaskGenerator(d_pe=int(enc.d_pe), heads=heads, ffn=int(cfg.maskgen_ffn),
                             depth=int(cfg.maskgen_depth), max_len=length)
  multivariate = channels > 1

  def init(rng, example_view):
    k_clf, k_ref, k_pret, k_mask, k_land = jax.random.split(rng, 5)
    explainer, _ = _common.init_variables(clf, k_clf, example_view)
    reference, _ = _common.init_variables(clf, k_ref, example_view)
    x, valid = example_view["series"], tm.valid_of(example_view)
    pret_params = pret.init(k_pret, x, valid_bt=valid)["params"]
    _, z_seq = pret.apply({"params": pret_params}, x, valid_bt=valid)
    mask_params = maskgen.init(k_mask, x, z_seq, valid_bt=valid)["params"]
    params = {"explainer": explainer, "pret": pret_params, "maskgen": mask_params,
              "landmarks": jax.random.normal(k_land, (n_landmarks, width), jnp.float32)}
    state = {"reference": reference,
             "baseline": {"mean": jnp.zeros((length, channels), jnp.float32),
                          "var": jnp.ones((length, channels), jnp.float32)}}
    return params, state

  def mask_probs(params, x, valid):
    _, z_seq = pret.apply({"params": params["pret"]}, x, valid_bt=valid)
    return maskgen.apply({"params": params["maskgen"]}, x, z_seq, valid_bt=valid)

  def explain(params, x, valid, m, baseline):
    x_m, keep = tm.apply_mask(x, m, baseline if multivariate else None)
    logits_e, z_e, _ = clf.apply({"params": params["explainer"]}, {"series": x_m, "valid": valid},
                                 keep_bt=keep, method=clf.classify)
    return logits_e, z_e

  def reference_pass(method_state, batch):
    ref = jax.lax.stop_gradient(method_state["reference"])
    logits, z, _ = clf.apply({"params": ref}, batch, method=clf.classify)
    return jax.lax.stop_gradient(logits), jax.lax.stop_gradient(z)

  def match_landmarks(rng, landmarks, z_e):
    z = jax.lax.stop_gradient(z_e) if side else z_e
    choice = tm.hard_gumbel_choice(rng, jax.nn.log_softmax(_cosine(z, landmarks), axis=-1),
                                   tau=landmark_tau)
    return choice @ landmarks, choice

  def loss(params, method_state, views, rng):
    batch = views[0]
    x, valid = batch["series"], tm.valid_of(batch)
    k_mask, k_base, k_land = jax.random.split(rng, 3)
    logits, z = reference_pass(method_state, batch)
    p = mask_probs(params, x, valid)
    m = tm.gumbel_ste_mask(k_mask, p, tau=tau)
    # Baseline draws N(mu_t, sigma_t) from the global batch's statistics (multivariate only),
    # over the series that have data at t (padding is no data).
    w = valid[..., None].astype(x.dtype)
    count = jnp.maximum(jnp.sum(w, axis=0), 1.0)
    mean = jax.lax.stop_gradient(jnp.sum(x * w, axis=0) / count)
    var = jax.lax.stop_gradient(jnp.sum(jnp.square(x - mean) * w, axis=0) / count)
    baseline = mean + jnp.sqrt(var) * jax.random.normal(k_base, x.shape)
    logits_e, z_e = explain(params, x, valid, m, baseline)
    mbc = losses.timex_mbc_loss(z, z_e)
    landmark_mbc = jnp.zeros(())
    if side:
      matched, _ = match_landmarks(k_land, params["landmarks"], z_e)
      landmark_mbc = losses.timex_mbc_loss(z, matched)
    lc = losses.timex_label_consistency_loss(logits_e, logits, faithful_lc_reduction=faithful)
    gsat = losses.timex_gsat_loss(p, r=r, valid_bt=valid)
    connect = losses.timex_connect_loss(p, valid)
    value = (weights["beta_exp"] * (weights["w_gsat"] * gsat + weights["w_connect"] * connect)
             + weights["beta_sim"] * (mbc + landmark_mbc + weights["lam_label"] * lc))
    b = BASELINE_MOMENTUM
    new_state = {**method_state,
                 "baseline": {"mean": b * method_state["baseline"]["mean"] + (1 - b) * mean,
                              "var": b * method_state["baseline"]["var"] + (1 - b) * var}}
    metrics = {"mbc": mbc, "landmark_mbc": landmark_mbc, "label_consistency": lc, "gsat": gsat,
               "connect": connect, "mask_kept": jnp.mean(m),
               "label_agreement": jnp.mean(jnp.argmax(logits_e, -1) == jnp.argmax(logits, -1))}
    return value, (new_state, metrics, z_e)

  def represent(params, method_state, batch):
    x, valid = batch["series"], tm.valid_of(batch)
    logits, _ = reference_pass(method_state, batch)
    p = mask_probs(params, x, valid)
    m = (p > 0.5).astype(p.dtype)  # Deterministic explanation (no Gumbel noise at evaluation).
    logits_e, z_e = explain(params, x, valid, m, method_state["baseline"]["mean"][None])
    rep = clf.apply({"params": params["explainer"]}, batch)
    out = _common.as_float32({"representation": rep, "embedding": z_e, "saliency": p,
                              "logits": logits, "logits_explainer": logits_e})
    out["landmark"] = jnp.argmax(_cosine(z_e, params["landmarks"]), axis=-1).astype(jnp.int32)
    return out

  return Method(name="timex", views=(SeriesRows(),), init=init, loss=loss,
                update=identity_update, represent=represent,
                backbone=Backbone(module=clf, variables=lambda p, s: {"params": p["explainer"]}))


def _cosine(a_bd: jax.Array, b_kd: jax.Array) -> jax.Array:
  """[B, K] cosine similarities of the rows of ``a_bd`` and ``b_kd``."""
  a = a_bd / jnp.maximum(jnp.linalg.norm(a_bd, axis=-1, keepdims=True), 1e-12)
  b = b_kd / jnp.maximum(jnp.linalg.norm(b_kd, axis=-1, keepdims=True), 1e-12)
  return a @ b.T
