"""TFDS builder for scikit-learn's handwritten digits (ships inside scikit-learn, no download).

``sklearn.datasets.load_digits()`` holds 1797 real 8x8 grayscale digits with values 0..16. This
builder writes them as a TFDS data set named ``ssljax_digits`` in the **array_record** format, so
``tfds.data_source`` can read them with random access (and grain can checkpoint the read order).
It is the offline default of the project: preparing it takes a few seconds and never touches the
network.

Usage::

  from ssljax.data import digits
  builder = digits.prepare(data_dir=None)   # None -> TFDS default dir (~/tensorflow_datasets)
  train = tfds.data_source('ssljax_digits', split='train', data_dir=builder.data_dir_root)
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ssljax.data import local_tfds

NAME = "ssljax_digits"
NUM_CLASSES = 10
NUM_TRAIN = 1347
NUM_TEST = 450
# Fixed so that every machine gets the same train/test split.
_SPLIT_SEED = 0


def _digits_uint8() -> tuple[np.ndarray, np.ndarray]:
  """Loads scikit-learn's digits as uint8 images.

  Returns:
    images: uint8 [1797, 8, 8, 1], value = round(v * 255 / 16) for the original 0..16 values.
    labels: int64 [1797], 0..9.
  """
  from sklearn.datasets import load_digits  # Imported lazily: only preparing needs scikit-learn.

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


def split_indices() -> dict[str, np.ndarray]:
  """The deterministic train/test split: a fixed-seed permutation of the 1797 examples.

  Returns:
    ``{'train': int [1347], 'test': int [450]}`` indices into ``load_digits()``.
  """
  order = np.random.default_rng(_SPLIT_SEED).permutation(NUM_TRAIN + NUM_TEST)
  return {"train": order[:NUM_TRAIN], "test": order[NUM_TRAIN:]}


class SsljaxDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits as a TFDS data set (train 1347, test 450)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: load_digits() scaled to uint8, fixed split."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default looks the package up through `importlib_resources`, which is not a dependency
    # of ours (nor guaranteed by TFDS); this file's own path is what it would find anyway.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="scikit-learn's handwritten digits (UCI optdigits test set), 8x8 grayscale.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The data ships inside scikit-learn: nothing to download.
    return {split: self._generate_examples(idx) for split, idx in split_indices().items()}

  def _generate_examples(self, indices):
    images, labels = _digits_uint8()
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


def prepare(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """Prepares ``ssljax_digits`` in array_record format if needed; offline, a few seconds.

  Args:
    data_dir: TFDS data dir; None uses the TFDS default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``). The files go to ``<data_dir>/ssljax_digits/1.0.0/``.

  Returns:
    The prepared builder (reuse its ``data_dir_root`` for ``tfds.data_source``).
  """
  with local_tfds.quiet_tfds():
    builder = SsljaxDigits(data_dir=data_dir)
    prepared = builder.is_prepared()
  if prepared:
    return builder  # in whatever format it was prepared; the reader checks it is random-access
  builder = SsljaxDigits(data_dir=data_dir, file_format="array_record")
  # try_download_gcs=False: TFDS must never look for a hosted copy on GCS.
  config = tfds.download.DownloadConfig(try_download_gcs=False)
  print(f"preparing scikit-learn's digits as TFDS data in {builder.data_dir} "
        "(local, no download; once)", flush=True)
  try:
    # TFDS's own banner says "Downloading and preparing ..." with progress bars; nothing is
    # downloaded here, so keep it quiet and say what happens in the line above.
    with local_tfds.quiet_tfds():
      builder.download_and_prepare(download_config=config, file_format="array_record")
  except Exception:
    # Several processes sharing one data_dir race to prepare it; whoever loses finds it prepared.
    if not SsljaxDigits(data_dir=data_dir).is_prepared():
      raise
    return SsljaxDigits(data_dir=data_dir)
  return builder
