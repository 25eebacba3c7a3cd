"""Transformer, RNN, Autoencoder, ResNetNorm: shapes, registry, invariants."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import tasks
from lr_meta.tasks import models

_KEY = jax.random.key(0)


def _tokens(shape, vocab, seed=0):
  return np.random.default_rng(seed).integers(0, vocab, shape).astype(np.int32)


# Eager, not jitted: op-by-op dispatch reuses the compiled ops across tests
# whose models share shapes, where every jit would compile afresh.
def _apply(model, **apply_kwargs):
  return functools.partial(model.apply, **apply_kwargs)


def _init_apply(model, x, **apply_kwargs):
  variables = model.init(_KEY, x)
  return variables, _apply(model, **apply_kwargs)(variables, x)


def _abstract_init_apply(model, x):
  """Shapes and dtypes of variables and outputs, without running (fast)."""
  variables = jax.eval_shape(model.init, _KEY, x)
  return variables, jax.eval_shape(model.apply, variables, x)


def _module_paths(tree, prefix=()):
  """Paths of the modules holding params, in creation (insertion) order."""
  paths = []
  for name, sub in tree.items():
    if isinstance(sub, dict):
      if any(not isinstance(v, dict) for v in sub.values()):
        paths.append(prefix + (name,))
      paths += _module_paths(sub, prefix + (name,))
  return paths


def _assert_sorted_is_forward_order(params):
  forward = _module_paths(params)
  assert forward == sorted(forward)
  # The order jax.tree functions use agrees.
  flat = [tuple(k.key for k in path[:-1])
          for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert list(dict.fromkeys(flat)) == forward


@pytest.mark.parametrize("name,kwargs,x,out_shape", [
    ("transformer", dict(num_layers=1, width=16, context_length=8,
                         num_classes=11), _tokens((2, 8), 11), (2, 8, 11)),
    ("rnn", dict(width=8, num_classes=11), _tokens((2, 5), 11), (2, 5, 11)),
    ("gru", dict(width=8, num_classes=11), _tokens((2, 5), 11), (2, 5, 11)),
    ("lstm", dict(width=8, num_classes=11, num_layers=2), _tokens((2, 5), 11),
     (2, 5, 11)),
    ("autoencoder", dict(hidden_sizes=(16, 4)), jnp.zeros((2, 28, 28, 1)),
     (2, 28, 28, 1)),
    ("resnet_norm", dict(), jnp.zeros((2, 28, 28, 1)), (2, 10)),
    ("resnet_norm", dict(norm="batch"), jnp.zeros((2, 32, 32, 3)), (2, 10)),
])
def test_registry_shapes_dtypes(name, kwargs, x, out_shape):
  assert name in tasks.KNOWN_MODELS
  _, out = _abstract_init_apply(tasks.get_model(name, **kwargs), x)
  assert out.shape == out_shape and out.dtype == jnp.float32


def test_registry_cells():
  assert tasks.get_model("gru").cell == "gru"
  assert tasks.get_model("lstm").cell == "lstm"
  model = models.RNN(cell="lstm", width=4)
  params = jax.eval_shape(model.init, _KEY, _tokens((1, 3), 10))["params"]
  assert "hf" in params["layer00"]   # the LSTM's forget gate


# One small shape for the transformers that run, so they share compiled ops.
_SMALL_TRANSFORMER = dict(num_layers=2, num_heads=2, width=8,
                          context_length=10, num_classes=13)


def test_transformer_is_causal():
  model = models.Transformer(**_SMALL_TRANSFORMER)
  x = _tokens((2, 10), 13)
  variables, logits = _init_apply(model, x)
  apply = _apply(model)
  for t in (0, 4, 8):
    changed = x.copy()
    changed[:, t + 1:] = (x[:, t + 1:] + 5) % 13
    other = apply(variables, changed)
    np.testing.assert_array_equal(other[:, :t + 1], logits[:, :t + 1])
    assert not np.array_equal(other[:, t + 1:], logits[:, t + 1:])


def test_transformer_reference_parameter_count():
  # Tiny Shakespeare char model: 4 layers, 4 heads, width 128, context 64,
  # vocabulary 65, untied bias-free head.
  width, ctx, vocab, layers = 128, 64, 65, 4
  layer_norm = 2 * width
  dense = lambda n_in, n_out: n_in * n_out + n_out
  block = (layer_norm + dense(width, 3 * width) + dense(width, width) +
           layer_norm + dense(width, 4 * width) + dense(4 * width, width))
  expected = (vocab * width + ctx * width + layers * block + layer_norm +
              width * vocab)
  assert block == 198_272 and expected == 818_176
  model = models.Transformer(num_layers=4, num_heads=4, width=128,
                             context_length=64, num_classes=65)
  variables, _ = _abstract_init_apply(model, jnp.zeros((1, 64), jnp.int32))
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == expected
  # All kernels are 2-D (in, out): the attention is plain Dense layers.
  kernels = [v for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]
             if p[-1].key == "kernel"]
  assert len(kernels) == 4 * 4 + 1 and all(k.ndim == 2 for k in kernels)
  qkv = variables["params"]["layer00"]["attn1_qkv"]["kernel"]
  assert qkv.shape == (128, 384)


def test_transformer_tied_embeddings_and_dropout():
  model = models.Transformer(**_SMALL_TRANSFORMER, tie_embeddings=True,
                             dropout_rate=0.5)
  x = _tokens((2, 10), 13)
  variables, eval_logits = _init_apply(model, x)
  assert "output1_dense" not in variables["params"]
  assert eval_logits.shape == (2, 10, 13)
  assert models.uses_dropout(model)
  train = _apply(model, train=True)
  dropped = [train(variables, x, rngs={"dropout": jax.random.key(seed)})
             for seed in (1, 2)]
  assert not np.allclose(*dropped)
  np.testing.assert_array_equal(_apply(model)(variables, x), eval_logits)


@pytest.mark.parametrize("kwargs,x,match", [
    (dict(context_length=4), _tokens((1, 5), 65),
     "input length L=5 exceeds context_length=4"),
    (dict(width=10, num_heads=4), _tokens((1, 3), 65),
     "width=10 must be divisible by num_heads=4"),
    (dict(), jnp.zeros((1, 3)), "takes integer tokens"),
])
def test_transformer_errors(kwargs, x, match):
  with pytest.raises(ValueError, match=match):
    models.Transformer(num_layers=1, **kwargs).init(_KEY, x)


@pytest.mark.parametrize("x,output,out_shape", [
    (_tokens((3, 6), 9), "sequence", (3, 6, 9)),
    (_tokens((3, 6), 9), "last", (3, 9)),
    (jnp.ones((3, 40)), "last", (3, 9)),             # mnist1d as a sequence
    (jnp.ones((3, 6, 2)), "sequence", (3, 6, 9)),
    (jnp.ones((3, 7, 7, 1)), "last", (3, 9)),        # image rows
])
def test_rnn_outputs_and_inputs(x, output, out_shape):
  model = models.RNN(width=8, num_classes=9, output=output)
  variables, out = _init_apply(model, x)
  assert out.shape == out_shape and out.dtype == jnp.float32
  first = ("input_embed" if jnp.issubdtype(x.dtype, jnp.integer)
           else "input_dense")
  assert list(variables["params"]) == [first, "layer00", "output_dense"]
  if output == "last":
    seq = models.RNN(width=8, num_classes=9).apply(variables, x)
    np.testing.assert_allclose(out, seq[:, -1], rtol=1e-6)


def test_rnn_vocab_size_and_errors():
  model = models.RNN(width=4, num_classes=3, vocab_size=20)
  params = jax.eval_shape(model.init, _KEY, _tokens((1, 2), 20))["params"]
  assert params["input_embed"]["embedding"].shape == (20, 4)
  for kwargs, match in [(dict(cell="rnn"), "cell='rnn'"),
                        (dict(output="mean"), "output='mean'")]:
    with pytest.raises(ValueError, match=match):
      models.RNN(**kwargs).init(_KEY, _tokens((1, 2), 10))


@pytest.mark.parametrize("kind,shape", [
    ("mlp", (2, 28, 28, 1)), ("mlp", (2, 40)),
    ("conv", (2, 28, 28, 1)), ("conv", (2, 32, 32, 3)),
])
def test_autoencoder_shape_and_range(kind, shape):
  model = tasks.get_model("autoencoder", kind=kind, hidden_sizes=(16, 4),
                          conv_features=(4, 8), num_classes=10)
  x = jax.random.uniform(_KEY, shape)
  variables, out = _init_apply(model, x)
  assert out.shape == shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  _assert_sorted_is_forward_order(variables["params"])


def test_autoencoder_errors():
  with pytest.raises(ValueError, match="kind='vae'; allowed"):
    models.Autoencoder(kind="vae").init(_KEY, jnp.zeros((1, 28, 28, 1)))
  with pytest.raises(ValueError, match="divisible by 4"):
    models.Autoencoder(kind="conv").init(_KEY, jnp.zeros((1, 30, 30, 1)))


@pytest.mark.parametrize("norm", models.NORMS)
def test_resnet_norm_train_and_eval(norm):
  model = models.ResNetNorm(width=4, num_stages=2, norm=norm, num_groups=3)
  x = jax.random.uniform(_KEY, (2, 8, 8, 3))
  variables, (logits, updates) = _init_apply(model, x, train=True,
                                             mutable=["batch_stats"])
  assert models.uses_batch_norm(variables) == (norm == "batch")
  assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
  evaluate = _apply(model, train=False)
  eval_old = evaluate(variables, x)
  assert eval_old.shape == (2, 10)
  if norm != "batch":
    assert not updates
    np.testing.assert_allclose(logits, eval_old, rtol=1e-5)
    return
  old, new = variables["batch_stats"], updates["batch_stats"]
  assert jax.tree.structure(old) == jax.tree.structure(new)
  assert not all(np.array_equal(a, b)
                 for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))
  # Eval mode uses the running averages: new statistics change its output,
  # and it differs from the train-mode (batch statistics) output.
  eval_new = evaluate({**variables, "batch_stats": new}, x)
  assert not np.allclose(eval_old, eval_new)
  assert not np.allclose(eval_new, logits)


def test_resnet_norm_group_count_clamped():
  # 12 channels with num_groups=8: 6 groups (the largest divisor of 12 <= 8).
  assert models._norm("group", 12, 8, False, "n").num_groups == 6
  assert models._norm("group", 4, 8, False, "n").num_groups == 4
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="norm='instance'; allowed: .*'group'"):
    models.ResNetNorm(norm="instance").init(_KEY, x)


def test_resnet_norm_blocks_and_shortcuts():
  model = models.ResNetNorm(width=4, num_stages=3, blocks_per_stage=2)
  params, _ = _abstract_init_apply(model, jnp.zeros((1, 28, 28, 1)))
  params = params["params"]
  shortcut = params["layer01_block00"]["sub1_shortcut"]["kernel"]
  assert shortcut.shape == (1, 1, 4, 8)
  assert "sub1_shortcut" not in params["layer01_block01"]
  assert "sub1_shortcut" not in params["layer00_block00"]   # same shape
  assert params["output1_dense"]["kernel"].shape == (16, 10)


def test_sorted_params_are_forward_order():
  tf = models.Transformer(num_layers=2, num_heads=2, width=8,
                          context_length=4, num_classes=5)
  params = jax.eval_shape(tf.init, _KEY, _tokens((1, 4), 5))["params"]
  forward = ["input0_token_embed", "input1_position_embed", "layer00",
             "layer01", "output0_norm", "output1_dense"]
  assert list(params) == forward and sorted(params) == forward
  block = ["attn0_norm", "attn1_qkv", "attn2_proj", "mlp0_norm", "mlp1_fc",
           "mlp2_proj"]
  assert list(params["layer01"]) == block and sorted(params["layer01"]) == block
  _assert_sorted_is_forward_order(params)

  resnet = models.ResNetNorm(width=4, num_stages=2, blocks_per_stage=2)
  params = jax.eval_shape(resnet.init, _KEY, jnp.zeros((1, 8, 8, 1)))["params"]
  forward = ["input_conv", "layer00_block00", "layer00_block01",
             "layer01_block00", "layer01_block01", "output0_norm",
             "output1_dense"]
  assert list(params) == forward and sorted(params) == forward
  block = ["sub0_norm", "sub1_shortcut", "sub2_conv", "sub3_norm", "sub4_conv"]
  assert sorted(params["layer01_block00"]) == block
  _assert_sorted_is_forward_order(params)
  # The last conv kernel in sorted order is the last block's second 3x3 conv.
  convs = [jax.tree_util.keystr(p)
           for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
           if v.ndim == 4]
  assert "layer01_block01" in convs[-1] and "sub4_conv" in convs[-1]
