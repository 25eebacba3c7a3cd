"""Train a learning-rate controller (PPO: Xu et al. 2019; DQN: Fu 2016).

  python scripts/train_controller.py --config configs/quickstart.py \
      --workdir runs/quickstart

Writes to --workdir: metrics.csv (one row per iteration; TensorBoard events
too), checkpoints/ (the whole learner state every ``checkpoint_every``
iterations and at the end, with orbax; a rerun with the same workdir resumes
from the latest one), controller_params.msgpack (the final agent params) and
results.md: the trained controller run deterministically on fresh seeds vs
the best constant LR of a small grid (picked by validation loss), test loss /
accuracy mean (std) over seeds.
"""

import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from lr_meta import baselines
from lr_meta import tasks
from lr_meta.agents import dqn as dqn_lib
from lr_meta.agents import ppo as ppo_lib
from lr_meta.envs import lr_env
from lr_meta.tasks import runner

_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Controller config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")

KNOWN_AGENTS = ("ppo", "dqn")
EVAL_SEED_OFFSET = 20_000   # controller evaluation seeds, never trained on


def _check_int(name, value, low):
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    raise ValueError(f"config.{name}={value!r}; allowed: an integer >= {low}.")


def check_config(config):
  """Raises ValueError naming the bad field and its allowed values."""
  if config.agent not in KNOWN_AGENTS:
    raise ValueError(
        f"config.agent={config.agent!r}; allowed: {KNOWN_AGENTS} (REPS and "
        "actor-critic are not wired into this script yet).")
  _check_int("num_iterations", config.num_iterations, 1)
  _check_int("checkpoint_every", config.checkpoint_every, 1)
  _check_int("eval.num_seeds", config.eval.num_seeds, 1)
  if config.strategy not in ("",) + runner.STRATEGIES:
    raise ValueError(f"config.strategy={config.strategy!r}; allowed: "
                     f"{('',) + runner.STRATEGIES}.")
  if not config.eval.initial_lrs or not config.eval.constant_lrs:
    raise ValueError("config.eval.initial_lrs and config.eval.constant_lrs "
                     "must be non-empty tuples of positive floats.")
  action_type = config.env.action_type
  if action_type not in lr_env.ACTION_TYPES:
    raise ValueError(f"config.env.action_type={action_type!r}; allowed: "
                     f"{lr_env.ACTION_TYPES}.")
  expected = "xu2019" if config.agent == "ppo" else "fu2016"
  if action_type != expected:
    raise ValueError(
        f"config.env.action_type={action_type!r} with agent "
        f"{config.agent!r}; allowed: {expected!r} (PPO needs continuous "
        "actions, DQN discrete ones).")


def build(config, data_dir=None):
  """Task, environment, env params and execution strategy from the config."""
  check_config(config)
  task = tasks.make_task(data_dir=data_dir, **config.task)
  strategy = config.strategy or runner.default_strategy(task.model_name)
  env_kwargs = dict(config.env)
  action_type = env_kwargs.pop("action_type")
  env_kwargs["initial_lrs"] = tuple(float(x) for x in env_kwargs["initial_lrs"])
  env = lr_env.LREnv(task, action_type)
  env_params = lr_env.LREnvParams(unroll=strategy != "scan",
                                  **env_kwargs).check(action_type)
  return task, env, env_params, strategy


def make_agent(config, env, env_params, strategy):
  kind = config.agent
  sub = dict(config[kind])
  sub["strategy"] = strategy
  try:
    if kind == "ppo":
      return ppo_lib.make_ppo(ppo_lib.PPOConfig(**sub), env, env_params)
    sub["hidden_sizes"] = tuple(sub["hidden_sizes"])
    return dqn_lib.make_dqn(dqn_lib.DQNConfig(**sub), env, env_params)
  except (ValueError, TypeError) as e:
    raise ValueError(f"config.{kind}: {e}") from e


def _scalar_metrics(metrics):
  return {k: float(np.asarray(v)) for k, v in metrics.items()
          if np.asarray(v).size == 1}


def train(config, workdir, agent, log=print):
  """Runs the iterations with checkpoint/resume; returns the final state."""
  os.makedirs(workdir, exist_ok=True)
  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(
      ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2,
                                                     create=True))
  state = agent.init(jax.random.PRNGKey(config.seed))
  start = 0
  latest = manager.latest_step()
  if latest is not None:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = manager.restore(latest, args=ocp.args.StandardRestore(abstract))
    start = int(latest)
    log(f"Resumed from checkpoint at iteration {start}.")
  metrics_path = os.path.join(workdir, "metrics.csv")
  rows = []
  if start and os.path.exists(metrics_path):
    with open(metrics_path) as f:
      rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"))
  except ImportError:
    writer = None
  t0 = time.time()
  bar = tqdm.trange(start, config.num_iterations, desc="iterations",
                    initial=start, total=config.num_iterations)
  for it in bar:
    state, metrics = agent.update_iteration(state)
    scalars = _scalar_metrics(metrics)
    row = dict(iteration=it + 1, **scalars, time_s=time.time() - t0)
    rows.append(row)
    ret = scalars.get("episode_return", scalars.get("last_episode_return"))
    bar.set_postfix(ret=f"{ret:.4f}" if ret is not None else "-")
    if writer is not None:
      for k, v in scalars.items():
        writer.add_scalar(k, v, it + 1)
    if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.num_iterations:
      manager.save(it + 1, args=ocp.args.StandardSave(state))
      _write_csv(metrics_path, rows)
  manager.wait_until_finished()
  manager.close()
  if writer is not None:
    writer.close()
  _write_csv(metrics_path, rows)
  with open(os.path.join(workdir, "controller_params.msgpack"), "wb") as f:
    f.write(flax.serialization.to_bytes(jax.device_get(state.params)))
  return state


def _write_csv(path, rows):
  if not rows:
    return
  fields = list(rows[0])
  for r in rows:
    fields += [k for k in r if k not in fields]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)


def controller_test_results(config, task, env, env_params, agent, state,
                            strategy, lr0):
  """Test loss/accuracy of the deterministic controller on fresh seeds."""
  p = env_params.replace(initial_lrs=(float(lr0),))
  n = config.eval.num_seeds
  if config.agent == "ppo":
    act = lambda obs, c: agent.policy_fn(state.params, obs, c)
    carry = agent.initial_carry((n,))
  else:
    act = lambda obs, c: (agent.policy_fn(state.params, obs), c)
    carry = ()
  keys = jnp.stack([jax.random.PRNGKey(EVAL_SEED_OFFSET + i)
                    for i in range(n)])
  # All seeds in lockstep (vmap), compiled once.
  states, infos = lr_env.run_episodes(env, p, act, keys, strategy, carry)
  test = jax.jit(jax.vmap(tasks.Task.evaluate, in_axes=(None, 0, None)),
                 static_argnums=2)(task, states.opt, "test")
  return (np.asarray(test.loss), np.asarray(test.accuracy),
          np.asarray(infos["lr"]))   # lr: [T, N]


def _mean_std(x):
  return f"{np.mean(x):.4f} ({np.std(x):.4f})"


def evaluate(config, task, env, env_params, agent, state, strategy):
  """The results table (Markdown) comparing controller and constant LR."""
  n = config.eval.num_seeds
  num_steps = env_params.num_decisions * env_params.steps_per_decision
  lines = [f"Test loss / accuracy, mean (std) over {n} fresh seeds; "
           f"{num_steps} inner steps on {task.dataset_name} {task.model_name}.",
           "", "| method | test loss | test accuracy | final LR |",
           "|---|---|---|---|"]
  for lr0 in config.eval.initial_lrs:
    loss, acc, lrs = controller_test_results(config, task, env, env_params,
                                             agent, state, strategy, lr0)
    lines.append(f"| {config.agent.upper()} controller (lr0={lr0:g}) | "
                 f"{_mean_std(loss)} | {_mean_std(acc)} | "
                 f"{np.mean(lrs[-1]):.3g} |")
  specs = baselines.grid("constant", config.eval.constant_lrs)
  bstrategy = "scan" if strategy == "scan" else "chunk"
  swept = baselines.sweep(task, specs, num_steps, tuning_seeds=(0,),
                          eval_every=env_params.steps_per_decision,
                          strategy=bstrategy,
                          num_val_examples=env_params.num_val_examples)
  best = swept.specs[swept.best_index]
  res = baselines.evaluate_on_seeds(
      task, best, num_steps, num_seeds=n,
      eval_every=env_params.steps_per_decision, strategy=bstrategy,
      num_val_examples=env_params.num_val_examples)
  lines.append(f"| constant LR {best.init_lr:g} (best of "
               f"{tuple(config.eval.constant_lrs)} by val loss) | "
               f"{_mean_std(res.test_loss)} | {_mean_std(res.test_accuracy)} "
               f"| {best.init_lr:g} |")
  return "\n".join(lines) + "\n"


def run(config, workdir, data_dir=None, log=print):
  """Train + evaluate; returns the Markdown results table."""
  task, env, env_params, strategy = build(config, data_dir)
  agent = make_agent(config, env, env_params, strategy)
  t0 = time.time()
  state = train(config, workdir, agent, log=log)
  log(f"Training took {time.time() - t0:.1f} s.")
  table = evaluate(config, task, env, env_params, agent, state, strategy)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table)
  return table


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("--config and --workdir are required.")
  t0 = time.time()
  table = run(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)
  print(table)
  print(f"Total wall time {time.time() - t0:.1f} s; results in "
        f"{os.path.join(_WORKDIR.value, 'results.md')}.")


if __name__ == "__main__":
  app.run(main)
