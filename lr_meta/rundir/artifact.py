"""The portable controller of a training run (``lr_meta.policies`` format)."""

import os
from typing import Any, Callable, Optional

from lr_meta.policies import controller as controller_lib
from lr_meta.rundir.layout import config_dict
from lr_meta.rundir.layout import CONTROLLER_FILE
from lr_meta.rundir.layout import SNAPSHOT_DIR


def controller_from_training(config, env, env_params, agent_params, *,
                             export: Optional[Callable[..., Any]], name: str,
                             description: str = ""
                            ) -> controller_lib.Controller:
  """The controller of an agent trained by ``scripts/train_controller.py``.

  The fields every controller shares (the environment's observation spec
  as is, the initial LRs, the config) are read here; the agent's own part
  (network, params) is its registry entry's ``export`` (``lr_meta.experiment.AGENTS``: e.g.
  ``lr_meta.agents.ppo.export_controller``), so this module names no agent.

  Args:
    config: the training config (``ml_collections.ConfigDict`` or dict) with
      ``agent`` and the agent's sub-config.
    env: the ``LREnv`` it trained on (layer paths, action type).
    env_params: its ``LREnvParams`` (K, EMA decay, observation settings).
    agent_params: the learner's policy params (``experiment.policy_params``).
    export: ``(agent config, env, agent_params, common spec fields) ->
      Controller``, or None for an agent without a controller file format.
    name: the controller's name.
    description: free text stored with it.

  Returns:
    A checked ``Controller``.

  Raises:
    ValueError: the agent has no controller file format, or its export
      refuses the action type.
  """
  agent = config["agent"]
  if export is None:
    raise ValueError(f"config.agent={agent!r} has no controller file format "
                     "(its registry entry exports none)")
  observation = getattr(env, "observation", "dynamics")
  if observation not in controller_lib.OBSERVATION_SIZE:
    raise ValueError(f"env.observation={observation!r}; controllers support "
                     f"the observations "
                     f"{tuple(controller_lib.OBSERVATION_SIZE)}.")
  common = dict(
      name=name, action_type=env.action_type,
      observation_spec=env.observation_spec(env_params),
      initial_lrs=tuple(float(x) for x in env_params.initial_lrs),
      agent=agent, description=description, config=config_dict(config))
  return export(config[agent], env, agent_params, common)


def write_training_artifact(workdir: str, config, env, env_params,
                            agent_params, *,
                            export: Optional[Callable[..., Any]],
                            name: Optional[str] = None,
                            log: Callable[[str], Any] = print) -> str:
  """Saves the trained controller as ``workdir/controller.msgpack``.

  Called once at the end of ``scripts/train_controller.py``; export it into
  the package with ``scripts/export_controller.py``. Agents whose controller
  has no file format (``export`` None: REPS, actor-critic) are skipped with
  a message: their controller is the latest snapshot (``load_snapshot``).

  Returns:
    The path written, or '' when the agent is not exportable.
  """
  name = name or os.path.basename(os.path.normpath(workdir))
  try:
    controller = controller_from_training(config, env, env_params,
                                          agent_params, export=export,
                                          name=name)
  except ValueError as e:
    log(f"No {CONTROLLER_FILE} written ({e}); the controller is the latest "
        f"snapshot in {SNAPSHOT_DIR}/.")
    return ""
  return controller_lib.save_controller(os.path.join(workdir, CONTROLLER_FILE),
                                        controller)
