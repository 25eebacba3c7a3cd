"""PPO learning-rate controller (Xu, Dai, Kemp, Metz 2019).

Xu et al. 2019 train a Gaussian actor (MLP(32) or LSTM(32)) and an MLP(32)
critic with PPO's clipped surrogate objective (their eq. 1, clip 0.2),
gamma 0.9, 10 updates per batch, Adam with actor LR 1e-3 and critic LR 5e-3
(the official code uses 1e-2) and gradient clipping at 5.0; the action is a
Gaussian sample (sigma 0.1) clipped to the environment's bounds.

One PPO *iteration* runs a population of N episodes (N optimizee training
runs, ``vmap`` over keys) for T decisions, computes GAE advantages with
``rlax.truncated_generalized_advantage_estimation`` (no bootstrapping past an
episode's end), then runs ``num_epochs`` epochs of minibatch updates. Minibatches
are groups of whole trajectories (population members) so that the LSTM actor
is re-run from its initial carry over each trajectory; the MLP actor uses the
same path. Transitions after an episode's first end are masked out of every
loss.

The actor, critic, optimizer, state and sampling are the Gaussian
actor-critic of ``lr_meta.agents.gaussian_ac``, shared with the online
actor-critic.

Usage::

  agent = make_ppo(PPOConfig(num_envs=8), env, env_params)
  state = agent.init(jax.random.PRNGKey(0))
  for _ in range(100):                       # checkpoint `state` any time
    state, metrics = agent.update_iteration(state)
  action, carry = agent.policy_fn(state.params, obs, agent.initial_carry())

  # or, purejaxrl style, the whole training as one jittable function:
  state, metrics = jax.jit(make_train(config, env, env_params, 100))(key)
"""

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from lr_meta import distributed
from lr_meta import runner
from lr_meta.agents import _common
from lr_meta.agents import gaussian_ac
from lr_meta.policies import controller as controller_lib
from lr_meta.policies import networks


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO settings; defaults are Xu et al. 2019's where the paper gives them.

  Attributes:
    num_envs: population size N (episodes per iteration), >= 1.
    gamma: discount, in [0, 1] (paper: 0.9).
    gae_lambda: GAE lambda, in [0, 1].
    clip_epsilon: PPO ratio clip, in (0, 1) (paper: 0.2).
    num_epochs: passes over each batch, >= 1 (paper: 10).
    num_minibatches: minibatches per epoch; must divide num_envs.
    actor_lr: Adam learning rate of the actor, > 0 (paper: 1e-3).
    critic_lr: Adam learning rate of the critic, > 0 (paper: 5e-3).
    max_grad_norm: global-norm gradient clip per network, > 0 (paper: 5.0).
    entropy_coef: weight of the entropy bonus, >= 0 (constant when
      ``learn_log_std`` is False).
    normalize_advantages: standardise advantages over each minibatch.
    actor: 'mlp' or 'lstm'.
    hidden_size: hidden units of the actor and critic (paper: 32).
    action_std: initial (or fixed) policy standard deviation, > 0 (0.1).
    learn_log_std: learn a state-independent log-std vector.
    strategy: 'scan' (one jit per iteration) or 'loop' (Python loop over a
      jitted decision; for conv-net optimizees on CPU).
  """
  num_envs: int = 8
  gamma: float = 0.9
  gae_lambda: float = 0.95
  clip_epsilon: float = 0.2
  num_epochs: int = 10
  num_minibatches: int = 2
  actor_lr: float = 1e-3
  critic_lr: float = 5e-3
  max_grad_norm: float = 5.0
  entropy_coef: float = 0.0
  normalize_advantages: bool = True
  actor: str = "mlp"
  hidden_size: int = 32
  action_std: float = 0.1
  learn_log_std: bool = False
  strategy: str = "scan"

  def __post_init__(self):
    _common.check_positive_int("num_envs", self.num_envs)
    _common.check_in_range("gamma", self.gamma, 0.0, 1.0)
    _common.check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
    _common.check_in_range("clip_epsilon", self.clip_epsilon, 0.0, 1.0,
                           low_inclusive=False, high_inclusive=False)
    _common.check_positive_int("num_epochs", self.num_epochs)
    _common.check_positive_int("num_minibatches", self.num_minibatches)
    if self.num_envs % self.num_minibatches:
      raise ValueError(
          f"num_minibatches={self.num_minibatches} must divide "
          f"num_envs={self.num_envs}.")
    for name in ("actor_lr", "critic_lr", "max_grad_norm", "action_std"):
      _common.check_in_range(name, getattr(self, name), 0.0, np.inf,
                             low_inclusive=False, high_inclusive=False)
    _common.check_in_range("entropy_coef", self.entropy_coef, 0.0, np.inf,
                           high_inclusive=False)
    _common.check_choice("actor", self.actor, networks.ACTOR_KINDS)
    _common.check_positive_int("hidden_size", self.hidden_size)
    _common.check_choice("strategy", self.strategy, _common.STRATEGIES)


# The learner state of every Gaussian actor-critic agent.
PPOState = gaussian_ac.LearnerState


class Trajectory(NamedTuple):
  """A population rollout; every field has leading shape [T, N]."""
  obs: jax.Array
  action: jax.Array       # the unclipped Gaussian sample, [T, N, A].
  log_prob: jax.Array
  value: jax.Array
  reward: jax.Array
  end: jax.Array
  valid: jax.Array


class PPOBatch(NamedTuple):
  """Inputs of ``ppo_loss``; leading shape [T, B] (time, trajectories)."""
  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  advantage: jax.Array
  value_target: jax.Array
  valid: jax.Array


class PPO(NamedTuple):
  """The agent's functions; see the module docstring.

  ``update_iteration(state)`` is ``collect`` then ``learn``; both are also
  exposed (jitted) for populations drawn from several environments
  (``lr_meta.agents.population``): ``collect(params, key) -> (Trajectory,
  applied actions)`` runs ``num_envs`` exploratory episodes and
  ``learn(state, traj, applied, key) -> (state, metrics)`` is the PPO
  update on any such batch of trajectories.
  """
  init: Callable[[chex.PRNGKey], PPOState]
  update_iteration: Callable[[PPOState], Tuple[PPOState, Dict[str, Any]]]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  initial_carry: Callable[..., Any]
  config: PPOConfig
  actor: nn.Module
  critic: nn.Module
  collect: Callable[..., Tuple[Trajectory, jax.Array]]
  learn: Callable[..., Tuple[PPOState, Dict[str, Any]]]


def gae_advantages(reward: jax.Array, end: jax.Array, value: jax.Array,
                   gamma: float, gae_lambda: float) -> jax.Array:
  """GAE over one trajectory, stopping at its end (Schulman et al. 2016).

  Args:
    reward: [T] rewards r_1..r_T (0 after the episode's end).
    end: [T] bool, the episode ends at this step (discount 0 from there).
    value: [T] values V(s_0)..V(s_{T-1}); the value after the last step is
      not needed because the episode always ends by step T.
    gamma, gae_lambda: discount and GAE lambda.

  Returns:
    [T] advantages.
  """
  chex.assert_rank([reward, end, value], 1)
  discount_t = gamma * (1.0 - end.astype(jnp.float32))
  values = jnp.concatenate([value, jnp.zeros((1,), value.dtype)])
  return rlax.truncated_generalized_advantage_estimation(
      reward, discount_t, gae_lambda, values)


def ppo_loss(mean: jax.Array, log_std: jax.Array, value: jax.Array,
             batch: PPOBatch, clip_epsilon: float,
             entropy_coef: float) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """PPO loss on a batch of transitions (Schulman et al. 2017, eq. 7).

  ``clipped surrogate (rlax) + 0.5 * masked MSE(value, target)
  - entropy_coef * entropy``. Transitions with ``valid == 0`` contribute
  nothing; the surrogate is rescaled from rlax's mean over all entries to a
  mean over valid ones.

  Args:
    mean, log_std: policy outputs, [..., A].
    value: critic output, [...].
    batch: the ``PPOBatch`` with matching leading shape [...].
    clip_epsilon, entropy_coef: see ``PPOConfig``.

  Returns:
    (loss, aux metrics).
  """
  dist = gaussian_ac.gaussian(mean, log_std)
  log_prob = dist.log_prob(batch.action)
  mask = batch.valid.astype(jnp.float32).reshape(-1)
  ratio = jnp.exp(log_prob - batch.log_prob).reshape(-1)
  adv = batch.advantage.reshape(-1) * mask
  pg_loss = rlax.clipped_surrogate_pg_loss(ratio, adv, clip_epsilon)
  pg_loss = pg_loss * mask.size / jnp.maximum(mask.sum(), 1.0)
  value_loss = 0.5 * _common.masked_mean(
      (value.reshape(-1) - batch.value_target.reshape(-1))**2, mask)
  entropy = _common.masked_mean(dist.entropy().reshape(-1), mask)
  loss = pg_loss + value_loss - entropy_coef * entropy
  clipped = jnp.abs(ratio - 1.0) > clip_epsilon
  aux = dict(pg_loss=pg_loss, value_loss=value_loss, entropy=entropy,
             approx_kl=_common.masked_mean(
                 (ratio - 1.0) - jnp.log(ratio), mask),
             clip_fraction=_common.masked_mean(clipped, mask))
  return loss, aux


def make_ppo(config: PPOConfig, env, env_params,
             mesh: Optional[jax.sharding.Mesh] = None) -> PPO:
  """Builds the PPO agent for ``env`` (continuous actions).

  Args:
    config: a ``PPOConfig``.
    env: an environment with ``observation_size``, ``action_shape``,
      ``action_low``, ``action_high`` and pure ``reset``/``step``.
    env_params: its parameters; ``env_params.num_decisions`` is T.
    mesh: shard the population over this device mesh (``_common``); the
      trajectories are gathered before the update. None: one device.

  Returns:
    A ``PPO`` of pure functions; ``update_iteration`` is jitted as a whole
    under ``strategy='scan'`` and is a Python function over jitted pieces
    under ``strategy='loop'``.
  """
  horizon = _common.num_decisions(env_params)
  n = config.num_envs
  ac = gaussian_ac.make_gaussian_actor_critic(
      env, actor=config.actor, hidden_size=config.hidden_size,
      action_std=config.action_std, learn_log_std=config.learn_log_std,
      actor_lr=config.actor_lr, critic_lr=config.critic_lr,
      max_grad_norm=config.max_grad_norm)
  actor, critic, optimizer = ac.actor, ac.critic, ac.optimizer
  initial_carry = ac.initial_carry
  action_dim = int(np.prod(ac.action_shape))

  def rollout_body(carry, time):
    params, env_state, obs, done, actor_carry, rng = carry
    rng, k_act, k_step = jax.random.split(rng, 3)
    value = critic.apply(params["critic"], obs)
    sample = ac.sample(params, obs, actor_carry, k_act)
    ps = _common.population_step(env, env_params, k_step, env_state,
                                 sample.applied, done, time, horizon, mesh)
    out = Trajectory(obs=obs, action=sample.action, log_prob=sample.log_prob,
                     value=value, reward=ps.reward, end=ps.end,
                     valid=ps.valid)
    carry = (params, ps.env_state, ps.next_obs, ps.done, sample.carry, rng)
    return carry, (out, jnp.where(ps.valid[:, None],
                                  sample.applied.reshape(n, -1), 0.0))

  def actor_sequence(actor_params, obs_seq):
    """Runs the actor over [T, B, obs] from the initial carry."""
    def step(c, obs):
      mean, log_std, c = actor.apply(actor_params, obs, c)
      return c, (mean, log_std)
    _, (mean, log_std) = jax.lax.scan(
        step, initial_carry((obs_seq.shape[1],)), obs_seq)
    return mean, log_std

  def loss_fn(params, batch: PPOBatch):
    mean, log_std = actor_sequence(params["actor"], batch.obs)
    value = critic.apply(params["critic"], batch.obs)
    if config.normalize_advantages:
      mu = _common.masked_mean(batch.advantage, batch.valid)
      sd = jnp.sqrt(_common.masked_mean((batch.advantage - mu)**2,
                                        batch.valid))
      batch = batch._replace(advantage=(batch.advantage - mu) / (sd + 1e-8))
    return ppo_loss(mean, log_std, value, batch, config.clip_epsilon,
                    config.entropy_coef)

  def learn(state: PPOState, traj: Trajectory, applied, key):
    if tuple(traj.reward.shape[:2]) != (horizon, n):
      raise ValueError(f"trajectories of shape {traj.reward.shape[:2]} "
                       f"[T, N]; allowed: [{horizon}, {n}] (env_params."
                       "num_decisions, config.num_envs).")
    traj, applied = distributed.replicate((traj, applied), mesh)
    advantage = jax.vmap(gae_advantages, in_axes=(1, 1, 1, None, None),
                         out_axes=1)(traj.reward, traj.end, traj.value,
                                     config.gamma, config.gae_lambda)
    data = PPOBatch(obs=traj.obs, action=traj.action, log_prob=traj.log_prob,
                    advantage=advantage, value_target=advantage + traj.value,
                    valid=traj.valid)

    def minibatch_update(carry, idx):
      params, opt_state = carry
      batch = jax.tree.map(lambda x: x[:, idx], data)
      grads, aux = jax.grad(loss_fn, has_aux=True)(params, batch)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), aux

    def epoch(carry, k):
      idx = jax.random.permutation(k, n).reshape(config.num_minibatches, -1)
      return jax.lax.scan(minibatch_update, carry, idx)

    (params, opt_state), aux = jax.lax.scan(
        epoch, (state.params, state.opt_state),
        jax.random.split(key, config.num_epochs))
    metrics = jax.tree.map(jnp.mean, aux)
    valid = traj.valid.astype(jnp.float32)
    metrics.update(
        episode_return=jnp.mean(jnp.sum(traj.reward, axis=0)),
        episode_length=jnp.mean(jnp.sum(valid, axis=0)),
        terminated_fraction=jnp.mean(jnp.sum(valid, axis=0) < horizon),
        mean_action=jnp.sum(applied) / jnp.maximum(
            jnp.sum(valid) * action_dim, 1.0))
    state = PPOState(params=params, opt_state=opt_state, rng=state.rng,
                     iteration=state.iteration + 1)
    return state, metrics

  def reset(key):
    return _common.population_reset(env, env_params, key, n, mesh)

  def rollout(params, k_reset, k_roll, run, reset_fn):
    """``num_envs`` exploratory episodes: ``(Trajectory, applied)``."""
    obs, env_state = reset_fn(k_reset)
    _, (traj, applied) = run((params, env_state, obs, jnp.zeros((n,), bool),
                              initial_carry((n,)), k_roll))
    return traj, applied

  def iteration(state: PPOState, run, reset_fn, learn_fn):
    rng, k_reset, k_roll, k_learn = jax.random.split(state.rng, 4)
    traj, applied = rollout(state.params, k_reset, k_roll, run, reset_fn)
    return learn_fn(state.replace(rng=rng), traj, applied, k_learn)

  def run_scan(carry):
    return jax.lax.scan(rollout_body, carry, jnp.arange(horizon))

  if config.strategy == "scan":
    collect = jax.jit(lambda params, key: rollout(
        params, *jax.random.split(key), run_scan, reset))
  else:
    jitted_body, jitted_reset = jax.jit(rollout_body), jax.jit(reset)

    def run_loop(carry):
      return runner.repeat(rollout_body, carry, horizon, config.strategy,
                           jitted_body=jitted_body)
    collect = lambda params, key: rollout(
        params, *jax.random.split(key), run_loop, jitted_reset)
  return PPO(init=ac.init,
             update_iteration=_common.make_update_iteration(
                 iteration, config.strategy, rollout_body, horizon, reset,
                 learn),
             policy_fn=ac.policy_fn, initial_carry=initial_carry,
             config=config, actor=actor, critic=critic, collect=collect,
             learn=jax.jit(learn))


def make_train(config: PPOConfig, env, env_params, num_iterations: int,
               mesh: Optional[jax.sharding.Mesh] = None):
  """purejaxrl-style ``train(rng) -> (state, metrics)``: one jittable function.

  All ``num_iterations`` iterations run in one ``lax.scan``
  (``_common.make_train``); needs ``strategy='scan'``. Metrics are stacked
  over iterations. ``mesh``: as in ``make_ppo``.
  """
  return _common.make_train(make_ppo(config, env, env_params, mesh),
                            num_iterations)


# Continuous action types a PPO-trained Gaussian controller can act with.
CONTROLLER_ACTIONS = ("xu2019", "daniel2016", "xu2017")


def export_controller(agent_config, env, agent_params, common: dict):
  """The deployable controller of a PPO learner: its Gaussian actor.

  Args:
    agent_config: the ``ppo`` sub-config (mapping; ``actor``,
      ``hidden_size``, ``action_std``, ``learn_log_std``).
    env: the ``LREnv`` it trained on (the layers its observation read).
    agent_params: the learner's ``state.params`` (``{'actor', 'critic'}``).
    common: the ``ControllerSpec`` fields every agent's controller shares
      (``lr_meta.rundir.controller_from_training``).

  Raises:
    ValueError: an action type a Gaussian actor does not act with.
  """
  if common["action_type"] not in CONTROLLER_ACTIONS:
    raise ValueError(f"action_type {common['action_type']!r} with PPO; "
                     f"controllers can be exported for {CONTROLLER_ACTIONS}.")
  network = {"mlp": "gaussian_mlp",
             "lstm": "gaussian_lstm"}[agent_config["actor"]]
  # Only an observation with kernel moments names the layers it read.
  layers = (dict(first_dense=tuple(env.first_dense),
                 last_dense=tuple(env.last_dense))
            if env.uses_dynamics else {})
  spec = controller_lib.ControllerSpec(
      network=network, hidden_sizes=(int(agent_config["hidden_size"]),),
      action_std=float(agent_config["action_std"]),
      learn_log_std=bool(agent_config["learn_log_std"]), **layers, **common)
  return controller_lib.make_controller(
      spec, jax.device_get(agent_params["actor"]))
