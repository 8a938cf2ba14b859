"""Regression probe and the tabular baselines a user compares pretraining against.

Evaluator interface (shared with ``classification`` and, later, ``ranking``): a function
``evaluate(train, test, **settings) -> dict[str, float]`` whose ``train`` / ``test`` are dicts of
host arrays with at least ``representation`` [N, F] and ``label`` [N]; it reads no raw data and
returns flat, JSON-ready metrics.

* :func:`ridge_probe`: closed-form ridge regression on standardised frozen features (R^2 and RMSE
  on the test split; with the target standardised on the training split, as ``ssljax.data.tables``
  does, RMSE is in training standard deviations, T-JEPA's "RMSE (standardized target)").
* :func:`raw_features`: the preprocessed table as one matrix (numeric columns, one-hot categories),
  the representation the baselines use.
* :func:`gbdt_baseline`: scikit-learn's ``HistGradientBoostingClassifier`` / ``Regressor`` on the
  raw features (accuracy or R^2 / RMSE), with scikit-learn's defaults and a fixed seed.
"""

from __future__ import annotations

import numpy as np

from ssljax.errors import DataError


def _check(train, test, name):
  for split, part in (("train", train), ("test", test)):
    if len(part["label"]) == 0:
      raise DataError(f"{name}: the {split} split has no examples; choose a split with rows")
    if len(part["representation"]) != len(part["label"]):
      raise DataError(f"{name}: {split} has {len(part['representation'])} features but "
                      f"{len(part['label'])} labels")
  if not (np.all(np.isfinite(train["label"])) and np.all(np.isfinite(test["label"]))):
    raise DataError(f"{name}: regression targets must be finite numbers")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """``r2`` = 1 - SS_res / SS_tot (SS_tot about the test mean, as sklearn's r2_score) and RMSE."""
  y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  ss_res = float(np.sum((y_true - y_pred) ** 2))
  ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
  return {"r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
          "rmse": float(np.sqrt(ss_res / len(y_true)))}


RIDGE_ALPHAS = tuple(10.0 ** k for k in range(-2, 6))  # The grid ``alpha=None`` searches.


def _standardised(train, test):
  x, xt = (np.asarray(p["representation"], np.float64) for p in (train, test))
  mean, std = x.mean(0), x.std(0)
  std = np.where(std > 1e-6, std, 1.0)
  return (x - mean) / std, (xt - mean) / std


def _ridge_fit(x, y, alpha):
  """(w, bias) of ``min ||X w + b - y||^2 + alpha ||w||^2``; the bias (y's mean) unpenalised."""
  y_mean = y.mean()
  n, d = x.shape
  x_mean = x.mean(0)
  xc = x - x_mean
  if d <= n:
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ (y - y_mean))
  else:  # Dual form: cheaper when the representation is wider than the split is long.
    w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), y - y_mean)
  return w, y_mean - x_mean @ w


def choose_ridge_alpha(x, y, *, alphas=RIDGE_ALPHAS, folds: int = 5) -> float:
  """The alpha of ``alphas`` with the lowest mean squared error over ``folds`` contiguous folds
  of a fixed-seed permutation of the training rows (the test split is never read)."""
  n = len(y)
  order = np.random.default_rng(0).permutation(n)
  parts = np.array_split(order, max(2, min(folds, n)))
  errors = np.zeros(len(alphas))
  for held in parts:
    keep = np.setdiff1d(order, held)
    for i, alpha in enumerate(alphas):
      w, b = _ridge_fit(x[keep], y[keep], alpha)
      errors[i] += np.sum((x[held] @ w + b - y[held]) ** 2)
  return float(alphas[int(np.argmin(errors))])


def ridge_probe(train, test, *, alpha: float | None = None) -> dict[str, float]:
  """Ridge regression ``min ||X w + b - y||^2 + alpha ||w||^2`` on standardised features.

  Features are standardised with the training mean and std (constant dimensions stay 0); the
  bias is not penalised. Solved in closed form in float64. ``alpha=None`` (the evaluator's
  default, ``eval.ridge_alpha <= 0``) picks it from :data:`RIDGE_ALPHAS` by 5-fold
  cross-validation on the training split: a wide frozen representation (hundreds of dimensions
  for a few hundred rows) overfits badly at a fixed small alpha. Returns ``r2``, ``rmse`` and the
  ``alpha`` used.
  """
  _check(train, test, "regression probe")
  x, xt = _standardised(train, test)
  y = np.asarray(train["label"], np.float64)
  if alpha is None:
    alpha = choose_ridge_alpha(x, y)
  w, b = _ridge_fit(x, y, float(alpha))
  return {**regression_metrics(test["label"], xt @ w + b), "alpha": float(alpha)}


def raw_features(batch: dict[str, np.ndarray], cardinalities=()) -> np.ndarray:
  """``x_num`` beside the one-hot codes of ``x_cat`` (reserved code 0 included), float32 [N, F]."""
  parts = [np.asarray(batch["x_num"], np.float32)] if "x_num" in batch else []
  if "x_cat" in batch:
    codes = np.asarray(batch["x_cat"])
    for j, c in enumerate(cardinalities):
      parts.append(np.eye(int(c), dtype=np.float32)[codes[:, j]])
  return np.concatenate(parts, axis=1)


def gbdt_baseline(train, test, *, task: str, seed: int = 0) -> dict[str, float]:
  """HistGradientBoosting on ``representation`` (the raw features): ``top1`` or ``r2``/``rmse``."""
  from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

  if task == "regression":
    _check(train, test, "gbdt baseline")
    model = HistGradientBoostingRegressor(random_state=seed)
    model.fit(train["representation"], train["label"])
    return regression_metrics(test["label"], model.predict(test["representation"]))
  if task != "classification":
    raise ValueError(f"task={task!r}: choose 'classification' or 'regression'")
  for split, part in (("train", train), ("test", test)):
    if len(part["label"]) == 0:
      raise DataError(f"gbdt baseline: the {split} split has no examples")
  model = HistGradientBoostingClassifier(random_state=seed)
  model.fit(train["representation"], train["label"])
  return {"top1": float(np.mean(model.predict(test["representation"]) == test["label"]))}
