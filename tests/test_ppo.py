"""Tests for lr_meta.agents.ppo (Xu, Dai, Kemp, Metz 2019 PPO controller)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.agents import _common
from lr_meta.agents import ppo
from lr_meta.envs import toy


def test_gae_stops_at_episode_end():
  # Hand computation, gamma 0.9, lambda 0.8; the episode ends at step 1.
  # delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4, delta_1 = 2 - 1 = 1 (no bootstrap),
  # delta_2 = 3 + 0.9 * 0 - 2 = 1; A_2 = 1, A_1 = 1, A_0 = 1.4 + 0.72 * 1.
  adv = ppo.gae_advantages(jnp.array([1.0, 2.0, 3.0]),
                           jnp.array([False, True, False]),
                           jnp.array([0.5, 1.0, 2.0]), 0.9, 0.8)
  np.testing.assert_allclose(adv, [2.12, 1.0, 1.0], rtol=1e-6)


def test_ppo_loss_matches_hand_computation():
  mean = jnp.array([[0.0], [1.0], [0.5]])
  log_std = jnp.log(jnp.full((3, 1), 0.5))
  action = jnp.array([[0.2], [0.4], [9.0]])
  old_log_prob = jnp.array([-0.3, -1.5, 0.0])
  batch = ppo.PPOBatch(obs=None, action=action, log_prob=old_log_prob,
                       advantage=jnp.array([1.0, -2.0, 100.0]),
                       value_target=jnp.array([1.0, 0.0, 50.0]),
                       valid=jnp.array([True, True, False]))
  value = jnp.array([0.5, 1.0, 0.0])
  loss, aux = ppo.ppo_loss(mean, log_std, value, batch, 0.2, 0.01)

  s = 0.5
  logp = (-0.5 * ((np.array([0.2, 0.4]) - np.array([0.0, 1.0])) / s)**2
          - np.log(s) - 0.5 * np.log(2 * np.pi))
  ratio = np.exp(logp - np.array([-0.3, -1.5]))
  adv = np.array([1.0, -2.0])
  surrogate = np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv)
  pg = -surrogate.mean()
  vloss = 0.5 * np.mean((np.array([0.5, 1.0]) - np.array([1.0, 0.0]))**2)
  entropy = 0.5 * np.log(2 * np.pi * np.e * s**2)
  np.testing.assert_allclose(aux["pg_loss"], pg, rtol=1e-5)
  np.testing.assert_allclose(aux["value_loss"], vloss, rtol=1e-6)
  np.testing.assert_allclose(aux["entropy"], entropy, rtol=1e-6)
  np.testing.assert_allclose(loss, pg + vloss - 0.01 * entropy, rtol=1e-5)


@pytest.mark.parametrize("field,value", [("clip_epsilon", 1.5),
                                         ("gamma", -0.1), ("actor", "gru"),
                                         ("strategy", "while"),
                                         ("num_minibatches", 3)])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    ppo.PPOConfig(**{field: value})


def _eval_return(agent, state, env, params):
  returns, _ = _common.evaluate_episodes(env, params, agent.policy_fn,
                                         state.params,
                                         jax.random.PRNGKey(123), 64,
                                         agent.initial_carry((64,)))
  return float(jnp.mean(returns))


def test_ppo_learns_state_dependent_target_action():
  # Best action 0.3 + 0.5 x, x observed. Initial policy (mean ~0): expected
  # return -8 * (0.09 + 0.25 / 3) = -1.39; the learned one is near 0.
  env = toy.TargetEnv()
  params = env.default_params.replace(target_slope=0.5)
  agent = ppo.make_ppo(ppo.PPOConfig(num_envs=8), env, params)
  state = agent.init(jax.random.PRNGKey(0))
  before = _eval_return(agent, state, env, params)
  for _ in range(40):
    state, metrics = agent.update_iteration(state)
  after = _eval_return(agent, state, env, params)
  assert before < -1.2
  assert after > -0.25, (before, after)
  assert metrics["episode_return"] > -0.4


def _tree_allclose(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-6)


def test_lstm_scan_loop_agree_and_resume_is_exact():
  env = toy.TargetEnv()
  params = env.default_params
  cfg = dict(num_envs=4, actor="lstm", num_epochs=2, learn_log_std=True)
  scan = ppo.make_ppo(ppo.PPOConfig(strategy="scan", **cfg), env, params)
  loop = ppo.make_ppo(ppo.PPOConfig(strategy="loop", **cfg), env, params)
  s_scan = scan.init(jax.random.PRNGKey(1))
  s_loop = loop.init(jax.random.PRNGKey(1))
  for _ in range(2):
    s_scan, m_scan = scan.update_iteration(s_scan)
    s_loop, m_loop = loop.update_iteration(s_loop)
  _tree_allclose(s_scan, s_loop)
  _tree_allclose(m_scan, m_loop)
  # Resume from a host copy (what a checkpoint restores) after 1 iteration.
  s = scan.init(jax.random.PRNGKey(1))
  s, _ = scan.update_iteration(s)
  s = jax.tree.map(np.asarray, jax.device_get(s))
  s, _ = scan.update_iteration(s)
  _tree_allclose(s, s_scan)
  assert int(s.iteration) == 2


def test_make_train_is_one_jittable_function():
  env = toy.TargetEnv()
  config = ppo.PPOConfig(num_envs=4, num_epochs=2)
  train = jax.jit(ppo.make_train(config, env, env.default_params, 3))
  state, metrics = train(jax.random.PRNGKey(0))
  assert metrics["episode_return"].shape == (3,)
  assert int(state.iteration) == 3
  # The same numbers as init + three update_iteration calls.
  agent = ppo.make_ppo(config, env, env.default_params)
  expected = agent.init(jax.random.PRNGKey(0))
  for i in range(3):
    expected, m = agent.update_iteration(expected)
    _tree_allclose(jax.tree.map(lambda x, i=i: x[i], metrics), m)
  _tree_allclose(state, expected)
