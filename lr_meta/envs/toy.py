"""Toy environments that follow the lr_meta environment contract.

They are small known problems on which the agents in ``lr_meta.agents`` are
tested and demonstrated. The contract (gymnax style, pure and jittable)::

  env.reset(key, env_params) -> (obs, state)        # obs float32 (obs_size,)
  env.step(key, state, action, env_params)
      -> (obs, state, reward, terminated, truncated, info)
  env.observation_size: int
  env.num_actions: int                              # discrete envs, or
  env.action_shape / env.action_low / env.action_high   # continuous envs

``env_params.num_decisions`` is the fixed episode length T (a static Python
int). ``terminated`` is True when the episode failed early (with a penalty
reward); the state is then absorbing: further steps return the same obs,
reward 0 and ``terminated=True``. ``truncated`` is True at decision T. The
environments never reset themselves.

* ``ChainEnv`` (discrete, 2 actions): walk right along a chain to a goal;
  "left" at the start fails with a penalty. The best action is always 1.
* ``TargetEnv`` (continuous): reward ``-(a - target(x))**2`` with
  ``target(x) = target + target_slope * x`` and ``x`` observed, a 1-D
  control problem whose best action is known.
* ``QuadraticLREnv`` (continuous): a real learning-rate control problem. The
  optimizee is ``f(w) = 0.5 * sum_i h_i w_i**2`` trained by gradient descent;
  the action is ``log10(lr / base_lr)``; the reward is Fu's
  ``-(log f_t - log f_{t-1})``; a run whose loss grows by ``divergence_factor``
  terminates with a penalty. For curvatures ``h`` the best constant learning
  rate is ``2 / (h_min + h_max)`` (0.5 for the default ``h = (1, 3)``).
"""

from typing import Any, Dict, Tuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "ChainEnv", "ChainParams", "ChainState", "Info", "QuadraticLREnv",
    "QuadraticLRParams", "QuadraticLRState", "TargetEnv", "TargetParams",
    "TargetState",
]

Info = Dict[str, Any]


def _as_f32(x):
  return jnp.asarray(x, jnp.float32)


# ----------------------------------------------------------------------------
# ChainEnv.


@struct.dataclass
class ChainParams:
  num_decisions: int = struct.field(pytree_node=False, default=8)
  goal_reward: float = 1.0
  fail_penalty: float = -1.0


@struct.dataclass
class ChainState:
  position: jax.Array
  time: jax.Array
  terminated: jax.Array


class ChainEnv:
  """A chain of ``length`` states; action 1 moves right, action 0 left.

  Reaching the right end gives ``goal_reward`` and terminates; action 0 at
  the left end "diverges": ``fail_penalty`` and terminates. Observation:
  one-hot position.
  """

  def __init__(self, length: int = 4):
    if length < 2:
      raise ValueError(f"ChainEnv length must be >= 2, got {length}.")
    self.length = length
    self.observation_size = length
    self.num_actions = 2

  @property
  def default_params(self) -> ChainParams:
    return ChainParams()

  def _obs(self, state: ChainState) -> jax.Array:
    return jax.nn.one_hot(state.position, self.length, dtype=jnp.float32)

  def reset(self, key: chex.PRNGKey, params: ChainParams):
    del key, params
    state = ChainState(position=jnp.int32(0), time=jnp.int32(0),
                       terminated=jnp.bool_(False))
    return self._obs(state), state

  def step(self, key: chex.PRNGKey, state: ChainState, action: jax.Array,
           params: ChainParams):
    del key
    action = jnp.asarray(action, jnp.int32)
    fail = (state.position == 0) & (action == 0)
    position = jnp.clip(state.position + 2 * action - 1, 0, self.length - 1)
    goal = position == self.length - 1
    reward = jnp.where(goal, params.goal_reward,
                       jnp.where(fail, params.fail_penalty, 0.0))
    new = ChainState(position=position, time=state.time + 1,
                     terminated=fail | goal)
    # Absorbing after termination.
    new = jax.tree.map(lambda a, b: jnp.where(state.terminated, a, b), state,
                       new)
    reward = jnp.where(state.terminated, 0.0, reward)
    truncated = new.time >= params.num_decisions
    return (self._obs(new), new, _as_f32(reward), new.terminated, truncated,
            {})


# ----------------------------------------------------------------------------
# TargetEnv.


@struct.dataclass
class TargetParams:
  num_decisions: int = struct.field(pytree_node=False, default=8)
  target: float = 0.3
  target_slope: float = 0.0
  fail_distance: float = jnp.inf
  fail_penalty: float = -1.0


@struct.dataclass
class TargetState:
  x: jax.Array
  time: jax.Array
  terminated: jax.Array


class TargetEnv:
  """1-D control: reward ``-(clip(a) - target - target_slope * x)**2``.

  ``x ~ U(-1, 1)`` is redrawn every decision; observation ``[x, t / T]``.
  An action further than ``fail_distance`` from the target terminates with
  ``fail_penalty``. Actions are clipped to ``[action_low, action_high]``.
  """

  observation_size = 2
  action_shape = (1,)
  action_low = -1.0
  action_high = 1.0

  @property
  def default_params(self) -> TargetParams:
    return TargetParams()

  def _obs(self, state: TargetState, params: TargetParams) -> jax.Array:
    return jnp.stack([state.x, state.time / params.num_decisions]).astype(
        jnp.float32)

  def reset(self, key: chex.PRNGKey, params: TargetParams):
    x = jax.random.uniform(key, (), jnp.float32, -1.0, 1.0)
    state = TargetState(x=x, time=jnp.int32(0), terminated=jnp.bool_(False))
    return self._obs(state, params), state

  def step(self, key: chex.PRNGKey, state: TargetState, action: jax.Array,
           params: TargetParams):
    a = jnp.clip(jnp.reshape(action, ()), self.action_low, self.action_high)
    target = params.target + params.target_slope * state.x
    error = a - target
    fail = jnp.abs(error) > params.fail_distance
    reward = jnp.where(fail, params.fail_penalty, -error**2)
    new = TargetState(x=jax.random.uniform(key, (), jnp.float32, -1.0, 1.0),
                      time=state.time + 1, terminated=fail)
    new = jax.tree.map(lambda a, b: jnp.where(state.terminated, a, b), state,
                       new)
    reward = jnp.where(state.terminated, 0.0, reward)
    truncated = new.time >= params.num_decisions
    return (self._obs(new, params), new, _as_f32(reward), new.terminated,
            truncated, {"target": target})


# ----------------------------------------------------------------------------
# QuadraticLREnv.


@struct.dataclass
class QuadraticLRParams:
  num_decisions: int = struct.field(pytree_node=False, default=10)
  inner_steps: int = struct.field(pytree_node=False, default=1)
  curvatures: Tuple[float, ...] = struct.field(pytree_node=False,
                                               default=(1.0, 3.0))
  base_lr: float = 0.01
  divergence_factor: float = 1e3
  fail_penalty: float = -10.0


@struct.dataclass
class QuadraticLRState:
  w: jax.Array
  log_loss: jax.Array
  log_loss0: jax.Array
  last_action: jax.Array
  time: jax.Array
  terminated: jax.Array


class QuadraticLREnv:
  """Learning-rate control of gradient descent on a quadratic.

  Action ``a`` (shape (1,)), clipped to ``[-2, 2]``: ``lr = base_lr * 10**a``;
  ``inner_steps`` gradient steps per decision. Reward
  ``-(log f_t - log f_{t-1})`` (Fu 2016's per-step reward); if
  ``f_t > divergence_factor * f_0`` the episode terminates with
  ``fail_penalty``. Observation ``[log f_t - log f_0, t / T, last action]``.
  ``best_action(params)`` is the constant action with the fastest
  asymptotic contraction, ``log10(2 / (h_min + h_max) / base_lr)``.
  """

  observation_size = 3
  action_shape = (1,)
  action_low = -2.0
  action_high = 2.0

  @property
  def default_params(self) -> QuadraticLRParams:
    return QuadraticLRParams()

  @staticmethod
  def best_action(params: QuadraticLRParams) -> float:
    h = params.curvatures
    return float(jnp.log10(2.0 / (min(h) + max(h)) / params.base_lr))

  @staticmethod
  def _log_loss(w, params):
    h = jnp.asarray(params.curvatures, jnp.float32)
    return jnp.log(0.5 * jnp.sum(h * w**2) + 1e-30)

  def _obs(self, state, params):
    return jnp.stack([state.log_loss - state.log_loss0,
                      state.time / params.num_decisions,
                      state.last_action]).astype(jnp.float32)

  def reset(self, key: chex.PRNGKey, params: QuadraticLRParams):
    w = jax.random.normal(key, (len(params.curvatures),), jnp.float32)
    log_loss = self._log_loss(w, params)
    state = QuadraticLRState(w=w, log_loss=log_loss, log_loss0=log_loss,
                             last_action=jnp.float32(0.0), time=jnp.int32(0),
                             terminated=jnp.bool_(False))
    return self._obs(state, params), state

  def step(self, key: chex.PRNGKey, state: QuadraticLRState,
           action: jax.Array, params: QuadraticLRParams):
    del key
    a = jnp.clip(jnp.reshape(action, ()), self.action_low, self.action_high)
    lr = params.base_lr * 10.0**a
    h = jnp.asarray(params.curvatures, jnp.float32)
    w = state.w * (1.0 - lr * h)**params.inner_steps
    log_loss = self._log_loss(w, params)
    fail = log_loss > state.log_loss0 + jnp.log(params.divergence_factor)
    reward = jnp.where(fail, params.fail_penalty,
                       -(log_loss - state.log_loss))
    new = QuadraticLRState(w=w, log_loss=log_loss, log_loss0=state.log_loss0,
                           last_action=a.astype(jnp.float32),
                           time=state.time + 1, terminated=fail)
    new = jax.tree.map(lambda a, b: jnp.where(state.terminated, a, b), state,
                       new)
    reward = jnp.where(state.terminated, 0.0, reward)
    truncated = new.time >= params.num_decisions
    return (self._obs(new, params), new, _as_f32(reward), new.terminated,
            truncated, {"lr": lr})
