"""Tests for lr_meta.agents.dqn (Fu 2016 / Mnih et al. 2015 DQN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta.agents import _common
from lr_meta.agents import dqn
from lr_meta.envs import toy

Q_TM1 = jnp.array([[1.0, 2.0], [3.0, 4.0]])
Q_T_TARGET = jnp.array([[5.0, 0.5], [2.0, 2.0]])
Q_T_ONLINE = jnp.array([[0.0, 1.0], [1.0, 0.0]])


def _batch(valid):
  return dqn.Transition(obs_tm1=None, a_tm1=jnp.array([0, 1]),
                        r_t=jnp.array([1.0, -1.0]),
                        discount_t=jnp.array([1.0, 0.0]), obs_t=None,
                        valid=jnp.array(valid))


@pytest.mark.parametrize("double_q,td,loss", [
    # td_0 = 1 + 0.5 * max(5, 0.5) - 1 = 2.5; td_1 = -1 + 0 - 4 = -5;
    # Huber(1): 2.5 -> 2.0, -5 -> 4.5.
    (False, [2.5, -5.0], 3.25),
    # double: online argmax at s_t is action 1 -> target q 0.5:
    # td_0 = 1 + 0.25 - 1 = 0.25 -> 0.03125.
    (True, [0.25, -5.0], (0.03125 + 4.5) / 2),
])
def test_dqn_loss_matches_hand_computation(double_q, td, loss):
  got_loss, got_td = dqn.dqn_loss(Q_TM1, Q_T_TARGET, Q_T_ONLINE,
                                  _batch([1.0, 1.0]), 0.5, double_q, 1.0)
  np.testing.assert_allclose(got_td, td, rtol=1e-6)
  np.testing.assert_allclose(got_loss, loss, rtol=1e-6)


def test_dqn_loss_ignores_invalid_transitions():
  loss, _ = dqn.dqn_loss(Q_TM1, Q_T_TARGET, Q_T_ONLINE, _batch([1.0, 0.0]),
                         0.5, False, 1.0)
  np.testing.assert_allclose(loss, 2.0, rtol=1e-6)


def test_replay_buffer_add_sample_wraparound():
  cfg = dqn.DQNConfig(num_envs=4, buffer_size=8, batch_size=6, burn_in=6)
  buffer = dqn.make_buffer(cfg)
  item = {"x": jnp.float32(0), "a": jnp.int32(0)}
  state = buffer.init(item)
  add = jax.jit(buffer.add)
  state = add(state, {"x": jnp.arange(4.0), "a": jnp.arange(4)})
  assert not bool(buffer.can_sample(state))       # 4 < batch_size 6
  for start in (4, 8):                             # 12 items into 8 slots
    state = add(state, {"x": jnp.arange(start, start + 4.0),
                        "a": jnp.arange(start, start + 4)})
  assert bool(buffer.can_sample(state))
  np.testing.assert_array_equal(np.sort(np.asarray(state.experience["a"][0])),
                                np.arange(4, 12))
  seen = set()
  for i in range(20):
    s = buffer.sample(state, jax.random.PRNGKey(i)).experience
    assert s["a"].shape == (6,)
    np.testing.assert_array_equal(np.asarray(s["x"]), np.asarray(s["a"]))
    seen.update(np.asarray(s["a"]).tolist())
  assert seen == set(range(4, 12))                 # 0..3 were overwritten


@pytest.mark.parametrize("field,value", [("gamma", 1.5), ("burn_in", 4),
                                         ("target_update", "soft"),
                                         ("optimizer", "sgd"),
                                         ("buffer_size", 2)])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    dqn.DQNConfig(**{field: value})


def _config(**kw):
  base = dict(num_envs=8, hidden_sizes=(32,), gamma=0.9, burn_in=200,
              batch_size=32, buffer_size=2000, epsilon_decay_transitions=1000,
              target_update_period=20, decisions_per_iteration=40)
  base.update(kw)
  return dqn.DQNConfig(**base)


@pytest.mark.parametrize("double_q,target_update", [(False, "hard"),
                                                    (True, "polyak")])
def test_dqn_learns_to_walk_the_chain(double_q, target_update):
  # ChainEnv(5): action 1 (right) is best everywhere; action 0 at the start
  # fails with -1. The greedy policy must reach the goal (return 1).
  env = toy.ChainEnv(5)
  params = env.default_params
  agent = dqn.make_dqn(_config(double_q=double_q, target_update=target_update,
                               tau=0.05), env, params)
  state = agent.init(jax.random.PRNGKey(0))
  state, metrics = agent.update_iteration(state)
  assert int(metrics["num_transitions"]) < 200            # still burning in
  assert int(metrics["num_updates"]) == 0
  for _ in range(9):
    state, metrics = agent.update_iteration(state)
  q = agent.network.apply(state.params, jnp.eye(5))
  assert bool(jnp.all(q[:4, 1] > q[:4, 0])), q
  returns, _ = _common.evaluate_episodes(
      env, params, agent.policy_fn, state.params, jax.random.PRNGKey(1), 4)
  np.testing.assert_allclose(returns, 1.0)


def test_scan_loop_agree_and_resume_is_exact():
  env = toy.ChainEnv(4)
  params = env.default_params
  kw = dict(burn_in=32, decisions_per_iteration=6, num_envs=4)
  scan = dqn.make_dqn(_config(strategy="scan", **kw), env, params)
  loop = dqn.make_dqn(_config(strategy="loop", **kw), env, params)
  s_scan = scan.init(jax.random.PRNGKey(3))
  s_loop = loop.init(jax.random.PRNGKey(3))
  for _ in range(3):
    s_scan, _ = scan.update_iteration(s_scan)
    s_loop, _ = loop.update_iteration(s_loop)
  assert int(s_scan.num_updates) > 0
  for x, y in zip(jax.tree.leaves(s_scan), jax.tree.leaves(s_loop)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5,
                               atol=1e-6)
  s = scan.init(jax.random.PRNGKey(3))
  for _ in range(2):
    s, _ = scan.update_iteration(s)
  s = jax.tree.map(np.asarray, jax.device_get(s))    # as a checkpoint would
  s, _ = scan.update_iteration(s)
  for x, y in zip(jax.tree.leaves(s), jax.tree.leaves(s_scan)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
