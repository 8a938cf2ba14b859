"""``python -m ssljax.evaluate --workdir=RUN`` (or ``--backbone=DIR``): the evaluators again.

Re-runs the run's evaluators (``eval.evals``: kNN + linear probe, ridge, ...) on a checkpoint or
on an exported backbone, reading only the evaluation data (``eval.data``, else the run's data
set): the training data need not be on the machine, and RankMe is taken on the probe data's
train split. Any ``eval.*`` option, the probe data included, is a flag::

    python -m ssljax.evaluate --workdir=/tmp/barlow --config.eval.knn_k='(10, 50)' \\
        --config.eval.data.name=folder --config.eval.data.path=/data/labelled

Results go to ``<RUN or DIR>/evaluations/probe_step<N>.json`` (``_2``, ``_3``, ... when that
exists) or ``--out``; the run's ``results.json`` is never touched. Bad input is one ``error:``
line and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from ssljax.tools import cli


def _flag_value(argv, name: str) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _free_path(path: str) -> str:
  """``path``, or ``<stem>_2<ext>``, ``_3``, ... : the first that does not exist."""
  stem, ext = os.path.splitext(path)
  candidate, n = path, 1
  while os.path.exists(candidate):
    n += 1
    candidate = f"{stem}_{n}{ext}"
  return candidate


def parse(argv, define_more=None):
  """Parses ``--workdir`` / ``--backbone``, ``--step`` and ``--config.<field>`` overrides of the
  run's config (``define_more(flag_values)`` adds a tool's own flags).

  Returns:
    ``(config, workdir, backbone_dir, step, flag_values)``; bad input exits with one line.
  """
  from ssljax import backbone
  from ssljax.errors import UserError

  argv = [str(a) for a in argv]
  logging.set_verbosity(logging.WARNING)
  workdir, folder = _flag_value(argv, "workdir"), _flag_value(argv, "backbone")
  if bool(workdir) == bool(folder):
    cli.fail("pass one of --workdir=<run folder> or --backbone=<exported backbone folder>")
  try:
    config = backbone.run_config(workdir)[0] if workdir else backbone.read(folder).config
  except UserError as e:
    cli.fail(str(e))
  from ssljax.evals import protocols

  with config.unlocked():  # Runs written before the protocols existed get their defaults.
    config.eval.protocols = config.eval.get("protocols") or protocols.default_config()
  fv = flags.FlagValues()
  flags.DEFINE_string("workdir", None, "The run folder (its checkpoints/).", flag_values=fv)
  flags.DEFINE_string("backbone", None, "An exported backbone folder.", flag_values=fv)
  step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).",
                              flag_values=fv)
  config_flags.DEFINE_config_dict("config", config, "The run's config (override eval.*).",
                                  flag_values=fv, lock_config=True, sys_argv=argv)
  if define_more is not None:
    define_more(fv)
  rest = cli.parse_flags(argv, fv)
  if len(rest) > 1:
    cli.fail(f"unexpected arguments: {rest[1:]}")
  return fv.config, workdir, folder, step.value, fv


def run(argv) -> dict:
  """The command in process (``argv[0]`` is the program name); returns the results."""
  from ssljax.errors import UserError
  from ssljax.evals import protocols

  def define_more(fv):
    flags.DEFINE_string("out", None, "Results file (default: evaluations/ in the folder).",
                        flag_values=fv)
    flags.DEFINE_enum("protocol", "probe", protocols.PROTOCOLS,
                      "probe: the fast frozen probes (eval.evals); linear: a linear classifier "
                      "trained with augmentation (eval.protocols.linear); finetune: the whole "
                      "network (eval.protocols.finetune).", flag_values=fv)

  config, workdir, folder, step, fv = parse(argv, define_more)
  if fv.out and os.path.exists(fv.out):
    cli.fail(f"--out={fv.out} exists; pass a new file (nothing was overwritten)")
  try:
    if fv.protocol == "probe":
      results = evaluate(config, workdir=workdir, backbone_dir=folder, step=step)
    else:
      results = train_protocol(config, fv.protocol, workdir=workdir, backbone_dir=folder,
                               step=step)
  except UserError as e:
    cli.fail(str(e))
  path = fv.out or _free_path(os.path.join(workdir or folder, "evaluations",
                                           f"{fv.protocol}_step{results['step']}.json"))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(results, f, indent=2, sort_keys=True)
    f.write("\n")
  print(f"results: {json.dumps(results)}")
  print(f"wrote {path}")
  return results


def evaluate(config, *, workdir: str | None = None, backbone_dir: str | None = None,
             step: int | None = None) -> dict:
  """The evaluators of ``config.eval`` on ``workdir``'s checkpoint or an exported backbone."""
  evaluator, state = prepare(config, workdir=workdir, backbone_dir=backbone_dir, step=step)
  results = evaluator.run(state)
  results["step"] = int(state.step)
  results["protocol"] = "probe"
  return results


def train_protocol(config, protocol: str, *, workdir: str | None = None,
                   backbone_dir: str | None = None, step: int | None = None) -> dict:
  """Linear evaluation with augmentation or fine-tuning (:mod:`ssljax.evals.protocols`) of a
  checkpoint's or an exported backbone, on the probe data."""
  import jax

  from ssljax import backbone, data, sharding
  from ssljax.evals import protocols
  from ssljax.evals.evaluator import probe_data_config

  probe = probe_data_config(config)
  info = data.get_info(probe)
  if workdir:
    run = backbone.restore(workdir, step)
    module, at = run.method.backbone.module, run.step
    variables = backbone.backbone_variables(run.method, run.params, run.method_state)
  else:
    exported = backbone.read(backbone_dir)
    module, variables = exported.module, exported.variables
    at = int(exported.meta.get("step", 0))
  mesh = sharding.make_mesh((("data", -1),))
  variables = jax.device_put(variables, sharding.replicated(mesh))
  results = protocols.train_classifier(protocol, config.eval.protocols[protocol], module=module,
                                       variables=variables, image_cfg=config.input,
                                       data_cfg=probe, info=info, mesh=mesh,
                                       seed=int(config.seed))
  results["step"] = at
  return results


def prepare(config, *, workdir: str | None = None, backbone_dir: str | None = None,
            step: int | None = None):
  """``(Evaluator, state)`` for a checkpoint or an exported backbone, reading only the probe
  data (``eval.data``, else the run's data set), which stands in for the training data."""
  import jax
  import jax.numpy as jnp

  from ssljax import backbone, data, sharding
  from ssljax.evals.evaluator import Evaluator, probe_data_config
  from ssljax.train import TrainState

  probe = probe_data_config(config)
  with config.unlocked():
    config.input.data = probe
  info = data.get_info(probe)
  if workdir:
    run = backbone.restore(workdir, step)
    method, params, method_state, at = run.method, run.params, run.method_state, run.step
  else:
    exported = backbone.read(backbone_dir)
    module = exported.module

    def represent(variables, method_state, x):
      del method_state
      h = module.apply(variables, x, train=False).astype(jnp.float32)
      return {"representation": h, "embedding": h}

    method = backbone.build_method(exported.config, exported.info)._replace(represent=represent)
    params, method_state, at = exported.variables, {}, int(exported.meta.get("step", 0))
  mesh = sharding.make_mesh((("data", -1),))
  params, method_state = jax.device_put((params, method_state), sharding.replicated(mesh))
  state = TrainState(step=jnp.asarray(at, jnp.int32), rng=jax.random.key_data(jax.random.key(0)),
                     params={"method": params}, opt_state=None, method_state=method_state)
  return Evaluator(config, method, mesh, info), state


def main() -> None:
  run(sys.argv)


if __name__ == "__main__":
  main()
