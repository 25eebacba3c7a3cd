"""Flax networks of the controllers (what acts; training code lives in agents).

* ``MLP``: the torso (hidden layers + linear head).
* ``GaussianActor``: MLP(32) mean of a diagonal Gaussian policy, fixed or
  learned log-std (Xu, Dai, Kemp, Metz 2019: actor MLP with one hidden layer of
  32 units, sigma 0.1).
* ``LSTMActor``: the same policy with an LSTM(32) torso (Xu et al. 2019's
  recurrent option); the recurrent carry is an explicit input and output.
* ``Critic``: MLP(32) state value.
* ``QNetwork``: MLP Q-values for a discrete action set (Fu 2016 / Mnih 2015).

Every actor has the same call signature ``(obs, carry) -> (mean, log_std,
carry)`` so that agents treat feed-forward and recurrent actors alike; the
feed-forward carry is the empty tuple ``()``.
"""

from typing import Any, Callable, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ACTOR_KINDS", "MLP", "Critic", "GaussianActor", "initial_carry",
    "LSTMActor", "make_actor", "QNetwork",
]

ACTOR_KINDS = ("mlp", "lstm")


def _dense(features: int, scale: float) -> nn.Dense:
  return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale),
                  bias_init=nn.initializers.zeros)


class MLP(nn.Module):
  """Hidden layers with ``activation`` then a linear head of ``output_size``.

  Orthogonal initialisation (sqrt(2) hidden gain) as in the PPO reference
  implementations; ``output_scale`` sets the head's gain (0.01 for policy
  means so that the initial policy is centred on 0).
  """
  hidden_sizes: Sequence[int]
  output_size: int
  activation: Callable[[jax.Array], jax.Array] = nn.tanh
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for size in self.hidden_sizes:
      x = self.activation(_dense(size, np.sqrt(2.0))(x))
    return _dense(self.output_size, self.output_scale)(x)


class _LogStd(nn.Module):
  """Log standard deviation: a learned vector or a constant."""
  action_dim: int
  init_log_std: float
  learn_log_std: bool

  @nn.compact
  def __call__(self, mean: jax.Array) -> jax.Array:
    if self.learn_log_std:
      log_std = self.param("log_std",
                           nn.initializers.constant(self.init_log_std),
                           (self.action_dim,))
    else:
      log_std = jnp.full((self.action_dim,), self.init_log_std)
    return jnp.broadcast_to(log_std, mean.shape)


class GaussianActor(nn.Module):
  """Diagonal Gaussian policy with an MLP mean (Xu et al. 2019: MLP(32)).

  Call: ``(obs, carry) -> (mean, log_std, carry)``; ``carry`` is ``()``.
  """
  action_dim: int
  hidden_sizes: Sequence[int] = (32,)
  init_log_std: float = float(np.log(0.1))
  learn_log_std: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array, carry: Any = ()):
    mean = MLP(self.hidden_sizes, self.action_dim, output_scale=0.01)(obs)
    log_std = _LogStd(self.action_dim, self.init_log_std,
                      self.learn_log_std)(mean)
    return mean, log_std, carry


class LSTMActor(nn.Module):
  """Diagonal Gaussian policy with an LSTM torso (Xu et al. 2019: LSTM(32)).

  Call: ``(obs, carry) -> (mean, log_std, carry)`` for ONE time step; obs may
  carry leading batch dimensions matching the carry's. ``carry`` is the LSTM
  ``(c, h)`` pair, from ``initial_carry``.
  """
  action_dim: int
  hidden_size: int = 32
  init_log_std: float = float(np.log(0.1))
  learn_log_std: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array, carry: Tuple[jax.Array, jax.Array]):
    carry, h = nn.OptimizedLSTMCell(self.hidden_size)(carry, obs)
    mean = _dense(self.action_dim, 0.01)(h)
    log_std = _LogStd(self.action_dim, self.init_log_std,
                      self.learn_log_std)(mean)
    return mean, log_std, carry

  def initial_carry(self, batch_shape: Tuple[int, ...] = ()):
    zeros = jnp.zeros(tuple(batch_shape) + (self.hidden_size,), jnp.float32)
    return (zeros, zeros)


class Critic(nn.Module):
  """State value ``V(s)`` from an MLP (Xu et al. 2019: MLP(32))."""
  hidden_sizes: Sequence[int] = (32,)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(self.hidden_sizes, 1)(obs)[..., 0]


class QNetwork(nn.Module):
  """Q-values ``Q(s, .)`` for ``num_actions`` discrete actions (ReLU MLP)."""
  num_actions: int
  hidden_sizes: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(self.hidden_sizes, self.num_actions, activation=nn.relu)(obs)


def make_actor(kind: str, action_dim: int, hidden_size: int,
               init_log_std: float, learn_log_std: bool) -> nn.Module:
  """The actor named by ``kind`` in ``ACTOR_KINDS``."""
  if kind == "mlp":
    return GaussianActor(action_dim, (hidden_size,), init_log_std,
                         learn_log_std)
  if kind == "lstm":
    return LSTMActor(action_dim, hidden_size, init_log_std, learn_log_std)
  raise ValueError(f"actor kind {kind!r} not in {ACTOR_KINDS}.")


def initial_carry(actor: nn.Module, batch_shape: Tuple[int, ...] = ()):
  """The actor's initial recurrent carry (``()`` for feed-forward actors)."""
  if isinstance(actor, LSTMActor):
    return actor.initial_carry(batch_shape)
  return ()
