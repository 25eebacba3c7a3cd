"""make_train (purejaxrl style) for every agent: one jittable function whose
result is the agent's own init + update_iteration loop."""

import jax
import numpy as np
import pytest

from lr_meta.agents import actor_critic
from lr_meta.agents import dqn
from lr_meta.agents import ppo
from lr_meta.agents import reps
from lr_meta.envs import toy

NUM_ITERATIONS = 3


def _cases():
  target, quadratic, chain = toy.TargetEnv(), toy.QuadraticLREnv(), toy.ChainEnv(4)
  return {
      "ppo": (ppo.make_train, ppo.make_ppo,
              ppo.PPOConfig(num_envs=4, num_epochs=2, actor="lstm",
                            learn_log_std=True), target),
      "actor_critic": (actor_critic.make_train,
                       actor_critic.make_actor_critic,
                       actor_critic.ActorCriticConfig(num_envs=4), quadratic),
      "dqn": (dqn.make_train, dqn.make_dqn,
              dqn.DQNConfig(num_envs=4, hidden_sizes=(16,), burn_in=32,
                            buffer_size=200, decisions_per_iteration=6,
                            target_update_period=5), chain),
      "reps": (reps.make_train, reps.make_reps,
               reps.REPSConfig(num_samples=4), target),
  }


def _assert_trees_close(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-6)


def _loop(agent, key):
  """The reference: init, then update_iteration in a Python loop."""
  state = agent.init(key)
  metrics = []
  for _ in range(NUM_ITERATIONS):
    state, m = agent.update_iteration(state)
    metrics.append(m)
  return state, jax.tree.map(lambda *x: np.stack(x), *metrics)


@pytest.mark.parametrize("name", ["ppo", "actor_critic", "dqn", "reps"])
def test_make_train_equals_update_iteration_loop(name):
  make_train, make_agent, config, env = _cases()[name]
  params = env.default_params
  key = jax.random.PRNGKey(4)
  train = jax.jit(make_train(config, env, params, NUM_ITERATIONS))
  state, metrics = train(key)
  ref_state, ref_metrics = _loop(make_agent(config, env, params), key)
  assert int(state.iteration) == NUM_ITERATIONS
  assert set(metrics) == set(ref_metrics)
  for k in metrics:
    assert metrics[k].shape[0] == NUM_ITERATIONS, k
  _assert_trees_close(state, ref_state)
  _assert_trees_close(metrics, ref_metrics)


class _ShiftedTargetEnv(toy.TargetEnv):
  """TargetEnv whose target is moved by ``shift`` (a family member)."""

  def __init__(self, shift):
    self.shift = shift

  def step(self, key, state, action, params):
    return super().step(key, state, action,
                        params.replace(target=params.target + self.shift))


def test_reps_over_tasks_make_train_equals_python_dispatch():
  envs = (_ShiftedTargetEnv(0.0), _ShiftedTargetEnv(-0.5))
  params = envs[0].default_params
  config = reps.REPSConfig(num_samples=4)
  key = jax.random.PRNGKey(1)     # draws members 0, 1, 1
  train = jax.jit(reps.make_train_over_tasks(config, envs, params,
                                             NUM_ITERATIONS))
  state, metrics = train(key)
  ref_state, ref_metrics = _loop(
      reps.make_reps_over_tasks(config, envs, params), key)
  # Both members were drawn, so both branches ran.
  assert set(np.asarray(metrics["member"]).tolist()) == {0, 1}
  np.testing.assert_array_equal(metrics["member"], ref_metrics["member"])
  _assert_trees_close(state, ref_state)
  _assert_trees_close(metrics, ref_metrics)


def test_make_train_needs_scan():
  env = toy.TargetEnv()
  with pytest.raises(ValueError, match="make_train needs strategy='scan', "
                     "got 'loop'"):
    ppo.make_train(ppo.PPOConfig(strategy="loop"), env, env.default_params, 2)
  with pytest.raises(ValueError, match="jittable=True needs strategy='scan'"):
    reps.make_train_over_tasks(reps.REPSConfig(strategy="loop"), (env,),
                               env.default_params, 2)
  with pytest.raises(ValueError, match="num_iterations=0"):
    reps.make_train(reps.REPSConfig(), env, env.default_params, 0)
