"""Linear probe on synthetic features."""

import numpy as np
import pytest

from ssljax.errors import ConfigError
from ssljax.evals import linear_probe

NUM_CLASSES, DIM = 4, 32


def _clusters(seed, n, *, spread=1.0):
  rng = np.random.default_rng(seed)
  centers = np.random.default_rng(100).normal(size=(NUM_CLASSES, DIM)) * 2.0
  y = rng.integers(0, NUM_CLASSES, n)
  # Large offset and scale: the probe's standardisation must cope with raw feature scales.
  return 50.0 + 30.0 * (centers[y] + spread * rng.normal(size=(n, DIM))), y


def _probe(x, y, xt, yt, seed=0):
  return linear_probe(x, y, xt, yt, num_classes=NUM_CLASSES, epochs=30, batch_size=64, seed=seed)


def test_separable_clusters():
  x, y = _clusters(0, 300)
  xt, yt = _clusters(1, 200)
  result = _probe(x, y, xt, yt)
  assert set(result) == {"top1", "train_top1"}
  assert result["top1"] > 0.95 and result["train_top1"] > 0.95


def test_random_labels_are_near_chance():
  rng = np.random.default_rng(3)
  x, xt = rng.normal(size=(300, DIM)), rng.normal(size=(200, DIM))
  y, yt = rng.integers(0, NUM_CLASSES, 300), rng.integers(0, NUM_CLASSES, 200)
  result = _probe(x, y, xt, yt)
  assert 0.1 < result["top1"] < 0.4  # chance is 0.25; 200 test points give std ~0.03
  assert result["train_top1"] > result["top1"]  # it can only fit the training noise


def test_deterministic_for_a_seed():
  x, y = _clusters(0, 300, spread=3.0)
  xt, yt = _clusters(1, 200, spread=3.0)
  assert _probe(x, y, xt, yt, seed=5) == _probe(x, y, xt, yt, seed=5)


def test_constant_feature_dimensions_are_harmless():
  x, y = _clusters(0, 300)
  xt, yt = _clusters(1, 200)
  x[:, :5], xt[:, :5] = 0.0, 0.0  # dead units: zero variance on the training set
  result = _probe(x, y, xt, yt)
  assert np.isfinite(result["top1"]) and result["top1"] > 0.95


@pytest.mark.parametrize("kwargs, word", [(dict(epochs=0), "epochs"), (dict(lr=0.0), "lr"),
                                          (dict(batch_size=0), "batch_size")])
def test_bad_arguments(kwargs, word):
  x = np.ones((4, 2))
  with pytest.raises(ConfigError, match=word):
    linear_probe(x, np.zeros(4, int), x, np.zeros(4, int), num_classes=2, **kwargs)
