"""Inner steps per second of each execution strategy, single and batched runs.

  python benchmarks/episode_throughput.py [--models=mlp,lenet5] [--num_steps=200]

Fashion-MNIST, batch 128, eval every 10 steps on 1000 validation examples.
Each configuration is compiled once (warm-up run), then timed over --repeats
runs (median). Prints a Markdown table; results go into BUILD_NOTES.md.
"""

import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import tasks

_MODELS = flags.DEFINE_list("models", ["mlp", "lenet5"], "Models to measure.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 200, "Inner steps per run.")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 8, "Runs in a batch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (median).")


def _time(fn, repeats):
  jax.block_until_ready(fn())          # compile + warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(argv):
  del argv
  rows = []
  steps = _NUM_STEPS.value
  lrs = jnp.full((steps,), 0.05)
  runs = _NUM_RUNS.value
  batch_lrs = jnp.tile(lrs, (runs, 1))
  keys = jax.random.split(jax.random.key(0), runs)
  for model in _MODELS.value:
    task = tasks.make_task("fashion_mnist", model, batch_size=128,
                           num_val_examples=1000)
    default = tasks.default_strategy(model)
    single = {}
    for strategy in tasks.STRATEGIES:
      t = _time(lambda s=strategy: tasks.run_training(
          task, jax.random.key(0), lrs, eval_every=10, strategy=s), _REPEATS.value)
      single[strategy] = steps / t
      rows.append((model, f"single, {strategy}", steps / t))
    default_batch = tasks.default_batch_mode(model)
    for mode in ("vmap", "sequential"):
      t = _time(lambda m=mode: tasks.run_training_batch(
          task, keys, batch_lrs, eval_every=10, strategy=default, batch_mode=m),
                max(1, _REPEATS.value - 1))
      rows.append((model, f"{runs} runs, {mode} ({default})", runs * steps / t))
    best = max(single.values())
    print(f"{model}: default strategy {default!r} at {single[default] / best:.2f} of the "
          f"fastest; {single[default] / single['loop']:.2f}x the Python loop; "
          f"default batch mode {default_batch!r}", flush=True)
  print(f"\n{jax.devices()[0].platform}, {os.cpu_count()} cores, jax {jax.__version__}\n")
  print("| model | configuration | inner steps / s (per run-step) |\n|---|---|---|")
  for model, conf, rate in rows:
    print(f"| {model} | {conf} | {rate:.1f} |")


if __name__ == "__main__":
  app.run(main)
