"""Host-side input iterators: a source's split -> per-process shard -> shuffled uint8 batches.

The splits come from :mod:`ssljax.data.sources`; the checks of user input from
:mod:`ssljax.data.checks`.

Data config (``config.input.data``):

* ``name``: ``'digits'`` (scikit-learn's digits, prepared locally by :mod:`ssljax.data.digits`),
  any TFDS name (``cifar10``, ``cifar100``, ``stl10``, ``imagenette``, ``imagenet2012``, ...),
  ``'folder'`` or ``'npz'``.
* ``data_dir``: TFDS data dir (None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
* ``path``: for ``folder``, a folder of ``<path>/<class>/<file>.{png,jpg,jpeg,bmp}`` (classes are
  the sorted sub-folder names); for ``npz``, a ``.npz`` with ``images`` uint8 [N, H, W, C] or
  [N, H, W] and ``labels`` int [N], optionally ``test_images`` / ``test_labels``.
* ``image_size``: side of the square that ``folder`` images are brought to on the host (shorter
  side resized to it, then centre-cropped; aspect ratio kept). TFDS data sets whose images have no
  fixed shape (imagenette, imagenet2012) are brought to it the same way; others ignore it.
* ``download``: only when True may TFDS download and prepare a real data set (in array_record
  format). ``digits`` is prepared locally in any case.
* ``train_split`` / ``eval_split``: TFDS split strings (``'train'``, ``'test'``,
  ``'train[:90%]'``, ...). ``folder`` and ``npz`` have exactly ``'train'`` and ``'test'``; without
  ``test_*`` arrays (npz) and always for ``folder``, ``'test'`` is a deterministic 10% hold-out
  (a fixed-seed permutation, at least one example) and ``'train'`` is the rest.

TFDS data is read with ``tfds.data_source`` when its files have random access (array_record,
which ``download=True`` prepares). A data set prepared as tfrecord (older preparations, shared
TFDS folders) is read in order with tf.data instead: each epoch is the shard shuffled through a
10,000-example buffer with a seed derived from ``(seed, epoch)``, and the resume position is
``(epoch, batch)``, so a restored run re-reads at most one epoch's encoded records (not decoded)
to reach the same batch. The last incomplete batch of each epoch is dropped on that path.
Images come out as stored: uint8 [H, W, C], grayscale keeps C = 1 (the augmentation tiles it to
RGB); labels come out as int32.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import grain
import jax
import numpy as np

from ssljax.data.checks import check_batch_size, check_label_fraction
from ssljax.data.sources import (
    ArraySource,
    SequentialTfdsSource,
    Split,
    config_get,
    data_name,
    open_split,
)
from ssljax.errors import ConfigError, DataError

# Reading threads for on-disk (TFDS) sources. Each grain element is a whole batch, so the buffer
# counts batches: keep it small, a buffer of hundreds of ImageNet batches would not fit in memory.
_DISK_READ = grain.ReadOptions(num_threads=8, prefetch_buffer_size=8)
# In-memory arrays: threads would only contend for the GIL.
_MEMORY_READ = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)

def labelled_mask(num: int, fraction: float) -> np.ndarray:
  """Which of ``num`` training examples keep their label when only ``fraction`` of them do.

  A fixed subset of exactly ``round(fraction * num)`` examples (at least one), chosen by a seeded
  permutation of the example indices, so every run, process and resumed run agrees on it and it
  does not depend on the shuffle seed. Not class-balanced: on small fractions a class may be
  missing; check the printed count.
  """
  count = max(1, int(round(float(fraction) * num)))
  mask = np.zeros((num,), bool)
  mask[np.random.default_rng(20260101).permutation(num)[:count]] = True
  return mask


class _Labelled:
  """Adds ``labelled`` (bool) to each example of a random-access source (semi-supervised runs)."""

  def __init__(self, source, mask: np.ndarray):
    self._source = source
    self._mask = mask

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {**self._source[index], "labelled": np.bool_(self._mask[index])}


class SequentialTrainIterator:
  """Endless shuffled batches from a :class:`SequentialTfdsSource`; checkpointable by position.

  ``get_state``/``set_state`` exchange JSON bytes ``{"epoch": e, "batch": b}``, the form grain's
  Orbax checkpoint handler stores for iterators that are not grain datasets.
  """

  def __init__(self, source: SequentialTfdsSource, *, local_batch: int, seed: int, index: int,
               count: int):
    self._source = source
    self._local_batch = local_batch
    self._seed = int(seed)
    self._index, self._count = index, count
    shard = len(range(index, len(source), count))
    self.batches_per_epoch = shard // local_batch
    if self.batches_per_epoch == 0:
      raise DataError(f"input.data.train_split: this process's {shard} examples do not fill one "
                      f"batch of {local_batch}; use a smaller input.batch_size or more data")
    self._epoch, self._batch = 0, 0
    self._examples = None

  def _epoch_seed(self) -> int:
    return int(np.random.SeedSequence([self._seed, self._epoch]).generate_state(1)[0])

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._examples is None:
      self._examples = self._source.examples(
          index=self._index, count=self._count, shuffle_seed=self._epoch_seed(),
          skip=self._batch * self._local_batch)
    items = [next(self._examples) for _ in range(self._local_batch)]
    self._batch += 1
    if self._batch == self.batches_per_epoch:
      self._epoch, self._batch, self._examples = self._epoch + 1, 0, None
    return _stack(items)

  def get_state(self) -> bytes:
    return json.dumps({"epoch": self._epoch, "batch": self._batch}).encode()

  def set_state(self, state: bytes | str | dict) -> None:
    if isinstance(state, bytes | str):
      state = json.loads(state)
    self._epoch, self._batch = int(state["epoch"]), int(state["batch"])
    self._examples = None

  def start_prefetch(self) -> None:
    """Called by grain's checkpoint handler after a restore; reading starts on the next batch."""


class ColumnTrainIterator:
  """Endless shuffled batches sliced from in-memory columns; checkpointable by position.

  For sources that are a few NumPy columns of scalars (interactions: ``user``, ``item``), where
  grain's per-example reads would cost more than the training step. Each epoch is one
  permutation of the rows (NumPy, seeded by ``(seed, epoch)``); global batch ``b`` of the epoch
  is rows ``perm[bG : (b + 1)G]`` and this process reads its contiguous chunk of it, so the
  global batches do not depend on the process count (as the grain pipeline). The last partial
  batch of an epoch is dropped. ``get_state`` / ``set_state`` exchange JSON bytes ``{"epoch",
  "batch"}`` (grain's Orbax handler stores them as for :class:`SequentialTrainIterator`).
  """

  def __init__(self, columns: dict[str, np.ndarray], *, global_batch: int, local_batch: int,
               seed: int, index: int):
    self._columns = columns
    self._rows = len(next(iter(columns.values())))
    self._global, self._local = global_batch, local_batch
    self._offset = index * local_batch
    self._seed = int(seed)
    self.batches_per_epoch = self._rows // global_batch
    if self.batches_per_epoch == 0:
      raise DataError(f"input.data.train_split: {self._rows} examples do not fill one batch of "
                      f"{global_batch}; use a smaller input.batch_size or more data")
    self._epoch, self._batch, self._perm = 0, 0, None

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._perm is None:
      seq = np.random.SeedSequence([self._seed, self._epoch])
      self._perm = np.random.default_rng(seq).permutation(self._rows)
    start = self._batch * self._global + self._offset
    rows = self._perm[start:start + self._local]
    self._batch += 1
    if self._batch == self.batches_per_epoch:
      self._epoch, self._batch, self._perm = self._epoch + 1, 0, None
    return {k: v[rows] for k, v in self._columns.items()}

  def get_state(self) -> bytes:
    return json.dumps({"epoch": self._epoch, "batch": self._batch}).encode()

  def set_state(self, state: bytes | str | dict) -> None:
    if isinstance(state, bytes | str):
      state = json.loads(state)
    self._epoch, self._batch, self._perm = int(state["epoch"]), int(state["batch"]), None

  def start_prefetch(self) -> None:
    """Called by grain's checkpoint handler after a restore; nothing to prefetch."""


def steps_per_epoch(data_cfg, global_batch_size: int) -> int:
  """Training steps per epoch: ``num_train // global_batch_size``, at least 1."""
  train = open_split(data_cfg, config_get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  return max(1, len(train.source) // check_batch_size(global_batch_size, 1))


def _processes(process_index, process_count) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= index < count:
    raise ValueError(f"process_index={index} must be in [0, process_count={count})")
  return index, count


def _read_options(split: Split) -> grain.ReadOptions:
  return _MEMORY_READ if isinstance(split.source, ArraySource) else _DISK_READ


def make_train_iterator(data_cfg, *, global_batch_size: int, seed: int,
                        process_index: int | None = None,
                        process_count: int | None = None, label_fraction: float = 1.0):
  """Endless, shuffled training batches for this process; checkpointable.

  Pipeline (grain): source -> shuffle(seed) -> repeat forever (each epoch reshuffled) -> this
  process's contiguous chunk of every global batch -> batch(drop_remainder) -> iterator. Batches
  may span an epoch boundary. The global batches are the same for any process count (tfrecord
  data read sequentially is sharded per process instead). The same seed gives the same order;
  ``get_state()`` / ``set_state()`` (or ``grain.checkpoint.CheckpointSave`` /
  ``CheckpointRestore`` through orbax) continue exactly.

  Args:
    data_cfg: ``config.input.data``.
    global_batch_size: examples per step over all processes (``input.batch_size``).
    seed: shuffle seed.
    process_index, process_count: this process's shard; default ``jax.process_index()`` /
      ``jax.process_count()``.
    label_fraction: below 1, batches also carry ``labelled`` bool [B_local]: True for the fixed
      subset of examples (:func:`labelled_mask`) whose label a semi-supervised method may use.

  Returns:
    A ``grain.DatasetIterator`` (a :class:`SequentialTrainIterator` for tfrecord-prepared TFDS
    data) yielding the split's examples stacked (its element spec with a leading ``B_local``
    axis: images ``{'image': uint8 [B_local, H, W, C], 'label': int32 [B_local]}``, tables
    ``{'x_num', 'x_cat'[, 'label']}``; no ``label`` for unlabelled data), with
    ``B_local = global_batch_size // process_count``.

  Raises:
    ConfigError: the batch size does not divide by the process count, or a bad config value.
    DataError: the data cannot be found or read.
  """
  index, count = _processes(process_index, process_count)
  local_batch = check_batch_size(global_batch_size, count)
  split = open_split(data_cfg, config_get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  if len(split.source) < count:
    raise DataError(f"input.data.train_split: {len(split.source)} examples cannot feed "
                    f"{count} processes; use a larger split or fewer processes")
  fraction = check_label_fraction(label_fraction)
  if fraction < 1.0 and "label" not in split.element_spec:
    raise ConfigError(f"input.label_fraction={fraction}: {data_name(data_cfg)} is used without "
                      "labels here; set input.label_fraction=1.0 or use labelled data")
  source = split.source
  if isinstance(source, SequentialTfdsSource):
    if fraction < 1.0:
      raise ConfigError("input.label_fraction < 1 needs a random-access data set; prepare "
                        f"{data_name(data_cfg)} as array_record (tfds file_format=array_record)")
    return SequentialTrainIterator(source, local_batch=local_batch, seed=seed, index=index,
                                   count=count)
  columns = getattr(source, "columns", None)
  if fraction == 1.0 and columns is not None:  # Interactions: slices of two int columns.
    return ColumnTrainIterator(columns(), global_batch=global_batch_size,
                               local_batch=local_batch, seed=seed, index=index)
  if fraction < 1.0:
    source = _Labelled(source, labelled_mask(len(source), fraction))
  # One global order (the same shuffle in every process), and each global batch of G examples
  # split into contiguous per-process chunks: process p reads positions bG + pL .. bG + pL + L - 1
  # of batch b. So the global batch a step sees, row for row, does not depend on how many
  # processes read it (a 2-process run trains exactly what a 1-process run trains), and no process
  # reads another's examples.
  shuffled = grain.MapDataset.source(source).shuffle(seed=int(seed)).repeat(None)
  mine = shuffled
  if count > 1:
    def position(j: int) -> int:
      return (j // local_batch) * global_batch_size + index * local_batch + j % local_batch

    mine = grain.MapDataset.range(len(shuffled) // count).map(lambda j: shuffled[position(j)])
  dataset = mine.batch(local_batch, drop_remainder=True)
  return iter(dataset.to_iter_dataset(read_options=_read_options(split)))


def iterate_eval(data_cfg, split: str, *, batch_size: int, process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """The whole split once, in a fixed order, as padded batches (this process's shard).

  Process ``p`` of ``P`` reads examples ``p, p + P, p + 2P, ...``. Every process yields the same
  number of batches, ``ceil(ceil(N / P) / batch_size)``, so collective eval steps stay in step;
  padding rows are zeros with ``mask`` False.

  Args:
    data_cfg: ``config.input.data``.
    split: split to read, e.g. ``data_cfg.eval_split`` or ``data_cfg.train_split``.
    batch_size: examples per batch on this process.
    process_index, process_count: default ``jax.process_index()`` / ``jax.process_count()``.

  Returns:
    An iterator of the split's examples stacked to ``batch_size`` rows (e.g. ``{'image': uint8
    [batch_size, H, W, C], 'label': int32 [batch_size]}``) plus ``'mask': bool [batch_size]``.
  """
  index, count = _processes(process_index, process_count)
  batch_size = check_batch_size(batch_size, 1, key="batch_size")
  key = ("input.data.eval_split" if split == config_get(data_cfg, "eval_split", "test")
         else "input.data.train_split" if split == config_get(data_cfg, "train_split", "train")
         else "split")
  opened = open_split(data_cfg, split, key=key)
  total = len(opened.source)
  if total == 0:
    raise DataError(f"{key}={split!r}: the split is empty; choose a split with examples")
  num_batches = math.ceil(math.ceil(total / count) / batch_size)
  if isinstance(opened.source, SequentialTfdsSource):
    batches = _batched(opened.source.examples(index=index, count=count), batch_size)
  else:
    batches = iter(grain.MapDataset.source(opened.source)
                   .slice(slice(index, None, count))
                   .batch(batch_size, drop_remainder=False)
                   .to_iter_dataset(read_options=_read_options(opened)))
  return _padded_batches(batches, num_batches, batch_size, opened.element_spec)


def _batched(examples, batch_size: int):
  """Groups an iterator of examples into batches (the last one may be short)."""
  while True:
    items = [x for _, x in zip(range(batch_size), examples, strict=False)]
    if not items:
      return
    yield _stack(items)


def _stack(items) -> dict[str, np.ndarray]:
  """A list of examples (dicts of arrays) -> one batch (each feature stacked on a new axis 0)."""
  return {k: np.stack([np.asarray(x[k]) for x in items]) for k in items[0]}


def _padded_batches(batches, num_batches: int, batch_size: int, spec):
  """Pads each batch to ``batch_size`` rows (mask False) and adds empty batches up to the count.

  ``spec``: feature name -> (per-example shape, dtype), the split's element spec.
  """
  for _ in range(num_batches):
    batch = next(batches, None)
    real = 0 if batch is None else len(next(iter(batch.values())))
    out = {}
    for key, (shape, dtype) in spec.items():
      out[key] = np.zeros((batch_size, *shape), dtype)
      if real:
        out[key][:real] = batch[key]
    out["mask"] = np.arange(batch_size) < real
    yield out
