r"""T-JEPA on a table with shared structure: does pre-training beat the untrained encoder?

The bundled tables (breast cancer, wine, digits) are small and an untrained feature-tokenizer
transformer already probes within a test row or two of the raw columns, so they cannot show what
a JEPA learns. This table can: ``copies`` columns are noisy copies of one factor z ~ U(0, 1)
(``z + N(0, noise^2)``), ``distractors`` columns are independent U(0, 1), and the label is z's
quartile. A JEPA predicts target columns from context columns of the same row: the copies predict
each other, the distractors predict nothing, so a representation that learns the table keeps z and
gives the distractors less room. kNN on the raw columns suffers from the distractors (they are
most of the distance); a linear probe does not (it can weight the copies).

For each variant and seed this trains ``experiments/t_jepa.py`` (``data=csv``) on the table and
prints kNN and linear top-1 of the trained and the untrained (``eval.at_init``) target encoder::

    python benchmarks/t_jepa_latent.py                       # official and standardized, seeds 0, 1
    python benchmarks/t_jepa_latent.py --variants=standardized --seeds=0 --epochs=20

Variants: ``official`` is ``experiments/t_jepa.py``'s default model and optimiser (the official
argparse defaults), ``standardized`` its variant with ssljax's two options
(``encoder.pos_scale=0``, ``t_jepa.target_norm='batch'``, lr 1e-3); ``no_positions`` and
``batch_targets`` take one of the two options each (lr 1e-3), the ablation. The last line
printed is the results as JSON. About a minute per run on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import ssljax  # noqa: E402

ssljax.configure_cpu()

# name -> (experiments/t_jepa.py argument, config overrides). The last two are the ablation:
# each of the standardized variant's two options alone, at its learning rate.
VARIANTS = {
    "official": ("", {}),
    "standardized": ("standardized", {}),
    "no_positions": ("", {"encoder.pos_scale": 0.0, "optim.lr": 1e-3}),
    "batch_targets": ("", {"t_jepa.target_norm": "batch", "optim.lr": 1e-3}),
}


def latent_table(n: int, *, copies: int = 6, distractors: int = 10, noise: float = 0.15,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``(x [n, copies + distractors], y [n])``: noisy copies of z, independent columns, z's
  quartile as the label (0..3)."""
  rng = np.random.default_rng(seed)
  z = rng.uniform(size=n)
  x = np.concatenate([z[:, None] + rng.normal(0.0, noise, (n, copies)),
                      rng.uniform(size=(n, distractors))], axis=1)
  return x, np.minimum((4 * z).astype(np.int64), 3)


def write_csv(path: str, x: np.ndarray, y: np.ndarray, *, copies: int) -> None:
  """The table as a CSV with columns copy0.., noise0.., label."""
  names = [f"copy{i}" for i in range(copies)] + [f"noise{i}" for i in range(x.shape[1] - copies)]
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow([*names, "label"])
    for row, label in zip(x, y, strict=True):
      out.writerow([f"{v:.5f}" for v in row] + [int(label)])


def run(variant: str, seed: int, path: str, workdir: str, epochs: float) -> dict:
  """Trains one variant on the CSV at ``path``; returns its probe results."""
  from experiments import t_jepa
  from ssljax import train

  arg, overrides = VARIANTS[variant]
  c = t_jepa.get_config(",".join(a for a in ("data=csv", arg) if a))
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  c.input.data.path = path
  c.input.data.target = "label"
  c.total_epochs = float(epochs)
  c.seed = int(seed)  # Tables evaluate the untrained encoder and the raw baselines by default.
  t0 = time.perf_counter()
  r = train.train_and_evaluate(c, workdir)
  keys = ("knn_top1", "init_knn_top1", "linear_top1", "init_linear_top1", "raw_knn_top1",
          "raw_linear_top1", "rankme")
  return {"variant": variant, "seed": seed, **{k: r.get(k) for k in keys},
          "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--variants", default="official,standardized")
  ap.add_argument("--seeds", default="0,1")
  ap.add_argument("--epochs", type=float, default=20.0)
  ap.add_argument("--rows", type=int, default=1500)
  ap.add_argument("--copies", type=int, default=6)
  ap.add_argument("--distractors", type=int, default=10)
  args = ap.parse_args(argv)
  variants = [v for v in args.variants.split(",") if v]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    sys.exit(f"error: --variants: unknown {unknown}; choose from {sorted(VARIANTS)}")
  seeds = [int(s) for s in args.seeds.split(",") if s]
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "latent.csv")
    x, y = latent_table(args.rows, copies=args.copies, distractors=args.distractors)
    write_csv(path, x, y, copies=args.copies)
    for variant in variants:
      for seed in seeds:
        print(f"# {variant}, seed {seed}: {args.epochs:g} epochs of {args.rows} rows "
              f"({args.copies} copies, {args.distractors} independent columns)", flush=True)
        results.append(run(variant, seed, path, os.path.join(tmp, f"{variant}_{seed}"),
                           args.epochs))
  pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
  print("\n| variant | seed | kNN top-1 | at init | linear top-1 | at init | raw kNN | raw linear "
        "| RankMe | seconds |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in results:
    print(f"| {r['variant']} | {r['seed']} | {pct(r['knn_top1'])} | {pct(r['init_knn_top1'])} "
          f"| {pct(r['linear_top1'])} | {pct(r['init_linear_top1'])} | {pct(r['raw_knn_top1'])} "
          f"| {pct(r['raw_linear_top1'])} | {r['rankme']:.1f} | {r['seconds']} |")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
