"""Controller evaluation: checkpoint selection, baselines, t-test.

The protocol of Xu, Dai, Kemp & Metz 2019 (section 4) as library functions:
``evaluate`` measures and returns numbers, ``write`` puts them in files
(table, per-seed numbers, plots). Both ``scripts/evaluate_controller.py``
(see it for the command line) and the main job ``scripts/train_controller.py``
call them with the same defaults, so both report the same table for a run.

* Checkpoint selection: candidates are the ``num_candidates`` snapshots with
  the best training episode return (``rundir.training_return``: the return is
  the validation-loss decrease of the training episodes) plus the last one;
  each candidate runs deterministically on ``selection_seeds`` seeds of the
  'selection' range (``lr_meta.seeds``), never used for testing, and the one
  with the lowest final validation loss (whole validation split) wins.
* The selected controller and every baseline run on the same N seeds of the
  'evaluation' range and are compared on the test set: mean (std) of test
  loss and accuracy, how many runs diverged, and Welch's t-test (unequal
  variances) of each baseline against the controller.
* Baselines: ``config.eval.baselines``, strings parsed by
  ``lr_meta.baselines.parse_baseline``, each run as a benchmark method
  (``lr_meta.benchmark.methods.schedule_grid_method``) by the benchmark's
  protocol (``lr_meta.benchmark.harness.tune_and_run``): a named grid is
  tuned by mean final validation loss (whole split) over the benchmark's
  ``NUM_TUNING_SEEDS`` tuning seeds, exactly over the grid the config gives
  (``'xu2019_step_decay'``: Xu's 48-point grid; ``'cosine'``: the
  ``eval.constant_lrs`` peaks), a spec such as
  ``'step_decay(lr=0.1, every=50, factor=0.99)'`` is re-run as is (reuse a
  winner tuned by ``scripts/run_baselines.py``), ``'adam:constant'`` changes
  the optimizer. Runs are kept in a ``harness.RunStore`` when one is given
  (``scripts/evaluate_controller.py --baseline_cache``), so evaluating
  several controllers on one task trains each baseline once.
* Context rows: ``config.eval.benchmark_methods``, names of self-tuning
  methods of ``lr_meta.benchmark`` (``'controller:generalist'``: a shipped
  controller, pretrained elsewhere and untuned here;
  ``'schedule_free_adamw'``: an LR-free optax.contrib optimizer at its
  defaults). Each runs as the benchmark runs it (its ``Program`` through
  ``lr_meta.benchmark.harness.tune_and_run``) on the evaluation task from
  ``eval.initial_lrs[0]`` (a controller's starting LR, the base optimizer's
  default), on the same test seeds, scored on the same test split and
  t-tested against the trained controller like every baseline.
* Transfer (Xu's Table 2): the agent settings come from the training run's
  config, the task and environment from the evaluation config.
"""

import dataclasses
import json
import os
import time
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional,
                    Sequence)

import jax
import ml_collections
import numpy as np

from lr_meta import baselines
from lr_meta import experiment
from lr_meta import plotting
from lr_meta import rundir
from lr_meta import seeds as seeds_lib
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import workloads as workloads_lib
# One Welch test for the evaluation tables and the benchmark.
from lr_meta.benchmark.scoring import welch_p
from lr_meta.tasks.task import DEFAULT_DIVERGENCE_LOSS

__all__ = ["DEFAULT_BASELINES", "NUM_CANDIDATES", "SELECTION_SEEDS",
           "RESULTS_JSON", "MethodResult", "Evaluation",
           "candidate_iterations", "welch_p",
           "check_benchmark_methods", "evaluation_workload", "evaluate",
           "markdown", "results_json", "write"]

DEFAULT_BASELINES = ("xu2019_step_decay", "cosine")
# Checkpoint selection: snapshots re-run (by training return, plus the last)
# and seeds per candidate; the main job and evaluate_controller.py use these.
NUM_CANDIDATES = 3
SELECTION_SEEDS = 2
RESULTS_JSON = "results.json"


class MethodResult(NamedTuple):
  """One row of the evaluation: per-seed outcomes and curves of a method."""
  label: str
  test_loss: np.ndarray        # (N,)
  test_accuracy: np.ndarray    # (N,)
  diverged: np.ndarray         # (N,) bool
  wall_s: float
  val_steps: np.ndarray        # (S,) inner steps of the validation curve
  val_mean: np.ndarray         # (S,) validation loss, mean over seeds
  val_std: np.ndarray          # (S,)
  lr_steps: np.ndarray         # (L,) inner steps of the LR schedule
  learning_rates: np.ndarray   # (L,) (controller: mean over seeds)
  controller: bool             # the trained controller (else a baseline)
  lr0: float = float("nan")    # a controller's initial LR
  # A row of config.eval.benchmark_methods: the lr_meta.benchmark method's
  # name and what it is (printed under the table); "" for the others.
  benchmark_method: str = ""
  note: str = ""
  # A tuned baseline's grid, its winner and the seeds it was tuned on
  # (``harness.tune``'s summary); None for every other row.
  tuning: Optional[dict] = None


class Evaluation(NamedTuple):
  """Everything ``evaluate`` measured (``markdown``, ``results_json``)."""
  workdir: str
  selected_iteration: int
  last_iteration: int
  candidates: Dict[int, float]    # iteration -> selection val loss
  selection_seeds: int
  test_seeds: Sequence[int]
  config: Any                     # the evaluation config
  num_steps: int
  # Controllers first, then baselines, then benchmark methods.
  methods: List[MethodResult]
  wall_s: float


def candidate_iterations(metrics_by_step: Mapping[int, Mapping[str, float]],
                         num_candidates: int) -> List[int]:
  """Top ``num_candidates`` snapshots by training return, plus the last.

  Args:
    metrics_by_step: ``{iteration: training metrics}`` of every snapshot
      (``rundir.snapshot_metrics``).
    num_candidates: how many to take by training return; when no snapshot
      has a finite return, the latest ones are taken.
  """
  iters = sorted(metrics_by_step)
  if not iters:
    raise ValueError("No snapshots to choose from.")
  ranked = sorted((i for i in iters
                   if np.isfinite(rundir.training_return(metrics_by_step[i]))),
                  key=lambda i: -rundir.training_return(metrics_by_step[i]))
  chosen = (ranked if ranked else iters[::-1])[:num_candidates]
  return sorted(set(chosen) | {iters[-1]})


def check_benchmark_methods(names: Sequence[str]) -> None:
  """Raises ``ValueError`` unless every name of ``config.eval.
  benchmark_methods`` is a self-tuning ``lr_meta.benchmark`` method (one
  setting, nothing tuned on the task; tuned schedules belong in
  ``config.eval.baselines``). Loads no controller and runs no JAX, so a
  script can check before it trains."""
  for name in names:
    try:
      if name.startswith(methods_lib.CONTROLLER_PREFIX):
        methods_lib.check_names([name])
      elif methods_lib.get_method(name).kind != methods_lib.SELF_TUNING:
        raise ValueError(
            f"{name!r} is tuned by the benchmark; allowed: its "
            f"{methods_lib.SELF_TUNING!r} methods and 'controller:<name or "
            "path>' (tuned schedules go in config.eval.baselines).")
    except ValueError as e:
      raise ValueError(f"config.eval.benchmark_methods: {e}") from e


def evaluation_workload(eval_config, num_steps: int, eval_every: int,
                        initial_lr: float) -> workloads_lib.Workload:
  """The evaluation task as a benchmark ``Workload``, what a benchmark
  method builds its program from: the config's data set (and slices), model,
  optimizer and batch size, ``num_steps`` steps, validation every
  ``eval_every``, and ``initial_lr``, the base optimizer's default LR and a
  learned controller's starting LR."""
  t = eval_config.task
  pairs = lambda d: tuple(sorted(
      (k, tuple(v) if isinstance(v, list) else v)
      for k, v in dict(d or {}).items()))
  return workloads_lib.Workload(
      name="evaluation", split=workloads_lib.HELDOUT, dataset=t.dataset,
      model=t.model, optimizer=t.optimizer, batch_size=int(t.batch_size),
      num_steps=num_steps, initial_lr=float(initial_lr),
      model_kwargs=pairs(t.get("model_kwargs")),
      optimizer_kwargs=pairs(t.get("optimizer_kwargs")),
      num_evals=num_steps // eval_every,
      num_train_examples=t.get("num_train_examples"),
      num_val_examples=t.get("num_val_examples"),
      num_test_examples=t.get("num_test_examples"),
      divergence_loss=t.get("divergence_loss", DEFAULT_DIVERGENCE_LOSS),
      context_length=t.get("context_length"), loss=t.get("loss"),
      description="a controller's evaluation task")


class _Unkept:
  """``harness.execute``'s run store when runs are kept nowhere: every
  evaluation runs its baselines and benchmark methods afresh."""

  def get(self, key):
    del key

  def put(self, key, record):
    del key, record


def _method_row(method, label: Callable[[Any], str], task, workload,
                seeds: Sequence[int], store, strategy: Optional[str],
                **fields) -> MethodResult:
  """``method`` by the benchmark's protocol (``harness.tune_and_run``: tuned
  on the benchmark's tuning seeds if it is tuned, then run on ``seeds``):
  one row of the table, labelled ``label(setting it ran)``."""
  t0 = time.time()
  runs = harness.tune_and_run(
      task, workload, method, store,
      seeds_lib.seed_range("benchmark_tuning", harness.NUM_TUNING_SEEDS),
      seeds, strategy=strategy)
  # A record's non-finite numbers are None (JSON): NaN here.
  column = lambda field: np.array([r[field] for r in runs.records], float)
  val, lrs = column("val_loss"), column("learning_rate")
  return MethodResult(
      label(runs.setting), column("test_loss"), column("test_accuracy"),
      column("diverged").astype(bool), time.time() - t0,
      np.asarray(runs.records[0]["steps"]), val.mean(0), val.std(0),
      np.arange(workload.num_evals) * workload.eval_every, lrs.mean(0),
      False, note=method.description, tuning=runs.tuning, **fields)


def _benchmark_row(name: str, task, workload, seeds: Sequence[int], store,
                   strategy: Optional[str]) -> MethodResult:
  """The self-tuning benchmark method ``name`` (its one setting) on
  ``seeds``."""
  controller = name.startswith(methods_lib.CONTROLLER_PREFIX)
  label = (f"{name} (pretrained, lr0={workload.initial_lr:g}, untuned)"
           if controller else f"{name} (untuned)")
  return _method_row(methods_lib.get_method(name), lambda _: label, task,
                     workload, seeds, store, strategy, benchmark_method=name)


def _baseline_row(text: str, entry, task, workload, seeds: Sequence[int],
                  store, strategy: Optional[str]) -> MethodResult:
  """The configured baseline ``text`` (parsed: ``entry``) as a benchmark
  method of its schedules, through ``entry.optimizer`` if it names one."""
  if entry.optimizer:
    workload = dataclasses.replace(workload, optimizer=entry.optimizer)
  method = methods_lib.schedule_grid_method(
      text, entry.specs,
      f"{workload.optimizer}: "
      + (f"best of {len(entry.specs)} schedules by mean final validation "
         f"loss over {harness.NUM_TUNING_SEEDS} tuning seeds"
         if entry.tuned else "one fixed schedule"))
  tail = (f" (best of {len(entry.specs)} by val loss)" if entry.tuned
          else "")
  return _method_row(method,
                     lambda setting: f"{workload.optimizer} {setting.label}"
                     f"{tail}", task, workload, seeds, store, strategy)


def evaluate(workdir: str, eval_config=None, data_dir: Optional[str] = None,
             num_candidates: int = NUM_CANDIDATES,
             selection_seeds: int = SELECTION_SEEDS,
             store=None,
             log: Callable[[str], Any] = print) -> Evaluation:
  """Runs the protocol of the module docstring on the run in ``workdir``.

  Args:
    workdir: a run directory of ``scripts/train_controller.py``.
    eval_config: the evaluation task and baselines (default: the run's own
      config).
    data_dir: data set directory (default ``$LR_META_DATA_DIR``).
    num_candidates: snapshots (by training return) re-run for selection.
    selection_seeds: seeds per candidate for selection.
    store: where the baselines' and benchmark methods' runs are kept and
      found again (``lr_meta.benchmark.harness.RunStore``); None: nowhere.
    log: progress lines.
  """
  t_start = time.time()
  train_config = rundir.read_config(workdir)
  eval_config = eval_config or train_config
  task, env, env_params, strategy = experiment.build(eval_config, data_dir)
  # The agent's own settings come from training; the env from evaluation.
  agent_config = ml_collections.ConfigDict(eval_config.to_dict())
  agent_config.agent = train_config.agent
  agent_config[train_config.agent] = train_config[train_config.agent]
  agent = experiment.evaluation_agent(agent_config, env, env_params, strategy,
                                      data_dir)
  template = experiment.policy_params(
      agent_config, agent.init(jax.random.PRNGKey(0)))
  snapshot_metrics = rundir.snapshot_metrics(workdir)
  k = env_params.steps_per_decision
  num_steps = env_params.num_decisions * k
  n = int(eval_config.eval.num_seeds)
  lr0s = tuple(float(x) for x in eval_config.eval.initial_lrs)

  def controller_runs(params, seeds, lr0):
    return experiment.run_controller(env, env_params, agent, params, seeds,
                                     lr0, strategy)

  candidates = candidate_iterations(snapshot_metrics, num_candidates)
  texts = tuple(eval_config.eval.get("baselines", DEFAULT_BASELINES))
  names = tuple(eval_config.eval.get("benchmark_methods", ()))
  check_benchmark_methods(names)
  total = len(candidates) + len(lr0s) + len(texts) + len(names)
  done = []

  def progress(line):
    log(f"[evaluation {len(done)}/{total}, {time.time() - t_start:.0f} s] "
        f"{line}")
    done.append(line)

  # The stages, said before the first one compiles (a minute on a CPU).
  progress(f"{len(candidates)} candidate snapshots {candidates} on "
           f"{selection_seeds} seeds, then {len(lr0s)} controller run(s), "
           f"{len(texts)} baseline(s) {list(texts)} and {len(names)} "
           f"benchmark method(s) {list(names)} on {n} seeds")

  # 1. Checkpoint selection by validation loss (seeds never used for testing).
  t0 = time.time()
  sel_seeds = seeds_lib.seed_range("selection", selection_seeds)
  scores = {}
  for it in candidates:
    params = rundir.load_snapshot(workdir, it, template)
    vals = [experiment.test_metrics(task, controller_runs(params, sel_seeds,
                                                          lr0).final_state,
                                    "val")[0] for lr0 in lr0s]
    scores[it] = float(np.mean(vals))
    progress(f"candidate iteration {it}: val loss {scores[it]:.4f}")
  best_it = min(scores, key=scores.get)
  params = rundir.load_snapshot(workdir, best_it, template)
  log(f"selected iteration {best_it} ({time.time() - t0:.0f} s)")

  # 2. Controller on the test seeds.
  test_seeds = seeds_lib.seed_range("evaluation", n)
  methods = []
  for lr0 in lr0s:
    t0 = time.time()
    runs = controller_runs(params, test_seeds, lr0)
    loss, acc = experiment.test_metrics(task, runs.final_state)
    methods.append(MethodResult(
        f"{train_config.agent.upper()} controller (lr0={lr0:g})", loss, acc,
        np.asarray(runs.diverged, bool), time.time() - t0,
        (np.arange(runs.val_loss.shape[0]) + 1) * k, runs.val_loss.mean(1),
        runs.val_loss.std(1), np.arange(runs.learning_rates.shape[0]) * k,
        runs.learning_rates.mean(1), True, lr0))
    progress(f"{methods[-1].label}: test loss "
             f"{np.mean(methods[-1].test_loss):.4f}")

  # 3. Baselines, tuned (or given) then re-run on the same test seeds, and
  # 4. benchmark methods, untuned (context rows): one protocol, the
  # benchmark's, on the evaluation task as a workload.
  store = store or _Unkept()
  workload = evaluation_workload(eval_config, num_steps, k, lr0s[0])
  run_strategy = eval_config.get("strategy") or None
  for text in texts:
    entry = baselines.parse_baseline(text, tuple(eval_config.eval.constant_lrs))
    methods.append(_baseline_row(text, entry, task, workload, test_seeds,
                                 store, run_strategy))
    progress(f"{methods[-1].label}: test loss "
             f"{np.mean(methods[-1].test_loss):.4f} "
             f"({methods[-1].wall_s:.0f} s)")
  for name in names:
    methods.append(_benchmark_row(name, task, workload, test_seeds, store,
                                  run_strategy))
    progress(f"{methods[-1].label}: test loss "
             f"{np.mean(methods[-1].test_loss):.4f} "
             f"({methods[-1].wall_s:.0f} s)")
  return Evaluation(workdir, best_it, max(snapshot_metrics), scores,
                    selection_seeds, test_seeds, eval_config, num_steps,
                    methods, time.time() - t_start)


def markdown(ev: Evaluation) -> str:
  """The results table: mean (std), diverged counts, p-values vs the first
  controller row; a mean over partly diverged seeds is marked; what each
  benchmark-method row is, under the table."""
  first = ev.methods[0]
  n, s0 = len(ev.test_seeds), ev.test_seeds[0]
  config = ev.config
  lines = [
      f"Controller from `{ev.workdir}` (selected iteration "
      f"{ev.selected_iteration} of {ev.last_iteration}, by val loss over "
      f"{ev.selection_seeds} seeds), evaluated on {config.task.dataset} / "
      f"{config.task.model}, batch {config.task.batch_size}, {ev.num_steps} "
      f"steps; test set, mean (std) over {n} seeds ({s0}..{s0 + n - 1})."
      f" p: Welch t-test against {first.label}.", "",
      "| method | test loss | test accuracy | diverged | p (loss) | p (acc) |",
      "|---|---|---|---|---|---|"]
  compared = next(m for m in ev.methods if m.controller)
  for m in ev.methods:
    p = ("", "") if m.controller else (
        f"{welch_p(m.test_loss, compared.test_loss):.3g}",
        f"{welch_p(m.test_accuracy, compared.test_accuracy):.3g}")
    div = int(m.diverged.sum())
    lines.append(f"| {m.label} | {baselines.mean_std(m.test_loss, div)} | "
                 f"{baselines.mean_std(m.test_accuracy, div)} | {div} | "
                 f"{p[0]} | {p[1]} |")
  if any(m.diverged.any() for m in ev.methods):
    lines += ["", baselines.DIVERGED_NOTE]
  tuned = [m for m in ev.methods if m.tuning]
  if tuned:
    seeds = tuned[0].tuning["tuning_seeds"]
    lines += ["", f"Tuned baselines: the grid point with the lowest mean "
              f"final validation loss (whole split) over tuning seeds "
              f"{seeds}, never the test seeds (lr_meta.benchmark's "
              f"protocol)."]
    lines += [f"- {m.label}: its tuning seeds disagree (one diverged, or "
              f"their spread exceeds 10% of the best)."
              for m in tuned if m.tuning["seeds_disagree"]]
  extra = [m for m in ev.methods if m.benchmark_method]
  if extra:
    lines += ["", "Untuned rows for context, run as `lr_meta.benchmark` runs "
              "them (nothing tuned on this task; same seeds and test split):"]
    lines += [f"- `{m.benchmark_method}`: {m.note}." for m in extra]
  return "\n".join(lines) + "\n"


def results_json(ev: Evaluation) -> dict:
  """Per-seed numbers of every method (``results.json``)."""
  methods = {}
  for m in ev.methods:
    methods[m.label] = dict(
        test_loss=np.asarray(m.test_loss).tolist(),
        test_accuracy=np.asarray(m.test_accuracy).tolist(),
        diverged=int(m.diverged.sum()), wall_s=m.wall_s)
    if m.controller:
      methods[m.label]["learning_rates"] = np.asarray(
          m.learning_rates).tolist()
    if m.tuning:
      methods[m.label]["tuning"] = m.tuning
  return {"selected_iteration": ev.selected_iteration,
          "candidates": ev.candidates, "methods": methods,
          "wall_s": ev.wall_s}


def write(ev: Evaluation, outdir: str) -> str:
  """The evaluation's files: results.md (``markdown``), results.json
  (``results_json``), schedule.png and val_loss.png
  (``lr_meta.plotting.evaluation_figures``). The one writer of both
  ``scripts/train_controller.py`` and ``scripts/evaluate_controller.py``.

  Returns:
    The table (``markdown(ev)``).
  """
  table = markdown(ev)
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, rundir.RESULTS_FILE), "w") as f:
    f.write(table)
  with open(os.path.join(outdir, RESULTS_JSON), "w") as f:
    json.dump(results_json(ev), f, indent=1)
  plotting.evaluation_figures(
      ev.methods, plotting.task_title(ev.config.task, ev.num_steps),
      ev.num_steps, outdir)
  return table
