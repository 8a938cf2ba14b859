r"""Runs an ssljax experiment.

  python main.py --config=experiments/barlow.py --workdir=/tmp/barlow
  python main.py --config=experiments/barlow.py:data=cifar10 --workdir=/tmp/c10 \
      --config.total_steps=20

Several processes (multi-host): run the same command in every process with
``--config.distributed.num_processes=N --config.distributed.process_id=I
--config.distributed.coordinator_address=host:port``, or on a TPU pod slice / SLURM cluster set
``SSLJAX_DISTRIBUTED=1`` and let JAX discover the topology.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment file, e.g. experiments/barlow.py[:variant].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for outputs and checkpoints (resumes).")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
  """absl flag parsing, with config mistakes reported as one line instead of a traceback."""
  from ssljax.errors import UserError

  try:
    return flags.FLAGS(argv)
  except UserError as e:  # Raised by an experiment's get_config (e.g. an unknown variant).
    _fail(str(e))
  except (AttributeError, KeyError) as e:  # A --config.<field> override that does not exist.
    text = " ".join(str(a) for a in e.args).replace("\\n", " ").replace("\n", " ")
    text = text.replace("\\'", "").replace("'", "").strip()
    name = text.split()[0] if text else "?"
    culprit = [a.split("=")[0] for a in argv if a.startswith("--config.")
               and a.split("=")[0].split(".")[-1] == name]
    where = culprit[0] if culprit else f"field {name!r}"
    hint = text[len(name):].strip()
    _fail(f"{where}: no such config field{'; ' + hint if hint else ''} "
          "(the experiment file lists every field)")
  except (flags.Error, ValueError, TypeError) as e:
    text = str(e)
    if "Traceback" in text:  # get_config raised: its last line is the message that matters.
      last = [line for line in text.splitlines() if line.strip()][-1]
      text = f"{argv_config(argv)}: {last.split(': ', 1)[-1]}"
    _fail(" ".join(text.split()))


def argv_config(argv) -> str:
  return next((a for a in argv if a.startswith("--config=")), "--config")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from ssljax import distributed, train
  from ssljax.errors import UserError

  logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines would drown the progress lines.
  try:
    config = _CONFIG.value
    config.method  # noqa: B018 - a config file that failed to load raises on first access.
  except OSError as e:  # config_flags reports an unloadable config file only when it is read.
    detail = [line.strip() for line in str(e).splitlines() if "Errno" in line or "Error" in line]
    _fail(f"cannot load {argv_config(sys.argv)}: {detail[-1] if detail else e}")
  try:
    distributed.initialize(config)
    train.train_and_evaluate(config, _WORKDIR.value)
  except UserError as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
