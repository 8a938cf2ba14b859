"""Pieces several methods share: views from the config, backbones, heads, Linen calls, EMA.

Plain functions, not a base class: a method file calls what it needs and reads top to bottom.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.data.augment import ViewRecipe
from ssljax.errors import ConfigError
from ssljax.models.compose import EncoderHead
from ssljax.models.heads import MLP
from ssljax.models.resnet import make_encoder

PyTree = Any


# ------------------------------------------------------------------------------------- views


def view_recipes(config, names: Sequence[str], *,
                 optional: Sequence[str] = ()) -> tuple[ViewRecipe, ...]:
  """The recipes of the named views in ``config.input.views``, each repeated ``crops`` times.

  A view entry may carry ``crops`` (default 1): DINO's ``local`` view with ``crops=6`` yields six
  independently augmented crops of one recipe. The result is the flat list the loss receives, in
  the order of ``names``. Views named in ``optional`` may have ``crops=0`` (none of them).

  Raises:
    ConfigError: a named view is missing, ``crops`` is not a positive integer (or, for an
      optional view, a non-negative one), or a field is bad.
  """
  views = config.input.views
  missing = [n for n in names if n not in views]
  if missing:
    raise ConfigError(
        f"input.views has no {missing}; method={config.method!r} needs views {list(names)}"
    )
  recipes = []
  for name in names:
    fields = dict(views[name].to_dict() if hasattr(views[name], "to_dict") else views[name])
    crops = fields.pop("crops", 1)
    least = 0 if name in optional else 1
    if isinstance(crops, bool) or not isinstance(crops, int) or crops < least:
      why = ("" if least == 0 else f"; method={config.method!r} needs at least one crop of "
             f"this view")
      raise ConfigError(f"input.views.{name}.crops={crops!r} must be an integer >= {least} "
                        f"(the number of crops drawn with this recipe){why}")
    recipes += [ViewRecipe.from_config(fields, where=f"input.views.{name}")] * crops
  return tuple(recipes)


def view_count(config, name: str) -> int:
  """How many crops the view ``name`` contributes (its ``crops`` field, default 1)."""
  return int(config.input.views[name].get("crops", 1))


# --------------------------------------------------------------------------------- networks


def is_vit(config) -> bool:
  return str(config.encoder.name).startswith("vit")


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  """``config.compute_dtype`` as a JAX dtype (float32 when the config has no such field).

  ``'bfloat16'`` is mixed precision: the encoder, projector and decoder compute in bfloat16 while
  parameters, optimiser state, BatchNorm statistics (Flax reduces them in float32) and every loss
  stay float32. Encoders and heads return float32 features, so cross-correlations, softmaxes and
  normalisations inside the losses never run in bfloat16.
  """
  name = config.get("compute_dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"compute_dtype={name!r} is not supported; choose one of "
                      f"{', '.join(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def cpu_kernels(config) -> bool:
  """``config.cpu_kernels`` (default ``"auto"``) resolved for this run (``ssljax.cpu``).

  Methods build their modules once, when the run is built; this is where "auto" becomes True on
  the CPU backend and False elsewhere, so model code never asks which backend it runs on.
  """
  from ssljax.cpu import resolve_cpu_kernels

  return resolve_cpu_kernels(config.get("cpu_kernels", "auto"))


def make_backbone(config) -> tuple[nn.Module, int]:
  """The encoder named by ``config.encoder.name`` (a ResNet, or a ViT such as ``'vit:S/16'``).

  For a ViT every view size and the evaluation size must be multiples of the patch size; the
  position embeddings are created for the first view's size and resized for other sizes.

  Returns:
    ``(module, feature_dim)``; the module maps [B, H, W, 3] to [B, feature_dim].
  """
  enc = config.encoder
  if is_vit(config):
    from ssljax.models import vit

    _, patch = vit.parse_vit_name(enc.name, key="encoder.name")
    sizes = {f"input.views.{k}.size": int(v.size) for k, v in config.input.views.items()}
    sizes["input.image_size"] = int(config.input.image_size)
    for key, size in sizes.items():
      vit.check_patch_divides(size, patch, key=key, name=enc.name)
    native = next(iter(sizes.values()))
    return vit.make_vit(enc.name, image_size=native, posemb=enc.get("posemb", "learn"),
                        drop_path_rate=float(enc.get("drop_path_rate", 0.0)),
                        dtype=compute_dtype(config))
  return make_encoder(enc.name, stem=enc.get("stem", "imagenet"), width=enc.get("width", 64),
                      zero_init_residual=enc.get("zero_init_residual", False),
                      dtype=compute_dtype(config), cpu_kernels=cpu_kernels(config))


def encoder_projector(config) -> EncoderHead:
  """``EncoderHead(backbone, projector)`` from ``config.encoder`` and ``config.projector``.

  Both compute in ``config.compute_dtype``; other heads (predictors, classifiers) stay float32.
  """
  encoder, _ = make_backbone(config)
  return EncoderHead(encoder=encoder, head=make_mlp(config.projector, where="projector",
                                                    dtype=compute_dtype(config),
                                                    cpu_kernels=cpu_kernels(config)))


def config_mlp(config, key: str) -> MLP:
  """The MLP head ``config.<key>`` (a predictor, say), float32, with the run's cpu_kernels."""
  return make_mlp(config[key], where=key, cpu_kernels=cpu_kernels(config))


def make_mlp(cfg, *, where: str, dtype=jnp.float32, cpu_kernels: bool = False) -> MLP:
  """An MLP head from a config entry with ``hidden_dims``, ``out_dim`` and optional flags.

  ``dtype`` is the compute dtype; parameters and the output stay float32. ``cpu_kernels``: the
  resolved :func:`cpu_kernels` of the run (the XLA:CPU BatchNorm).
  """
  hidden = tuple(int(d) for d in cfg.hidden_dims)
  if int(cfg.out_dim) < 1 or any(d < 1 for d in hidden):
    raise ConfigError(f"{where}: hidden_dims={hidden} and out_dim={cfg.out_dim} must be >= 1")
  return MLP(hidden_dims=hidden, out_dim=int(cfg.out_dim), use_bias=cfg.get("use_bias", True),
             last_bn=cfg.get("last_bn", False), hidden_bn=cfg.get("hidden_bn", True), dtype=dtype,
             cpu_kernels=bool(cpu_kernels))


def check_positive(value, key: str) -> float:
  """``float(value)`` or a ConfigError naming ``key`` when it is not a number > 0."""
  if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
    raise ConfigError(f"{key}={value!r} must be a number > 0")
  return float(value)


def check_nonnegative(value, key: str) -> float:
  """``float(value)`` or a ConfigError naming ``key`` when it is not a number >= 0."""
  if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
    raise ConfigError(f"{key}={value!r} must be a number >= 0")
  return float(value)


def init_variables(module: nn.Module, rng, *args, **kwargs) -> tuple[PyTree, PyTree]:
  """``module.init`` split into ``(params, collections)``; collections hold e.g. batch_stats."""
  variables = dict(module.init(rng, *args, train=False, **kwargs))
  params = variables.pop("params")
  return params, variables


def apply_train(module: nn.Module, params, collections, *args, **kwargs):
  """A training-mode call that also returns the updated collections (BatchNorm statistics)."""
  variables = {"params": params, **collections}
  if not collections:
    return module.apply(variables, *args, train=True, **kwargs), collections
  out, new = module.apply(variables, *args, train=True, mutable=list(collections), **kwargs)
  return out, {**collections, **new}


def submodule_backbone(net: nn.Module, select=None, *, name: str = "encoder"):
  """The :class:`ssljax.methods.Backbone` of ``net``'s submodule ``name`` (``EncoderHead`` and
  the other nets whose backbone attribute is ``encoder``).

  ``select(params, method_state) -> (net's params, net's other collections)`` says where the net
  sits in the state; by default the method's params are the net's and ``method_state`` its
  collections (``{"batch_stats": ...}``).
  """
  from ssljax.methods import Backbone

  select = select or (lambda params, method_state: (params, method_state))

  def variables(params, method_state):
    net_params, collections = select(params, method_state)
    out = {"params": net_params[name]}
    for collection, tree in collections.items():
      if name in tree:
        out[collection] = tree[name]
    return out

  return Backbone(module=getattr(net, name), variables=variables)


def in_net(params, method_state):
  """``select`` of :func:`submodule_backbone` for methods that keep their network under
  ``"net"`` in both ``params`` and ``method_state`` (BYOL, MoCo v3, SimSiam, ...)."""
  return params["net"], method_state["net"]


def apply_eval(module: nn.Module, params, collections, *args, **kwargs):
  """An evaluation-mode call (running BatchNorm statistics, nothing mutated)."""
  return module.apply({"params": params, **collections}, *args, train=False, **kwargs)


def forward_groups(fn, views: Sequence[jax.Array], collections):
  """Runs ``fn(collections, x) -> (out, collections)`` once per run of equal-size views.

  Consecutive views of one size are concatenated along the batch and go through the network in
  one call (as DINO's multi-crop forward: BatchNorm statistics are over the concatenated crops);
  outputs are split back into one array per view.
  """
  outputs, i = [], 0
  while i < len(views):
    j = i
    while j < len(views) and views[j].shape == views[i].shape:
      j += 1
    k = j - i
    out, collections = fn(collections, jnp.concatenate(views[i:j], axis=0) if k > 1 else views[i])
    outputs += [jax.tree.map(lambda o, n=n, k=k: jnp.split(o, k, axis=0)[n], out)
                for n in range(k)]
    i = j
  return outputs, collections


# ------------------------------------------------------------------------------ EMA teachers


def cosine_momentum(step, *, base: float, final: float = 1.0, total_steps: int):
  """BYOL's schedule ``tau_k = final - (final - base) (cos(pi k / K) + 1) / 2`` (held at K)."""
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return final - (final - base) * (jnp.cos(math.pi * frac) + 1.0) / 2.0


def ema(target: PyTree, online: PyTree, momentum) -> PyTree:
  """``target <- momentum * target + (1 - momentum) * online``, leaf by leaf, no gradient."""
  online = jax.lax.stop_gradient(online)
  return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def check_momentum(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
    raise ConfigError(f"{key}={value!r} must be a number in [0, 1] (EMA momentum)")
  return float(value)


def as_float32(rep: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {k: v.astype(jnp.float32) for k, v in rep.items()}


# ------------------------------------------- online network + predictor + EMA target (BYOL,
# MoCo v3): params {"net", "predictor"}, method_state {"net", "predictor", "teacher"}.


def init_online_and_target(net: nn.Module, predictor: nn.Module, rng, images_bhwc):
  """Initial ``(params, method_state)``; the target starts as a copy of the online network."""
  net_rng, pred_rng = jax.random.split(rng)
  net_params, net_state = init_variables(net, net_rng, images_bhwc)
  _, z = apply_eval(net, net_params, net_state, images_bhwc)
  pred_params, pred_state = init_variables(predictor, pred_rng, z)
  params = {"net": net_params, "predictor": pred_params}
  teacher = {"params": net_params, "state": net_state}
  return params, {"net": net_state, "predictor": pred_state, "teacher": teacher}


def online_and_target_pass(net: nn.Module, predictor: nn.Module, params, method_state, views):
  """Each view through the online network + predictor and through the target network.

  One pass per view, as the official code: every view has its own BatchNorm batch statistics.

  Returns:
    ``(representations, predictions, targets, method_state)``: lists with one [B, .] array per
    view; targets are under stop_gradient.
  """
  net_state, pred_state = method_state["net"], method_state["predictor"]
  teacher = method_state["teacher"]
  teacher_state = teacher["state"]
  reps, preds, targets = [], [], []
  for x in views:
    (h, z), net_state = apply_train(net, params["net"], net_state, x)
    p, pred_state = apply_train(predictor, params["predictor"], pred_state, z)
    (_, t), teacher_state = apply_train(net, teacher["params"], teacher_state, x)
    reps.append(h)
    preds.append(p)
    targets.append(jax.lax.stop_gradient(t))
  state = {"net": net_state, "predictor": pred_state,
           "teacher": {"params": teacher["params"], "state": teacher_state}}
  return reps, preds, targets, state


def update_target(params, method_state, momentum):
  """EMA of the online network into ``method_state["teacher"]["params"]``."""
  teacher = method_state["teacher"]
  teacher = {"params": ema(teacher["params"], params["net"], momentum), "state": teacher["state"]}
  return {**method_state, "teacher": teacher}


def check_series(info, method: str) -> int:
  """The series length T of ``info``'s element spec, or a ConfigError naming the data when the
  examples are not time series (the sequence methods' first check)."""
  if "series" not in info.element_spec:
    raise ConfigError(f"method={method!r} trains on time series; input.data.name={info.name!r} "
                      f"yields {sorted(info.element_spec)} (use ucr:<Name>, uea:<Name>, ts, npz)")
  return int(info.element_spec["series"][0][0])
