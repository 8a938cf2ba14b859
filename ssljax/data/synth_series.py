"""Synthetic time series whose salient timestamps are known: TimeX's attribution benchmarks.

Queen et al., "Encoding Time-Series Explanations through Self-Supervised Model Behavior
Consistency" (NeurIPS 2023), section 5 and appendix, evaluate explainers on synthetic sets where
the class is decided by a few timestamps only, and score a saliency map against those timestamps
(``ssljax.evals.explain``). The generators below follow the paper's descriptions and the released
generators' parameters (``txai/synth_data``: ``freq_shapes.py``, ``seq_comb_better.py``,
``lowvardetect.py``), written again here with a seeded NumPy generator so every split is the same
on every machine:

* ``FreqShapes`` (T = 50, 1 channel, 4 classes): Gaussian noise (std 0.25) plus 3-point spikes,
  downward (``0.25 k^2 - 2``, k = -1, 0, 1) or upward (``2 - 0.25 k^2``), repeated every 10 or 17
  timestamps from a random start. Class = (shape, period): 0 = (down, 10), 1 = (up, 10),
  2 = (down, 17), 3 = (up, 17). Salient: the spikes' timestamps.
* ``SeqComb-UV`` (T = 200, 1 channel, 4 classes): a NARMA(2) background plus Gaussian noise
  (std 0.01); classes 1-3 overwrite two non-overlapping windows of 10-19 timestamps with a line
  plus ``sin(a x)`` (a ~ Poisson(10)) running between ``-5 |min|`` and ``5 |max|`` of the
  background: class 1 decreasing-decreasing, 2 increasing-increasing, 3 increasing-decreasing.
  Class 0 is the background alone (no salient timestamps). Salient: the two windows.
* ``LowVarDetect`` (T = 200, 2 channels, 4 classes): NARMA(2) plus Gaussian noise (std 1) in
  each channel; one window of 10-19 timestamps (starting in [20, T - 40)) of one channel is
  replaced by low-variance noise N(+-1.5, 0.1): channel 0 for classes 0 and 1, channel 1 for 2
  and 3; mean -1.5 for classes 0 and 2, +1.5 for 1 and 3. Salient: that window, that channel.

The NARMA(2) background is the recursion the released generators sample through ``timesynth``:
``y_t = 0.3 y_{t-1} + 0.05 y_{t-1} S_t + 1.5 u_{t-2} u_t + 0.1`` with ``u ~ U(0, 0.5)`` and zero
initial values, where timesynth's ``S_t`` sums an empty slice of the history for order 2 and so
is 0: ``y_t = 0.3 y_{t-1} + 1.5 u_{t-2} u_t + 0.1``.

Splits as the released data: 5,000 training and 1,000 test series, classes balanced (N // 4 each,
the remainder to the last class), rows shuffled. The official scoring of SeqComb-UV and
LowVarDetect skips class 0 (:func:`scored_rows`).

As a data source: ``input.data.name='synth:FreqShapes'`` (``synth:SeqComb-UV``,
``synth:LowVarDetect``) yields ``{"series", "length", "label"}`` like the UCR sets
(``ssljax.data.series``); the ground truth is :func:`load_split`'s ``salient``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ssljax.errors import ConfigError

PREFIX = "synth:"
# name -> (T, channels); the released generators' settings.
SHAPES = {"FreqShapes": (50, 1), "SeqComb-UV": (200, 1), "LowVarDetect": (200, 2)}
NUM_CLASSES = 4
SIZES = {"train": 5000, "test": 1000}
# Sets whose class 0 carries no (or, for LowVarDetect, is not scored for) ground truth.
SKIP_CLASS0 = ("SeqComb-UV", "LowVarDetect")
_ALIASES = {k.lower().replace("-", "").replace("_", ""): k for k in SHAPES}
_SPLIT_SEED = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class SynthSet:
  """One generated split.

  Attributes:
    series: float32 [N, T, C].
    label: int32 [N] in ``[0, 4)``.
    salient: bool [N, T, C]: the ground-truth salient timestamps (and channels).
  """

  series: np.ndarray
  label: np.ndarray
  salient: np.ndarray


def is_synth(name: str) -> bool:
  """Whether ``input.data.name`` names one of these sets (``synth:<Name>``)."""
  return isinstance(name, str) and name.startswith(PREFIX)


def canonical(name: str) -> str:
  """``'synth:freqshapes'`` or ``'FreqShapes'`` -> ``'FreqShapes'``; ConfigError if unknown."""
  bare = name[len(PREFIX):] if is_synth(name) else name
  key = bare.lower().replace("-", "").replace("_", "")
  if key not in _ALIASES:
    raise ConfigError(f"input.data.name={name!r}: no synthetic set {bare!r}; choose one of "
                      f"{', '.join(PREFIX + k for k in SHAPES)}")
  return _ALIASES[key]


# ------------------------------------------------------------------------------- generators


def narma2(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
  """[n, t] NARMA(2) backgrounds ``y_t = 0.3 y_{t-1} + 1.5 u_{t-2} u_t + 0.1`` (module doc)."""
  u = rng.uniform(0.0, 0.5, size=(n, t + 2))
  y = np.zeros((n, t + 1))
  for i in range(t):
    y[:, i + 1] = 0.3 * y[:, i] + 1.5 * u[:, i] * u[:, i + 2] + 0.1
  return y[:, 1:]


def _freq_shapes(rng, label, t, c):
  n = len(label)
  x = np.zeros((n, t, c))
  salient = np.zeros((n, t, c), bool)
  for row, k in enumerate(label):
    up, period = k % 2 == 1, (10, 17)[k // 2]
    start = rng.integers(0, t - period)
    for centre in range(start, t, period):
      lo, hi = centre - 1, centre + 2
      if lo < 0 or hi > t:
        continue
      bump = 0.25 * np.arange(-1, 2) ** 2 - 2.0
      x[row, lo:hi, 0] = -bump if up else bump
      salient[row, lo:hi, 0] = True
  x += rng.normal(0.0, 0.25, size=x.shape)
  return x, salient


def _seq_comb_uv(rng, label, t, c):
  n = len(label)
  x = (narma2(rng, n, t) + rng.normal(0.0, 0.01, size=(n, t)))[..., None]
  salient = np.zeros((n, t, c), bool)
  for row, k in enumerate(label):
    if k == 0:
      continue
    low, high = -5.0 * abs(x[row].min()), 5.0 * abs(x[row].max())
    up, down = (low, high), (high, low)
    ends = {1: (down, down), 2: (up, up), 3: (up, down)}[int(k)]
    first_end = 0
    for j, (y1, y2) in enumerate(ends):
      length = int(rng.integers(10, 20))
      start = int(rng.integers(0, t // 2) if j == 0 else rng.integers(first_end, t - length))
      first_end = start + length
      freq = rng.poisson(10)
      x1, x2 = -(length // 2), length // 2 + length % 2
      xs = np.arange(x1, x2)
      x[row, start:start + length, 0] = (y2 - y1) / (x2 - x1) * xs + np.sin(freq * xs)
      salient[row, start:start + length, 0] = True
  return x, salient


def _low_var_detect(rng, label, t, c):
  n = len(label)
  x = np.stack([narma2(rng, n, t) for _ in range(c)], axis=-1)
  x += rng.normal(0.0, 1.0, size=x.shape)
  salient = np.zeros((n, t, c), bool)
  for row, k in enumerate(label):
    channel = 0 if k in (0, 1) else 1
    length = int(rng.integers(10, 20))
    start = int(rng.integers(20, t - 40))
    mean = -1.5 if k in (0, 2) else 1.5
    x[row, start:start + length, channel] = rng.normal(mean, 0.1, size=length)
    salient[row, start:start + length, channel] = True
  return x, salient


_GENERATORS = {"FreqShapes": _freq_shapes, "SeqComb-UV": _seq_comb_uv,
               "LowVarDetect": _low_var_detect}


def generate(name: str, n: int, *, seed: int) -> SynthSet:
  """``n`` series of the set ``name``, classes balanced as the released data, rows shuffled.

  Deterministic: the same ``(name, n, seed)`` gives the same arrays on every machine (NumPy's
  PCG64 seeded with ``seed`` and the set's index).
  """
  name = canonical(name)
  if int(n) < NUM_CLASSES:
    raise ConfigError(f"{name}: n={n} series cannot hold the {NUM_CLASSES} classes")
  t, c = SHAPES[name]
  rng = np.random.default_rng([int(seed), list(SHAPES).index(name)])
  counts = [n // NUM_CLASSES] * (NUM_CLASSES - 1)
  counts.append(n - sum(counts))
  label = np.repeat(np.arange(NUM_CLASSES), counts)
  x, salient = _GENERATORS[name](rng, label, t, c)
  order = rng.permutation(n)
  return SynthSet(series=x[order].astype(np.float32), label=label[order].astype(np.int32),
                  salient=salient[order])


@functools.lru_cache(maxsize=8)
def load_split(name: str, split: str) -> SynthSet:
  """The fixed ``'train'`` (5,000 series) or ``'test'`` (1,000) split of ``synth:<Name>``."""
  if split not in SIZES:
    raise ConfigError(f"split={split!r}: synthetic sets have the splits 'train' and 'test'")
  return generate(name, SIZES[split], seed=_SPLIT_SEED[split])


def scored_rows(name: str, label: np.ndarray) -> np.ndarray:
  """bool [N]: the rows the official attribution scoring uses (class 0 skipped for SeqComb-UV,
  whose class 0 has no salient timestamps, and LowVarDetect, as the released evaluation)."""
  label = np.asarray(label)
  if canonical(name) in SKIP_CLASS0:
    return label != 0
  return np.ones(len(label), bool)


def raw_splits(name: str) -> dict:
  """Both splits as ``ssljax.data.series`` reads a source: ``{split: (series list, label
  strings, where)}``."""
  out = {}
  for split in SIZES:
    part = load_split(canonical(name), split)
    out[split] = (list(part.series.astype(np.float64)), [str(v) for v in part.label.tolist()],
                  f"{name} ({split})")
  return out
