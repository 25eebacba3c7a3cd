"""configs/xu2017_actor_critic_per_step.py: the per-step (K = 1) actor-critic
config builds, keeps the parent's task/observation/lr0, and its environment
takes exactly one inner step per decision with the val probe read every step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import xu2017_actor_critic
from configs import xu2017_actor_critic_per_step
from lr_meta import experiment


def test_per_step_config_fields():
  parent = xu2017_actor_critic.get_config()
  config = xu2017_actor_critic_per_step.get_config()
  assert config.env.steps_per_decision == 1
  assert config.env.num_decisions == 300
  # Same 300 inner steps as the K = 10 parent: same baselines apply.
  assert (config.env.num_decisions * config.env.steps_per_decision
          == parent.env.num_decisions * parent.env.steps_per_decision)
  assert config.env.num_val_examples == 128
  assert config.actor_critic.gamma == 0.99
  # 10x more updates per episode: Adam LRs / 10.
  np.testing.assert_allclose(config.actor_critic.actor_lr * 10,
                             parent.actor_critic.actor_lr)
  np.testing.assert_allclose(config.actor_critic.critic_lr * 10,
                             parent.actor_critic.critic_lr)
  np.testing.assert_allclose(config.env.ema_decay ** 10, parent.env.ema_decay)
  assert config.task.to_dict() == parent.task.to_dict()
  for name in ("observation", "initial_lrs", "reward", "action_type"):
    assert config.env[name] == parent.env[name]


def test_per_step_env_one_step_per_decision():
  config = xu2017_actor_critic_per_step.get_config()
  config.task.update(dataset="mnist1d", batch_size=32,
                     num_train_examples=500, num_val_examples=200,
                     num_test_examples=200)
  config.env.num_decisions = 3
  config.actor_critic.num_envs = 2
  task, env, env_params, strategy = experiment.build(config)
  assert env_params.steps_per_decision == 1
  assert env.observation_size == 13
  experiment.make_agent(config, env, env_params, strategy)  # config is valid

  obs, state = jax.jit(env.reset, static_argnums=1)(jax.random.PRNGKey(0),
                                                    env_params)
  step = jax.jit(env.step, static_argnums=3)
  x_val, y_val = task.data.split("val")
  x_val, y_val = x_val[:128], y_val[:128]
  val0 = float(state.val_loss)
  returns = 0.0
  for t, a in enumerate([0.0, -1.0, 0.5]):
    obs, state, reward, _, _, info = step(jax.random.PRNGKey(t), state,
                                          jnp.array([a]), env_params)
    assert int(state.opt.step) == t + 1               # K = 1
    np.testing.assert_allclose(float(info["lr"]), 0.03 * 10**a, rtol=1e-6)
    logits, _ = task.apply(state.opt.params, state.opt.batch_stats, x_val)
    val = float(jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, y_val)))
    np.testing.assert_allclose(float(info["val_loss"]), val, rtol=1e-5)
    returns += float(reward)
    assert np.all(np.isfinite(np.asarray(obs)))
  # Reward 'val_loss_change' telescopes over the per-step probe readings.
  np.testing.assert_allclose(returns, val0 - val, rtol=1e-4, atol=1e-6)
