"""Methods: each SSL method is a bundle of pure functions, found by name.

A method lives in ``ssljax/methods/<name>.py`` and defines
``make(config, *, total_steps, steps_per_epoch) -> Method`` (the run length feeds schedules such
as BYOL's EMA momentum and DINO's teacher temperature). Adding one
edits no registry: :func:`get` imports the module by name. There are no base classes; a method
closes over its networks and hyperparameters and hands the trainer five functions.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, NamedTuple, Sequence

import jax

from ssljax.data.augment import ViewRecipe
from ssljax.errors import ConfigError

PyTree = Any

# (rng, images_bhwc float32) -> (params, method_state)
InitFn = Callable[[jax.Array, jax.Array], tuple[PyTree, PyTree]]
# (params, method_state, views, rng) -> (loss, (method_state, metrics, representation_of_view_0));
# methods with ``uses_labels`` or ``metric_labels`` also take ``labels=`` int32 [B], -1 where the
# label is hidden.
LossFn = Callable[
    [PyTree, PyTree, Sequence[jax.Array], jax.Array],
    tuple[jax.Array, tuple[PyTree, dict[str, jax.Array], jax.Array]],
]
# (params, method_state, step) -> method_state   (EMA teachers, centres, queues; identity if none)
UpdateFn = Callable[[PyTree, PyTree, jax.Array], PyTree]
# (params, method_state, images_bhwc) -> {"representation": [B, F], "embedding": [B, K]} (eval mode)
RepresentFn = Callable[[PyTree, PyTree, jax.Array], dict[str, jax.Array]]


class Backbone(NamedTuple):
  """The network a method trains for others to use, and where its variables sit in the state.

  Attributes:
    module: the backbone as a Linen module: ``module.apply(variables, x, train=False)`` -> [B, F]
      equals ``represent(params, method_state, x)["representation"]`` (the contract test checks
      it for every method); ``x`` is what ``represent`` reads (normalised images, table rows).
    variables: ``(params, method_state) -> {"params": ..., "batch_stats": ...}``: the module's
      variable collections inside a training state (the EMA teacher's for DINO, whose evaluations
      use the teacher). Export, ``encoder.init_from`` and ``ssljax.evaluate`` go through it.
  """

  module: Any
  variables: Callable[[PyTree, PyTree], dict[str, PyTree]]


class Method(NamedTuple):
  """The functions a trainer needs from an SSL method.

  Attributes:
    name: the method's module name.
    views: the augmentation recipe of each view the loss consumes, in order. The trainer augments
      the uint8 batch once per recipe (on device) and passes the list to ``loss``.
    init: builds parameters and ``method_state`` (BatchNorm statistics, EMA teachers, ...).
    loss: the training loss on the augmented views; also returns the new method state, a dict of
      scalar metrics, and the backbone representation of the first view (for the online probe).
    update: the post-optimiser update of ``method_state`` (identity for methods without teachers).
    represent: frozen features for evaluation: ``representation`` (backbone output, what linear
      probes and kNN use) and ``embedding`` (projector output, where the loss and RankMe live).
      Methods that train a classifier may add ``logits`` [B, num_classes]; the evaluator then
      reports its accuracy as ``classifier_top1`` (and ``logits_<name>`` as
      ``classifier_top1_<name>``).
    uses_labels: the loss reads labels (supervised, semi-supervised methods). The trainer then
      calls ``loss(params, method_state, views, rng, labels=labels_b)`` with ``labels_b`` int32
      [B] and -1 for the examples whose label is hidden (``input.label_fraction`` < 1).
    metric_labels: the loss takes ``labels=`` (as with ``uses_labels``) for its metrics only
      (MYOW's mined-pair label agreement), never for the loss value. Unlike ``uses_labels`` it
      needs no labelled data: without class labels the trainer passes all -1. The contract test
      checks that the loss, its gradients and the new state do not depend on the labels.
    backbone: where the backbone is (:class:`Backbone`): what ``ssljax.export`` writes and
      ``encoder.init_from`` starts from.
    optimizer: optional ``tx -> tx``: wraps the optimiser ``config.optim`` builds, for methods
      whose recipe changes it during training (SEPT restarts Adam when its joint phase begins).
  """

  name: str
  views: tuple[ViewRecipe, ...]
  init: InitFn
  loss: LossFn
  update: UpdateFn
  represent: RepresentFn
  uses_labels: bool = False
  backbone: Backbone | None = None
  metric_labels: bool = False
  optimizer: Callable[[Any], Any] | None = None


def available() -> list[str]:
  """Names of the methods shipped in ``ssljax/methods/``."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str):
  """Imports ``ssljax.methods.<name>`` (the module that defines ``make(config)``)."""
  if name not in available():
    raise ConfigError(f"method={name!r} is not a known method; choose one of {available()}")
  return importlib.import_module(f"{__name__}.{name}")


def make(config, *, total_steps: int, steps_per_epoch: int, num_classes: int = 10,
         info=None) -> Method:
  """Builds the method named by ``config.method`` for a run of ``total_steps`` steps.

  ``num_classes`` (the data set's; the trainer passes it, tests rely on the digits' 10) is passed
  on to the methods whose ``make`` takes it (those that train a classifier); the others never
  see it. ``info`` (the data set's :class:`ssljax.data.DatasetInfo`: element spec, categorical
  cardinalities) likewise goes to the methods whose ``make`` takes it (the tabular ones, whose
  tokenizer needs the columns); None there is a ConfigError naming the data.
  """
  if int(total_steps) < 1 or int(steps_per_epoch) < 1:
    raise ConfigError(f"total_steps={total_steps} and steps_per_epoch={steps_per_epoch} must be "
                      ">= 1; check total_steps/total_epochs and the batch size")
  module = get(config.method)
  kwargs = dict(total_steps=int(total_steps), steps_per_epoch=int(steps_per_epoch))
  wanted = inspect.signature(module.make).parameters
  if "num_classes" in wanted:
    kwargs["num_classes"] = int(num_classes)
  if "info" in wanted:
    if info is None:
      raise ConfigError(f"method={config.method!r} needs the data set's description (its "
                        "columns); build it through ssljax.train.build or pass info=")
    kwargs["info"] = info
  try:
    return module.make(config, **kwargs)
  except AttributeError as e:
    # A ConfigDict without a key the method reads (e.g. --config.method=dino on another method's
    # experiment file) raises AttributeError(KeyError('dino')); say which file has the settings.
    missing = e.args[0] if e.args else None
    if not isinstance(missing, KeyError):
      raise
    raise ConfigError(
        f"method={config.method!r} reads config key {missing.args[0]} that this config lacks; "
        f"start from experiments/{config.method}.py, which defines its settings") from None


def identity_update(params: PyTree, method_state: PyTree, step: jax.Array) -> PyTree:
  """``update`` for methods whose state changes only inside the loss (e.g. BatchNorm statistics)."""
  del params, step
  return method_state
