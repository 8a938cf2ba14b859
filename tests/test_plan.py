"""``python -m ssljax.tools.plan``: the train step compiled for N fake devices, memory and FLOPs."""

import json
import os
import subprocess
import sys

import pytest

from ssljax.errors import ConfigError, UserError
from ssljax.tools import plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=experiments/barlow.py:runlocal"  # batch 16 of 8x8x1 digits, resnet_tiny width 8


def _plan(*args):
  return subprocess.run([sys.executable, "-m", "ssljax.tools.plan", CONFIG, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def plans():
  proc = _plan("--devices=2,4", "--json")
  assert proc.returncode == 0, proc.stderr
  assert "compiling for 2 devices" in proc.stderr and "compiling for 4 devices" in proc.stderr
  doc = json.loads(proc.stdout)
  assert "CPU compiler" in doc["note"]
  return {p["devices"]: p for p in doc["plans"]}


@pytest.mark.slow
def test_fields_present_and_positive(plans):
  assert sorted(plans) == [2, 4]
  for p in plans.values():
    assert p["backend"] == "cpu" and p["mesh"] == {"data": p["devices"]}
    for key in ("state_bytes_per_device", "params_bytes_per_device", "opt_state_bytes_per_device",
                "peak_bytes_per_device", "flops_per_device", "flops_global", "num_params",
                "compile_s"):
      assert p[key] > 0, key
    for key in ("argument", "output", "temp", "alias"):
      assert p["memory_per_device"][key] > 0, key
    assert p["memory_per_device"]["generated_code"] >= 0
    m = p["memory_per_device"]
    assert p["peak_bytes_per_device"] == m["argument"] + m["output"] + m["temp"] - m["alias"]


@pytest.mark.slow
def test_batch_and_memory_accounting(plans):
  assert plans[2]["batch_per_device"] == 8 and plans[4]["batch_per_device"] == 4
  for p in plans.values():
    assert p["batch_shape"] == [16, 8, 8, 1]  # What the digits pipeline yields.
    b = p["batch_per_device"]
    # Replicated state: the same bytes on every device; 4 bytes per float32 parameter.
    assert p["state_bytes_per_device"] == plans[2]["state_bytes_per_device"]
    assert p["params_bytes_per_device"] == 4 * p["num_params"]
    # XLA's argument bytes = our state bytes + this device's 8x8x1 uint8 images (the labels are
    # unused by Barlow Twins without the online probe, and jax.jit drops unused inputs).
    assert p["memory_per_device"]["argument"] == p["state_bytes_per_device"] + b * 64
    # The donated state is aliased to the new state, all of it.
    assert p["memory_per_device"]["alias"] == p["state_bytes_per_device"]


@pytest.mark.slow
def test_flops_are_per_device(plans):
  f2, f4 = plans[2]["flops_per_device"], plans[4]["flops_per_device"]
  assert 1.6 < f2 / f4 < 2.2  # Half the batch per device: about half the work.
  # The global step's work does not depend on how it is split (replicated optimizer work aside).
  g2, g4 = plans[2]["flops_global"], plans[4]["flops_global"]
  assert g2 == pytest.approx(2 * f2) and abs(g4 / g2 - 1) < 0.15


def test_table_output():
  table = plan.format_table([{
      "devices": 8, "batch_per_device": 256, "state_bytes_per_device": 3 * 2**30,
      "memory_per_device": {"argument": 2**20, "output": 2**20, "temp": 5 * 2**30,
                            "alias": 2**20, "generated_code": 0},
      "peak_bytes_per_device": 5 * 2**30 + 2**20, "flops_per_device": 1.5e12,
      "flops_global": 12e12, "lower_s": 1.0, "compile_s": 2.5}])
  header, row = table.splitlines()
  assert len(header) == len(row)
  assert "3.00 GiB" in row and "1.50 T" in row and "12.00 T" in row and "3.5" in row


@pytest.mark.parametrize("devices, message", [
    ("0", "entry '0' is not a positive integer"),
    ("2,x", "entry 'x' is not a positive integer"),
    ("-4", "entry '-4'"),
    ("3", "3 devices: input.batch_size=16 does not divide over 3 data-parallel devices"),
])
@pytest.mark.slow
def test_bad_devices(devices, message):
  proc = _plan(f"--devices={devices}")
  assert proc.returncode == 2, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr


def test_parse_devices():
  assert plan.parse_devices("8, 64,256") == [8, 64, 256]
  for bad in ("", "8,", "1.5", "0"):
    with pytest.raises(ConfigError, match="--devices"):
      plan.parse_devices(bad)


def test_crashed_child_reports_its_last_line(monkeypatch):
  def fake_run(cmd, **kwargs):
    assert "--devices=2" in cmd and "--_child" in cmd
    assert "--xla_force_host_platform_device_count=2" in kwargs["env"]["XLA_FLAGS"]
    return subprocess.CompletedProcess(cmd, -9, stdout="", stderr="Traceback ...\nKilled\n")

  monkeypatch.setattr(plan.subprocess, "run", fake_run)
  with pytest.raises(UserError, match=r"planning for 2 devices crashed \(exit status -9\): Killed"):
    plan.plan_in_subprocess(2, [CONFIG])


@pytest.mark.slow
def test_bad_config_override_is_one_line():
  proc = _plan("--config.input.nope=1", "--devices=2")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --config.input.nope: no such config field (the experiment file lists every field)")


# ------------------------------------------------- recommendation models: sized, not read

BIG_ITEMS, USERS = 10**7, 8000  # A 10^7-item catalogue; both divisible by 8.
ROWS = (("item_embedding|user_embedding", "rows"), (".*", "replicate"))


def _bpr_config(rules):
  from experiments import bpr

  config = bpr.get_config()  # ml-latest-small, d = 64, Adam, batch 2048.
  config.sharding_rules = rules
  return config


@pytest.fixture(scope="module")
def bpr_plans():
  """BPR-MF with 10^7 items planned in process on conftest's 8 devices, rows vs replicated."""
  from ssljax.data import interactions

  def no_reading(*args, **kwargs):
    raise AssertionError("plan read the interactions")

  cat = plan.catalogue_of(_bpr_config(ROWS), USERS, BIG_ITEMS)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(interactions, "read_records", no_reading)
    return {name: plan.plan_here(_bpr_config(rules), cat)
            for name, rules in (("rows", ROWS), ("replicate", ((".*", "replicate"),)))}


def test_rows_rule_cuts_the_tables_per_device_by_the_device_count(bpr_plans):
  rows, rep = bpr_plans["rows"], bpr_plans["replicate"]
  d = int(_bpr_config(ROWS).encoder.dim)
  item_table = BIG_ITEMS * d * 4  # float32 [I, d]: 2.56 GB.
  both_tables = (BIG_ITEMS + USERS) * d * 4
  for p in (rows, rep):
    assert p["devices"] == 8 and p["modality"] == "interactions"
    assert (p["num_users"], p["num_items"], p["num_train_interactions"]) == (
        USERS, BIG_ITEMS, 10 * USERS)  # --num_interactions' default: 10 per user.
    assert p["batch_shape"] == [2048] and p["num_params"] == (BIG_ITEMS + USERS) * d
  # The item table and both of Adam's moments of it: 1/8 per device under rows, whole otherwise.
  for leaf in ("params/method/item_embedding",
               "opt_state/0/inner_states/scheduled/matrix/inner_state/0/mu/method/item_embedding",
               "opt_state/0/inner_states/scheduled/matrix/inner_state/0/nu/method/item_embedding"):
    assert rows["leaf_bytes_per_device"][leaf] == item_table // 8, leaf
    assert rep["leaf_bytes_per_device"][leaf] == item_table, leaf
  assert rows["params_bytes_per_device"] == both_tables // 8
  assert rep["params_bytes_per_device"] == both_tables
  # params + mu + nu shrink by 7/8; the rest (Adam's counts, method state) is the same.
  assert rep["state_bytes_per_device"] - rows["state_bytes_per_device"] == 3 * both_tables * 7 // 8
  # The method state: each user's training items as CSR, int32 [U + 1] and [E], replicated.
  for p in (rows, rep):
    assert p["method_state_bytes_per_device"] == 4 * (USERS + 1) + 4 * 10 * USERS
  assert rows["peak_bytes_per_device"] < rep["peak_bytes_per_device"] / 4


def test_catalogue_must_divide_over_the_rows_axis():
  cat = plan.catalogue_of(_bpr_config(ROWS), USERS, BIG_ITEMS + 1)
  with pytest.raises(ConfigError, match=r"^sharding_rules: 'rows' cannot split "
                                        r"'params/method/item_embedding' \(10000001 rows\) over "
                                        r"the 8 devices of mesh axis 'data'.* pad the catalogue "
                                        r"to 10000008 rows"):
    plan.plan_here(_bpr_config(ROWS), cat)


def test_catalogue_flags():
  bpr_config = _bpr_config(ROWS)
  with pytest.raises(ConfigError, match=r"holds interactions: .* pass --num_users=U and "
                                        r"--num_items=I"):
    plan.catalogue_of(bpr_config)
  assert plan.catalogue_of(bpr_config, 4, 6, 30) == plan.Catalogue(4, 6, 30)
  from experiments import barlow

  image_config = barlow.get_config("runlocal")
  assert plan.catalogue_of(image_config) is None
  with pytest.raises(ConfigError, match="is not interactions; leave them out"):
    plan.catalogue_of(image_config, num_items=10)


def test_parse_memory_and_fit_line():
  assert plan.parse_memory("80GiB") == 80 * 2**30 == plan.parse_memory("80g")
  assert plan.parse_memory("16 GB") == 16 * 10**9
  assert plan.parse_memory("1.5e9") == 1_500_000_000
  for bad in ("", "-1GiB", "80 gigs", "GiB"):
    with pytest.raises(ConfigError, match="--memory"):
      plan.parse_memory(bad)
  record = {"devices": 8, "peak_bytes_per_device": 3 * 2**30, "state_bytes_per_device": 2**30,
            "params_bytes_per_device": 2**28, "opt_state_bytes_per_device": 2**29,
            "method_state_bytes_per_device": 2**28}
  assert plan.fit_line(record, 4 * 2**30).startswith(
      "fits: 8 devices: peak 3.00 GiB (state 1.00 GiB: params 256.00 MiB, optimizer 512.00 MiB, "
      "method state 256.00 MiB) per device <= 4.00 GiB")
  assert plan.fit_line(record, 2 * 2**30).startswith("does not fit: 8 devices: peak 3.00 GiB")


@pytest.mark.slow
def test_plan_command_sizes_a_ten_million_item_model():
  args = [sys.executable, "-m", "ssljax.plan", "--config=experiments/bpr.py", "--devices=8",
          f"--num_users={USERS}", f"--num_items={BIG_ITEMS}", "--memory=4GiB"]
  rows = subprocess.run([*args, f"--config.sharding_rules={ROWS!r}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=900)
  assert rows.returncode == 0, rows.stderr
  out = rows.stdout
  assert f"{USERS:,} users, {BIG_ITEMS:,} items, {10 * USERS:,} training interactions (not " \
         "read)" in out, out
  assert "\nfits: 8 devices: peak " in out and "<= 4.00 GiB" in out, out
  replicated = subprocess.run([*args, "--json"], cwd=ROOT, capture_output=True, text=True,
                              timeout=900)
  assert replicated.returncode == 0, replicated.stderr
  (record,) = json.loads(replicated.stdout)["plans"]
  assert record["fits"] is False and record["memory_limit_bytes"] == 4 * 2**30
  assert record["leaf_bytes_per_device"]["params/method/item_embedding"] == BIG_ITEMS * 64 * 4
