"""The LR range test's bookkeeping, one pure core for training and for use.

Smith 2017 ("Cyclical Learning Rates for Training Neural Networks", section
3.3): raise the LR geometrically over the first calls of a run and watch the
loss. ``lr_meta.optax.range_tested`` runs the sweep in front of a controller
inside an optax loop, and ``lr_meta.envs.LREnv`` runs the same sweep at the
start of an episode (``ObservationSpec.range_test``), so a controller is
trained on the hand-over it gets in use. Both call these functions in the
same order on the same numbers:

1. ``sweep_lr``: the LR of sweep call ``t``, ``lr0 * span ** (2 t / (P - 1)
   - 1)`` (``lr0 / span`` to ``lr0 * span``);
2. ``observe``: the loss of call ``t`` (measured at the params the update of
   call ``t - 1`` produced, so credited to that call's LR) enters an
   exponential moving average; the sweep stops where the smoothed loss (or
   the call's own loss) climbs past ``blowup`` times the lowest smoothed
   value, gives back a share ``give_back`` of what it gained since the first
   call (Adam's overshoot tends to send a loss back towards the chance
   level, not to infinity), stops being finite, or at its last call; the
   caller then rewinds the params to the lowest smoothed loss; a call's own
   loss past ``1 + rise`` times the first call's also ends it;
3. ``next_lr``: the sweep's LR until it stops, then ``shrink`` times the LR
   of the lowest smoothed loss (``found_lr``), which is also the
   controller's initial LR after the last sweep call; a sweep whose loss
   fell less than ``min_gain`` hands over the user's LR instead.
"""

import math
from typing import Any, NamedTuple, Tuple

import chex
import jax
import jax.numpy as jnp

__all__ = ["SweepSettings", "SweepStats", "found_lr", "gained", "init",
           "next_lr", "num_sweep_steps", "observe", "settings_from_pairs",
           "sweep_lr"]


class SweepSettings(NamedTuple):
  """The range test's settings (``lr_meta.optax.range_tested``'s arguments).

  Attributes:
    fraction: the share of the run spent on the sweep.
    span: the sweep covers ``[lr0 / span, lr0 * span]``.
    shrink: the controller starts from ``shrink`` times the LR of the lowest
      smoothed loss.
    smoothing: the loss EMA's decay.
    blowup: stop when the smoothed loss, or a call's own loss, exceeds
      ``blowup`` times the lowest smoothed loss.
    min_steps: the sweep's fewest calls.
    rewind: when the sweep ends (early, or at its last call), the params go
      back to those of the lowest smoothed loss and the base optimizer
      restarts at the found LR.
    give_back: stop when the smoothed loss climbs back by this share of its
      fall from the first call's loss (counted once it is ``min_gain``
      below it).
    min_gain: the sweep is evidence only if its lowest smoothed loss is
      this share below the first call's loss; without it (a conv net still
      at chance level after a few percent of its run) the controller starts
      from the user's LR, not from a noise minimum.
    rise: stop when a call's own loss exceeds the first call's by this
      share, even without a gain: a loss at chance level that climbs is
      the step before a divergence.
  """
  fraction: float = 0.05
  span: float = 300.0
  shrink: float = 0.3
  smoothing: float = 0.8
  blowup: float = 4.0
  min_steps: int = 10
  rewind: bool = True
  give_back: float = 0.5
  min_gain: float = 0.02
  rise: float = 0.1

  def check(self, prefix: str = "range_test") -> "SweepSettings":
    """Raises ValueError naming a bad field and its allowed values."""
    for name, low, high in (("fraction", 0.0, 0.5), ("give_back", 0.0, 1.01),
                            ("smoothing", 0.0, 1.0), ("shrink", 0.0, 1.0),
                            ("min_gain", 0.0, 1.0), ("rise", 0.0, 100.0)):
      value = getattr(self, name)
      if not low < value < high:
        raise ValueError(f"{prefix}.{name}={value!r}; allowed: {low} < "
                         f"{name} < {high}.")
    for name in ("span", "blowup"):
      value = getattr(self, name)
      if not value > 1.0:
        raise ValueError(f"{prefix}.{name}={value!r}; allowed: a number > 1.")
    if (not isinstance(self.min_steps, int) or isinstance(self.min_steps, bool)
        or self.min_steps < 2):
      raise ValueError(f"{prefix}.min_steps={self.min_steps!r}; allowed: an "
                       "integer >= 2.")
    if not isinstance(self.rewind, bool):
      raise ValueError(f"{prefix}.rewind={self.rewind!r}; allowed: True or "
                       "False.")
    return self

  def pairs(self) -> Tuple[Tuple[str, Any], ...]:
    """``(name, value)`` of every field (hashable and JSON-serialisable)."""
    return tuple(self._asdict().items())


def settings_from_pairs(pairs, prefix: str = "range_test") -> SweepSettings:
  """Checked ``SweepSettings`` of ``(name, value)`` pairs or a mapping (the
  others at their defaults).

  Raises:
    ValueError: an unknown name (the known ones listed) or a bad value.
  """
  given = dict(pairs.items() if hasattr(pairs, "items") else pairs)
  unknown = sorted(set(given) - set(SweepSettings._fields))
  if unknown:
    raise ValueError(f"{prefix} has unknown fields {unknown}; known: "
                     f"{list(SweepSettings._fields)}.")
  # JSON and flags give ints for floats; a float field is made a float so
  # equal settings compare (and hash) equal. Other types are left to check.
  given = {k: float(v) if (isinstance(SweepSettings._field_defaults[k], float)
                           and isinstance(v, int) and not isinstance(v, bool))
           else v for k, v in given.items()}
  return SweepSettings(**given).check(prefix)


class SweepStats(NamedTuple):
  """What the sweep has seen so far.

  Attributes:
    smoothed: the loss EMA's accumulator (not bias-corrected).
    start: the loss of the first call (float32).
    best: the lowest bias-corrected smoothed loss so far (float32).
    best_lr: the LR whose update led to ``best`` (float32).
    stopped: the sweep has ended (the loss turned up, stopped being
      finite, or its last call came).
  """
  smoothed: jax.Array
  start: jax.Array
  best: jax.Array
  best_lr: jax.Array
  stopped: jax.Array


def num_sweep_steps(num_steps, settings: SweepSettings):
  """The sweep's calls, ``max(min_steps, ceil(fraction * num_steps))``; an
  int for an int ``num_steps``, an int32 array for a traced one."""
  if isinstance(num_steps, int):
    # Rounded first, so that e.g. 0.05 * 1000 is 50 calls, not 51.
    return max(settings.min_steps,
               math.ceil(round(settings.fraction * num_steps, 6)))
  t = jnp.asarray(num_steps, jnp.float32)
  calls = jnp.ceil(jnp.round(settings.fraction * t * 1e6) / 1e6)
  return jnp.maximum(settings.min_steps, calls).astype(jnp.int32)


def sweep_lr(t: chex.Numeric, lr0: chex.Numeric, span: float,
             num_sweep) -> jnp.ndarray:
  """The sweep's LR at call ``t``: ``lr0 * span ** (2 t / (P - 1) - 1)``,
  from ``lr0 / span`` at call 0 to ``lr0 * span`` at call ``P - 1``."""
  frac = jnp.asarray(t, jnp.float32) / jnp.maximum(
      jnp.asarray(num_sweep, jnp.float32) - 1.0, 1.0)
  return jnp.asarray(lr0, jnp.float32) * jnp.exp(
      (2.0 * frac - 1.0) * jnp.log(jnp.float32(span)))


def init(first_lr: chex.Numeric) -> SweepStats:
  """The stats before call 0 (``best_lr`` the first LR until one is
  credited)."""
  return SweepStats(smoothed=jnp.zeros([], jnp.float32),
                    start=jnp.zeros([], jnp.float32),
                    best=jnp.asarray(jnp.inf, jnp.float32),
                    best_lr=jnp.asarray(first_lr, jnp.float32),
                    stopped=jnp.asarray(False))


def observe(stats: SweepStats, settings: SweepSettings, t: chex.Numeric,
            loss: chex.Numeric, previous_lr: chex.Numeric, num_sweep):
  """The stats after call ``t``'s loss, credited to ``previous_lr`` (the LR
  of call ``t - 1``).

  The sweep ends at the call where the loss turns up (the smoothed loss
  past ``blowup`` times its lowest value or giving back ``give_back`` of
  its gain; the call's own loss past ``blowup`` times that lowest value,
  since the EMA lags a jump that one more call at the sweep's rising LR
  turns into a divergence), where the loss is not finite, and at its last
  call (``num_sweep - 1``) at the latest: the damage of the sweep's last,
  largest LRs is not yet visible in the loss, so the run always goes back
  to the lowest smoothed loss (the caller's rewind).

  Returns:
    ``(stats, improved, ends)``: ``improved`` when the loss is the lowest
    smoothed one so far (the caller keeps a snapshot of the params there),
    ``ends`` at the call where the sweep ends (the caller rewinds there).
  """
  s = settings
  t = jnp.asarray(t, jnp.int32)
  loss = jnp.asarray(loss, jnp.float32)
  chex.assert_rank(loss, 0)
  smoothed = s.smoothing * stats.smoothed + (1.0 - s.smoothing) * loss
  corrected = smoothed / (1.0 - s.smoothing ** (t + 1).astype(jnp.float32))
  finite = jnp.isfinite(loss)
  # Call 0's loss is the initial params'; later ones follow the previous
  # call's LR.
  credited = (t >= 1) & finite & ~stats.stopped
  improved = credited & (corrected < stats.best)
  best = jnp.where(improved, corrected, stats.best)
  best_lr = jnp.where(improved, jnp.asarray(previous_lr, jnp.float32),
                      stats.best_lr)
  start = jnp.where(t == 0, loss, stats.start)
  too_high = (corrected > s.blowup * best) | (loss > s.blowup * best)
  too_high |= gained(best, start, s) & (
      corrected > best + s.give_back * (start - best))
  too_high |= loss > (1.0 + s.rise) * start
  last = t >= jnp.asarray(num_sweep, jnp.int32) - 1
  stopped = stats.stopped | ~finite | (credited & too_high) | last
  new = SweepStats(smoothed=jnp.where(finite, smoothed, stats.smoothed),
                   start=start, best=best, best_lr=best_lr, stopped=stopped)
  return new, improved, stopped & ~stats.stopped


def gained(best, start, settings: SweepSettings) -> jnp.ndarray:
  """Whether the lowest smoothed loss is ``min_gain`` below the first's."""
  return best < (1.0 - settings.min_gain) * start


def found_lr(stats: SweepStats, settings: SweepSettings,
             lr0: chex.Numeric) -> jnp.ndarray:
  """The controller's initial LR: ``shrink`` x the LR of the lowest smoothed
  loss, or the user's ``lr0`` when the sweep gained too little to be
  evidence (``min_gain``)."""
  return jnp.where(gained(stats.best, stats.start, settings),
                   stats.best_lr * settings.shrink,
                   jnp.asarray(lr0, jnp.float32))


def next_lr(stats: SweepStats, settings: SweepSettings, t: chex.Numeric,
            lr0: chex.Numeric, num_sweep) -> jnp.ndarray:
  """The LR of call ``t`` after ``observe``: the sweep's until it stopped,
  then ``found_lr``."""
  return jnp.where(stats.stopped, found_lr(stats, settings, lr0),
                   sweep_lr(t, lr0, settings.span, num_sweep))
