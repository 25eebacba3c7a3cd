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

This is the one engine of whole training runs. ``TaskOptimizer`` is the
task's own optimizer at a per-step learning rate (``Task.train_step``): the
LR sequences of the baselines (``run_training``, ``run_training_batch``) and
the update rules of the Neural Optimizer Search (their encoded rule is one
more traced hyperparameter) are programs like any other.

Execution follows ``lr_meta.runner``: ``'scan'`` is the whole run (init,
every step, every validation point, the final evaluations) in one ``jit``;
``'chunk'`` and ``'loop'`` are Python loops over a jitted block of
``chunk_steps`` unrolled steps (``'loop'``: one step), for conv nets on CPU.
Many runs of one program (``run_batch``) are one batch mode of
``BATCH_MODES``: ``'vmap'`` (all runs in one program), ``'sequential'`` (the
unbatched program, once per run) or ``'sharded'`` (``vmap`` with the run axis
split over a device mesh); a mesh over several processes' devices
(``lr_meta.distributed.global_mesh()``) splits the runs over the processes,
each running its share, and gathers every result on every process
(``lr_meta.distributed.map_rows``).
"""

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import distributed
from lr_meta import runner
from lr_meta.tasks import task as task_lib
from lr_meta.tasks.task import EvalMetrics, OptimizeeState, StepMetrics, Task

BATCH_MODES = ("vmap", "sequential", "sharded")
RUN_AXIS = "runs"


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

  def init(self, task: Task, hp, key: jax.Array) -> OptimizeeState:
    """The run's first state: ``Task.init`` with this optimizer's state (the
    parameters and batches depend on ``key`` only, as for every program)."""
    return task.init_with(key, self.optimizer(hp).init)

  def train_step(self, task: Task, hp, state: OptimizeeState):
    """One step, ``(new_state, StepMetrics)``: the optimizer's update with
    ``extra_args``, through ``Task.update_step`` (its batches, divergence
    freezing and capped losses); the reported LR is ``learning_rate``."""
    optimizer = self.optimizer(hp)

    def update(grads, loss):
      extra = self.extra_args(task, hp, state, loss)
      updates, opt_state = optimizer.update(grads, state.opt_state,
                                            state.params, **extra)
      return updates, opt_state, self.learning_rate(hp, opt_state)

    return task.update_step(state, update)

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


@dataclasses.dataclass(frozen=True)
class TaskOptimizer(Program):
  """The task's own optimizer (``Task.optimizer``) at a per-step learning rate.

  ``hp = {'learning_rates': (T,) float32, **hyperparams}``: the run starts
  from ``Task.init(key, learning_rates[0])`` and step ``t`` is
  ``Task.train_step(state, learning_rates[t])``, so an optimizer that is not
  a registered name runs too: a NOS update rule (``lr_meta.nos.search``,
  whose encoded rule is the hyperparameter ``'program'``) or anything a user
  put into ``Task.replace(optimizer=...)``. Any other entry of ``hp`` is
  written into the optimizer's ``inject_hyperparams`` state at init (traced:
  a grid of rules shares one compiled program).
  """

  def init(self, task, hp, key):
    state = task.init(key, hp["learning_rates"][0])
    extra = {k: v for k, v in hp.items() if k != "learning_rates"}
    if not extra:
      return state
    return state.replace(opt_state=task_lib.set_hyperparams(state.opt_state,
                                                            extra))

  def train_step(self, task, hp, state):
    learning_rate = sequence_schedule(hp["learning_rates"])(state.step)
    return task.train_step(state, learning_rate)


class RunResult(NamedTuple):
  """One run: per-step train metrics (T), validation every segment (T // E),
  and the final model on the whole validation and test splits (None when the
  run was asked for no final evaluations)."""
  train: StepMetrics
  val: EvalMetrics
  final_val: EvalMetrics
  test: EvalMetrics


def init(task: Task, program: Program, hp, key: jax.Array) -> OptimizeeState:
  """The first state of a run of ``program`` (``Program.init``)."""
  return program.init(task, hp, key)


def train_step(task: Task, program: Program, hp, state: OptimizeeState):
  """One step of ``program``: ``(new_state, StepMetrics)``.

  ``StepMetrics.learning_rate`` is the step size in use; a diverged run is
  frozen and reports capped losses (``Task.update_step``).
  """
  return program.train_step(task, hp, state)


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
              num_val_examples, final_eval=True):
  state = init(task, program, hp, key)

  def segment(s, _):
    s, train = _steps(task, program, hp, s, eval_every, unroll=False)
    return s, (train, evaluate(task, program, hp, s, "val", num_val_examples))

  state, (train, val) = jax.lax.scan(segment, state, None,
                                     length=num_steps // eval_every)
  if not final_eval:
    return state, RunResult(_flatten(train), val, None, None)
  whole = num_val_examples is None
  final_val, test = _final(task, program, hp, state, whole)
  if whole:
    final_val = jax.tree.map(lambda x: x[-1], val)
  return state, RunResult(_flatten(train), val, final_val, test)


_RUN_STATIC = ("program", "num_steps", "eval_every", "num_val_examples",
               "final_eval")
_scan_run_jit = jax.jit(_scan_run, static_argnames=_RUN_STATIC)


@functools.partial(jax.jit, static_argnames=_RUN_STATIC)
def _scan_run_batch_jit(task, program, hps, keys, num_steps, eval_every,
                        num_val_examples, final_eval=True):
  run = lambda hp, key: _scan_run(task, program, hp, key, num_steps,
                                  eval_every, num_val_examples, final_eval)
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


def _pieces(eval_every: int, chunk_steps: int):
  """Step counts of the jitted pieces of one segment: ``chunk_steps`` each,
  the last one shorter when ``chunk_steps`` does not divide it (one more
  compiled length, not a longer unrolled one)."""
  full, rest = divmod(eval_every, chunk_steps)
  return [chunk_steps] * full + ([rest] if rest else [])


def _python_run(task, program, hp, key, num_steps, eval_every,
                num_val_examples, chunk_steps, batched, final_eval=True):
  init_, steps_, evaluate_, final_ = _PYTHON_JITS[batched]
  state = init_(task, program, hp, key)
  trains, vals = [], []
  for _ in range(num_steps // eval_every):
    for piece in _pieces(eval_every, chunk_steps):
      state, train = steps_(task, program, hp, state, piece, True)
      trains.append(train)
    vals.append(evaluate_(task, program, hp, state, "val", num_val_examples))
  axis = 1 if batched else 0
  cat = lambda *x: jnp.concatenate(x, axis)
  stack = lambda *x: jnp.stack(x, axis)
  train, val = jax.tree.map(cat, *trains), jax.tree.map(stack, *vals)
  if not final_eval:
    return state, RunResult(train, val, None, None)
  whole = num_val_examples is None
  final_val, test = final_(task, program, hp, state, whole)
  if whole:
    final_val = vals[-1]
  return state, RunResult(train, val, final_val, test)


def _check_run(num_steps, eval_every, strategy, chunk_steps, task):
  if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
    raise ValueError(f"num_steps={num_steps!r}; allowed: an integer >= 1.")
  if (not isinstance(eval_every, (int, np.integer)) or eval_every < 1
      or num_steps % eval_every):
    raise ValueError(f"eval_every={eval_every!r}; allowed: a positive "
                     f"divisor of num_steps={num_steps}.")
  strategy = runner.check_strategy(
      strategy or runner.default_strategy(task.model_name))
  if strategy == "loop":
    chunk_steps = 1
  chunk_steps = eval_every if chunk_steps is None else chunk_steps
  if not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
    raise ValueError(f"chunk_steps={chunk_steps!r}; allowed: an integer >= 1 "
                     "or None (one piece per segment).")
  return strategy, int(min(chunk_steps, eval_every))


def run(task: Task, program: Program, hp, key: jax.Array, num_steps: int, *,
        eval_every: int, strategy: Optional[str] = None,
        num_val_examples: Optional[int] = None,
        chunk_steps: Optional[int] = None, final_eval: bool = True):
  """Trains one model with ``program`` for ``num_steps`` steps.

  Args:
    task: the optimizee (its own ``optimizer`` is used by ``TaskOptimizer``
      only).
    program: a ``Program``.
    hp: the program's hyperparameters (pytree of arrays).
    key: PRNG key of the run (initialisation, batches): the same key gives
      the same initial model and batches for every program.
    num_steps: T, inner steps.
    eval_every: E, validation every E steps (must divide T); pass T to
      validate once, at the end.
    strategy: ``'scan'``, ``'chunk'`` or ``'loop'`` (``lr_meta.runner``);
      default ``runner.default_strategy`` of the task's model.
    num_val_examples: the validation points use the first examples of the
      validation split (None: all); the final evaluation uses all of it.
    chunk_steps: ``'chunk'``: steps per jitted block (default, and at most,
      E; a segment's last block is shorter when it does not divide E).
      Compile time grows with it (the steps are unrolled).
    final_eval: evaluate the final model on the whole validation and test
      splits (``RunResult.final_val``, ``.test``; None when False).

  Returns:
    ``(final OptimizeeState, RunResult)``.
  """
  strategy, chunk_steps = _check_run(num_steps, eval_every, strategy,
                                     chunk_steps, task)
  if strategy == "scan":
    return _scan_run_jit(task, program, hp, key, num_steps, eval_every,
                         num_val_examples, final_eval)
  return _python_run(task, program, hp, key, num_steps, eval_every,
                     num_val_examples, chunk_steps, False, final_eval)


def run_mesh(num_devices: Optional[int] = None) -> jax.sharding.Mesh:
  """A 1-D mesh over the first ``num_devices`` devices, axis ``'runs'``."""
  devices = jax.devices()
  num_devices = num_devices or len(devices)
  if not 0 < num_devices <= len(devices):
    raise ValueError(
        f"num_devices must be in [1, {len(devices)}] (devices available), got "
        f"{num_devices!r}.")
  return jax.sharding.Mesh(np.asarray(devices[:num_devices]), (RUN_AXIS,))


def shard_runs(tree, mesh: jax.sharding.Mesh):
  """Places the leading (run) axis of every leaf across the mesh."""
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec(RUN_AXIS))
  return jax.device_put(tree, sharding)


def run_batch(task: Task, program: Program, hps, keys: jax.Array,
              num_steps: int, *, eval_every: int,
              strategy: Optional[str] = None,
              num_val_examples: Optional[int] = None,
              chunk_steps: Optional[int] = None,
              batch_mode: Optional[str] = None,
              mesh: Optional[jax.sharding.Mesh] = None,
              final_eval: bool = True):
  """R runs of one program: run ``r`` has ``hps[r]`` and ``keys[r]``.

  Run ``r`` gives the numbers of ``run(task, program, hps[r], keys[r],
  ...)`` in every strategy and batch mode; a diverged run is frozen and
  never touches the others (the runs share no state).

  Args:
    batch_mode: ``'vmap'`` (all runs in one program), ``'sequential'`` (one
      compiled run, called R times) or ``'sharded'`` (vmap with the run axis
      split over ``mesh``, by default every device; R is padded to a
      multiple of the mesh size with copies of the last run, dropped from
      the result); default ``runner.default_batch_mode``.
    mesh: the device mesh for ``'sharded'`` (see ``run_mesh``). A mesh over
      the devices of several processes (``lr_meta.distributed.
      global_mesh()``, every process calling with the same arguments) splits
      the runs over the processes in contiguous blocks; each process runs
      its block in ``batch_mode`` (``'sharded'``: over its own devices of the
      mesh) and every process returns all R results. Run r's numbers do not
      depend on the number of processes.
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
  options = dict(eval_every=eval_every, strategy=strategy,
                 num_val_examples=num_val_examples, chunk_steps=chunk_steps,
                 final_eval=final_eval)
  if distributed.spans_processes(mesh):
    local = distributed.local_mesh(mesh)
    return distributed.map_rows(
        lambda rows: run_batch(task, program, rows[0], rows[1], num_steps,
                               batch_mode=batch_mode, mesh=local, **options),
        (hps, keys), mesh)
  if batch_mode == "sequential":
    results = [run(task, program, jax.tree.map(lambda x, r=r: x[r], hps),
                   keys[r], num_steps, **options) for r in range(num_runs)]
    return jax.tree.map(lambda *x: jnp.stack(x), *results)
  pad = 0
  if batch_mode == "sharded":
    mesh = mesh or run_mesh()
    pad = -num_runs % mesh.size
    if pad:
      take = np.concatenate([np.arange(num_runs), np.full(pad, num_runs - 1)])
      hps, keys = jax.tree.map(lambda x: x[take], (hps, keys))
    hps, keys = shard_runs((hps, keys), mesh)
  if strategy == "scan":
    out = _scan_run_batch_jit(task, program, hps, keys, num_steps,
                              eval_every, num_val_examples, final_eval)
  else:
    out = _python_run(task, program, hps, keys, num_steps, eval_every,
                      num_val_examples, chunk_steps, True, final_eval)
  return jax.tree.map(lambda x: x[:num_runs], out) if pad else out


def run_training(task: Task, key: jax.Array, learning_rates, *,
                 eval_every: int = 10, strategy: Optional[str] = None,
                 num_val_examples: Optional[int] = None):
  """Trains one optimizee with a given per-step learning-rate sequence.

  ``run`` of ``TaskOptimizer`` (the task's own optimizer), without final
  evaluations.

  Args:
    task: the optimizee.
    key: PRNG key of the run (initialisation, batches, dropout).
    learning_rates: float array (T,), the learning rate of each inner step.
    eval_every: validation every this many steps (must divide T).
    strategy: 'scan', 'chunk' or 'loop'; default: the measured choice for the
      task's model on this backend (``runner.default_strategy``).
    num_val_examples: evaluate on the first examples of the validation split
      (``None``: all of it).

  Returns:
    ``(final OptimizeeState, RunResult)``; ``RunResult.final_val`` and
    ``.test`` are None.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  if learning_rates.ndim != 1:
    raise ValueError(
        f"learning_rates must have shape (T,), got {learning_rates.shape}; "
        f"use run_training_batch for several runs.")
  return run(task, TaskOptimizer(), {"learning_rates": learning_rates}, key,
             learning_rates.shape[0], eval_every=eval_every,
             strategy=strategy, num_val_examples=num_val_examples,
             final_eval=False)


def run_training_batch(task: Task, keys: jax.Array, learning_rates, *,
                       eval_every: int = 10, strategy: Optional[str] = None,
                       num_val_examples: Optional[int] = None,
                       batch_mode: Optional[str] = None,
                       mesh: Optional[jax.sharding.Mesh] = None):
  """Trains R optimizees, run ``r`` with ``keys[r]`` and ``learning_rates[r]``.

  ``run_batch`` of ``TaskOptimizer`` without final evaluations: run r gives
  the same numbers as ``run_training(task, keys[r], learning_rates[r])``.

  Args:
    task, eval_every, strategy, num_val_examples: as in ``run_training``.
    keys: (R,) PRNG keys.
    learning_rates: (R, T) learning rates.
    batch_mode, mesh: as in ``run_batch``.

  Returns:
    ``(OptimizeeState, RunResult)`` with a leading run axis R on every leaf.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  if learning_rates.ndim != 2 or learning_rates.shape[0] != keys.shape[0]:
    raise ValueError(
        f"learning_rates must have shape (R, T) with R = len(keys) = "
        f"{keys.shape[0]}; got {learning_rates.shape}.")
  return run_batch(task, TaskOptimizer(), {"learning_rates": learning_rates},
                   keys, learning_rates.shape[1], eval_every=eval_every,
                   strategy=strategy, num_val_examples=num_val_examples,
                   batch_mode=batch_mode, mesh=mesh, final_eval=False)
