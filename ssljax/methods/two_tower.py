"""Two-tower retrieval with self-supervised item-feature masking (Yao et al., CIKM 2021).

"Self-supervised Learning for Large-scale Item Recommendations" (Yao, Yi, Cheng, Yu, Chen, Menon,
Hong, Chi, Tjoa, Kang, Ettinger): a two-tower model (:class:`ssljax.models.towers.TwoTower`: a
query tower over the user id, an item tower over the item's categorical fields, both L2
normalised, score = cosine) trained on the training (user, item) pairs with the in-batch softmax,
plus a contrastive task on the item tower alone:

  ``L = L_main({(u_i, x_i)} ~ D_train) + alpha * L_self({x_i} ~ D_item)``

* ``L_main`` (:func:`ssljax.losses.batch_softmax_loss`): in-batch softmax at temperature tau
  over the batch's items, ``logit_ij = cos(Q(u_i), H(x_j)) / tau - log p_j`` with the logQ
  correction (``two_tower.logq_correction``, default on). ``p_j`` is item j's share of the
  training interactions, counted exactly from the training split (the trainer draws training
  pairs uniformly, so this is the probability that j fills a batch slot; Yi et al.'s streaming
  estimator approximates the same quantity when the data are a stream).
* ``L_self`` (:func:`ssljax.losses.cfm_ssl_loss`): InfoNCE at ``two_tower.ssl_temperature``
  between two augmented views of N items drawn **uniformly from the catalogue** without
  replacement (:func:`ssl_items`; not the main batch's items, the paper's heterogeneous
  sampling: tail items get SSL signal). N is ``two_tower.ssl_batch_size`` (0: the main batch
  size). Both views go through the item tower H (shared with ``L_main``), or the second through
  a separate tower G when ``two_tower.share_item_tower=False``.
* Augmentation, two stages. (1) Complementary field masks, one pattern for the whole SSL batch
  (:func:`field_mask`): view 1 masks the fields M, view 2 masks the rest. A masked field's pooled
  embedding is the constant zero (no table row, never trained; unlike the field's "no value"
  row, which an item without a value reads). ``|M| = floor(k/2)``: with an
  odd k view 1 keeps the extra field; neither view is fully masked (k >= 2 always: the id plus
  at least one feature). (2) Value dropout: every value of a multi-valued field is left out of
  its bag with probability ``two_tower.value_dropout``, independently per view.
* ``two_tower.masking``: ``'cfm'`` (Correlated Feature Masking, default): a seed field drawn
  uniformly and the fields of highest mutual information with it, ``|M| = floor(k/2)`` in all,
  the seed counted in it when ``cfm_include_seed`` (default; M is then the seed and its
  ``floor(k/2) - 1`` top partners; otherwise the seed's ``floor(k/2)`` top partners, the seed
  itself going to view 2), ties broken at random; ``'rfm'`` (Random Feature Masking): a uniform
  random ``floor(k/2)`` subset; ``'none'``: no masking, the views differ by value dropout only
  (with ``alpha = 0``: the plain two-tower, the paper's baseline, and no SSL branch is run).

Mutual information (:func:`mutual_information`) is computed once, on the host, over the
catalogue (each item counted once, the distribution the SSL batch is drawn from):
``MI(a, b) = sum P(v_a, v_b) log(P(v_a, v_b) / (P(v_a) P(v_b)))``; an item with several values
in a field spreads its unit mass evenly over its value pairs, and "no value" (code 0) is a value
of its own. The item id is excluded (pitfall 3): with unique ids ``MI(id, f) = H(f)``, which
would make the id every field's top partner and rank fields by entropy, not correlation; its row
and column are 0, so it is masked with a seed only after every field of positive MI, and when
the id is the seed its partners are drawn at random.

Item fields (``ssljax.data.interactions``, ``Interactions.item_features``): the item id (its
own table, I rows), every item feature of the data, and two derived fields, both honest
functions of what the model may see: ``popularity`` (``two_tower.popularity_field``): the bucket
``1 + floor(log2(1 + n_train))`` of the item's **training** interactions; ``<f>_bins`` for each
name in ``two_tower.binned_fields``: field f's codes cut into ``two_tower.num_bins`` bins of
equal item counts in code order (codes follow the sorted values, so for ml-latest-small's
``year`` these are eras of release). ml-latest-small thus has k = 5: id, genres (multi-valued,
up to 10 of 19 genres), year, year_bins, popularity.

The query tower reads the user id only (an embedding, the MLP, L2 normalisation); a bag of the
user's training items' features is not implemented.

Data-set-level arrays live in ``method_state`` (never HLO constants): ``features`` (the fields'
codes, the encoder's ``features`` collection), ``mi`` [k, k] float32 and ``log_q`` [I] float32;
gradients never reach them. ``represent`` gives ``user`` = Q(u) and ``item`` = H(x) (unmasked,
no dropout): the ranking evaluator's ``<user, item>`` is the cosine score.

Config keys read (``experiments/two_tower.py``): ``encoder.embed_dim``, ``encoder.hidden_dims``,
``encoder.dim``, ``encoder.init_std``, ``two_tower.*`` (above: ``masking``, ``alpha``,
``temperature``, ``ssl_temperature``, ``logq_correction``, ``cfm_include_seed``,
``value_dropout``, ``share_item_tower``, ``ssl_batch_size``, ``popularity_field``,
``binned_fields``, ``num_bins``) and ``input.data``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.methods import Backbone, Method, _common, bpr, identity_update
from ssljax.models.towers import Field, TwoTower, safe_name

MASKINGS = ("cfm", "rfm", "none")
ID_FIELD = "id"


# ---------------------------------------------------------------------------------- settings


def settings(config) -> dict:
  """``two_tower.*`` checked (one ConfigError line naming the key)."""
  cfg = config.two_tower
  masking = cfg.masking
  if masking not in MASKINGS:
    raise ConfigError(f"two_tower.masking={masking!r} is unknown; choose 'cfm' (correlated "
                      "feature masking), 'rfm' (random halves) or 'none'")
  dropout = cfg.value_dropout
  if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
    raise ConfigError(f"two_tower.value_dropout={dropout!r} must be a number in [0, 1): the "
                      "chance that a value of a multi-valued field leaves its bag")
  ssl_batch = cfg.ssl_batch_size
  if isinstance(ssl_batch, bool) or not isinstance(ssl_batch, int) or ssl_batch < 0:
    raise ConfigError(f"two_tower.ssl_batch_size={ssl_batch!r} must be an integer >= 0 (0: the "
                      "main batch size)")
  bins = cfg.num_bins
  if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
    raise ConfigError(f"two_tower.num_bins={bins!r} must be an integer >= 2 (bins of each "
                      "field in two_tower.binned_fields)")
  for key in ("logq_correction", "cfm_include_seed", "share_item_tower", "popularity_field"):
    if not isinstance(cfg[key], bool):
      raise ConfigError(f"two_tower.{key}={cfg[key]!r} must be True or False")
  return dict(
      masking=masking, alpha=_common.check_nonnegative(cfg.alpha, "two_tower.alpha"),
      temperature=_common.check_positive(cfg.temperature, "two_tower.temperature"),
      ssl_temperature=_common.check_positive(cfg.ssl_temperature, "two_tower.ssl_temperature"),
      logq=cfg.logq_correction, include_seed=cfg.cfm_include_seed, value_dropout=float(dropout),
      shared=cfg.share_item_tower, ssl_batch_size=ssl_batch, popularity=cfg.popularity_field,
      binned=tuple(str(f) for f in cfg.binned_fields), num_bins=bins)


# ------------------------------------------------------------------------------ item fields


def popularity_codes(counts_i: np.ndarray) -> np.ndarray:
  """``1 + floor(log2(1 + n))`` of each item's training interactions n: int32 [I, 1] (>= 1)."""
  return (1 + np.floor(np.log2(1.0 + counts_i))).astype(np.int32)[:, None]


def binned_codes(codes_i: np.ndarray, num_bins: int) -> np.ndarray:
  """Codes int [I] cut into ``num_bins`` bins of (about) equal item counts in code order.

  Returns int32 [I, 1]: ``1 .. num_bins`` for items with a value, 0 for those without.
  """
  has = codes_i > 0
  out = np.zeros(len(codes_i), np.int32)
  if has.any():
    edges = np.quantile(codes_i[has], np.linspace(0, 1, num_bins + 1)[1:-1])
    out[has] = 1 + np.searchsorted(edges, codes_i[has], side="right")
  return out[:, None]


def item_fields(data, s) -> tuple[list[Field], dict[str, np.ndarray]]:
  """The item fields (id first, then the data's features, then the derived ones) and the codes
  int32 [I, L_f] of every field but the id.

  Raises:
    ConfigError: the data have no item features, a binned field is missing or multi-valued,
      or a field name is used twice.
  """
  if not data.item_features:
    raise ConfigError(f"method='two_tower' needs categorical item features, but input.data.name="
                      f"{data.name!r} has none; set input.data.item_path to a file of item "
                      "features (see ssljax.data.interactions)")
  codes = {str(k): np.asarray(v, np.int32) for k, v in data.item_features.items()}
  rows = {str(k): int(v) for k, v in data.item_feature_sizes.items()}
  for name in s["binned"]:
    if name not in codes or codes[name].shape[1] != 1:
      have = [k for k, v in codes.items() if v.shape[1] == 1]
      raise ConfigError(f"two_tower.binned_fields names {name!r}, which is not a single-valued "
                        f"item feature of the data (those are {have}); set binned_fields=()")
    codes[f"{name}_bins"] = binned_codes(codes[name][:, 0], s["num_bins"])
    rows[f"{name}_bins"] = s["num_bins"] + 1
  if s["popularity"]:
    codes["popularity"] = popularity_codes(data.popularity())
    rows["popularity"] = int(codes["popularity"].max()) + 1
  names = [ID_FIELD, *codes]
  clash = sorted({safe_name(n) for n in names if [safe_name(m) for m in names].count(
      safe_name(n)) > 1})
  if clash:
    raise ConfigError(f"two_tower: item fields {clash} collide (the id field is {ID_FIELD!r}, "
                      "derived ones end in '_bins' / are 'popularity'); rename the feature "
                      "columns of input.data.item_path")
  fields = [Field(ID_FIELD, data.num_items, 1, padded=False)]
  fields += [Field(name, rows[name], codes[name].shape[1]) for name in codes]
  return fields, codes


# ---------------------------------------------------------------------- mutual information


def _bag(codes_il: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each item's values as (codes [I, L], weights [I, L]): weight 1/n on its n non-zero codes,
  and weight 1 on code 0 for an item with none ("no value" is a value)."""
  valid = codes_il != 0
  empty = ~valid.any(axis=1)
  valid[empty, 0] = True
  codes = np.where(valid, codes_il, 0).astype(np.int64)
  return codes, valid / valid.sum(axis=1, keepdims=True)


def pair_mutual_information(a_il: np.ndarray, b_il: np.ndarray) -> float:
  """MI (nats) of two categorical fields over the items (each item one unit of mass).

  ``MI = sum_{v_a, v_b} P(v_a, v_b) log(P(v_a, v_b) / (P(v_a) P(v_b)))``; an item with values
  A in field a and B in field b adds ``1 / (I |A| |B|)`` to each ``P(v_a, v_b)``, v_a in A, v_b
  in B (the plug-in estimate for single-valued fields). Code 0 alone means "no value".

  Args:
    a_il, b_il: int codes [I, L_a], [I, L_b] (0: padding / no value).
  """
  ca, wa = _bag(a_il)
  cb, wb = _bag(b_il)
  n = len(ca)
  size_b = int(cb.max()) + 1
  joint_code = (ca[:, :, None] * size_b + cb[:, None, :]).ravel()
  joint_w = (wa[:, :, None] * wb[:, None, :]).ravel()
  keep = joint_w > 0
  uniq, inverse = np.unique(joint_code[keep], return_inverse=True)
  p_ab = np.bincount(inverse, weights=joint_w[keep]) / n
  p_a = np.bincount(ca.ravel(), weights=wa.ravel()) / n
  p_b = np.bincount(cb.ravel(), weights=wb.ravel()) / n
  va, vb = uniq // size_b, uniq % size_b
  return float(np.sum(p_ab * (np.log(p_ab) - np.log(p_a[va]) - np.log(p_b[vb]))))


def mutual_information(codes: dict[str, np.ndarray], names, *, exclude=(ID_FIELD,)
                       ) -> np.ndarray:
  """The MI table [k, k] float64 of the fields ``names`` (in that order).

  Symmetric, zero diagonal (a field is never its own partner); the rows and columns of the
  fields in ``exclude`` (or absent from ``codes``) are 0 (module docstring: the item id).
  """
  k = len(names)
  table = np.zeros((k, k))
  for a in range(k):
    for b in range(a + 1, k):
      if names[a] in exclude or names[b] in exclude:
        continue
      if names[a] not in codes or names[b] not in codes:
        continue
      table[a, b] = table[b, a] = pair_mutual_information(codes[names[a]], codes[names[b]])
  return table


# ----------------------------------------------------------------------------- augmentation


def field_mask(key, mi_kk: jax.Array, *, masking: str, include_seed: bool = True) -> jax.Array:
  """The fields view 1 masks, bool [k] (view 2 masks the complement); one pattern per batch.

  ``'rfm'``: a uniform random subset of ``floor(k/2)`` fields. ``'cfm'``: a seed field f drawn
  uniformly, then the fields ranked by ``MI(f, .)`` (ties in random order); M is the seed and its
  top ``floor(k/2) - 1`` (``include_seed``) or its top ``floor(k/2)`` (the seed then in view 2's
  mask). ``'none'``: nothing (both views keep every field; see :func:`view_keeps`).

  Args:
    key: PRNG key (the same key gives the same mask).
    mi_kk: the MI table [k, k] (:func:`mutual_information`).
  """
  k = mi_kk.shape[0]
  n = k // 2
  if masking == "none":
    return jnp.zeros((k,), bool)
  k_seed, k_order = jax.random.split(key)
  perm = jax.random.permutation(k_order, k)
  if masking == "rfm":
    chosen = perm[:n]
  elif masking == "cfm":
    seed = jax.random.randint(k_seed, (), 0, k)
    score = jnp.asarray(mi_kk, jnp.float32)[seed]
    score = score.at[seed].set(jnp.inf if include_seed else -jnp.inf)
    ranked = perm[jnp.argsort(-score[perm], stable=True)]  # Ties: the random order perm.
    chosen = ranked[:n]
  else:
    raise ConfigError(f"two_tower.masking={masking!r} is unknown; choose one of {MASKINGS}")
  return jnp.zeros((k,), bool).at[chosen].set(True)


def view_keeps(masked_k: jax.Array, masking: str) -> tuple[jax.Array, jax.Array]:
  """``(keep_1, keep_2)`` float32 [k]: view 1 keeps what ``masked_k`` does not, view 2 keeps
  ``masked_k`` (complementary); with ``'none'`` both keep everything."""
  if masking == "none":
    ones = jnp.ones(masked_k.shape, jnp.float32)
    return ones, ones
  return (~masked_k).astype(jnp.float32), masked_k.astype(jnp.float32)


def ssl_items(key, n: int, num_items: int) -> jax.Array:
  """N distinct items drawn uniformly from the catalogue (int32 [n]): the SSL batch."""
  if n > num_items:
    raise ConfigError(f"two_tower.ssl_batch_size: the SSL batch of {n} items exceeds the "
                      f"{num_items}-item catalogue; set two_tower.ssl_batch_size <= {num_items}")
  return jax.random.choice(key, num_items, (n,), replace=False).astype(jnp.int32)


def log_item_probability(counts_i: np.ndarray) -> np.ndarray:
  """``log p_j``, ``p_j = n_j / sum n`` the item's share of the training interactions, float32
  [I] (items without one get ``1 / sum n``; they never fill a training batch slot)."""
  counts = np.maximum(np.asarray(counts_i, np.float64), 1.0)
  return np.log(counts / max(float(np.sum(counts_i)), 1.0)).astype(np.float32)


# ---------------------------------------------------------------------------------- method


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds the two-tower model (+ CFM / RFM SSL) from an experiment config and ``info``."""
  del total_steps, steps_per_epoch
  s = settings(config)
  enc = config.encoder
  embed_dim, dim = int(enc.embed_dim), int(enc.dim)
  if embed_dim < 1 or dim < 1:
    raise ConfigError(f"encoder.embed_dim={embed_dim} and encoder.dim={dim} must be >= 1")
  hidden = tuple(int(h) for h in enc.hidden_dims)
  if any(h < 1 for h in hidden):
    raise ConfigError(f"encoder.hidden_dims={hidden}: widths must be >= 1 (empty: linear)")
  init_std = _common.check_positive(enc.get("init_std", 0.1), "encoder.init_std")
  data = bpr.training_data(config, info, "two_tower")
  fields, codes = item_fields(data, s)
  names = [f.name for f in fields]
  mi = mutual_information(codes, names).astype(np.float32)
  log_q = log_item_probability(data.popularity())
  num_items = data.num_items
  net = TwoTower(num_users=data.num_users, num_items=num_items, fields=tuple(fields),
                 embed_dim=embed_dim, hidden_dims=hidden, dim=dim, init_std=init_std,
                 ssl_tower=not s["shared"])
  views = (interactions.InteractionPairs(),)

  def init(rng, example_view):
    variables = dict(net.init(rng, example_view, method=TwoTower.init_all))
    params = variables.pop("params")
    state = {"features": {safe_name(f.name): jnp.asarray(codes[f.name]) for f in fields
                          if f.padded},
             "mi": jnp.asarray(mi), "log_q": jnp.asarray(log_q)}
    return params, state

  def variables(params, method_state):
    return {"params": params, "features": jax.lax.stop_gradient(method_state["features"])}

  def loss(params, method_state, views, rng):
    batch = views[0]
    var = variables(params, method_state)
    q_bd = net.apply(var, batch["user"], method=TwoTower.query)
    x_bd = net.apply(var, batch["item"], method=TwoTower.items)
    log_q_b = jax.lax.stop_gradient(method_state["log_q"])[batch["item"]] if s["logq"] else None
    main = losses.batch_softmax_loss(q_bd, x_bd, temperature=s["temperature"], log_q_b=log_q_b)
    scores = q_bd @ x_bd.T
    metrics = {"main_loss": main, "batch_accuracy": jnp.mean(
        (jnp.argmax(scores, axis=1) == jnp.arange(scores.shape[0])).astype(jnp.float32))}
    value = main
    if s["alpha"] > 0:
      k_items, k_mask, k_drop1, k_drop2 = jax.random.split(rng, 4)
      items = ssl_items(k_items, s["ssl_batch_size"] or batch["item"].shape[0], num_items)
      masked = field_mask(k_mask, jax.lax.stop_gradient(method_state["mi"]),
                          masking=s["masking"], include_seed=s["include_seed"])
      keep1, keep2 = view_keeps(masked, s["masking"])
      z1 = net.apply(var, items, keep_k=keep1, drop_key=k_drop1, drop_rate=s["value_dropout"],
                     method=TwoTower.items)
      z2 = net.apply(var, items, keep_k=keep2, drop_key=k_drop2, drop_rate=s["value_dropout"],
                     tower="item" if s["shared"] else "ssl_item", method=TwoTower.items)
      ssl = losses.cfm_ssl_loss(z1, z2, temperature=s["ssl_temperature"])
      value = value + s["alpha"] * ssl
      metrics.update(ssl_loss=ssl, masked_fields=jnp.sum(masked).astype(jnp.float32))
    return value, (method_state, metrics, jnp.concatenate([q_bd, x_bd], axis=-1))

  def represent(params, method_state, batch):
    out = net.apply(variables(params, method_state), batch, method=TwoTower.pairs)
    both = jnp.concatenate([out["user"], out["item"]], axis=-1)
    return _common.as_float32({"representation": both, "embedding": both, **out})

  return Method(name="two_tower", views=views, init=init, loss=loss, update=identity_update,
                represent=represent, backbone=Backbone(module=net, variables=variables))
