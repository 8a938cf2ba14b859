"""Unlabelled data and probe splits: pretrain without labels, probe on other labelled data.

An unlabelled image folder (images directly in it), ``input.data.labels=False`` and an unlabelled
TFDS split (STL-10's ``unlabelled``, mocked) train and report RankMe; the probes read
``eval.data`` when it names labelled data, and are skipped with a printed note when nothing
labelled is configured.
"""

import json

import numpy as np
import pytest
from PIL import Image

from experiments import simclr
from ssljax import data, train
from ssljax.errors import ConfigError, DataError


def _images(folder, count, *, classes=None, seed=0):
  """Writes ``count`` 12 x 10 PNGs into ``folder`` (or into ``folder/<class>`` round-robin)."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True)
  for i in range(count):
    where = folder if classes is None else folder / f"c{i % classes}"
    where.mkdir(exist_ok=True)
    # Class c is brighter in its own band of rows, so the probe has something to find.
    pixels = rng.integers(0, 60, (12, 10, 3), dtype=np.uint8)
    if classes is not None:
      pixels[4 * (i % classes):4 * (i % classes) + 4] += 150
    Image.fromarray(pixels).save(where / f"{i:03d}.png")


def _config(folder, **eval_data):
  c = simclr.get_config("runlocal")
  c.input.data.name = "folder"
  c.input.data.path = str(folder)
  c.input.data.image_size = 16
  c.total_steps = 2
  c.checkpoint_every_steps = 2
  c.eval.linear_epochs = 2
  c.eval.data.update(eval_data)
  return c


def test_unlabelled_folder_is_described_without_labels(tmp_path):
  _images(tmp_path / "photos", 20)
  info = data.get_info(_config(tmp_path / "photos").input.data)
  assert info.task is None and info.num_classes == 0 and not info.labelled
  # Photos of any size are whole-photo canvases with their own size beside them.
  assert info.element_spec == {"image": ((16, 16, 3), np.dtype(np.uint8)),
                               "image_hw": ((2,), np.dtype(np.int32))}
  # The 10% hold-out still splits it, deterministically.
  assert (info.num_train, info.num_eval) == (18, 2)


def test_unlabelled_folder_trains_and_probes_on_another_folder(tmp_path, capsys):
  _images(tmp_path / "photos", 40)
  _images(tmp_path / "labelled", 40, classes=2, seed=1)
  c = _config(tmp_path / "photos", name="folder", path=str(tmp_path / "labelled"))
  results = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["step"] == 2 and results["rankme"] > 0
  # The probes ran on the labelled folder's 10% hold-out (4 images, 2 classes).
  assert 0.0 <= results["knn_top1"] <= 1.0 and 0.0 <= results["linear_top1"] <= 1.0
  assert json.load(open(tmp_path / "run" / "results.json"))["knn_top1"] == results["knn_top1"]


def test_without_labels_only_collapse_metrics_are_reported(tmp_path, capsys):
  _images(tmp_path / "photos", 40)
  results = train.train_and_evaluate(_config(tmp_path / "photos"), str(tmp_path / "run"))
  assert {"rankme", "rankme_representation", "embedding_std"} <= set(results)
  assert not any(k.startswith(("knn", "linear")) for k in results), results
  out = capsys.readouterr().out
  assert "note: " in out and "has no labels here" in out and "eval.data" in out, out


def test_stl10_pretrains_on_unlabelled_and_probes_on_train_test(tmp_path):
  """STL-10's recipe shape: SSL on ``unlabelled`` (labels off), probes on ``train`` / ``test``."""
  import tensorflow_datasets as tfds

  c = simclr.get_config("runlocal")
  c.input.data.name = "stl10"
  c.input.data.train_split = "unlabelled"
  c.input.data.labels = False
  c.input.image_size = 16
  for v in c.input.views.values():
    v.size = 16
  c.total_steps = 2
  c.checkpoint_every_steps = 2
  c.eval.linear_epochs = 2
  c.eval.data.train_split = "train"
  with tfds.testing.mock_data(num_examples=32):
    info = data.get_info(c.input.data)
    assert info.task is None and "label" not in info.element_spec
    results = train.train_and_evaluate(c, str(tmp_path))
  assert results["step"] == 2 and results["rankme"] > 0
  assert 0.0 <= results["knn_top1"] <= 1.0


def test_probe_data_errors_are_one_line(tmp_path):
  _images(tmp_path / "photos", 20)
  c = _config(tmp_path / "photos", name="folder", path=str(tmp_path / "photos"))
  info = data.get_info(c.input.data)
  run = train.build(c, info)
  from ssljax.evals.evaluator import Evaluator, check_class_labels

  # An unlabelled probe folder is described as such: the probes are skipped, not faked.
  ev = Evaluator(c, run.method, run.mesh, info)
  assert ev.probe_info.task is None
  with pytest.raises(ConfigError, match=r"eval\.data\.colour: input\.data has no such field"):
    bad = _config(tmp_path / "photos")
    with bad.eval.data.unlocked():
      bad.eval.data.colour = "red"
    Evaluator(bad, run.method, run.mesh, info)
  # Labels outside [0, C) (an unlabelled TFDS split reads -1) name the fix.
  part = {"label": np.array([0, -1])}
  with pytest.raises(DataError, match=r"labels span \[-1, 0\] .*train_split=train"):
    check_class_labels(part, part, 2, where="stl10")
