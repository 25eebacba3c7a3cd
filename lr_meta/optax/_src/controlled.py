"""A learned LR controller inside any optax loop (Xu, Dai, Kemp, Metz 2019).

``controlled(base, controller)`` wraps an optax optimizer whose learning rate
is injectable (``optax.inject_hyperparams``) and, every ``every`` calls, sets
that learning rate from the controller, as ``lr_meta.envs.LREnv`` does during
training (Xu et al. 2019, section 2.2: a decision every 10 inner steps).

Call ``update(grads, state, params, loss=..., val_loss=..., predictions=...)``
at every step, like ``optax.contrib.reduce_on_plateau``'s ``value=``:

* ``loss``: the training loss of this step's batch at ``params`` (required);
* ``predictions``: softmax probabilities ``(B, classes)`` of a FIXED probe
  batch at ``params`` ('xu2019' controllers; the shape is fixed at
  construction by ``predictions_shape``). The controllers were trained on the
  first ``spec.num_val_examples`` validation examples; the same examples each
  time is what makes "prediction change" meaningful;
* ``val_loss``: the loss on that probe batch (optional; if missing the
  observation uses the train loss in its place).

``predictions`` and ``val_loss`` are only read at decision steps; compute
them under ``jax.lax.cond(decision_due(state), ...)`` to pay for the probe
only every ``every`` steps.

A decision whose observation (or the LR it gives) is not finite, e.g. from
NaN predictions or a NaN loss, is skipped: the feature EMAs, the
controller's carry, the LR and ``obs`` stay as they were, and
``ControlledState.skipped_decisions`` counts it, so one bad batch cannot
freeze the LR for the rest of the run and the user can see it happened.

Correspondence with the environment (so that the same inputs give the same
LR trajectory): at call ``i = t * every`` (decision t) the observation uses
``params`` (= the environment's parameters after ``t * every`` inner steps),
``predictions``/``val_loss`` at those params, the mean of the ``every``
training losses passed at calls ``i - every .. i - 1`` (decision 0: this
call's loss) and the LR of the previous window; the new LR then applies from
this call on.
"""

from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

from lr_meta.features import dynamics
from lr_meta.features import observation as observation_lib
from lr_meta.features import params as params_lib
from lr_meta.policies import controller as controller_lib

__all__ = ["ControlledState", "controlled", "decision_due"]


class ControlledState(NamedTuple):
  """State of ``controlled``.

  Attributes:
    base_state: the wrapped optimizer's state (its learning rate is set here).
    features: EMA state of the Xu 2019 features (``()`` for 'fu2016').
    carry: the controller's recurrent carry (``()`` if feed-forward).
    lr: learning rate in use (float32).
    lr0: learning rate at ``init`` (the 'fu2016' reset target).
    count: update calls so far (int32).
    losses: ``(every,)`` training losses since the last decision.
    obs: the last observation the controller acted on.
    skipped_decisions: decisions skipped because their observation or the
      LR it gave was not finite (int32; see the module docstring).
  """
  base_state: optax.OptState
  features: Any
  carry: Any
  lr: jax.Array
  lr0: jax.Array
  count: jax.Array
  losses: jax.Array
  obs: jax.Array
  skipped_decisions: jax.Array


_INJECT = ("build it with optax.inject_hyperparams(optax.sgd)(learning_rate="
           "<a number>) (any optax optimizer, possibly inside optax.chain)")


def _get_lr(base_state) -> jax.Array:
  """The one injectable learning rate of ``base_state``, or a clear error."""
  found = otu.tree_get_all_with_path(base_state, "learning_rate")
  # inject_hyperparams keeps a schedule's state under `hyperparams_states`
  # and recomputes the LR from it at every update, which would silently
  # overwrite the controller's LR.
  if any(getattr(k, "name", None) == "hyperparams_states"
         for path, _ in found for k in path):
    raise ValueError(
        "controlled sets the learning rate itself, but the base optimizer's "
        "learning_rate is a schedule (optax.inject_hyperparams would "
        "recompute it from the schedule at every step, overriding the "
        "controller); pass a number, the initial LR lr0: " + _INJECT + ".")
  if not found:
    raise ValueError("controlled needs a base optimizer with an injectable "
                     "learning rate: " + _INJECT + ".")
  if len(found) > 1:
    paths = [jax.tree_util.keystr(path) for path, _ in found]
    raise ValueError(
        f"controlled sets one learning rate, but the base optimizer's state "
        f"holds {len(found)}: {paths}; inject only the LR the controller "
        "should set (other transforms with a fixed learning_rate).")
  return found[0][1]


def _set_lr(base_state, lr):
  old = _get_lr(base_state)
  return otu.tree_set(base_state,
                      learning_rate=jnp.asarray(lr, jnp.asarray(old).dtype))


def decision_due(state: Any) -> jax.Array:
  """True when the next ``update`` of this ``ControlledState`` decides.

  ``state`` may be the ``ControlledState`` or any optimizer state holding
  exactly one (e.g. inside ``optax.chain``).
  """
  found = [s for s in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, ControlledState))
           if isinstance(s, ControlledState)]
  if len(found) != 1:
    raise ValueError(f"state holds {len(found)} ControlledState; expected 1.")
  s = found[0]
  return s.count % s.losses.shape[0] == 0


def controlled(
    base_optimizer: optax.GradientTransformation,
    controller: controller_lib.Controller,
    every: Optional[int] = None,
    *,
    predictions_shape: Optional[tuple[int, ...]] = None,
    first_dense: Optional[params_lib.LayerSpec] = None,
    last_dense: Optional[params_lib.LayerSpec] = None,
    monitored_layer: Optional[params_lib.LayerSpec] = None,
    key: Optional[chex.PRNGKey] = None,
    num_decisions: Optional[int] = None,
) -> optax.GradientTransformationExtraArgs:
  """Sets the LR of ``base_optimizer`` from ``controller`` every ``every`` steps.

  Args:
    base_optimizer: an optax optimizer built with ``optax.inject_hyperparams``
      so that its state holds one ``learning_rate``; its value at ``init`` is
      the initial LR ``lr0``.
    controller: a ``Controller`` (``lr_meta.optax.pretrained_controller``,
      ``load_controller``).
    every: steps between decisions; default the controller's training K
      (``spec.steps_per_decision``, Xu et al.: 10).
    predictions_shape: ``(B, classes)`` of the ``predictions`` passed to
      ``update``; required for 'xu2019' controllers.
    first_dense, last_dense: layers whose kernel mean/var are observed
      ('xu2019'); default: the first / last 2-D kernel of the params given
      to ``init`` in dict iteration order (pass params straight from
      ``model.init``, or name the layers; see ``lr_meta.features.params``).
    monitored_layer: layer of the weight statistics ('fu2016'); default: the
      last conv layer, else the last dense layer (as ``LREnv``).
    key: PRNG key of the initial "previous predictions" noise (U[0, 1), as in
      training); default ``jax.random.PRNGKey(0)``.
    num_decisions: for 'dynamics+progress' controllers, the decisions of
      the whole run (its steps / ``every``): the observed progress is
      ``min(decisions so far / num_decisions, 1)``; default the training
      episodes' ``spec.num_decisions``.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` takes
    ``params`` and the keyword arguments ``loss`` (required), ``val_loss``
    and ``predictions`` (see the module docstring); other extra args are
    passed on to the base optimizer.
  """
  spec = controller.spec.check()
  if every is None:
    every = spec.steps_per_decision
  if not isinstance(every, int) or isinstance(every, bool) or every < 1:
    raise ValueError(f"every={every!r}; allowed: an integer >= 1.")
  xu = spec.action_type == "xu2019"
  if xu and predictions_shape is None:
    raise ValueError(
        f"controller {spec.name!r} observes prediction variances: pass "
        "predictions_shape=(B, classes) of the probe-batch softmax "
        f"predictions (it was trained on {spec.num_val_examples} fixed "
        "validation examples).")
  if num_decisions is None:
    num_decisions = spec.num_decisions
  if spec.uses_progress and (not isinstance(num_decisions, int)
                             or isinstance(num_decisions, bool)
                             or num_decisions < 1):
    raise ValueError(f"num_decisions={num_decisions!r}; allowed: an integer "
                     ">= 1 (the run's decisions, for the progress feature).")
  base = optax.with_extra_args_support(base_optimizer)
  if key is None:
    key = jax.random.PRNGKey(0)

  kind = spec.observation_kind

  def layers(params):
    return observation_lib.resolve_layers(
        params, kind, first_dense=first_dense, last_dense=last_dense,
        monitored_layer=monitored_layer)

  # Resolved at init from the params the user passes (creation order).
  resolved = {}

  def config(params):
    if "layers" not in resolved:
      resolved["layers"] = layers(params)
    return observation_lib.ObservationConfig(
        kind=kind, layers=resolved["layers"], ema_decay=spec.ema_decay,
        log_lr=spec.log_lr_observation, num_decisions=num_decisions)

  def init_fn(params):
    resolved["layers"] = layers(params)
    base_state = base.init(params)
    lr0 = jnp.asarray(_get_lr(base_state), jnp.float32)
    features = (dynamics.dynamics_init(predictions_shape, key) if xu else ())
    return ControlledState(
        base_state=base_state, features=features,
        carry=controller.initial_carry(), lr=lr0, lr0=lr0,
        count=jnp.zeros([], jnp.int32),
        losses=jnp.zeros((every,), jnp.float32),
        obs=jnp.zeros((spec.observation_size,), jnp.float32),
        skipped_decisions=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, *, loss=None, val_loss=None,
                predictions=None, **extra_args):
    if params is None:
      raise ValueError("controlled.update needs params (the controller "
                       "observes the weights).")
    if loss is None:
      raise ValueError("controlled.update needs loss=<this batch's training "
                       "loss> as a keyword argument.")
    if xu:
      if predictions is None:
        raise ValueError(
            f"controller {spec.name!r} needs predictions=<softmax of the "
            f"probe batch>, shape {tuple(predictions_shape)}.")
      chex.assert_shape(predictions, tuple(predictions_shape))
    loss = jnp.asarray(loss, jnp.float32)
    chex.assert_rank(loss, 0)
    if val_loss is not None:
      val_loss = jnp.asarray(val_loss, jnp.float32)
      chex.assert_rank(val_loss, 0)
    slot = state.count % every

    old = (state.features, state.carry, state.lr, state.obs)

    def decide(_):
      train_loss = jnp.where(state.count == 0, loss, jnp.mean(state.losses))
      obs, features = observation_lib.observe(
          config(params), params=params, lr=state.lr, train_loss=train_loss,
          val_loss=val_loss, predictions=predictions,
          dynamics_state=state.features, decisions_taken=state.count // every)
      action, carry = controller.act(controller.params, obs, state.carry)
      lr = controller.next_lr(state.lr, state.lr0, action)
      finite = jnp.all(jnp.isfinite(obs)) & jnp.isfinite(lr)
      new = jax.tree.map(lambda o, n: jnp.where(finite, n, o), old,
                         (features, carry, lr, obs))
      return new, state.skipped_decisions + (~finite).astype(jnp.int32)

    def keep(_):
      return old, state.skipped_decisions

    (features, carry, lr, obs), skipped = jax.lax.cond(slot == 0, decide,
                                                       keep, None)
    # No reset at a decision: slots 0..every-1 are all rewritten before the
    # next decision reads them, and an O(every) clear per step would cost.
    losses = state.losses.at[slot].set(loss)
    base_state = _set_lr(state.base_state, lr)
    updates, base_state = base.update(updates, base_state, params,
                                      **extra_args)
    return updates, ControlledState(
        base_state=base_state, features=features, carry=carry, lr=lr,
        lr0=state.lr0, count=state.count + 1, losses=losses, obs=obs,
        skipped_decisions=skipped)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
