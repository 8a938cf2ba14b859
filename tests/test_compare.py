"""python -m ssljax.tools.compare: method discovery, the table, reuse of finished runs, errors."""

import json
import os

import pytest

from ssljax.tools import compare


def test_discovers_every_method_with_an_experiment_file():
  assert {"barlow", "simclr", "byol", "mocov3", "vicreg", "simsiam", "dino",
          "mae"} <= set(compare.experiment_methods())


def test_reuses_finished_runs_and_writes_the_table(tmp_path, capsys):
  for name, top1 in (("simclr", 0.9), ("byol", 0.8)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(
        {"linear_top1": top1, "knn_top1": 0.75, "rankme": 12.34, "wall_time_s": 125.4}))
  assert compare.main(["--methods=simclr,byol", f"--workdir={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert "| simclr | 90.0% | 75.0% | 12.3 | 2m05s |" in out
  assert "| byol | 80.0% |" in out
  assert (tmp_path / "compare.md").read_text().strip() in out
  rows = json.loads((tmp_path / "compare.json").read_text())
  assert [r["method"] for r in rows] == ["simclr", "byol"]


def test_unknown_method_is_one_clear_line(tmp_path, capsys):
  assert compare.main(["--methods=simclr,nosuch", f"--workdir={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "nosuch" in err[0] and "simclr" in err[0]


def test_variants_get_their_own_folder_and_classifier_accuracy_its_column(tmp_path, capsys):
  for folder, extra in (("simclr", {}), ("barlow-data-digits", {"classifier_top1": 0.5})):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "results.json").write_text(json.dumps(
        {"linear_top1": 0.9, "knn_top1": 0.75, "rankme": 12.34, "wall_time_s": 65, **extra}))
  assert compare.main(["--methods=simclr,barlow:data=digits", f"--workdir={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert "| method | linear top-1 | kNN top-1 | RankMe | classifier top-1 | wall time |" in out
  assert "| simclr | 90.0% | 75.0% | 12.3 | — | 1m05s |" in out
  assert "| barlow:data=digits | 90.0% | 75.0% | 12.3 | 50.0% | 1m05s |" in out


def test_image_sets_get_one_table_each_from_the_methods_data_recipes(tmp_path, capsys,
                                                                     monkeypatch):
  # --data=<image set>: each method's data=<set> recipe, in <workdir>/<set>/<method>.
  built = []
  real = compare.train_or_reuse

  def reuse_only(label, workdir, build_config, **kw):
    built.append((build_config().input.data.name, build_config().input.image_size))
    return real(label, workdir, build_config, **kw)

  monkeypatch.setattr(compare, "train_or_reuse", reuse_only)
  for data, top1 in (("mnist5k", 0.9), ("fashion_mnist_local", 0.7)):
    for method in ("simclr", "byol"):
      (tmp_path / data / method).mkdir(parents=True)
      (tmp_path / data / method / "results.json").write_text(json.dumps(
          {"linear_top1": top1, "knn_top1": 0.5, "rankme": 3.0, "wall_time_s": 61}))
  assert compare.main(["--methods=simclr,byol", "--data=mnist5k,fashion_mnist_local",
                       f"--workdir={tmp_path}"]) == 0
  assert built == [("mnist5k", 28)] * 2 + [("fashion_mnist_local", 28)] * 2
  assert "| byol | 90.0% | 50.0% | 3.0 | 1m01s |" in (tmp_path / "compare_mnist5k.md").read_text()
  assert "| simclr | 70.0% |" in (tmp_path / "compare_fashion_mnist_local.md").read_text()
  capsys.readouterr()
  assert compare.main(["--methods=simclr", "--data=mnist5k,ucr:GunPoint",
                       f"--workdir={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "ucr:GunPoint" in err[0] and "fashion_mnist_local" in err[0]


def test_image_seeds_reuse_seed_zeros_folder_and_show_mean_and_spread(tmp_path, monkeypatch):
  # --seeds on image sets: seed 0 in the folder a one-seed table uses, seed N in seed<N>/; each
  # cell the mean ± population std over the seeds, here of 90% and 80% linear: 85.0 ± 5.0.
  seeds_built = []
  real = compare.train_or_reuse

  def reuse_only(label, workdir, build_config, **kw):
    seeds_built.append((os.path.relpath(workdir, tmp_path), build_config().seed))
    return real(label, workdir, build_config, **kw)

  monkeypatch.setattr(compare, "train_or_reuse", reuse_only)
  for folder, top1, rankme in (("mnist5k/simclr", 0.9, 30.0), ("mnist5k/seed1/simclr", 0.8, 20.0)):
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / "results.json").write_text(json.dumps(
        {"linear_top1": top1, "knn_top1": 0.5, "rankme": rankme, "wall_time_s": 60}))
  assert compare.main(["--methods=simclr", "--data=mnist5k", "--seeds=0,1",
                       f"--workdir={tmp_path}"]) == 0
  assert seeds_built == [("mnist5k/simclr", 0), ("mnist5k/seed1/simclr", 1)]
  text = (tmp_path / "compare_mnist5k.md").read_text()
  assert "| simclr | 85.0% ± 5.0 | 50.0% ± 0.0 | 25.0 ± 5.0 | 1m00s |" in text, text
  assert "seeds [0, 1]" in text
  (row,) = json.loads((tmp_path / "compare_mnist5k.json").read_text())
  assert [r["linear_top1"] for r in row["per_seed"]] == [0.9, 0.8]
  # One seed: the table as without --seeds.
  assert compare.main(["--methods=simclr", "--data=mnist5k", f"--workdir={tmp_path}"]) == 0
  one = (tmp_path / "compare_mnist5k.md").read_text()
  assert "| simclr | 90.0% | 50.0% | 30.0 | 1m00s |" in one and "±" not in one


def test_recommenders_get_the_ranking_columns(tmp_path, capsys):
  for name, ndcg in (("bpr", 0.1343), ("lightgcn", 0.1551)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(
        {"best_valid_recall@10": 0.1, "best_valid_ndcg@10": ndcg, "best_test_recall@10": 0.09,
         "best_test_ndcg@10": 0.12, "pop_test_recall@10": 0.0723, "pop_test_ndcg@10": 0.115,
         "wall_time_s": 77}))
  assert compare.main(["--methods=bpr,lightgcn", f"--workdir={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert ("| method | valid Recall@10 | valid NDCG@10 | test Recall@10 | test NDCG@10 | "
          "popularity test Recall@10 | popularity test NDCG@10 | wall time |") in out
  assert "| lightgcn | 0.1000 | 0.1551 | 0.0900 | 0.1200 | 0.0723 | 0.1150 | 1m17s |" in out


def test_interaction_sets_get_one_row_per_method_with_seed_spread(tmp_path, capsys):
  """--data naming interaction sets: finished runs (written here) are read per set, method and
  seed; the table shows the mean ± std over seeds, the best epoch, the time per epoch, the
  popularity row and, on lastfm only, the published numbers."""
  for data in ("lastfm", "ml-latest-small"):
    for seed, ndcg in ((0, 0.17), (1, 0.19)):
      folder = tmp_path / data / "bpr" / f"seed{seed}"
      folder.mkdir(parents=True)
      folder.joinpath("results.json").write_text(json.dumps(
          {"best_valid_recall@10": 0.1, "best_valid_ndcg@10": ndcg, "best_test_recall@10": 0.2,
           "best_test_ndcg@10": ndcg + 0.01, "best_step": 360, "steps_per_epoch": 36,
           "train_time_per_epoch_s": 0.5, "pop_valid_ndcg@10": 0.06, "pop_test_ndcg@10": 0.065,
           "pop_valid_recall@10": 0.07, "pop_test_recall@10": 0.071}))
  code = compare.main(["--methods=bpr", "--data=lastfm=/nowhere,ml-latest-small",
                       "--seeds=0,1", f"--workdir={tmp_path}"])
  out = capsys.readouterr().out
  assert code == 0
  # NDCG 0.17 and 0.19: mean 0.18, population std 0.01; best step 360 of 36 per epoch = 10.
  assert ("| lastfm | bpr | 0.1000 | 0.1800 ± 0.0100 | 0.2000 | 0.1900 ± 0.0100 | 10 | 0.50 | "
          "0.1761 / 0.1674 |") in out
  assert "| ml-latest-small | bpr |" in out and out.count("0.1761 / 0.1674") == 1
  assert "| lastfm | popularity | 0.0700 | 0.0600 | 0.0710 | 0.0650 |" in out
  assert (tmp_path / "compare_rec.md").exists()


def test_config_overrides_reach_every_run_typed_as_their_field(tmp_path, monkeypatch):
  # --config-override=KEY=VALUE sets the field after the variant is built, parsed as the field's
  # type ("12" for an int field is 12, not "12"), in every method's run.
  from ssljax import train

  trained = {}

  def fake_train(config, workdir):
    trained[os.path.basename(workdir)] = (config.input.data.path, config.total_steps,
                                          config.input.data.name)
    return {"linear_top1": 0.5, "knn_top1": 0.5, "rankme": 2.0, "wall_time_s": 1}

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  assert compare.main(["--methods=simclr,byol", "--data=fashion_mnist_local",
                       "--config-override=input.data.path=/data/fm",
                       "--config-override=total_steps=12", f"--workdir={tmp_path}"]) == 0
  assert trained == {m: ("/data/fm", 12, "fashion_mnist_local") for m in ("simclr", "byol")}


def test_a_bad_override_stops_before_training_with_one_line(tmp_path, capsys, monkeypatch):
  from ssljax import train

  monkeypatch.setattr(train, "train_and_evaluate", lambda *a: pytest.fail("trained"))
  for flag, words in (("input.data.pth=/x", ("input.data.pth", "input.data.path")),
                      ("total_steps=many", ("total_steps", "'many'"))):
    assert compare.main(["--methods=simclr", f"--config-override={flag}",
                         f"--workdir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
  assert not (tmp_path / "out").exists()


def test_a_finished_run_without_the_overridden_value_is_not_reused(tmp_path, capsys):
  folder = tmp_path / "simclr"
  folder.mkdir()
  (folder / "results.json").write_text(json.dumps({"linear_top1": 0.9, "wall_time_s": 1}))
  (folder / "config.json").write_text(json.dumps({"total_steps": 400}))
  assert compare.main(["--methods=simclr", "--config-override=total_steps=12",
                       f"--workdir={tmp_path}"]) == 1
  err = capsys.readouterr().err
  assert "total_steps=400, not 12" in err and "--rerun" in err
  # The same value as the finished run's: reused.
  assert compare.main(["--methods=simclr", "--config-override=total_steps=400",
                       f"--workdir={tmp_path}"]) == 0
  assert "| simclr | 90.0% |" in capsys.readouterr().out


def test_a_finished_run_of_another_config_arg_is_not_reused(tmp_path, capsys):
  # A folder that holds SimCLR's default run (its config.json as train.py writes it): asking for
  # the runlocal variant (batch 16, 6 steps) must not report the default's numbers.
  from experiments import simclr

  folder = tmp_path / "simclr"
  folder.mkdir()
  (folder / "results.json").write_text(json.dumps({"linear_top1": 0.9, "wall_time_s": 1}))
  (folder / "config.json").write_text(simclr.get_config().to_json_best_effort())
  assert compare.main(["--methods=simclr", "--config-arg=runlocal",
                       f"--workdir={tmp_path}"]) == 1
  err = capsys.readouterr().err
  batch = simclr.get_config().input.batch_size
  assert f"with input.batch_size={batch}, not 16 (this command's config)" in err, err
  assert "--rerun" in err
  # The run it holds: reused.
  assert compare.main(["--methods=simclr", f"--workdir={tmp_path}"]) == 0
  assert "| simclr | 90.0% |" in capsys.readouterr().out
