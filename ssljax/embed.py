"""``python -m ssljax.embed --workdir=RUN``: see :mod:`ssljax.tools.embed`."""

if __name__ == "__main__":
  from ssljax.tools.embed import main

  main()
