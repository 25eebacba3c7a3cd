"""Train a learning-rate controller; the agent is chosen by ``config.agent``.

Agents and their configs are dispatched in ``lr_meta.experiment``.

  python scripts/train_controller.py --config configs/quickstart.py \
      --workdir runs/quickstart

Writes to --workdir: metrics.csv (one row per iteration; TensorBoard events
too), checkpoints/ (the whole learner state every ``checkpoint_every``
iterations and at the end, with orbax; a rerun with the same workdir resumes
from the latest one), config.json (the config as run), snapshots/ (the
controller params at every checkpoint, for checkpoint selection by
``scripts/evaluate_controller.py``), controller_params.msgpack (the final
controller params) and results.md: the trained controller run deterministically on fresh seeds vs
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
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from lr_meta import baselines
from lr_meta import experiment
from lr_meta.policies import controller as controller_lib

_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Controller config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")

EVAL_SEED_OFFSET = 20_000   # controller evaluation seeds, never trained on

# Kept importable from the script for users of the old names.
check_config = experiment.check_config
build = experiment.build
make_agent = experiment.make_agent


def _scalar_metrics(metrics):
  return {k: float(np.asarray(v)) for k, v in metrics.items()
          if np.asarray(v).size == 1}


def train(config, workdir, agent, log=print):
  """Runs the iterations with checkpoint/resume; returns the final state."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
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
      save_snapshot(workdir, it + 1, experiment.policy_params(config, state))
      _write_csv(metrics_path, rows)
  manager.wait_until_finished()
  manager.close()
  if writer is not None:
    writer.close()
  _write_csv(metrics_path, rows)
  with open(os.path.join(workdir, "controller_params.msgpack"), "wb") as f:
    f.write(flax.serialization.to_bytes(
        jax.device_get(experiment.policy_params(config, state))))
  return state


SNAPSHOT_DIR = "snapshots"


def snapshot_path(workdir, iteration):
  return os.path.join(workdir, SNAPSHOT_DIR, f"iter_{iteration:06d}.msgpack")


def save_snapshot(workdir, iteration, params):
  """Controller params at a checkpoint, kept forever (a few KB each).

  Orbax keeps only the latest learner states (for resume); these snapshots are
  what ``scripts/evaluate_controller.py`` selects from by validation loss,
  as Xu et al. 2019 choose their checkpoint.
  """
  os.makedirs(os.path.join(workdir, SNAPSHOT_DIR), exist_ok=True)
  with open(snapshot_path(workdir, iteration), "wb") as f:
    f.write(flax.serialization.to_bytes(jax.device_get(params)))


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
  seeds = EVAL_SEED_OFFSET + np.arange(config.eval.num_seeds)
  runs = experiment.run_controller(
      env, env_params, agent, experiment.policy_params(config, state),
      seeds, lr0, strategy)
  loss, acc = experiment.test_metrics(task, runs.final_state)
  return loss, acc, runs.learning_rates


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
                 f"{baselines.mean_std(loss)} | {baselines.mean_std(acc)} | "
                 f"{np.mean(lrs[-1]):.3g} |")
  specs = baselines.grid("constant", config.eval.constant_lrs)
  _, res = baselines.tune_and_evaluate(
      task, specs, num_steps, num_seeds=n, tuning_seeds=(0,),
      eval_every=env_params.steps_per_decision,
      strategy="scan" if strategy == "scan" else "chunk",
      num_val_examples=env_params.num_val_examples)
  best = res.spec
  lines.append(f"| constant LR {best.init_lr:g} (best of "
               f"{tuple(config.eval.constant_lrs)} by val loss) | "
               f"{baselines.mean_std(res.test_loss)} | "
               f"{baselines.mean_std(res.test_accuracy)} | {best.init_lr:g} |")
  return "\n".join(lines) + "\n"


def run(config, workdir, data_dir=None, log=print):
  """Train + evaluate; returns the Markdown results table."""
  task, env, env_params, strategy = build(config, data_dir)
  agent = make_agent(config, env, env_params, strategy, data_dir)
  t0 = time.time()
  state = train(config, workdir, agent, log=log)
  log(f"Training took {time.time() - t0:.1f} s.")
  # The portable controller (spec + params): lr_meta.optax.load_controller,
  # scripts/export_controller.py. Only this call belongs to issue 4 item 6.
  experiment.write_training_artifact(
      workdir, config, env, env_params, experiment.policy_params(config, state))
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
