"""The papers' evaluation protocols on a backbone: linear evaluation with augmentation, fine-tuning.

``eval.protocols.<name>`` holds each protocol's settings (:func:`default_config`);
``python -m ssljax.evaluate --protocol=<name>`` runs it on a checkpoint or an exported backbone.

* ``linear`` — solo-learn's linear evaluation (``scripts/linear/*/*.yaml``: SGD, batch 256, lr
  0.1, momentum 0.9, no weight decay, 100 epochs, the LR divided by 10 at epochs 60 and 80): a
  linear classifier on the frozen backbone (BatchNorm in evaluation mode), trained on random
  resized crops (0.08, 1) + horizontal flips of the train split, tested on the centre crop.
* ``finetune`` — the whole network trained, MAE's ViT-B recipe by default (facebookresearch/mae
  FINETUNE.md: AdamW, base lr 5e-4 x batch / 256, weight decay 0.05, betas (0.9, 0.999), layer-wise
  LR decay 0.65 over the ViT's blocks, 5 warm-up epochs then cosine, label smoothing 0.1, 100
  epochs). Mixup, CutMix, random erasing and drop path of that recipe are not applied here.

Both return ``{"top1": test accuracy, "train_top1": accuracy on the last epoch's augmented
batches, "epochs", "steps", ...}``; the train split never reaches the test numbers.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from ssljax import data, sharding, writers
from ssljax.data.augment import ViewRecipe
from ssljax.errors import ConfigError

PROTOCOLS = ("probe", "linear", "finetune")


def default_config() -> mlc.ConfigDict:
  """``eval.protocols``: the settings of each protocol (module docstring for their sources)."""
  return mlc.ConfigDict(dict(
      linear=dict(epochs=100, batch_size=256, lr=0.1, momentum=0.9, weight_decay=0.0,
                  milestones=(60, 80), gamma=0.1, crop_scale=(0.08, 1.0), flip=True),
      finetune=dict(epochs=100, batch_size=256, lr=5e-4, lr_scaling="linear", weight_decay=0.05,
                    b1=0.9, b2=0.999, layer_decay=0.65, warmup_epochs=5.0, label_smoothing=0.1,
                    crop_scale=(0.08, 1.0), flip=True),
  ))


def layer_scales(params, layer_decay: float) -> Any:
  """Per-parameter LR factors of layer-wise decay (BEiT / MAE) for a ViT's ``params``.

  Layer 0 is the embedding (``patch_embed``, ``cls_token``, ``pos_embed``), layer ``i + 1`` is
  ``block<i>``, the last (``L + 1``) the final norm and the head; a parameter of layer ``l`` gets
  ``layer_decay ** (L + 1 - l)``. Parameters of other networks get 1.
  """
  blocks = [k for k in params.get("backbone", {}) if k.startswith("block")]
  depth = len(blocks)

  def scale(path, _):
    names = [getattr(p, "key", str(p)) for p in path]
    if names[0] != "backbone" or depth == 0:
      return 1.0
    name = names[1]
    if name.startswith("block"):
      layer = int(name[len("block"):]) + 1
    elif name in ("patch_embed", "cls_token", "pos_embed"):
      layer = 0
    else:
      layer = depth + 1
    return float(layer_decay) ** (depth + 1 - layer)

  return jax.tree_util.tree_map_with_path(scale, params)


def _linear_schedule(cfg, steps_per_epoch: int) -> optax.Schedule:
  boundaries = {int(m) * steps_per_epoch: float(cfg.gamma) for m in cfg.milestones}
  return optax.piecewise_constant_schedule(float(cfg.lr), boundaries)


def _finetune_schedule(cfg, steps_per_epoch: int, total: int, batch_size: int) -> optax.Schedule:
  lr = float(cfg.lr) * (batch_size / 256 if cfg.lr_scaling == "linear" else 1.0)
  warmup = int(round(float(cfg.warmup_epochs) * steps_per_epoch))
  return optax.warmup_cosine_decay_schedule(0.0, lr, max(1, warmup), max(total, warmup + 1), 0.0)


def train_classifier(protocol: str, cfg, *, module, variables, image_cfg, data_cfg, info, mesh,
                     seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Trains a linear head (``linear``) or head + backbone (``finetune``) on the probe data.

  Args:
    protocol: ``'linear'`` or ``'finetune'``.
    cfg: ``eval.protocols.<protocol>``.
    module, variables: the backbone (``module.apply(variables, x, train=...)`` -> [B, F]).
    image_cfg: ``config.input`` (``image_size``, ``mean``, ``std``, ``eval_crop_fraction``).
    data_cfg, info: the probe data (labels on) and its DatasetInfo.
    mesh: the device mesh (batches are split over its data axis).
  """
  from ssljax.evals.evaluator import eval_input_fn

  if protocol not in ("linear", "finetune"):
    raise ConfigError(f"--protocol={protocol!r}: choose one of {PROTOCOLS}")
  if info.modality != "image":
    raise ConfigError(f"--protocol={protocol} trains on image crops; {info.name!r} holds "
                      f"{info.modality} data (use --protocol=probe)")
  if info.task != "classification" or info.num_classes < 2:
    raise ConfigError(f"--protocol={protocol} needs class labels; {info.name!r} has none here "
                      "(set eval.data to labelled data)")
  log = log or (lambda text: writers.info(text, enabled=jax.process_index() == 0))
  batch_size = int(cfg.batch_size)
  shards = math.lcm(sharding.data_axis_size(mesh), jax.process_count())
  batch_size = max(shards, batch_size // shards * shards)
  steps_per_epoch = max(1, info.num_train // batch_size)
  total = max(1, int(round(float(cfg.epochs) * steps_per_epoch)))
  size = int(image_cfg.image_size)
  view = ViewRecipe(size=size, crop_scale=tuple(cfg.crop_scale), flip_prob=0.5 if cfg.flip else 0.0,
                    jitter_prob=0.0, grayscale_prob=0.0, mean=tuple(image_cfg.mean),
                    std=tuple(image_cfg.std))
  num_classes = int(info.num_classes)
  finetune = protocol == "finetune"
  collections = {k: v for k, v in variables.items() if k != "params"}
  features = jax.eval_shape(lambda v, x: module.apply(v, x, train=False), variables,
                            jnp.zeros((1, size, size, 3), jnp.float32)).shape[-1]
  head = {"kernel": jnp.zeros((features, num_classes), jnp.float32),
          "bias": jnp.zeros((num_classes,), jnp.float32)}
  params = {"head": head, **({"backbone": variables["params"]} if finetune else {})}
  if finetune:
    schedule = _finetune_schedule(cfg, steps_per_epoch, total, batch_size)
    scales = layer_scales(params, float(cfg.layer_decay))
    if float(cfg.layer_decay) != 1.0 and all(s == 1.0 for s in jax.tree.leaves(scales)):
      log(f"note: eval.protocols.finetune.layer_decay={float(cfg.layer_decay):g} applies to ViT "
          "blocks; this backbone has none, so every layer trains at the same LR")
    # Scaling AdamW's whole update (Adam step + decoupled decay, both times lr) by a parameter's
    # factor is that parameter's learning rate times the factor.
    tx = optax.chain(optax.adamw(schedule, b1=float(cfg.b1), b2=float(cfg.b2),
                                 weight_decay=float(cfg.weight_decay)),
                     _scale_tree(scales))
    smoothing = float(cfg.label_smoothing)
  else:
    schedule = _linear_schedule(cfg, steps_per_epoch)
    tx = optax.chain(optax.add_decayed_weights(float(cfg.weight_decay)),
                     optax.sgd(schedule, momentum=float(cfg.momentum)))
    smoothing = 0.0
  opt_state = tx.init(params)
  frozen = variables

  def loss_fn(params, collections, x, labels, rng):
    if finetune:
      h, new = module.apply({"params": params["backbone"], **collections}, x, train=True,
                            mutable=list(collections), rngs={"dropout": rng})
    else:
      h, new = jax.lax.stop_gradient(module.apply(frozen, x, train=False)), collections
    logits = h.astype(jnp.float32) @ params["head"]["kernel"] + params["head"]["bias"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
    return loss, (new, jnp.mean(jnp.argmax(logits, -1) == labels))

  def step(params, opt_state, collections, batch, rng):
    view_rng, drop_rng = jax.random.split(rng)
    x = view(view_rng, batch)
    (loss, (collections, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, collections, x, batch["label"], drop_rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, collections, loss, acc

  replicated = sharding.replicated(mesh)
  step = jax.jit(step, donate_argnums=(0, 1))
  params, opt_state, collections = jax.device_put((params, opt_state, collections), replicated)
  frozen = jax.device_put(frozen, replicated)
  train_cfg = data_cfg.copy_and_resolve_references()
  iterator = data.make_train_iterator(train_cfg, global_batch_size=batch_size, seed=seed)
  log(f"{protocol}: {total} steps ({float(cfg.epochs):g} epochs of {steps_per_epoch} x batch "
      f"{batch_size}) on {info.name!r} {data_cfg.train_split}")
  progress = writers.Progress(total, enabled=jax.process_index() == 0)
  rng = jax.random.key(seed)
  t0 = time.perf_counter()
  correct = []
  log_every = max(1, total // 20)
  for i in range(total):
    batch = sharding.global_batch(next(iterator), mesh)
    params, opt_state, collections, loss, acc = step(params, opt_state, collections, batch,
                                                     jax.random.fold_in(rng, i))
    if i >= total - steps_per_epoch:
      correct.append(acc)
    if (i + 1) % log_every == 0 or i + 1 == total:
      progress.line(i + 1, {"loss": float(loss), "train_top1": float(acc),
                            "learning_rate": float(schedule(i))})
  train_time = time.perf_counter() - t0
  trained = ({"params": params["backbone"], **collections} if finetune else frozen)
  top1 = _test_top1(module, trained, params["head"], image_cfg, data_cfg, info, mesh,
                    eval_input_fn, batch_size)
  return {"protocol": protocol, "top1": top1,
          "train_top1": float(np.mean(jax.device_get(correct))) if correct else float("nan"),
          "epochs": float(cfg.epochs), "steps": total, "batch_size": batch_size,
          "train_time_s": round(train_time, 2)}


def _scale_tree(scales):
  """``optax`` transform multiplying each update by its factor in ``scales``."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * s, updates, scales), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _test_top1(module, variables, head, image_cfg, data_cfg, info, mesh, eval_input_fn,
               batch_size) -> float:
  """Top-1 of backbone + head on the probe data's test split (centre crops, no augmentation)."""
  config = mlc.ConfigDict({"input": image_cfg})
  to_input = eval_input_fn(config, info)

  @jax.jit
  def predict(variables, head, batch):
    h = module.apply(variables, to_input(batch), train=False).astype(jnp.float32)
    return jnp.argmax(h @ head["kernel"] + head["bias"], -1)

  hits = count = 0
  local = batch_size // jax.process_count()
  for batch in data.iterate_eval(data_cfg, data_cfg.eval_split, batch_size=local):
    keep = np.asarray(batch["mask"], bool)
    labels = np.asarray(batch["label"])
    pred = np.asarray(jax.device_get(predict(variables, head, sharding.global_batch(batch,
                                                                                    mesh))))
    hits += int(np.sum((pred == labels)[keep]))
    count += int(keep.sum())
  return hits / max(1, count)
