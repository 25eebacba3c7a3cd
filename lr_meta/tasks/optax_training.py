"""Training a ``Task``'s model with any optax transformation.

``Task.train_step`` drives an ``inject_hyperparams`` optimizer whose learning
rate is set from outside. Self-tuning optimizers (``optax.contrib``:
schedule-free, Prodigy, DoG, Mechanic, COCOB, ...) and learned controllers
(``lr_meta.optax.controlled``) set their own step sizes; some need extra
arguments at every step (``value=loss`` for ``reduce_on_plateau``; ``loss=``,
``val_loss=``, ``predictions=`` for ``controlled``) and some are evaluated at
other parameters than the ones they train (schedule-free: Defazio et al.
2024, ``optax.contrib.schedule_free_eval_params``). A ``Program`` says all
of that, and the functions here train with it through ``Task.update_step``:
the same batches, divergence freezing and capped losses as ``train_step``.

Compilation: a ``Program`` is hashable (frozen dataclass, compared by value)
and static under ``jit``; its hyperparameters ``hp`` (any pytree of arrays:
a learning-rate sequence, a controller's network params) are traced
arguments. Every point of an LR grid therefore runs in one compiled program.

Execution follows ``lr_meta.runner``: ``'scan'`` is the whole run (init,
every step, every validation point, the final evaluations) in one ``jit``;
``'chunk'`` and ``'loop'`` are Python loops over a jitted block of
``chunk_steps`` unrolled steps (``'loop'``: one step), for conv nets on CPU.
"""

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import runner
from lr_meta.tasks import task as task_lib
from lr_meta.tasks.task import EvalMetrics, OptimizeeState, StepMetrics, Task

BATCH_MODES = ("vmap", "sequential")


class Program:
  """How one family of optax methods trains a ``Task`` (see module docstring).

  Subclasses are frozen dataclasses whose fields are hashable (names,
  tuples, numbers, module-level functions): the program is a static ``jit``
  argument, so two equal programs share one compiled run. Everything that
  varies within a family goes into the traced ``hp``.
  """

  def optimizer(self, hp) -> optax.GradientTransformationExtraArgs:
    """The optax transformation at hyperparameters ``hp``."""
    raise NotImplementedError

  def extra_args(self, task: Task, hp, state: OptimizeeState,
                 loss: jax.Array) -> dict:
    """Keyword arguments of ``update`` at this step (``loss``: batch loss)."""
    del task, hp, state, loss
    return {}

  def learning_rate(self, hp, opt_state) -> jax.Array:
    """The step size in use after an update (reported, NaN if none)."""
    del hp, opt_state
    return jnp.asarray(jnp.nan, jnp.float32)

  def eval_params(self, hp, opt_state, params):
    """The parameters to evaluate (schedule-free: its averaged iterate)."""
    del hp, opt_state
    return params

  def probe_examples(self, num_steps: int) -> int:
    """Examples a run of ``num_steps`` steps forwards besides its training
    batches and its scheduled evaluations (a learned controller's
    validation probes): the method's own extra cost."""
    del num_steps
    return 0


def sequence_schedule(values) -> optax.Schedule:
  """An optax schedule reading a per-step sequence: step ``count`` takes
  ``values[count]`` (the last value past the end, the first before the
  start). ``values`` may be traced, so a grid of sequences shares one
  compiled program."""
  values = jnp.asarray(values, jnp.float32)
  last = values.shape[0] - 1
  return lambda count: values[jnp.clip(count, 0, last)]


def _check_optimizer_name(name: str) -> str:
  if name not in task_lib.OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; known optimizers: "
                     f"{', '.join(task_lib.KNOWN_OPTIMIZERS)}.")
  return name


@dataclasses.dataclass(frozen=True)
class ScheduledOptimizer(Program):
  """A ``lr_meta.tasks`` optimizer at a given per-step learning rate.

  ``hp = {'learning_rates': (T,) float32}``: step ``t`` uses
  ``learning_rates[t]``, exactly as ``run_training`` does (same numbers), but
  the sequence is a traced argument: a whole grid of schedules runs in one
  compiled program. Any other entry of ``hp`` is a traced hyperparameter of
  the optax factory (e.g. ``'weight_decay'`` of ``adamw``), so a grid over it
  shares that program too.

  Attributes:
    optimizer_name: one of ``lr_meta.tasks.KNOWN_OPTIMIZERS``.
    optimizer_kwargs: other arguments of the optax factory, as sorted
      ``(name, value)`` pairs (hashable).
  """
  optimizer_name: str = "sgd"
  optimizer_kwargs: tuple = ()

  def __post_init__(self):
    _check_optimizer_name(self.optimizer_name)

  def optimizer(self, hp):
    schedule = sequence_schedule(hp["learning_rates"])
    # As arrays, so that inject_hyperparams keeps them in its state however
    # they arrive (a numpy scalar would be baked in at init and traced at
    # update: two different states).
    traced = {k: jnp.asarray(v) for k, v in hp.items()
              if k != "learning_rates"}
    fixed = dict(self.optimizer_kwargs)
    both = sorted(set(traced) & set(fixed))
    if both:
      raise ValueError(f"ScheduledOptimizer: {both} given both as fixed "
                       "optimizer_kwargs and in hp; allowed: one of the two.")
    return optax.inject_hyperparams(task_lib.OPTIMIZERS[self.optimizer_name])(
        learning_rate=schedule, **fixed, **traced)

  def learning_rate(self, hp, opt_state):
    del hp
    return jnp.asarray(opt_state.hyperparams["learning_rate"], jnp.float32)


class RunResult(NamedTuple):
  """One run: per-step train metrics (T), validation every segment (T // E),
  and the final model on the whole validation and test splits."""
  train: StepMetrics
  val: EvalMetrics
  final_val: EvalMetrics
  test: EvalMetrics


def init(task: Task, program: Program, hp, key: jax.Array) -> OptimizeeState:
  """``Task.init`` with the program's optimizer state (same params per key)."""
  return task.init_with(key, program.optimizer(hp).init)


def train_step(task: Task, program: Program, hp, state: OptimizeeState):
  """One step of ``program``: ``(new_state, StepMetrics)``.

  ``StepMetrics.learning_rate`` is ``program.learning_rate`` after the
  update; a diverged run is frozen and reports capped losses
  (``Task.update_step``).
  """
  optimizer = program.optimizer(hp)

  def update(grads, loss):
    extra = program.extra_args(task, hp, state, loss)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params, **extra)
    return updates, opt_state, program.learning_rate(hp, opt_state)

  return task.update_step(state, update)


def evaluate(task: Task, program: Program, hp, state: OptimizeeState,
             split: str = "val",
             num_examples: Optional[int] = None) -> EvalMetrics:
  """``Task.evaluate`` at the program's evaluation parameters."""
  params = program.eval_params(hp, state.opt_state, state.params)
  return task.evaluate(state.replace(params=params), split, num_examples)


def _steps(task, program, hp, state, num_steps, unroll):
  step = lambda s, _: train_step(task, program, hp, s)
  return runner.inner_loop(step, state, jnp.zeros((num_steps,)), unroll)


def _final(task, program, hp, state, whole_val_done):
  """Whole validation and test splits; the validation evaluation is skipped
  when the last validation point already covered the whole split."""
  val = None if whole_val_done else evaluate(task, program, hp, state, "val")
  return val, evaluate(task, program, hp, state, "test")


def _flatten(train: StepMetrics) -> StepMetrics:
  """(..., S, E) per-segment step metrics -> (..., S * E)."""
  return jax.tree.map(lambda x: x.reshape(x.shape[:-2] + (-1,)), train)


def _scan_run(task, program, hp, key, num_steps, eval_every,
              num_val_examples):
  state = init(task, program, hp, key)

  def segment(s, _):
    s, train = _steps(task, program, hp, s, eval_every, unroll=False)
    return s, (train, evaluate(task, program, hp, s, "val", num_val_examples))

  state, (train, val) = jax.lax.scan(segment, state, None,
                                     length=num_steps // eval_every)
  whole = num_val_examples is None
  final_val, test = _final(task, program, hp, state, whole)
  if whole:
    final_val = jax.tree.map(lambda x: x[-1], val)
  return state, RunResult(_flatten(train), val, final_val, test)


_RUN_STATIC = ("program", "num_steps", "eval_every", "num_val_examples")
_scan_run_jit = jax.jit(_scan_run, static_argnames=_RUN_STATIC)


@functools.partial(jax.jit, static_argnames=_RUN_STATIC)
def _scan_run_batch_jit(task, program, hps, keys, num_steps, eval_every,
                        num_val_examples):
  run = lambda hp, key: _scan_run(task, program, hp, key, num_steps,
                                  eval_every, num_val_examples)
  return jax.vmap(run)(hps, keys)


def _evaluate_split(task, program, hp, state, split, num_examples):
  return evaluate(task, program, hp, state, split, num_examples)


def _vmapped(fn, batched):
  """``fn(task, program, hp, x, *static)`` vmapped over ``(hp, x)``."""
  if not batched:
    return fn

  def batched_fn(task, program, hps, xs, *static):
    return jax.vmap(lambda hp, x: fn(task, program, hp, x, *static))(hps, xs)
  batched_fn.__name__ = fn.__name__ + "_batch"
  return batched_fn


def _python_jits(batched: bool):
  return (jax.jit(_vmapped(init, batched), static_argnums=1),
          jax.jit(_vmapped(_steps, batched), static_argnums=(1, 4, 5)),
          jax.jit(_vmapped(_evaluate_split, batched), static_argnums=(1, 4, 5)),
          jax.jit(_vmapped(_final, batched), static_argnums=(1, 4)))


# Module-level, so that every run of an equal program reuses the compiled code.
_PYTHON_JITS = {False: _python_jits(False), True: _python_jits(True)}
# Names of the jitted training programs (``jax.monitoring`` compile events
# carry ``fun_name='jit(<name>)'``): what a compile counter should count.
PROGRAM_NAMES = frozenset(
    [_scan_run.__name__, "_scan_run_batch_jit"] +
    [f.__name__ for f in (init, _steps, _evaluate_split, _final)] +
    [f.__name__ + "_batch" for f in (init, _steps, _evaluate_split, _final)])


def _python_run(task, program, hp, key, num_steps, eval_every,
                num_val_examples, chunk_steps, batched):
  init_, steps_, evaluate_, final_ = _PYTHON_JITS[batched]
  state = init_(task, program, hp, key)
  trains, vals = [], []
  for _ in range(num_steps // eval_every):
    for _ in range(eval_every // chunk_steps):
      state, train = steps_(task, program, hp, state, chunk_steps, True)
      trains.append(train)
    vals.append(evaluate_(task, program, hp, state, "val", num_val_examples))
  axis = 1 if batched else 0
  cat = lambda *x: jnp.concatenate(x, axis)
  stack = lambda *x: jnp.stack(x, axis)
  whole = num_val_examples is None
  final_val, test = final_(task, program, hp, state, whole)
  if whole:
    final_val = vals[-1]
  return state, RunResult(jax.tree.map(cat, *trains),
                          jax.tree.map(stack, *vals), final_val, test)


def _check_run(num_steps, eval_every, strategy, chunk_steps, task):
  if not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"num_steps={num_steps!r}; allowed: an integer >= 1.")
  if (not isinstance(eval_every, int) or eval_every < 1
      or num_steps % eval_every):
    raise ValueError(f"eval_every={eval_every!r}; allowed: a positive "
                     f"divisor of num_steps={num_steps}.")
  strategy = runner.check_strategy(
      strategy or runner.default_strategy(task.model_name))
  if strategy == "loop":
    chunk_steps = 1
  chunk_steps = eval_every if chunk_steps is None else chunk_steps
  if (not isinstance(chunk_steps, int) or chunk_steps < 1
      or eval_every % chunk_steps):
    raise ValueError(f"chunk_steps={chunk_steps!r}; allowed: a positive "
                     f"divisor of eval_every={eval_every}.")
  return strategy, chunk_steps


def run(task: Task, program: Program, hp, key: jax.Array, num_steps: int, *,
        eval_every: int, strategy: Optional[str] = None,
        num_val_examples: Optional[int] = None,
        chunk_steps: Optional[int] = None):
  """Trains one model with ``program`` for ``num_steps`` steps.

  Args:
    task: the optimizee (its own ``optimizer`` is not used).
    program: a ``Program``.
    hp: the program's hyperparameters (pytree of arrays).
    key: PRNG key of the run (initialisation, batches): the same key gives
      the same initial model and batches for every program.
    num_steps: T, inner steps.
    eval_every: E, validation every E steps (must divide T).
    strategy: ``'scan'``, ``'chunk'`` or ``'loop'`` (``lr_meta.runner``);
      default ``runner.default_strategy`` of the task's model.
    num_val_examples: the validation points use the first examples of the
      validation split (None: all); the final evaluation uses all of it.
    chunk_steps: ``'chunk'``: steps per jitted block (a divisor of E;
      default E). Compile time grows with it (the steps are unrolled).

  Returns:
    ``(final OptimizeeState, RunResult)``.
  """
  strategy, chunk_steps = _check_run(num_steps, eval_every, strategy,
                                     chunk_steps, task)
  if strategy == "scan":
    return _scan_run_jit(task, program, hp, key, num_steps, eval_every,
                         num_val_examples)
  return _python_run(task, program, hp, key, num_steps, eval_every,
                     num_val_examples, chunk_steps, batched=False)


def run_batch(task: Task, program: Program, hps, keys: jax.Array,
              num_steps: int, *, eval_every: int,
              strategy: Optional[str] = None,
              num_val_examples: Optional[int] = None,
              chunk_steps: Optional[int] = None,
              batch_mode: Optional[str] = None):
  """R runs of one program: run ``r`` has ``hps[r]`` and ``keys[r]``.

  Run ``r`` gives the numbers of ``run(task, program, hps[r], keys[r],
  ...)``; a diverged run is frozen and never touches the others.

  Args:
    batch_mode: ``'vmap'`` (all runs in one program) or ``'sequential'`` (one
      compiled run, called R times); default ``runner.default_batch_mode``.
    Others: as in ``run``.

  Returns:
    ``(OptimizeeState, RunResult)`` with a leading run axis R on every leaf.
  """
  num_runs = keys.shape[0]
  leading = {np.shape(x)[0] if np.ndim(x) else None
             for x in jax.tree.leaves(hps)}
  if leading - {num_runs}:
    raise ValueError(f"every leaf of hps needs a leading run axis of "
                     f"len(keys) = {num_runs}; got leading sizes "
                     f"{sorted(leading, key=str)}.")
  batch_mode = batch_mode or runner.default_batch_mode(task.model_name)
  if batch_mode not in BATCH_MODES:
    raise ValueError(f"Unknown batch_mode {batch_mode!r}; allowed: "
                     f"{BATCH_MODES}.")
  strategy, chunk_steps = _check_run(num_steps, eval_every, strategy,
                                     chunk_steps, task)
  if batch_mode == "sequential":
    results = [run(task, program, jax.tree.map(lambda x, r=r: x[r], hps),
                   keys[r], num_steps, eval_every=eval_every,
                   strategy=strategy, num_val_examples=num_val_examples,
                   chunk_steps=chunk_steps) for r in range(num_runs)]
    return jax.tree.map(lambda *x: jnp.stack(x), *results)
  if strategy == "scan":
    return _scan_run_batch_jit(task, program, hps, keys, num_steps,
                               eval_every, num_val_examples)
  return _python_run(task, program, hps, keys, num_steps, eval_every,
                     num_val_examples, chunk_steps, batched=True)

