"""PowerSign and AddSign (Bello et al. 2017, section 5.1) and sign decays.

Reference: TF contrib `PowerSignOptimizer` / `AddSignOptimizer` and
`tf.contrib.opt.sign_decay`. With ``s = sign(g) * sign(m)`` and the NEW
moving average ``m <- beta m + (1 - beta) g``:

* PowerSign: ``u = base ** (f(t) s) * g`` (computed as ``exp(log(base) f(t) s)
  * g``),
* AddSign: ``u = (alpha + f(t) s) * g``,

where ``f`` is an optional sign decay of the step count ``t`` before the update
(``f = 1`` without decay) and parameters move by ``-lr * u``.
"""

import math
from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from lr_meta.rules import decays

__all__ = [
    "add_sign", "cosine_sign_decay", "linear_sign_decay", "power_sign",
    "restart_sign_decay", "scale_by_add_sign", "scale_by_power_sign",
    "ScaleBySignState", "SignDecayFn",
]

SignDecayFn = Callable[[chex.Numeric], chex.Numeric]


def _zero_after(decayed, t, zero_after):
  if zero_after is None:
    return decayed
  return jnp.where(jnp.asarray(t) >= zero_after, 0.0, decayed)


def linear_sign_decay(decay_steps) -> SignDecayFn:
  """f(t) = max(0, (T - min(t, T)) / T) (TF `get_linear_decay_fn`)."""
  decays.check_decay_steps(decay_steps)
  return lambda t: decays.linear_decay(t, decay_steps)


def cosine_sign_decay(decay_steps, num_periods=0.5,
                      zero_after=None) -> SignDecayFn:
  """f(t) = 0.5 (1 + cos(2 pi n min(t, T) / T)), 0 from `zero_after` on.

  TF `get_cosine_decay_fn`; ``num_periods = 0.5`` decays from 1 to 0 once.
  """
  decays.check_decay_steps(decay_steps)
  return lambda t: _zero_after(
      decays.cosine_decay(t, decay_steps, num_periods), t, zero_after)


def restart_sign_decay(decay_steps, num_periods=1,
                       zero_after=None) -> SignDecayFn:
  """f(t) = 0.5 (1 + cos(pi ((n t) % T) / T)), 0 from `zero_after` on.

  TF `get_restart_decay_fn` (SGDR-like restarts, Loshchilov & Hutter 2017).
  """
  decays.check_decay_steps(decay_steps)
  return lambda t: _zero_after(
      decays.restart_decay(t, decay_steps, num_periods), t, zero_after)


class ScaleBySignState(NamedTuple):
  """State of `scale_by_power_sign` / `scale_by_add_sign`."""
  count: chex.Array  # int32, updates so far (t of the sign decay)
  mu: optax.Updates  # EMA of the gradient


def _scale_by_sign_agreement(
    multiplier_fn: Callable[[chex.Array], chex.Array],
    beta: float,
    sign_decay_fn: Optional[SignDecayFn],
) -> optax.GradientTransformationExtraArgs:
  """u = multiplier_fn(f(t) sign(g) sign(m)) * g, the shared PowerSign/AddSign core."""

  def init_fn(params):
    return ScaleBySignState(count=jnp.zeros([], jnp.int32),
                            mu=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    mu = optax.tree.update_moment(updates, state.mu, beta, 1)
    decay = 1.0 if sign_decay_fn is None else sign_decay_fn(state.count)

    def scale(g, m):
      agreement = jnp.asarray(decay, g.dtype) * jnp.sign(g) * jnp.sign(m)
      return multiplier_fn(agreement).astype(g.dtype) * g

    updates = jax.tree.map(scale, updates, mu)
    return updates, ScaleBySignState(
        count=optax.safe_increment(state.count), mu=mu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_beta(beta):
  if isinstance(beta, (int, float)) and not 0.0 <= beta < 1.0:
    raise ValueError(f"beta must be in [0, 1), got {beta}")


def scale_by_power_sign(base: float = math.e, beta: float = 0.9,
                        sign_decay_fn: Optional[SignDecayFn] = None):
  """Rescales g by ``base ** (f(t) sign(g) sign(m))`` (PowerSign).

  Args:
    base: the base alpha (> 0); e in the paper, larger converges faster.
    beta: EMA decay of the gradient average m.
    sign_decay_fn: optional f(t), e.g. `linear_sign_decay(T)`.

  Returns:
    An `optax.GradientTransformationExtraArgs`.
  """
  if isinstance(base, (int, float)) and base <= 0:
    raise ValueError(f"base must be > 0, got {base}")
  _check_beta(beta)
  return _scale_by_sign_agreement(
      lambda s: jnp.exp(jnp.log(jnp.asarray(base, s.dtype)) * s), beta,
      sign_decay_fn)


def scale_by_add_sign(alpha: float = 1.0, beta: float = 0.9,
                      sign_decay_fn: Optional[SignDecayFn] = None):
  """Rescales g by ``alpha + f(t) sign(g) sign(m)`` (AddSign).

  Args:
    alpha: the offset; 1 in the paper (AddSign then only moves parameters
      whose gradient agrees with its average).
    beta: EMA decay of the gradient average m.
    sign_decay_fn: optional f(t).

  Returns:
    An `optax.GradientTransformationExtraArgs`.
  """
  _check_beta(beta)
  return _scale_by_sign_agreement(lambda s: alpha + s, beta, sign_decay_fn)


def power_sign(learning_rate: optax.ScalarOrSchedule, base: float = math.e,
               beta: float = 0.9,
               sign_decay_fn: Optional[SignDecayFn] = None):
  """PowerSign optimizer: params move by ``-lr * base**(f(t) s) * g``.

  Bello et al. 2017, section 5.1; `lr` 0.1 is the TF default.

  Args:
    learning_rate: float or optax schedule.
    base: base alpha of the power.
    beta: EMA decay of the gradient average.
    sign_decay_fn: optional sign decay f(t).

  Returns:
    An `optax.GradientTransformationExtraArgs`.
  """
  return optax.chain(scale_by_power_sign(base, beta, sign_decay_fn),
                     optax.scale_by_learning_rate(learning_rate))


def add_sign(learning_rate: optax.ScalarOrSchedule, alpha: float = 1.0,
             beta: float = 0.9,
             sign_decay_fn: Optional[SignDecayFn] = None):
  """AddSign optimizer: params move by ``-lr * (alpha + f(t) s) * g``.

  Bello et al. 2017, section 5.1.

  Args:
    learning_rate: float or optax schedule.
    alpha: offset alpha.
    beta: EMA decay of the gradient average.
    sign_decay_fn: optional sign decay f(t).

  Returns:
    An `optax.GradientTransformationExtraArgs`.
  """
  return optax.chain(scale_by_add_sign(alpha, beta, sign_decay_fn),
                     optax.scale_by_learning_rate(learning_rate))
