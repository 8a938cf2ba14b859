"""T-JEPA (Thimonier et al., ICLR 2025): predict, in latent space, one subset of a row's columns
from another subset of the same row; no augmentation.

Config keys read (see ``experiments/t_jepa.py``): ``encoder.*`` (``name='ft_transformer'``,
``width`` H, ``depth``, ``heads``, ``ffn``, ``dropout``, ``n_reg`` [REG] tokens, ``pos_base`` of
the sin-cos positions and ``pos_scale``, their amplitude) and ``t_jepa.*`` (``predictor_depth`` /
``_width`` / ``_heads`` / ``_ffn`` / ``_dropout``, ``ctx_share`` and ``tgt_share`` as (low, high),
``num_preds`` K, ``ema_start`` / ``ema_end``, ``grad_clip``, ``target_norm``). The columns come
from the data set's ``info``.

One step on a batch of rows x (``t_jepa.md``, "Loss and update"):

* masks from :func:`ssljax.data.table_views.column_masks`: a context set C and K target sets
  T^k per row, sizes shared by the batch, padded to fixed shapes with validity masks;
* ``s_y = f_bar(x)``: the EMA target encoder (tokenizer + encoder) on the full row, under
  ``stop_gradient``;
* ``s_x = f_theta(x_C)``: tokens (tokenizer + positions) gathered at the [REG] tokens and C,
  padded context slots hidden from attention by the encoder's key mask;
* ``s_hat^k = g_phi(s_x, C, T^k)`` (:class:`ssljax.models.jepa.TokenPredictor`), and the loss
  :func:`ssljax.losses.jepa_loss`, the MSE over the valid target tokens;
* ``update``: ``theta_bar <- m theta_bar + (1 - m) theta``, m linear from ``ema_start`` to
  ``ema_end`` over the run.

Where the official code is silent or wrong, this port chooses:

* [REG] tokens are always in the context and never a target; feature column j is token
  ``n_reg + j`` everywhere (the official code's [REG] off-by-one, pitfall 1, is not copied). The
  predictor's positions are these token indices, so [REG] outputs enter it at their own place.
* The target encoder runs without dropout (its targets are deterministic).
* Everything computes in float32 (``compute_dtype`` is not read: these models are small).
* Two options the official code lacks, both off by default (the official behaviour), which make
  T-JEPA learn a table's shared structure where the official recipe does not
  (``benchmarks/t_jepa_latent.py``: a table of noisy copies of one factor beside independent
  columns, kNN +7 to +10 points over the untrained encoder with both, none with neither):

  - ``encoder.pos_scale``: the amplitude of the fixed sin-cos positions (1 = official). Every
    token is ``x_j * W_j + b_j`` + its position; the value part starts at ~0.02 per element
    against the position's ~0.7, so attention is driven by positions and each output token is
    mostly a function of its own column. 0 removes them: the tokenizer's per-column bias ``b_j``
    already says which column a token is (the FT-Transformer's own tokenizer has no positions),
    and values and biases start at one scale.
  - ``t_jepa.target_norm``: ``"none"`` (official: the MSE on the raw target tokens) or
    ``"batch"``: each target token's channels standardised over the global batch's rows
    (:func:`standardize_over_rows`) before the MSE. Raw targets are mostly the same for every row
    (position, bias, the LayerNorms' offsets), so the loss falls by learning that constant and
    leaves the rows' differences, a few percent of it, nearly unweighted; standardised, the loss
    is only about what differs between rows, and what cannot be predicted from the context (an
    independent column) costs as much as it varies.

* ``t_jepa.grad_clip``: the official per-element clipping of the context encoder's gradients to
  [-c, c]. ``ssljax.optim`` has per-tensor norm clipping only, so the method clips: the context
  tokenizer's and encoder's parameters enter the loss through an identity whose backward pass
  clips (:func:`clip_gradient_values`), which clips each parameter's total gradient, as a
  PyTorch hook on the parameter does. With ``grad_accum_steps > 1`` each microbatch's gradient is
  clipped before the trainer averages them. The predictor is not clipped (the spec names the
  context encoder's parameters only).

``represent`` gives the frozen target encoder's output on the full row: ``representation``
[B, (n_reg + D) * H], the flattened token matrix that the paper feeds to downstream models; and
``embedding`` [B, H], for RankMe and the collapse monitors: the mean over all n_reg + D tokens of
that output minus the output on a blank row (:func:`row_embedding`; the row-independent part of
the tokens would otherwise dominate it). The loss returns the same ``representation`` of its
batch (no extra forward pass).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.data import table_views
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common
from ssljax.models import jepa, tabular

# ---------------------------------------------------------------------------- pure functions


def linear_momentum(step, *, start: float, end: float, total_steps: int) -> jax.Array:
  """``start + (end - start) * step / total_steps``, held at ``end`` after the run."""
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(total_steps), 1), 0.0, 1.0)
  return start + (end - start) * frac


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _clip_cotangent(x, limit):
  return x


def _clip_fwd(x, limit):
  return x, None


def _clip_bwd(limit, _, g):
  return (jnp.clip(g, -limit, limit),)


_clip_cotangent.defvjp(_clip_fwd, _clip_bwd)


def standardize_over_rows(tokens: jax.Array, eps: float = 1e-6) -> jax.Array:
  """``(s - mean_b s) / sqrt(var_b s + eps)``: each token's channels standardised over the rows.

  ``tokens`` [B, T, H]; mean and (biased) variance over the B rows of the (global) batch.
  """
  mu = jnp.mean(tokens, axis=0, keepdims=True)
  var = jnp.mean(jnp.square(tokens - mu), axis=0, keepdims=True)
  return (tokens - mu) * jax.lax.rsqrt(var + eps)


TARGET_NORMS = ("none", "batch")


def clip_gradient_values(tree, limit: float):
  """The identity on ``tree``, whose gradient is clipped element-wise to ``[-limit, limit]``."""
  return jax.tree.map(lambda x: _clip_cotangent(x, float(limit)), tree)


# ---------------------------------------------------------------------------------- networks


@dataclasses.dataclass(frozen=True)
class Networks:
  """The modules of T-JEPA and the constants of one data set's rows.

  Attributes:
    tokenizer: rows -> tokens [B, n_reg + D, H].
    encoder: the context (and, with other weights, target) encoder.
    predictor: the JEPA predictor.
    positions: float32 [n_reg + D, H], the fixed sin-cos encoding (times ``encoder.pos_scale``)
      added to the tokens.
    n_reg: [REG] tokens in front of the D feature tokens.
    num_features: D = D_num + D_cat.
  """

  tokenizer: tabular.FeatureTokenizer
  encoder: tabular.TabularEncoder
  predictor: jepa.TokenPredictor
  positions: np.ndarray
  n_reg: int
  num_features: int


def _count(value, key: str, *, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
    raise ConfigError(f"{key}={value!r} must be an integer >= {low}")
  return int(value)


def _rate(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
    raise ConfigError(f"{key}={value!r} must be a number in [0, 1) (a dropout rate)")
  return float(value)


def _heads(width: int, heads: int, where: str) -> None:
  if width % heads:
    raise ConfigError(f"{where}: width {width} is not a multiple of heads {heads}; "
                      "choose heads that divide the width")


def table_columns(info) -> tuple[int, int, tuple[int, ...]]:
  """``(D_num, D_cat, cardinalities)`` of the data set ``info`` describes.

  Raises:
    ConfigError: the data set has no table columns, or a categorical column has no cardinality.
  """
  spec = info.element_spec
  d_num = int(spec["x_num"][0][0]) if "x_num" in spec else 0
  d_cat = int(spec["x_cat"][0][0]) if "x_cat" in spec else 0
  if d_num + d_cat == 0:
    raise ConfigError(f"method='t_jepa' needs table rows (x_num / x_cat columns); "
                      f"input.data.name={info.name!r} yields {sorted(spec)}")
  cards = tuple(int(c) for c in info.cardinalities)
  if len(cards) != d_cat:
    raise ConfigError(f"input.data.name={info.name!r}: {d_cat} categorical columns but "
                      f"{len(cards)} cardinalities; the data set's info is inconsistent")
  return d_num, d_cat, cards


def networks(config, info) -> Networks:
  """The tokenizer, encoder and predictor of ``config`` for the columns of ``info``."""
  enc, tj = config.encoder, config.t_jepa
  if enc.name != "ft_transformer":
    raise ConfigError(f"method='t_jepa' needs encoder.name='ft_transformer' (a per-column "
                      f"token transformer), not {enc.name!r}")
  d_num, d_cat, cards = table_columns(info)
  width = _count(enc.width, "encoder.width", low=1)
  heads = _count(enc.heads, "encoder.heads", low=1)
  _heads(width, heads, "encoder")
  n_reg = _count(enc.n_reg, "encoder.n_reg", low=0)
  pred_width = _count(tj.predictor_width, "t_jepa.predictor_width", low=1)
  pred_heads = _count(tj.predictor_heads, "t_jepa.predictor_heads", low=1)
  _heads(pred_width, pred_heads, "t_jepa.predictor")
  num_tokens = n_reg + d_num + d_cat
  return Networks(
      tokenizer=tabular.FeatureTokenizer(width=width, cardinalities=cards, n_reg=n_reg),
      encoder=tabular.TabularEncoder(depth=_count(enc.depth, "encoder.depth", low=1),
                                     heads=heads, ffn=_count(enc.ffn, "encoder.ffn", low=1),
                                     dropout=_rate(enc.dropout, "encoder.dropout")),
      predictor=jepa.TokenPredictor(
          width=pred_width, out_width=width, heads=pred_heads,
          depth=_count(tj.predictor_depth, "t_jepa.predictor_depth", low=1),
          ffn=_count(tj.predictor_ffn, "t_jepa.predictor_ffn", low=1),
          dropout=_rate(tj.predictor_dropout, "t_jepa.predictor_dropout"),
          num_positions=num_tokens),
      positions=_common.check_nonnegative(enc.get("pos_scale", 1.0), "encoder.pos_scale")
      * tabular.sinusoidal_positions(
          num_tokens, width, base=_common.check_positive(enc.pos_base, "encoder.pos_base")),
      n_reg=n_reg, num_features=d_num + d_cat)


class TargetBackbone(nn.Module):
  """T-JEPA's backbone as one module: rows -> tokenizer + fixed positions -> encoder (eval
  mode) -> the tokens flattened, [B, (n_reg + D) * H] (what ``represent`` reports)."""

  tokenizer: nn.Module
  encoder: nn.Module
  positions: tuple  # The fixed sin-cos encoding, as nested tuples (a module field is hashed).

  @nn.compact
  def __call__(self, batch, *, train: bool = False):
    tokens = self.tokenizer(_rows(batch)) + jnp.asarray(self.positions, jnp.float32)
    out = self.encoder(tokens, train=train)
    return out.reshape(out.shape[0], -1)


def _rows(batch):
  return {k: batch[k] for k in table_views.KEYS if k in batch}


def embed_rows(nets: Networks, tokenizer_params, batch) -> jax.Array:
  """Tokens plus positions [B, n_reg + D, H] of the rows in ``batch``."""
  tokens = nets.tokenizer.apply({"params": tokenizer_params}, _rows(batch))
  return tokens + jnp.asarray(nets.positions)


def encode_full(nets: Networks, enc_params, batch) -> jax.Array:
  """The encoder (eval mode) on every token of the rows: [B, n_reg + D, H].

  ``enc_params``: ``{"tokenizer", "encoder"}`` (the target encoder's, or the context one's).
  """
  tokens = embed_rows(nets, enc_params["tokenizer"], batch)
  return nets.encoder.apply({"params": enc_params["encoder"]}, tokens, train=False)


def encode_context(nets: Networks, enc_params, batch, masks, *, rng=None):
  """The context encoder on the [REG] tokens and the context columns of each row.

  Tokens are gathered after tokenisation and positions, so each keeps its column's identity;
  padded context slots (``masks["ctx_valid"]`` False) are hidden from attention.

  Args:
    nets: the networks.
    enc_params: ``{"tokenizer", "encoder"}``.
    batch: the rows.
    masks: :func:`ssljax.data.table_views.column_masks`' output.
    rng: dropout key (training mode), or None (evaluation mode).

  Returns:
    ``(s_x, positions, key_mask)``: float [B, n_reg + C, H], each slot's token index int32
    [B, n_reg + C], and bool [B, n_reg + C] (True for [REG] and valid context slots).
  """
  tokens = embed_rows(nets, enc_params["tokenizer"], batch)
  n, b = nets.n_reg, tokens.shape[0]
  ctx = masks["ctx"]
  feats = tokens[:, n:][jnp.arange(b)[:, None], ctx]
  positions = jnp.concatenate([jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n)),
                               n + ctx], axis=1)
  key_mask = jnp.concatenate([jnp.ones((b, n), bool),
                              jnp.broadcast_to(masks["ctx_valid"], ctx.shape)], axis=1)
  train = rng is not None
  s_x = nets.encoder.apply({"params": enc_params["encoder"]},
                           jnp.concatenate([tokens[:, :n], feats], axis=1), key_mask,
                           train=train, rngs={"dropout": rng} if train else {})
  return s_x, positions, key_mask


def predict(nets: Networks, pred_params, s_x, positions, key_mask, masks, *, rng=None):
  """The predictor's outputs [K, B, T, H] at the target columns ``masks["tgt"]``."""
  train = rng is not None
  return nets.predictor.apply({"params": pred_params}, s_x, positions, key_mask,
                              nets.n_reg + masks["tgt"], masks["tgt_valid"], train=train,
                              rngs={"dropout": rng} if train else {})


def gather_targets(nets: Networks, s_y, tgt_kbt) -> jax.Array:
  """The full-row outputs ``s_y`` [B, n_reg + D, H] at feature columns ``tgt_kbt``: [K, B, T, H]."""
  b = s_y.shape[0]
  return s_y[:, nets.n_reg:][jnp.arange(b)[None, :, None], tgt_kbt]


def row_embedding(nets: Networks, enc_params, batch, s_y) -> jax.Array:
  """[B, H]: the mean over tokens of ``s_y`` minus the encoder's output on a blank row.

  Every token carries its fixed sin-cos position (amplitude 1) while ``x_j * W_j`` starts at the
  init's scale (W_j uniform in +-1/sqrt(H), as in the official code), so most of ``s_y`` is the
  same for every row; uncentred, that shared part reads as a collapsed embedding (RankMe ~1)
  even at initialisation. The blank row (numeric
  values 0, categorical code 0, the reserved "missing") has the same positions, [REG] tokens
  and biases and no values: subtracting its output keeps what the row's values change.
  """
  blank = {k: jnp.zeros((1, *v.shape[1:]), v.dtype) for k, v in _rows(batch).items()}
  return jnp.mean(s_y - encode_full(nets, enc_params, blank), axis=1)


# ------------------------------------------------------------------------------------ method


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds T-JEPA from an experiment config for the table ``info`` describes."""
  del steps_per_epoch
  nets = networks(config, info)
  tj = config.t_jepa
  sampler = functools.partial(
      table_views.column_masks, ctx_share=tuple(tj.ctx_share), tgt_share=tuple(tj.tgt_share),
      num_preds=_count(tj.num_preds, "t_jepa.num_preds", low=1))
  num_features = nets.num_features
  # Bad shares raise their ConfigError now, when the run is built, not inside the first step.
  jax.eval_shape(lambda k: sampler(k, 1, num_features), jax.random.key(0))
  start = _common.check_momentum(tj.ema_start, "t_jepa.ema_start")
  end = _common.check_momentum(tj.ema_end, "t_jepa.ema_end")
  grad_clip = _common.check_nonnegative(tj.grad_clip, "t_jepa.grad_clip")
  target_norm = tj.get("target_norm", "none")
  if target_norm not in TARGET_NORMS:
    raise ConfigError(f"t_jepa.target_norm={target_norm!r} must be one of {TARGET_NORMS}")

  def init(rng, example_view):
    k_tok, k_enc, k_pred, k_mask = jax.random.split(rng, 4)
    rows = _rows(example_view)
    tokenizer = nets.tokenizer.init(k_tok, rows)["params"]
    tokens = embed_rows(nets, tokenizer, rows)
    context = {"tokenizer": tokenizer,
               "encoder": nets.encoder.init(k_enc, tokens)["params"]}
    masks = sampler(k_mask, tokens.shape[0], num_features)
    s_x, positions, key_mask = encode_context(nets, context, rows, masks)
    predictor = nets.predictor.init(k_pred, s_x, positions, key_mask,
                                    nets.n_reg + masks["tgt"], masks["tgt_valid"])["params"]
    # The target encoder starts as an exact copy of the context encoder.
    return {**context, "predictor": predictor}, {"target": context}

  def loss(params, method_state, views, rng):
    rows = _rows(views[0])
    k_mask, k_enc, k_pred = jax.random.split(rng, 3)
    s_y = jax.lax.stop_gradient(encode_full(nets, method_state["target"], rows))
    b = s_y.shape[0]
    masks = sampler(k_mask, b, num_features)
    context = {"tokenizer": params["tokenizer"], "encoder": params["encoder"]}
    if grad_clip > 0:
      context = clip_gradient_values(context, grad_clip)
    s_x, positions, key_mask = encode_context(nets, context, rows, masks, rng=k_enc)
    pred = predict(nets, params["predictor"], s_x, positions, key_mask, masks, rng=k_pred)
    targets = standardize_over_rows(s_y) if target_norm == "batch" else s_y
    value = losses.jepa_loss(pred, gather_targets(nets, targets, masks["tgt"]),
                             masks["tgt_valid"])
    rep = s_y.reshape(b, -1)
    metrics = {"t_jepa_loss": value, "n_ctx": masks["n_ctx"].astype(jnp.float32),
               "n_tgt": masks["n_tgt"].astype(jnp.float32),
               # Collapse monitor: the targets' spread over the batch's rows.
               "target_std": jnp.mean(jnp.std(rep, axis=0))}
    return value, (method_state, metrics, rep)

  def update(params, method_state, step):
    momentum = linear_momentum(step, start=start, end=end, total_steps=total_steps)
    online = {"tokenizer": params["tokenizer"], "encoder": params["encoder"]}
    return {**method_state, "target": _common.ema(method_state["target"], online, momentum)}

  def represent(params, method_state, batch):
    del params
    rows = _rows(batch)
    s_y = encode_full(nets, method_state["target"], rows)
    return _common.as_float32({"representation": s_y.reshape(s_y.shape[0], -1),
                               "embedding": row_embedding(nets, method_state["target"], rows,
                                                          s_y)})

  module = TargetBackbone(nets.tokenizer, nets.encoder,
                          tuple(map(tuple, np.asarray(nets.positions).tolist())))
  backbone = Backbone(module, lambda params, method_state: {"params": method_state["target"]})
  return Method(name="t_jepa", views=(table_views.TableRows(),), init=init, loss=loss,
                update=update, represent=represent, backbone=backbone)

