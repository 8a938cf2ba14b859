"""Weighted kNN against a brute-force numpy implementation of the vote."""

import numpy as np
import pytest

from ssljax.errors import ConfigError
from ssljax.evals import knn_predict, knn_top1


def _brute_force(train, labels, test, *, num_classes, k, temperature):
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  test = test / np.linalg.norm(test, axis=1, keepdims=True)
  preds = []
  for row in test:
    sims = train @ row
    order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]
    votes = np.zeros(num_classes)
    for i in order:
      votes[labels[i]] += np.exp(sims[i] / temperature)
    preds.append(int(np.argmax(votes)))
  return np.array(preds)


def test_matches_brute_force_weighted_vote():
  rng = np.random.default_rng(0)
  # Two overlapping classes, so the weights (not just the majority) decide many points.
  train = np.concatenate([rng.normal(0.0, 1.0, (15, 4)), rng.normal(0.7, 1.0, (15, 4))])
  labels = np.repeat([0, 1], 15)
  test = rng.normal(0.35, 1.0, (23, 4))
  for k, temperature in [(5, 0.07), (9, 0.5), (1, 0.1)]:
    expected = _brute_force(train, labels, test, num_classes=2, k=k, temperature=temperature)
    got = knn_predict(train, labels, test, num_classes=2, k=k, temperature=temperature,
                      batch_size=8)  # 23 rows: chunks of 8 with a padded last chunk
    np.testing.assert_array_equal(got, expected)


def test_weights_beat_majority():
  # Three far neighbours of class 0 against one exact match of class 1: with a low temperature the
  # exp(sim / T) weight of the match wins, a plain majority vote would not.
  train = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.6, 0.8]])
  labels = np.array([1, 0, 0, 0])
  test = np.array([[1.0, 0.0]])
  assert int(knn_predict(train, labels, test, num_classes=2, k=4, temperature=0.05)[0]) == 1
  assert int(knn_predict(train, labels, test, num_classes=2, k=4, temperature=100.0)[0]) == 0


def test_separable_clusters_give_perfect_accuracy():
  rng = np.random.default_rng(1)
  centers = np.eye(5, 16) * 10
  y_train, y_test = rng.integers(0, 5, 200), rng.integers(0, 5, 50)
  x_train = centers[y_train] + rng.normal(size=(200, 16))
  x_test = centers[y_test] + rng.normal(size=(50, 16))
  assert knn_top1(x_train, y_train, x_test, y_test, num_classes=5, k=20) == 1.0


def test_k_larger_than_train_set_is_clamped():
  rng = np.random.default_rng(2)
  train, labels = rng.normal(size=(6, 3)), np.array([0, 1, 2, 0, 1, 2])
  test = rng.normal(size=(10, 3))
  clamped = knn_predict(train, labels, test, num_classes=3, k=100)
  np.testing.assert_array_equal(clamped, knn_predict(train, labels, test, num_classes=3, k=6))
  np.testing.assert_array_equal(
    clamped, _brute_force(train, labels, test, num_classes=3, k=6, temperature=0.07)
  )


def test_class_ties_go_to_the_lower_class():
  train = np.array([[1.0, 0.0], [1.0, 0.0]])
  for labels in ([0, 1], [1, 0]):
    pred = knn_predict(train, np.array(labels), np.array([[1.0, 0.0]]), num_classes=2, k=2)
    assert int(pred[0]) == 0


@pytest.mark.parametrize("kwargs, word", [(dict(k=0), "k="), (dict(temperature=0.0), "temperature"),
                                          (dict(num_classes=0), "num_classes")])
def test_bad_arguments(kwargs, word):
  args = dict(num_classes=2) | kwargs
  with pytest.raises(ConfigError, match=word):
    knn_predict(np.ones((2, 2)), np.array([0, 1]), np.ones((1, 2)), **args)
