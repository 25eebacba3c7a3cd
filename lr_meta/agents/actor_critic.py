"""Online actor-critic learning-rate control (Xu, Qin, Wang, Liu 2017).

Xu et al. 2017 train an *actor* network that maps the training state to the
learning rate of the next step and a *critic* network that judges that
decision, both online while the optimizee trains. Here the action is
continuous (e.g. a log learning rate, as in ``QuadraticLREnv``) with Gaussian
exploration around the actor's mean; the critic is a state value trained by
TD(0) (``rlax.td_learning``), and the actor follows the policy gradient with
the TD error as the advantage (one-step actor-critic, Sutton & Barto 2018,
section 13.5):

  delta_t = r_t + gamma * (1 - end_t) * V(s_t) - V(s_{t-1})
  critic loss = 0.5 * delta_t**2,  actor loss = -log pi(a_{t-1}|s_{t-1}) * sg(delta_t)

Both are averaged over the population's valid transitions and applied with
Adam after EVERY decision. One *iteration* is one episode of T decisions for
a population of N runs; the decision body (act + ``env.step`` + update) is a
single jitted function strung together by ``lr_meta.runner.repeat``. The
actor, critic, optimizer, state and sampling are the Gaussian actor-critic of
``lr_meta.agents.gaussian_ac``, shared with PPO.
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
from lr_meta.agents import _common
from lr_meta.agents import gaussian_ac


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
  """Actor-critic settings.

  Attributes:
    num_envs: population size N, >= 1.
    gamma: discount, in [0, 1].
    actor_lr, critic_lr: Adam learning rates, > 0.
    max_grad_norm: global-norm clip per network, > 0.
    hidden_size: hidden units of actor and critic MLPs.
    action_std: exploration standard deviation (in action units, e.g.
      decades of learning rate), > 0.
    learn_log_std: learn the log-std.
    strategy: 'scan' or 'loop'.
  """
  num_envs: int = 8
  gamma: float = 0.9
  actor_lr: float = 1e-3
  critic_lr: float = 5e-3
  max_grad_norm: float = 5.0
  hidden_size: int = 32
  action_std: float = 0.3
  learn_log_std: bool = False
  strategy: str = "scan"

  def __post_init__(self):
    _common.check_positive_int("num_envs", self.num_envs)
    _common.check_in_range("gamma", self.gamma, 0.0, 1.0)
    for name in ("actor_lr", "critic_lr", "max_grad_norm", "action_std"):
      _common.check_in_range(name, getattr(self, name), 0.0, np.inf,
                             low_inclusive=False, high_inclusive=False)
    _common.check_positive_int("hidden_size", self.hidden_size)
    _common.check_choice("strategy", self.strategy, _common.STRATEGIES)


# The learner state of every Gaussian actor-critic agent.
ActorCriticState = gaussian_ac.LearnerState


class ActorCritic(NamedTuple):
  """The agent's functions; ``policy_fn(params, obs, carry)`` is the clipped
  mean (carry ``()``, from ``initial_carry``)."""
  init: Callable[[chex.PRNGKey], ActorCriticState]
  update_iteration: Callable[[ActorCriticState],
                             Tuple[ActorCriticState, Dict[str, Any]]]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  initial_carry: Callable[..., Any]
  config: ActorCriticConfig
  actor: nn.Module
  critic: nn.Module


def actor_critic_loss(mean: jax.Array, log_std: jax.Array, a_tm1: jax.Array,
                      v_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                      v_t: jax.Array, valid: jax.Array
                      ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """One-step actor-critic loss over a batch of transitions.

  Args:
    mean, log_std: [B, A] policy at s_{t-1}.
    a_tm1: [B, A] the (unclipped) sampled actions.
    v_tm1, v_t: [B] critic values at s_{t-1} and s_t.
    r_t: [B] rewards; discount_t: [B] gamma * (1 - end).
    valid: [B] transition mask.

  Returns:
    (actor_loss + critic_loss, aux) where the TD error (rlax.td_learning,
    target gradients stopped) trains the critic and, stopped, is the actor's
    advantage.
  """
  chex.assert_rank([v_tm1, r_t, discount_t, v_t, valid], 1)
  td = jax.vmap(rlax.td_learning)(v_tm1, r_t, discount_t, v_t)
  critic_loss = 0.5 * _common.masked_mean(td**2, valid)
  log_prob = gaussian_ac.gaussian(mean, log_std).log_prob(a_tm1)
  actor_loss = -_common.masked_mean(log_prob * jax.lax.stop_gradient(td),
                                    valid)
  return actor_loss + critic_loss, dict(actor_loss=actor_loss,
                                        critic_loss=critic_loss,
                                        td_error=_common.masked_mean(td,
                                                                     valid))


def make_actor_critic(config: ActorCriticConfig, env, env_params,
                      mesh: Optional[jax.sharding.Mesh] = None
                      ) -> ActorCritic:
  """Builds the online actor-critic for a continuous-action ``env``.

  ``mesh``: shard the population over this device mesh (``_common``); each
  decision's transitions are gathered before the update.
  """
  horizon = _common.num_decisions(env_params)
  n = config.num_envs
  ac = gaussian_ac.make_gaussian_actor_critic(
      env, actor="mlp", hidden_size=config.hidden_size,
      action_std=config.action_std, learn_log_std=config.learn_log_std,
      actor_lr=config.actor_lr, critic_lr=config.critic_lr,
      max_grad_norm=config.max_grad_norm)
  actor, critic, optimizer = ac.actor, ac.critic, ac.optimizer

  def loss_fn(params, obs, action, reward, end, next_obs, valid):
    mean, log_std, _ = actor.apply(params["actor"], obs)
    v_tm1 = critic.apply(params["critic"], obs)
    v_t = critic.apply(params["critic"], next_obs)
    discount = config.gamma * (1.0 - end.astype(jnp.float32))
    return actor_critic_loss(mean, log_std, action, v_tm1, reward, discount,
                             v_t, valid)

  def decision_body(carry, time):
    params, opt_state, env_state, obs, done, rng = carry
    rng, k_act, k_step = jax.random.split(rng, 3)
    sample = ac.sample(params, obs, (), k_act)
    ps = _common.population_step(env, env_params, k_step, env_state,
                                 sample.applied, done, time, horizon, mesh)
    grads, aux = jax.grad(loss_fn, has_aux=True)(
        params, *distributed.replicate(
            (obs, sample.action, ps.reward, ps.end, ps.next_obs, ps.valid),
            mesh))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    aux.update(reward=ps.reward,
               action=_common.masked_mean(
                   sample.applied.reshape(n, -1).mean(-1), ps.valid))
    return (params, opt_state, ps.env_state, ps.next_obs, ps.done, rng), aux

  def reset(state: ActorCriticState):
    rng, k_reset, k_roll = jax.random.split(state.rng, 3)
    obs, env_state = _common.population_reset(env, env_params, k_reset, n,
                                              mesh)
    return rng, (state.params, state.opt_state, env_state, obs,
                 jnp.zeros((n,), bool), k_roll)

  def iteration(state, run, reset_fn):
    rng, carry = reset_fn(state)
    (params, opt_state, *_), aux = run(carry)
    metrics = dict(episode_return=jnp.mean(jnp.sum(aux.pop("reward"), 0)),
                   mean_action=jnp.mean(aux.pop("action")))
    metrics.update({k: jnp.mean(v) for k, v in aux.items()})
    return ActorCriticState(params=params, opt_state=opt_state, rng=rng,
                            iteration=state.iteration + 1), metrics

  return ActorCritic(init=ac.init,
                     update_iteration=_common.make_update_iteration(
                         iteration, config.strategy, decision_body, horizon,
                         reset),
                     policy_fn=ac.policy_fn, initial_carry=ac.initial_carry,
                     config=config, actor=actor, critic=critic)


def make_train(config: ActorCriticConfig, env, env_params,
               num_iterations: int,
               mesh: Optional[jax.sharding.Mesh] = None):
  """purejaxrl-style ``train(rng) -> (state, metrics)``: one jittable function
  (``_common.make_train``; needs ``strategy='scan'``)."""
  return _common.make_train(make_actor_critic(config, env, env_params, mesh),
                            num_iterations)
