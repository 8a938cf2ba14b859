"""XLA:CPU settings ssljax was measured to need, applied only when asked for.

Two separate things, both explicit (``import ssljax`` changes nothing):

* :func:`configure_cpu` adds XLA:CPU flags to ``XLA_FLAGS``. They only take effect when set before
  JAX creates its CPU client, so ``main.py``, the benchmarks and the tests call it first thing.
  A flag the user already set is left alone; ``SSLJAX_XLA_CPU_DEFAULTS=0`` skips them all.
* :func:`resolve_cpu_kernels` turns the config field ``cpu_kernels`` (``"auto"``, True or False)
  into the bool the models take: with True, ResNets and heads use ssljax's BatchNorm (windowed
  per-channel sums, a hand-written backward) and route each training conv input through an
  identity ``lax.cond`` (``ssljax/models/resnet.py``); with False they are plain Flax
  (``flax.linen.BatchNorm``, same variables, so checkpoints load either way). ``"auto"`` means
  "True on the CPU backend"; it is resolved once, when the run's method is built, never inside
  model code.

The measurements behind both are in ``benchmarks/NOTES.md``. One more reason to keep "auto" on
CPU: under the convolution flag, the plain Flax ResNet's gradient of one conv came out 1.2% off a
float64 reference on jaxlib 0.10.2 (an XLA:CPU fusion), while the CPU-kernel graph matched it to
5e-6 (``tests/models/test_resnet.py``); ``cpu_kernels=false`` on CPU therefore warns.
"""

from __future__ import annotations

import os

# (flag, value, jaxlib versions it was checked on). XLA aborts on an unknown flag, and these are
# experimental ones that may be renamed, so each is added only on the versions it names.
CPU_FLAGS = (
    # Convolutions through XLA's own (Eigen) kernels instead of YNNPACK fusions: YNNPACK's
    # backward-filter convolution is ~8x slower than the forward one on x86 (ResNet-18, 32 px),
    # so the whole Barlow Twins step runs ~1.8x faster; dots stay on YNNPACK.
    ("--xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT", ("0.10.",)),
)


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge
  except Exception:  # JAX not importable (yet): nothing has started.
    return False
  started = getattr(xla_bridge, "backends_are_initialized", None)
  return bool(started()) if started is not None else False


def configure_cpu(environ=None) -> list[str]:
  """Adds ssljax's XLA:CPU flags to ``XLA_FLAGS`` (call before JAX creates its devices).

  Args:
    environ: the environment to edit (``os.environ`` by default; tests pass a dict).

  Returns:
    The ``flag=value`` strings added (empty when all were set already, the jaxlib version is not
    one they were checked on, or ``SSLJAX_XLA_CPU_DEFAULTS=0``).

  Raises:
    RuntimeError: JAX's backends already exist, so the flags could not take effect.
  """
  env = os.environ if environ is None else environ
  if env.get("SSLJAX_XLA_CPU_DEFAULTS", "1") == "0":
    return []
  try:
    from importlib.metadata import version

    jaxlib = version("jaxlib")
  except Exception:  # Not installed: nothing to configure.
    return []
  flags = env.get("XLA_FLAGS", "")
  added = [f"{name}={value}" for name, value, versions in CPU_FLAGS
           if name not in flags and jaxlib.startswith(versions)]
  if not added:
    return []
  if environ is None and _backends_started():
    raise RuntimeError("ssljax.configure_cpu() must run before JAX creates its devices (before "
                       "the first jax.devices(), jnp array or jit call)")
  env["XLA_FLAGS"] = " ".join([flags, *added]).strip()
  return added


def _warn_if_flax_norms_under_eigen_convs() -> None:
  import jax

  if jax.default_backend() == "cpu" and CPU_FLAGS[0][0] in os.environ.get("XLA_FLAGS", ""):
    import warnings

    warnings.warn("cpu_kernels=false on the CPU backend under ssljax's XLA:CPU convolution flag: "
                  "on jaxlib 0.10.2 this graph computed a wrong kernel gradient in one ResNet "
                  "conv (1.2% off a float64 reference; benchmarks/NOTES.md); prefer 'auto'",
                  stacklevel=3)


def resolve_cpu_kernels(value, *, key: str = "cpu_kernels") -> bool:
  """``cpu_kernels`` from a config (``"auto"``, True/False or their strings) as a bool.

  Raises:
    ConfigError: any other value, naming ``key``.
  """
  from ssljax.errors import ConfigError

  if isinstance(value, str):
    text = value.strip().lower()
    if text == "auto":
      import jax

      return jax.default_backend() == "cpu"
  elif isinstance(value, bool):
    text = str(value).lower()
  else:
    text = ""
  if text in ("true", "1", "on", "yes", "false", "0", "off", "no"):
    on = text in ("true", "1", "on", "yes")
    if not on:
      _warn_if_flax_norms_under_eigen_convs()
    return on
  raise ConfigError(f"{key}={value!r} is not supported; choose 'auto' (CPU kernels on the CPU "
                    "backend only), True or False")
