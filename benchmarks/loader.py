r"""Input pipeline headroom: host loader samples/s beside the train step's samples/s.

  python benchmarks/loader.py                                   # digits (shipped, offline)
  python benchmarks/loader.py --config=experiments/barlow.py:data=cifar10 --npz
  python benchmarks/loader.py --config=experiments/barlow.py:runlocal --batches=3 \
      --loader_repeats=2 --steps=1 --repeats=1 --warmup=1      # a smoke test

The loader rate is the host pipeline alone: ``ssljax.data.make_train_iterator`` (grain over the
configured data set: shuffle, this process's shard, batching) -> ``sharding.global_batch`` (device
arrays on the mesh) -> ``jax.block_until_ready``; ``--batches`` batches per repeat, the median of
``--loader_repeats`` repeats after ``--loader_warmup`` untimed batches (iterator creation, which
loads in-memory data sets, is not timed). The step rate is ``benchmarks/throughput.py``'s
``measure`` on the same config (synthetic uint8 batches of ``input.image_size``; its flags
``--steps``, ``--repeats``, ``--warmup`` apply). ``ratio`` = loader / step: how many times faster
the host makes batches than the devices consume them (>= 3 leaves headroom).

``--npz`` writes a synthetic CIFAR-shaped data set (``--npz_examples`` random 32x32x3 uint8
images, 10 classes) into a temporary folder and reads it as ``input.data.name=npz``: the
in-memory path of a CIFAR-sized run without network access. Prints one JSON line.
"""

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

# Defines --config, --steps, --repeats and --warmup (the step measurement's flags).
from benchmarks import throughput  # noqa: E402

flags.FLAGS.set_default("config", "experiments/barlow.py")
_BATCHES = flags.DEFINE_integer("batches", 20, "Timed loader batches per repeat.")
_LOADER_REPEATS = flags.DEFINE_integer("loader_repeats", 5, "Loader repeats; median reported.")
_LOADER_WARMUP = flags.DEFINE_integer("loader_warmup", 3, "Untimed loader batches first.")
_NPZ = flags.DEFINE_bool("npz", False, "Read a synthetic CIFAR-shaped npz instead of the data.")
_NPZ_EXAMPLES = flags.DEFINE_integer("npz_examples", 50_000, "Training images in the --npz set.")
_STEP = flags.DEFINE_bool("step", True, "Also measure the train step (throughput.measure).")

REQUIRED_RATIO = 3.0


def write_synthetic_npz(path: str, *, num_train: int, num_test: int = 1_000, side: int = 32,
                        num_classes: int = 10, seed: int = 0) -> str:
  """Writes random uint8 ``images`` [num_train, side, side, 3] (+ ``test_*``) to ``path``."""
  import numpy as np

  rng = np.random.default_rng(seed)
  np.savez(path,
           images=rng.integers(0, 256, (num_train, side, side, 3), dtype=np.uint8),
           labels=rng.integers(0, num_classes, (num_train,), dtype=np.int64),
           test_images=rng.integers(0, 256, (num_test, side, side, 3), dtype=np.uint8),
           test_labels=rng.integers(0, num_classes, (num_test,), dtype=np.int64))
  return path


def measure_loader(config, *, batches: int, repeats: int, warmup: int) -> dict:
  """Samples/s of the host loader to device arrays (median over ``repeats``)."""
  import jax

  from ssljax import data, sharding, train

  mesh = sharding.make_mesh(config.mesh)
  batch_size = int(config.input.batch_size)
  sharding.check_batch_divides(batch_size, mesh, jax.process_count())
  t0 = time.perf_counter()
  it = data.make_train_iterator(config.input.data, global_batch_size=batch_size,
                                seed=int(config.seed), label_fraction=train.label_fraction(config))
  open_s = time.perf_counter() - t0
  shape = None
  for _ in range(warmup):
    batch = jax.block_until_ready(sharding.global_batch(next(it), mesh))
    shape = batch["image"].shape
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(batches):
      batch = jax.block_until_ready(sharding.global_batch(next(it), mesh))
    times.append((time.perf_counter() - t) / batches)
    shape = batch["image"].shape
  batch_s = statistics.median(times)
  return {
      "data": str(config.input.data.name), "batch_shape": list(shape),
      "loader_open_s": round(open_s, 2), "loader_batch_s": round(batch_s, 5),
      "loader_batch_s_all": [round(t, 5) for t in times],
      "loader_samples_per_s": round(batch_size / batch_s, 1),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # TFDS/JAX info lines would bury the JSON line.
  config = throughput._CONFIG.value
  with tempfile.TemporaryDirectory(prefix="ssljax-loader-") as tmp:
    if _NPZ.value:
      config.input.data.name = "npz"
      config.input.data.path = write_synthetic_npz(os.path.join(tmp, "synthetic_cifar.npz"),
                                                   num_train=_NPZ_EXAMPLES.value)
    result = {"config": next((a for a in sys.argv if a.startswith("--config=")),
                             "--config=experiments/barlow.py")}
    result.update(measure_loader(config, batches=_BATCHES.value,
                                 repeats=_LOADER_REPEATS.value, warmup=_LOADER_WARMUP.value))
  if _STEP.value:
    step = throughput.measure(config, steps=throughput._STEPS.value,
                              repeats=throughput._REPEATS.value, warmup=throughput._WARMUP.value)
    ratio = result["loader_samples_per_s"] / step["samples_per_s"]
    result.update({
        "method": step["method"], "encoder": step["encoder"], "batch": step["batch"],
        "devices": step["devices"], "backend": step["backend"],
        "step_compile_s": step["compile_s"], "step_s": step["step_s"],
        "step_samples_per_s": step["samples_per_s"], "ratio": round(ratio, 2),
        "required_ratio": REQUIRED_RATIO, "meets_required": ratio >= REQUIRED_RATIO,
    })
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main)
