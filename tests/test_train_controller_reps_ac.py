"""REPS (Daniel 2016) and actor-critic (Xu 2017) through the shared
experiment builder and scripts/train_controller.py: dispatch, checkpoint
resume (2 + 2 iterations == 4 straight), deterministic controller runs."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import daniel2016_reps
from configs import xu2017_actor_critic
from lr_meta import experiment
from lr_meta import rundir
from script_loader import load_script  # tests/script_loader.py

tc = load_script("train_controller")


def tiny_config(agent, num_iterations=2):
  if agent == "reps":
    config = daniel2016_reps.get_config()
    config.reps.update(num_samples=3)
  else:
    config = xu2017_actor_critic.get_config()
    config.actor_critic.update(num_envs=2)
  config.task.update(dataset="mnist1d", model="mlp", batch_size=32,
                     num_train_examples=500, num_val_examples=200,
                     num_test_examples=200)
  config.env.update(num_decisions=3, steps_per_decision=2,
                    num_val_examples=100, initial_lrs=(0.1,))
  config.num_iterations = num_iterations
  config.checkpoint_every = 2
  config.eval.update(num_seeds=2, initial_lrs=(0.1,), constant_lrs=(0.1,))
  return config


@pytest.mark.parametrize("agent", ["reps", "actor_critic"])
def test_resume_equals_uninterrupted_and_controller_runs(agent, resume_check):
  task, env, env_params, strategy = experiment.build(tiny_config(agent))
  assert env.action_type == {"reps": "daniel2016",
                             "actor_critic": "xu2017"}[agent]
  agent_obj = experiment.make_agent(tiny_config(agent), env, env_params,
                                    strategy)

  def train(n, workdir):
    return tc.train(tiny_config(agent, n), workdir, agent_obj,
                    log=lambda *a: None, allow_changes=("num_iterations",))
  a, resumed, _, _ = resume_check(train)
  assert rundir.snapshot_steps(a) == [2, 4]

  # The script adds nothing to the agent's own loop: init from config.seed
  # and 4 update_iteration calls give the resumed state bit for bit.
  config = tiny_config(agent)
  direct = agent_obj.init(jax.random.PRNGKey(config.seed))
  for _ in range(4):
    direct, _ = agent_obj.update_iteration(direct)
  for x, y in zip(jax.tree.leaves(direct), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(x, y)

  params = experiment.policy_params(config, resumed)
  runs = experiment.run_controller(env, env_params, agent_obj, params,
                                   seeds=(1, 2), lr0=0.1, strategy=strategy)
  assert runs.learning_rates.shape == (3, 2)
  assert np.all(np.isfinite(runs.train_loss))
  loss, _ = experiment.test_metrics(task, runs.final_state)
  assert np.all(np.isfinite(loss))

  # A controller whose action is the constant b gives a hand-computed LR
  # schedule: REPS (daniel2016) lr_t = lr_{t-1} * exp(b); the actor-critic
  # (xu2017) lr_t = lr0 * 10**b.
  b = 0.2 if agent == "reps" else -0.5
  const = _constant_action_params(agent, params, b)
  runs = experiment.run_controller(env, env_params, agent_obj, const,
                                   seeds=(1, 2), lr0=0.1, strategy=strategy)
  if agent == "reps":
    expected = 0.1 * np.exp(b * np.arange(1, 4))
  else:
    expected = np.full(3, 0.1 * 10**b)
  np.testing.assert_allclose(runs.learning_rates,
                             np.stack([expected, expected], 1), rtol=1e-5)


def _constant_action_params(agent, params, b):
  """Params of the agent's controller whose action is ``b`` everywhere."""
  if agent == "reps":       # theta . [phi1, phi2, u1, u2, 1]
    return jnp.zeros_like(params).at[-1].set(b)
  # The actor MLP with zero weights: tanh(0) = 0 hidden units, mean = the
  # output bias.
  const = jax.tree.map(jnp.zeros_like, params)
  mlp = const["actor"]["params"]["MLP_0"]
  head = sorted(mlp)[-1]
  mlp[head]["bias"] = jnp.full_like(mlp[head]["bias"], b)
  return const


@pytest.mark.parametrize("agent,action_type", [("reps", "xu2019"),
                                               ("actor_critic", "daniel2016")])
def test_wrong_action_type_is_named(agent, action_type):
  config = tiny_config(agent)
  config.env.action_type = action_type
  with pytest.raises(ValueError, match="config.env.action_type"):
    experiment.check_config(config)


def test_bad_sub_config_is_named():
  config = tiny_config("reps")
  config.reps.num_samples = 1
  _, env, env_params, strategy = experiment.build(config)
  with pytest.raises(ValueError, match="config.reps: num_samples=1"):
    experiment.make_agent(config, env, env_params, strategy)
  config = tiny_config("actor_critic")
  config.env.observation = "weight_stats"
  with pytest.raises(ValueError, match="observation='weight_stats'"):
    experiment.build(config)
