r"""Trains several methods on the same data and prints one table of their results.

::

    python -m ssljax.tools.compare --methods=all --workdir=/tmp/ssljax_compare
    python -m ssljax.tools.compare --methods=simclr,byol --config-arg=runlocal --workdir=/tmp/quick
    python -m ssljax.tools.compare --methods=fst,fst:baseline --workdir=/tmp/semi

Each method runs its own experiment file (``experiments/<method>.py``, with ``--config-arg`` as
the variant) in ``<workdir>/<method>``, one after the other, through the same
``train_and_evaluate`` as ``main.py``. A method whose folder already holds ``results.json`` is
not retrained (pass ``--rerun`` to train again). The table (linear top-1, kNN top-1, RankMe, wall
time) is printed as Markdown and written to ``<workdir>/compare.md`` and ``compare.json``.
An entry ``<method>:<variant>`` runs that variant (e.g. ``sla:baseline``) in
``<workdir>/<method>-<variant>``; methods that train a classifier add a "classifier top-1" column.
Recommendation methods add Recall@10 and NDCG@10 on validation and test at the evaluation with
the best validation NDCG@10, and the popularity baseline's test numbers::

    python -m ssljax.tools.compare --methods=bpr,lightgcn --workdir=/tmp/rec

Table methods add their baselines (the linear probe on the raw features, HistGradientBoosting)
and, on regression targets, R² columns::

    python -m ssljax.tools.compare --workdir=/tmp/tables \
        --methods=scarf:data=sklearn:wine,t_jepa:data=sklearn:wine

Image sets: ``--data`` runs each method's recipe for each named set (``data=<set>``) in
``<workdir>/<set>/<method>`` and writes one table per set (``compare_<set>.md``)::

    python -m ssljax.compare --methods=simclr,byol,barlow --data=mnist5k,fashion_mnist_local \
        --workdir=/tmp/gray28

With ``--seeds`` (e.g. ``--seeds=0,1,2``) each method runs once per seed and each cell is the mean
± the standard deviation over the seeds (the per-seed results are in ``compare_<set>.json``).
Seed 0 is the recipe's own run, in the same folder as without ``--seeds`` (so a one-seed table's
runs are reused); seed N runs in ``<workdir>/<set>/seed<N>/<method>``.

``--config-override=KEY=VALUE`` (repeatable) sets a config field in every run after its variant
is built, typed as the field (as ``main.py``'s ``--config.KEY=VALUE``), e.g. Fashion-MNIST's IDX
files somewhere other than Debian's folder::

    python -m ssljax.compare --methods=simclr,byol --data=fashion_mnist_local \
        --config-override=input.data.path=/data/fashion-mnist --workdir=/tmp/fm

Every method's config is checked before anything trains (an unknown field or a value of the wrong
type stops the command with one line). A finished run is reused only if its ``config.json`` has
the overridden values; otherwise that method reports an error (``--rerun`` trains it again).

Time series: ``--data`` lists data sets (UCR/UEA names) and ``--seeds`` the seeds; each method
then runs on each set with each seed, and the table has one row per data set: each method's SVM
top-1 (the protocol of ``ssljax.evals.svm``) as the mean and spread over the seeds, the raw-series
baselines (the same SVM on the z-normalised series, Euclidean 1-NN), T-Loss's published number
where :data:`TLOSS_PUBLISHED` has it, and the mean over the sets::

    python -m ssljax.tools.compare --methods=ts2vec --workdir=/tmp/ucr --seeds=0,1,2 \
        --data=ucr:GunPoint,ucr:ArrowHead,ucr:ItalyPowerDemand,uea:BasicMotions,uea:JapaneseVowels
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time

from ssljax.errors import ConfigError, UserError

COLUMNS = (("linear_top1", "linear top-1"), ("init_linear_top1", "at init"),
           ("knn_top1", "kNN top-1"), ("init_knn_top1", "at init"),
           ("raw_linear_top1", "raw-feature linear top-1"), ("raw_knn_top1", "raw-feature kNN"),
           ("gbdt_top1", "GBDT top-1"),
           ("ridge_r2", "ridge R²"), ("init_ridge_r2", "at init"),
           ("raw_ridge_r2", "raw-feature ridge R²"), ("gbdt_r2", "GBDT R²"),
           # Recommendation (the ranking evaluator): at the evaluation with the best validation
           # NDCG@10 (selection never reads test), beside the popularity baseline.
           ("best_valid_recall@10", "valid Recall@10"), ("best_valid_ndcg@10", "valid NDCG@10"),
           ("best_test_recall@10", "test Recall@10"), ("best_test_ndcg@10", "test NDCG@10"),
           ("pop_test_recall@10", "popularity test Recall@10"),
           ("pop_test_ndcg@10", "popularity test NDCG@10"), ("rankme", "RankMe"),
           ("classifier_top1", "classifier top-1"), ("wall_time_s", "wall time"))
# Shown only when some row has them: classifiers, the untrained network's numbers
# (eval.at_init), the table baselines, regression metrics.
OPTIONAL = ("classifier_top1", "raw_linear_top1", "raw_knn_top1", "gbdt_top1", "ridge_r2",
            "raw_ridge_r2", "gbdt_r2", "linear_top1", "knn_top1", "init_linear_top1",
            "init_knn_top1", "init_ridge_r2", "best_valid_recall@10", "best_valid_ndcg@10",
            "best_test_recall@10", "best_test_ndcg@10", "pop_test_recall@10", "pop_test_ndcg@10",
            "rankme")


# T-Loss (Franceschi et al., NeurIPS 2019) test accuracy, K = 10, RBF SVM on its representations:
# the official results files (the figures the issue on time series quotes; JapaneseVowels is
# given there as 0.984-0.989, and its lower end is the one shown).
TLOSS_PUBLISHED = {"ArrowHead": 0.766, "GunPoint": 0.980, "ItalyPowerDemand": 0.954,
                   "BasicMotions": 1.000, "JapaneseVowels": 0.984}


# Recall@10 / NDCG@10 on LastFM under RecBole-GNN's protocol (its results page for social
# recommendation, results/social/lastfm.md: per-user random 8:1:1, full ranking, early stopping
# on validation NDCG@10, d = 64), the targets of the recommendation issue.
LASTFM_PUBLISHED = {"bpr": (0.1761, 0.1674), "lightgcn": (0.2064, 0.1972),
                    "sept": (0.2127, 0.2057)}
REC_METRICS = (("best_valid_recall@10", "valid Recall@10"), ("best_valid_ndcg@10", "valid NDCG@10"),
               ("best_test_recall@10", "test Recall@10"), ("best_test_ndcg@10", "test NDCG@10"))


def experiment_methods() -> list[str]:
  """Methods that have both ``ssljax/methods/<m>.py`` and ``experiments/<m>.py``."""
  from ssljax import methods

  found = []
  for name in methods.available():
    try:
      importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError:
      continue
    found.append(name)
  return found


def _format(key: str, value) -> str:
  if value is None:
    return "—"
  if key == "wall_time_s":
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}m{seconds:02d}s"
  if key == "rankme":
    return f"{value:.1f}"
  if key.endswith("_r2"):
    return f"{value:.3f}"
  if "@" in key:  # Ranking metrics, as recommendation papers print them.
    return f"{value:.4f}"
  return f"{100 * value:.1f}%"


def table(rows: list[dict], suffix=lambda key, row: "") -> str:
  """A Markdown table of ``rows`` (each ``{"method": ..., <COLUMNS keys>...}``); ``suffix(key,
  row)`` is appended to each cell (the spread over seeds in :func:`seed_table`)."""
  columns = [(key, title) for key, title in COLUMNS
             if key not in OPTIONAL or any(r.get(key) is not None for r in rows)]
  lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
           "|---|" + "---:|" * len(columns)]
  for row in rows:
    if "error" in row:
      cells = [f"failed: {row['error']}"] + [""] * (len(columns) - 1)
    else:
      cells = [_format(key, row.get(key)) + suffix(key, row) for key, _ in columns]
    lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _split_entry(entry: str) -> tuple[str, str]:
  """``"fst:baseline"`` -> ``("fst", "baseline")``; ``"fst"`` -> ``("fst", "")``."""
  method, _, variant = entry.partition(":")
  return method.strip(), variant.strip()


def _folder(entry: str) -> str:
  method, variant = _split_entry(entry)
  if not variant:
    return method
  return method + "-" + "".join(c if c.isalnum() or c in "._" else "-" for c in variant)


def run_one(entry: str, config_arg: str, workdir: str, *, rerun: bool,
            overrides: list[str] = ()) -> dict:
  """Trains and evaluates one ``method[:variant]`` (or reads its finished results); a table row."""
  method, variant = _split_entry(entry)
  config_arg = ",".join(a for a in (variant, config_arg) if a)
  results = train_or_reuse(
      entry, workdir,
      lambda: importlib.import_module(f"experiments.{method}").get_config(config_arg or None),
      rerun=rerun, what=f"experiments/{method}.py:{config_arg}", overrides=overrides)
  return {"method": entry, **{k: results.get(k) for k, _ in COLUMNS}}


def train_or_reuse(label: str, workdir: str, build_config, *, rerun: bool, what: str,
                   overrides: list[str] = ()) -> dict:
  """``results.json`` of ``workdir`` when a finished run is there, else trains ``build_config()``
  with ``overrides`` (``KEY=VALUE`` texts of ``--config-override``) applied.

  ``rerun`` deletes the folder first. An unfinished run in the folder is resumed. A finished run
  whose ``config.json`` lacks an override's value, or differs from ``build_config()`` in one of
  :data:`RUN_IDENTITY` (another ``--config-arg``, seed or recipe length), is a ConfigError, not
  reused.
  """
  from ssljax import train

  results_path = os.path.join(workdir, "results.json")
  if rerun and os.path.isdir(workdir):
    shutil.rmtree(workdir)
  if os.path.exists(results_path):
    config, applied = _configured(build_config, overrides)
    _check_reused(workdir, applied, config)
    print(f"[{label}] reusing {results_path} (--rerun trains again)", flush=True)
    with open(results_path) as f:
      return json.load(f)
  config, _ = _configured(build_config, overrides)
  print(f"[{label}] training: {what} -> {workdir}", flush=True)
  return train.train_and_evaluate(config, workdir)


def _configured(build_config, overrides: list[str]):
  """``build_config()`` with each ``--config-override`` applied (typed as its field), and the
  ``{key: value}`` it set."""
  from ssljax.tools import select  # select imports this module.

  config = build_config()
  return config, select.apply_overrides(config, list(overrides))


# Fields that tell a finished run apart from the one asked for, checked before reusing it.
RUN_IDENTITY = ("method", "input.data.name", "input.data.target", "input.batch_size",
                "total_epochs", "total_steps", "seed")
_MISSING = object()


def _field(tree, key: str):
  for part in key.split("."):
    if not hasattr(tree, "get"):
      return _MISSING
    tree = tree.get(part, _MISSING)
    if tree is _MISSING:
      return _MISSING
  return tree


def _check_reused(workdir: str, applied: dict, config) -> None:
  """Raises ConfigError unless ``workdir/config.json`` holds each overridden field's value and,
  where it records them, ``config``'s :data:`RUN_IDENTITY` fields."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    saved = {}
  for key in [*applied, *(k for k in RUN_IDENTITY if k not in applied)]:
    overridden = key in applied
    have = _field(saved, key)
    want = applied[key] if overridden else _field(config, key)
    if not overridden and _MISSING in (have, want):
      continue  # A field this method or this config.json does not have.
    have = None if have is _MISSING else have
    want = json.loads(json.dumps(want))  # Tuples as config.json stores them (lists).
    if have != want:
      source = "--config-override" if overridden else "this command's config"
      raise ConfigError(f"{workdir} holds a finished run with {key}={have!r}, not {want!r} "
                        f"({source}); pass --rerun to train it again, or another --workdir")


def _check_overrides(chosen: list[str], args) -> str | None:
  """The first ``--config-override`` that some method's config refuses, as an error line."""
  from ssljax.tools import select  # select imports this module.

  first = args.data.split(",")[0].partition("=")[0].strip() if args.data else ""
  for entry in chosen:
    method, variant = _split_entry(entry)
    arg = ",".join(a for a in (f"data={first}" if first else "", variant, args.config_arg) if a)
    try:
      config = importlib.import_module(f"experiments.{method}").get_config(arg or None)
    except UserError:
      continue  # The method's own run reports its bad variant.
    try:
      select.apply_overrides(config, args.config_override)
    except ConfigError as e:
      return f"error: {entry}: {e}"
  return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ssljax.tools.compare", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--methods", default="all",
                      help="comma-separated method names (or method:variant, e.g. sla:baseline), "
                      "'all' for every method's default (default); 'all' may be one entry")
  parser.add_argument("--config-arg", default="",
                      help="variant passed to every experiment file, e.g. 'runlocal'")
  parser.add_argument("--workdir", required=True, help="folder for one sub-folder per method")
  parser.add_argument("--rerun", action="store_true", help="retrain methods that have results")
  parser.add_argument("--data", default="",
                      help="comma-separated data sets: image sets (e.g. mnist5k, "
                      "fashion_mnist_local: each method's data=<set> recipe, one table per set), "
                      "time series (ucr:<Name>, uea:<Name>: one row per set) or interaction sets")
  parser.add_argument("--seeds", default="0",
                      help="with --data: comma-separated seeds (mean and spread over them)")
  parser.add_argument("--config-override", action="append", default=[], metavar="KEY=VALUE",
                      help="a config field set in every run, e.g. input.data.path=/data/fm "
                      "(repeatable)")
  args = parser.parse_args(argv)

  known = experiment_methods()
  chosen = []
  for entry in (m.strip() for m in args.methods.split(",")):
    if entry and entry not in chosen:
      chosen.extend(known if entry == "all" else [entry])
  unknown = [m for m in chosen if _split_entry(m)[0] not in known]
  if unknown or not chosen:
    print(f"error: --methods={args.methods!r}: unknown {unknown}; choose from {known} or 'all'",
          file=sys.stderr)
    return 2
  if args.config_override:
    error = _check_overrides(chosen, args)
    if error:
      print(error, file=sys.stderr)
      return 2
  if args.data:
    from ssljax.data import interactions  # pylint: disable=import-outside-toplevel

    first = args.data.split(",")[0].partition("=")[0].strip()
    if interactions.is_interactions(first):
      return rec_compare(chosen, args)
    if first in IMAGE_SETS:
      return image_compare(chosen, args)
    return series_compare(chosen, args)
  rows = []
  start = time.perf_counter()
  for method in chosen:
    try:
      rows.append(run_one(method, args.config_arg, os.path.join(args.workdir, _folder(method)),
                          rerun=args.rerun, overrides=args.config_override))
    except UserError as e:  # One method's bad setting should not hide the others' results.
      print(f"[{method}] error: {e}", file=sys.stderr, flush=True)
      rows.append({"method": method, "error": str(e)})
  return write_report(args.workdir, "compare", table(rows), rows, rows=rows, what="methods",
                      start=start)


# Image data sets every classic image method has a recipe for (``experiments/common.py``'s
# METHOD_DATASETS; kept literal so that importing this module does not import the experiments).
IMAGE_SETS = ("digits", "mnist5k", "fashion_mnist_local", "cifar10", "cifar100", "imagenet2012")


def image_compare(chosen: list[str], args) -> int:
  """``--data`` naming image sets: every method's ``data=<set>`` recipe for every seed of
  ``--seeds``; one table per set, in ``<workdir>/<set>/[seed<N>/]<method>`` and
  ``<workdir>/compare_<set>.md``."""
  names = [d.strip() for d in args.data.split(",") if d.strip()]
  unknown = [n for n in names if n not in IMAGE_SETS]
  if unknown:
    print(f"error: --data={args.data!r}: {unknown} are not image sets; choose from {IMAGE_SETS} "
          "(one kind of data per command)", file=sys.stderr)
    return 2
  seeds = _seeds(args.seeds)
  if not seeds:
    if seeds is not None:
      print(f"error: --seeds={args.seeds!r}: give at least one seed", file=sys.stderr)
    return 2
  code = 0
  for name in names:
    start = time.perf_counter()
    rows = []
    for entry in chosen:
      method, variant = _split_entry(entry)
      arg = ",".join(a for a in (f"data={name}", variant, args.config_arg) if a)
      runs = []
      for seed in seeds:
        # Seed 0 is the recipe's own run: its folder is the one a run without --seeds uses.
        folder = os.path.join(args.workdir, name, *([f"seed{seed}"] if seed else []),
                              _folder(entry))

        def build(arg=arg, seed=seed, method=method):
          config = importlib.import_module(f"experiments.{method}").get_config(arg)
          config.seed = seed
          return config

        label = f"{entry} on {name}" + (f" seed {seed}" if len(seeds) > 1 else "")
        try:
          runs.append(train_or_reuse(label, folder, build, rerun=args.rerun,
                                     what=f"experiments/{method}.py:{arg} seed={seed}",
                                     overrides=args.config_override))
        except UserError as e:
          print(f"[{label}] error: {e}", file=sys.stderr, flush=True)
          runs = [{"error": str(e)}]
          break
      rows.append(_seed_row(entry, seeds, runs))
    text = table(rows) if len(seeds) == 1 else seed_table(rows, seeds)
    code = max(code, write_report(args.workdir, f"compare_{name}", text, rows, rows=rows,
                                  what=f"methods on {name}", start=start))
  return code


def _seed_row(entry: str, seeds: list[int], runs: list[dict]) -> dict:
  """One table row: the column values of one seed's results, or their means (and, under
  ``per_seed``, each seed's values and under ``std`` the spread) over several seeds."""
  if "error" in runs[0]:
    return {"method": entry, "error": runs[0]["error"]}
  if len(runs) == 1:
    return {"method": entry, **{k: runs[0].get(k) for k, _ in COLUMNS}}
  row = {"method": entry, "seeds": seeds, "std": {}, "per_seed": []}
  for k, _ in COLUMNS:
    values = [r.get(k) for r in runs]
    if any(v is None for v in values):
      row[k] = None
      continue
    row[k] = sum(values) / len(values)
    row["std"][k] = (sum((v - row[k]) ** 2 for v in values) / len(values)) ** 0.5
  row["per_seed"] = [{k: r.get(k) for k, _ in COLUMNS if r.get(k) is not None} for r in runs]
  return row


def seed_table(rows: list[dict], seeds: list[int]) -> str:
  """:func:`table` of rows with means over ``seeds``, each cell followed by ± the spread."""
  def spread(key, row):
    std = row.get("std", {}).get(key)
    if std is None or key == "wall_time_s":
      return ""
    return f" ± {std:.1f}" if key == "rankme" else f" ± {100 * std:.1f}"

  return table(rows, spread) + (f"\n\nMean ± standard deviation over seeds {seeds} (wall time: "
                             "the mean of one run).")


def _safe(text: str) -> str:
  return "".join(c if c.isalnum() or c in "._" else "-" for c in text)


def series_compare(chosen: list[str], args) -> int:
  """``--data``: every method on every data set and seed; one row per data set."""
  import numpy as np

  try:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    print(f"error: --seeds={args.seeds!r}: give comma-separated integers", file=sys.stderr)
    return 2
  names = [d.strip() for d in args.data.split(",") if d.strip()]
  start = time.perf_counter()
  runs: dict[tuple[str, str], list[dict]] = {}
  failed = False
  for name in names:
    for entry in chosen:
      method, variant = _split_entry(entry)
      for seed in seeds:
        arg = ",".join(a for a in (f"data={name}", variant, args.config_arg) if a)
        folder = os.path.join(args.workdir, _folder(entry), _safe(name), f"seed{seed}")

        def build(arg=arg, seed=seed, method=method):
          config = importlib.import_module(f"experiments.{method}").get_config(arg)
          config.seed = seed
          return config

        try:
          results = train_or_reuse(f"{entry} {name} seed {seed}", folder, build, rerun=args.rerun,
                                   what=f"experiments/{method}.py:{arg} seed={seed}",
                                   overrides=args.config_override)
        except UserError as e:
          print(f"[{entry} {name}] error: {e}", file=sys.stderr, flush=True)
          results, failed = {"error": str(e)}, True
        runs.setdefault((name, entry), []).append(results)

  def stat(values):
    values = [v for v in values if v is not None]
    if not values:
      return None, None
    return float(np.mean(values)), float(np.std(values))

  def cell(mean, std):
    if mean is None:
      return "—"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std and std >= 5e-4 else "")

  header = (["data set"] + [f"{e} SVM" for e in chosen] + [f"{e} at init" for e in chosen]
            + ["raw SVM", "raw 1-NN", "T-Loss (published)"])
  lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
  data, columns = [], {h: [] for h in header[1:]}
  for name in names:
    row = {"data": name}
    for entry in chosen:
      res = runs[(name, entry)]
      row[f"{entry} SVM"] = stat([r.get("svm_top1") for r in res])
      row[f"{entry} at init"] = stat([r.get("init_svm_top1") for r in res])
    first = runs[(name, chosen[0])]
    row["raw SVM"] = stat([r.get("raw_svm_top1") for r in first])
    row["raw 1-NN"] = stat([r.get("raw_1nn_top1") for r in first])
    published = TLOSS_PUBLISHED.get(name.split(":", 1)[-1])
    row["T-Loss (published)"] = (published, None)
    for key in header[1:]:
      columns[key].append(row[key][0])
    lines.append(f"| {name} | " + " | ".join(cell(*row[k]) for k in header[1:]) + " |")
    data.append({k: (v if k == "data" else {"mean": v[0], "std": v[1]}) for k, v in row.items()})
  if len(names) > 1:
    means = [stat(columns[k])[0] if all(v is not None for v in columns[k]) else None
             for k in header[1:]]
    lines.append("| mean | " + " | ".join(cell(m, None) for m in means) + " |")
  text = "\n".join(lines) + (f"\n\nSVM test top-1 (%), mean ± std over seeds {seeds}; baselines "
                             "on the raw series; T-Loss: Franceschi et al. 2019, K=10.")
  code = write_report(args.workdir, "compare_series", text, data, rows=data, what="data sets",
                      start=start)
  return 1 if failed else code


def _seeds(text: str) -> list[int] | None:
  try:
    return [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    print(f"error: --seeds={text!r}: give comma-separated integers", file=sys.stderr)
    return None


def rec_compare(chosen: list[str], args) -> int:
  """``--data`` naming interaction sets (``name`` or ``name=folder-or-file``): every method on
  every set and seed; one row per (set, method) with the best-on-validation Recall/NDCG@10 as
  mean ± std over seeds, the training time per epoch, the popularity baseline and, on LastFM,
  RecBole-GNN's published numbers."""
  import numpy as np

  seeds = _seeds(args.seeds)
  if seeds is None:
    return 2
  entries = [d.strip() for d in args.data.split(",") if d.strip()]
  start = time.perf_counter()
  rows, data, failed = [], [], False

  def stat(values):
    values = [v for v in values if isinstance(v, int | float)]
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)

  def cell(mean, std, digits=4):
    if mean is None:
      return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")

  header = ["data set", "method", *(label for _, label in REC_METRICS), "best epoch",
            "s / epoch", "LastFM published (Recall / NDCG@10)"]
  lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
  for entry_data in entries:
    name, _, path = entry_data.partition("=")
    popularity = None
    for entry in chosen:
      method, variant = _split_entry(entry)
      runs = []
      for seed in seeds:
        arg = ",".join(a for a in (f"data={name}", variant, args.config_arg) if a)
        folder = os.path.join(args.workdir, _safe(name), _folder(entry), f"seed{seed}")

        def build(arg=arg, seed=seed, method=method, path=path):
          config = importlib.import_module(f"experiments.{method}").get_config(arg)
          config.seed = seed
          if path:
            config.input.data.path = path
          return config

        try:
          runs.append(train_or_reuse(f"{entry} {name} seed {seed}", folder, build,
                                     rerun=args.rerun,
                                     what=f"experiments/{method}.py:{arg} seed={seed}",
                                     overrides=args.config_override))
        except UserError as e:
          print(f"[{entry} {name}] error: {e}", file=sys.stderr, flush=True)
          runs.append({"error": str(e)})
          failed = True
      ok = [r for r in runs if "error" not in r]
      if popularity is None and ok:
        popularity = ok[0]
      row = {"data": name, "method": entry, "seeds": seeds}
      for key, _ in REC_METRICS:
        row[key] = stat([r.get(key) for r in ok])
      steps_per_epoch = [r.get("train_time_per_epoch_s") for r in ok]
      row["best_epoch"] = stat([r["best_step"] / r["steps_per_epoch"] for r in ok
                                if r.get("steps_per_epoch") and "best_step" in r])
      row["s_per_epoch"] = stat(steps_per_epoch)
      published = LASTFM_PUBLISHED.get(method) if name == "lastfm" else None
      row["published"] = published
      rows.append(row)
      cells = [cell(*row[k]) for k, _ in REC_METRICS]
      cells += [cell(*row["best_epoch"], digits=0), cell(*row["s_per_epoch"], digits=2),
                " / ".join(f"{v:.4f}" for v in published) if published else "—"]
      lines.append(f"| {name} | {entry} | " + " | ".join(cells) + " |")
    if popularity is not None:
      pop = [cell(popularity.get(k.replace("best_", "pop_")), None) for k, _ in REC_METRICS]
      lines.append(f"| {name} | popularity | " + " | ".join(pop) + " | — | — | — |")
  data = rows
  text = "\n".join(lines) + (
      f"\n\nRecall@10 / NDCG@10 at the evaluation with the best validation NDCG@10 (test never "
      f"chooses), mean ± std over seeds {seeds}; s / epoch: training time per epoch "
      "(after the first, compiling step; evaluations not counted). Popularity: items ranked "
      "by training interactions. LastFM published: RecBole-GNN (per-user 8:1:1, full "
      "ranking).")
  code = write_report(args.workdir, "compare_rec", text, data,
                      rows=rows + ([{"error": 1}] if failed else []),
                      what="table rows", start=start)
  return 1 if failed else code


def write_report(workdir: str, stem: str, text: str, data, *, rows: list[dict], what: str,
                 start: float) -> int:
  """Writes ``<stem>.md`` / ``<stem>.json``, prints the table; exit code 1 if a row failed."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, f"{stem}.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(workdir, f"{stem}.json"), "w") as f:
    json.dump(data, f, indent=2)
  print(f"\n{text}\n\n({len(rows)} {what}, {time.perf_counter() - start:.0f} s in all; "
        f"written to {workdir}/{stem}.md)", flush=True)
  return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from ssljax import configure_cpu

  configure_cpu()  # As main.py: XLA:CPU flags before JAX creates its devices.
  sys.exit(main())
