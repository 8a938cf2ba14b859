r"""Side by side on this machine: ssljax's TS2Vec training step against a PyTorch reference.

  python benchmarks/ts2vec_vs_torch.py --torch-python=/path/to/venv-with-torch/bin/python

The PyTorch side is ``benchmarks/torch_ts2vec.py`` (written here; torch is a benchmark-only
extra). The setting is the paper's: batch 8, encoder hidden 64 / output 320 / depth 10, on the
training series of a UCR set (``--data``, default ``ucr:GunPoint``: 50 series of 150
timestamps), crops drawn as the paper draws them. Both steps take 8 random training series, crop,
encode, compute the hierarchical loss, update with AdamW and update the weight average; ssljax's
is the compiled ``train_step`` of ``experiments/ts2vec.py`` (compilation not timed), fed from
host arrays each step as the PyTorch one is. Each round runs the PyTorch reference once and ssljax
once, each in a fresh process, alternating, so slow phases of a shared machine hit both. Prints
one JSON line per run and a summary: medians of samples/s (series per second) and the ratio
ssljax / PyTorch.

One difference is structural and stays in the numbers: PyTorch encodes each crop at its own
length (about half the series on average), while ssljax encodes fixed-length buffers (the whole
series, the crop at the front) so that one compiled program serves every step.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _last_json(text: str) -> dict:
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"no JSON line in output:\n{text[-2000:]}")


def _run(cmd) -> dict:
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
  return _last_json(out.stdout)


def jax_side(data: str, steps: int, repeats: int, warmup: int, batch: int) -> dict:
  """samples/s of ssljax's compiled TS2Vec step on ``data``'s training series."""
  sys.path.insert(0, ROOT)
  import ssljax

  ssljax.configure_cpu()
  import jax
  import numpy as np

  from experiments import ts2vec
  from ssljax import sharding, train
  from ssljax.data import series

  config = ts2vec.get_config(f"data={data}")
  config.input.batch_size = batch
  config.mesh = (("data", 1),)
  run = train.build(config)
  train_set = series.load_series(config.input.data, "train")
  rng = np.random.default_rng(0)

  def host_batch():
    rows = rng.choice(len(train_set), batch, replace=False)
    return sharding.global_batch({"series": train_set.series[rows],
                                  "length": train_set.length[rows],
                                  "label": train_set.label[rows]}, run.mesh)

  state = train.create_state(run)
  t0 = time.perf_counter()
  state, metrics = run.step_fn(state, host_batch())
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    state, metrics = run.step_fn(state, host_batch())
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      state, metrics = run.step_fn(state, host_batch())
    jax.block_until_ready(metrics)
    rates.append(steps * batch / (time.perf_counter() - t0))
  return {"impl": "ssljax", "jax": jax.__version__, "samples_per_s": statistics.median(rates),
          "all": rates, "compile_s": round(compile_s, 1), "series_length":
          int(train_set.series.shape[1]), "loss": float(metrics["loss"])}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--torch-python", help="a Python with torch installed (the driver needs it)")
  p.add_argument("--data", default="ucr:GunPoint")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=50, help="timed steps per repeat (both sides)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--side", default="", help="internal: 'jax' measures ssljax in this process")
  a = p.parse_args()
  if a.side == "jax":
    print(json.dumps(jax_side(a.data, a.steps, a.repeats, a.warmup, a.batch)), flush=True)
    return
  if not a.torch_python:
    sys.exit("error: --torch-python is required: a Python with torch (pip install torch)")
  sys.path.insert(0, ROOT)
  import numpy as np

  from ssljax.data import series

  train_set = series.load_series({"name": a.data}, "train")
  with tempfile.TemporaryDirectory() as tmp:
    npy = os.path.join(tmp, "train.npy")
    np.save(npy, train_set.series)
    common = [f"--steps={a.steps}", f"--repeats={a.repeats}", f"--warmup={a.warmup}",
              f"--batch={a.batch}"]
    rates = {"pytorch": [], "ssljax": []}
    for r in range(a.rounds):
      row = _run([a.torch_python, os.path.join(HERE, "torch_ts2vec.py"), f"--data={npy}",
                  *common])
      rates["pytorch"].append(row["samples_per_s"])
      print(json.dumps({"round": r, **row}), flush=True)
      row = _run([sys.executable, os.path.abspath(__file__), "--side=jax", f"--data={a.data}",
                  *common])
      rates["ssljax"].append(row["samples_per_s"])
      print(json.dumps({"round": r, **row}), flush=True)
  med = {k: statistics.median(v) for k, v in rates.items()}
  print(json.dumps({"data": a.data, "rounds": a.rounds, "median_samples_per_s": med,
                    "ratio_ssljax_vs_pytorch": round(med["ssljax"] / med["pytorch"], 3),
                    "all": rates}), flush=True)


if __name__ == "__main__":
  main()
