"""Tests for ssljax.data.pipeline and the digits builder: offline, small, deterministic."""

import json
import os
import socket

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ssljax.data import digits, pipeline, sources
from ssljax.errors import ConfigError, DataError


def _cfg(**overrides) -> ml_collections.ConfigDict:
  """A ``config.input.data`` with the project defaults, locked like the real configs."""
  cfg = ml_collections.ConfigDict(dict(
      name="digits", data_dir=None, path=None, image_size=64, download=False,
      train_split="train", eval_split="test"))
  cfg.update(overrides)
  cfg.lock()
  return cfg


def _no_network(*args, **kwargs):
  raise AssertionError(f"the data layer tried to open a network connection: {args}")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """Every test here must pass without a network: any socket connect fails the test."""
  monkeypatch.setattr(socket.socket, "connect", _no_network)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data dir with ssljax_digits prepared once, with every socket connect forbidden."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(socket.socket, "connect", _no_network)
    sources.get_info(_cfg(data_dir=data_dir))
  return data_dir


@pytest.fixture()
def ids_npz(tmp_path):
  """50 train images whose label is their id (pixel value = id), and 7 test images."""
  images = np.broadcast_to(np.arange(50, dtype=np.uint8)[:, None, None, None], (50, 4, 4, 1))
  test_images = np.full((7, 4, 4, 1), 200, np.uint8)
  path = tmp_path / "ids.npz"
  np.savez(path, images=images, labels=np.arange(50), test_images=test_images,
           test_labels=np.arange(7))
  return str(path)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


# ----------------------------------------------------------------------------- digits builder


def test_digits_prepared_offline_as_array_record(digits_dir):
  files = os.listdir(os.path.join(digits_dir, digits.NAME, "1.0.0"))
  assert any(".array_record" in f for f in files), files
  info = sources.get_info(_cfg(data_dir=digits_dir))
  assert info == sources.DatasetInfo(name="digits", num_classes=10, image_shape=(8, 8, 1),
                                      num_train=1347, num_eval=450)
  source = tfds.data_source(digits.NAME, split="train", data_dir=digits_dir, download=False)
  assert len(source) == 1347


def test_digits_are_the_real_scikit_learn_images(digits_dir):
  from sklearn.datasets import load_digits

  sk = load_digits()
  batches = list(pipeline.iterate_eval(_cfg(data_dir=digits_dir), "test", batch_size=450,
                                       process_index=0, process_count=1))
  assert len(batches) == 1 and batches[0]["mask"].all()
  images, labels = batches[0]["image"], batches[0]["label"]
  # The split is a fixed permutation; every test image is a scaled sklearn image with its label.
  test_idx = digits.split_indices()["test"]
  expected = np.round(sk.images[test_idx] * 255 / 16).astype(np.uint8)[..., None]
  assert sorted(map(bytes, images)) == sorted(map(bytes, expected))
  by_image = {bytes(im): int(lb) for im, lb in zip(expected, sk.target[test_idx], strict=True)}
  assert all(by_image[bytes(im)] == lb for im, lb in zip(images, labels, strict=True))
  assert set(labels.tolist()) == set(range(10))
  assert images.dtype == np.uint8 and images.max() == 255
  # Real digits: a 0 is a ring with a dark centre, a 1 a stroke through the centre, so their
  # mean images differ a lot.
  zeros, ones = images[labels == 0].astype(float), images[labels == 1].astype(float)
  assert np.abs(zeros.mean(0) - ones.mean(0)).max() > 100
  assert zeros[:, 3:5, 3:5].mean() + 100 < ones[:, 3:5, 3:5].mean()


# ----------------------------------------------------------------------------- train iterator


def test_train_iterator_shapes_and_dtypes(digits_dir):
  it = pipeline.make_train_iterator(_cfg(data_dir=digits_dir), global_batch_size=32, seed=0,
                                    process_index=0, process_count=1)
  batch = next(it)
  assert batch["image"].shape == (32, 8, 8, 1) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
  assert pipeline.steps_per_epoch(_cfg(data_dir=digits_dir), 32) == 1347 // 32


def test_same_seed_same_order_different_seed_differs(digits_dir):
  cfg = _cfg(data_dir=digits_dir)

  def first(seed):
    it = pipeline.make_train_iterator(cfg, global_batch_size=16, seed=seed, process_index=0,
                                      process_count=1)
    return np.concatenate([b["image"] for b in _take(it, 2)])

  np.testing.assert_array_equal(first(1), first(1))
  assert not np.array_equal(first(1), first(2))


def test_process_shards_are_disjoint_and_cover_an_epoch(ids_npz):
  cfg = _cfg(name="npz", path=ids_npz)
  seen = []
  for index in (0, 1):
    it = pipeline.make_train_iterator(cfg, global_batch_size=10, seed=3, process_index=index,
                                      process_count=2)
    batches = _take(it, 5)  # 5 batches of 5 = this process's 25 examples
    assert all(b["label"].shape == (5,) for b in batches)
    seen.append(np.concatenate([b["label"] for b in batches]))
  assert not set(seen[0]) & set(seen[1])
  assert sorted(np.concatenate(seen)) == list(range(50))
  # Each global batch is the 1-process batch, row for row: process 0 holds its first half.
  single = _take(pipeline.make_train_iterator(cfg, global_batch_size=10, seed=3, process_index=0,
                                              process_count=1), 5)
  for b, whole in enumerate(single):
    np.testing.assert_array_equal(whole["label"][:5], seen[0][5 * b:5 * b + 5])
    np.testing.assert_array_equal(whole["label"][5:], seen[1][5 * b:5 * b + 5])


def test_each_epoch_is_reshuffled(ids_npz):
  it = pipeline.make_train_iterator(_cfg(name="npz", path=ids_npz), global_batch_size=10, seed=0,
                                    process_index=0, process_count=1)
  epochs = [np.concatenate([b["label"] for b in _take(it, 5)]) for _ in range(2)]
  assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(50))
  assert not np.array_equal(epochs[0], epochs[1])


def test_state_save_and_restore_continues_exactly(digits_dir):
  cfg = _cfg(data_dir=digits_dir)
  kwargs = dict(global_batch_size=16, seed=5, process_index=0, process_count=1)
  it = pipeline.make_train_iterator(cfg, **kwargs)
  _take(it, 3)
  state = it.get_state()
  json.dumps(state)  # small and serialisable, as grain/orbax checkpoints need
  expected = _take(it, 2)
  fresh = pipeline.make_train_iterator(cfg, **kwargs)
  fresh.set_state(state)
  for want, got in zip(expected, _take(fresh, 2), strict=True):
    np.testing.assert_array_equal(want["image"], got["image"])
    np.testing.assert_array_equal(want["label"], got["label"])


# ----------------------------------------------------------------------------- eval iteration


def test_iterate_eval_covers_each_example_once_with_mask(ids_npz):
  cfg = _cfg(name="npz", path=ids_npz)
  labels, counts = [], []
  for index in (0, 1):
    batches = list(pipeline.iterate_eval(cfg, "train", batch_size=4, process_index=index,
                                         process_count=2))
    counts.append(len(batches))
    for b in batches:
      assert b["image"].shape == (4, 4, 4, 1) and b["mask"].dtype == bool
      assert (b["image"][~b["mask"]] == 0).all()
      labels.extend(b["label"][b["mask"]].tolist())
  assert counts == [7, 7]  # ceil(25 / 4) on both processes, so collectives stay in step
  assert sorted(labels) == list(range(50))
  # The order is fixed: process 0 reads ids 0, 2, 4, ...
  first = next(pipeline.iterate_eval(cfg, "train", batch_size=4, process_index=0,
                                     process_count=2))
  assert first["label"].tolist() == [0, 2, 4, 6]


def test_iterate_eval_pads_uneven_shards(ids_npz):
  cfg = _cfg(name="npz", path=ids_npz)
  per_process = [list(pipeline.iterate_eval(cfg, "test", batch_size=3, process_index=i,
                                            process_count=3)) for i in range(3)]
  assert [len(b) for b in per_process] == [1, 1, 1]  # shards of 3, 2 and 2
  assert [int(b[0]["mask"].sum()) for b in per_process] == [3, 2, 2]
  masked = sorted(sum((b[0]["label"][b[0]["mask"]].tolist() for b in per_process), []))
  assert masked == list(range(7))


def test_iterate_eval_digits_counts(digits_dir):
  batches = list(pipeline.iterate_eval(_cfg(data_dir=digits_dir), "test", batch_size=64,
                                       process_index=0, process_count=1))
  assert len(batches) == 8 and sum(int(b["mask"].sum()) for b in batches) == 450
  assert batches[-1]["mask"].tolist() == [True] * 2 + [False] * 62


# ----------------------------------------------------------------------------- npz and folder


def test_npz_holdout_and_grayscale(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "gray.npz"
  np.savez(path, images=rng.integers(0, 256, (30, 6, 5), dtype=np.uint8),
           labels=rng.integers(0, 3, 30))
  cfg = _cfg(name="npz", path=str(path))
  info = sources.get_info(cfg)
  assert (info.num_train, info.num_eval, info.image_shape) == (27, 3, (6, 5, 1))
  assert info.num_classes == 3
  batch = next(pipeline.make_train_iterator(cfg, global_batch_size=9, seed=0, process_index=0,
                                            process_count=1))
  assert batch["image"].shape == (9, 6, 5, 1)
  assert sources.get_info(cfg) == info  # the hold-out is deterministic


def test_npz_with_test_arrays(ids_npz):
  info = sources.get_info(_cfg(name="npz", path=ids_npz))
  assert (info.num_train, info.num_eval, info.num_classes) == (50, 7, 50)


def _write_folder(root, modes=("RGB", "RGB")):
  rng = np.random.default_rng(0)
  for class_name, mode in zip(("cat", "dog"), modes, strict=True):
    os.makedirs(root / class_name)
    for i in range(6):
      shape = (10 + i, 12) if mode == "L" else (10 + i, 12, 3)
      array = rng.integers(0, 256, shape, dtype=np.uint8)
      Image.fromarray(array, mode).save(root / class_name / f"{i}.png")


def test_folder_source(tmp_path):
  _write_folder(tmp_path / "imgs")
  cfg = _cfg(name="folder", path=str(tmp_path / "imgs"), image_size=8)
  info = sources.get_info(cfg)
  assert (info.num_classes, info.image_shape) == (2, (8, 8, 3))
  assert (info.num_train, info.num_eval) == (11, 1)
  batch = next(pipeline.make_train_iterator(cfg, global_batch_size=4, seed=0, process_index=0,
                                            process_count=1))
  assert batch["image"].shape == (4, 8, 8, 3) and set(batch["label"]) <= {0, 1}
  labels = []
  for split in ("train", "test"):
    for b in pipeline.iterate_eval(cfg, split, batch_size=4, process_index=0, process_count=1):
      labels.extend(b["label"][b["mask"]].tolist())
  assert sorted(labels) == [0] * 6 + [1] * 6  # classes are the sorted sub-folder names


def test_folder_of_grayscale_images_keeps_one_channel(tmp_path):
  _write_folder(tmp_path / "gray", modes=("L", "L"))
  info = sources.get_info(_cfg(name="folder", path=str(tmp_path / "gray"), image_size=6))
  assert info.image_shape == (6, 6, 1)


# ----------------------------------------------------------------------------- TFDS (mocked)


def test_cifar10_through_tfds_mock_data(tmp_path):
  cfg = _cfg(name="cifar10", data_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=12):
    info = sources.get_info(cfg)
    assert (info.num_classes, info.image_shape, info.num_train, info.num_eval) == (
        10, (32, 32, 3), 12, 12)
    it = pipeline.make_train_iterator(cfg, global_batch_size=8, seed=0, process_index=1,
                                      process_count=2)
    batch = next(it)
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["label"].max() < 10
    batches = list(pipeline.iterate_eval(cfg, "test", batch_size=5, process_index=0,
                                         process_count=1))
    assert len(batches) == 3 and sum(int(b["mask"].sum()) for b in batches) == 12


# ----------------------------------------------------------------------------- user errors


def test_unknown_name(tmp_path):
  with pytest.raises(ConfigError, match=r"input\.data\.name='cifar_ten'.*folder"):
    sources.get_info(_cfg(name="cifar_ten", data_dir=str(tmp_path)))


def test_tfds_not_prepared_and_download_false(tmp_path):
  with pytest.raises(DataError, match=r"'cifar10'.*download=True.*data_dir"):
    sources.get_info(_cfg(name="cifar10", data_dir=str(tmp_path)))


@pytest.fixture(scope="module")
def tfrecord_dir(tmp_path_factory):
  """Digits prepared as tfrecord: a TFDS data set without random access."""
  data_dir = str(tmp_path_factory.mktemp("tfrecord"))
  builder = digits.SsljaxDigits(data_dir=data_dir, file_format="tfrecord")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir


def test_tfrecord_data_is_read_with_tf_data(tfrecord_dir, digits_dir):
  cfg = _cfg(data_dir=tfrecord_dir)
  info = sources.get_info(cfg)
  assert (info.num_train, info.num_eval, info.num_classes) == (1347, 450, 10)
  it = pipeline.make_train_iterator(cfg, global_batch_size=256, seed=3)
  assert isinstance(it, pipeline.SequentialTrainIterator) and it.batches_per_epoch == 5
  batches = _take(it, 6)
  assert batches[0]["image"].shape == (256, 8, 8, 1) and batches[0]["label"].dtype == np.int32
  # An epoch (5 batches, the remainder dropped) holds distinct images of the train split.
  epoch = np.concatenate([b["image"].reshape(256, -1) for b in batches[:5]])
  assert len({row.tobytes() for row in epoch}) > 1200
  # The same seed gives the same order; the next epoch is shuffled differently.
  again = _take(pipeline.make_train_iterator(cfg, global_batch_size=256, seed=3), 6)
  np.testing.assert_array_equal(again[5]["image"], batches[5]["image"])
  assert not np.array_equal(batches[5]["image"], batches[0]["image"])
  # Same labels multiset as the random-access copy of the split.
  ra = pipeline.iterate_eval(_cfg(data_dir=digits_dir), "test", batch_size=64)
  seq = pipeline.iterate_eval(cfg, "test", batch_size=64)
  ra_labels = np.concatenate([b["label"][b["mask"]] for b in ra])
  seq_labels = np.concatenate([b["label"][b["mask"]] for b in seq])
  assert len(seq_labels) == 450
  np.testing.assert_array_equal(np.sort(seq_labels), np.sort(ra_labels))


def test_tfrecord_iterator_resumes_exactly_through_grains_handler(tfrecord_dir, tmp_path):
  import grain

  cfg = _cfg(data_dir=tfrecord_dir)
  it = pipeline.make_train_iterator(cfg, global_batch_size=128, seed=0)
  _take(it, 9)  # Into the second epoch (10 batches of 128 per epoch).
  handler = grain.checkpoint.CheckpointHandler()
  handler.save(tmp_path, args=grain.checkpoint.CheckpointSave(it))
  want = _take(it, 3)  # Crosses the next epoch boundary too.
  fresh = pipeline.make_train_iterator(cfg, global_batch_size=128, seed=0)
  handler.restore(tmp_path, args=grain.checkpoint.CheckpointRestore(fresh))
  got = _take(fresh, 3)
  for a, b in zip(want, got, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_bad_split(digits_dir):
  with pytest.raises(ConfigError, match=r"input\.data\.eval_split='validation'"):
    sources.get_info(_cfg(data_dir=digits_dir, eval_split="validation"))


def test_missing_and_empty_folder(tmp_path):
  with pytest.raises(DataError, match=r"input\.data\.path=.*nope.*does not exist"):
    sources.get_info(_cfg(name="folder", path=str(tmp_path / "nope")))
  (tmp_path / "empty" / "cat").mkdir(parents=True)
  with pytest.raises(DataError, match=r"input\.data\.path=.*empty.*folder has no images"):
    sources.get_info(_cfg(name="folder", path=str(tmp_path / "empty")))
  with pytest.raises(ConfigError, match=r"input\.data\.path is not set"):
    sources.get_info(_cfg(name="folder"))


def test_undecodable_image_names_the_file(tmp_path):
  _write_folder(tmp_path / "imgs")
  (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"this is not a png")
  with pytest.raises(DataError, match=r"broken\.png"):
    sources.get_info(_cfg(name="folder", path=str(tmp_path / "imgs")))


@pytest.mark.parametrize("arrays,match", [
    (dict(images=np.zeros((4, 3, 3), np.uint8)), r"no 'labels' array"),
    (dict(labels=np.zeros(4, int)), r"no 'images' array"),
    (dict(images=np.zeros((4, 3, 3), np.float32), labels=np.zeros(4, int)), r"dtype float32"),
    (dict(images=np.zeros((4, 3, 3, 2), np.uint8), labels=np.zeros(4, int)), r"shape"),
    (dict(images=np.zeros((4, 3, 3), np.uint8), labels=np.zeros(5, int)), r"4 'images' but 5"),
    (dict(images=np.zeros((4, 3, 3), np.uint8), labels=np.zeros(4, int),
          test_images=np.zeros((2, 3, 3), np.uint8)), r"test_labels"),
])
def test_bad_npz(tmp_path, arrays, match):
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(DataError, match=rf"input\.data\.path=.*bad\.npz.*{match}"):
    sources.get_info(_cfg(name="npz", path=str(path)))


def test_npz_missing_or_not_npz(tmp_path):
  with pytest.raises(DataError, match=r"does not exist"):
    sources.get_info(_cfg(name="npz", path=str(tmp_path / "none.npz")))
  (tmp_path / "text.npz").write_text("hello")
  with pytest.raises(DataError, match=r"cannot read it as \.npz"):
    sources.get_info(_cfg(name="npz", path=str(tmp_path / "text.npz")))


def test_batch_size_must_divide_by_process_count(ids_npz):
  with pytest.raises(ConfigError, match=r"input\.batch_size=9.*2 processes"):
    pipeline.make_train_iterator(_cfg(name="npz", path=ids_npz), global_batch_size=9, seed=0,
                                 process_index=0, process_count=2)


def test_errors_are_one_line(tmp_path):
  with pytest.raises(DataError) as error:
    sources.get_info(_cfg(name="cifar10", data_dir=str(tmp_path)))
  assert "\n" not in str(error.value)


def test_label_fraction_marks_a_fixed_subset_of_exact_size(digits_dir):
  cfg = _cfg(data_dir=digits_dir)
  num = sources.get_info(cfg).num_train
  mask = pipeline.labelled_mask(num, 0.1)
  assert mask.sum() == round(0.1 * num)
  np.testing.assert_array_equal(mask, pipeline.labelled_mask(num, 0.1))  # Same in every process.
  assert pipeline.labelled_mask(num, 1e-9).sum() == 1  # At least one labelled example.
  # The batches carry the mask of the examples they hold, whatever the shuffle seed: over one
  # epoch of single-process batches, the labelled count matches the subset (batches drop the
  # remainder, so compare against the examples seen).
  seen = labelled = 0
  it = pipeline.make_train_iterator(cfg, global_batch_size=num // 4, seed=7, process_index=0,
                                    process_count=1, label_fraction=0.1)
  for _ in range(4):
    batch = next(it)
    assert batch["labelled"].dtype == bool and batch["labelled"].shape == batch["label"].shape
    seen += len(batch["label"])
    labelled += int(batch["labelled"].sum())
  assert abs(labelled - 0.1 * seen) <= 0.1 * seen * 0.5 + 3
  full = next(pipeline.make_train_iterator(cfg, global_batch_size=8, seed=0, process_index=0,
                                           process_count=1))
  assert "labelled" not in full  # The default (all labels) adds nothing.


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, "half"])
def test_label_fraction_outside_zero_one_is_a_config_error(digits_dir, bad):
  with pytest.raises(ConfigError, match=r"input\.label_fraction=.* must be in \(0, 1\]"):
    pipeline.make_train_iterator(_cfg(data_dir=digits_dir), global_batch_size=8, seed=0,
                                 process_index=0, process_count=1, label_fraction=bad)


class _CountingSource:
  """A fake TFDS data source over fixed arrays that counts reads per index."""

  def __init__(self, images, labels):
    self.images, self.labels, self.reads = images, labels, np.zeros(len(labels), int)

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    self.reads[index] += 1
    return {"image": self.images[index], "label": self.labels[index]}


def test_small_tfds_split_is_decoded_once():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(20, 6, 6, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(20,))
  fake = _CountingSource(images, labels)
  source = sources._TfdsSource(fake, resize_to=None, image_shape=(6, 6, 3))
  for _ in range(3):  # Three epochs in a shuffled order.
    for i in rng.permutation(20):
      ex = source[int(i)]
      np.testing.assert_array_equal(ex["image"], images[i])
      assert ex["label"] == labels[i] and ex["label"].dtype == np.int32
  assert fake.reads.tolist() == [1] * 20  # Later epochs come from memory.


def test_large_tfds_split_is_read_every_time(monkeypatch):
  monkeypatch.setattr(sources, "DECODED_CACHE_BYTES", 20 * 6 * 6 * 3 - 1)  # One byte too few.
  images = np.zeros((20, 6, 6, 3), np.uint8)
  fake = _CountingSource(images, np.zeros(20, int))
  source = sources._TfdsSource(fake, resize_to=None, image_shape=(6, 6, 3))
  for _ in range(2):
    for i in range(20):
      source[i]
  assert fake.reads.tolist() == [2] * 20


def test_openings_of_one_prepared_split_share_its_decoded_images(digits_dir, monkeypatch):
  # The training iterator, each RankMe and each evaluation open the split anew; the second and
  # later openings in a process must serve the images the first one decoded.
  monkeypatch.setattr(sources, "_DECODED_STORES", {})
  cfg = _cfg(data_dir=digits_dir)
  first = sources.open_split(cfg, "test", key="input.data.eval_split").source
  want = [first[i] for i in range(len(first))]
  second = sources.open_split(cfg, "test", key="input.data.eval_split").source
  assert second is not first
  second._source = None  # Any read that misses the shared images now fails.
  for i, ex in enumerate(want):
    got = second[i]
    np.testing.assert_array_equal(got["image"], ex["image"])
    assert got["label"] == ex["label"]
  # Another split (or the same split prepared again elsewhere) has images of its own.
  other = sources.open_split(cfg, "train", key="input.data.train_split").source
  assert not other._cached.any()
