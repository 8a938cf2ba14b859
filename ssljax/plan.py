"""``python -m ssljax.plan --config=... --devices=8,64``: see :mod:`ssljax.tools.plan`."""

if __name__ == "__main__":
  from ssljax.tools.plan import run_command

  run_command()
