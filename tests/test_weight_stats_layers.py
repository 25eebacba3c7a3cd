"""Fu 2016 weight statistics of dense, embedding and attention layers.

``lr_meta.features.weight_stats.as_conv_layout`` reads each weight as a conv
kernel ``(kh, kw, in, out)``; ``lr_meta.features.params`` finds the layers and
infers their kind. The reference is the numpy/scipy loop of
``tests/weight_stats_reference.py`` on the kernel reshaped here by hand.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import features
from lr_meta.features import params as params_lib
from lr_meta.features import weight_stats as ws
from lr_meta.tasks import models
import weight_stats_reference as reference  # tests/weight_stats_reference.py

VOCAB, WIDTH, HEADS, HEAD_DIM, ATTN_OUT, HIDDEN = 13, 8, 2, 3, 5, 7


class _Block(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.MultiHeadDotProductAttention(
        num_heads=HEADS, qkv_features=HEADS * HEAD_DIM, out_features=ATTN_OUT,
        name="attn")(x)
    return nn.Dense(HIDDEN, name="mlp")(nn.relu(x))


class _TinyLM(nn.Module):
  """Embedding, one attention block and an LM head; no conv layer."""

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(VOCAB, WIDTH, name="embed")(tokens)
    x = _Block(name="block00")(x)
    return nn.Dense(VOCAB, name="head")(x)


@pytest.fixture(scope="module")
def lm_variables():
  return _TinyLM().init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


def _raw(variables, *path):
  node = variables["params"]
  for key in path:
    node = node[key]
  return np.asarray(node)


# layer -> (kind, the weight as (in, out) by hand).
_LAYERS = {
    "head": ("dense", lambda v: _raw(v, "head", "kernel")),
    "embed": ("embedding", lambda v: _raw(v, "embed", "embedding")),
    "block00/attn/query": (
        "attention_qkv", lambda v: _raw(v, "block00", "attn", "query", "kernel")
        .reshape(WIDTH, HEADS * HEAD_DIM)),
    "block00/attn/out": (
        "attention_out", lambda v: _raw(v, "block00", "attn", "out", "kernel")
        .reshape(HEADS * HEAD_DIM, ATTN_OUT)),
}


def test_weight_layers_and_kinds(lm_variables):
  attn = ("block00", "attn")
  assert params_lib.weight_layers(lm_variables) == [
      (("embed",), "embedding"),
      (attn + ("query",), "attention_qkv"),
      (attn + ("key",), "attention_qkv"),
      (attn + ("value",), "attention_qkv"),
      (attn + ("out",), "attention_out"),
      (("block00", "mlp"), "dense"),
      (("head",), "dense"),
  ]
  # The kernel-only lookups are unchanged: no embedding, and 3-D kernels are
  # neither conv nor dense.
  assert ("embed",) not in params_lib.kernel_layers(lm_variables)
  assert params_lib.conv_layers(lm_variables) == []
  assert params_lib.dense_layers(lm_variables) == [("block00", "mlp"),
                                                    ("head",)]
  with pytest.raises(ValueError, match="No layer 'embed' with a 'kernel'"):
    params_lib.get_kernel(lm_variables, "embed")
  assert params_lib.get_weight(lm_variables, ("embed",)).shape == (VOCAB,
                                                                   WIDTH)
  assert params_lib.get_weight(lm_variables, attn + ("query",)).shape == (
      WIDTH, HEADS, HEAD_DIM)
  assert params_lib.weight_kind(lm_variables, "block00/attn/key") == (
      "attention_qkv")


@pytest.mark.parametrize("layer", sorted(_LAYERS))
def test_features_match_reference_on_reshaped_kernel(lm_variables, layer):
  kind, by_hand = _LAYERS[layer]
  assert params_lib.weight_kind(lm_variables, layer) == kind
  kernel = by_hand(lm_variables)
  got = np.asarray(features.layer_weight_stats(lm_variables, 0.02, layer))
  assert got.shape == (ws.NUM_WEIGHT_FEATURES,) == (193,)
  np.testing.assert_allclose(
      got, reference.reference_features(kernel[None, None], 0.02,
                                   zero_if_constant=True),
      rtol=2e-4, atol=2e-5)
  weight = params_lib.get_weight(lm_variables, layer)
  np.testing.assert_array_equal(ws.as_conv_layout(weight, kind),
                                kernel[None, None])


def test_conv_is_bit_identical():
  variables = models.LeNet5().init(jax.random.key(0),
                                   jnp.zeros((1, 28, 28, 1)))
  kernel = variables["params"]["conv0"]["kernel"]
  assert ws.as_conv_layout(kernel, "conv") is kernel
  assert params_lib.weight_kind(variables, "conv0") == "conv"
  np.testing.assert_array_equal(
      features.layer_weight_stats(variables, 0.01, "conv0"),
      ws.weight_stats_features(kernel, 0.01))
  # The default is still the last conv layer, also under jit.
  assert ws.default_weight_stats_layer(variables) == ("conv1",)
  np.testing.assert_array_equal(
      jax.jit(features.layer_weight_stats)(variables, 0.01),
      jax.jit(ws.weight_stats_features)(variables["params"]["conv1"]["kernel"],
                                        0.01))


def _dense_features(kernel):
  return np.asarray(features.layer_weight_stats(
      {"fc": {"kernel": jnp.asarray(kernel, jnp.float32)}}, 0.1, "fc"))


def test_columns_are_output_units():
  # Output unit j of a dense kernel (4, 3) holds [1, 2, 3, 4] + 10 j.
  kernel = np.arange(1.0, 5.0)[:, None] + 10.0 * np.arange(3.0)[None, :]
  feats = _dense_features(kernel)
  idx = ws.feature_index
  spread = np.std([1.0, 2.0, 3.0, 4.0])  # of every column
  np.testing.assert_allclose(feats[idx("columns/max/mean")], 22.5)
  np.testing.assert_allclose(feats[idx("columns/min/mean")], 2.5)
  np.testing.assert_allclose(feats[idx("columns/max/std")], spread, rtol=1e-6)
  np.testing.assert_allclose(feats[idx("columns/std/std")], 0.0, atol=1e-6)
  # Rows are input units: input unit i holds i + 1 + [0, 10, 20].
  np.testing.assert_allclose(feats[idx("rows/max/mean")], 14.0)
  np.testing.assert_allclose(feats[idx("rows/min/mean")], 11.0)
  # Filters are single weights: their std is 0, their means the weights.
  np.testing.assert_allclose(feats[idx("filters/max/mean")], 24.0)
  np.testing.assert_allclose(feats[idx("filters/max/std")], 0.0)

  # Permuting the output units leaves every aggregate unchanged.
  permuted = _dense_features(kernel[:, [2, 0, 1]])
  np.testing.assert_allclose(permuted, feats, rtol=1e-6, atol=1e-6)

  # Scaling output unit 0 by 100 ([100, 200, 300, 400]) moves the max mean and
  # std of the columns to it, the min std to the others.
  scaled = kernel.copy()
  scaled[:, 0] *= 100.0
  feats = _dense_features(scaled)
  np.testing.assert_allclose(feats[idx("columns/max/mean")], 250.0)
  np.testing.assert_allclose(feats[idx("columns/min/mean")], 12.5)
  np.testing.assert_allclose(feats[idx("columns/max/std")], 100.0 * spread,
                             rtol=1e-6)
  np.testing.assert_allclose(feats[idx("columns/min/std")], spread, rtol=1e-6)
  np.testing.assert_allclose(feats[idx("columns/median/mean")], 22.5)


@pytest.mark.parametrize("name", ["query", "out"])
def test_attention_split_by_hand(name):
  # Unit u = head * HEAD_DIM + d of the heads x head_dim axes; the weight is
  # (position on the model axis) + 100 * u for query, u + 100 * o for out.
  units = HEADS * HEAD_DIM
  if name == "query":
    kernel = (np.arange(WIDTH)[:, None, None]
              + 100.0 * np.arange(units).reshape(1, HEADS, HEAD_DIM))
    num_rows, num_cols = WIDTH, units
  else:
    kernel = (np.arange(units).reshape(HEADS, HEAD_DIM, 1)
              + 100.0 * np.arange(ATTN_OUT)[None, None, :])
    num_rows, num_cols = units, ATTN_OUT
  params = {"attn": {"query": {"kernel": jnp.zeros((WIDTH, HEADS, HEAD_DIM))},
                     "out": {"kernel": jnp.zeros((HEADS, HEAD_DIM, ATTN_OUT))}}}
  params["attn"][name]["kernel"] = jnp.asarray(kernel, jnp.float32)
  feats = np.asarray(features.layer_weight_stats(params, 0.1, ("attn", name)))
  idx = ws.feature_index
  # Columns (output units) are spaced by 100, rows (input units) by 1.
  np.testing.assert_allclose(feats[idx("columns/max/mean")]
                             - feats[idx("columns/min/mean")],
                             100.0 * (num_cols - 1))
  np.testing.assert_allclose(feats[idx("rows/max/mean")]
                             - feats[idx("rows/min/mean")], num_rows - 1.0)
  np.testing.assert_allclose(feats[idx("columns/max/std")],
                             np.std(np.arange(num_rows)), rtol=1e-6)


def test_jit_on_resorted_params_and_default_layer(lm_variables):
  layers = [params_lib.as_path(name) for name in sorted(_LAYERS)]

  @jax.jit
  def f(params, lr):
    params = jax.tree.map(lambda p: p * 1.5, params)  # keys now sorted
    return jnp.stack([features.layer_weight_stats(params, lr, layer)
                      for layer in layers])

  out = np.asarray(f(lm_variables["params"], 0.1))
  for row, name in zip(out, sorted(_LAYERS)):
    kernel = 1.5 * _LAYERS[name][1](lm_variables)
    np.testing.assert_allclose(
        row, reference.reference_features(kernel[None, None], 0.1,
                                     zero_if_constant=True),
        rtol=2e-4, atol=2e-5)
  # No conv layer: the default is the last weight layer, the LM head.
  assert ws.default_weight_stats_layer(lm_variables) == ("head",)
  assert params_lib.last_weight_layer(lm_variables) == ("head",)
  np.testing.assert_array_equal(
      jax.jit(features.layer_weight_stats)(lm_variables, 0.1),
      jax.jit(features.layer_weight_stats, static_argnums=2)(
          lm_variables, 0.1, ("head",)))


def test_unsupported_weights_name_layer_and_shape():
  conv1d = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
  params = {
      "big": {"kernel": jnp.zeros((1, 2, 3, 4, 5))},
      "conv1d": {"kernel": jnp.asarray(conv1d)},
      "block": {"out": {"kernel": jnp.zeros((2, 3, 4))}},  # no 'query' beside
      "fc": {"kernel": jnp.zeros((3, 4))},
  }
  assert params_lib.weight_layers(params) == [
      (("big",), None), (("conv1d",), None), (("block", "out"), None),
      (("fc",), "dense")]
  for layer, shape in (("big", r"\(1, 2, 3, 4, 5\)"),
                       ("conv1d", r"\(3, 4, 5\)"),
                       ("block/out", r"\(2, 3, 4\)")):
    with pytest.raises(ValueError,
                       match=rf"'{layer}'.*{shape}.*Supported: conv"):
      features.layer_weight_stats(params, 0.1, layer)
  # The default skips them.
  assert ws.default_weight_stats_layer(params) == ("fc",)
  # A kind named by the caller is checked against the weight's rank ...
  with pytest.raises(ValueError,
                     match=r"'fc'.*'attention_qkv'.*\(3, 4\).*Supported"):
    features.layer_weight_stats(params, 0.1, "fc", kind="attention_qkv")
  with pytest.raises(ValueError, match=r"unknown weight kind 'lstm'"):
    ws.as_conv_layout(jnp.zeros((3, 4)), "lstm")
  # ... and reads a kernel whose layer name does not tell.
  np.testing.assert_allclose(
      features.layer_weight_stats(params, 0.1, "conv1d",
                                  kind="attention_qkv"),
      reference.reference_features(conv1d.reshape(1, 1, 3, 20), 0.1,
                                   zero_if_constant=True),
      rtol=2e-4, atol=2e-5)
  with pytest.raises(ValueError, match=r"'nope'.*fc \(3, 4\) dense"):
    features.layer_weight_stats(params, 0.1, "nope")
