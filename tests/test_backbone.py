"""Backbones as a product (ssljax.backbone, python -m ssljax.export / ssljax.evaluate).

One tiny SimCLR run (pretrained on a folder, probed on another) is exported, loaded, started from
and evaluated again; the torchvision layout is checked against names and shapes written here from
torchvision's ResNet definition, not from the exporter.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_unlabelled import _config, _images

import ssljax
from experiments import byol, simclr
from ssljax import backbone, sharding, torchvision_export, train
from ssljax.errors import CheckpointError
from ssljax.models.resnet import make_encoder
from ssljax.tools import embed as embed_tool
from ssljax.tools import evaluate as evaluate_tool
from ssljax.tools import export as export_tool

# --------------------------------------------------------------------------- torchvision layout


def torchvision_resnet_layout(arch):
  """torchvision.models.resnet's state_dict names and shapes (less ``fc``), from its definition:
  conv1 7x7 64 + bn1; layer1..4 with [2,2,2,2] / [3,4,6,3] blocks of widths 64..512; a basic block
  has conv1/bn1, conv2/bn2 (3x3), a bottleneck conv1 1x1, conv2 3x3, conv3 1x1 (x4 expansion);
  the first block of a stage whose input width or stride differs has downsample.0 (1x1 conv) and
  downsample.1 (BatchNorm). Conv weights are [out, in, kH, kW]."""
  blocks, kind = {"resnet18": ([2, 2, 2, 2], "basic"), "resnet34": ([3, 4, 6, 3], "basic"),
                  "resnet50": ([3, 4, 6, 3], "bottleneck")}[arch]
  expansion = 4 if kind == "bottleneck" else 1
  shapes = {}

  def bn(name, c):
    for field in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{name}.{field}"] = (c,)
    shapes[f"{name}.num_batches_tracked"] = ()

  shapes["conv1.weight"] = (64, 3, 7, 7)
  bn("bn1", 64)
  c_in = 64
  for stage, count in enumerate(blocks):
    width = 64 * 2 ** stage
    for b in range(count):
      p = f"layer{stage + 1}.{b}"
      if kind == "basic":
        convs = [(width, c_in, 3), (width, width, 3)]
      else:
        convs = [(width, c_in, 1), (width, width, 3), (width * expansion, width, 1)]
      for k, (o, i, s) in enumerate(convs, 1):
        shapes[f"{p}.conv{k}.weight"] = (o, i, s, s)
        bn(f"{p}.bn{k}", o)
      if b == 0 and (stage > 0 or c_in != width * expansion):
        shapes[f"{p}.downsample.0.weight"] = (width * expansion, c_in, 1, 1)
        bn(f"{p}.downsample.1", width * expansion)
      c_in = width * expansion
  return shapes


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_npz_has_torchvisions_names_and_shapes(arch):
  module, _ = make_encoder(arch, stem="imagenet", width=64)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                train=False))
  variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
  config = simclr.get_config("runlocal")
  config.encoder.update(dict(name=arch, width=64, stem="imagenet"))
  sd = torchvision_export.state_dict(variables, config)
  assert {k: v.shape for k, v in sd.items()} == torchvision_resnet_layout(arch)
  assert sd["bn1.num_batches_tracked"].dtype == np.int64


def test_values_land_in_the_right_tensors():
  """HWIO -> OIHW, BatchNorm scale/bias/mean/var -> weight/bias/running_mean/running_var."""
  module, _ = make_encoder("resnet18", stem="cifar", width=64)
  variables = module.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)), train=False)
  stats = jax.tree.map(lambda a: a + np.random.default_rng(0).normal(size=a.shape),
                       variables["batch_stats"])
  config = simclr.get_config("runlocal")
  config.encoder.update(dict(name="resnet18", width=64, stem="cifar"))
  sd = torchvision_export.state_dict({**variables, "batch_stats": stats}, config)
  kernel = np.asarray(variables["params"]["stage2_block1"]["shortcut"]["conv"]["kernel"])
  np.testing.assert_array_equal(sd["layer2.0.downsample.0.weight"][:, :, 0, 0], kernel[0, 0].T)
  np.testing.assert_array_equal(sd["layer3.1.bn2.running_var"],
                                stats["stage3_block2"]["conv2"]["bn"]["var"])
  np.testing.assert_array_equal(sd["conv1.weight"].shape, (64, 3, 3, 3))  # the cifar stem
  assert "maxpool" in torchvision_export.loading_note(config)
  config.encoder.width = 32
  assert torchvision_export.architecture(config) is None


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_resnet_backbones_reload_with_identical_outputs(arch, tmp_path):
  """A ResNet's variables (random BatchNorm statistics, so they matter) written by
  ``backbone.write`` and read back give the same features, beside torchvision's .npz."""
  from ssljax import data, methods

  config = simclr.get_config("runlocal")
  config.encoder.update(dict(name=arch, width=64, stem="imagenet"))
  info = data.DatasetInfo(name="photos", num_classes=2, image_shape=(32, 32, 3), num_train=4,
                          num_eval=4)
  method = methods.make(config, total_steps=1, steps_per_epoch=1, info=info)
  module = method.backbone.module
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = module.init(jax.random.key(1), x, train=False)
  rng = np.random.default_rng(0)
  variables["batch_stats"] = jax.tree.map(
      lambda a: np.asarray(a) + rng.uniform(0.1, 0.5, a.shape).astype(np.float32),
      variables["batch_stats"])
  meta = backbone.write(tmp_path / "out", method, config, info, variables, step=7)
  assert meta["torchvision"]["file"] == f"torchvision_{arch}.npz"
  assert (tmp_path / "out" / meta["torchvision"]["file"]).exists()
  apply, loaded = ssljax.load_backbone(tmp_path / "out")
  f = jax.jit(apply)
  np.testing.assert_array_equal(np.asarray(f(loaded, x)), np.asarray(f(variables, x)))


# ------------------------------------------------------------------------- one run, end to end


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A 2-step SimCLR run pretrained on folder ``photos`` and probed on folder ``labelled``."""
  root = tmp_path_factory.mktemp("backbone")
  _images(root / "photos", 40)
  _images(root / "labelled", 40, classes=2, seed=1)
  c = _config(root / "photos", name="folder", path=str(root / "labelled"))
  train.train_and_evaluate(c, str(root / "run"))
  return root


@pytest.fixture(scope="module")
def exported(run_dir):
  out = run_dir / "exported"
  export_tool.run(["export", f"--workdir={run_dir / 'run'}", f"--out={out}"])
  return out


def test_exported_backbone_reloads_with_identical_features(run_dir, exported):
  meta = json.loads((exported / "backbone.json").read_text())
  assert meta["method"] == "simclr" and meta["step"] == 2 and meta["torchvision"] is None
  restored = backbone.restore(run_dir / "run")
  x = jax.random.normal(jax.random.key(3), (4, 16, 16, 3))
  want = jax.jit(restored.method.represent)(restored.params, restored.method_state,
                                            x)["representation"]
  apply, variables = ssljax.load_backbone(exported)
  got = jax.jit(apply)(variables, x)
  assert got.shape == (4, meta["feature_dim"])
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _init_from_config(run_dir, exported, module=simclr):
  c = module.get_config("runlocal")
  c.input.data.name = "folder"
  c.input.data.path = str(run_dir / "labelled")
  c.input.data.image_size = 16
  c.encoder.init_from = str(exported)
  return c


def test_init_from_reproduces_the_exported_features(run_dir, exported):
  run = train.build(_init_from_config(run_dir, exported))
  state = train.create_state(run)
  apply, variables = ssljax.load_backbone(exported)
  x = jax.random.normal(jax.random.key(4), (4, 16, 16, 3))
  rep = jax.jit(run.method.represent)(state.params["method"], state.method_state, x)
  np.testing.assert_array_equal(np.asarray(rep["representation"]),
                                np.asarray(jax.jit(apply)(variables, x)))


def test_init_from_fills_every_copy_of_the_backbone(run_dir, exported):
  """BYOL's EMA target network starts from the exported backbone too, not from its own init."""
  run = train.build(_init_from_config(run_dir, exported, byol))
  state = train.create_state(run)
  _, variables = ssljax.load_backbone(exported)
  teacher = state.method_state["teacher"]
  copies = [(state.params["method"]["net"]["encoder"], variables["params"]),
            (teacher["params"]["encoder"], variables["params"]),
            (state.method_state["net"]["batch_stats"]["encoder"], variables["batch_stats"]),
            (teacher["state"]["batch_stats"]["encoder"], variables["batch_stats"])]
  for tree, want in copies:
    assert jax.tree.structure(tree) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The copies are separate buffers: the step donates the state, and XLA refuses to donate one
  # buffer twice (python main.py --config=experiments/byol.py --config.encoder.init_from=... once
  # failed on its first step so).
  batch = sharding.global_batch(
      {"image": np.zeros((run.config.input.batch_size, 16, 16, 3), np.uint8),
       "label": np.zeros((run.config.input.batch_size,), np.int32)}, run.mesh)
  state, metrics = run.step_fn(state, batch)
  assert np.isfinite(float(metrics["loss"]))


def test_evaluate_reproduces_results_without_the_training_data(run_dir, exported, capsys):
  work = run_dir / "run_copy"
  shutil.copytree(run_dir / "run", work)
  before = (work / "results.json").read_text()
  shutil.rmtree(run_dir / "photos")  # The training data are gone; the probe folder stays.
  results = evaluate_tool.run(["evaluate", f"--workdir={work}"])
  trained = json.loads(before)
  for key in ("knn_top1", "linear_top1"):
    assert results[key] == pytest.approx(trained[key], abs=1e-6), key
  assert json.loads((work / "evaluations" / "probe_step2.json").read_text())["knn_top1"] == \
      results["knn_top1"]
  assert (work / "results.json").read_text() == before  # Never overwritten.
  # The exported backbone gives the same probes; an option from the command line; a second
  # evaluation gets its own file.
  again = evaluate_tool.run(["evaluate", f"--backbone={exported}", "--config.eval.knn_k=(5,)"])
  assert again["knn_top1"] == pytest.approx(trained["knn_top1"], abs=1e-6)
  evaluate_tool.run(["evaluate", f"--backbone={exported}"])
  assert (exported / "evaluations" / "probe_step2_2.json").exists()


def test_embed_writes_a_map_and_projector_files(run_dir, exported, capsys):
  written = embed_tool.run(["embed", f"--backbone={exported}", "--split=train", "--map=pca"])
  png = open(written["png"], "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
  points = np.load(written["points"])
  assert points["points"].shape == (written["rows"], 2) and set(points["labels"]) == {0, 1}
  tensors = np.loadtxt(f"{written['projector']}/tensors.tsv", delimiter="\t")
  assert tensors.shape == (written["rows"], json.loads(
      (exported / "backbone.json").read_text())["feature_dim"])
  assert "tensor_path" in open(f"{written['projector']}/projector_config.pbtxt").read()
  # More rows than --max_points: a random subsample, said so; t-SNE is the default without umap.
  capsys.readouterr()
  written = embed_tool.run(["embed", f"--workdir={run_dir / 'run'}", "--max_points=20",
                            "--split=train", "--map=tsne"])
  assert written["rows"] == 20 and written["map"] == "tsne"
  assert "drew 20 at random" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_the_papers_protocols_train_and_write_their_own_file(run_dir, exported, protocol):
  flags = [f"--config.eval.protocols.{protocol}.{k}={v}"
           for k, v in dict(epochs=2, batch_size=16).items()]
  results = evaluate_tool.run(["evaluate", f"--backbone={exported}", f"--protocol={protocol}",
                               *flags])
  assert results["protocol"] == protocol and results["steps"] == 2 * (36 // 16)
  assert 0.0 <= results["top1"] <= 1.0 and 0.0 <= results["train_top1"] <= 1.0
  written = json.loads((exported / "evaluations" / f"{protocol}_step2.json").read_text())
  assert written["top1"] == results["top1"]


def test_layer_decay_follows_the_vit_depth():
  """BEiT/MAE layer-wise decay: layer l of L blocks gets decay ** (L + 1 - l); embeddings are
  layer 0, the final norm and the head layer L + 1 (factor 1)."""
  from ssljax.evals.protocols import layer_scales

  one = np.zeros(())
  params = {"head": {"kernel": one},
            "backbone": {"patch_embed": {"kernel": one}, "cls_token": one, "block0": {"w": one},
                         "block1": {"w": one}, "block2": {"w": one}, "norm": {"scale": one}}}
  scales = layer_scales(params, 0.5)
  assert scales["head"]["kernel"] == 1.0 and scales["backbone"]["norm"]["scale"] == 1.0
  assert scales["backbone"]["block2"]["w"] == 0.5 and scales["backbone"]["block0"]["w"] == 0.125
  assert scales["backbone"]["patch_embed"]["kernel"] == scales["backbone"]["cls_token"] == 0.0625
  resnet = {"head": {"b": one}, "backbone": {"stage1_block1": {"w": one}}}
  assert set(jax.tree.leaves(layer_scales(resnet, 0.5))) == {1.0}


def _error_line(capsys, fn, argv):
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    fn(argv)
  assert e.value.code == 2
  return [line for line in capsys.readouterr().err.splitlines() if line.strip()][-1]


def test_bad_input_is_one_line(run_dir, exported, tmp_path, capsys):
  line = _error_line(capsys, export_tool.run,
                     ["export", f"--workdir={run_dir / 'run'}", f"--out={exported}"])
  assert "exists and is not empty" in line and "nothing was overwritten" in line
  (tmp_path / "empty_run").mkdir()
  (tmp_path / "empty_run" / "config.json").write_text((run_dir / "run" / "config.json").read_text())
  line = _error_line(capsys, evaluate_tool.run, ["evaluate", f"--workdir={tmp_path / 'empty_run'}"])
  assert "has no checkpoint" in line
  line = _error_line(capsys, evaluate_tool.run, ["evaluate"])
  assert "--workdir" in line and "--backbone" in line

  with pytest.raises(CheckpointError, match="holds no exported backbone"):
    train.build(_init_from_config(run_dir, tmp_path))
  wide = _init_from_config(run_dir, exported)
  wide.encoder.width = 16
  # resnet_tiny at width 8 exported, width 16 asked for: the first parameter that differs, both
  # shapes and the exported encoder are named.
  with pytest.raises(CheckpointError, match=r"parameter 'params/\S+' has shape \(8,\) there "
                                            r"but \(16,\) here \(exported 'resnet_tiny'\)"):
    train.build(wide)
