"""End to end: train_and_evaluate writes the run's outputs and resumes exactly."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import barlow
from ssljax import train
from ssljax.errors import CheckpointError


def _config(digits_dir, **overrides):
  c = barlow.get_config("runlocal")
  c.input.data.data_dir = digits_dir
  # A constant LR after warm-up, so the schedule does not depend on total_steps and a run that is
  # stopped and resumed with a larger total_steps follows the same trajectory as one that is not.
  c.optim.min_lr_ratio = 1.0
  c.update_from_flattened_dict(overrides)  # Dotted keys, e.g. "input.batch_size".
  return c


def _params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  tree = ocp.StandardCheckpointer().restore(path)
  return jax.tree.map(np.asarray, tree["params"])


@pytest.fixture(scope="module")
def full_run(digits_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  cfg = _config(digits_dir, total_steps=6,
                **{"eval.rankme_every_steps": 2, "eval.every_steps": 4})
  results = train.train_and_evaluate(cfg, workdir)
  return workdir, results


def test_outputs(full_run):
  workdir, results = full_run
  files = os.listdir(workdir)
  assert {"config.json", "metrics.jsonl", "results.json", "checkpoints"} <= set(files)
  assert any(f.startswith("events.out.tfevents") for f in files), files
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["method"] == "barlow" and config["total_steps"] == 6
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [2, 4, 6]
  for r in rows:
    assert {"step", "loss", "learning_rate", "samples_per_sec", "rankme"} <= set(r), r
    assert np.isfinite(r["loss"]) and r["samples_per_sec"] > 0
  # eval.every_steps=4: a mid-training evaluation is logged at step 4 (the final one goes to
  # results.json).
  assert "linear_top1" in rows[1] and "knn_top1" in rows[1]
  assert "linear_top1" not in rows[0] and "linear_top1" not in rows[2]
  saved = json.load(open(os.path.join(workdir, "results.json")))
  for key in ("linear_top1", "knn_top1", "rankme"):
    assert key in saved
  assert 0.0 <= saved["linear_top1"] <= 1.0 and 0.0 <= saved["knn_top1"] <= 1.0
  assert 1.0 <= saved["rankme"] <= 32.0
  assert saved["step"] == 6 and results["linear_top1"] == saved["linear_top1"]
  # RankMe at the final step and in results.json come from the same (shared) train features.
  assert saved["rankme"] == pytest.approx(rows[-1]["rankme"], rel=1e-12)
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [3, 6]


@pytest.mark.slow
def test_resume_continues_exactly(full_run, digits_dir, tmp_path):
  full_dir, _ = full_run
  workdir = str(tmp_path / "resumed")
  train.train_and_evaluate(_config(digits_dir, total_steps=3, **{"eval.linear": False}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3"]
  train.train_and_evaluate(_config(digits_dir, total_steps=6, **{"eval.linear": False}), workdir)
  want, got = _params(full_dir, 6), _params(workdir, 6)
  # The first 3 steps must be the same too (same data order, same augmentation keys).
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), _params(full_dir, 3),
               _params(workdir, 3))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), want, got)
  losses_full = {r["step"]: r["loss"] for r in map(json.loads, open(f"{full_dir}/metrics.jsonl"))}
  losses_res = {r["step"]: r["loss"] for r in map(json.loads, open(f"{workdir}/metrics.jsonl"))}
  assert losses_res[6] == pytest.approx(losses_full[6], rel=1e-6)
  # Resuming with a config that builds other shapes is refused before anything is touched.
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  with pytest.raises(CheckpointError, match=r"shape \(8,\) but this config builds \(4,\)"):
    train.train_and_evaluate(_config(digits_dir, total_steps=9, **{"encoder.width": 4}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


@pytest.mark.slow
def test_cifar10_through_the_real_tfds_path(tmp_path):
  """The cifar10 recipe (runlocal) trains and evaluates on TFDS's mocked cifar10, offline."""
  import tensorflow_datasets as tfds

  c = barlow.get_config("data=cifar10,runlocal")
  c.total_steps = 2
  c.checkpoint_every_steps = 2
  c.eval.linear_epochs = 2
  with tfds.testing.mock_data(num_examples=48):
    results = train.train_and_evaluate(c, str(tmp_path))
  assert results["step"] == 2
  assert 0.0 <= results["linear_top1"] <= 1.0 and 0.0 <= results["knn_top1"] <= 1.0
  config = json.load(open(tmp_path / "config.json"))
  assert config["input"]["data"]["name"] == "cifar10"
  # The CIFAR recipe trains the online linear probe on stop-gradient features.
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert config["eval"]["online_probe"] and "online_probe_top1" in rows[-1], rows[-1]
  assert config["encoder"]["stem"] == "cifar" and config["projector"]["out_dim"] == 32


@pytest.mark.slow
def test_teacher_method_resumes_exactly(digits_dir, tmp_path):
  """DINO's EMA teacher, centre and teacher temperature are checkpointed with the state."""
  from experiments import dino

  def cfg(total):
    c = dino.get_config("runlocal")
    c.input.data.data_dir = digits_dir
    c.optim.min_lr_ratio = 1.0  # Schedules that do not depend on total_steps (see _config).
    c.dino.base_momentum = c.dino.final_momentum = 0.9
    c.total_steps = total
    c.eval.linear = False
    c.mesh = (("data", 1),)  # Resuming does not depend on the device count; one compiles faster.
    return c

  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  train.train_and_evaluate(cfg(6), full)
  train.train_and_evaluate(cfg(3), resumed)
  train.train_and_evaluate(cfg(6), resumed)

  def state(workdir):
    path = os.path.join(workdir, "checkpoints", "6", "state")
    tree = ocp.StandardCheckpointer().restore(path)
    return jax.tree.map(np.asarray, {"params": tree["params"], "method": tree["method_state"]})

  want, got = state(full), state(resumed)
  assert set(want["method"]) == {"student", "teacher", "center", "teacher_temp"}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), want, got)


def test_hidden_labels_reach_neither_methods_nor_the_online_probe():
  batch = {"label": jnp.asarray([3, 1, 4, 1], jnp.int32),
           "labelled": jnp.asarray([True, False, True, False])}
  np.testing.assert_array_equal(train.visible_labels(batch), [3, -1, 4, -1])
  np.testing.assert_array_equal(train.visible_labels({"label": batch["label"]}), [3, 1, 4, 1])
  rng = np.random.default_rng(0)
  probe = {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
           "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
  rep = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
  loss, top1 = train._online_probe_loss(probe, rep, train.visible_labels(batch))
  # Reference: the mean cross-entropy and accuracy over the two visible rows only.
  logits = np.asarray(rep @ probe["kernel"] + probe["bias"], np.float64)[[0, 2]]
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(loss), -np.mean(logp[[0, 1], [3, 4]]), rtol=1e-5)
  np.testing.assert_allclose(float(top1), np.mean(logits.argmax(-1) == [3, 4]))


@pytest.mark.slow
def test_bss_switch_standardises_each_view_on_its_own():
  from ssljax.data.augment import ViewRecipe

  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3)), jnp.uint8)
  recipes = [ViewRecipe(size=8), ViewRecipe(size=8)]
  rng = jax.random.key(0)
  plain = train.make_views(rng, images, recipes)
  same = train.make_views(rng, images, recipes, bss=(0.0, 0.0))  # r = 0 swaps nothing.
  for a, b in zip(plain, same, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4)
  full = train.make_views(rng, images, recipes, bss=(1.0, 1.0))  # r = 1: one amplitude per view.
  for view in full:
    amp = np.abs(np.fft.fft2(np.asarray(view, np.float64), axes=(1, 2)))
    np.testing.assert_allclose(amp, np.broadcast_to(amp[:1], amp.shape), rtol=1e-3, atol=1e-3)
  amp0, amp1 = (np.abs(np.fft.fft2(np.asarray(v[:1], np.float64), axes=(1, 2))) for v in full)
  assert not np.allclose(amp0, amp1)  # Each view drew its own reference image / augmentation.
