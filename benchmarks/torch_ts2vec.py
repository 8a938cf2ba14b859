r"""PyTorch reference of the TS2Vec training step, written here from the paper (speed checks).

  <python with torch> benchmarks/torch_ts2vec.py --data=/tmp/gunpoint_train.npy --steps=50

Not a port of another project's code: the encoder (input projection, binomial timestamp mask,
residual blocks of two dilated 'same'-padded convolutions with GELU, representation dropout), the
crop sampler and the hierarchical contrastive loss follow Yue et al., AAAI 2022 (sections 3.1-3.3)
and the hyperparameters the paper states (hidden 64, output 320, depth 10, batch 8, lr 1e-3,
alpha 0.5). One step: draw two overlapping crops of 8 random training series, encode both,
hierarchical loss on the overlap, AdamW, then the running weight average (SWA) that the paper's
evaluation reads, as ssljax's step does. Eager PyTorch on the CPU, ``torch.set_num_threads``
from ``--threads`` (default: every core). Prints one JSON line: samples_per_s (training series per
second, median over ``--repeats``), the crop lengths seen and the loss.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SamePadConv(nn.Module):
  def __init__(self, cin, cout, kernel, dilation):
    super().__init__()
    field = (kernel - 1) * dilation + 1
    self.conv = nn.Conv1d(cin, cout, kernel, padding=field // 2, dilation=dilation)
    self.drop_last = field % 2 == 0

  def forward(self, x):
    out = self.conv(x)
    return out[:, :, :-1] if self.drop_last else out


class Block(nn.Module):
  def __init__(self, cin, cout, kernel, dilation, final):
    super().__init__()
    self.conv1 = SamePadConv(cin, cout, kernel, dilation)
    self.conv2 = SamePadConv(cout, cout, kernel, dilation)
    self.proj = nn.Conv1d(cin, cout, 1) if (cin != cout or final) else None

  def forward(self, x):
    res = x if self.proj is None else self.proj(x)
    return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + res


class Encoder(nn.Module):
  def __init__(self, channels, hidden=64, out=320, depth=10, kernel=3):
    super().__init__()
    self.fc = nn.Linear(channels, hidden)
    widths = [hidden] * depth + [out]
    self.blocks = nn.Sequential(*[
        Block(hidden if i == 0 else widths[i - 1], widths[i], kernel, 2 ** i,
              i == len(widths) - 1) for i in range(len(widths))])
    self.drop = nn.Dropout(0.1)

  def forward(self, x):  # [B, T, C]
    present = ~torch.isnan(x).any(dim=-1)
    h = self.fc(torch.nan_to_num(x))
    keep = torch.rand(h.shape[:2]) >= 0.5  # binomial timestamp mask, p = 0.5
    h = h * (keep & present).unsqueeze(-1)
    return self.drop(self.blocks(h.transpose(1, 2)).transpose(1, 2))


def _off_self_logits(sim):
  """[N, M, M] similarities -> [N, M, M-1] with each row's own column removed."""
  return torch.tril(sim, diagonal=-1)[:, :, :-1] + torch.triu(sim, diagonal=1)[:, :, 1:]


def instance_loss(z1, z2):
  b = z1.shape[0]
  if b == 1:
    return z1.new_tensor(0.0)
  z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # [T, 2B, D]
  logp = -F.log_softmax(_off_self_logits(z @ z.transpose(1, 2)), dim=-1)
  i = torch.arange(b)
  return (logp[:, i, b + i - 1].mean() + logp[:, b + i, i].mean()) / 2


def temporal_loss(z1, z2):
  t = z1.shape[1]
  if t == 1:
    return z1.new_tensor(0.0)
  z = torch.cat([z1, z2], dim=1)  # [B, 2T, D]
  logp = -F.log_softmax(_off_self_logits(z @ z.transpose(1, 2)), dim=-1)
  s = torch.arange(t)
  return (logp[:, s, t + s - 1].mean() + logp[:, t + s, s].mean()) / 2


def hierarchical_loss(z1, z2, alpha=0.5):
  loss, scales = z1.new_tensor(0.0), 0
  while z1.shape[1] > 1:
    loss = loss + alpha * instance_loss(z1, z2) + (1 - alpha) * temporal_loss(z1, z2)
    scales += 1
    z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
    z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
  if z1.shape[1] == 1:
    loss = loss + alpha * instance_loss(z1, z2)
    scales += 1
  return loss / scales


def take_rows(x, start, size):
  """x[b, start[b] : start[b] + size] for each row b."""
  idx = torch.as_tensor(start)[:, None] + torch.arange(size)[None, :]
  return x[torch.arange(x.shape[0])[:, None], idx]


def step(encoder, opt, swa, x, rng):
  t = x.shape[1]
  crop = int(rng.integers(2, t + 1))
  left = int(rng.integers(0, t - crop + 1))
  right = left + crop
  eleft = int(rng.integers(0, left + 1))
  eright = int(rng.integers(right, t + 1))
  offset = rng.integers(-eleft, t - eright + 1, size=x.shape[0])
  opt.zero_grad()
  out1 = encoder(take_rows(x, offset + eleft, right - eleft))[:, -crop:]
  out2 = encoder(take_rows(x, offset + left, eright - left))[:, :crop]
  loss = hierarchical_loss(out1, out2)
  loss.backward()
  opt.step()
  swa.update_parameters(encoder)
  return float(loss.detach()), crop


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", required=True, help=".npy of training series [N, T, C]")
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--threads", type=int, default=0)
  a = p.parse_args()
  if a.threads:
    torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  data = torch.from_numpy(np.load(a.data).astype(np.float32))
  rng = np.random.default_rng(0)
  encoder = Encoder(data.shape[-1])
  opt = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
  swa = torch.optim.swa_utils.AveragedModel(encoder)

  def batch():
    return data[torch.from_numpy(rng.choice(len(data), a.batch, replace=False))]

  for _ in range(a.warmup):
    step(encoder, opt, swa, batch(), rng)
  rates, crops, loss = [], [], 0.0
  for _ in range(a.repeats):
    t0 = time.perf_counter()
    for _ in range(a.steps):
      loss, crop = step(encoder, opt, swa, batch(), rng)
      crops.append(crop)
    rates.append(a.steps * a.batch / (time.perf_counter() - t0))
  print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "samples_per_s": statistics.median(rates),
                    "all": rates, "mean_crop": float(np.mean(crops)), "series_length":
                    int(data.shape[1]), "loss": loss}), flush=True)


if __name__ == "__main__":
  main()
