r"""Compiles and wall time of evaluating one controller over many runs.

Evaluates the deterministic controller of a PPO agent (the quickstart task:
mnist1d MLP, 30 decisions of K = 10 steps) the way checkpoint selection and
testing do (``lr_meta.evaluation``): ``--num_checkpoints`` parameter sets x
``--num_seeds`` seeds x ``--lr0s`` initial LRs through
``lr_meta.experiment.run_controller`` (+ ``test_metrics``), and counts the
real XLA compilations with ``lr_meta.runner.count_compiles`` (a
``jax.monitoring`` listener on the backend-compile event).

Acceptance: the rollout compiles ONCE ('scan': ``jit(_episodes_scan)``;
'chunk': ``jit(_reset)`` and ``jit(_decision)`` once each), however many
checkpoints, seeds and initial LRs run. The checkpoints are independent
initialisations (compiles and cost do not depend on the params' values).

Output: compiles by function, wall time of the first evaluation call
(compile + run) and of the whole grid, runs per second after the first
call; ``--out`` also writes them as JSON.

Usage:
  python benchmarks/rollout_compiles.py                       # 5 x 10 x 2
  python benchmarks/rollout_compiles.py --num_decisions=3 --num_seeds=2
  python benchmarks/rollout_compiles.py --batch_mode=vmap --out=r.json
"""

import argparse
import json
import os
import time

import jax
import numpy as np

from configs import quickstart
from lr_meta import experiment
from lr_meta import runner


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_checkpoints", type=int, default=5)
  parser.add_argument("--num_seeds", type=int, default=10)
  parser.add_argument("--lr0s", default="0.1,0.03",
                      help="comma-separated initial LRs")
  parser.add_argument("--num_decisions", type=int, default=30)
  parser.add_argument("--steps_per_decision", type=int, default=10)
  parser.add_argument("--strategy", default="",
                      help="'' (measured default), 'scan' or 'chunk'")
  parser.add_argument("--batch_mode", default="",
                      help="'' (runner.default_batch_mode), 'vmap' or "
                      "'sequential'")
  parser.add_argument("--out", default="", help="JSON output path")
  args = parser.parse_args(argv)
  for name in ("num_checkpoints", "num_seeds", "num_decisions",
               "steps_per_decision"):
    if getattr(args, name) < 1:
      raise ValueError(f"--{name}={getattr(args, name)}; allowed: >= 1.")
  try:
    args.lr0s = tuple(float(x) for x in args.lr0s.split(","))
  except ValueError as e:
    raise ValueError(f"--lr0s={args.lr0s!r}; allowed: comma-separated "
                     "floats, e.g. 0.1,0.03.") from e
  return args


def main(argv=None):
  args = parse_args(argv)
  config = quickstart.get_config()
  config.env.update(num_decisions=args.num_decisions,
                    steps_per_decision=args.steps_per_decision)
  config.strategy = args.strategy
  task, env, env_params, strategy = experiment.build(config)
  agent = experiment.make_agent(config, env, env_params, strategy)
  checkpoints = [experiment.policy_params(config, agent.init(
      jax.random.PRNGKey(i))) for i in range(args.num_checkpoints)]
  seeds = np.arange(args.num_seeds)
  batch_mode = args.batch_mode or runner.default_batch_mode(task.model_name)

  first_s, final_losses = None, []
  t0 = time.perf_counter()
  with runner.count_compiles() as compiles:
    for params in checkpoints:
      for lr0 in args.lr0s:
        runs = experiment.run_controller(env, env_params, agent, params,
                                         seeds, lr0, strategy, batch_mode)
        loss, _ = experiment.test_metrics(task, runs.final_state, "val")
        final_losses.append(float(np.mean(loss)))
        if first_s is None:
          first_s = time.perf_counter() - t0
  total_s = time.perf_counter() - t0

  num_calls = args.num_checkpoints * len(args.lr0s)
  rollout_names = ("jit(_episodes_scan)",) if strategy == "scan" else (
      "jit(_reset)", "jit(_decision)")
  result = dict(
      grid=f"{args.num_checkpoints} checkpoints x {args.num_seeds} seeds x "
      f"{len(args.lr0s)} lr0s", strategy=strategy, batch_mode=batch_mode,
      num_decisions=args.num_decisions,
      steps_per_decision=args.steps_per_decision,
      rollout_compiles={n: compiles[n] for n in rollout_names},
      all_compiles=dict(compiles.most_common()),
      first_call_s=first_s, total_s=total_s,
      runs_per_s_after_first=(num_calls - 1) * args.num_seeds / max(
          total_s - first_s, 1e-9),
      mean_val_loss=float(np.mean(final_losses)),
      load_average=os.getloadavg()[0], backend=jax.default_backend())
  print(f"{result['grid']}, strategy {strategy!r}, batch mode "
        f"{batch_mode!r}, {args.num_decisions} x {args.steps_per_decision} "
        f"steps per run, backend {result['backend']}, load average "
        f"{result['load_average']:.1f}")
  for name, count in result["rollout_compiles"].items():
    print(f"  rollout compiles {name}: {count}")
  print(f"  all XLA compiles: {sum(compiles.values())} "
        f"({len(compiles)} functions)")
  print(f"  wall time: first call {first_s:.1f} s, whole grid "
        f"{total_s:.1f} s, {result['runs_per_s_after_first']:.2f} runs/s "
        "after the first call")
  ok = all(c == 1 for c in result["rollout_compiles"].values())
  print("  acceptance (rollout compiled once):", "PASS" if ok else "FAIL")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
