"""Smoke tests of the benchmark scripts (tiny settings; the numbers are not checked)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNLOCAL = "--config=experiments/barlow.py:runlocal"


def _script(name, *args, env=None):
  return subprocess.run([sys.executable, os.path.join("benchmarks", name), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900, env=env)


def _json_line(stdout: str, prefix: str = "") -> dict:
  """The last line of ``stdout`` that is ``prefix`` + a JSON object, parsed."""
  lines = [line[len(prefix):] for line in stdout.splitlines() if line.startswith(prefix + "{")]
  return json.loads(lines[-1])


@pytest.mark.slow
def test_gpu_script_without_gpu_exits_cleanly():
  proc = _script("gpu.py")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("no GPU: jax.default_backend() is 'cpu'")


@pytest.mark.slow
def test_gpu_script_runs_on_cpu_when_allowed():
  # Two devices and the runlocal digits batch: the same program test_plan compiles for 2 devices.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = _script("gpu.py", "--allow_cpu", RUNLOCAL, "--batch_per_gpu=8", "--compute_dtype=float32",
                 "--steps=1", "--repeats=1", "--warmup=1", "--notorch", env=env)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0] == "device: cpu x 2 (dense bf16 peak: n/a, cpu)"
  table = [line for line in lines if line.startswith("| ssljax")]
  assert len(table) == 1 and "| float32 | 8 |" in table[0] and "n/a" in table[0]
  record = _json_line(proc.stdout, "SSLJAX_GPU_JSON ")["ssljax"]
  assert record["gpus"] == 2 and record["input_shape"] == [8, 8, 1]
  assert record["flops_per_step_per_gpu"] > 0 and record["samples_per_s_per_gpu"] > 0
  assert np.isfinite(record["loss"])


def test_peak_table():
  sys.path.insert(0, ROOT)
  from benchmarks import gpu

  assert gpu.peak_flops("NVIDIA H100 80GB HBM3") == ("H100 SXM", 989e12)
  assert gpu.peak_flops("NVIDIA H100 PCIe")[1] == 756e12
  assert gpu.peak_flops("NVIDIA H200")[1] == 989e12
  assert gpu.peak_flops("NVIDIA A100-SXM4-80GB")[1] == 312e12
  assert gpu.peak_flops("NVIDIA L40S")[1] == 362e12 and gpu.peak_flops("NVIDIA L4")[1] == 121e12
  assert gpu.peak_flops("Tesla V100-SXM2-16GB") == ("Tesla V100-SXM2-16GB", None)


@pytest.fixture(scope="module")
def loader_digits(digits_dir):
  proc = _script("loader.py", RUNLOCAL, f"--config.input.data.data_dir={digits_dir}",
                 "--batches=3", "--loader_repeats=2", "--loader_warmup=1", "--steps=1",
                 "--repeats=1", "--warmup=1")  # throughput.measure needs warmup >= 1.
  assert proc.returncode == 0, proc.stderr
  return _json_line(proc.stdout)


@pytest.mark.slow
def test_loader_reports_both_rates(loader_digits):
  r = loader_digits
  assert r["data"] == "digits" and r["batch_shape"] == [16, 8, 8, 1]
  assert len(r["loader_batch_s_all"]) == 2
  assert r["loader_samples_per_s"] > 0 and r["step_samples_per_s"] > 0
  assert r["ratio"] == pytest.approx(r["loader_samples_per_s"] / r["step_samples_per_s"],
                                     rel=0.01)
  assert r["required_ratio"] == 3.0 and r["meets_required"] == (r["ratio"] >= 3.0)
  assert r["devices"] == 8 and r["method"] == "barlow"


@pytest.mark.slow
def test_loader_synthetic_npz():
  proc = _script("loader.py", RUNLOCAL, "--npz", "--npz_examples=200", "--batches=2",
                 "--loader_repeats=1", "--loader_warmup=1", "--nostep")
  assert proc.returncode == 0, proc.stderr
  r = _json_line(proc.stdout)
  assert r["data"] == "npz" and r["batch_shape"] == [16, 32, 32, 3]
  assert r["loader_samples_per_s"] > 0 and "ratio" not in r


@pytest.mark.slow
def test_photo_loader_compares_canvases_with_centre_squares():
  proc = _script("photo_loader.py", "--photos=4", "--rounds=1", "--views=2", "--size=64")
  assert proc.returncode == 0, proc.stderr
  r = _json_line(proc.stdout)
  assert r["photos"] == 4 and set(r["host_ms_per_photo"]) == {"whole", "centre"}
  assert r["host_ms_per_photo"]["whole"] > 0 and r["device_ms_per_view"]["centre"] > 0


def test_torch_spec_reads_the_config():
  # The PyTorch part's spec is built in the parent without torch; a broken import here once cost a
  # GPU run its PyTorch row (the CPU smoke test above passes --notorch).
  sys.path.insert(0, ROOT)
  from benchmarks import gpu
  from experiments import barlow

  spec = gpu.torch_spec(barlow.get_config("runlocal"), batch_per_gpu=4, steps=1, repeats=1,
                        warmup=1, device="cpu")
  assert spec["batch"] == 4 and len(spec["views"]) == 2 and spec["input_shape"] == [8, 8, 1]
  assert json.loads(json.dumps(spec)) == spec


def test_report_flop_source_and_saved_log(tmp_path):
  sys.path.insert(0, ROOT)
  from benchmarks import gpu

  jx = {"impl": "ssljax", "framework": "jax", "precision": "bfloat16", "batch_per_gpu": 2,
        "gpus": 1, "encoder": "resnet50", "view_size": 224, "projector": [8, 8],
        "input_shape": [256, 256, 3], "step_s": 0.1, "samples_per_s_per_gpu": 20.0,
        "compile_s": 1.0, "flops_per_step_per_gpu": float("nan"),
        "flops_compiled_per_step_per_gpu": 1e9}
  pt = {"impl": "pytorch", "framework": "torch", "precision": "bf16 autocast", "batch_per_gpu": 2,
        "step_s": 0.2, "samples_per_s_per_gpu": 10.0, "arch": "resnet50",
        "torch_counted_flops_per_step": 5e13}
  # No lowered count: PyTorch's count of the same step, MFU = 5e13 / 0.1 s / 1e15 = 50%.
  flops, source = gpu._shared_flops(jx, pt)
  assert flops == 5e13 and source.startswith("PyTorch's FLOP counter")
  assert gpu._shared_flops({**jx, "flops_per_step_per_gpu": 4e13}, pt)[0] == 4e13
  assert gpu._shared_flops(jx, None)[0] == 1e9
  log = tmp_path / "gpu.log"
  log.write_text("noise\n" + gpu._MARK + json.dumps(
      {"ssljax": jx, "pytorch": pt, "device_kind": "NVIDIA H200", "peak": 1e15}) + "\n")
  report = gpu.report_from_log(str(log))
  row = [line for line in report.splitlines() if line.startswith("| ssljax")][0]
  assert "| 50.00 | 50.0% |" in row
  with pytest.raises(SystemExit, match="has no SSLJAX_GPU_JSON line"):
    (tmp_path / "empty.log").write_text("nothing\n")
    gpu.report_from_log(str(tmp_path / "empty.log"))


# benchmarks/peer_lightly.py: the settings both libraries get, and its one-line errors. The lightly
# side (torch) is never imported here; the script reads it from the peer interpreter only.


@pytest.mark.parametrize("method,solarize", [("simclr", (0.0, 0.0)), ("byol", (0.0, 0.2)),
                                             ("barlow", (0.0, 0.2))])
def test_peer_lightly_configs_share_the_settings(method, solarize):
  sys.path.insert(0, ROOT)
  from benchmarks import peer_lightly

  c = peer_lightly.ssljax_config(method, width=16, batch=128, epochs=3, lr=0.06, wd=5e-4,
                                 subset=2000)
  assert c.method == method and c.input.data.name == "fashion_mnist_local"
  assert c.input.data.train_split == "train[:2000]" and c.input.data.eval_split == "test"
  assert dict(c.encoder) == dict(name="resnet18", stem="cifar", width=16,
                                 zero_init_residual=False, init_from="")
  assert c.input.batch_size == 128 and c.total_epochs == 3.0 and c.total_steps == -1
  assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (
      "sgd", 0.06, 0.9, 5e-4)
  assert c.optim.warmup_epochs == 0.0 and c.optim.min_lr_ratio == 0.0
  assert c.input.image_size == 28 and sorted(c.input.views) == ["view1", "view2"]
  assert c.input.plain_view_epochs == 0.0  # Augmented from the first step, as lightly's side.
  for view, solar in zip((c.input.views.view1, c.input.views.view2), solarize, strict=True):
    assert view.size == 28 and tuple(view.crop_scale) == (0.2, 1.0) and view.flip_prob == 0.5
    assert view.blur_prob == 0.0 and view.solarize_prob == solar
    assert tuple(view.mean) == tuple(c.input.mean) != (0.485, 0.456, 0.406)
  s = peer_lightly.lightly_settings(method, c, subset=2000, workers=1, threads=2)
  # 2000 // 128 = 15 whole batches per epoch (ssljax drops the remainder), 3 epochs.
  assert s["steps_per_epoch"] == 15 and s["optim"]["total_steps"] == 45
  assert s["encoder"] == {"name": "resnet18", "stem": "cifar", "width": 16,
                          "zero_init_residual": False}
  assert s["batch_size"] == 128 and s["optim"]["lr"] == 0.06
  assert s["optim"]["weight_decay"] == 5e-4 and s["optim"]["warmup_steps"] == 0
  assert [v["solarize_prob"] for v in s["views"]] == list(solarize)
  assert s["projector"]["hidden_dims"] == list(c.projector.hidden_dims)
  assert json.loads(json.dumps(s)) == s


def test_peer_lightly_dry_run_needs_no_peer():
  proc = _script("peer_lightly.py", "--dry-run", "--width=8", "--epochs=2", "--batch=64",
                 "--train-subset=640")
  assert proc.returncode == 0, proc.stderr
  records = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [(r["library"], r["method"]) for r in records] == [
      (lib, m) for m in ("simclr", "byol", "barlow") for lib in ("ssljax", "lightly")]
  for ours, peer in zip(records[::2], records[1::2], strict=True):
    c, s = ours["config"], peer["settings"]
    assert c["encoder"]["width"] == s["encoder"]["width"] == 8
    assert c["input"]["batch_size"] == s["batch_size"] == 64
    # lightly's CIFAR-10 rule, 0.06 x batch / 128, on both sides.
    assert c["optim"]["lr"] == s["optim"]["lr"] == pytest.approx(0.03)
    assert s["optim"]["total_steps"] == 2 * (640 // 64)


@pytest.mark.parametrize("args,needle", [
    (["--peer-python=/nonexistent/bin/python"], "--peer-python='/nonexistent/bin/python'"),
    (["--methods=simclr,dino"], "--methods: ['dino']"),
    (["--train-subset=100"], "--train-subset=100 is below --batch=256"),
])
def test_peer_lightly_bad_arguments(args, needle, capsys):
  sys.path.insert(0, ROOT)
  from benchmarks import peer_lightly

  assert peer_lightly.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and needle in err


def test_peer_lightly_missing_fashion_mnist(tmp_path, capsys):
  sys.path.insert(0, ROOT)
  from benchmarks import peer_lightly

  assert peer_lightly.main([f"--idx-dir={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert str(tmp_path) in err and "apt-get install dataset-fashion-mnist" in err


def test_peer_lightly_table_ratios():
  sys.path.insert(0, ROOT)
  from benchmarks import peer_lightly

  def run(lib, wall, loop):
    return {"library": lib, "wall_s": wall, "train_loop_s": loop, "step_s": loop / 10,
            "knn_top1": 0.8, "compile_s": 5.0}

  runs = {("byol", "ssljax"): [run("ssljax", 10.0, 4.0), run("ssljax", 30.0, 8.0),
                               run("ssljax", 20.0, 6.0)],
          ("byol", "lightly"): [run("lightly", 50.0, 30.0), run("lightly", 40.0, 24.0),
                                run("lightly", 60.0, 36.0)]}
  rows = [line for line in peer_lightly.table(["byol"], runs).splitlines()
          if line.startswith("| byol")]
  # Medians: ssljax 20 s wall / 6 s loop, lightly 50 s / 30 s: ratios 2.50x and 5.00x.
  assert rows[0].startswith("| byol | ssljax | 3 | 20.0 | 6.0 |")
  assert rows[1].endswith("| 2.50x | 5.00x |")
