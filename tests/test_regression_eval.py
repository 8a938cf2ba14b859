"""Regression probe, raw-feature matrix and gradient-boosting baseline (ssljax.evals.regression)."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.preprocessing import StandardScaler

from ssljax.data import tables
from ssljax.errors import DataError
from ssljax.evals import regression


def _data(n, d, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d)
  y = x @ rng.normal(size=d) + 0.3 * rng.normal(size=n) + 2.0
  return {"representation": x[: n // 2], "label": y[: n // 2]}, \
         {"representation": x[n // 2:], "label": y[n // 2:]}


@pytest.mark.parametrize("n,d", [(200, 10), (40, 60)])  # primal and dual forms
def test_ridge_probe_matches_sklearn_ridge_on_standardised_features(n, d):
  # Reference: scikit-learn's Ridge (an independent solver of the same objective) on features
  # standardised with the training statistics, scored by sklearn's r2_score / MSE.
  train, test = _data(n, d)
  got = regression.ridge_probe(train, test, alpha=3.0)
  scaler = StandardScaler().fit(train["representation"])
  ref = Ridge(alpha=3.0).fit(scaler.transform(train["representation"]), train["label"])
  pred = ref.predict(scaler.transform(test["representation"]))
  assert got["r2"] == pytest.approx(r2_score(test["label"], pred), rel=1e-6)
  assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(test["label"], pred)), rel=1e-6)
  if d < n // 2:
    assert got["r2"] > 0.95  # a linear target is recovered


def test_empty_split_is_a_one_line_data_error():
  train, test = _data(20, 3)
  with pytest.raises(DataError, match="the test split has no examples"):
    regression.ridge_probe(train, {"representation": np.zeros((0, 3)), "label": np.zeros(0)})


def test_raw_features_one_hot_the_categories():
  x = regression.raw_features({"x_num": np.ones((2, 2)), "x_cat": np.array([[0], [2]])}, (3,))
  np.testing.assert_array_equal(x, [[1, 1, 1, 0, 0], [1, 1, 0, 0, 1]])


def test_gbdt_baseline_on_a_bundled_table():
  cfg = dict(name="sklearn:breast_cancer")
  train, test = (tables.load_table(cfg, s) for s in ("train", "test"))
  feats = [{"representation": regression.raw_features({"x_num": t.x_num}), "label": t.label}
           for t in (train, test)]
  # Gradient boosting on Wisconsin breast cancer is well above 90% in the literature (e.g.
  # scikit-learn's own examples); the majority class is 63%.
  assert regression.gbdt_baseline(*feats, task="classification")["top1"] > 0.9


def test_ridge_alpha_by_cross_validation_tames_a_wide_representation():
  # 300 dimensions, 80 training rows, a weak signal in 20 of them under heavy noise: at alpha
  # 1e-2 ridge interpolates the noise (test R^2 about -0.3), a large alpha does not. The chosen
  # alpha is the one of the grid with the lowest 5-fold error, recomputed here with sklearn's Ridge
  # on the same folds.
  rng = np.random.default_rng(1)
  x = rng.normal(size=(240, 300))
  y = 0.3 * x[:, :20].sum(1) + 2.0 * rng.normal(size=240)
  train = {"representation": x[:80], "label": y[:80]}
  test = {"representation": x[80:], "label": y[80:]}
  chosen = regression.ridge_probe(train, test)
  fixed = regression.ridge_probe(train, test, alpha=1e-2)
  assert chosen["r2"] > fixed["r2"] + 0.2, (chosen, fixed)
  xs = StandardScaler().fit_transform(train["representation"])
  order = np.random.default_rng(0).permutation(80)
  folds = np.array_split(order, 5)

  def cv_error(alpha):
    err = 0.0
    for held in folds:
      keep = np.setdiff1d(order, held)
      model = Ridge(alpha=alpha).fit(xs[keep], train["label"][keep])
      err += np.sum((model.predict(xs[held]) - train["label"][held]) ** 2)
    return err

  assert chosen["alpha"] == min(regression.RIDGE_ALPHAS, key=cv_error)
