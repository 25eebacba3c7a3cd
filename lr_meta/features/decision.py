"""A controller's decision cycle, one pure core for training and for use.

``lr_meta.envs.LREnv`` (where controllers are trained) and
``lr_meta.optax.controlled`` (where they run inside an optax loop) take
their decisions through these functions, in the same order on the same
numbers, which is what makes ``controlled`` reproduce the environment's LR
trajectory bit for bit:

1. ``initial_features``: the feature state before the first decision (the
   scale-free reference losses, or the Xu 2019 "previous predictions");
2. ``window_train_loss``: the train loss a 'fraction' decision observes, the
   mean over the inner steps since the last one ('every' decisions average
   their K losses directly; at the first decision both take the first
   step's loss);
3. ``observe``: the observation of a decision (``observation.observe``,
   or the official protocol's all-ones first observation);
4. ``act``: the LR after the action (``lr_actions``) and, for the
   scale-free observation, the action recorded for the next observation.

Where the two differ is outside the core and on purpose: the environment
gets its action from the agent being trained and runs the inner steps
itself; ``controlled`` gets it from a fixed ``Controller`` and keeps the
previous decision when an observation or LR is not finite (a user's run is
not an episode that can end).
"""

from typing import Any, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from lr_meta.features import dynamics
from lr_meta.features import lr_actions
from lr_meta.features import observation as observation_lib
from lr_meta.features import observation_spec as observation_spec_lib
from lr_meta.features import scale_free
from lr_meta.features import smoothing
from lr_meta.features import xu_protocol

__all__ = ["act", "initial_features", "observe", "window_train_loss"]

ObservationSpec = observation_spec_lib.ObservationSpec


def initial_features(spec: ObservationSpec, action_type: str, *,
                     train_loss: chex.Numeric, val_loss: chex.Numeric,
                     predictions_shape: Optional[Tuple[int, int]],
                     key: chex.PRNGKey) -> Any:
  """The feature state before the first decision.

  'scale_free': ``scale_free.scale_free_init`` at the first losses (the run's
  reference scale); a dynamics observation: ``dynamics.dynamics_init`` (the
  "previous predictions" drawn U[0, 1) with ``key``, Xu et al. 2019's
  official code); others: ``()``.
  """
  parts = observation_lib.observation_parts(spec.resolved_kind(action_type))
  if parts.scale_free:
    return scale_free.scale_free_init(train_loss, val_loss, spec.inputs)
  if parts.dynamics:
    return dynamics.dynamics_init(predictions_shape, key)
  return ()


def window_train_loss(window: scale_free.Window) -> jax.Array:
  """The mean train loss of the steps in ``window`` (its sum over its
  count; 0 for an empty window)."""
  return window.loss_sum / jnp.maximum(window.count, 1).astype(jnp.float32)


def observe(spec: ObservationSpec, action_type: str,
            layers: observation_lib.ObservedLayers, *, first: Any,
            params: Any, lr: chex.Numeric, lr0: chex.Numeric,
            decisions_taken: chex.Numeric, train_loss: chex.Numeric,
            val_loss: Optional[chex.Numeric], predictions: Optional[chex.Array],
            features: Any, window: scale_free.Window,
            per_example_stats: Optional[smoothing.RunningStats] = None,
            num_decisions: Optional[int] = None) -> Tuple[jax.Array, Any]:
  """``(observation, features)`` of a decision.

  Args:
    spec: what is observed (its kind resolved with ``action_type``).
    action_type: the controller's action type.
    layers: the observed layers (``observation.resolve_layers``).
    first: whether this is the first decision (a Python bool, or a traced
      one inside ``controlled``); with the protocol's
      ``first_observation='ones'`` the first observation is all ones and
      the features stay as they are.
    params, lr, lr0, decisions_taken, train_loss, val_loss, predictions,
      features, window, per_example_stats: ``observation.observe``'s
      inputs (``features`` is its dynamics or scale-free state).
    num_decisions: the run's decisions (the progress feature's T), when it
      is not ``spec.num_decisions``.

  Returns:
    The float32 observation and the new feature state.
  """
  config = spec.config(action_type, layers, num_decisions)

  def measured():
    return observation_lib.observe(
        config, params=params, lr=lr, train_loss=train_loss,
        val_loss=val_loss, predictions=predictions, dynamics_state=features,
        per_example_stats=per_example_stats, decisions_taken=decisions_taken,
        lr0=lr0, scale_free_state=features, window=window)

  if spec.protocol.first_observation != "ones" or first is False:
    return measured()
  size = observation_lib.observation_size(config.kind, spec.inputs)
  ones = lambda: (xu_protocol.ones_observation(size), features)
  if first is True:
    return ones()
  return jax.lax.cond(first, ones, measured)


def act(spec: ObservationSpec, action_type: str, *, lr: chex.Numeric,
        lr0: chex.Numeric, action: chex.Array, features: Any
        ) -> Tuple[jax.Array, Any]:
  """``(lr, features)`` after ``action``: the action type's LR rule
  (``lr_actions``) on the action clipped to its bounds, and, for the
  scale-free observation, that action recorded for the next observation."""
  if observation_lib.observation_parts(
      spec.resolved_kind(action_type)).scale_free:
    features = scale_free.record_action(
        features, lr_actions.applied_action(action_type, action))
  return lr_actions.next_lr(action_type, lr, lr0, action), features
