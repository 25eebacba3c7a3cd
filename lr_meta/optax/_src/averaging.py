"""Polynomial-decay averaging of the iterates (Shamir & Zhang 2013).

Ivgi, Hinder & Carmon 2023 (DoG, Section 4 and Appendix E) evaluate DoG at

  x_bar_t = (1 - (1 + gamma) / (t + gamma)) x_bar_{t-1}
            + (1 + gamma) / (t + gamma) x_t,        gamma = 8,

an average that forgets old iterates polynomially: its weight on the first
iterate falls like ``t**-(1+gamma)``. ``x_bar_0 = x_0`` and at ``t = 1`` the
weight is 1, so ``x_bar_1 = x_1``. The transform passes the updates through
unchanged and keeps ``x_bar`` in its state; evaluate at
``averaged_params(opt_state)``.
"""

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from lr_meta.optax._src import states


class PolynomialAverageState(NamedTuple):
  """State of ``polynomial_average``.

  Attributes:
    count: iterates averaged so far (t of the last one).
    average: ``x_bar_t``, a pytree like the params.
  """
  count: chex.Array
  average: optax.Params


def polynomial_average(gamma: float = 8.0) -> optax.GradientTransformation:
  """Keeps the polynomial-decay average of the iterates (module docstring).

  Place it LAST in a chain: the iterate it averages is ``params + updates``
  with the updates it receives, i.e. the next parameters.

  Args:
    gamma: the decay's power; ``gamma = 0`` is the uniform (Polyak-Ruppert)
      average of ``x_1 .. x_t``; 8 is DoG's choice.

  Returns:
    An ``optax.GradientTransformation`` that needs ``params`` in ``update``.
  """
  if not gamma >= 0:
    raise ValueError(f"polynomial_average: gamma={gamma!r}; allowed: a "
                     "number >= 0.")

  def init_fn(params):
    return PolynomialAverageState(count=jnp.zeros([], jnp.int32),
                                  average=jax.tree.map(jnp.asarray, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("polynomial_average needs params in update (the "
                       "iterate it averages is params + updates).")
    count = state.count + 1
    t = count.astype(jnp.float32)
    weight = (1.0 + gamma) / (t + gamma)
    iterate = optax.apply_updates(params, updates)
    average = jax.tree.map(
        lambda a, x: (a + weight * (x - a)).astype(a.dtype),
        state.average, iterate)
    return updates, PolynomialAverageState(count=count, average=average)

  return optax.GradientTransformation(init_fn, update_fn)


def averaged_params(state: Any) -> optax.Params:
  """The average ``x_bar_t`` held by the ``polynomial_average`` inside
  ``state`` (any optimizer state that contains exactly one)."""
  return states.find_state(state, PolynomialAverageState).average
