r"""HaLP: hallucinated latent positives (Shah et al., CVPR 2023) on a MoCo v3 base.

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/halp.py --workdir=/tmp/halp

  The MoCo v3 digits recipe (width-8 ResNet-18, 16 px, 80 epochs of batch 256, projector and
  predictor 512 -> 128, temperature 0.2, momentum 0.99 -> 1, LARS lr 0.3) plus HaLP with the
  paper's defaults: 20 prototypes from spherical k-means over the last 256 keys, refreshed every
  10 steps, 100 positives per key, lambda 0.8, mu 2. As the paper (HaLP resumes a plain MoCo
  run at epoch 200 of 451) HaLP starts halfway, at epoch 40. No published number exists for
  this data.

* ``data=cifar10`` (or ``data=cifar100``) — MoCo v3's solo-learn CIFAR recipe plus HaLP::

    python main.py --config=experiments/halp.py:data=cifar10 --workdir=/tmp/halp_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, batch 256, 1000 epochs, LARS lr 0.3, projector/predictor 4096 -> 256,
  temperature 0.2, HaLP from epoch 450 with the paper's settings. HaLP is a skeleton-action
  method: the paper reports no image numbers (its single-modality NTU-60 x-sub linear top-1 is
  about 79.7%, with a BiGRU on skeletons, which this library does not ship). The reference point
  is therefore MoCo v3 itself: 93.10% CIFAR-10 / 68.83% CIFAR-100 linear top-1 (solo-learn).

* ``runlocal`` — shrinks any variant to a few steps of a tiny model; HaLP starts at step 2, its
  first prototype refresh (4 prototypes over a 32-key bank, every 2 steps), so its code runs.
"""

import ml_collections as mlc

from experiments import common

DATASETS = ("digits", "cifar10", "cifar100")


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the HaLP config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False)
  common.check_data(arg, choices=DATASETS)
  c = common.base_config()
  c.method = "halp"
  size = common.set_data(c, arg.data)
  # Paper defaults (official options_pretraining.py / NTU scripts) where they carry over; the
  # MoCo v3 part follows experiments/mocov3.py.
  c.halp = mlc.ConfigDict(dict(
      temperature=0.2, base_momentum=0.99, final_momentum=1.0,
      mu=2.0, lambda_pos=0.8, num_positives=100, num_prototypes=20, skip_closest=1,
      num_candidates=20, update_every=10, bank_size=256, kmeans_iters=20,
      start_epoch=0.5 * c.total_epochs))
  common.two_views(c, size, view1=dict(solarize_prob=0.0), view2=dict(solarize_prob=0.2))
  if arg.data == "digits":
    c.projector = common.mlp((512,), 128, last_bn=True)
    c.predictor = common.mlp((512,), 128)
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, warmup_epochs=5.0)
  else:
    c.projector = common.mlp((4096,), 256, last_bn=True)
    c.predictor = common.mlp((4096,), 256)
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, warmup_epochs=10.0)
    c.halp.start_epoch = 450.0  # The paper's 200 / 451 share of the run, rounded.
  if arg.runlocal:
    common.runlocal(c)
    c.halp.update(dict(num_positives=4, num_prototypes=4, num_candidates=4, update_every=2,
                       bank_size=32, kmeans_iters=5, start_epoch=0.0))
  return c
