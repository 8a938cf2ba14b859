r"""The PyTorch reference of ssljax's Barlow Twins CIFAR step, for side-by-side timing.

  pip install torch==2.13.0   # the CPU build on this project's machines; any torch >= 2.4 runs it
  python benchmarks/torch_barlow.py --batch=128 --steps=5

The network and loss mirror ssljax's ``experiments/barlow.py:data=cifar10``, written from ssljax's
own definitions (``ssljax/models/resnet.py``, ``ssljax/models/heads.py``, ``ssljax/losses.py``):

* ResNet-18 with the CIFAR stem (3x3/1 conv, BN, ReLU, no max-pool), basic blocks
  [2, 2, 2, 2] at widths 64-128-256-512, stride 2 on the first block of stages 2-4 with a 1x1
  conv + BN shortcut, global average pool -> 512 features;
* projector ``Linear(512, 2048) -> BN -> ReLU -> Linear(2048, 2048) -> BN -> ReLU ->
  Linear(2048, 2048)`` (with biases, as ssljax's ``common.mlp``);
* Barlow Twins loss: each view standardised with batch statistics (biased variance), cross-
  correlation ``C = z1^T z2 / N``, ``sum (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2`` with lambda
  0.0051, times 0.1 (solo-learn's scale);
* SGD with momentum 0.9 and weight decay 1e-4 (the optimiser is a negligible part of the step).

Eager PyTorch, no augmentation (ssljax's step includes its on-device augmentation), channels-
first float32 inputs of normal noise. One sample = one image (both of its views). Prints one JSON
line; ``samples_per_s`` is the median over ``--repeats`` timings of ``--steps`` steps each.
``benchmarks/cpu_vs_torch.py`` runs it beside ``benchmarks/throughput.py``.
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

STAGES = ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))  # (width, blocks, first stride)


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
  return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                       nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = conv_bn(cin, cout, 3, stride)
    self.conv2 = conv_bn(cout, cout, 3, 1)
    self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

  def forward(self, x):
    y = self.conv2(F.relu(self.conv1(x)))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet18(nn.Module):
  def __init__(self):
    super().__init__()
    self.stem = conv_bn(3, 64, 3, 1)
    blocks, cin = [], 64
    for width, count, stride in STAGES:
      for i in range(count):
        blocks.append(BasicBlock(cin, width, stride if i == 0 else 1))
        cin = width
    self.blocks = nn.Sequential(*blocks)

  def forward(self, x):
    return self.blocks(F.relu(self.stem(x))).mean(dim=(2, 3))


def projector(dims=(512, 2048, 2048, 2048)) -> nn.Sequential:
  layers = []
  for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
    layers.append(nn.Linear(cin, cout))
    if i < len(dims) - 2:
      layers += [nn.BatchNorm1d(cout), nn.ReLU()]
  return nn.Sequential(*layers)


def barlow_twins_loss(z1, z2, *, lambd=0.0051, scale=0.1, eps=1e-5):
  n = z1.shape[0]
  standard = lambda z: (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)  # noqa: E731
  c = standard(z1).T @ standard(z2) / n
  diagonal = torch.diagonal(c)
  off_diagonal = c.pow(2).sum() - diagonal.pow(2).sum()
  return scale * ((1 - diagonal).pow(2).sum() + lambd * off_diagonal)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
  p.add_argument("--repeats", type=int, default=1)
  p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
  a = p.parse_args()
  torch.manual_seed(0)
  net = nn.Sequential(CifarResNet18(), projector()).train()
  opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-4)
  views = [torch.randn(a.batch, 3, a.size, a.size) for _ in range(2)]

  def step():
    opt.zero_grad(set_to_none=True)
    loss = barlow_twins_loss(net(views[0]), net(views[1]))  # One pass per view, as ssljax.
    loss.backward()
    opt.step()
    return float(loss)

  for _ in range(a.warmup):
    step()
  times = []
  for _ in range(a.repeats):
    t0 = time.perf_counter()
    for _ in range(a.steps):
      loss = step()
    times.append((time.perf_counter() - t0) / a.steps)
  step_s = statistics.median(times)
  print(json.dumps({"impl": "torch-eager", "torch": torch.__version__, "batch": a.batch,
                    "size": a.size, "step_s": round(step_s, 4),
                    "samples_per_s": round(a.batch / step_s, 2), "loss": round(loss, 4),
                    "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()
