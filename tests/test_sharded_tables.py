"""Row-sharded embedding tables (``sharding_rules`` rule ``"rows"``): 8 devices == 1 device.

Every recommendation method (the methods whose default data are interactions, found as
``tests/methods/test_learning.py`` finds them, so a new one such as ``two_tower`` is covered
without editing this file) trains a few steps on a tiny interaction file written here, once on
one device with everything replicated and once on the 8 fake CPU devices with
``(("item_embedding|item_id_embedding|user_embedding", "rows"), (".*", "replicate"))`` (the
two-tower model's item id table is ``item_id_embedding``); the parameters, the losses
and the full-ranking metrics (``ssljax.evals.ranking``) must agree up to float reduction order.
What "row-sharded" means is checked on the live arrays: each device holds rows/8 of each table
and of both Adam moments. The expected shard shapes come from the rule's definition (first
dimension / 8), not from ``sharding.py``.
"""

import importlib
import re

import jax
import numpy as np
import pytest

from ssljax import methods, sharding, train
from ssljax.data import interactions
from ssljax.errors import ConfigError
from ssljax.evals import ranking
from ssljax.evals.evaluator import Evaluator
from ssljax.tools import main as command

N = 8  # tests/conftest.py's fake CPU devices.
USERS, ITEMS = 16, 24  # Both divisible by 8.
# The rule, plus the two-tower model's item id table (its item tower names each field's
# table item_<field>_embedding; its other fields' tables are small vocabularies, left replicated).
ROWS = (("item_embedding|item_id_embedding|user_embedding", "rows"), (".*", "replicate"))
STEPS, BATCH = 3, 16
# bpr and lightgcn (and the two-tower model, once it exists) are the edit-test loop; the other
# recommenders are the same check, in the slow tier (~15 s each on 2 cores).
FAST = ("bpr", "lightgcn", "two_tower")


def _default_data(name: str) -> str:
  return str(importlib.import_module(f"experiments.{name}").get_config().input.data.name)


RECOMMENDERS = [n for n in methods.available() if interactions.is_interactions(_default_data(n))]


def test_two_tower_is_picked_up_when_it_lands():
  # The parametrisation below reads methods.available(): ssljax/methods/two_tower.py (with its
  # experiments/two_tower.py) joins it without an edit here.
  assert {"bpr", "lightgcn"} <= set(RECOMMENDERS)
  present = importlib.util.find_spec("ssljax.methods.two_tower") is not None
  assert ("two_tower" in RECOMMENDERS) == present


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
  """16 users x 10 items each over a catalogue of 24 (every item used), as a CSV, and beside
  it ``items.csv``: one categorical feature per item (the two-tower model's item tower reads it;
  the other methods ignore it)."""
  folder = tmp_path_factory.mktemp("interactions")
  lines = ["user_id,item_id"]
  lines += [f"{u},{(5 * u + j) % ITEMS}" for u in range(USERS) for j in range(10)]
  (folder / "inter.csv").write_text("\n".join(lines) + "\n")
  items = ["item_id,kind"] + [f"{i},k{i % 3}" for i in range(ITEMS)]
  (folder / "items.csv").write_text("\n".join(items) + "\n")
  # And ``social.csv``: each user follows the next two (the social recommenders read it).
  social = ["user,friend"] + [f"{u},{(u + k) % USERS}" for u in range(USERS) for k in (1, 2)]
  (folder / "social.csv").write_text("\n".join(social) + "\n")
  return str(folder / "inter.csv")


def _config(name, path, *, mesh, rules):
  c = importlib.import_module(f"experiments.{name}").get_config("data=interactions,runlocal")
  c.input.data.path = path
  c.input.data.item_path = path.replace("inter.csv", "items.csv")
  c.input.data.social_path = path.replace("inter.csv", "social.csv")
  c.input.data.social_header = True
  c.mesh = mesh
  c.sharding_rules = rules
  c.input.batch_size = BATCH
  c.eval.ranking.ks = (5, 10)
  c.eval.ranking.batch_users = 8  # Two user batches, the second one padded.
  return c


def _batches(path):
  """The same STEPS batches of training pairs for both runs."""
  c = _config("bpr", path, mesh=(("data", 1),), rules=((".*", "replicate"),))
  user, item = interactions.load(c.input.data).split("train")
  rng = np.random.default_rng(0)
  return [{"user": user[idx], "item": item[idx]}
          for idx in (rng.choice(len(user), BATCH, replace=False) for _ in range(STEPS))]


def _train_and_rank(name, path, *, mesh, rules):
  config = _config(name, path, mesh=mesh, rules=rules)
  run = train.build(config)
  assert interactions.load(config.input.data).num_items == ITEMS
  state = train.create_state(run)
  initial = jax.tree.map(np.asarray, state.params)
  losses = []
  for batch in _batches(path):
    state, metrics = run.step_fn(state, sharding.global_batch(batch, run.mesh))
    losses.append(float(metrics["loss"]))
  # The full-ranking evaluator as the trainer runs it (Evaluator built on the run's mesh).
  evaluator = Evaluator(config, run.method, run.mesh, run.info)
  metrics = ranking.evaluate(evaluator, state)
  # On 8 devices the evaluator keeps every user's and item's vector row-sharded (rows / 8 each).
  vectors = ranking.all_vectors(ranking._run_state(evaluator), state, mesh=run.mesh)
  for x, n in zip(vectors, (USERS, ITEMS), strict=True):
    per_device = n // run.mesh.shape["data"]
    assert x.shape[0] == n and {s.data.shape[0] for s in x.addressable_shards} == {per_device}
  return initial, losses, state, metrics


def _shard_rows(state):
  """``path -> (shape, {shard shapes})`` of every leaf the ``rows`` pattern matches."""
  return {sharding.path_str(p): (x.shape, {s.data.shape for s in x.addressable_shards})
          for p, x in jax.tree_util.tree_leaves_with_path(state)
          if re.search(ROWS[0][0], sharding.path_str(p))}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in RECOMMENDERS])
def test_row_sharded_tables_equal_single_device(name, csv_path):
  init1, losses1, state1, ranks1 = _train_and_rank(
      name, csv_path, mesh=(("data", 1),), rules=((".*", "replicate"),))
  init8, losses8, state8, ranks8 = _train_and_rank(
      name, csv_path, mesh=(("data", -1),), rules=ROWS)

  # Row-sharded for real: params and the optimizer's moments of both tables, rows / 8 per device.
  tables = _shard_rows(state8)
  params = [p for p in tables if p.startswith("params/")]
  assert any(p.endswith("user_embedding") for p in params), sorted(tables)
  assert any(re.search("item(_id)?_embedding$", p) for p in params), sorted(tables)
  assert any(p.startswith("opt_state/") for p in tables), sorted(tables)
  for path, (shape, shards) in tables.items():
    assert shape[0] in (USERS, ITEMS), (path, shape)
    assert shards == {(shape[0] // N, *shape[1:])}, (path, shape, shards)
  assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state1))

  jax.tree.map(np.testing.assert_array_equal, init8, init1)  # Same start.
  assert len(set(losses1)) == STEPS  # The steps train, so equality below means something.
  # float32: the sharded step gathers rows from shards and scatter-adds their gradients, so
  # sums run in another order; measured differences are ~1e-7 relative.
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.tree.map(np.asarray, state8)),
                          jax.tree.leaves(jax.tree.map(np.asarray, state1)), strict=True):
    scale = float(np.abs(b).max()) if b.size and np.issubdtype(b.dtype, np.floating) else 0.0
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale + 1e-30,
                               err_msg=sharding.path_str(path))
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(init1),
                                                     jax.tree.leaves(state1.params), strict=True)]
  assert any(moved)

  # Ranking: every metric of both splits (and the popularity baseline) equal; they are
  # means over 12-16 users of discrete hits, so equal scores up to rounding give equal values.
  assert ranks1.keys() == ranks8.keys()
  assert {"valid_ndcg@10", "test_recall@5", "best_valid_ndcg@10"} <= set(ranks1)
  assert any(v > 0 for k, v in ranks1.items() if k.startswith("valid_"))
  for key, value in ranks1.items():
    assert ranks8[key] == pytest.approx(value, abs=1e-6), key


# ------------------------------------------------------------------------------ user errors


def test_rows_not_divisible_is_one_line_and_writes_nothing(csv_path, tmp_path, capsys):
  workdir = tmp_path / "run"
  with pytest.raises(SystemExit) as exit_info:
    command.run(["main.py", "--config=experiments/bpr.py:data=interactions,runlocal",
                 f"--config.input.data.path={csv_path}", f"--workdir={workdir}",
                 "--config.mesh=(('data', 2), ('model', 3))",
                 "--config.sharding_rules=(('user_embedding', 'rows:model'), ('.*', 'replicate'))"])
  assert exit_info.value.code == 2
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert lines == [
      "error: sharding_rules: 'rows' cannot split 'params/method/user_embedding' (16 rows) over "
      "the 3 devices of mesh axis 'model': 3 does not divide 16; pad the catalogue to 18 rows "
      "(a multiple of 3) or use a device count that divides 16"], lines
  assert not workdir.exists()


@pytest.mark.parametrize("rules, message", [
    ((("item_embeding", "rows"), (".*", "replicate")),
     r"rows pattern 'item_embeding' matches no path of the train state .*ssljax\.tools\.sharding"),
    ((("item_embedding", "rows:model"), (".*", "replicate")),
     r"rule 'rows:model' names mesh axis 'model' but the mesh has axes \('data',\); add"),
    ((("step", "rows"), (".*", "replicate")),
     r"a 'rows' pattern matches the scalar 'step', which has no rows to split"),
    ((("item_embedding", "rows:"), (".*", "replicate")), r"rule 'rows:' for 'item_embedding' is "
                                                         r"malformed; write 'rows'"),
])
def test_bad_rows_rules_are_config_errors(csv_path, rules, message):
  with pytest.raises(ConfigError, match=message):
    train.build(_config("bpr", csv_path, mesh=(("data", -1),), rules=rules))


def test_rows_spec_splits_the_first_dimension_only():
  mesh = sharding.make_mesh((("data", 2), ("model", 4)))
  assert sharding.rows_spec("t", (24, 8), mesh) == jax.sharding.PartitionSpec("data", None)
  assert sharding.rows_spec("t", (24, 8, 3), mesh, "model") == jax.sharding.PartitionSpec(
      "model", None, None)
  # Unlike fsdp, the largest dimension does not matter, nor does the leaf's size.
  assert sharding.rows_spec("t", (4, 4096), mesh, "model") == jax.sharding.PartitionSpec(
      "model", None)
  with pytest.raises(ConfigError, match=r"'t' \(6 rows\) over the 4 devices of mesh axis "
                                        r"'model': 4 does not divide 6; pad the catalogue to 8"):
    sharding.rows_spec("t", (6, 4096), mesh, "model")
