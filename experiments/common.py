"""Shared pieces of experiment configs: argument parsing, defaults, view recipes, presets.

An experiment file defines ``get_config(arg=None)``; the argument selects a variant, e.g.
``experiments/barlow.py:data=cifar10,runlocal``. Every field of the returned (locked) config can be
overridden on the command line (``--config.total_steps=20``); a misspelt key is an error.
"""

from __future__ import annotations

import ml_collections as mlc

from ssljax.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)
# scikit-learn digits (bright strokes on a dark 8x8 grid): mean/std of all its pixels / 255.
DIGITS_MEAN = (0.30, 0.30, 0.30)
DIGITS_STD = (0.37, 0.37, 0.37)


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """Parses ``'data=cifar10,runlocal'`` into a ConfigDict typed by ``defaults``.

  A bare word sets a boolean to True. A key not in ``defaults`` is an error naming the choices.
  """
  result = mlc.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; choose from {sorted(defaults)}")
    default = defaults[key]
    if not _:
      value = "True" if isinstance(default, bool) else ""
    if isinstance(default, bool):
      parsed = value.strip().lower() in ("1", "true", "yes", "")
    elif isinstance(default, int):
      parsed = int(value)
    elif isinstance(default, float):
      parsed = float(value)
    else:
      parsed = value.strip()
    result[key] = parsed
  return result


def view(size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, **overrides) -> mlc.ConfigDict:
  """One view recipe (the fields of ``ssljax.data.augment.ViewRecipe``), BYOL/Barlow defaults."""
  recipe = dict(
      size=size, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
      jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
      grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0), solarize_prob=0.0,
      mean=tuple(mean), std=tuple(std),
  )
  unknown = set(overrides) - set(recipe)
  if unknown:
    raise ConfigError(f"view recipe has no field(s) {sorted(unknown)}; fields are {sorted(recipe)}")
  recipe.update(overrides)
  return mlc.ConfigDict(recipe)


def base_config() -> mlc.ConfigDict:
  """Fields every experiment has (method-specific ones are added by the experiment file)."""
  c = mlc.ConfigDict()
  c.method = ""
  c.seed = 0
  c.total_steps = -1  # When > 0 it wins over total_epochs.
  c.total_epochs = 100.0
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  # Device mesh and parameter sharding (DESIGN.md, "Sharding").
  c.mesh = (("data", -1),)
  c.sharding_rules = ((".*", "replicate"),)
  # Multi-process runs (main.py calls jax.distributed.initialize when num_processes > 1).
  c.distributed = mlc.ConfigDict(dict(coordinator_address="", num_processes=1, process_id=-1))

  c.input = mlc.ConfigDict()
  c.input.batch_size = 256  # Global, over all devices and processes.
  c.input.image_size = 32  # Evaluation resolution (each view has its own size).
  # Evaluation images larger than image_size: shorter side to image_size / this, centre crop.
  c.input.eval_crop_fraction = 1.0
  c.input.mean = IMAGENET_MEAN
  c.input.std = IMAGENET_STD
  c.input.data = mlc.ConfigDict(dict(
      name="digits", data_dir=mlc.FieldReference(None, field_type=str),
      path=mlc.FieldReference(None, field_type=str), image_size=64, download=False,
      train_split="train", eval_split="test"))
  c.input.views = mlc.ConfigDict()

  c.encoder = mlc.ConfigDict(dict(name="resnet18", stem="cifar", width=64,
                                  zero_init_residual=False))
  c.projector = mlc.ConfigDict(dict(hidden_dims=(2048, 2048), out_dim=2048, use_bias=True))
  c.optim = lars(lr=0.3)

  c.eval = mlc.ConfigDict(dict(
      every_steps=0,  # 0: evaluate only at the end.
      batch_size=256,
      linear=True, linear_epochs=100, linear_batch_size=256, linear_lr=0.1,
      linear_weight_decay=0.0,
      knn=True, knn_k=(20, 200), knn_temperature=0.07,
      rankme_every_steps=0, rankme_samples=25_600,
      max_train_samples=-1,  # Cap on train-split features for the probes (-1 = all).
      online_probe=False,
  ))
  return c


def lars(*, lr: float, weight_decay: float = 1e-4, eta: float = 0.02, clip_lr: bool = True,
         lr_scaling: str = "none", warmup_epochs: float = 10.0, min_lr_ratio: float = 0.0,
         bias_bn_lr_scale: float = 1.0) -> mlc.ConfigDict:
  """LARS preset (solo-learn's CIFAR defaults unless overridden)."""
  return mlc.ConfigDict(dict(
      name="lars", lr=lr, lr_scaling=lr_scaling, base_batch_size=256, weight_decay=weight_decay,
      momentum=0.9, eta=eta, clip_lr=clip_lr, exclude_bias_bn=True,
      bias_bn_lr_scale=bias_bn_lr_scale, warmup_epochs=warmup_epochs, warmup_steps=-1,
      min_lr_ratio=min_lr_ratio, b1=0.9, b2=0.999))


def runlocal(c: mlc.ConfigDict) -> mlc.ConfigDict:
  """Shrinks any experiment to a few steps of a tiny model (tests, laptops)."""
  c.total_steps = 6
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.input.batch_size = 16
  c.encoder.width = 4
  c.projector.hidden_dims = (32,)
  c.projector.out_dim = 32
  c.optim.warmup_epochs = 0.0
  c.optim.warmup_steps = 2
  c.eval.batch_size = 64
  c.eval.linear_epochs = 5
  c.eval.knn_k = (5, 20)
  c.eval.rankme_samples = 512
  c.eval.max_train_samples = 512
  return c
