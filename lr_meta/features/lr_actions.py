"""How each controller's action changes the learning rate, and its bounds.

One rule per paper, shared by the training environment
(``lr_meta.envs.LREnv``) and by the controllers that act in user code
(``lr_meta.policies``, ``lr_meta.optax.controlled``), so that the same action
gives the same learning rate in both:

* ``xu2019_lr_update``: Xu, Dai, Kemp & Metz 2019 (official code
  ``adaptive_learning_rate_tuner``): ``lr * ((clip(a, -0.2, 0.5) - 0.15) *
  0.1 + 1)``;
* ``fu2016_lr_update``: Fu 2016: decay by 3% or reset to ``lr0``;
* ``daniel2016_lr_update``: Daniel, Taylor & Nowozin 2016: the step size
  times ``exp(a)``, ``a = theta . [phi_hat, u, 1]``;
* ``xu2017_lr_update``: Xu, Qin, Wang & Liu 2017: ``lr0 * 10 ** a``.

``ACTION_RULES`` holds, per action type, everything that follows from it:
the LR update, the action space, the observations its controllers may see
and the environment's default reward (``action_rule(name)``).
"""

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from lr_meta.features import observation

__all__ = [
    "ACTION_RULES", "ACTION_TYPES", "ActionRule", "DANIEL_ACTION_BOUND",
    "FU_DECAY", "LR_MAX", "LR_MIN", "XU2017_LOG10_LR_HIGH",
    "XU2017_LOG10_LR_LOW", "XU_ACTION_HIGH", "XU_ACTION_LOW", "action_rule",
    "applied_action", "daniel2016_lr_update", "fu2016_lr_update", "next_lr",
    "xu2017_lr_update", "xu2019_lr_update",
]

DANIEL_ACTION_BOUND = 0.5           # |log step-size factor| per decision
XU2017_LOG10_LR_LOW = -4.0         # relative to lr0 (decades)
XU2017_LOG10_LR_HIGH = 2.0
LR_MIN = 1e-7                       # the daniel2016 step size stays in here
LR_MAX = 10.0
XU_ACTION_LOW = -0.2
XU_ACTION_HIGH = 0.5
FU_DECAY = 0.97


def xu2019_lr_update(lr: chex.Numeric, action: chex.Numeric) -> jax.Array:
  """``lr * ((clip(a, -0.2, 0.5) - 0.15) * 0.1 + 1)`` (Xu et al. 2019 code)."""
  a = jnp.clip(action, XU_ACTION_LOW, XU_ACTION_HIGH)
  return lr * ((a - 0.15) * 0.1 + 1.0)


def fu2016_lr_update(lr, lr0, action) -> jax.Array:
  """Action 0: ``lr * 0.97``; action 1: reset to ``lr0`` (Fu 2016)."""
  return jnp.where(jnp.asarray(action) == 1, lr0, lr * FU_DECAY)


def daniel2016_lr_update(lr: chex.Numeric, action: chex.Numeric) -> jax.Array:
  """``clip(lr * exp(clip(a, -0.5, 0.5)), LR_MIN, LR_MAX)`` (Daniel 2016).

  ``a = theta . [phi_hat, u, 1]`` is the log of the controller output
  ``g = exp(theta . [phi_hat, u, 1])``, which multiplies the step size.
  """
  a = jnp.clip(action, -DANIEL_ACTION_BOUND, DANIEL_ACTION_BOUND)
  return jnp.clip(lr * jnp.exp(a), LR_MIN, LR_MAX)


def xu2017_lr_update(lr0: chex.Numeric, action: chex.Numeric) -> jax.Array:
  """``lr0 * 10 ** clip(a, XU2017_LOG10_LR_LOW, XU2017_LOG10_LR_HIGH)``."""
  a = jnp.clip(action, XU2017_LOG10_LR_LOW, XU2017_LOG10_LR_HIGH)
  return lr0 * jnp.power(10.0, a)


class ActionRule(NamedTuple):
  """What one action type means for the learning rate and its controller.

  Attributes:
    update: ``(lr, lr0, action) -> lr``, the LR after the action.
    low, high: bounds of a continuous action (shape ``(1,)``); None for a
      discrete one.
    num_actions: number of discrete actions; 0 for a continuous action.
    observations: the observation kinds (``lr_meta.features.observation``)
      its controllers may see; the first is the default.
    default_reward: the environment's reward unless one is chosen.
    only_default_reward: whether the default is the only reward allowed.
  """
  update: Callable[[chex.Numeric, chex.Numeric, chex.Numeric], jax.Array]
  low: Optional[float]
  high: Optional[float]
  num_actions: int
  observations: tuple[str, ...]
  default_reward: str
  only_default_reward: bool = False


ACTION_RULES = {
    "xu2019": ActionRule(
        update=lambda lr, lr0, a: xu2019_lr_update(lr, a),
        low=XU_ACTION_LOW, high=XU_ACTION_HIGH, num_actions=0,
        observations=(observation.DYNAMICS,
                      observation.PROGRESS_OBSERVATION,
                      observation.SCALE_FREE),
        default_reward="val_loss_change"),
    "fu2016": ActionRule(
        update=fu2016_lr_update, low=None, high=None, num_actions=2,
        observations=(observation.WEIGHT_STATS,),
        default_reward="log_train_loss_change", only_default_reward=True),
    "daniel2016": ActionRule(
        update=lambda lr, lr0, a: daniel2016_lr_update(lr, a),
        low=-DANIEL_ACTION_BOUND, high=DANIEL_ACTION_BOUND, num_actions=0,
        observations=(observation.PER_EXAMPLE, observation.SCALE_FREE),
        default_reward="mean_log_train_loss_change"),
    "xu2017": ActionRule(
        update=lambda lr, lr0, a: xu2017_lr_update(lr0, a),
        low=XU2017_LOG10_LR_LOW, high=XU2017_LOG10_LR_HIGH, num_actions=0,
        observations=(observation.DYNAMICS, observation.PER_EXAMPLE,
                      observation.DYNAMICS_PER_EXAMPLE,
                      observation.SCALE_FREE),
        default_reward="val_loss_change"),
}
ACTION_TYPES = tuple(ACTION_RULES)


def action_rule(action_type: str) -> ActionRule:
  """The ``ActionRule`` of ``action_type``; ValueError listing the known ones."""
  if action_type not in ACTION_RULES:
    raise ValueError(f"action_type={action_type!r}; allowed: "
                     f"{ACTION_TYPES}.")
  return ACTION_RULES[action_type]


def applied_action(action_type: str, action: chex.Array) -> jax.Array:
  """The action as the LR rule reads it: a scalar, clipped to the bounds of
  a continuous action type (every rule clips again inside: idempotent)."""
  rule = action_rule(action_type)
  action = jnp.reshape(jnp.asarray(action), ())
  return action if rule.num_actions else jnp.clip(action, rule.low,
                                                  rule.high)


def next_lr(action_type: str, lr: chex.Numeric, lr0: chex.Numeric,
            action: chex.Array) -> jax.Array:
  """The float32 LR after ``action`` (the action type's ``update``)."""
  lr = action_rule(action_type).update(lr, lr0,
                                       applied_action(action_type, action))
  return jnp.asarray(lr).astype(jnp.float32)
