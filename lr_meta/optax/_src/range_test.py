"""An LR range test folded into the warm-up, then a learned controller.

``range_tested(base, controller, num_steps=T)`` spends the first
``P = ceil(fraction * T)`` update calls on an LR range test (Smith 2017,
"Cyclical Learning Rates for Training Neural Networks", section 3.3: raise
the LR geometrically and watch the loss): the LR rises from
``lr0 / span`` to ``lr0 * span``, the training loss is smoothed by an
exponential moving average, and the sweep stops where the smoothed loss
climbs past ``blowup`` times its lowest value, or gives back a share
``give_back`` of what it gained since the first call (Adam's overshoot tends
to send a loss back towards the chance level, not to infinity), or stops
being finite. The LR that gave the lowest smoothed loss, times ``shrink``,
becomes the controller's initial LR: the remaining ``T - P`` calls are
``controlled(base, controller, num_steps=T - P)`` started from it, so a
controller that only shapes a schedule around its initial LR is given a
scale found on the run itself instead of the user's guess (the shipped
generalist alone raises a 30x too small LR only 3-4x).

The sweep trains the model (it is the run's warm-up, not a separate
probe): after the loss turns up, the remaining sweep calls use the found LR.
The loss of call ``t`` is measured at the params that the update of call
``t - 1`` produced, so it is credited to that call's LR.
"""

import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from lr_meta import checks
from lr_meta.optax._src import controlled as controlled_lib
from lr_meta.policies import controller as controller_lib

__all__ = ["RangeTestState", "range_test_steps", "range_tested",
           "sweep_lr"]

_set_lr = controlled_lib._set_lr  # pylint: disable=protected-access


class RangeTestState(NamedTuple):
  """State of ``range_tested``.

  Attributes:
    count: update calls so far (int32).
    smoothed: the loss EMA's accumulator (not bias-corrected).
    start: the loss of the first call (float32).
    best: the lowest bias-corrected smoothed loss so far (float32).
    best_lr: the LR whose update led to ``best`` (float32).
    stopped: the sweep has ended (the loss turned up or stopped being
      finite).
    snapshot: the params of the lowest smoothed loss so far (``()``
      without ``rewind``).
    inner: the ``ControlledState`` of the controller that takes over; during
      the sweep its ``lr`` is the sweep's LR (so ``current_lr`` reads it)
      and its first decision is held back (``next_decision = -1``, so
      ``probe_inputs`` skips the probe).
  """
  count: jax.Array
  smoothed: jax.Array
  start: jax.Array
  best: jax.Array
  best_lr: jax.Array
  stopped: jax.Array
  snapshot: Any
  inner: controlled_lib.ControlledState


def range_test_steps(num_steps: int, fraction: float,
                     min_steps: int = 10) -> int:
  """The sweep's calls, ``max(min_steps, ceil(fraction * num_steps))``."""
  # Rounded first, so that e.g. 0.05 * 1000 is 50 calls, not 51.
  return max(min_steps, math.ceil(round(fraction * num_steps, 6)))


def sweep_lr(t: chex.Numeric, lr0: chex.Numeric, span: float,
             num_sweep: int) -> jax.Array:
  """The sweep's LR at call ``t``: ``lr0 * span ** (2 t / (P - 1) - 1)``,
  from ``lr0 / span`` at call 0 to ``lr0 * span`` at call ``P - 1``."""
  frac = jnp.asarray(t, jnp.float32) / max(num_sweep - 1, 1)
  return jnp.asarray(lr0, jnp.float32) * jnp.exp(
      (2.0 * frac - 1.0) * jnp.log(jnp.float32(span)))


def range_tested(
    base_optimizer: optax.GradientTransformation,
    controller: controller_lib.Controller,
    *,
    num_steps: int,
    fraction: float = 0.05,
    span: float = 300.0,
    shrink: float = 0.3,
    smoothing: float = 0.8,
    blowup: float = 4.0,
    min_steps: int = 10,
    rewind: bool = True,
    give_back: float = 0.5,
    **controlled_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
  """An LR range test for the first calls, then ``controlled``.

  Args:
    base_optimizer: as for ``controlled`` (an injectable learning rate); its
      LR at ``init`` is ``lr0``, the centre of the sweep.
    controller: a 'fraction' controller (a scale-free generalist).
    num_steps: the run's update calls, T (sweep included).
    fraction: the share of the run spent on the sweep.
    span: the sweep covers ``[lr0 / span, lr0 * span]``.
    shrink: the controller starts from ``shrink`` times the LR of the lowest
      smoothed loss (fastai's ``lr_find`` suggests a tenth; with the shipped
      generalist 0.3 did better on the benchmark's train side, BUILD_NOTES).
    smoothing: the loss EMA's decay.
    blowup: the sweep stops when the smoothed loss exceeds ``blowup`` times
      its lowest value.
    min_steps: the sweep's fewest calls.
    give_back: the sweep also stops when the smoothed loss climbs back by
      this share of its fall from the first call's loss (counted once it is
      5% below it; 1: back at the start).
    rewind: when the sweep stops, undo its overshoot: the update of that
      call takes the params back to those of the lowest smoothed loss and
      the base optimizer restarts (``init``) at the found LR, so neither
      the params nor the moments keep what the too-large LRs did. Costs one
      copy of the params in the state. Params that are already not finite
      cannot be taken back by an additive update (the loss is checked every
      call, so the sweep stops first unless one update blows them up).
    **controlled_kwargs: passed on to ``controlled`` (e.g. ``key``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes the
    keyword arguments of ``controlled``'s (``loss`` every call; ``val_loss``
    from ``probe_inputs``, read only after the sweep).
  """
  spec = controller.spec.check()
  if spec.observation_spec.decision_schedule != "fraction":
    raise ValueError(
        f"range_tested hands the rest of the run to a controller that "
        f"decides at fractions of it; controller {spec.name!r} decides every "
        f"{spec.observation_spec.steps_per_decision} steps.")
  checks.check_int("num_steps", num_steps, 1, "the run's update calls")
  for name, value, low, high in (("fraction", fraction, 0.0, 0.5),
                                 ("give_back", give_back, 0.0, 1.01),
                                 ("smoothing", smoothing, 0.0, 1.0),
                                 ("shrink", shrink, 0.0, 1.0)):
    if not low < value < high:
      raise ValueError(f"{name}={value!r}; allowed: {low} < {name} < {high}.")
  for name, value in (("span", span), ("blowup", blowup)):
    if not value > 1.0:
      raise ValueError(f"{name}={value!r}; allowed: a number > 1.")
  num_sweep = range_test_steps(num_steps, fraction, min_steps)
  decisions = spec.observation_spec.num_decisions
  if num_steps - num_sweep < decisions:
    raise ValueError(
        f"num_steps={num_steps} leaves {num_steps - num_sweep} calls after "
        f"a sweep of {num_sweep}; controller {spec.name!r} needs at least "
        f"{decisions} (allowed: num_steps >= {num_sweep + decisions}).")
  inner = controlled_lib.controlled(base_optimizer, controller,
                                    num_steps=num_steps - num_sweep,
                                    **controlled_kwargs)
  inner_update = inner.update
  base = optax.with_extra_args_support(base_optimizer)

  def init_fn(params):
    s = inner.init(params)
    first = sweep_lr(0, s.lr0, span, num_sweep)
    s = s._replace(lr=first, next_decision=jnp.asarray(-1, jnp.int32))
    return RangeTestState(
        count=jnp.zeros([], jnp.int32), smoothed=jnp.zeros([], jnp.float32),
        start=jnp.zeros([], jnp.float32),
        best=jnp.asarray(jnp.inf, jnp.float32), best_lr=first,
        stopped=jnp.asarray(False), snapshot=params if rewind else (),
        inner=s)

  def sweep(state, updates, params, loss, extra_args):
    t = state.count
    smoothed = smoothing * state.smoothed + (1.0 - smoothing) * loss
    corrected = smoothed / (1.0 - smoothing ** (t + 1).astype(jnp.float32))
    finite = jnp.isfinite(loss)
    # Call 0's loss is the initial params'; later ones follow the previous
    # call's LR (``inner.lr``).
    credited = (t >= 1) & finite & ~state.stopped
    improved = credited & (corrected < state.best)
    best = jnp.where(improved, corrected, state.best)
    best_lr = jnp.where(improved, state.inner.lr, state.best_lr)
    start = jnp.where(t == 0, loss, state.start)
    too_high = corrected > blowup * best
    too_high |= (best < 0.95 * start) & (
        corrected > best + give_back * (start - best))
    stopped = state.stopped | ~finite | (credited & too_high)
    found = best_lr * shrink
    lr = jnp.where(stopped, found, sweep_lr(t, state.inner.lr0, span,
                                            num_sweep))
    inner = state.inner
    base_state = _set_lr(inner.base_state, lr)
    updates, base_state = base.update(updates, base_state, params,
                                      **extra_args)
    snapshot = state.snapshot
    if rewind:
      snapshot = jax.tree.map(lambda p, s: jnp.where(improved, p, s), params,
                              snapshot)

      def back(_):
        fresh = _set_lr(base.init(snapshot), found)
        return jax.tree.map(lambda s, p: (s - p).astype(p.dtype), snapshot,
                            params), fresh

      updates, base_state = jax.lax.cond(
          stopped & ~state.stopped, back, lambda _: (updates, base_state),
          None)
    last = t == num_sweep - 1
    # The controller's run starts after the last sweep call, from `found`.
    inner = inner._replace(
        base_state=base_state,
        lr=jnp.where(last, found, lr), lr0=jnp.where(last, found, inner.lr0),
        next_decision=jnp.where(last, 0, inner.next_decision).astype(
            jnp.int32))
    return updates, RangeTestState(
        count=t + 1, smoothed=jnp.where(finite, smoothed, state.smoothed),
        start=start, best=best, best_lr=best_lr, stopped=stopped,
        snapshot=snapshot, inner=inner)

  def update_fn(updates, state, params=None, *, loss=None, val_loss=None,
                predictions=None, **extra_args):
    if loss is None:
      raise ValueError("range_tested.update needs loss=<this batch's "
                       "training loss> as a keyword argument.")
    loss = jnp.asarray(loss, jnp.float32)
    chex.assert_rank(loss, 0)

    def run_sweep(_):
      return sweep(state, updates, params, loss, extra_args)

    def run_controller(_):
      new_updates, inner = inner_update(updates, state.inner, params,
                                        loss=loss, val_loss=val_loss,
                                        predictions=predictions, **extra_args)
      return new_updates, state._replace(count=state.count + 1, inner=inner)

    return jax.lax.cond(state.count < num_sweep, run_sweep, run_controller,
                        None)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

