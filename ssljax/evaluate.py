"""``python -m ssljax.evaluate --workdir=RUN``: see :mod:`ssljax.tools.evaluate`."""

if __name__ == "__main__":
  from ssljax.tools.evaluate import main

  main()
