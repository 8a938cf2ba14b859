"""EEGFormer (Chen et al., "EEGFormer: Towards Transferable and Interpretable Large-Scale EEG
Foundation Model", AAAI 2024 Spring Symposium, arXiv 2401.10278): vector-quantised
reconstruction of each channel's spectral patches.

Each channel's FFT amplitudes (``ssljax.models.eegformer.spectral_features``, instance-normalised
per channel) are cut into patches of P values with stride S; a transformer encoder with one set of
weights runs over each channel's patch sequence on its own (``PatchEncoder``) and gives ``h`` per
channel and patch; a codebook of K vectors quantises ``h`` to its nearest code with the
straight-through gradient; a shallow transformer decoder reconstructs the patches from the codes.
The loss (``ssljax.losses.eegformer_loss``) is the VQ-VAE form: patch MSE + codebook term +
``beta`` x commitment term. With ``mask_ratio > 0`` a random share of each channel's patches is
replaced by a learned mask token before the encoder and only those patches are scored.

No official code exists and the paper's details reach us partly through third-party summaries, so
the choices they leave open are config fields (``eegformer.*``), each [unverified]: the FFT
window (``window``, 0 = one FFT over the whole segment), taper, log or linear amplitude, P, S, K,
the mask ratio, and the codebook's update. Padding: ``window=0`` reads each series' own length
(the FFT of its valid samples); with ``window > 0`` every window of the padded buffer is a token,
so on series of different lengths the windows past a series' end (zeros, constant after the log)
enter the normalisation, the loss and the pooled representation: pad recordings to one length
(cut fixed windows, as the paper's 12-s segments) or use ``window=0`` there.

* ``codebook_update='ema'`` (default): the codebook lives in ``method_state`` and follows the
  exponential moving average of the encoder outputs assigned to each code (van den Oord et al.
  2017, appendix A.1; the codebook term is then dropped from the loss). Against codebook collapse
  (the spec's pitfall 1) it starts from data and re-seeds dead codes: at the first update every
  code is set to a random encoder output of the batch, and afterwards any code whose EMA count
  falls below ``dead_threshold`` is set to a fresh random encoder output. The loss writes the
  batch's assignment counts, sums and those random outputs into ``method_state["batch"]``;
  ``update`` applies them (pure functions both).
* ``codebook_update='loss'``: the spec's literal objective; the codebook is a parameter trained
  by the codebook term. No re-seeding is possible there (``update`` cannot change parameters);
  the metrics show whether codes die. On BasicMotions (the experiment's default otherwise, 200
  steps) it collapsed to a single code (perplexity 1.0) and the kNN stayed at its init's 90%.

Metrics: ``recon_mse``, ``codebook_loss``, ``commitment_loss``, ``codes_used`` and
``code_perplexity`` of the batch, and (EMA) ``dead_codes``.

Representation for probes (``represent`` and the exported backbone): the encoder's output ``h``
(before quantisation, no masking) averaged over channels and patches, [B, D] (``pool='mean'``),
or averaged over patches per channel and concatenated, [B, C * D] (``pool='channels'``).

Config keys (``experiments/eegformer.py``): ``encoder.*`` (``name='eegformer'``, ``width`` = D,
``depth``, ``num_heads``, ``mlp_dim``), ``eegformer.*`` (above, plus ``decoder_width``,
``decoder_depth``, ``decoder_heads``, ``decoder_mlp_dim``, ``beta``, ``ema_decay``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data.series_views import SeriesRows
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, identity_update
from ssljax.models import eegformer as eeg
from ssljax.models import vit

CODEBOOK_UPDATES = ("ema", "loss")
LAPLACE_EPS = 1e-5  # Sonnet's VectorQuantizerEMA smoothing of the EMA cluster sizes.


def _positive_int(value, key: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{key}={value!r} must be an integer >= 1")
  return int(value)


def make_net(config, *, length: int) -> tuple[eeg.EEGFormerNet, int]:
  """The encoder/decoder pair for series of ``length`` timestamps, and the patch count N."""
  enc, cfg = config.encoder, config.eegformer
  if str(enc.name) != "eegformer":
    raise ConfigError(f"encoder.name={enc.name!r}: EEGFormer trains its patch transformer; use "
                      "encoder.name='eegformer'")
  width, depth = _positive_int(enc.width, "encoder.width"), int(enc.depth)
  heads, mlp = _positive_int(enc.num_heads, "encoder.num_heads"), int(enc.mlp_dim)
  if width % heads:
    raise ConfigError(f"encoder.num_heads={heads} must divide encoder.width={width}")
  dec_width = _positive_int(cfg.decoder_width, "eegformer.decoder_width")
  dec_heads = _positive_int(cfg.decoder_heads, "eegformer.decoder_heads")
  if dec_width % dec_heads:
    raise ConfigError(f"eegformer.decoder_heads={dec_heads} must divide "
                      f"eegformer.decoder_width={dec_width}")
  patch = _positive_int(cfg.patch, "eegformer.patch")
  stride = _positive_int(cfg.stride, "eegformer.stride")
  window = int(cfg.window)
  if window < 0 or window == 1:
    raise ConfigError(f"eegformer.window={window} must be 0 (one FFT over the whole series) or a "
                      "window of >= 2 samples")
  if window > length:
    raise ConfigError(f"eegformer.window={window} is longer than the series ({length} "
                      "timestamps); use 0 or a shorter window")
  spectral = eeg.spectral_length(length, window)
  if spectral < patch:
    raise ConfigError(f"eegformer.patch={patch} is longer than each channel's spectral sequence "
                      f"({spectral} values for {length} timestamps, window={window}); lower "
                      "eegformer.patch")
  encoder = eeg.EEGFormerEncoder(
      encoder=eeg.PatchEncoder(width=width, depth=depth, num_heads=heads, mlp_dim=mlp),
      patch=patch, stride=stride, window=window,
      taper=eeg.check_choice(cfg.taper, eeg.TAPERS, "eegformer.taper"),
      amplitude=eeg.check_choice(cfg.amplitude, eeg.AMPLITUDES, "eegformer.amplitude"),
      log_eps=_common.check_positive(cfg.log_eps, "eegformer.log_eps"),
      pool=eeg.check_choice(cfg.pool, eeg.POOLS, "eegformer.pool"))
  dec_mlp = _positive_int(cfg.decoder_mlp_dim, "eegformer.decoder_mlp_dim")
  decoder = eeg.PatchDecoder(patch=patch, width=dec_width, depth=int(cfg.decoder_depth),
                             num_heads=dec_heads, mlp_dim=dec_mlp)
  code_dim = int(cfg.code_dim)
  if code_dim < 0:
    raise ConfigError(f"eegformer.code_dim={code_dim} must be 0 (quantise the encoder output) or "
                      ">= 1 (quantise a projection of that width)")
  net = eeg.EEGFormerNet(encoder=encoder, decoder=decoder, code_dim=code_dim)
  return net, eeg.num_patches(spectral, patch, stride)


def ema_codebook_update(state, step, *, decay: float, dead_threshold: float):
  """One EMA step of the codebook from the batch statistics the loss left in ``state["batch"]``.

  ``N_k <- decay N_k + (1 - decay) n_k``, ``m_k <- decay m_k + (1 - decay) sum_{i: k_i = k} h_i``,
  ``v_k = m_k / N~_k`` with Laplace-smoothed ``N~`` (VQ-VAE appendix A.1). At step 0 every code is
  set to one of the batch's random encoder outputs (data-based init); afterwards codes with
  ``N_k < dead_threshold`` are re-seeded the same way; a re-seeded code's ``N_k`` restarts at the
  threshold (1 when it is 0).
  """
  batch = state["batch"]
  counts, sums, picks = batch["counts"], batch["sums"], batch["candidates"]
  k = counts.shape[0]
  size = decay * state["cluster_size"] + (1.0 - decay) * counts
  embed_sum = decay * state["embed_sum"] + (1.0 - decay) * sums
  total = jnp.sum(size)
  smoothed = (size + LAPLACE_EPS) / (total + k * LAPLACE_EPS) * total
  codebook = embed_sum / smoothed[:, None]
  dead = (step == 0) | (size < dead_threshold)
  # A re-seeded code that the next batch does not use falls under the threshold again and is
  # re-seeded again (Jukebox's random restarts), until it finds tokens of its own.
  restart = dead_threshold if dead_threshold > 0 else 1.0
  size = jnp.where(dead, restart, size)
  embed_sum = jnp.where(dead[:, None], picks * restart, embed_sum)
  codebook = jnp.where(dead[:, None], picks, codebook)
  return {**state, "codebook": codebook, "cluster_size": size, "embed_sum": embed_sum,
          "dead_codes": jnp.sum(dead).astype(jnp.float32)}


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds EEGFormer from an experiment config and the data's description ``info``."""
  del total_steps, steps_per_epoch
  t = _common.check_series(info, "eegformer")
  cfg = config.eegformer
  net, n = make_net(config, length=t)
  width = int(config.encoder.width)
  code_width = net.code_dim or width
  num_codes = _positive_int(cfg.num_codes, "eegformer.num_codes")
  beta = _common.check_nonnegative(cfg.beta, "eegformer.beta")
  update_kind = eeg.check_choice(cfg.codebook_update, CODEBOOK_UPDATES,
                                 "eegformer.codebook_update")
  use_ema = update_kind == "ema"
  decay = _common.check_momentum(cfg.ema_decay, "eegformer.ema_decay")
  dead_threshold = _common.check_nonnegative(cfg.dead_threshold, "eegformer.dead_threshold")
  mask_ratio = _common.check_nonnegative(cfg.mask_ratio, "eegformer.mask_ratio")
  if mask_ratio > 0 and not (int(n * (1 - mask_ratio)) >= 1 and int(n * (1 - mask_ratio)) < n):
    raise ConfigError(f"eegformer.mask_ratio={mask_ratio} masks no patch or every patch of the "
                      f"{n} per channel; use a ratio in [1/{n}, 1 - 1/{n}] or 0 (no masking)")

  def init(rng, example_view):
    k_net, k_code = jax.random.split(rng)
    net_params, _ = _common.init_variables(net, k_net, example_view)
    # Unit-variance codes: the scale of the encoder's LayerNorm-ed outputs.
    codebook = jax.random.normal(k_code, (num_codes, code_width), jnp.float32)
    if not use_ema:
      return {"net": net_params, "codebook": codebook}, {}
    zeros_k = jnp.zeros((num_codes,), jnp.float32)
    state = {"codebook": codebook, "cluster_size": jnp.ones((num_codes,), jnp.float32),
             "embed_sum": codebook, "dead_codes": jnp.zeros((), jnp.float32),
             "batch": {"counts": zeros_k, "sums": jnp.zeros_like(codebook),
                       "candidates": jnp.zeros_like(codebook)}}
    return {"net": net_params}, state

  def loss(params, method_state, views, rng):
    batch = views[0]
    k_mask, k_pick = jax.random.split(rng)
    b, c = batch["series"].shape[0], batch["series"].shape[-1]
    mask_bcn = None
    if mask_ratio > 0:
      _, mask_bl, _ = vit.random_masking(k_mask, b * c, n, mask_ratio=mask_ratio)
      mask_bcn = mask_bl.reshape(b, c, n) > 0
    target, h = net.apply({"params": params["net"]}, batch, mask_bcn, method=net.encode)
    z = net.apply({"params": params["net"]}, h, method=net.project)
    h_md = z.reshape(-1, code_width)
    codebook = method_state["codebook"] if use_ema else params["codebook"]
    q_md, index_m, v_md = eeg.vector_quantize(h_md, codebook)
    pred = net.apply({"params": params["net"]}, q_md.reshape(z.shape), method=net.decode)
    value = losses.eegformer_loss(pred, target, h_md, v_md, mask_bcn, beta=beta,
                                  codebook_weight=0.0 if use_ema else 1.0)
    metrics = {"recon_mse": losses.masked_patch_mse(pred, target, mask_bcn),
               "codebook_loss": losses.vq_codebook_loss(h_md, v_md),
               "commitment_loss": losses.vq_commitment_loss(h_md, v_md),
               **eeg.code_statistics(index_m, num_codes)}
    if use_ema:
      onehot_mk = jax.nn.one_hot(index_m, num_codes, dtype=jnp.float32)
      h_sg = jax.lax.stop_gradient(h_md)
      m = h_sg.shape[0]
      pick = jax.random.choice(k_pick, m, (num_codes,), replace=m < num_codes)
      method_state = {**method_state, "batch": {
          "counts": jnp.sum(onehot_mk, axis=0),
          "sums": jnp.matmul(onehot_mk.T, h_sg, precision=jax.lax.Precision.HIGHEST),
          "candidates": h_sg[pick]}}
      metrics["dead_codes"] = method_state["dead_codes"]
    rep = jnp.mean(h, axis=(1, 2)) if net.encoder.pool == "mean" else (
        jnp.mean(h, axis=2).reshape(b, -1))
    return value, (method_state, metrics, rep)

  def update(params, method_state, step):
    del params
    return ema_codebook_update(method_state, step, decay=decay, dead_threshold=dead_threshold)

  def backbone_variables(params, method_state):
    del method_state
    return {"params": params["net"]["encoder"]}

  def represent(params, method_state, batch):
    h = net.encoder.apply(backbone_variables(params, method_state), batch, train=False)
    return _common.as_float32({"representation": h, "embedding": h})

  return Method(name="eegformer", views=(SeriesRows(),), init=init, loss=loss,
                update=update if use_ema else identity_update, represent=represent,
                backbone=Backbone(module=net.encoder, variables=backbone_variables))
