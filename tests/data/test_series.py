"""Time-series sources (UCR/UEA through aeon's bundled files, .ts, .npz), their views and the SVM
protocol. The archives read here ship inside the aeon wheel; every other file is written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.data import series, series_views, sources
from ssljax.errors import ConfigError, DataError
from ssljax.evals import svm

aeon = pytest.importorskip("aeon")


def test_ucr_reader_matches_aeons_loader():
  from aeon.datasets import load_classification

  for name in ("GunPoint", "BasicMotions"):
    for split in ("train", "test"):
      ours = series.load_series({"name": f"uea:{name}", "normalize": "none"}, split)
      x, y = load_classification(name, split=split)  # [N, C, T], class names
      np.testing.assert_allclose(ours.series, np.transpose(x, (0, 2, 1)), rtol=0, atol=1e-6)
      # aeon lower-cases the class names ('Standing' -> 'standing'); the files keep their case.
      assert [ours.class_names[i].lower() for i in ours.label] == [str(v).lower() for v in y]


def test_gunpoint_euclidean_1nn_matches_the_archive():
  # The UCR archive's published 1-NN Euclidean test error for GunPoint is 0.087 (Dau et al., "The
  # UCR Time Series Archive", 2018, its results table), i.e. 137 of 150 test series right.
  tr, te = (series.load_series({"name": "ucr:GunPoint"}, s) for s in ("train", "test"))
  assert round(svm.one_nn_euclidean(tr.series, tr.label, te.series, te.label), 3) == 0.913


def test_variable_length_series_are_padded_with_their_lengths():
  tr = series.load_series({"name": "uea:JapaneseVowels"}, "train")
  te = series.load_series({"name": "uea:JapaneseVowels"}, "test")
  assert tr.series.shape[1:] == te.series.shape[1:] == (29, 12)  # the longest of both splits
  assert tr.length.min() == 7 and te.length.max() == 29
  for s, n in zip(tr.series, tr.length, strict=True):
    assert not s[n:].any()
  info = sources.get_info({"name": "uea:JapaneseVowels"})
  assert info.modality == "series" and info.num_classes == 9
  assert set(info.element_spec) == {"series", "length", "label"}


def test_series_normalisation():
  tr = series.load_series({"name": "ucr:ArrowHead", "normalize": "series"}, "train")
  x = tr.series[0, :tr.length[0]]
  np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
  tr = series.load_series({"name": "uea:BasicMotions"}, "train")  # UEA: per channel, train stats
  np.testing.assert_allclose(tr.series.reshape(-1, 6).mean(0), 0, atol=1e-4)


def test_unknown_archive_lists_the_offline_ones():
  with pytest.raises(ConfigError, match="download=True.*") as e:
    series.load_series({"name": "ucr:NoSuchSet"}, "train")
  assert "GunPoint" in str(e.value) and "BasicMotions" in str(e.value)


def _ts(path, lines, dims=1, labels="a b"):
  head = ["@problemName t", "@timeStamps false", "@univariate " + str(dims == 1).lower(),
          f"@dimensions {dims}", f"@classLabel true {labels}", "@data"]
  path.write_text("\n".join(head + lines) + "\n")
  return str(path)


def test_own_ts_file_with_a_test_file_and_bad_rows(tmp_path):
  train = _ts(tmp_path / "x_TRAIN.ts", ["1,2,3,4:a", "4,3,2,1:b", "1,1,2,2:a"])
  _ts(tmp_path / "x_TEST.ts", ["1,2,3:b", "2,2,2,2:a"])
  cfg = {"name": "ts", "path": train}
  te = series.load_series(cfg, "test")
  assert te.series.shape == (2, 4, 1) and list(te.length) == [3, 4]
  assert list(te.label) == [1, 0]
  bad = _ts(tmp_path / "y_TRAIN.ts", ["1,2,?,4:a", "1,2,3,4:b"])
  with pytest.raises(DataError, match="series 1 has missing values inside"):
    series.load_series({"name": "ts", "path": bad}, "train")
  two = _ts(tmp_path / "z_TRAIN.ts", ["1,2:3,4:a", "1,2:b"], dims=2)
  with pytest.raises(DataError, match="line 8: 1 dimensions where the first series has 2"):
    series.load_series({"name": "ts", "path": two}, "train")
  with pytest.raises(DataError, match="no such file"):
    series.load_series({"name": "ts", "path": str(tmp_path / "none.ts")}, "train")


def test_ts_time_stamps_place_values_on_their_grid(tmp_path):
  # sktime's .ts format with @timeStamps true: each dimension is "(stamp,value),...". Values sit
  # at slot (t - t0) / smallest spacing; a missing slot is a gap (NaN), refused inside a series.
  head = ["@problemName t", "@timeStamps true", "@univariate false", "@dimensions 2",
          "@classLabel true a b", "@data"]
  rows = ["(0,1.0),(2,3.0),(1,2.0):(0,5),(1,6),(2,7):a",  # Out of order: sorted by time stamp.
          "(2007-01-01 00:00:00,4),(2007-01-01 01:00:00,5):(2007-01-01 00:00:00,1),"
          "(2007-01-01 01:00:00,2):b"]
  path = tmp_path / "s_TRAIN.ts"
  path.write_text("\n".join(head + rows) + "\n")
  got, labels, _ = series.read_ts(str(path))
  np.testing.assert_array_equal(got[0], [[1, 5], [2, 6], [3, 7]])
  np.testing.assert_array_equal(got[1], [[4, 1], [5, 2]])
  assert labels == ["a", "b"]
  path.write_text("\n".join(head + ["(0,1),(3,2),(1,3):(0,1),(1,1),(3,1):a"]) + "\n")
  gap, _, _ = series.read_ts(str(path))
  np.testing.assert_array_equal(np.isnan(gap[0][:, 0]), [False, False, True, False])
  path.write_text("\n".join(head + ["(0,1),(1,2),(2.7,3):(0,1),(1,1),(2,1):a"]) + "\n")
  with pytest.raises(DataError, match="line 7: irregular time stamps"):
    series.read_ts(str(path))
  path.write_text("\n".join(head + ["(0,1),(x,2):(0,1),(1,1):a"]) + "\n")
  with pytest.raises(DataError, match="line 7: time stamp"):
    series.read_ts(str(path))


def test_npz_series_route_and_test_classes(tmp_path):
  path = tmp_path / "s.npz"
  rng = np.random.default_rng(0)
  np.savez(path, train_series=rng.normal(size=(12, 10, 2)), train_labels=np.arange(12) % 3,
           test_series=rng.normal(size=(4, 10, 2)), test_labels=np.array([0, 1, 2, 5]))
  cfg = {"name": "npz", "path": str(path)}
  assert series.is_series("npz", cfg)
  with pytest.raises(DataError, match=r"class\(es\) \['5'\] of the test split"):
    sources.get_info(cfg)
  np.savez(path, series=rng.normal(size=(20, 10)), labels=np.arange(20) % 2)
  series._load_both.cache_clear()
  info = sources.get_info({"name": "npz", "path": str(path), "test_fraction": 0.25})
  assert (info.num_train, info.num_eval) == (15, 5)
  assert info.element_spec["series"][0] == (10, 1)


def test_ts2vec_max_train_length_trains_on_array_split_sections():
  # Official fit: sections = T // max_train_length; np.array_split along time; all-missing
  # sections dropped. Each row's crops must come from one of its own sections holding data.
  b, t, max_len = 6, 23, 7  # 3 sections of lengths 8, 8, 7 (array_split).
  x = (100.0 * jnp.arange(b)[:, None] + jnp.arange(1, t + 1)[None, :])[..., None]
  length = jnp.array([23, 23, 23, 23, 9, 5], jnp.int32)  # Row 4: 2 sections with data; row 5: 1.
  crops = series_views.TS2VecCrops(0, max_len)
  assert crops.section_length(t) == 8 and series_views.TS2VecCrops(0).section_length(t) == t
  pieces = np.array_split(np.arange(1, t + 1), t // max_len)
  seen = [set() for _ in range(b)]
  for seed in range(60):
    out = crops(jax.random.key(seed), {"series": x, "length": length})
    assert out["a"]["series"].shape == (b, 8, 1)
    for name in ("a", "b"):
      vals, valid = np.asarray(out[name]["series"][..., 0]), np.asarray(out[name]["valid"])
      assert not vals[~valid].any()  # Outside the crop: zeros.
      for r in range(b):
        got = vals[r][valid[r]] - 100 * r  # The timestamps (1-based) this row's crop holds.
        if got.size == 0:
          continue
        owner = [i for i, p in enumerate(pieces) if got[0] in p]
        assert len(owner) == 1 and set(got) <= set(pieces[owner[0]]), (r, got)
        assert got.max() <= int(length[r])  # Only data timestamps.
        seen[r].add(owner[0])
  assert seen[0] == {0, 1, 2} and seen[4] == {0, 1} and seen[5] == {0}
  with pytest.raises(ConfigError, match="ts2vec.max_train_length=1 must be at least 2"):
    series_views.TS2VecCrops(0, 1)


def test_ts2vec_crops_share_the_overlap():
  # Each row a ramp x[t] = 100 * row + t, so the crops' values say where they came from.
  b, t = 4, 24
  x = (100.0 * jnp.arange(b)[:, None] + jnp.arange(t)[None, :])[..., None]
  batch = {"series": x, "length": jnp.full((b,), t, jnp.int32)}
  for seed in range(20):
    out = series_views.TS2VecCrops(0)(jax.random.key(seed), batch)
    assert len(set(np.asarray(out["overlap"]))) == len(set(np.asarray(out["a_start"]))) == 1
    l, a0 = int(out["overlap"][0]), int(out["a_start"][0])
    assert 2 <= l <= t
    xa, xb = np.asarray(out["a"]["series"][..., 0]), np.asarray(out["b"]["series"][..., 0])
    np.testing.assert_array_equal(xa[:, a0:a0 + l], xb[:, :l])  # the same timestamps in both
    for row in range(b):  # contiguous pieces of the row's own series, zero past their end
      na, nb = int(out["a"]["valid"][row].sum()), int(out["b"]["valid"][row].sum())
      assert np.all(np.diff(xa[row, :na]) == 1) and np.all(xa[row, :na] // 100 == row)
      assert not xa[row, na:].any() and not xb[row, nb:].any()
      assert na >= a0 + l and nb >= l


def test_ts2vec_crops_refuse_series_shorter_than_a_crop():
  batch = {"series": jnp.zeros((2, 3, 1)), "length": jnp.full((2,), 3, jnp.int32)}
  with pytest.raises(ConfigError, match="at least 2\\^\\(temporal_unit\\+1\\) = 4"):
    series_views.TS2VecCrops(1)(jax.random.key(0), batch)


def test_svm_protocol_chooses_c_by_cross_validation():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 5))
  y = (x[:, 0] > 0).astype(int)
  fit = svm.svm_probe(x, y, x[:20], y[:20])
  assert fit["top1"] >= 0.9 and fit["C"] in svm.C_GRID
  few = svm.svm_probe(x[:12], y[:12], x[:12], y[:12])  # < 50 series: a hard margin, no search
  assert few["C"] == np.inf and few["top1"] == 1.0
