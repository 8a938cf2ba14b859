"""ssljax's XLA:CPU defaults: added on import, never overriding the user's, and skippable."""

import os
import subprocess
import sys

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
PRINT = "import os, ssljax; print(os.environ.get('XLA_FLAGS', ''))"


def _flags(**env):
  full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "SSLJAX_XLA_CPU_DEFAULTS")}
  full.update(env)
  out = subprocess.run([sys.executable, "-c", PRINT], env=full, capture_output=True, text=True,
                       check=True)
  return out.stdout.strip()


def test_defaults_added_kept_and_skippable():
  from importlib.metadata import version

  if version("jaxlib").startswith("0.10."):
    assert f"{FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT" in _flags()
  mine = f"{FLAG}=LIBRARY_FUSION_TYPE_DOT --xla_force_host_platform_device_count=2"
  assert _flags(XLA_FLAGS=mine) == mine  # The user's own value wins and nothing is appended.
  assert FLAG not in _flags(SSLJAX_XLA_CPU_DEFAULTS="0")
