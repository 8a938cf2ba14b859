"""python -m ssljax.tools.select: Spearman, the grid flags, the pick, the table, reuse, errors."""

import json
import math
import os

import numpy as np
import pytest

from experiments import barlow
from ssljax.tools import select

# ---------------------------------------------------------------------------------------------
# Spearman: reference values worked out by hand from the definition (Pearson correlation of the
# ranks, tied values sharing their average rank).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, y, expected", [
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 4 / 120.
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),
    # Ties in y: ranks y = [1, 2, 3.5, 5, 3.5]; centred ranks x = [-2, -1, 0, 1, 2],
    # y = [-2, -1, .5, 2, .5]; sum xy = 8, sum x^2 = 10, sum y^2 = 9.5 -> 8 / sqrt(95).
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7], 8 / math.sqrt(95)),
    # Ties in both: ranks x = [1.5, 1.5, 3, 4], y = [1, 2.5, 2.5, 4]; centred
    # x = [-1, -1, .5, 1.5], y = [-1.5, 0, 0, 1.5]; 3.75 / sqrt(4.5 * 4.5) = 5 / 6.
    ([1, 1, 2, 3], [1, 2, 2, 3], 5 / 6),
    # RankMe-like values against accuracies: ranks [1, 3, 2] and [2, 1, 3], sum d^2 = 6.
    ([10.0, 14.0, 12.0], [0.90, 0.85, 0.95], -0.5),
])
def test_spearman_hand_computed(x, y, expected):
  assert select.spearman(x, y) == pytest.approx(expected, abs=1e-12)
  assert select.spearman(y, x) == pytest.approx(expected, abs=1e-12)  # Symmetric.


def test_spearman_is_a_rank_statistic():
  x = np.array([0.3, -1.0, 2.5, 0.7, 1.1])
  assert select.spearman(x, np.exp(3 * x)) == pytest.approx(1.0)  # Any increasing map: 1.
  assert select.spearman(x, -x ** 3) == pytest.approx(-1.0)
  assert math.isnan(select.spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))  # All tied: undefined.
  assert math.isnan(select.spearman([1.0], [2.0]))
  with pytest.raises(ValueError):
    select.spearman([1.0, 2.0], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


def test_grid_is_a_typed_product():
  config = barlow.get_config("runlocal")
  grid = select.parse_grid(config, ["barlow.lambd=0.001,5e-3", "total_steps=2,3",
                                    "projector.hidden_dims=(16,16),[8]"])
  assert grid == {"barlow.lambd": [0.001, 0.005], "total_steps": [2, 3],
                  "projector.hidden_dims": [(16, 16), (8,)]}
  assert isinstance(grid["total_steps"][0], int)
  assert config.total_steps == 6  # Parsing leaves the config as it was.
  pts = select.points(grid)
  assert len(pts) == 8 and pts[0] == {"barlow.lambd": 0.001, "total_steps": 2,
                                      "projector.hidden_dims": (16, 16)}
  assert pts[1]["projector.hidden_dims"] == (8,)  # The last key varies fastest.
  assert select.folder_name(pts[0]) == (
      "barlow.lambd=0.001,total_steps=2,projector.hidden_dims=(16,16)")
  c = select.config_for(config, pts[-1])
  assert (c.barlow.lambd, c.total_steps, c.projector.hidden_dims) == (0.005, 3, (8,))
  assert config.barlow.lambd == 0.0051  # config_for works on a copy.


def _main(tmp_path, *flags, config="experiments/barlow.py:runlocal"):
  return select.main([f"--config={config}", f"--workdir={tmp_path}", *flags])


@pytest.mark.parametrize("flags, needles", [
    ((), ["--grid", "no grid"]),
    (("--grid=barlow.lambd=",), ["--grid=barlow.lambd=", "no values"]),
    (("--grid=barlow.lamda=0.1",), ["--grid=barlow.lamda=0.1", "no field", "barlow.lambd"]),
    (("--grid=barlow.lambd=abc",), ["--grid=barlow.lambd=abc", "'abc'", "float"]),
    (("--grid=total_steps=1.5",), ["--grid=total_steps=1.5", "int"]),
    (("--grid=barlow.lambd=0.1,0.1",), ["--grid=barlow.lambd=0.1,0.1", "more than once"]),
    (("--grid=barlow=1",), ["--grid=barlow=1", "group of fields", "lambd"]),
    (("--grid=barlow.lambd=1", "--grid=barlow.lambd=2"), ["--grid=barlow.lambd=2", "already"]),
    (("--grid=barlow.lambd=1", "--config-override=total_epochs=x"),
     ["--config-override=total_epochs=x", "float"]),
    (("--grid=barlow.lambd=1", "--config-arg=dataa=x"), ["--config-arg=dataa=x", "'dataa'"]),
])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, flags, needles):
  assert _main(tmp_path, *flags) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  for needle in needles:
    assert needle in err[0], err[0]
  assert not os.listdir(tmp_path)  # Nothing trained, nothing written.


def test_missing_config_file(tmp_path, capsys):
  assert _main(tmp_path, "--grid=seed=1", config="experiments/nosuch.py") == 2
  assert "--config=experiments/nosuch.py" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The pick, the oracle and the table (finished runs are reused, so nothing trains here)
# ---------------------------------------------------------------------------------------------


def test_picks_the_largest_rankme_and_reports_the_oracle(tmp_path, capsys):
  runs = {"0.001": (10.0, 0.90), "0.005": (14.0, 0.85), "0.02": (12.0, 0.95)}
  for value, (rankme, top1) in runs.items():
    (tmp_path / f"barlow.lambd={value}").mkdir()
    (tmp_path / f"barlow.lambd={value}" / "results.json").write_text(json.dumps(
        {"rankme": rankme, "rankme_representation": 1.0, "linear_top1": top1, "knn_top1": 0.5,
         "wall_time_s": 65.0}))
  assert _main(tmp_path, "--grid=barlow.lambd=0.001,0.005,0.02") == 0
  out = capsys.readouterr().out
  assert "| barlow.lambd | RankMe | linear top-1 | kNN top-1 | wall time | pick |" in out
  assert "| 0.001 | 10.00 | 90.0% | 50.0% | 1m05s |  |" in out
  assert "| 0.005 | 14.00 | 85.0% | 50.0% | 1m05s | RankMe |" in out
  assert "| 0.02 | 12.00 | 95.0% | 50.0% | 1m05s | linear (oracle) |" in out
  assert "RankMe picks **barlow.lambd=0.005**" in out
  assert "**barlow.lambd=0.02** (95.0%); RankMe's pick is 10.0 points below it" in out
  # Ranks of RankMe [1, 3, 2], of linear top-1 [2, 1, 3]: rho = 1 - 6 * 6 / 24 = -0.5.
  assert "over 3 runs: -0.500." in out
  assert (tmp_path / "select.md").read_text().strip() in out
  summary = json.loads((tmp_path / "select.json").read_text())
  assert summary["chosen"] == "barlow.lambd=0.005"
  assert summary["best_linear"] == "barlow.lambd=0.02"
  assert summary["spearman"] == pytest.approx(-0.5) and summary["spearman_n"] == 3
  assert [r["point"]["barlow.lambd"] for r in summary["runs"]] == [0.001, 0.005, 0.02]

  # The backbone's RankMe instead (all tied here): the first run wins, rho is undefined.
  assert _main(tmp_path, "--grid=barlow.lambd=0.001,0.005,0.02", "--rankme=representation") == 0
  out = capsys.readouterr().out
  assert "RankMe picks **barlow.lambd=0.001** (RankMe (representation) 1.00" in out
  assert "undefined" in out


def test_choose_skips_failed_and_non_finite_runs():
  rows = [{"name": "a", "rankme": float("nan"), "linear_top1": 0.99},
          {"name": "b", "error": "diverged"},
          {"name": "c", "rankme": 3.0, "linear_top1": 0.5},
          {"name": "d", "rankme": 2.0, "linear_top1": 0.7}]
  choice = select.choose(rows)
  assert choice["chosen"] == "c" and choice["best_linear"] == "a"
  assert choice["spearman"] == pytest.approx(-1.0) and choice["spearman_n"] == 2
  assert select.choose([{"name": "b", "error": "x"}]) == {
      "chosen": None, "best_linear": None, "spearman": None, "spearman_n": 0}


# ---------------------------------------------------------------------------------------------
# End to end: a 2-point grid of 2-step runlocal runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trains_each_point_then_reuses_it(tmp_path, capsys, digits_dir):
  # A grid over the seed: both points compile to the same program, so the second one reuses the
  # first one's compilation (conftest's persistent cache) and the test stays fast.
  flags = ["--grid=seed=0,1", "--config-override=total_steps=2",
           f"--config-override=input.data.data_dir={digits_dir}"]
  assert _main(tmp_path, *flags) == 0
  out = capsys.readouterr().out
  results = {}
  for seed in (0, 1):
    run = tmp_path / f"seed={seed}"
    results[seed] = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == seed and config["total_steps"] == 2 and results[seed]["step"] == 2
  summary = json.loads((tmp_path / "select.json").read_text())
  rankmes = [results[s]["rankme"] for s in (0, 1)]
  tops = [results[s]["linear_top1"] for s in (0, 1)]
  assert all(1.0 <= r <= 32.0 for r in rankmes), rankmes  # Projector width 32 under runlocal.
  assert summary["chosen"] == f"seed={int(np.argmax(rankmes))}"
  assert summary["best_linear"] == f"seed={int(np.argmax(tops))}"
  rho = select.spearman(rankmes, tops)
  assert summary["spearman"] == (None if math.isnan(rho) else pytest.approx(rho))
  assert summary["runs"][0]["rankme"] == results[0]["rankme"]
  assert f"| 0 | {rankmes[0]:.2f} | {100 * tops[0]:.1f}% |" in out
  assert (tmp_path / "select.md").read_text().strip() in out

  # Again: both points are read back, not retrained, and the summary is the same.
  assert _main(tmp_path, *flags) == 0
  assert capsys.readouterr().out.count("reusing") == 2
  assert json.loads((tmp_path / "select.json").read_text()) == summary

  # Another run length with the same folders is refused before anything trains.
  flags[1] = "--config-override=total_steps=3"
  assert _main(tmp_path, *flags) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "seed=0" in err[0] and "total_steps: 2 there, 3 now" in err[0], err
