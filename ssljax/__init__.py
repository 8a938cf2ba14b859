"""ssljax: self-supervised learning in JAX/Flax, written the functional way."""

import os as _os

__version__ = "0.1.0"

# XLA:CPU flags that ssljax's train steps were measured to need (benchmarks/NOTES.md). They only
# change the CPU backend and only take effect when set before JAX creates its CPU client, which is
# why this runs on `import ssljax`. A flag the user already set in XLA_FLAGS is left alone;
# SSLJAX_XLA_CPU_DEFAULTS=0 skips them all. Each entry names the jaxlib versions it was checked on:
# XLA aborts on an unknown flag, and these are experimental ones that may be renamed.
_CPU_FLAGS = (
    # Convolutions through XLA's own (Eigen) kernels instead of YNNPACK fusions: YNNPACK's
    # backward-filter convolution is ~8x slower than the forward one on x86 (ResNet-18, 32 px),
    # so the whole Barlow Twins step runs ~1.8x faster; dots stay on YNNPACK.
    ("--xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT", ("0.10.",)),
)


def _set_cpu_flags() -> None:
  if _os.environ.get("SSLJAX_XLA_CPU_DEFAULTS", "1") == "0":
    return
  try:
    from importlib.metadata import version

    jaxlib = version("jaxlib")
  except Exception:  # Not installed (yet): nothing to configure.
    return
  flags = _os.environ.get("XLA_FLAGS", "")
  for name, value, versions in _CPU_FLAGS:
    if name not in flags and jaxlib.startswith(versions):
      flags = f"{flags} {name}={value}".strip()
  if flags:
    _os.environ["XLA_FLAGS"] = flags


_set_cpu_flags()
