"""Self-training with confidence-thresholded pseudo-labels (FixMatch-style, online).

Semi-supervised classification from a few labels (``input.label_fraction``). Each step the
network sees every image of the batch twice, a weakly and a strongly augmented view (one
BatchNorm batch over both, as FixMatch concatenates its inputs), and minimises::

  L = CE_labelled(f(weak(x)), y)
      + lambda_u * mean_b 1[max q_b >= tau] CE(f(strong(x_b)), argmax q_b)
  q = softmax(stop_gradient(f(weak(x))))

The "teacher" is the network itself (FixMatch's choice): ``q`` is its own weak-view prediction of
this step under stop-gradient, so no second network is kept. ``CE_labelled`` averages over the
examples whose label is visible (``labels >= 0``); the pseudo-label term averages over the whole
batch (masked examples count as zero, FixMatch's normalisation). Every image, labelled or not,
is in the unlabelled term, as FixMatch's unlabelled set is the whole training set.
``unlabelled_weight = 0`` is the labelled-only baseline (the strong view is then not computed).

Deviations from FixMatch, each on purpose: labelled and unlabelled examples share one mixed batch
drawn from the training set (the pipeline hides labels; FixMatch draws B labelled plus 7B
unlabelled images from separate loaders); the strong view is this project's crop / colour
jitter / grayscale / solarise recipe (no RandAugment or Cutout); no EMA of the weights for
evaluation (``represent`` uses the trained network).

The canonical *offline* loop of the self-training survey (train on S, label the confident part of
X_U, move it to S, retrain) is not a training step; its selection round is the pure function
:func:`selection_round` (with :func:`select_pseudo_labels`), usable around any classifier.

Config keys read (see ``experiments/self_training.py``): ``encoder.*``, the views
``input.views.strong`` / ``input.views.weak`` and ``self_training.threshold`` (tau, in [0, 1]),
``self_training.unlabelled_weight`` (lambda_u >= 0). The classifier is a linear layer on the
backbone with ``num_classes`` outputs (the data set's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ssljax import methods
from ssljax.errors import ConfigError
from ssljax.methods import Method, _common
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import MLP

# The weak view comes first: the representation returned for the online probe is of view 0, and
# the labelled-only baseline computes only that one.
VIEW_NAMES = ("weak", "strong")


# -------------------------------------------------------------------------------- losses


def masked_cross_entropy(logits_bc: jax.Array, labels_b: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over the examples whose label is visible (``labels_b >= 0``).

  Args:
    logits_bc: [B, C] logits.
    labels_b: int [B] class indices, -1 where the label is hidden.

  Returns:
    Scalar float32; 0 when no label in the batch is visible.
  """
  seen_b = (labels_b >= 0).astype(jnp.float32)
  ce_b = optax.softmax_cross_entropy_with_integer_labels(
      logits_bc.astype(jnp.float32), jnp.maximum(labels_b, 0))
  return jnp.sum(ce_b * seen_b) / jnp.maximum(jnp.sum(seen_b), 1.0)


def pseudo_label_loss(student_logits_bc: jax.Array, teacher_probs_bc: jax.Array, *,
                      threshold: float) -> tuple[jax.Array, jax.Array]:
  """FixMatch's unlabelled term: hard pseudo-labels where the teacher is confident.

  Args:
    student_logits_bc: [B, C] logits on the strong view.
    teacher_probs_bc: [B, C] teacher class probabilities on the weak view (gradients stopped
      here).
    threshold: confidence tau; an example counts when ``max_c q >= tau``.

  Returns:
    ``(loss, mask_b)``: ``mean_b mask_b * CE(student_b, argmax q_b)`` (scalar float32) and the
    float32 [B] mask.
  """
  q_bc = jax.lax.stop_gradient(teacher_probs_bc).astype(jnp.float32)
  mask_b = (jnp.max(q_bc, axis=-1) >= threshold).astype(jnp.float32)
  ce_b = optax.softmax_cross_entropy_with_integer_labels(
      student_logits_bc.astype(jnp.float32), jnp.argmax(q_bc, axis=-1))
  return jnp.mean(mask_b * ce_b), mask_b


def pseudo_label_metrics(teacher_probs_bc, mask_b, labels_b) -> dict[str, jax.Array]:
  """Share of confident examples, and pseudo-label accuracy on the visible labels."""
  seen_b = (labels_b >= 0).astype(jnp.float32)
  right_b = (jnp.argmax(teacher_probs_bc, -1) == labels_b).astype(jnp.float32)
  return {"mask_rate": jnp.mean(mask_b),
          "pseudo_label_top1": jnp.sum(right_b * seen_b) / jnp.maximum(jnp.sum(seen_b), 1.0)}


# ------------------------------------------------- offline selection round (canonical loop)


def select_pseudo_labels(probs_nc: jax.Array, pool_n: jax.Array, *, threshold: float,
                         confidence: str = "max") -> tuple[jax.Array, jax.Array]:
  """Which pool examples a self-training round labels, and with what (survey step 2a-b).

  Args:
    probs_nc: [N, C] class probabilities of the current classifier.
    pool_n: bool [N], True for the examples of the unlabelled pool X_U.
    threshold: select where the confidence is ``>= threshold``; above 1 nothing is selected
      (max-confidence), 0 selects the whole pool.
    confidence: ``'max'`` (``max_c p``) or ``'margin'`` (``p_(1) - p_(2)``).

  Returns:
    ``(selected_n, pseudo_n)``: bool [N] (a subset of ``pool_n``) and int32 [N] ``argmax p``.
  """
  probs_nc = jnp.asarray(probs_nc, jnp.float32)
  if confidence == "max":
    conf_n = jnp.max(probs_nc, axis=-1)
  elif confidence == "margin":
    top2 = jax.lax.top_k(probs_nc, 2)[0]
    conf_n = top2[:, 0] - top2[:, 1]
  else:
    raise ValueError(f"confidence={confidence!r} must be 'max' or 'margin'")
  selected_n = jnp.asarray(pool_n, bool) & (conf_n >= threshold)
  return selected_n, jnp.argmax(probs_nc, axis=-1).astype(jnp.int32)


def selection_round(probs_nc: jax.Array, labelled_n: jax.Array, labels_n: jax.Array, *,
                    threshold: float, confidence: str = "max"
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One round ``S <- S u P``, ``X_U <- X_U \\ P`` on index masks (hard pseudo-labels).

  The sets are masks over the N examples: S is ``labelled_n``, X_U its complement, so they stay
  disjoint and their union stays the whole set by construction.

  Args:
    probs_nc: [N, C] class probabilities of the classifier trained on S.
    labelled_n: bool [N], membership of S.
    labels_n: int [N] labels of S (ground truth or earlier pseudo-labels); ignored elsewhere.
    threshold: confidence threshold theta.
    confidence: ``'max'`` or ``'margin'`` (see :func:`select_pseudo_labels`).

  Returns:
    ``(labelled_n, labels_n, selected_n)`` after the round; labels of S are never overwritten,
    the newly selected ones get ``argmax p``, and the rest of X_U reads -1.
  """
  labelled_n = jnp.asarray(labelled_n, bool)
  selected_n, pseudo_n = select_pseudo_labels(probs_nc, ~labelled_n, threshold=threshold,
                                              confidence=confidence)
  labels_n = jnp.where(labelled_n, jnp.asarray(labels_n, jnp.int32),
                       jnp.where(selected_n, pseudo_n, -1))
  return labelled_n | selected_n, labels_n, selected_n


# ------------------------------------------------------------------- shared with fst.py


def classifier_net(config, num_classes: int) -> EncoderHead:
  """Backbone from ``config.encoder`` plus a linear classifier with ``num_classes`` outputs."""
  encoder, _ = _common.make_backbone(config)
  return EncoderHead(encoder=encoder,
                     head=MLP(hidden_dims=(), out_dim=int(num_classes), hidden_bn=False))


def check_threshold(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
    raise ConfigError(f"{key}={value!r} must be a number in [0, 1] (confidence threshold)")
  return float(value)




def check_views(views, names=VIEW_NAMES) -> None:
  sizes = {v.size for v in views}
  if len(sizes) != 1:
    raise ConfigError(f"input.views {list(names)} must share one size (got {sorted(sizes)}); "
                      "the same images go through one network")


def classifier_represent(net):
  """``represent`` for a classifier net: backbone features, and the logits twice."""

  def represent(params, method_state, images_bhwc):
    h, logits = _common.apply_eval(net, params["net"], method_state["net"], images_bhwc)
    return _common.as_float32({"representation": h, "embedding": logits, "logits": logits})

  return represent


def classifier_backbone(net):
  """The backbone of a classifier net (``params["net"]``, ``method_state["net"]``)."""
  return _common.submodule_backbone(net, _common.in_net)


# ------------------------------------------------------------------------------- method


def make(config, *, total_steps: int, steps_per_epoch: int, num_classes: int = 10) -> Method:
  """Builds online self-training (FixMatch-style) from an experiment config."""
  del total_steps, steps_per_epoch
  cfg = config.self_training
  threshold = check_threshold(cfg.threshold, "self_training.threshold")
  weight = _common.check_nonnegative(cfg.unlabelled_weight, "self_training.unlabelled_weight")
  views = _common.view_recipes(config, VIEW_NAMES)
  check_views(views)
  net = classifier_net(config, num_classes)

  def init(rng, images_bhwc):
    params, state = _common.init_variables(net, rng, images_bhwc)
    return {"net": params}, {"net": state}

  def loss(params, method_state, views, rng, labels=None):
    del rng
    weak, strong = views
    if labels is None:  # Called without labels (e.g. a label-free probe): all hidden.
      labels = jnp.full((weak.shape[0],), -1, jnp.int32)

    def fwd(state, x):
      return _common.apply_train(net, params["net"], state, x)

    if weight > 0:
      # One network call on [weak; strong]: BatchNorm statistics over both, as FixMatch.
      ((h_w, logits_w), (_, logits_s)), state = _common.forward_groups(
          fwd, [weak, strong], method_state["net"])
    else:  # Labelled-only baseline: the strong view would only feed a zero-weight term.
      (h_w, logits_w), state = fwd(method_state["net"], weak)
    sup = masked_cross_entropy(logits_w, labels)
    q = jax.nn.softmax(jax.lax.stop_gradient(logits_w).astype(jnp.float32))
    if weight > 0:
      unsup, mask = pseudo_label_loss(logits_s, q, threshold=threshold)
    else:
      unsup, mask = jnp.zeros(()), (jnp.max(q, -1) >= threshold).astype(jnp.float32)
    total = sup + weight * unsup
    metrics = {"supervised_loss": sup, "pseudo_label_loss": unsup,
               **pseudo_label_metrics(q, mask, labels)}
    return total, ({"net": state}, metrics, h_w)

  return Method(name="self_training", views=views, init=init, loss=loss,
                update=methods.identity_update, represent=classifier_represent(net),
                uses_labels=True, backbone=classifier_backbone(net))
