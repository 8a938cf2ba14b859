"""One evaluation runs the network once over the training data's train split."""

from experiments import simclr
from ssljax import train
from ssljax.evals import evaluator as E


def test_rankme_and_the_probes_share_one_extraction_of_the_train_split(monkeypatch):
  cfg = simclr.get_config("runlocal")
  run = train.build(cfg)
  ev = E.Evaluator(run.config, run.method, run.mesh, run.info)
  state = train.create_state(run)
  calls = []
  extract = ev._extract
  monkeypatch.setattr(ev, "_extract", lambda *a: calls.append(a[2]) or extract(*a))
  shared = ev.run(state)
  assert calls == [cfg.input.data.train_split, cfg.input.data.eval_split]
  # RankMe alone (as during training) extracts its own rows and gives the same numbers.
  ev._cache = None
  alone = ev.rankme(state)
  assert calls[-1] == cfg.input.data.train_split and len(calls) == 3
  for key, value in alone.items():
    assert shared[key] == value, key
