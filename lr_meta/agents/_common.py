"""Pieces shared by the agents: config checks, population stepping, the
iteration's execution strategy and purejaxrl-style ``make_train``.

A population of N episodes runs in lockstep: ``population_reset`` and
``population_step`` ``vmap`` the environment over N keys. Bookkeeping
follows one rule for every agent: an episode's transitions after its first
``terminated``/``truncated`` (or after decision T) are invalid (``valid=0``,
reward 0); ``end`` marks the step at which an episode ends, and the
environment's return beyond it is 0 (the optimizee's training run is over),
so bootstrapping stops there (``discount = 0``).

With a device ``mesh`` (``lr_meta.distributed.global_mesh()``: every device of
every process) the population axis is sharded over it: each device steps its
share of the episodes, and every agent gathers what its learner consumes
(``lr_meta.distributed.replicate``) so that the update is the same on every
process. N must then be a multiple of the mesh size. Member i's reset key is
``split(key, N)[i]`` on any mesh, so the numbers do not depend on it.
"""

import math
from typing import Any, Callable, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from lr_meta import checks
from lr_meta import distributed
from lr_meta import runner
from lr_meta.envs import rollout

STRATEGIES = runner.STRATEGIES


def no_carry(batch_shape: Tuple[int, ...] = ()) -> Tuple[()]:
  """``initial_carry`` of a feed-forward policy: the empty carry ``()``."""
  del batch_shape
  return ()


# ----------------------------------------------------------------------------
# Config validation.


def check_in_range(name: str, value: Any, low: float, high: float, *,
                   low_inclusive: bool = True,
                   high_inclusive: bool = True) -> None:
  """Raises ValueError naming ``name`` unless ``value`` is in the range."""
  is_number = (isinstance(value, (int, float)) and
               not isinstance(value, bool) and not math.isnan(value))
  ok = is_number and (value >= low if low_inclusive else value > low) and (
      value <= high if high_inclusive else value < high)
  if not ok:
    lb = "[" if low_inclusive else "("
    rb = "]" if high_inclusive else ")"
    raise ValueError(
        f"{name}={value!r} is out of range; allowed: {lb}{low}, {high}{rb}.")


def check_positive_int(name: str, value: Any) -> None:
  checks.check_int(name, value, 1)


def check_choice(name: str, value: Any, allowed: Tuple[Any, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"{name}={value!r}; allowed: {allowed}.")


# ----------------------------------------------------------------------------
# Environment helpers.


def num_decisions(env_params) -> int:
  """The episode length T from ``env_params.num_decisions`` (a Python int)."""
  t = int(env_params.num_decisions)
  if t < 1:
    raise ValueError(f"env_params.num_decisions={t}; allowed: >= 1.")
  return t


def action_bounds(env) -> Tuple[Tuple[int, ...], jax.Array, jax.Array]:
  """``(action_shape, low, high)`` of a continuous environment."""
  for attr in ("action_shape", "action_low", "action_high"):
    if not hasattr(env, attr):
      raise ValueError(f"environment {type(env).__name__} has no {attr!r}; "
                       "a continuous-action agent needs action_shape, "
                       "action_low and action_high.")
  shape = tuple(env.action_shape)
  low = jnp.broadcast_to(jnp.asarray(env.action_low, jnp.float32), shape)
  high = jnp.broadcast_to(jnp.asarray(env.action_high, jnp.float32), shape)
  return shape, low, high


def population_reset(env, env_params, key: chex.PRNGKey, n: int,
                     mesh: Optional[jax.sharding.Mesh] = None):
  """Resets N episodes: ``(obs [N, obs_size], states)``, sharded over
  ``mesh`` (module docstring)."""
  keys = distributed.shard_population(jax.random.split(key, n), mesh)
  return distributed.shard_population(
      jax.vmap(env.reset, in_axes=(0, None))(keys, env_params), mesh)


class PopulationStep(NamedTuple):
  """One decision of the population; every field has leading size N."""
  next_obs: jax.Array
  env_state: Any
  reward: jax.Array   # 0 where not ``valid``.
  end: jax.Array      # the episode ends at this step (no bootstrapping).
  valid: jax.Array    # the transition belongs to a live episode.
  done: jax.Array     # ended at this step or before: ``done_before | end``.


def population_step(env, env_params, key: chex.PRNGKey, env_state,
                    action: jax.Array, done_before: jax.Array,
                    time: jax.Array, horizon: int,
                    mesh: Optional[jax.sharding.Mesh] = None
                    ) -> PopulationStep:
  """Steps N episodes and applies the masking rule of this module.

  Args:
    env, env_params: the environment and its parameters.
    key: one key, split N ways.
    env_state: the batched environment state.
    action: batched actions as the environment takes them.
    done_before: [N] bool, the episode ended at an earlier decision.
    time: scalar int, index of this decision in the episode (0..T-1).
    horizon: T.
    mesh: the population's device mesh (None: unsharded).
  """
  n = done_before.shape[0]
  keys = jax.random.split(key, n)
  next_obs, env_state, reward, terminated, truncated, _ = jax.vmap(
      env.step, in_axes=(0, 0, 0, None))(keys, env_state, action, env_params)
  valid = jnp.logical_not(done_before)
  end = valid & (terminated | truncated | (time >= horizon - 1))
  reward = jnp.where(valid, reward, 0.0).astype(jnp.float32)
  return distributed.shard_population(
      PopulationStep(next_obs=next_obs.astype(jnp.float32),
                     env_state=env_state, reward=reward, end=end,
                     valid=valid, done=done_before | end), mesh)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``x`` over entries where ``mask`` is 1 (0 if none)."""
  mask = mask.astype(x.dtype)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def evaluate_episodes(env, env_params, policy_fn, policy_params,
                      key: chex.PRNGKey, n: int,
                      carry: Any = ()) -> Tuple[jax.Array, jax.Array]:
  """Returns of N episodes of a deterministic policy (``lr_meta.envs.rollout``).

  Args:
    env, env_params: the environment.
    policy_fn: ``(policy_params, obs [N, obs_size], carry) -> (action [N,
      ...], carry)``, an agent's ``policy_fn``.
    policy_params: its params.
    key: PRNG key (resets and environment noise).
    n: number of episodes.
    carry: initial policy carry (e.g. an LSTM state), batched over N.

  Returns:
    ``(returns [N], actions [T, N, ...])`` with actions as the policy gave
    them. Environments are absorbing with reward 0 after termination, so the
    return is the sum of the T rewards.
  """
  k_reset, k_run = jax.random.split(key)
  _, infos = rollout.run_episodes(env, env_params, policy_fn, policy_params,
                                  jax.random.split(k_reset, n), carry=carry,
                                  step_key=k_run)
  return jnp.sum(infos["reward"], axis=0), infos["action"]


# ----------------------------------------------------------------------------
# The iteration: one execution strategy for every agent.


def make_update_iteration(iteration: Callable[..., Any], strategy: str,
                          body: runner.Body, length: int,
                          *pieces: Callable[..., Any]):
  """``update_iteration(state)`` from an agent's iteration and its pieces.

  Every agent's iteration is ``iteration(state, run, *pieces)``: ``pieces``
  are pure functions (reset, learner update, ...) and ``run(carry)`` runs
  ``body`` ``length`` times with ``lr_meta.runner.repeat``, returning
  ``(carry, stacked outputs)``.

  ``'scan'``: the whole iteration is one ``jax.jit`` (the body inside one
  ``lax.scan``). ``'chunk'``/``'loop'`` (conv-net optimizees on CPU): a
  Python function that calls each piece jitted on its own and the body
  jitted once per decision. Both give the same numbers.
  """
  runner.check_strategy(strategy)
  jitted_body = jax.jit(body)

  def run(carry):
    return runner.repeat(body, carry, length, strategy,
                         jitted_body=jitted_body)

  if strategy == "scan":
    return jax.jit(lambda state: iteration(state, run, *pieces))
  jitted = tuple(jax.jit(p) for p in pieces)
  return lambda state: iteration(state, run, *jitted)


def make_train(agent, num_iterations: int):
  """purejaxrl-style ``train(rng) -> (state, metrics)``: one jittable function.

  ``agent.init`` then ``num_iterations`` ``agent.update_iteration`` calls in
  one ``lax.scan``; metrics are stacked over iterations. The agent must be
  built with ``strategy='scan'`` (the other strategies loop in Python).
  """
  if agent.config.strategy != "scan":
    raise ValueError(
        f"make_train needs strategy='scan', got {agent.config.strategy!r}; "
        "call update_iteration in a Python loop for 'chunk' or 'loop'.")
  check_positive_int("num_iterations", num_iterations)

  def train(rng):
    state = agent.init(rng)
    return jax.lax.scan(lambda s, _: agent.update_iteration(s), state, None,
                        length=num_iterations)
  return train
