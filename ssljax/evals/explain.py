"""Saliency against ground truth: TimeX's attribution metrics (AUPRC, AUP, AUR).

Queen et al. (NeurIPS 2023, section 5; the released ``ground_truth_xai_eval``) score an explainer
on synthetic data whose salient timestamps are known (``ssljax.data.synth_series``), one series at
a time, then average over the series:

* each series' saliency [T, C] is min-max normalised to [0, 1] (``(s - min) / (max - min +
  1e-9)``), flattened with its ground truth;
* AUPRC: the average precision ``sum_n (R_n - R_{n-1}) P_n`` over the thresholds (scikit-learn's
  ``average_precision_score``);
* AUP / AUR: the area under precision / recall as functions of the threshold (trapezoids over the
  distinct normalised scores, ascending; a point is "salient" when its score is >= the threshold),
  as ``auc(thresholds, precision[:-1])`` of ``precision_recall_curve`` in the released code.

``eval.evals='explain'`` (with ``input.data.name='synth:<Name>'``) runs the method's ``represent``
on the test split (its ``saliency`` [B, T, C]) and reports ``explain_auprc``, ``explain_aup``,
``explain_aur`` over the scored series (``synth_series.scored_rows``), ``explain_kept`` (the share
of points with saliency > 0.5) and the same metrics of a uniformly random saliency
(``random_auprc``, ...: the baseline to beat).
"""

from __future__ import annotations

import jax
import numpy as np

from ssljax.data import series as series_lib
from ssljax.data import synth_series
from ssljax.errors import ConfigError

RANDOM_SEED = 0


def normalize(scores: np.ndarray) -> np.ndarray:
  """Min-max normalisation of one series' saliency (any shape), as the released evaluation."""
  s = np.asarray(scores, np.float64)
  return (s - s.min()) / (s.max() - s.min() + 1e-9)


def precision_recall_by_threshold(scores: np.ndarray, truth: np.ndarray):
  """``(thresholds, precision, recall)`` at each distinct score, ascending: precision and recall
  of calling the points with score >= threshold salient. ``scores``, ``truth``: flat [N]."""
  scores = np.asarray(scores, np.float64).ravel()
  truth = np.asarray(truth).ravel().astype(bool)
  order = np.argsort(-scores, kind="mergesort")
  s, y = scores[order], truth[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # Last index of each distinct score.
  tp = np.cumsum(y)[last]
  called = last + 1
  precision = tp / called
  recall = tp / max(int(truth.sum()), 1)
  return s[last][::-1], precision[::-1], recall[::-1]


def series_metrics(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
  """``(auprc, aup, aur)`` of one series' saliency against its ground truth (any equal shapes)."""
  thresholds, precision, recall = precision_recall_by_threshold(normalize(scores), truth)
  # Average precision: recall steps (descending thresholds) times the precision reached there.
  rec_desc, prec_desc = recall[::-1], precision[::-1]
  auprc = float(np.sum(np.diff(np.r_[0.0, rec_desc]) * prec_desc))
  return auprc, float(np.trapezoid(precision, thresholds)), float(np.trapezoid(recall, thresholds))


def explanation_metrics(saliency: np.ndarray, truth: np.ndarray, *,
                        prefix: str = "explain_") -> dict[str, float]:
  """The mean ``auprc``, ``aup``, ``aur`` over series (axis 0) that have a salient point."""
  rows = [series_metrics(s, g) for s, g in zip(saliency, truth, strict=True) if np.any(g)]
  if not rows:
    raise ConfigError("explain: no scored series has a salient point; check the data's ground "
                      "truth")
  auprc, aup, aur = np.mean(np.asarray(rows), axis=0)
  return {f"{prefix}auprc": float(auprc), f"{prefix}aup": float(aup), f"{prefix}aur": float(aur)}


def saliency_of(represent, params, method_state, series: np.ndarray, *,
                batch_size: int) -> np.ndarray:
  """``represent(...)["saliency"]`` [N, T, C] of every series, in fixed-size (padded) batches."""
  fn = jax.jit(lambda p, s, batch: represent(p, s, batch)["saliency"])
  lengths = np.full(batch_size, series.shape[1], np.int32)
  out = []
  for start in range(0, len(series), batch_size):
    chunk = series[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    got = fn(params, method_state, {"series": chunk, "length": lengths})
    out.append(np.asarray(jax.device_get(got))[:batch_size - pad])
  return np.concatenate(out)


def check(ev) -> None:
  """ConfigError (when the Evaluator is built) unless the probe data has ground-truth saliency."""
  name = str(ev.data_cfg.name)
  if not synth_series.is_synth(name):
    raise ConfigError(f"eval.evals='explain' needs data with ground-truth saliency "
                      f"(synth:<Name>); the probe data is {name!r}")


def evaluate(ev, state) -> dict[str, float]:
  """``eval.evals='explain'``: the metrics above on the probe data's test split."""
  check(ev)
  name = str(ev.data_cfg.name)
  split = synth_series.load_split(name, str(ev.data_cfg.eval_split))
  if "saliency" not in jax.eval_shape(
      ev.method.represent, state.params["method"], state.method_state,
      {"series": split.series[:2], "length": np.full(2, split.series.shape[1], np.int32)}):
    raise ConfigError(f"eval.evals='explain': method={ev.method.name!r} gives no saliency; use "
                      "an explainer (timex)")
  rows = synth_series.scored_rows(name, split.label)
  # The series as training read them (input.data.normalize applied), in the generator's order;
  # the ground truth comes from the generator.
  seen = series_lib.load_series(ev.data_cfg, str(ev.data_cfg.eval_split))
  series, truth = np.asarray(seen.series)[rows], split.salient[rows]
  saliency = saliency_of(ev.method.represent, state.params["method"], state.method_state, series,
                         batch_size=int(ev.cfg.batch_size))
  results = explanation_metrics(saliency, truth)
  results["explain_kept"] = float(np.mean(saliency > 0.5))
  if getattr(ev, "_random_explain", None) is None:
    noise = np.random.default_rng(RANDOM_SEED).uniform(size=truth.shape)
    ev._random_explain = explanation_metrics(noise, truth, prefix="random_")  # noqa: SLF001
  results.update(ev._random_explain)  # noqa: SLF001
  return results
