r"""Picks hyperparameters without labels: trains a small grid, keeps the run with the best RankMe.

::

    python -m ssljax.tools.select --config=experiments/barlow.py \
        --grid=barlow.lambd=0.001,0.005,0.02 \
        --workdir=/tmp/barlow_select
    python -m ssljax.tools.select --config=experiments/vicreg.py --config-arg=runlocal \
        --grid=optim.lr=0.1,0.3 --grid=vicreg.sim_weight=10.0,25.0 --workdir=/tmp/quick
    python -m ssljax.tools.select --config=experiments/barlow.py --grid=barlow.lambd=0.001,0.005 \
        --config-override=total_epochs=20 --workdir=/tmp/short

Flags:

* ``--grid=KEY=V1,V2,...`` (repeatable): a config field and the values to try. Several ``--grid``
  flags make their product. Values are parsed as the field's type (``True``/``False`` for booleans;
  tuples in brackets, e.g. ``--grid=projector.hidden_dims=(256,256),(512,512)``).
* ``--config=FILE[:ARG]`` and ``--config-arg=ARG``: the experiment file and its variant, as in
  ``main.py`` (``runlocal``, ``data=cifar10``, ...; the two are joined with a comma).
* ``--config-override=KEY=VALUE`` (repeatable): a field set in every run, e.g. a shorter
  ``total_epochs``.

Each grid point trains through ``train.train_and_evaluate`` in its own sub-folder of
``--workdir`` (named after the point, e.g. ``barlow.lambd=0.005``), one after the other. A folder
that already holds ``results.json`` is not retrained, and one holding an unfinished run resumes it;
a folder whose ``config.json`` differs from the point's config is an error (``--rerun`` trains
again). The run with the largest RankMe (Garrido et al., ICML 2023: the entropy-based effective
rank of the embeddings, no labels) is the pick. The table also shows the linear-probe accuracy,
which config it would have picked (an oracle that uses labels), and the Spearman rank correlation
between RankMe and linear accuracy over the grid. Written to ``<workdir>/select.md`` and
``select.json``. Compare runs of one method only: RankMe is a necessary, not a sufficient, signal.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import hashlib
import importlib.util
import itertools
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

from ssljax.errors import ConfigError, UserError
from ssljax.tools import compare

# results.json key of each --rankme choice (the paper's default is the projector's embedding).
RANKME_KEYS = {"embedding": "rankme", "representation": "rankme_representation"}
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


# ---------------------------------------------------------------------------------------------
# Spearman rank correlation
# ---------------------------------------------------------------------------------------------


def spearman(x_n, y_n) -> float:
  """Spearman's rho of ``x_n`` and ``y_n`` (``scipy.stats.spearmanr``: average ranks for ties).

  Args:
    x_n: [N] finite values.
    y_n: [N] finite values.

  Returns:
    rho in [-1, 1], or NaN when it is undefined (N < 2, or all of x or all of y tied).
  """
  from scipy import stats

  x = np.asarray(x_n, dtype=np.float64)
  y = np.asarray(y_n, dtype=np.float64)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"spearman expects two [N] arrays, got shapes {x.shape} and {y.shape}")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError("spearman expects finite values")
  if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
    return math.nan  # scipy would warn and return NaN too.
  return float(np.clip(stats.spearmanr(x, y).statistic, -1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# The config and the grid
# ---------------------------------------------------------------------------------------------


def load_config(config: str, config_arg: str = ""):
  """``get_config(arg)`` of the experiment file ``config`` (``FILE[:ARG]``)."""
  path, _, arg = config.partition(":")
  arg = ",".join(a for a in (arg, config_arg) if a)
  flag = f"--config={config}" + (f" --config-arg={config_arg}" if config_arg else "")
  if not path.endswith(".py") or not os.path.isfile(path):
    raise ConfigError(f"--config={config}: no such experiment file {path!r} "
                      "(pass e.g. --config=experiments/barlow.py)")
  name = "_ssljax_select_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"--config={config}: {path} defines no get_config(arg)")
  try:
    return module.get_config(arg or None)
  except (ValueError, TypeError) as e:  # ConfigError, or parse_arg's int("abc").
    raise ConfigError(f"{flag}: {e}") from None


def _field(config, key: str, flag: str):
  """(parent ConfigDict, leaf name) of the dotted ``key``; ConfigError naming ``flag`` if absent."""
  import ml_collections as mlc

  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, mlc.ConfigDict) or part not in node:
      where = ".".join(parts[:i]) or "the config"
      names = sorted(node.keys()) if isinstance(node, mlc.ConfigDict) else []
      close = difflib.get_close_matches(part, names, n=1)
      hint = f"did you mean {'.'.join(parts[:i] + close[:1])!r}?" if close else (
          f"{where} has {names}" if names else f"{where} is not a group of fields")
      raise ConfigError(f"{flag}: the config has no field {key!r}; {hint}")
    if i < len(parts) - 1:
      node = node[part]
  if isinstance(node[parts[-1]], mlc.ConfigDict):
    raise ConfigError(f"{flag}: {key!r} is a group of fields {sorted(node[parts[-1]].keys())}; "
                      "name one of them")
  return node, parts[-1]


def parse_value(text: str, kind: type, *, flag: str) -> Any:
  """``text`` as a value of type ``kind`` (the field's type); ConfigError naming ``flag``."""
  text = text.strip()
  try:
    if kind is bool:
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError("expected True or False")
      return text.lower() in _TRUE
    if kind is int:
      return int(text)
    if kind is float:
      value = float(text)
      if not math.isfinite(value):
        raise ValueError("expected a finite number")
      return value
    if kind in (tuple, list):
      value = ast.literal_eval(text)
      return tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if kind is str:
      return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text
    return ast.literal_eval(text)  # A field without a declared type: a Python literal.
  except (ValueError, SyntaxError, TypeError) as e:
    raise ConfigError(f"{flag}: cannot read {text!r} as {kind.__name__} ({e})") from None


def split_values(text: str) -> list[str]:
  """Splits ``'0.1,(2,3),x'`` at the commas outside brackets: ``['0.1', '(2,3)', 'x']``."""
  parts, depth, start = [], 0, 0
  for i, ch in enumerate(text):
    depth += ch in "([{"
    depth -= ch in ")]}"
    if ch == "," and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  parts.append(text[start:])
  return [p.strip() for p in parts]


def _set(config, key: str, text: str, flag: str) -> Any:
  """Parses ``text`` for field ``key`` and stores it; returns the parsed value."""
  parent, name = _field(config, key, flag)
  value = parse_value(text, parent.get_type(name), flag=flag)
  try:
    parent[name] = value
  except (TypeError, ValueError) as e:  # ConfigDict refuses a value of another type.
    raise ConfigError(f"{flag}: {' '.join(str(e).split())}") from None
  return value


def apply_overrides(config, overrides: list[str]) -> dict[str, Any]:
  """Sets each ``KEY=VALUE`` of ``--config-override``; returns ``{key: value}``."""
  done = {}
  for item in overrides:
    flag = f"--config-override={item}"
    key, eq, text = item.partition("=")
    if not eq or not key.strip():
      raise ConfigError(f"{flag}: expected KEY=VALUE, e.g. --config-override=total_epochs=20")
    done[key.strip()] = _set(config, key.strip(), text, flag)
  return done


def parse_grid(config, grids: list[str]) -> dict[str, list[Any]]:
  """``{key: [values]}`` from the ``--grid=KEY=V1,V2`` flags, typed by ``config``'s fields.

  ``config`` is left as it was (each value is type-checked on a copy).
  """
  if not grids:
    raise ConfigError("--grid: no grid given; pass e.g. --grid=barlow.lambd=0.001,0.005 "
                      "(repeat --grid for a product grid)")
  grid: dict[str, list[Any]] = {}
  probe = copy.deepcopy(config)
  for item in grids:
    flag = f"--grid={item}"
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or not key:
      raise ConfigError(f"{flag}: expected KEY=V1,V2,..., e.g. --grid=barlow.lambd=0.001,0.005")
    if key in grid:
      raise ConfigError(f"{flag}: {key!r} is already in another --grid; give its values once")
    texts = split_values(text)
    if not any(texts):
      raise ConfigError(f"{flag}: no values; list them after '=', separated by commas")
    if not all(texts):
      raise ConfigError(f"{flag}: an empty value (two commas in a row, or a trailing comma)")
    values = [_set(probe, key, t, flag) for t in texts]
    labels = [format_value(v) for v in values]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
      raise ConfigError(f"{flag}: value(s) {repeated} given more than once")
    grid[key] = values
  return grid


def format_value(value: Any) -> str:
  """A short text for a grid value (table cells and folder names)."""
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(format_value(v) for v in value) + ")"
  return repr(value) if isinstance(value, float) else str(value)


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
  """Every combination of the grid's values, the last key varying fastest."""
  return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(point: dict[str, Any]) -> str:
  """``'barlow.lambd=0.005,optim.lr=0.3'``: the point's label and (made safe) its folder name."""
  return ",".join(f"{k}={format_value(v)}" for k, v in point.items())


def folder_name(point: dict[str, Any]) -> str:
  name = point_name(point).replace("/", "_").replace(" ", "")
  if len(name) > 200:  # File names are limited to 255 bytes; keep them unique with a hash.
    name = name[:180] + "-" + hashlib.sha1(name.encode()).hexdigest()[:12]
  return name


def config_for(config, point: dict[str, Any]):
  """A copy of ``config`` with the point's values set."""
  c = copy.deepcopy(config)
  for key, value in point.items():
    parent, name = _field(c, key, f"--grid={key}")
    parent[name] = value
  return c


def _first_difference(a, b, prefix="") -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      if a.get(key, "<absent>") != b.get(key, "<absent>"):
        return _first_difference(a.get(key, "<absent>"), b.get(key, "<absent>"),
                                 f"{prefix}{key}.")
  return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"


def check_reusable(config, workdir: str) -> None:
  """ConfigError when ``workdir`` holds a run (finished or not) of a different config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  stored.pop("derived", None)
  current = json.loads(config.to_json_best_effort())
  if stored != current:
    differs = _first_difference(stored, current)
    raise ConfigError(f"{workdir} holds a run of another config ({differs}); pass --rerun to "
                      "train it again, or another --workdir")


# ---------------------------------------------------------------------------------------------
# Runs, the choice, the table
# ---------------------------------------------------------------------------------------------


def run_one(config, point: dict[str, Any], workdir: str, *, rerun: bool) -> dict:
  """Trains one grid point (or reads its finished results); returns its row."""
  name = point_name(point)
  results = compare.train_or_reuse(name, workdir, lambda: config, rerun=rerun, what=name)
  keys = ("rankme", "rankme_representation", "linear_top1", "knn_top1", "wall_time_s")
  return {"name": name, "point": point, "workdir": workdir, **{k: results.get(k) for k in keys}}


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value)


def choose(rows: list[dict], rankme_key: str = "rankme") -> dict[str, Any]:
  """The RankMe pick, the linear-probe oracle and their Spearman correlation over ``rows``.

  Returns ``{"chosen", "best_linear"}`` (row names, None when no row has the score; the first row
  wins a tie) and ``{"spearman", "spearman_n"}`` over the rows that have both scores (NaN -> None
  when undefined).
  """
  def best(key):
    scored = [r for r in rows if "error" not in r and _finite(r.get(key))]
    return max(scored, key=lambda r: r[key])["name"] if scored else None  # max keeps the first.

  both = [r for r in rows if "error" not in r and _finite(r.get(rankme_key))
          and _finite(r.get("linear_top1"))]
  rho = spearman([r[rankme_key] for r in both], [r["linear_top1"] for r in both])
  return {"chosen": best(rankme_key), "best_linear": best("linear_top1"),
          "spearman": None if math.isnan(rho) else rho, "spearman_n": len(both)}


def _cell(key: str, value) -> str:
  if key.startswith("rankme"):
    return "—" if not _finite(value) else f"{value:.2f}"  # Neighbouring grid points differ little.
  return compare._format(key, value)


def report(rows: list[dict], grid: dict[str, list[Any]], choice: dict[str, Any],
           rankme_key: str = "rankme") -> str:
  """The Markdown table of ``rows`` plus the pick, the oracle and the Spearman line."""
  rankme_title = "RankMe" if rankme_key == "rankme" else "RankMe (representation)"
  columns = ((rankme_key, rankme_title), ("linear_top1", "linear top-1"),
             ("knn_top1", "kNN top-1"), ("wall_time_s", "wall time"))
  lines = ["| " + " | ".join([*grid, *(t for _, t in columns), "pick"]) + " |",
           "|" + "---|" * len(grid) + "---:|" * len(columns) + "---|"]
  for row in rows:
    keys = [format_value(row["point"][k]) for k in grid]
    if "error" in row:
      cells = [f"failed: {row['error']}"] + [""] * len(columns)
    else:
      marks = [label for label, name in (("RankMe", choice["chosen"]),
                                         ("linear (oracle)", choice["best_linear"]))
               if name == row["name"]]
      cells = [_cell(k, row.get(k)) for k, _ in columns] + [", ".join(marks)]
    lines.append("| " + " | ".join(keys + cells) + " |")
  by_name = {r["name"]: r for r in rows}
  lines.append("")
  if choice["chosen"] is None:
    lines.append(f"No run has a {rankme_title}: nothing to pick.")
  else:
    pick = by_name[choice["chosen"]]
    score, top1 = _cell(rankme_key, pick[rankme_key]), _cell("linear_top1", pick.get("linear_top1"))
    lines.append(f"RankMe picks **{pick['name']}** ({rankme_title} {score}, linear top-1 {top1}; "
                 "no labels used).")
  if choice["best_linear"] is not None:
    oracle = by_name[choice["best_linear"]]
    same = " (the same config)" if oracle["name"] == choice["chosen"] else ""
    gap = ""
    if not same and choice["chosen"] is not None and _finite(by_name[choice["chosen"]].get(
        "linear_top1")):
      points_lost = 100 * (oracle["linear_top1"] - by_name[choice["chosen"]]["linear_top1"])
      gap = f"; RankMe's pick is {points_lost:.1f} points below it"
    lines.append(f"Best by linear top-1 (uses labels): **{oracle['name']}** "
                 f"({_cell('linear_top1', oracle['linear_top1'])}){same}{gap}.")
  rho = choice["spearman"]
  lines.append(f"Spearman rank correlation of {rankme_title} and linear top-1 over "
               f"{choice['spearman_n']} runs: " + ("undefined (fewer than 2 runs, or all tied)"
                                                   if rho is None else f"{rho:.3f}") + ".")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ssljax.tools.select", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True,
                      help="experiment file, optionally with its variant: FILE[:ARG]")
  parser.add_argument("--config-arg", default="",
                      help="variant passed to get_config, e.g. 'runlocal' (joined to FILE:ARG)")
  parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                      help="a config field and its values; repeat for a product grid")
  parser.add_argument("--config-override", action="append", default=[], metavar="KEY=VALUE",
                      help="a field set in every run, e.g. total_epochs=20 (repeatable)")
  parser.add_argument("--rankme", choices=sorted(RANKME_KEYS), default="embedding",
                      help="RankMe of the projector embedding (default, as the paper) or of the "
                           "backbone representation")
  parser.add_argument("--workdir", required=True, help="folder for one sub-folder per grid point")
  parser.add_argument("--rerun", action="store_true", help="retrain points that have results")
  args = parser.parse_args(argv)
  rankme_key = RANKME_KEYS[args.rankme]

  try:  # Every input mistake surfaces here, before anything trains.
    config = load_config(args.config, args.config_arg)
    overrides = apply_overrides(config, args.config_override)
    grid = parse_grid(config, args.grid)
    both = sorted(set(grid) & set(overrides))
    if both:
      raise ConfigError(f"--grid and --config-override both set {both}; keep one")
    todo = [(p, config_for(config, p), os.path.join(args.workdir, folder_name(p)))
            for p in points(grid)]
    if not args.rerun:
      for _, c, workdir in todo:
        check_reusable(c, workdir)
  except UserError as e:
    print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
    return 2

  rows = []
  start = time.perf_counter()
  for point, c, workdir in todo:
    try:
      rows.append(run_one(c, point, workdir, rerun=args.rerun))
    except UserError as e:  # One point's bad value (e.g. a diverging LR) keeps the others.
      print(f"[{point_name(point)}] error: {e}", file=sys.stderr, flush=True)
      rows.append({"name": point_name(point), "point": point, "workdir": workdir,
                   "error": str(e)})
  choice = choose(rows, rankme_key)
  summary = {"config": args.config, "config_arg": args.config_arg, "overrides": overrides,
             "grid": grid, "rankme": rankme_key, "runs": rows, **choice}
  return compare.write_report(args.workdir, "select", report(rows, grid, choice, rankme_key),
                              summary, rows=rows, what="runs", start=start)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from ssljax import configure_cpu

  configure_cpu()  # As main.py: XLA:CPU flags before JAX creates its devices.
  sys.exit(main())
