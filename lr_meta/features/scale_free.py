"""Scale-free observation of a training run, for controllers meant to travel.

Xu et al. 2019's 9 numbers (``lr_meta.features.dynamics``) hold raw losses,
kernel moments and the LR: their values depend on the task (a loss of 2.3
vs 0.4, kernels of width 784 vs 3072, SGD at 0.1 vs Adam at 1e-3), so a
controller trained on one task reads another task's numbers as a different
state. Learned-optimizer work generalises over task distributions with
inputs that mean the same on any task (Metz et al. 2022, VeLO: relative
quantities, log-scaled, normalised by their own history). The numbers here
are such inputs; each is invariant to the scale named in its entry:

  0 progress          t / D, decisions taken over the run's decisions.
  1 log_lr_ratio      log(lr / lr0): the LR relative to the run's initial
                      LR (any LR unit).
  2 log_train_ratio   log(mean train loss of the window / initial train
                      loss) (any loss scale: a loss times c).
  3 log_val_ratio     log(validation loss / initial validation loss).
  4 train_slope       EMA over decisions of the change of 2 per decision
                      (bias-corrected; the loss's log-slope).
  5 val_slope         the same for 3.
  6 log_gap           log(validation loss / mean train loss of the window).
  7 log10_update_ratio  log10 of the window's mean ``||u_s|| / ||w_s||``:
                      the optimizer's update relative to the weights it
                      updates (any weight unit: w and u times c), the same
                      measure for SGD, momentum and Adam.
  8 loss_cv           std / mean of the window's train losses (noise).
  9 prev_action       the controller's previous action (0 before the first).

The inputs that need state across steps are accumulated per inner step in
a ``Window`` (sums, so the same float32 additions give the same bits in the
training environment and in ``lr_meta.optax.controlled``) and per decision
in a ``ScaleFreeState``. Before any step (the decision at reset) the window
is empty and entries 2, 4, 5, 7, 8 are 0.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "DEFAULT_SLOPE_DECAY", "FEATURE_NAMES", "NUM_FEATURES", "ScaleFreeState",
    "Window", "record_action", "scale_free_init", "scale_free_observation",
    "update_ratio", "window_add", "window_init",
]

FEATURE_NAMES = (
    "progress", "log_lr_ratio", "log_train_ratio", "log_val_ratio",
    "train_slope", "val_slope", "log_gap", "log10_update_ratio", "loss_cv",
    "prev_action",
)
NUM_FEATURES = len(FEATURE_NAMES)  # 10
DEFAULT_SLOPE_DECAY = 0.5
# log10 of an update ratio of 0 (no step moved the weights), and the floor of
# every log here: far below any ratio a training step gives (~1e-6..1e-1).
_TINY = 1e-12


class Window(NamedTuple):
  """Sums over the inner steps since the last decision (float32; count int32).

  The loss variance is summed from deviations to the window's first loss
  (``shift``), which avoids the cancellation of ``E[l^2] - E[l]^2``.
  """
  loss_sum: jax.Array
  shift: jax.Array
  dev_sum: jax.Array
  dev_sq_sum: jax.Array
  ratio_sum: jax.Array
  count: jax.Array


class ScaleFreeState(NamedTuple):
  """What the observation remembers between decisions.

  Attributes:
    initial_train_loss, initial_val_loss: the run's first losses (reset).
    prev_log_train, prev_log_val: the logs of the previous decision's
      window-mean train loss and validation loss.
    train_slope, val_slope: the EMAs (not bias-corrected) of their changes.
    decisions: EMA updates so far (for the bias correction).
    prev_action: the controller's last action.
  """
  initial_train_loss: jax.Array
  initial_val_loss: jax.Array
  prev_log_train: jax.Array
  prev_log_val: jax.Array
  train_slope: jax.Array
  val_slope: jax.Array
  decisions: jax.Array
  prev_action: jax.Array


def window_init() -> Window:
  """An empty window."""
  zero = jnp.zeros((), jnp.float32)
  return Window(zero, zero, zero, zero, zero, jnp.zeros((), jnp.int32))


def update_ratio(updates, params) -> jax.Array:
  """``||u|| / ||w||`` over all leaves (global L2 norms), float32.

  Non-finite (a diverging step) counts as 1, a step as large as the weights.
  """
  ratio = (optax.tree.norm(updates)
           / jnp.maximum(optax.tree.norm(params), _TINY))
  ratio = jnp.asarray(ratio, jnp.float32)
  return jnp.where(jnp.isfinite(ratio), ratio, 1.0)


def window_add(window: Window, loss: chex.Numeric,
               ratio: chex.Numeric) -> Window:
  """Adds one inner step: its batch loss and its ``update_ratio``."""
  loss = jnp.asarray(loss, jnp.float32)
  ratio = jnp.asarray(ratio, jnp.float32)
  shift = jnp.where(window.count == 0, loss, window.shift)
  dev = loss - shift
  return Window(loss_sum=window.loss_sum + loss, shift=shift,
                dev_sum=window.dev_sum + dev,
                dev_sq_sum=window.dev_sq_sum + dev * dev,
                ratio_sum=window.ratio_sum + ratio,
                count=window.count + 1)


def scale_free_init(train_loss: chex.Numeric,
                    val_loss: chex.Numeric) -> ScaleFreeState:
  """The state at the start of a run, from its first losses.

  Args:
    train_loss: the first batch's loss (before any step).
    val_loss: the validation loss before any step.
  """
  train_loss = jnp.asarray(train_loss, jnp.float32)
  val_loss = jnp.asarray(val_loss, jnp.float32)
  zero = jnp.zeros((), jnp.float32)
  return ScaleFreeState(
      initial_train_loss=train_loss, initial_val_loss=val_loss,
      prev_log_train=_log(train_loss), prev_log_val=_log(val_loss),
      train_slope=zero, val_slope=zero, decisions=jnp.zeros((), jnp.int32),
      prev_action=zero)


def record_action(state: ScaleFreeState,
                  action: chex.Numeric) -> ScaleFreeState:
  """The state after the controller took ``action`` (a scalar)."""
  return state._replace(
      prev_action=jnp.asarray(jnp.reshape(action, ()), jnp.float32))


def _log(x):
  return jnp.log(jnp.maximum(jnp.asarray(x, jnp.float32), _TINY))


def scale_free_observation(
    state: ScaleFreeState, window: Window, *, lr: chex.Numeric,
    lr0: chex.Numeric, val_loss: chex.Numeric, progress: chex.Numeric,
    decay: float = DEFAULT_SLOPE_DECAY,
) -> tuple[jax.Array, ScaleFreeState]:
  """The 10 numbers of the module docstring and the state after them.

  Args:
    state: from ``scale_free_init`` or the previous call.
    window: the inner steps since the previous decision (empty at reset:
      the state is then returned unchanged).
    lr: the LR those steps used; lr0: the run's initial LR.
    val_loss: the validation loss now.
    progress: t / D (``lr_meta.features.observation.progress_feature``).
    decay: EMA decay of the slopes, in [0, 1).

  Returns:
    ``(observation (10,) float32, new state)``.
  """
  stepped = window.count > 0
  count = jnp.maximum(window.count, 1).astype(jnp.float32)
  mean_loss = window.loss_sum / count
  # An empty window (the decision at reset) reads as the run's first loss.
  train = jnp.where(stepped, mean_loss, state.initial_train_loss)
  log_train, log_val = _log(train), _log(val_loss)
  n = jnp.where(stepped, state.decisions + 1, state.decisions)
  ema = lambda old, x: jnp.where(stepped, decay * old + (1 - decay) * x, old)
  train_slope = ema(state.train_slope, log_train - state.prev_log_train)
  val_slope = ema(state.val_slope, log_val - state.prev_log_val)
  correction = jnp.where(n > 0, 1.0 - decay ** n.astype(jnp.float32), 1.0)
  mean_dev = window.dev_sum / count
  variance = jnp.maximum(window.dev_sq_sum / count - mean_dev**2, 0.0)
  cv = jnp.where(stepped, jnp.sqrt(variance) / jnp.maximum(mean_loss, _TINY),
                 0.0)
  log_ratio = jnp.where(
      stepped, jnp.log10(jnp.maximum(window.ratio_sum / count, _TINY)), 0.0)
  obs = jnp.stack([
      jnp.asarray(progress, jnp.float32),
      _log(lr) - _log(lr0),
      log_train - _log(state.initial_train_loss),
      log_val - _log(state.initial_val_loss),
      train_slope / correction,
      val_slope / correction,
      log_val - log_train,
      log_ratio,
      cv,
      state.prev_action,
  ]).astype(jnp.float32)
  new = state._replace(
      prev_log_train=log_train, prev_log_val=log_val,
      train_slope=train_slope, val_slope=val_slope, decisions=n)
  return obs, new
