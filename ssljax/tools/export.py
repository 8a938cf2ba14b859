"""``python -m ssljax.export --workdir=RUN --out=DIR [--step=N]``: a run's backbone, to take away.

Writes ``DIR/variables.msgpack``, ``DIR/backbone.json`` and, for ResNet-18/34/50,
``DIR/torchvision_<arch>.npz`` (see :mod:`ssljax.backbone`). Reads only the checkpoint's
parameters: the training data need not be on the machine. Bad input is one ``error:`` line and
exit status 2; an existing non-empty ``--out`` is never overwritten.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from ssljax.tools import cli


def run(argv) -> dict:
  """The command in process (``argv[0]`` is the program name); returns ``backbone.json``'s dict."""
  argv = [str(a) for a in argv]
  fv = flags.FlagValues()
  workdir = flags.DEFINE_string("workdir", None, "The run folder (its checkpoints/).",
                                flag_values=fv)
  out = flags.DEFINE_string("out", None, "A new folder for the exported backbone.",
                            flag_values=fv)
  step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).",
                              flag_values=fv)
  flags.mark_flags_as_required(["workdir", "out"], flag_values=fv)
  rest = cli.parse_flags(argv, fv)
  if len(rest) > 1:
    cli.fail(f"unexpected arguments: {rest[1:]}")
  from ssljax import backbone
  from ssljax.errors import UserError

  logging.set_verbosity(logging.WARNING)
  try:
    return backbone.export(workdir.value, out.value, step=step.value)
  except UserError as e:
    cli.fail(str(e))


def main() -> None:
  run(sys.argv)


if __name__ == "__main__":
  main()
