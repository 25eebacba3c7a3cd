"""Train a learning-rate controller; the agent is chosen by ``config.agent``.

Agents and their configs are dispatched in ``lr_meta.experiment``.

  python scripts/train_controller.py --config configs/quickstart.py \
      --workdir runs/quickstart

The run directory (its layout and guarantees: ``lr_meta.rundir``) gets
config.json, metrics.csv (one row per iteration), checkpoints/ (the whole
learner state every ``checkpoint_every`` iterations and at the end),
snapshots/ (the controller params at every checkpoint, for checkpoint
selection), controller.msgpack (the final controller, for PPO and DQN),
tb/ (TensorBoard: see ``Watch``) and the evaluation: the protocol of
``scripts/evaluate_controller.py`` (``lr_meta.evaluation``: checkpoint
chosen by validation loss, baselines ``config.eval.baselines`` tuned on this
task, the untuned ``lr_meta.benchmark`` methods of
``config.eval.benchmark_methods`` on the same seeds, Welch's t-test),
written to eval/ (results.md, results.json, schedule.png, val_loss.png) and
as results.md; running
``evaluate_controller.py --workdir`` on the run reports the same table.

Progress: a tqdm bar on a terminal; in a redirected log one plain line
every 30 s (iterations) and one per evaluation stage.

Rerunning with the same --workdir resumes from the newest intact checkpoint,
with the same config; ``--allow_change=num_iterations`` lets a resume run
longer (the fields that may change: ``lr_meta.rundir.SAFE_CHANGES``). A
second process on a busy workdir, a changed config, a workdir whose
checkpoints vanished or are all corrupted, and a training iteration that
makes the controller non-finite stop the script with one line naming why.

Many processes (``lr_meta.distributed``: ``--num_processes=P`` alone tries P
local ones; ``--coordinator_address --num_processes --process_id`` on each
host) share the episode population; process 0 alone writes the workdir.
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from lr_meta import config as config_lib
from lr_meta import distributed
from lr_meta import evaluation
from lr_meta import experiment
from lr_meta import plotting
from lr_meta import progress as progress_lib
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
distributed.define_flags()


def _scalar_metrics(metrics):
  metrics = distributed.host_copy(metrics)
  return {k: float(np.asarray(v)) for k, v in metrics.items()
          if np.asarray(v).size == 1}


def _hparams(config) -> dict:
  """The config's scalar fields, flattened (``'ppo.actor_lr'``), for the
  TensorBoard hparams summary; tuples as text."""
  out, todo = {}, [("", json.loads(config.to_json_best_effort()))]
  while todo:
    prefix, d = todo.pop()
    for k, v in d.items():
      if isinstance(v, dict):
        todo.append((f"{prefix}{k}.", v))
      elif isinstance(v, (bool, int, float, str)):
        out[f"{prefix}{k}"] = v
      elif isinstance(v, (list, tuple)):
        out[f"{prefix}{k}"] = str(tuple(v))
  return out


class Watch:
  """What TensorBoard shows of a run (``<workdir>/tb``).

  * Every iteration: the agent's scalars (``episode_return``, losses, ...).
  * Every checkpoint (with ``env``): the learned LR trajectory, i.e. the
    deterministic controller run from ``config.eval.initial_lrs[0]`` on one
    'training_report' seed: a figure ``controller/lr_schedule`` and the
    scalars ``controller/final_lr``, ``controller/final_val_loss``.
  * At the end: the evaluation table (text ``evaluation/results``), its
    schedule and validation-loss figures, each method's mean test loss and
    accuracy, and an hparams summary (the config's scalars against the
    controller's and the best baseline's test loss).

  Without tensorboardX installed, nothing is written.
  """

  def __init__(self, workdir, config, env=None, env_params=None, agent=None,
               strategy=None):
    self.config, self.env, self.env_params = config, env, env_params
    self.agent, self.strategy = agent, strategy
    self._logdir = os.path.join(workdir, rundir.TENSORBOARD_DIR)
    self._opened = False
    self._writer = None

  @property
  def writer(self):
    """The SummaryWriter, opened on first use: only once the run holds its
    workdir's lock (a refused second process must not touch the workdir),
    on process 0 alone, and only with tensorboardX installed."""
    if not self._opened:
      self._opened = True
      if distributed.is_main_process():
        try:
          import tensorboardX  # pylint: disable=g-import-not-at-top
        except ImportError:
          pass
        else:
          self._writer = tensorboardX.SummaryWriter(self._logdir)
    return self._writer

  def scalars(self, iteration: int, scalars: dict):
    if self.writer is not None:
      for k, v in scalars.items():
        self.writer.add_scalar(k, v, iteration)

  def checkpoint(self, iteration: int, params):
    if self.writer is None or self.env is None:
      return
    lr0 = float(self.config.eval.initial_lrs[0])
    runs = experiment.run_controller(
        self.env, self.env_params, self.agent, params,
        seeds.seed_range("training_report", 1), lr0, self.strategy)
    lrs, val = runs.learning_rates[:, 0], runs.val_loss[:, 0]
    k = self.env_params.steps_per_decision
    self.writer.add_scalar("controller/final_lr", float(lrs[-1]), iteration)
    self.writer.add_scalar("controller/final_val_loss", float(val[-1]),
                           iteration)
    self.writer.add_figure("controller/lr_schedule", plotting.schedule_figure(
        lrs, k, lr0, f"iteration {iteration}: "
        + plotting.task_title(self.config.task, len(lrs) * k)), iteration)

  def evaluation(self, ev: evaluation.Evaluation, table: str, outdir: str):
    """``ev``, its ``table`` and the figures ``evaluation.write`` put in
    ``outdir``."""
    if self.writer is None:
      return
    step = ev.last_iteration
    self.writer.add_text("evaluation/results", table, step)
    for m in ev.methods:
      self.writer.add_scalar(f"evaluation/{m.label}/test_loss",
                             float(np.mean(m.test_loss)), step)
      self.writer.add_scalar(f"evaluation/{m.label}/test_accuracy",
                             float(np.mean(m.test_accuracy)), step)
    for name in ("schedule", "val_loss"):
      import matplotlib.image  # pylint: disable=g-import-not-at-top
      image = matplotlib.image.imread(os.path.join(outdir,
                                                   f"{name}.png"))[..., :3]
      self.writer.add_image(f"evaluation/{name}", image, step,
                            dataformats="HWC")
    controllers = [np.mean(m.test_loss) for m in ev.methods if m.controller]
    others = [np.mean(m.test_loss) for m in ev.methods
              if not m.controller and not m.benchmark_method]
    metrics = {"hparams/controller_test_loss": float(min(controllers))}
    if others:
      metrics["hparams/best_baseline_test_loss"] = float(min(others))
    self.writer.add_hparams(_hparams(self.config), metrics, name="hparams")

  def close(self):
    if self._writer is not None:   # never opens one just to close it
      self._writer.close()


def train(config, workdir, agent, log=print, allow_changes=(), watch=None,
          stream=None):
  """Runs the iterations with checkpoint/resume; returns the final state.

  Args:
    watch: a ``Watch`` (default: the agent's scalars only).
    stream: where the progress goes (default stdout: a tqdm bar on a
      terminal, a plain line every 30 s otherwise).

  Raises:
    lr_meta.rundir.RunError: the workdir is busy, holds another run, has no
      intact checkpoint, or an iteration made the controller non-finite.
  """
  policy_params = lambda s: experiment.policy_params(config, s)
  own_watch = watch is None
  watch = watch or Watch(workdir, config)
  with rundir.Run(workdir, config, allow_changes=allow_changes,
                  log=log) as run:
    state, start = run.restore(agent.init(jax.random.PRNGKey(config.seed)),
                               policy_params)
    t0 = time.time()
    # The first iteration here compiles: left out of the ETA.
    progress = progress_lib.Progress(config.num_iterations, "iterations",
                                     initial=start, stream=stream, warmup=1)
    for it in range(start, config.num_iterations):
      state, metrics = agent.update_iteration(state)
      scalars = _scalar_metrics(metrics)
      run.record(it + 1, dict(scalars, time_s=time.time() - t0),
                 policy_params(state))
      ret = scalars.get("episode_return", scalars.get("last_episode_return"))
      progress.update(1, f"return {ret:.4f}" if ret is not None else "")
      watch.scalars(it + 1, scalars)
      if ((it + 1) % config.checkpoint_every == 0
          or it + 1 == config.num_iterations):
        run.save(it + 1, state, policy_params(state))
        watch.checkpoint(it + 1, policy_params(state))
    progress.close()
  if own_watch:
    watch.close()
  return state


def run(config, workdir, data_dir=None, log=print, allow_changes=(),
        stream=None):
  """Train, then evaluate as ``scripts/evaluate_controller.py`` does.

  The evaluation is ``lr_meta.evaluation.evaluate`` with its default
  checkpoint selection, written by ``lr_meta.evaluation.write`` to
  ``<workdir>/eval`` (table, per-seed numbers, schedule and validation-loss
  plots); the table is also ``<workdir>/results.md``. So the main job's
  table is what ``evaluate_controller.py --workdir`` reports.

  Returns:
    The Markdown results table.
  """
  # A misspelt benchmark method fails here, not after training.
  evaluation.check_benchmark_methods(config.eval.get("benchmark_methods", ()))
  _, env, env_params, strategy = experiment.build(config, data_dir)
  agent = experiment.make_agent(config, env, env_params, strategy, data_dir,
                               mesh=distributed.job_mesh())
  # The deterministic controller as evaluation runs it (a REPS task family
  # only shapes training).
  watch = Watch(workdir, config, env, env_params, experiment.evaluation_agent(
      config, env, env_params, strategy, data_dir), strategy)
  try:
    t0 = time.time()
    state = train(config, workdir, agent, log=log,
                  allow_changes=allow_changes, watch=watch, stream=stream)
    log(f"Training took {time.time() - t0:.1f} s.")
    # Evaluation is process-local: every process computes the same table
    # (it reads the workdir: one machine or a shared file system).
    state = distributed.host_copy(state)
    if distributed.is_main_process():
      rundir.write_training_artifact(
          workdir, config, env, env_params,
          experiment.policy_params(config, state),
          export=experiment.exporter(config), log=log)
    ev = evaluation.evaluate(workdir, data_dir=data_dir, log=log)
    outdir = os.path.join(workdir, rundir.EVAL_DIR)
    table = evaluation.markdown(ev)
    if distributed.is_main_process():
      table = evaluation.write(ev, outdir)
      with open(os.path.join(workdir, rundir.RESULTS_FILE), "w") as f:
        f.write(table)
    log(f"Evaluation took {ev.wall_s:.0f} s.")
    watch.evaluation(ev, table, outdir)
  finally:
    watch.close()
  return table


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("--config and --workdir are required.")
  distributed.initialize_or_launch(distributed.config_from_flags())
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
