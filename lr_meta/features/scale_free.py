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

Optional inputs (``INPUTS``) come after these 10, each opt-in by name
(``LREnv(..., inputs=)``, ``ControllerSpec.inputs``): a per-step measure of
the step's gradients, update and weights (``Measure``), summed in the
window, and a ``read`` of its window mean against a memory the input keeps
between decisions. Adding one is one ``INPUTS`` entry: the environment,
``lr_meta.optax.controlled``, the controller file and the observation's size
and names follow from it.

The inputs that need state across steps are accumulated per inner step in
a ``Window`` (sums, so the same float32 additions give the same bits in the
training environment and in ``lr_meta.optax.controlled``) and per decision
in a ``ScaleFreeState``. Before any step (the decision at reset) the window
is empty and entries 2, 4, 5, 7, 8 are 0.
"""

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import chex
import jax
import jax.numpy as jnp
import optax

__all__ = [
    "DEFAULT_SLOPE_DECAY", "FEATURE_NAMES", "INPUTS", "NUM_FEATURES",
    "OptionalInput", "ScaleFreeState", "Window", "check_inputs",
    "feature_names", "measure_step", "record_action", "scale_free_init",
    "scale_free_observation", "step_extras", "update_ratio", "window_add",
    "window_init",
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
  # (E,) sums of the optional inputs' measures; () without optional inputs.
  extra_sum: Any = ()


class ScaleFreeState(NamedTuple):
  """What the observation remembers between decisions.

  Attributes:
    initial_train_loss, initial_val_loss: the run's first losses (reset).
    prev_log_train, prev_log_val: the logs of the previous decision's
      window-mean train loss and validation loss.
    train_slope, val_slope: the EMAs (not bias-corrected) of their changes.
    decisions: EMA updates so far (for the bias correction).
    prev_action: the controller's last action.
    memory: (E,) what each optional input keeps between decisions (0 at the
      start); () without optional inputs.
  """
  initial_train_loss: jax.Array
  initial_val_loss: jax.Array
  prev_log_train: jax.Array
  prev_log_val: jax.Array
  train_slope: jax.Array
  val_slope: jax.Array
  decisions: jax.Array
  prev_action: jax.Array
  memory: Any = ()


def window_init(num_extra: int = 0) -> Window:
  """An empty window (with ``num_extra`` optional inputs' sums)."""
  zero = jnp.zeros((), jnp.float32)
  extra = jnp.zeros((num_extra,), jnp.float32) if num_extra else ()
  return Window(zero, zero, zero, zero, zero, jnp.zeros((), jnp.int32),
                extra)


def update_ratio(updates, params) -> jax.Array:
  """``||u|| / ||w||`` over all leaves (global L2 norms), float32.

  Non-finite (a diverging step) counts as 1, a step as large as the weights.
  """
  ratio = (optax.tree.norm(updates)
           / jnp.maximum(optax.tree.norm(params), _TINY))
  ratio = jnp.asarray(ratio, jnp.float32)
  return jnp.where(jnp.isfinite(ratio), ratio, 1.0)


def window_add(window: Window, loss: chex.Numeric, ratio: chex.Numeric,
               extras: Optional[chex.Array] = None) -> Window:
  """Adds one inner step: its batch loss, its ``update_ratio`` and the
  optional inputs' measures (``step_extras``; None without any)."""
  loss = jnp.asarray(loss, jnp.float32)
  ratio = jnp.asarray(ratio, jnp.float32)
  shift = jnp.where(window.count == 0, loss, window.shift)
  dev = loss - shift
  extra_sum = window.extra_sum
  if extras is not None:
    extra_sum = extra_sum + jnp.asarray(extras, jnp.float32)
  return Window(loss_sum=window.loss_sum + loss, shift=shift,
                dev_sum=window.dev_sum + dev,
                dev_sq_sum=window.dev_sq_sum + dev * dev,
                ratio_sum=window.ratio_sum + ratio,
                count=window.count + 1, extra_sum=extra_sum)


# -- optional inputs ----------------------------------------------------------


class OptionalInput(NamedTuple):
  """An input after the 10, opt-in by name (module docstring).

  Attributes:
    name: its name in ``INPUTS`` and in the observation's names.
    measure: ``(grads, updates, params) -> float32 scalar`` of one inner
      step (the gradients, the update the optimizer applied, the weights
      before it); must be finite for a finite step (a non-finite one is
      read as 0: a diverging step ends the episode anyway).
    read: ``(window mean of the measure, memory) -> (value, new memory)``
      at a decision after at least one step; the value is 0 and the memory
      kept at the decision before any step.
    description: what it means and which scale it is free of.
  """
  name: str
  measure: Callable[[Any, Any, Any], jax.Array]
  read: Callable[[jax.Array, jax.Array], tuple]
  description: str


# Decay of grad_norm_ratio's running mean (over decisions).
GRAD_NORM_DECAY = 0.8


def _grad_norm(grads, updates, params):
  del updates, params
  return optax.tree.norm(grads)


def _ratio_to_running_mean(mean, running):
  """``(log(mean / running mean), new running mean)``; the first window
  starts the running mean and reads 0."""
  first = running <= 0
  value = jnp.where(first, 0.0, _log(mean) - _log(running))
  running = jnp.where(first, mean,
                      GRAD_NORM_DECAY * running + (1 - GRAD_NORM_DECAY) * mean)
  return value, running


INPUTS: Dict[str, OptionalInput] = {i.name: i for i in [
    OptionalInput(
        "grad_norm_ratio", _grad_norm, _ratio_to_running_mean,
        "log of the window's mean gradient norm ||g|| over its running mean "
        f"across decisions (EMA, decay {GRAD_NORM_DECAY}): > 0 while the "
        "gradients grow (sharpening, the edge of stability), < 0 as they "
        "fade (a plateau or a too-small LR); free of the loss scale (g "
        "times c) and of the LR unit"),
]}


def check_inputs(inputs: Sequence[str], field: str = "inputs") -> tuple:
  """``inputs`` as a tuple of known, distinct names (ValueError otherwise,
  naming the field and the known inputs)."""
  inputs = tuple(inputs)
  unknown = [n for n in inputs if n not in INPUTS]
  if unknown or len(set(inputs)) != len(inputs):
    raise ValueError(f"{field}={inputs!r}; allowed: distinct names of "
                     f"{tuple(INPUTS)}.")
  return inputs


def feature_names(inputs: Sequence[str] = ()) -> tuple:
  """The observation's names: the 10, then the optional ``inputs``."""
  return FEATURE_NAMES + tuple(inputs)


def step_extras(inputs: Sequence[str], grads, updates,
                params) -> Optional[jax.Array]:
  """The ``(E,)`` measures of one inner step (None without inputs)."""
  if not inputs:
    return None
  values = jnp.stack([jnp.asarray(INPUTS[n].measure(grads, updates, params),
                                  jnp.float32) for n in inputs])
  return jnp.where(jnp.isfinite(values), values, 0.0)


def measure_step(inputs: Sequence[str], grads, updates, params):
  """What one inner step adds to the window besides its loss:
  ``(update_ratio, step_extras)``, the same in the training environment
  and in ``lr_meta.optax.controlled``."""
  return (update_ratio(updates, params),
          step_extras(inputs, grads, updates, params))


def scale_free_init(train_loss: chex.Numeric, val_loss: chex.Numeric,
                    inputs: Sequence[str] = ()) -> ScaleFreeState:
  """The state at the start of a run, from its first losses.

  Args:
    train_loss: the first batch's loss (before any step).
    val_loss: the validation loss before any step.
    inputs: the optional inputs observed (``INPUTS`` names).
  """
  train_loss = jnp.asarray(train_loss, jnp.float32)
  val_loss = jnp.asarray(val_loss, jnp.float32)
  zero = jnp.zeros((), jnp.float32)
  return ScaleFreeState(
      initial_train_loss=train_loss, initial_val_loss=val_loss,
      prev_log_train=_log(train_loss), prev_log_val=_log(val_loss),
      train_slope=zero, val_slope=zero, decisions=jnp.zeros((), jnp.int32),
      prev_action=zero,
      memory=jnp.zeros((len(inputs),), jnp.float32) if inputs else ())


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
    decay: float = DEFAULT_SLOPE_DECAY, inputs: Sequence[str] = (),
) -> tuple[jax.Array, ScaleFreeState]:
  """The 10 numbers of the module docstring, then the optional ``inputs``,
  and the state after them.

  Args:
    state: from ``scale_free_init`` or the previous call.
    window: the inner steps since the previous decision (empty at reset:
      the state is then returned unchanged).
    lr: the LR those steps used; lr0: the run's initial LR.
    val_loss: the validation loss now.
    progress: t / D (``lr_meta.features.observation.progress_feature``).
    decay: EMA decay of the slopes, in [0, 1).
    inputs: the optional inputs (``INPUTS`` names), in this order.

  Returns:
    ``(observation (10 + len(inputs),) float32, new state)``.
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
  if inputs:
    values, memory = [], []
    for i, name in enumerate(inputs):
      value, mem = INPUTS[name].read(window.extra_sum[i] / count,
                                     state.memory[i])
      values.append(jnp.where(stepped, value, 0.0))
      memory.append(jnp.where(stepped, mem, state.memory[i]))
    obs = jnp.concatenate([obs, jnp.stack(values).astype(jnp.float32)])
    new = new._replace(memory=jnp.stack(memory).astype(jnp.float32))
  return obs, new
