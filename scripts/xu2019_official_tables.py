"""Xu et al. 2019 Tables 1 and 2 under the official protocol, and its ablation.

One process per experiment; everything it does is in ``OUT/results.json``,
``OUT/results.md`` and ``OUT/training.csv``:

1. PPO trains on ``--config`` (default ``configs/xu2019_official.py``, with
   ``--set path=value`` overrides and ``--ablation ITEM`` of its
   ``ABLATION`` table); the actor params are kept every
   ``checkpoint_every`` iterations.
2. Checkpoint selection: the ``--num_candidates`` snapshots with the best
   training return plus the last one run on ``--selection_seeds`` seeds of
   the ``'selection'`` range (never used for testing); the lowest final
   loss on the task's whole validation split wins.
3. The selected controller (the portable ``lr_meta.policies.Controller``,
   acting as its protocol says: sampled actions from a key per seed) runs on
   the evaluation task (``--eval_config``, default the training config) on
   ``eval.num_seeds`` seeds of the ``'evaluation'`` range, as do the tuned
   baselines (``eval.baselines``: tuned on tuning seed 0 by final
   validation loss, re-run on the same test seeds) and, with
   ``--eval_config``, the transferred baseline: the step-decay schedule
   tuned on the TRAINING task, run on the evaluation task (Xu's Table 2).
   Welch's t-test of each baseline against the controller.

With ``--controller FILE`` steps 1 and 2 are skipped: a saved controller
(``OUT/controller.msgpack`` of an earlier run) is tested on ``--config``.

Example (Table 1 at the lab notebook's CPU scale)::

  python scripts/xu2019_official_tables.py --out runs/xu_official/table1
"""

import argparse
import csv
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import evaluation
from lr_meta import experiment
from lr_meta import rundir
from lr_meta import seeds as seeds_lib
from lr_meta.envs import rollout
from lr_meta.features import xu_protocol
from lr_meta.policies import controller as controller_lib


def _parse_value(text: str):
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text


def configure(path: str, overrides, ablation=None):
  module = config_lib.load_module(path)
  config = module.get_config()
  if ablation:
    config = module.apply_ablation(config, *ablation.split(","))
  config = ml_collections.ConfigDict(config.to_dict())
  for item in overrides:
    key, _, value = item.partition("=")
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    value = _parse_value(value)
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def train(config, log):
  """PPO training of ``config``.

  Returns:
    ``(task, env, env_params, strategy, snapshots, rows)``: the built
    experiment, the actor params by iteration, and one metrics row per
    iteration.
  """
  task, env, env_params, strategy = experiment.build(config)
  agent = experiment.make_agent(config, env, env_params, strategy)
  state = agent.init(jax.random.PRNGKey(config.seed))
  snapshots, rows = {}, []
  t0 = time.time()
  for it in range(1, config.num_iterations + 1):
    state, metrics = agent.update_iteration(state)
    row = {k: float(v) for k, v in jax.device_get(metrics).items()}
    row.update(iteration=it, wall_s=time.time() - t0)
    rows.append(row)
    if it % config.checkpoint_every == 0 or it == config.num_iterations:
      snapshots[it] = jax.device_get(state.params)
      log(f"iteration {it}: return {row['episode_return']:.4f}, mean action "
          f"{row['mean_action']:.3f}, {row['wall_s']:.0f} s")
  return task, env, env_params, strategy, snapshots, rows


_ACT_FNS = {}


def act_fn(ctrl):
  """One acting function per controller spec (the rollout compiles per
  policy function, and a bound ``act`` differs for every Controller)."""
  key = ctrl.spec.to_json()
  if key not in _ACT_FNS:
    _ACT_FNS[key] = ctrl.act
  return _ACT_FNS[key]


def controller_runs(env, env_params, ctrl, seeds, lr0, strategy):
  """The controller from ``lr0`` on each seed (one compiled program).

  A sampling controller draws its actions from ``fold_in(PRNGKey(seed),
  1)``, so a seed's run does not depend on which seeds run with it.
  """
  states, lrs = [], []
  for s in seeds:
    key = jax.random.PRNGKey(int(s))
    carry = (ctrl.initial_carry((1,), key=jax.random.fold_in(key, 1))
             if ctrl.samples else ctrl.initial_carry((1,)))
    state, info = rollout.run_episodes(
        env, env_params, act_fn(ctrl), ctrl.params, key[None], carry=carry,
        lr0s=np.full((1,), lr0, np.float32), strategy=strategy)
    states.append(state)
    lrs.append(np.asarray(info["lr"])[:, 0])
  state = jax.tree.map(lambda *x: jnp.concatenate(x), *states)
  return state, np.stack(lrs)


def select_checkpoint(train_config, eval_config, env, env_params, snapshots,
                      rows, built, args, log):
  """The snapshot with the lowest validation loss on selection seeds.

  Candidates: the ``--num_candidates`` best by training return, plus the
  last. Selection runs on the evaluation task (``built``) and its
  validation split (Xu: checkpoint by validation loss).
  """
  eval_task, eval_env, eval_params, eval_strategy = built
  returns = {r["iteration"]: r["episode_return"] for r in rows}
  ranked = sorted(snapshots, key=lambda i: -returns[i])
  candidates = sorted(set(ranked[:args.num_candidates]) | {max(snapshots)})
  lr0s = tuple(float(x) for x in eval_config.eval.initial_lrs)
  sel_seeds = seeds_lib.seed_range("selection", args.selection_seeds)
  # One Controller object for every candidate (its ``act`` is the rollout's
  # static policy function: other params reuse the compiled program).
  ctrl = rundir.controller_from_training(
      train_config, env, env_params, snapshots[max(snapshots)],
      export=experiment.exporter(train_config),
      name=f"iter_{max(snapshots)}")
  with_params = lambda it: dataclasses.replace(
      ctrl, params=controller_lib.check_params(ctrl.spec,
                                               snapshots[it]["actor"]))
  scores = {}
  for it in candidates:
    vals = [experiment.test_metrics(
        eval_task, controller_runs(eval_env, eval_params, with_params(it),
                                   sel_seeds, lr0, eval_strategy)[0],
        "val")[0] for lr0 in lr0s]
    scores[it] = float(np.mean(vals))
    log(f"candidate {it}: val loss {scores[it]:.4f}")
  best = min(scores, key=scores.get)
  return best, scores, with_params(best)


def test_controller(eval_config, ctrl, built, label, log):
  """The controller on ``eval.num_seeds`` evaluation seeds of the task.

  A sampling controller also runs acting on its mean (ablation item 6:
  acting is a deployment choice; training samples either way).
  """
  eval_task, eval_env, eval_params, eval_strategy = built
  lr0s = tuple(float(x) for x in eval_config.eval.initial_lrs)
  test_seeds = seeds_lib.seed_range("evaluation", eval_config.eval.num_seeds)
  variants = {"": ctrl}
  if ctrl.samples:
    mean_spec = ctrl.spec.with_fields(protocol=dataclasses.replace(
        ctrl.spec.observation_spec.protocol, acting="mean"))
    variants[", acting on the mean"] = dataclasses.replace(ctrl,
                                                           spec=mean_spec)
  out = {}
  for suffix, variant in variants.items():
    for lr0 in lr0s:
      state, lrs = controller_runs(eval_env, eval_params, variant, test_seeds,
                                   lr0, eval_strategy)
      loss, acc = experiment.test_metrics(eval_task, state)
      out[f"PPO controller (lr0={lr0:g}, {label}{suffix})"] = dict(
          test_loss=loss.tolist(), test_accuracy=acc.tolist(),
          diverged=int(np.sum(np.asarray(state.opt.diverged))),
          lr_mean=lrs.mean(0).tolist())
      log(f"controller{suffix} lr0={lr0:g}: test loss "
          f"{baselines.mean_std(loss)}, final LR {lrs[:, -1].mean():.3g}")
  return out


def _curve_examples(probe, config) -> int:
  """Validation examples of a baseline's curve: the env's ``probe`` size,
  at most the task's validation subset (``task.num_val_examples``)."""
  held = config.task.get("num_val_examples")
  probe = int(probe)
  return probe if held is None else min(probe, int(held))


def run_baselines(eval_config, eval_task, eval_params, train_task, train_config,
                  transfer, log):
  """Tuned baselines on the eval task (+ the transferred one)."""
  k = eval_params.steps_per_decision
  num_steps = eval_params.num_decisions * k
  # The curves only (tuning and testing use whole splits): on the env's
  # probe, or on the task's whole validation subset where that is smaller.
  run_kw = dict(eval_every=k, num_val_examples=_curve_examples(
      eval_params.observation_spec.num_val_examples, eval_config))
  n = int(eval_config.eval.num_seeds)
  results = {}
  for text in eval_config.eval.baselines:
    t0 = time.time()
    entry = baselines.parse_baseline(text, tuple(eval_config.eval.constant_lrs))
    swept, res = baselines.tune_and_evaluate(eval_task, entry.specs, num_steps,
                                             num_seeds=n, **run_kw)
    results[f"{res.spec.label()} (best of {len(entry.specs)})"] = dict(
        test_loss=res.test_loss.tolist(),
        test_accuracy=res.test_accuracy.tolist(),
        diverged=int(res.diverged.sum()), wall_s=time.time() - t0)
    log(f"{text}: {res.spec.label()} {baselines.mean_std(res.test_loss)} "
        f"({time.time() - t0:.0f} s)")
  if transfer:
    t0 = time.time()
    tk = train_config.env.steps_per_decision
    train_steps = train_config.env.num_decisions * tk
    swept = baselines.sweep(train_task, baselines.named_grid(
        "xu2019_step_decay"), train_steps, eval_every=tk,
                            num_val_examples=_curve_examples(
                                train_config.env.num_val_examples,
                                train_config))
    res = baselines.evaluate_on_seeds(eval_task, swept.best, num_steps,
                                      num_seeds=n, **run_kw)
    results[f"transferred {res.spec.label()} (tuned on "
            f"{train_config.task.dataset})"] = dict(
                test_loss=res.test_loss.tolist(),
                test_accuracy=res.test_accuracy.tolist(),
                diverged=int(res.diverged.sum()), wall_s=time.time() - t0)
    log(f"transferred: {res.spec.label()} {baselines.mean_std(res.test_loss)}")
  return results


def markdown(title, controller, base):
  lines = [title, "", "| method | test loss | test accuracy | diverged | "
           "p (loss) | p (acc) |", "|---|---|---|---|---|---|"]
  ctrl_loss, ctrl_acc = None, None
  for label, r in controller.items():
    lines.append(f"| {label} | {baselines.mean_std(r['test_loss'])} | "
                 f"{baselines.mean_std(r['test_accuracy'])} | {r['diverged']}"
                 " | | |")
    if ctrl_loss is None:
      ctrl_loss, ctrl_acc = r["test_loss"], r["test_accuracy"]
  for label, r in base.items():
    p_loss = evaluation.welch_p(r["test_loss"], ctrl_loss)
    p_acc = evaluation.welch_p(r["test_accuracy"], ctrl_acc)
    r.update(p_loss=p_loss, p_acc=p_acc)
    lines.append(f"| {label} | {baselines.mean_std(r['test_loss'])} | "
                 f"{baselines.mean_std(r['test_accuracy'])} | {r['diverged']}"
                 f" | {p_loss:.3g} | {p_acc:.3g} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/xu2019_official.py")
  parser.add_argument("--eval_config", default="",
                      help="evaluation task's config (transfer, Table 2)")
  parser.add_argument("--set", action="append", default=[],
                      help="override of the training config, path=value")
  parser.add_argument("--eval_set", action="append", default=[],
                      help="override of the evaluation config, path=value")
  parser.add_argument("--ablation", default="")
  parser.add_argument("--out", required=True)
  parser.add_argument("--num_candidates", type=int, default=3)
  parser.add_argument("--selection_seeds", type=int, default=2)
  parser.add_argument("--no_baselines", action="store_true")
  parser.add_argument("--controller", default="",
                      help="a saved controller to test on --config instead "
                      "of training one")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  logfile = open(os.path.join(args.out, "log.txt"), "a")

  def log(msg):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    logfile.write(line + "\n")
    logfile.flush()

  t_start = time.time()
  log("command: " + " ".join([sys.executable] + sys.argv))
  config = configure(args.config, args.set, args.ablation or None)
  eval_config = (configure(args.eval_config, args.eval_set)
                 if args.eval_config else config)
  protocol = xu_protocol.as_protocol(config.env.get("protocol"))
  log(f"protocol {protocol}; differs from lr_meta's in "
      f"{protocol.differences(xu_protocol.XuProtocol())}")
  if args.controller:
    # A trained controller on another task (Table 1's LeNet-5 column): no
    # training, no selection; ``--config`` is the evaluation task.
    if args.eval_config:
      raise ValueError("--controller evaluates on --config; drop "
                       f"--eval_config={args.eval_config!r}.")
    ctrl = controller_lib.load_controller(args.controller)
    built_eval = experiment.build(config)
    task = built_eval[0]
    best, scores, t_train = None, {}, 0.0
    label = f"loaded {os.path.basename(args.controller)}"
  else:
    task, env, env_params, strategy, snapshots, rows = train(config, log)
    t_train = time.time() - t_start
    with open(os.path.join(args.out, "training.csv"), "w") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
    built_eval = ((task, env, env_params, strategy) if not args.eval_config
                  else experiment.build(eval_config))
    best, scores, ctrl = select_checkpoint(config, eval_config, env,
                                           env_params, snapshots, rows,
                                           built_eval, args, log)
    label = f"iteration {best}"
  eval_task, _, eval_params, _ = built_eval
  controller = test_controller(eval_config, ctrl, built_eval, label, log)
  # The controller's results are kept before the (long) baselines run.
  controller_lib.save_controller(os.path.join(args.out, "controller.msgpack"),
                                 ctrl)
  _write_results(args, config, eval_config, best, scores, controller, {},
                 t_train, time.time() - t_start)
  base = {} if args.no_baselines else run_baselines(
      eval_config, eval_task, eval_params, task, config,
      bool(args.eval_config), log)
  wall = time.time() - t_start
  title = (f"{args.ablation or 'official'}: trained on "
           f"{config.task.dataset}/{config.task.model}, evaluated on "
           f"{eval_config.task.dataset}/{eval_config.task.model}; "
           f"{eval_params.num_decisions * eval_params.steps_per_decision} "
           f"steps, batch {eval_config.task.batch_size}; test split, mean "
           f"(std) over {eval_config.eval.num_seeds} seeds; p: Welch vs the "
           f"controller. Training {t_train:.0f} s, total {wall:.0f} s.")
  table = markdown(title, controller, base)
  print(table)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(table)
  _write_results(args, config, eval_config, best, scores, controller, base,
                 t_train, wall)


def _write_results(args, config, eval_config, best, scores, controller, base,
                   t_train, wall):
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(dict(command=" ".join(sys.argv), config=config.to_dict(),
                   eval_config=eval_config.to_dict(), selected=best,
                   candidates=scores, controller=controller, baselines=base,
                   train_wall_s=t_train, wall_s=wall,
                   date=time.strftime("%Y-%m-%d %H:%M:%S %Z")), f, indent=1,
              default=str)


if __name__ == "__main__":
  main()
