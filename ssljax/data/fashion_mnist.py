"""TFDS builder for Fashion-MNIST read from local IDX files (Debian's ``dataset-fashion-mnist``).

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) holds 70,000 real 28x28 grayscale photos of
clothing in 10 classes: 60,000 train and 10,000 test. Debian packages the four original IDX files
(``apt-get install dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist/``)::

  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

This builder reads them (gzip-compressed or not, with :mod:`ssljax.data.idx`) and writes a TFDS
data set named ``ssljax_fashion_mnist`` in the array_record format, once, offline (about a
minute on 2 CPU cores). Select it with ``input.data.name='fashion_mnist_local'``; the IDX folder
is ``input.data.path`` (default: the Debian folder), the TFDS folder ``input.data.data_dir``.
The prepared copy is stored under a config named after a hash of the IDX files' contents, so a
folder with other files (say, the original MNIST in the same format) is never mistaken for it.

Usage::

  from ssljax.data import fashion_mnist
  builder = fashion_mnist.prepare(data_dir=None, idx_dir=None)  # None -> the Debian folder
  train = builder.as_data_source(split='train')
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ssljax.data import idx, local_tfds
from ssljax.errors import DataError

NAME = "ssljax_fashion_mnist"
DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28, 1)
NUM_TRAIN = 60_000  # The full set; a folder of your own may hold fewer (tests write a few).
NUM_TEST = 10_000
# split -> (images file, labels file), without the optional ".gz".
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_files(idx_dir: str | None = None) -> dict[str, tuple[str, str]]:
  """Paths of the four IDX files in ``idx_dir``: ``{split: (images, labels)}``.

  Each file is found as ``<name>`` or ``<name>.gz`` (the Debian package ships the latter).

  Raises:
    DataError: one line naming the folder, the Debian package to install and the key to set.
  """
  folder = os.path.abspath(os.path.expanduser(idx_dir or DEFAULT_IDX_DIR))
  found, missing = {}, []
  for split, names in FILES.items():
    paths = []
    for stem in names:
      path = next((os.path.join(folder, stem + ext) for ext in (".gz", "")
                   if os.path.isfile(os.path.join(folder, stem + ext))), None)
      if path is None:
        missing.append(stem + "[.gz]")
      paths.append(path)
    found[split] = tuple(paths)
  if missing:
    which = "input.data.path" if idx_dir else "input.data.path's default, Debian's folder"
    raise DataError(
        f"Fashion-MNIST: {folder!r} ({which}) lacks {', '.join(missing)}; install them with "
        f"`apt-get install {DEBIAN_PACKAGE}` or set --config.input.data.path to a folder "
        "holding the four IDX files")
  return found


def load_split(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads one split's IDX pair.

  Returns:
    images: uint8 [N, 28, 28, 1].
    labels: int64 [N], 0..9.

  Raises:
    DataError: a malformed file, images that are not 28x28, a count mismatch or a label > 9
      (one line naming the file).
  """
  images = idx.read_idx(images_path, magic=idx.IMAGES_MAGIC)
  labels = idx.read_idx(labels_path, magic=idx.LABELS_MAGIC)
  if images.shape[1:] != IMAGE_SHAPE[:2]:
    raise DataError(f"IDX file {images_path!r}: images are {list(images.shape[1:])}, "
                    "Fashion-MNIST's are [28, 28]; point input.data.path at Fashion-MNIST's files")
  if len(images) != len(labels):
    raise DataError(f"IDX file {labels_path!r}: {len(labels)} labels for {len(images)} images "
                    f"in {images_path!r}; the two files must come from the same set")
  if len(labels) and int(labels.max()) >= NUM_CLASSES:
    raise DataError(f"IDX file {labels_path!r}: label {int(labels.max())} is outside "
                    f"0..{NUM_CLASSES - 1}; this is not a Fashion-MNIST label file")
  return images[..., None], labels.astype(np.int64)


def fingerprint(files: dict[str, tuple[str, str]]) -> str:
  """A short hash of the four files' contents (names the prepared copy's TFDS config)."""
  stamps = []
  for split in sorted(files):
    for path in files[split]:
      stat = os.stat(path)
      stamps.append((os.path.realpath(path), stat.st_size, stat.st_mtime_ns))
  return _content_hash(tuple(stamps))


@functools.lru_cache(maxsize=8)
def _content_hash(stamps: tuple[tuple[str, int, int], ...]) -> str:
  """sha256 over the files' bytes; cached per (path, size, mtime) so a run hashes once."""
  digest = hashlib.sha256()
  for path, _, _ in stamps:
    with open(path, "rb") as f:
      for block in iter(functools.partial(f.read, 1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()[:12]


class SsljaxFashionMnist(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST from local IDX files as a TFDS data set (train 60,000, test 10,000)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: the IDX files' images and labels, unchanged."}

  def __init__(self, *, idx_dir: str | None = None, **kwargs):
    """Args: idx_dir: the IDX folder (None: the Debian one); kwargs go to TFDS's builder.

    The TFDS config is named ``idx_<hash of the files>`` so each distinct set has its own copy.
    """
    self._idx_files = find_files(idx_dir)
    config = tfds.core.BuilderConfig(name=f"idx_{fingerprint(self._idx_files)}",
                                     description="Fashion-MNIST read from local IDX files.")
    super().__init__(config=config, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As ssljax.data.digits: TFDS's default lookup needs importlib_resources, not a dependency.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Fashion-MNIST: 28x28 grayscale photos of clothing, 10 classes.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The IDX files are local: nothing to download.
    return {split: self._generate_examples(paths) for split, paths in self._idx_files.items()}

  def _generate_examples(self, paths):
    images, labels = load_split(*paths)
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}


def prepare(data_dir: str | None = None, idx_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """Prepares ``ssljax_fashion_mnist`` from the IDX files in ``idx_dir`` if needed; offline.

  Args:
    data_dir: TFDS data dir; None uses the TFDS default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``). The files go to ``<data_dir>/ssljax_fashion_mnist/idx_<hash>/``.
    idx_dir: the folder holding the four IDX files; None: ``/usr/share/datasets/fashion-mnist``.

  Returns:
    The prepared builder.

  Raises:
    DataError: the IDX files are missing (names the Debian package) or malformed (names the file).
  """
  files = find_files(idx_dir)  # One clear line before TFDS is involved.
  make = functools.partial(SsljaxFashionMnist, idx_dir=idx_dir, data_dir=data_dir)
  with local_tfds.quiet_tfds():
    prepared = make().is_prepared()
  if not prepared:
    for paths in files.values():  # Malformed files fail here with one line, not inside TFDS.
      load_split(*paths)
  where = idx_dir or DEFAULT_IDX_DIR
  return local_tfds.prepare(make, announce=f"Fashion-MNIST from the IDX files in {where}")
