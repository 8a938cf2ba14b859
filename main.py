r"""Runs an ssljax experiment.

  python main.py --config=experiments/barlow.py --workdir=/tmp/barlow
  python main.py --config=experiments/barlow.py:data=cifar10 --workdir=/tmp/c10 \
      --config.total_steps=20

Several processes (multi-host): run the same command in every process with
``--config.distributed.num_processes=N --config.distributed.process_id=I
--config.distributed.coordinator_address=host:port``, or on a TPU pod slice / SLURM cluster set
``SSLJAX_DISTRIBUTED=1`` and let JAX discover the topology.

The command itself is ``ssljax.tools.main`` (tests call it in process with ``run(argv)``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ssljax  # noqa: E402

ssljax.configure_cpu()  # XLA:CPU flags; they must be set before JAX creates its devices.

from ssljax.tools import main  # noqa: E402

if __name__ == "__main__":
  main.run_script()
