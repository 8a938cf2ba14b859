"""SCARF (Bahri et al., ICLR 2022): contrast each table row with a randomly corrupted copy.

The second view replaces ``round(rate * D)`` random columns of each row by draws from the
columns' empirical marginals (``ssljax.data.table_views.ScarfCorruption``); the first view is the
row itself. An encoder ``f`` (an MLP of ``Dense -> ReLU`` layers) and a pre-training head ``g``
(``Dense -> ReLU -> Dense``, no BatchNorm) embed both, and InfoNCE pulls each row's embedding
towards its corrupted copy's and away from the other rows' corrupted copies in the global batch.
Downstream models read ``f(x)``.

Config keys read (see ``experiments/scarf.py``): ``encoder.*`` (``name='mlp'``: ``width``,
``depth``, ``cat_dim``; ``name='ft_transformer'``: ``width``, ``depth``, ``heads``, ``ffn``,
``dropout``; its column tokens, flattened, are the representation), ``projector.*``,
``scarf.corruption_rate``, ``scarf.temperature`` and ``scarf.loss``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax.data.table_views import ScarfCorruption, TableRows
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common, identity_update
from ssljax.models import tabular
from ssljax.models.compose import EncoderHead

LOSSES = ("infonce", "ntxent")
ENCODERS = ("mlp", "ft_transformer")


def contrastive_accuracy(anchor_bd: jax.Array, positive_bd: jax.Array) -> jax.Array:
  """Share of anchors whose most similar positive is their own (a training diagnostic)."""
  sim_bb = jnp.matmul(losses.l2_normalize(anchor_bd), losses.l2_normalize(positive_bd).T,
                      precision=jax.lax.Precision.HIGHEST)
  return jnp.mean(jnp.argmax(sim_bb, axis=-1) == jnp.arange(sim_bb.shape[0]))


class FlatTokens(nn.Module):
  """Feature tokenizer + tabular transformer; the row is its column tokens' outputs, flattened.

  [B, D, H] -> [B, D * H]. Not the [REG] token: with the tokenizer's 0.02-scale init its output
  starts the same for every row (cosine 0.9999997 on digits), InfoNCE then sits at log N and 200
  Adam steps do not move it. The mean of the column tokens learns but probes worse than the
  flattened tokens. No position encoding (as FT-Transformer): each column's own weights already
  say which column a token is.
  """

  width: int
  depth: int
  heads: int
  ffn: int
  dropout: float
  cardinalities: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, batch, *, train: bool = False):
    tokens = tabular.FeatureTokenizer(self.width, self.cardinalities, n_reg=0)(batch)
    out = tabular.TabularEncoder(self.depth, self.heads, self.ffn, self.dropout)(tokens,
                                                                                 train=train)
    return out.reshape(out.shape[0], -1)


def make_encoder(config, cardinalities: tuple[int, ...]) -> nn.Module:
  """The row encoder named by ``config.encoder.name`` ('mlp' or 'ft_transformer')."""
  enc = config.encoder
  name = str(enc.name)
  width, depth = int(enc.width), int(enc.get("depth", 4))
  if width < 1 or depth < 1:
    raise ConfigError(f"encoder.width={width} and encoder.depth={depth} must be >= 1")
  if name == "mlp":
    return tabular.TableMLP(width=width, depth=depth, cardinalities=cardinalities,
                            cat_dim=int(enc.get("cat_dim", 8)))
  if name == "ft_transformer":
    heads = int(enc.get("heads", 8))
    if width % heads:
      raise ConfigError(f"encoder.width={width} must be a multiple of encoder.heads={heads}")
    return FlatTokens(width=width, depth=depth, heads=heads, ffn=int(enc.get("ffn", 2 * width)),
                      dropout=float(enc.get("dropout", 0.0)), cardinalities=cardinalities)
  raise ConfigError(f"encoder.name={name!r}: SCARF encodes table rows; choose one of "
                    f"{', '.join(ENCODERS)}")


def _check_table(info) -> tuple[int, ...]:
  """The categorical cardinalities, or a ConfigError when the data are not a table."""
  spec = info.element_spec
  if "x_num" not in spec and "x_cat" not in spec:
    raise ConfigError(f"method='scarf' trains on tables; input.data.name={info.name!r} yields "
                      f"{sorted(spec)} (use a table: sklearn:<name>, csv, parquet, openml:<id>)")
  cards = tuple(int(c) for c in info.cardinalities)
  if "x_cat" in spec and len(cards) != spec["x_cat"][0][0]:
    raise ConfigError(f"input.data.name={info.name!r}: {spec['x_cat'][0][0]} categorical columns "
                      f"but {len(cards)} cardinalities")
  return cards


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds SCARF from an experiment config and the table's description ``info``."""
  del total_steps, steps_per_epoch
  net = EncoderHead(encoder=make_encoder(config, _check_table(info)),
                    head=_common.make_mlp(config.projector, where="projector"))
  cfg = config.scarf
  temperature = _common.check_positive(cfg.temperature, "scarf.temperature")
  kind = str(cfg.get("loss", "infonce"))
  if kind not in LOSSES:
    raise ConfigError(f"scarf.loss={kind!r}: choose 'infonce' (the paper's) or 'ntxent' "
                      "(SimCLR's symmetric form, as some ports use)")
  contrast = losses.infonce_loss if kind == "infonce" else losses.ntxent_loss
  views = (TableRows(), ScarfCorruption(float(cfg.corruption_rate)))

  def init(rng, example_view):
    return _common.init_variables(net, rng, example_view)

  def loss(params, method_state, views, rng):
    rng_anchor, rng_positive = jax.random.split(rng)
    # Dropout (the transformer encoder's) draws differently for the two views.
    (h_bf, z_anchor), state = _common.apply_train(net, params, method_state, views[0],
                                                  rngs={"dropout": rng_anchor})
    (_, z_positive), state = _common.apply_train(net, params, state, views[1],
                                                 rngs={"dropout": rng_positive})
    value = contrast(z_anchor, z_positive, temperature=temperature)
    metrics = {f"{kind}_loss": value,
               "contrastive_accuracy": contrastive_accuracy(z_anchor, z_positive)}
    return value, (state, metrics, h_bf)

  def represent(params, method_state, batch):
    rows = TableRows()(None, batch)  # The label (if any) is not an input.
    h_bf, z_bk = _common.apply_eval(net, params, method_state, rows)
    return _common.as_float32({"representation": h_bf, "embedding": z_bk})

  return Method(name="scarf", views=views, init=init, loss=loss, update=identity_update,
                represent=represent, backbone=_common.submodule_backbone(net))
