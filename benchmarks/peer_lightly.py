r"""Side by side on this machine: ssljax's SimCLR, BYOL and Barlow Twins against lightly's.

  python benchmarks/peer_lightly.py --peer-python=/path/to/venv-with-lightly/bin/python \
      --methods=simclr,byol,barlow --width=16 --epochs=2 --rounds=1

lightly (``pip install lightly``; PyTorch, CPU) is a benchmark-only extra: it runs in its own
interpreter (``--peer-python``) through ``benchmarks/_lightly_side.py``, never imported by ssljax.
Both libraries train the same recipe on the same Fashion-MNIST images (Debian's
``dataset-fashion-mnist`` IDX files, ssljax's ``fashion_mnist_local``):

* ssljax's config of each method is its experiment file's default (``experiments/<method>.py``:
  heads, temperature, EMA schedule, loss weights) with the shared settings put over it: the data
  (the first ``--train-subset`` training images of ssljax's split, all 10,000 test images), 28 px
  views with ssljax's Fashion-MNIST recipe (crop scale (0.2, 1), flip 0.5, jitter 0.8 of
  brightness / contrast 0.4, grayscale 0.2, no blur; solarisation 0 / 0.2 for BYOL and Barlow
  Twins), a ResNet-18 with the CIFAR stem at ``--width``, ``--batch``, ``--epochs`` and SGD
  (momentum 0.9, weight decay ``--wd`` on every parameter, lr ``--lr`` with a per-step cosine to
  0, no warm-up: lightly's CIFAR-10 benchmark recipe, lr 0.06 x batch / 128, wd 5e-4);
* lightly's settings are derived from that config (:func:`lightly_settings`), so every number is
  the same on both sides; lightly uses its own transforms, heads, losses and EMA helper, and a
  ResNet-18 of ssljax's layout written in ``_lightly_side.py`` (torchvision's has width 64 only).
* The driver exports the exact training subset and test split from ssljax's data pipeline to an
  .npy archive for lightly (TFDS shuffles the example order when it prepares the set, so "the
  first N" must come from ssljax's copy); that export is not timed.

Evaluation is the same for both: each side writes the backbone features (eval mode, un-augmented,
standardised with Fashion-MNIST's mean / std) of its training subset and the test split, and
this driver scores both with ssljax's weighted kNN (``ssljax.evals.knn.knn_top1``, k = 20,
cosine, T = 0.07). Times: ``wall_s`` from starting the run's process to its exit (imports, data
loading, compilation, training with augmentation, feature extraction); ``train_loop_s`` the
training steps alone (input pipeline and augmentation included; ssljax's compilation is done
before it and reported as ``compile_s``). Each round runs every method once in each library,
each run in a fresh process, the library order alternating between rounds. Prints one JSON line
per run, then a table of medians and the ratios lightly / ssljax.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

METHODS = ("simclr", "byol", "barlow")
# Solarisation probability of (view 1, view 2): ssljax's digits recipes and lightly's
# BYOLTransform defaults (SimCLR has none).
SOLARIZE = {"simclr": (0.0, 0.0), "byol": (0.0, 0.2), "barlow": (0.0, 0.2)}
NUM_TRAIN = 60_000
DEFAULT_BATCH = 256
KNN_K, KNN_T = 20, 0.07


def _last_json(text: str) -> dict:
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"no JSON line in output:\n{text[-3000:]}")


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def default_lr(batch: int) -> float:
  """lightly's CIFAR-10 benchmark: SGD lr 0.06 x batch / 128."""
  return 0.06 * batch / 128


def train_split(subset: int) -> str:
  return "train" if subset >= NUM_TRAIN else f"train[:{subset}]"


def ssljax_config(method: str, *, width: int, batch: int, epochs: float, lr: float, wd: float,
                  subset: int, seed: int = 0, idx_dir: str = ""):
  """ssljax's config of ``method``: its experiment default with the shared settings over it."""
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  import importlib

  import ml_collections as mlc

  from experiments import common

  c = importlib.import_module(f"experiments.{method}").get_config()
  c.seed = seed
  c.input.data.name = "fashion_mnist_local"
  c.input.data.path = idx_dir or None
  c.input.data.train_split = train_split(subset)
  c.input.data.eval_split = "test"
  c.input.image_size = 28
  c.input.mean, c.input.std = common.FASHION_MNIST_MEAN, common.FASHION_MNIST_STD
  views = {}
  for i, solarize in enumerate(SOLARIZE[method]):
    views[f"view{i + 1}"] = common.view(
        28, mean=c.input.mean, std=c.input.std,
        **{**common.GRAY28_VIEWS["fashion_mnist_local"], "blur_prob": 0.0,
           "solarize_prob": solarize})
  c.input.views = mlc.ConfigDict(views)
  # lightly augments from the first step; a recipe's plain-image phase (BYOL's digits default has
  # 32 epochs of it, more than the whole run here) would leave ssljax's views unaugmented.
  c.input.plain_view_epochs = 0.0
  c.encoder = common.encoder(dict(name="resnet18", stem="cifar", width=width,
                                  zero_init_residual=False))
  c.input.batch_size = batch
  c.total_steps = -1
  c.total_epochs = float(epochs)
  c.optim = common.sgd(lr=lr, weight_decay=wd, momentum=0.9, warmup_epochs=0.0,
                       min_lr_ratio=0.0, exclude_bias_bn=False)
  c.mesh = (("data", 1),)
  c.eval.knn_k = (KNN_K,)
  c.eval.knn_temperature = KNN_T
  c.eval.linear = False
  c.eval.online_probe = False
  c.eval.rankme_every_steps = 0
  c.eval.at_init = False
  c.eval.max_train_samples = -1
  c.eval.batch_size = 256
  c.log_every_steps = 10**9
  c.checkpoint_every_steps = 10**9
  return c


def lightly_settings(method: str, c, *, subset: int, workers: int, threads: int) -> dict:
  """The lightly side's settings, every number read from ssljax's config ``c`` of ``method``."""
  batch = int(c.input.batch_size)
  steps_per_epoch = max(1, subset // batch)  # As ssljax's: whole batches only.
  total = max(1, int(math.ceil(float(c.total_epochs) * steps_per_epoch)))
  o = c.optim
  warmup = int(o.warmup_steps) if int(o.warmup_steps) >= 0 else round(
      float(o.warmup_epochs) * steps_per_epoch)
  keys = ("size", "crop_scale", "crop_ratio", "flip_prob", "jitter_prob", "brightness",
          "contrast", "saturation", "hue", "grayscale_prob", "blur_prob", "blur_sigma",
          "solarize_prob", "mean", "std")
  views = [{k: (list(v[k]) if isinstance(v[k], tuple) else v[k]) for k in keys}
           for v in (c.input.views.view1, c.input.views.view2)]
  settings = {
      "method": method, "seed": int(c.seed), "threads": threads, "workers": workers,
      "batch_size": batch, "epochs": float(c.total_epochs), "num_train": subset,
      "steps_per_epoch": steps_per_epoch,
      "encoder": {"name": str(c.encoder.name), "stem": str(c.encoder.stem),
                  "width": int(c.encoder.width),
                  "zero_init_residual": bool(c.encoder.zero_init_residual)},
      "projector": {"hidden_dims": list(c.projector.hidden_dims),
                    "out_dim": int(c.projector.out_dim),
                    "hidden_bn": bool(c.projector.hidden_bn)},
      "optim": {"name": str(o.name), "lr": float(o.lr), "momentum": float(o.momentum),
                "weight_decay": float(o.weight_decay),
                "exclude_bias_bn": bool(o.exclude_bias_bn), "warmup_steps": warmup,
                "min_lr_ratio": float(o.min_lr_ratio), "total_steps": total},
      "views": views,
      "eval_mean": list(c.input.mean), "eval_std": list(c.input.std),
  }
  if method == "simclr":
    settings["simclr"] = {"temperature": float(c.simclr.temperature)}
  elif method == "byol":
    settings["predictor"] = {"hidden_dims": list(c.predictor.hidden_dims),
                             "out_dim": int(c.predictor.out_dim)}
    settings["byol"] = {"base_momentum": float(c.byol.base_momentum),
                        "final_momentum": float(c.byol.final_momentum)}
  else:
    settings["barlow"] = {"lambd": float(c.barlow.lambd),
                          "scale_loss": float(c.barlow.scale_loss)}
  return settings


def _config_of(args, method: str):
  return ssljax_config(method, width=args.width, batch=args.batch, epochs=args.epochs,
                       lr=args.lr, wd=args.wd, subset=args.train_subset, seed=args.seed,
                       idx_dir=args.idx_dir)


# ------------------------------------------------------------------ the ssljax side (a process)


def ssljax_side(args, method: str, out_path: str) -> dict:
  """Trains ``method`` with ssljax's compiled step and input pipeline; writes the features."""
  t_start = time.perf_counter()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, ROOT)
  import ssljax

  ssljax.configure_cpu()
  import jax
  import numpy as np

  from ssljax import data, sharding, train
  from ssljax.evals.evaluator import Evaluator

  c = _config_of(args, method)
  run = train.build(c)
  evaluator = Evaluator(c, run.method, run.mesh, run.info)
  train_iter = data.make_train_iterator(c.input.data, global_batch_size=int(c.input.batch_size),
                                        seed=int(c.seed))
  state = train.create_state(run)
  batch = sharding.global_batch(next(train_iter), run.mesh)
  t_compile = time.perf_counter()
  step_fn = run.step_fn.lower(state, batch).compile()
  t_loop = time.perf_counter()
  t_first = None
  metrics = None
  for step in range(run.total_steps):
    if step:
      batch = sharding.global_batch(next(train_iter), run.mesh)
    state, metrics = step_fn(state, batch)
    if step == 0:
      jax.block_until_ready(metrics)
      t_first = time.perf_counter()
  m = jax.device_get(metrics)
  t_end = time.perf_counter()
  if not bool(m["finite"]):
    raise SystemExit(f"ssljax {method}: loss or gradients became NaN/inf")
  feats = {split: evaluator.features(state, split)
           for split in (c.input.data.train_split, c.input.data.eval_split)}
  tr, te = feats[c.input.data.train_split], feats[c.input.data.eval_split]
  np.savez(out_path, train=tr["representation"], train_label=tr["label"],
           test=te["representation"], test_label=te["label"])
  t_done = time.perf_counter()
  return {"library": "ssljax", "method": method, "seed": int(c.seed),
          "jax": jax.__version__, "steps": run.total_steps,
          "setup_s": round(t_compile - t_start, 3),
          "compile_s": round(t_loop - t_compile, 3),
          "first_step_s": round(t_first - t_loop, 3),
          "train_loop_s": round(t_end - t_loop, 3),
          "step_s": round((t_end - t_first) / max(run.total_steps - 1, 1), 4),
          "features_s": round(t_done - t_end, 3), "final_loss": float(m["loss"])}


# ------------------------------------------------------------------ the driver


def export_data(c, path: str) -> None:
  """Writes ssljax's training subset and test split (uint8 images, labels) to ``path``."""
  import numpy as np

  from ssljax import data

  arrays = {}
  for name, split in (("train", c.input.data.train_split), ("test", c.input.data.eval_split)):
    images, labels = [], []
    for b in data.iterate_eval(c.input.data, split, batch_size=1000, process_index=0,
                               process_count=1):
      keep = np.asarray(b["mask"], bool)
      images.append(np.asarray(b["image"])[keep])
      labels.append(np.asarray(b["label"])[keep])
    arrays[f"{name}_image"] = np.concatenate(images)
    arrays[f"{name}_label"] = np.concatenate(labels)
  np.savez(path, **arrays)


def knn(features_path: str, want: dict) -> float:
  """kNN top-1 of a run's features, after checking its labels are the exported ones."""
  import numpy as np

  from ssljax.evals.knn import knn_top1

  f = np.load(features_path)
  for split in ("train", "test"):
    if not np.array_equal(f[f"{split}_label"], want[f"{split}_label"]):
      raise RuntimeError(f"{features_path}: {split} labels differ from the exported split")
  return float(knn_top1(f["train"], f["train_label"], f["test"], f["test_label"],
                        num_classes=10, k=KNN_K, temperature=KNN_T))


def _timed(cmd) -> tuple[dict, float]:
  t0 = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
  return _last_json(out.stdout), wall


def _fail(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 2


def _check(args, methods) -> str | None:
  """One line saying what is wrong with the arguments or the machine, or None."""
  unknown = [m for m in methods if m not in METHODS]
  if unknown or not methods:
    return f"--methods: {unknown or methods} unknown here; choose from {list(METHODS)}"
  for key, value in (("--width", args.width), ("--batch", args.batch),
                     ("--rounds", args.rounds), ("--train-subset", args.train_subset)):
    if value < 1:
      return f"{key}={value} must be a positive integer"
  if args.train_subset < args.batch:
    return (f"--train-subset={args.train_subset} is below --batch={args.batch}: not one whole "
            "batch; lower --batch or raise --train-subset")
  if args.train_subset > NUM_TRAIN:
    return f"--train-subset={args.train_subset} exceeds Fashion-MNIST's {NUM_TRAIN} train images"
  if not args.epochs > 0:
    return f"--epochs={args.epochs} must be > 0"
  return None


def _check_peer(peer: str) -> str | None:
  """One line when the interpreter ``peer`` cannot import lightly and torch, else None."""
  probe = subprocess.run([peer, "-c", "import lightly, torch"], capture_output=True, text=True)
  if probe.returncode:
    last = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return (f"--peer-python={peer!r} cannot import lightly and torch ({last}); "
            f"run `{peer} -m pip install lightly` there")
  return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--peer-python", default="",
                      help="an interpreter with lightly installed (omit: ssljax only)")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--width", type=int, default=16, help="ResNet-18 first-stage width")
  parser.add_argument("--epochs", type=float, default=2.0)
  parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="global batch")
  parser.add_argument("--lr", type=float, default=None,
                      help="SGD peak lr (default: lightly's CIFAR-10 rule 0.06 x batch / 128)")
  parser.add_argument("--wd", type=float, default=5e-4, help="SGD weight decay")
  parser.add_argument("--train-subset", type=int, default=NUM_TRAIN,
                      help="train on the first N training images of ssljax's split")
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--peer-workers", type=int, default=-1,
                      help="lightly DataLoader workers (default: the machine's cores)")
  parser.add_argument("--idx-dir", default="",
                      help="folder of the four Fashion-MNIST IDX files (default: Debian's)")
  parser.add_argument("--dry-run", action="store_true",
                      help="print both sides' settings as JSON and exit")
  parser.add_argument("--side", choices=("both", "ssljax"), default="both",
                      help=argparse.SUPPRESS)
  parser.add_argument("--out", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.lr is None:
    args.lr = default_lr(args.batch)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  if args.side == "ssljax":
    result = ssljax_side(args, methods[0], args.out)
    print(json.dumps(result), flush=True)
    os._exit(0)  # As the lightly side: no interpreter teardown in the timing.
  problem = _check(args, methods)
  if problem:
    return _fail(problem)
  threads = _cores()
  workers = threads if args.peer_workers < 0 else args.peer_workers
  if args.dry_run:
    for method in methods:
      c = _config_of(args, method)
      print(json.dumps({"library": "ssljax", "method": method,
                        "config": json.loads(c.to_json_best_effort())}))
      print(json.dumps({"library": "lightly", "method": method,
                        "settings": lightly_settings(method, c, subset=args.train_subset,
                                                     workers=workers, threads=threads)}))
    return 0
  peer = args.peer_python
  if peer and not (os.path.isfile(peer) and os.access(peer, os.X_OK)):
    return _fail(f"--peer-python={peer!r} is not an executable file; pass the python of a "
                 "virtual environment with lightly installed (pip install lightly)")
  sys.path.insert(0, ROOT)
  from ssljax.data import fashion_mnist
  from ssljax.errors import UserError

  try:
    fashion_mnist.find_files(args.idx_dir or None)
  except UserError as e:
    return _fail(str(e).splitlines()[0])
  if peer:
    problem = _check_peer(peer)
    if problem:
      return _fail(problem)
  else:
    print("note: no --peer-python, so ssljax runs alone", file=sys.stderr)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import numpy as np

  runs: dict[tuple[str, str], list[dict]] = {}
  folder = tempfile.mkdtemp(prefix="peer_lightly_")
  try:
    data_path = os.path.join(folder, "data.npz")
    export_data(_config_of(args, methods[0]), data_path)
    want = dict(np.load(data_path))
    common = ["--width", str(args.width), "--epochs", str(args.epochs), "--batch",
              str(args.batch), "--lr", str(args.lr), "--wd", str(args.wd), "--train-subset",
              str(args.train_subset), "--seed", str(args.seed)]
    if args.idx_dir:
      common += ["--idx-dir", args.idx_dir]
    for r in range(args.rounds):
      for method in methods:
        out = {lib: os.path.join(folder, f"{lib}_{method}_{r}.npz")
               for lib in ("ssljax", "lightly")}
        ours = [sys.executable, os.path.join(HERE, "peer_lightly.py"), "--side", "ssljax",
                "--methods", method, "--out", out["ssljax"], *common]
        peer = None
        if args.peer_python:
          settings_path = os.path.join(folder, f"{method}.json")
          with open(settings_path, "w") as f:
            json.dump(lightly_settings(method, _config_of(args, method),
                                       subset=args.train_subset, workers=workers,
                                       threads=threads), f)
          peer = [args.peer_python, os.path.join(HERE, "_lightly_side.py"), "--settings",
                  settings_path, "--data", data_path, "--out", out["lightly"]]
        order = [ours, peer] if r % 2 == 0 else [peer, ours]
        for cmd in order:
          if cmd is None:
            continue
          result, wall = _timed(cmd)
          lib = result["library"]
          result.update(round=r, wall_s=round(wall, 3), train_subset=args.train_subset,
                        width=args.width, epochs=args.epochs, batch=args.batch,
                        knn_top1=knn(out[lib], want))
          os.remove(out[lib])
          print(json.dumps(result), flush=True)
          runs.setdefault((method, lib), []).append(result)
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  print(table(methods, runs))
  return 0


def table(methods, runs) -> str:
  """Medians per (method, library) and the ratios lightly / ssljax of wall and loop time."""
  lines = ["", "| method | library | runs | wall s | train loop s | s / step | compile s | "
           "kNN top-1 | lightly / ssljax wall | lightly / ssljax loop |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for method in methods:
    med = {}
    for lib in ("ssljax", "lightly"):
      got = runs.get((method, lib))
      if not got:
        continue
      med[lib] = {k: statistics.median(g[k] for g in got)
                  for k in ("wall_s", "train_loop_s", "step_s", "knn_top1")}
      compile_s = (f"{statistics.median(g['compile_s'] for g in got):.1f}"
                   if lib == "ssljax" else "-")
      ratios = ["", ""]
      if lib == "lightly" and "ssljax" in med:
        ratios = [f"{med['lightly'][k] / med['ssljax'][k]:.2f}x"
                  for k in ("wall_s", "train_loop_s")]
      m = med[lib]
      lines.append(f"| {method} | {lib} | {len(got)} | {m['wall_s']:.1f} | "
                   f"{m['train_loop_s']:.1f} | {m['step_s']:.3f} | {compile_s} | "
                   f"{m['knn_top1']:.4f} | {ratios[0]} | {ratios[1]} |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
