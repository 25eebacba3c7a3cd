"""Rules scored per hour: batched interpreter vs one compile per rule.

  python benchmarks/nos_throughput.py                  # interpreter vs from_dsl
  python benchmarks/nos_throughput.py --devices 1,2,4  # + sharded scaling

Same scoring for both sides (configs/nos.py: MLP(32) on mnist1d, LR sweep
10^-5 .. 10^1 x 100 steps on 1000 examples, then 300 steps at the best LR):

* interpreter: `lr_meta.nos.search.Scorer` (the rule is data in the optimizer
  state; one compile serves every rule), timed after its one-off compile,
  which is reported separately;
* one rule at a time: each rule compiled on its own with `nos.from_dsl`
  (what `lr_meta.optax.from_dsl` re-exports), swept and trained with
  `lr_meta.tasks.run_training_batch` / `run_training`, compile included
  (a search meets every rule once).

`--devices` re-runs the interpreter in a subprocess with
``--xla_force_host_platform_device_count=4`` and ``batch_mode='sharded'`` on
meshes of 1, 2, 4 devices (forced host devices share this machine's cores).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_meta import config as config_lib
from lr_meta import nos
from lr_meta import tasks
from lr_meta.nos import controller as controller_lib
from lr_meta.nos import search as search_lib

nos_config = config_lib.load_module(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
    "nos.py"))


def scoring_config(**overrides):
  scoring = nos_config.get_config().scoring.to_dict()
  scoring["model_kwargs"] = dict(scoring["model_kwargs"])
  scoring["sweep_lrs"] = tuple(scoring["sweep_lrs"])
  scoring.update(overrides)
  return search_lib.ScoringConfig(**scoring)


def sampled_rules(n, seed=0):
  """`n` rules from an untrained controller on the configs/nos.py space."""
  space = controller_lib.make_search_space(
      **nos_config.get_config().space.to_dict())
  params = controller_lib.init_params(space, jax.random.PRNGKey(seed))
  programs = controller_lib.sample(params, space, jax.random.PRNGKey(seed + 1),
                                   n).programs
  return [nos.format_program(p) for p in np.asarray(programs)]


def time_interpreter(config, rules, repeats, mesh=None):
  scorer = search_lib.Scorer(config, mesh=mesh)
  start = time.perf_counter()
  jax.block_until_ready(scorer.score(rules, jax.random.PRNGKey(0)))
  first = time.perf_counter() - start
  times = []
  for r in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(scorer.score(rules, jax.random.PRNGKey(r + 1)))
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def score_one_compiled(config, rule, key):
  """The paper's scoring of one rule, compiled on its own with from_dsl."""
  base = tasks.make_task(config.dataset, config.model,
                         model_kwargs=config.model_kwargs,
                         batch_size=config.batch_size,
                         num_train_examples=config.num_train_examples,
                         num_val_examples=config.num_val_examples)

  def task_for(num_steps, data):
    opt = optax.inject_hyperparams(
        lambda learning_rate: nos.from_dsl(rule, learning_rate,
                                           decay_steps=num_steps))(
                                               learning_rate=0.0)
    return base.replace(optimizer=opt, data=data)

  n = config.sweep_train_examples
  sweep_data = base.data.replace(x_train=base.data.x_train[:n],
                                 y_train=base.data.y_train[:n])
  sweep_task = task_for(config.sweep_steps, sweep_data)
  lrs = np.asarray(config.sweep_lrs, np.float32)
  sweep_key, train_key = jax.random.split(key)
  keys = jnp.broadcast_to(sweep_key, (len(lrs),) + sweep_key.shape)
  schedule = jnp.repeat(jnp.asarray(lrs)[:, None], config.sweep_steps, 1)
  batch_mode = config.batch_mode or tasks.default_batch_mode(config.model)
  state, _ = tasks.run_training_batch(
      sweep_task, keys, schedule, eval_every=config.sweep_steps,
      strategy="scan", batch_mode=batch_mode)
  acc = jax.vmap(lambda s: sweep_task.evaluate(s, "val"))(state).accuracy
  best = float(lrs[int(np.argmax(np.asarray(acc)))])
  train_task = task_for(config.train_steps, base.data)
  state, _ = tasks.run_training(train_task, train_key,
                                jnp.full((config.train_steps,), best),
                                eval_every=config.train_steps, strategy="scan")
  return float(train_task.evaluate(state, "val").accuracy)


def scaling(devices, num_rules, repeats):
  """Interpreter throughput on meshes of `devices` forced host devices."""
  code = f"""
import importlib.util, json
spec = importlib.util.spec_from_file_location("nos_throughput",
                                              {os.path.abspath(__file__)!r})
b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(b)
from lr_meta import tasks
rules = b.sampled_rules({num_rules})
out = {{}}
for n in {devices!r}:
  first, steady = b.time_interpreter(b.scoring_config(batch_mode="sharded"), rules,
                                     {repeats}, mesh=tasks.run_mesh(n))
  out[n] = dict(compile_and_first_s=first, steady_s=steady,
                rules_per_hour=3600 * {num_rules} / steady)
print("RESULT" + json.dumps(out))
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count="
             f"{max(devices)}", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=env, check=False)
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
  if not lines:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(lines[-1][len("RESULT"):])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_rules", type=int, default=16)
  parser.add_argument("--num_baseline_rules", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch_modes", default="sequential,vmap")
  parser.add_argument("--devices", default="",
                      help="e.g. 1,2,4: sharded scaling over forced devices")
  args = parser.parse_args()
  print(f"load average before: {os.getloadavg()}")
  rules = sampled_rules(args.num_rules)
  results = {}
  for mode in args.batch_modes.split(","):
    first, steady = time_interpreter(scoring_config(batch_mode=mode), rules,
                                     args.repeats)
    results[f"interpreter_{mode}"] = dict(
        compile_and_first_s=first, steady_s_per_batch=steady,
        rules_per_hour=3600 * args.num_rules / steady)
    print(f"interpreter ({mode}): first batch of {args.num_rules} rules "
          f"{first:.1f} s (compile included), then {steady:.2f} s per batch "
          f"= {3600 * args.num_rules / steady:.0f} rules/hour", flush=True)
  config = scoring_config()
  times = []
  for i, rule in enumerate(rules[:args.num_baseline_rules]):
    start = time.perf_counter()
    score_one_compiled(config, rule, jax.random.PRNGKey(i))
    times.append(time.perf_counter() - start)
    print(f"from_dsl, compiled on its own: {times[-1]:.2f} s  {rule}",
          flush=True)
  per_rule = float(np.mean(times))
  results["from_dsl_per_rule"] = dict(s_per_rule=per_rule,
                                      rules_per_hour=3600 / per_rule)
  print(f"from_dsl one rule at a time: {per_rule:.2f} s per rule = "
        f"{3600 / per_rule:.0f} rules/hour")
  best = max(v["rules_per_hour"] for k, v in results.items()
             if k.startswith("interpreter"))
  results["speedup"] = best / results["from_dsl_per_rule"]["rules_per_hour"]
  print(f"speedup of the interpreter: {results['speedup']:.1f}x")
  if args.devices:
    devices = [int(d) for d in args.devices.split(",")]
    results["sharded"] = scaling(devices, args.num_rules, args.repeats)
    for n, r in results["sharded"].items():
      print(f"sharded over {n} forced host devices: {r['steady_s']:.2f} s per "
            f"batch = {r['rules_per_hour']:.0f} rules/hour")
  print(f"load average after: {os.getloadavg()}")
  print("JSON " + json.dumps(results))


if __name__ == "__main__":
  main()
