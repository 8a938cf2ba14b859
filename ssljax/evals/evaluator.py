"""Evaluation of a training state: frozen features -> the configured evaluators, and RankMe.

``Evaluator(config, method, mesh, info).run(state)`` extracts backbone representations (what the
probes use) and projector embeddings (what RankMe scores) of the probe data's train and test
splits, un-augmented, with the data-parallel mesh, then runs the evaluators named in
``eval.evals`` (as big_vision's ``config.evals``) on the host:

* ``classification`` (class labels): weighted kNN (``eval.knn``) and the linear probe
  (``eval.linear``), on any representation; plus ``classifier_top1`` when the method trains a
  classifier of its own;
* ``regression`` (a float target, e.g. a table's): the ridge probe (``ridge_r2``, ``ridge_rmse``);
* ``auto`` (the default, alone): whichever of the two the probe data's labels call for
  (``ssljax.data.DatasetInfo.task``); with no labels (an unlabelled folder,
  ``input.data.labels=False``, a table without a target) only RankMe and the collapse metrics,
  with a printed note.

Naming an evaluator the probe data cannot feed (``classification`` on a regression target, any
probe on unlabelled data) is a one-line ``ConfigError`` when the Evaluator is built, before
training starts.

With ``eval.baselines`` (tables) each probe also runs on the raw preprocessed features
(``raw_<metric>``) beside scikit-learn's HistGradientBoosting on them (``gbdt_<metric>``), so a
user sees whether pretraining helped.

Adding an evaluator (the recommendation issue's ``ranking``, say)::

    def ranking(ev: Evaluator, state) -> dict[str, float]:
      ...  # ev.features(state, split), ev.probe_info, ev.cfg (eval.*), ev.mesh, ev.method
    register_evaluator("ranking", ranking, tasks=("ranking",))

An evaluator is ``fn(ev, state) -> dict[str, float]``: it reads what it needs through the
:class:`Evaluator` (``probe_splits`` gives the probe data's train/test features, shared by the
evaluators of one evaluation) and returns flat metrics, which land in ``metrics.jsonl`` and
``results.json`` as they are. ``tasks`` lists the ``DatasetInfo.task`` values it accepts. The
probes themselves are pure functions over host arrays (``representation`` [N, F], ``label``
[N]): :mod:`ssljax.evals.knn`, :mod:`ssljax.evals.linear`, :mod:`ssljax.evals.regression`.

The probes read ``eval.data`` (fields left empty take ``input.data``'s), so a run can pretrain on
one split or folder (STL-10 ``unlabelled``, a folder of photos) and probe on another; RankMe always
reads the training data.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import numpy as np

from ssljax import data, sharding, writers
from ssljax.data import augment
from ssljax.errors import ConfigError, DataError
from ssljax.evals import explain, ranking, regression, svm
from ssljax.evals.knn import knn_top1
from ssljax.evals.linear import linear_probe
from ssljax.metrics import normalized_std, rankme

_NOT_FEATURES = ("label", "labelled", "mask")
# What eval.data.name naming another data set resets, unless eval.data sets it too.
_OTHER_DATA_DEFAULTS = {"path": None, "train_split": "train", "eval_split": "test"}


@dataclasses.dataclass(frozen=True)
class EvaluatorSpec:
  """A named evaluator: ``fn(ev, state) -> dict[str, float]`` and the probe tasks it reads."""
  name: str
  fn: Callable[["Evaluator", Any], dict[str, float]]
  tasks: tuple[str, ...]
  # Optional ``check(ev)``: its settings against the data, run when the Evaluator is built
  # (before training starts), raising a one-line ConfigError.
  check: Callable[["Evaluator"], None] | None = None
  # Optional ``resume(ev, records)``: the metrics.jsonl records of the run before a restart, so
  # that what it keeps across evaluations (the model selection) survives the restart.
  resume: Callable[["Evaluator", list[dict[str, Any]]], None] | None = None
  # Whether ``fn`` reads ``ev.probe_splits``: then one evaluation extracts them before RankMe,
  # which takes its rows from them when the probe data is the training data.
  reads_probe_splits: bool = False


EVALUATORS: dict[str, EvaluatorSpec] = {}


def register_evaluator(name: str, fn: Callable[["Evaluator", Any], dict[str, float]], *,
                       tasks: tuple[str, ...],
                       check: Callable[["Evaluator"], None] | None = None,
                       resume: Callable[["Evaluator", list], None] | None = None,
                       reads_probe_splits: bool = False) -> None:
  """Makes ``fn`` runnable as ``eval.evals=(name, ...)``; ``tasks``: the ``DatasetInfo.task``
  values (``classification``, ``regression``, ...) whose data it can evaluate; ``check(ev)``
  (optional) validates its settings when the Evaluator is built; ``resume(ev, records)``
  (optional) restores its state from the logged metrics when a run restarts;
  ``reads_probe_splits``: ``fn`` reads ``ev.probe_splits`` (RankMe then shares their extraction).

  An evaluator may ask the training loop to stop early by setting ``ev.stop_reason`` (a
  sentence saying why); the loop checkpoints and ends the run there."""
  if name == "auto":
    raise ValueError("'auto' is reserved: it picks the evaluators from the probe data's labels")
  EVALUATORS[name] = EvaluatorSpec(name, fn, tuple(tasks), check, resume, reads_probe_splits)


def resolve_evals(names, task: str | None, *, where: str) -> tuple[str, ...]:
  """The evaluators ``eval.evals`` names, ``auto`` resolved by the probe data's ``task``.

  Raises:
    ConfigError: an unknown name, or one the probe data's labels cannot feed.
  """
  if isinstance(names, str):
    names = [n.strip() for n in names.split(",")]
  names = tuple(n for n in names if n) or ("auto",)
  chosen: list[str] = []
  for name in names:
    if name == "auto":  # The first evaluator that reads the probe data's labels, if any.
      chosen += [spec.name for spec in EVALUATORS.values() if task in spec.tasks][:1]
      continue
    if name not in EVALUATORS:
      raise ConfigError(f"eval.evals: no evaluator {name!r}; choose from "
                        f"{['auto', *sorted(EVALUATORS)]}")
    tasks = EVALUATORS[name].tasks
    if task not in tasks:
      holds = "no labels" if task is None else f"{task} labels"
      raise ConfigError(f"eval.evals: {name!r} evaluates data with {' or '.join(tasks)} labels "
                        f"but the probe data {where!r} has {holds}; use eval.evals=auto or set "
                        "eval.data to data with such labels")
    chosen.append(name)
  return tuple(dict.fromkeys(chosen))


def probe_data_config(config):
  """``input.data`` updated by the non-empty fields of ``eval.data`` (labels on: probes need them).

  Raises:
    ConfigError: ``eval.data`` has a field ``input.data`` does not know.
  """
  probe = config.input.data.copy_and_resolve_references()
  with probe.unlocked():
    probe.labels = True
    overrides = config.eval.get("data")
    for key, value in (overrides.items() if overrides is not None else ()):
      if value is None or value == "":
        continue
      if key not in probe:
        raise ConfigError(f"eval.data.{key}: input.data has no such field; eval.data takes "
                          f"the fields of input.data ({sorted(probe.keys())})")
      if key == "name" and value != probe.name:
        # Another data set: its own path and splits, unless eval.data gives them too.
        for field, default in _OTHER_DATA_DEFAULTS.items():
          if field in probe and not overrides.get(field):
            probe[field] = default
      probe[key] = value
  return probe


def eval_input_fn(config, info):
  """The deterministic ``batch -> encoder input`` of the data's modality (no augmentation).

  Images: resize, centre crop and normalise (``input.image_size``, ``input.eval_crop_fraction``,
  ``input.mean`` / ``input.std``). Other modalities: the batch's features as they are.
  """
  if info.modality == "image":
    size = int(config.input.image_size)
    crop_fraction = float(config.input.eval_crop_fraction)
    mean, std = tuple(config.input.mean), tuple(config.input.std)
    return lambda batch: augment.preprocess_eval(batch["image"], size=size, mean=mean, std=std,
                                                 crop_fraction=crop_fraction,
                                                 source_hw=batch.get("image_hw"))
  return lambda batch: {k: v for k, v in batch.items() if k not in _NOT_FEATURES}


class Evaluator:
  """Runs the evaluations configured in ``config.eval`` on a TrainState.

  Args:
    config: the experiment config (reads ``eval.*``, ``input.data``, and for images
      ``input.image_size``, ``input.eval_crop_fraction``, ``input.mean``/``input.std``).
    method: the Method whose ``represent`` gives the features.
    mesh: the device mesh (features are computed data-parallel).
    info: the training data's DatasetInfo.

  Raises:
    ConfigError / DataError: the probe data cannot be opened, has an empty split, or is of
      another modality than the training data (checked here, before training starts).
  """

  def __init__(self, config, method, mesh, info):
    self.cfg = config.eval
    self.train_cfg = config.input.data
    self.data_cfg = probe_data_config(config)
    self.info = info
    self.probe_info = (info if self.data_cfg.to_dict() == self.train_cfg.to_dict()
                       else data.get_info(self.data_cfg))
    if self.probe_info.modality != info.modality:
      raise ConfigError(f"eval.data.name={self.data_cfg.name!r} holds {self.probe_info.modality} "
                        f"data but the method trains on {info.modality} data; probe on data of "
                        "the same kind")
    for split, count in ((self.data_cfg.train_split, self.probe_info.num_train),
                         (self.data_cfg.eval_split, self.probe_info.num_eval)):
      if count == 0:
        raise DataError(f"eval.data: split {split!r} of {self.probe_info.name!r} is empty; "
                        "choose a split with examples")
    self.evals = resolve_evals(self.cfg.get("evals", ("auto",)), self.probe_info.task,
                               where=self.data_cfg.name)
    self._noted = False
    self.stop_reason: str | None = None  # Set by an evaluator that ends training early.
    self.mesh = mesh
    self.method = method
    shards = math.lcm(sharding.data_axis_size(mesh), jax.process_count())
    self.batch_size = int(math.ceil(int(self.cfg.batch_size) / shards) * shards)
    represent = method.represent
    to_input = eval_input_fn(config, info)
    self._cache = None  # ((step, data, split), features, whole split?) of the last extraction.
    self._splits = None  # (step, (train, test)) of the last probe_splits.
    self._baselines = None

    def features(params, method_state, batch):
      keep = {k: batch[k] for k in ("label", "mask") if k in batch}
      return represent(params["method"], method_state, to_input(batch)), keep

    self._features = jax.jit(
        features,
        in_shardings=(None, None, sharding.batch_sharding(mesh)),
        out_shardings=sharding.replicated(mesh),
    )
    for name in self.evals:  # Evaluator settings that the data can refute, checked up front.
      if EVALUATORS[name].check is not None:
        EVALUATORS[name].check(self)

  def features(self, state, split: str, *, max_samples: int = -1, probe: bool = True,
               raw: bool = False) -> dict[str, np.ndarray]:
    """``representation`` [N, F], ``embedding`` [N, K] and (labelled data) ``label`` [N] of a split.

    Plus ``logits`` / ``logits_<name>`` [N, C] when the method's ``represent`` returns them, and
    with ``raw=True`` the split's own features (``x_num``, ``image``, ...). ``probe`` picks the
    probe data (``eval.data``) or, when False, the training data (``input.data``).

    The last extraction is kept: RankMe and the final evaluation at the same step share it when
    it covers what is asked (the whole split, or at least ``max_samples`` rows).
    """
    probe = probe and self.probe_info is not self.info  # The same data: share extractions.
    cfg = self.data_cfg if probe else self.train_cfg
    key = (int(jax.device_get(state.step)), probe, split, raw)
    if self._cache is not None and self._cache[0] == key:
      cached, complete = self._cache[1], self._cache[2]
      count = len(cached["representation"])
      if complete or 0 < max_samples <= count:
        return {k: v[:max_samples] if max_samples > 0 else v for k, v in cached.items()}
    result, complete = self._extract(state, cfg, split, max_samples, raw)
    self._cache = (key, result, complete)
    return result

  def _extract(self, state, data_cfg, split, max_samples, raw):
    chunks: dict[str, list[np.ndarray]] = {"representation": [], "embedding": []}
    count = 0
    local_batch = self.batch_size // jax.process_count()
    for batch in data.iterate_eval(data_cfg, split, batch_size=local_batch):
      g = sharding.global_batch(batch, self.mesh)
      out, kept = jax.device_get(self._features(state.params, state.method_state, g))
      keep = np.asarray(kept["mask"], bool)
      for key in out:  # ``logits`` / ``logits_<name>``: methods that train a classifier.
        if key in ("representation", "embedding") or key.startswith("logits"):
          chunks.setdefault(key, []).append(np.asarray(out[key])[keep])
      if "label" in kept:
        chunks.setdefault("label", []).append(np.asarray(kept["label"])[keep])
      if raw:
        for key, value in batch.items():
          if key not in _NOT_FEATURES:
            chunks.setdefault(key, []).append(np.asarray(value)[keep])
      count += int(keep.sum())
      if 0 < max_samples <= count:
        break
    else:
      return {k: np.concatenate(v) for k, v in chunks.items()}, True
    return {k: np.concatenate(v)[:max_samples] for k, v in chunks.items()}, False

  def rankme(self, state) -> dict[str, float]:
    """Collapse metrics of the training data's train split (no labels needed).

    ``rankme`` / ``rankme_representation``: effective rank of the projector embeddings / the
    backbone representations; ``embedding_std``: mean per-dimension std of the l2-normalised
    embeddings (about 1 / sqrt(K) when spread out, 0 when collapsed).
    """
    n = int(self.cfg.rankme_samples)
    step = int(jax.device_get(state.step))
    if self._splits is not None and self._splits[0] == step and self.probe_info is self.info:
      train = self._splits[1][0]  # This evaluation's probe features of the same split.
      if len(train["representation"]) >= min(n, self.info.num_train):
        return collapse_metrics({k: v[:n] for k, v in train.items()}, n)
    return collapse_metrics(
        self.features(state, self.train_cfg.train_split, max_samples=n, probe=False), n)

  def resume(self, records: list[dict[str, Any]]) -> None:
    """Gives each evaluator the metrics logged before a restart (``metrics.jsonl`` records up
    to the restored step), so model selection and early stopping carry on where they were."""
    for name in self.evals:
      if EVALUATORS[name].resume is not None:
        EVALUATORS[name].resume(self, records)

  def _note(self, text: str) -> None:
    if not self._noted:
      writers.info("note: " + text, enabled=jax.process_index() == 0)
      self._noted = True

  def run(self, state) -> dict[str, Any]:
    """RankMe and the evaluators of ``eval.evals``; returns a flat dict of floats."""
    t0 = time.perf_counter()
    if self.probe_info is self.info and any(EVALUATORS[n].reads_probe_splits
                                            for n in self.evals):
      # The probes read the training data's train split too: extract it once, first, so RankMe
      # takes its rows from the same extraction instead of running the network on them twice.
      self.probe_splits(state)
    results: dict[str, Any] = self.rankme(state)
    if not self.evals:
      self._note(f"{self.probe_info.name!r} has no labels here, so only RankMe and the collapse "
                 "metrics are reported; set eval.data to labelled data for the probes")
    try:
      for name in self.evals:
        results.update(EVALUATORS[name].fn(self, state))
    finally:
      self._splits = None  # Not held through training (100k x 2048 floats on ImageNet).
    results["eval_time_s"] = round(time.perf_counter() - t0, 2)
    return results

  @property
  def baselines_on(self) -> bool:
    """Whether the probes also run on the raw features (``eval.baselines``; tables, and time
    series, whose raw baselines the ``svm`` evaluator computes)."""
    return bool(self.cfg.get("baselines", False)) and self.info.modality in ("table", "series")

  def probe_splits(self, state) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The probe data's train (at most ``eval.max_train_samples`` rows) and test features,
    with the raw features when the baselines are on; shared by one evaluation's evaluators."""
    step = int(jax.device_get(state.step))
    if self._splits is None or self._splits[0] != step:
      raw = self.baselines_on
      train = self.features(state, self.data_cfg.train_split,
                            max_samples=int(self.cfg.max_train_samples), raw=raw)
      test = self.features(state, self.data_cfg.eval_split, raw=raw)
      if self.probe_info.task == "classification":
        check_class_labels(train, test, self.probe_info.num_classes, where=self.data_cfg.name)
      self._splits = (step, (train, test))
    return self._splits[1]

  def classification(self, train, test) -> dict[str, float]:
    """Weighted kNN (``knn_top1``, ``knn_top1_k<k>``) and the linear probe (``linear_top1``)."""
    cfg, results = self.cfg, {}
    num_classes = self.probe_info.num_classes
    if cfg.knn:
      for i, k in enumerate(cfg.knn_k):
        acc = knn_top1(train["representation"], train["label"], test["representation"],
                       test["label"], num_classes=num_classes, k=int(k),
                       temperature=float(cfg.knn_temperature))
        results["knn_top1" if i == 0 else f"knn_top1_k{int(k)}"] = float(acc)
        if i == 0:
          results["knn_k"] = int(k)
    if cfg.linear:
      probe = linear_probe(train["representation"], train["label"], test["representation"],
                           test["label"], num_classes=num_classes, epochs=int(cfg.linear_epochs),
                           batch_size=int(cfg.linear_batch_size), lr=float(cfg.linear_lr),
                           weight_decay=float(cfg.linear_weight_decay), seed=0)
      results["linear_top1"] = float(probe["top1"])
      results["linear_train_top1"] = float(probe["train_top1"])
    return results

  def baselines(self, train, test, task: str) -> dict[str, float]:
    """The probes on the raw preprocessed features (``raw_*``) and HistGradientBoosting
    (``gbdt_*``) on them; computed once (they do not depend on the network)."""
    if self._baselines is None:
      cards = self.probe_info.cardinalities
      raw = [{"representation": regression.raw_features(part, cards), "label": part["label"]}
             for part in (train, test)]
      if task == "classification":
        results = _prefixed("raw_", self.classification(*raw))
        results.pop("raw_knn_k", None)
        results.pop("raw_linear_train_top1", None)
      else:
        results = _prefixed("raw_ridge_", regression.ridge_probe(*raw, alpha=self.ridge_alpha()))
      results.update(_prefixed("gbdt_", regression.gbdt_baseline(*raw, task=task)))
      self._baselines = results
    return self._baselines

  def ridge_alpha(self) -> float | None:
    """``eval.ridge_alpha``, or None (cross-validated on the train split) when it is <= 0."""
    alpha = float(self.cfg.get("ridge_alpha", -1.0))
    return alpha if alpha > 0 else None


def classification(ev: Evaluator, state) -> dict[str, float]:
  """kNN and the linear probe on the representation, the method's own classifier
  (``classifier_top1``, from ``represent``'s ``logits``) and, with ``eval.baselines``, the
  raw-feature and GBDT baselines."""
  train, test = ev.probe_splits(state)
  results = ev.classification(train, test)
  if ev.baselines_on and ev.info.modality == "table":
    results.update(ev.baselines(train, test, "classification"))
  # The method's own classifier (supervised / semi-supervised methods): ``logits`` is its chosen
  # prediction, ``logits_<name>`` alternatives (e.g. SLA's aggregated inference).
  for key in sorted(k for k in test if k.startswith("logits")):
    name = "classifier_top1" + key[len("logits"):]
    results[name] = float(np.mean(np.argmax(test[key], -1) == test["label"]))
  return results


def regression_eval(ev: Evaluator, state) -> dict[str, float]:
  """The ridge probe (``ridge_r2``, ``ridge_rmse``) and, with ``eval.baselines``, the raw-feature
  and GBDT baselines."""
  train, test = ev.probe_splits(state)
  results = _prefixed("ridge_", regression.ridge_probe(train, test, alpha=ev.ridge_alpha()))
  if ev.baselines_on:
    results.update(ev.baselines(train, test, "regression"))
  return results


register_evaluator("classification", classification, tasks=("classification",),
                   reads_probe_splits=True)
register_evaluator("regression", regression_eval, tasks=("regression",), reads_probe_splits=True)
register_evaluator("svm", svm.evaluate, tasks=("classification",), reads_probe_splits=True)
register_evaluator("explain", explain.evaluate, tasks=("classification",),
                   check=explain.check)
register_evaluator("ranking", ranking.evaluate, tasks=("ranking",), check=ranking.check,
                   resume=ranking.resume)


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
  return {prefix + k: v for k, v in metrics.items()}


def check_class_labels(train, test, num_classes: int, *, where: str) -> None:
  """DataError unless every probe label is a class index in ``[0, num_classes)``."""
  for split, part in (("train", train), ("test", test)):
    labels = part.get("label")
    if labels is None or len(labels) == 0:
      raise DataError(f"eval.data {where!r}: the {split} split has no labelled examples; "
                      "choose a labelled split for the probes (eval.data.*)")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
      raise DataError(f"eval.data {where!r}: {split} labels span [{low}, {high}] but there are "
                      f"{num_classes} classes (unlabelled examples read -1); probe on a labelled "
                      "split, e.g. --config.eval.data.train_split=train")


def collapse_metrics(features: dict[str, np.ndarray], max_samples: int) -> dict[str, float]:
  """RankMe of embeddings and representations, the embeddings' normalised std and width K.

  ``embedding_std`` is about ``1 / sqrt(embedding_dim)`` for embeddings spread over the sphere.
  """
  emb = features["embedding"][:max_samples]
  return {"rankme": rankme(emb, max_samples=max_samples),
          "rankme_representation": rankme(features["representation"], max_samples=max_samples),
          "embedding_std": normalized_std(emb), "embedding_dim": int(emb.shape[-1])}
