"""The time-series evaluation protocol: an RBF-kernel SVM on frozen per-series representations.

As TS2Vec (Yue et al., AAAI 2022) and T-Loss (Franceschi et al., NeurIPS 2019) evaluate: one
representation per series, an ``SVC(kernel='rbf', gamma='scale')`` whose penalty ``C`` is chosen
by 5-fold cross-validation on the training split among ``10^-4, ..., 10^4`` and infinity; with
fewer than 5 training series per class, or fewer than 50 in all, no search: ``C`` = infinity (a
hard margin). Test accuracy on the official test split. Both papers fit the SVM on the
representations as they are (no standardisation).

The baselines beside it (``eval.baselines``): the same SVM on the raw, z-normalised series
flattened (``raw_svm_top1``), and the Euclidean 1-nearest-neighbour on the raw series
(``raw_1nn_top1``), the classic UCR baseline.
"""

from __future__ import annotations

import warnings

import numpy as np

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, np.inf)
MAX_TRAIN = 10_000  # Both papers subsample larger training sets before the search.


def svm_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              *, seed: int = 0) -> dict[str, float]:
  """``{"top1", "C"}``: the SVM protocol above, fitted on ``train_*`` and scored on ``test_*``."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.model_selection import GridSearchCV, StratifiedKFold
  from sklearn.svm import SVC

  train_x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
  test_x = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
  classes, counts = np.unique(train_y, return_counts=True)
  if len(train_y) > MAX_TRAIN:
    rows = np.random.default_rng(seed).choice(len(train_y), MAX_TRAIN, replace=False)
    train_x, train_y = train_x[rows], train_y[rows]
  if len(train_y) // len(classes) < 5 or len(train_y) < 50 or counts.min() < 5:
    model, c = SVC(C=np.inf, kernel="rbf", gamma="scale").fit(train_x, train_y), np.inf
  else:
    search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(C_GRID)},
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", ConvergenceWarning)
      search.fit(train_x, train_y)
    model, c = search.best_estimator_, float(search.best_params_["C"])
  return {"top1": float(np.mean(model.predict(test_x) == test_y)), "C": float(c)}


def one_nn_euclidean(train_x, train_y, test_x, test_y) -> float:
  """Accuracy of the 1-nearest neighbour by Euclidean distance on the flattened series."""
  a = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
  b = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
  d = (b * b).sum(1)[:, None] - 2.0 * b @ a.T + (a * a).sum(1)[None, :]
  return float(np.mean(np.asarray(train_y)[np.argmin(d, axis=1)] == test_y))


def evaluate(ev, state) -> dict[str, float]:
  """``eval.evals='svm'``: ``svm_top1`` (and ``svm_C``) on the representation; with
  ``eval.baselines``, ``raw_svm_top1`` and ``raw_1nn_top1`` on the raw series (computed once)."""
  train, test = ev.probe_splits(state)
  fit = svm_probe(train["representation"], train["label"], test["representation"], test["label"])
  results = {"svm_top1": fit["top1"], "svm_C": fit["C"]}
  if ev.baselines_on:
    if getattr(ev, "_svm_baselines", None) is None:
      raw = [part["series"] for part in (train, test)]
      base = svm_probe(raw[0], train["label"], raw[1], test["label"])
      ev._svm_baselines = {  # noqa: SLF001 - a cache on the evaluator of this run
          "raw_svm_top1": base["top1"],
          "raw_1nn_top1": one_nn_euclidean(raw[0], train["label"], raw[1], test["label"])}
    results.update(ev._svm_baselines)  # noqa: SLF001
  return results
