"""Test setup: 8 fake CPU devices, ssljax's XLA:CPU flags, an opt-in compilation cache.

Tiers: ``pytest -m "not slow"`` is the edit-test loop (a few minutes); plain ``pytest`` runs
everything, including the ``slow`` tests (learning checks, full-default runs, subprocesses).
"""
import gc
import os

# Must happen before JAX is imported anywhere.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The persistent compilation cache is opt-in (SSLJAX_TEST_CACHE=1): with jaxlib 0.10.2, 8-device
# CPU programs loaded from it have deadlocked in their collectives (the row-sharded two-tower
# step: every warm run aborted, every cold one passed) and segfaulted while being read (HaLP's
# sharded-equality test), failing a fresh-clone CI run at 1b7267f. Compiled afresh they pass.
# Opted in, one cache is shared by the session, the main.py subprocesses it starts and later
# sessions, outside the clone under the user's cache folder.
if os.environ.get("SSLJAX_TEST_CACHE") == "1" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_cache_root, "ssljax", "xla-tests")
if "JAX_COMPILATION_CACHE_DIR" in os.environ:
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))  # LRU beyond 4 GiB.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import ssljax  # noqa: E402

ssljax.configure_cpu()  # As main.py: XLA:CPU flags before JAX creates its devices.

import jax  # noqa: E402

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


def _memory_maps() -> int:
  try:
    with open("/proc/self/maps") as f:
      return sum(1 for _ in f)
  except OSError:  # Not Linux.
    return 0


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
  """Drops JAX's compiled programs after each test module. Every XLA:CPU executable holds
  several memory maps of JIT-compiled code, and a pytest worker that keeps all of the suite's
  programs passed 33,000 maps in a fresh-clone run at 5e5304f, near Linux's default
  vm.max_map_count (65,530); the worker past it segfaulted while compiling or loading the next
  program (HaLP's sharded test, twice; SCARF's loss once)."""
  yield
  if _memory_maps() > 0:
    jax.clear_caches()
    gc.collect()
