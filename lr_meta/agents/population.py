"""PPO over a population of environments: one controller, many tasks.

``lr_meta.agents.ppo`` trains on one environment. A controller meant to work
on tasks it never saw is trained over a distribution of them
(``lr_meta.tasks.distribution``): every member is its own environment (its
own model, data and base optimizer, so its own compiled program), and every
PPO iteration learns from episodes of several members. The learner is one
PPO (one actor, one critic, one optimizer); the members only collect.

Batch modes (``lr_meta.runner.default_batch_mode``: measured, sequential on
CPU, vmap elsewhere):

* ``'sequential'``: each of the N episodes of an iteration draws its own
  member and runs alone (a collector of one episode per member); the
  trajectories are stacked and the PPO update sees all N. On CPU, vmapped
  runs were not faster per step than the same runs one after another
  (BUILD_NOTES "Execution strategies"), and one member per episode mixes
  tasks inside every update.
* ``'vmap'``: one member per iteration, its N episodes in one vmapped
  program (``make_ppo``'s own population), where the batch axis finds idle
  hardware.

Compiles: one collector per (member, batch mode), on the first iteration
that draws it, then reused (``jax.jit`` caches them); one learner update.
Draws come from the learner state's key, so a resumed run (the state
restored from a checkpoint) draws the same members and episodes as an
uninterrupted one.

Why PPO can mix members in one batch: GAE advantages use the critic's value
of each state, and the scale-free observation (``lr_meta.features.
scale_free``) tells the critic where a run stands whatever its task; the
episode returns (sums of log validation-loss changes) are on one scale for
every task.
"""

import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import runner
from lr_meta.agents import ppo as ppo_lib

__all__ = ["BATCH_MODES", "PopulationPPO", "make_ppo_over_tasks"]

BATCH_MODES = ("sequential", "vmap")


class PopulationPPO(NamedTuple):
  """The agent's functions (the contract of ``lr_meta.agents.ppo.PPO``).

  Attributes:
    init, update_iteration, policy_fn, initial_carry, config, actor,
      critic: as ``PPO``'s; ``update_iteration`` collects from the drawn
      members and makes one PPO update. Its metrics add ``members`` [N]
      (the member of each episode) and ``episode_returns`` [N].
    members: the number of members M.
    batch_mode: 'sequential' or 'vmap'.
  """
  init: Callable[..., ppo_lib.PPOState]
  update_iteration: Callable[..., Tuple[ppo_lib.PPOState, Dict[str, Any]]]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  initial_carry: Callable[..., Any]
  config: ppo_lib.PPOConfig
  actor: nn.Module
  critic: nn.Module
  members: int
  batch_mode: str


def _check_members(envs, env_params):
  envs = tuple(envs)
  if not envs:
    raise ValueError("envs=(); allowed: a non-empty sequence of "
                     "environments.")
  if not isinstance(env_params, (list, tuple)):
    env_params = (env_params,) * len(envs)
  env_params = tuple(env_params)
  if len(env_params) != len(envs):
    raise ValueError(f"{len(env_params)} env_params for {len(envs)} "
                     "environments; allowed: one, or one per environment.")
  shapes = {(e.observation_size, tuple(e.action_shape), float(e.action_low),
             float(e.action_high)) for e in envs}
  if len(shapes) != 1:
    raise ValueError(f"the members' (observation_size, action_shape, low, "
                     f"high) differ: {sorted(shapes)}; allowed: one for all "
                     "members (one controller acts on every member).")
  horizons = {int(p.num_decisions) for p in env_params}
  if len(horizons) != 1:
    raise ValueError(f"the members' num_decisions differ: {sorted(horizons)};"
                     " allowed: one T for all (decisions at fixed fractions "
                     "of each run: env decision_schedule='fraction').")
  return envs, env_params


class _ByIdentity:
  """A jit static argument compared by identity (environments hold data)."""
  __slots__ = ("value",)

  def __init__(self, value):
    self.value = value

  def __hash__(self):
    return id(self.value)

  def __eq__(self, other):
    return isinstance(other, _ByIdentity) and other.value is self.value


@functools.partial(jax.jit, static_argnums=0)
def _collect(static: _ByIdentity, data, params, key):
  config, env, env_params = static.value
  env = env.with_task(env.task.replace(data=data))
  return ppo_lib.make_ppo(config, env, env_params).collect(params, key)


def _collector(config, env, env_params):
  """``collect(params, key)`` of one member, its task data an argument.

  Compiled once per member; the data (up to hundreds of MB for CIFAR-10)
  stay jit arguments instead of constants embedded in each program.
  """
  static = _ByIdentity((config, env, env_params))
  if config.strategy != "scan" or not hasattr(env, "with_task"):
    return ppo_lib.make_ppo(config, env, env_params).collect
  return lambda params, key: _collect(static, env.task.data, params, key)


def make_ppo_over_tasks(config: ppo_lib.PPOConfig, envs: Sequence[Any],
                        env_params: Any, *,
                        weights: Optional[Sequence[float]] = None,
                        batch_mode: Optional[str] = None) -> PopulationPPO:
  """PPO whose episodes come from a population of environments.

  Args:
    config: the PPO settings; ``num_envs`` = N episodes per iteration.
    envs: the members' environments (same observation and action spaces).
    env_params: one ``LREnvParams`` for all, or one per member (e.g. the
      initial-LR range of each member's base optimizer); one
      ``num_decisions`` for all.
    weights: relative probabilities of drawing each member (default
      uniform).
    batch_mode: 'sequential' or 'vmap' (see the module docstring); default
      ``lr_meta.runner.default_batch_mode`` (sequential on CPU).

  Returns:
    A ``PopulationPPO``.
  """
  envs, env_params = _check_members(envs, env_params)
  m = len(envs)
  if weights is None:
    weights = np.ones(m)
  weights = np.asarray(weights, np.float64)
  if weights.shape != (m,) or not np.all(weights > 0):
    raise ValueError(f"weights={weights.tolist()}; allowed: {m} positive "
                     "numbers, one per member.")
  probs = jnp.asarray(weights / weights.sum(), jnp.float32)
  if batch_mode is None:
    batch_mode = runner.default_batch_mode(
        getattr(getattr(envs[0], "task", None), "model_name", ""))
  if batch_mode not in BATCH_MODES:
    raise ValueError(f"batch_mode={batch_mode!r}; allowed: {BATCH_MODES}.")
  n = config.num_envs
  learner = ppo_lib.make_ppo(config, envs[0], env_params[0])
  one = dataclasses.replace(config, num_envs=1, num_minibatches=1)
  cfg = one if batch_mode == "sequential" else config
  collectors = tuple(_collector(cfg, e, p) for e, p in zip(envs, env_params))

  def collect(params, k_members, k_episodes):
    if batch_mode == "vmap":
      member = int(jax.random.choice(k_members, m, (), p=probs))
      members = np.full((n,), member)
      traj, applied = collectors[member](params, k_episodes)
      return traj, applied, members
    members = np.asarray(jax.random.choice(k_members, m, (n,), p=probs))
    parts = [collectors[int(i)](params, k)
             for i, k in zip(members, jax.random.split(k_episodes, n))]
    traj, applied = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1),
                                 *parts)
    return traj, applied, members

  def update_iteration(state: ppo_lib.PPOState):
    rng, k_members, k_episodes, k_learn = jax.random.split(state.rng, 4)
    traj, applied, members = collect(state.params, k_members, k_episodes)
    state, metrics = learner.learn(state.replace(rng=rng), traj, applied,
                                   k_learn)
    metrics = dict(metrics, members=members,
                   episode_returns=jnp.sum(traj.reward, axis=0))
    return state, metrics

  return PopulationPPO(init=learner.init, update_iteration=update_iteration,
                       policy_fn=learner.policy_fn,
                       initial_carry=learner.initial_carry, config=config,
                       actor=learner.actor, critic=learner.critic, members=m,
                       batch_mode=batch_mode)
