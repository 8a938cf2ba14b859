r"""Trust-SSL (Boulila et al., arXiv 2604.21349): SimCLR + trust-weighted alignment residual.

Variants (the argument after the colon; combine with commas):

* default — digits demo, offline, a few minutes on 2 CPU cores::

    python main.py --config=experiments/trust_ssl.py --workdir=/tmp/trust_ssl

  The SimCLR digits demo (width-8 ResNet-18, 16 px, 80 epochs of batch 256, projector
  512 -> 128, temperature 0.2, LARS lr 0.4) plus the Trust-SSL factor head (T = 6 factors of
  d = 32 from a 128-wide stem), the evidential gate (M = 64 prototypes) and the paper's schedules
  scaled from 200 to 80 epochs (lambda_sel 0 until epoch 40, ramp to 0.2 at epoch 60;
  lambda_min cosine 0.5 -> 0.05 over 80 epochs). Half of the second views are corrupted by haze,
  motion blur, rain or occlusion at a severity in [1, 5] (strengths defined on a 64-px canvas so
  they stay visible at 16 px). No published number exists for this data.

* ``data=cifar10`` (or ``data=cifar100``) — the paper's recipe on CIFAR::

    python main.py --config=experiments/trust_ssl.py:data=cifar10 --workdir=/tmp/trust_c10 \
        --config.input.data.download=True

  ResNet-18 CIFAR stem, 200 epochs of batch 512, LARS lr 0.3 (no batch scaling), momentum 0.9,
  wd 1e-6, 10 warm-up epochs, projector 2048 -> 2048 -> 256 with BatchNorm, temperature 0.1,
  T = 6, d = 128, M = 64, prior 0.05, a = 2, g = 3; lambda_sel 0 until epoch 100, ramp to 0.2 at
  150; lambda_min 0.5 -> 0.05. Views: crop scale (0.2, 1), flip, jitter (0.4, 0.4, 0.4, 0.1)
  p 0.8, grayscale 0.2, blur always. No CIFAR number is published; the paper's headline (ResNet-50,
  200 epochs on 210k aerial images) is a mean linear-probe top-1 of 90.20% over EuroSAT 97.11 /
  AID 88.63 / NWPU-RESISC45 84.86 (SimCLR 88.46 in the same protocol).

* ``gate=cosine`` — the cosine-gate ablation; ``scalar`` — the scalar-uncertainty ablation
  (T = 1 factor); ``clean`` — no corruptions (the official pretraining, no auxiliary head).

* ``runlocal`` — shrinks any variant to a few steps of a tiny model (tests, laptops); the residual
  is switched on from the first step so every term is exercised.
"""

import ml_collections as mlc

from experiments import common


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the Trust-SSL config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="digits", runlocal=False, gate="evidential", scalar=False,
                         clean=False)
  common.check_data(arg, choices=("digits", "cifar10", "cifar100"))
  c = common.base_config()
  c.method = "trust_ssl"
  size = common.set_data(c, arg.data)
  c.trust_ssl = mlc.ConfigDict(dict(
      temperature=0.1, num_factors=6, factor_dim=128, factor_hidden=512, gate=arg.gate,
      num_prototypes=64, prior=0.05, conflict_weight=2.0, ignorance_weight=3.0,
      ignorance_eps=0.1, cosine_tau=0.5,
      lambda_sel=0.2, sel_start_epoch=100.0, sel_end_epoch=150.0,
      lambda_min_start=0.5, lambda_min_end=0.05, lambda_min_epochs=200.0,
      corruptions=("haze", "motion_blur", "rain", "occlusion"), corruption_prob=0.5,
      severity=(1.0, 5.0), corruption_reference_size=64, aux_weight=0.5, aux_hidden=256))
  t = c.trust_ssl
  if arg.data == "digits":
    common.two_views(c, size)
    c.projector = common.mlp((512,), 128, hidden_bn=False)
    c.optim = common.lars(lr=0.4, weight_decay=1e-5, warmup_epochs=5.0)
    t.temperature = 0.2  # As the SimCLR digits demo, so the two compare like for like.
    t.factor_dim, t.factor_hidden, t.aux_hidden = 32, 128, 64
    scale = c.total_epochs / 200.0  # The paper's 200-epoch schedules, shrunk to this run.
    t.sel_start_epoch, t.sel_end_epoch = 100.0 * scale, 150.0 * scale
    t.lambda_min_epochs = c.total_epochs
  else:
    c.total_epochs = 200.0
    c.input.batch_size = 512
    common.two_views(c, size, crop_scale=(0.2, 1.0), brightness=0.4, contrast=0.4,
                     saturation=0.4, hue=0.1, blur_prob=1.0)
    c.projector = common.mlp((2048, 2048), 256)
    c.optim = common.lars(lr=0.3, weight_decay=1e-6, eta=0.001, clip_lr=False,
                          warmup_epochs=10.0)
  if arg.scalar:
    t.num_factors = 1
  if arg.clean:
    t.corruptions = ()
  if arg.runlocal:
    common.runlocal(c)
    t.factor_dim, t.factor_hidden, t.num_prototypes, t.aux_hidden = 8, 16, 8, 16
    t.sel_start_epoch = t.sel_end_epoch = 0.0
  return c
