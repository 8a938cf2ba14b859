r"""TimeX (Queen et al., NeurIPS 2023): explain a frozen pretrained time-series classifier with a
mask generator trained for model behaviour consistency (``ssljax.methods.timex``).

TimeX explains a classifier, so a real run has two commands: train the classifier
(``experiments/timex_classifier.py``), export it, then fit TimeX on it through
``encoder.init_from``::

    python main.py --config=experiments/timex_classifier.py:data=synth:FreqShapes \
        --workdir=/tmp/timex_clf
    python -m ssljax.export --workdir=/tmp/timex_clf --out=/tmp/timex_clf/exported
    python main.py --config=experiments/timex.py:data=synth:FreqShapes --workdir=/tmp/timex \
        --config.encoder.init_from=/tmp/timex_clf/exported

Without ``init_from`` (``python main.py --config=experiments/timex.py --workdir=/tmp/timex``, as
the generic tests run it) the "pretrained" classifier is a random network: the run works, the
explanations explain noise.

Variants (the argument after the colon; combine with commas):

* ``data=<name>`` — ``synth:FreqShapes`` (default), ``synth:SeqComb-UV``, ``synth:LowVarDetect``
  (``ssljax.data.synth_series``: 5,000 / 1,000 series with ground-truth salient timestamps,
  generated offline), or any labelled series set (``ucr:``/``uea:``/``npz``; then drop ``explain``
  from ``eval.evals``: there is no ground truth to score).
* ``steps=<n>`` — the run length (default 50 epochs of batch 64, the released recipe).
* ``runlocal`` — a few steps (tests, laptops).

Recipe (the released FreqShapes script): the reference transformer (1 layer, 1 head, FFN 16,
d_pe 16, mean aggregation); mask generator: a 2-layer, 1-head transformer decoder with FFN 32;
beta_exp 2, beta_sim 1, lam 1, w_gsat 1, w_connect 2, r 0.5, Gumbel tau 1, 50 landmarks (tau 0.1)
with side assimilation; AdamW lr 1e-3, weight decay 1e-3, batch 64, 50 epochs (the released
ReduceLROnPlateau and validation early stopping are not reproduced: a constant rate). Evaluation
(``eval.evals='explain,classification'``): ``explain_auprc`` / ``explain_aup`` / ``explain_aur`` of
the saliency p against the ground truth (``ssljax.evals.explain``), beside a uniformly random
saliency (``random_*``); ``classifier_top1`` (the explained model) and
``classifier_top1_explainer`` (F^E on the masked series); ``eval.at_init`` reports the same for
the untrained explainer (``init_explain_auprc``).

Measured (ssljax at the commit adding TimeX, the three commands above, 2-core CPU shared with
other jobs, seed 0): FreqShapes classifier top-1 0.977 (1560 steps, 61 s); TimeX (3900 steps,
331 s) explain AUPRC 0.861, AUP 0.737, AUR 0.679 (the untrained explainer: 0.190 / 0.119 /
0.354; a uniformly random saliency: 0.231 / 0.172 / 0.512); F^E on the masked series agrees
with the classifier's labels at 0.904 top-1. SeqComb-UV: the classifier reaches only 0.690 top-1
in 1560 steps with this 1-layer recipe (the released SeqComb-UV script explains a 2-layer, FFN 64
transformer); TimeX on that classifier for only 300 steps (``data=synth:SeqComb-UV,steps=300``,
509 s): AUPRC 0.550, AUP 0.796, AUR 0.344 (untrained 0.171 / 0.122 / 0.386; random 0.165 / 0.145
/ 0.501). LowVarDetect: not run. Published (Queen et al. 2023, Table 2): the
numbers were not retrieved here.
"""

import ml_collections as mlc

from experiments import common
from ssljax.data import synth_series


def data_name(value: str) -> str:
  """``FreqShapes`` -> ``synth:FreqShapes``; other names as given."""
  if ":" not in value and value.lower().replace("-", "") in (
      k.lower().replace("-", "") for k in synth_series.SHAPES):
    return synth_series.PREFIX + synth_series.canonical(value)
  return value


def base(arg, *, stage: str, default_steps: int) -> mlc.ConfigDict:
  """The config both TimeX stages share (``stage``: 'explainer' or 'classifier')."""
  arg = common.parse_arg(arg, data="synth:FreqShapes", steps=default_steps, runlocal=False)
  c = common.base_config()
  c.method = "timex"
  name = data_name(arg.data)
  common.set_series_data(c, name)
  c.total_steps = int(arg.steps)
  c.input.batch_size = 64
  c.encoder = common.encoder(dict(name="timex_transformer", d_pe=16, heads=1, ffn=16, depth=1,
                                  dropout=0.1))
  c.timex = mlc.ConfigDict(dict(
      stage=stage, beta_exp=2.0, beta_sim=1.0, lam_label=1.0, w_gsat=1.0, w_connect=2.0, r=0.5,
      tau=1.0, n_landmarks=50, landmark_tau=0.1, side_assimilation=True,
      faithful_lc_reduction=False, poly1_epsilon=1.0, maskgen_heads=1, maskgen_ffn=32,
      maskgen_depth=2))
  synth = synth_series.is_synth(name)
  c.eval.evals = "explain,classification" if (synth and stage == "explainer") else "classification"
  c.eval.knn = stage == "classifier"
  c.eval.knn_k = (5,)
  c.eval.linear = False
  c.eval.baselines = False
  c.eval.at_init = stage == "explainer"
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  if arg.runlocal:
    common.runlocal(c)
    c.timex.n_landmarks = 8
  return c


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the TimeX (stage 2) config for the variant in ``arg`` (see the module docstring)."""
  # 50 epochs of the 5,000 training series at batch 64 (78 steps each).
  c = base(arg, stage="explainer", default_steps=3900)
  # torch.optim.AdamW(lr=1e-3, weight_decay=1e-3), no warm-up, constant.
  c.optim = common.adamw(lr=1e-3, weight_decay=1e-3, warmup_epochs=0.0, min_lr_ratio=1.0)
  return c
