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

from typing import Any, Callable, Sequence

import functools

import flax.linen as nn
import jax.numpy as jnp

__all__ = [
    "KERNEL_INITS", "KNOWN_MODELS", "MLP", "MODELS", "get_model", "LeNet5",
    "ModuleDef", "NOSConvNet", "ResNet18", "SmallCNN", "uses_batch_norm",
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
