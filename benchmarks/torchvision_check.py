r"""Exported ResNets against torchvision: the same images give the same features in both.

Benchmark-only (torch/torchvision are never imported by ssljax or its tests). The ssljax side
builds ResNet-18 / ResNet-50 (ImageNet stem) and a CIFAR-stem ResNet-18 with random weights and
random BatchNorm running statistics (so the statistics matter), writes them with
``ssljax.torchvision_export.state_dict`` exactly as ``python -m ssljax.export`` does, and computes
features of random images; the torch side (another Python, where torch and torchvision are
installed) loads each ``.npz`` into ``torchvision.models.<arch>()`` with ``strict=True`` apart from
``fc`` (replaced by an identity), and compares::

    python benchmarks/torchvision_check.py --torch-python=/path/to/venv-with-torchvision/bin/python

Prints one line per model: missing / unexpected keys, the largest absolute and relative
difference of the features. Recorded in benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

MODELS = (("resnet18", "imagenet", 224), ("resnet50", "imagenet", 224), ("resnet18", "cifar", 32))


def jax_side(folder: str) -> None:
  import jax
  import ml_collections as mlc

  from ssljax import torchvision_export
  from ssljax.models.resnet import make_encoder

  rng = np.random.default_rng(0)
  for arch, stem, size in MODELS:
    module, _ = make_encoder(arch, stem=stem, width=64)
    images = rng.normal(size=(4, size, size, 3)).astype(np.float32)
    variables = module.init(jax.random.key(0), images[:1], train=False)
    # Non-trivial BatchNorm: scale, bias and running statistics away from their init values.
    variables = {
        "params": jax.tree_util.tree_map_with_path(
            lambda p, a: np.asarray(a) + (rng.normal(0, 0.1, a.shape).astype(np.float32)
                                          if "bn" in str(p) else 0), variables["params"]),
        "batch_stats": jax.tree.map(
            lambda a: np.asarray(a) + rng.uniform(0.05, 0.5, a.shape).astype(np.float32),
            variables["batch_stats"])}
    features = np.asarray(jax.jit(functools.partial(module.apply, train=False))(variables, images))
    config = mlc.ConfigDict(dict(encoder=dict(name=arch, stem=stem, width=64)))
    tag = f"{arch}_{stem}"
    np.savez(os.path.join(folder, f"{tag}.npz"), **torchvision_export.state_dict(variables, config))
    np.save(os.path.join(folder, f"{tag}_images.npy"), images)
    np.save(os.path.join(folder, f"{tag}_features.npy"), features)


TORCH_SIDE = r"""
import json, sys
import numpy as np, torch, torchvision
folder, models = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(2)
for arch, stem, size in models:
    tag = f"{arch}_{stem}"
    model = getattr(torchvision.models, arch)()
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    state = {k: torch.from_numpy(v) for k, v in np.load(f"{folder}/{tag}.npz").items()}
    result = model.load_state_dict(state, strict=False)
    model.fc = torch.nn.Identity()
    model.eval()
    images = torch.from_numpy(np.load(f"{folder}/{tag}_images.npy")).permute(0, 3, 1, 2)
    with torch.no_grad():
        ours = model(images.contiguous()).numpy()
    want = np.load(f"{folder}/{tag}_features.npy")
    diff = np.abs(ours - want)
    print(json.dumps({"model": tag, "image_size": size, "tensors": len(state),
                      "missing": sorted(result.missing_keys),
                      "unexpected": sorted(result.unexpected_keys),
                      "max_abs_diff": float(diff.max()),
                      "max_rel_diff": float((diff / (np.abs(want) + 1e-6)).max()),
                      "feature_scale": float(np.abs(want).mean()),
                      "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--torch-python", required=True,
                      help="a Python where torch and torchvision import")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    jax_side(folder)
    out = subprocess.run([args.torch_python, "-c", TORCH_SIDE, folder, json.dumps(MODELS)],
                         capture_output=True, text=True)
    if out.returncode:
      sys.exit(f"torch side failed:\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
      print(line)


if __name__ == "__main__":
  main()
