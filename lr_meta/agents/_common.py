"""Pieces shared by the agents: config checks and population stepping.

A population of N episodes runs in lockstep: ``population_reset`` and
``population_step`` ``vmap`` the environment over N keys. Bookkeeping
follows one rule for every agent: an episode's transitions after its first
``terminated``/``truncated`` (or after decision T) are invalid (``valid=0``,
reward 0); ``end`` marks the step at which an episode ends, and the
environment's return beyond it is 0 (the optimizee's training run is over),
so bootstrapping stops there (``discount = 0``).
"""

import math
from typing import Any, NamedTuple, Tuple

import chex
import distrax
import jax
import jax.numpy as jnp

from lr_meta import runner

STRATEGIES = runner.STRATEGIES
repeat = runner.repeat


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
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name}={value!r}; allowed: an integer >= 1.")


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


def population_reset(env, env_params, key: chex.PRNGKey, n: int):
  """Resets N episodes: ``(obs [N, obs_size], states)``."""
  return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n),
                                                env_params)


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
                    time: jax.Array, horizon: int) -> PopulationStep:
  """Steps N episodes and applies the masking rule of this module.

  Args:
    env, env_params: the environment and its parameters.
    key: one key, split N ways.
    env_state: the batched environment state.
    action: batched actions as the environment takes them.
    done_before: [N] bool, the episode ended at an earlier decision.
    time: scalar int, index of this decision in the episode (0..T-1).
    horizon: T.
  """
  n = done_before.shape[0]
  keys = jax.random.split(key, n)
  next_obs, env_state, reward, terminated, truncated, _ = jax.vmap(
      env.step, in_axes=(0, 0, 0, None))(keys, env_state, action, env_params)
  valid = jnp.logical_not(done_before)
  end = valid & (terminated | truncated | (time >= horizon - 1))
  reward = jnp.where(valid, reward, 0.0).astype(jnp.float32)
  return PopulationStep(next_obs=next_obs.astype(jnp.float32),
                        env_state=env_state, reward=reward, end=end,
                        valid=valid, done=done_before | end)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``x`` over entries where ``mask`` is 1 (0 if none)."""
  mask = mask.astype(x.dtype)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def evaluate_episodes(env, env_params, act_fn, key: chex.PRNGKey, n: int,
                      carry: Any = ()) -> Tuple[jax.Array, jax.Array]:
  """Runs N episodes with a deterministic ``act_fn`` (one ``lax.scan``).

  Args:
    env, env_params: the environment.
    act_fn: ``(obs [N, obs_size], carry) -> (action [N, ...], carry)``.
    key: PRNG key (resets and environment noise).
    n: number of episodes.
    carry: initial ``act_fn`` carry (e.g. an LSTM state), batched over N.

  Returns:
    ``(returns [N], actions [T, N, ...])`` with actions as applied.
  """
  horizon = num_decisions(env_params)
  k_reset, k_run = jax.random.split(key)
  obs, env_state = population_reset(env, env_params, k_reset, n)

  def body(c, time):
    env_state, obs, done, carry, rng = c
    rng, k = jax.random.split(rng)
    action, carry = act_fn(obs, carry)
    ps = population_step(env, env_params, k, env_state, action, done, time,
                         horizon)
    return (ps.env_state, ps.next_obs, ps.done, carry, rng), (ps.reward,
                                                              action)

  _, (rewards, actions) = jax.lax.scan(
      body, (env_state, obs.astype(jnp.float32), jnp.zeros((n,), bool),
             carry, k_run), jnp.arange(horizon))
  return jnp.sum(rewards, axis=0), actions


def gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
  """The diagonal Gaussian policy (the last axis is the action event)."""
  return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
