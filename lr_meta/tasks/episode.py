"""Whole training runs of a ``Task``: one, or many at once on one grid.

``run_training`` trains one optimizee for ``T`` inner steps, step ``t`` at
``learning_rates[t]``, evaluating on the validation split every ``eval_every``
steps (a "segment"; for a controller, one decision).

``run_batch`` is THE execution grid for many runs: run ``r`` starts from
``init_fn(task, *init_args[r])`` and takes the steps ``learning_rates[r]``,
under one execution strategy and one batch mode:

* strategies (``lr_meta.runner``), same numbers: ``'scan'`` (one
  ``lax.scan`` over segments, each a ``lax.scan`` over steps, in one
  ``jit``), ``'chunk'`` (a Python loop over jitted pieces of at most
  ``chunk_steps`` steps, unrolled; a segment's last piece also evaluates),
  ``'loop'`` (a Python loop over a jitted single step: the reference);
* batch modes (``BATCH_MODES``): ``'vmap'`` (all runs in one program),
  ``'sequential'`` (the unbatched program, once per run), ``'sharded'``
  (``vmap`` with the run axis split over a device mesh);
* processes: a mesh over several processes' devices
  (``lr_meta.distributed.global_mesh()``) splits the runs over the
  processes, each running its share in the batch mode, and gathers every
  result on every process (``lr_meta.distributed.map_rows``).

``run_training_batch`` is the grid with ``Task.init`` (a key and the first
learning rate per run); ``lr_meta.nos.search.train_rules`` is the grid with
an update rule per run.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import distributed
from lr_meta import runner
from lr_meta.tasks.task import EvalMetrics, OptimizeeState, StepMetrics, Task

BATCH_MODES = ("vmap", "sequential", "sharded")
RUN_AXIS = "runs"

# ``init_fn(task, *init_args) -> OptimizeeState``; a module-level function
# (hashable: it is a static argument of the compiled runs).
InitFn = Callable[..., OptimizeeState]


class RunMetrics(NamedTuple):
  """Per-step train metrics (leading axis T) and per-segment validation (T // K)."""
  train: StepMetrics
  val: EvalMetrics


def _segment(task: Task, state: OptimizeeState, learning_rates: jax.Array,
             num_val_examples: Optional[int], unroll: bool,
             evaluate: bool = True):
  """``len(learning_rates)`` steps, then (if ``evaluate``) a validation."""
  state, train = runner.inner_loop(task.train_step, state, learning_rates, unroll)
  val = task.evaluate(state, "val", num_val_examples) if evaluate else None
  return state, train, val


def _check_schedule(learning_rates, eval_every: int) -> int:
  num_steps = np.shape(learning_rates)[-1]
  if (not isinstance(eval_every, (int, np.integer)) or eval_every <= 0
      or num_steps % eval_every):
    raise ValueError(
        f"eval_every must be a positive divisor of the number of steps "
        f"({num_steps}); got {eval_every!r}.")
  return num_steps // eval_every


def _check_chunk_steps(chunk_steps, eval_every: int) -> int:
  if chunk_steps is None:
    return eval_every
  if not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
    raise ValueError(f"chunk_steps={chunk_steps!r}; allowed: an integer >= 1 "
                     "or None (one piece per segment).")
  return min(int(chunk_steps), eval_every)


def _flatten_segments(metrics: RunMetrics) -> RunMetrics:
  """(..., S, K) train metrics -> (..., S*K)."""
  flat = lambda x: x.reshape(x.shape[:-2] + (-1,))
  return RunMetrics(jax.tree.map(flat, metrics.train), metrics.val)


def _scan_run(task, init_fn, init_args, learning_rates, eval_every,
              num_val_examples):
  state = init_fn(task, *init_args)
  segments = learning_rates.reshape(-1, eval_every)

  def body(s, lrs):
    s, train, val = _segment(task, s, lrs, num_val_examples, unroll=False)
    return s, RunMetrics(train, val)

  state, metrics = jax.lax.scan(body, state, segments)
  return state, _flatten_segments(metrics)


def _scan_run_batch(task, init_fn, init_args, learning_rates, eval_every,
                    num_val_examples):
  return jax.vmap(lambda a, l: _scan_run(task, init_fn, a, l, eval_every,
                                         num_val_examples))(
                                             init_args, learning_rates)


def _init(task, init_fn, init_args):
  return init_fn(task, *init_args)


def _init_batch(task, init_fn, init_args):
  return jax.vmap(lambda a: init_fn(task, *a))(init_args)


_STATIC = ("init_fn", "eval_every", "num_val_examples")
_scan_run_jit = jax.jit(_scan_run, static_argnames=_STATIC)
_scan_run_batch_jit = jax.jit(_scan_run_batch, static_argnames=_STATIC)
_init_jit = jax.jit(_init, static_argnames="init_fn")
_init_batch_jit = jax.jit(_init_batch, static_argnames="init_fn")
_segment_jit = jax.jit(_segment, static_argnums=(3, 4, 5))
_segment_batch_jit = jax.jit(
    jax.vmap(_segment, in_axes=(None, 0, 0, None, None, None)),
    static_argnums=(3, 4, 5))
_step_jit = jax.jit(Task.train_step)
_step_batch_jit = jax.jit(jax.vmap(Task.train_step, in_axes=(None, 0, 0)))
_eval_jit = jax.jit(Task.evaluate, static_argnums=(2, 3))
_eval_batch_jit = jax.jit(jax.vmap(Task.evaluate, in_axes=(None, 0, None, None)),
                          static_argnums=(2, 3))


def _python_run(task, init_fn, init_args, learning_rates, eval_every,
                chunk_steps, num_val_examples, strategy, batched):
  """'chunk' and 'loop': a Python loop over jitted pieces or single steps."""
  init, segment, step, evaluate = (
      (_init_batch_jit, _segment_batch_jit, _step_batch_jit, _eval_batch_jit)
      if batched else (_init_jit, _segment_jit, _step_jit, _eval_jit))
  step_axis = 1 if batched else 0
  state = init(task, init_fn=init_fn, init_args=init_args)
  seg_metrics = []
  for start in range(0, learning_rates.shape[-1], eval_every):
    lrs = learning_rates[..., start:start + eval_every]
    trains = []
    if strategy == "chunk":
      for k in range(0, eval_every, chunk_steps):
        state, train, val = segment(task, state, lrs[..., k:k + chunk_steps],
                                    num_val_examples, True,
                                    k + chunk_steps >= eval_every)
        trains.append(train)
    else:
      for k in range(eval_every):
        state, sm = step(task, state, lrs[..., k])
        trains.append(jax.tree.map(lambda x: jnp.expand_dims(x, step_axis), sm))
      val = evaluate(task, state, "val", num_val_examples)
    train = jax.tree.map(lambda *x: jnp.concatenate(x, step_axis), *trains)
    seg_metrics.append(RunMetrics(train, val))
  metrics = jax.tree.map(lambda *x: jnp.stack(x, step_axis), *seg_metrics)
  return state, _flatten_segments(metrics)


def _run(task, init_fn, init_args, learning_rates, *, eval_every, chunk_steps,
         num_val_examples, strategy, batched):
  """One run (``batched=False``) or a vmapped batch of runs, by strategy."""
  if strategy == "scan":
    run = _scan_run_batch_jit if batched else _scan_run_jit
    return run(task, init_args=init_args, learning_rates=learning_rates,
               init_fn=init_fn, eval_every=eval_every,
               num_val_examples=num_val_examples)
  return _python_run(task, init_fn, init_args, learning_rates, eval_every,
                     chunk_steps, num_val_examples, strategy, batched)


def run_training(task: Task, key: jax.Array, learning_rates, *,
                 eval_every: int = 10, strategy: Optional[str] = None,
                 num_val_examples: Optional[int] = None):
  """Trains one optimizee with a given per-step learning-rate sequence.

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
    ``(final OptimizeeState, RunMetrics)``.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  if learning_rates.ndim != 1:
    raise ValueError(
        f"learning_rates must have shape (T,), got {learning_rates.shape}; "
        f"use run_training_batch for several runs.")
  _check_schedule(learning_rates, eval_every)
  strategy = runner.check_strategy(
      strategy or runner.default_strategy(task.model_name))
  return _run(task, Task.init, (key, learning_rates[0]), learning_rates,
              eval_every=eval_every, chunk_steps=eval_every,
              num_val_examples=num_val_examples, strategy=strategy,
              batched=False)


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
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(RUN_AXIS))
  return jax.device_put(tree, sharding)


def run_batch(task: Task, init_fn: InitFn, init_args: Any, learning_rates, *,
              eval_every: int, chunk_steps: Optional[int] = None,
              strategy: Optional[str] = None,
              batch_mode: Optional[str] = None,
              num_val_examples: Optional[int] = None,
              mesh: Optional[jax.sharding.Mesh] = None):
  """Trains R optimizees on the execution grid (strategy x batch mode).

  Run ``r`` starts from ``init_fn(task, *init_args[r])`` and takes step ``t``
  at ``learning_rates[r, t]``. Every strategy and batch mode gives the same
  numbers; a run that diverges is frozen and reports capped losses, the
  other runs are unaffected (the runs share no state).

  Args:
    task: the optimizee.
    init_fn: ``(task, *args) -> OptimizeeState``, a module-level function
      (it is a static argument of the compiled runs), e.g. ``Task.init``.
    init_args: tuple of arrays with a leading run axis R.
    learning_rates: (R, T) learning rates.
    eval_every: validation every this many steps (must divide T); pass T to
      evaluate once, at the end.
    chunk_steps: steps per compiled piece for 'chunk' (default, and at
      most, ``eval_every``); bounds the unrolled program when validation is
      rare.
    strategy: 'scan', 'chunk' or 'loop'; default ``runner.default_strategy``.
    batch_mode: 'vmap' (all runs in one program), 'sequential' (one after the
      other), or 'sharded' (vmap with the run axis split over ``mesh``, by
      default every device; R is padded to a multiple of the mesh size with
      copies of the last run, dropped from the result). Default: the
      measured choice (``runner.default_batch_mode``).
    num_val_examples: evaluate on the first examples of the validation split
      (``None``: all of it).
    mesh: the device mesh for 'sharded' (see ``run_mesh``). A mesh over the
      devices of several processes (``lr_meta.distributed.global_mesh()``,
      every process calling with the same arguments) splits the runs over
      the processes in contiguous blocks; each process runs its block in
      ``batch_mode`` ('sharded': over its own devices of the mesh) and
      every process returns all R results. Run r's numbers do not depend
      on the number of processes.

  Returns:
    ``(OptimizeeState, RunMetrics)`` with a leading run axis R on every leaf.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  num_runs = learning_rates.shape[0] if learning_rates.ndim == 2 else None
  leading = {np.shape(x)[0] if np.ndim(x) else None
             for x in jax.tree.leaves(init_args)}
  if num_runs is None or leading != {num_runs}:
    shapes = [np.shape(x) for x in jax.tree.leaves(init_args)]
    raise ValueError(
        f"learning_rates must have shape (R, T) and every init argument a "
        f"leading axis R; got learning_rates {learning_rates.shape} and "
        f"init argument shapes {shapes}.")
  batch_mode = batch_mode or runner.default_batch_mode(task.model_name)
  if batch_mode not in BATCH_MODES:
    raise ValueError(f"Unknown batch_mode {batch_mode!r}; allowed: {BATCH_MODES}.")
  _check_schedule(learning_rates, eval_every)
  chunk_steps = _check_chunk_steps(chunk_steps, eval_every)
  strategy = runner.check_strategy(
      strategy or runner.default_strategy(task.model_name))
  if distributed.spans_processes(mesh):
    local = distributed.local_mesh(mesh)
    return distributed.map_rows(
        lambda rows: run_batch(
            task, init_fn, rows[0], rows[1], eval_every=eval_every,
            chunk_steps=chunk_steps, strategy=strategy, batch_mode=batch_mode,
            num_val_examples=num_val_examples, mesh=local),
        (init_args, learning_rates), mesh)
  options = dict(eval_every=eval_every, chunk_steps=chunk_steps,
                 num_val_examples=num_val_examples, strategy=strategy)
  if batch_mode == "sequential":
    results = [_run(task, init_fn, jax.tree.map(lambda x, r=r: x[r], init_args),
                    learning_rates[r], batched=False, **options)
               for r in range(num_runs)]
    return jax.tree.map(lambda *x: jnp.stack(x), *results)
  if batch_mode == "vmap":
    return _run(task, init_fn, init_args, learning_rates, batched=True,
                **options)
  mesh = mesh or run_mesh()
  pad = -num_runs % mesh.size
  inputs = (init_args, learning_rates)
  if pad:
    take = np.concatenate([np.arange(num_runs), np.full(pad, num_runs - 1)])
    inputs = jax.tree.map(lambda x: x[take], inputs)
  out = _run(task, init_fn, *shard_runs(inputs, mesh), batched=True,
             **options)
  return jax.tree.map(lambda x: x[:num_runs], out) if pad else out


def run_training_batch(task: Task, keys: jax.Array, learning_rates, *,
                       eval_every: int = 10, strategy: Optional[str] = None,
                       num_val_examples: Optional[int] = None,
                       batch_mode: Optional[str] = None,
                       mesh: Optional[jax.sharding.Mesh] = None):
  """Trains R optimizees, run ``r`` with ``keys[r]`` and ``learning_rates[r]``.

  ``run_batch`` with ``Task.init``: run r gives the same numbers as
  ``run_training(task, keys[r], learning_rates[r])``.

  Args:
    task, eval_every, strategy, num_val_examples: as in ``run_training``.
    keys: (R,) PRNG keys.
    learning_rates: (R, T) learning rates.
    batch_mode, mesh: as in ``run_batch``.

  Returns:
    ``(OptimizeeState, RunMetrics)`` with a leading run axis R on every leaf.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  if learning_rates.ndim != 2 or learning_rates.shape[0] != keys.shape[0]:
    raise ValueError(
        f"learning_rates must have shape (R, T) with R = len(keys) = "
        f"{keys.shape[0]}; got {learning_rates.shape}.")
  return run_batch(task, Task.init, (keys, learning_rates[:, 0]),
                   learning_rates, eval_every=eval_every, strategy=strategy,
                   batch_mode=batch_mode, num_val_examples=num_val_examples,
                   mesh=mesh)
