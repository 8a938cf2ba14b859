"""Evaluation of a training state: frozen features -> linear probe, kNN, RankMe.

``Evaluator(config, method, mesh, info).run(state)`` extracts backbone representations (what linear
probes and kNN use) and projector embeddings (what RankMe scores) of the train and eval splits,
un-augmented, with the data-parallel mesh, then runs the evaluators on the host.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import numpy as np

from ssljax import data, sharding
from ssljax.data import augment
from ssljax.evals.knn import knn_top1
from ssljax.evals.linear import linear_probe
from ssljax.metrics import normalized_std, rankme


class Evaluator:
  """Runs the evaluations configured in ``config.eval`` on a TrainState.

  Args:
    config: the experiment config (reads ``eval.*``, ``input.data``, ``input.image_size``,
      ``input.eval_crop_fraction``, ``input.mean``/``input.std``).
    method: the Method whose ``represent`` gives the features.
    mesh: the device mesh (features are computed data-parallel).
    info: the data set's DatasetInfo.
  """

  def __init__(self, config, method, mesh, info):
    self.cfg = config.eval
    self.data_cfg = config.input.data
    self.info = info
    self.mesh = mesh
    shards = math.lcm(sharding.data_axis_size(mesh), jax.process_count())
    self.batch_size = int(math.ceil(int(self.cfg.batch_size) / shards) * shards)
    size = int(config.input.image_size)
    crop_fraction = float(config.input.eval_crop_fraction)
    mean, std = tuple(config.input.mean), tuple(config.input.std)
    represent = method.represent
    self._cache = None  # ((step, split), features, whole split?) of the last extraction.

    def features(params, method_state, images, labels, mask):
      x = augment.preprocess_eval(images, size=size, mean=mean, std=std,
                                  crop_fraction=crop_fraction)
      return represent(params["method"], method_state, x), labels, mask

    self._features = jax.jit(
        features,
        in_shardings=(None, None, *(sharding.batch_sharding(mesh),) * 3),
        out_shardings=sharding.replicated(mesh),
    )

  def features(self, state, split: str, *, max_samples: int = -1) -> dict[str, np.ndarray]:
    """``representation`` [N, F], ``embedding`` [N, K], ``label`` [N] of a split (host numpy).

    Plus ``logits`` / ``logits_<name>`` [N, C] when the method's ``represent`` returns them.

    The last extraction is kept: RankMe and the final evaluation at the same step share it when
    it covers what is asked (the whole split, or at least ``max_samples`` rows).
    """
    key = (int(jax.device_get(state.step)), split)
    if self._cache is not None and self._cache[0] == key:
      cached, complete = self._cache[1], self._cache[2]
      if complete or 0 < max_samples <= len(cached["label"]):
        return {k: v[:max_samples] if max_samples > 0 else v for k, v in cached.items()}
    result, complete = self._extract(state, split, max_samples)
    self._cache = (key, result, complete)
    return result

  def _extract(self, state, split, max_samples):
    chunks: dict[str, list[np.ndarray]] = {"representation": [], "embedding": [], "label": []}
    count = 0
    local_batch = self.batch_size // jax.process_count()
    for batch in data.iterate_eval(self.data_cfg, split, batch_size=local_batch):
      g = sharding.global_batch(
          {"image": batch["image"], "label": batch["label"], "mask": batch["mask"]}, self.mesh)
      out, labels, mask = jax.device_get(
          self._features(state.params, state.method_state, g["image"], g["label"], g["mask"]))
      keep = np.asarray(mask, bool)
      for key in out:  # ``logits`` / ``logits_<name>``: methods that train a classifier.
        if key in ("representation", "embedding") or key.startswith("logits"):
          chunks.setdefault(key, []).append(np.asarray(out[key])[keep])
      chunks["label"].append(np.asarray(labels)[keep])
      count += int(keep.sum())
      if 0 < max_samples <= count:
        break
    else:
      return {k: np.concatenate(v) for k, v in chunks.items()}, True
    return {k: np.concatenate(v)[:max_samples] for k, v in chunks.items()}, False

  def rankme(self, state) -> dict[str, float]:
    """Collapse metrics of the train split: RankMe and the normalised std (no labels needed).

    ``rankme`` / ``rankme_representation``: effective rank of the projector embeddings / the
    backbone representations; ``embedding_std``: mean per-dimension std of the l2-normalised
    embeddings (about 1 / sqrt(K) when spread out, 0 when collapsed).
    """
    n = int(self.cfg.rankme_samples)
    return collapse_metrics(self.features(state, self.data_cfg.train_split, max_samples=n), n)

  def run(self, state) -> dict[str, Any]:
    """Linear probe, kNN and RankMe as configured; returns a flat dict of floats."""
    t0 = time.perf_counter()
    cfg = self.cfg
    train = self.features(state, self.data_cfg.train_split,
                          max_samples=int(cfg.max_train_samples))
    test = self.features(state, self.data_cfg.eval_split)
    results: dict[str, Any] = collapse_metrics(train, int(cfg.rankme_samples))
    num_classes = self.info.num_classes
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
    # The method's own classifier (supervised / semi-supervised methods): ``logits`` is its chosen
    # prediction, ``logits_<name>`` alternatives (e.g. SLA's aggregated inference).
    for key in sorted(k for k in test if k.startswith("logits")):
      name = "classifier_top1" + key[len("logits"):]
      results[name] = float(np.mean(np.argmax(test[key], -1) == test["label"]))
    results["eval_time_s"] = round(time.perf_counter() - t0, 2)
    return results


def collapse_metrics(features: dict[str, np.ndarray], max_samples: int) -> dict[str, float]:
  """RankMe of embeddings and representations, the embeddings' normalised std and width K.

  ``embedding_std`` is about ``1 / sqrt(embedding_dim)`` for embeddings spread over the sphere.
  """
  emb = features["embedding"][:max_samples]
  return {"rankme": rankme(emb, max_samples=max_samples),
          "rankme_representation": rankme(features["representation"], max_samples=max_samples),
          "embedding_std": normalized_std(emb), "embedding_dim": int(emb.shape[-1])}
