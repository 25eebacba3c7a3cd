"""An LR range test folded into the warm-up, then a learned controller.

``range_tested(base, controller, num_steps=T)`` spends the first
``P = ceil(fraction * T)`` update calls on an LR range test (Smith 2017,
"Cyclical Learning Rates for Training Neural Networks", section 3.3: raise
the LR geometrically and watch the loss): the LR rises from
``lr0 / span`` to ``lr0 * span``, the training loss is smoothed by an
exponential moving average, and the sweep ends where the smoothed loss (or
the call's own loss) climbs past ``blowup`` times the lowest smoothed value,
or gives back a share ``give_back`` of what it gained since the first call
(Adam's overshoot tends to send a loss back towards the chance level, not to
infinity), or stops being finite, and at its last call at the latest; the
params then go back to where the smoothed loss was lowest
(``lr_meta.features.range_sweep`` holds these rules, which the environment
that trains controllers runs too). The LR that gave the lowest smoothed
loss, times ``shrink`` (or ``lr0`` itself, when the loss fell less than
``min_gain``), becomes the controller's initial LR: the remaining
``T - P`` calls are ``controlled(base, controller, num_steps=T - P)``
started from it, so a controller that only shapes a schedule around its
initial LR is given a scale found on the run itself instead of the user's
guess (the shipped generalist alone raises a 30x too small LR only 3-4x).

The sweep trains the model (it is the run's warm-up, not a separate
probe): after it ends early, the remaining sweep calls use the found LR.
The loss of call ``t`` is measured at the params that the update of call
``t - 1`` produced, so it is credited to that call's LR.
"""

from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from lr_meta import checks
from lr_meta.features import range_sweep
from lr_meta.optax._src import controlled as controlled_lib
from lr_meta.policies import controller as controller_lib

__all__ = ["RangeTestState", "range_test_steps", "range_tested",
           "sweep_lr"]

_set_lr = controlled_lib._set_lr  # pylint: disable=protected-access
sweep_lr = range_sweep.sweep_lr


class RangeTestState(NamedTuple):
  """State of ``range_tested``.

  Attributes:
    count: update calls so far (int32).
    sweep: what the sweep has seen (``lr_meta.features.range_sweep``).
    snapshot: the params of the lowest smoothed loss so far (``()``
      without ``rewind``).
    inner: the ``ControlledState`` of the controller that takes over; during
      the sweep its ``lr`` is the sweep's LR (so ``current_lr`` reads it)
      and its first decision is held back (``next_decision = -1``, so
      ``probe_inputs`` skips the probe).
  """
  count: jax.Array
  sweep: range_sweep.SweepStats
  snapshot: Any
  inner: controlled_lib.ControlledState


def range_test_steps(num_steps: int, fraction: float,
                     min_steps: int = 10) -> int:
  """The sweep's calls, ``max(min_steps, ceil(fraction * num_steps))``."""
  return range_sweep.num_sweep_steps(
      num_steps, range_sweep.SweepSettings(fraction=fraction,
                                           min_steps=min_steps))


def range_tested(
    base_optimizer: optax.GradientTransformation,
    controller: controller_lib.Controller,
    *,
    num_steps: int,
    fraction: Optional[float] = None,
    span: Optional[float] = None,
    shrink: Optional[float] = None,
    smoothing: Optional[float] = None,
    blowup: Optional[float] = None,
    min_steps: Optional[int] = None,
    rewind: Optional[bool] = None,
    give_back: Optional[float] = None,
    min_gain: Optional[float] = None,
    rise: Optional[float] = None,
    **controlled_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
  """An LR range test for the first calls, then ``controlled``.

  A setting left at None is the one the controller was trained with
  (``spec.observation_spec.range_test``: ``controlled`` calls this for such
  a controller), else ``range_sweep.SweepSettings``'s default (given below).

  Args:
    base_optimizer: as for ``controlled`` (an injectable learning rate); its
      LR at ``init`` is ``lr0``, the centre of the sweep.
    controller: a 'fraction' controller (a scale-free generalist).
    num_steps: the run's update calls, T (sweep included).
    fraction: the share of the run spent on the sweep (0.05).
    span: the sweep covers ``[lr0 / span, lr0 * span]`` (300).
    shrink: the controller starts from ``shrink`` times the LR of the lowest
      smoothed loss (0.3; fastai's ``lr_find`` suggests a tenth; with the
      shipped generalist 0.3 did better on the benchmark's train side,
      BUILD_NOTES).
    smoothing: the loss EMA's decay (0.8).
    blowup: the sweep stops when the smoothed loss, or a call's own loss,
      exceeds ``blowup`` times the lowest smoothed loss (4).
    min_steps: the sweep's fewest calls (10).
    rewind: when the sweep ends (early or at its last call), undo its
      overshoot: the update of that call takes the params back to those of
      the lowest smoothed loss and the base optimizer restarts (``init``)
      at the found LR, so neither the params nor the moments keep what the
      too-large LRs did (True).
      Costs one copy of the params in the state. Params that are already
      not finite cannot be taken back by an additive update (the loss is
      checked every call, so the sweep stops first unless one update blows
      them up).
    give_back: the sweep also stops when the smoothed loss climbs back by
      this share of its fall from the first call's loss (counted once it is
      ``min_gain`` below it; 1: back at the start) (0.5).
    min_gain: a sweep whose lowest smoothed loss is less than this share
      below the first call's loss found nothing: the controller then starts
      from ``lr0`` (0.02).
    rise: the sweep also stops when a call's loss exceeds the first call's
      by this share (0.1): a loss still at chance level that climbs is one
      call from a divergence.
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
  given = dict(fraction=fraction, span=span, shrink=shrink,
               smoothing=smoothing, blowup=blowup, min_steps=min_steps,
               rewind=rewind, give_back=give_back, min_gain=min_gain,
               rise=rise)
  trained = spec.observation_spec.sweep_settings or range_sweep.SweepSettings()
  settings = trained._replace(
      **{k: v for k, v in given.items() if v is not None}).check(
          "range_tested")
  num_sweep = range_sweep.num_sweep_steps(num_steps, settings)
  decisions = spec.observation_spec.num_decisions
  if num_steps - num_sweep < decisions:
    raise ValueError(
        f"num_steps={num_steps} leaves {num_steps - num_sweep} calls after "
        f"a sweep of {num_sweep}; controller {spec.name!r} needs at least "
        f"{decisions} (allowed: num_steps >= {num_sweep + decisions}).")
  # The controller from the hand-over on, without its own range test (a
  # controller trained with one would otherwise be swept again).
  plain = controller_lib.Controller(
      spec.with_fields(range_test=()), controller.params)
  inner = controlled_lib.controlled(base_optimizer, plain,
                                    num_steps=num_steps - num_sweep,
                                    **controlled_kwargs)
  inner_update = inner.update
  base = optax.with_extra_args_support(base_optimizer)

  def init_fn(params):
    s = inner.init(params)
    first = sweep_lr(0, s.lr0, settings.span, num_sweep)
    s = s._replace(lr=first, next_decision=jnp.asarray(-1, jnp.int32))
    return RangeTestState(count=jnp.zeros([], jnp.int32),
                          sweep=range_sweep.init(first),
                          snapshot=params if settings.rewind else (),
                          inner=s)

  def sweep(state, updates, params, loss, extra_args):
    t = state.count
    stats, improved, ends = range_sweep.observe(
        state.sweep, settings, t, loss, state.inner.lr, num_sweep)
    found = range_sweep.found_lr(stats, settings, state.inner.lr0)
    lr = range_sweep.next_lr(stats, settings, t, state.inner.lr0, num_sweep)
    inner = state.inner
    base_state = _set_lr(inner.base_state, lr)
    updates, base_state = base.update(updates, base_state, params,
                                      **extra_args)
    snapshot = state.snapshot
    if settings.rewind:
      snapshot = jax.tree.map(lambda p, s: jnp.where(improved, p, s), params,
                              snapshot)

      def back(_):
        fresh = _set_lr(base.init(snapshot), found)
        return jax.tree.map(lambda s, p: (s - p).astype(p.dtype), snapshot,
                            params), fresh

      updates, base_state = jax.lax.cond(
          ends, back, lambda _: (updates, base_state), None)
    last = t == num_sweep - 1
    # The controller's run starts after the last sweep call, from `found`.
    inner = inner._replace(
        base_state=base_state,
        lr=jnp.where(last, found, lr), lr0=jnp.where(last, found, inner.lr0),
        next_decision=jnp.where(last, 0, inner.next_decision).astype(
            jnp.int32))
    return updates, RangeTestState(count=t + 1, sweep=stats,
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

