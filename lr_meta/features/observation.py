"""The controllers' observation, built in one place for training and for use.

``lr_meta.envs.LREnv`` (where controllers are trained) and
``lr_meta.optax.controlled`` (where a trained controller runs inside a
user's optax loop) both call ``observe``, so the same weights, losses and
predictions give the same observation, which is what makes ``controlled``
reproduce the environment's LR trajectory.

Observation kinds (``OBSERVATION_KINDS``), each the concatenation in this
order of the parts it uses:

* ``'dynamics'``: the 9 training-dynamics numbers of Xu, Dai, Kemp & Metz
  2019, section 2.2 (``lr_meta.features.dynamics``), with the LR entry
  (``dynamics.LR_INDEX``) as ``log10(lr)`` when ``log_lr`` (raw LRs span
  1e-4..1e-1 and are invisible to a small MLP);
* ``'dynamics+progress'``: those 9 plus ``progress_feature`` = t / T (not in
  the paper; without it a Markov policy cannot anneal);
* ``'per_example'``: the smoothed per-example numbers of Daniel, Taylor &
  Nowozin 2016, ``[phi1_hat, phi2_hat, u1, u2]`` (``per_example_observation``;
  updated at every inner step by ``per_example_update``);
* ``'dynamics+per_example'``: 9 + 4 (an option of the Xu, Qin, Wang & Liu
  2017 controller);
* ``'weight_stats'``: the 193 weight statistics of Fu 2016, section 4.2, of
  one layer, the last of them the previous LR (``weight_stats_observation``;
  a dense kernel ``(in, out)`` is viewed as a ``(1, 1, in, out)`` conv);
* ``'scale_free'``: the 10 scale-free numbers of
  ``lr_meta.features.scale_free`` (progress, LR and losses relative to the
  run's start, log-slopes, generalisation gap, update-to-weight ratio, loss
  noise, previous action), for controllers trained over a distribution of
  tasks. Needs no probe predictions and reads no layer.

Which layers are observed is resolved once, by ``resolve_layers``, from a
params tree in creation order (see ``lr_meta.features.params``).
"""

from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta.features import dynamics
from lr_meta.features import params as params_lib
from lr_meta.features import per_example as per_example_lib
from lr_meta.features import scale_free as scale_free_lib
from lr_meta.features import smoothing
from lr_meta.features import weight_stats

__all__ = [
    "DECISION_SCHEDULES", "DYNAMICS", "DYNAMICS_PER_EXAMPLE",
    "OBSERVATION_KINDS", "ObservationConfig", "ObservationParts",
    "ObservedLayers", "PER_EXAMPLE", "PER_EXAMPLE_DECAY", "SCALE_FREE",
    "NUM_PER_EXAMPLE_OBSERVATIONS", "PER_EXAMPLE_OBSERVATION_NAMES",
    "check_inputs",
    "PROGRESS_OBSERVATION", "WEIGHT_STATS",
    "decision_step", "dynamics_observation", "observation_names",
    "observation_parts", "observation_size", "observes_progress", "observe",
    "per_example_observation", "per_example_update", "progress_feature",
    "resolve_layers", "weight_stats_observation",
]

DYNAMICS = "dynamics"
PROGRESS_OBSERVATION = "dynamics+progress"
PER_EXAMPLE = "per_example"
DYNAMICS_PER_EXAMPLE = "dynamics+per_example"
WEIGHT_STATS = "weight_stats"
SCALE_FREE = "scale_free"
# [phi1_hat, phi2_hat, u1, u2]: smoothed features and their uncertainties.
NUM_PER_EXAMPLE_OBSERVATIONS = 2 * len(per_example_lib.FEATURE_NAMES)
PER_EXAMPLE_DECAY = 0.9     # gamma of the per-example smoothing (Daniel)


class ObservationParts(NamedTuple):
  """Which parts an observation kind concatenates (in this field order)."""
  dynamics: bool = False
  per_example: bool = False
  progress: bool = False
  weight_stats: bool = False
  scale_free: bool = False


_PARTS = {
    DYNAMICS: ObservationParts(dynamics=True),
    PROGRESS_OBSERVATION: ObservationParts(dynamics=True, progress=True),
    PER_EXAMPLE: ObservationParts(per_example=True),
    DYNAMICS_PER_EXAMPLE: ObservationParts(dynamics=True, per_example=True),
    WEIGHT_STATS: ObservationParts(weight_stats=True),
    SCALE_FREE: ObservationParts(scale_free=True),
}
OBSERVATION_KINDS = tuple(_PARTS)


def observation_parts(kind: str) -> ObservationParts:
  """The parts of observation ``kind``; ValueError listing the known kinds."""
  if kind not in _PARTS:
    raise ValueError(f"observation={kind!r}; allowed: {OBSERVATION_KINDS}.")
  return _PARTS[kind]


def observes_progress(kind: str) -> bool:
  """Whether observation ``kind`` holds the run progress t / T."""
  parts = observation_parts(kind)
  return parts.progress or parts.scale_free


def check_inputs(kind: str, inputs, field: str = "inputs") -> tuple:
  """The optional inputs of an observation of ``kind`` as a tuple; only the
  scale-free kind has them (ValueError naming ``field`` otherwise)."""
  inputs = tuple(inputs)
  if inputs and not observation_parts(kind).scale_free:
    raise ValueError(f"{field}={inputs!r} with observation {kind!r}; "
                     f"optional inputs belong to {SCALE_FREE!r} only.")
  return scale_free_lib.check_inputs(inputs, field)


def observation_size(kind: str, inputs=()) -> int:
  """Length of an observation of ``kind`` (with its optional ``inputs``)."""
  parts = observation_parts(kind)
  return (dynamics.NUM_OBSERVATIONS * parts.dynamics
          + NUM_PER_EXAMPLE_OBSERVATIONS * parts.per_example
          + parts.progress
          + weight_stats.NUM_WEIGHT_FEATURES * parts.weight_stats
          + scale_free_lib.NUM_FEATURES * parts.scale_free
          + len(check_inputs(kind, inputs)))


# The per-example part's names: [phi1_hat, phi2_hat, u1, u2]
# (``smoothing.running_stats_features``: the smoothed features, then their
# uncertainties).
PER_EXAMPLE_OBSERVATION_NAMES = tuple(
    [f"{n}_hat" for n in per_example_lib.FEATURE_NAMES]
    + [f"{n}_uncertainty" for n in per_example_lib.FEATURE_NAMES])
assert len(PER_EXAMPLE_OBSERVATION_NAMES) == NUM_PER_EXAMPLE_OBSERVATIONS


def observation_names(kind: str, inputs=()) -> tuple[str, ...]:
  """The name of each entry of an observation of ``kind``, in ``observe``'s
  order (``len == observation_size(kind)``).

  The parts concatenated as ``observe`` does: the dynamics'
  ``dynamics.OBSERVATION_NAMES`` (its 'lr' entry holds ``log10(lr)`` when
  ``ObservationConfig.log_lr``), the per-example
  ``PER_EXAMPLE_OBSERVATION_NAMES``, 'progress'; or the weight statistics'
  ``weight_stats.FEATURE_NAMES`` (the last, 'prev_lr', the previous LR); or
  the scale-free ``scale_free.FEATURE_NAMES`` and its optional ``inputs``.
  """
  parts = observation_parts(kind)
  if parts.weight_stats:
    return tuple(weight_stats.FEATURE_NAMES)
  if parts.scale_free:
    return scale_free_lib.feature_names(check_inputs(kind, inputs))
  names = ()
  if parts.dynamics:
    names += tuple(dynamics.OBSERVATION_NAMES)
  if parts.per_example:
    names += PER_EXAMPLE_OBSERVATION_NAMES
  if parts.progress:
    names += ("progress",)
  return names


class ObservedLayers(NamedTuple):
  """Layers an observation reads (None where its kind reads none).

  Attributes:
    first_dense, last_dense: kernels whose mean/var enter the dynamics part.
    monitored: the layer of the weight statistics.
  """
  first_dense: Optional[params_lib.LayerPath] = None
  last_dense: Optional[params_lib.LayerPath] = None
  monitored: Optional[params_lib.LayerPath] = None


def resolve_layers(params: Any, kind: str, *,
                   first_dense: Optional[params_lib.LayerSpec] = None,
                   last_dense: Optional[params_lib.LayerSpec] = None,
                   monitored_layer: Optional[params_lib.LayerSpec] = None
                   ) -> ObservedLayers:
  """The layers observation ``kind`` reads in a model with these ``params``.

  Defaults: the first and the last 2-D kernel for the dynamics part (a
  model without one, e.g. the all-conv SmallCNN: its first and last kernel
  of any rank, whose moments play the same part); the last conv layer,
  else the last weight layer of any kind (dense, embedding, attention),
  for the weight statistics;
  all in dict iteration order, so pass params straight from ``model.init``
  (or their ``jax.eval_shape``) or name the layers.

  Args:
    params: Flax params (or full variables) in creation order.
    kind: one of ``OBSERVATION_KINDS``.
    first_dense, last_dense, monitored_layer: explicit layers (a
      '/'-joined name or a tuple path) replacing the defaults.

  Returns:
    ``ObservedLayers`` of static tuple paths.

  Raises:
    ValueError: unknown ``kind``, or a model without the layers it reads
      (the message lists the model's layers).
  """
  parts = observation_parts(kind)
  layers = ObservedLayers()
  if parts.dynamics:
    if params_lib.dense_layers(params) or not params_lib.kernel_layers(
        params):
      first, last = params_lib.first_dense_layer, params_lib.last_dense_layer
    else:   # no 2-D kernel: the first and last kernels stand in
      first = lambda p: params_lib.kernel_layers(p)[0]
      last = lambda p: params_lib.kernel_layers(p)[-1]
    layers = layers._replace(
        first_dense=(params_lib.as_path(first_dense) if first_dense
                     is not None else first(params)),
        last_dense=(params_lib.as_path(last_dense) if last_dense is not None
                    else last(params)))
  if parts.weight_stats:
    if monitored_layer is not None:
      monitored = params_lib.as_path(monitored_layer)
    else:
      monitored = weight_stats.default_weight_stats_layer(params)
    layers = layers._replace(monitored=monitored)
  return layers


class ObservationConfig(NamedTuple):
  """Static settings of ``observe`` (they fix shapes and trace-time choices).

  Attributes:
    kind: one of ``OBSERVATION_KINDS``.
    layers: from ``resolve_layers``.
    ema_decay: EMA decay of the prediction features (Xu: 0.8).
    log_lr: the dynamics' LR entry is ``log10(lr)`` (else the raw LR).
    per_example_decay: smoothing ``gamma`` of the per-example features.
    num_decisions: decisions of the whole run (the progress feature's T).
    slope_decay: EMA decay of the scale-free log-slopes.
    inputs: the scale-free observation's optional inputs
      (``scale_free.INPUTS`` names, after its 10 numbers).
  """
  kind: str
  layers: ObservedLayers
  ema_decay: float = dynamics.DEFAULT_DECAY
  log_lr: bool = True
  per_example_decay: float = PER_EXAMPLE_DECAY
  num_decisions: Optional[int] = None
  slope_decay: float = scale_free_lib.DEFAULT_SLOPE_DECAY
  inputs: tuple = ()


def progress_feature(decisions_taken: chex.Numeric,
                     num_decisions: int) -> jax.Array:
  """``min(t / T, 1)``: the fraction of the run's decisions already taken.

  Not in Xu et al. 2019's observation: without it a Markov policy cannot
  tell the start of a run from its end, so it cannot anneal (see the Xu 2019
  reproduction in BUILD_NOTES).
  """
  # A multiplication by a host constant, not a division: XLA may turn x / T
  # into x * (1 / T) in one program and not in another, and the env and
  # ``lr_meta.optax.controlled`` must give bit-identical observations.
  inverse = np.float32(1.0 / num_decisions)
  return jnp.minimum(jnp.asarray(decisions_taken, jnp.float32) * inverse,
                     1.0)


# When a controller decides: 'every' K inner steps, or at the fixed fractions
# t / D of a run of any length ('fraction': the same D decisions for a
# 300-step and a 3000-step run).
DECISION_SCHEDULES = ("every", "fraction")


def decision_step(t: chex.Numeric, num_steps: chex.Numeric,
                  num_decisions: int) -> jax.Array:
  """``floor(t T / D)``: the inner step at which decision ``t`` is taken.

  Decisions at fixed fractions of a run of ``T = num_steps`` steps (int32;
  ``t T`` must stay below 2**31: T * D < 2e9).
  """
  t = jnp.asarray(t, jnp.int32)
  return (t * jnp.asarray(num_steps, jnp.int32)) // num_decisions


def dynamics_observation(
    state: dynamics.DynamicsState, *, params: Any, predictions: chex.Array,
    train_loss: chex.Numeric, lr: chex.Numeric,
    val_loss: Optional[chex.Numeric], layers: ObservedLayers,
    decay: float = dynamics.DEFAULT_DECAY, log_lr: bool = True,
) -> tuple[jax.Array, dynamics.DynamicsState]:
  """The 9 Xu 2019 numbers (``dynamics.dynamics_update``), LR entry in log10.

  Returns:
    ``(observation (9,), new DynamicsState)``.
  """
  obs, state = dynamics.dynamics_update(
      state, params=params, predictions=predictions, train_loss=train_loss,
      lr=lr, val_loss=val_loss, first_dense=layers.first_dense,
      last_dense=layers.last_dense, decay=decay)
  if log_lr:
    obs = obs.at[dynamics.LR_INDEX].set(jnp.log10(lr))
  return obs, state


def weight_stats_observation(params: Any, lr: chex.Numeric,
                             layer: params_lib.LayerSpec) -> jax.Array:
  """The 193 Fu 2016 features of ``layer``: a conv kernel, or a dense,
  embedding or attention weight read as a 1x1 conv
  (``weight_stats.as_conv_layout``)."""
  return weight_stats.layer_weight_stats(params, lr, layer)


def per_example_observation(stats: smoothing.RunningStats,
                            decay: float = PER_EXAMPLE_DECAY) -> jax.Array:
  """``[phi1_hat, phi2_hat, u1, u2]``, bias-corrected (zeros before a step)."""
  return smoothing.running_stats_features(stats, decay)


def per_example_update(stats: smoothing.RunningStats, phi: chex.Array,
                       skip: chex.Numeric,
                       decay: float = PER_EXAMPLE_DECAY
                       ) -> smoothing.RunningStats:
  """Smooths one step's ``[phi1, phi2]``; keeps ``stats`` on a bad step.

  A diverged (frozen) step (``skip``) or a non-finite ``phi`` leaves the
  running statistics as they were, so one bad step cannot poison them.
  """
  skip = jnp.asarray(skip) | ~jnp.all(jnp.isfinite(phi))
  new = smoothing.running_stats_update(stats, jnp.where(skip, 0.0, phi),
                                       decay)
  return jax.tree.map(lambda old, n: jnp.where(skip, old, n), stats, new)


def observe(
    config: ObservationConfig, *, params: Any, lr: chex.Numeric,
    train_loss: Optional[chex.Numeric] = None,
    val_loss: Optional[chex.Numeric] = None,
    predictions: Optional[chex.Array] = None,
    dynamics_state: Optional[dynamics.DynamicsState] = None,
    per_example_stats: Optional[smoothing.RunningStats] = None,
    decisions_taken: chex.Numeric = 0,
    lr0: Optional[chex.Numeric] = None,
    scale_free_state: Optional[scale_free_lib.ScaleFreeState] = None,
    window: Optional[scale_free_lib.Window] = None,
) -> tuple[jax.Array, Any]:
  """The observation of ``config.kind`` (float32) and the new feature state.

  Args:
    config: what to observe.
    params: the trainee's Flax params.
    lr: the learning rate in use.
    train_loss, val_loss, predictions, dynamics_state: inputs of the
      dynamics part (``dynamics.dynamics_update``; ``val_loss`` None: the
      train loss in its place).
    per_example_stats: the smoothed per-example features (per-example part).
    decisions_taken: decisions so far (progress parts).
    lr0, scale_free_state, window: inputs of the scale-free part
      (``scale_free.scale_free_observation``; ``val_loss`` is its
      validation loss, ``train_loss`` is not read: the window holds the
      train losses).

  Returns:
    ``(observation, state)``: for 'scale_free' the new ``ScaleFreeState``,
    otherwise the new ``DynamicsState`` (returned unchanged when the kind
    has no dynamics part).
  """
  parts = observation_parts(config.kind)
  if parts.weight_stats:
    obs = weight_stats_observation(params, lr, config.layers.monitored)
    return obs.astype(jnp.float32), dynamics_state
  if parts.scale_free:
    if config.num_decisions is None:
      raise ValueError(f"observation {config.kind!r} needs num_decisions "
                       "(the run's decisions, for the progress feature).")
    return scale_free_lib.scale_free_observation(
        scale_free_state, window, lr=lr, lr0=lr0, val_loss=val_loss,
        progress=progress_feature(decisions_taken, config.num_decisions),
        decay=config.slope_decay, inputs=config.inputs)
  pieces = []
  if parts.dynamics:
    obs, dynamics_state = dynamics_observation(
        dynamics_state, params=params, predictions=predictions,
        train_loss=train_loss, lr=lr, val_loss=val_loss,
        layers=config.layers, decay=config.ema_decay, log_lr=config.log_lr)
    pieces.append(obs)
  if parts.per_example:
    pieces.append(per_example_observation(per_example_stats,
                                          config.per_example_decay))
  if parts.progress:
    if config.num_decisions is None:
      raise ValueError(f"observation {config.kind!r} needs num_decisions "
                       "(the run's decisions, for the progress feature).")
    pieces.append(progress_feature(decisions_taken,
                                   config.num_decisions)[None])
  return jnp.concatenate(pieces).astype(jnp.float32), dynamics_state
