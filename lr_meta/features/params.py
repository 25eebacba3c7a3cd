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

*Weight layers* (``weight_layers``, ``get_weight``, ``weight_kind``) are the
layers holding a ``'kernel'`` leaf or an ``'embedding'`` leaf (``nn.Embed``),
each with a *kind* (``WEIGHT_KINDS``) inferred from the leaf's name, its rank
and the layer's name; ``WEIGHT_LAYOUTS`` names the axes of each kind:

============== ========================== ==================================
kind           weight                     when
============== ========================== ==================================
conv           ``(kh, kw, in, out)``      a 4-D ``'kernel'`` (``nn.Conv``)
dense          ``(in, out)``              a 2-D ``'kernel'`` (``nn.Dense``)
embedding      ``(vocab, width)``         a 2-D ``'embedding'``
                                          (``nn.Embed``)
attention_qkv  ``(in, heads, head_dim)``  a 3-D ``'kernel'`` of a layer
                                          named ``'query'``, ``'key'`` or
                                          ``'value'``
attention_out  ``(heads, head_dim, out)`` a 3-D ``'kernel'`` of a layer
                                          named ``'out'``
============== ========================== ==================================

The attention kinds are the ``nn.DenseGeneral`` sub-layers of flax's
``nn.MultiHeadDotProductAttention`` (and ``nn.SelfAttention``): a 3-D kernel
counts as attention only when its parent module also holds a ``'query'`` and
an ``'out'`` layer, as flax lays them out, so that a generic layer named
``'out'`` is not mistaken for one. Any other weight (a 3-D kernel elsewhere,
e.g. a 1-D ``nn.Conv``; a 1-D or 5-D one; an ``'embedding'`` that is not 2-D)
has kind None: listed by ``weight_layers``, refused by ``weight_kind``.
"""

from collections.abc import Mapping
from typing import Any, Optional, Union

import jax

__all__ = [
    "ATTENTION_OUT", "ATTENTION_QKV", "CONV", "DENSE", "EMBEDDING",
    "SUPPORTED_WEIGHTS", "WEIGHT_KINDS", "WEIGHT_LAYOUTS", "as_path",
    "conv_layers", "dense_layers", "first_dense_layer", "get_kernel",
    "get_weight", "kernel_layers", "last_conv_layer", "last_dense_layer",
    "last_weight_layer", "layer_name", "LayerPath", "LayerSpec",
    "unwrap_params", "weight_kind", "weight_layers",
]

LayerPath = tuple[str, ...]
LayerSpec = Union[str, LayerPath]

CONV = "conv"
DENSE = "dense"
EMBEDDING = "embedding"
ATTENTION_QKV = "attention_qkv"
ATTENTION_OUT = "attention_out"
WEIGHT_KINDS = (CONV, DENSE, EMBEDDING, ATTENTION_QKV, ATTENTION_OUT)
# The axes of each kind's weight, as flax lays it out.
WEIGHT_LAYOUTS = {
    CONV: ("kh", "kw", "in", "out"),
    DENSE: ("in", "out"),
    EMBEDDING: ("vocab", "width"),
    ATTENTION_QKV: ("in", "heads", "head_dim"),
    ATTENTION_OUT: ("heads", "head_dim", "out"),
}
# "conv (kh, kw, in, out); dense (in, out); ...", for error messages.
SUPPORTED_WEIGHTS = "; ".join(f"{kind} ({', '.join(axes)})"
                              for kind, axes in WEIGHT_LAYOUTS.items())
# Leaves that make a layer a weight layer, in lookup priority.
_WEIGHT_LEAVES = ("kernel", "embedding")
_ATTENTION_QKV_NAMES = ("query", "key", "value")
_ATTENTION_OUT_NAME = "out"


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
  return _layers_with_leaf(unwrap_params(params), ("kernel",))


def _leaf_name(node: Mapping, leaves: tuple[str, ...]) -> Optional[str]:
  """The first of ``leaves`` that ``node`` holds as an array, or None."""
  for name in leaves:
    if name in node and not isinstance(node[name], Mapping):
      return name
  return None


def _layers_with_leaf(params: Mapping, leaves: tuple[str, ...]
                      ) -> list[LayerPath]:
  """Paths of the sub-dicts holding one of ``leaves``, in iteration order."""
  found = []

  def walk(node, path):
    if _leaf_name(node, leaves) is not None:
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


def _infer_kind(params: Mapping, path: LayerPath) -> Optional[str]:
  """The kind of the weight of the layer at ``path`` (None: unsupported)."""
  node = _lookup(params, path)
  leaf = _leaf_name(node, _WEIGHT_LEAVES)
  ndim = len(node[leaf].shape)
  if leaf == "embedding":
    return EMBEDDING if ndim == 2 else None
  if ndim == 4:
    return CONV
  if ndim == 2:
    return DENSE
  if ndim != 3 or not path:
    return None
  parent = _lookup(params, path[:-1])
  if not all(_lookup(parent, (name,)) is not None
             for name in ("query", _ATTENTION_OUT_NAME)):
    return None
  if path[-1] in _ATTENTION_QKV_NAMES:
    return ATTENTION_QKV
  return ATTENTION_OUT if path[-1] == _ATTENTION_OUT_NAME else None


def weight_layers(params: Any) -> list[tuple[LayerPath, Optional[str]]]:
  """All layers holding a ``'kernel'`` or ``'embedding'``, with their kind.

  Args:
    params: Flax params (or full variables) dict.

  Returns:
    ``(path, kind)`` pairs in dict iteration order (see the module docstring
    for the order and for how the kind, one of ``WEIGHT_KINDS``, is
    inferred); ``kind`` is None for a weight of no supported kind.
  """
  params = unwrap_params(params)
  return [(path, _infer_kind(params, path))
          for path in _layers_with_leaf(params, _WEIGHT_LEAVES)]


def _describe_weights(params: Mapping) -> str:
  parts = []
  for path, kind in weight_layers(params):
    node = _lookup(params, path)
    weight = node[_leaf_name(node, _WEIGHT_LEAVES)]
    parts.append(f"{layer_name(path)} {tuple(weight.shape)} {kind}")
  return ", ".join(parts) if parts else "(none)"


def _weight_node(params: Mapping, path: LayerPath) -> Mapping:
  node = _lookup(params, path)
  if node is None or _leaf_name(node, _WEIGHT_LEAVES) is None:
    raise ValueError(
        f"No layer {layer_name(path)!r} with a 'kernel' or an 'embedding' in "
        f"params; available weight layers (path, shape, kind): "
        f"{_describe_weights(params)}.")
  return node


def get_weight(params: Any, layer: LayerSpec) -> jax.Array:
  """The weight of the named layer: its ``'kernel'``, else its ``'embedding'``.

  Args:
    params: Flax params (or full variables) dict.
    layer: full path of the layer, e.g. ``'block00/attn/query'``,
      ``('embed',)`` (an ``nn.Embed``) or ``'stage2_block5/conv1'``.

  Returns:
    The array as stored (``weight_kind`` says how to read its axes).

  Raises:
    ValueError: if there is no such layer; the message lists the weight
      layers with their shapes and kinds.
  """
  params = unwrap_params(params)
  node = _weight_node(params, as_path(layer))
  return node[_leaf_name(node, _WEIGHT_LEAVES)]


def weight_kind(params: Any, layer: LayerSpec) -> str:
  """The kind (one of ``WEIGHT_KINDS``) of the named layer's weight.

  Args:
    params: Flax params (or full variables) dict.
    layer: full path of the layer.

  Returns:
    The kind inferred as in the module docstring's table.

  Raises:
    ValueError: if there is no such layer, or its weight is of no supported
      kind (the message names the layer, its shape and the supported kinds).
  """
  params = unwrap_params(params)
  path = as_path(layer)
  node = _weight_node(params, path)
  kind = _infer_kind(params, path)
  if kind is None:
    leaf = _leaf_name(node, _WEIGHT_LEAVES)
    raise ValueError(
        f"Layer {layer_name(path)!r} has a {leaf!r} of shape "
        f"{tuple(node[leaf].shape)}, of no supported kind. Supported: "
        f"{SUPPORTED_WEIGHTS}; a 3-D kernel is read as attention only in a "
        "layer named 'query', 'key', 'value' or 'out' whose parent also holds "
        "'query' and 'out' layers (flax's MultiHeadDotProductAttention).")
  return kind


def last_weight_layer(params: Any) -> LayerPath:
  """Path of the last weight layer of a supported kind, in iteration order.

  Call this on the params from ``model.init`` (see the module docstring). For
  a model made of dense layers only it is ``last_dense_layer``.

  Raises:
    ValueError: if the model has no weight of a supported kind; the message
      lists its weight layers.
  """
  params = unwrap_params(params)
  layers = [path for path, kind in weight_layers(params) if kind is not None]
  if not layers:
    raise ValueError(
        "No weight layer of a supported kind in params; weight layers (path, "
        f"shape, kind): {_describe_weights(params)}; supported: "
        f"{SUPPORTED_WEIGHTS}.")
  return layers[-1]
