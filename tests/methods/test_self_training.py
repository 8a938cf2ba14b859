"""Self-training: the offline selection round (survey oracle) and the online FixMatch-style loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_setup import setup

from ssljax import methods
from ssljax.errors import ConfigError
from ssljax.methods import _common
from ssljax.methods import self_training as st


def _probs(n=64, c=5, seed=0):
  logits = np.random.default_rng(seed).normal(size=(n, c)) * 3.0
  return np.asarray(jax.nn.softmax(jnp.asarray(logits)))


# --------------------------------------------------------------- offline selection round


def test_threshold_above_one_selects_nothing_and_zero_selects_the_whole_pool():
  probs = _probs()
  labelled = np.arange(64) < 10
  labels = np.where(labelled, 1, -1)
  s, y, sel = st.selection_round(probs, labelled, labels, threshold=1.0 + 1e-6)
  assert not np.any(sel)
  np.testing.assert_array_equal(s, labelled)  # Nothing moved: h_0-equivalent training.
  np.testing.assert_array_equal(y, labels)
  s, y, sel = st.selection_round(probs, labelled, labels, threshold=0.0)
  np.testing.assert_array_equal(sel, ~labelled)  # All of X_U labelled in round 0.
  assert np.all(s)
  np.testing.assert_array_equal(y[~labelled], np.argmax(probs, -1)[~labelled])


@pytest.mark.parametrize("confidence", ["max", "margin"])
def test_selected_set_size_is_non_increasing_in_the_threshold(confidence):
  probs = _probs(n=200)
  pool = np.arange(200) % 3 != 0
  sizes = [int(np.sum(st.select_pseudo_labels(probs, pool, threshold=t,
                                              confidence=confidence)[0]))
           for t in np.linspace(0.0, 1.01, 41)]
  assert sizes[0] == pool.sum() and sizes[-1] == 0
  assert all(a >= b for a, b in zip(sizes[:-1], sizes[1:], strict=True)), sizes


def test_rounds_keep_sets_disjoint_union_constant_and_labels_of_s():
  probs = _probs(n=100)
  labelled = np.arange(100) < 7
  labels = np.where(labelled, np.arange(100) % 5, -1)
  for threshold in (0.99, 0.9, 0.7, 0.5):
    new_s, new_y, sel = st.selection_round(probs, labelled, labels, threshold=threshold)
    new_s, new_y, sel = np.asarray(new_s), np.asarray(new_y), np.asarray(sel)
    pool = ~new_s
    assert not np.any(new_s & pool) and np.all(new_s | pool)  # Disjoint, union = everything.
    assert not np.any(sel & labelled)  # Only X_U examples are selected.
    np.testing.assert_array_equal(new_s, labelled | sel)
    np.testing.assert_array_equal(new_y[labelled], labels[labelled])  # S keeps its labels.
    assert np.all(new_y[pool] == -1) and np.all(new_y[new_s] >= 0)
    labelled, labels = new_s, new_y
  # Selection is deterministic: the same inputs give the same round.
  a = st.selection_round(probs, labelled, labels, threshold=0.3)
  b = st.selection_round(probs, labelled, labels, threshold=0.3)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_margin_confidence_is_top1_minus_top2():
  probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
  sel, pseudo = st.select_pseudo_labels(probs, np.ones(2, bool), threshold=0.1,
                                        confidence="margin")
  np.testing.assert_array_equal(sel, [True, False])  # Margins 0.2 and 0.05.
  np.testing.assert_array_equal(pseudo, [0, 0])


def _fit_logreg(x, y, steps=300, lr=0.5):
  """Binary logistic regression by gradient descent (numpy, the textbook formula)."""
  w, b = np.zeros(x.shape[1]), 0.0
  for _ in range(steps):
    p = 1 / (1 + np.exp(-(x @ w + b)))
    w -= lr * x.T @ (p - y) / len(y)
    b -= lr * np.mean(p - y)
  return w, b


def test_two_blobs_self_training_does_not_lose_accuracy():
  """Survey oracle: 2 well-separated blobs, 4 labels, logistic regression, 3 rounds."""
  rng = np.random.default_rng(0)
  y_true = np.repeat([0, 1], 100)
  x = rng.normal(size=(200, 2)) + np.where(y_true[:, None] == 1, 3.0, -3.0) * np.array([1.0, 0.3])
  labelled = np.zeros(200, bool)
  labelled[[0, 1, 100, 101]] = True
  labels = np.where(labelled, y_true, -1)

  def train_and_probs(s, lab):
    w, b = _fit_logreg(x[s], lab[s].astype(float))
    p1 = 1 / (1 + np.exp(-(x @ w + b)))
    return np.stack([1 - p1, p1], -1)

  probs = train_and_probs(labelled, labels)
  acc0 = np.mean(np.argmax(probs, -1) == y_true)
  for _ in range(3):
    labelled, labels, sel = map(np.asarray, st.selection_round(probs, labelled, labels,
                                                               threshold=0.9))
    if not sel.any():
      break
    probs = train_and_probs(labelled, labels)
  acc = np.mean(np.argmax(probs, -1) == y_true)
  assert labelled.sum() > 4 and acc >= acc0 and acc > 0.95


# ---------------------------------------------------------------------- online losses


def test_masked_cross_entropy_ignores_hidden_labels():
  logits = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
  labels = np.array([2, -1, 0, -1, -1, 3])
  seen = labels >= 0
  # Reference: log-softmax CE averaged over the visible rows only.
  logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  ref = -np.mean(logp[seen, labels[seen]])
  np.testing.assert_allclose(float(st.masked_cross_entropy(logits, labels)), ref, rtol=1e-5)
  changed = logits.copy()
  changed[~seen] += 10.0  # Hidden rows do not matter.
  np.testing.assert_allclose(float(st.masked_cross_entropy(changed, labels)), ref, rtol=1e-5)
  assert float(st.masked_cross_entropy(logits, np.full(6, -1))) == 0.0


def test_pseudo_label_loss_by_hand():
  student = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]], np.float32)
  q = np.array([[0.1, 0.9, 0.0], [0.5, 0.3, 0.2], [0.0, 0.02, 0.98]], np.float32)
  loss, mask = st.pseudo_label_loss(student, q, threshold=0.9)
  np.testing.assert_array_equal(mask, [1.0, 0.0, 1.0])  # max q >= 0.9 (0.9 itself counts).
  logp = student - np.log(np.sum(np.exp(student), -1, keepdims=True))
  ref = (-logp[0, 1] - logp[2, 2]) / 3  # Mean over the whole batch, masked rows count 0.
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  # No gradient into the teacher probabilities.
  g = jax.grad(lambda q: st.pseudo_label_loss(student, q, threshold=0.0)[0])(q)
  np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------- method

_BASE = {}


def _setup(**overrides):
  """``(config, method, params, state, views)``: one init per session, the method rebuilt."""
  if not _BASE:
    config, _, params, state, views = setup("self_training")
    _BASE.update(config=config, params=params, state=state, views=views)
  config = _BASE["config"].copy_and_resolve_references()
  for key, value in overrides.items():
    config.self_training[key] = value
  method = methods.make(config, total_steps=100, steps_per_epoch=10)
  return config, method, _BASE["params"], _BASE["state"], _BASE["views"]



def test_loss_matches_the_formula_on_the_network_outputs():
  config, method, params, state, views = _setup(threshold=0.2)
  labels = jnp.asarray(np.where(np.arange(16) % 3 == 0, np.arange(16) % 10, -1), jnp.int32)
  loss, (_, metrics, rep) = jax.jit(
      lambda p, s, v: method.loss(p, s, v, jax.random.key(0), labels=labels))(params, state, views)
  # Reference: the same network on [weak; strong] in training mode, then FixMatch's formula.
  net = st.classifier_net(config, 10)
  weak, strong = views
  (h, logits), _ = jax.jit(lambda p, s, x: _common.apply_train(net, p, s, x))(
      params["net"], state["net"], jnp.concatenate([weak, strong]))
  lw, ls = np.asarray(logits[:16]), np.asarray(logits[16:])
  seen = np.asarray(labels) >= 0
  sup = optax.softmax_cross_entropy_with_integer_labels(lw[seen], np.asarray(labels)[seen]).mean()
  q = jax.nn.softmax(lw)
  mask = np.max(q, -1) >= 0.2
  unsup = np.sum(mask * optax.softmax_cross_entropy_with_integer_labels(ls, np.argmax(q, -1))) / 16
  np.testing.assert_allclose(float(loss), sup + unsup, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["mask_rate"]), mask.mean(), rtol=1e-6)
  np.testing.assert_allclose(rep, h[:16], rtol=1e-5, atol=1e-6)


def test_hidden_labels_give_no_supervised_loss_and_baseline_ignores_unlabelled():
  _, method, params, state, views = setup("self_training", arg="runlocal,baseline")
  hidden = jnp.full((16,), -1, jnp.int32)
  loss, (_, metrics, _) = method.loss(params, state, views, jax.random.key(0), labels=hidden)
  assert float(loss) == 0.0 and float(metrics["supervised_loss"]) == 0.0
  grads = jax.grad(lambda p: method.loss(p, state, views, jax.random.key(0), labels=hidden)[0])(
      params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_represent_returns_logits():
  _, method, params, state, views = _setup()
  out = jax.jit(method.represent)(params, state, views[0])
  assert out["logits"].shape == (16, 10)


@pytest.mark.parametrize("key,value", [("threshold", 1.5), ("threshold", -0.1),
                                       ("unlabelled_weight", -1.0)])
def test_bad_values_name_the_key(key, value):
  with pytest.raises(ConfigError, match=f"self_training.{key}"):
    _setup(**{key: value})
