"""The Gaussian actor-critic shared by PPO and the online actor-critic.

Xu, Dai, Kemp & Metz 2019 (PPO, ``lr_meta.agents.ppo``) and Xu, Qin, Wang &
Liu 2017 (one-step actor-critic, ``lr_meta.agents.actor_critic``) both train
a diagonal Gaussian actor (``lr_meta.policies.networks``: MLP or LSTM mean,
fixed or learned log-std) and an MLP state-value critic, each with Adam
behind a global-norm gradient clip (Xu 2019: actor LR 1e-3, critic LR 5e-3,
clip 5.0). Exploration samples the Gaussian; the environment receives the
sample clipped to its action bounds; the deterministic policy is the clipped
mean. This module holds those pieces once; the agents add their losses and
their iteration loops.
"""

from typing import Any, Callable, Dict, NamedTuple, Tuple

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lr_meta.agents import _common
from lr_meta.policies import networks


@struct.dataclass
class LearnerState:
  """The whole learner state; checkpoint it between iterations to resume."""
  params: Dict[str, Any]      # {'actor': ..., 'critic': ...}
  opt_state: optax.OptState
  rng: chex.PRNGKey
  iteration: jax.Array


class Sample(NamedTuple):
  """One exploratory action of a batch of observations."""
  action: jax.Array     # the unclipped Gaussian sample [..., A]
  log_prob: jax.Array   # log pi(action | obs) [...]
  applied: jax.Array    # clipped to the bounds, env action shape [..., *S]
  carry: Any            # the actor's next carry


class GaussianActorCritic(NamedTuple):
  """The networks and pure functions of a Gaussian actor-critic.

  Attributes:
    actor, critic: the Flax modules.
    optimizer: ``make_optimizer`` of the agent's settings.
    init: ``key -> LearnerState`` (actor, critic and ``rng`` from one split).
    initial_carry: ``batch_shape -> carry`` of the actor (``()`` for MLPs).
    policy_fn: ``(params, obs, carry) -> (clipped mean, carry)``.
    sample: ``(params, obs, carry, key) -> Sample``.
    action_shape: the environment's action shape.
  """
  actor: nn.Module
  critic: nn.Module
  optimizer: optax.GradientTransformation
  init: Callable[[chex.PRNGKey], LearnerState]
  initial_carry: Callable[..., Any]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  sample: Callable[..., Sample]
  action_shape: Tuple[int, ...]


def gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
  """The diagonal Gaussian policy (the last axis is the action event)."""
  return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


def make_optimizer(actor_lr: float, critic_lr: float,
                   max_grad_norm: float) -> optax.GradientTransformation:
  """Adam per network with its own LR, each clipped to ``max_grad_norm``.

  Params are ``{'actor': ..., 'critic': ...}``; the clip is per network
  (the global norm of the actor's gradient alone, then the critic's).
  """
  def adam(lr):
    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.adam(lr))
  return optax.multi_transform({"actor": adam(actor_lr),
                                "critic": adam(critic_lr)},
                               {"actor": "actor", "critic": "critic"})


def make_gaussian_actor_critic(env, *, actor: str, hidden_size: int,
                               action_std: float, learn_log_std: bool,
                               actor_lr: float, critic_lr: float,
                               max_grad_norm: float) -> GaussianActorCritic:
  """The Gaussian actor-critic for a continuous-action ``env``.

  Args:
    env: an environment with ``observation_size`` and ``action_shape``,
      ``action_low``, ``action_high``.
    actor: 'mlp' or 'lstm' (``networks.ACTOR_KINDS``).
    hidden_size: hidden units of the actor and of the critic's MLP.
    action_std: the initial (or fixed) policy standard deviation.
    learn_log_std: learn a state-independent log-std vector.
    actor_lr, critic_lr, max_grad_norm: see ``make_optimizer``.
  """
  action_shape, low, high = _common.action_bounds(env)
  action_dim = int(np.prod(action_shape))
  actor_net = networks.make_actor(actor, action_dim, hidden_size,
                                  float(np.log(action_std)), learn_log_std)
  critic_net = networks.Critic((hidden_size,))
  optimizer = make_optimizer(actor_lr, critic_lr, max_grad_norm)

  def initial_carry(batch_shape: Tuple[int, ...] = ()):
    return networks.initial_carry(actor_net, batch_shape)

  def init(key: chex.PRNGKey) -> LearnerState:
    k_actor, k_critic, k_rng = jax.random.split(key, 3)
    obs = jnp.zeros((env.observation_size,), jnp.float32)
    params = {"actor": actor_net.init(k_actor, obs, initial_carry()),
              "critic": critic_net.init(k_critic, obs)}
    return LearnerState(params=params, opt_state=optimizer.init(params),
                        rng=k_rng, iteration=jnp.int32(0))

  def to_env(action):
    """Reshaped to the env's action shape and clipped to its bounds."""
    action = action.reshape(action.shape[:-1] + action_shape)
    return jnp.clip(action, low, high)

  def policy_fn(params, obs, carry=()):
    """Deterministic action (the clipped mean): ``(action, new_carry)``."""
    mean, _, carry = actor_net.apply(params["actor"], obs, carry)
    return to_env(mean), carry

  def sample(params, obs, carry, key) -> Sample:
    mean, log_std, carry = actor_net.apply(params["actor"], obs, carry)
    dist = gaussian(mean, log_std)
    action = dist.sample(seed=key)
    return Sample(action=action, log_prob=dist.log_prob(action),
                  applied=to_env(action), carry=carry)

  return GaussianActorCritic(actor=actor_net, critic=critic_net,
                             optimizer=optimizer, init=init,
                             initial_carry=initial_carry, policy_fn=policy_fn,
                             sample=sample, action_shape=action_shape)
