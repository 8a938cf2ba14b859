"""The command behind ``main.py``: flags, multi-process setup, ``train.train_and_evaluate``.

``python main.py --config=... --workdir=...`` calls :func:`run_script`; tests and notebooks call
:func:`run` with an argument list, in process, and get the same parsing, the same one-line
``error:`` messages and the same exit status (a ``SystemExit``) as the command.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from ssljax.tools import cli


def define_flags(flag_values: flags.FlagValues, sys_argv=None):
  """Defines ``--config`` and ``--workdir`` on ``flag_values``; returns their holders."""
  config = cli.define_config_flag(flag_values, sys_argv=sys_argv)
  workdir = flags.DEFINE_string("workdir", None, "Folder for outputs and checkpoints (resumes).",
                                flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
  return config, workdir


def train(config, workdir: str) -> dict:
  """Connects the processes (``config.distributed``), trains and evaluates in ``workdir``.

  A :class:`~ssljax.errors.UserError` ends in one ``error:`` line and exit status 2.
  """
  from ssljax import distributed
  from ssljax import train as trainer
  from ssljax.errors import UserError

  logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines would drown the progress lines.
  try:
    distributed.initialize(config)
    return trainer.train_and_evaluate(config, workdir)
  except UserError as e:
    cli.fail(str(e))


def run(argv) -> dict:
  """``main.py`` in process: ``argv`` as the command line (``argv[0]`` is the program name).

  Returns the results dict; bad input raises ``SystemExit(2)`` after printing one ``error:``
  line, exactly as the command exits.
  """
  argv = [str(a) for a in argv]
  flag_values = flags.FlagValues()
  config_flag, workdir_flag = define_flags(flag_values, sys_argv=argv)
  rest = cli.parse_flags(argv, flag_values)  # A required flag left out is an error line too.
  if len(rest) > 1:
    cli.fail(f"unexpected arguments: {rest[1:]}")
  return train(cli.load_config(config_flag, argv), workdir_flag.value)


def run_script() -> None:
  """``python main.py ...``: absl's app.run (``--help``, flag files) around the same steps."""
  config_flag, workdir_flag = define_flags(flags.FLAGS)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train(cli.load_config(config_flag, sys.argv), workdir_flag.value)

  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, flags.FLAGS))
