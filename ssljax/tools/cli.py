"""What every ssljax command shares: config-flag parsing whose mistakes end in one ``error:`` line.

absl/ml_collections report a misspelt ``--config.<field>``, a bad value or an experiment file that
raised as exceptions (some with a traceback inside their text); :func:`parse_flags` turns each
into one line naming the flag and exits with status 2, as :func:`fail` does for any
:class:`~ssljax.errors.UserError`.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from absl import flags
from ml_collections import config_flags

EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
  """Prints ``error: <message>`` (one line) to stderr and exits with status 2."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS, sys_argv=None):
  """``--config=experiments/<m>.py[:variant]`` (locked, so a misspelt override is an error).

  ``sys_argv``: the command line the ``--config.<field>`` overrides are read from when it is not
  ``sys.argv`` (in-process calls).
  """
  return config_flags.DEFINE_config_file(
      "config", None, "Experiment file, e.g. experiments/barlow.py[:variant].", lock_config=True,
      flag_values=flag_values, sys_argv=None if sys_argv is None else list(sys_argv))


def config_argument(argv) -> str:
  """The ``--config=...`` argument of ``argv`` (for messages)."""
  return next((a for a in argv if str(a).startswith("--config=")), "--config")


def parse_flags(argv, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses ``argv`` into ``flag_values``; a config mistake ends in one line and exit status 2."""
  from ssljax.errors import UserError

  try:
    return flag_values(argv)
  except UserError as e:  # Raised by an experiment's get_config (e.g. an unknown variant).
    fail(str(e))
  except (AttributeError, KeyError) as e:  # A --config.<field> override that does not exist.
    text = " ".join(str(a) for a in e.args).replace("\\n", " ").replace("\n", " ")
    text = text.replace("\\'", "").replace("'", "").strip()
    name = text.split()[0].strip('"') if text else "?"
    culprit = [a.split("=")[0] for a in argv if a.startswith("--config.")
               and a.split("=")[0].split(".")[-1] == name]
    where = culprit[0] if culprit else f"field {name!r}"
    hint = text.split(None, 1)[1].strip() if len(text.split(None, 1)) > 1 else ""
    fail(f"{where}: no such config field{'; ' + hint if hint else ''} "
         "(the experiment file lists every field)")
  except (flags.Error, ValueError, TypeError) as e:
    text = str(e)
    if "Traceback" in text:  # get_config raised: its last line is the message that matters.
      last = [line for line in text.splitlines() if line.strip()][-1]
      text = f"{config_argument(argv)}: {last.split(': ', 1)[-1]}"
    fail(text)


def load_config(holder, argv):
  """The parsed config of a ``--config`` flag holder; an unloadable file is one ``error:`` line."""
  try:
    config = holder.value
    config.method  # noqa: B018 - a config file that failed to load raises on first access.
  except OSError as e:  # config_flags reports an unloadable config file only when it is read.
    detail = [line.strip() for line in str(e).splitlines() if "Errno" in line or "Error" in line]
    fail(f"cannot load {config_argument(argv)}: {detail[-1] if detail else e}")
  return config
