"""Peak resident memory of three workloads, each in its own process.

  python benchmarks/memory.py sweep [--num_specs 16]   # CIFAR-10 CNN sweep
  python benchmarks/memory.py ppo [--iterations 200]   # PPO training
  python benchmarks/memory.py suite                    # cpu benchmark subset
  python benchmarks/memory.py all

Every workload runs in a child process (``python benchmarks/memory.py
_child MODE ...``); the parent reports the child's peak resident memory
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, the kernel's high-water
mark, which needs no polling) and the child's own lines:

- ``sweep``: the CIFAR-10 CNN baseline of ``scripts/xu2019_official_tables.py``
  as its t1_cifar_cnn run ran it (BUILD_NOTES: ``--set task.dataset=cifar10
  --set task.model=xu2019_cnn --set task.num_val_examples=100 --set
  env.num_decisions=10 --set ppo.num_envs=1`` and lr0 1e-3): the task built
  by ``experiment.build``, 100 steps, the script's ``run_kw``, the first
  ``--num_specs`` specs of Xu's step-decay grid tuned by
  ``baselines.tune_and_evaluate`` and the winner re-run on 10 test seeds.
  The full grid has 48 specs in batches of 16 (``max_batch``): 16 specs are
  one full batch, the same peak in a third of the time. Also printed: the
  device arrays alive after the sweep and the bytes of one copy of the data.
- ``ppo``: ``configs/quickstart.py`` (mnist1d MLP, 8 episodes per update)
  trained for ``--iterations`` iterations in-process (the loop of
  ``scripts/xu2019_official_tables.py``'s ``train``); VmRSS read from
  ``/proc/self/status`` and jax's live arrays counted after iterations 1,
  10, 20, 50, 100, 150 and 200; the target compares the RSS after
  iteration 200 with that after iteration 20.
- ``suite``: ``scripts/benchmark.py --suite=cpu_v1`` (``--suite``) restricted to
  ``--workloads`` (default: two of the eight) and ``--methods`` (default:
  schedule_free_adamw; the references best_constant and cosine always
  run, tuned over their grids), with
  ``--num_seeds=2`` (the fewest it takes; the whole suite takes hours on 2
  cores).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 1024 ** 3


def _status_kb(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  return 0


def _live_bytes():
  import jax
  arrays = jax.live_arrays()
  return len(arrays), sum(a.nbytes for a in arrays)


def _child_sweep(args):
  import importlib.util
  from lr_meta import baselines
  from lr_meta import experiment
  spec = importlib.util.spec_from_file_location(
      "xu2019_official_tables",
      os.path.join(ROOT, "scripts", "xu2019_official_tables.py"))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  sets = ["task.dataset=cifar10", "task.model=xu2019_cnn",
          "task.num_val_examples=100", "env.num_decisions=10",
          "ppo.num_envs=1", "env.initial_lrs=[0.001]",
          "eval.initial_lrs=[0.001]"]
  config = script.configure(os.path.join(ROOT, "configs/xu2019_official.py"),
                            sets)
  task, _, env_params, _ = experiment.build(config)
  data_bytes = sum(a.nbytes for a in jax_leaves(task.data))
  print(f"task built: data {data_bytes / 2**20:.0f} MiB on device, "
        f"VmRSS {_status_kb('VmRSS') / 2**20:.2f} GB", flush=True)
  k = env_params.steps_per_decision
  num_steps = env_params.num_decisions * k
  run_kw = dict(eval_every=k, num_val_examples=script._curve_examples(
      env_params, config))
  entry = baselines.parse_baseline(args.grid,
                                   tuple(config.eval.constant_lrs))
  specs = entry.specs[:args.num_specs] if args.num_specs else entry.specs
  t0 = time.time()
  _, res = baselines.tune_and_evaluate(task, specs, num_steps,
                                       num_seeds=int(config.eval.num_seeds),
                                       **run_kw)
  n, live = _live_bytes()
  print(f"sweep: {len(specs)} specs x {num_steps} steps, then "
        f"{config.eval.num_seeds} seeds ({time.time() - t0:.0f} s); "
        f"test loss {baselines.mean_std(res.test_loss)}", flush=True)
  print(f"live device arrays after the sweep: {n}, {live / 2**20:.0f} MiB "
        f"(one data copy: {data_bytes / 2**20:.0f} MiB)", flush=True)
  print(f"RESULT sweep VmHWM_GB={_status_kb('VmHWM') / 2**20:.3f}", flush=True)


def jax_leaves(tree):
  import jax
  return jax.tree.leaves(tree)


def _child_ppo(args):
  import jax
  from lr_meta import config as config_lib
  from lr_meta import experiment
  config = config_lib.load_module(
      os.path.join(ROOT, "configs/quickstart.py")).get_config()
  config.num_iterations = args.iterations
  _, env, env_params, strategy = experiment.build(config)
  agent = experiment.make_agent(config, env, env_params, strategy)
  state = agent.init(jax.random.PRNGKey(config.seed))
  rows = []
  t0 = time.time()
  for it in range(1, args.iterations + 1):
    state, metrics = agent.update_iteration(state)
    rows.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    if it in (1, 10, 20, 50, 100, 150, 200) or it == args.iterations:
      n, live = _live_bytes()
      print(f"iteration {it}: VmRSS {_status_kb('VmRSS') / 1024:.1f} MiB, "
            f"live arrays {n} ({live / 2**20:.2f} MiB), "
            f"{time.time() - t0:.0f} s", flush=True)
      if it == 20:
        rss20 = _status_kb("VmRSS")
  rss_end = _status_kb("VmRSS")
  print(f"RESULT ppo rss20_MiB={rss20 / 1024:.1f} "
        f"rss{args.iterations}_MiB={rss_end / 1024:.1f} "
        f"growth={100 * (rss_end / rss20 - 1):+.2f}% "
        f"VmHWM_GB={_status_kb('VmHWM') / 2**20:.3f}", flush=True)


def _child_suite(args):
  outdir = tempfile.mkdtemp(prefix="memory_suite_")
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"),
         f"--suite={args.suite}", f"--workloads={args.workloads}",
         f"--methods={args.methods}", "--num_seeds=2", f"--outdir={outdir}"]
  print("command: " + " ".join(cmd), flush=True)
  # exec: the benchmark IS this child, so ru_maxrss is its peak.
  os.execv(sys.executable, cmd)


def _run(mode, extra, timeout=None):
  cmd = [sys.executable, os.path.abspath(__file__), "_child", mode] + extra
  t0 = time.time()
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    rc, out = proc.returncode, proc.stdout
  except subprocess.TimeoutExpired as e:
    # Killed and waited for: its peak is in RUSAGE_CHILDREN all the same.
    rc = f"timeout {timeout:g} s"
    out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
  wall = time.time() - t0
  lines = out.splitlines()
  for line in lines:
    if not line.startswith(("WARNING", "I0", "W0")):
      print(f"  [{mode}] {line}")
  # Peak over all children waited for so far: run one mode per process for
  # a per-mode number (``all`` reports the running maximum).
  peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
  return dict(mode=mode, rc=rc, peak_gb=peak_gb, wall_s=wall,
              result=[l for l in lines if l.startswith("RESULT")])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("mode", choices=["sweep", "ppo", "suite", "all",
                                       "_child"])
  parser.add_argument("child_mode", nargs="?")
  parser.add_argument("--num_specs", type=int, default=16,
                      help="sweep: the first N specs of the grid (0: all)")
  parser.add_argument("--grid", default="xu2019_step_decay")
  parser.add_argument("--iterations", type=int, default=200)
  parser.add_argument("--workloads", default="mnist1d_mlp_momentum,"
                      "cifar10_small_cnn_momentum")
  parser.add_argument("--methods", default="schedule_free_adamw")
  parser.add_argument("--suite", default="cpu_v1",
                      help="suite mode: the benchmark suite (its workloads "
                           "must hold --workloads)")
  parser.add_argument("--timeout", type=float, default=None,
                      help="seconds per workload; the peak so far is "
                      "reported when it runs out")
  args = parser.parse_args(argv)
  if args.mode == "_child":
    {"sweep": _child_sweep, "ppo": _child_ppo,
     "suite": _child_suite}[args.child_mode](args)
    return
  extra = {"sweep": [f"--num_specs={args.num_specs}", f"--grid={args.grid}"],
           "ppo": [f"--iterations={args.iterations}"],
           "suite": [f"--suite={args.suite}", f"--workloads={args.workloads}",
                     f"--methods={args.methods}"]}
  modes = ["sweep", "ppo", "suite"] if args.mode == "all" else [args.mode]
  out = [_run(m, extra[m], args.timeout) for m in modes]
  print("\n| workload | peak RSS (GB) | wall (s) | rc | details |")
  print("|---|---|---|---|---|")
  for r in out:
    print(f"| {r['mode']} | {r['peak_gb']:.2f} | {r['wall_s']:.0f} | "
          f"{r['rc']} | {' '.join(r['result'])} |")
  if any(r["rc"] != 0 for r in out):
    sys.exit(1)


if __name__ == "__main__":
  main()
