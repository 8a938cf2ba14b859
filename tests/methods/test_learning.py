"""Every method learns on the shipped digits: no collapse, and a kNN clearly above its own init.

For each method found in ``ssljax/methods/`` (as the contract test finds them) a short run of its
digits default with a tiny encoder (``resnet_tiny``; MAE keeps its nano ViT) must end with

* an embedding that has not collapsed: RankMe above :data:`RANKME_FLOOR` and the per-dimension
  std of the l2-normalised embedding above :data:`STD_FLOOR` / sqrt(K) (about 1 / sqrt(K) when
  spread over the sphere, 0 when collapsed);
* a weighted-kNN (k=20) top-1 on the 450 test digits at least :data:`KNN_MARGIN` (5 points) above
  the same network at initialisation, measured in the same run (``eval.at_init``), never
  hard-coded.

The run is the method's own digits recipe (optimiser, views, heads, loss weights) with three
changes: a ``resnet_tiny`` encoder of width 16, batch 128 and 200 steps (400 for the two slow
starters in :data:`STEPS_FOR`), and the few epoch-denominated settings that are fractions of the
default's 80 epochs scaled to the shorter run (:func:`_run_length_settings`).

Methods for tables (their experiment's default data is a table) run their own default on its
bundled scikit-learn table, shortened to :data:`TABLE_STEPS`, and must not collapse (the same
floors) and end with a kNN top-1 at least :data:`TABLE_KNN_MARGIN` above their initialisation:
a table's untrained encoder already reads its columns well (96% kNN on the digits as 64 columns),
so the headroom is a few points, not tens.

The full-default runs of three methods (``python main.py`` as a user types it) have quality
floors of their own at the end of this file. All of it is the slow tier.
"""

import importlib
import json
import math
import os

import pytest

from ssljax import methods, train
from ssljax.data import digits, interactions, series, tables

STEPS = 200  # At batch 128: 10 steps per epoch of the 1,347 training digits, 20 epochs.
BATCH = 128
# Methods whose mechanism needs a longer run to show (each twice the default here), and why.
STEPS_FOR = {
    "mae": 400,  # Reconstruction learns slowly: +2.2 kNN points after 200 steps, +6.7 after 400.
    "trust_ssl": 400,  # Trust-weighted selection starts half-way: +1.6 after 200, +13 after 400.
}

# Floors, set from one run of every method with these settings (ssljax at the commit that added
# this file, 2-core CPU; init -> trained). kNN top-1 gains of the methods that learn: barlow
# +10.9, fst +12.9, groco +15.1, halp +12.7, mae +6.7, mocov3 +12.0, self_training +16.0, simclr
# +13.8, simsiam +10.7, sla +14.4, trust_ssl +12.9, vicreg +14.9 points; of the failures: dino
# +2.7, myow +2.0, byol -0.8 (byol +8.7 and myow +7.6 since their digits recipes' constant
# predictor LR and SGD, experiments/byol.py; myow with the official miner, exclude_self=False).
# RankMe of the embedding: 5.0 to 82.6 trained (K = 10 for the
# classifiers' logits), 1.8 to 3.0 at init (MAE's CLS feature 21.7). Normalised std x sqrt(K):
# 0.21 (MAE's CLS) to 0.99 trained, about 0.05 at init.
RANKME_FLOOR = 4.0
STD_FLOOR = 0.1  # Twice the random network's spread; a collapsed embedding is at 0.
KNN_MARGIN = 0.05

# Methods that do not learn on digits yet, with the reason; expected to fail (strict: a pass means
# the mark must go). Empty since DINO's digits recipe trains on the plain images first
# (experiments/dino.py; this run: kNN 80.9% at init -> 89.6%, RankMe 7.1).
KNOWN_FAILURES: dict[str, str] = {}


def _run_length_settings(name: str, epochs: float) -> dict:
  """Settings tied to the default's 80 epochs, scaled to this run so each method's own mechanism
  is on for the same share of it as in the default."""
  scale = epochs / 80.0
  return {
      "halp": {"halp.start_epoch": 40.0 * scale},  # Hallucinated positives: second half.
      "simsiam": {"optim.warmup_epochs": 40.0 * scale},  # Warm-up: the first half.
      "trust_ssl": {"trust_ssl.sel_start_epoch": 40.0 * scale,  # Selection ramp: 40 -> 60.
                    "trust_ssl.sel_end_epoch": 60.0 * scale,
                    "trust_ssl.lambda_min_epochs": 80.0 * scale},
  }.get(name, {})


def learning_config(name: str, data_dir: str):
  """``experiments/<name>.py`` (digits default), tiny encoder, a short run on one device."""
  c = importlib.import_module(f"experiments.{name}").get_config()
  c.input.data.data_dir = data_dir
  c.input.batch_size = BATCH
  c.total_steps = STEPS_FOR.get(name, STEPS)
  c.mesh = (("data", 1),)  # One device: no sharding is tested here, and it runs ~2x faster.
  if str(c.encoder.name).startswith("resnet"):
    c.encoder.name, c.encoder.width = "resnet_tiny", 16
  c.log_every_steps = 50
  c.checkpoint_every_steps = c.total_steps
  c.eval.linear = False
  c.eval.knn_k = (20,)
  c.eval.rankme_every_steps = c.total_steps // 2  # Collapse metrics logged during training too.
  c.eval.at_init = True
  steps_per_epoch = digits.NUM_TRAIN // BATCH
  epochs = c.total_steps / steps_per_epoch
  # A recipe's plain-image phase (DINO's, MYOW's) keeps its share of the run.
  c.input.plain_view_epochs *= epochs / 80.0
  c.update_from_flattened_dict(_run_length_settings(name, epochs))
  return c


def _kind(name: str) -> str:
  """'table', 'series', 'interactions' or 'image': the kind of the method's default data."""
  config = importlib.import_module(f"experiments.{name}").get_config()
  data_name = str(config.input.data.name)
  if tables.is_table(data_name):
    return "table"
  if interactions.is_interactions(data_name):
    return "interactions"
  return "series" if series.is_series(data_name, config.input.data) else "image"


IMAGE_METHODS = [n for n in methods.available() if _kind(n) == "image"]
TABLE_METHODS = [n for n in methods.available() if _kind(n) == "table"]
# Series methods whose learning check lives in their own test file, and why.
OWN_LEARNING_TEST = {
    # An explainer trains no representation to probe: its saliency must beat a random mask's.
    "timex": "tests/methods/test_timex.py::test_toy_explanations_beat_a_random_mask",
    # Its default data (wav:asterisk) is a Debian package CI machines lack; the own test writes
    # a folder of .wav files (4 sound classes) and trains a 64-channel CPC on it (~20 s).
    "cpc": "tests/methods/test_cpc.py::test_learns_on_synthetic_wav_files_without_collapse",
}
SERIES_METHODS = [n for n in methods.available()
                  if _kind(n) == "series" and n not in OWN_LEARNING_TEST]
INTERACTION_METHODS = [n for n in methods.available() if _kind(n) == "interactions"]
# Steps of each table method's shortened default, and why that many.
TABLE_STEPS = {
    "scarf": 400,  # digits table, batch 128: kNN 96.4% at init -> 98.3% (2200 steps: 97.8%).
    "t_jepa": 200,  # breast cancer, batch 64: the collapse floors only (TABLE_KNN_NOT_YET).
}
TABLE_KNN_MARGIN = 0.01  # 1 point: 4 of the 359 test rows of the digits table.
# Table methods whose kNN gain over their init is not asserted here, and why; their collapse
# floors are.
TABLE_KNN_NOT_YET = {
    "t_jepa": "T-JEPA's default (the official model, 420 steps on breast cancer) ends within noise "
              "of its init: kNN 93.9/93.9/93.9% vs 93.9/95.6/94.7% at init for seeds 0/1/2 (114 "
              "test rows, 0.9 points each); on digits too (97.2% at init, 97.2-97.8% trained); "
              "see experiments/t_jepa.py. Its 'standardized' variant learns a table with shared "
              "structure (tests/methods/test_t_jepa.py) and the shipped diamonds table (ridge "
              "R^2 of the price 0.922 -> 0.948, README 'Tables'; 5.5 minutes, too long for here)",
}


def _params(names):
  return [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[n], strict=True))
          if n in KNOWN_FAILURES else n for n in names]


@pytest.mark.slow
@pytest.mark.parametrize("name", _params(IMAGE_METHODS))
def test_learns_without_collapse_and_beats_its_init(name, digits_dir, tmp_path):
  config = learning_config(name, digits_dir)
  results = train.train_and_evaluate(config, str(tmp_path))
  _assert_learned(results, KNN_MARGIN)
  # The collapse metrics were logged during training as well (metrics.jsonl, progress line).
  rows = [r for r in _rows(tmp_path) if "embedding_std" in r and r["step"] > 0]
  assert rows, "no embedding_std logged during training"


@pytest.mark.slow
@pytest.mark.parametrize("name", _params(TABLE_METHODS))
def test_table_method_learns_without_collapse_and_beats_its_init(name, tmp_path):
  c = importlib.import_module(f"experiments.{name}").get_config()
  c.total_steps = TABLE_STEPS[name]
  c.mesh = (("data", 1),)
  c.checkpoint_every_steps = c.total_steps
  c.eval.linear = False
  c.eval.baselines = False
  c.eval.knn_k = (20,)
  c.eval.at_init = True
  margin = None if name in TABLE_KNN_NOT_YET else TABLE_KNN_MARGIN
  _assert_learned(train.train_and_evaluate(c, str(tmp_path)), margin)


# Steps of each time-series method's shortened default (on its default UCR set), and why.
SERIES_STEPS = {
    "ts2vec": 100,  # GunPoint, batch 8 (half the official 200): kNN (k=5) 80.0% at init.
    "tloss": 200,  # GunPoint, batch 10 (official: 2000 steps): kNN (k=5) 90.7% at init -> 96.7%.
    # BasicMotions, batch 16 (its default is 300): kNN (k=5) 90.0% at init -> 97.5% (seed 1:
    # 87.5% -> 95.0%); 40 test series, so the 3-point margin is 2 of them.
    "eegformer": 150,
    # GunPoint, batch 16, stage 1: kNN (k=5) 60.0% at init -> 68.7% after 60 steps (72.7% after
    # 200); 70 s alone on the 2-core CPU.
    "frame_projections": 60,
}
SERIES_KNN_MARGIN = 0.03  # 3 points: 5 of GunPoint's 150 test series.


@pytest.mark.slow
@pytest.mark.parametrize("name", SERIES_METHODS)
def test_series_method_learns_without_collapse_and_beats_its_init(name, tmp_path):
  c = importlib.import_module(f"experiments.{name}").get_config()
  c.total_steps = SERIES_STEPS[name]
  c.mesh = (("data", 1),)
  c.checkpoint_every_steps = c.total_steps
  c.eval.evals = "classification"  # kNN is what the margin reads; the SVM search takes longer.
  c.eval.linear = False
  c.eval.baselines = False
  c.eval.at_init = True
  _assert_learned(train.train_and_evaluate(c, str(tmp_path)), SERIES_KNN_MARGIN)


# Recommendation methods: their default recipe on the positives (rating >= 4) of ml-latest-small,
# 10-core filtered (605 users, 1,234 items, 30,690 training interactions: a graph a third the
# default's, so the run is short), at lr 5e-3 for INTERACTION_STEPS steps of 1024. They must
# beat, on validation NDCG@10 (full ranking), their own initialisation by INTERACTION_MARGIN and
# the popularity ranking (items by training interactions), the baseline users compare with.
INTERACTION_STEPS = {
    "bpr": 250,  # Valid NDCG@10 0.0087 at init -> 0.143 (popularity 0.113), ~25 s.
    "lightgcn": 150,  # 0.0105 at init -> 0.133 (popularity 0.113), ~16 s.
    # On its own default data, synth-social (800 users, 9,248 training interactions: 9 steps per
    # epoch): 18 warm-up steps, then the tri-training. 0.040 at init -> 0.141 (popularity 0.108;
    # 100 steps: 0.143), ~36 s (mostly compilation).
    "sept": 60,
    # two_tower (cfm): 0.010 at init -> 0.144 (popularity 0.113; 80 steps: 0.139, 150: 0.151);
    # the test ~57 s on 2 CPU cores shared with other jobs (data, compile, 2 full rankings).
    "two_tower": 120,
    # SELFCF_ed (no negatives): 0.0061 at init -> 0.128 (popularity 0.113; seed 1: 0.126), ~25 s;
    # 200 steps reach only 0.114, level with popularity.
    "selfcf": 300,
    # SGL (lambda1 0.02): 0.0105 at init -> 0.154 (popularity 0.113), ~39 s.
    "sgl": 200,
    # SimGCL (lambda 0.01, no layer 0): 0.0368 at init -> 0.138 (popularity 0.113), ~36 s.
    "simgcl": 250,
}
INTERACTION_MARGIN = 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", INTERACTION_METHODS)
def test_recommender_beats_its_init_and_popularity(name, tmp_path):
  c = importlib.import_module(f"experiments.{name}").get_config()
  if c.input.data.name != "synth-social":  # Social methods keep their synthetic social set.
    c.input.data.min_rating = 4.0
    c.input.data.k_core = 10
  c.input.batch_size = 1024
  c.optim.lr = 5e-3
  c.total_steps = INTERACTION_STEPS[name]
  c.mesh = (("data", 1),)
  c.checkpoint_every_steps = c.total_steps
  c.eval.every_steps = 0
  c.eval.at_init = True
  c.eval.ranking.ks = (10,)
  results = train.train_and_evaluate(c, str(tmp_path))
  summary = {k: round(results[k], 4) for k in ("valid_ndcg@10", "init_valid_ndcg@10",
                                               "pop_valid_ndcg@10", "test_ndcg@10")}
  assert results["valid_ndcg@10"] >= results["init_valid_ndcg@10"] + INTERACTION_MARGIN, summary
  assert results["valid_ndcg@10"] > results["pop_valid_ndcg@10"], summary
  assert results["rankme"] > RANKME_FLOOR, summary


def _assert_learned(results, knn_margin: float | None) -> None:
  """No collapse (RankMe and the normalised embedding std above their floors) and a kNN top-1 at
  least ``knn_margin`` above the same network's at initialisation (not checked when None)."""
  k = results["embedding_dim"]
  summary = {key: round(results[key], 4) for key in ("init_knn_top1", "knn_top1", "rankme",
                                                      "init_rankme", "embedding_std")}
  assert results["rankme"] > RANKME_FLOOR, summary
  assert results["embedding_std"] * math.sqrt(k) > STD_FLOOR, (k, summary)
  if knn_margin is not None:
    assert results["knn_top1"] >= results["init_knn_top1"] + knn_margin, summary


def _rows(workdir):
  return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


# ------------------------------------------------------------------- full defaults, as users run

# method -> floors of its default digits run (linear top-1, kNN top-1, RankMe), set under what was
# measured at commit a2c1c47 on one device, as `python main.py --config=experiments/<m>.py` runs on
# a CPU machine (~75 s each): barlow 94.9% / 88.0% / 15.9 in this test's process (8 fake devices,
# one used) and 90.0% / 84.4% / 9.8 from main.py in a 1-device process (float32 rounding differs
# with the XLA client's device count, and this run amplifies it; the README records 92.4-96.7%
# linear across earlier versions); simclr 96.0% / 94.0% / 32.9 and vicreg 99.1% / 98.9% / 49.5 here
# (96.7% / 94.2% / 32.3 and 98.0% / 97.8% / 52.3 in an earlier README table; 96.0% / 93.3% / 33.6
# and 98.4% / 99.1% / 52.5 from main.py at ee9be52, the README's digits table). Each floor sits
# about 5 points (RankMe: about a third) below the lowest of these.
FULL_DEFAULT_FLOORS = {
    "barlow": (0.85, 0.79, 6.0),
    "simclr": (0.91, 0.89, 20.0),
    "vicreg": (0.93, 0.92, 30.0),
}


# The default suite runs Barlow Twins' full default (the README's headline command); the other two
# take ~4 CPU-minutes each and run with SSLJAX_FULL_DEFAULTS=1 (the suite's 20-minute budget).
FULL_DEFAULTS_ALWAYS = ("barlow",)


def _full_params():
  gated = pytest.mark.skipif(os.environ.get("SSLJAX_FULL_DEFAULTS") != "1",
                             reason="full default run: set SSLJAX_FULL_DEFAULTS=1 to include it")
  return [n if n in FULL_DEFAULTS_ALWAYS else pytest.param(n, marks=gated)
          for n in sorted(FULL_DEFAULT_FLOORS)]


@pytest.mark.slow
@pytest.mark.parametrize("name", _full_params())
def test_full_default_reaches_its_floor(name, digits_dir, tmp_path):
  config = importlib.import_module(f"experiments.{name}").get_config()
  config.input.data.data_dir = digits_dir
  config.mesh = (("data", 1),)  # A CPU machine's one device (the test process fakes eight).
  results = train.train_and_evaluate(config, str(tmp_path))
  linear, knn, rank = FULL_DEFAULT_FLOORS[name]
  summary = {k: round(results[k], 4) for k in ("linear_top1", "knn_top1", "rankme")}
  assert results["linear_top1"] >= linear and results["knn_top1"] >= knn, summary
  assert results["rankme"] >= rank, summary
