"""Flax models used as optimizees by the papers.

Every model is called as ``model.apply(variables, x, train=...)``. Models with
batch norm keep running statistics in the ``'batch_stats'`` collection (pass
``mutable=['batch_stats']`` when ``train=True``); models with dropout draw from
the ``'dropout'`` RNG stream when ``train=True``. Layers are created in forward
order and named so that the SORTED key order of the params dict (the order
``jax.tree`` functions and jitted outputs use) lists conv layers in forward
order: the weight-statistics features find "the last conv layer" and the
dynamics features "the first/last dense kernel" by that order.
"""

from typing import Any, Callable, Optional, Sequence

import functools

import flax.linen as nn
import jax.numpy as jnp

__all__ = [
    "Autoencoder", "KERNEL_INITS", "KNOWN_MODELS", "MLP", "MODELS",
    "get_model", "LeNet5", "ModuleDef", "NORMS", "NOSConvNet", "ResNet18",
    "ResNetNorm", "RNN", "SmallCNN", "Transformer", "uses_batch_norm",
    "uses_dropout", "WideResNet", "XuCNN",
]

ModuleDef = Any

# Kernel initialisers by name: Flax's default, and TF1 ``tf.layers``' default
# (Glorot uniform), which the official code of Xu et al. 2019 trains from.
KERNEL_INITS = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}


def _kernel_init(name: str):
  if name not in KERNEL_INITS:
    raise ValueError(f"kernel_init={name!r}; allowed: {tuple(KERNEL_INITS)}.")
  return KERNEL_INITS[name]


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  # PyTorch/Keras defaults (momentum 0.9 here = 1 - 0.1), as the papers used.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, name=name)


class MLP(nn.Module):
  """Fully connected ReLU network on flattened inputs.

  ``kernel_init``: a name in ``KERNEL_INITS`` (biases start at zero either
  way). ``'xu2019_mlp'`` is the official code's 784-128-10 MLP with TF1's
  Glorot-uniform kernels.
  """
  hidden_sizes: Sequence[int] = (128,)
  num_classes: int = 10
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    init = _kernel_init(self.kernel_init)
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden_sizes):
      x = nn.relu(nn.Dense(width, kernel_init=init, name=f"dense{i}")(x))
    return nn.Dense(self.num_classes, kernel_init=init,
                    name=f"dense{len(self.hidden_sizes)}")(x)


class LeNet5(nn.Module):
  """LeNet-5 (LeCun et al. 1998), the CNN of Xu et al. 2019.

  conv 6@5x5 - maxpool 2 - conv 16@5x5 - maxpool 2 - dense 120 - dense 84 -
  dense classes, ReLU. 28x28 inputs are zero-padded to 32x32 as in the original,
  so the feature maps (and the 400-wide flatten) are the same for Fashion-MNIST
  and CIFAR-10: 61,706 parameters on 28x28x1, 62,006 on 32x32x3.
  """
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    pad = (32 - x.shape[1]) // 2
    if pad > 0:
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    x = nn.relu(nn.Conv(6, (5, 5), padding="VALID", name="conv0")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(16, (5, 5), padding="VALID", name="conv1")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(120, name="dense0")(x))
    x = nn.relu(nn.Dense(84, name="dense1")(x))
    return nn.Dense(self.num_classes, name="dense2")(x)


class XuCNN(nn.Module):
  """The 'cnn' trainee of Xu et al. 2019's official code (its "LeNet CNN").

  conv 32@5x5 'same' - maxpool 2 - conv 64@5x5 'same' - maxpool 2 - dense
  512 - dense classes, ReLU, TF1 ``tf.layers`` defaults (Glorot-uniform
  kernels, zero biases). On 28x28x1 inputs: 1,663,370 parameters (the
  flatten is 7*7*64 = 3136 wide); on 32x32x3: 2,156,490. The observed first
  and last dense kernels are the code's ``w1`` (3136x512) and ``w2``
  (512x10). ``kernel_init`` as in ``MLP``.
  """
  num_classes: int = 10
  kernel_init: str = "glorot_uniform"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    init = _kernel_init(self.kernel_init)
    for i, filters in enumerate((32, 64)):
      x = nn.relu(nn.Conv(filters, (5, 5), padding="SAME", kernel_init=init,
                          name=f"conv{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(512, kernel_init=init, name="dense0")(x))
    return nn.Dense(self.num_classes, kernel_init=init, name="dense1")(x)


class SmallCNN(nn.Module):
  """The c-p-c-p-c-r-c-s CNN of Daniel, Taylor & Nowozin (2016).

  conv kxk (filters[0]) - maxpool 2 - conv kxk (filters[1]) - maxpool 2 -
  conv over the whole remaining map (filters[2]) - ReLU - conv 1x1
  (classes) - softmax (in the loss), all convs VALID: the MatConvNet MNIST
  net's shape (there 20, 50, 500 filters), whose filter counts the talk
  draws at random to get a family of small training tasks. The third conv's
  kernel is the size of its input map (4x4 on 28x28 inputs, 5x5 on 32x32),
  so the head sees a 1x1 map and the net works on Fashion-MNIST and CIFAR-10
  alike.
  """
  filters: Sequence[int] = (20, 50, 500)
  kernel_size: int = 5
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if (len(self.filters) != 3 or
        not all(isinstance(f, int) and f >= 1 for f in self.filters)):
      raise ValueError(f"SmallCNN filters={tuple(self.filters)!r}; allowed: "
                       "3 integers >= 1.")
    k = self.kernel_size
    # Map after conv-pool-conv-pool: ((s - k + 1) // 2 - k + 1) // 2 >= 1.
    if ((x.shape[1] - k + 1) // 2 - k + 1) // 2 < 1:
      raise ValueError(f"SmallCNN kernel_size={k} is too large for "
                       f"{x.shape[1]}x{x.shape[2]} inputs.")
    for i in range(2):
      x = nn.Conv(self.filters[i], (k, k), padding="VALID", name=f"conv{i}")(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(self.filters[2], x.shape[1:3], padding="VALID",
                name="conv2")(x)
    x = nn.Conv(self.num_classes, (1, 1), name="conv3")(nn.relu(x))
    return x.reshape((x.shape[0], -1))


class NOSConvNet(nn.Module):
  """The small 2-layer ConvNet of Neural Optimizer Search (Bello et al. 2017).

  Two blocks of conv 32@3x3 - batch norm - ReLU - maxpool 2, then a dense
  classifier.
  """
  num_filters: int = 32
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i in range(2):
      x = nn.Conv(self.num_filters, (3, 3), padding="SAME", use_bias=False,
                  name=f"conv{i}")(x)
      x = nn.relu(_batch_norm(train, f"bn{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, name="dense0")(x)


class _BasicBlock(nn.Module):
  """ResNet basic block (He et al. 2016), post-activation."""
  filters: int
  strides: int

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, n: nn.Conv(f, (k, k), (s, s), padding="SAME" if k > 1 else "VALID",
                                      use_bias=False, name=n)
    y = conv(self.filters, 3, self.strides, "conv0")(x)
    y = nn.relu(_batch_norm(train, "bn0")(y))
    y = conv(self.filters, 3, 1, "conv1")(y)
    y = _batch_norm(train, "bn1")(y)
    if self.strides != 1 or x.shape[-1] != self.filters:
      x = conv(self.filters, 1, self.strides, "shortcut_conv")(x)
      x = _batch_norm(train, "shortcut_bn")(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18, CIFAR variant: 3x3 stem, no max-pool; 11,173,962 parameters."""
  num_classes: int = 10
  stage_sizes: Sequence[int] = (2, 2, 2, 2)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(64, (3, 3), padding="SAME", use_bias=False, name="conv_stem")(x)
    x = nn.relu(_batch_norm(train, "bn_stem")(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = _BasicBlock(64 * 2**stage, strides,
                        name=f"stage{stage}_block{block:02d}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="dense0")(x)


class _WideBlock(nn.Module):
  """Pre-activation wide block (Zagoruyko & Komodakis 2016) with dropout."""
  filters: int
  strides: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.relu(_batch_norm(train, "bn0")(x))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.filters:
      shortcut = nn.Conv(self.filters, (1, 1), (self.strides, self.strides),
                         use_bias=False, name="shortcut_conv")(y)
    y = nn.Conv(self.filters, (3, 3), (self.strides, self.strides),
                padding="SAME", use_bias=False, name="conv0")(y)
    y = nn.relu(_batch_norm(train, "bn1")(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = nn.Conv(self.filters, (3, 3), padding="SAME", use_bias=False,
                name="conv1")(y)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-depth-width (Zagoruyko & Komodakis 2016); Fu 2016 uses WRN-40-4, dropout 0.5."""
  depth: int = 40
  width: int = 4
  dropout_rate: float = 0.0
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 4) % 6 != 0 or self.depth < 10:
      raise ValueError(
          f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...); "
          f"got {self.depth}.")
    blocks_per_stage = (self.depth - 4) // 6
    x = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, name="conv_stem")(x)
    for stage, base in enumerate((16, 32, 64)):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = _WideBlock(base * self.width, strides, self.dropout_rate,
                       name=f"stage{stage}_block{block:02d}")(x, train)
    x = nn.relu(_batch_norm(train, "final_bn")(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="dense0")(x)


def _layer_norm(name: str) -> nn.LayerNorm:
  # PyTorch's epsilon, as GPT-2 and the norm ablations were trained with.
  return nn.LayerNorm(epsilon=1e-5, name=name)


class _TransformerBlock(nn.Module):
  """GPT-2 block, pre-LayerNorm: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``.

  Sublayers are named ``attn0_norm``, ``attn1_qkv``, ``attn2_proj``,
  ``mlp0_norm``, ``mlp1_fc``, ``mlp2_proj`` (forward order = sorted order).
  """
  num_heads: int
  mlp_ratio: int
  dropout_rate: float
  proj_std: float

  @nn.compact
  def __call__(self, x, train: bool):
    batch, length, width = x.shape
    head_dim = width // self.num_heads
    dense = functools.partial(nn.Dense,
                              kernel_init=nn.initializers.normal(0.02))
    proj = functools.partial(nn.Dense, width,
                             kernel_init=nn.initializers.normal(self.proj_std))
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    qkv = dense(3 * width, name="attn1_qkv")(_layer_norm("attn0_norm")(x))
    q, k, v = (t.reshape(batch, length, self.num_heads, head_dim)
               for t in jnp.split(qkv, 3, axis=-1))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim**-0.5
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    logits = jnp.where(causal, logits, jnp.finfo(logits.dtype).min)
    probs = drop(nn.softmax(logits, axis=-1))
    y = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, width)
    x = x + drop(proj(name="attn2_proj")(y))
    y = _layer_norm("mlp0_norm")(x)
    y = dense(self.mlp_ratio * width, name="mlp1_fc")(y)
    return x + drop(proj(name="mlp2_proj")(nn.gelu(y)))


class Transformer(nn.Module):
  """Decoder-only language model, GPT-2 style (Radford et al. 2019).

  Learned token and position embeddings, ``num_layers`` pre-LayerNorm blocks
  of causal multi-head self-attention and a GELU MLP of ``mlp_ratio * width``,
  a final LayerNorm and a bias-free linear head to ``num_classes`` (the
  vocabulary size) logits; with ``tie_embeddings`` the head is the token
  embedding's transpose (GPT-2's choice) instead. The attention is written
  with plain ``nn.Dense`` layers (one qkv projection of ``3 * width``, one
  output projection), so every kernel is 2-D ``(in, out)``. Initialisation as
  in GPT-2: embeddings and kernels normal(0.02), the two residual output
  projections of each block normal(0.02 / sqrt(2 * num_layers)), biases
  zero; LayerNorm epsilon 1e-5. ``dropout_rate`` (off by default) is applied,
  when ``train=True``, to the embedding sum, the attention probabilities and
  both residual branches, drawing from the ``'dropout'`` RNG stream.

  Input: integer tokens ``(B, L)`` with ``L <= context_length``; output
  float32 logits ``(B, L, num_classes)``, position ``t`` seeing tokens
  ``<= t`` only. Params: ``input0_token_embed``, ``input1_position_embed``,
  ``layer00`` ... (``_TransformerBlock``), ``output0_norm``,
  ``output1_dense`` (absent when tied). The Tiny Shakespeare character model
  (4 layers, 4 heads, width 128, context 64, vocabulary 65, untied) has
  818,176 parameters: embeddings 8,320 + 8,192, 198,272 per block, final
  norm 256, head 8,320.
  """
  num_layers: int = 2
  num_heads: int = 4
  width: int = 128
  context_length: int = 64
  num_classes: int = 65
  dropout_rate: float = 0.0
  mlp_ratio: int = 4
  tie_embeddings: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.width % self.num_heads != 0:
      raise ValueError(f"Transformer width={self.width} must be divisible by "
                       f"num_heads={self.num_heads}.")
    if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError("Transformer takes integer tokens (B, L); got "
                       f"{x.dtype} of shape {x.shape}.")
    length = x.shape[1]
    if length > self.context_length:
      raise ValueError(f"Transformer input length L={length} exceeds "
                       f"context_length={self.context_length}.")
    init = nn.initializers.normal(0.02)
    token_embed = nn.Embed(self.num_classes, self.width, embedding_init=init,
                           name="input0_token_embed")
    position_embed = nn.Embed(self.context_length, self.width,
                              embedding_init=init, name="input1_position_embed")
    h = token_embed(x) + position_embed(jnp.arange(length))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    for i in range(self.num_layers):
      h = _TransformerBlock(self.num_heads, self.mlp_ratio, self.dropout_rate,
                            0.02 / (2 * self.num_layers)**0.5,
                            name=f"layer{i:02d}")(h, train)
    h = _layer_norm("output0_norm")(h)
    if self.tie_embeddings:
      return token_embed.attend(h)
    return nn.Dense(self.num_classes, use_bias=False, kernel_init=init,
                    name="output1_dense")(h)


_RNN_CELLS = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}
_RNN_OUTPUTS = ("sequence", "last")


class RNN(nn.Module):
  """Stacked GRU (Cho et al. 2014) or LSTM (Hochreiter & Schmidhuber 1997).

  Input layer: integer tokens ``(B, L)`` go through ``nn.Embed`` of
  ``vocab_size`` (``None``: ``num_classes``, the language-model case) by
  ``width``; float sequences ``(B, L, F)`` through a linear ``nn.Dense`` of
  ``width``, a float ``(B, L)`` being read as ``(B, L, 1)`` (mnist1d's 40
  values as a sequence) and a float image ``(B, H, W, C)`` as ``H`` rows of
  ``W * C`` values. Then ``num_layers`` ``nn.RNN`` layers over ``cell``
  ('gru': ``nn.GRUCell``, 'lstm': ``nn.OptimizedLSTMCell``) of ``width``
  units, and a Dense head to ``num_classes``. ``output='sequence'`` gives
  per-position logits ``(B, L, num_classes)``; ``'last'`` the logits of the
  last position ``(B, num_classes)`` (sequence classification). Params:
  ``input_embed`` or ``input_dense``, ``layer00`` ..., ``output_dense``.
  """
  cell: str = "gru"
  width: int = 128
  num_layers: int = 1
  num_classes: int = 10
  vocab_size: Optional[int] = None
  output: str = "sequence"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if self.cell not in _RNN_CELLS:
      raise ValueError(f"RNN cell={self.cell!r}; allowed: {tuple(_RNN_CELLS)}.")
    if self.output not in _RNN_OUTPUTS:
      raise ValueError(f"RNN output={self.output!r}; allowed: {_RNN_OUTPUTS}.")
    if jnp.issubdtype(x.dtype, jnp.integer):
      if x.ndim != 2:
        raise ValueError(f"RNN integer input must be (B, L); got {x.shape}.")
      vocab = self.num_classes if self.vocab_size is None else self.vocab_size
      h = nn.Embed(vocab, self.width, name="input_embed")(x)
    else:
      if x.ndim not in (2, 3, 4):
        raise ValueError("RNN float input must be (B, L), (B, L, F) or "
                         f"(B, H, W, C); got {x.shape}.")
      h = x[..., None] if x.ndim == 2 else x.reshape(x.shape[:2] + (-1,))
      h = nn.Dense(self.width, name="input_dense")(h)
    for i in range(self.num_layers):
      cell = _RNN_CELLS[self.cell](self.width, name=f"layer{i:02d}")
      h = nn.RNN(cell)(h)
    if self.output == "last":
      h = h[:, -1]
    return nn.Dense(self.num_classes, name="output_dense")(h)


_AUTOENCODER_KINDS = ("mlp", "conv")


class Autoencoder(nn.Module):
  """Autoencoder of images in [0, 1] (Hinton & Salakhutdinov 2006).

  ``kind='mlp'``: flattens the input; encoder Dense layers of
  ``hidden_sizes`` (the last is the bottleneck), decoder Dense layers of the
  same sizes mirrored (without the bottleneck), ReLU after every hidden layer
  (the bottleneck included); an output Dense back to the flattened size.
  ``kind='conv'``: encoder 3x3 convs of ``conv_features`` with stride 2,
  decoder 3x3 stride-2 transposed convs mirroring them and an output one to
  the input's channels (28x28x1 -> 14 -> 7 -> 14 -> 28; 32x32x3 -> 16 -> 8 ->
  16 -> 32): the input must be ``(B, H, W, C)`` with ``H`` and ``W``
  divisible by ``2 ** len(conv_features)``. Both end in a sigmoid and
  return the input's shape. ``num_classes`` is ignored: the task builder
  passes it to every model. Params: ``layer00`` ... (encoder, then
  decoder), ``output_dense`` or ``output_conv``.
  """
  hidden_sizes: Sequence[int] = (256, 64)
  kind: str = "mlp"
  conv_features: Sequence[int] = (32, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if self.kind == "mlp":
      h = x.reshape((x.shape[0], -1))
      features, out_features = tuple(self.hidden_sizes), h.shape[-1]
      down = up = lambda f, name: nn.Dense(f, name=name)
      out_name = "output_dense"
    elif self.kind == "conv":
      scale = 2**len(self.conv_features)
      if (not self.conv_features or x.ndim != 4 or x.shape[1] % scale or
          x.shape[2] % scale):
        raise ValueError(
            f"Autoencoder kind='conv' needs conv_features (got "
            f"{tuple(self.conv_features)}) and (B, H, W, C) inputs with H and "
            f"W divisible by {scale}; got {x.shape}.")
      h = x
      features, out_features = tuple(self.conv_features), x.shape[-1]
      down = lambda f, name: nn.Conv(f, (3, 3), (2, 2), padding="SAME",
                                     name=name)
      up = lambda f, name: nn.ConvTranspose(f, (3, 3), (2, 2), padding="SAME",
                                            name=name)
      out_name = "output_conv"
    else:
      raise ValueError(f"Autoencoder kind={self.kind!r}; allowed: "
                       f"{_AUTOENCODER_KINDS}.")
    layers = ([functools.partial(down, f) for f in features] +
              [functools.partial(up, f) for f in features[-2::-1]])
    for i, layer in enumerate(layers):
      h = nn.relu(layer(name=f"layer{i:02d}")(h))
    return nn.sigmoid(up(out_features, out_name)(h)).reshape(x.shape)


NORMS = ("group", "layer", "batch")


def _norm(kind: str, channels: int, num_groups: int, train: bool,
          name: str) -> nn.Module:
  """A normalisation layer by name: ``NORMS``, PyTorch's epsilon 1e-5."""
  if kind == "group":
    # The largest group count <= num_groups that divides the channels.
    groups = max(g for g in range(1, min(num_groups, channels) + 1)
                 if channels % g == 0)
    return nn.GroupNorm(num_groups=groups, epsilon=1e-5, name=name)
  if kind == "layer":
    return _layer_norm(name)
  if kind == "batch":
    return _batch_norm(train, name)
  raise ValueError(f"norm={kind!r}; allowed: {NORMS}.")


class _PreActBlock(nn.Module):
  """Pre-activation basic block (He et al. 2016b) with a chosen norm.

  norm-ReLU-conv3x3-norm-ReLU-conv3x3 plus the input, or a 1x1 projection of
  the pre-activated input when the shape changes. Named ``sub0_norm``,
  ``sub1_shortcut`` (the projection, if any), ``sub2_conv``, ``sub3_norm``,
  ``sub4_conv``: sorted order is forward order, and the last 3x3 conv is the
  block's last conv.
  """
  filters: int
  strides: int
  norm: str
  num_groups: int

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda c, name: _norm(self.norm, c, self.num_groups, train, name)
    conv = lambda k, s, name: nn.Conv(self.filters, (k, k), (s, s),
                                      padding="SAME", use_bias=False, name=name)
    y = nn.relu(norm(x.shape[-1], "sub0_norm")(x))
    if self.strides != 1 or x.shape[-1] != self.filters:
      x = conv(1, self.strides, "sub1_shortcut")(y)
    y = conv(3, self.strides, "sub2_conv")(y)
    y = nn.relu(norm(self.filters, "sub3_norm")(y))
    return x + conv(3, 1, "sub4_conv")(y)


class ResNetNorm(nn.Module):
  """Small pre-activation ResNet (He et al. 2016b) with a chosen norm.

  For 28x28x1 / 32x32x3 images: a 3x3 stem conv of ``width`` channels,
  ``num_stages`` stages of ``blocks_per_stage`` pre-activation basic blocks
  (stride 2 and doubled channels at the start of every stage after the
  first), a final norm-ReLU, global average pooling and a Dense head.
  ``norm``: 'group' (``nn.GroupNorm``, Wu & He 2018, ``num_groups`` lowered
  to the largest count that divides the channels), 'layer' (``nn.LayerNorm``
  over the channels of each position) or 'batch' (running statistics in the
  ``'batch_stats'`` collection). Params: ``input_conv``,
  ``layer00_block00`` ... (stage, block), ``output0_norm``,
  ``output1_dense``.
  """
  width: int = 16
  num_stages: int = 3
  blocks_per_stage: int = 1
  norm: str = "group"
  num_groups: int = 8
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.norm not in NORMS:
      raise ValueError(f"ResNetNorm norm={self.norm!r}; allowed: {NORMS}.")
    x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,
                name="input_conv")(x)
    for stage in range(self.num_stages):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = _PreActBlock(self.width * 2**stage, strides, self.norm,
                         self.num_groups,
                         name=f"layer{stage:02d}_block{block:02d}")(x, train)
    x = _norm(self.norm, x.shape[-1], self.num_groups, train, "output0_norm")(x)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    return nn.Dense(self.num_classes, name="output1_dense")(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "small_cnn": SmallCNN,
    "nos_convnet": NOSConvNet,
    "resnet18": ResNet18,
    "wide_resnet": WideResNet,
    # Xu et al. 2019's official trainees ('mlp' and 'cnn' of their code).
    "xu2019_mlp": functools.partial(MLP, hidden_sizes=(128,),
                                    kernel_init="glorot_uniform"),
    "xu2019_cnn": XuCNN,
    "transformer": Transformer,
    "rnn": RNN,
    "gru": functools.partial(RNN, cell="gru"),
    "lstm": functools.partial(RNN, cell="lstm"),
    "autoencoder": Autoencoder,
    "resnet_norm": ResNetNorm,
}
KNOWN_MODELS = tuple(MODELS)


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds a model by name; unknown names and fields raise ``ValueError``."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)}.")
  try:
    return MODELS[name](**kwargs)
  except TypeError as e:
    raise ValueError(f"Bad arguments {kwargs} for model {name!r}: {e}") from e


def uses_batch_norm(variables) -> bool:
  return "batch_stats" in variables


def uses_dropout(model: nn.Module) -> bool:
  return getattr(model, "dropout_rate", 0.0) > 0.0
