"""TimeX's networks (Queen et al., NeurIPS 2023): the reference transformer classifier f = F o G,
the mask generator H^E, and the straight-through masks.

Shapes: series ``x`` float32 [B, T, C]; ``valid`` bool [B, T] (True where a timestamp is data);
embeddings [B, D] with ``D = C + d_pe`` (the reference transformer works on the series
concatenated with a sinusoidal time encoding and has no input projection).

* :class:`SeriesTransformer` (G; the official ``TransformerMVTS`` as the synthetic experiments
  configure it): ``[PE(t) || x_t]``, ``depth`` encoder layers, the sum over the valid timestamps
  divided by ``length + 1`` (the official mean aggregation). Each layer is post-norm with the
  official edit that drops the residual around self-attention (``h = LN1(SA(x))``,
  ``out = LN2(h + FFN(h))``): with a residual, a timestamp removed from attention would still
  reach the output through its own input. An explanation mask enters as a multiplicative
  attention mask ``keep_t keep_s`` applied after the softmax (the official differentiable
  masking; no renormalisation, so a masked key still enters the other rows' softmax normaliser,
  as in the released code).
* :class:`SeriesClassifier` (f = F o G): G and the head F = Linear(D, D), ReLU, Linear(D, K).
  Called, it returns G's embedding [B, D] (what an exported backbone gives); ``classify`` returns
  ``(logits, z, z_seq)``.
* :class:`MaskGenerator` (H^E): a post-norm transformer decoder (PyTorch ``TransformerDecoder``
  layers: self-attention, cross-attention to ``memory``, FFN, each with a residual) whose queries
  are ``[x_t || PE(t)]`` and whose memory is a per-timestamp embedding of the series; then per
  timestamp a 2-way softmax (univariate: p = its second entry) or a sigmoid per channel
  (multivariate). Returns mask probabilities p [B, T, C].
* :func:`gumbel_ste_mask`: a hard Gumbel-softmax sample of the two-class ``[1 - p, p]`` with a
  straight-through gradient (values in {0, 1}, gradient of the relaxed sample);
  :func:`hard_gumbel_choice` the same over K options (landmark matching).
* :func:`apply_mask`: the masked input, univariate (attention mask only) or multivariate
  (``M x + (1 - M) B`` with baseline draws B, and the attention mask ``hardtanh(sum_c M)``).

Dropout is that of the classifier's training (0.1); the explainer's networks run without it
(deterministic), see ``ssljax.methods.timex``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_LN_EPS = 1e-5  # PyTorch's LayerNorm epsilon.


def positional_encoding(t: int, d_pe: int, *, max_len: int) -> jax.Array:
  """[T, d_pe] sinusoidal encoding of the times 1..T (the official ``PositionalEncodingTF``):
  ``[sin(t / s_i), cos(t / s_i)]`` with timescales ``s_i = max_len ** (i / (d_pe/2 - 1))``."""
  times = jnp.arange(1, t + 1, dtype=jnp.float32)
  half = d_pe // 2
  scales = jnp.asarray(max_len, jnp.float32) ** jnp.linspace(0.0, 1.0, half)
  scaled = times[:, None] / scales[None, :]
  return jnp.concatenate([jnp.sin(scaled), jnp.cos(scaled)], axis=-1)


def valid_of(batch) -> jax.Array:
  """bool [B, T] from a batch dict with ``valid`` or ``length``."""
  x = batch["series"]
  if "valid" in batch:
    return batch["valid"].astype(bool)
  return jnp.arange(x.shape[1])[None, :] < batch["length"][:, None]


class _Attention(nn.Module):
  """Multi-head attention of ``q_btd`` over ``kv_bsd``; ``keep_bts`` multiplies the weights after
  the softmax; ``key_valid_bs`` removes padded keys before it."""

  heads: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, q_btd, kv_bsd, *, key_valid_bs=None, keep_bts=None, train=False):
    d = q_btd.shape[-1]
    dh = d // self.heads
    split = lambda a: a.reshape(*a.shape[:2], self.heads, dh)  # noqa: E731
    q = split(nn.Dense(d, name="query")(q_btd))
    k = split(nn.Dense(d, name="key")(kv_bsd))
    v = split(nn.Dense(d, name="value")(kv_bsd))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(dh))
    if key_valid_bs is not None:
      logits = jnp.where(key_valid_bs[:, None, None, :], logits, -1e9)
    weights = jax.nn.softmax(logits, axis=-1)
    if keep_bts is not None:
      weights = weights * keep_bts[:, None].astype(weights.dtype)
    weights = nn.Dropout(self.dropout, deterministic=not train)(weights)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(*q_btd.shape[:2], d)
    return nn.Dense(d, name="out")(out)


class _EncoderLayer(nn.Module):
  """The reference transformer's layer: ``h = LN1(SA(x))``, ``LN2(h + FFN(h))`` (no residual
  around attention; see the module docstring)."""

  heads: int
  ffn: int
  dropout: float

  @nn.compact
  def __call__(self, x_btd, *, valid_bt, keep_btt, train):
    drop = nn.Dropout(self.dropout, deterministic=not train)
    sa = _Attention(self.heads, self.dropout, name="attention")(
        x_btd, x_btd, key_valid_bs=valid_bt, keep_bts=keep_btt, train=train)
    h = nn.LayerNorm(epsilon=_LN_EPS, name="norm1")(drop(sa))
    ff = nn.Dense(self.ffn, name="ffn_in")(h)
    ff = nn.Dense(x_btd.shape[-1], name="ffn_out")(drop(nn.relu(ff)))
    return nn.LayerNorm(epsilon=_LN_EPS, name="norm2")(h + drop(ff))


class SeriesTransformer(nn.Module):
  """G: [B, T, C] -> (z [B, D], z_seq [B, T, D]), D = C + d_pe (module docstring).

  Attributes:
    d_pe: width of the time encoding. heads: attention heads (must divide D). ffn: FFN width.
    depth: layers. dropout: dropout rate in training. max_len: the time encoding's largest
      timescale (the official code passes the series length; 0 = this call's T).
  """

  d_pe: int = 16
  heads: int = 1
  ffn: int = 16
  depth: int = 1
  dropout: float = 0.1
  max_len: int = 0

  @nn.compact
  def __call__(self, x_btc, *, valid_bt=None, keep_bt=None, train=False):
    b, t, _ = x_btc.shape
    if valid_bt is None:
      valid_bt = jnp.ones((b, t), bool)
    pe = positional_encoding(t, self.d_pe, max_len=self.max_len or t)
    h = jnp.concatenate([jnp.broadcast_to(pe, (b, t, self.d_pe)), x_btc.astype(jnp.float32)], -1)
    keep_btt = None if keep_bt is None else keep_bt[:, :, None] * keep_bt[:, None, :]
    for i in range(self.depth):
      h = _EncoderLayer(self.heads, self.ffn, self.dropout, name=f"layer{i}")(
          h, valid_bt=valid_bt, keep_btt=keep_btt, train=train)
    valid = valid_bt.astype(h.dtype)[..., None]
    # The official aggregation: sum over the valid timestamps / (length + 1).
    z = jnp.sum(h * valid, axis=1) / (jnp.sum(valid, axis=1) + 1.0)
    return z, h


class ClassifierHead(nn.Module):
  """F: Linear(D, D), ReLU, Linear(D, num_classes)."""

  num_classes: int

  @nn.compact
  def __call__(self, z_bd):
    h = nn.relu(nn.Dense(z_bd.shape[-1], name="hidden")(z_bd))
    return nn.Dense(self.num_classes, name="logits")(h)


class SeriesClassifier(nn.Module):
  """f = F o G on a batch dict ``{"series", "length" | "valid"}``; called, G's embedding [B, D]."""

  encoder: SeriesTransformer
  num_classes: int

  def setup(self):
    self.head = ClassifierHead(self.num_classes)

  def __call__(self, batch, *, train=False, keep_bt=None):
    logits, z, _ = self.classify(batch, train=train, keep_bt=keep_bt)
    del logits  # Computed so that init creates F's parameters too.
    return z

  def classify(self, batch, *, train=False, keep_bt=None):
    """``(logits [B, K], z [B, D], z_seq [B, T, D])``."""
    z, z_seq = self.encoder(batch["series"], valid_bt=valid_of(batch), keep_bt=keep_bt,
                            train=train)
    return self.head(z), z, z_seq


class _DecoderLayer(nn.Module):
  """PyTorch's post-norm ``TransformerDecoderLayer`` (ReLU FFN), without dropout."""

  heads: int
  ffn: int

  @nn.compact
  def __call__(self, x_btd, memory_bsd, *, memory_valid_bs):
    norm = lambda name: nn.LayerNorm(epsilon=_LN_EPS, name=name)  # noqa: E731
    x = norm("norm1")(x_btd + _Attention(self.heads, name="self_attention")(
        x_btd, x_btd, key_valid_bs=memory_valid_bs))  # The queries share the memory's time axis.
    x = norm("norm2")(x + _Attention(self.heads, name="cross_attention")(
        x, memory_bsd, key_valid_bs=memory_valid_bs))
    ff = nn.Dense(x.shape[-1], name="ffn_out")(nn.relu(nn.Dense(self.ffn, name="ffn_in")(x)))
    return norm("norm3")(x + ff)


class MaskGenerator(nn.Module):
  """H^E: (x [B, T, C], memory [B, T, D], valid [B, T]) -> mask probabilities p [B, T, C].

  Attributes:
    d_pe: width of the queries' time encoding (``D = C + d_pe`` must be the memory's width).
    heads, ffn, depth: the decoder (official: 1 head, FFN 32, 2 layers). max_len: as G's.
  """

  d_pe: int = 16
  heads: int = 1
  ffn: int = 32
  depth: int = 2
  max_len: int = 0

  @nn.compact
  def __call__(self, x_btc, memory_btd, *, valid_bt):
    b, t, c = x_btc.shape
    pe = positional_encoding(t, self.d_pe, max_len=self.max_len or t)
    q = jnp.concatenate([x_btc.astype(jnp.float32), jnp.broadcast_to(pe, (b, t, self.d_pe))], -1)
    for i in range(self.depth):
      q = _DecoderLayer(self.heads, self.ffn, name=f"layer{i}")(
          q, memory_btd, memory_valid_bs=valid_bt)
    dense = lambda n: nn.Dense(n, name="time_prob",  # noqa: E731
                               kernel_init=nn.initializers.xavier_uniform(),
                               bias_init=nn.initializers.constant(0.01))
    if c == 1:  # Univariate: a 2-way softmax per timestamp, p = P(keep).
      return jax.nn.softmax(dense(2)(q), axis=-1)[..., 1:]
    return jax.nn.sigmoid(dense(c)(q))


def gumbel_ste_mask(rng, p: jax.Array, *, tau: float = 1.0) -> jax.Array:
  """A hard straight-through Gumbel-softmax sample of each entry's ``[1 - p, p]``.

  The forward value is the hard sample (exactly 0 or 1); the gradient is that of the relaxed
  sample ``softmax((log[1 - p, p] + g) / tau)[1]`` (g ~ Gumbel(0, 1)), as ``F.gumbel_softmax(...,
  hard=True)`` on ``log(probs + 1e-9)`` in the official mask generator. Shape of ``p``.
  """
  logits = jnp.log(jnp.stack([1.0 - p, p], axis=-1) + 1e-9)
  soft = jax.nn.softmax((logits + jax.random.gumbel(rng, logits.shape)) / tau, axis=-1)[..., 1]
  hard = (soft > 0.5).astype(soft.dtype)  # argmax of the two entries (they sum to 1).
  return hard + (soft - jax.lax.stop_gradient(soft))


def hard_gumbel_choice(rng, logits_bk: jax.Array, *, tau: float) -> jax.Array:
  """[B, K] one-hot of ``argmax(logits + g)`` with the gradient of ``softmax((logits + g) / tau)``
  (``F.gumbel_softmax(logits, tau, hard=True)``)."""
  soft = jax.nn.softmax((logits_bk + jax.random.gumbel(rng, logits_bk.shape)) / tau, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1], dtype=soft.dtype)
  return hard + (soft - jax.lax.stop_gradient(soft))


def apply_mask(x_btc: jax.Array, m_btc: jax.Array, baseline_btc: jax.Array | None):
  """The explanation encoder's input: ``(x', keep [B, T])``.

  Univariate series (``baseline_btc`` None): x unchanged and the mask as G's attention mask.
  Multivariate: ``x' = M x + (1 - M) B`` (B: baseline draws, e.g. N(mu_t, sigma_t) of the
  training data) and ``keep = hardtanh(sum_c M)`` (the official ``transform_to_attn_mask``).
  """
  if baseline_btc is None:
    return x_btc, m_btc[..., 0]
  x = m_btc * x_btc + (1.0 - m_btc) * baseline_btc
  return x, jnp.clip(jnp.sum(m_btc, axis=-1), -1.0, 1.0)
