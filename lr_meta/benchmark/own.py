"""A learned LR controller against tuned schedules on YOUR training code.

Before trusting a controller on a model, compare it there with what a
practitioner would do instead: a constant learning rate and a cosine
schedule, each tuned on the validation loss. ``evaluate_own`` does that with
the user's own train step, over seeds, and scores it like the benchmark
(``lr_meta.benchmark.scoring``: a Mann-Whitney U test against the tuned
cosine and the best constant, a diverged seed counted apart and ranked
worst)::

  def make_train_step(tx):
    @jax.jit
    def train_step(params, opt_state, key):        # key: this step's PRNG key
      x, y = sample_batch(key)
      loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
      updates, opt_state = tx.update(
          grads, opt_state, params, loss=loss,
          **lmo.probe_inputs(opt_state, model.apply, params, x_probe, y_probe))
      return optax.apply_updates(params, updates), opt_state, loss
    return train_step

  result = evaluate_own(
      make_train_step, init_params=lambda key: model.init(key, x[:1]),
      evaluate=lambda params, split: {"loss": ..., "accuracy": ...},
      controller="fmnist_mlp_xu2019_progress_cpu", num_classes=10,
      num_steps=1000, outdir="runs/own")
  print(result.table)

One train step serves every method: the schedules' optimizer accepts and
ignores ``loss=`` (``optax.with_extra_args_support``) and ``probe_inputs``
gives it nothing to feed. The schedules run through ONE optimizer whose
learning rate is injected (``optax.inject_hyperparams``) and set in its
state before every step, so ``make_train_step`` is called twice (controller,
schedules) and a jitted step compiles twice, whatever the grid.

Protocol (the benchmark's): every LR of ``grid_lrs`` of each schedule is run
on the tuning seeds (``lr_meta.seeds`` range ``'benchmark_tuning'``); the
setting with the lowest mean final validation loss wins; the winners and the
controller then run on the evaluation seeds (range
``'benchmark_evaluation'``), where the test split decides. Seed ``s`` gives
every method the same initial params and the same step keys.
"""

import os
import time
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence, Union)

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import tree_utils as otu

from lr_meta import baselines
from lr_meta import checks
from lr_meta import optax as lmo
from lr_meta import seeds as seeds_lib
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import report
from lr_meta.benchmark import scoring
from lr_meta.tasks.task import DEFAULT_DIVERGENCE_LOSS

__all__ = ["OwnResult", "evaluate_own"]

SCHEDULES = {methods_lib.BEST_CONSTANT: "constant",
             methods_lib.REFERENCE: "cosine"}
TABLE = "results.md"
CURVES = "curves.png"


class OwnResult(NamedTuple):
  """What ``evaluate_own`` measured.

  Attributes:
    table: the Markdown table (also ``outdir/results.md``).
    scores: ``{method: scoring.WorkloadScore}`` on the evaluation seeds.
    runs: ``{method: [one dict per evaluation seed]}`` with ``seed``,
      ``setting``, ``test_loss``, ``test_accuracy``, ``final_val_loss``,
      ``diverged``, ``steps`` / ``val_loss`` (the validation curve from
      step 0) and ``lr_steps`` / ``learning_rate`` (the LR of every update,
      NaN after a divergence).
    tuning: ``{schedule method: {"grid": [(label, mean final val loss)],
      "best": label}}``.
  """
  table: str
  scores: Dict[str, scoring.WorkloadScore]
  runs: Dict[str, List[dict]]
  tuning: Dict[str, dict]


def _metrics(evaluate, params, split: str) -> tuple[float, float]:
  out = evaluate(params, split)
  if not isinstance(out, Mapping) or "loss" not in out:
    raise ValueError(f"evaluate(params, {split!r}) returned {out!r}; allowed: "
                     "a mapping with 'loss' (and optionally 'accuracy').")
  return float(out["loss"]), float(out.get("accuracy", np.nan))


def _run(train_step, tx, init_params, evaluate, key, num_steps, eval_every,
         learning_rates, divergence_loss) -> dict:
  """One training run; ``learning_rates`` None: ``tx`` sets its own LR.

  Validation at step 0 and every ``eval_every`` steps (and the last); the LR
  of every update. A run whose training loss exceeds ``divergence_loss`` (or
  is not finite) stops there as diverged: its later validation points are
  the cap, its later LRs NaN, so every run has the same curve lengths.

  A Python loop over the user's (jitted) step, as the user's own loop runs
  it: the step is theirs to compile, and its data may come from anywhere.
  """
  init_key, steps_key = jax.random.split(key)
  params = init_params(init_key)
  state = tx.init(params)
  step_keys = jax.random.split(steps_key, num_steps)
  points = {0, num_steps} | set(range(eval_every, num_steps, eval_every))
  val_loss = [_metrics(evaluate, params, "val")[0]]
  lrs = np.full((num_steps,), np.nan)
  diverged = False
  for t in range(num_steps):
    if learning_rates is not None:
      state = otu.tree_set(state, learning_rate=learning_rates[t])
    params, state, loss = train_step(params, state, step_keys[t])
    lrs[t] = (learning_rates[t] if learning_rates is not None
              else lmo.current_lr(state))
    loss = float(loss)
    if not np.isfinite(loss) or loss > divergence_loss:
      diverged = True
      break
    if t + 1 in points:
      val_loss.append(_metrics(evaluate, params, "val")[0])
  val_loss += [divergence_loss] * (len(points) - len(val_loss))
  test_loss, test_accuracy = ((np.nan, np.nan) if diverged
                              else _metrics(evaluate, params, "test"))
  return dict(test_loss=test_loss, test_accuracy=test_accuracy,
              final_val_loss=val_loss[-1],
              diverged=bool(diverged or not np.isfinite(val_loss[-1])),
              steps=sorted(points), val_loss=val_loss,
              lr_steps=list(range(num_steps)), learning_rate=lrs.tolist())


def _tuning_loss(run: dict) -> float:
  return np.inf if run["diverged"] else run["final_val_loss"]


def evaluate_own(
    make_train_step: Callable[[optax.GradientTransformationExtraArgs],
                              Callable],
    init_params: Callable[[jax.Array], Any],
    evaluate: Callable[[Any, str], Mapping[str, float]],
    *,
    controller: Union[str, lmo.Controller],
    num_steps: int,
    num_classes: Optional[int] = None,
    optimizer: Callable[..., optax.GradientTransformation] = optax.sgd,
    optimizer_kwargs: Optional[Mapping[str, Any]] = None,
    initial_lr: float = 0.1,
    grid_lrs: Sequence[float] = methods_lib.GRID_LRS["sgd"],
    num_seeds: int = 5,
    num_tuning_seeds: int = harness.NUM_TUNING_SEEDS,
    eval_every: Optional[int] = None,
    divergence_loss: float = DEFAULT_DIVERGENCE_LOSS,
    task_name: str = "your task",
    outdir: Optional[str] = None,
    progress_stream=None,
) -> OwnResult:
  """Compares ``controller`` with a tuned constant LR and a tuned cosine.

  Args:
    make_train_step: ``make_train_step(tx) -> train_step(params, opt_state,
      key) -> (params, opt_state, loss)``, the user's step (jit it) calling
      ``tx.update(grads, opt_state, params, loss=loss,
      **lr_meta.optax.probe_inputs(opt_state, apply_fn, params, x_probe,
      y_probe))``; ``key`` is that step's PRNG key (batches, dropout).
    init_params: ``init_params(key) -> params``.
    evaluate: ``evaluate(params, split) -> {"loss": ..., "accuracy": ...}``
      for ``split`` in ``'val'`` (tuning, curves) and ``'test'`` (the table).
    controller: a ``Controller`` or the name of a shipped one.
    num_steps: steps of every run (also the controller's ``num_steps``).
    num_classes: classes of the model ('xu2019' controllers' probe).
    optimizer: the base optimizer's factory, called with ``learning_rate``
      and ``optimizer_kwargs`` (``optax.sgd``, ``optax.adam``, ...).
    optimizer_kwargs: its other arguments (e.g. ``{"momentum": 0.9}``).
    initial_lr: the controller's initial LR ``lr0`` (one of
      ``spec.initial_lrs`` is what it was trained from).
    grid_lrs: the LRs (constant) and peak LRs (cosine) tuned over.
    num_seeds: evaluation seeds (>= 2: a t-test needs two).
    num_tuning_seeds: seeds of each grid point.
    eval_every: steps between validation points (default ``num_steps //
      10``, at least 1; the last step is always one).
    divergence_loss: a training loss above it (or not finite) ends a run as
      diverged; it is the worst test loss in the scores.
    task_name: names the task in the table and the figure.
    outdir: if given, ``results.md`` and ``curves.png`` (validation loss and
      LR against steps, mean over seeds) are written there.
    progress_stream: where progress goes (default stdout; a tqdm bar on a
      terminal, else a line every 30 s).

  Returns:
    An ``OwnResult``.
  """
  if isinstance(controller, str):
    controller = lmo.pretrained_controller(controller)
  checks.check_int("num_steps", num_steps, 1)
  checks.check_int("num_seeds", num_seeds, 2)
  checks.check_int("num_tuning_seeds", num_tuning_seeds, 1)
  eval_every = eval_every or max(1, num_steps // 10)
  checks.check_int("eval_every", eval_every, 1)
  if not grid_lrs or any(not lr > 0 for lr in grid_lrs):
    raise ValueError(f"grid_lrs={tuple(grid_lrs)!r}; allowed: a non-empty "
                     "sequence of LRs > 0.")
  kwargs = dict(optimizer_kwargs or {})
  injected = lambda lr: optax.inject_hyperparams(optimizer)(
      learning_rate=lr, **kwargs)
  name = f"{methods_lib.CONTROLLER_PREFIX}{controller.spec.name}"
  controlled_tx = lmo.controlled(injected(initial_lr), controller,
                                 num_classes=num_classes, num_steps=num_steps)
  schedule_tx = optax.with_extra_args_support(injected(float(grid_lrs[0])))
  steps = {name: make_train_step(controlled_tx),
           "schedules": make_train_step(schedule_tx)}
  tuning_seeds = seeds_lib.seed_range("benchmark_tuning", num_tuning_seeds)
  eval_seeds = seeds_lib.seed_range("benchmark_evaluation", num_seeds)
  grids = {m: baselines.grid(s, grid_lrs) for m, s in SCHEDULES.items()}
  total = (sum(len(g) for g in grids.values()) * len(tuning_seeds)
           + 3 * len(eval_seeds))
  # The first run compiles the user's step: left out of the ETA.
  progress = harness.Progress(total, total * num_steps, progress_stream,
                              warmup=1)

  def run(method, seed, spec=None):
    t0 = time.time()
    lrs = None if spec is None else jnp.asarray(spec.sequence(num_steps))
    out = _run(steps["schedules" if spec is not None else name],
               schedule_tx if spec is not None else controlled_tx,
               init_params, evaluate, jax.random.PRNGKey(seed), num_steps,
               eval_every, lrs, divergence_loss)
    progress.update(1, num_steps, time.time() - t0, method)
    return dict(out, seed=seed, setting=(spec.label() if spec is not None
                                         else f"lr0={initial_lr:g}"))

  tuning, chosen = {}, {}
  try:
    for method, grid in grids.items():
      # A diverged tuning run scores as infinitely bad.
      val = np.array([[_tuning_loss(run(method, seed, spec))
                       for seed in tuning_seeds] for spec in grid])
      best = scoring.best_setting(val)
      chosen[method] = grid[best]
      tuning[method] = {"grid": [(s.label(), float(v)) for s, v in
                                 zip(grid, val.mean(axis=1))],
                        "best": grid[best].label()}
    runs = {name: [run(name, seed) for seed in eval_seeds]}
    for method, spec in chosen.items():
      runs[method] = [run(method, seed, spec) for seed in eval_seeds]
  finally:
    progress.close()
  what = (f"{task_name}: {getattr(optimizer, '__name__', optimizer)}"
          f"{kwargs or ''}, {num_steps} steps")
  scores, table = _score(runs, tuning, name, grid_lrs, divergence_loss, what)
  if outdir:
    _write(outdir, table, runs, name, task_name)
  return OwnResult(table, scores, runs, tuning)


def _kinds(controller_name: str) -> Dict[str, str]:
  return {controller_name: methods_lib.SELF_TUNING,
          **{m: methods_lib.TUNED for m in SCHEDULES}}


def _score(runs, tuning, controller_name, grid_lrs, divergence_loss,
           what: str):
  """The benchmark's scores of ``runs`` and the Markdown table."""
  seed_scores = {m: scoring.apply_divergence(
      [r["test_loss"] for r in rs], [r["test_accuracy"] for r in rs],
      [r["diverged"] for r in rs], divergence_loss) for m, rs in runs.items()}
  scores = scoring.score_workload(seed_scores, methods_lib.REFERENCE,
                                  methods_lib.BEST_CONSTANT)
  seeds = [r["seed"] for r in runs[controller_name]]
  header = (f"{what}; test split, mean (std) over {len(seeds)} seeds "
            f"{seeds[0]}..{seeds[-1]}; schedules tuned on the mean final "
            "validation loss of the 'benchmark_tuning' seeds.")
  settings = {m: rs[0]["setting"] for m, rs in runs.items()}
  lines = report.score_table(header, scores, settings,
                             _kinds(controller_name)) + [""] + [
      f"Tuning: `{m}` best of {len(t['grid'])} LRs {tuple(grid_lrs)}: "
      f"{t['best']}." for m, t in tuning.items()]
  return scores, "\n".join(lines) + "\n"


def _write(outdir, table, runs, controller_name, task_name):
  """``results.md`` and ``curves.png`` (the benchmark's curve figure)."""
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, TABLE), "w") as f:
    f.write(table)
  cells = [dict(workload=task_name, method=m, **r)
           for m, rs in runs.items() for r in rs]
  methods = {m: {"kind": k} for m, k in _kinds(controller_name).items()}
  report.plot_curves({"cells": cells, "methods": methods}, task_name,
                     os.path.join(outdir, CURVES))
