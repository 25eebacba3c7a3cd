"""Train a learning-rate controller; the agent is chosen by ``config.agent``.

Agents and their configs are dispatched in ``lr_meta.experiment``.

  python scripts/train_controller.py --config configs/quickstart.py \
      --workdir runs/quickstart

The run directory (its layout and guarantees: ``lr_meta.rundir``) gets
config.json, metrics.csv (one row per iteration; TensorBoard events in tb/),
checkpoints/ (the whole learner state every ``checkpoint_every`` iterations
and at the end), snapshots/ (the controller params at every checkpoint, for
checkpoint selection by ``scripts/evaluate_controller.py``),
controller.msgpack (the final controller, for PPO and DQN) and results.md:
the trained controller run deterministically on fresh seeds vs the best
constant LR of a small grid (picked by validation loss), test loss / accuracy
mean (std) over seeds and how many diverged.

Rerunning with the same --workdir resumes from the newest intact checkpoint,
with the same config; ``--allow_change=num_iterations`` lets a resume run
longer (the fields that may change: ``lr_meta.rundir.SAFE_CHANGES``). A
second process on a busy workdir, a changed config, a workdir whose
checkpoints vanished or are all corrupted, and a training iteration that
makes the controller non-finite stop the script with one line naming why.
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import tqdm

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import rundir
from lr_meta import seeds

_CONFIG = config_lib.DEFINE_config_file("config", None,
                                        "Controller config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_change", [], "Config fields a resume may change, of "
    f"{rundir.SAFE_CHANGES} (e.g. num_iterations to train longer).")


def _scalar_metrics(metrics):
  return {k: float(np.asarray(v)) for k, v in metrics.items()
          if np.asarray(v).size == 1}


def _tensorboard(workdir):
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tensorboardX.SummaryWriter(os.path.join(workdir,
                                                 rundir.TENSORBOARD_DIR))


def train(config, workdir, agent, log=print, allow_changes=()):
  """Runs the iterations with checkpoint/resume; returns the final state.

  Raises:
    lr_meta.rundir.RunError: the workdir is busy, holds another run, has no
      intact checkpoint, or an iteration made the controller non-finite.
  """
  policy_params = lambda s: experiment.policy_params(config, s)
  with rundir.Run(workdir, config, allow_changes=allow_changes,
                  log=log) as run:
    state, start = run.restore(agent.init(jax.random.PRNGKey(config.seed)),
                               policy_params)
    writer = _tensorboard(workdir)
    t0 = time.time()
    bar = tqdm.trange(start, config.num_iterations, desc="iterations",
                      initial=start, total=config.num_iterations)
    for it in bar:
      state, metrics = agent.update_iteration(state)
      scalars = _scalar_metrics(metrics)
      run.record(it + 1, dict(scalars, time_s=time.time() - t0),
                 policy_params(state))
      ret = scalars.get("episode_return", scalars.get("last_episode_return"))
      bar.set_postfix(ret=f"{ret:.4f}" if ret is not None else "-")
      if writer is not None:
        for k, v in scalars.items():
          writer.add_scalar(k, v, it + 1)
      if ((it + 1) % config.checkpoint_every == 0
          or it + 1 == config.num_iterations):
        run.save(it + 1, state, policy_params(state))
    if writer is not None:
      writer.close()
  return state


def evaluate(config, task, env, env_params, agent, state, strategy):
  """The results table (Markdown) comparing controller and constant LR."""
  n = config.eval.num_seeds
  num_steps = env_params.num_decisions * env_params.steps_per_decision
  lines = [f"Test loss / accuracy, mean (std) over {n} fresh seeds; "
           f"{num_steps} inner steps on {task.dataset_name} {task.model_name}.",
           "", "| method | test loss | test accuracy | diverged | final LR |",
           "|---|---|---|---|---|"]
  test_seeds = seeds.seed_range("training_report", n)
  params = experiment.policy_params(config, state)
  marked = False
  for lr0 in config.eval.initial_lrs:
    runs = experiment.run_controller(env, env_params, agent, params,
                                     test_seeds, lr0, strategy)
    loss, acc = experiment.test_metrics(task, runs.final_state)
    div = int(runs.diverged.sum())
    marked |= bool(div)
    lines.append(f"| {config.agent.upper()} controller (lr0={lr0:g}) | "
                 f"{baselines.mean_std(loss, div)} | "
                 f"{baselines.mean_std(acc, div)} | {div} | "
                 f"{np.mean(runs.learning_rates[-1]):.3g} |")
  specs = baselines.grid("constant", config.eval.constant_lrs)
  _, res = baselines.tune_and_evaluate(
      task, specs, num_steps, num_seeds=n,
      tuning_seeds=seeds.seed_range("tuning", 1),
      eval_every=env_params.steps_per_decision,
      strategy="scan" if strategy == "scan" else "chunk",
      num_val_examples=env_params.num_val_examples)
  best, div = res.spec, int(res.diverged.sum())
  marked |= bool(div)
  lines.append(f"| constant LR {best.init_lr:g} (best of "
               f"{tuple(config.eval.constant_lrs)} by val loss) | "
               f"{baselines.mean_std(res.test_loss, div)} | "
               f"{baselines.mean_std(res.test_accuracy, div)} | {div} | "
               f"{best.init_lr:g} |")
  if marked:
    lines += ["", baselines.DIVERGED_NOTE]
  return "\n".join(lines) + "\n"


def run(config, workdir, data_dir=None, log=print, allow_changes=()):
  """Train + evaluate; returns the Markdown results table."""
  task, env, env_params, strategy = experiment.build(config, data_dir)
  agent = experiment.make_agent(config, env, env_params, strategy, data_dir)
  t0 = time.time()
  state = train(config, workdir, agent, log=log, allow_changes=allow_changes)
  log(f"Training took {time.time() - t0:.1f} s.")
  rundir.write_training_artifact(
      workdir, config, env, env_params, experiment.policy_params(config, state),
      log=log)
  table = evaluate(config, task, env, env_params, agent, state, strategy)
  with open(os.path.join(workdir, rundir.RESULTS_FILE), "w") as f:
    f.write(table)
  return table


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("--config and --workdir are required.")
  t0 = time.time()
  try:
    table = run(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value,
                allow_changes=tuple(_ALLOW_CHANGE.value))
  except rundir.RunError as e:
    raise SystemExit(f"train_controller: {e}") from None
  print(table)
  print(f"Total wall time {time.time() - t0:.1f} s; results in "
        f"{os.path.join(_WORKDIR.value, rundir.RESULTS_FILE)}.")


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.parse_flags)
