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
Table methods add their baselines (the linear probe on the raw features, HistGradientBoosting)
and, on regression targets, R² columns::

    python -m ssljax.tools.compare --workdir=/tmp/tables \
        --methods=scarf:data=sklearn:wine,t_jepa:data=sklearn:wine
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time

from ssljax.errors import UserError

COLUMNS = (("linear_top1", "linear top-1"), ("init_linear_top1", "at init"),
           ("knn_top1", "kNN top-1"), ("init_knn_top1", "at init"),
           ("raw_linear_top1", "raw-feature linear top-1"), ("raw_knn_top1", "raw-feature kNN"),
           ("gbdt_top1", "GBDT top-1"),
           ("ridge_r2", "ridge R²"), ("init_ridge_r2", "at init"),
           ("raw_ridge_r2", "raw-feature ridge R²"), ("gbdt_r2", "GBDT R²"), ("rankme", "RankMe"),
           ("classifier_top1", "classifier top-1"), ("wall_time_s", "wall time"))
# Shown only when some row has them: classifiers, the untrained network's numbers
# (eval.at_init), the table baselines, regression metrics.
OPTIONAL = ("classifier_top1", "raw_linear_top1", "raw_knn_top1", "gbdt_top1", "ridge_r2",
            "raw_ridge_r2", "gbdt_r2", "linear_top1", "knn_top1", "init_linear_top1",
            "init_knn_top1", "init_ridge_r2")


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
  return f"{100 * value:.1f}%"


def table(rows: list[dict]) -> str:
  """A Markdown table of ``rows`` (each ``{"method": ..., <COLUMNS keys>...}``)."""
  columns = [(key, title) for key, title in COLUMNS
             if key not in OPTIONAL or any(r.get(key) is not None for r in rows)]
  lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
           "|---|" + "---:|" * len(columns)]
  for row in rows:
    if "error" in row:
      cells = [f"failed: {row['error']}"] + [""] * (len(columns) - 1)
    else:
      cells = [_format(key, row.get(key)) for key, _ in columns]
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


def run_one(entry: str, config_arg: str, workdir: str, *, rerun: bool) -> dict:
  """Trains and evaluates one ``method[:variant]`` (or reads its finished results); a table row."""
  method, variant = _split_entry(entry)
  config_arg = ",".join(a for a in (variant, config_arg) if a)
  results = train_or_reuse(
      entry, workdir,
      lambda: importlib.import_module(f"experiments.{method}").get_config(config_arg or None),
      rerun=rerun, what=f"experiments/{method}.py:{config_arg}")
  return {"method": entry, **{k: results.get(k) for k, _ in COLUMNS}}


def train_or_reuse(label: str, workdir: str, build_config, *, rerun: bool, what: str) -> dict:
  """``results.json`` of ``workdir`` when a finished run is there, else trains ``build_config()``.

  ``rerun`` deletes the folder first. An unfinished run in the folder is resumed.
  """
  from ssljax import train

  results_path = os.path.join(workdir, "results.json")
  if rerun and os.path.isdir(workdir):
    shutil.rmtree(workdir)
  if os.path.exists(results_path):
    print(f"[{label}] reusing {results_path} (--rerun trains again)", flush=True)
    with open(results_path) as f:
      return json.load(f)
  config = build_config()
  print(f"[{label}] training: {what} -> {workdir}", flush=True)
  return train.train_and_evaluate(config, workdir)


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
  rows = []
  start = time.perf_counter()
  for method in chosen:
    try:
      rows.append(run_one(method, args.config_arg, os.path.join(args.workdir, _folder(method)),
                          rerun=args.rerun))
    except UserError as e:  # One method's bad setting should not hide the others' results.
      print(f"[{method}] error: {e}", file=sys.stderr, flush=True)
      rows.append({"method": method, "error": str(e)})
  return write_report(args.workdir, "compare", table(rows), rows, rows=rows, what="methods",
                      start=start)


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
