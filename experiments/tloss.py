r"""T-Loss (Franceschi, Dieuleveut & Jaggi, NeurIPS 2019): a causal CNN trained with a triplet loss
on time-based windows.

Variants (the argument after the colon; combine with commas):

* default — ``ucr:GunPoint`` (50 training / 150 test series of 150 timestamps, 2 classes; ships
  inside aeon, so offline)::

    python main.py --config=experiments/tloss.py --workdir=/tmp/tloss

* ``data=<name>`` — any UCR/UEA set (``ucr:ArrowHead``, ``ucr:ItalyPowerDemand``,
  ``uea:BasicMotions``, ``uea:JapaneseVowels``, ...; the others download with
  ``--config.input.data.download=True``), or your own ``ts`` / ``npz`` file with
  ``--config.input.data.path=...``. Sets of varying lengths (``uea:JapaneseVowels``) draw each
  series' windows within its own length, as the official ``TripletLossVaryingLength``.
* ``steps=<n>`` — the run length (optimisation steps; the official ``nb_steps`` is 2000).
* ``runlocal`` — a few steps of a narrow, shallow encoder (tests, laptops).

The recipe is the official code's UCR ``default_hyperparameters.json``: a causal CNN of 10 blocks
of 40 channels (kernel 3, dilation 2^i) and one of 160, max-pooled over time, Linear to 320;
batch 10, K = 10 negatives per example (from the other series of the batch; the official code
takes them from the whole training set), negative penalty 1 (the K negative terms averaged),
windows from length 1 up; Adam at lr 1e-3 with no weight decay and no schedule, 2000 steps.
Evaluation: the max over time of the whole series' causal-CNN features, then the Linear, an RBF
SVM with C chosen by 5-fold CV on the training split (``svm_top1``), plus kNN and the linear probe.

Published (T-Loss, K = 10, the paper's full UCR table in its appendix; an SVM on the
representations): GunPoint 0.980. ssljax, this default (one run, seed 0, 2-core CPU shared with
other jobs): SVM 0.980 (the untrained encoder's: 0.980, already at the published number on
GunPoint), kNN (k=5) 0.973 (untrained 0.907), linear probe 0.967 (untrained 0.980), RankMe 19.0
(untrained 3.5). The 2000 steps took 22.5 minutes there (1348 s; the encoder runs on every window
padded to the series' 150 timestamps, where the official code crops). ``steps=200`` (146 s)
gives the same SVM 0.980, kNN 0.973, linear 0.967.
"""

import ml_collections as mlc

from experiments import common


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the T-Loss config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="ucr:GunPoint", steps=2000, runlocal=False)
  c = common.base_config()
  c.method = "tloss"
  common.set_series_data(c, arg.data)
  c.total_steps = int(arg.steps)
  c.input.batch_size = 10
  c.encoder = common.encoder(dict(name="causal_cnn", channels=40, depth=10, reduced_size=160,
                                  width=320, kernel=3))
  c.tloss = mlc.ConfigDict(dict(num_negatives=10, negative_penalty=1.0, min_length=1))
  # torch.optim.Adam(lr=1e-3): no weight decay, no schedule.
  c.optim = common.adamw(lr=1e-3, weight_decay=0.0, warmup_epochs=0.0, min_lr_ratio=1.0)
  if arg.runlocal:
    common.runlocal(c)
  return c
