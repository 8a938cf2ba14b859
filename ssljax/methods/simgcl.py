"""SimGCL (Yu, Yin, Xia, Chen, Cui, Nguyen, SIGIR 2022): graph contrastive learning without
graph augmentation.

The encoder is LightGCN over the full training graph. Instead of SGL's edge dropout, each
contrastive view adds uniform noise to every propagated layer,
``E^(k) <- E^(k) + eps * sign(E^(k)) ⊙ normalize(Δ^(k))``, ``Δ^(k)`` ~ U(0, 1)
(:func:`ssljax.models.graph.perturb_embeddings`: a vector of norm ``eps`` in the embedding's
orthant; the noisy layer is what the next layer propagates). Two such views are contrasted with
InfoNCE over the batch's distinct users and, separately, its distinct positive items
(:func:`ssljax.losses.node_infonce_loss`); the BPR branch and evaluation use the clean
propagation:

  ``L = L_BPR + lambda (L_cl^user + L_cl^item) + reg ||E^(0)||^2``

with ``lambda`` ``simgcl.cl_weight``, ``eps`` ``simgcl.eps``, ``tau`` ``simgcl.temperature``,
``reg`` ``bpr.reg_weight``.

Layer mean: SimGCL's official code (SELFRec, ``model/graph/SimGCL.py``, checked) averages
layers 1..K only, *without* the layer-0 embedding, in both the clean and the noisy encoder
(unlike LightGCN's eq. 8); ``simgcl.include_ego=False`` (the default) does the same, ``True``
gives LightGCN's mean (then with ``cl_weight=0`` the loss is LightGCN's exactly).
Layer 0 never gets noise. As the official code, the contrastive anchors are the batch's unique
users and items (``tf.unique``) and InfoNCE is a mean over them (one direction). Deviation: the
L2 penalty is LightGCN's (on the batch's layer-0 rows), where SELFRec's SimGCL applies it to
the propagated rows.

Config keys read (``experiments/simgcl.py``): ``simgcl.layers``, ``simgcl.eps``,
``simgcl.cl_weight``, ``simgcl.temperature``, ``simgcl.include_ego`` and those of BPR-MF
(``encoder.*``, ``bpr.*``).
"""

from __future__ import annotations

import functools

import jax

from ssljax.errors import ConfigError
from ssljax.methods import Method, _common, bpr, sgl
from ssljax.models import graph


def settings(config) -> dict:
  """``simgcl.*`` checked: ``{"layers", "eps", "cl_weight", "temperature", "include_ego"}``.

  Raises:
    ConfigError: one line naming the bad key.
  """
  cfg = config.simgcl
  layers = cfg.layers
  if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
    raise ConfigError(f"simgcl.layers={layers!r} must be an integer >= 1 (the paper uses 1-3)")
  include_ego = cfg.include_ego
  if not isinstance(include_ego, bool):
    raise ConfigError(f"simgcl.include_ego={include_ego!r} must be True or False")
  return {"layers": layers, "include_ego": include_ego,
          "eps": _common.check_nonnegative(cfg.eps, "simgcl.eps"),
          "cl_weight": _common.check_nonnegative(cfg.cl_weight, "simgcl.cl_weight"),
          "temperature": _common.check_positive(cfg.temperature, "simgcl.temperature")}


def cl_loss(net, variables, batch, key, *, eps: float, temperature: float):
  """``(L_cl^user, L_cl^item)`` of a batch: InfoNCE between two noisy propagations.

  Args:
    net: the :class:`ssljax.models.graph.PerturbedLightGCN` encoder; ``variables`` its
      ``{"params", "graph"}``.
    batch: ``{"user", "item"}`` int32 [B].
    key: PRNG key; view ``v`` (0, 1) draws its noise from ``fold_in(key, v)``.
    eps: the noise's norm; temperature: tau.

  Returns:
    Two float32 scalars.
  """
  views = [net.apply(variables, jax.random.fold_in(key, v), eps=eps,
                     method=graph.PerturbedLightGCN.tables)[:2] for v in range(2)]
  return sgl.batch_node_infonce(views, batch, temperature=temperature)


def make(config, *, total_steps: int, steps_per_epoch: int, info) -> Method:
  """Builds SimGCL from an experiment config and the interactions' description ``info``."""
  del total_steps, steps_per_epoch
  s = settings(config)

  def extra_loss(net, variables, method_state, batch, key):
    del method_state
    cl_user, cl_item = cl_loss(net, variables, batch, key, eps=s["eps"],
                               temperature=s["temperature"])
    return s["cl_weight"] * (cl_user + cl_item), {"cl_user": cl_user, "cl_item": cl_item}

  encoder = functools.partial(graph.PerturbedLightGCN, include_ego=s["include_ego"])
  return bpr.make_pairwise(config, info=info, name="simgcl", layers=s["layers"],
                           encoder=encoder, extra_loss=extra_loss)
