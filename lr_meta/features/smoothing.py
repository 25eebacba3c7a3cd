"""Running averages of noisy features, with an uncertainty estimate.

Mini-batch features are noisy; Daniel, Taylor & Nowozin (2016, "mini-batch
setting") smooth each feature ``phi`` with a discounted running average and
track its noise level::

  phi_hat_t = gamma * phi_hat_{t-1} + (1 - gamma) * phi_t
  u_t       = gamma * u_{t-1}       + (1 - gamma) * (phi_t - phi_bar_{t-1})**2

Both start at zero and are bias-corrected by ``1 - gamma**(t+1)`` (t = 0 on the
first update), as Adam does, so ``phi_bar_t = phi_hat_t / (1 - gamma**(t+1))``
is an unbiased weighted average from the very first step.

Which ``phi_hat`` enters the uncertainty: the bias-corrected running average
*before* this update, ``phi_bar_{t-1}``, i.e. the deviation of the new
observation from what the past predicted. On the first update there is no past
estimate and the deviation is taken as 0 (so ``u`` starts at 0 and grows as
observations disagree). The raw zero-initialised ``phi_hat_{t-1} = 0`` would
instead put ``phi_0**2`` into ``u``, a pure initialisation artefact.

The Xu et al. (2019) observation uses a different EMA start (the first value,
see ``ema_first_value``), as their official code does.
"""

from typing import NamedTuple

import chex
import jax.numpy as jnp

__all__ = [
    "bias_correction", "check_decay", "ema", "ema_first_value",
    "running_stats_debiased", "running_stats_features", "running_stats_init",
    "running_stats_update", "RunningStats",
]


def check_decay(decay) -> None:
  """Eager check of a Python decay; traced values pass unchecked."""
  if isinstance(decay, (int, float)) and not 0.0 <= decay < 1.0:
    raise ValueError(f"decay must be in [0, 1); got {decay}.")


def ema(average: chex.Array, value: chex.Array, decay: chex.Numeric
        ) -> chex.Array:
  """One EMA step: ``decay * average + (1 - decay) * value``."""
  check_decay(decay)
  return decay * average + (1.0 - decay) * value


def ema_first_value(average: chex.Array, value: chex.Array,
                    decay: chex.Numeric, count: chex.Numeric) -> chex.Array:
  """EMA that starts at the first value (``count`` = updates done so far).

  ``count == 0``: returns ``value``; else ``ema(average, value, decay)``.
  This is the start used by the official code of Xu et al. 2019
  (``if ema == 0: ema = value``), without the sentinel.
  """
  return jnp.where(count == 0, value, ema(average, value, decay))


def bias_correction(average: chex.Array, decay: chex.Numeric,
                    count: chex.Numeric) -> chex.Array:
  """``average / (1 - decay**count)``, ``count`` = number of updates done.

  With the 0-based step index ``t`` of the update just done, ``count = t + 1``,
  i.e. the correction ``1 - gamma**(t+1)`` of Daniel et al. 2016. ``count``
  must be >= 1.
  """
  count = jnp.asarray(count)
  correction = 1.0 - jnp.asarray(decay, jnp.float32) ** count.astype(
      jnp.float32)
  return average / correction.astype(jnp.result_type(average))


class RunningStats(NamedTuple):
  """Running average and uncertainty of a feature vector (raw, zero-started).

  Attributes:
    mean: raw running average ``phi_hat`` (not bias-corrected).
    uncertainty: raw running average ``u`` of squared deviations.
    count: number of updates done (int32 scalar).
  """
  mean: chex.Array
  uncertainty: chex.Array
  count: chex.Array


def running_stats_init(like: chex.Array) -> RunningStats:
  """Zero state shaped and typed like ``like`` (a feature vector)."""
  like = jnp.asarray(like)
  return RunningStats(
      mean=jnp.zeros_like(like),
      uncertainty=jnp.zeros_like(like),
      count=jnp.zeros([], jnp.int32))


def running_stats_debiased(state: RunningStats, decay: chex.Numeric
                           ) -> tuple[chex.Array, chex.Array]:
  """Bias-corrected ``(phi_bar, u_bar)``; zeros before the first update."""
  check_decay(decay)
  safe = jnp.maximum(state.count, 1)
  started = state.count > 0
  mean = jnp.where(started, bias_correction(state.mean, decay, safe), 0.0)
  unc = jnp.where(started, bias_correction(state.uncertainty, decay, safe),
                  0.0)
  return mean.astype(state.mean.dtype), unc.astype(state.uncertainty.dtype)


def running_stats_update(state: RunningStats, value: chex.Array,
                         decay: chex.Numeric) -> RunningStats:
  """One smoothing step of Daniel et al. 2016 (see the module docstring).

  Args:
    state: the state before this update.
    value: the new observation ``phi_t``, shaped like ``state.mean``.
    decay: ``gamma`` in [0, 1).

  Returns:
    The updated state; read it with ``running_stats_debiased``.
  """
  check_decay(decay)
  value = jnp.asarray(value, state.mean.dtype)
  chex.assert_equal_shape([value, state.mean])
  prev_bar, _ = running_stats_debiased(state, decay)
  deviation = jnp.where(state.count > 0, value - prev_bar, 0.0)
  return RunningStats(
      mean=ema(state.mean, value, decay),
      uncertainty=ema(state.uncertainty, deviation**2, decay),
      count=state.count + 1)


def running_stats_features(state: RunningStats, decay: chex.Numeric
                           ) -> chex.Array:
  """``[phi_bar, u_bar]`` concatenated: the controller input of Daniel 2016."""
  mean, unc = running_stats_debiased(state, decay)
  return jnp.concatenate([jnp.ravel(mean), jnp.ravel(unc)])

