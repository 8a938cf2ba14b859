"""Test setup: 8 fake CPU devices, so any test can build a mesh of 8."""
import os

# Must happen before JAX is imported anywhere.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent compilation cache for the session and the main.py subprocesses it starts: many
# tests compile the same runlocal train step, and XLA compilation dominates the suite's time.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile

  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ssljax-test-xla-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import jax  # noqa: E402

import ssljax  # noqa: E402, F401 - adds ssljax's XLA:CPU flags before JAX starts, as main.py does.

# Keep TensorFlow (used by TFDS) off any accelerator and quiet.
try:
  import tensorflow as tf  # noqa: E402

  tf.config.set_visible_devices([], "GPU")
except Exception:  # pragma: no cover - TF is a dependency, but never let setup hide a test.
  pass

assert jax.device_count() == 8, "tests/conftest.py must run before JAX is initialised"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data dir with the shipped digits prepared once for the whole session."""
  from ssljax.data import digits

  path = tmp_path_factory.mktemp("tfds")
  digits.prepare(str(path))
  return str(path)
