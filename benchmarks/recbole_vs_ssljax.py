r"""Side by side on this machine: ssljax's recommenders against RecBole's, same data, same split.

  python benchmarks/recbole_vs_ssljax.py --peer-python=/path/to/venv-with-recbole/bin/python \
      --data=ml-latest-small --methods=bpr,lightgcn,sgl --epochs=30 --rounds=3

RecBole (``pip install recbole``; PyTorch, CPU) is a benchmark-only extra: it runs in its own
interpreter (``--peer-python``), never imported by ssljax. Both libraries train on the SAME
split: ssljax reads the data set (``--data``: ``ml-latest-small``, or ``lastfm=<folder>``) and
cuts it with its experiment's protocol; the three splits are written as RecBole "benchmark"
atomic files (``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``), so RecBole evaluates
on exactly the pairs ssljax does (full ranking, training items excluded).

The recipe is ssljax's experiment default for each method (embedding 64, batch 2048, Adam at
its lr, one uniform negative per positive, its layers / regularisation / SSL settings) and
RecBole's model of the same name with those values. Each run trains ``--epochs`` epochs and
evaluates on validation every ``--eval-every`` epochs; the reported accuracy is the test Recall@10
/ NDCG@10 at the evaluation with the best validation NDCG@10. Time per epoch: the median of the
epochs' training times (RecBole: ``trainer._train_epoch``, negative sampling and batching
included; ssljax: the training loop after its first, compiling step, input pipeline included,
evaluations excluded). Each round runs every method once in each library, each run in a fresh
process, the library order alternating between rounds. Prints one JSON line per run, then a
table of medians and the ratio RecBole / ssljax of the time per epoch.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# RecBole's model name and the settings that mirror ssljax's experiment of each method.
RECBOLE_MODELS = {"bpr": "BPR", "lightgcn": "LightGCN", "sgl": "SGL"}


def _last_json(text: str) -> dict:
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"no JSON line in output:\n{text[-3000:]}")


def _run(cmd, cwd=ROOT) -> dict:
  out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
  return _last_json(out.stdout)


def _config(method: str, data: str, epochs: int, eval_every: int, seed: int):
  """ssljax's experiment config of ``method`` on ``data`` (``name`` or ``name=path``)."""
  sys.path.insert(0, ROOT)
  import importlib

  name, _, path = data.partition("=")
  c = importlib.import_module(f"experiments.{method}").get_config(f"data={name}")
  if path:
    c.input.data.path = path
  c.seed = seed
  c.total_epochs = float(epochs)
  c.mesh = (("data", 1),)
  c.eval.at_init = False
  c.eval.ranking.ks = (10,)
  c.eval.ranking.metrics = ("recall", "ndcg")
  c.eval.ranking.popularity = False
  c.checkpoint_every_steps = 10**9
  return c


def recbole_settings(method: str, c) -> dict:
  """RecBole parameters equal to ssljax's config ``c`` of ``method``."""
  settings = {"embedding_size": int(c.encoder.dim), "train_batch_size": int(c.input.batch_size),
              "learning_rate": float(c.optim.lr), "weight_decay": 0.0,
              "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1,
                                        "alpha": 1.0, "dynamic": False, "candidate_num": 0}}
  if method in ("lightgcn", "sgl"):
    settings["n_layers"] = int(c[method].layers)
    settings["reg_weight"] = float(c.bpr.reg_weight)
  if method == "sgl":  # SGL-ED: edge dropout views.
    settings.update(type="ED", drop_ratio=float(c.sgl.drop_rate),
                    ssl_tau=float(c.sgl.temperature), ssl_weight=float(c.sgl.ssl_weight))
  return settings


def write_split(data: str, method: str, folder: str) -> tuple[str, dict]:
  """Writes ssljax's split of ``data`` as RecBole benchmark files; (dataset name, settings)."""
  from ssljax.data import interactions

  c = _config(method, data, 1, 1, 0)
  d = interactions.load(c.input.data)
  name = "ssljax_split"
  os.makedirs(os.path.join(folder, name), exist_ok=True)
  for split in ("train", "valid", "test"):
    user, item = d.split(split)
    with open(os.path.join(folder, name, f"{name}.{split}.inter"), "w") as f:
      f.write("user_id:token\titem_id:token\n")
      # Raw ids: RecBole remaps them itself (the same pairs either way).
      for u, i in zip(user, item, strict=True):
        f.write(f"{d.user_ids[u]}\t{d.item_ids[i]}\n")
  return name, recbole_settings(method, c)


def ssljax_side(method: str, data: str, epochs: int, eval_every: int, seed: int) -> dict:
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  from ssljax import train

  c = _config(method, data, epochs, eval_every, seed)
  steps_per_epoch = None
  with tempfile.TemporaryDirectory() as workdir:
    # steps per epoch: what the trainer derives; evaluations every eval_every epochs.
    from ssljax.data import interactions

    n = len(interactions.load(c.input.data).split("train")[0])
    steps_per_epoch = -(-n // int(c.input.batch_size))
    c.eval.every_steps = eval_every * steps_per_epoch
    c.log_every_steps = steps_per_epoch
    results = train.train_and_evaluate(c, workdir)
  return {"library": "ssljax", "method": method, "data": data, "seed": seed,
          "time_per_epoch_s": results["train_time_per_epoch_s"],
          "best_epoch": results["best_step"] / results["steps_per_epoch"],
          "valid_ndcg@10": results["best_valid_ndcg@10"],
          "test_recall@10": results["best_test_recall@10"],
          "test_ndcg@10": results["best_test_ndcg@10"]}


def recbole_side(method: str, folder: str, name: str, settings: dict, epochs: int,
                 eval_every: int, seed: int) -> dict:
  """Runs inside the peer interpreter: RecBole's trainer, epoch by epoch."""
  import time

  import numpy as np
  import torch

  # RecBole 1.2.1 aliases names NumPy 2 removed (np.float_, ...): give them back, same types.
  for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if old not in np.__dict__:
      setattr(np, old, new)
  import scipy.sparse as sp

  if not hasattr(sp.dok_matrix, "_update"):  # RecBole's graph models fill a dok_matrix with it.
    def _update(self, entries):
      for key, value in entries.items():
        self[key] = value
    sp.dok_matrix._update = _update  # noqa: SLF001
  from recbole.config import Config
  from recbole.data import create_dataset, data_preparation
  from recbole.utils import get_model, get_trainer, init_seed

  torch.set_num_threads(2)
  model_name = RECBOLE_MODELS[method]
  params = {"data_path": folder, "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]}, "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id", "seed": seed, "reproducibility": True,
            "device": "cpu", "use_gpu": False, "epochs": epochs, "eval_step": eval_every,
            "topk": [10], "metrics": ["Recall", "NDCG"], "valid_metric": "NDCG@10",
            "eval_args": {"split": None, "order": "RO", "group_by": "user", "mode": "full"},
            "eval_batch_size": 4096, "show_progress": False, "worker": 0,
            "checkpoint_dir": tempfile.mkdtemp(), "log_wandb": False,
            "user_inter_num_interval": None, "item_inter_num_interval": None, **settings}
  config = Config(model=model_name, dataset=name, config_dict=params)
  init_seed(config["seed"], config["reproducibility"])
  dataset = create_dataset(config)
  train_data, valid_data, test_data = data_preparation(config, dataset)
  model = get_model(model_name)(config, train_data._dataset).to(config["device"])
  trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
  times, best = [], None
  for epoch in range(epochs):
    t0 = time.perf_counter()
    trainer._train_epoch(train_data, epoch, show_progress=False)  # noqa: SLF001
    times.append(time.perf_counter() - t0)
    if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
      valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
      if best is None or valid["ndcg@10"] > best[1]["ndcg@10"]:
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        best = (epoch + 1, dict(valid), dict(test))
  return {"library": "recbole", "method": method, "seed": seed,
          "time_per_epoch_s": statistics.median(times[1:] or times),
          "best_epoch": best[0], "valid_ndcg@10": float(best[1]["ndcg@10"]),
          "test_recall@10": float(best[2]["recall@10"]),
          "test_ndcg@10": float(best[2]["ndcg@10"])}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--peer-python", default="",
                      help="an interpreter with recbole installed (omit: ssljax only)")
  parser.add_argument("--data", default="ml-latest-small",
                      help="ml-latest-small or lastfm=<folder> (QRec layout)")
  parser.add_argument("--methods", default="bpr,lightgcn,sgl")
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--eval-every", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--side", choices=("both", "ssljax", "recbole"), default="both",
                      help=argparse.SUPPRESS)
  parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
  parser.add_argument("--name", default="", help=argparse.SUPPRESS)
  parser.add_argument("--settings", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  if args.side == "ssljax":
    print(json.dumps(ssljax_side(methods[0], args.data, args.epochs, args.eval_every,
                                 args.seed)), flush=True)
    return 0
  if args.side == "recbole":
    print(json.dumps(recbole_side(methods[0], args.folder, args.name, json.loads(args.settings),
                                  args.epochs, args.eval_every, args.seed)), flush=True)
    return 0
  unknown = [m for m in methods if m not in RECBOLE_MODELS]
  if unknown:
    print(f"error: --methods: {unknown} have no RecBole counterpart here; choose from "
          f"{sorted(RECBOLE_MODELS)}", file=sys.stderr)
    return 2
  sys.path.insert(0, ROOT)
  runs: dict[tuple[str, str], list[dict]] = {}
  with tempfile.TemporaryDirectory() as folder:
    prepared = {m: write_split(args.data, m, folder) for m in methods}
    for r in range(args.rounds):
      for method in methods:
        name, settings = prepared[method]
        common = ["--data", args.data, "--methods", method, "--epochs", str(args.epochs),
                  "--eval-every", str(args.eval_every), "--seed", str(args.seed)]
        ours = [sys.executable, os.path.join(HERE, "recbole_vs_ssljax.py"), "--side", "ssljax",
                *common]
        peer = [args.peer_python, os.path.join(HERE, "recbole_vs_ssljax.py"), "--side",
                "recbole", "--folder", folder, "--name", name, "--settings",
                json.dumps(settings), *common] if args.peer_python else None
        order = [ours, peer] if r % 2 == 0 else [peer, ours]
        for cmd in order:
          if cmd is None:
            continue
          # RecBole writes log/ and log_tensorboard/ into its working directory: the temp folder.
          result = _run(cmd, cwd=folder if cmd is peer else ROOT)
          result["round"] = r
          print(json.dumps(result), flush=True)
          runs.setdefault((method, result["library"]), []).append(result)
  print("\n| method | library | s / epoch (median) | test Recall@10 | test NDCG@10 | "
        "valid NDCG@10 | best epoch | RecBole / ssljax time |")
  print("|---|---|---:|---:|---:|---:|---:|---:|")
  for method in methods:
    med = {}
    for library in ("ssljax", "recbole"):
      got = runs.get((method, library))
      if not got:
        continue
      med[library] = statistics.median(g["time_per_epoch_s"] for g in got)
      ratio = ""
      if library == "recbole" and "ssljax" in med:
        ratio = f"{med['recbole'] / med['ssljax']:.2f}x"
      print(f"| {method} | {library} | {med[library]:.3f} | "
            f"{statistics.median(g['test_recall@10'] for g in got):.4f} | "
            f"{statistics.median(g['test_ndcg@10'] for g in got):.4f} | "
            f"{statistics.median(g['valid_ndcg@10'] for g in got):.4f} | "
            f"{statistics.median(g['best_epoch'] for g in got):.0f} | {ratio} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
