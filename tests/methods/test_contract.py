"""The contract every method in ``ssljax/methods/`` keeps, checked for each one found there.

A new method module (with its ``experiments/<name>.py``) is covered without editing this file:
the parameter list comes from ``methods.available()``. Methods come from ``method_setup.build``
(runlocal config, tiny encoder, one init per session, shared with the per-method tests); whether
a method *learns* is ``test_learning.py``'s job.
"""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from method_setup import build

from ssljax import methods
from ssljax.data import pipeline
from ssljax.train import make_views

BATCH = 16
NAMES = methods.available()
# Methods whose loss takes labels for its metrics only (``Method.metric_labels``); the loss test
# below keeps this list in step with the methods.
METRIC_LABEL_METHODS = ["myow"]


def test_every_method_is_discovered():
  assert {"barlow", "simclr", "byol", "mocov3", "vicreg", "simsiam", "dino", "mae", "groco", "myow",
          "halp", "trust_ssl", "sla", "fst", "self_training"} <= set(NAMES)


_CACHE = {}


def _setup(name, digits_dir):
  """Method, params, state, a batch of real augmented digits views, and one jitted gradient.

  The gradient is taken with respect to params *and* state (the state's must be zero), so the
  same compiled program serves the finiteness check and the 1-device side of the sharding check.
  """
  if name not in _CACHE:
    config, method, params, state = build(name)
    data_cfg = config.input.data.copy_and_resolve_references()
    data_cfg.data_dir = digits_dir
    it = pipeline.make_train_iterator(data_cfg, global_batch_size=BATCH, seed=0)
    batch = {k: jnp.asarray(v) for k, v in next(it).items()}
    views = make_views(jax.random.key(1), batch, method.views)
    if method.uses_labels or method.metric_labels:
      # Half the labels hidden (-1), as a semi-supervised run with input.label_fraction=0.5 sees.
      labels = np.where(np.arange(BATCH) % 2 == 0, batch["label"], -1).astype(np.int32)
      method = method._replace(loss=functools.partial(method.loss, labels=labels))

    def loss_of(params, state, views):
      return method.loss(params, state, views, jax.random.key(2))

    # allow_int: a state may hold integer arrays (the recommenders' training-item CSR); their
    # "gradients" are float0 and the check below reads the floating ones.
    grad_fn = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True, allow_int=True))
    _CACHE[name] = (method, params, state, views, grad_fn)
  return _CACHE[name]


@pytest.mark.parametrize("name", NAMES)
def test_experiment_file_exists_and_names_the_method(name):
  config = importlib.import_module(f"experiments.{name}").get_config("runlocal")
  assert config.method == name
  doc = importlib.import_module(f"experiments.{name}").__doc__
  assert f"python main.py --config=experiments/{name}.py" in doc


@pytest.mark.parametrize("name", NAMES)
def test_loss_and_gradients_are_finite_and_state_gets_no_gradient(name, digits_dir):
  method, params, state, views, grad_fn = _setup(name, digits_dir)
  # Gradients with respect to the method state (EMA teachers, centres, BatchNorm statistics) must
  # be exactly zero: only ``params`` are trained.
  with jax.default_device(jax.devices()[0]):
    (loss, (new_state, metrics, rep)), (g_params, g_state) = grad_fn(params, state, views)
  assert np.isfinite(float(loss))
  leaves = jax.tree.leaves(g_params)
  assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
  for g in jax.tree.leaves(g_state):
    if jnp.issubdtype(g.dtype, jnp.floating):
      np.testing.assert_array_equal(g, 0.0)

  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert method.metric_labels == (name in METRIC_LABEL_METHODS)
  assert rep.shape[0] == BATCH and rep.ndim == 2
  assert all(np.isfinite(float(v)) for v in metrics.values())
  out = jax.jit(method.represent)(params, state, views[0])
  assert out["representation"].shape[0] == BATCH and out["embedding"].shape[0] == BATCH
  updated = jax.jit(method.update)(params, new_state, jnp.asarray(3))
  assert jax.tree.structure(updated) == jax.tree.structure(state)


@pytest.mark.parametrize("name", METRIC_LABEL_METHODS)
def test_metric_labels_do_not_reach_the_loss(name, digits_dir):
  """A method that takes labels for its metrics only computes the same loss, gradients and state
  with other labels (here all hidden, as on data without labels)."""
  method, params, state, views, grad_fn = _setup(name, digits_dir)
  assert method.metric_labels
  bare = method.loss.func if isinstance(method.loss, functools.partial) else method.loss

  def loss_of(params, state, views):
    return bare(params, state, views, jax.random.key(2), labels=np.full((BATCH,), -1, np.int32))

  hidden_fn = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True, allow_int=True))
  with jax.default_device(jax.devices()[0]):
    (loss, (new_state, _, _)), grads = grad_fn(params, state, views)
    (loss2, (new_state2, _, _)), grads2 = hidden_fn(params, state, views)
  assert float(loss) == float(loss2)
  jax.tree.map(np.testing.assert_array_equal, (grads, new_state), (grads2, new_state2))


@pytest.mark.parametrize("name", NAMES)
def test_backbone_gives_the_representation(name, digits_dir):
  """``Method.backbone`` says where the backbone is: applied on its own, with the variables it
  picks from the state, it gives ``represent``'s ``representation``. Checked after one SGD step
  and one ``update``, so an EMA teacher (DINO's evaluated backbone) differs from the student."""
  method, params, state, views, grad_fn = _setup(name, digits_dir)
  assert method.backbone is not None, f"{name}: Method.backbone is not set"
  with jax.default_device(jax.devices()[0]):
    (_, (new_state, _, _)), (g_params, _) = grad_fn(params, state, views)
    params = jax.tree.map(lambda p, g: p - 0.5 * g / (jnp.abs(g).max() + 1e-12), params, g_params)
    state = jax.jit(method.update)(params, new_state, jnp.asarray(3))
    want = jax.jit(method.represent)(params, state, views[0])["representation"]
    backbone = method.backbone
    got = jax.jit(lambda p, s, x: backbone.module.apply(backbone.variables(p, s), x, train=False))(
        params, state, views[0])
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sharded_loss_gradients_and_state_equal_single_device(name, digits_dir):
  """Global-batch semantics: 8 devices compute what 1 device computes."""
  method, params, state, views, grad_fn = _setup(name, digits_dir)
  with jax.default_device(jax.devices()[0]):
    (loss1, (state1, _, _)), (grads1, _) = grad_fn(params, state, views)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = [jax.device_put(v, NamedSharding(mesh, PartitionSpec("data"))) for v in views]
  replicated = jax.device_put((params, state), NamedSharding(mesh, PartitionSpec()))
  (loss8, (state8, _, _)), (grads8, _) = grad_fn(*replicated, sharded)
  assert len(jax.tree.leaves(sharded[0])[0].sharding.device_set) == 8
  np.testing.assert_allclose(float(loss8), float(loss1), rtol=2e-5, atol=1e-6)
  # Summation order differs across devices: allow float32 noise relative to the largest gradient.
  # Per-device batch statistics or negatives (the bugs global-batch code rules out) differ by O(1).
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5 * scale),
               grads8, grads1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), state8, state1)
