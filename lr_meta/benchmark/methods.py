"""Benchmark methods: tuned references and self-tuning optimizers.

Every method has one shape (``Method``): a name, a kind, a compile family
and ``build(workload, task) -> (Program, settings)``. The ``Program``
(``lr_meta.tasks.optax_training``) says how to build the optax transform,
what extra arguments it needs per step, where to evaluate and what its step
size is; the settings are its hyperparameters, traced, so that every
setting of one family on one workload runs in ONE compiled program.

Two kinds, kept apart in every table:

* ``'tuned'`` references: a grid of settings per workload, tuned on the
  validation loss of the ``'benchmark_tuning'`` seeds (``lr_meta.seeds``);
  the best is re-run on the evaluation seeds.
* ``'self_tuning'``: exactly ONE setting, the same on every workload (it may
  depend on what the workload states: its base optimizer, default initial
  LR and horizon, never on its results).

Adding a self-tuning method: write a ``Program`` (or reuse one) and register
``Method(name, SELF_TUNING, family, build)`` in ``METHODS`` with a ``build``
that returns ``(program, [Setting(label, hp)])``. Learned controllers need
nothing: ``'controller:<name>'`` runs any shipped controller
(``lr_meta.optax.pretrained_names()``) and ``'controller:<path>'`` any
controller file, through ``lr_meta.optax.controlled`` as a user would.
"""

import dataclasses
import functools
import hashlib
import itertools
import os
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import baselines
from lr_meta import optax as lmo
from lr_meta import tasks
from lr_meta.benchmark import workloads as workloads_lib
from lr_meta.features import observation as observation_lib
from lr_meta.features import range_sweep
from lr_meta.tasks import optax_training

TUNED = "tuned"
SELF_TUNING = "self_tuning"
KINDS = (TUNED, SELF_TUNING)

# The references every score is relative to (always run; see ``resolve``).
REFERENCE = "cosine"
BEST_CONSTANT = "best_constant"
WARMUP_COSINE = "warmup_cosine"
STEP_DECAY = "step_decay"
DEFAULT_LR = "default_lr"   # the base optimizer untuned
# Every score is relative to the strongest of these per workload (by its
# tuning validation loss): they always run (``resolve``).
REFERENCES = (BEST_CONSTANT, REFERENCE, WARMUP_COSINE, STEP_DECAY)

# Initial LRs of the tuned grids, half decades around the usual ranges
# (baselines.DEFAULT_GRID_LRS / ADAPTIVE_GRID_LRS, one point wider).
GRID_LRS = {
    "sgd": (1.0, 0.3, 0.1, 0.03, 0.01, 0.003),
    "momentum": (0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
    "adam": (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
    "adamw": (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
    "rmsprop": (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
}
WARMUP_FRACTION = 0.05


class NotApplicable(ValueError):
  """A method that cannot run on a workload (e.g. a controller that reads
  class predictions on a regression loss): the benchmark leaves its cells
  out there and says why, instead of failing the suite."""


class Setting(NamedTuple):
  """One hyperparameter point: ``label`` names it in tables and caches.

  ``point``: a tuned setting's coordinates on its grid's axes (sorted
  ``(axis, value)`` pairs), for extending the grid (``GridAxis``).
  """
  label: str
  hp: Any
  point: tuple = ()


class GridAxis(NamedTuple):
  """One axis of a tuned reference's grid and how it extends past an edge.

  Attributes:
    name: the axis (``'lr'``, ``'every_fraction'``, ``'factor'``).
    values: the first grid's values.
    lower, upper: ``value -> the next value beyond that end`` (None where
      the axis is bounded: the grid is not extended there).
  """
  name: str
  values: tuple
  lower: Optional[Callable[[float], Optional[float]]]
  upper: Optional[Callable[[float], Optional[float]]]


# A winner on an edge of its grid extends the grid by one point along that
# axis (from the winner's other coordinates), at most this many times per
# tuned method and workload.
MAX_GRID_EXTENSIONS = 4


def _half_decade(value: float, up: bool) -> float:
  """The next point of a 1-3-10 grid (the LR grids' half decades)."""
  target = value * 10 ** (0.5 if up else -0.5)
  k = np.floor(np.log10(target))
  candidates = [10 ** (k + j) * m for j in (-1, 0, 1) for m in (1, 3)]
  return float(f"{min(candidates, key=lambda c: abs(np.log(c / target))):.1g}")


@dataclasses.dataclass(frozen=True)
class Method:
  """A benchmark method (see the module docstring).

  Attributes:
    name: the name in tables and on the command line.
    kind: ``'tuned'`` or ``'self_tuning'``.
    family: methods of one family share a compiled program per workload
      (all LR schedules: ``'schedule'``).
    build: ``(workload, task) -> (Program, [Setting, ...])``; one setting
      for a self-tuning method.
    description: what it is and its fixed setting, for the report.
  """
  name: str
  kind: str
  family: str
  build: Callable[[workloads_lib.Workload, tasks.Task],
                  Tuple[optax_training.Program, List[Setting]]]
  description: str
  # Tuned methods: ``(workload, settings, best index) -> new settings``
  # beyond the grid's edge where the winner sits (``extend_grid``).
  extend: Optional[Callable[[workloads_lib.Workload, Sequence[Setting],
                             int], List[Setting]]] = None
  # Learned controllers: what they were trained on (held-out checks).
  trained_on: Tuple[workloads_lib.TrainingTask, ...] = ()

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Method {self.name!r}: kind={self.kind!r}; allowed: "
                       f"{KINDS}.")


# -- tuned references: schedules through the task's own optimizer ----------


def _schedule_program(workload):
  return optax_training.ScheduledOptimizer(workload.optimizer,
                                           workload.optimizer_kwargs)


def _schedule_settings(workload, specs):
  return [Setting(s.label(), {"learning_rates": s.sequence(workload.num_steps)})
          for s in specs]


def _lr_axis_of(optimizer: str) -> GridAxis:
  """The tuned LR axis of ``optimizer``'s grid, extended by half decades."""
  return GridAxis("lr", GRID_LRS[optimizer],
                  lambda v: _half_decade(v, up=False),
                  lambda v: _half_decade(v, up=True))


def _lr_axis(workload) -> GridAxis:
  return _lr_axis_of(workload.optimizer)


def _schedule_spec(schedule, workload, point) -> baselines.ScheduleSpec:
  """The spec of a grid point: ``lr`` is the peak LR; 'every_fraction' is
  step decay's period as a fraction of the horizon."""
  coords = dict(point)
  lr = coords.pop("lr")
  if "every_fraction" in coords:
    coords["every"] = max(1, int(round(coords.pop("every_fraction")
                                       * workload.num_steps)))
  return baselines.ScheduleSpec(schedule, float(lr),
                                tuple(sorted(coords.items())))


def _grid_setting(schedule, workload, point) -> Setting:
  spec = _schedule_spec(schedule, workload, point)
  return Setting(spec.label(),
                 {"learning_rates": spec.sequence(workload.num_steps)},
                 tuple(sorted(point)))


def extend_grid(axes: Sequence[GridAxis], settings: Sequence[Setting],
                best: int) -> List[tuple]:
  """Points beyond the grid's edge where the winner ``settings[best]`` sits.

  For each axis on which the winner holds the smallest (largest) value
  among the settings that share its other coordinates, one new point: the
  winner with that axis moved one step further (``GridAxis.lower`` /
  ``upper``), unless the axis is bounded there or the point exists.
  """
  winner = dict(settings[best].point)
  have = {tuple(sorted(s.point)) for s in settings}
  new = []
  for axis in axes:
    line = [dict(s.point)[axis.name] for s in settings
            if all(dict(s.point).get(k) == v for k, v in winner.items()
                   if k != axis.name)]
    if len(set(line)) < 2:
      continue
    value = winner[axis.name]
    for edge, step in ((min(line), axis.lower), (max(line), axis.upper)):
      if value != edge or step is None:
        continue
      beyond = step(value)
      if beyond is None:
        continue
      point = tuple(sorted(dict(winner, **{axis.name: beyond}).items()))
      if point not in have:
        have.add(point)
        new.append(point)
  return new


def _tuned_grid(name, family, program_fn, setting_fn, axes_fn, description,
                extends=True):
  """A tuned method: ``setting_fn(workload, point)`` over the product of
  ``axes_fn(workload)`` (``GridAxis``es) through ``program_fn(workload)``,
  extended past an edge where the winner sits (unless ``extends`` is
  False: a fixed grid). ``program_fn`` may raise ``NotApplicable``."""
  def build(workload, task):
    del task
    program = program_fn(workload)
    points = itertools.product(*[[(a.name, v) for v in a.values]
                                 for a in axes_fn(workload)])
    return program, [setting_fn(workload, p) for p in points]

  def extend(workload, settings, best):
    return [setting_fn(workload, p)
            for p in extend_grid(axes_fn(workload), settings, best)]

  return Method(name, TUNED, family, build, description,
                extend if extends else None)


def _tuned_schedule(name, schedule, axes_fn, description):
  """A tuned reference: ``schedule`` through the workload's own optimizer."""
  return _tuned_grid(name, "schedule", _schedule_program,
                     functools.partial(_grid_setting, schedule), axes_fn,
                     description)


def _step_decay_axes(workload):
  del workload
  return [
      # Period as a fraction of the run: more often, down to 1 step;
      # 1/2 is the top (a longer period is a constant LR, its own grid).
      GridAxis("every_fraction", (0.25, 0.5), lambda v: v / 2, None),
      # Decay factor: a half decade smaller, or its square root (< 0.95).
      GridAxis("factor", (0.1, 0.3),
               lambda v: _half_decade(v, up=False) if v > 1e-3 else None,
               lambda v: float(f"{v ** 0.5:.2g}") if v ** 0.5 < 0.95
               else None),
  ]


# -- AdamW with warm-up + cosine on any workload -------------------------------
#
# One program for every AdamW setting (the weight decay is a traced
# hyperparameter, ``ScheduledOptimizer``): the tuned AdamW of SGD workloads,
# the calibrated single configuration and the grid it was chosen from.

ADAMW_FAMILY = "adamw_warmup_cosine"
# Kasimbeg et al. 2025's "calibrated single configuration": AdamW, linear
# warm-up over WARMUP_FRACTION then cosine to 0, ONE peak LR and weight decay
# for every workload, chosen on TRAIN workloads only: the eight of suite
# cpu_v1, the cpu suite's train side when it was chosen
# (``benchmarks/calibrate_adamw.py --workloads=<those eight>``: the grid
# point with the lowest mean over them of its tuning validation loss
# relative to the best grid point there; BUILD_NOTES "LR-free methods in
# their authors' setups, two new references").
CALIBRATED_ADAMW = dict(lr=1e-2, weight_decay=1e-4)
CALIBRATION_LRS = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4)
CALIBRATION_WEIGHT_DECAYS = (1e-4, 1e-2, 1e-1)
SGD_BASES = ("sgd", "momentum")


def _adamw_program(workload):
  del workload
  return optax_training.ScheduledOptimizer("adamw")


def _adamw_setting(workload, point) -> Setting:
  """AdamW, warm-up + cosine at ``point`` (``lr``, ``weight_decay``)."""
  coords = dict(point)
  weight_decay = float(coords.pop("weight_decay"))
  spec = _schedule_spec("warmup_cosine", workload, dict(
      coords, warmup_fraction=WARMUP_FRACTION).items())
  label = f"adamw {spec.label()[:-1]}, weight_decay={weight_decay:g})"
  return Setting(label, {"learning_rates": spec.sequence(workload.num_steps),
                         "weight_decay": np.float32(weight_decay)},
                 tuple(sorted(point)))


def _sgd_base_adamw_program(workload):
  if workload.optimizer not in SGD_BASES:
    raise NotApplicable(
        f"tuned AdamW runs on SGD workloads ({SGD_BASES}) only; workload "
        f"{workload.name!r} already trains with {workload.optimizer!r}, "
        "whose tuned references measure the same thing")
  return _adamw_program(workload)


def _calibrated_adamw_build(workload, task):
  del task
  point = tuple(sorted(CALIBRATED_ADAMW.items()))
  return _adamw_program(workload), [_adamw_setting(workload, point)]


def _default_lr_build(workload, task):
  del task
  spec = baselines.ScheduleSpec("constant", float(workload.initial_lr))
  return _schedule_program(workload), _schedule_settings(workload, [spec])


# -- self-tuning: optax.contrib ---------------------------------------------


def _schedule_free_lr(hp, state):
  del hp
  return lmo.find_state(state, optax.contrib.ScheduleFreeState).max_lr


def _prodigy_lr(hp, state):
  del hp
  return lmo.find_state(state, optax.contrib.ProdigyState).estim_lr


def _dadapt_lr(hp, state):
  del hp
  return lmo.find_state(state, optax.contrib.DAdaptAdamWState).estim_lr


def _dog_lr(hp, state):
  del hp
  s = lmo.find_state(state, optax.contrib.DoGState)
  return s.max_dist / jnp.sqrt(s.sum_sq_norm_grads + 1e-8)   # dog's eps


def _dowg_lr(hp, state):
  del hp
  s = lmo.find_state(state, optax.contrib.DoWGState)
  return s.estim_sq_dist / (jnp.sqrt(s.weighted_sq_norm_grads) + 1e-4)


def _schedule_free_eval(hp, state, params):
  del hp
  return optax.contrib.schedule_free_eval_params(
      lmo.find_state(state, optax.contrib.ScheduleFreeState), params)


def _no_lr(hp, state):
  del hp, state
  return jnp.asarray(jnp.nan, jnp.float32)


def _same_params(hp, state, params):
  del hp, state
  return params


@dataclasses.dataclass(frozen=True)
class Contrib(optax_training.Program):
  """An ``optax.contrib`` optimizer at fixed keyword arguments.

  Attributes:
    factory: the name in ``optax.contrib`` (``'prodigy'``, ...).
    kwargs: sorted ``(name, value)`` pairs.
    lr_fn: ``(hp, opt_state) -> step size`` (its meaning is the method's).
    eval_fn: ``(hp, opt_state, params) -> params`` to evaluate.
  """
  factory: str
  kwargs: tuple = ()
  lr_fn: Callable = _no_lr
  eval_fn: Callable = _same_params

  def optimizer(self, hp):
    del hp
    return getattr(optax.contrib, self.factory)(**dict(self.kwargs))

  def learning_rate(self, hp, opt_state):
    return jnp.asarray(self.lr_fn(hp, opt_state), jnp.float32)

  def eval_params(self, hp, opt_state, params):
    return self.eval_fn(hp, opt_state, params)


def _warmup_steps(workload):
  return max(1, int(round(WARMUP_FRACTION * workload.num_steps)))


@dataclasses.dataclass(frozen=True)
class ScheduledContrib(Contrib):
  """An ``optax.contrib`` optimizer whose ``learning_rate`` multiplier is a
  per-step sequence, ``hp = {'lr_multipliers': (T,) float32}``: warm-up +
  cosine peaking at 1 (``baselines.warmup_cosine``, the references' own
  shape, never exactly 0: at a multiplier of 0 Prodigy's estimate is 0/0).
  This is Prodigy's and D-Adaptation's authors' setup (Mishchenko & Defazio
  2023, Defazio & Mishchenko 2023 pair the estimated step size with a
  cosine and, for transformers, a warm-up). The reported step size is the
  method's estimate times the multiplier."""

  def optimizer(self, hp):
    return getattr(optax.contrib, self.factory)(
        learning_rate=optax_training.sequence_schedule(hp["lr_multipliers"]),
        **dict(self.kwargs))

  def learning_rate(self, hp, opt_state):
    # The step just taken used the multiplier at count - 1.
    step = optax.tree_utils.tree_get(opt_state, "count") - 1
    return (jnp.asarray(self.lr_fn(hp, opt_state), jnp.float32)
            * optax_training.sequence_schedule(hp["lr_multipliers"])(step))


@dataclasses.dataclass(frozen=True)
class Averaged(Contrib):
  """An ``optax.contrib`` optimizer evaluated at the polynomial-decay average
  of its iterates (``lmo.polynomial_average``; Ivgi et al. 2023 report DoG
  with it, gamma = 8)."""
  gamma: float = 8.0

  def optimizer(self, hp):
    return optax.chain(super().optimizer(hp),
                       lmo.polynomial_average(self.gamma))

  def eval_params(self, hp, opt_state, params):
    del hp, params
    return lmo.averaged_params(opt_state)


def _scheduled_contrib_method(name, factory, description, lr_fn):
  def build(workload, task):
    del task
    spec = baselines.ScheduleSpec("warmup_cosine", 1.0, (
        ("warmup_fraction", WARMUP_FRACTION),))
    hp = {"lr_multipliers": spec.sequence(workload.num_steps)}
    return (ScheduledContrib(factory, (), lr_fn),
            [Setting(f"{factory}(learning_rate={spec.label()})", hp)])
  return Method(name, SELF_TUNING, name, build, description)


def _dog_averaged_build(workload, task):
  del workload, task
  program = Averaged("dog", (), _dog_lr, _same_params, 8.0)
  return program, [Setting("dog() + polynomial_average(gamma=8)", {})]


# Schedule-free SGD's LR: Defazio et al.'s recommendation, "a learning rate
# 10x-50x larger than classical rates" (facebookresearch/schedule_free
# README), at its low end, from the workload's default SGD LR.
SCHEDULE_FREE_SGD_LR_FACTOR = 10.0


def _schedule_free_sgd_kwargs(workload):
  if workload.optimizer not in SGD_BASES:
    raise NotApplicable(
        f"schedule-free SGD's LR rule is {SCHEDULE_FREE_SGD_LR_FACTOR:g}x "
        f"the workload's default SGD LR; workload {workload.name!r} trains "
        f"with {workload.optimizer!r} (its matched schedule-free method is "
        "schedule_free_adamw)")
  return dict(learning_rate=SCHEDULE_FREE_SGD_LR_FACTOR * workload.initial_lr,
              warmup_steps=_warmup_steps(workload))


def _contrib_method(name, kwargs_fn, description, lr_fn=_no_lr,
                    eval_fn=_same_params):
  def build(workload, task):
    del task
    kwargs = tuple(sorted(kwargs_fn(workload).items()))
    label = name + "(" + ", ".join(f"{k}={v}" for k, v in kwargs) + ")"
    return Contrib(name, kwargs, lr_fn, eval_fn), [Setting(label, {})]
  return Method(name, SELF_TUNING, name, build, description)


@dataclasses.dataclass(frozen=True)
class Mechanized(optax_training.Program):
  """``optax.contrib.mechanize`` around the workload's base optimizer at LR 1
  (Cutkosky et al. 2023: Mechanic learns the scale of the base updates)."""
  optimizer_name: str
  optimizer_kwargs: tuple = ()

  def optimizer(self, hp):
    del hp
    base = tasks.make_optimizer(self.optimizer_name, learning_rate=1.0,
                                **dict(self.optimizer_kwargs))
    return optax.contrib.mechanize(base)

  def learning_rate(self, hp, opt_state):
    del hp
    return jnp.sum(lmo.find_state(opt_state, optax.contrib.MechanicState).s)


@dataclasses.dataclass(frozen=True)
class Plateau(optax_training.Program):
  """The base optimizer at its default LR, then
  ``optax.contrib.reduce_on_plateau`` fed each step's training loss."""
  optimizer_name: str
  initial_lr: float
  plateau_kwargs: tuple
  optimizer_kwargs: tuple = ()

  def optimizer(self, hp):
    del hp
    return optax.chain(
        tasks.make_optimizer(self.optimizer_name,
                             learning_rate=self.initial_lr,
                             **dict(self.optimizer_kwargs)),
        optax.contrib.reduce_on_plateau(**dict(self.plateau_kwargs)))

  def extra_args(self, task, hp, state, loss):
    del task, hp, state
    return {"value": loss}

  def learning_rate(self, hp, opt_state):
    del hp
    scale = lmo.find_state(opt_state,
                           optax.contrib.ReduceLROnPlateauState).scale
    return self.initial_lr * scale


# One fixed setting: the batch loss averaged over 10 steps is the plateau
# signal (optax recommends accumulating noisy minibatch losses); 5 such
# windows (50 steps) without a 1e-4 relative improvement halve the LR.
PLATEAU_KWARGS = dict(factor=0.5, patience=5, accumulation_size=10, rtol=1e-4,
                      cooldown=0)


def _plateau_build(workload, task):
  del task
  kwargs = tuple(sorted(PLATEAU_KWARGS.items()))
  program = Plateau(workload.optimizer, float(workload.initial_lr), kwargs,
                    workload.optimizer_kwargs)
  label = "reduce_on_plateau(" + ", ".join(f"{k}={v}" for k, v in kwargs)
  return program, [Setting(f"{label}, lr0={workload.initial_lr:g})", {})]


def _mechanize_build(workload, task):
  del task
  return (Mechanized(workload.optimizer, workload.optimizer_kwargs),
          [Setting(f"mechanize({workload.optimizer}(lr=1))", {})])


# -- self-tuning: learned controllers ---------------------------------------

CONTROLLER_PREFIX = "controller:"


@dataclasses.dataclass(frozen=True)
class Controlled(optax_training.Program):
  """A learned controller through ``lr_meta.optax.controlled``, as users run it.

  The base optimizer is the workload's at its default initial LR
  (``optax.inject_hyperparams``). An 'every' controller decides every
  ``steps_per_decision`` steps (fields of ``spec.observation_spec``);
  'dynamics' controllers get the softmax
  predictions and the loss of a fixed probe, the first
  ``min(num_val_examples, validation size)`` validation examples;
  progress controllers see ``num_steps // steps_per_decision`` decisions as
  the run's horizon. A 'fraction' controller (a scale-free generalist)
  decides at fixed fractions of ``num_steps`` and gets the probe's loss
  only. The probe runs only when a decision is due (``lmo.probe_inputs``),
  and the LR is read with ``lmo.current_lr``. ``hp`` holds the
  controller's network params (traced).

  ``observed_layers``: the (first, last) layers whose kernel moments an
  'xu2019' observation reads; None (what the benchmark passes) keeps
  ``controlled``'s default (``observation.resolve_layers``: the first and
  last dense layers, or the first and last kernels of a model without
  one, e.g. the all-conv SmallCNN).
  """
  spec: Any
  optimizer_name: str
  initial_lr: float
  num_steps: int
  probe_size: int
  num_classes: int
  optimizer_kwargs: tuple = ()
  observed_layers: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]] = None
  # Prediction rows per probe example (a language model's window length).
  positions: int = 1
  # ``(name, value)`` arguments of ``lmo.range_tested``: an LR range test
  # for the first calls, then the controller ('fraction' controllers only);
  # empty: the controller from the first call.
  range_test: tuple = dataclasses.field(
      default=(), metadata={"cache_key": "omit_default"})

  @property
  def _observes_predictions(self):
    return observation_lib.observation_parts(
        self.spec.observation_kind).dynamics

  @property
  def _observes_val_loss(self):
    return self._observes_predictions or (
        self.spec.observation_kind == observation_lib.SCALE_FREE)

  def optimizer(self, hp):
    base = tasks.make_optimizer(self.optimizer_name,
                                learning_rate=self.initial_lr,
                                **dict(self.optimizer_kwargs))
    controller = lmo.Controller(self.spec, hp["controller"])
    if self.spec.observation_spec.decision_schedule == "fraction":
      if self.range_test:
        return lmo.range_tested(base, controller, num_steps=self.num_steps,
                                **dict(self.range_test))
      return lmo.controlled(base, controller, num_steps=self.num_steps)
    every = self.spec.observation_spec.steps_per_decision
    first, last = self.observed_layers or (None, None)
    return lmo.controlled(
        base, controller,
        predictions_shape=((self.probe_size * self.positions, self.num_classes)
                           if self._observes_predictions else None),
        first_dense=first, last_dense=last,
        num_decisions=(self.num_steps // every
                       if self.spec.uses_progress else None))

  def extra_args(self, task, hp, state, loss):
    del hp
    if not self._observes_val_loss:
      return {"loss": loss}
    x, y = task.first_examples("val", self.probe_size, "probe_size")
    apply_fn = lambda params, x: task.apply(params, state.batch_stats, x)[0]
    if self._observes_predictions:   # logits: the probe's cross entropy
      return dict(loss=loss, **lmo.probe_inputs(state.opt_state, apply_fn,
                                                state.params, x, y))
    # The task's own loss (any objective), as in the environment.
    loss_fn = lambda outputs, y: jnp.mean(task.per_example_loss(outputs, x, y))
    return dict(loss=loss, **lmo.probe_inputs(state.opt_state, apply_fn,
                                              state.params, x, y,
                                              loss_fn=loss_fn))

  def learning_rate(self, hp, opt_state):
    del hp
    return lmo.current_lr(opt_state)

  def num_decisions(self, num_steps: int) -> int:
    """Decisions in a run: at fixed fractions, the spec's ``num_decisions``;
    'every': at steps 0, K, 2K, ... below ``num_steps``."""
    if self.spec.observation_spec.decision_schedule == "fraction":
      return int(self.spec.observation_spec.num_decisions)
    return -(-num_steps // self.spec.observation_spec.steps_per_decision)

  def probe_examples(self, num_steps: int) -> int:
    """The probe's examples at every decision, if it reads a probe."""
    if not self._observes_val_loss:
      return 0
    return self.num_decisions(num_steps) * self.probe_size


def range_test_fields(**given) -> tuple:
  """``Controlled.range_test`` for ``lmo.range_tested``'s keyword arguments
  ``given`` (numbers or their strings): every setting, with the defaults
  (``range_sweep.SweepSettings``) for the rest, as sorted ``(name, value)``
  pairs, so that a run's cache key names them all whatever the defaults
  become.

  Raises:
    ValueError: a name ``range_tested`` does not take, or a value that is
      not of its default's type.
  """
  defaults = range_sweep.SweepSettings()._asdict()
  out = dict(defaults)
  for name, value in given.items():
    if name not in defaults:
      raise ValueError(f"range test setting {name!r}; allowed: "
                       f"{sorted(defaults)}.")
    kind = type(defaults[name])
    try:
      out[name] = (bool(int(value)) if kind is bool else kind(value))
    except (TypeError, ValueError):
      raise ValueError(f"range test setting {name}={value!r}; allowed: a "
                       f"{kind.__name__}.") from None
  return tuple(sorted(out.items()))


def _names_a_file(target: str) -> bool:
  """``'controller:<target>'`` names a file (else a shipped controller)."""
  return target.endswith(".msgpack") or os.sep in target


def load_named_controller(name: str):
  """The controller of ``'controller:<name or path>'``."""
  if _names_a_file(name):
    if not os.path.isfile(name):
      raise ValueError(f"No controller file {name!r}.")
    return lmo.load_controller(name)
  return lmo.pretrained_controller(name)


def _params_digest(params) -> str:
  data = flax.serialization.to_bytes(jax.device_get(params))
  return hashlib.sha256(data).hexdigest()[:12]


def controller_program(spec, workload, task) -> Controlled:
  """The ``Controlled`` program of a controller with ``spec`` on a workload.

  Its params are the program's ``hp['controller']`` (traced), so one
  compiled program serves every set of params of the same spec (e.g. the
  snapshots of a meta-training scored on the train side).
  """
  dynamics = observation_lib.observation_parts(spec.observation_kind).dynamics
  if dynamics and not task.objective.has_predictions:
    raise NotApplicable(
        f"controller {spec.name!r} observes class predictions (observation "
        f"{spec.observation_kind!r}); workload {workload.name!r} trains "
        f"{task.objective.description}, which has none")
  val = task.num_examples("val")
  probe = min(spec.observation_spec.num_val_examples or val, val)
  return Controlled(spec, workload.optimizer, float(workload.initial_lr),
                    workload.num_steps, probe, task.num_classes,
                    workload.optimizer_kwargs,
                    positions=task.context_length or 1)


def controller_setting(controller) -> Setting:
  """The one setting of a controller: its params, labelled by digest."""
  params = jax.tree.map(np.asarray, jax.device_get(controller.params))
  return Setting(f"{controller.spec.name}@{_params_digest(params)}",
                 {"controller": params})


def controller_method(name: str) -> Method:
  """The self-tuning method ``'controller:<name or path>'``."""
  controller = load_named_controller(name)
  spec = controller.spec
  setting = controller_setting(controller)

  def build(workload, task):
    return controller_program(spec, workload, task), [setting]

  try:
    trained_on = workloads_lib.training_tasks(spec)
    trained = "trained on " + "; ".join(
        f"{t.dataset} {t.model} {t.optimizer}, {t.num_steps} steps"
        for t in trained_on)
  except ValueError:
    trained_on, trained = (), "training task not recorded"
  # Its own family: two files of one spec name (e.g. a shipped controller
  # and a retrained one) are two methods with two sets of params.
  return Method(CONTROLLER_PREFIX + name, SELF_TUNING,
                CONTROLLER_PREFIX + name, build,
                f"learned controller {spec.name!r} ({spec.agent or 'agent'}, "
                f"observation {spec.observation_kind}, {trained}), through "
                "lr_meta.optax.controlled from the workload's default LR",
                trained_on=tuple(trained_on))


SCHEDULE_PREFIX = "schedule:"


def schedule_grid_method(name: str, specs, description: str) -> Method:
  """Given schedules through the base optimizer: one spec is a fixed
  (self-tuning) schedule, several a fixed grid that the benchmark tunes and
  never extends (a grid given by hand: Xu et al. 2019's 48 points, a
  controller evaluation's configured baselines). Each spec is re-expressed
  for the workload's horizon (``ScheduleSpec.sequence``)."""
  specs = list(specs)
  if not specs:
    raise ValueError(f"Method {name!r} needs at least one schedule spec.")

  def build(workload, task):
    del task
    return _schedule_program(workload), _schedule_settings(workload, specs)

  return Method(name, TUNED if len(specs) > 1 else SELF_TUNING, "schedule",
                build, description)


def fixed_schedule_method(label: str) -> Method:
  """The self-tuning method ``'schedule:<spec>'``: one fixed schedule.

  E.g. ``'schedule:cosine(lr=0.3)'``; nothing is tuned on the workload, so
  it ranks with the untuned methods: a schedule tuned on another workload
  and transferred (Xu et al. 2019, Table 2), or one a user already trusts.
  """
  spec = baselines.parse_spec(label)
  return schedule_grid_method(
      SCHEDULE_PREFIX + spec.label(), [spec],
      f"the fixed schedule {spec.label()} through the base optimizer, "
      "untuned on the workload")


# -- the registry -------------------------------------------------------------

METHODS = {m.name: m for m in [
    _tuned_schedule(
        BEST_CONSTANT, "constant", lambda w: [_lr_axis(w)],
        "constant LR, tuned over a 6-point half-decade grid"),
    _tuned_schedule(
        REFERENCE, "cosine", lambda w: [_lr_axis(w)],
        "cosine decay to 0 (Loshchilov & Hutter 2017), peak LR tuned over "
        "the same grid"),
    _tuned_schedule(
        WARMUP_COSINE, "warmup_cosine",
        lambda w: [_lr_axis(w), GridAxis("warmup_fraction",
                                         (WARMUP_FRACTION,), None, None)],
        f"linear warm-up over {WARMUP_FRACTION:.0%} of the steps, then "
        "cosine; peak LR tuned over the same grid"),
    _tuned_schedule(
        STEP_DECAY, "step_decay",
        lambda w: [_lr_axis(w)] + _step_decay_axes(w),
        "step decay lr * factor ** floor(t / every): LR over the same "
        "grid x every in {T/4, T/2} x factor in {0.1, 0.3} (24 points)"),
    Method(DEFAULT_LR, SELF_TUNING, "schedule", _default_lr_build,
           "the base optimizer at the workload's default constant LR"),
    _contrib_method(
        "schedule_free_sgd", _schedule_free_sgd_kwargs,
        "schedule-free SGD (Defazio et al. 2024) on SGD workloads only, lr "
        f"{SCHEDULE_FREE_SGD_LR_FACTOR:g}x the workload's default (its "
        "authors' 10x-50x rule), b1 0.9, warm-up "
        f"{WARMUP_FRACTION:.0%}; evaluated at schedule_free_eval_params",
        _schedule_free_lr, _schedule_free_eval),
    _contrib_method(
        "schedule_free_adamw",
        lambda w: dict(learning_rate=0.0025, warmup_steps=_warmup_steps(w)),
        "schedule-free AdamW, optax defaults (lr 0.0025, b1 0.9, b2 0.999, "
        f"no weight decay), warm-up {WARMUP_FRACTION:.0%}; evaluated at "
        "schedule_free_eval_params", _schedule_free_lr, _schedule_free_eval),
    _contrib_method("prodigy", lambda w: {},
                    "Prodigy (Mishchenko & Defazio 2023), optax defaults",
                    _prodigy_lr),
    _scheduled_contrib_method(
        "prodigy_cosine", "prodigy",
        "Prodigy with its authors' warm-up + cosine on its LR multiplier "
        f"(warm-up {WARMUP_FRACTION:.0%}, then cosine to 0), optax defaults",
        _prodigy_lr),
    _contrib_method("dog", lambda w: {},
                    "DoG (Ivgi et al. 2023), optax defaults, no averaging",
                    _dog_lr),
    Method("dog_averaged", SELF_TUNING, "dog_averaged", _dog_averaged_build,
           "DoG evaluated at its polynomial-decay average (gamma 8), as its "
           "authors report it"),
    _contrib_method("dowg", lambda w: {},
                    "DoWG (Khaled et al. 2023), optax defaults", _dowg_lr),
    Method("mechanize", SELF_TUNING, "mechanize", _mechanize_build,
           "Mechanic (Cutkosky et al. 2023) around the base optimizer at LR "
           "1, optax defaults"),
    _contrib_method("dadapt_adamw", lambda w: {},
                    "D-Adaptation AdamW (Defazio & Mishchenko 2023), optax "
                    "defaults", _dadapt_lr),
    _scheduled_contrib_method(
        "dadapt_adamw_cosine", "dadapt_adamw",
        "D-Adaptation AdamW with warm-up + cosine on its LR multiplier "
        f"(warm-up {WARMUP_FRACTION:.0%}), optax defaults", _dadapt_lr),
    _contrib_method("cocob", lambda w: {},
                    "COCOB-Backprop (Orabona & Tommasi 2017), optax defaults "
                    "(no step size: LR curve empty)"),
    Method("reduce_on_plateau", SELF_TUNING, "reduce_on_plateau",
           _plateau_build,
           "base optimizer at the default LR with reduce_on_plateau on the "
           "training loss (factor 0.5, patience 5 x 10-step windows)"),
    Method("calibrated_adamw", SELF_TUNING, ADAMW_FAMILY,
           _calibrated_adamw_build,
           "one AdamW configuration for every workload (Kasimbeg et al. "
           f"2025): warm-up {WARMUP_FRACTION:.0%} + cosine, peak lr "
           f"{CALIBRATED_ADAMW['lr']:g}, weight decay "
           f"{CALIBRATED_ADAMW['weight_decay']:g}, chosen on the cpu "
           "suite's train side only"),
    _tuned_grid(
        "tuned_adamw", ADAMW_FAMILY, _sgd_base_adamw_program,
        _adamw_setting,
        lambda w: [_lr_axis_of("adamw"), GridAxis(
            "weight_decay", (CALIBRATED_ADAMW["weight_decay"],), None, None)],
        "on SGD workloads: AdamW (weight decay of calibrated_adamw), "
        f"warm-up {WARMUP_FRACTION:.0%} + cosine, peak LR tuned over AdamW's "
        "grid: the optimizer's choice apart from its LR's tuning"),
]}
STATIC_METHODS = tuple(METHODS)
GROUPS = ("all", TUNED, SELF_TUNING)


# Methods run by name only (not in the groups): Xu et al. 2019's fixed
# 48-point step-decay grid (their Table 2 reference, ``transfer``), and the
# grid ``calibrated_adamw`` was chosen from (``benchmarks/calibrate_adamw.py``,
# train side only).
NAMED_ONLY_METHODS = {m.name: m for m in [
    schedule_grid_method(
        "xu2019_step_decay", baselines.xu2019_step_decay_grid(),
        "step decay, Xu et al. 2019's 48-point grid (LR x every x factor), "
        "not extended"),
    _tuned_grid(
        "adamw_calibration", ADAMW_FAMILY, _adamw_program,
        _adamw_setting,
        lambda w: [GridAxis("lr", CALIBRATION_LRS, None, None),
                   GridAxis("weight_decay", CALIBRATION_WEIGHT_DECAYS, None,
                            None)],
        "AdamW warm-up + cosine over a fixed peak LR x weight decay grid "
        "(the calibration of calibrated_adamw; train side only)",
        extends=False),
]}


def known_methods() -> Tuple[str, ...]:
  """Every method name: the registry and one per shipped controller."""
  return STATIC_METHODS + tuple(CONTROLLER_PREFIX + n
                                for n in lmo.pretrained_names())


def get_method(name: str) -> Method:
  """The method ``name``; unknown names list the known ones."""
  if name in METHODS:
    return METHODS[name]
  if name in NAMED_ONLY_METHODS:
    return NAMED_ONLY_METHODS[name]
  if name.startswith(SCHEDULE_PREFIX):
    try:
      return fixed_schedule_method(name[len(SCHEDULE_PREFIX):])
    except ValueError as e:
      raise ValueError(f"Unknown method {name!r}: {e}") from e
  if name.startswith(CONTROLLER_PREFIX):
    target = name[len(CONTROLLER_PREFIX):]
    try:
      return controller_method(target)
    except ValueError as e:
      raise ValueError(f"Unknown method {name!r}: {e} Known methods: "
                       f"{', '.join(known_methods())}; or "
                       "'controller:<path to a .msgpack file>'.") from e
  raise ValueError(f"Unknown method {name!r}; known methods: "
                   f"{', '.join(known_methods() + tuple(NAMED_ONLY_METHODS))}"
                   f", the groups "
                   f"{', '.join(GROUPS)}, 'controller:<path to a "
                   ".msgpack file>' or 'schedule:<spec>' (e.g. "
                   "'schedule:cosine(lr=0.3)').")


def check_names(names: Sequence[str]) -> None:
  """Raises the ValueError ``resolve`` would for an unknown name, without
  loading a controller: no JAX work, so a script can check its flags before
  a multi-process runtime starts (``lr_meta.distributed.initialize`` must
  come before any JAX call)."""
  for name in (n.strip() for n in names):
    if not name or name in GROUPS:
      continue
    if name.startswith(CONTROLLER_PREFIX):
      target = name[len(CONTROLLER_PREFIX):]
      if (os.path.isfile(target) if _names_a_file(target)
          else target in lmo.pretrained_names()):
        continue
    get_method(name)


def resolve(names: Sequence[str]) -> Tuple[Method, ...]:
  """Methods for a command line list (names and the groups 'all', 'tuned',
  'self_tuning'), references first; the tuned ``REFERENCES`` and the
  untuned ``default_lr`` are always included (every score is relative to
  the best reference, and the default LR is the bar to beat)."""
  wanted = []
  for name in names:
    name = name.strip()
    if not name:
      continue
    if name == "all":
      wanted += known_methods()
    elif name in KINDS:
      wanted += [n for n in known_methods() if get_method(n).kind == name]
    else:
      wanted.append(name)
  methods = [get_method(n) for n in dict.fromkeys(
      list(REFERENCES) + [DEFAULT_LR] + wanted)]
  return tuple(sorted(methods, key=lambda m: KINDS.index(m.kind)))
