"""lr_meta.optax.polynomial_average against the formula written out."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lr_meta import optax as lmo


def _iterates(gamma, updates, x0):
  """Runs polynomial_average after a fixed sequence of updates."""
  opt = lmo.polynomial_average(gamma)
  params = {"w": jnp.asarray(x0, jnp.float32)}
  state = opt.init(params)
  averages = []
  for u in updates:
    out, state = opt.update({"w": jnp.asarray(u, jnp.float32)}, state,
                            params)
    np.testing.assert_array_equal(out["w"], u)   # passed through
    params = optax.apply_updates(params, out)
    averages.append(np.asarray(lmo.averaged_params(state)["w"]))
  return np.array(averages)


def test_gamma_8_matches_the_recursion_by_hand():
  # x_0 = 0 and x_t = t: x_bar_1 = 1 (weight 9/9), x_bar_2 = (1 - 9/10) 1
  # + (9/10) 2 = 1.9, x_bar_3 = (1 - 9/11) 1.9 + (9/11) 3 = 2.8.
  got = _iterates(8.0, [1.0, 1.0, 1.0], 0.0)
  np.testing.assert_allclose(got, [1.0, 1.9, 1.9 * 2 / 11 + 27 / 11],
                             rtol=1e-6)


def test_gamma_0_is_the_uniform_average_of_the_iterates():
  rng = np.random.default_rng(0)
  updates = rng.normal(size=6).astype(np.float32)
  iterates = np.cumsum(updates) + 2.0
  got = _iterates(0.0, updates, 2.0)
  want = np.cumsum(iterates) / np.arange(1, 7)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_chained_last_it_averages_the_next_params():
  opt = optax.chain(optax.sgd(0.5), lmo.polynomial_average(8.0))
  params = {"w": jnp.ones(3)}
  state = opt.init(params)
  grads = {"w": jnp.full(3, 2.0)}
  updates, state = opt.update(grads, state, params)
  # After one step the average is the new iterate: 1 - 0.5 * 2 = 0.
  np.testing.assert_allclose(lmo.averaged_params(state)["w"], np.zeros(3))
  assert isinstance(jax.jit(opt.update)(grads, state, params)[1][1],
                    lmo.PolynomialAverageState)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="gamma=-1"):
    lmo.polynomial_average(-1.0)
  opt = lmo.polynomial_average()
  state = opt.init({"w": jnp.zeros(2)})
  with pytest.raises(ValueError, match="needs params"):
    opt.update({"w": jnp.zeros(2)}, state)
