"""Fashion-MNIST from local IDX files: the IDX reader, its errors, the builder through sources.

Every IDX file here is written by the test itself (with ``struct``, from the format's spec), so
neither Debian's ``dataset-fashion-mnist`` nor the network is needed.
"""

import gzip
import socket
import struct

import numpy as np
import pytest

from experiments import simclr
from ssljax import train
from ssljax.data import fashion_mnist, idx, sources
from ssljax.errors import DataError

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def write_idx(path, array, *, compress=False, dims=None, magic=None):
  """Writes ``array`` as IDX: magic 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data.

  ``dims`` / ``magic`` override the header (to write a broken file).
  """
  array = np.asarray(array)
  dims = array.shape if dims is None else dims
  if magic is None:
    magic = (_TYPE_CODES[array.dtype] << 8) | len(dims)
  header = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
  data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if compress else data)
  return str(path)


def write_set(folder, *, num_train=12, num_test=5, compress=True, offset=0):
  """A tiny Fashion-MNIST folder: image i is filled with ``offset + i``, its label is i % 10."""
  folder.mkdir(parents=True, exist_ok=True)
  ext = ".gz" if compress else ""
  arrays = {}
  for split, n in (("train", num_train), ("test", num_test)):
    images = np.broadcast_to((offset + np.arange(n, dtype=np.uint8))[:, None, None], (n, 28, 28))
    labels = (np.arange(n) % 10).astype(np.uint8)
    images_name, labels_name = fashion_mnist.FILES[split]
    write_idx(folder / (images_name + ext), images, compress=compress)
    write_idx(folder / (labels_name + ext), labels, compress=compress)
    arrays[split] = (images, labels)
  return arrays


def _no_network(*args, **kwargs):
  raise AssertionError(f"the data layer tried to open a network connection: {args}")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  monkeypatch.setattr(socket.socket, "connect", _no_network)


def _cfg(**fields):
  cfg = dict(name="fashion_mnist_local", data_dir=None, path=None, image_size=64,
             download=False, train_split="train", eval_split="test")
  cfg.update(fields)
  return cfg


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trips_values_and_shapes(tmp_path, compress):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
  labels = np.array([9, 0, 3], np.uint8)
  shorts = np.array([[-300, 2], [7, 32000]], np.int16)  # Big-endian on disk, native in memory.
  floats = np.array([0.5, -2.25], np.float32)
  got = idx.read_idx(write_idx(tmp_path / "i", images, compress=compress), magic=idx.IMAGES_MAGIC)
  np.testing.assert_array_equal(got, images)
  assert got.dtype == np.uint8 and got.shape == (3, 28, 28)
  got = idx.read_idx(write_idx(tmp_path / "l", labels, compress=compress), magic=idx.LABELS_MAGIC)
  np.testing.assert_array_equal(got, labels)
  np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "s", shorts)), shorts)
  np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "f", floats)), floats)


@pytest.mark.parametrize("compress", [False, True])
def test_header_that_does_not_match_the_size_names_the_file(tmp_path, compress):
  images = np.zeros((4, 28, 28), np.uint8)
  path = write_idx(tmp_path / "train-images-idx3-ubyte", images, dims=(5, 28, 28),
                   compress=compress)
  with pytest.raises(DataError, match="header says dims") as e:
    idx.read_idx(path, magic=idx.IMAGES_MAGIC)
  message = str(e.value)
  assert path in message and "\n" not in message
  # Found: 16 header bytes + 4 x 28 x 28; the header asks for 16 + 5 x 28 x 28.
  assert "3152 bytes" in message and "3936 bytes" in message


def test_wrong_magic_is_a_data_error(tmp_path):
  labels = write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
  with pytest.raises(DataError, match="expected 0x00000803") as e:
    idx.read_idx(labels, magic=idx.IMAGES_MAGIC)  # A label file where images belong.
  assert labels in str(e.value)
  garbage = write_idx(tmp_path / "garbage", np.zeros(4, np.uint8), magic=0x12345601)
  with pytest.raises(DataError, match="not an IDX header") as e:
    idx.read_idx(garbage)
  assert garbage in str(e.value) and "\n" not in str(e.value)
  broken = tmp_path / "broken.gz"
  broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 40)[:20])
  with pytest.raises(DataError, match="broken gzip"):
    idx.read_idx(broken)


def test_missing_package_names_the_package_and_the_key(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(DataError) as e:
    sources.get_info(_cfg(path=str(empty), data_dir=str(tmp_path / "tfds")))
  message = str(e.value)
  assert "apt-get install dataset-fashion-mnist" in message
  assert "input.data.path" in message and str(empty) in message and "\n" not in message


def test_builder_reads_a_tiny_idx_set_through_sources(tmp_path):
  written = write_set(tmp_path / "idx")
  data_dir = str(tmp_path / "tfds")
  info = sources.get_info(_cfg(path=str(tmp_path / "idx"), data_dir=data_dir))
  assert (info.image_shape, info.num_classes, info.num_train, info.num_eval) == (
      (28, 28, 1), 10, 12, 5)
  for split, (images, labels) in written.items():
    opened = sources.open_split(_cfg(path=str(tmp_path / "idx"), data_dir=data_dir), split,
                                key="input.data.train_split")
    examples = [opened.source[i] for i in range(len(opened.source))]
    assert all(x["image"].shape == (28, 28, 1) and x["image"].dtype == np.uint8
               for x in examples)
    # Image i is filled with i: pair each read image with its written label, in any order.
    got = sorted((int(x["image"][0, 0, 0]), int(x["label"])) for x in examples)
    assert got == [(int(im[0, 0]), int(lab)) for im, lab in zip(images, labels, strict=True)]
    assert all(np.all(x["image"] == x["image"][0, 0, 0]) for x in examples)

  # Another folder with other files gets its own prepared copy, never the first one's.
  write_set(tmp_path / "other", num_train=7, num_test=3, compress=False, offset=100)
  info = sources.get_info(_cfg(path=str(tmp_path / "other"), data_dir=data_dir))
  assert (info.num_train, info.num_eval) == (7, 3)


def test_bad_file_in_the_folder_fails_before_tfds_with_its_name(tmp_path):
  write_set(tmp_path / "idx", compress=False)
  labels = tmp_path / "idx" / "t10k-labels-idx1-ubyte"
  write_idx(labels, np.zeros(4, np.uint8))  # 4 labels for the 5 test images.
  with pytest.raises(DataError, match="4 labels for 5 images") as e:
    sources.get_info(_cfg(path=str(tmp_path / "idx"), data_dir=str(tmp_path / "tfds")))
  assert str(labels) in str(e.value)


def test_simclr_28_px_recipe_trains_on_a_tiny_idx_set(tmp_path):
  # The methods' small-data branch covers the 28x28 sets (issue 18): SimCLR's runlocal variant
  # trains on a tiny IDX folder and evaluates at 28 px with Fashion-MNIST's flips.
  write_set(tmp_path / "idx", num_train=48, num_test=20)
  c = simclr.get_config("data=fashion_mnist_local,runlocal")
  assert c.input.image_size == 28 and c.input.views.view1.flip_prob == 0.5
  c.input.data.path = str(tmp_path / "idx")
  c.input.data.data_dir = str(tmp_path / "tfds")
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["step"] == c.total_steps
  assert 0.0 <= results["knn_top1"] <= 1.0 and np.isfinite(results["rankme"])
