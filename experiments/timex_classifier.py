r"""TimeX's stage 1: the classifier TimeX explains (``ssljax.methods.timex`` with
``timex.stage='classifier'``): the paper's small transformer f = F o G trained with Poly-1
cross-entropy on the labels, to export and load into ``experiments/timex.py`` with
``encoder.init_from``::

    python main.py --config=experiments/timex_classifier.py:data=synth:FreqShapes \
        --workdir=/tmp/timex_clf
    python -m ssljax.export --workdir=/tmp/timex_clf --out=/tmp/timex_clf/exported

Variants as ``experiments/timex.py`` (``data=``, ``steps=``, ``runlocal``). Recipe (the released
``train_transformer.py`` for the synthetic sets): 1 layer, 1 head, FFN 16, dropout 0.1, d_pe 16;
AdamW lr 1e-3, weight decay 0.1, batch 64 (released: 100 epochs with selection on a validation
split; here 20 epochs, constant rate, the last step). Evaluation: ``classifier_top1`` on the test
split and a kNN on G's embedding. Measured numbers: ``experiments/timex.py``.
"""

import ml_collections as mlc

from experiments import common
from experiments.timex import base


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the stage-1 classifier config for the variant in ``arg``."""
  c = base(arg, stage="classifier", default_steps=1560)  # 20 epochs of 78 steps.
  c.optim = common.adamw(lr=1e-3, weight_decay=0.1, warmup_epochs=0.0, min_lr_ratio=1.0)
  return c
