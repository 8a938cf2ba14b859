"""Host-side input: random-access sources -> per-process shard -> shuffled uint8 batches.

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

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from ssljax.data import digits
from ssljax.errors import ConfigError, DataError

_DIGITS_NAMES = ("digits", digits.NAME)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_HOLDOUT_SEED = 0  # fixed: the folder/npz hold-out split must be the same on every run and host
_NAME_HINT = ("use 'digits', 'folder', 'npz' or a TFDS name such as cifar10, cifar100, stl10, "
              "imagenette, imagenet2012")
# Reading threads for on-disk (TFDS) sources. Each grain element is a whole batch, so the buffer
# counts batches: keep it small, a buffer of hundreds of ImageNet batches would not fit in memory.
_DISK_READ = grain.ReadOptions(num_threads=8, prefetch_buffer_size=8)
# In-memory arrays: threads would only contend for the GIL.
_MEMORY_READ = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
# A random-access TFDS split whose decoded images fit in this many bytes keeps each image in
# memory after its first read, so later epochs skip the array_record read and the PNG/JPEG decode
# (~0.2 ms per image here; the shipped digits are read ~75 times each in the default run). CIFAR-10
# (150 MB) fits; ImageNet does not and is decoded on every read.
DECODED_CACHE_BYTES = 1 << 29
# Encoded examples held for shuffling a tfrecord-prepared split (about 1 GB of ImageNet JPEGs).
_SEQUENTIAL_SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know about a data set before reading it.

  Attributes:
    name: ``input.data.name``.
    num_classes: number of label classes.
    image_shape: (H, W, C) of the images the iterators yield (C is 1 or 3).
    num_train: examples in ``input.data.train_split``.
    num_eval: examples in ``input.data.eval_split``.
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_eval: int


# ----------------------------------------------------------------------------- sources


class ArraySource:
  """In-memory random-access source over uint8 images and int labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    """Args: images uint8 [N, H, W, C]; labels int [N]."""
    self.images = images
    self.labels = labels.astype(np.int32)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"image": self.images[index], "label": self.labels[index]}


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


def check_label_fraction(fraction) -> float:
  """``input.label_fraction`` as a float in (0, 1], else a ConfigError naming the key."""
  try:
    value = float(fraction)
  except (TypeError, ValueError):
    value = math.nan
  if not 0.0 < value <= 1.0:
    raise ConfigError(f"input.label_fraction={fraction!r} must be in (0, 1] (the share of "
                      "training labels a semi-supervised method may see); e.g. 0.1")
  return value


class _TfdsSource:
  """Wraps a TFDS data source: keeps 'image' (uint8 HWC) and 'label' (int32), optional resize.

  When ``image_shape`` is given and the whole split decoded fits in :data:`DECODED_CACHE_BYTES`,
  each example is kept after its first read (a lazily filled array: pages are only used once
  written) and served from memory afterwards.
  """

  def __init__(self, source, *, resize_to: int | None,
               image_shape: tuple[int, ...] | None = None):
    self._source = source
    self._resize_to = resize_to
    n = len(source)
    self._images = None
    if image_shape is not None and n * int(np.prod(image_shape)) <= DECODED_CACHE_BYTES:
      self._images = np.empty((n, *image_shape), np.uint8)
      self._labels = np.empty((n,), np.int32)
      self._cached = np.zeros((n,), bool)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if self._images is not None and self._cached[index]:
      return {"image": self._images[index], "label": self._labels[index]}
    example = self._source[index]
    image = np.asarray(example["image"], np.uint8)
    if self._resize_to is not None:
      image = resize_center_crop(image, self._resize_to)
    label = np.int32(example["label"])
    if self._images is not None and image.shape == self._images.shape[1:]:
      # Reading threads may race on one index; they write the same values, and the flag is set
      # only after the data.
      self._images[index] = image
      self._labels[index] = label
      self._cached[index] = True
    return {"image": image, "label": label}


class SequentialTfdsSource:
  """A TFDS split without random access (tfrecord files), read in order through tf.data."""

  def __init__(self, builder, split: str, *, resize_to: int | None):
    self.builder = builder
    self.split = split
    self._resize_to = resize_to
    self._len = int(builder.info.splits[split].num_examples)

  def __len__(self) -> int:
    return self._len

  def examples(self, *, index: int, count: int, shuffle_seed: int | None = None,
               skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """One pass over shard ``index`` of ``count``, optionally shuffled, from example ``skip`` on.

    Images are decoded only after shuffling and skipping, so skipping costs reads, not decodes.
    """
    import tensorflow as tf

    ds = self.builder.as_dataset(split=self.split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    ds = ds.shard(count, index)
    if shuffle_seed is not None:
      ds = ds.shuffle(min(self._len, _SEQUENTIAL_SHUFFLE_BUFFER), seed=shuffle_seed,
                      reshuffle_each_iteration=False)
    ds = ds.skip(skip)
    decode = self.builder.info.features["image"].decode_example
    ds = ds.map(lambda ex: {"image": decode(ex["image"]), "label": ex["label"]},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for example in tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)):
      image = np.asarray(example["image"], np.uint8)
      if self._resize_to is not None:
        image = resize_center_crop(image, self._resize_to)
      yield {"image": image, "label": np.int32(example["label"])}


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


@dataclasses.dataclass(frozen=True)
class _Split:
  source: Any  # __len__ / __getitem__ -> {'image': uint8 [H, W, C], 'label': int32}
  num_classes: int
  image_shape: tuple[int, int, int]


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes the shorter side to ``size`` (bilinear, antialiased) and centre-crops a square.

  Args:
    image: uint8 [H, W, C], C in {1, 3}.
    size: output side.

  Returns:
    uint8 [size, size, C].
  """
  from PIL import Image

  height, width, channels = image.shape
  if (height, width) == (size, size):
    return image
  scale = size / min(height, width)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  out = np.asarray(pil.crop((left, top, left + size, top + size)), np.uint8)
  return out[..., None] if channels == 1 else out


def _get(cfg, key: str, default=None):
  """Reads a field of a ConfigDict or a dict (both have ``get``)."""
  return cfg.get(key, default)


def _name(data_cfg) -> str:
  name = _get(data_cfg, "name")
  if not isinstance(name, str) or not name:
    raise ConfigError(f"input.data.name={name!r}: must be a data set name; {_NAME_HINT}")
  return name


def _open_split(data_cfg, split: str, *, key: str) -> _Split:
  """Opens one split of the configured data set.

  Args:
    data_cfg: ``config.input.data``.
    split: split name or TFDS split string.
    key: the config key that chose ``split`` (named in error messages).
  """
  name = _name(data_cfg)
  if name in ("folder", "npz"):
    return _memory_split(data_cfg, name, split, key=key)
  return _tfds_split(data_cfg, name, split, key=key)


# ----------------------------------------------------------------------------- TFDS


def _tfds_builder(data_cfg, name: str):
  """Returns a TFDS builder for ``name``; prepares digits, and others only if download=True."""
  data_dir = _get(data_cfg, "data_dir")
  if name in _DIGITS_NAMES:
    return digits.prepare(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    raise ConfigError(f"input.data.name={name!r}: unknown data set; {_NAME_HINT}") from None
  except ValueError as e:  # malformed 'name/config:version' strings
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"input.data.name={name!r}: {first}; {_NAME_HINT}") from None
  if _get(data_cfg, "download", False) and not builder.is_prepared():
    # array_record so tfds.data_source can read it; GCS only hosts tfrecord, so never look there.
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def _tfds_split(data_cfg, name: str, split: str, *, key: str) -> _Split:
  builder = _tfds_builder(data_cfg, name)
  features = builder.info.features
  if features is None or "image" not in features or "label" not in features:
    found = sorted(features.keys()) if features is not None else []
    raise DataError(f"input.data.name={name!r}: TFDS features {found} lack 'image' and 'label'; "
                    "ssljax reads image classification data sets")
  shape = tuple(features["image"].shape)
  if len(shape) != 3 or shape[-1] not in (1, 3):
    raise DataError(f"input.data.name={name!r}: images have shape {shape}; ssljax needs "
                    "[H, W, C] images with C = 1 or 3")
  resize_to = None
  if shape[0] is None or shape[1] is None:
    resize_to = int(_get(data_cfg, "image_size", 64))
    shape = (resize_to, resize_to, shape[2])
  num_classes = int(features["label"].num_classes)
  if builder.is_prepared() and not _random_access(builder):
    try:
      source = SequentialTfdsSource(builder, split, resize_to=resize_to)
    except Exception as e:  # noqa: BLE001 - an unknown split; one clear line below.
      raise _tfds_open_error(data_cfg, builder, name, split, key, e) from None
    return _Split(source=source, num_classes=num_classes, image_shape=shape)
  try:
    source = builder.as_data_source(split=split)
  except Exception as e:  # TFDS raises several types here; each becomes one clear line below
    raise _tfds_open_error(data_cfg, builder, name, split, key, e) from None
  return _Split(source=_TfdsSource(source, resize_to=resize_to, image_shape=shape),
                num_classes=num_classes, image_shape=shape)


def _random_access(builder) -> bool:
  formats = {f.value for f in builder.info.available_file_formats()}
  return bool(formats & {"array_record", "parquet"})


def _tfds_open_error(data_cfg, builder, name, split, key, error) -> Exception:
  """Explains why ``as_data_source`` failed: not prepared, wrong file format, or bad split."""
  data_dir = _get(data_cfg, "data_dir")
  where = f"data_dir={data_dir!r}" if data_dir else "the TFDS default data_dir"
  if not builder.is_prepared():
    return DataError(
        f"input.data.name={name!r}: not prepared in {where} and input.data.download=False; "
        "pass --config.input.data.download=True (needs network) or set "
        "--config.input.data.data_dir to a folder where it is prepared")
  splits = sorted(builder.info.splits.keys())
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return ConfigError(f"{key}={split!r}: cannot read this split of {name!r} ({first}); "
                     f"use one of {splits} or a TFDS slice such as 'train[:90%]'")


# ----------------------------------------------------------------------------- folder / npz


def _memory_split(data_cfg, name: str, split: str, *, key: str) -> _Split:
  path = _get(data_cfg, "path")
  if not path:
    kind = "a folder of <path>/<class>/<file>.png" if name == "folder" else "a .npz file"
    raise ConfigError(f"input.data.path is not set; input.data.name={name!r} reads {kind}, "
                      "pass --config.input.data.path=...")
  path = os.path.abspath(os.path.expanduser(str(path)))
  if split not in ("train", "test"):
    raise ConfigError(f"{key}={split!r}: {name} data has the splits 'train' and 'test'; "
                      "use one of them")
  stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
  if name == "folder":
    arrays = _load_folder(path, int(_get(data_cfg, "image_size", 64)), stamp)
  else:
    arrays = _load_npz(path, stamp)
  images, labels = arrays[split]
  return _Split(source=ArraySource(images, labels), num_classes=arrays["num_classes"],
                image_shape=tuple(int(d) for d in images.shape[1:]))


def _holdout(num: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic 10% hold-out: (train indices, test indices), each sorted."""
  num_test = max(1, num // 10) if num >= 2 else 0
  order = np.random.default_rng(_HOLDOUT_SEED).permutation(num)
  return np.sort(order[num_test:]), np.sort(order[:num_test])


def _decode_image(file: str, image_size: int) -> np.ndarray:
  """Decodes one image file to uint8 [image_size, image_size, C], C = 1 (gray) or 3."""
  from PIL import Image

  try:
    with Image.open(file) as pil:
      pil.load()
      gray = pil.mode in ("1", "L", "LA", "I", "I;16", "F")
      array = np.asarray(pil.convert("L" if gray else "RGB"), np.uint8)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"input.data.path: cannot decode image {file!r} ({reason}); "
                    "fix or delete the file") from None
  if array.ndim == 2:
    array = array[..., None]
  return resize_center_crop(array, image_size)


@functools.lru_cache(maxsize=4)
def _load_folder(path: str, image_size: int, stamp: int) -> dict:
  """Loads ``<path>/<class>/<file>`` images into memory (cached per path, size and mtime)."""
  del stamp  # part of the cache key only: a changed folder is read again
  hint = "put images in <path>/<class>/<file>.png"
  if not os.path.exists(path):
    raise DataError(f"input.data.path={path!r}: folder does not exist; {hint}")
  if not os.path.isdir(path):
    raise DataError(f"input.data.path={path!r}: is not a folder; {hint}")
  try:
    class_dirs = sorted(d for d in os.listdir(path)
                        if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    files_per_class = [
        sorted(f for f in os.listdir(os.path.join(path, d))
               if f.lower().endswith(_IMAGE_SUFFIXES) and not f.startswith("."))
        for d in class_dirs]
  except OSError as e:
    raise DataError(f"input.data.path={path!r}: folder cannot be read ({e.strerror}); "
                    "check its permissions") from None
  classes = [(d, files) for d, files in zip(class_dirs, files_per_class, strict=True) if files]
  if not classes:
    raise DataError(f"input.data.path={path!r}: folder has no images in class sub-folders; {hint}")
  paths = [os.path.join(path, d, f) for d, files in classes for f in files]
  labels = [label for label, (_, files) in enumerate(classes) for _ in files]
  # PIL releases the GIL while decoding, so threads give a real speed-up on big folders.
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    images = list(pool.map(functools.partial(_decode_image, image_size=image_size), paths))
  if any(im.shape[-1] == 3 for im in images):  # mixed gray and colour: make all RGB
    images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
  images, labels = np.stack(images), np.asarray(labels, np.int32)
  train, test = _holdout(len(labels))
  return {"train": (images[train], labels[train]), "test": (images[test], labels[test]),
          "num_classes": len(classes)}


def _check_npz_pair(path, images, labels, prefix) -> tuple[np.ndarray, np.ndarray]:
  """Validates one (images, labels) pair of an npz; returns images as [N, H, W, C]."""
  where = f"input.data.path={path!r}"
  if images.dtype != np.uint8:
    raise DataError(f"{where}: '{prefix}images' has dtype {images.dtype}; store uint8 0..255 "
                    "(e.g. np.clip(x * 255, 0, 255).astype(np.uint8))")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise DataError(f"{where}: '{prefix}images' has shape {images.shape}; store a non-empty "
                    "[N, H, W, C] array with C = 1 or 3 (or [N, H, W] for grayscale)")
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"{where}: '{prefix}labels' has shape {labels.shape} and dtype "
                    f"{labels.dtype}; store integer class ids of shape [N]")
  if len(labels) != len(images):
    raise DataError(f"{where}: {len(images)} '{prefix}images' but {len(labels)} "
                    f"'{prefix}labels'; store one label per image")
  if labels.size and labels.min() < 0:
    raise DataError(f"{where}: '{prefix}labels' has negative values; use class ids 0..K-1")
  return images, labels.astype(np.int32)


@functools.lru_cache(maxsize=4)
def _load_npz(path: str, stamp: int) -> dict:
  """Loads and validates an npz (cached per path and mtime)."""
  del stamp  # part of the cache key only
  where = f"input.data.path={path!r}"
  if not os.path.isfile(path):
    raise DataError(f"{where}: file does not exist; save one with "
                    "np.savez(path, images=uint8 [N,H,W,C], labels=int [N])")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"{where}: cannot read it as .npz ({reason}); save it with "
                    "np.savez(path, images=..., labels=...)") from None
  for required in ("images", "labels"):
    if required not in arrays:
      raise DataError(f"{where}: has no {required!r} array (found {sorted(arrays)}); save it "
                      "with np.savez(path, images=uint8 [N,H,W,C], labels=int [N])")
  images, labels = _check_npz_pair(path, arrays["images"], arrays["labels"], "")
  has_test = ("test_images" in arrays, "test_labels" in arrays)
  if any(has_test) and not all(has_test):
    raise DataError(f"{where}: has only one of 'test_images' / 'test_labels'; store both "
                    "or neither (then 10% of 'images' is held out)")
  if all(has_test):
    test = _check_npz_pair(path, arrays["test_images"], arrays["test_labels"], "test_")
    if test[0].shape[1:] != images.shape[1:]:
      raise DataError(f"{where}: 'test_images' are {test[0].shape[1:]} but 'images' are "
                      f"{images.shape[1:]}; store both at the same [H, W, C]")
    train = (images, labels)
  else:
    train_idx, test_idx = _holdout(len(labels))
    train = (images[train_idx], labels[train_idx])
    test = (images[test_idx], labels[test_idx])
  num_classes = int(max(train[1].max(initial=0), test[1].max(initial=0))) + 1
  return {"train": train, "test": test, "num_classes": num_classes}


# ----------------------------------------------------------------------------- public API


def get_info(data_cfg) -> DatasetInfo:
  """Describes the configured data set (prepares ``digits`` on first use)."""
  train = _open_split(data_cfg, _get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  evals = _open_split(data_cfg, _get(data_cfg, "eval_split", "test"), key="input.data.eval_split")
  return DatasetInfo(name=_name(data_cfg), num_classes=train.num_classes,
                     image_shape=train.image_shape, num_train=len(train.source),
                     num_eval=len(evals.source))


def steps_per_epoch(data_cfg, global_batch_size: int) -> int:
  """Training steps per epoch: ``num_train // global_batch_size``, at least 1."""
  train = _open_split(data_cfg, _get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  return max(1, len(train.source) // _check_batch_size(global_batch_size, 1))


def _processes(process_index, process_count) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= index < count:
    raise ValueError(f"process_index={index} must be in [0, process_count={count})")
  return index, count


def _check_batch_size(global_batch_size, process_count: int, key="input.batch_size") -> int:
  if (not isinstance(global_batch_size, int | np.integer) or isinstance(global_batch_size, bool)
      or global_batch_size < 1):
    raise ConfigError(f"{key}={global_batch_size!r}: must be a positive int")
  if global_batch_size % process_count:
    raise ConfigError(f"{key}={global_batch_size}: must be divisible by the {process_count} "
                      f"processes; use a multiple of {process_count}")
  return int(global_batch_size) // process_count


def _read_options(split: _Split) -> grain.ReadOptions:
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
    data) yielding ``{'image': uint8 [B_local, H, W, C],
    'label': int32 [B_local]}`` with ``B_local = global_batch_size // process_count``.

  Raises:
    ConfigError: the batch size does not divide by the process count, or a bad config value.
    DataError: the data cannot be found or read.
  """
  index, count = _processes(process_index, process_count)
  local_batch = _check_batch_size(global_batch_size, count)
  split = _open_split(data_cfg, _get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  if len(split.source) < count:
    raise DataError(f"input.data.train_split: {len(split.source)} examples cannot feed "
                    f"{count} processes; use a larger split or fewer processes")
  fraction = check_label_fraction(label_fraction)
  source = split.source
  if isinstance(source, SequentialTfdsSource):
    if fraction < 1.0:
      raise ConfigError("input.label_fraction < 1 needs a random-access data set; prepare "
                        f"{_name(data_cfg)} as array_record (tfds file_format=array_record)")
    return SequentialTrainIterator(source, local_batch=local_batch, seed=seed, index=index,
                                   count=count)
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
    An iterator of ``{'image': uint8 [batch_size, H, W, C], 'label': int32 [batch_size],
    'mask': bool [batch_size]}``.
  """
  index, count = _processes(process_index, process_count)
  batch_size = _check_batch_size(batch_size, 1, key="batch_size")
  key = ("input.data.eval_split" if split == _get(data_cfg, "eval_split", "test")
         else "input.data.train_split" if split == _get(data_cfg, "train_split", "train")
         else "split")
  opened = _open_split(data_cfg, split, key=key)
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
  return _padded_batches(batches, num_batches, batch_size, opened.image_shape)


def _batched(examples, batch_size: int):
  """Groups an iterator of examples into batches (the last one may be short)."""
  while True:
    items = [x for _, x in zip(range(batch_size), examples, strict=False)]
    if not items:
      return
    yield _stack(items)


def _stack(items) -> dict[str, np.ndarray]:
  return {"image": np.stack([x["image"] for x in items]),
          "label": np.asarray([x["label"] for x in items], np.int32)}


def _padded_batches(batches, num_batches: int, batch_size: int, image_shape):
  """Pads each batch to ``batch_size`` rows (mask False) and adds empty batches up to the count."""
  for _ in range(num_batches):
    batch = next(batches, None)
    real = 0 if batch is None else len(batch["label"])
    images = np.zeros((batch_size, *image_shape), np.uint8)
    labels = np.zeros((batch_size,), np.int32)
    if real:
      images[:real] = batch["image"]
      labels[:real] = batch["label"]
    yield {"image": images, "label": labels, "mask": np.arange(batch_size) < real}
