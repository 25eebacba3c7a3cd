"""Tests for lr_meta.agents.actor_critic (Xu, Qin, Wang, Liu 2017)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.agents import _common
from lr_meta.agents import actor_critic as ac
from lr_meta.envs import toy


def test_loss_matches_hand_computation():
  mean = jnp.array([[0.0], [1.0], [2.0]])
  log_std = jnp.log(jnp.full((3, 1), 0.5))
  a_tm1 = jnp.array([[0.5], [1.0], [7.0]])
  v_tm1 = jnp.array([1.0, 2.0, 3.0])
  r_t = jnp.array([0.5, -1.0, 10.0])
  discount_t = jnp.array([0.9, 0.0, 0.9])
  v_t = jnp.array([2.0, 5.0, 1.0])
  valid = jnp.array([True, True, False])
  loss, aux = ac.actor_critic_loss(mean, log_std, a_tm1, v_tm1, r_t,
                                   discount_t, v_t, valid)
  td = np.array([0.5 + 0.9 * 2.0 - 1.0, -1.0 - 2.0])     # [1.3, -3.0]
  logp = (-0.5 * (np.array([0.5, 0.0]) / 0.5)**2 - np.log(0.5)
          - 0.5 * np.log(2 * np.pi))
  np.testing.assert_allclose(aux["critic_loss"], 0.5 * np.mean(td**2),
                             rtol=1e-6)
  np.testing.assert_allclose(aux["actor_loss"], -np.mean(logp * td),
                             rtol=1e-6)
  np.testing.assert_allclose(loss, aux["actor_loss"] + aux["critic_loss"],
                             rtol=1e-6)


def test_critic_gradient_stops_at_the_target():
  # d/dv_t of the loss must be 0 (TD(0) semi-gradient).
  def f(v_t):
    return ac.actor_critic_loss(jnp.zeros((1, 1)), jnp.zeros((1, 1)),
                                jnp.zeros((1, 1)), jnp.array([1.0]),
                                jnp.array([1.0]), jnp.array([0.9]), v_t,
                                jnp.array([True]))[0]
  np.testing.assert_allclose(jax.grad(f)(jnp.array([3.0])), 0.0)


@pytest.mark.parametrize("field,value", [("gamma", 2.0), ("actor_lr", 0.0),
                                         ("action_std", -0.1),
                                         ("num_envs", 0)])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    ac.ActorCriticConfig(**{field: value})


def _greedy_return(agent, state, env, params):
  returns, actions = _common.evaluate_episodes(
      env, params, agent.policy_fn, state.params, jax.random.PRNGKey(7), 16)
  return float(jnp.mean(returns)), float(jnp.mean(actions))


def test_actor_critic_learns_the_best_learning_rate():
  # GD on 0.5 * (w1^2 + 3 w2^2): best constant LR 2 / (1 + 3) = 0.5, i.e.
  # action log10(0.5 / 0.01) = 1.70; LR above 2/3 (action > 1.82) diverges.
  env = toy.QuadraticLREnv()
  params = env.default_params
  best = env.best_action(params)
  np.testing.assert_allclose(best, np.log10(50.0), rtol=1e-6)
  agent = ac.make_actor_critic(ac.ActorCriticConfig(num_envs=8), env, params)
  state = agent.init(jax.random.PRNGKey(0))
  before, action_before = _greedy_return(agent, state, env, params)
  for _ in range(120):
    state, _ = agent.update_iteration(state)
  after, action_after = _greedy_return(agent, state, env, params)
  assert abs(action_before) < 0.1                  # starts at LR 0.01
  assert abs(action_after - best) < 0.3, action_after
  # Return at LR 0.01 is ~ -10 log(0.99^2) = 0.2; near LR 0.5 it is ~12.
  assert before < 1.0 and after > 9.0, (before, after)


def test_scan_and_loop_agree():
  env = toy.QuadraticLREnv()
  params = env.default_params
  outs = []
  for strategy in ("scan", "loop"):
    agent = ac.make_actor_critic(
        ac.ActorCriticConfig(num_envs=4, strategy=strategy), env, params)
    state = agent.init(jax.random.PRNGKey(2))
    for _ in range(2):
      state, metrics = agent.update_iteration(state)
    outs.append((state, metrics))
  for x, y in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-6)
