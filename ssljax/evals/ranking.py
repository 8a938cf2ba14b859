"""Full-ranking evaluation of recommenders (``eval.evals='ranking'``; interaction data).

Every user is scored against the whole catalogue, ``s(u, i) = <e_u, e_i>`` with the user and item
vectors the method's ``represent`` returns (``"user"``, ``"item"``), as RecBole's and SSLRec's
"full" protocol: the user's training items are excluded (score -inf), and when scoring the test
split its validation items too; the targets are the user's items in the scored split; users with
no target item are left out of the means. For K in ``eval.ranking.ks``, with ``hit_r`` = 1 when
the item at rank r is a target and ``T_u`` the user's targets:

* ``recall@K = sum_{r<=K} hit_r / |T_u|``; ``precision@K = sum_{r<=K} hit_r / K``;
* ``hit@K = 1`` when any of the top K is a target; ``mrr@K = 1 / (rank of the first hit)``
  (0 when none in the top K);
* ``ndcg@K = DCG / IDCG``, ``DCG = sum_{r<=K} hit_r / log2(r + 1)``, ``IDCG`` the DCG of
  ``min(|T_u|, K)`` hits at the top (binary relevance).

Users are scored in batches of ``eval.ranking.batch_users`` on device (one [B_u, I] score matrix
at a time, ``lax.top_k`` to ``max(K)``), so a 10^5-item catalogue fits: only per-metric sums
come back to the host.

Reported (flat, into ``metrics.jsonl`` / ``results.json``): ``valid_<metric>@K`` and
``test_<metric>@K``; the popularity baseline ``pop_valid_*`` / ``pop_test_*`` (items ranked by
their training interactions, same exclusions; once per run) when ``eval.ranking.popularity``; and
model selection on the validation split only: ``best_step`` and ``best_valid_*`` /
``best_test_*``, the metrics of the evaluation so far whose ``eval.ranking.select`` (default
``valid_ndcg@10``) was highest. Test numbers never choose anything; evaluate during training
(``eval.every_steps``) for the choice to have candidates.

Early stopping: with ``eval.ranking.patience`` = P > 0, training ends (checkpointed) after P
evaluations in a row without a new best ``select`` (RecBole's ``stopping_step``, counted in
evaluations); ``evals_since_best`` is logged with every evaluation. A restarted run rebuilds the
selection and the count from its ``metrics.jsonl``, so neither forgets the evaluations before the
restart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.data import interactions
from ssljax.errors import ConfigError

METRICS = ("recall", "ndcg", "precision", "hit", "mrr")
_PAIR_BUCKET = 1024  # Excluded/target pairs are padded to a power of two at least this long.


def metric_sums(scores_bi: jax.Array, exclude_rows: jax.Array, exclude_cols: jax.Array,
                target_rows: jax.Array, target_cols: jax.Array, num_targets_b: jax.Array, *,
                ks: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Sums over a batch of users of the ranking metrics (module docstring), on device.

  Args:
    scores_bi: float [B, I] scores of every item for each user of the batch.
    exclude_rows, exclude_cols: int32 [P]: (row, item) pairs never ranked (score -inf); rows
      outside [0, B) are padding and ignored.
    target_rows, target_cols: int32 [Q]: the (row, item) targets, padded likewise.
    num_targets_b: int32 [B]: targets of each user (0: the user is left out).
    ks: the cut-offs (static).

  Returns:
    ``(sums [len(ks), len(METRICS)], users)``: each metric summed over the users with a target,
    and their count.
  """
  b, num_items = scores_bi.shape
  scores = scores_bi.astype(jnp.float32).at[exclude_rows, exclude_cols].set(-jnp.inf,
                                                                            mode="drop")
  k_max = max(ks)
  top_vals, top_idx = jax.lax.top_k(scores, k_max)
  target = jnp.zeros((b, num_items), bool).at[target_rows, target_cols].set(True, mode="drop")
  # An excluded item can only reach the top K of a user with fewer than K others; never a hit.
  hits = (jnp.take_along_axis(target, top_idx, axis=1) & jnp.isfinite(top_vals))
  hits = hits.astype(jnp.float32)
  counted = (num_targets_b > 0).astype(jnp.float32)
  n = jnp.maximum(num_targets_b, 1)
  ranks = jnp.arange(1, k_max + 1, dtype=jnp.float32)
  discount = 1.0 / jnp.log2(ranks + 1.0)
  ideal = jnp.cumsum(discount)
  rows = []
  for k in ks:
    h = hits[:, :k]
    found = h.sum(axis=1)
    values = jnp.stack([
        found / n,  # recall
        (h * discount[:k]).sum(axis=1) / ideal[jnp.minimum(n, k) - 1],  # ndcg
        found / k,  # precision
        (found > 0).astype(jnp.float32),  # hit
        jnp.max(h / ranks[:k], axis=1),  # mrr
    ], axis=-1)
    rows.append(jnp.sum(values * counted[:, None], axis=0))
  return jnp.stack(rows), counted.sum()


@functools.partial(jax.jit, static_argnames="ks")
def _batch_sums(users_bd, items_id, exclude_rows, exclude_cols, target_rows, target_cols,
                num_targets_b, *, ks):
  """:func:`metric_sums` of the inner-product scores of a batch of users [B, d] x items [I, d]."""
  scores = jnp.matmul(users_bd, items_id.T, precision=jax.lax.Precision.HIGHEST)
  return metric_sums(scores, exclude_rows, exclude_cols, target_rows, target_cols,
                     num_targets_b, ks=ks)


def _pairs(csrs, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
  """(local row, item) pairs of users ``start .. stop - 1`` in the given CSRs, concatenated."""
  rows, cols = [], []
  for indptr, indices in csrs:
    counts = np.diff(indptr[start:stop + 1])
    rows.append(np.repeat(np.arange(stop - start, dtype=np.int32), counts))
    cols.append(indices[indptr[start]:indptr[stop]])
  return np.concatenate(rows), np.concatenate(cols)


def _padded(rows: np.ndarray, cols: np.ndarray, pad_row: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads pairs to a power-of-two length (few compiled shapes); padding rows are ``pad_row``."""
  size = max(_PAIR_BUCKET, 1 << max(len(rows) - 1, 0).bit_length())
  out_rows = np.full(size, pad_row, np.int32)
  out_cols = np.zeros(size, np.int32)
  out_rows[:len(rows)], out_cols[:len(cols)] = rows, cols
  return out_rows, out_cols


def rank_all(users_ud, items_id, *, targets, exclude, ks: tuple[int, ...],
             batch_users: int = 512) -> dict[str, float]:
  """Means of :data:`METRICS` at each K over the users with a target (full ranking).

  Args:
    users_ud: float [U, d] user vectors (host or device).
    items_id: float [I, d] item vectors.
    targets: (indptr [U + 1], indices) CSR of each user's target items.
    exclude: CSRs of items never ranked for each user (training; + validation for test).
    ks: cut-offs, each <= I.
    batch_users: users scored at once.

  Returns:
    ``{"<metric>@<K>": mean}``, plus ``"users"``: how many users were counted; empty (but
    ``users`` 0) when no user has a target.
  """
  ks = tuple(int(k) for k in ks)
  users_ud = jnp.asarray(users_ud, jnp.float32)
  items_id = jnp.asarray(items_id, jnp.float32)
  num_users = users_ud.shape[0]
  indptr = targets[0]
  sums, count = np.zeros((len(ks), len(METRICS))), 0.0
  for start in range(0, num_users, batch_users):
    stop = min(start + batch_users, num_users)
    num_targets = np.zeros(batch_users, np.int32)
    num_targets[:stop - start] = np.diff(indptr[start:stop + 1])
    if not num_targets.any():
      continue
    block = users_ud[start:stop]
    if stop - start < batch_users:  # One shape for every batch: pad with users that count 0.
      block = jnp.pad(block, ((0, batch_users - (stop - start)), (0, 0)))
    ex = _padded(*_pairs(exclude, start, stop), batch_users)
    tg = _padded(*_pairs([targets], start, stop), batch_users)
    batch_sums, batch_count = _batch_sums(block, items_id, *ex, *tg, num_targets, ks=ks)
    sums += np.asarray(batch_sums, np.float64)
    count += float(batch_count)
  out: dict[str, float] = {"users": int(count)}
  if count:
    for i, k in enumerate(ks):
      for j, metric in enumerate(METRICS):
        out[f"{metric}@{k}"] = float(sums[i, j] / count)
  return out


# -------------------------------------------------------------------------- the evaluator


@dataclasses.dataclass
class _RunState:
  """What one run's ranking evaluator keeps between evaluations."""

  data: interactions.Interactions
  vectors: Any  # jitted (params, method_state, batch) -> {"user", "item"}
  popularity: dict[str, float] | None = None
  best: tuple[float, int, dict[str, float]] | None = None  # (select value, step, metrics)
  since_best: int = 0  # Evaluations after the best one.
  last: tuple[int, dict[str, float]] | None = None  # (step, results) of the last evaluation.
  counted: int = -1  # The last step the selection counted (a step evaluated twice counts once).


def _settings(ev) -> dict[str, Any]:
  cfg = ev.cfg.get("ranking")
  get = (lambda k, d: cfg.get(k, d)) if cfg is not None else (lambda k, d: d)
  return dict(ks=tuple(get("ks", (10, 20))), metrics=tuple(get("metrics", METRICS)),
              select=str(get("select", "valid_ndcg@10")), batch_users=get("batch_users", 512),
              popularity=bool(get("popularity", True)), patience=get("patience", 0))


def check(ev) -> None:
  """Checks ``eval.ranking`` against the data before training starts (one ConfigError line)."""
  s = _settings(ev)
  num_items = int(ev.probe_info.cardinalities[1]) if len(ev.probe_info.cardinalities) == 2 else 0
  ks = s["ks"]
  if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
    raise ConfigError(f"eval.ranking.ks={ks}: give cut-offs K as integers >= 1, e.g. (10, 20)")
  too_big = [k for k in ks if k > num_items]
  if too_big:
    raise ConfigError(f"eval.ranking.ks={ks}: K={too_big[0]} is larger than the catalogue "
                      f"({num_items} items); use cut-offs <= {num_items}")
  unknown = [m for m in s["metrics"] if m not in METRICS]
  if unknown:
    raise ConfigError(f"eval.ranking.metrics: no metric(s) {unknown}; choose from "
                      f"{list(METRICS)}")
  match = re.fullmatch(r"(\w+?)_(\w+)@(\d+)", s["select"])
  if not match or match.group(1) != "valid":
    raise ConfigError(f"eval.ranking.select={s['select']!r}: model selection reads the "
                      "validation split only; use valid_<metric>@<K>, e.g. valid_ndcg@10")
  if match.group(2) not in s["metrics"] or int(match.group(3)) not in ks:
    raise ConfigError(f"eval.ranking.select={s['select']!r}: not computed; its metric must be "
                      f"in eval.ranking.metrics {s['metrics']} and its K in eval.ranking.ks {ks}")
  b = s["batch_users"]
  if isinstance(b, bool) or not isinstance(b, int) or b < 1:
    raise ConfigError(f"eval.ranking.batch_users={b!r} must be an integer >= 1")
  p = s["patience"]
  if isinstance(p, bool) or not isinstance(p, int) or p < 0:
    raise ConfigError(f"eval.ranking.patience={p!r} must be an integer >= 0 (evaluations "
                      "without improvement before training stops; 0: never stop early)")
  if p and int(ev.cfg.get("every_steps", 0) or 0) <= 0:
    raise ConfigError(f"eval.ranking.patience={p} needs evaluations during training; set "
                      "eval.every_steps > 0 (or patience=0)")


def _run_state(ev) -> _RunState:
  run = getattr(ev, "_ranking", None)
  if run is None:
    data = interactions.load(ev.data_cfg)
    represent = ev.method.represent

    def vectors(params, method_state, batch):
      out = represent(params["method"], method_state, batch)
      missing = [k for k in ("user", "item") if k not in out]
      if missing:
        raise ConfigError(f"eval.evals='ranking': method={ev.method.name!r} gives no {missing} "
                          "vectors; ranking evaluates recommendation methods (bpr, lightgcn)")
      return {"user": out["user"], "item": out["item"]}

    run = _RunState(data=data, vectors=jax.jit(vectors))
    ev._ranking = run  # noqa: SLF001 - the evaluator's per-run cache, as svm's baselines.
  return run


def _row_sharded_vectors(run: _RunState, state, mesh, *, chunk: int
                         ) -> tuple[jax.Array, jax.Array]:
  """:func:`all_vectors` with both outputs row-sharded over the ``data`` axis (S devices).

  Each pass computes ``chunk`` rows, ``chunk / S`` on each device, chosen so that device k only
  ever computes rows of its own block ``[k n / S, (k + 1) n / S)``: its pieces are concatenated
  where they are and the blocks form the global array, so no device holds all I item vectors.
  :func:`rank_all` then computes each batch's scores [B_u, I] on the item blocks (XLA gathers
  that batch's scores for ``top_k``: ``eval.ranking.batch_users`` bounds it). U and I divide
  by S.
  """
  from jax.sharding import NamedSharding, PartitionSpec

  s = int(mesh.shape["data"])
  rows = NamedSharding(mesh, PartitionSpec("data"))
  fn = jax.jit(run.vectors, out_shardings=rows)
  out = []
  for side, n in (("user", run.data.num_users), ("item", run.data.num_items)):
    per = n // s  # Rows of each device's block.
    c = max(1, min(chunk // s, per))  # Rows each device computes per pass.
    pieces: dict[Any, list[jax.Array]] = {}
    for start in range(0, per, c):
      local = np.minimum(np.arange(start, start + c), per - 1)
      ids = (np.arange(s)[:, None] * per + local[None, :]).reshape(-1).astype(np.int32)
      batch = jax.device_put({"user": np.zeros_like(ids), "item": np.zeros_like(ids)}, rows)
      batch[side] = jax.device_put(ids, rows)
      for shard in fn(state.params, state.method_state, batch)[side].addressable_shards:
        pieces.setdefault(shard.device, []).append(shard.data)
    blocks = [jnp.concatenate(pieces[d])[:per] for d in rows.addressable_devices]
    dim = blocks[0].shape[1:]
    out.append(jax.make_array_from_single_device_arrays((n, *dim), rows, blocks))
  return out[0], out[1]


def all_vectors(run: _RunState, state, *, chunk: int = 8192, mesh=None
                ) -> tuple[jax.Array, jax.Array]:
  """Every user's and every item's vector [U, d], [I, d], through ``represent`` in chunks.

  With ``mesh`` (the run's) of S > 1 data-parallel devices and U, I divisible by S (as the
  ``rows`` sharding rule requires of embedding tables), the vectors come back row-sharded over
  the devices (:func:`_row_sharded_vectors`), so ranking a catalogue too large for one device
  scores each device's share of the items there; else they are replicated.
  """
  u, i = run.data.num_users, run.data.num_items
  s = 1 if mesh is None else int(mesh.shape["data"])
  if s > 1 and u % s == 0 and i % s == 0 and jax.process_count() == 1:
    return _row_sharded_vectors(run, state, mesh, chunk=chunk)
  n = max(u, i)
  chunk = min(chunk, n)
  users, items = [], []
  for start in range(0, n, chunk):
    ids = np.arange(start, start + chunk)
    batch = {"user": np.minimum(ids, u - 1).astype(np.int32),
             "item": np.minimum(ids, i - 1).astype(np.int32)}
    out = run.vectors(state.params, state.method_state, batch)
    users.append(out["user"])
    items.append(out["item"])
  return jnp.concatenate(users)[:u], jnp.concatenate(items)[:i]


def _both_splits(data, users_ud, items_id, s) -> dict[str, float]:
  """``valid_*`` and ``test_*`` of one set of vectors (test excludes validation items too)."""
  train, valid = data.csr("train"), data.csr("valid")
  out = {}
  for split, exclude in (("valid", [train]), ("test", [train, valid])):
    got = rank_all(users_ud, items_id, targets=data.csr(split), exclude=exclude, ks=s["ks"],
                   batch_users=int(s["batch_users"]))
    for key, value in got.items():
      if key != "users" and key.split("@")[0] in s["metrics"]:
        out[f"{split}_{key}"] = value
  return out


def _split_metrics(results: dict[str, Any]) -> dict[str, float]:
  return {k: v for k, v in results.items() if k.startswith(("valid_", "test_"))}


def resume(ev, records: list[dict[str, Any]]) -> None:
  """Rebuilds the model selection (``best_*``) and the early-stopping count from the metrics
  logged before a restart (``metrics.jsonl`` records, oldest first)."""
  s = _settings(ev)
  run = _run_state(ev)
  for record in records:
    value = record.get(s["select"])
    if not isinstance(value, int | float) or not math.isfinite(value):
      continue
    if int(record["step"]) <= run.counted:
      continue
    run.counted = int(record["step"])
    if run.best is None or value > run.best[0]:
      run.best = (float(value), int(record["step"]), _split_metrics(record))
      run.since_best = 0
    else:
      run.since_best += 1
  patience = int(s["patience"])
  if patience and run.best is not None and run.since_best >= patience:
    ev.stop_reason = (f"{s['select']} had not improved for {run.since_best} evaluations before "
                      f"the restart (best {run.best[0]:.4f} at step {run.best[1]}; "
                      f"eval.ranking.patience={patience})")


def evaluate(ev, state) -> dict[str, float]:
  """``eval.evals='ranking'``: the metrics of the module docstring for this state."""
  s = _settings(ev)
  run = _run_state(ev)
  step = int(jax.device_get(state.step))
  if run.last is not None and run.last[0] == step:  # The final evaluation of a stopped run.
    return dict(run.last[1])
  users_ud, items_id = all_vectors(run, state, mesh=getattr(ev, "mesh", None))
  results = _both_splits(run.data, users_ud, items_id, s)
  if s["popularity"]:
    if run.popularity is None:
      pop = run.data.popularity()
      run.popularity = {f"pop_{k}": v for k, v in _both_splits(
          run.data, np.ones((run.data.num_users, 1), np.float32), pop[:, None], s).items()}
    results.update(run.popularity)
  value = results.get(s["select"])
  if value is not None and math.isfinite(value) and step > run.counted:
    run.counted = step
    if run.best is None or value > run.best[0]:
      run.best = (value, step, _split_metrics(results))
      run.since_best = 0
    else:
      run.since_best += 1
  if run.best is not None:
    results["best_step"] = run.best[1]
    results.update({f"best_{k}": v for k, v in run.best[2].items()})
    results["evals_since_best"] = run.since_best
    patience = int(s["patience"])
    if patience and run.since_best >= patience and step > 0 and not ev.stop_reason:
      ev.stop_reason = (f"{s['select']} has not improved for {run.since_best} evaluations "
                        f"(best {run.best[0]:.4f} at step {run.best[1]}; "
                        f"eval.ranking.patience={patience})")
  run.last = (step, dict(results))
  return results
