"""DQN learning-rate controller (Fu 2016, after Mnih et al. 2015).

Fu 2016 trains a deep Q-network on weight statistics of the last conv layer
with two actions (decrease the LR by 3% / reset it), "the default setting" of
Mnih et al. 2015's DQN: experience replay, a target network, epsilon-greedy
exploration, the Huber (clipped TD) loss, and a burn-in of 3000 iterations
before learning starts. This module implements it generically for any
discrete-action environment following the ``lr_meta.envs`` contract.

Execution: a population of N episodes runs in lockstep. One *decision* of the
whole population (epsilon-greedy act, ``env.step``, add N transitions to the
flashbax replay buffer, then ``updates_per_decision`` learner updates once
burn-in is over) is one jitted function; an *iteration* is
``decisions_per_iteration`` decisions strung together by
``lr_meta.runner.repeat`` ('scan' or 'loop'). The population resets at
the first decision of every episode; episodes that terminated early store
masked (``valid=0``) transitions until the others finish.

Usage::

  agent = make_dqn(DQNConfig(num_envs=8), env, env_params)
  state = agent.init(jax.random.PRNGKey(0))
  for _ in range(100):                          # checkpoint `state` any time
    state, metrics = agent.update_iteration(state)
  action, _ = agent.policy_fn(state.params, obs, ())   # greedy
"""

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import chex
import flashbax as fbx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax
from flax import struct

from lr_meta import distributed
from lr_meta.agents import _common
from lr_meta.policies import controller as controller_lib
from lr_meta.policies import networks

TARGET_UPDATES = ("hard", "polyak")
OPTIMIZERS = ("adam", "rmsprop")


@dataclasses.dataclass(frozen=True)
class DQNConfig:
  """DQN settings.

  Attributes:
    num_envs: population size N (episodes run in lockstep), >= 1.
    hidden_sizes: hidden layers of the Q-network MLP.
    gamma: discount, in [0, 1].
    double_q: use ``rlax.double_q_learning`` instead of ``rlax.q_learning``.
    huber_delta: Huber loss threshold, > 0.
    optimizer: 'adam' or 'rmsprop'.
    learning_rate: > 0.
    max_grad_norm: global-norm gradient clip, > 0 (inf disables it).
    target_update: 'hard' (copy every ``target_update_period`` learner
      updates) or 'polyak' (``target += tau * (online - target)`` each update).
    target_update_period: learner updates between hard copies, >= 1.
    tau: Polyak step, in (0, 1].
    epsilon_start, epsilon_end: epsilon-greedy range, in [0, 1].
    epsilon_decay_transitions: transitions over which epsilon decays
      linearly (optax.linear_schedule), >= 1.
    buffer_size: replay capacity in transitions, >= batch_size and >= N.
    batch_size: sampled transitions per learner update, >= 1.
    burn_in: valid transitions collected before the first update (Fu 2016:
      3000), >= batch_size.
    updates_per_decision: learner updates after each population decision.
    decisions_per_iteration: decisions per ``update_iteration`` call.
    strategy: 'scan' or 'loop' (see ``lr_meta.runner``).
  """
  num_envs: int = 8
  hidden_sizes: Tuple[int, ...] = (64, 64)
  gamma: float = 0.99
  double_q: bool = False
  huber_delta: float = 1.0
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  max_grad_norm: float = 10.0
  target_update: str = "hard"
  target_update_period: int = 100
  tau: float = 0.005
  epsilon_start: float = 1.0
  epsilon_end: float = 0.05
  epsilon_decay_transitions: int = 10_000
  buffer_size: int = 100_000
  batch_size: int = 32
  burn_in: int = 3000
  updates_per_decision: int = 1
  decisions_per_iteration: int = 100
  strategy: str = "scan"

  def __post_init__(self):
    # A list (from a JSON or ml_collections config) becomes the tuple a
    # frozen, hashable config needs.
    if not isinstance(self.hidden_sizes, (list, tuple)):
      raise ValueError(f"hidden_sizes={self.hidden_sizes!r}; allowed: a "
                       "sequence of integers >= 1.")
    object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
    for name in ("num_envs", "target_update_period",
                 "epsilon_decay_transitions", "buffer_size", "batch_size",
                 "updates_per_decision", "decisions_per_iteration"):
      _common.check_positive_int(name, getattr(self, name))
    for size in self.hidden_sizes:
      _common.check_positive_int("hidden_sizes", size)
    _common.check_in_range("gamma", self.gamma, 0.0, 1.0)
    _common.check_in_range("huber_delta", self.huber_delta, 0.0, np.inf,
                           low_inclusive=False, high_inclusive=False)
    _common.check_choice("optimizer", self.optimizer, OPTIMIZERS)
    _common.check_in_range("learning_rate", self.learning_rate, 0.0, np.inf,
                           low_inclusive=False, high_inclusive=False)
    _common.check_in_range("max_grad_norm", self.max_grad_norm, 0.0, np.inf,
                           low_inclusive=False)
    _common.check_choice("target_update", self.target_update, TARGET_UPDATES)
    _common.check_in_range("tau", self.tau, 0.0, 1.0, low_inclusive=False)
    _common.check_in_range("epsilon_start", self.epsilon_start, 0.0, 1.0)
    _common.check_in_range("epsilon_end", self.epsilon_end, 0.0, 1.0)
    if self.buffer_size < max(self.batch_size, self.num_envs):
      raise ValueError(
          f"buffer_size={self.buffer_size}; allowed: >= batch_size="
          f"{self.batch_size} and >= num_envs={self.num_envs}.")
    if not isinstance(self.burn_in, int) or self.burn_in < self.batch_size:
      raise ValueError(f"burn_in={self.burn_in!r}; allowed: an integer >= "
                       f"batch_size={self.batch_size}.")
    _common.check_choice("strategy", self.strategy, _common.STRATEGIES)


class Transition(NamedTuple):
  """One replay item (unbatched: obs [obs_size], the rest scalars)."""
  obs_tm1: jax.Array
  a_tm1: jax.Array
  r_t: jax.Array
  discount_t: jax.Array   # 0 where the episode ends at this step, else 1.
  obs_t: jax.Array
  valid: jax.Array        # 0 for steps after an episode's end.


@struct.dataclass
class DQNState:
  """The whole learner state; checkpoint it between iterations to resume."""
  params: Any
  target_params: Any
  opt_state: optax.OptState
  buffer_state: Any
  env_state: Any
  obs: jax.Array            # [N, obs_size]
  done: jax.Array           # [N] episode already ended
  time: jax.Array           # decision index in the current episode
  episode_return: jax.Array  # [N] running (masked) return
  last_episode_return: jax.Array  # mean return of the last finished episodes
  num_transitions: jax.Array  # valid transitions collected so far
  num_updates: jax.Array
  rng: chex.PRNGKey
  iteration: jax.Array


class DQN(NamedTuple):
  """The agent's functions; ``policy_fn(params, obs, carry)`` is greedy
  (carry ``()``, from ``initial_carry``)."""
  init: Callable[[chex.PRNGKey], DQNState]
  update_iteration: Callable[[DQNState], Tuple[DQNState, Dict[str, Any]]]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  initial_carry: Callable[..., Any]
  config: DQNConfig
  network: nn.Module
  buffer: Any


def td_error(q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array,
             discount_t: jax.Array, q_t_target: jax.Array,
             q_t_online: jax.Array, double_q: bool) -> jax.Array:
  """TD error of one transition (unbatched; batch with ``jax.vmap``).

  Q-learning (Mnih et al. 2015): ``r + discount * max_a q_t_target[a] -
  q_tm1[a_tm1]``; double Q-learning (van Hasselt et al. 2016): the target
  network evaluates the online network's argmax. ``discount_t`` already
  includes gamma.
  """
  if double_q:
    return rlax.double_q_learning(q_tm1, a_tm1, r_t, discount_t, q_t_target,
                                  q_t_online)
  return rlax.q_learning(q_tm1, a_tm1, r_t, discount_t, q_t_target)


def dqn_loss(q_tm1: jax.Array, q_t_target: jax.Array, q_t_online: jax.Array,
             batch: Transition, gamma: float, double_q: bool,
             huber_delta: float) -> Tuple[jax.Array, jax.Array]:
  """Mean Huber TD loss over the valid transitions of a batch.

  Args:
    q_tm1: [B, A] online Q-values at obs_tm1.
    q_t_target: [B, A] target-network Q-values at obs_t.
    q_t_online: [B, A] online Q-values at obs_t (used by double Q only).
    batch: ``Transition`` with leading size B.
    gamma, double_q, huber_delta: see ``DQNConfig``.

  Returns:
    (loss, td_errors [B]).
  """
  chex.assert_rank([q_tm1, q_t_target, q_t_online], 2)
  td = jax.vmap(td_error, in_axes=(0, 0, 0, 0, 0, 0, None))(
      q_tm1, batch.a_tm1, batch.r_t, gamma * batch.discount_t, q_t_target,
      q_t_online, double_q)
  loss = _common.masked_mean(rlax.huber_loss(td, huber_delta), batch.valid)
  return loss, td


def make_optimizer(config: DQNConfig) -> optax.GradientTransformation:
  opt = optax.adam if config.optimizer == "adam" else optax.rmsprop
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     opt(config.learning_rate))


def make_buffer(config: DQNConfig):
  """The flashbax item buffer: uniform sampling, N items added per call."""
  return fbx.make_item_buffer(max_length=config.buffer_size,
                              min_length=config.batch_size,
                              sample_batch_size=config.batch_size,
                              add_batches=True)


def make_dqn(config: DQNConfig, env, env_params,
             mesh: Optional[jax.sharding.Mesh] = None) -> DQN:
  """Builds the DQN agent for a discrete-action ``env``.

  Args:
    config: a ``DQNConfig``.
    env: an environment with ``observation_size``, ``num_actions`` and pure
      ``reset``/``step``.
    env_params: its parameters; ``env_params.num_decisions`` is T.
    mesh: shard the population over this device mesh (``_common``); each
      decision's transitions are gathered before they enter the (replicated)
      replay buffer. The state's population fields stay sharded.

  Returns:
    A ``DQN`` of pure functions (``update_iteration`` jitted under 'scan').
  """
  if not hasattr(env, "num_actions"):
    raise ValueError(f"environment {type(env).__name__} has no num_actions; "
                     "DQN needs a discrete-action environment.")
  horizon = _common.num_decisions(env_params)
  num_actions = int(env.num_actions)
  n = config.num_envs
  network = networks.QNetwork(num_actions, tuple(config.hidden_sizes))
  optimizer = make_optimizer(config)
  buffer = make_buffer(config)
  epsilon_fn = optax.linear_schedule(config.epsilon_start, config.epsilon_end,
                                     config.epsilon_decay_transitions)

  def greedy(params, obs):
    return jnp.argmax(network.apply(params, obs), axis=-1).astype(jnp.int32)

  def policy_fn(params, obs, carry=()):
    """Greedy action ``argmax_a Q(obs, a)`` (obs batched or not)."""
    return greedy(params, obs), carry

  def init(key: chex.PRNGKey) -> DQNState:
    k_net, k_reset, k_rng = jax.random.split(key, 3)
    obs_size = env.observation_size
    params = network.init(k_net, jnp.zeros((obs_size,), jnp.float32))
    item = Transition(obs_tm1=jnp.zeros((obs_size,), jnp.float32),
                      a_tm1=jnp.int32(0), r_t=jnp.float32(0),
                      discount_t=jnp.float32(0),
                      obs_t=jnp.zeros((obs_size,), jnp.float32),
                      valid=jnp.float32(0))
    obs, env_state = _common.population_reset(env, env_params, k_reset, n,
                                              mesh)
    return DQNState(
        params=params, target_params=params, opt_state=optimizer.init(params),
        buffer_state=buffer.init(item), env_state=env_state,
        obs=obs.astype(jnp.float32), done=jnp.zeros((n,), bool),
        time=jnp.int32(0), episode_return=jnp.zeros((n,), jnp.float32),
        last_episode_return=jnp.float32(jnp.nan),
        num_transitions=jnp.int32(0), num_updates=jnp.int32(0), rng=k_rng,
        iteration=jnp.int32(0))

  def loss_fn(params, target_params, batch: Transition):
    q_tm1 = network.apply(params, batch.obs_tm1)
    q_t_target = network.apply(target_params, batch.obs_t)
    q_t_online = network.apply(params, batch.obs_t)
    return dqn_loss(q_tm1, q_t_target, q_t_online, batch, config.gamma,
                    config.double_q, config.huber_delta)

  def learner_update(s: DQNState, key) -> Tuple[DQNState, jax.Array]:
    batch = buffer.sample(s.buffer_state, key).experience
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        s.params, s.target_params, batch)
    updates, opt_state = optimizer.update(grads, s.opt_state, s.params)
    params = optax.apply_updates(s.params, updates)
    num_updates = s.num_updates + 1
    if config.target_update == "hard":
      target = optax.periodic_update(params, s.target_params, num_updates,
                                     config.target_update_period)
    else:
      target = optax.incremental_update(params, s.target_params, config.tau)
    return s.replace(params=params, target_params=target,
                     opt_state=opt_state, num_updates=num_updates), loss

  def maybe_learn(s: DQNState, key) -> Tuple[DQNState, jax.Array]:
    ready = (s.num_transitions >= config.burn_in) & buffer.can_sample(
        s.buffer_state)
    def learn(s):
      def one(s, k):
        return learner_update(s, k)
      s, losses = jax.lax.scan(
          one, s, jax.random.split(key, config.updates_per_decision))
      return s, jnp.mean(losses)
    return jax.lax.cond(ready, learn, lambda s: (s, jnp.float32(jnp.nan)), s)

  def decision_body(s: DQNState, unused_index):
    rng, k_reset, k_explore, k_random, k_step, k_learn = jax.random.split(
        s.rng, 6)
    # A new episode for the whole population at its first decision.
    def reset(s):
      obs, env_state = _common.population_reset(env, env_params, k_reset, n,
                                                mesh)
      return s.replace(obs=obs.astype(jnp.float32), env_state=env_state,
                       done=jnp.zeros((n,), bool),
                       episode_return=jnp.zeros((n,), jnp.float32))
    s = jax.lax.cond(s.time == 0, reset, lambda s: s, s)

    epsilon = epsilon_fn(s.num_transitions)
    random_a = jax.random.randint(k_random, (n,), 0, num_actions, jnp.int32)
    explore = jax.random.uniform(k_explore, (n,)) < epsilon
    action = jnp.where(explore, random_a, greedy(s.params, s.obs))
    ps = _common.population_step(env, env_params, k_step, s.env_state,
                                 action, s.done, s.time, horizon, mesh)
    transitions = distributed.replicate(Transition(
        obs_tm1=s.obs, a_tm1=action, r_t=ps.reward,
        discount_t=1.0 - ps.end.astype(jnp.float32), obs_t=ps.next_obs,
        valid=ps.valid.astype(jnp.float32)), mesh)
    episode_return = s.episode_return + ps.reward
    last_time = s.time == horizon - 1
    s = s.replace(
        buffer_state=buffer.add(s.buffer_state, transitions),
        env_state=ps.env_state, obs=ps.next_obs, done=ps.done,
        time=jnp.where(last_time, 0, s.time + 1),
        episode_return=episode_return,
        last_episode_return=jnp.where(last_time, jnp.mean(episode_return),
                                      s.last_episode_return),
        num_transitions=s.num_transitions + jnp.sum(ps.valid, dtype=jnp.int32),
        rng=rng)
    s, loss = maybe_learn(s, k_learn)
    metrics = dict(loss=loss, epsilon=epsilon,
                   reward=_common.masked_mean(ps.reward, ps.valid),
                   q_mean=jnp.mean(network.apply(s.params, s.obs)))
    return s, metrics

  def iteration(s: DQNState, run):
    s, metrics = run(s)
    metrics = {k: jnp.nanmean(v) for k, v in metrics.items()}
    metrics.update(last_episode_return=s.last_episode_return,
                   num_transitions=s.num_transitions,
                   num_updates=s.num_updates)
    return s.replace(iteration=s.iteration + 1), metrics

  return DQN(init=init,
             update_iteration=_common.make_update_iteration(
                 iteration, config.strategy, decision_body,
                 config.decisions_per_iteration),
             policy_fn=policy_fn, initial_carry=_common.no_carry,
             config=config, network=network, buffer=buffer)


def make_train(config: DQNConfig, env, env_params, num_iterations: int,
               mesh: Optional[jax.sharding.Mesh] = None):
  """purejaxrl-style ``train(rng) -> (state, metrics)``: one jittable function
  (``_common.make_train``; needs ``strategy='scan'``)."""
  return _common.make_train(make_dqn(config, env, env_params, mesh),
                            num_iterations)


def export_controller(agent_config, env, agent_params, common: dict):
  """The deployable controller of a DQN learner: its online Q-network,
  acting greedily (Fu 2016's two actions).

  Args:
    agent_config: the ``dqn`` sub-config (mapping; ``hidden_sizes``).
    env: the ``LREnv`` it trained on (its actions, the monitored layer).
    agent_params: the online Q-network's params.
    common: the ``ControllerSpec`` fields every agent's controller shares
      (``lr_meta.rundir.controller_from_training``).

  Raises:
    ValueError: an action type other than 'fu2016'.
  """
  if common["action_type"] != "fu2016":
    raise ValueError(f"action_type {common['action_type']!r} with DQN; "
                     "controllers can be exported for ('fu2016',).")
  spec = controller_lib.ControllerSpec(
      network="q_mlp",
      hidden_sizes=tuple(int(h) for h in agent_config["hidden_sizes"]),
      num_actions=int(env.num_actions),
      monitored_layer=tuple(env.monitored_layer), **common)
  return controller_lib.make_controller(spec, jax.device_get(agent_params))
