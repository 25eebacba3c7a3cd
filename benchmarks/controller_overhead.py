r"""Per-step cost of a learned LR controller in an optax loop (issue 4).

Times one inner training step of the same task three or four ways, all with
the same base optimizer (``tasks.make_optimizer('momentum')``, an
``inject_hyperparams`` SGD with momentum 0.9):

  plain        the base optimizer alone;
  controlled   ``lr_meta.optax.controlled(base, controller)`` fed the train
               loss and the softmax of the TRAINING batch as predictions
               (nothing extra is computed: the features, the EMAs, the
               controller MLP and the LR update run every K-th step under a
               ``lax.cond``; the loss buffer is written every step);
  + probe N    as ``controlled``, plus the loss and predictions on N fixed
               validation examples, computed under
               ``lax.cond(decision_due(state), ...)`` ('scan' loop) or in
               its own jit called every K-th step from the Python loop
               ('chunk'/'loop': convs inside XLA:CPU control flow are slow),
               so only every K-th step; this is what the controller saw during training
               (LREnv uses the first ``num_val_examples`` val examples).

Tasks: Fashion-MNIST LeNet-5 and the mnist1d MLP, batch 128 (real data, on
device, batches gathered by index as in ``lr_meta.tasks.Task``), with the
shipped mnist1d controller; and the Tiny Shakespeare character transformer
(4 layers, 4 heads, width 128, context 64, batch 12, AdamW) and a residual
conv net with GroupNorm on Fashion-MNIST (``resnet_norm``, batch 128,
momentum) with the shipped ``generalist``, which decides at 20 fixed
fractions of a run (``--run_steps``, default 2000: a decision every 100
steps) and reads the probe's loss only (``+ probe N``: N validation
examples, windows of 64 characters for the transformer). Loop: the
measured default per model (``lr_meta.runner.default_strategy``): conv
nets on CPU run a Python loop over a jitted step ('loop'); MLPs run
``--chunk`` steps in one ``lax.scan`` ('scan'). Timing as
``benchmarks/feature_cost.py``: variants interleaved in every round (order
rotated), median per-step time over rounds and median per-round ratio to
``plain``, and the minimum over rounds (least disturbed by other jobs on
shared cores) with its ratio, and the ratio of process CPU times (all
threads; insensitive to being descheduled); ``--iters`` steps per round per variant, a
multiple of K so every variant sees the same number of decisions.

The controller's weights do not change the cost; the shipped mnist1d
controller (MLP(32), K=10) is used for both image classifiers.

``--mesh=4`` (with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``)
shards every parameter whose last axis divides by 4 over a 4-device
'model' axis (the rest replicated) and lets ``jit`` propagate the sharding
to the optimizer state: the controller's global norms and features then
reduce across devices.

Usage:
  python benchmarks/controller_overhead.py                  # both tasks
  python benchmarks/controller_overhead.py --tasks=mnist1d --rounds=9
  python benchmarks/controller_overhead.py --tasks=char_transformer,resnet_norm \
      --chunk=100 --iters=100 --probe_sizes=16
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python \
      benchmarks/controller_overhead.py --tasks=char_transformer --mesh=4
"""

import argparse
import os
import statistics
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lr_meta import tasks
import lr_meta.optax as lmo
from lr_meta import runner

class Bench(NamedTuple):
  """A task of the table: what it trains and which controller drives it."""
  task: dict
  optimizer: str
  controller: str
  batch_size: Optional[int] = None   # None: --batch_size


TASKS = {
    "fashion_mnist": Bench(dict(dataset="fashion_mnist", model="lenet5"),
                           "momentum", "mnist1d_mlp_quickstart"),
    "mnist1d": Bench(dict(dataset="mnist1d", model="mlp"), "momentum",
                     "mnist1d_mlp_quickstart"),
    "char_transformer": Bench(
        dict(dataset="tiny_shakespeare", model="transformer",
             model_kwargs=dict(num_layers=4, num_heads=4, width=128),
             context_length=64), "adamw", "generalist", batch_size=12),
    "resnet_norm": Bench(dict(dataset="fashion_mnist", model="resnet_norm",
                              model_kwargs=dict(norm="group")),
                         "momentum", "generalist"),
}


def make_step(task, tx, mode, probe_size, wants_predictions):
  """One jitted training step (``chunk`` steps for 'scan')."""
  if probe_size:
    xv, yv = task.first_examples("val", probe_size)

  def probe(params):
    loss, probs = task.probe(params, {}, xv, yv)
    return (loss, probs) if wants_predictions else (loss,)

  shapes = jax.eval_shape(probe, task.init(jax.random.PRNGKey(0)).params
                          ) if probe_size else ()

  def skip(params):
    del params
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

  def one(carry, probe_values):
    params, opt_state, key = carry
    key, batch_key = jax.random.split(key)
    x, y = task.sample_batch(batch_key)
    (loss, (logits, _)), grads = jax.value_and_grad(
        task.loss_and_logits, has_aux=True)(params, {}, x, y, train=True)
    if mode == "plain":
      updates, opt_state = tx.update(grads, opt_state, params)
    elif mode == "controlled":
      extra = (dict(predictions=jax.nn.softmax(logits))
               if wants_predictions else {})
      updates, opt_state = tx.update(grads, opt_state, params, loss=loss,
                                     **extra)
    else:
      if probe_values is None:   # inside the jit, gated by lax.cond
        probe_values = jax.lax.cond(lmo.decision_due(opt_state), probe,
                                    skip, params)
      extra = dict(val_loss=probe_values[0])
      if wants_predictions:
        extra["predictions"] = probe_values[1]
      updates, opt_state = tx.update(grads, opt_state, params, loss=loss,
                                     **extra)
    return (optax.apply_updates(params, updates), opt_state, key), loss

  return one, probe, skip


def host_gated(one, probe, skip, every):
  """A Python-loop step whose probe runs in its own jit every K-th call.

  Conv nets on XLA:CPU run 2.5-5x slower inside control flow (jax-ml/jax
  issue 12868, see lr_meta.runner), so with the Python-loop strategy
  the probe is gated on the host, as a user's Python loop would do.
  """
  step = jax.jit(lambda c, pv: one(c, pv)[0])
  probe = jax.jit(probe)
  zeros = skip(None)
  calls = [0]

  def fn(task, c):
    del task
    pv = probe(c[0]) if calls[0] % every == 0 else zeros
    calls[0] += 1
    return step(c, pv)

  return fn


def shard_params(params, mesh_size):
  """Params with every leaf whose last axis divides by ``mesh_size`` split
  over a 'model' axis, the rest replicated."""
  mesh = jax.make_mesh((mesh_size,), ("model",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  def place(p):
    spec = (jax.sharding.PartitionSpec(*([None] * (p.ndim - 1)), "model")
            if p.ndim and p.shape[-1] % mesh_size == 0
            else jax.sharding.PartitionSpec())
    return jax.device_put(p, jax.sharding.NamedSharding(mesh, spec))
  return jax.tree.map(place, params)


def build(name, probe_sizes, chunk, batch_size, run_steps, mesh_size=None):
  bench = TASKS[name]
  batch_size = bench.batch_size or batch_size
  task = tasks.make_task(batch_size=batch_size, optimizer=bench.optimizer,
                         **bench.task)
  strategy = runner.default_strategy(task.model_name)
  controller = lmo.pretrained_controller(bench.controller)
  lr0 = 1e-3 if bench.optimizer == "adamw" else 0.05
  base = tasks.make_optimizer(bench.optimizer, learning_rate=lr0)
  fraction = controller.spec.observation_spec.decision_schedule == "fraction"
  wants_predictions = not fraction
  rows = task.context_length or 1    # prediction rows per probe example

  def wrap(n):
    if fraction:
      return lmo.controlled(base, controller, num_steps=run_steps)
    return lmo.controlled(base, controller, predictions_shape=(n * rows, 10))

  variants = {"plain": (base, "plain", 0)}
  variants["controlled"] = (wrap(batch_size), "controlled", 0)
  for n in probe_sizes:
    n = min(n, task.num_examples("val"))   # mnist1d has 800 val examples
    variants[f"+ probe {n}"] = (wrap(n), "probe", n)
  params = task.init(jax.random.PRNGKey(0)).params
  if mesh_size:
    params = shard_params(params, mesh_size)
  fns, states = {}, {}
  obs_spec = controller.spec.observation_spec
  every = (run_steps // obs_spec.num_decisions if fraction
           else controller.spec.observation_spec.steps_per_decision)
  for label, (tx, mode, n) in variants.items():
    one, probe, skip = make_step(task, tx, mode, n, wants_predictions)
    if strategy != "scan" and mode == "probe":
      fns[label] = (host_gated(one, probe, skip, every), 1)
    elif strategy == "scan":
      fn = jax.jit(lambda t, c, one=one: jax.lax.scan(one, c, None,
                                                      length=chunk)[0])
      fns[label] = (fn, chunk)
    else:
      fns[label] = (jax.jit(lambda t, c, one=one: one(c, None)[0]), 1)
    # Eagerly: the state's leaves take the params' shardings.
    states[label] = (params, tx.init(params), jax.random.PRNGKey(1))
  return task, strategy, fns, states, every


def time_variants(task, fns, states, rounds, iters):
  """Median seconds per inner step and median per-round ratio to 'plain'."""
  names = list(fns)
  for name in names:      # compile + warm up
    fn, _ = fns[name]
    states[name] = jax.block_until_ready(fn(task, states[name]))
  times = {n: [] for n in names}
  cpu = {n: [] for n in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      fn, steps = fns[name]
      calls = max(1, iters // steps)
      c = states[name]
      t0, c0 = time.perf_counter(), time.process_time()
      for _ in range(calls):
        c = fn(task, c)
      jax.block_until_ready(c)
      times[name].append((time.perf_counter() - t0) / (calls * steps))
      cpu[name].append((time.process_time() - c0) / (calls * steps))
      states[name] = c
  base, cpu_base = times[names[0]], cpu[names[0]]
  return {n: (statistics.median(times[n]),
              statistics.median([t / b for t, b in zip(times[n], base)]),
              min(times[n]), min(times[n]) / min(base),
              statistics.median(cpu[n]) / statistics.median(cpu_base))
          for n in names}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", default="fashion_mnist,mnist1d")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--iters", type=int, default=100,
                      help="inner steps per round and variant (multiple of "
                      "K=10)")
  parser.add_argument("--chunk", type=int, default=100,
                      help="steps per lax.scan call ('scan' loop)")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--probe_sizes", default="500,128",
                      help="val probe sizes (configs/xu2019_ppo.py: 128; "
                      "runs before 2026-11-23 session 3: 500)")
  parser.add_argument("--run_steps", type=int, default=2000,
                      help="the run length a 'fraction' controller (the "
                      "generalist) spreads its 20 decisions over")
  parser.add_argument("--mesh", type=int, default=0,
                      help="shard params over this many devices (0: none)")
  args = parser.parse_args()
  probe_sizes = [int(n) for n in args.probe_sizes.split(",") if n]
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"load {os.getloadavg()}")
  print("| task | loop | variant | ms / step (median) | overhead (median of "
        "per-round ratios) | ms / step (min) | overhead (min / min) | overhead "
        "(process CPU time, median / median) |")
  print("|---|---|---|---|---|---|---|---|")
  for name in args.tasks.split(","):
    task, strategy, fns, states, k = build(name, probe_sizes, args.chunk,
                                           args.batch_size, args.run_steps,
                                           args.mesh)
    if args.iters % k:
      raise ValueError(f"--iters={args.iters} must be a multiple of K={k}.")
    res = time_variants(task, fns, states, args.rounds, args.iters)
    for label, (med, ratio, best, best_ratio, cpu_ratio) in res.items():
      over = "-" if label == "plain" else f"{100 * (ratio - 1):+.1f}%"
      best_over = ("-" if label == "plain"
                   else f"{100 * (best_ratio - 1):+.1f}%")
      cpu_over = ("-" if label == "plain"
                  else f"{100 * (cpu_ratio - 1):+.1f}%")
      mesh = f" mesh {args.mesh}" if args.mesh else ""
      print(f"| {name} {task.model_name} b{task.batch_size}{mesh} | "
            f"{strategy} | "
            f"{label} | {1e3 * med:.3f} | {over} | {1e3 * best:.3f} | "
            f"{best_over} | {cpu_over} |", flush=True)
  print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
  main()
