"""Tables end to end through ``python main.py``'s command (in process): your own CSV trains and
reports its baselines; a table without a target, a regression target; bad input is one line.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from ssljax.tools import main as command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCARF = os.path.join(ROOT, "experiments", "scarf.py") + ":runlocal"


def _csv(path, rows=80, *, bad_row=None, target=True):
  """A table whose target ``y`` follows ``a`` and the ``plan`` category; ``b`` is noise."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=rows)
  plan = rng.choice(["basic", "pro", "team"], size=rows)
  frame = pd.DataFrame({"a": a, "b": rng.normal(size=rows), "plan": plan,
                        "y": np.where(a + (plan == "pro") > 0.3, "yes", "no")})
  if not target:
    frame = frame.drop(columns="y")
  if bad_row is not None:
    frame["b"] = frame["b"].astype(object)
    frame.loc[bad_row, "b"] = "n/a?"
  frame.to_csv(path, index=False)
  return str(path)


def _run(capsys, workdir, *flags, config=SCARF):
  argv = ["main.py", f"--config={config}", f"--workdir={workdir}", *flags]
  capsys.readouterr()
  try:
    command.run(argv)
    code = 0
  except SystemExit as e:
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def _csv_flags(path, target="y"):
  return ["--config.input.data.name=csv", f"--config.input.data.path={path}",
          f"--config.input.data.target={target}", "--config.input.data.categorical=('plan',)"]


def test_own_csv_trains_and_reports_baselines(capsys, tmp_path):
  path = _csv(tmp_path / "t.csv")
  code, out, err = _run(capsys, tmp_path / "run", *_csv_flags(path), "--config.eval.baselines=True")
  assert code in (0, None), err[-2000:]
  results = json.load(open(tmp_path / "run" / "results.json"))
  for key in ("linear_top1", "knn_top1", "raw_linear_top1", "raw_knn_top1", "gbdt_top1", "rankme"):
    assert 0.0 <= results[key] <= (1.0 if key != "rankme" else 1e9), (key, results)
  config = json.load(open(tmp_path / "run" / "config.json"))
  assert config["input"]["data"]["categorical"] == ["plan"]


def test_table_without_target_reports_collapse_metrics_only(capsys, tmp_path):
  path = _csv(tmp_path / "t.csv", target=False)
  code, out, err = _run(capsys, tmp_path / "run", *_csv_flags(path, target=""))
  assert code in (0, None), err[-2000:]
  results = json.load(open(tmp_path / "run" / "results.json"))
  assert "rankme" in results and not any(k.startswith(("knn", "linear", "raw", "gbdt"))
                                         for k in results)
  assert "note: " in out and "has no labels here" in out


def test_regression_target_gets_the_ridge_probe(capsys, tmp_path):
  code, out, err = _run(capsys, tmp_path / "run", "--config.input.data.name=sklearn:diabetes",
                        "--config.eval.baselines=True")
  assert code in (0, None), err[-2000:]
  results = json.load(open(tmp_path / "run" / "results.json"))
  assert {"ridge_r2", "ridge_rmse", "raw_ridge_r2", "gbdt_r2", "gbdt_rmse"} <= set(results)
  assert "knn_top1" not in results and "linear_top1" not in results
  # Ridge on the raw diabetes columns explains about half the variance (published sklearn-style
  # linear fits reach R^2 ~0.5); a broken target scaling or probe gives ~0 or negative.
  assert results["raw_ridge_r2"] > 0.3, results


@pytest.mark.parametrize("flags, needles", [
    (["--config.input.data.target=churn"], ["input.data.target='churn'", "no such column"]),
    (["--config.input.data.name=openml:1590"], ["not cached", "download=True"]),
    (["--config.eval.data.colour=red"], ["colour"]),
    # Evaluators by name (eval.evals): an unknown one, and ones the labels cannot feed.
    (["--config.eval.evals=retrieval"], ["eval.evals", "no evaluator 'retrieval'",
                                         "classification"]),
    (["--config.eval.evals=regression"], ["eval.evals", "'regression'", "classification labels"]),
    (["--config.eval.evals=ranking"], ["eval.evals", "'ranking'", "classification labels"]),
])
def test_bad_table_input_is_one_line_and_writes_nothing(capsys, tmp_path, flags, needles):
  path = _csv(tmp_path / "t.csv")
  workdir = tmp_path / "run"
  code, _, err = _run(capsys, workdir, *_csv_flags(path), *flags,
                      "--config.input.data.data_dir=" + str(tmp_path / "cache"))
  assert code == 2, err[-2000:]
  line = [l for l in err.strip().splitlines() if l.strip()][-1]
  assert line.startswith("error: ") and all(n in line for n in needles), err[-2000:]
  assert not workdir.exists()


def test_non_numeric_value_names_column_and_row(capsys, tmp_path):
  path = _csv(tmp_path / "t.csv", bad_row=6)
  code, _, err = _run(capsys, tmp_path / "run", *_csv_flags(path))
  assert code == 2
  line = [l for l in err.strip().splitlines() if l.strip()][-1]
  assert "column 'b' row 7" in line and "n/a?" in line, line
  assert not (tmp_path / "run").exists()


def test_image_method_on_a_table_is_one_line(capsys, tmp_path):
  simclr = os.path.join(ROOT, "experiments", "simclr.py") + ":runlocal"
  code, _, err = _run(capsys, tmp_path / "run", "--config.input.data.name=sklearn:wine",
                      config=simclr)
  assert code == 2
  line = [l for l in err.strip().splitlines() if l.strip()][-1]
  assert "makes image views" in line and "table data" in line, line
  assert not (tmp_path / "run").exists()
