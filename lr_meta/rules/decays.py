"""Step-count decays shared by the NOS operands, sign decays and schedules.

Bello et al. 2017 (Neural Optimizer Search), section 4.1, and the TF contrib
`sign_decay` / Keras `LinearCosineDecay` reference code. These are the one
place where the formulas live: `lr_meta.optax` sign decays and learning-rate
schedules, the `ld`/`cd`/`rd`/`eps_t` operands of the update-rule language and
the batched interpreter all call them.

`t` is the step count BEFORE the update (0 on the first update) and may be a
traced integer; `decay_steps` (T) may be a Python number or a traced scalar
(e.g. under `optax.inject_hyperparams`).

This module (and all of `lr_meta.rules`) must not import `lr_meta.optax`, which
re-exports from here: `lr_meta.optax` is the higher layer.
"""

import math

import jax
import jax.numpy as jnp

__all__ = (
    "annealed_noise_std",
    "check_decay_steps",
    "cosine_decay",
    "linear_decay",
    "restart_decay",
)


def check_decay_steps(decay_steps, name: str = "decay_steps"):
  """Returns `decay_steps` (T) if it is a positive whole number of steps.

  Traced values (under `jax.jit` or `optax.inject_hyperparams`) pass
  unchecked; an integer-valued float such as ``1e4`` is accepted.

  Raises:
    ValueError: naming the value, for NaN, inf, zero, negative, fractional
      or non-numeric T.
  """
  if isinstance(decay_steps, jax.core.Tracer):
    return decay_steps
  try:
    value = (None if isinstance(decay_steps, (str, bytes, bool))
             else float(decay_steps))
  except (TypeError, ValueError):
    value = None
  if value is None or not (math.isfinite(value) and value >= 1
                           and value == math.floor(value)):
    raise ValueError(f"{name}={decay_steps!r}; allowed: a whole number of "
                     "steps >= 1 (the T of the decays)")
  return decay_steps


def _as_float(t):
  return jnp.asarray(t, jnp.float32)


def linear_decay(t, decay_steps):
  """ld = max(0, (T - min(t, T)) / T) (NOS `ld = 1 - t/T`, clamped at T)."""
  t = jnp.minimum(_as_float(t), decay_steps)
  return (decay_steps - t) / decay_steps


def cosine_decay(t, decay_steps, num_periods=0.5):
  """cd_n = 0.5 * (1 + cos(2 pi n min(t, T) / T)); n = 0.5 is cosine decay."""
  t = jnp.minimum(_as_float(t), decay_steps)
  return 0.5 * (1.0 + jnp.cos(jnp.pi * 2.0 * num_periods * t / decay_steps))


def restart_decay(t, decay_steps, num_periods=1):
  """rd_n = 0.5 * (1 + cos(pi ((t n) % T) / T)) (SGDR-style restarts)."""
  fraction = jnp.mod(_as_float(t) * num_periods, decay_steps) / decay_steps
  return 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))


def annealed_noise_std(t, initial_variance=1.0, variance_decay=0.55):
  """Standard deviation of eps_t ~ N(0, initial_variance / (1 + t)^decay)."""
  return jnp.sqrt(initial_variance / (1.0 + _as_float(t)) ** variance_decay)
