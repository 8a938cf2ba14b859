"""The command line: bad input ends in one clear line and a non-zero exit, nothing lost.

Most error paths run ``main.py``'s command in process (``ssljax.tools.main.run``: the same flag
parsing, the same ``error:`` line, the same ``SystemExit(2)``); each exit path also has one real
``python main.py`` subprocess test (marked slow), so the script itself is covered.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from ssljax.tools import main as command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BARLOW = "experiments/barlow.py:runlocal"


class Result:
  """What a command left behind: its exit status and its stderr."""

  def __init__(self, returncode, stderr, stdout=""):
    self.returncode, self.stderr, self.stdout = returncode, stderr, stdout


def _config_arg(config):
  path, _, variant = config.partition(":")
  return os.path.join(ROOT, path) + (f":{variant}" if variant else "")


def _run(capsys, workdir, *flags, config=BARLOW):
  """``python main.py ...`` in process; returns its exit status and stderr."""
  argv = ["main.py", f"--config={_config_arg(config)}", f"--workdir={workdir}", *flags]
  capsys.readouterr()
  with pytest.raises(SystemExit) as info:
    command.run(argv)
  out = capsys.readouterr()
  return Result(info.value.code, out.err, out.out)


def _subprocess(workdir, *flags, config=BARLOW, timeout=300):
  env = dict(os.environ)  # Inherits the 8 fake CPU devices from conftest.
  cmd = [sys.executable, "main.py", f"--config={config}", f"--workdir={workdir}", *flags]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _last_error_line(proc):
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  return lines[-1] if lines else ""


def _assert_clean_error(proc, *needles):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  line = _last_error_line(proc)
  assert line.startswith("error: "), proc.stderr[-3000:]
  for needle in needles:
    assert needle in line, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ------------------------------------------------------------------------------ config mistakes


def test_misspelt_config_key(capsys, tmp_path):
  proc = _run(capsys, tmp_path, "--config.optim.lrr=0.1")
  _assert_clean_error(proc, "--config.optim.lrr", "no such config field", '"lr"')


def test_bad_config_value_type(capsys, tmp_path):
  proc = _run(capsys, tmp_path, "--config.total_steps=abc")
  _assert_clean_error(proc, "--config.total_steps=abc")


def test_unknown_config_argument(capsys, tmp_path):
  proc = _run(capsys, tmp_path, config="experiments/barlow.py:dataa=cifar10")
  _assert_clean_error(proc, "'dataa' is unknown", "data")


def test_missing_config_file(capsys, tmp_path):
  proc = _run(capsys, tmp_path, config="experiments/nosuch.py")
  _assert_clean_error(proc, "experiments/nosuch.py", "No such file")


def test_missing_workdir_flag(capsys):
  capsys.readouterr()
  with pytest.raises(SystemExit) as info:
    command.run(["main.py", f"--config={_config_arg(BARLOW)}"])
  err = capsys.readouterr().err
  assert info.value.code == 2 and "workdir" in err.strip().splitlines()[-1]


def test_bad_cpu_kernels_value(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.cpu_kernels=sometimes",
              f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "cpu_kernels='sometimes'", "auto")
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_method(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.method=nosuchmethod",
              f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "nosuchmethod", "barlow")


def test_unknown_dataset(capsys, tmp_path):
  proc = _run(capsys, tmp_path, "--config.input.data.name=nosuchdata")
  _assert_clean_error(proc, "nosuchdata")


def test_dataset_not_available_offline(capsys, tmp_path):
  empty = tmp_path / "empty_tfds"
  empty.mkdir()
  proc = _run(capsys, tmp_path / "w", "--config.input.data.name=cifar10",
              f"--config.input.data.data_dir={empty}")
  _assert_clean_error(proc, "cifar10", "download")
  assert not (tmp_path / "w").exists()  # Nothing is created for a run that cannot start.


def test_empty_image_folder(capsys, tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  proc = _run(capsys, tmp_path / "w", "--config.input.data.name=folder",
              f"--config.input.data.path={folder}")
  _assert_clean_error(proc, str(folder))


def test_batch_size_not_dividing_devices(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path / "w", "--config.input.batch_size=12",
              f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "input.batch_size=12", "multiple of 8")
  assert not (tmp_path / "w").exists()


def test_foreign_checkpoint_directory_is_left_alone(capsys, tmp_path, digits_dir):
  ckpt = tmp_path / "checkpoints"
  ckpt.mkdir()
  (ckpt / "model.pt").write_bytes(b"not ours")
  proc = _run(capsys, tmp_path, f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "not an ssljax checkpoint")
  assert sorted(os.listdir(ckpt)) == ["model.pt"]
  assert (ckpt / "model.pt").read_bytes() == b"not ours"


def test_optimizer_regex_matching_no_parameter(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path / "w", "--config.optim.freeze_params=encodr/",
              "--config.optim.freeze_epochs=1.0", f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "optim.freeze_params='encodr/'", "matches no parameter")
  assert not (tmp_path / "w").exists()


# The classic methods' settings: each bad one is named on the last line (the method is built
# before any data is read or written).


def test_zero_temperature(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.simclr.temperature=0.0",
              f"--config.input.data.data_dir={digits_dir}", config="experiments/simclr.py:runlocal")
  _assert_clean_error(proc, "simclr.temperature=0.0", "> 0")
  assert not os.path.exists(tmp_path / "checkpoints")


def test_multi_crop_with_zero_crops(capsys, tmp_path, digits_dir):
  # DINO's local crops may be 0 (none: tests/methods/test_dino.py), not fewer; a required view
  # with crops=0 is refused there too.
  proc = _run(capsys, tmp_path, "--config.input.views.local.crops=-1",
              f"--config.input.data.data_dir={digits_dir}", config="experiments/dino.py:runlocal")
  _assert_clean_error(proc, "input.views.local.crops=-1", ">= 0")


def test_vit_patch_that_does_not_divide_the_view(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.encoder.name=vit:N/5",
              f"--config.input.data.data_dir={digits_dir}", config="experiments/mae.py:runlocal")
  _assert_clean_error(proc, "not divisible by the ViT patch size 5", "vit:N/5")


def test_method_asks_for_views_the_config_does_not_define(capsys, tmp_path, digits_dir):
  # Barlow's config defines view1/view2; DINO needs global1/global2 (and its own settings).
  proc = _run(capsys, tmp_path, "--config.method=dino",
              f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "method='dino'", "experiments/dino.py")


def test_label_fraction_outside_zero_one(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.input.label_fraction=0.0",
              f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "input.label_fraction=0.0", "(0, 1]")
  assert not os.path.exists(tmp_path / "checkpoints")


# Issue 4's methods: each bad setting is named on the last line, before anything is trained.
TRUST_SSL = "experiments/trust_ssl.py:runlocal"


def test_unknown_corruption_factor(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.trust_ssl.corruptions=('haze','snow')",
              f"--config.input.data.data_dir={digits_dir}", config=TRUST_SSL)
  _assert_clean_error(proc, "trust_ssl.corruptions", "'snow'")


def test_corruption_severity_out_of_range(capsys, tmp_path, digits_dir):
  proc = _run(capsys, tmp_path, "--config.trust_ssl.severity=(1.0,9.0)",
              f"--config.input.data.data_dir={digits_dir}", config=TRUST_SSL)
  _assert_clean_error(proc, "trust_ssl.severity", "[0, 5]")


def test_sorting_network_size_not_supported(capsys, tmp_path, digits_dir):
  # Bitonic networks sort powers of two; 10 negatives + 1 positive = 11 values per anchor.
  proc = _run(capsys, tmp_path, "--config.groco.sorting_network=bitonic",
              "--config.groco.topk_neg=10", f"--config.input.data.data_dir={digits_dir}",
              config="experiments/groco.py:runlocal")
  _assert_clean_error(proc, "groco.sorting_network", "groco.topk_neg=10")


# ---------------------------------------------------------------- the real script, one per exit


@pytest.mark.slow
def test_script_flag_error_exits_2(tmp_path):
  proc = _subprocess(tmp_path, "--config.optim.lrr=0.1")
  _assert_clean_error(proc, "--config.optim.lrr", "no such config field", '"lr"')


@pytest.mark.slow
def test_script_unloadable_config_exits_2(tmp_path):
  proc = _subprocess(tmp_path, config="experiments/nosuch.py")
  _assert_clean_error(proc, "experiments/nosuch.py", "No such file")


@pytest.mark.slow
def test_script_user_error_in_the_run_exits_2(tmp_path, digits_dir):
  ckpt = tmp_path / "checkpoints"
  ckpt.mkdir()
  (ckpt / "model.pt").write_bytes(b"not ours")
  proc = _subprocess(tmp_path, f"--config.input.data.data_dir={digits_dir}")
  _assert_clean_error(proc, "not an ssljax checkpoint")
  assert sorted(os.listdir(ckpt)) == ["model.pt"]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits_dir):
  # LR 0 for the first step (linear warm-up from 0), then 1e30: the step-2 update overflows.
  proc = _subprocess(tmp_path, f"--config.input.data.data_dir={digits_dir}",
                     "--config.optim.lr=1e30", "--config.optim.lr_scaling=none",
                     "--config.optim.warmup_steps=40", "--config.checkpoint_every_steps=1",
                     "--config.total_steps=50", "--config.eval.linear=False")
  _assert_clean_error(proc, "NaN", "step")
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert steps, proc.stderr[-2000:]
  line = _last_error_line(proc)
  assert f"step {steps[-1]})" in line, line
  assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_then_exits(tmp_path, digits_dir):
  cmd = [sys.executable, "-u", "main.py", f"--config={BARLOW}",
         f"--workdir={tmp_path}", f"--config.input.data.data_dir={digits_dir}",
         "--config.total_steps=100000", "--config.log_every_steps=1",
         "--config.checkpoint_every_steps=100000"]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    deadline = time.time() + 240
    for line in proc.stdout:  # Wait until training is under way.
      if line.startswith("step 3/") or time.time() > deadline:
        break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "received SIGTERM" in out and "checkpoint saved" in out, out[-2000:]
  steps = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
  assert len(steps) == 1 and 3 <= steps[0] < 100000, steps
