"""ssljax: self-supervised learning in JAX/Flax, written the functional way."""

__version__ = "0.1.0"
