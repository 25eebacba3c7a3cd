"""Training-dynamics observation of Xu, Dai, Kemp & Metz (2019), section 2.2.

The 9 numbers, in the order of the official code (google-research,
``adaptive_learning_rate_tuner/learn_adaptive_learning_rate.py``)::

  0 val_loss                 validation loss
  1 pred_log_var_ema         EMA of log var(predictions)
  2 pred_change_log_var_ema  EMA of log var(predictions - previous predictions)
  3 train_loss               training loss
  4 first_dense_mean         mean of the first dense kernel
  5 first_dense_var          var of the first dense kernel
  6 last_dense_mean          mean of the last dense kernel
  7 last_dense_var           var of the last dense kernel
  8 lr                       current learning rate

Conventions, as in the official code:
  * ``predictions`` are class probabilities (softmax outputs), shape
    ``(B, classes)``; ``var`` is over ALL their entries (``np.var``, ddof 0);
  * ``log var`` is ``log(var + 1e-10)``;
  * EMA decay 0.8, started at the first value (the code's ``if ema == 0: ema =
    value``; here a counter instead of the zero sentinel, and the 1e-10 is
    also added to the first value);
  * the previous predictions start as uniform noise in [0, 1) (the code's
    ``np.random.rand(batch_size, 10)``) when ``dynamics_init`` gets a key, else
    zeros; the code compares predictions on consecutive TRAINING batches,
    a fixed probe batch gives a less noisy change;
  * kernel mean/var over all entries (``tf.nn.moments``, ddof 0).

Composable pieces (``log_variance``, ``kernel_moments``) are pure functions;
``DynamicsState`` holds the EMAs and the previous predictions;
``dynamics_init`` / ``dynamics_update`` are jittable and meant to run inside
the jitted K-step chunk of the LR environment or inside the ``controlled``
optax wrapper.
"""

from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from lr_meta.features import params as params_lib
from lr_meta.features import smoothing

__all__ = [
    "DEFAULT_DECAY", "LOG_EPS", "LR_INDEX", "NUM_OBSERVATIONS",
    "OBSERVATION_NAMES", "dynamics_init", "dynamics_update", "DynamicsState",
    "kernel_moments", "log_variance",
]

OBSERVATION_NAMES = (
    "val_loss", "pred_log_var_ema", "pred_change_log_var_ema", "train_loss",
    "first_dense_mean", "first_dense_var", "last_dense_mean",
    "last_dense_var", "lr",
)
NUM_OBSERVATIONS = len(OBSERVATION_NAMES)  # 9
# The LR entry: ``lr_meta.features.observation`` may replace it by log10(lr).
LR_INDEX = OBSERVATION_NAMES.index("lr")  # 8
DEFAULT_DECAY = 0.8
LOG_EPS = 1e-10


def log_variance(x: chex.Array, eps: float = LOG_EPS) -> chex.Array:
  """``log(var(x) + eps)`` over all entries of ``x`` (ddof 0)."""
  return jnp.log(jnp.var(x) + eps)


def kernel_moments(kernel: chex.Array) -> chex.Array:
  """``[mean, var]`` over all entries of a kernel (ddof 0)."""
  return jnp.stack([jnp.mean(kernel), jnp.var(kernel)])


class DynamicsState(NamedTuple):
  """Feature state of the Xu 2019 observation.

  Attributes:
    pred_log_var_ema: EMA of ``log var(predictions)`` (scalar).
    pred_change_log_var_ema: EMA of ``log var(prediction change)`` (scalar).
    prev_predictions: predictions at the previous evaluation ``(B, classes)``.
    count: number of updates done (int32 scalar).
  """
  pred_log_var_ema: chex.Array
  pred_change_log_var_ema: chex.Array
  prev_predictions: chex.Array
  count: chex.Array


def dynamics_init(predictions_shape: tuple[int, ...],
                  key: Optional[chex.PRNGKey] = None,
                  dtype: Any = jnp.float32) -> DynamicsState:
  """Initial feature state.

  Args:
    predictions_shape: shape of the predictions passed to every update,
      ``(B, classes)``; B must stay the same across updates.
    key: if given, the previous predictions start as ``U[0, 1)`` noise, as
      in the official code; if None, as zeros (then the first change is the
      predictions themselves).
    dtype: float dtype of the state.

  Returns:
    A ``DynamicsState``.
  """
  shape = tuple(predictions_shape)
  if len(shape) < 1 or any(d < 1 for d in shape):
    raise ValueError(
        f"predictions_shape must be a non-empty shape like (batch, classes); "
        f"got {predictions_shape}.")
  if key is None:
    prev = jnp.zeros(shape, dtype)
  else:
    prev = jax.random.uniform(key, shape, dtype)
  zero = jnp.zeros([], dtype)
  return DynamicsState(zero, zero, prev, jnp.zeros([], jnp.int32))


def dynamics_update(
    state: DynamicsState,
    *,
    params: Any,
    predictions: chex.Array,
    train_loss: chex.Numeric,
    lr: chex.Numeric,
    val_loss: Optional[chex.Numeric] = None,
    first_dense: Optional[params_lib.LayerSpec] = None,
    last_dense: Optional[params_lib.LayerSpec] = None,
    decay: float = DEFAULT_DECAY,
) -> tuple[chex.Array, DynamicsState]:
  """Updates the EMAs and returns the 9-number observation.

  Args:
    state: state from ``dynamics_init`` or the previous update.
    params: Flax params (or full variables) of the trainee.
    predictions: class probabilities ``(B, classes)`` at this evaluation.
    train_loss: training loss (scalar).
    lr: current learning rate (scalar).
    val_loss: validation loss (scalar); None when the caller has none (e.g. the
      ``controlled`` optax wrapper without a validation set): the train loss
      is used in its place.
    first_dense: path of the first dense layer; None = first 2-D kernel in
      dict iteration order (see ``lr_meta.features.params``: resolve it once
      from the params of ``model.init`` inside training loops).
    last_dense: path of the last dense layer; None = last 2-D kernel.
    decay: EMA decay in [0, 1).

  Returns:
    ``(observation, new_state)``; observation is ``(9,)`` ordered as
    ``OBSERVATION_NAMES``.
  """
  smoothing.check_decay(decay)
  chex.assert_equal_shape([predictions, state.prev_predictions])
  if first_dense is None:
    first_dense = params_lib.first_dense_layer(params)
  if last_dense is None:
    last_dense = params_lib.last_dense_layer(params)
  dtype = state.pred_log_var_ema.dtype
  train_loss = jnp.asarray(train_loss, dtype)
  val_loss = train_loss if val_loss is None else jnp.asarray(val_loss, dtype)
  chex.assert_rank([train_loss, val_loss], 0)

  predictions = predictions.astype(dtype)
  pred_lv = smoothing.ema_first_value(
      state.pred_log_var_ema, log_variance(predictions), decay, state.count)
  change_lv = smoothing.ema_first_value(
      state.pred_change_log_var_ema,
      log_variance(predictions - state.prev_predictions), decay, state.count)
  first = kernel_moments(params_lib.get_kernel(params, first_dense))
  last = kernel_moments(params_lib.get_kernel(params, last_dense))
  obs = jnp.concatenate([
      jnp.stack([val_loss, pred_lv, change_lv, train_loss]),
      first.astype(dtype), last.astype(dtype),
      jnp.asarray(lr, dtype)[None],
  ])
  new_state = DynamicsState(pred_lv, change_lv, predictions, state.count + 1)
  return obs, new_state
