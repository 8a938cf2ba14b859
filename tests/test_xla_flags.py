"""``import ssljax`` changes nothing; ``ssljax.configure_cpu()`` adds XLA:CPU flags on request."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

import ssljax

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def _python(code: str, **env) -> str:
  full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "SSLJAX_XLA_CPU_DEFAULTS")}
  full.update(env)
  out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                       check=True)
  return out.stdout.strip().splitlines()[-1]


def test_import_ssljax_leaves_the_environment_alone():
  changed = _python("import os, json; before = dict(os.environ); import ssljax; "
                    "print(json.dumps(sorted(k for k in set(before) | set(os.environ) "
                    "if before.get(k) != os.environ.get(k))))")
  assert json.loads(changed) == []


@pytest.mark.slow
def test_library_modules_add_no_environment_of_their_own():
  # JAX and TensorFlow set a few variables when imported; ssljax's modules must add none.
  code = ("import os, json, jax, flax, optax, tensorflow, tensorflow_datasets, grain, "
          "orbax.checkpoint; before = dict(os.environ); "
          "import ssljax.train, ssljax.methods, ssljax.models, ssljax.losses, ssljax.data, "
          "ssljax.evals.evaluator, ssljax.checkpoint, ssljax.sharding, ssljax.optim; "
          "print(json.dumps(sorted(k for k in set(before) | set(os.environ) "
          "if before.get(k) != os.environ.get(k))))")
  assert json.loads(_python(code)) == []


def test_configure_cpu_adds_keeps_and_skips():
  from importlib.metadata import version

  env = {}
  added = ssljax.configure_cpu(env)
  if version("jaxlib").startswith("0.10."):
    assert added == [f"{FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"]
    assert env["XLA_FLAGS"] == added[0]
  own = f"{FLAG}=LIBRARY_FUSION_TYPE_DOT --xla_force_host_platform_device_count=2"
  mine = {"XLA_FLAGS": own}
  assert ssljax.configure_cpu(mine) == []  # The user's own value wins, nothing is appended.
  assert mine["XLA_FLAGS"] == own
  skipped = {"SSLJAX_XLA_CPU_DEFAULTS": "0"}
  assert ssljax.configure_cpu(skipped) == [] and "XLA_FLAGS" not in skipped


@pytest.mark.slow
def test_configure_cpu_after_jax_started_says_what_to_do():
  from importlib.metadata import version

  if not version("jaxlib").startswith("0.10."):
    pytest.skip("no ssljax XLA:CPU flag for this jaxlib")
  line = _python("import jax; jax.devices(); import ssljax\n"
                 "try:\n  ssljax.configure_cpu()\nexcept RuntimeError as e:\n  print(e)")
  assert "before JAX creates its devices" in line


def test_cpu_kernels_setting():
  import jax

  from ssljax.cpu import resolve_cpu_kernels
  from ssljax.errors import ConfigError

  assert resolve_cpu_kernels("auto") == (jax.default_backend() == "cpu")
  assert resolve_cpu_kernels("true") is True and resolve_cpu_kernels(True) is True
  # Off on CPU under ssljax's convolution flag (conftest set it): the graph that computed a wrong
  # kernel gradient (tests/models/test_resnet.py) is allowed, with a warning that says so.
  flagged = jax.default_backend() == "cpu" and FLAG in os.environ.get("XLA_FLAGS", "")
  with pytest.warns(UserWarning, match="prefer 'auto'") if flagged else contextlib.nullcontext():
    assert resolve_cpu_kernels("False") is False
  with pytest.raises(ConfigError, match="cpu_kernels='maybe'"):
    resolve_cpu_kernels("maybe")
