"""Finding layers in a Flax params pytree.

A *layer* here is a sub-dict of the params tree that holds a ``'kernel'`` leaf
(``nn.Dense``: 2-D kernel ``(in, out)``; ``nn.Conv``: 4-D kernel
``(kh, kw, in, out)``). A layer is named by its path, a tuple of dict keys such
as ``('stage2_block5', 'conv1')``, or the same joined by ``'/'``
(``'stage2_block5/conv1'``).

Order matters for "the last conv layer" and "the first / last dense kernel".
This module walks dicts in *iteration* order. For params straight from
``model.init`` that is the order in which the layers were created, i.e. forward
order for the ``lr_meta.tasks.models``. Any ``jax.tree`` operation (``tree.map``,
an optax update, the output of ``jax.jit`` or ``jax.eval_shape``) rebuilds dicts
with SORTED keys, so
``'stem_conv'`` would come after ``'stage2_block5'``. Therefore: resolve a layer
once from the freshly initialised params (``last_conv_layer(init_params)``) and
pass the returned path (a static, hashable tuple) to the feature functions; a
path keeps working on re-ordered params because lookup is by key.
"""

from collections.abc import Mapping
from typing import Any, Optional, Union

import jax

__all__ = [
    "as_path", "conv_layers", "dense_layers", "first_dense_layer",
    "get_kernel", "kernel_layers", "last_conv_layer", "last_dense_layer",
    "layer_name", "LayerPath", "LayerSpec", "unwrap_params",
]

LayerPath = tuple[str, ...]
LayerSpec = Union[str, LayerPath]


def unwrap_params(tree: Any) -> Mapping:
  """Returns the ``'params'`` collection of a Flax variables dict, or ``tree``.

  Args:
    tree: either the full variables dict from ``model.init`` (with a
      ``'params'`` entry, maybe also ``'batch_stats'``) or the params dict.

  Returns:
    The params dict.
  """
  if not isinstance(tree, Mapping):
    raise ValueError(
        f"params must be a dict-like Flax params tree; got {type(tree).__name__}.")
  inner = tree.get("params") if "params" in tree else None
  if isinstance(inner, Mapping):
    return inner
  return tree


def kernel_layers(params: Any) -> list[LayerPath]:
  """Paths of all layers holding a ``'kernel'`` leaf, in dict iteration order.

  Args:
    params: Flax params (or full variables) dict.

  Returns:
    List of paths; see the module docstring for what the order means.
  """
  params = unwrap_params(params)
  found = []

  def walk(node, path):
    if "kernel" in node and not isinstance(node["kernel"], Mapping):
      found.append(path)
    for key, child in node.items():
      if isinstance(child, Mapping):
        walk(child, path + (str(key),))

  walk(params, ())
  return found


def layer_name(path: LayerPath) -> str:
  """``('a', 'b') -> 'a/b'``."""
  return "/".join(path)


def _describe(params: Mapping) -> str:
  parts = []
  for path in kernel_layers(params):
    kernel = _lookup(params, path)["kernel"]
    parts.append(f"{layer_name(path)} {tuple(kernel.shape)}")
  return ", ".join(parts) if parts else "(none)"


def _lookup(params: Mapping, path: LayerPath) -> Optional[Mapping]:
  node = params
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      return None
    node = node[key]
  return node if isinstance(node, Mapping) else None


def as_path(layer: LayerSpec) -> LayerPath:
  """A layer spec (`'a/b'` or `('a', 'b')`) as a tuple path."""
  if isinstance(layer, str):
    return tuple(k for k in layer.split("/") if k)
  if isinstance(layer, tuple) and all(isinstance(k, str) for k in layer):
    return layer
  raise ValueError(
      f"layer must be a '/'-joined name or a tuple of dict keys; got {layer!r}.")


def get_kernel(params: Any, layer: LayerSpec) -> jax.Array:
  """The kernel of the named layer.

  Args:
    params: Flax params (or full variables) dict.
    layer: full path of the layer, ``'stage2_block5/conv1'`` or
      ``('stage2_block5', 'conv1')``.

  Returns:
    The ``'kernel'`` array of that layer.

  Raises:
    ValueError: if there is no such layer; the message lists the layers with
      kernels and their shapes.
  """
  params = unwrap_params(params)
  path = as_path(layer)
  node = _lookup(params, path)
  if node is None or "kernel" not in node:
    raise ValueError(
        f"No layer {layer_name(path)!r} with a 'kernel' in params; available "
        f"layers: {_describe(params)}.")
  return node["kernel"]


def _layers_with_ndim(params: Mapping, ndim: int) -> list[LayerPath]:
  return [p for p in kernel_layers(params)
          if _lookup(params, p)["kernel"].ndim == ndim]


def conv_layers(params: Any) -> list[LayerPath]:
  """Paths of layers with a 4-D (conv) kernel, in dict iteration order."""
  return _layers_with_ndim(unwrap_params(params), 4)


def dense_layers(params: Any) -> list[LayerPath]:
  """Paths of layers with a 2-D (dense) kernel, in dict iteration order."""
  return _layers_with_ndim(unwrap_params(params), 2)


def _pick_layer(params: Any, ndim: int, kind: str, index: int) -> LayerPath:
  """The ``index``-th layer with an ``ndim``-D kernel, or a clear error."""
  params = unwrap_params(params)
  layers = _layers_with_ndim(params, ndim)
  if not layers:
    raise ValueError(
        f"No {kind} layer ({ndim}-D kernel) in params; available layers: "
        f"{_describe(params)}.")
  return layers[index]


def last_conv_layer(params: Any) -> LayerPath:
  """Path of the last conv layer (Fu 2016 monitors it), in iteration order.

  Call this on the params from ``model.init`` (see the module docstring).

  Raises:
    ValueError: if the model has no 4-D kernel; the message lists its layers.
  """
  return _pick_layer(params, 4, "conv", -1)


def first_dense_layer(params: Any) -> LayerPath:
  """Path of the first dense layer (2-D kernel), in iteration order."""
  return _pick_layer(params, 2, "dense", 0)


def last_dense_layer(params: Any) -> LayerPath:
  """Path of the last dense layer (2-D kernel), in iteration order."""
  return _pick_layer(params, 2, "dense", -1)
