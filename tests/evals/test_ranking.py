"""Full-ranking metrics against a brute-force NumPy computation, and the evaluator's checks."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.evals import ranking


def _csr(matrix):
  """(indptr, indices) of a boolean [U, I] matrix."""
  counts = matrix.sum(1)
  indptr = np.zeros(len(matrix) + 1, np.int32)
  indptr[1:] = np.cumsum(counts)
  return indptr, np.nonzero(matrix)[1].astype(np.int32)


def _reference(scores, excluded, targets, ks):
  """The metrics written from their definitions, in float64 NumPy, one user at a time.

  For each user with a target: items ordered by score (excluded ones removed), the top K;
  recall = hits / |T|, precision = hits / K, hit = [hits > 0], MRR = 1 / rank of the first hit,
  NDCG = sum_r hit_r / log2(r + 1) over the ideal sum over r <= min(|T|, K). Means over users
  with a target.
  """
  out = {f"{m}@{k}": [] for k in ks for m in ranking.METRICS}
  for u in range(len(scores)):
    t = set(np.flatnonzero(targets[u]))
    if not t:
      continue
    order = [i for i in np.argsort(-scores[u], kind="stable") if not excluded[u, i]]
    for k in ks:
      hit = [1.0 if i in t else 0.0 for i in order[:k]]
      found = sum(hit)
      dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hit))
      idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(t), k)))
      first = next((r + 1 for r, h in enumerate(hit) if h), None)
      out[f"recall@{k}"].append(found / len(t))
      out[f"ndcg@{k}"].append(dcg / idcg)
      out[f"precision@{k}"].append(found / k)
      out[f"hit@{k}"].append(float(found > 0))
      out[f"mrr@{k}"].append(1.0 / first if first else 0.0)
  return {key: float(np.mean(v)) for key, v in out.items()}


def _random_split(seed, users=23, items=40):
  """Disjoint random train / valid / test interaction matrices; some users have no test item."""
  rng = np.random.default_rng(seed)
  which = rng.choice(4, size=(users, items), p=[0.7, 0.15, 0.07, 0.08])  # none/train/valid/test
  train, valid, test = (which == 1), (which == 2), (which == 3)
  test[:4] = False  # Users 0-3 have nothing to find in test: left out of the test means.
  return train, valid, test


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_brute_force_with_masking(seed):
  train, valid, test = _random_split(seed)
  rng = np.random.default_rng(10 + seed)
  users, items = rng.normal(size=(23, 6)), rng.normal(size=(40, 6))
  scores = users @ items.T
  ks = (1, 3, 10)
  # Test: training and validation items never ranked; 8 users a batch (3 batches, one padded).
  got = ranking.rank_all(users, items, targets=_csr(test), exclude=[_csr(train), _csr(valid)],
                         ks=ks, batch_users=8)
  want = _reference(scores, train | valid, test, ks)
  assert got.pop("users") == int((test.sum(1) > 0).sum())
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  # Validation: only the training items are excluded.
  got = ranking.rank_all(users, items, targets=_csr(valid), exclude=[_csr(train)], ks=ks,
                         batch_users=16)
  got.pop("users")
  want = _reference(scores, train, valid, ks)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_masking_matters_and_a_perfect_ranker_scores_one():
  train, _, test = _random_split(2)
  # Score test items highest, training items higher still: without the mask they would fill the
  # top; with it every metric of a user whose targets fit in the top K is perfect.
  scores = 2.0 * train + 1.0 * test
  eye = np.eye(40)
  got = ranking.rank_all(scores, eye, targets=_csr(test), exclude=[_csr(train)], ks=(40,))
  assert got["recall@40"] == pytest.approx(1.0) and got["ndcg@40"] == pytest.approx(1.0)
  assert got["mrr@40"] == pytest.approx(1.0) and got["hit@40"] == pytest.approx(1.0)
  unmasked = ranking.rank_all(scores, eye, targets=_csr(test), exclude=[_csr(0 * train)],
                              ks=(3,))
  assert unmasked["hit@3"] < 0.5


def test_metric_sums_are_the_same_under_jit_and_with_few_unexcluded_items():
  # A user with fewer than K unexcluded items: the -inf items in its top K never count as hits.
  scores = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
  sums, users = jax.jit(ranking.metric_sums, static_argnames="ks")(
      scores, np.array([0, 0, 0]), np.array([1, 2, 3]), np.array([0]), np.array([2]),
      np.array([1]), ks=(4,))
  # Ranking: item 0 first (the others excluded); item 2 is a target but excluded, no hit.
  assert float(users) == 1.0 and float(np.asarray(sums).sum()) == 0.0


def _ev(ks=(10,), select="valid_ndcg@10", metrics=ranking.METRICS, num_items=50):
  cfg = dict(ranking=dict(ks=ks, select=select, metrics=metrics, batch_users=8))
  info = types.SimpleNamespace(cardinalities=(7, num_items))
  return types.SimpleNamespace(cfg=cfg, probe_info=info)


def test_checks_name_the_key():
  ranking.check(_ev())
  with pytest.raises(ConfigError, match="K=100 is larger than the catalogue \\(50 items\\)"):
    ranking.check(_ev(ks=(10, 100)))
  with pytest.raises(ConfigError, match="reads the validation split only"):
    ranking.check(_ev(select="test_ndcg@10"))
  with pytest.raises(ConfigError, match="not computed"):
    ranking.check(_ev(select="valid_ndcg@20"))
  with pytest.raises(ConfigError, match="eval.ranking.metrics: no metric"):
    ranking.check(_ev(metrics=("auc",)))


def test_popularity_and_selection_on_validation(tmp_path):
  """The evaluator on a tiny data set: popularity equals ranking by training counts, and best_*
  follow the validation metric, not the test one."""
  lines = ["user_id,item_id"] + [f"{u},{i}" for u in range(20) for i in range(12)
                                 if (u * 7 + i * 3) % 5 < 3]
  path = tmp_path / "t.csv"
  path.write_text("\n".join(lines) + "\n")
  data_cfg = dict(name="interactions", path=str(path), split="random", split_seed=0,
                  split_ratios=(0.6, 0.2, 0.2), train_split="train", eval_split="test")
  data = interactions.load(data_cfg)
  pop = data.popularity()
  table = {"user": jnp.ones((data.num_users, 1)), "item": jnp.asarray(pop[:, None])}

  def represent(params, state, batch):
    return {"user": table["user"][batch["user"]] * params,
            "item": table["item"][batch["item"]]}

  ev = types.SimpleNamespace(
      cfg=dict(ranking=dict(ks=(3,), metrics=("ndcg", "recall"), select="valid_ndcg@3")),
      data_cfg=data_cfg, method=types.SimpleNamespace(name="pop", represent=represent))
  state = types.SimpleNamespace(step=np.int32(5), params={"method": np.float32(1.0)},
                                method_state={})
  first = ranking.evaluate(ev, state)
  for split in ("valid", "test"):
    assert first[f"pop_{split}_ndcg@3"] == pytest.approx(first[f"{split}_ndcg@3"])
  assert first["best_step"] == 5
  # Reversed popularity at step 9, popularity again at step 12: best_* stay at the step whose
  # validation NDCG was highest (first wins ties), whatever the test numbers say.
  second = ranking.evaluate(ev, types.SimpleNamespace(
      step=np.int32(9), params={"method": np.float32(-1.0)}, method_state={}))
  third = ranking.evaluate(ev, types.SimpleNamespace(
      step=np.int32(12), params={"method": np.float32(1.0)}, method_state={}))
  assert second["valid_ndcg@3"] != first["valid_ndcg@3"]
  best = first if first["valid_ndcg@3"] >= second["valid_ndcg@3"] else second
  for result in (second, third):
    assert result["best_step"] == (5 if best is first else 9)
    assert result["best_test_ndcg@3"] == best["test_ndcg@3"]
    assert result["best_valid_recall@3"] == best["valid_recall@3"]


def test_resume_rebuilds_selection_and_patience():
  """best_* and the early-stopping count come back from the logged records of a restarted run."""
  records = [{"step": s, "valid_ndcg@10": v, "test_ndcg@10": t}
             for s, v, t in ((0, 0.1, 0.5), (10, 0.3, 0.2), (20, 0.2, 0.9), (30, 0.25, 0.1))]
  records.insert(2, {"step": 15, "loss": 1.0})  # A training-only record: not an evaluation.
  for patience, stops in ((0, False), (2, True), (3, False)):
    ev = types.SimpleNamespace(cfg=dict(ranking=dict(ks=(10,), patience=patience)),
                               data_cfg=None, method=None, stop_reason=None,
                               _ranking=ranking._RunState(data=None, vectors=None))
    ranking.resume(ev, records)
    run = ev._ranking
    # The best validation NDCG is step 10's; two evaluations followed it.
    assert run.best == (0.3, 10, {"valid_ndcg@10": 0.3, "test_ndcg@10": 0.2})
    assert run.since_best == 2
    assert bool(ev.stop_reason) == stops
    if stops:
      assert "eval.ranking.patience=2" in ev.stop_reason


def test_patience_stops_training_and_a_restart_stays_stopped(tmp_path):
  """With a vanishing lr the model never improves on its evaluation at step 0: patience 2 ends
  training at the second evaluation (step 4); running the same config again trains no further."""
  import experiments.bpr as bpr_experiment
  from ssljax import train

  lines = ["user_id,item_id"] + [f"{u},{i}" for u in range(24) for i in range(30)
                                 if (u * 5 + i * 7) % 6 < 2]
  (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
  c = bpr_experiment.get_config("data=interactions,runlocal")
  c.input.data.path = str(tmp_path / "r.csv")
  c.input.batch_size = 16
  c.total_steps = 20
  c.optim.lr = 1e-12  # Adam steps of ~1e-12: the ranking cannot change.
  c.eval.every_steps = 2
  c.eval.at_init = True
  c.eval.ranking.patience = 2
  c.checkpoint_every_steps = 100
  c.eval.ranking.ks = (10,)
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["step"] == 4 and "eval.ranking.patience=2" in results["stopped_early"]
  assert results["best_step"] == 0 and results["evals_since_best"] == 2
  again = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert again["step"] == 4 and again["best_step"] == 0 and "before the restart" in (
      again["stopped_early"])
  c.eval.ranking.patience = -1
  with pytest.raises(ConfigError, match="eval.ranking.patience=-1 must be an integer >= 0"):
    train.train_and_evaluate(c, str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()
