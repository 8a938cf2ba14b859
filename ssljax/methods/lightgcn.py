"""LightGCN (He, Deng, Wang, Li, Zhang, Wang, SIGIR 2020): embeddings propagated over the graph.

The encoder (:class:`ssljax.models.graph.LightGCN`) keeps only what the paper found to matter in
a graph convolution for collaborative filtering: neighbourhood aggregation over the symmetric
normalised user-item adjacency, ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (eq. 7; no feature
transformation, no non-linearity, no self-loop), for ``lightgcn.layers`` = K layers, and the mean
of the layers as the final embedding, ``E = sum_k E^(k) / (K + 1)`` (eq. 8). The score is
``<e_u, e_i>`` (eq. 9); training is BPR with uniform negatives that exclude the user's training
items and ``lambda ||E^(0)||^2`` on the batch's rows (eq. 15, ``bpr.reg_weight``), exactly as
BPR-MF (``ssljax.methods.bpr``, which this file reuses: with K = 0 LightGCN *is* MF).

The adjacency is built from the training split only and lives in ``method_state["graph"]`` (its
2E non-zeros; the propagation is a gather and a segment sum, no dense N x N matrix).

Config keys read (``experiments/lightgcn.py``): ``lightgcn.layers`` and those of BPR-MF.
"""

from __future__ import annotations

from ssljax.errors import ConfigError
from ssljax.methods import Method, bpr


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds LightGCN from an experiment config and the interactions' description ``info``."""
  del total_steps, steps_per_epoch
  layers = config.lightgcn.layers
  if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
    raise ConfigError(f"lightgcn.layers={layers!r} must be an integer >= 1 (the paper uses 1-4; "
                      "0 layers is BPR-MF: method=bpr)")
  return bpr.make_pairwise(config, info=info, name="lightgcn", layers=layers)
