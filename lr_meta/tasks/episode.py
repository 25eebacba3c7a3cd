"""Whole training runs of a ``Task`` under a given learning-rate sequence.

``run_training`` trains one optimizee for ``T`` inner steps, step ``t`` at
``learning_rates[t]``, evaluating on the validation split every ``eval_every``
steps (a "segment"; for a controller, one decision). ``run_training_batch``
runs R such runs at once: ``vmap`` over runs, one after another, or ``vmap``
with the run axis sharded over a device mesh.

Three execution strategies (``lr_meta.runner``) give the same numbers:
``'scan'`` (one ``lax.scan`` over segments, each a ``lax.scan`` over steps, in
one ``jit``), ``'chunk'`` (a Python loop over jitted segments with the steps
unrolled), ``'loop'`` (a Python loop over a jitted single step: the reference).
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import runner
from lr_meta.tasks.task import EvalMetrics, OptimizeeState, StepMetrics, Task

BATCH_MODES = ("vmap", "sequential", "sharded")
RUN_AXIS = "runs"


class RunMetrics(NamedTuple):
  """Per-step train metrics (leading axis T) and per-segment validation (T // K)."""
  train: StepMetrics
  val: EvalMetrics


def _segment(task: Task, state: OptimizeeState, learning_rates: jax.Array,
             num_val_examples: Optional[int], unroll: bool):
  """``len(learning_rates)`` steps, then a validation evaluation."""
  state, train = runner.inner_loop(task.train_step, state, learning_rates, unroll)
  return state, RunMetrics(train, task.evaluate(state, "val", num_val_examples))


def _check_schedule(learning_rates, eval_every: int) -> int:
  num_steps = np.shape(learning_rates)[-1]
  if eval_every <= 0 or num_steps % eval_every:
    raise ValueError(
        f"eval_every must be a positive divisor of the number of steps "
        f"({num_steps}); got {eval_every!r}.")
  return num_steps // eval_every


def _flatten_segments(metrics: RunMetrics) -> RunMetrics:
  """(..., S, K) train metrics -> (..., S*K)."""
  flat = lambda x: x.reshape(x.shape[:-2] + (-1,))
  return RunMetrics(jax.tree.map(flat, metrics.train), metrics.val)


def _scan_run(task, key, learning_rates, eval_every, num_val_examples):
  state = task.init(key, learning_rates[0])
  segments = learning_rates.reshape(-1, eval_every)
  body = lambda s, lrs: _segment(task, s, lrs, num_val_examples, unroll=False)
  state, metrics = jax.lax.scan(body, state, segments)
  return state, _flatten_segments(metrics)


_STATIC = ("eval_every", "num_val_examples")
_scan_run_jit = jax.jit(_scan_run, static_argnames=_STATIC)
_scan_run_batch_jit = jax.jit(
    lambda task, keys, lrs, eval_every, num_val_examples: jax.vmap(
        lambda k, l: _scan_run(task, k, l, eval_every, num_val_examples))(keys, lrs),
    static_argnames=_STATIC)

_init_jit = jax.jit(Task.init)
_init_batch_jit = jax.jit(jax.vmap(Task.init, in_axes=(None, 0, 0)))
_segment_jit = jax.jit(_segment, static_argnames=("num_val_examples", "unroll"))
_segment_batch_jit = jax.jit(
    jax.vmap(_segment, in_axes=(None, 0, 0, None, None)),
    static_argnums=(3, 4))
_step_jit = jax.jit(Task.train_step)
_step_batch_jit = jax.jit(jax.vmap(Task.train_step, in_axes=(None, 0, 0)))
_eval_jit = jax.jit(Task.evaluate, static_argnums=(2, 3))
_eval_batch_jit = jax.jit(jax.vmap(Task.evaluate, in_axes=(None, 0, None, None)),
                          static_argnums=(2, 3))


def _python_run(task, key, learning_rates, eval_every, num_val_examples,
                strategy, batched):
  """'chunk' and 'loop': a Python loop over jitted segments or single steps."""
  init, segment, step, evaluate = (
      (_init_batch_jit, _segment_batch_jit, _step_batch_jit, _eval_batch_jit)
      if batched else (_init_jit, _segment_jit, _step_jit, _eval_jit))
  lr_axis = -1
  state = init(task, key, learning_rates[..., 0])
  seg_metrics = []
  num_segments = learning_rates.shape[lr_axis] // eval_every
  for s in range(num_segments):
    lrs = learning_rates[..., s * eval_every:(s + 1) * eval_every]
    if strategy == "chunk":
      state, m = segment(task, state, lrs, num_val_examples, True)
    else:
      steps = []
      for k in range(eval_every):
        state, sm = step(task, state, lrs[..., k])
        steps.append(sm)
      stack_axis = 1 if batched else 0
      train = jax.tree.map(lambda *x: jnp.stack(x, stack_axis), *steps)
      m = RunMetrics(train, evaluate(task, state, "val", num_val_examples))
    seg_metrics.append(m)
  axis = 1 if batched else 0
  metrics = jax.tree.map(lambda *x: jnp.stack(x, axis), *seg_metrics)
  return state, _flatten_segments(metrics)


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
  if strategy == "scan":
    return _scan_run_jit(task, key, learning_rates, eval_every=eval_every,
                         num_val_examples=num_val_examples)
  return _python_run(task, key, learning_rates, eval_every, num_val_examples,
                     strategy, batched=False)


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


def run_training_batch(task: Task, keys: jax.Array, learning_rates, *,
                       eval_every: int = 10, strategy: Optional[str] = None,
                       num_val_examples: Optional[int] = None,
                       batch_mode: Optional[str] = None,
                       mesh: Optional[jax.sharding.Mesh] = None):
  """Trains R optimizees, run ``r`` with ``keys[r]`` and ``learning_rates[r]``.

  Run r gives the same numbers as ``run_training(task, keys[r],
  learning_rates[r])``. A run that diverges is frozen and reports capped
  losses; the other runs are unaffected (the runs share no state).

  Args:
    task, eval_every, strategy, num_val_examples: as in ``run_training``.
    keys: (R,) PRNG keys.
    learning_rates: (R, T) learning rates.
    batch_mode: 'vmap' (all runs in one program), 'sequential' (one after the
      other), or 'sharded' (vmap with the run axis split over ``mesh``, by
      default every device; R must be a multiple of the device count).
      Default: the measured choice (``runner.default_batch_mode``).
    mesh: the device mesh for 'sharded' (see ``run_mesh``).

  Returns:
    ``(OptimizeeState, RunMetrics)`` with a leading run axis R on every leaf.
  """
  learning_rates = jnp.asarray(learning_rates, jnp.float32)
  if learning_rates.ndim != 2 or learning_rates.shape[0] != keys.shape[0]:
    raise ValueError(
        f"learning_rates must have shape (R, T) with R = len(keys) = "
        f"{keys.shape[0]}; got {learning_rates.shape}.")
  batch_mode = batch_mode or runner.default_batch_mode(task.model_name)
  if batch_mode not in BATCH_MODES:
    raise ValueError(f"Unknown batch_mode {batch_mode!r}; allowed: {BATCH_MODES}.")
  _check_schedule(learning_rates, eval_every)
  strategy = runner.check_strategy(
      strategy or runner.default_strategy(task.model_name))
  if batch_mode == "sequential":
    results = [run_training(task, k, l, eval_every=eval_every, strategy=strategy,
                            num_val_examples=num_val_examples)
               for k, l in zip(keys, learning_rates)]
    return jax.tree.map(lambda *x: jnp.stack(x), *results)
  if batch_mode == "sharded":
    mesh = mesh or run_mesh()
    if keys.shape[0] % mesh.size:
      raise ValueError(
          f"sharded runs need R ({keys.shape[0]}) to be a multiple of the "
          f"number of devices in the mesh ({mesh.size}).")
    keys, learning_rates = shard_runs((keys, learning_rates), mesh)
  if strategy == "scan":
    return _scan_run_batch_jit(task, keys, learning_rates, eval_every=eval_every,
                               num_val_examples=num_val_examples)
  return _python_run(task, keys, learning_rates, eval_every, num_val_examples,
                     strategy, batched=True)
