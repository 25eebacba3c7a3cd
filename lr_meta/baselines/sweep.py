"""Tune a baseline by sweep, then re-run the winner on fresh seeds.

The protocol of Xu et al. 2019 (section 4): every grid point trains with the
same seed(s), the best by final validation loss is kept, then re-run on N
fresh seeds whose test loss and accuracy are reported as mean (std).
All runs of a sweep go through ``run_training_batch`` in batches; with a
mesh over several processes (``lr_meta.distributed.global_mesh()``) each
process trains and evaluates its share of the grid points or seeds, and every
process gets every result.
"""

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import distributed
from lr_meta import runner
from lr_meta import seeds as seeds_lib
from lr_meta.baselines import schedules
from lr_meta.baselines.schedules import ScheduleSpec
from lr_meta.tasks import optax_training
from lr_meta.tasks.task import evaluate_batch
from lr_meta.tasks.task import Task

__all__ = [
    "ADAPTIVE_GRID_LRS", "DIVERGED_MARK", "DIVERGED_NOTE", "EVAL_SEED_OFFSET",
    "BaselineEntry", "evaluate_on_seeds", "mean_std", "parse_baseline",
    "SeedResults", "sweep", "SweepResult", "tune_and_evaluate",
]

# Evaluation seeds never overlap tuning seeds.
EVAL_SEED_OFFSET = seeds_lib.seed_offset("evaluation")

# Marks a mean over seeds of which some diverged; tables holding one end with
# DIVERGED_NOTE.
DIVERGED_MARK = "†"
DIVERGED_NOTE = (f"{DIVERGED_MARK} mean (std) over seeds of which some "
                 "diverged (count in the diverged column).")


def mean_std(x, diverged=0) -> str:
  """``'mean (std)'`` of per-seed numbers, the format of every results table.

  Args:
    x: per-seed numbers.
    diverged: how many of those seeds diverged (a count, or a boolean per
      seed); a mean over partly or wholly diverged seeds is marked with
      ``DIVERGED_MARK``.
  """
  mark = f" {DIVERGED_MARK}" if int(np.sum(diverged)) else ""
  return f"{np.mean(x):.4f} ({np.std(x):.4f}){mark}"


class SweepResult(NamedTuple):
  specs: list                  # the grid, in order
  val_loss: np.ndarray         # (G,) final validation loss, mean over tuning seeds
  best_index: int

  @property
  def best(self) -> ScheduleSpec:
    return self.specs[self.best_index]


class SeedResults(NamedTuple):
  """Per-seed outcomes of one schedule."""
  spec: ScheduleSpec
  test_loss: np.ndarray        # (N,)
  test_accuracy: np.ndarray    # (N,)
  val_curve: np.ndarray        # (N, T // eval_every)
  train_loss: np.ndarray       # (N, T)
  learning_rates: np.ndarray   # (T,)
  diverged: np.ndarray         # (N,)


class _Runs(NamedTuple):
  """What a sweep keeps of R runs: curves, final model on a split, divergence."""
  metrics: optax_training.RunResult
  final: Any               # EvalMetrics of each final model on the split
  diverged: jax.Array


def _train_and_test(task, keys, lrs, split, *, eval_every, strategy,
                    batch_mode, num_val_examples, max_batch, mesh) -> _Runs:
  """Trains R runs in batches of ``max_batch`` (per process, over ``mesh``'s
  processes) and evaluates each final model on the whole ``split``."""
  mode = batch_mode or runner.default_batch_mode(task.model_name)

  def local(rows):
    keys, lrs = rows
    outs = []
    for start in range(0, keys.shape[0], max_batch):
      sl = slice(start, start + max_batch)
      states, metrics = optax_training.run_training_batch(
          task, keys[sl], lrs[sl], eval_every=eval_every, strategy=strategy,
          num_val_examples=num_val_examples, batch_mode=batch_mode)
      outs.append(_Runs(metrics, _evaluate(task, states, split, mode),
                        states.diverged))
    return jax.tree.map(lambda *x: jnp.concatenate(x), *outs)
  return distributed.map_rows(local, (keys, lrs), mesh)


def _evaluate(task, states, split, batch_mode):
  """``evaluate_batch`` of R final models; in 'sequential' mode one model
  at a time, as they trained. Vmapped over R, each evaluation chunk holds R
  models' activations at once: the CIFAR-10 CNN's 10 test seeds on 1000-example
  chunks held 12.8 GB (benchmarks/memory.py sweep; 1 model: ~0.3 GB)."""
  if batch_mode != "sequential":
    return evaluate_batch(task, states, split)
  n = jax.tree.leaves(states)[0].shape[0]
  outs = [evaluate_batch(task, jax.tree.map(lambda a: a[i:i + 1], states),
                         split) for i in range(n)]
  return jax.tree.map(lambda *x: jnp.concatenate(x), *outs)


def sweep(task: Task, specs: Sequence[ScheduleSpec], num_steps: int, *,
          tuning_seeds: Sequence[int] = (0,), eval_every: int = 10,
          strategy: Optional[str] = None, batch_mode: Optional[str] = None,
          num_val_examples: Optional[int] = None, max_batch: int = 16,
          mesh: Optional[jax.sharding.Mesh] = None) -> SweepResult:
  """Runs every spec on every tuning seed; picks the lowest final val loss.

  The final val loss is measured on the WHOLE validation split, whatever
  ``num_val_examples`` the curves use: a controller's small probe (e.g. 128
  examples) is too noisy to rank schedules by (it once picked constant LR
  0.03 over 0.3 by 0.0007, a 0.18 worse test loss). ``max_batch`` runs go
  through one ``run_training_batch`` call; ``mesh`` spreads the runs over
  processes (module docstring).
  """
  if not specs:
    raise ValueError("sweep needs at least one schedule spec.")
  seqs = np.stack([s.sequence(num_steps) for s in specs])
  seeds = np.asarray(tuning_seeds)
  lrs = np.repeat(seqs, len(seeds), axis=0)
  keys = jax.vmap(jax.random.key)(jnp.tile(jnp.asarray(seeds), len(specs)))
  runs = _train_and_test(task, keys, jnp.asarray(lrs), "val",
                         eval_every=eval_every, strategy=strategy,
                         batch_mode=batch_mode,
                         num_val_examples=num_val_examples,
                         max_batch=max_batch, mesh=mesh)
  final_val = np.asarray(runs.final.loss).reshape(len(specs), len(seeds))
  val_loss = final_val.mean(axis=1)
  return SweepResult(list(specs), val_loss, int(np.argmin(val_loss)))


def evaluate_on_seeds(task: Task, spec: ScheduleSpec, num_steps: int, *,
                      num_seeds: int = 10, eval_every: int = 10,
                      strategy: Optional[str] = None, batch_mode: Optional[str] = None,
                      num_val_examples: Optional[int] = None,
                      max_batch: int = 16,
                      mesh: Optional[jax.sharding.Mesh] = None) -> SeedResults:
  """Re-runs ``spec`` on ``num_seeds`` fresh seeds and tests each final model
  (``mesh``: the seeds over processes, as in ``sweep``)."""
  seq = spec.sequence(num_steps)
  seeds = EVAL_SEED_OFFSET + np.arange(num_seeds)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  lrs = jnp.asarray(np.tile(seq, (num_seeds, 1)))
  runs = _train_and_test(task, keys, lrs, "test", eval_every=eval_every,
                         strategy=strategy, batch_mode=batch_mode,
                         num_val_examples=num_val_examples,
                         max_batch=max_batch, mesh=mesh)
  return SeedResults(spec, np.asarray(runs.final.loss),
                     np.asarray(runs.final.accuracy),
                     np.asarray(runs.metrics.val.loss),
                     np.asarray(runs.metrics.train.loss), seq,
                     np.asarray(runs.diverged))


class BaselineEntry(NamedTuple):
  """A baseline as written in configs: ``'[optimizer:]grid-or-spec'``.

  ``'xu2019_step_decay'`` (a named grid, tuned), ``'cosine'``,
  ``'step_decay(lr=0.1, every=50, factor=0.99)'`` (one fixed spec, re-run only)
  or ``'adam:constant'`` (the constant-LR grid with Adam as the optimizer).
  """
  text: str
  optimizer: Optional[str]     # None: the task's own optimizer
  specs: list

  @property
  def tuned(self) -> bool:
    return len(self.specs) > 1


# Adaptive optimizers work at LRs two decades below SGD's.
ADAPTIVE_GRID_LRS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def parse_baseline(text: str, grid_lrs=schedules.DEFAULT_GRID_LRS,
                   adaptive_grid_lrs=ADAPTIVE_GRID_LRS) -> BaselineEntry:
  """Parses a config baseline string; errors name the string and what is allowed.

  Args:
    text: ``'[optimizer:]grid-or-spec'`` (see ``BaselineEntry``).
    grid_lrs: initial LRs of LR-parametrised grids for SGD and momentum.
    adaptive_grid_lrs: the same for Adam and RMSProp.
  """
  optimizer, _, body = text.rpartition(":")
  optimizer = optimizer.strip() or None
  body = body.strip()
  if optimizer in ("adam", "rmsprop"):
    grid_lrs = adaptive_grid_lrs
  if "(" in body:
    specs = [schedules.parse_spec(body)]
  else:
    specs = schedules.named_grid(body, grid_lrs)
  return BaselineEntry(text, optimizer, specs)


def tune_and_evaluate(task: Task, specs: Sequence[ScheduleSpec], num_steps: int,
                      *, num_seeds: int = 10, tuning_seeds: Sequence[int] = (0,),
                      **run_kw):
  """The protocol of the module docstring: sweep (if more than one spec), re-run.

  Returns:
    ``(sweep_result or None, SeedResults of the winner)``.
  """
  swept = None
  best = specs[0]
  if len(specs) > 1:
    swept = sweep(task, specs, num_steps, tuning_seeds=tuning_seeds, **run_kw)
    best = swept.best
  return swept, evaluate_on_seeds(task, best, num_steps, num_seeds=num_seeds,
                                  **run_kw)
