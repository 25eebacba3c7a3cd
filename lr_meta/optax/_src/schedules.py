"""Learning-rate schedules found by NOS (Bello et al. 2017, section 5.2).

Reference: TF `linear_cosine_decay` / `noisy_linear_cosine_decay` (Keras
`LinearCosineDecay`, `NoisyLinearCosineDecay`). With ``t' = min(t, T)``::

  lr(t) = lr0 * ((alpha + ld(t') [+ eps_t]) * cd_n(t') + beta)

``ld`` and ``cd_n`` are the NOS decay operands (`lr_meta.rules.decays`).
"""

import chex
import jax
import jax.numpy as jnp
import optax

from lr_meta.rules import decays

__all__ = [
    "linear_cosine_decay_schedule", "noisy_linear_cosine_decay_schedule",
]


def linear_cosine_decay_schedule(init_value, decay_steps, num_periods=0.5,
                                 alpha=0.0, beta=0.001) -> optax.Schedule:
  """``lr0 * ((alpha + ld) * cd_n + beta)``; constant after `decay_steps`.

  Args:
    init_value: lr0.
    decay_steps: T.
    num_periods: n of the cosine (0.5: one half period).
    alpha: added to the linear decay.
    beta: floor added to the product.

  Returns:
    An optax schedule ``count -> learning rate``.
  """
  decays.check_decay_steps(decay_steps)

  def schedule(count):
    t = jnp.minimum(count, decay_steps)
    linear = decays.linear_decay(t, decay_steps)
    cosine = decays.cosine_decay(t, decay_steps, num_periods)
    return init_value * ((alpha + linear) * cosine + beta)

  return schedule


def noisy_linear_cosine_decay_schedule(
    init_value, decay_steps, num_periods=0.5, alpha=0.0, beta=0.001, *,
    key: chex.PRNGKey, initial_variance=1.0, variance_decay=0.55,
) -> optax.Schedule:
  """``lr0 * ((alpha + ld + eps_t) * cd_n + beta)``, eps_t annealed noise.

  ``eps_t ~ N(0, initial_variance / (1 + t')**variance_decay)``. The noise is a
  pure function of (`key`, step): it is drawn from
  ``jax.random.fold_in(key, count)``, so the schedule stays a deterministic,
  jit-able optax schedule (same count, same value; a new `key` gives a new
  noise sequence).

  Args:
    init_value: lr0.
    decay_steps: T.
    num_periods: n of the cosine.
    alpha: added to the linear decay.
    beta: floor added to the product.
    key: PRNG key of the noise sequence.
    initial_variance: variance of the noise at t = 0.
    variance_decay: exponent of the variance's decay.

  Returns:
    An optax schedule ``count -> learning rate``.
  """
  decays.check_decay_steps(decay_steps)
  # vectorize: fold_in takes one count; schedules may be evaluated on arrays.
  _noise = jnp.vectorize(
      lambda c: jax.random.normal(jax.random.fold_in(key, c), ()))

  def schedule(count):
    t = jnp.minimum(count, decay_steps)
    std = decays.annealed_noise_std(t, initial_variance, variance_decay)
    noise = std * _noise(count)
    linear = decays.linear_decay(t, decay_steps) + noise
    cosine = decays.cosine_decay(t, decay_steps, num_periods)
    return init_value * ((alpha + linear) * cosine + beta)

  return schedule
