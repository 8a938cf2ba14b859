"""``python -m ssljax.compare --methods=... --workdir=DIR``: see :mod:`ssljax.tools.compare`."""

if __name__ == "__main__":
  import os
  import sys

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from ssljax import configure_cpu

  configure_cpu()  # As main.py: XLA:CPU flags before JAX creates its devices.
  from ssljax.tools.compare import main

  sys.exit(main())
