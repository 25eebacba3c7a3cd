"""NOS learning-rate schedules, value by value against the TF formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lr_meta.optax as lmo


def np_linear_cosine(t, lr0, T, n=0.5, alpha=0.0, beta=0.001, noise=0.0):
  t = min(t, T)
  linear = (T - t) / T + noise
  cosine = 0.5 * (1 + math.cos(math.pi * 2 * n * t / T))
  return lr0 * ((alpha + linear) * cosine + beta)


@pytest.mark.parametrize("t", [0, 1, 10, 50, 99, 100, 101, 1000])
@pytest.mark.parametrize("n,alpha,beta", [(0.5, 0.0, 0.001), (2.0, 0.1, 0.0)])
def test_linear_cosine(t, n, alpha, beta):
  schedule = lmo.linear_cosine_decay_schedule(0.3, 100, num_periods=n,
                                              alpha=alpha, beta=beta)
  np.testing.assert_allclose(schedule(t),
                             np_linear_cosine(t, 0.3, 100, n, alpha, beta),
                             rtol=1e-5, atol=1e-8)


def test_linear_cosine_endpoints():
  schedule = lmo.linear_cosine_decay_schedule(1.0, 10)
  np.testing.assert_allclose(schedule(0), 1.001, rtol=1e-6)
  np.testing.assert_allclose(schedule(10), 0.001, rtol=1e-5)
  np.testing.assert_allclose(schedule(20), 0.001, rtol=1e-5)


@pytest.mark.parametrize("t", [0, 3, 50, 100, 150])
def test_noisy_linear_cosine(t):
  key = jax.random.PRNGKey(3)
  schedule = lmo.noisy_linear_cosine_decay_schedule(
      0.3, 100, key=key, initial_variance=0.5, variance_decay=0.55)
  # The documented noise: N(0, 1) from fold_in(key, count), scaled by the
  # annealed standard deviation at min(t, T).
  unit = float(jax.random.normal(jax.random.fold_in(key, t), ()))
  std = math.sqrt(0.5 / (1 + min(t, 100)) ** 0.55)
  np.testing.assert_allclose(
      schedule(t), np_linear_cosine(t, 0.3, 100, noise=std * unit),
      rtol=1e-5, atol=1e-7)


def test_noisy_is_deterministic_and_varies():
  key = jax.random.PRNGKey(0)
  schedule = lmo.noisy_linear_cosine_decay_schedule(1.0, 1000, key=key)
  values = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(200)))
  np.testing.assert_allclose(values, schedule(jnp.arange(200)), rtol=1e-6)
  clean = np.array([np_linear_cosine(t, 1.0, 1000) for t in range(200)])
  noise = values - clean
  assert noise.std() > 0.05  # noise is there ...
  # ... and anneals: later steps are quieter than early ones.
  assert np.abs(noise[150:]).mean() < np.abs(noise[:50]).mean() * 1.5


def test_schedule_drives_power_sign():
  opt = lmo.power_sign(lmo.linear_cosine_decay_schedule(0.1, 10))
  params = jnp.ones(3)
  state = opt.init(params)
  updates, _ = opt.update(jnp.ones(3), state)
  # First step: m = 0.1 g agrees with g, so u = e * g, lr = 0.1 * 1.001.
  np.testing.assert_allclose(updates, -0.1 * 1.001 * math.e, rtol=1e-6)


def test_bad_decay_steps():
  with pytest.raises(ValueError, match="decay_steps"):
    lmo.linear_cosine_decay_schedule(0.1, -5)

