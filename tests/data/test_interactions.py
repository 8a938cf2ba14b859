"""Interaction data: readers on tiny files written here, filtering, id remapping, the three
splits, the normalised adjacency against its dense formula, and one-line errors."""

import numpy as np
import pytest

from ssljax.data import interactions, pipeline, sources
from ssljax.errors import ConfigError, DataError


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _cfg(**fields):
  base = dict(name="interactions", train_split="train", eval_split="test", split="random",
              split_ratios=(0.8, 0.1, 0.1), split_seed=0, min_rating=0.0, k_core=0)
  base.update(fields)
  return base


def _grid_csv(tmp_path, users=12, items=15, per_user=10, seed=0, name="r.csv"):
  """A CSV of ``users`` x ``per_user`` distinct interactions with ratings and timestamps."""
  rng = np.random.default_rng(seed)
  lines = ["user,item,stars,when"]
  for u in range(users):
    for t, i in enumerate(rng.choice(items, per_user, replace=False)):
      lines.append(f"u{u},{100 + i},{rng.integers(1, 6)},{1000 * u + t}")
  return _write(tmp_path, name, "\n".join(lines) + "\n")


COLUMNS = dict(user_column="user", item_column="item", rating_column="stars", time_column="when")


def test_csv_reader_remaps_ids_and_splits_8_1_1(tmp_path):
  path = _grid_csv(tmp_path)
  data = interactions.load(_cfg(path=path, **COLUMNS))
  assert (data.num_users, data.num_items) == (12, len(data.item_ids))
  # Integer ids are ordered numerically, others as strings.
  assert list(data.item_ids) == sorted(data.item_ids, key=int)
  assert list(data.user_ids) == sorted(f"u{u}" for u in range(12))
  sizes = {s: len(data.split(s)[0]) for s in interactions.SPLIT_NAMES}
  assert sizes == {"train": 96, "valid": 12, "test": 12}  # int(0.1 * 120) each.
  # The splits partition the interactions: no pair in two splits, all 120 present.
  pairs = [set(zip(*data.split(s), strict=True)) for s in interactions.SPLIT_NAMES]
  assert sum(map(len, pairs)) == 120 and not (pairs[0] & pairs[1] or pairs[0] & pairs[2])
  # Seeded: the same seed gives the same split, another seed another one.
  again = interactions.load(_cfg(path=path, **COLUMNS))
  np.testing.assert_array_equal(again.split("test")[1], data.split("test")[1])
  other = interactions.load(_cfg(path=path, split_seed=1, **COLUMNS))
  assert set(zip(*other.split("test"), strict=True)) != pairs[2]


def test_min_rating_duplicates_and_k_core(tmp_path):
  text = "\n".join(["user_id,item_id,rating,timestamp",
                    "a,1,5,10", "a,1,4,5",  # A duplicate: the earlier one (time 5) is kept.
                    "a,2,1,20", "a,3,4,30", "b,1,4,10", "b,2,5,11", "c,3,5,1", ""])
  path = _write(tmp_path, "d.csv", text)
  every = interactions.load(_cfg(path=path, split_ratios=(1.0, 0.0, 0.0)))
  assert len(every.split("train")[0]) == 6  # 7 rows, one duplicate.
  positives = interactions.load(_cfg(path=path, min_rating=4.0, split_ratios=(1.0, 0.0, 0.0)))
  assert len(positives.split("train")[0]) == 5  # a-2 (rated 1) dropped.
  # 2-core of every interaction: c (1 interaction) goes; item 3 then has one (a) and goes;
  # a keeps 1, 2; b keeps 1, 2: all have two.
  core = interactions.load(_cfg(path=path, k_core=2, split_ratios=(1.0, 0.0, 0.0)))
  assert (core.num_users, core.num_items) == (2, 2)
  assert sorted(zip(core.user_ids[core.split("train")[0]],
                    core.item_ids[core.split("train")[1]], strict=True)) == [
      ("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]


def test_k_core_matches_a_brute_force_loop():
  rng = np.random.default_rng(3)
  user, item = rng.integers(0, 30, 200), rng.integers(0, 40, 200)
  keep = set(range(200))
  while True:  # Remove any interaction whose user or item has < 3 kept interactions.
    users = {u: sum(user[j] == u for j in keep) for u in set(user[list(keep)])}
    items = {i: sum(item[j] == i for j in keep) for i in set(item[list(keep)])}
    new = {j for j in keep if users[user[j]] >= 3 and items[item[j]] >= 3}
    if new == keep:
      break
    keep = new
  got = interactions.k_core(user, item, 3)
  assert set(np.flatnonzero(got)) == keep and keep


def test_user_ratio_and_leave_one_out_splits(tmp_path):
  path = _grid_csv(tmp_path)
  data = interactions.load(_cfg(path=path, split="user_ratio", **COLUMNS))
  for split, want in (("train", 8), ("valid", 1), ("test", 1)):  # floor(0.1 * 10) = 1.
    assert np.all(np.bincount(data.split(split)[0], minlength=12) == want)
  loo = interactions.load(_cfg(path=path, split="loo", **COLUMNS))
  # Timestamps are 1000 u + t: each user's last (t = 9) is test, t = 8 valid.
  records = interactions.read_records(_cfg(path=path, **COLUMNS))
  for split, t in (("test", 9), ("valid", 8)):
    users, items = loo.split(split)
    assert len(users) == 12
    for u, i in zip(users, items, strict=True):
      row = np.flatnonzero((records.user == loo.user_ids[u]) & (records.item == loo.item_ids[i]))
      assert records.time[row[0]] % 1000 == t


def test_tsv_headerless_columns_and_recbole_inter(tmp_path):
  rows = ["7\t1\t3.0", "7\t2\t4.0", "8\t1\t5.0", "8\t3\t2.0", "9\t2\t1.0", "9\t3\t5.0"]
  tsv = _write(tmp_path, "x.tsv", "\n".join(rows) + "\n")
  data = interactions.load(_cfg(path=tsv, columns=("u", "i", "r"), user_column="u",
                                item_column="i", split_ratios=(1.0, 0.0, 0.0)))
  assert (data.num_users, data.num_items, len(data.split("train")[0])) == (3, 3, 6)
  inter = _write(tmp_path, "ml.inter", "user_id:token\titem_id:token\trating:float\t"
                 "timestamp:float\n" + "\n".join(f"{r}\t{k}" for k, r in enumerate(rows)) + "\n")
  recbole = interactions.load(_cfg(name="inter", path=inter, min_rating=3.0,
                                   split_ratios=(1.0, 0.0, 0.0)))
  assert len(recbole.split("train")[0]) == 4  # Ratings >= 3 of the six.


def test_normalized_adjacency_is_the_dense_formula(tmp_path):
  path = _grid_csv(tmp_path, users=5, items=6, per_user=3)
  data = interactions.load(_cfg(path=path, split_ratios=(1.0, 0.0, 0.0), **COLUMNS))
  u, i = data.num_users, data.num_items
  # Dense float64 reference: A = [[0, R], [R^T, 0]], D = diag(A 1), A_hat = D^-1/2 A D^-1/2
  # (degree-0 nodes keep 0 rows).
  r = np.zeros((u, i))
  r[data.split("train")] = 1.0
  a = np.block([[np.zeros((u, u)), r], [r.T, np.zeros((i, i))]])
  d = a.sum(1)
  inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
  want = inv[:, None] * a * inv[None, :]
  adj = data.normalized_adjacency()
  got = np.zeros_like(want)
  np.add.at(got, (adj["rows"], adj["cols"]), adj["weights"])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert np.all(np.diff(adj["rows"]) >= 0)  # Sorted rows: the encoder's sorted segment sum.


def test_trainer_sees_user_item_examples(tmp_path):
  path = _grid_csv(tmp_path)
  cfg = _cfg(path=path, **COLUMNS)
  info = sources.get_info(cfg)
  assert info.modality == "interactions" and info.task == "ranking"
  data = interactions.load(cfg)
  assert info.cardinalities == (data.num_users, data.num_items)
  assert (info.num_train, info.num_eval) == (96, 12)
  batch = next(pipeline.make_train_iterator(cfg, global_batch_size=8, seed=0))
  assert set(batch) == {"user", "item"} and batch["user"].shape == (8,)
  assert batch["user"].dtype == np.int32


def test_ml_latest_small_ships_offline():
  data = interactions.load(dict(name="ml-latest-small"))
  assert (data.num_users, data.num_items) == (671, 9066)
  assert {s: len(data.split(s)[0]) for s in interactions.SPLIT_NAMES} == {
      "train": 80004, "valid": 10000, "test": 10000}


# ---------------------------------------------------------------------------- bad input


def test_missing_columns_are_named(tmp_path):
  path = _write(tmp_path, "m.csv", "user_id,rating\n1,3\n")
  with pytest.raises(DataError, match=r"no column\(s\) \['item_id'\]"):
    interactions.load(_cfg(path=path))
  # A column named in the config must be there; the default rating / timestamp are optional.
  path = _write(tmp_path, "n.csv", "user,item\n1,2\n")
  with pytest.raises(DataError, match=r"no column\(s\) \['when'\]"):
    interactions.load(_cfg(path=path, user_column="user", item_column="item",
                           time_column="when"))


def test_ids_and_numbers_that_do_not_parse(tmp_path):
  path = _write(tmp_path, "e.csv", "user_id,item_id\n1,2\n,3\n")
  with pytest.raises(DataError, match="column 'user_id' row 2 .* not an id"):
    interactions.load(_cfg(path=path))
  path = _write(tmp_path, "f.csv", "user_id,item_id,rating\n1,2,4\n1,3,five\n")
  with pytest.raises(DataError, match="column 'rating' row 2 holds 'five', not a number"):
    interactions.load(_cfg(path=path))
  inter = _write(tmp_path, "g.inter", "user_id:float\titem_id:token\n1\ta\nx\tb\n")
  with pytest.raises(DataError, match="column 'user_id' row 2 holds 'x', not an id"):
    interactions.load(_cfg(name="inter", path=inter))


def test_split_leaving_users_without_training_is_counted(tmp_path):
  # 30 users with 1 interaction each: leave-one-out keeps them in train, but a random 8:1:1
  # split puts int(0.1 * 30) = 3 into valid and 3 into test, leaving 6 users without training.
  text = "user_id,item_id\n" + "".join(f"{u},{u % 4}\n" for u in range(30))
  path = _write(tmp_path, "s.csv", text)
  with pytest.raises(DataError, match="leaves 6 of 30 users without a training interaction; "
                     "filter them with input.data.k_core"):
    interactions.load(_cfg(path=path))


def test_bad_settings_name_the_key(tmp_path):
  path = _grid_csv(tmp_path)
  with pytest.raises(ConfigError, match="input.data.split='time'"):
    interactions.load(_cfg(path=path, split="time", **COLUMNS))
  with pytest.raises(ConfigError, match="split_ratios"):
    interactions.load(_cfg(path=path, split_ratios=(0.5, 0.5), **COLUMNS))
  with pytest.raises(ConfigError, match="k_core=-1"):
    interactions.load(_cfg(path=path, k_core=-1, **COLUMNS))
  with pytest.raises(ConfigError, match="no timestamp column"):
    interactions.load(_cfg(path=path, split="loo", user_column="user", item_column="item",
                           time_column=""))
  with pytest.raises(ConfigError, match="input.data.path is not set"):
    interactions.load(_cfg())


def _recbole_counts(total, ratios=(0.8, 0.1, 0.1)):
  """RecBole's per-user ratio split, written from its rule: int(r * n) for valid and test; from
  the last split backwards, a split whose share is under one interaction takes one from train
  while train keeps more than one."""
  train, valid, test = total - int(ratios[1] * total) - int(ratios[2] * total), int(
      ratios[1] * total), int(ratios[2] * total)
  if train > 1 and 0 < ratios[2] * total < 1:
    test, train = test + 1, train - 1
  if train > 1 and 0 < ratios[1] * total < 1:
    valid, train = valid + 1, train - 1
  return train, valid, test


def test_user_ratio_rounds_as_recbole(tmp_path):
  rng = np.random.default_rng(3)
  sizes = [1, 2, 3, 5, 9, 10, 11, 15, 23]  # Interactions of each user.
  lines = ["user_id,item_id"]
  for u, n in enumerate(sizes):
    lines += [f"{u},{i}" for i in rng.choice(40, n, replace=False)]
  path = _write(tmp_path, "u.csv", "\n".join(lines) + "\n")
  data = interactions.load(_cfg(path=path, split="user_ratio"))
  got = np.stack([np.bincount(data.split(s)[0], minlength=len(sizes))
                  for s in interactions.SPLIT_NAMES], 1)
  want = np.array([_recbole_counts(n) for n in sizes])
  np.testing.assert_array_equal(got, want)
  assert tuple(want[3]) == (3, 1, 1) and tuple(want[1]) == (1, 0, 1)  # 5 -> 3/1/1, 2 -> 1/0/1.


def test_social_edges_are_indexed_deduplicated_and_checked(tmp_path):
  path = _write(tmp_path, "r.csv", "user_id,item_id\na,1\nb,1\nc,2\nd,2\nd,1\n")
  social = _write(tmp_path, "s.txt", "a b\nb a\na b\nc c\nd  a\n")  # Dup, self-loop, 2 spaces.
  data = interactions.load(_cfg(path=path, split="user_ratio", social_path=social,
                                social_sep="whitespace"))
  names = lambda pairs: sorted((data.user_ids[u], data.user_ids[f])  # noqa: E731
                               for u, f in zip(*pairs, strict=True))
  assert names(data.social) == [("a", "b"), ("b", "a"), ("d", "a")]
  assert names(data.social_matrix(symmetric=True)) == [("a", "b"), ("a", "d"), ("b", "a"),
                                                      ("d", "a")]
  unknown = _write(tmp_path, "x.txt", "a b\nzz a\nb yy\n")
  with pytest.raises(DataError, match=r"social_path=.*2 of 3 edges name users who have no "
                                      r"interaction.*social_unknown='drop'"):
    interactions.load(_cfg(path=path, split="user_ratio", social_path=unknown,
                           social_sep="whitespace"))
  dropped = interactions.load(_cfg(path=path, split="user_ratio", social_path=unknown,
                                   social_sep="whitespace", social_unknown="drop"))
  assert len(dropped.social[0]) == 1
  with pytest.raises(DataError, match="social_path=.*1 column"):
    one_column = _write(tmp_path, "o.txt", "a\n")
    interactions.load(_cfg(path=path, split="user_ratio", social_path=one_column))
  with pytest.raises(ConfigError, match="social_path is not set"):
    interactions.load(_cfg(path=path, split="user_ratio")).social_matrix()


def test_item_features_from_a_file_and_movielens(tmp_path):
  path = _write(tmp_path, "r.csv", "user_id,item_id\na,1\na,2\nb,3\nb,1\n")
  items = _write(tmp_path, "i.csv", "item_id,genre,year\n1,x|y,1999\n2,y,\n9,z,2000\n")
  data = interactions.load(_cfg(path=path, split="user_ratio", item_path=items))
  assert data.item_feature_sizes == {"genre": 3, "year": 2}  # {x, y} and {1999}, plus 0.
  genre, year = data.item_features["genre"], data.item_features["year"]
  assert genre.shape == (3, 2) and year.shape == (3, 1)
  # Items 1, 2, 3 (indices 0, 1, 2): codes 1 = x, 2 = y; item 3 has no row, item 2 no year.
  np.testing.assert_array_equal(genre, [[1, 2], [2, 0], [0, 0]])
  np.testing.assert_array_equal(year[:, 0], [1, 0, 0])
  with pytest.raises(DataError, match=r"item_path=.*no column\(s\) \['style'\]"):
    interactions.load(_cfg(path=path, split="user_ratio", item_path=items,
                           item_feature_columns=("style",)))
  movies = interactions.load(dict(name="ml-latest-small"))
  assert set(movies.item_features) == {"genres", "year"}
  assert movies.item_features["genres"].shape[0] == movies.num_items
  assert movies.item_feature_sizes["genres"] == 20  # 19 genres (no "(no genres listed)") + 0.


def test_split_ratios_that_are_not_numbers_name_the_key(tmp_path):
  path = _grid_csv(tmp_path)
  # What the command line leaves for --config.input.data.split_ratios=(0.8,x): one string.
  with pytest.raises(ConfigError, match=r"split_ratios=\('\(0.8,x\)',\): not three numbers"):
    interactions.load(_cfg(path=path, split_ratios=("(0.8,x)",), **COLUMNS))


def test_training_batches_are_column_slices_checkpointable_and_process_independent(tmp_path):
  path = _grid_csv(tmp_path)  # 96 training interactions.
  cfg = _cfg(path=path, **COLUMNS)
  it = pipeline.make_train_iterator(cfg, global_batch_size=16, seed=3, process_index=0,
                                    process_count=1)
  assert isinstance(it, pipeline.ColumnTrainIterator)
  epoch = [next(it) for _ in range(6)]  # 96 // 16 batches: one epoch, every pair once.
  data = interactions.load(cfg)
  got = sorted(zip(*(np.concatenate([b[k] for b in epoch]) for k in ("user", "item")),
                   strict=True))
  assert got == sorted(zip(*data.split("train"), strict=True))
  assert epoch[0]["user"].dtype == np.int32 and epoch[0]["user"].shape == (16,)
  # The next epoch is another permutation.
  nxt = next(it)
  assert not np.array_equal(nxt["item"], epoch[0]["item"]) or not np.array_equal(
      nxt["user"], epoch[0]["user"])
  # Two processes read the two halves of the same global batches.
  halves = [pipeline.make_train_iterator(cfg, global_batch_size=16, seed=3, process_index=p,
                                         process_count=2) for p in (0, 1)]
  for b in range(3):
    two = [next(h) for h in halves]
    np.testing.assert_array_equal(np.concatenate([t["item"] for t in two]), epoch[b]["item"])
  # Restoring a saved position continues exactly.
  state = halves[0].get_state()
  want = [next(halves[0])["user"] for _ in range(5)]
  fresh = pipeline.make_train_iterator(cfg, global_batch_size=16, seed=3, process_index=0,
                                       process_count=2)
  fresh.set_state(state)
  for w in want:
    np.testing.assert_array_equal(next(fresh)["user"], w)


def test_movielens_through_tfds(tmp_path):
  """TFDS's MovieLens ratings, mocked offline with examples written here: ids decoded, ratings
  and times read; without a prepared copy (and no download=True) one line says what to do."""
  import tensorflow as tf
  import tensorflow_datasets as tfds

  rng = np.random.default_rng(0)
  rows = [(f"u{u}", f"m{m}", float(rng.integers(1, 6)), 1000 * u + m)
          for u in range(8) for m in rng.choice(20, 10, replace=False)]

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    users, movies, ratings, times = zip(*rows, strict=True)
    return tf.data.Dataset.from_tensor_slices(
        {"user_id": list(users), "movie_id": list(movies),
         "user_rating": np.array(ratings, np.float32), "timestamp": np.array(times, np.int64)})

  cfg = _cfg(name="movielens/100k-ratings", data_dir=str(tmp_path), split="loo", min_rating=3.0)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    data = interactions.load(cfg)
  kept = [r for r in rows if r[2] >= 3.0]
  assert data.num_users == len({r[0] for r in kept})
  assert sum(len(data.split(s)[0]) for s in interactions.SPLIT_NAMES) == len(kept)
  # Leave-one-out by time: each user's latest kept rating is its test item.
  for u, i in zip(*data.split("test"), strict=True):
    mine = [r for r in kept if r[0] == data.user_ids[u]]
    assert data.item_ids[i] == max(mine, key=lambda r: r[3])[1]
  with pytest.raises(DataError, match=r"movielens/100k-ratings' is not prepared under "
                                      r"input.data.data_dir=.*download=True"):
    interactions.load(_cfg(name="movielens/100k-ratings", data_dir=str(tmp_path / "empty")))
  with pytest.raises(ConfigError, match="read a ratings config"):
    interactions.load(_cfg(name="movielens/100k-movies"))
