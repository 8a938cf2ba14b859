"""SLA (Lee, Hwang, Shin, ICML 2020): self-supervised label augmentation.

Instead of a separate head for a self-supervised task (rotation prediction), one classifier is
trained over the *joint* label space class x transformation: every image of the batch is expanded
to all M transforms ``t_0 = identity, ..., t_{M-1}`` and the transformed copy ``t_m(x)`` of an
image of class ``y`` gets the joint label ``j(y, m) = y * M + m`` (class-major, as the official
code). At test time the predictions are

* SI (single inference): softmax over the N joint logits with m = 0 of ``t_0(x)``;
* AG (aggregated inference): ``z_agg[y] = (1/M) sum_m z(t_m(x))[j(y, m)]`` (logits, then softmax);
* SD (self-distillation): a second N-way head on the backbone features of ``t_0(x)``, trained with
  ``CE(sigma, y) + T^2 KL(softmax(sg(z_agg) / T) || softmax(sigma / T))`` (one pass at test time).

Layout: the M copies of an image are contiguous (sample-major), so the joint logits [B * M, N * M]
reshape to [B, M (transform of the input), N, M (transform of the label)]; SI is ``[:, 0, :, 0]``
and AG the mean of the diagonal ``[:, m, :, m]``.

Examples whose label is hidden (-1, ``input.label_fraction`` < 1) contribute nothing to the loss:
every term is a mean over the visible examples only (they still pass through BatchNorm).

Config keys read (see ``experiments/sla.py``): ``encoder.*`` (also ``'cresnet<6n+2>'``, the CIFAR
ResNet of He et al. 2016 with three stages of n basic blocks, e.g. the paper's ``'cresnet32'``),
``input.views.view`` and ``sla.*``:

* ``transforms``: one of :data:`TRANSFORMS` (``'rotation'``: M = 4; ``'none'``: M = 1, plain CE).
  Colour permutations are no-ops on greyscale images (digits): their part of the label is then
  unlearnable.
* ``self_distill``: add the SD head and its loss terms (SLA+SD).
* ``inference``: what ``represent`` returns as ``logits``: ``'sd'``, ``'ag'`` or ``'si'``.
* ``temperature``: T of the distillation term.
* ``large_loss``: multiply the joint CE by M (the official ``--with-large-loss`` for ImageNet).
* ``eval_aggregated``: ``represent`` also returns ``logits_ag`` (M forward passes).
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError
from ssljax.methods import Method, _common, identity_update
from ssljax.models.heads import dense_kernel_init
from ssljax.models.resnet import ResNet

VIEW_NAMES = ("view",)
INFERENCES = ("sd", "ag", "si")

_ID = (0, 1, 2)
_PERM6 = tuple(itertools.permutations(range(3)))  # Identity first, the official order.
_PERM3 = (_ID, (1, 2, 0), (2, 0, 1))  # Identity and the two cyclic permutations.
# name -> ((k quarter turns, channel permutation), ...); the position m of a transform in its
# tuple is its part of the joint label, so the order follows the official augmentations.py.
TRANSFORMS: dict[str, tuple[tuple[int, tuple[int, int, int]], ...]] = {
    "none": ((0, _ID),),
    "rotation": tuple((k, _ID) for k in range(4)),
    "rotation2": ((0, _ID), (2, _ID)),
    "color_perm": tuple((0, p) for p in _PERM6),
    "color_perm3": tuple((0, p) for p in _PERM3),
    "rot_color_perm6": tuple((k, p) for k in (0, 2) for p in _PERM3),
    "rot_color_perm12": tuple((k, p) for k in range(4) for p in _PERM3),
    "rot_color_perm24": tuple((k, p) for k in range(4) for p in _PERM6),
}


# ----------------------------------------------------------------------------- the pure math


def transform_list(name, *, key: str = "sla.transforms"):
  """The ``(k, permutation)`` list of the named transform set, or a ConfigError naming ``key``."""
  if not isinstance(name, str) or name not in TRANSFORMS:
    raise ConfigError(f"{key}={name!r} is not a known transform set; choose one of "
                      f"{sorted(TRANSFORMS)}")
  return TRANSFORMS[name]


def apply_transforms(x_bhwc: jax.Array, transforms) -> jax.Array:
  """All transforms of every image, sample-major.

  Args:
    x_bhwc: images [B, H, W, C] with H == W when a transform rotates (C == 3 for permutations).
    transforms: ``((k, permutation), ...)`` of length M, e.g. ``TRANSFORMS['rotation']``.

  Returns:
    [B * M, H, W, C]; row ``b * M + m`` is ``t_m(x_b)``: ``rot90`` by ``k`` quarter turns in the
    (H, W) plane, then the channels reordered by the permutation.
  """
  copies = []
  for k, perm in transforms:
    t = jnp.rot90(x_bhwc, k, axes=(1, 2)) if k % 4 else x_bhwc
    copies.append(t[..., jnp.asarray(perm)] if tuple(perm) != _ID else t)
  stacked = jnp.stack(copies, axis=1)  # [B, M, H, W, C]: the M copies of an image contiguous.
  return stacked.reshape((-1,) + stacked.shape[2:])


def joint_labels(labels_b: jax.Array, num_transforms: int) -> jax.Array:
  """``j(y, m) = y * M + m`` for every image and transform, sample-major: int32 [B * M].

  Hidden labels (< 0) stay -1 for all their transforms.
  """
  m = jnp.arange(num_transforms, dtype=jnp.int32)
  y = jnp.asarray(labels_b, jnp.int32)[:, None]
  return jnp.where(y >= 0, y * num_transforms + m, -1).reshape(-1)


def _split_joint(joint_logits: jax.Array, num_transforms: int) -> jax.Array:
  """[B * M, N * M] -> [B, M (input transform), N, M (label transform)]."""
  bm, nm = joint_logits.shape
  m = num_transforms
  return joint_logits.reshape(bm // m, m, nm // m, m)


def single_logits(joint_logits: jax.Array, *, num_transforms: int) -> jax.Array:
  """SI: the logits of ``j(y, 0)`` on the identity copy, [B * M, N * M] -> [B, N]."""
  return _split_joint(joint_logits, num_transforms)[:, 0, :, 0]


def aggregated_logits(joint_logits: jax.Array, *, num_transforms: int) -> jax.Array:
  """AG: ``z_agg[b, y] = (1/M) sum_m z(t_m(x_b))[j(y, m)]``, [B * M, N * M] -> [B, N]."""
  z = _split_joint(joint_logits, num_transforms)
  return jnp.mean(jnp.diagonal(z, axis1=1, axis2=3), axis=-1)  # diagonal -> [B, N, M].


def _visible_weights(labels_b: jax.Array) -> jax.Array:
  """1 / (number of visible labels) for each visible example, 0 for hidden ones: float32 [B]."""
  seen = (labels_b >= 0).astype(jnp.float32)
  return seen / jnp.maximum(seen.sum(), 1.0)


def _masked_ce(logits_bk: jax.Array, labels_b: jax.Array, weights_b: jax.Array) -> jax.Array:
  """``sum_b w_b CE(logits_b, y_b)``; hidden rows read label 0, with weight 0 (no gradient)."""
  log_p = jax.nn.log_softmax(logits_bk.astype(jnp.float32), axis=-1)
  safe = jnp.maximum(labels_b, 0)
  nll = -jnp.take_along_axis(log_p, safe[:, None], axis=-1)[:, 0]
  return jnp.sum(weights_b * nll)


def sla_loss(joint_logits: jax.Array, labels_b: jax.Array, *, num_transforms: int,
             large_loss: bool = False) -> jax.Array:
  """``L_SLA = mean over visible i and all m of CE(z(t_m(x_i)), j(y_i, m))``.

  Args:
    joint_logits: [B * M, N * M], sample-major (row ``b * M + m`` is ``z(t_m(x_b))``).
    labels_b: int [B] class ids, < 0 where hidden.
    num_transforms: M.
    large_loss: multiply by M (sum over transforms; official setting for large data sets).

  Returns:
    Scalar; 0 when no label is visible.
  """
  m = num_transforms
  weights = jnp.repeat(_visible_weights(labels_b), m) / m
  loss = _masked_ce(joint_logits, joint_labels(labels_b, m), weights)
  return loss * m if large_loss else loss


def distillation_kl(sd_logits_bn: jax.Array, target_logits_bn: jax.Array, labels_b: jax.Array,
                    *, temperature: float = 1.0) -> jax.Array:
  """``T^2 KL(softmax(sg(target) / T) || softmax(sd / T))``, averaged over the visible examples.

  Args:
    sd_logits_bn: the SD head's logits [B, N] (gets the gradient).
    target_logits_bn: the aggregated logits [B, N] (gradient stopped here).
    labels_b: int [B]; only examples with a label >= 0 count (``batchmean`` over them).
    temperature: T.

  Returns:
    Scalar >= 0.
  """
  t = temperature
  target = jax.lax.stop_gradient(target_logits_bn).astype(jnp.float32) / t
  log_q = jax.nn.log_softmax(sd_logits_bn.astype(jnp.float32) / t, axis=-1)
  log_p = jax.nn.log_softmax(target, axis=-1)
  kl_b = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
  return t * t * jnp.sum(_visible_weights(labels_b) * kl_b)


def single_ce(logits_bn: jax.Array, labels_b: jax.Array) -> jax.Array:
  """Cross-entropy averaged over the visible examples (label >= 0): the SD head's CE term."""
  return _masked_ce(logits_bn, labels_b, _visible_weights(labels_b))


def visible_top1(logits_bn: jax.Array, labels_b: jax.Array) -> jax.Array:
  """Top-1 accuracy over the visible examples (0 when none is visible)."""
  return jnp.sum(_visible_weights(labels_b) * (jnp.argmax(logits_bn, -1) == labels_b))


# -------------------------------------------------------------------------------- the network


class SLANet(nn.Module):
  """Backbone + joint head (N * M logits) + optional SD head (N logits).

  Returns ``(h [B, F], joint logits [B, N * M], sd logits [B, N] or None)``.
  """

  encoder: nn.Module
  num_classes: int
  num_transforms: int
  self_distill: bool

  @nn.compact
  def __call__(self, x_bhwc: jax.Array, *, train: bool):
    h = self.encoder(x_bhwc, train=train)
    dense = dict(kernel_init=dense_kernel_init)  # PyTorch nn.Linear init, as the official heads.
    z = nn.Dense(self.num_classes * self.num_transforms, name="joint", **dense)(h)
    sd = nn.Dense(self.num_classes, name="sd", **dense)(h) if self.self_distill else None
    return h, z.astype(jnp.float32), None if sd is None else sd.astype(jnp.float32)


def make_backbone(config) -> nn.Module:
  """``encoder.name = 'cresnet<6n+2>'`` (CIFAR ResNet, width 16 standard) or any shared one."""
  name = str(config.encoder.name)
  if not name.startswith("cresnet"):
    return _common.make_backbone(config)[0]
  depth = name[len("cresnet"):]
  if not depth.isdigit() or int(depth) < 8 or (int(depth) - 2) % 6:
    raise ConfigError(f"encoder.name={name!r}: a CIFAR ResNet's depth must be 6n + 2 "
                      "(cresnet20, cresnet32, cresnet56, ...)")
  n = (int(depth) - 2) // 6
  # He et al. 2016 section 4.2: 3x3 stem, three stages of n basic blocks at 16/32/64 channels.
  return ResNet(stage_sizes=(n, n, n), block="basic", width=int(config.encoder.get("width", 16)),
                stem="cifar", zero_init_residual=config.encoder.get("zero_init_residual", False),
                cpu_kernels=_common.cpu_kernels(config))


# ------------------------------------------------------------------------------------- make


def _check_bool(value, key: str) -> bool:
  if not isinstance(value, bool):
    raise ConfigError(f"{key}={value!r} must be True or False")
  return value


def make(config, *, total_steps: int, steps_per_epoch: int, num_classes: int = 10) -> Method:
  """Builds SLA (SLA+SD when ``sla.self_distill``) for a data set with ``num_classes`` classes."""
  del total_steps, steps_per_epoch
  cfg = config.sla
  transforms = transform_list(cfg.transforms)
  m = len(transforms)
  self_distill = _check_bool(cfg.self_distill, "sla.self_distill")
  large_loss = _check_bool(cfg.large_loss, "sla.large_loss")
  eval_aggregated = _check_bool(cfg.eval_aggregated, "sla.eval_aggregated")
  temperature = _common.check_positive(cfg.temperature, "sla.temperature")
  inference = cfg.inference
  if inference not in INFERENCES:
    raise ConfigError(f"sla.inference={inference!r} is unknown; choose one of {INFERENCES}")
  if inference == "sd" and not self_distill:
    raise ConfigError("sla.inference='sd' needs sla.self_distill=True (the SD head); "
                      "or set sla.inference='ag' / 'si'")
  if int(num_classes) < 1:
    raise ConfigError(f"num_classes={num_classes} must be >= 1")
  views = _common.view_recipes(config, VIEW_NAMES)
  net = SLANet(encoder=make_backbone(config), num_classes=int(num_classes), num_transforms=m,
               self_distill=self_distill)

  def init(rng, images_bhwc):
    return _common.init_variables(net, rng, images_bhwc)

  def loss(params, method_state, views, rng, *, labels):
    del rng  # The transforms are deterministic; the view's augmentation is the trainer's.
    labels = jnp.asarray(labels, jnp.int32)
    x = apply_transforms(views[0], transforms)  # BatchNorm sees all B * M copies (official).
    (h, z, sd), state = _common.apply_train(net, params, method_state, x)
    joint = sla_loss(z, labels, num_transforms=m, large_loss=large_loss)
    agg = aggregated_logits(z, num_transforms=m)
    single = single_logits(z, num_transforms=m)
    metrics = {"sla_joint_loss": joint, "train_si_top1": visible_top1(single, labels),
               "train_ag_top1": visible_top1(agg, labels)}
    total = joint
    if self_distill:
      sd = sd.reshape(-1, m, sd.shape[-1])[:, 0]  # The SD head sees the identity copy only.
      ce = single_ce(sd, labels)
      kl = distillation_kl(sd, agg, labels, temperature=temperature)
      total = joint + ce + kl
      metrics.update(sd_ce=ce, sd_kl=kl, train_sd_top1=visible_top1(sd, labels))
    rep = h.reshape(-1, m, h.shape[-1])[:, 0]
    return total, (state, metrics, rep)

  def represent(params, method_state, images_bhwc):
    h, z, sd = _common.apply_eval(net, params, method_state, images_bhwc)
    # One pass on the untransformed images: with m = 0 only, SI is every M-th joint logit.
    out = {"representation": h, "embedding": z, "logits_si": z[:, ::m]}
    if self_distill:
      out["logits_sd"] = sd
    if eval_aggregated or inference == "ag":
      x = apply_transforms(images_bhwc, transforms)
      _, z_all, _ = _common.apply_eval(net, params, method_state, x)
      out["logits_ag"] = aggregated_logits(z_all, num_transforms=m)
    out["logits"] = out[f"logits_{inference}"]
    return _common.as_float32(out)

  return Method(name="sla", views=views, init=init, loss=loss, update=identity_update,
                represent=represent, uses_labels=True, backbone=_common.submodule_backbone(net))
