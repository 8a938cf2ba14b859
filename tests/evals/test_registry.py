"""Evaluators by config (``eval.evals``, ssljax.evals.evaluator): which run, and adding one."""

import json
import os

import pytest

from ssljax.errors import ConfigError
from ssljax.evals import evaluator as ev_lib
from ssljax.tools import main as command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCARF = os.path.join(ROOT, "experiments", "scarf.py") + ":runlocal"


@pytest.mark.parametrize("names, task, expected", [
    ("auto", "classification", ("classification",)),
    (("auto",), "regression", ("regression",)),
    ("", "regression", ("regression",)),
    ("auto", None, ()),  # No labels: RankMe and the collapse metrics only.
    ("classification", "classification", ("classification",)),
    (("regression",), "regression", ("regression",)),
])
def test_auto_follows_the_labels_and_names_are_kept(names, task, expected):
  assert ev_lib.resolve_evals(names, task, where="d") == expected


def test_names_the_labels_cannot_feed_are_config_errors():
  with pytest.raises(ConfigError, match=r"no evaluator 'knn'; choose from \['auto', "):
    ev_lib.resolve_evals("knn", "classification", where="d")
  with pytest.raises(ConfigError, match=r"'classification' evaluates .* but the probe data 'd' "
                                        r"has no labels"):
    ev_lib.resolve_evals("classification", None, where="d")
  with pytest.raises(ConfigError, match=r"has regression labels"):
    ev_lib.resolve_evals("auto,classification", "regression", where="d")
  with pytest.raises(ValueError, match="reserved"):
    ev_lib.register_evaluator("auto", lambda ev, state: {}, tasks=("classification",))


def test_a_registered_evaluator_runs_beside_the_builtin_one(tmp_path, capsys):
  """The interface the ranking evaluator will use: ``fn(ev, state)`` reading ``probe_splits``."""
  seen = {}

  def rows(ev, state):
    train, test = ev.probe_splits(state)
    seen["step"] = int(state.step)
    return {"probe_train_rows": len(train["label"]), "probe_test_rows": len(test["label"])}

  ev_lib.register_evaluator("rows", rows, tasks=("classification",))
  try:
    workdir = tmp_path / "run"
    capsys.readouterr()
    command.run(["main.py", f"--config={SCARF}", f"--workdir={workdir}",
                 "--config.input.data.name=sklearn:wine", "--config.eval.at_init=False",
                 "--config.eval.evals=classification,rows"])
  finally:
    del ev_lib.EVALUATORS["rows"]
  results = json.load(open(workdir / "results.json"))
  # scikit-learn's wine: 178 rows, the tables' 80/20 hold-out -> 142 / 36.
  assert (results["probe_train_rows"], results["probe_test_rows"]) == (142, 36)
  assert "knn_top1" in results and "linear_top1" in results
  assert seen["step"] == results["step"]
