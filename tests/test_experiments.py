"""Experiment files: every variant builds, has the common fields, and matches its recipe."""

import jax
import jax.numpy as jnp
import pytest

from experiments import barlow
from ssljax import methods
from ssljax.errors import ConfigError

COMMON_FIELDS = ("seed", "total_steps", "total_epochs", "input.batch_size", "input.data.name",
                 "log_every_steps", "checkpoint_every_steps", "mesh", "sharding_rules")


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


@pytest.mark.parametrize("data", barlow.DATASETS)
@pytest.mark.parametrize("runlocal", [False, True])
def test_every_variant_builds_with_the_common_fields(data, runlocal):
  c = barlow.get_config(f"data={data}" + (",runlocal" if runlocal else ""))
  for field in COMMON_FIELDS:
    _get(c, field)
  assert c.input.data.name == data
  method = methods.make(c)
  assert [v.size for v in method.views] == [c.input.views.view1.size, c.input.views.view2.size]
  if runlocal:
    assert 0 < c.total_steps <= 10 and c.input.batch_size <= 16


def test_config_is_locked_against_typos():
  c = barlow.get_config()
  c.lock()
  with pytest.raises(AttributeError):
    c.optim.lrr = 0.1


def test_docstring_names_the_command_and_targets():
  doc = barlow.__doc__
  assert "python main.py --config=experiments/barlow.py --workdir=" in doc
  assert "92.10%" in doc and "73.2%" in doc


def test_cifar_recipe_is_solo_learn():
  c = barlow.get_config("data=cifar10")
  assert (c.encoder.name, c.encoder.stem) == ("resnet18", "cifar")
  assert c.input.batch_size == 256 and c.total_epochs == 1000
  assert (c.optim.name, c.optim.lr, c.optim.lr_scaling) == ("lars", 0.3, "none")
  assert tuple(c.projector.hidden_dims) == (2048, 2048) and c.projector.out_dim == 2048
  assert (c.barlow.scale_loss, c.barlow.lambd) == (0.1, 0.0051)
  assert c.input.views.view1.solarize_prob == 0.0 and c.input.views.view2.solarize_prob == 0.2


def test_imagenet_recipe_is_the_paper():
  c = barlow.get_config("data=imagenet2012")
  assert (c.encoder.name, c.encoder.stem, c.encoder.zero_init_residual) == (
      "resnet50", "imagenet", True)
  assert c.input.batch_size == 2048 and c.total_epochs == 1000
  assert tuple(c.projector.hidden_dims) == (8192, 8192) and c.projector.out_dim == 8192
  assert not c.projector.use_bias
  assert (c.optim.lr, c.optim.lr_scaling, c.optim.eta, c.optim.weight_decay) == (
      0.2, "linear", 0.001, 1e-6)
  assert c.optim.bias_bn_lr_scale == pytest.approx(0.0048 / 0.2)
  assert (c.input.views.view1.blur_prob, c.input.views.view2.blur_prob) == (1.0, 0.1)
  # ResNet-50 (23,508,032 without fc) + projector 2048->8192->8192->8192 without biases
  # (3 weight matrices) + 2 BatchNorms of 8192 (scale and bias).
  method = methods.make(c)
  params, _ = jax.eval_shape(method.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  count = sum(x.size for x in jax.tree.leaves(params))
  assert count == 23_508_032 + 2048 * 8192 + 2 * 8192 * 8192 + 2 * 2 * 8192


def test_unknown_variant_is_an_error():
  with pytest.raises(ConfigError, match="data='mnist' is unknown"):
    barlow.get_config("data=mnist")
