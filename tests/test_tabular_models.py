"""Feature tokenizer and tabular transformer (ssljax.models.tabular), per t_jepa.md's oracle."""

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.models import tabular


def _batch():
  rng = np.random.default_rng(0)
  return {"x_num": jnp.asarray(rng.uniform(size=(3, 4)), jnp.float32),
          "x_cat": jnp.asarray([[0, 2], [1, 0], [2, 1]], jnp.int32)}


def test_tokens_are_the_per_column_affine_maps_and_table_rows():
  tok = tabular.FeatureTokenizer(width=8, cardinalities=(3, 4), n_reg=2)
  batch = _batch()
  params = tok.init(jax.random.key(0), batch)["params"]
  out = np.asarray(tok.apply({"params": params}, batch))
  assert out.shape == (3, 2 + 4 + 2, 8)  # (B, n_reg + D, H): [REG], numerical, categorical
  np.testing.assert_allclose(out[:, :2], np.broadcast_to(params["reg"], (3, 2, 8)))
  x = np.asarray(batch["x_num"])
  expected = x[..., None] * np.asarray(params["num_weight"]) + np.asarray(params["num_bias"])
  np.testing.assert_allclose(out[:, 2:6], expected, rtol=1e-6)
  table = np.asarray(params["cat_embedding"])
  # Column 1's table rows start after column 0's 3 codes.
  np.testing.assert_allclose(out[0, 7], table[3 + 2] + params["cat_bias"][1], rtol=1e-6)
  np.testing.assert_allclose(out[1, 6], table[1] + params["cat_bias"][0], rtol=1e-6)


def test_positions_use_the_configured_base():
  pe = tabular.sinusoidal_positions(5, 6, base=100.0)
  i = np.arange(3)
  np.testing.assert_allclose(pe[3, 0::2], np.sin(3 * 100.0 ** (-2 * i / 6)), rtol=1e-6)
  np.testing.assert_allclose(pe[3, 1::2], np.cos(3 * 100.0 ** (-2 * i / 6)), rtol=1e-6)


def test_masked_tokens_do_not_reach_the_visible_outputs():
  enc = tabular.TabularEncoder(depth=2, heads=2, ffn=16, dropout=0.0)
  x = jax.random.normal(jax.random.key(1), (2, 6, 8))
  mask = jnp.asarray([[1, 1, 1, 0, 0, 1]] * 2, bool)
  params = enc.init(jax.random.key(2), x, mask)
  y1 = enc.apply(params, x, mask)
  y2 = enc.apply(params, x.at[:, 3:5].add(5.0), mask)
  np.testing.assert_allclose(np.asarray(y1)[:, mask[0]], np.asarray(y2)[:, mask[0]], atol=1e-5)
  assert not np.allclose(np.asarray(y1)[:, 3], np.asarray(y2)[:, 3])


def test_table_mlp_is_dense_relu_over_numbers_and_column_embeddings():
  mlp = tabular.TableMLP(width=5, depth=2, cardinalities=(3, 4), cat_dim=2)
  batch = _batch()
  params = mlp.init(jax.random.key(0), batch)["params"]
  out = np.asarray(mlp.apply({"params": params}, batch))
  assert out.shape == (3, 5)
  table = np.asarray(params["cat_embedding"])
  assert table.shape == (3 + 4, 2)
  codes = np.asarray(batch["x_cat"]) + np.array([0, 3])  # Column 1's rows follow column 0's 3.
  x = np.concatenate([np.asarray(batch["x_num"]), table[codes].reshape(3, 4)], axis=1)
  for i in range(2):
    x = np.maximum(x @ np.asarray(params[f"dense{i}"]["kernel"]) + params[f"dense{i}"]["bias"], 0)
  np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)


def test_table_mlp_reads_numbers_only_or_codes_only():
  batch = _batch()
  for rows, cards in (({"x_num": batch["x_num"]}, ()), ({"x_cat": batch["x_cat"]}, (3, 4))):
    mlp = tabular.TableMLP(width=4, depth=1, cardinalities=cards)
    out = mlp.apply(mlp.init(jax.random.key(1), rows), rows)
    assert out.shape == (3, 4)


def test_tokenizer_and_attention_inits_are_the_official_pytorch_ones():
  # The official Tokenizer's weight and bias are raw nn.Parameters initialised by
  # kaiming_uniform_(a=sqrt(5)): bound = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in) = 1 / sqrt(H)
  # (fan_in = H, the last dimension); the published init_weights(trunc_normal) touches only
  # nn.Linear / nn.Embedding / nn.LayerNorm, so they keep it. nn.MultiheadAttention's packed
  # in_proj_weight [3H, H] keeps xavier_uniform_: bound sqrt(6 / (H + 3H)); its out_proj (an
  # nn.Linear) gets trunc_normal(0.02).
  h = 64
  tok = tabular.FeatureTokenizer(width=h, cardinalities=(5,), n_reg=1)
  rows = {"x_num": jnp.zeros((2, 300)), "x_cat": jnp.zeros((2, 1), jnp.int32)}
  params = tok.init(jax.random.key(0), rows)["params"]
  bound = 1.0 / np.sqrt(h)
  for name in ("num_weight", "num_bias", "reg", "cat_bias"):
    w = np.asarray(params[name])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound, name
  w = np.asarray(params["num_weight"])
  np.testing.assert_allclose(w.std(), bound / np.sqrt(3.0), rtol=0.03)  # uniform's std
  assert np.asarray(params["cat_embedding"]).std() < 0.025  # nn.Embedding: trunc_normal(0.02)

  block = tabular.Block(heads=8, ffn=16)
  p = block.init(jax.random.key(1), jnp.zeros((1, 3, h)))["params"]
  attn = p["MultiHeadDotProductAttention_0"]
  xavier = np.sqrt(6.0 / (h + 3 * h))
  for name in ("query", "key", "value"):
    k = np.asarray(attn[name]["kernel"])
    assert k.shape == (h, 8, h // 8)
    assert np.abs(k).max() <= xavier and np.abs(k).max() > 0.95 * xavier, name
    np.testing.assert_allclose(k.std(), xavier / np.sqrt(3.0), rtol=0.05)
    assert not np.asarray(attn[name]["bias"]).any()
  assert np.asarray(attn["out"]["kernel"]).std() < 0.025
