r"""Self-training with confidence-thresholded pseudo-labels (online, FixMatch-style).

Variants (the argument after the colon; combine with commas):

* default — digits demo with 10% of the labels, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/self_training.py --workdir=/tmp/self_training

  Width-8 ResNet-18 (CIFAR stem) plus a linear classifier on the shipped 8x8 digits at 16 px,
  ``input.label_fraction=0.1`` (144 of the 1437 training images keep their label), 80 epochs of
  batch 256, SGD momentum 0.9 lr 0.1 (cosine) wd 5e-4, threshold 0.95, lambda_u 1. Weak view:
  mild crop only; strong view: the digits SSL view (crop, colour jitter, grayscale). Its
  ``classifier_top1`` (results.json) is the number to compare with the ``baseline`` variant; no
  published number exists for this data.

* ``baseline`` — the labelled-only baseline: ``self_training.unlabelled_weight=0`` (same labelled
  subset, steps, optimiser and weak view; the strong view is not computed)::

    python main.py --config=experiments/self_training.py:baseline --workdir=/tmp/st_base

* ``data=cifar10`` — FixMatch's CIFAR-10 setting with 4000 labels (``label_fraction=0.08``)::

    python main.py --config=experiments/self_training.py:data=cifar10 --workdir=/tmp/st_c10 \
        --config.input.data.download=True

  Batch 512 (FixMatch: 64 labelled + 448 unlabelled; here one mixed batch), 2^20 steps, SGD
  momentum 0.9 lr 0.03 with cosine decay, wd 5e-4, tau 0.95, lambda_u 1; ResNet-18 CIFAR stem
  instead of WRN-28-2, plain (not Nesterov) momentum, the crop/jitter/grayscale/solarise strong
  view instead of RandAugment + Cutout, and no EMA model for evaluation. Published (FixMatch with
  RandAugment, Sohn et al. 2020, table 2): 95.74% CIFAR-10 accuracy with 4000 labels, 94.93%
  with 250 labels (``--config.input.label_fraction=0.005``); expect less with these deviations.

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments import common


def semi_supervised_config(arg, method: str, **extra_args
                           ) -> tuple[mlc.ConfigDict, mlc.ConfigDict]:
  """The settings self-training and FST share: data, labels, weak/strong views, optimiser.

  ``extra_args`` are the caller's own variant arguments with their defaults.

  Returns:
    ``(config, parsed_arg)``; the caller adds its method's keys and then calls
    :func:`finish`.
  """
  arg = common.parse_arg(arg, data="digits", baseline=False, runlocal=False, **extra_args)
  common.check_data(arg, choices=("digits", "cifar10"))
  c = common.base_config()
  c.method = method
  size = common.set_data(c, arg.data)
  del c["projector"]  # A classifier: the backbone plus a linear layer, no projector.
  base = dict(mean=c.input.mean, std=c.input.std)
  if arg.data == "digits":
    c.input.label_fraction = 0.1
    # Weak: a mild crop only (digits are not mirror-symmetric); strong: the SSL digits view.
    weak = common.view(size, crop_scale=(0.8, 1.0), flip_prob=0.0, jitter_prob=0.0,
                       grayscale_prob=0.0, **base)
    strong = common.view(size, **common.DIGITS_VIEW, **base)
    c.optim = common.sgd(lr=0.1, weight_decay=5e-4, momentum=0.9)
  else:
    c.input.label_fraction = 0.08  # 4000 of CIFAR-10's 50000 training labels.
    c.input.batch_size = 512
    c.total_steps = 2**20
    c.log_every_steps, c.checkpoint_every_steps = 500, 10_000
    c.eval.rankme_every_steps = 50_000
    # FixMatch's weak view is flip + translate by up to 12.5%; a mild resized crop stands in.
    weak = common.view(size, crop_scale=(0.75, 1.0), flip_prob=0.5, jitter_prob=0.0,
                       grayscale_prob=0.0, **base)
    strong = common.view(size, crop_scale=(0.2, 1.0), solarize_prob=0.2, **base)
    c.optim = common.sgd(lr=0.03, weight_decay=5e-4, momentum=0.9)
  c.input.views = mlc.ConfigDict(dict(weak=weak, strong=strong))
  return c, arg


def finish(c: mlc.ConfigDict, arg) -> mlc.ConfigDict:
  if arg.runlocal:
    common.runlocal(c)
  return c


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the self-training config for the variant in ``arg`` (see the module docstring)."""
  c, arg = semi_supervised_config(arg, "self_training")
  c.self_training = mlc.ConfigDict(dict(threshold=0.95, unlabelled_weight=1.0))
  if arg.baseline:
    c.self_training.unlabelled_weight = 0.0
  return finish(c, arg)
