"""ResNet variables in torchvision's ``state_dict`` layout (names, OIHW kernels, BatchNorm buffers).

torchvision's ``resnet18/34/50`` (torchvision.models.resnet, ResNet v1.5) name their modules
``conv1``, ``bn1``, ``layer<stage>.<block>.conv<k>`` / ``.bn<k>``, and ``.downsample.0`` (the 1x1
projection conv) / ``.downsample.1`` (its BatchNorm); convolution weights are
[out, in, kH, kW]; a BatchNorm holds ``weight``, ``bias``, ``running_mean``, ``running_var`` and
``num_batches_tracked``. ssljax's ResNet (``ssljax.models.resnet``) has the same layers, named
``stem``, ``stage<i>_block<j>/conv<k>``, ``shortcut``, with HWIO kernels. Only the standard
width (64) has a torchvision model; the ``cifar`` stem (3x3 conv, no max-pool) loads into a
torchvision ResNet whose ``conv1`` and ``maxpool`` are replaced first (:func:`loading_note`).
"""

from __future__ import annotations

import numpy as np

ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
WHY_NOT = ("torchvision has resnet18, resnet34 and resnet50 at width 64; ViTs and other widths "
           "have no torchvision twin here")


def architecture(config) -> str | None:
  """The torchvision architecture of ``config.encoder``, or None when it has none."""
  name = str(config.encoder.name)
  if name in ARCHITECTURES and int(config.encoder.get("width", 64)) == 64:
    return name
  return None


def loading_note(config) -> str:
  """How to load the ``.npz`` into torchvision for this encoder."""
  arch = architecture(config)
  text = (f"model = torchvision.models.{arch}(); model.load_state_dict({{k: torch.from_numpy(v) "
          "for k, v in np.load(path).items()}, strict=False) (no fc: set model.fc = "
          "torch.nn.Identity())")
  if str(config.encoder.get("stem", "imagenet")) == "cifar":
    text = ("cifar stem: first set model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False) and "
            "model.maxpool = torch.nn.Identity(); then " + text)
  return text


def _module_name(path: tuple[str, ...]) -> str:
  """ssljax's path of a conv/bn pair's parent (``('stage2_block1', 'shortcut')``) -> torchvision's
  prefix of its conv (``'layer2.0.downsample.0'``); the BatchNorm's prefix follows from it."""
  if path == ("stem",):
    return "conv1"
  block, unit = path
  stage, index = block[len("stage"):].split("_block")
  prefix = f"layer{int(stage)}.{int(index) - 1}"
  if unit == "shortcut":
    return prefix + ".downsample.0"
  return f"{prefix}.{unit}"


def _bn_name(conv_name: str) -> str:
  if conv_name == "conv1":
    return "bn1"
  if conv_name.endswith("downsample.0"):
    return conv_name[:-1] + "1"
  head, _, unit = conv_name.rpartition(".")
  return f"{head}.bn{unit[len('conv'):]}"


def state_dict(variables, config) -> dict[str, np.ndarray]:
  """torchvision's ``state_dict`` (without ``fc``) of a ResNet's ``{"params", "batch_stats"}``.

  Raises:
    ValueError: the encoder has no torchvision layout (:func:`architecture`).
  """
  if architecture(config) is None:
    raise ValueError(f"encoder.name={config.encoder.name!r}: {WHY_NOT}")
  params, stats = variables["params"], variables["batch_stats"]
  out: dict[str, np.ndarray] = {}

  def units(tree, path=()):
    for key, sub in tree.items():
      if "conv" in sub and "bn" in sub:
        yield path + (key,), sub
      else:
        yield from units(sub, path + (key,))

  for path, unit in units(params):
    conv = _module_name(path)
    bn = _bn_name(conv)
    stat = stats
    for key in path:
      stat = stat[key]
    out[conv + ".weight"] = np.transpose(np.asarray(unit["conv"]["kernel"], np.float32),
                                         (3, 2, 0, 1))
    out[bn + ".weight"] = np.asarray(unit["bn"]["scale"], np.float32)
    out[bn + ".bias"] = np.asarray(unit["bn"]["bias"], np.float32)
    out[bn + ".running_mean"] = np.asarray(stat["bn"]["mean"], np.float32)
    out[bn + ".running_var"] = np.asarray(stat["bn"]["var"], np.float32)
    out[bn + ".num_batches_tracked"] = np.zeros((), np.int64)
  return out
