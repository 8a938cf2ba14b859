"""Sequences as data: univariate and multivariate time series ``[T, C]``, labels optional.

A split opens as a :class:`SeriesSet`; random access yields ``{"series": float32 [T, C],
"length": int32 [], "label": int32 []}`` (no ``label`` for unlabelled data). Series shorter than
the longest one of the data set (train and test together, so both splits share one shape) are
zero-padded after their ``length`` timestamps; nothing after ``length`` is data.

Names (``input.data.name``):

* ``ucr:<Name>`` / ``uea:<Name>``: the UCR (univariate) and UEA (multivariate) classification
  archives with their official train/test splits, read from aeon's ``.ts`` files
  (``pip install aeon``). The sets that ship inside aeon load offline (:func:`offline_names`:
  ArrowHead, BasicMotions, GunPoint, ItalyPowerDemand, JapaneseVowels, OSULeaf, ...); any other
  archive name is downloaded by aeon into ``input.data.data_dir`` only when
  ``input.data.download=True``, and read from there afterwards.
* ``ts``: your own ``.ts`` file (``input.data.path``, the training file); the test split is the
  file with ``_TRAIN`` replaced by ``_TEST`` when it exists, else a deterministic hold-out of
  ``input.data.test_fraction``.
* ``wav`` (a folder of ``.wav`` files, ``input.data.path``) and ``wav:<preset>``: audio as mono
  series ``[T, 1]``, read by :mod:`ssljax.data.audio` (its keys: ``sample_rate``, ``seconds``,
  ``resample``, ``label_from``, ``folders``).
* ``npz`` whose file holds ``series`` (float [N, T, C] or [N, T]), optional ``labels`` (int [N])
  and ``lengths`` (int [N]); a ``train_`` / ``test_`` prefix on each key gives both splits, else a
  hold-out as above.

``input.data.normalize``: ``'series'`` (each series z-normalised per channel over its own
timestamps: the UCR protocol, and the default for ``ucr:``), ``'channel'`` (each channel
standardised with the training split's mean and std over all timestamps: the UEA protocol of
TS2Vec and T-Loss, the default for ``uea:``), or ``'none'`` (the default for your own files).
Missing values inside a series are refused (trailing missing values mark a shorter series).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re

import numpy as np

from ssljax.errors import ConfigError, DataError

NORMALIZE = ("series", "channel", "none")
_HOLDOUT_SEED = 0


def is_series(name: str, data_cfg=None) -> bool:
  """Whether ``input.data.name`` (with its config, for ``npz``) names a sequence source."""
  if name.startswith(("ucr:", "uea:", "synth:")) or name == "ts":
    return True
  if name == "wav" or name.startswith("wav:"):  # Audio folders (ssljax.data.audio): mono series.
    return True
  if name == "npz" and data_cfg is not None:
    path = data_cfg.get("path")
    if path and os.path.isfile(path):
      try:
        with np.load(path, allow_pickle=False) as z:
          return any(k.split("_", 1)[-1] == "series" or k == "series" for k in z.files)
      except (OSError, ValueError):
        return False
  return False


@dataclasses.dataclass(frozen=True)
class SeriesSet:
  """One split: zero-padded series, their lengths, optional integer labels.

  Attributes:
    series: float32 [N, T, C].
    length: int32 [N]: timestamps of each series that are data (the rest are zeros).
    label: int32 [N] class indices, or None.
    class_names: the class of each index (the training split's classes, sorted).
  """

  series: np.ndarray
  length: np.ndarray
  label: np.ndarray | None
  class_names: tuple[str, ...] = ()

  @property
  def num_classes(self) -> int:
    return len(self.class_names) if self.label is not None else 0

  def __len__(self) -> int:
    return len(self.series)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    example = {"series": self.series[index], "length": self.length[index]}
    if self.label is not None:
      example["label"] = self.label[index]
    return example

  def element_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    spec = {"series": (tuple(self.series.shape[1:]), np.dtype(np.float32)),
            "length": ((), np.dtype(np.int32))}
    if self.label is not None:
      spec["label"] = ((), np.dtype(np.int32))
    return spec


# ------------------------------------------------------------------------------------- .ts files


def read_ts(path: str) -> tuple[list[np.ndarray], list[str] | None, dict]:
  """Reads a ``.ts`` file (the UCR/UEA archives' format) into series ``[T_i, C]`` and labels.

  Returns ``(series, labels, header)``: ``labels`` is None when ``@classLabel false``;
  ``header`` holds the ``@`` fields, lower-cased. Values ``?`` / ``NaN`` become NaN.

  Raises:
    DataError: the file is missing or unreadable, a value is not a number, time stamps
      (``@timeStamps true``: values are placed on the regular grid of the smallest spacing, gaps
      become missing values) are irregular, or a line has another number of dimensions than the
      first (the file and 1-based line named).
  """
  try:
    with open(path, encoding="utf-8", errors="replace") as fh:
      lines = fh.read().splitlines()
  except OSError as e:
    raise DataError(f"cannot read the .ts file {path}: {e.strerror}") from None
  header: dict[str, str] = {}
  series, labels, dims = [], [], None
  in_data = False
  for number, raw in enumerate(lines, 1):
    line = raw.strip()
    if not line or line.startswith("#"):
      continue
    if not in_data:
      if line.startswith("@"):
        key, _, value = line[1:].partition(" ")
        key = key.lower()
        if key == "data":
          in_data = True
        else:
          header[key] = value.strip()
        continue
      raise DataError(f"{path} line {number}: expected an @ header line or @data before the "
                      "values; is this a .ts file?")
    stamped = header.get("timestamps", "false").lower() == "true"
    labelled = header.get("classlabel", "false").split(" ")[0].lower() == "true"
    fields = _split_outside_parentheses(line) if stamped else line.split(":")
    if labelled:
      if len(fields) < 2:
        raise DataError(f"{path} line {number}: no ':<class>' at the end of the line, but the "
                        "header says @classLabel true")
      labels.append(fields[-1].strip())
      fields = fields[:-1]
    if dims is None:
      dims = len(fields)
    elif len(fields) != dims:
      raise DataError(f"{path} line {number}: {len(fields)} dimensions where the first series "
                      f"has {dims}; every series needs the same channels")
    try:
      if stamped:
        chans = [_stamped_values(f) for f in fields]
      else:
        chans = [np.array([_value(v) for v in f.split(",") if v.strip()], np.float64)
                 for f in fields]
    except ValueError as e:
      raise DataError(f"{path} line {number}: {e}") from None
    t = max(len(c) for c in chans)
    arr = np.full((t, dims), np.nan)
    for j, c in enumerate(chans):
      arr[:len(c), j] = c
    series.append(arr)
  if not in_data:
    raise DataError(f"{path}: no @data line; is this a .ts file?")
  if not series:
    raise DataError(f"{path}: holds no series")
  labelled = header.get("classlabel", "false").split(" ")[0].lower() == "true"
  return series, (labels if labelled else None), header


def _split_outside_parentheses(line: str) -> list[str]:
  """Splits a time-stamped line at the ``:`` between dimensions, not those inside a
  ``(2007-01-01 00:00:00,1.0)`` pair."""
  fields, depth, start = [], 0, 0
  for i, ch in enumerate(line):
    depth += (ch == "(") - (ch == ")")
    if ch == ":" and depth == 0:
      fields.append(line[start:i])
      start = i + 1
  return fields + [line[start:]]


def _value(text: str) -> float:
  text = text.strip()
  if text in ("?", "NaN", "nan"):
    return np.nan
  try:
    return float(text)
  except ValueError:
    raise ValueError(f"a value is not a number ({text!r})") from None


_STAMPED = re.compile(r"\(([^,()]*),([^()]*)\)")


def _stamped_values(field: str) -> np.ndarray:
  """One dimension written as ``(timestamp,value),(timestamp,value),...`` (``@timeStamps true``)
  -> its values on a regular grid [T] float64: slot ``(t - t_0) / step`` for the smallest step
  between consecutive time stamps, NaN where a slot has no value (a gap).

  Time stamps are numbers or dates (``2007-01-01 00:00:00``, anything ``numpy.datetime64``
  reads). Raises ValueError (the caller names the file and line) for a time stamp that is neither,
  repeated time stamps, or spacings that are not whole multiples of the smallest step.
  """
  pairs = _STAMPED.findall(field)
  if not pairs:
    return np.zeros(0)
  stamps = [p[0].strip() for p in pairs]
  try:
    t = np.array([float(x) for x in stamps], np.float64)
  except ValueError:
    try:
      t = np.array([np.datetime64(x, "ns") for x in stamps]).astype(np.int64).astype(np.float64)
    except ValueError:
      raise ValueError(f"time stamp {stamps[0]!r}... is neither a number nor a date") from None
  values = np.array([_value(p[1]) for p in pairs], np.float64)
  order = np.argsort(t, kind="stable")
  t, values = t[order], values[order]
  if len(t) == 1:
    return values
  gaps = np.diff(t)
  if (gaps <= 0).any():
    raise ValueError("a time stamp repeats; each time stamp of a dimension must be unique")
  slots = (t - t[0]) / gaps.min()
  index = np.rint(slots).astype(np.int64)
  if np.abs(slots - index).max() > 1e-6:
    raise ValueError("irregular time stamps (their spacings are not whole multiples of the "
                     "smallest one); resample the series to a regular grid first")
  out = np.full(index[-1] + 1, np.nan)
  out[index] = values
  return out


# ---------------------------------------------------------------------------------- archives


def _aeon_data_dir() -> str:
  try:
    import aeon
  except ImportError:
    raise ConfigError("ucr:/uea: data sets are read from aeon's archive files: pip install aeon "
                      "(or pip install 'ssljax[timeseries]')") from None
  return os.path.join(os.path.dirname(aeon.__file__), "datasets", "data")


@functools.cache
def offline_names() -> tuple[str, ...]:
  """The UCR/UEA classification sets that ship inside the installed aeon (no download)."""
  root = _aeon_data_dir()
  names = []
  for name in sorted(os.listdir(root)):
    train = os.path.join(root, name, f"{name}_TRAIN.ts")
    if os.path.isfile(train) and os.path.isfile(os.path.join(root, name, f"{name}_TEST.ts")):
      with open(train, encoding="utf-8", errors="replace") as fh:
        head = fh.read(20000).lower()
      if "@classlabel true" in head:
        names.append(name)
  return tuple(names)


def _archive_files(data_cfg, name: str) -> tuple[str, str]:
  """The (train, test) ``.ts`` files of ``ucr:<Name>`` / ``uea:<Name>``, downloading on request."""
  archive = name.split(":", 1)[1]
  if not archive or "/" in archive:
    raise ConfigError(f"input.data.name={name!r}: give an archive name, e.g. ucr:GunPoint")
  if archive in offline_names():
    root = os.path.join(_aeon_data_dir(), archive)
  else:
    cache = os.path.expanduser(data_cfg.get("data_dir") or "~/ssljax_data")
    root = os.path.join(cache, "ucr_uea", archive)
    if not os.path.isfile(os.path.join(root, f"{archive}_TRAIN.ts")):
      if not data_cfg.get("download", False):
        raise ConfigError(
            f"input.data.name={name!r} is not among the sets that ship with aeon "
            f"({', '.join(offline_names())}); set input.data.download=True to fetch it into "
            f"{cache}/ucr_uea (or check the spelling)")
      _download(archive, os.path.dirname(root))
  return (os.path.join(root, f"{archive}_TRAIN.ts"), os.path.join(root, f"{archive}_TEST.ts"))


def _download(archive: str, into: str) -> None:  # pragma: no cover - needs the network
  from aeon.datasets import load_classification

  os.makedirs(into, exist_ok=True)
  print(f"downloading {archive} with aeon into {into} ...", flush=True)
  try:
    load_classification(archive, extract_path=into)
  except Exception as e:  # noqa: BLE001 - aeon raises several types for a bad name or no network
    raise DataError(f"aeon could not download {archive!r} ({type(e).__name__}: {e}); check the "
                    "name against the UCR/UEA lists and the network") from None


# ------------------------------------------------------------------------------------ loading


def _holdout(n: int, fraction) -> tuple[np.ndarray, np.ndarray]:
  fraction = float(fraction)
  if not 0.0 < fraction < 1.0:
    raise ConfigError(f"input.data.test_fraction={fraction!r} must be in (0, 1)")
  perm = np.random.default_rng(_HOLDOUT_SEED).permutation(n)
  n_test = max(1, int(round(n * fraction)))
  return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _trim(where: str, series: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
  """Drops trailing all-missing timestamps (a shorter series); refuses missing values inside."""
  out, lengths = [], []
  for i, s in enumerate(series):
    present = ~np.isnan(s).any(axis=1)
    n = len(s) if present.all() else (int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0)
    s = s[:n]
    if n == 0:
      raise DataError(f"{where}: series {i + 1} holds no values")
    if np.isnan(s).any():
      raise DataError(f"{where}: series {i + 1} has missing values inside it (not only at its "
                      "end); fill or drop them: this protocol does not allow missing values")
    out.append(s)
    lengths.append(n)
  return out, np.asarray(lengths, np.int32)


def _raw(data_cfg, name: str) -> dict:
  """``{"train": (series list, labels|None), "test": (...)}`` before padding and scaling."""
  if name.startswith("synth:"):  # TimeX's synthetic sets with known salient timestamps.
    from ssljax.data import synth_series

    return synth_series.raw_splits(name)
  if name.startswith(("ucr:", "uea:")):
    files = _archive_files(data_cfg, name)
    (tr, ytr, _), (te, yte, _) = read_ts(files[0]), read_ts(files[1])
    return {"train": (tr, ytr, files[0]), "test": (te, yte, files[1])}
  path = data_cfg.get("path")
  if not path:
    raise ConfigError(f"input.data.name={name!r} needs input.data.path (the file to read)")
  if not os.path.isfile(path):
    raise DataError(f"input.data.path={path!r}: no such file")
  if name == "ts":
    tr, ytr, _ = read_ts(path)
    test_path = path.replace("_TRAIN", "_TEST")
    if test_path != path and os.path.isfile(test_path):
      te, yte, _ = read_ts(test_path)
      return {"train": (tr, ytr, path), "test": (te, yte, test_path)}
    return _split_holdout(data_cfg, tr, ytr, path)
  return _npz(data_cfg, path)


def _split_holdout(data_cfg, series, labels, where) -> dict:
  train_idx, test_idx = _holdout(len(series), data_cfg.get("test_fraction", 0.2))
  pick = lambda idx: ([series[i] for i in idx],  # noqa: E731
                      None if labels is None else [labels[i] for i in idx], where)
  return {"train": pick(train_idx), "test": pick(test_idx)}


def _npz(data_cfg, path: str) -> dict:
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise DataError(f"input.data.path={path!r}: not a readable .npz ({e})") from None

  def one(prefix: str):
    x = arrays.get(prefix + "series")
    if x is None:
      return None
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise DataError(f"{path}: {prefix}series has shape {x.shape}; give [N, T, C] or [N, T]")
    lengths = arrays.get(prefix + "lengths")
    series = [x[i, :int(lengths[i])] if lengths is not None else x[i] for i in range(len(x))]
    labels = arrays.get(prefix + "labels")
    if labels is not None and len(labels) != len(series):
      raise DataError(f"{path}: {len(labels)} {prefix}labels for {len(series)} series")
    return series, None if labels is None else [str(v) for v in labels.tolist()], path

  if "train_series" in arrays:
    train, test = one("train_"), one("test_")
    if test is None:
      return _split_holdout(data_cfg, *train)
    return {"train": train, "test": test}
  whole = one("")
  if whole is None:
    raise DataError(f"{path}: no 'series' (or 'train_series') array; it holds {sorted(arrays)}")
  return _split_holdout(data_cfg, *whole)


def _normalize_mode(data_cfg, name: str) -> str:
  mode = data_cfg.get("normalize", "auto") or "auto"
  if mode == "auto":
    mode = {"ucr": "series", "uea": "channel"}.get(name.split(":", 1)[0], "none")
  if mode not in NORMALIZE:
    raise ConfigError(f"input.data.normalize={mode!r}: choose one of {', '.join(NORMALIZE)} "
                      "or 'auto'")
  return mode


def _pad(series: list[np.ndarray], t: int) -> np.ndarray:
  out = np.zeros((len(series), t, series[0].shape[1]), np.float32)
  for i, s in enumerate(series):
    out[i, :len(s)] = s
  return out


@functools.lru_cache(maxsize=8)
def _load_both(name: str, path, data_dir, download: bool, normalize: str, test_fraction,
               labels_on: bool) -> dict[str, SeriesSet]:
  data_cfg = {"path": path, "data_dir": data_dir, "download": download,
              "test_fraction": test_fraction}
  raw = _raw(data_cfg, name)
  parts = {}
  for split in ("train", "test"):
    series, labels, where = raw[split]
    series, lengths = _trim(where, series)
    parts[split] = (series, labels, lengths, where)
  c_train = parts["train"][0][0].shape[1]
  for split in ("train", "test"):
    for i, s in enumerate(parts[split][0]):
      if s.shape[1] != c_train:
        raise DataError(f"{parts[split][3]}: series {i + 1} of the {split} split has "
                        f"{s.shape[1]} channels, the training split {c_train}")
  if normalize == "series":
    for split in parts:
      for s in parts[split][0]:
        s -= s.mean(axis=0, keepdims=True)
        std = s.std(axis=0, keepdims=True)
        s /= np.where(std > 0, std, 1.0)
  elif normalize == "channel":
    stacked = np.concatenate(parts["train"][0], axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    for split in parts:
      for s in parts[split][0]:
        s -= mean
        s /= std
  t = max(int(p[2].max()) for p in parts.values())
  classes: tuple[str, ...] = ()
  if labels_on and parts["train"][1] is not None:
    classes = training_classes(parts["train"][1])
  out = {}
  for split, (series, labels, lengths, where) in parts.items():
    label = None
    if classes:
      if labels is None:
        raise DataError(f"{where}: the {split} split has no labels but the training split has")
      label, unknown = label_codes(labels, classes)
      if unknown:
        raise DataError(f"{where}: class(es) {unknown[:5]} of the {split} split do not occur in "
                        "the training split")
    out[split] = SeriesSet(_pad(series, t), lengths, label, classes)
  return out


def training_classes(train_labels) -> tuple[str, ...]:
  """The class names of a training split's labels, in order (numbers numerically)."""
  return tuple(sorted(set(train_labels), key=_class_key))


def label_codes(labels, classes: tuple[str, ...]) -> tuple[np.ndarray | None, list[str]]:
  """``(codes int32 [N], [])`` of ``labels`` as indices into ``classes``; ``(None, unknown)``
  when some labels are not among them (the caller names its file in the error)."""
  index = {c: i for i, c in enumerate(classes)}
  unknown = sorted(set(labels) - set(index))
  if unknown:
    return None, unknown
  return np.asarray([index[v] for v in labels], np.int32), []


def _class_key(name: str):
  """Numeric class names sort as numbers ('2' before '10'), others as text."""
  try:
    return (0, float(name), name)
  except ValueError:
    return (1, 0.0, name)


def load_series(data_cfg, split: str, *, key: str = "split") -> SeriesSet:
  """Opens split ``'train'`` or ``'test'`` of the configured sequence data set.

  Raises:
    ConfigError: a bad name, normalisation or split; an archive that is not offline with
      ``download`` off (the offline ones listed); aeon not installed.
    DataError: a missing or unreadable file, missing values inside a series, channels that differ
      between series or splits, test classes the training split lacks.
  """
  name = str(data_cfg.get("name"))
  if name == "wav" or name.startswith("wav:"):
    from ssljax.data import audio

    return audio.load_audio(data_cfg, split, key=key)
  if split not in ("train", "test"):
    raise ConfigError(f"{key}={split!r}: sequence data sets have the splits 'train' and 'test'")
  sets = _load_both(name, data_cfg.get("path"), data_cfg.get("data_dir"),
                    bool(data_cfg.get("download", False)), _normalize_mode(data_cfg, name),
                    float(data_cfg.get("test_fraction", 0.2)),
                    bool(data_cfg.get("labels", True)))
  return sets[split]
