"""REPS (Daniel 2016) and actor-critic (Xu 2017) through the shared
experiment builder and scripts/train_controller.py: dispatch, checkpoint
resume (2 + 2 iterations == 4 straight), deterministic controller runs."""

import os

import numpy as np
import pytest

from configs import daniel2016_reps
from configs import xu2017_actor_critic
from lr_meta import experiment
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
                    log=lambda *a: None)
  a, resumed, _, _ = resume_check(train)
  assert os.path.exists(os.path.join(a, "controller_params.msgpack"))

  config = tiny_config(agent)
  params = experiment.policy_params(config, resumed)
  runs = experiment.run_controller(config, env, env_params, agent_obj,
                                   params, seeds=(1, 2), lr0=0.1,
                                   strategy=strategy)
  assert runs.learning_rates.shape == (3, 2)
  assert np.all(np.isfinite(runs.train_loss))
  loss, _ = experiment.test_metrics(task, runs.final_state)
  assert np.all(np.isfinite(loss))


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
