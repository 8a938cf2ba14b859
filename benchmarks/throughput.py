r"""Samples/s of the compiled train step for an experiment config (synthetic uint8 batches).

  python benchmarks/throughput.py --config=experiments/barlow.py:data=cifar10 \
      --config.input.batch_size=128 --steps=5 --repeats=3

A sample is one image (all of its views). The step includes the on-device augmentation, the
forward/backward of every view, the optimiser and the method update; no data loading. Compilation is
timed separately. Prints one JSON line; ``samples_per_s`` is the median over ``--repeats``
timings of ``--steps`` steps each.
"""

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ssljax  # noqa: E402

ssljax.configure_cpu()  # As main.py: the XLA:CPU flags, before JAX starts (no-op elsewhere).

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/barlow.py:data=cifar10",
                                          "Experiment file[:variant].", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")


def measure(config, *, steps: int, repeats: int, warmup: int) -> dict:
  import jax
  import numpy as np

  from ssljax import data, sharding, train

  size = int(config.input.image_size)
  info = data.DatasetInfo(name="synthetic", num_classes=10, image_shape=(size, size, 3),
                          num_train=50_000, num_eval=10_000)
  run = train.build(config, info=info)
  batch_size = int(config.input.batch_size)
  rng = np.random.default_rng(0)
  local = batch_size // jax.process_count()
  batch = sharding.global_batch({
      "image": rng.integers(0, 256, size=(local, size, size, 3), dtype=np.uint8),
      "label": rng.integers(0, 10, size=(local,), dtype=np.int32),
  }, run.mesh)
  state = train.create_state(run)
  t0 = time.perf_counter()
  compiled = run.step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - t) / steps)
  step_s = statistics.median(times)
  return {
      "impl": "ssljax", "method": config.method, "encoder": config.encoder.name,
      "batch": batch_size, "size": size, "views": len(run.method.views),
      "devices": jax.device_count(), "backend": jax.default_backend(),
      "compile_s": round(compile_s, 2), "step_s": round(step_s, 4),
      "step_s_all": [round(t, 4) for t in times],
      "samples_per_s": round(batch_size / step_s, 2),
  }


def main(argv):
  del argv
  print(json.dumps(measure(_CONFIG.value, steps=_STEPS.value, repeats=_REPEATS.value,
                           warmup=_WARMUP.value)), flush=True)


if __name__ == "__main__":
  app.run(main)
