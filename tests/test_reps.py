"""Tests for lr_meta.agents.reps (episodic REPS, Daniel et al. 2016)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from lr_meta.agents import reps
from lr_meta.envs import toy


def _returns(k, seed=1, scale=3.0):
  return jax.random.normal(jax.random.PRNGKey(seed), (k,)) * scale


def test_dual_minimum_matches_scipy_and_optimality_condition():
  returns = _returns(20)
  eta = float(reps.solve_dual(returns, 1.0))
  dual = lambda log_eta: float(reps.dual(jnp.float32(np.exp(log_eta)),
                                         returns, 1.0))
  ref = scipy.optimize.minimize_scalar(dual, bounds=(-10, 10),
                                       method="bounded",
                                       options={"xatol": 1e-8})
  np.testing.assert_allclose(eta, np.exp(ref.x), rtol=1e-3)
  # g'(eta) = epsilon - KL(p_eta || uniform) = 0 at the optimum.
  np.testing.assert_allclose(reps.weights_kl(returns, eta), 1.0, atol=1e-4)
  # Numerical derivative of the dual vanishes too.
  h = 1e-3 * eta
  grad = (float(reps.dual(jnp.float32(eta + h), returns, 1.0)) -
          float(reps.dual(jnp.float32(eta - h), returns, 1.0))) / (2 * h)
  assert abs(grad) < 1e-2


def test_dual_is_shift_invariant_and_stable_for_large_returns():
  shifted = _returns(20) + 1e6            # float32: multiples of 1/16
  eta_shifted = reps.solve_dual(shifted, 0.5)
  eta = reps.solve_dual(shifted - 1e6, 0.5)  # the same values, exactly
  assert np.isfinite(float(eta_shifted))
  np.testing.assert_allclose(eta_shifted, eta, rtol=1e-3)


def test_inactive_constraint_gives_greedy_weights():
  # With K = 2, max KL(p || uniform) = log 2 < epsilon = 1: greedy is allowed.
  returns = jnp.array([0.0, 1.0])
  eta = reps.solve_dual(returns, 1.0)
  kl = float(reps.weights_kl(returns, eta))
  assert kl <= 1.0
  np.testing.assert_allclose(kl, np.log(2.0), atol=1e-4)


def test_weighted_ml_update_matches_numpy():
  thetas = jax.random.normal(jax.random.PRNGKey(0), (10, 2))
  returns = _returns(10, seed=2)
  dist = reps.SearchDistribution(jnp.zeros(2), jnp.eye(2))
  new, info = reps.reps_update(thetas, returns, dist, 0.5, cov_reg=1e-3)
  r = np.asarray(returns, np.float64)
  w = np.exp((r - r.max()) / float(info.eta))
  w /= w.sum()
  th = np.asarray(thetas, np.float64)
  mean = w @ th
  cov = (w[:, None] * (th - mean)).T @ (th - mean) + 1e-3 * np.eye(2)
  np.testing.assert_allclose(new.mean, mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new.cov, cov, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(info.weights, w, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(info.kl_weights, 0.5, atol=1e-4)


def test_gaussian_kl_matches_closed_form():
  p = reps.SearchDistribution(jnp.array([1.0]), jnp.array([[4.0]]))
  q = reps.SearchDistribution(jnp.array([0.0]), jnp.array([[1.0]]))
  # KL(N(1, 4) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2.
  np.testing.assert_allclose(reps.gaussian_kl(p, q),
                             np.log(0.5) + 2.5 - 0.5, rtol=1e-6)


def test_reps_moves_to_optimum_within_kl_bound():
  star = jnp.array([1.0, -2.0])
  dist = reps.SearchDistribution(jnp.zeros(2), jnp.eye(2))
  update = jax.jit(reps.reps_update, static_argnums=(3, 4, 5))
  key = jax.random.PRNGKey(0)
  distances = [float(jnp.linalg.norm(dist.mean - star))]
  for _ in range(15):
    key, k = jax.random.split(key)
    thetas = reps.sample_thetas(k, dist, 32)
    returns = -jnp.sum((thetas - star)**2, axis=-1)
    dist, info = update(thetas, returns, dist, 1.0, 1e-6, 100)
    assert float(info.kl_weights) <= 1.0 + 1e-3
    distances.append(float(jnp.linalg.norm(dist.mean - star)))
  assert distances[-1] < 0.05 * distances[0], distances


@pytest.mark.parametrize("field,value", [("epsilon", 0.0),
                                         ("num_samples", 1),
                                         ("init_std", -1.0),
                                         ("strategy", "vmap")])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    reps.REPSConfig(**{field: value})


def test_reps_learns_linear_controller_on_target_env():
  # Target action 0.3 + 0.5 x with obs [x, t/T]: the linear controller on
  # [x, t/T, 1] has optimum theta = (0.5, 0, 0.3).
  env = toy.TargetEnv()
  params = env.default_params.replace(target_slope=0.5)
  agent = reps.make_reps(reps.REPSConfig(num_samples=16, init_std=0.5), env,
                         params)
  state = agent.init(jax.random.PRNGKey(0))
  state, first = agent.update_iteration(state)
  for _ in range(14):
    state, metrics = agent.update_iteration(state)
    assert float(metrics["kl_weights"]) <= 1.0 + 1e-3
  np.testing.assert_allclose(state.dist.mean, [0.5, 0.0, 0.3], atol=0.05)
  assert float(metrics["mean_return"]) > -0.01 > float(first["mean_return"])
