r"""Side by side on this machine: ssljax's Barlow Twins step against its PyTorch reference.

  python benchmarks/cpu_vs_torch.py --torch-python=/path/to/venv-with-torch/bin/python --rounds=5

The PyTorch side is ``benchmarks/torch_barlow.py`` (in this repository; torch is a benchmark-only
extra). The setting: ResNet-18 (CIFAR stem), 32 px, batch 128, two views, projector
2048-2048-2048; ssljax's step includes the on-device augmentation, the PyTorch one does not.
Each round runs the reference once and ``benchmarks/throughput.py`` once (alternating, so slow
phases of a shared machine hit both), each in a fresh process; ``--variants`` adds ssljax runs
with other settings (without ssljax's XLA:CPU flags, or without the CPU kernels in the models) to
the same rounds. Prints one JSON line per run and a summary with medians and the ratio
ssljax / PyTorch of median samples/s.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THROUGHPUT = [os.path.join(HERE, "throughput.py"), "--config=experiments/barlow.py:data=cifar10",
              "--config.input.batch_size=128", "--config.eval.online_probe=False"]
# name -> (extra environment, extra flags) of the ssljax run.
VARIANTS = {
    "ssljax": ({}, []),
    "ssljax-no-xla-defaults": ({"SSLJAX_XLA_CPU_DEFAULTS": "0"}, []),
    "ssljax-no-cpu-kernels": ({}, ["--config.cpu_kernels=false"]),
}


def _last_json(text: str) -> dict:
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"no JSON line in output:\n{text[-2000:]}")


def _run(cmd, env=None) -> dict:
  full = dict(os.environ, **(env or {}))
  out = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
  return _last_json(out.stdout)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--torch-python", required=True, help="a Python with torch installed")
  p.add_argument("--peer", default=os.path.join(HERE, "torch_barlow.py"),
                 help="the PyTorch script (default: this repository's reference)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=3, help="timed steps per run (both sides)")
  p.add_argument("--variants", default="ssljax", help=f"comma list from {sorted(VARIANTS)}")
  a = p.parse_args()
  variants = a.variants.split(",")
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    sys.exit(f"error: unknown --variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
  if not os.path.exists(a.peer):
    sys.exit(f"error: --peer={a.peer} does not exist")
  rates = {name: [] for name in ["torch", *variants]}
  for r in range(a.rounds):
    row = _run([a.torch_python, a.peer, "--steps", str(a.steps), "--batch", "128"])
    rates["torch"].append(row["samples_per_s"])
    print(json.dumps({"round": r, **row}), flush=True)
    for name in variants:
      env, flags = VARIANTS[name]
      row = _run([sys.executable, *THROUGHPUT, *flags, f"--steps={a.steps}", "--repeats=1"],
                 env=env)
      rates[name].append(row["samples_per_s"])
      print(json.dumps({"round": r, "variant": name, **row}), flush=True)
  med = {name: statistics.median(v) for name, v in rates.items()}
  summary = {"rounds": a.rounds, "median_samples_per_s": med,
             "ratio_vs_torch": {n: round(med[n] / med["torch"], 3) for n in variants},
             "all": rates}
  print(json.dumps(summary), flush=True)


if __name__ == "__main__":
  main()
