"""Fu 2016's Figures 2-4 from an evaluated DQN controller run.

  python scripts/fu2016_figures.py --workdir runs/fu2016_dqn \
      [--eval_every 25] [--num_examples 1000]

Reads ``<workdir>/eval/results.json`` (written by
``scripts/evaluate_controller.py``): the selected controller snapshot and each
baseline's winning schedule. Then, on the same test seeds as that evaluation:

* Figure 4 (learned LR trace): the deterministic DQN controller is re-run with
  ``lr_meta.experiment.run_controller``; its LR at every decision, per seed.
* Figures 2-3 (train / test accuracy against steps): every method is trained
  with ``eval_every``-step segments and, after each, its accuracy on the first
  ``num_examples`` examples of the train and the test split is measured. The
  controller's optimizee is replayed from its recorded LR sequence with the
  optimizee key that ``LREnv.reset`` uses: same init, batches and LRs as the
  closed loop, equal up to floating-point differences of the execution
  (vmapped chunks there, sequential scans here), which SGD amplifies on conv
  nets; the script prints the largest parameter difference.
* The action pattern (Fu 2016, section 4: runs of decreases followed by a
  restart) decoded from the LR trace: action 1 (restart) sets the LR to lr0
  exactly, action 0 multiplies it by 0.97 and never gives lr0 back.

Writes to ``<workdir>/eval``: fu2016_fig2_train_accuracy.png,
fu2016_fig3_test_accuracy.png, fu2016_fig4_lr_trace.png, fu2016_curves.json
and fu2016_summary.md (accuracy at quarters of training, action pattern).
"""

import functools
import json
import os
from typing import NamedTuple, Optional

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import baselines
from lr_meta import experiment
from lr_meta import rundir
from lr_meta import runner
from lr_meta import seeds as seeds_lib
from lr_meta import tasks

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Training workdir with eval/results.json.")
_EVAL_DIR = flags.DEFINE_string("eval_dir", None,
                                "Evaluation outputs (default: <workdir>/eval).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_EVAL_EVERY = flags.DEFINE_integer(
    "eval_every", 25, "Steps between accuracy measurements (divides T).")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 1000, "Train / test examples per accuracy measurement.")

RESTART, DECREASE = 1, 0   # LREnv 'fu2016' actions


# -- action pattern ----------------------------------------------------------


def decode_actions(lrs, lr0: float) -> np.ndarray:
  """Fu 2016 actions from the LR used at each decision, ``(T,)`` -> ``(T,)``.

  A restart (1) sets the LR to ``lr0``; a decrease (0) multiplies it by 0.97,
  which never returns ``lr0`` (relative tolerance 1e-4 << 3%).
  """
  lrs = np.asarray(lrs, np.float64)
  if lrs.ndim != 1 or not lrs.size:
    raise ValueError(f"lrs must be a non-empty 1-D trace, got shape "
                     f"{lrs.shape}.")
  if not lr0 > 0:
    raise ValueError(f"lr0 must be > 0, got {lr0!r}.")
  return np.where(np.isclose(lrs, lr0, rtol=1e-4, atol=0.0), RESTART,
                  DECREASE).astype(np.int32)


class ActionPattern(NamedTuple):
  """Runs of decreases and restarts of one episode."""
  actions: str               # 'D' decrease, 'R' restart, one per decision
  num_restarts: int
  num_decrease_runs: int     # maximal stretches of consecutive decreases
  mean_run_length: float     # decreases per run (0 if none)
  max_run_length: int
  min_lr: float


def action_pattern(lrs, lr0: float) -> ActionPattern:
  """Counts the runs of decreases and the restarts in an LR trace."""
  actions = decode_actions(lrs, lr0)
  text = "".join("R" if a == RESTART else "D" for a in actions)
  runs = [len(r) for r in text.split("R") if r]
  return ActionPattern(
      actions=text, num_restarts=int(np.sum(actions == RESTART)),
      num_decrease_runs=len(runs),
      mean_run_length=float(np.mean(runs)) if runs else 0.0,
      max_run_length=max(runs, default=0), min_lr=float(np.min(lrs)))


# -- accuracy curves ---------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _segment(task, state, lrs, num_examples):
  """``len(lrs)`` inner steps, then train and test accuracy (eval mode)."""
  state, _ = runner.inner_loop(task.train_step, state, lrs, False)
  train = task.evaluate(state, "train", num_examples)
  test = task.evaluate(state, "test", num_examples)
  return state, train.accuracy, test.accuracy


_init = jax.jit(tasks.Task.init)


class AccuracyCurves(NamedTuple):
  steps: np.ndarray        # (S,) inner steps taken at each measurement
  train: np.ndarray        # (R, S)
  test: np.ndarray         # (R, S)
  final_params: list       # R final parameter pytrees
  diverged: np.ndarray     # (R,) bool


def accuracy_curves(task, keys, learning_rates, eval_every: int,
                    num_examples: Optional[int]) -> AccuracyCurves:
  """Train / test accuracy every ``eval_every`` steps of R runs.

  Run r starts from ``task.init(keys[r], learning_rates[r, 0])`` and takes
  step t at ``learning_rates[r, t]``, as ``lr_meta.tasks.run_training`` does.
  """
  lrs = np.asarray(learning_rates, np.float32)
  if lrs.ndim != 2 or lrs.shape[0] != len(keys):
    raise ValueError(f"learning_rates must be (R, T) with R = len(keys) = "
                     f"{len(keys)}; got {lrs.shape}.")
  if eval_every <= 0 or lrs.shape[1] % eval_every:
    raise ValueError(f"eval_every must be a positive divisor of T = "
                     f"{lrs.shape[1]}; got {eval_every!r}.")
  train, test, finals, diverged = [], [], [], []
  for key, seq in zip(keys, lrs):
    state = _init(task, key, seq[0])
    tr, te = [], []
    for seg in seq.reshape(-1, eval_every):
      state, a_tr, a_te = _segment(task, state, jnp.asarray(seg), num_examples)
      tr.append(float(a_tr))
      te.append(float(a_te))
    train.append(tr)
    test.append(te)
    finals.append(state.params)
    diverged.append(bool(state.diverged))
  steps = eval_every * (np.arange(lrs.shape[1] // eval_every) + 1)
  return AccuracyCurves(steps, np.asarray(train), np.asarray(test), finals,
                        np.asarray(diverged))


def env_optimizee_keys(seeds):
  """The optimizee key ``LREnv.reset`` derives from episode key PRNGKey(s)."""
  return [jax.random.split(jax.random.PRNGKey(int(s)), 4)[0] for s in seeds]


def parse_method_label(label: str):
  """``'adam constant(lr=0.001) (best of 5 by val loss)'`` -> optimizer, spec."""
  optimizer, _, rest = label.partition(" ")
  if "(" not in rest or ")" not in rest:
    raise ValueError(f"Cannot parse baseline label {label!r}; expected "
                     "'<optimizer> <schedule>(lr=..., ...)[ (best of ...)]'.")
  return optimizer, baselines.parse_spec(rest[:rest.index(")") + 1])


# -- figures -----------------------------------------------------------------


def _plot_curves(path, curves, which, title, num_steps):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for label, c in curves.items():
    y = getattr(c, which)
    mean, std = y.mean(0), y.std(0)
    ax.plot(c.steps, mean, label=label)
    ax.fill_between(c.steps, mean - std, mean + std, alpha=0.2)
  ax.set(xlabel="inner step", ylabel=f"{which} accuracy", title=title,
         xlim=(0, num_steps))
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _plot_lr_trace(path, lrs, k, lr0, baseline_lrs, title):
  """The DQN's LR per decision on every test seed; seeds with the same
  trace are drawn once and counted in the legend (they overlap exactly)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from lr_meta import plotting  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  num_steps = lrs.shape[0] * k
  steps = np.arange(lrs.shape[0] + 1) * k
  traces = {}
  for i in range(lrs.shape[1]):
    traces.setdefault(tuple(lrs[:, i].tolist()), []).append(i)
  for trace, seeds in traces.items():
    which = (f"test seed {seeds[0]}" if len(seeds) == 1 else
             f"test seeds {', '.join(map(str, seeds))} (identical)")
    ax.plot(steps, np.append(trace, trace[-1]), drawstyle="steps-post",
            label=f"DQN, {which}")
  ax.plot([0], [lr0], "ko", markersize=4, label=f"lr0 = {lr0:g}")
  for label, seq in baseline_lrs.items():
    if label.startswith("sgd"):   # adaptive optimizers' LRs are not comparable
      ax.plot(np.arange(len(seq)), seq, "--", color="gray", lw=1, label=label)
  ax.set(xlabel="inner step", ylabel="learning rate", xlim=(0, num_steps),
         title=title)
  plotting.log_scale(ax, "y")
  ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def make_figures(workdir, eval_dir=None, data_dir=None, eval_every=25,
                 num_examples=1000, log=print):
  """Everything of the module docstring; returns the summary (Markdown)."""
  eval_dir = eval_dir or os.path.join(workdir, rundir.EVAL_DIR)
  with open(os.path.join(eval_dir, "results.json")) as f:
    results = json.load(f)
  config = rundir.read_config(workdir)
  task, env, env_params, strategy = experiment.build(config, data_dir)
  agent = experiment.make_agent(config, env, env_params, strategy)
  template = experiment.policy_params(config, agent.init(jax.random.PRNGKey(0)))
  it = int(results["selected_iteration"])
  params = rundir.load_snapshot(workdir, it, template)
  n = int(config.eval.num_seeds)
  seeds = np.asarray(seeds_lib.seed_range("evaluation", n))
  lr0 = float(config.eval.initial_lrs[0])
  k = env_params.steps_per_decision
  num_steps = env_params.num_decisions * k

  runs = experiment.run_controller(env, env_params, agent, params, seeds,
                                   lr0, strategy)
  ctrl_lrs = runs.learning_rates                        # (T, N)
  curves, sched = {}, {}
  c = accuracy_curves(task, env_optimizee_keys(seeds),
                      np.repeat(ctrl_lrs.T, k, axis=1), eval_every,
                      num_examples)
  diff = _replay_error(c.final_params, runs.final_state.opt.params)
  log(f"controller replay: max |param difference| vs closed loop = {diff:.2e}")
  ctrl_label = f"DQN controller (iteration {it})"
  curves[ctrl_label] = c
  for label in results["methods"]:
    if "controller" in label:
      continue
    optimizer, spec = parse_method_label(label)
    btask = task if optimizer == config.task.optimizer else tasks.make_task(
        data_dir=data_dir, **dict(config.task, optimizer=optimizer))
    seq = spec.sequence(num_steps)
    sched[f"{optimizer} {spec.label()}"] = seq
    keys = [jax.random.key(int(s)) for s in seeds]   # as evaluate_on_seeds
    curves[f"{optimizer} {spec.label()}"] = accuracy_curves(
        btask, keys, np.tile(seq, (n, 1)), eval_every, num_examples)
    log(f"{label}: curves done")

  from lr_meta import plotting  # pylint: disable=g-import-not-at-top
  task_text = plotting.task_title(config.task, num_steps)
  _plot_curves(os.path.join(eval_dir, "fu2016_fig2_train_accuracy.png"),
               curves, "train", f"Train accuracy ({num_examples} examples; "
               f"mean ± std over {n} seeds)\n{task_text}", num_steps)
  _plot_curves(os.path.join(eval_dir, "fu2016_fig3_test_accuracy.png"),
               curves, "test", f"Test accuracy ({num_examples} examples; "
               f"mean ± std over {n} seeds)\n{task_text}", num_steps)
  _plot_lr_trace(os.path.join(eval_dir, "fu2016_fig4_lr_trace.png"),
                 ctrl_lrs, k, lr0, sched,
                 f"Learned LR trace (Fu 2016 Figure 4)\n{task_text}")

  patterns = [action_pattern(ctrl_lrs[:, i], lr0) for i in range(n)]
  quarters = sorted({len(c.steps) * q // 4 - 1 for q in (1, 2, 3, 4)})
  steps = curves[ctrl_label].steps
  head = " | ".join(f"test acc @ {steps[q]}" for q in quarters)
  lines = [f"Test-seed accuracy curves ({num_examples} test examples, mean "
           f"(std) over {n} seeds {seeds[0]}..{seeds[-1]}); controller replay "
           f"error {diff:.2e}.", "", f"| method | {head} | train acc @ "
           f"{steps[-1]} | diverged |", "|---" * (len(quarters) + 3) + "|"]
  for label, cv in curves.items():
    div = int(cv.diverged.sum())
    cells = " | ".join(baselines.mean_std(cv.test[:, q], div)
                       for q in quarters)
    lines.append(f"| {label} | {cells} | "
                 f"{baselines.mean_std(cv.train[:, -1], div)} | {div} |")
  if any(cv.diverged.any() for cv in curves.values()):
    lines += ["", baselines.DIVERGED_NOTE]
  lines += ["", "Action pattern per test seed (D = lr*0.97, R = restart to "
            f"lr0={lr0:g}):", "",
            "| seed | restarts | decrease runs | mean run | max run | min LR "
            "| actions |", "|---|---|---|---|---|---|---|"]
  for s, p in zip(seeds, patterns):
    lines.append(f"| {s} | {p.num_restarts} | {p.num_decrease_runs} | "
                 f"{p.mean_run_length:.1f} | {p.max_run_length} | "
                 f"{p.min_lr:.3g} | `{p.actions}` |")
  summary = "\n".join(lines) + "\n"
  with open(os.path.join(eval_dir, "fu2016_summary.md"), "w") as f:
    f.write(summary)
  with open(os.path.join(eval_dir, "fu2016_curves.json"), "w") as f:
    json.dump(dict(
        controller_lrs=ctrl_lrs.tolist(), replay_error=diff,
        patterns=[p._asdict() for p in patterns],
        curves={l: dict(steps=cv.steps.tolist(), train=cv.train.tolist(),
                        test=cv.test.tolist()) for l, cv in curves.items()}),
              f, indent=1)
  return summary


def _replay_error(replayed_params, batched_params) -> float:
  """Max |difference| between replayed runs and the batched closed loop."""
  err = 0.0
  for r, p in enumerate(replayed_params):
    closed = jax.tree.map(lambda x, r=r: x[r], batched_params)
    err = max(err, max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(p), jax.tree.leaves(closed))))
  return err


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every read at INFO
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required.")
  print(make_figures(_WORKDIR.value, _EVAL_DIR.value, _DATA_DIR.value,
                     _EVAL_EVERY.value, _NUM_EXAMPLES.value))


if __name__ == "__main__":
  app.run(main)
