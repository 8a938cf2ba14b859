"""ssljax: self-supervised learning in JAX/Flax, written the functional way.

Importing ssljax changes no global state (environment, JAX settings). XLA:CPU flags that
ssljax's steps were measured to need are applied by an explicit call, before JAX starts::

  import ssljax
  ssljax.configure_cpu()  # main.py, the benchmarks and the tests do this first
"""

from ssljax.cpu import configure_cpu


def load_backbone(directory):
  """``(apply, variables)`` of a backbone written by ``python -m ssljax.export``: see
  :func:`ssljax.backbone.load_backbone`."""
  from ssljax.backbone import load_backbone as load

  return load(directory)


__version__ = "0.1.0"
__all__ = ["configure_cpu", "load_backbone"]
