r"""TS2Vec (Yue et al., AAAI 2022): hierarchical contrastive learning over overlapping crops.

Variants (the argument after the colon; combine with commas):

* default — ``ucr:GunPoint`` (50 training / 150 test series of 150 timestamps, 2 classes; ships
  inside aeon, so offline)::

    python main.py --config=experiments/ts2vec.py --workdir=/tmp/ts2vec

* ``data=<name>`` — any UCR/UEA set (``ucr:ArrowHead``, ``ucr:ItalyPowerDemand``,
  ``uea:BasicMotions``, ``uea:JapaneseVowels``, ...; the others download with
  ``--config.input.data.download=True``), or your own ``ts`` / ``npz`` file with
  ``--config.input.data.path=...``.
* ``steps=<n>`` — the run length. Without it, the official default: 200 iterations for a training
  split of at most 100,000 values (N x T x C) and 600 above (``common.ts2vec_iterations``).
* ``runlocal`` — a few steps of a narrow, shallow encoder (tests, laptops).

The recipe is the official code's (``ts2vec.py`` / ``train.py`` defaults): encoder input projection
to 64 channels, 10 residual blocks of two dilated convolutions (kernel 3, dilation 2^i) plus one
to the 320-dimensional output, timestamp masking p = 0.5, representation dropout 0.1; AdamW
(PyTorch's default weight decay 0.01) at lr 1e-3, batch 8; alpha 0.5, temporal unit 0; the
evaluated encoder is the uniform average of the weights over all steps (SWA). Evaluation: the max
over time of the whole series' representation, an RBF SVM with C chosen by 5-fold CV on the
training split (``svm_top1``), plus kNN and the linear probe.

Measured (``python -m ssljax.tools.compare --methods=ts2vec --seeds=0,1,2 --data=...`` at commit
5a13993, 2-core CPU; the README's time-series table): GunPoint SVM 98.0% on every seed (untrained
encoder 97.6%, kNN 80.4 -> 88.4%), 82 s per run; ArrowHead 80.8%, ItalyPowerDemand 94.6%,
BasicMotions 97.5%, JapaneseVowels 98.6%. Target: T-Loss's published SVM accuracies on the same
protocol (Franceschi et al. 2019, K=10): GunPoint 98.0%, ArrowHead 76.6%, ItalyPowerDemand 95.4%,
BasicMotions 100%, JapaneseVowels 98.4-98.9%.
"""

import ml_collections as mlc

from experiments import common


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the TS2Vec config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="ucr:GunPoint", steps=0, runlocal=False)
  c = common.base_config()
  c.method = "ts2vec"
  common.set_series_data(c, arg.data)
  c.total_steps = int(arg.steps) or common.ts2vec_iterations(c.input.data)
  c.input.batch_size = 8
  c.encoder = common.encoder(dict(name="ts2vec", hidden=64, width=320, depth=10, kernel=3,
                                  repr_dropout=0.1, mask_prob=0.5))
  # max_train_length: the official train.py's --max-train-length default.
  c.ts2vec = mlc.ConfigDict(dict(alpha=0.5, temporal_unit=0, swa=True,
                                 max_train_length=mlc.FieldReference(3000, field_type=int)))
  # torch.optim.AdamW(lr=1e-3): weight decay 0.01, no schedule.
  c.optim = common.adamw(lr=1e-3, weight_decay=0.01, warmup_epochs=0.0, min_lr_ratio=1.0)
  if arg.runlocal:
    common.runlocal(c)
    c.input.batch_size = 8
  return c
