r"""The lightly side of ``benchmarks/peer_lightly.py``, run by the peer interpreter (torch, lightly)

  <peer python> benchmarks/_lightly_side.py --settings=run.json --data=data.npz --out=feats.npz

Never imported by ssljax or its tests. ``--settings`` is the JSON the driver derives from
ssljax's config of the same run (``peer_lightly.lightly_settings``); ``--data`` holds the exact
images and labels ssljax trains and evaluates on (``train_image`` uint8 [N, 28, 28, 1],
``train_label`` [N], ``test_image``, ``test_label``), exported by the driver from ssljax's own
data pipeline. The run:

* lightly's view transforms (``SimCLRTransform``; ``BYOLTransform`` with ``BYOLView1Transform`` /
  ``BYOLView2Transform`` for BYOL and Barlow Twins, as lightly's examples pair them) on PIL
  images, in ``torch.utils.data.DataLoader`` workers, ``drop_last`` as ssljax's iterator;
* a ResNet-18 with the CIFAR stem at width W written here to ssljax's layout
  (``ssljax/models/resnet.py``): 3x3/1 conv -> BN -> ReLU stem, no max-pool, basic blocks
  [2, 2, 2, 2] at W, 2W, 4W, 8W, stride 2 on the first block of stages 2-4 with a 1x1 conv + BN
  shortcut where the shape changes, convs without bias initialised ``kaiming_normal_(fan_out,
  relu)`` (ssljax's ``variance_scaling(2, fan_out, normal)``), BN momentum 0.1 (Flax's 0.9), eps
  1e-5, optional zero-initialised last BN scale per block, global average pool -> 8W features;
* lightly's heads (``SimCLRProjectionHead``, ``BYOLProjectionHead`` / ``BYOLPredictionHead``,
  ``BarlowTwinsProjectionHead``) and losses (``NTXentLoss``, ``NegativeCosineSimilarity``,
  ``BarlowTwinsLoss``), the EMA by ``lightly.models.utils.update_momentum``;
* SGD (momentum, coupled weight decay) with ssljax's per-step schedule (linear warm-up from 0,
  cosine to ``peak * min_lr_ratio``), the BYOL target momentum by ssljax's cosine rule.

Then backbone features (eval mode, un-augmented: /255, grey tiled to 3 channels, standardised
with the eval mean/std) of both splits go to ``--out``; prints one JSON line of timings.
"""

import argparse
import json
import math
import os
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

# ------------------------------------------------------------------ backbone (ssljax's layout)


def conv_bn(cin: int, cout: int, kernel: int, stride: int, zero_scale: bool = False):
  conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
  nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
  bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
  if zero_scale:
    nn.init.zeros_(bn.weight)
  return nn.Sequential(conv, bn)


class BasicBlock(nn.Module):
  """relu(conv_bn(relu(conv_bn(x))) + shortcut(x)); the shortcut is a 1x1 conv_bn on change."""

  def __init__(self, cin: int, cout: int, stride: int, zero_init_residual: bool):
    super().__init__()
    self.conv1 = conv_bn(cin, cout, 3, stride)
    self.conv2 = conv_bn(cout, cout, 3, 1, zero_scale=zero_init_residual)
    self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

  def forward(self, x):
    y = self.conv2(F.relu(self.conv1(x)))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet18(nn.Module):
  """ResNet-18, CIFAR stem, first-stage width ``width``: [B, 3, H, W] -> [B, 8 * width]."""

  def __init__(self, width: int, zero_init_residual: bool = False):
    super().__init__()
    self.features = 8 * width
    self.stem = conv_bn(3, width, 3, 1)
    blocks, cin = [], width
    for stage in range(4):
      cout = width * 2**stage
      for j in range(2):
        blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and j == 0 else 1,
                                 zero_init_residual))
        cin = cout
    self.blocks = nn.Sequential(*blocks)

  def forward(self, x):
    return self.blocks(F.relu(self.stem(x))).mean(dim=(2, 3))


# ------------------------------------------------------------------ lightly's parts


def view_transforms(s: dict):
  """lightly's multi-view transform with the settings' two view recipes."""
  from lightly.transforms import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
    SimCLRTransform,
  )

  v1, v2 = s["views"]
  for v in (v1, v2):
    if tuple(v["crop_ratio"]) != (0.75, 4 / 3):
      raise SystemExit("lightly's transforms crop with torchvision's ratio (3/4, 4/3) only")

  def common(v):
    return dict(input_size=v["size"], cj_prob=v["jitter_prob"], cj_strength=1.0,
                cj_bright=v["brightness"], cj_contrast=v["contrast"], cj_sat=v["saturation"],
                cj_hue=v["hue"], min_scale=v["crop_scale"][0],
                random_gray_scale=v["grayscale_prob"], gaussian_blur=v["blur_prob"],
                sigmas=tuple(v["blur_sigma"]), hf_prob=v["flip_prob"],
                normalize={"mean": list(v["mean"]), "std": list(v["std"])})

  if v1["crop_scale"][1] != 1.0 or v2["crop_scale"][1] != 1.0:
    raise SystemExit("lightly's transforms crop up to the whole image (scale (min, 1.0)) only")
  if s["method"] == "simclr":
    if v1 != v2 or v1["solarize_prob"] > 0:
      raise SystemExit("SimCLRTransform has one view recipe and no solarisation")
    return SimCLRTransform(**common(v1))
  return BYOLTransform(
      view_1_transform=BYOLView1Transform(**common(v1), solarization_prob=v1["solarize_prob"]),
      view_2_transform=BYOLView2Transform(**common(v2), solarization_prob=v2["solarize_prob"]))


class Views(torch.utils.data.Dataset):
  """uint8 [N, H, W, 1] images as grey PIL images turned RGB (ssljax tiles grey to 3 channels),
  through lightly's multi-view transform."""

  def __init__(self, images: np.ndarray, transform):
    self.images = images[..., 0]
    self.transform = transform

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    from PIL import Image

    return self.transform(Image.fromarray(self.images[i], mode="L").convert("RGB"))


def heads(s: dict, features: int):
  """(projector, predictor or None), lightly's head classes at the settings' sizes."""
  from lightly.models.modules import heads as lh

  proj = s["projector"]
  hidden, out = list(proj["hidden_dims"]), int(proj["out_dim"])
  if s["method"] == "simclr":
    if len(hidden) != 1:
      raise SystemExit("SimCLRProjectionHead here: one hidden layer")
    return lh.SimCLRProjectionHead(features, hidden[0], out, num_layers=2,
                                   batch_norm=bool(proj["hidden_bn"])), None
  if s["method"] == "byol":
    pred = s["predictor"]
    if len(hidden) != 1 or len(pred["hidden_dims"]) != 1 or int(pred["out_dim"]) != out:
      raise SystemExit("BYOL heads here: one hidden layer each, predictor output = projector's")
    return (lh.BYOLProjectionHead(features, hidden[0], out),
            lh.BYOLPredictionHead(out, int(pred["hidden_dims"][0]), out))
  if len(hidden) != 2 or hidden[0] != hidden[1]:
    raise SystemExit("BarlowTwinsProjectionHead: two hidden layers of one width")
  return lh.BarlowTwinsProjectionHead(features, hidden[0], out), None


def lr_at(step: int, o: dict) -> float:
  """ssljax's schedule (optax.warmup_cosine_decay_schedule from 0): the LR of step ``step``."""
  peak, warm, total = o["lr"], o["warmup_steps"], o["total_steps"]
  end = peak * o["min_lr_ratio"]
  if step < warm:
    return peak * step / warm
  decay = max(total, warm + 1) - warm
  frac = min(step - warm, decay) / decay
  return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


def target_momentum(step: int, s: dict) -> float:
  """ssljax's BYOL schedule ``final - (final - base) (cos(pi k / K) + 1) / 2``."""
  base, final = s["byol"]["base_momentum"], s["byol"]["final_momentum"]
  frac = min(max(step / max(s["optim"]["total_steps"], 1), 0.0), 1.0)
  return final - (final - base) * (math.cos(math.pi * frac) + 1.0) / 2.0


# ------------------------------------------------------------------ run


@torch.no_grad()
def features(backbone, images: np.ndarray, mean, std, batch: int = 256) -> np.ndarray:
  """Backbone features of uint8 [N, H, W, 1] images, eval mode, no augmentation."""
  backbone.eval()
  mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
  std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
  out = []
  for start in range(0, len(images), batch):
    x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float() / 255.0
    x = (x.expand(-1, 3, -1, -1) - mean_t) / std_t
    out.append(backbone(x).numpy())
  return np.concatenate(out)


def run(s: dict, data_path: str, out_path: str) -> dict:
  import copy

  from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss
  from lightly.models.utils import deactivate_requires_grad, update_momentum

  threads = int(s["threads"])
  torch.set_num_threads(threads)
  torch.manual_seed(int(s["seed"]))
  np.random.seed(int(s["seed"]))
  arrays = np.load(data_path)
  train_x, train_y = arrays["train_image"], arrays["train_label"]
  test_x, test_y = arrays["test_image"], arrays["test_label"]
  o = s["optim"]
  loader = torch.utils.data.DataLoader(
      Views(train_x, view_transforms(s)), batch_size=int(s["batch_size"]), shuffle=True,
      drop_last=True, num_workers=int(s["workers"]),
      persistent_workers=int(s["workers"]) > 0)
  if len(loader) != int(s["steps_per_epoch"]):
    raise SystemExit(f"{len(loader)} batches per epoch, ssljax has {s['steps_per_epoch']}")
  backbone = CifarResNet18(int(s["encoder"]["width"]), bool(s["encoder"]["zero_init_residual"]))
  projector, predictor = heads(s, backbone.features)
  online = nn.ModuleList([backbone, projector] + ([predictor] if predictor is not None else []))
  target = None
  if s["method"] == "byol":
    target = nn.Sequential(copy.deepcopy(backbone), copy.deepcopy(projector))
    deactivate_requires_grad(target)
  if o["name"] != "sgd":
    raise SystemExit(f"optim.name={o['name']!r}: this side mirrors ssljax's 'sgd' only")
  decay, plain = [], []
  for p in online.parameters():
    (plain if p.ndim == 1 and o["exclude_bias_bn"] else decay).append(p)
  groups = [{"params": decay, "weight_decay": o["weight_decay"]}]
  if plain:
    groups.append({"params": plain, "weight_decay": 0.0})
  opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"])
  if s["method"] == "simclr":
    ntxent = NTXentLoss(temperature=float(s["simclr"]["temperature"]))
  elif s["method"] == "barlow":
    barlow = BarlowTwinsLoss(lambda_param=float(s["barlow"]["lambd"]))
  else:
    cosine = NegativeCosineSimilarity()

  def loss_of(x0, x1):
    if s["method"] == "simclr":
      return ntxent(projector(backbone(x0)), projector(backbone(x1)))
    if s["method"] == "barlow":
      return float(s["barlow"]["scale_loss"]) * barlow(projector(backbone(x0)),
                                                       projector(backbone(x1)))
    # ssljax's BYOL loss, sum over both directions of mean(2 - 2 cos): 2 + 2 * (-cos) each.
    p0, p1 = predictor(projector(backbone(x0))), predictor(projector(backbone(x1)))
    with torch.no_grad():
      t0, t1 = target(x0), target(x1)
    return 4.0 + 2.0 * (cosine(p0, t1) + cosine(p1, t0))

  total = int(o["total_steps"])
  step, losses = 0, []
  t_loop = time.perf_counter()
  t_first = None
  online.train()
  if target is not None:
    target.train()  # Batch statistics in the target too, as ssljax's (and lightly's examples).
  while step < total:
    for x0, x1 in loader:
      for g in opt.param_groups:
        g["lr"] = lr_at(step, o)
      loss = loss_of(x0, x1)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      if target is not None:
        m = target_momentum(step, s)
        update_momentum(backbone, target[0], m)
        update_momentum(projector, target[1], m)
      step += 1
      if step == 1:
        t_first = time.perf_counter()
      if step % max(1, total // 20) == 0 or step == total:
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
          raise SystemExit(f"loss became {losses[-1]} at step {step}")
      if step == total:
        break
  t_end = time.perf_counter()
  train_f = features(backbone, train_x, s["eval_mean"], s["eval_std"])
  test_f = features(backbone, test_x, s["eval_mean"], s["eval_std"])
  np.savez(out_path, train=train_f, train_label=train_y, test=test_f, test_label=test_y)
  t_done = time.perf_counter()
  import lightly

  return {"library": "lightly", "method": s["method"], "seed": int(s["seed"]),
          "lightly": lightly.__version__, "torch": torch.__version__, "threads": threads,
          "workers": int(s["workers"]), "steps": step,
          "setup_s": round(t_loop - T_START, 3),
          "first_step_s": round(t_first - t_loop, 3),
          "train_loop_s": round(t_end - t_loop, 3),
          "step_s": round((t_end - t_first) / max(step - 1, 1), 4),
          "features_s": round(t_done - t_end, 3), "final_loss": losses[-1]}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--settings", required=True, help="JSON file from peer_lightly.py")
  p.add_argument("--data", required=True, help="npz of the train/test images and labels")
  p.add_argument("--out", required=True, help="npz the features are written to")
  a = p.parse_args()
  with open(a.settings) as f:
    s = json.load(f)
  print(json.dumps(run(s, a.data, a.out)), flush=True)
  os._exit(0)  # DataLoader workers and threads: no slow interpreter teardown in the timing.


if __name__ == "__main__":
  main()
