"""Weight-statistics state features (Fu 2016, section 4.2, eqs. 5-8).

For a conv kernel ``w`` of shape ``(kh, kw, in, out)`` let ``w_ij`` be the
``kh x kw`` filter between input channel ``i`` and output channel ``j``, the
*row* ``w_i*`` all filters of input channel ``i`` and the *column* ``w_*j`` all
filters of output channel ``j``. ``g`` are 12 statistics of a set of weights
and ``h`` 5 aggregations over a set of ``g`` vectors. The feature vector of one
layer has 193 numbers::

  [  0: 12)  g(w)                   eq. 5, the whole kernel
  [ 12: 72)  h(g(w_i*) for all i)   eq. 6, rows       (in  vectors of 12)
  [ 72:132)  h(g(w_*j) for all j)   eq. 7, columns    (out vectors of 12)
  [132:192)  h(g(w_ij) for all ij)  eq. 8, filters    (in*out vectors of 12)
  [192]      previous learning rate

Other weights are read as conv kernels by ``as_conv_layout``, so the same code
computes eqs. 5-8 for them, vmapped over the same axes, and every kind gives
the same 193 numbers. The kind of a layer's weight is inferred by
``lr_meta.features.params.weight_kind`` (from the leaf's name, its rank and the
layer's name; see that module's docstring)::

  kind           weight                  as (kh, kw, in, out)
  conv           (kh, kw, in, out)       unchanged
  dense          (in, out)               (1, 1, in, out)
  embedding      (vocab, width)          (1, 1, vocab, width)
  attention_qkv  (in, heads, head_dim)   (1, 1, in, heads * head_dim)
  attention_out  (heads, head_dim, out)  (1, 1, heads * head_dim, out)

What a row, a column and a filter are for each kind::

  kind           rows (eq. 6)        columns (eq. 7)          filters (eq. 8)
  conv           input channels      output channels          kh x kw filters
  dense          input units         output units             single weights
  embedding      tokens (a token's   embedding units (one     single entries
                 whole vector)       coordinate, all tokens)
  attention_qkv  input (model)       projection units, one    single weights
                 units               per (head, head_dim),
                                     head-major
  attention_out  head units, one     output (model) units     single weights
                 per (head,
                 head_dim), head-
                 major

So a column is always one output unit (its fan-in weights): for a dense or
attention layer the column statistics are those of the output units, as for a
conv layer those of its filters. A "filter" of a non-conv weight is a single
weight: its statistics are the weight itself for the mean and the three
quantiles and 0 for the std, skewness, kurtosis and moments (the constant-set
convention below), so the filters block holds the aggregations of the weights
in those four entries and zeros elsewhere.

Which layer ``layer_weight_stats`` reads when none is named
(``default_weight_stats_layer``): the last conv layer, as Fu 2016 monitors it,
when the model has one; otherwise the last weight layer of any supported kind
(``params.last_weight_layer``): for a transformer or an MLP that is the layer
nearest the output (the LM head or the classifier; with a tied embedding head,
the last block's last dense), the same choice as
``lr_meta.features.observation.resolve_layers`` makes for an MLP. Both are in
dict iteration order, so resolve the layer once from the params of
``model.init`` and pass its path (see ``lr_meta.features.params``).

Inside each 60-number block the layout is aggregation-major:
``start + 12 * aggregation + statistic`` with ``STAT_NAMES`` and
``AGGREGATION_NAMES`` giving the orders; ``FEATURE_NAMES[k]`` names entry ``k``
(e.g. ``'rows/median/skewness'`` = the median over rows of the rows'
skewness) and ``feature_index`` computes an index.

Conventions (all *biased* population estimators, as scipy.stats defaults):
  * quantiles 0.25/0.5/0.75: linear interpolation (``numpy.quantile``
    default, ``method='linear'``);
  * std: ``sqrt(m2)``, ddof = 0 (``numpy.std`` default);
  * skewness: ``m3 / m2**1.5`` (``scipy.stats.skew(bias=True)``);
  * kurtosis: Fisher *excess* kurtosis ``m4 / m2**2 - 3``
    (``scipy.stats.kurtosis(fisher=True, bias=True)``);
  * central moments ``m_p = mean((x - mean(x))**p)``, p = 1..5
    (``scipy.stats.moment``); ``m_1`` is identically 0 and returned as exact 0
    (kept for the paper's layout);
  * a constant set (``m2 == 0``, e.g. a 1x1 filter) has skewness and kurtosis
    0 where scipy returns nan, so the features stay finite;
  * aggregations ``h``: mean, median, std (ddof = 0), max, min.

Everything is jittable; statistics over rows, columns and filters are
``jax.vmap`` ped, so computing the features inside the training jit costs a few
sorts and reductions over the kernel.
"""

import math
from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp

from lr_meta.features import params as params_lib

__all__ = [
    "AGGREGATION_NAMES", "COLUMNS_SLICE", "FEATURE_NAMES", "FILTERS_SLICE",
    "GROUP_NAMES", "NUM_AGGREGATIONS", "NUM_STATS", "NUM_WEIGHT_FEATURES",
    "PREV_LR_INDEX", "ROWS_SLICE", "STAT_NAMES", "WHOLE_SLICE", "aggregate",
    "as_conv_layout", "default_weight_stats_layer", "feature_index",
    "kernel_statistics", "layer_weight_stats", "sort_last_axis",
    "summary_statistics", "weight_stats_features",
]

STAT_NAMES = (
    "mean", "q25", "median", "q75", "std", "skewness", "kurtosis",
    "moment1", "moment2", "moment3", "moment4", "moment5",
)
NUM_STATS = len(STAT_NAMES)  # 12
AGGREGATION_NAMES = ("mean", "median", "std", "max", "min")
NUM_AGGREGATIONS = len(AGGREGATION_NAMES)  # 5
GROUP_NAMES = ("rows", "columns", "filters")

WHOLE_SLICE = slice(0, NUM_STATS)
_BLOCK = NUM_STATS * NUM_AGGREGATIONS  # 60
ROWS_SLICE = slice(NUM_STATS, NUM_STATS + _BLOCK)
COLUMNS_SLICE = slice(ROWS_SLICE.stop, ROWS_SLICE.stop + _BLOCK)
FILTERS_SLICE = slice(COLUMNS_SLICE.stop, COLUMNS_SLICE.stop + _BLOCK)
PREV_LR_INDEX = FILTERS_SLICE.stop  # 192
NUM_WEIGHT_FEATURES = PREV_LR_INDEX + 1  # 193

_QUANTILES = (0.25, 0.5, 0.75)

FEATURE_NAMES = tuple(
    [f"whole/{s}" for s in STAT_NAMES]
    + [f"{g}/{a}/{s}" for g in GROUP_NAMES
       for a in AGGREGATION_NAMES for s in STAT_NAMES]
    + ["prev_lr"])
assert len(FEATURE_NAMES) == NUM_WEIGHT_FEATURES
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_index(name: str) -> int:
  """Index of a named entry of the 193-vector.

  Args:
    name: ``'whole/<stat>'``, ``'<group>/<aggregation>/<stat>'`` with group in
      ``GROUP_NAMES``, aggregation in ``AGGREGATION_NAMES`` and stat in
      ``STAT_NAMES``, or ``'prev_lr'``; e.g. ``'columns/max/kurtosis'`` = the
      largest kurtosis among the output channels.

  Returns:
    The index into the output of ``weight_stats_features``.
  """
  if name not in _FEATURE_INDEX:
    raise ValueError(
        f"Unknown weight-statistics feature {name!r}; allowed: 'whole/<stat>', "
        f"'<group>/<aggregation>/<stat>' or 'prev_lr' with group in "
        f"{GROUP_NAMES}, aggregation in {AGGREGATION_NAMES}, stat in "
        f"{STAT_NAMES}.")
  return _FEATURE_INDEX[name]


def _float_to_key(x: chex.Array) -> chex.Array:
  """Order-preserving map of float32 to uint32 (exact, invertible)."""
  bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))


def _key_to_float(key: chex.Array) -> chex.Array:
  bits = jnp.where(key >> 31 == 1, key & jnp.uint32(0x7FFFFFFF), ~key)
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


def sort_last_axis(x: chex.Array) -> chex.Array:
  """``jnp.sort(x, axis=-1)``, faster on CPU; same values.

  XLA's CPU sort with the float total-order comparator of ``jnp.sort`` is 5-6x
  slower than sorting integers (measured in BUILD_NOTES, "State features"), so
  float32 rows are sorted as order-preserving uint32 keys and mapped back
  (bit-identical, NaNs aside). Other dtypes use ``jnp.sort``.
  """
  if x.dtype != jnp.float32:
    return jnp.sort(x, axis=-1)
  return _key_to_float(jax.lax.sort(_float_to_key(x), dimension=x.ndim - 1))


def _quantiles_of_sorted(xs: chex.Array, qs) -> list[chex.Array]:
  """Linear-interpolation quantiles along the last axis of a sorted array."""
  n = xs.shape[-1]
  out = []
  for q in qs:
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    value = xs[..., lo]
    if frac:
      value = value + frac * (xs[..., hi] - value)
    out.append(value)
  return out


def summary_statistics(x: chex.Array) -> chex.Array:
  """The 12 statistics ``g`` of Fu 2016 of a set of weights.

  Args:
    x: array of any shape; all its entries form the set.

  Returns:
    ``(12,)`` array ordered as ``STAT_NAMES``; see the module docstring for the
    estimator conventions.
  """
  x = jnp.ravel(x)
  n = x.shape[0]
  if n == 0:
    raise ValueError("summary_statistics needs at least one value; got none.")
  mean = jnp.mean(x)
  d = x - mean
  d2 = d * d
  m2 = jnp.mean(d2)
  m3 = jnp.mean(d2 * d)
  m4 = jnp.mean(d2 * d2)
  m5 = jnp.mean(d2 * d2 * d)
  # Quantiles with linear interpolation from one sort; positions are static.
  qs = _quantiles_of_sorted(sort_last_axis(x), _QUANTILES)
  positive = m2 > 0
  safe_m2 = jnp.where(positive, m2, 1.0)
  skew = jnp.where(positive, m3 / safe_m2**1.5, 0.0)
  kurt = jnp.where(positive, m4 / safe_m2**2 - 3.0, 0.0)
  zero = jnp.zeros_like(mean)
  return jnp.stack([mean, *qs, jnp.sqrt(m2), skew, kurt,
                    zero, m2, m3, m4, m5])


def aggregate(stats: chex.Array) -> chex.Array:
  """The 5 aggregations ``h`` (mean, median, std, max, min) over axis 0.

  Args:
    stats: ``(n, 12)`` statistics of ``n`` sets of weights.

  Returns:
    ``(5, 12)`` array ordered as ``AGGREGATION_NAMES`` x ``STAT_NAMES``.
  """
  chex.assert_rank(stats, 2)
  (median,) = _quantiles_of_sorted(sort_last_axis(stats.T), (0.5,))
  return jnp.stack([
      jnp.mean(stats, axis=0),
      median,
      jnp.std(stats, axis=0),
      jnp.max(stats, axis=0),
      jnp.min(stats, axis=0),
  ])


def _check_kernel(kernel: Any) -> None:
  shape = getattr(kernel, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(
        "Weight statistics need a 4-D conv kernel (kh, kw, in, out); got "
        f"shape {shape}. Other weights: read them with as_conv_layout.")
  if 0 in shape:
    raise ValueError(f"Conv kernel has an empty dimension: shape {shape}.")


def kernel_statistics(kernel: chex.Array) -> chex.Array:
  """``g(w)`` and ``h`` over rows, columns and filters: 192 numbers.

  Args:
    kernel: conv kernel ``(kh, kw, in, out)`` (Flax ``nn.Conv`` layout).

  Returns:
    ``(192,)`` array, entries 0..191 of the layout in the module docstring.
  """
  _check_kernel(kernel)
  kh, kw, cin, cout = kernel.shape
  stats = jax.vmap(summary_statistics)
  whole = summary_statistics(kernel)
  rows = jnp.moveaxis(kernel, 2, 0).reshape(cin, kh * kw * cout)
  cols = jnp.moveaxis(kernel, 3, 0).reshape(cout, kh * kw * cin)
  filters = kernel.reshape(kh * kw, cin * cout).T
  return jnp.concatenate([
      whole,
      aggregate(stats(rows)).ravel(),
      aggregate(stats(cols)).ravel(),
      _filters_block(filters).ravel(),
  ])


def _filters_block(filters: chex.Array) -> chex.Array:
  """``h(g(w_ij))`` of ``(in * out, kh * kw)`` filters: ``(5, 12)``.

  A 1x1 filter (every dense, embedding and attention weight read as a conv,
  ``as_conv_layout``) is one weight ``w``: its statistics are ``(w, w, w, w,
  0, ..., 0)`` (mean and quantiles ``w``; a constant set's spread, skewness,
  kurtosis and moments are 0), so the block is ``h`` of the weights in the
  first four columns and zeros elsewhere: one sort of the weights instead of
  twelve statistics of every weight, equal to the general path up to the
  order of float sums.
  """
  if filters.shape[1] != 1:
    return aggregate(jax.vmap(summary_statistics)(filters))
  h = aggregate(filters)                                   # (5, 1)
  num_located = STAT_NAMES.index("q75") + 1                # mean .. q75
  return jnp.concatenate(
      [jnp.tile(h, (1, num_located)),
       jnp.zeros((NUM_AGGREGATIONS, NUM_STATS - num_located), h.dtype)], 1)


def weight_stats_features(kernel: chex.Array, prev_lr: chex.Numeric
                          ) -> chex.Array:
  """Fu 2016 state features of one conv kernel plus the previous LR.

  Args:
    kernel: conv kernel ``(kh, kw, in, out)``.
    prev_lr: learning rate of the last iteration (scalar).

  Returns:
    ``(193,)`` float array; layout in the module docstring / ``FEATURE_NAMES``.
  """
  stats = kernel_statistics(kernel)
  prev_lr = jnp.asarray(prev_lr, dtype=stats.dtype)
  chex.assert_rank(prev_lr, 0)
  return jnp.concatenate([stats, prev_lr[None]])


# How many leading axes of each non-conv kind's weight form the rows (``in``);
# the remaining axes form the columns (``out``).
_IN_AXES = {
    params_lib.DENSE: 1,
    params_lib.EMBEDDING: 1,
    params_lib.ATTENTION_QKV: 1,
    params_lib.ATTENTION_OUT: 2,
}


def as_conv_layout(weight: chex.Array, kind: str,
                   layer: Optional[params_lib.LayerSpec] = None
                   ) -> chex.Array:
  """A weight of any supported kind as a conv kernel ``(kh, kw, in, out)``.

  ``kernel_statistics`` / ``weight_stats_features`` of the result are Fu
  2016's eqs. 5-8 with rows = the ``in`` units and columns = the ``out`` units
  (table in the module docstring).

  Args:
    weight: the layer's weight in flax's layout for ``kind`` (see
      ``params.WEIGHT_LAYOUTS``).
    kind: one of ``params.WEIGHT_KINDS`` (``params.weight_kind`` infers it):
      ``'conv'`` ``(kh, kw, in, out)`` is returned as it is (the same array);
      ``'dense'`` ``(in, out)`` and ``'embedding'`` ``(vocab, width)`` become
      ``(1, 1, in, out)``; ``'attention_qkv'`` ``(in, heads, head_dim)``
      becomes ``(1, 1, in, heads * head_dim)``; ``'attention_out'``
      ``(heads, head_dim, out)`` becomes ``(1, 1, heads * head_dim, out)``.
    layer: the layer's path, only to name it in error messages.

  Returns:
    The 4-D kernel (a reshape: no copy, jittable).

  Raises:
    ValueError: an unknown kind, or a weight whose rank is not the kind's.
  """
  where = ("" if layer is None
           else f"Layer {params_lib.layer_name(params_lib.as_path(layer))!r}: ")
  if kind not in params_lib.WEIGHT_LAYOUTS:
    raise ValueError(
        f"{where}unknown weight kind {kind!r}; supported: "
        f"{params_lib.WEIGHT_KINDS}.")
  axes = params_lib.WEIGHT_LAYOUTS[kind]
  shape = tuple(weight.shape)
  if len(shape) != len(axes):
    raise ValueError(
        f"{where}a {kind!r} weight is ({', '.join(axes)}), {len(axes)}-D; got "
        f"shape {shape}. Supported: {params_lib.SUPPORTED_WEIGHTS}.")
  if kind == params_lib.CONV:
    return weight
  split = _IN_AXES[kind]
  return weight.reshape(1, 1, math.prod(shape[:split]),
                        math.prod(shape[split:]))


def default_weight_stats_layer(params: Any) -> params_lib.LayerPath:
  """The layer ``layer_weight_stats`` reads when none is named.

  The last conv layer when the model has one (Fu 2016), else the last weight
  layer of any supported kind (``params.last_weight_layer``), both in dict
  iteration order: call this on the params from ``model.init`` and pass the
  path on (see ``lr_meta.features.params``).

  Raises:
    ValueError: if the model has no weight of a supported kind; the message
      lists its weight layers.
  """
  if params_lib.conv_layers(params):
    return params_lib.last_conv_layer(params)
  return params_lib.last_weight_layer(params)


def layer_weight_stats(params: Any, prev_lr: chex.Numeric,
                       layer: Optional[params_lib.LayerSpec] = None,
                       kind: Optional[str] = None) -> chex.Array:
  """``weight_stats_features`` of a layer found in a params tree.

  Args:
    params: Flax params (or full variables) dict.
    prev_lr: learning rate of the last iteration (scalar).
    layer: path of the monitored layer (``'stage2_block5/conv1'``,
      ``'block00/attn/query'``, ``('embed',)``, ...): a conv, dense,
      embedding or attention layer. None means ``default_weight_stats_layer``:
      the last conv layer, or for a model without one the last weight layer;
      both in dict iteration order, which is forward order only for params
      straight from ``model.init``: inside a training loop, resolve it once
      with ``default_weight_stats_layer(init_params)`` and pass the path.
    kind: how to read the layer's weight (one of ``params.WEIGHT_KINDS``);
      None infers it (``params.weight_kind``). Name it for a weight whose
      layer name does not tell, e.g. ``'attention_qkv'`` for a custom
      ``nn.DenseGeneral`` with a kernel ``(in, heads, head_dim)``.

  Returns:
    ``(193,)`` features; for a conv layer bit-identical to
    ``weight_stats_features`` of its kernel.

  Raises:
    ValueError: for a missing layer (the message lists the weight layers) or a
      weight of no supported kind (the message names the layer, its shape and
      the supported kinds).
  """
  if layer is None:
    layer = default_weight_stats_layer(params)
  weight = params_lib.get_weight(params, layer)
  if kind is None:
    kind = params_lib.weight_kind(params, layer)
  return weight_stats_features(as_conv_layout(weight, kind, layer), prev_lr)
