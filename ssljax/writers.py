"""Run outputs: ``metrics.jsonl``, TensorBoard event files and progress lines (process 0 only)."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import sys
import time
from typing import Any, Mapping

import numpy as np


def _scalar(value: Any) -> Any:
  arr = np.asarray(value)
  if arr.size != 1:
    return None
  v = arr.item()
  if isinstance(v, (bool, np.bool_)):
    return bool(v)
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep it visible instead of writing invalid JSON.
  return v


class MetricWriter:
  """Appends one JSON object per logged step to ``metrics.jsonl`` and mirrors it to TensorBoard.

  Args:
    workdir: the run's folder.
    enabled: False on every process but 0, so multi-host runs write once.
  """

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
    self.enabled = enabled
    self._path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    self._tb = None
    if enabled:
      import tensorflow as tf  # TFDS already imports it; summaries need no extra package.

      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.fspath(workdir))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step)}
    for key, value in metrics.items():
      v = _scalar(value)
      if v is not None:
        record[key] = v
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    with self._tb.as_default(step=int(step)):
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tf.summary.scalar(key, value)
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Prints ``step N/T | loss | samples/s | elapsed | left`` lines to stdout."""

  def __init__(self, total_steps: int, *, start_step: int = 0, enabled: bool = True):
    self.total = total_steps
    self.start_step = start_step
    self.enabled = enabled
    self._t0 = time.perf_counter()

  def restart_clock(self, step: int) -> None:
    """Measures time left from here (after compilation) rather than from process start."""
    self.start_step = step
    self._t0 = time.perf_counter()

  def line(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    elapsed = time.perf_counter() - self._t0
    done = max(step - self.start_step, 1)
    left = elapsed / done * max(self.total - step, 0)
    parts = [f"step {step}/{self.total} ({100.0 * step / max(self.total, 1):.0f}%)"]
    for key, fmt in (("loss", "{:.4g}"), ("learning_rate", "lr {:.3g}"),
                     ("samples_per_sec", "{:.1f} samples/s"), ("rankme", "rankme {:.1f}"),
                     ("embedding_std", "emb std {:.3f}")):
      if key in metrics:
        text = fmt.format(float(metrics[key]))
        parts.append(text if key != "loss" else f"loss {text}")
    parts.append(f"left {datetime.timedelta(seconds=round(left))}")
    print(" | ".join(parts), flush=True)


@contextlib.contextmanager
def quiet_absl():
  """Hides absl INFO/WARNING lines (TFDS, Orbax chatter) inside the block."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def info(msg: str, *, enabled: bool = True) -> None:
  if enabled:
    print(msg, file=sys.stdout, flush=True)
