r"""Whole-photo canvases against centre squares: host cost per photo and device cost per view.

  python benchmarks/photo_loader.py                  # 64 synthetic 500x375 / 375x500 JPEGs
  python benchmarks/photo_loader.py --photos=8 --rounds=2 --views=8   # a smoke test

Host: JPEG decode + ``sources.resize_image(..., whole=True)`` (the photo as a 256 canvas) against
``whole=False`` (shorter side to 256, centre square), what a TFDS ImageNet/imagenette read does
per example. Device: one 224 px training view of a batch (``augment.ViewRecipe``, ImageNet
settings) from the canvases with their ``image_hw`` against the same view of the squares. Rounds
alternate the two settings; medians are reported. Prints one JSON line.
"""

import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_PHOTOS = flags.DEFINE_integer("photos", 64, "Synthetic JPEGs (half landscape, half portrait).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternated rounds; medians reported.")
_VIEWS = flags.DEFINE_integer("views", 32, "Batch size of the device view timing.")
_SIZE = flags.DEFINE_integer("size", 256, "Host canvas / square side (input.data.image_size).")


def synthetic_jpegs(count: int, seed: int = 0) -> list[bytes]:
  """Smooth random photos (low-frequency noise upsampled) encoded as JPEG, quality 90."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  out = []
  for i in range(count):
    h, w = (375, 500) if i % 2 == 0 else (500, 375)
    small = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
    pil = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
  return out


def host_ms(jpegs: list[bytes], *, whole: bool, size: int) -> float:
  """Milliseconds per photo: decode, then bring to ``size``."""
  from PIL import Image

  from ssljax.data import sources

  t0 = time.perf_counter()
  for data in jpegs:
    with Image.open(io.BytesIO(data)) as pil:
      image = np.asarray(pil.convert("RGB"))
    sources.resize_image(image, size, whole=whole)
  return 1e3 * (time.perf_counter() - t0) / len(jpegs)


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from PIL import Image

  from ssljax.data import augment, sources

  size, rounds = _SIZE.value, _ROUNDS.value
  jpegs = synthetic_jpegs(_PHOTOS.value)
  host = {True: [], False: []}
  for _ in range(rounds):
    for whole in (True, False):
      host[whole].append(host_ms(jpegs, whole=whole, size=size))

  photos = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in jpegs]
  n = _VIEWS.value
  picked = [photos[i % len(photos)] for i in range(n)]
  canvases = np.stack([sources.resize_image(p, size, whole=True)[0] for p in picked])
  squares = np.stack([sources.resize_image(p, size, whole=False)[0] for p in picked])
  hw = np.stack([p.shape[:2] for p in picked]).astype(np.int32)
  recipe = augment.ViewRecipe(size=224, blur_prob=1.0)
  view = jax.jit(lambda rng, batch: recipe(rng, batch))
  batches = {True: {"image": jnp.asarray(canvases), "image_hw": jnp.asarray(hw)},
             False: {"image": jnp.asarray(squares)}}
  device = {True: [], False: []}
  for whole in (True, False):
    jax.block_until_ready(view(jax.random.key(0), batches[whole]))  # compile
  for r in range(rounds):
    for whole in (True, False):
      t0 = time.perf_counter()
      jax.block_until_ready(view(jax.random.key(r), batches[whole]))
      device[whole].append(1e3 * (time.perf_counter() - t0) / n)

  med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
  print(json.dumps({
      "photos": len(jpegs), "size": size, "rounds": rounds,
      "host_ms_per_photo": {"whole": med(host[True]), "centre": med(host[False])},
      "host_whole_over_centre": round(statistics.median(host[True]) /
                                      statistics.median(host[False]), 3),
      "device_ms_per_view": {"whole": med(device[True]), "centre": med(device[False])},
      "device_whole_over_centre": round(statistics.median(device[True]) /
                                        statistics.median(device[False]), 3),
      "host_photos_per_s_per_core": {"whole": round(1e3 / statistics.median(host[True]), 1),
                                     "centre": round(1e3 / statistics.median(host[False]), 1)},
  }))


if __name__ == "__main__":
  app.run(main)
