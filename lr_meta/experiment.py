"""One experiment = one config: task, environment, agent, controller runs.

The single place where an ``ml_collections`` controller config (see
``configs/``) becomes objects. ``scripts/train_controller.py`` trains the agent
it builds; ``scripts/evaluate_controller.py`` re-builds the same objects to run
saved controllers against baselines; every agent (``config.agent``) is
dispatched here, so adding an agent means adding one case to ``AGENTS``. The files of a training run are
``lr_meta.rundir``'s.

Config layout (``configs/xu2019_ppo.py`` is the reference; ``check_config``
rejects a field name not listed here, naming the valid ones)::

  seed, agent, strategy, num_iterations, checkpoint_every,
  task: kwargs of ``lr_meta.tasks.make_task``,
  env:  ``action_type``, ``observation`` + fields of
    ``lr_meta.envs.LREnvParams``,
  <agent>: fields of that agent's config dataclass (any agent's sub-config
    may be present; ``agent`` picks the one used),
  eval: num_seeds, initial_lrs, constant_lrs, baselines, benchmark_methods
    (the evaluation's: ``lr_meta.evaluation``),
  task_family (optional, agent 'reps' only): fields of
    ``lr_meta.tasks.family.TaskFamilyConfig``; the agent then trains over
    the family's members (``make_agent``) and ``task`` is the held-out task
    the trained controller is evaluated on
    (``configs/daniel2016_reps_random_cnns.py``).
"""

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import baselines
from lr_meta import checks
from lr_meta import config as config_lib
from lr_meta import tasks
from lr_meta.agents import actor_critic as actor_critic_lib
from lr_meta.agents import dqn as dqn_lib
from lr_meta.agents import ppo as ppo_lib
from lr_meta.agents import reps as reps_lib
from lr_meta.envs import lr_env
from lr_meta.envs import rollout
from lr_meta.features import lr_actions
from lr_meta.features import observation_spec as observation_spec_lib
from lr_meta.tasks import family as family_lib
from lr_meta import runner


class AgentKind(NamedTuple):
  """How one agent kind is built from a config."""
  action_type: str                  # the LREnv action type it needs
  config_class: type                # the agent's config dataclass
  make: Callable[..., Any]          # (agent config, env, env_params, mesh=) -> agent
  policy_params: Callable[[Any], Any]   # learner state -> policy params
  # (agent config, env, policy params, common spec fields) -> Controller,
  # the controller file of a trained agent; None: the agent has no file
  # format (its controller is a snapshot).
  export: Optional[Callable[..., Any]] = None


AGENTS = {
    "ppo": AgentKind("xu2019", ppo_lib.PPOConfig, ppo_lib.make_ppo,
                     lambda s: s.params, ppo_lib.export_controller),
    "dqn": AgentKind("fu2016", dqn_lib.DQNConfig, dqn_lib.make_dqn,
                     lambda s: s.params, dqn_lib.export_controller),
    # Daniel et al. 2016: the deterministic controller is the search
    # distribution's mean theta (linear in [phi_hat, u, 1]).
    "reps": AgentKind("daniel2016", reps_lib.REPSConfig, reps_lib.make_reps,
                      reps_lib.policy_params),
    # Xu, Qin, Wang, Liu 2017: the actor's mean log10 LR.
    "actor_critic": AgentKind("xu2017", actor_critic_lib.ActorCriticConfig,
                              actor_critic_lib.make_actor_critic,
                              lambda s: s.params),
}
KNOWN_AGENTS = tuple(AGENTS)


def exporter(config) -> Optional[Callable[..., Any]]:
  """The controller export of ``config.agent`` (``AgentKind.export``), for
  ``lr_meta.rundir.controller_from_training``."""
  if config["agent"] not in AGENTS:
    raise ValueError(f"config.agent={config['agent']!r}; allowed: "
                     f"{KNOWN_AGENTS}.")
  return AGENTS[config["agent"]].export


# The config schema: field names each part of a controller config may hold.
TOP_FIELDS = ("seed", "agent", "strategy", "num_iterations",
              "checkpoint_every", "task", "env", "eval", "task_family")
EVAL_FIELDS = ("num_seeds", "initial_lrs", "constant_lrs", "baselines",
               "benchmark_methods")
def _field_names(cls, exclude=()) -> Tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(cls)
               if f.name not in exclude)


def config_fields() -> dict:
  """``{part: valid field names}``: '' is the top level, 'task', 'env',
  'eval', 'task_family' and each agent name its sub-config."""
  task_args = tuple(p for p in inspect.signature(tasks.make_task).parameters
                    if p != "data_dir")
  # ``unroll`` follows the strategy and ``strategy`` the config's top level.
  env = (("action_type",) + observation_spec_lib.FLAT_FIELDS
         + _field_names(lr_env.LREnvParams,
                        exclude=("unroll", "observation_spec")))
  fields = {"": TOP_FIELDS + KNOWN_AGENTS, "task": task_args,
            "env": env, "eval": EVAL_FIELDS,
            "task_family": _field_names(family_lib.TaskFamilyConfig)}
  for kind, agent in AGENTS.items():
    fields[kind] = _field_names(agent.config_class, exclude=("strategy",))
  return fields


def check_field_names(config):
  """Raises ValueError naming unknown fields and listing the valid ones."""
  config_lib.check_fields(config, config_fields())


def check_config(config):
  """Raises ValueError naming the bad field and its allowed values."""
  check_field_names(config)
  if config.agent not in AGENTS:
    raise ValueError(f"config.agent={config.agent!r}; allowed: {KNOWN_AGENTS}.")
  checks.check_int("config.seed", config.seed, 0)
  checks.check_int("config.num_iterations", config.num_iterations, 1)
  checks.check_int("config.checkpoint_every", config.checkpoint_every, 1)
  checks.check_int("config.eval.num_seeds", config.eval.num_seeds, 1)
  if config.strategy not in ("",) + runner.STRATEGIES:
    raise ValueError(f"config.strategy={config.strategy!r}; allowed: "
                     f"{('',) + runner.STRATEGIES}.")
  # Evaluation runs after training: its settings are checked before it.
  checks.check_positive_floats("config.eval.initial_lrs",
                               config.eval.initial_lrs)
  checks.check_positive_floats("config.eval.constant_lrs",
                               config.eval.constant_lrs)
  for text in config.eval.get("baselines", ()):
    baselines.parse_baseline(text, tuple(config.eval.constant_lrs))
  action_type = config.env.action_type
  if action_type not in lr_env.ACTION_TYPES:
    raise ValueError(f"config.env.action_type={action_type!r}; allowed: "
                     f"{lr_env.ACTION_TYPES}.")
  expected = AGENTS[config.agent].action_type
  if action_type != expected:
    raise ValueError(
        f"config.env.action_type={action_type!r} with config.agent="
        f"{config.agent!r}; allowed: {expected!r}.")
  observation = config.env.get("observation") or None
  allowed = lr_actions.action_rule(action_type).observations
  if observation is not None and observation not in allowed:
    raise ValueError(
        f"config.env.observation={observation!r} with config.env.action_type"
        f"={action_type!r}; allowed: {allowed}.")
  if uses_task_family(config):
    if config.agent not in FAMILY_AGENTS:
      raise ValueError(f"config.task_family with config.agent="
                       f"{config.agent!r}; allowed agents: {FAMILY_AGENTS}.")
    task_family_config(config)


# Agents that can train over a task family (``config.task_family``).
FAMILY_AGENTS = ("reps",)


def uses_task_family(config) -> bool:
  return bool(config.get("task_family"))


def task_family_config(config) -> family_lib.TaskFamilyConfig:
  """``config.task_family`` as a checked ``TaskFamilyConfig``."""
  sub = dict(config.task_family)
  if "filter_ranges" in sub:
    sub["filter_ranges"] = tuple(tuple(r) for r in sub["filter_ranges"])
  try:
    return family_lib.TaskFamilyConfig(**sub)
  except TypeError as e:
    raise ValueError(f"config.task_family: {e}") from e


def build(config, data_dir: Optional[str] = None):
  """Task, environment, env params and execution strategy from the config."""
  check_config(config)
  task = tasks.make_task(data_dir=data_dir, **config.task)
  strategy = config.strategy or runner.default_strategy(task.model_name)
  env_kwargs = dict(config.env)
  action_type = env_kwargs.pop("action_type")
  # The observation kind and optional inputs shape the agent: the
  # environment holds them (and fills them into its params' spec).
  env_params = lr_env.LREnvParams.from_fields(
      unroll=strategy != "scan", **env_kwargs)
  spec = env_params.observation_spec
  env = lr_env.LREnv(task, action_type, spec.kind or None, spec.inputs)
  env_params = env_params.replace(
      observation_spec=env.observation_spec(env_params)).check(action_type)
  return task, env, env_params, strategy


def build_family_envs(config, env_params, data_dir: Optional[str] = None):
  """The environments of ``config.task_family``'s members.

  Members take ``config.task``'s arguments except ``family.MEMBER_FIELDS``
  (data set, model, training subset: drawn per member) and ``env_params``
  with ``unroll`` set for their own strategy (conv nets: 'chunk' on CPU).

  Returns:
    ``(envs, env_params, strategy)``.
  """
  family = task_family_config(config)
  task_kwargs = {k: v for k, v in dict(config.task).items()
                 if k not in family_lib.MEMBER_FIELDS}
  member_tasks = family_lib.make_family_tasks(family, data_dir, **task_kwargs)
  strategy = config.strategy or runner.default_strategy(family_lib.FAMILY_MODEL)
  envs = tuple(lr_env.LREnv(t, config.env.action_type,
                            config.env.get("observation") or None,
                            tuple(config.env.get("inputs", ())))
               for t in member_tasks)
  return envs, env_params.replace(unroll=strategy != "scan"), strategy


def make_agent(config, env, env_params, strategy,
               data_dir: Optional[str] = None,
               mesh: Optional[jax.sharding.Mesh] = None):
  """The agent of ``config.agent``; config errors name ``config.<agent>``.

  With ``config.task_family`` the agent (REPS) trains over the family's
  members (``reps.make_reps_over_tasks``; ``env`` is then only the held-out
  evaluation task) and ``data_dir`` locates the family's data set. ``mesh``
  shards the agent's population (``lr_meta.distributed.global_mesh()``).
  """
  kind = config.agent
  sub = dict(config[kind])
  sub["strategy"] = strategy
  if uses_task_family(config):
    envs, member_params, sub["strategy"] = build_family_envs(
        config, env_params, data_dir)
  try:
    agent_config = AGENTS[kind].config_class(**sub)
    if uses_task_family(config):
      return reps_lib.make_reps_over_tasks(agent_config, envs, member_params,
                                           mesh=mesh)
    return AGENTS[kind].make(agent_config, env, env_params, mesh=mesh)
  except (ValueError, TypeError) as e:
    raise ValueError(f"config.{kind}: {e}") from e


def evaluation_agent(config, env, env_params, strategy,
                     data_dir: Optional[str] = None):
  """``make_agent`` for running a trained controller on the given ``env``.

  A REPS task family (``config.task_family``) only shapes training: the
  controller is the same function of the observation on every task, so the
  family's members are not built, loaded or compiled here.
  """
  config = config.copy_and_resolve_references()
  if "task_family" in config:
    del config["task_family"]
  return make_agent(config, env, env_params, strategy, data_dir)


def policy_params(config, state):
  """The params of the deterministic controller inside a learner state."""
  return AGENTS[config.agent].policy_params(state)


class ControllerRuns(NamedTuple):
  """Deterministic controller episodes on N seeds (arrays over seeds last)."""
  final_state: Any            # batched LREnvState after the last decision
  learning_rates: np.ndarray  # [T, N] LR used at each decision
  val_loss: np.ndarray        # [T, N] val loss (env subset) after each decision
  train_loss: np.ndarray      # [T, N]
  diverged: np.ndarray        # [N]


def run_controller(env, env_params, agent, params, seeds: Sequence[int],
                   lr0: float, strategy: str,
                   batch_mode: Optional[str] = None) -> ControllerRuns:
  """Runs the deterministic controller from ``lr0`` on the given seeds.

  Every call goes through ``lr_meta.envs.rollout.run_episodes`` with the
  params and ``lr0`` as arrays: evaluating many checkpoints, seed groups of
  one size and initial LRs of one agent on one ``env`` compiles once.

  Args:
    env, env_params, agent: as built by ``build``/``make_agent``.
    params: the controller params (``policy_params`` of a learner state).
    seeds: the optimizee of seed s starts from ``jax.random.PRNGKey(s)``.
    lr0: the initial learning rate of every run.
    strategy: the execution strategy of each episode.
    batch_mode: ``'vmap'`` (all seeds in lockstep) or ``'sequential'`` (one
      seed after another, same compiled program); default the measured
      ``runner.default_batch_mode`` (sequential on CPU, where vmap over conv
      nets ran 2.8x slower per run-step).
  """
  batch_mode = batch_mode or runner.default_batch_mode(env.task.model_name)
  if batch_mode not in ("vmap", "sequential"):
    raise ValueError(f"batch_mode={batch_mode!r}; allowed: 'vmap', "
                     "'sequential'.")
  groups = [list(seeds)] if batch_mode == "vmap" else [[s] for s in seeds]
  states, infos = [], []
  for group in groups:
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in group])
    state, info = rollout.run_episodes(
        env, env_params, agent.policy_fn, params, keys,
        carry=agent.initial_carry((len(group),)),
        lr0s=np.full((len(group),), lr0, np.float32), strategy=strategy)
    states.append(state)
    infos.append(info)
  # Episode infos are [T, N] (seeds on axis 1); states have seeds on axis 0.
  state = jax.tree.map(lambda *x: jnp.concatenate(x), *states)
  info = {k: np.concatenate([np.asarray(i[k]) for i in infos], axis=1)
          for k in ("lr", "val_loss", "train_loss")}
  return ControllerRuns(state, info["lr"], info["val_loss"],
                        info["train_loss"], np.asarray(state.opt.diverged))


def test_metrics(task, final_states, split: str = "test"):
  """Loss and accuracy of each final optimizee on ``split`` (vmapped)."""
  res = tasks.evaluate_batch(task, final_states.opt, split)
  return np.asarray(res.loss), np.asarray(res.accuracy)
