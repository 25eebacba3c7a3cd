"""The portable controller of a training run (``lr_meta.policies`` format)."""

import os
from typing import Any, Callable, Optional

import jax

from lr_meta.policies import controller as controller_lib
from lr_meta.rundir.layout import config_dict
from lr_meta.rundir.layout import CONTROLLER_FILE
from lr_meta.rundir.layout import SNAPSHOT_DIR


# Continuous action types a PPO-trained Gaussian controller can act with.
CONTINUOUS_PPO_ACTIONS = ("xu2019", "daniel2016", "xu2017")


def controller_from_training(config, env, env_params, agent_params, *,
                             name: str, description: str = ""
                            ) -> controller_lib.Controller:
  """The controller of an agent trained by ``scripts/train_controller.py``.

  Args:
    config: the training config (``ml_collections.ConfigDict`` or dict) with
      ``agent`` and the agent's sub-config.
    env: the ``LREnv`` it trained on (layer paths, action type).
    env_params: its ``LREnvParams`` (K, EMA decay, observation settings).
    agent_params: the learner's ``state.params`` (PPO: ``{'actor',
      'critic'}``; DQN: the online Q-network params).
    name: the controller's name.
    description: free text stored with it.

  Returns:
    A checked ``Controller``.
  """
  agent = config["agent"]
  action_type = env.action_type
  observation = getattr(env, "observation", "dynamics")
  if observation not in controller_lib.OBSERVATION_SIZE:
    raise ValueError(f"env.observation={observation!r}; controllers support "
                     f"the observations "
                     f"{tuple(controller_lib.OBSERVATION_SIZE)}.")
  common = dict(
      name=name, action_type=action_type,
      steps_per_decision=int(env_params.steps_per_decision),
      ema_decay=float(env_params.ema_decay),
      log_lr_observation=bool(env_params.log_lr_observation),
      num_val_examples=env_params.num_val_examples,
      initial_lrs=tuple(float(x) for x in env_params.initial_lrs),
      observation=observation,
      num_decisions=int(env_params.num_decisions),
      decision_schedule=str(env_params.decision_schedule),
      slope_decay=float(env_params.slope_decay),
      protocol=env_params.protocol,
      agent=agent, description=description, config=config_dict(config))
  if agent == "ppo" and action_type in CONTINUOUS_PPO_ACTIONS:
    sub = config["ppo"]
    network = {"mlp": "gaussian_mlp", "lstm": "gaussian_lstm"}[sub["actor"]]
    # Only an observation with kernel moments names the layers it read.
    layers = (dict(first_dense=tuple(env.first_dense),
                   last_dense=tuple(env.last_dense))
              if env.uses_dynamics else {})
    spec = controller_lib.ControllerSpec(
        network=network, hidden_sizes=(int(sub["hidden_size"]),),
        action_std=float(sub["action_std"]),
        learn_log_std=bool(sub["learn_log_std"]), **layers, **common)
    params = agent_params["actor"]
  elif agent == "dqn" and action_type == "fu2016":
    sub = config["dqn"]
    spec = controller_lib.ControllerSpec(
        network="q_mlp",
        hidden_sizes=tuple(int(h) for h in sub["hidden_sizes"]),
        num_actions=int(env.num_actions),
        monitored_layer=tuple(env.monitored_layer), **common)
    params = agent_params
  else:
    raise ValueError(
        f"config.agent={agent!r} with action_type {action_type!r}; "
        f"controllers can be exported for ('ppo', {CONTINUOUS_PPO_ACTIONS}) "
        "and ('dqn', 'fu2016').")
  return controller_lib.make_controller(spec, jax.device_get(params))


def write_training_artifact(workdir: str, config, env, env_params,
                            agent_params, name: Optional[str] = None,
                            log: Callable[[str], Any] = print) -> str:
  """Saves the trained controller as ``workdir/controller.msgpack``.

  Called once at the end of ``scripts/train_controller.py``; export it into
  the package with ``scripts/export_controller.py``. Agents whose controller
  has no file format (REPS, actor-critic) are skipped with a message: their
  controller is the latest snapshot (``load_snapshot``).

  Returns:
    The path written, or '' when the agent is not exportable.
  """
  name = name or os.path.basename(os.path.normpath(workdir))
  try:
    controller = controller_from_training(config, env, env_params,
                                          agent_params, name=name)
  except ValueError as e:
    log(f"No {CONTROLLER_FILE} written ({e}); the controller is the latest "
        f"snapshot in {SNAPSHOT_DIR}/.")
    return ""
  return controller_lib.save_controller(os.path.join(workdir, CONTROLLER_FILE),
                                        controller)
