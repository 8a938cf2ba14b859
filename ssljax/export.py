"""``python -m ssljax.export --workdir=RUN --out=DIR``: see :mod:`ssljax.tools.export`."""

if __name__ == "__main__":
  from ssljax.tools.export import main

  main()
