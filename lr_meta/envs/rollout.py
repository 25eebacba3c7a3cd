"""One compiled rollout path: a deterministic policy run on an environment.

Every evaluation rollout goes through ``run_episodes`` (N episodes in
lockstep, ``vmap`` over their keys) or ``run_episode`` (one episode, no batch
axis): a trained controller on an ``LREnv`` (``lr_meta.experiment``,
evaluation scripts, notebooks), an agent's greedy policy on a toy environment
(``lr_meta.agents.evaluate_episodes``). The policy follows the one contract
of every agent and of ``lr_meta.policies.Controller.act``::

  policy_fn(policy_params, obs, carry) -> (action, carry)

Compiling once: the work is done by module-level ``jax.jit`` functions whose
static arguments are the environment and the policy function (compared by
identity), the environment params (compared by value; ``LREnvParams`` and the
toy params are hashable) and the batch mode; the policy params, the episode
keys, the initial learning rates and the policy carry are array arguments.
Evaluating many checkpoints, seeds or initial LRs of one controller on one
environment therefore compiles once per (environment, policy architecture,
number of episodes per call). The compiled programs (and the environment's
data, embedded in them as constants) stay cached until ``clear_cache()``.

Execution strategies (``lr_meta.runner``): ``'scan'`` runs reset and all
decisions in one program; ``'chunk'``/``'loop'`` (conv nets on CPU) run a
Python loop over one jitted decision after a jitted reset.
"""

import functools
from typing import Any, Callable, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from lr_meta import runner

__all__ = ["PolicyFn", "clear_cache", "run_episode", "run_episodes"]

PolicyFn = Callable[[Any, jax.Array, Any], Tuple[jax.Array, Any]]


class _Static:
  """A jit static argument compared by identity (also for bound methods).

  Environments and policy functions are cached by identity: an equal but
  distinct object may close over different data. A bound method is recreated
  at every attribute access, so it is identified by (its object, its
  function); ``controller.act`` of an unhashable ``Controller`` works too.
  The wrapped value is kept alive, so the ids cannot be reused while a
  compiled program refers to them.
  """
  __slots__ = ("value", "_key")

  def __init__(self, value: Any):
    self.value = value
    owner = getattr(value, "__self__", None)
    func = getattr(value, "__func__", None)
    self._key = ((id(owner), id(func)) if owner is not None and func is not None
                 else (id(value),))

  def __hash__(self) -> int:
    return hash(self._key)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Static) and self._key == other._key


def _env_fns(env: Any, env_params: Any, batched: bool):
  """``(reset(keys, (lr0s, num_steps)), step(keys, state, action))``,
  vmapped if batched."""
  def reset(key, lengths):
    lr0, num_steps = lengths
    if lr0 is None:
      return env.reset(key, env_params)
    if num_steps is None:
      return env.reset_with_lr0(key, env_params, lr0)
    return env.reset_with_lr0(key, env_params, lr0, num_steps)

  def step(key, state, action):
    return env.step(key, state, action, env_params)
  if not batched:
    return reset, step
  return jax.vmap(reset), jax.vmap(step)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _reset(env: _Static, env_params: Any, batched: bool, keys, lengths):
  reset, _ = _env_fns(env.value, env_params, batched)
  return reset(keys, lengths)


def _decision(env: _Static, env_params: Any, policy_fn: _Static,
              batched: bool, policy_params, carry, time):
  """One decision: act, step; infos gain ``reward`` and ``action``."""
  del time
  _, step = _env_fns(env.value, env_params, batched)
  state, obs, policy_carry, rng = carry
  rng, key = jax.random.split(rng)
  if batched:
    key = jax.random.split(key, obs.shape[0])
  action, policy_carry = policy_fn.value(policy_params, obs, policy_carry)
  obs, state, reward, _, _, info = step(key, state, action)
  return (state, obs, policy_carry, rng), dict(info, reward=reward,
                                               action=action)


_jit_decision = jax.jit(_decision, static_argnums=(0, 1, 2, 3))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _episodes_scan(env: _Static, env_params: Any, policy_fn: _Static,
                   batched: bool, num_decisions: int, policy_params, keys,
                   lengths, carry, step_key):
  obs, state = _reset(env, env_params, batched, keys, lengths)
  return jax.lax.scan(
      functools.partial(_decision, env, env_params, policy_fn, batched,
                        policy_params),
      (state, obs.astype(jnp.float32), carry, step_key),
      jnp.arange(num_decisions))


def _rollout(env, env_params, policy_fn: PolicyFn, policy_params, keys,
             carry, lr0s, num_steps, strategy: str, step_key, batched: bool):
  runner.check_strategy(strategy)
  num_decisions = int(env_params.num_decisions)
  if num_decisions < 1:
    raise ValueError(f"env_params.num_decisions={num_decisions}; allowed: "
                     ">= 1.")
  if lr0s is not None:
    if not hasattr(env, "reset_with_lr0"):
      raise ValueError(
          f"initial LRs given for {type(env).__name__}, which has no "
          "reset_with_lr0; allowed: lr0s=None for this environment.")
    lr0s = jnp.asarray(lr0s, jnp.float32)
    expected = tuple(keys.shape[:1]) if batched else ()
    if lr0s.shape != expected:
      raise ValueError(f"lr0s of shape {lr0s.shape}; allowed: {expected} "
                       "(one initial LR per episode).")
  if num_steps is not None:
    num_steps = jnp.asarray(num_steps, jnp.int32)
    if lr0s is None or num_steps.shape != lr0s.shape:
      raise ValueError(f"num_steps of shape {num_steps.shape} with lr0s "
                       f"{None if lr0s is None else lr0s.shape}; allowed: "
                       "one run length per episode, with lr0s.")
  if step_key is None:
    first = keys[0] if batched else keys
    step_key = jax.random.fold_in(first, 1)
  static = (_Static(env), env_params, _Static(policy_fn), batched)
  if strategy == "scan":
    (state, _, _, _), infos = _episodes_scan(
        *static, num_decisions, policy_params, keys, (lr0s, num_steps), carry,
        step_key)
    return state, infos
  obs, state = _reset(static[0], env_params, batched, keys,
                      (lr0s, num_steps))
  (state, _, _, _), infos = runner.repeat(
      functools.partial(_decision, *static, policy_params),
      (state, obs.astype(jnp.float32), carry, step_key), num_decisions,
      strategy,
      jitted_body=functools.partial(_jit_decision, *static, policy_params))
  return state, infos


def run_episodes(env, env_params, policy_fn: PolicyFn, policy_params,
                 keys: chex.PRNGKey, *, carry: Any = (),
                 lr0s: Optional[jax.Array] = None,
                 num_steps: Optional[jax.Array] = None, strategy: str = "scan",
                 step_key: Optional[chex.PRNGKey] = None):
  """N episodes of a deterministic policy in lockstep (``vmap`` over keys).

  Args:
    env, env_params: an environment following the ``lr_meta.envs`` contract
      and its (hashable) params.
    policy_fn: ``(policy_params, obs [N, obs_size], carry) -> (actions [N,
      ...], carry)``, e.g. an agent's ``policy_fn`` or ``Controller.act``.
    policy_params: its params (an array argument: new params reuse the
      compiled program).
    keys: ``[N]`` PRNG keys, one per episode (the environment's reset key:
      for an ``LREnv`` the optimizee's initialisation and batches).
    carry: the initial batched policy carry (an agent's
      ``initial_carry((N,))``; ``()`` for feed-forward policies).
    lr0s: optional ``[N]`` initial LRs (an ``LREnv``: ``reset_with_lr0``)
      replacing the draw from ``env_params.initial_lrs``; an array, so every
      eta0 reuses the compiled program.
    num_steps: optional ``[N]`` run lengths with ``lr0s`` (an ``LREnv``
      with ``decision_schedule='fraction'``; an array, so every length
      reuses the compiled program).
    strategy: ``'scan'`` or ``'chunk'``/``'loop'`` (see the module
      docstring); the numbers are the same.
    step_key: key of the environments' step noise, split N ways at each
      decision (toy environments redraw their observation; an ``LREnv``
      ignores it: the optimizee carries its own key). Default: derived from
      ``keys[0]``.

  Returns:
    ``(final batched env state, infos)``; infos hold the environment's step
    info plus ``reward`` and ``action``, each of shape ``[T, N, ...]``.
  """
  return _rollout(env, env_params, policy_fn, policy_params, keys, carry,
                  lr0s, num_steps, strategy, step_key, batched=True)


def run_episode(env, env_params, policy_fn: PolicyFn, policy_params,
                key: chex.PRNGKey, *, carry: Any = (),
                lr0: Optional[jax.Array] = None,
                num_steps: Optional[jax.Array] = None, strategy: str = "scan",
                step_key: Optional[chex.PRNGKey] = None):
  """One episode, no batch axis: ``run_episodes`` for a single key.

  ``policy_fn`` acts on one observation ``[obs_size]``; ``lr0`` and
  ``num_steps`` are scalars; infos are ``[T, ...]``. Same numbers as the unbatched ``env.reset`` and
  ``env.step`` (a batch of one under ``vmap`` may differ in the last bit).
  """
  return _rollout(env, env_params, policy_fn, policy_params, key, carry,
                  lr0, num_steps, strategy, step_key, batched=False)


def clear_cache() -> None:
  """Drops the compiled rollouts (and the environments they hold)."""
  for fn in (_reset, _jit_decision, _episodes_scan):
    fn.clear_cache()
