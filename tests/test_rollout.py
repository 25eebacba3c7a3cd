"""Tests for lr_meta.envs.rollout, the one compiled evaluation rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lr_meta import experiment
from lr_meta import runner
from lr_meta import tasks
from lr_meta.agents import ppo
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.envs import toy


@pytest.fixture(scope="module")
def task():
  return tasks.make_task("mnist1d", "mlp", model_kwargs=dict(hidden_sizes=(8,)),
                         batch_size=16, num_train_examples=200,
                         num_val_examples=50, num_test_examples=50)


def _linear(params, obs, carry):
  """A deterministic policy linear in the observation (TargetEnv)."""
  return params[0] + params[1] * obs[..., :1], carry


def test_run_episode_rewards_match_hand_computation():
  # TargetEnv: reward -(clip(a) - 0.3 - 0.5 x)^2 with x = obs[0]; the policy
  # a = 0.2 + 0.4 x. The episode's observations and infos give every term.
  env = toy.TargetEnv()
  p = env.default_params.replace(target_slope=0.5)
  params = jnp.array([0.2, 0.4])
  key = jax.random.PRNGKey(3)
  obs0, _ = env.reset(key, p)
  _, infos = rollout.run_episode(env, p, _linear, params, key)
  assert infos["reward"].shape == (p.num_decisions,)
  actions = np.asarray(infos["action"])[:, 0]
  np.testing.assert_allclose(actions[0], 0.2 + 0.4 * float(obs0[0]),
                             rtol=1e-6)
  x = (actions - 0.2) / 0.4                       # the observed x per step
  np.testing.assert_allclose(infos["target"], 0.3 + 0.5 * x, rtol=1e-5)
  np.testing.assert_allclose(infos["reward"],
                             -(actions - 0.3 - 0.5 * x)**2, rtol=1e-4,
                             atol=1e-7)


def test_batched_equals_single_episodes():
  env = toy.QuadraticLREnv()
  p = env.default_params
  policy = lambda a, obs, c: (jnp.full(obs.shape[:-1] + (1,), a), c)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  states, infos = rollout.run_episodes(env, p, policy, 1.5, keys,
                                       strategy="loop")
  for i in range(3):
    state, info = rollout.run_episode(env, p, policy, 1.5, keys[i])
    np.testing.assert_allclose(info["lr"], infos["lr"][:, i], rtol=1e-6)
    np.testing.assert_allclose(info["reward"], infos["reward"][:, i],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state.w, states.w[i], rtol=1e-5)
  # lr = 0.01 * 10**1.5 at every decision.
  np.testing.assert_allclose(infos["lr"], 0.01 * 10**1.5, rtol=1e-6)


@pytest.mark.parametrize("action_type,action", [("xu2019", 0.3),
                                                ("fu2016", 0)])
def test_lr0s_equal_the_initial_lrs_draw(task, action_type, action):
  # The observation at reset holds the LR (log10(lr) / the previous LR):
  # an lr0s override must give the episode that initial_lrs=(lr0,) gives.
  env = lr_env.LREnv(task, action_type)
  p = env.default_params().with_fields(num_decisions=2, steps_per_decision=2,
                                       num_val_examples=20,
                                       initial_lrs=(0.5, 0.7))
  # A constant action: shape (1,) for xu2019, a scalar int for fu2016.
  action_shape = getattr(env, "action_shape", ())
  policy = lambda a, obs, c: (jnp.full(obs.shape[:-1] + action_shape, a), c)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  drawn, drawn_infos = rollout.run_episodes(
      env, p.replace(initial_lrs=(0.03,)), policy, action, keys)
  # One program for any lr0s: both calls below compile once.
  s, infos = rollout.run_episodes(env, p, policy, action, keys,
                                  lr0s=jnp.full((2,), 0.03))
  mixed, mixed_infos = rollout.run_episodes(env, p, policy, action, keys,
                                            lr0s=jnp.array([0.1, 0.03]))
  np.testing.assert_array_equal(s.obs, drawn.obs)
  np.testing.assert_array_equal(mixed.lr0, np.float32([0.1, 0.03]))
  for k in ("lr", "val_loss", "train_loss", "reward"):
    np.testing.assert_array_equal(infos[k], drawn_infos[k])
    # Per-episode LRs: episode 1 of the mixed batch is the same episode.
    np.testing.assert_array_equal(mixed_infos[k][:, 1], drawn_infos[k][:, 1])
  for k in ("lr", "train_loss"):    # episode 0 started elsewhere
    assert not np.array_equal(mixed_infos[k][:, 0], drawn_infos[k][:, 0])


def test_many_params_seeds_and_lr0s_compile_once(task):
  env = lr_env.LREnv(task, "xu2019")
  p = lr_env.LREnvParams.from_fields(num_decisions=2, steps_per_decision=2,
                                     num_val_examples=20)
  agent = ppo.make_ppo(ppo.PPOConfig(num_envs=2, num_minibatches=1), env, p)
  checkpoints = [agent.init(jax.random.PRNGKey(i)).params for i in range(3)]
  runs = {}
  with runner.count_compiles() as compiles:
    for c, params in enumerate(checkpoints):
      for lr0 in (0.1, 0.03):
        runs[c, lr0] = experiment.run_controller(
            env, p, agent, params, seeds=(5, 6), lr0=lr0, strategy="scan",
            batch_mode="sequential")
  assert compiles["jit(_episodes_scan)"] == 1, compiles
  # Different params and lr0 did run: the first LR is lr0 times the
  # action's factor (a in [-0.2, 0.5]: x[0.965, 1.035]).
  for (c, lr0), r in runs.items():
    assert r.learning_rates.shape == (2, 2)
    np.testing.assert_allclose(r.learning_rates[0], lr0, rtol=0.036)
  assert not np.array_equal(runs[0, 0.1].val_loss, runs[1, 0.1].val_loss)


def test_bound_method_policy_of_an_unhashable_object_is_cached():
  class Linear:
    __hash__ = None       # like a Controller holding its params

    def act(self, params, obs, carry):
      return _linear(params, obs, carry)

  env, holder = toy.TargetEnv(), Linear()
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  with runner.count_compiles() as compiles:
    for b in (0.1, 0.2, 0.3):
      rollout.run_episodes(env, env.default_params, holder.act,
                           jnp.array([b, 0.0]), keys)
  assert compiles["jit(_episodes_scan)"] == 1, compiles
  rollout.clear_cache()
  with runner.count_compiles() as compiles:
    rollout.run_episodes(env, env.default_params, holder.act,
                         jnp.array([0.1, 0.0]), keys)
  assert compiles["jit(_episodes_scan)"] == 1, compiles


def test_bad_inputs_are_named(task):
  env = toy.TargetEnv()
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  with pytest.raises(ValueError, match="strategy 'fast'; allowed"):
    rollout.run_episodes(env, env.default_params, _linear, jnp.zeros(2), keys,
                         strategy="fast")
  with pytest.raises(ValueError, match="TargetEnv, which has no "
                     "reset_with_lr0; allowed: lr0s=None"):
    rollout.run_episodes(env, env.default_params, _linear, jnp.zeros(2), keys,
                         lr0s=jnp.ones(2))
  lrenv = lr_env.LREnv(task, "xu2019")
  with pytest.raises(ValueError, match=r"lr0s of shape \(3,\); allowed: "
                     r"\(2,\)"):
    rollout.run_episodes(lrenv, lrenv.default_params(), _linear, None, keys,
                         lr0s=jnp.ones(3))
