"""Checkpoint folders that are not ours, or not this method's, are refused and left untouched."""

import json

import pytest

from ssljax import checkpoint
from ssljax.errors import CheckpointError


def _marker(folder, step_dir, **meta):
  (folder / str(step_dir) / "meta").mkdir(parents=True)
  (folder / str(step_dir) / "meta" / "metadata").write_text(json.dumps(meta))


def test_absent_or_empty_means_fresh(tmp_path):
  assert checkpoint.validate_directory(tmp_path / "nothing") is None
  (tmp_path / "empty").mkdir()
  assert checkpoint.validate_directory(tmp_path / "empty") is None


def test_latest_step_of_an_ssljax_folder(tmp_path):
  for step in (3, 12):
    _marker(tmp_path, step, format=checkpoint.FORMAT, method="barlow", step=step)
  assert checkpoint.validate_directory(tmp_path, method="barlow") == 12


def test_foreign_files_are_refused(tmp_path):
  (tmp_path / "model.pt").write_bytes(b"x")
  with pytest.raises(CheckpointError, match="not an ssljax checkpoint folder"):
    checkpoint.validate_directory(tmp_path)
  assert (tmp_path / "model.pt").read_bytes() == b"x"


def test_step_folder_without_marker_is_refused(tmp_path):
  (tmp_path / "100").mkdir()
  with pytest.raises(CheckpointError, match="no readable metadata marker"):
    checkpoint.validate_directory(tmp_path)


def test_other_method_is_refused(tmp_path):
  _marker(tmp_path, 5, format=checkpoint.FORMAT, method="simclr", step=5)
  with pytest.raises(CheckpointError, match="written by method 'simclr', not 'barlow'"):
    checkpoint.validate_directory(tmp_path, method="barlow")
