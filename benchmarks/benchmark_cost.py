r"""Compiles and wall time of the self-tuning benchmark, and its full cost.

For every workload of a suite and every method family (all LR schedules
share one family), builds the family's program, then times a first run
(compile included) and a second run of the same program on a shortened
copy of the workload (``--probe_segments`` validation segments instead of
all): XLA compiles are counted through ``jax.monitoring`` (training programs
and all), and the second run's per-step time scales to the workload's
horizon. The estimate of the whole benchmark is, per workload and family,
one compile plus the family's runs (tuning grid x tuning seeds + evaluation
seeds per method) at the measured per-step time. A benchmark's report has
the same numbers measured on the real runs (``results.json``: every cell's
``cost``; ``leaderboard.md``: "Cost").

Usage:
  python benchmarks/benchmark_cost.py --suite=cpu                # every method
  python benchmarks/benchmark_cost.py --suite=cpu --workloads=fmnist_lenet5_sgd \
      --methods=prodigy,controller:mnist1d_mlp_quickstart
"""

import argparse
import collections
import dataclasses
import os
import time

import jax

from lr_meta import benchmark
from lr_meta.benchmark import harness
from lr_meta.tasks import optax_training


def _shortened(workload, segments):
  segments = min(segments, workload.num_evals)
  return dataclasses.replace(workload, num_steps=segments * workload.eval_every,
                             num_evals=segments)


def _timed_run(task, workload, program, hp, seed, strategy):
  counter = harness.compile_counter()
  before = counter.snapshot()
  t0 = time.time()
  _, result = optax_training.run(task, program, hp, jax.random.key(seed),
                                 workload.num_steps,
                                 eval_every=workload.eval_every,
                                 strategy=strategy)
  jax.block_until_ready(result.test.loss)
  after = counter.snapshot()
  return time.time() - t0, after[1] - before[1], after[0] - before[0], (
      after[2] - before[2])


def measure(suite, workload_names, method_names, num_seeds, segments,
            data_dir):
  """Rows ``(workload, family, compiles, programs, compile_s, s_per_step,
  runs, estimate_s)``."""
  methods = benchmark.resolve_methods(method_names)
  rows = []
  for workload in benchmark.suite_workloads(suite, workload_names):
    task = harness.workload_task(workload, data_dir)
    strategy = harness.benchmark_strategy(task.model_name)
    probe = _shortened(workload, segments)
    runs = collections.Counter()
    programs = {}
    for m in methods:
      program, settings = m.build(workload, task)
      runs[m.family] += (len(settings) * harness.NUM_TUNING_SEEDS + num_seeds
                         if m.kind == benchmark.TUNED else num_seeds)
      programs.setdefault(m.family, (m, program))
    for family, (m, _) in programs.items():
      program, settings = m.build(probe, task)
      hp = settings[0].hp
      first, progs, compiles, compile_s = _timed_run(task, probe, program, hp,
                                                     0, strategy)
      second, _, _, _ = _timed_run(task, probe, program, hp, 1, strategy)
      per_step = second / probe.num_steps
      estimate = (first - second) + runs[family] * per_step * (
          workload.num_steps)
      rows.append((workload.name, family, compiles, progs, compile_s,
                   per_step, runs[family], estimate))
      print(f"{workload.name:28s} {family:42s} compiles {progs} ({compiles}) "
            f"{compile_s:6.1f} s, {1e3 * per_step:7.3f} ms/step, "
            f"{runs[family]:4d} runs -> {estimate:7.1f} s", flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--suite", default="cpu")
  parser.add_argument("--workloads", default="",
                      help="comma-separated; default: the whole suite")
  parser.add_argument("--methods", default="all")
  parser.add_argument("--num_seeds", type=int, default=5)
  parser.add_argument("--probe_segments", type=int, default=2,
                      help="validation segments of the timed runs")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  rows = measure(args.suite, [w for w in args.workloads.split(",") if w],
                 args.methods.split(","), args.num_seeds, args.probe_segments,
                 args.data_dir)
  print("\n| workload | family | program compiles (all) | compile s | ms / "
        "step | runs | estimated s |\n|---|---|---|---|---|---|---|")
  for w, f, compiles, progs, compile_s, per_step, runs, est in rows:
    print(f"| {w} | {f} | {progs} ({compiles}) | {compile_s:.1f} | "
          f"{1e3 * per_step:.3f} | {runs} | {est:.0f} |")
  total = sum(r[-1] for r in rows)
  compile_total = sum(r[4] for r in rows)
  print(f"\nEstimated benchmark: {total:.0f} s ({total / 60:.1f} min), of "
        f"which compiling {compile_total:.0f} s; backend "
        f"{jax.default_backend()}, {os.cpu_count()} CPUs visible.")


if __name__ == "__main__":
  main()
