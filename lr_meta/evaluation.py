"""Controller evaluation: checkpoint selection, baselines, t-test, plots.

The protocol of Xu, Dai, Kemp & Metz 2019 (section 4) behind
``scripts/evaluate_controller.py`` (see that script for the command line):

* Checkpoint selection: candidates are the ``num_candidates`` snapshots with
  the best training episode return (the return is the validation-loss decrease
  of the training episodes) plus the last one; each candidate runs
  deterministically on ``selection_seeds`` seeds never used for testing, and
  the one with the lowest final validation loss (whole validation split) wins.
* The selected controller and every baseline run on the same N test seeds and
  are compared on the test set: mean (std) of test loss and accuracy and
  Welch's t-test (unequal variances) of each baseline against the controller.
* Baselines: ``config.eval.baselines``, strings parsed by
  ``lr_meta.baselines.parse_baseline``: a named grid is tuned by final
  validation loss on tuning seed 0 (``'xu2019_step_decay'``: Xu's 48-point
  grid; ``'cosine'``), a spec such as
  ``'step_decay(lr=0.1, every=50, factor=0.99)'`` is re-run as is (reuse a
  winner tuned by ``scripts/run_baselines.py``), ``'adam:constant'`` changes
  the optimizer.
* Transfer (Xu's Table 2): the agent settings come from the training run's
  config.json, the task and environment from the evaluation config.
"""

import csv
import hashlib
import json
import os
import time

import flax
import jax
import ml_collections
import numpy as np
import scipy.stats

from lr_meta import baselines
from lr_meta import experiment
from lr_meta import tasks

TEST_SEED_OFFSET = baselines.EVAL_SEED_OFFSET   # the baselines' test seeds
SELECTION_SEED_OFFSET = 30_000
DEFAULT_BASELINES = ("xu2019_step_decay", "cosine")


def load_train_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} not found: --workdir must be a directory written by "
        "scripts/train_controller.py (it saves config.json and snapshots/).")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def list_snapshots(workdir: str):
  """``{iteration: path}`` of the controller snapshots in ``workdir``."""
  snap_dir = os.path.join(workdir, "snapshots")
  if not os.path.isdir(snap_dir):
    raise FileNotFoundError(f"No snapshots/ in {workdir}; train with "
                            "scripts/train_controller.py first.")
  out = {}
  for name in sorted(os.listdir(snap_dir)):
    if name.startswith("iter_") and name.endswith(".msgpack"):
      out[int(name[5:-8])] = os.path.join(snap_dir, name)
  if not out:
    raise FileNotFoundError(f"{snap_dir} holds no iter_*.msgpack snapshots.")
  return out


def load_params(path: str, template):
  """Controller params from a snapshot; a mismatch is a clear error."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return flax.serialization.from_bytes(template, data)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"Cannot load controller params from {path}: {e}. The "
                     "file is corrupted or was written for a different "
                     "agent/network config.") from e


def candidate_iterations(workdir: str, snapshots, num_candidates: int):
  """Top ``num_candidates`` snapshot iterations by training return + the last."""
  iters = sorted(snapshots)
  path = os.path.join(workdir, "metrics.csv")
  ranked = []
  if os.path.exists(path):
    with open(path) as f:
      rows = {int(r["iteration"]): r for r in csv.DictReader(f)}
    # PPO logs the mean return of the iteration's episodes, DQN the return
    # of the last finished episode.
    columns = next(iter(rows.values())) if rows else {}
    key = next((k for k in ("episode_return", "last_episode_return")
                if k in columns), None)
    if key:
      ranked = sorted((i for i in iters if i in rows and rows[i][key]),
                      key=lambda i: -float(rows[i][key]))
  chosen = (ranked if ranked else iters[::-1])[:num_candidates]
  return sorted(set(chosen) | {iters[-1]})


def cached_baseline(cache_dir, key: dict, compute):
  """``compute()`` -> ``(sweep or None, SeedResults)``, memoised on disk."""
  if cache_dir is None:
    return compute()
  digest = hashlib.sha1(json.dumps(key, sort_keys=True,
                                   default=str).encode()).hexdigest()[:16]
  path = os.path.join(cache_dir, f"baseline_{digest}.npz")
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as z:
      spec = baselines.parse_spec(str(z["spec"]))
      res = baselines.SeedResults(
          spec, z["test_loss"], z["test_accuracy"], z["val_curve"],
          z["train_loss"], z["learning_rates"], z["diverged"])
      swept = None
      if int(z["grid_size"]) > 1:
        specs = [baselines.parse_spec(str(x)) for x in z["grid"]]
        swept = baselines.SweepResult(specs, z["grid_val_loss"],
                                      specs.index(spec))
    return swept, res
  swept, res = compute()
  os.makedirs(cache_dir, exist_ok=True)
  grid = [sp.label() for sp in swept.specs] if swept else [res.spec.label()]
  np.savez(path, spec=res.spec.label(), test_loss=res.test_loss,
           test_accuracy=res.test_accuracy, val_curve=res.val_curve,
           train_loss=res.train_loss, learning_rates=res.learning_rates,
           diverged=res.diverged, grid_size=len(grid), grid=np.asarray(grid),
           grid_val_loss=(swept.val_loss if swept else np.zeros(1)),
           key=json.dumps(key, sort_keys=True, default=str))
  return swept, res


def welch_p(a, b) -> float:
  if np.std(a) == 0 and np.std(b) == 0:
    return float("nan")
  return float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)


def evaluate(workdir, eval_config=None, outdir=None, data_dir=None,
             num_candidates=3, selection_seeds=2, baseline_cache=None,
             log=print):
  """Runs the protocol of the module docstring; returns the Markdown table.

  ``baseline_cache``: optional directory where each baseline's outcome is
  stored under a hash of everything that determines it (task config, grid,
  steps, seeds, evaluation settings), so evaluating several controllers on the
  same task re-runs no baseline.
  """
  t_start = time.time()
  train_config = load_train_config(workdir)
  eval_config = eval_config or train_config
  outdir = outdir or os.path.join(workdir, "eval")
  os.makedirs(outdir, exist_ok=True)
  task, env, env_params, strategy = experiment.build(eval_config, data_dir)
  # The agent's own settings come from training; the env from evaluation.
  agent_config = ml_collections.ConfigDict(eval_config.to_dict())
  agent_config.agent = train_config.agent
  agent_config[train_config.agent] = train_config[train_config.agent]
  agent = experiment.evaluation_agent(agent_config, env, env_params, strategy,
                                      data_dir)
  template = experiment.policy_params(
      agent_config, agent.init(jax.random.PRNGKey(0)))
  snapshots = list_snapshots(workdir)
  num_steps = env_params.num_decisions * env_params.steps_per_decision
  n = int(eval_config.eval.num_seeds)
  lr0s = tuple(float(x) for x in eval_config.eval.initial_lrs)

  def controller_runs(params, seeds, lr0):
    return experiment.run_controller(env, env_params, agent, params, seeds,
                                     lr0, strategy)

  # 1. Checkpoint selection by validation loss (seeds never used for testing).
  t0 = time.time()
  candidates = candidate_iterations(workdir, snapshots, num_candidates)
  sel_seeds = SELECTION_SEED_OFFSET + np.arange(selection_seeds)
  scores = {}
  for it in candidates:
    params = load_params(snapshots[it], template)
    vals = [experiment.test_metrics(task, controller_runs(params, sel_seeds,
                                                          lr0).final_state,
                                    "val")[0] for lr0 in lr0s]
    scores[it] = float(np.mean(vals))
    log(f"candidate iteration {it}: val loss {scores[it]:.4f}")
  best_it = min(scores, key=scores.get)
  params = load_params(snapshots[best_it], template)
  log(f"selected iteration {best_it} ({time.time() - t0:.0f} s)")

  # 2. Controller on the test seeds.
  test_seeds = TEST_SEED_OFFSET + np.arange(n)
  rows, results = [], {"selected_iteration": best_it,
                       "candidates": scores, "methods": {}}
  curves = []   # (label, steps, val mean, val std, lr steps, lrs)
  controller = {}
  k = env_params.steps_per_decision
  for lr0 in lr0s:
    t0 = time.time()
    runs = controller_runs(params, test_seeds, lr0)
    loss, acc = experiment.test_metrics(task, runs.final_state)
    label = f"{train_config.agent.upper()} controller (lr0={lr0:g})"
    controller[label] = (loss, acc)
    steps = (np.arange(runs.val_loss.shape[0]) + 1) * k
    curves.append((label, steps, runs.val_loss.mean(1), runs.val_loss.std(1),
                   np.arange(runs.learning_rates.shape[0]) * k,
                   runs.learning_rates.mean(1)))
    results["methods"][label] = dict(
        test_loss=loss.tolist(), test_accuracy=acc.tolist(),
        diverged=int(runs.diverged.sum()), wall_s=time.time() - t0,
        learning_rates=runs.learning_rates.mean(1).tolist())
    rows.append((label, loss, acc, int(runs.diverged.sum()), "", ""))

  # 3. Baselines, tuned (or given) then re-run on the same test seeds.
  ctrl_loss, ctrl_acc = next(iter(controller.values()))
  run_kw = dict(eval_every=k, num_val_examples=env_params.num_val_examples,
                strategy="scan" if strategy == "scan" else "chunk")
  for text in eval_config.eval.get("baselines", DEFAULT_BASELINES):
    t0 = time.time()
    entry = baselines.parse_baseline(text, tuple(eval_config.eval.constant_lrs))
    btask = task
    if entry.optimizer and entry.optimizer != eval_config.task.optimizer:
      btask = tasks.make_task(data_dir=data_dir, **dict(
          eval_config.task, optimizer=entry.optimizer))
    swept, res = cached_baseline(
        # Grids are ranked on the whole val split since 2026-11-23 session
        # 3; before, on the env's probe: such cached grid entries are stale.
        baseline_cache, dict(task=dict(eval_config.task), text=text,
                             **({"selection": "whole_val_split"}
                                if len(entry.specs) > 1 else {}),
                             specs=[sp.label() for sp in entry.specs],
                             num_steps=num_steps, num_seeds=n, **run_kw),
        lambda: baselines.tune_and_evaluate(btask, entry.specs, num_steps,
                                            num_seeds=n, **run_kw))
    opt_name = entry.optimizer or eval_config.task.optimizer
    label = f"{opt_name} {res.spec.label()}" + (
        f" (best of {len(entry.specs)} by val loss)" if swept else "")
    results["methods"][label] = dict(
        test_loss=res.test_loss.tolist(),
        test_accuracy=res.test_accuracy.tolist(),
        diverged=int(res.diverged.sum()), wall_s=time.time() - t0)
    rows.append((label, res.test_loss, res.test_accuracy,
                 int(res.diverged.sum()), welch_p(res.test_loss, ctrl_loss),
                 welch_p(res.test_accuracy, ctrl_acc)))
    steps = (np.arange(res.val_curve.shape[1]) + 1) * k
    curves.append((label, steps, res.val_curve.mean(0), res.val_curve.std(0),
                   np.arange(num_steps), res.learning_rates))
    log(f"{label}: {time.time() - t0:.0f} s")

  first = next(iter(controller))
  lines = [
      f"Controller from `{workdir}` (selected iteration {best_it} of "
      f"{sorted(snapshots)[-1]}, by val loss over {selection_seeds} seeds), "
      f"evaluated on {eval_config.task.dataset} / {eval_config.task.model}, "
      f"batch {eval_config.task.batch_size}, {num_steps} steps; test set, "
      f"mean (std) over {n} seeds ({TEST_SEED_OFFSET}..{TEST_SEED_OFFSET + n - 1})."
      f" p: Welch t-test against {first}.", "",
      "| method | test loss | test accuracy | diverged | p (loss) | p (acc) |",
      "|---|---|---|---|---|---|"]
  for label, loss, acc, div, p_loss, p_acc in rows:
    fmt = lambda p: "" if p == "" else f"{p:.3g}"
    lines.append(f"| {label} | {baselines.mean_std(loss)} | {baselines.mean_std(acc)} | {div} | "
                 f"{fmt(p_loss)} | {fmt(p_acc)} |")
  lines.append("")
  lines.append(f"Wall time {time.time() - t_start:.0f} s.")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(outdir, "results.md"), "w") as f:
    f.write(table)
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  _plot(curves, outdir)
  return table


def _plot(curves, outdir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, _, _, _, lr_steps, lrs in curves:
    ax.plot(lr_steps, lrs, label=label, drawstyle="steps-post")
  ax.set(xlabel="step", ylabel="learning rate", yscale="log",
         title="learning-rate schedule (controller: mean over seeds)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "schedule.png"), dpi=100)
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, steps, mean, std, _, _ in curves:
    ax.plot(steps, mean, label=label)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
  ax.set(xlabel="step", ylabel="validation loss", yscale="log",
         title="validation loss (mean ± std over seeds)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "val_loss.png"), dpi=100)
  plt.close("all")
