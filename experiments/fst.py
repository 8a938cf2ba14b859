r"""FST, "Learning from Future" (Du et al., NeurIPS 2022): mean teacher with look-ahead (FST-D).

Variants (the argument after the colon; combine with commas):

* default — digits demo with 10% of the labels, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/fst.py --workdir=/tmp/fst

  Width-8 ResNet-18 (CIFAR stem) plus a linear classifier on the shipped 8x8 digits at 16 px,
  ``input.label_fraction=0.1`` (144 of 1437 training labels), 80 epochs of batch 256, SGD
  momentum 0.9 lr 0.1 (cosine) wd 5e-4. FST-D with K=1 look-ahead step (the paper uses 3; each
  step costs K+1 student passes, so the CPU demo keeps one), virtual plain-SGD lr 0.1, teacher
  EMA alpha 0.99 (a short run; the FST configs' 0.999 suits 40k iterations), threshold 0.95,
  lambda_u 1. Student: strong view (crop, colour jitter, grayscale); teacher: weak view (mild
  crop). Compare its ``classifier_top1`` with the ``baseline`` variant and with ``lookahead=0``
  (the plain mean teacher); no published number exists for this data.

* ``baseline`` — labelled-only: ``fst.unlabelled_weight=0`` and no look-ahead (same labelled
  subset, steps, optimiser and strong view)::

    python main.py --config=experiments/fst.py:baseline --workdir=/tmp/fst_base

* ``lookahead=K`` — K look-ahead steps (0: plain mean teacher)::

    python main.py --config=experiments/fst.py:lookahead=0 --workdir=/tmp/fst_mt

* ``data=cifar10`` — semi-supervised CIFAR-10 with 4000 labels (``label_fraction=0.08``)::

    python main.py --config=experiments/fst.py:data=cifar10 --workdir=/tmp/fst_c10 \
        --config.input.data.download=True

  FST's published numbers are segmentation mIoU (UDA GTA->Cityscapes 69.56 with MiT-B5;
  semi-supervised VOC 2012 1/16 labels 73.88 with DeepLabV3+, official README); it reports no
  image-classification result. This variant transfers FST-D to FixMatch's CIFAR-10 setting
  (batch 512, 2^20 steps, SGD momentum 0.9 lr 0.03 cosine, wd 5e-4, tau 0.95, lambda_u 1,
  ResNet-18 CIFAR stem) with the FST configs' K=3 and EMA alpha 0.999, virtual lr 0.03: no
  published number; compare with ``experiments/self_training.py:data=cifar10`` (FixMatch:
  95.74% with 4000 labels).

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments.self_training import finish, semi_supervised_config


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the FST config for the variant in ``arg`` (see the module docstring)."""
  c, arg = semi_supervised_config(arg, "fst", lookahead=-1)
  if arg.data == "digits":
    fst = dict(lookahead_steps=1, virtual_lr=0.1, ema_alpha=0.99)
  else:
    fst = dict(lookahead_steps=3, virtual_lr=0.03, ema_alpha=0.999)
  c.fst = mlc.ConfigDict(dict(**fst, threshold=0.95, unlabelled_weight=1.0))
  if arg.lookahead >= 0:
    c.fst.lookahead_steps = arg.lookahead
  if arg.baseline:
    c.fst.unlabelled_weight = 0.0
    c.fst.lookahead_steps = 0
  return finish(c, arg)
