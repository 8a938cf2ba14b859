"""Weighted k-nearest-neighbour classification of frozen features (InstDisc / DINO protocol).

Each test feature votes with its ``k`` most cosine-similar training features; a neighbour with
similarity ``s`` adds ``exp(s / temperature)`` to its label's score, and the top score wins.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.errors import ConfigError


def _l2_normalize(x_nd: jnp.ndarray) -> jnp.ndarray:
  # An all-zero feature stays zero (similarity 0 to everything) instead of becoming NaN.
  norm = jnp.linalg.norm(x_nd, axis=-1, keepdims=True)
  return x_nd / jnp.maximum(norm, 1e-12)


@functools.partial(jax.jit, static_argnames=("num_classes", "k"))
def _predict_chunk(train_nd, train_labels_n, test_bd, *, num_classes, k, temperature):
  """Predicts labels for one chunk of (already normalised) test features; shape [B]."""
  sims_bn = test_bd @ train_nd.T
  # lax.top_k orders equal similarities by index, so tied neighbours are picked deterministically.
  top_sims_bk, top_idx_bk = jax.lax.top_k(sims_bn, k)
  weights_bk = jnp.exp(top_sims_bk / temperature)
  onehot_bkc = jax.nn.one_hot(train_labels_n[top_idx_bk], num_classes, dtype=weights_bk.dtype)
  votes_bc = jnp.einsum("bk,bkc->bc", weights_bk, onehot_bkc)
  # argmax returns the first maximum: tied votes go to the smallest class index.
  return jnp.argmax(votes_bc, axis=-1)


def _check(train_feats, train_labels, test_feats, *, num_classes, k, temperature, batch_size):
  if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
    raise ValueError(
      f"kNN needs [N, D] train and [M, D] test features; got {train_feats.shape} and "
      f"{test_feats.shape}"
    )
  if train_labels.shape != (train_feats.shape[0],):
    raise ValueError(f"train_labels shape {train_labels.shape} != ({train_feats.shape[0]},)")
  if train_feats.shape[0] == 0:
    raise ValueError("kNN needs at least one training feature")
  for key, value in (("num_classes", num_classes), ("k", k), ("batch_size", batch_size)):
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise ConfigError(f"kNN {key}={value!r} must be a positive integer; fix the kNN eval config")
  if not temperature > 0:
    raise ConfigError(f"kNN temperature={temperature!r} must be > 0 (0.07 is standard)")


def knn_predict(
  train_feats: jnp.ndarray,
  train_labels: jnp.ndarray,
  test_feats: jnp.ndarray,
  *,
  num_classes: int,
  k: int = 20,
  temperature: float = 0.07,
  batch_size: int = 1024,
) -> jnp.ndarray:
  """Weighted kNN predictions with cosine similarity.

  Args:
    train_feats: features of the labelled set, shape [N, D] (normalised here).
    train_labels: integer labels in [0, num_classes), shape [N].
    test_feats: features to classify, shape [M, D].
    num_classes: number of classes C.
    k: neighbours per test point; clamped to N when larger (every training point votes).
    temperature: vote weight is ``exp(similarity / temperature)``.
    batch_size: test rows per jitted chunk; the [batch_size, N] similarity block is the memory
      peak.

  Returns:
    Predicted labels, int32, shape [M]. Ties between neighbours go to the lower training index,
    ties between classes to the lower class index.
  """
  train_feats, test_feats = jnp.asarray(train_feats), jnp.asarray(test_feats)
  train_labels = jnp.asarray(train_labels)
  _check(
    train_feats, train_labels, test_feats,
    num_classes=num_classes, k=k, temperature=temperature, batch_size=batch_size,
  )
  num_train, num_test = train_feats.shape[0], test_feats.shape[0]
  if num_test == 0:
    return jnp.zeros([0], jnp.int32)
  k = min(int(k), num_train)
  train_nd = _l2_normalize(train_feats.astype(jnp.float32))
  test_md = _l2_normalize(test_feats.astype(jnp.float32))
  chunk = min(int(batch_size), num_test)
  # Pad to whole chunks so every call has one shape and jit compiles once.
  pad = -num_test % chunk
  test_md = jnp.pad(test_md, ((0, pad), (0, 0)))
  preds = [
    _predict_chunk(
      train_nd, train_labels.astype(jnp.int32), test_md[start : start + chunk],
      num_classes=int(num_classes), k=k, temperature=float(temperature),
    )
    for start in range(0, num_test + pad, chunk)
  ]
  return jnp.concatenate(preds)[:num_test].astype(jnp.int32)


def knn_top1(
  train_feats: jnp.ndarray,
  train_labels: jnp.ndarray,
  test_feats: jnp.ndarray,
  test_labels: jnp.ndarray,
  *,
  num_classes: int,
  k: int = 20,
  temperature: float = 0.07,
  batch_size: int = 1024,
) -> float:
  """Top-1 accuracy in [0, 1] of :func:`knn_predict` on ``test_labels`` (shape [M], M >= 1)."""
  num_test = np.shape(test_feats)[0]
  if np.shape(test_labels) != (num_test,) or num_test == 0:
    raise ValueError(f"test_labels shape {np.shape(test_labels)} must be ({num_test},) with M >= 1")
  preds = knn_predict(
    train_feats, train_labels, test_feats,
    num_classes=num_classes, k=k, temperature=temperature, batch_size=batch_size,
  )
  return float(np.mean(np.asarray(preds) == np.asarray(test_labels)))
