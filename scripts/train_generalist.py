"""Meta-train a generalist LR controller: PPO over a distribution of tasks.

  python scripts/train_generalist.py --config configs/generalist.py \
      --workdir runs/generalist [--stop_after_minutes 60]

The members (``lr_meta.tasks.distribution``) are drawn from the config's
combinations, which must all lie on the benchmark suite's ``train`` side
(checked: a held-out (data set, model, optimizer) refuses to start). Every
iteration collects ``ppo.num_envs`` episodes from drawn members and makes one
PPO update (``lr_meta.agents.population``). A config with
``init_controller`` (a shipped controller's name or a file) starts the actor
from that controller's policy (``warm_start``; e.g.
``configs/generalist_v2_warm.py``).

--workdir is a run directory of ``lr_meta.rundir`` (``rundir.Run``: one
process at a time, the config checked on resume, ``--allow_change`` for the
fields of ``rundir.SAFE_CHANGES``): config.json, members.txt, checkpoints/<N>/
(the whole learner state, the metrics rows and the train-side scores, with
digests, every ``checkpoint_every`` iterations; rerunning with the same
workdir resumes bit-identically), snapshots/<N>/ (the controller params at
every checkpoint), metrics.csv and tb/ (TensorBoard: PPO losses, episode
returns per combination, compiles, and the train-side score), scores.csv
(the train-side score of snapshots) and controller.msgpack (the snapshot
with the best train-side score, or the one ``--select=snapshot:N`` wrote;
export it into the package with
``scripts/export_controller.py --workdir WORKDIR --name NAME``). A directory
of the earlier layout (snapshots/iter_N.msgpack, plain orbax checkpoints)
is refused for resuming; its controller files still load.

Train-side score: each train workload of the suite run through
``lr_meta.optax.controlled`` exactly as the benchmark runs it (from the
workload's default LR, deterministic controller), final validation loss
divided by the default constant LR's on the same seeds (tuning seeds, never
the evaluation ones); the score is the geometric mean over workloads (lower
is better; 1 = no better than not controlling). Held-out workloads are never
run here.
"""

import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from lr_meta import benchmark
from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import rundir
from lr_meta.rundir import layout
from lr_meta import seeds as seeds_lib
from lr_meta import tasks
from lr_meta.agents import population
from lr_meta.agents import ppo as ppo_lib
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods
from lr_meta.envs import lr_env
from lr_meta.features import scale_free as scale_free_lib
from lr_meta.policies import controller as controller_lib
from lr_meta.tasks import distribution as dist_lib

_CONFIG = config_lib.DEFINE_config_file("config", None,
                                        "Generalist config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_SCORE = flags.DEFINE_string(
    "score", None, "Instead of training: the train-side score of this "
    "controller file, or of snapshot:N (the run's snapshot of iteration N), "
    "and with --ablate of it without each feature group; appended to "
    "WORKDIR/ablation.csv.")
_ABLATE = flags.DEFINE_bool("ablate", False, "With --score: also score the "
                            "controller with each ABLATION_GROUPS entry "
                            "zeroed.")
_SCORE_FIRST_SEED = flags.DEFINE_integer(
    "score_first_seed", 0, "With --score: skip this many seeds of the score "
    "range, so a snapshot chosen on the first config.score_seeds is rescored "
    "on seeds its selection never saw.")
_SELECT = flags.DEFINE_string(
    "select", None, "Instead of training: write snapshot:N (the run's "
    "snapshot of iteration N) as WORKDIR/controller.msgpack, the file "
    "export_controller.py exports, in place of the best-scored snapshot. "
    "Training to its end writes the best-scored one again.")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_change", [], "Config fields a resume may change, of "
    f"{rundir.SAFE_CHANGES} (e.g. num_iterations to train longer).")
_STOP_AFTER = flags.DEFINE_float(
    "stop_after_minutes", 0.0, "Checkpoint and stop after this much wall "
    "time (0 = run all iterations); rerun to continue.")

SCORE_SEED_RANGE = "benchmark_tuning"
# Groups of scale-free inputs removed together in the input ablation.
ABLATION_GROUPS = {
    "progress": ("progress",),
    "lr_and_action": ("log_lr_ratio", "prev_action"),
    "loss_levels": ("log_train_ratio", "log_val_ratio", "log_gap"),
    "loss_slopes": ("train_slope", "val_slope"),
    "update_ratio": ("log10_update_ratio",),
    "loss_noise": ("loss_cv",),
}


def load_config(path: str):
  """``get_config()`` of a config file (for tests and notebooks)."""
  return config_lib.load_config(path)


def distribution_config(config) -> dist_lib.DistributionConfig:
  """The ``DistributionConfig`` of ``config.distribution`` (checked)."""
  d = dict(config.distribution)
  combos = tuple(dist_lib.Combination(c[0], c[1], c[2], float(c[3]),
                                      float(c[4]) if len(c) > 4 else 1.0)
                 for c in d.pop("combinations"))
  tuples = {k: tuple(v) for k, v in d.items() if isinstance(v, (list, tuple))}
  d.update(tuples)
  return dist_lib.DistributionConfig(combinations=combos, seed=config.seed,
                                     **d)


def check_train_side(dist: dist_lib.DistributionConfig, suite: str) -> None:
  """Refuses a distribution that holds a combination off the suite's train
  side or breaks the suite's held-out rules (``check_heldout_rules`` with
  the distribution's combinations as training tasks at its longest run)."""
  workloads = benchmark.get_suite(suite)
  heldout = {(w.dataset, w.model, w.optimizer)
             for w in benchmark.select(workloads, benchmark.HELDOUT)}
  dist_lib.check_disjoint(dist, heldout,
                          heldout_datasets=(benchmark.workloads.HELDOUT_TEXT,))
  train = {(w.dataset, w.model, w.optimizer)
           for w in benchmark.select(workloads, benchmark.TRAIN)}
  off = sorted({c.key for c in dist.combinations} - train)
  if off:
    raise ValueError(f"distribution combinations {off} are not on suite "
                     f"{suite!r}'s train side; allowed: {sorted(train)}.")
  trained = [benchmark.workloads.TrainingTask(*c.key, dist.num_steps_range[1])
             for c in dist.combinations]
  rules = lambda trained_on: benchmark.check_heldout_rules(
      workloads, trained_on, benchmark.workloads.SUITE_RULES[suite])
  # Only what the distribution breaks (the test suite 'tiny' breaks a v1
  # rule by itself).
  problems = [p for p in rules(trained) if p not in rules(())]
  if problems:
    raise ValueError(f"the distribution breaks suite {suite!r}'s held-out "
                     f"rules: {'; '.join(problems)}.")


# The reference run of the 'log_val_vs_reference' reward is validated every
# this many steps; the environment interpolates between them.
REFERENCE_EVERY = 10


def reference_curve(task, default_lr, num_steps, num_val_examples, seed):
  """``(steps, log validation losses)`` of ``task`` trained at the constant
  ``default_lr``: the reference run of the ``'log_val_vs_reference'``
  reward (``lr_meta.envs.lr_env``), validated on the environment's subset
  at step 0 and every ``REFERENCE_EVERY`` steps, up to ``num_steps`` or
  past it."""
  length = -(-int(num_steps) // REFERENCE_EVERY) * REFERENCE_EVERY
  key = jax.random.PRNGKey(seed)
  _, result = tasks.run_training(
      task, key, np.full((length,), default_lr, np.float32),
      eval_every=REFERENCE_EVERY, num_val_examples=num_val_examples)
  first = task.evaluate(task.init(key, default_lr), "val",
                        num_val_examples).loss
  values = np.log(np.concatenate([[float(first)],
                                  np.asarray(result.val.loss, np.float64)]))
  steps = range(0, length + 1, REFERENCE_EVERY)
  return tuple(steps), tuple(float(v) for v in values)


def env_params_of(config, dist, member, task=None) -> lr_env.LREnvParams:
  """A member's environment params; with the reward
  ``'log_val_vs_reference'`` its reference run (``reference_curve`` of
  ``task`` at the member's default LR) is computed here."""
  e = config.env
  ranges = dist_lib.member_env_ranges(dist, member)
  reference = {}
  if e.reward == "log_val_vs_reference":
    if task is None:
      raise ValueError("env.reward='log_val_vs_reference' needs the "
                       "member's task for its reference run; allowed: "
                       "env_params_of(config, dist, member, task).")
    steps, values = reference_curve(
        task, member.default_lr, ranges["num_steps_range"][1],
        int(e.num_val_examples), config.seed)
    reference = dict(reference_steps=steps, reference_log_val=values)
  return lr_env.LREnvParams.from_fields(
      num_decisions=int(e.num_decisions), decision_schedule="fraction",
      reward=e.reward, divergence_penalty=float(e.divergence_penalty),
      num_val_examples=int(e.num_val_examples),
      slope_decay=float(e.slope_decay),
      range_test=e.get("range_test", None) or (), **ranges,
      **reference).check(e.action_type)


def build(config, data_dir=None):
  """``(members, envs, env_params, agent)`` of a generalist config."""
  dist = distribution_config(config)
  check_train_side(dist, config.suite)
  members = dist_lib.sample_members(dist)
  member_tasks = dist_lib.member_tasks(
      members, data_dir, num_val_examples=int(config.env.num_val_examples),
      num_test_examples=1)
  envs = [lr_env.LREnv(t, config.env.action_type, config.env.observation,
                       tuple(config.env.get("inputs", ())))
          for t in member_tasks]
  env_params = [env_params_of(config, dist, m, t)
                for m, t in zip(members, member_tasks)]
  ppo_config = ppo_lib.PPOConfig(**dict(config.ppo))
  agent = population.make_ppo_over_tasks(
      ppo_config, envs, env_params, batch_mode=config.batch_mode or None,
      weights=dist_lib.episode_weights(dist, members))
  return members, envs, env_params, agent


def controller_of(config, env, env_params, params, name="generalist"):
  """The controller file of the learner's ``params`` (``state.params``)."""
  return rundir.controller_from_training(
      config, env, env_params, jax.device_get(params),
      export=experiment.exporter(config), name=name)


# What a controller must share with this run's for its params to start the
# run's actor: the network, the action and everything it observes (an LR
# range test in front is not observed: it only moves the run's lr0).
WARM_START_FIELDS = ("network", "hidden_sizes", "action_type", "action_std",
                     "learn_log_std", "observation_spec")


def warm_start(config, env, env_params, state, source: str):
  """The learner ``state`` with its actor's params taken from the controller
  ``source`` (a shipped name such as ``'generalist_v1'``, or a path), the
  critic and the optimizer state untouched: meta-training continues from a
  policy that already shapes schedules instead of from a random one.

  Raises:
    ValueError: ``source`` differs from this run's controller in a field of
      ``WARM_START_FIELDS`` (each named with both values).
  """
  controller = methods.load_named_controller(source)
  own = controller_of(config, env, env_params, state.params).spec
  theirs, own = (s.with_fields(range_test=()) for s in (controller.spec, own))
  differ = [f"{f}: {source!r} has {getattr(theirs, f)!r}, this "
            f"run {getattr(own, f)!r}" for f in WARM_START_FIELDS
            if getattr(theirs, f) != getattr(own, f)]
  if differ:
    raise ValueError(f"init_controller={source!r} cannot start this run's "
                     "actor; " + "; ".join(differ) + ".")
  params = dict(state.params)
  if (jax.tree.structure(controller.params)
      != jax.tree.structure(params["actor"])):
    raise ValueError(f"init_controller={source!r}: its params do not have "
                     "the structure of this run's actor.")
  params["actor"] = jax.tree.map(
      lambda new, old: np.asarray(new, np.asarray(old).dtype),
      controller.params, params["actor"])
  return state.replace(params=type(state.params)(params))


class TrainSideScore:
  """The train-side score of a controller (module docstring); compiled once
  per workload (the params are traced), default-LR references run once."""

  def __init__(self, suite, num_seeds, data_dir, store_dir, names=(),
               first_seed=0):
    train = benchmark.select(benchmark.get_suite(suite), benchmark.TRAIN)
    unknown = sorted(set(names) - {w.name for w in train})
    if unknown:
      raise ValueError(f"score_workloads {unknown}; allowed: the train "
                       f"workloads of suite {suite!r}: "
                       f"{[w.name for w in train]}.")
    self.workloads = tuple(w for w in train if not names or w.name in names)
    # Seeds first_seed.. of the range: selection during training reads the
    # first ones, a rescore of the chosen snapshot reads later, unseen ones.
    self.seeds = seeds_lib.seed_range(SCORE_SEED_RANGE,
                                      first_seed + num_seeds)[first_seed:]
    self.data_dir = data_dir
    self.store = harness.RunStore(store_dir)
    self._reference = {}

  def _final_val(self, workload, program, setting):
    task = harness.workload_task(workload, self.data_dir)
    runs = [harness.Run(harness.run_key(workload, program, setting.label, s),
                        setting.label, s, setting.hp) for s in self.seeds]
    records = harness.execute(task, workload, program, "score", runs,
                              self.store)
    return np.mean([records[r.key]["final_val_loss"] for r in runs])

  def reference(self, workload):
    if workload.name not in self._reference:
      task = harness.workload_task(workload, self.data_dir)
      program, (setting,) = methods.METHODS[methods.DEFAULT_LR].build(
          workload, task)
      self._reference[workload.name] = self._final_val(workload, program,
                                                       setting)
    return self._reference[workload.name]

  def __call__(self, controller):
    """``(geometric-mean ratio, {workload: ratio})``."""
    ratios = {}
    for w in self.workloads:
      task = harness.workload_task(w, self.data_dir)
      program = methods.controller_program(controller.spec, w, task)
      value = self._final_val(w, program,
                              methods.controller_setting(controller))
      ratios[w.name] = float(value / self.reference(w))
    return float(np.exp(np.mean(np.log(list(ratios.values()))))), ratios


def without_features(controller, names):
  """The controller with the inputs ``names`` removed: their rows of the
  first layer's kernel zeroed, which is feeding 0 (a log ratio of 1, no
  slope, no progress) whatever the run shows."""
  unknown = sorted(set(names) - set(scale_free_lib.FEATURE_NAMES))
  if controller.spec.observation_kind != "scale_free" or unknown:
    raise ValueError(f"features {list(names)} of a "
                     f"{controller.spec.observation_kind!r} controller; "
                     f"allowed: {scale_free_lib.FEATURE_NAMES} of a "
                     "'scale_free' one.")
  rows = np.asarray([scale_free_lib.FEATURE_NAMES.index(n) for n in names])

  def zero(path, x):
    first = "Dense_0" in jax.tree_util.keystr(path) and x.ndim == 2
    return np.asarray(x).copy() if not first else np.where(
        np.isin(np.arange(x.shape[0]), rows)[:, None], 0.0, x).astype(x.dtype)

  params = jax.tree_util.tree_map_with_path(zero, controller.params)
  return controller_lib.make_controller(controller.spec, params)


def snapshot_controller(config, workdir, iteration, data_dir=None):
  """The controller of the run's snapshot of ``iteration`` (e.g. to rescore
  a snapshot of a run stopped before it wrote controller.msgpack)."""
  _, envs, env_params, agent = build(config, data_dir)
  template = jax.device_get(agent.init(jax.random.PRNGKey(config.seed)).params)
  return controller_of(config, envs[0], env_params[0],
                       rundir.load_snapshot(workdir, iteration, template))


def controller_at(config, workdir, path, data_dir=None, flag="--score"):
  """The controller of a controller file or of ``snapshot:N`` (the run's
  snapshot of iteration N); ``flag`` names the option in errors."""
  if not path.startswith("snapshot:"):
    return controller_lib.load_controller(path)
  steps = rundir.snapshot_steps(workdir)
  iteration = path[len("snapshot:"):]
  if not iteration.isdigit() or int(iteration) not in steps:
    raise ValueError(f"{flag}={path!r}; allowed: a controller file or "
                     f"snapshot:N with N one of {steps} (in {workdir}).")
  return snapshot_controller(config, workdir, int(iteration), data_dir)


def write_selected(config, workdir, path, data_dir=None):
  """Writes the controller of ``snapshot:N`` (or a controller file) as
  WORKDIR/controller.msgpack, the file ``scripts/export_controller.py``
  exports, in place of the best-scored snapshot (e.g. a snapshot chosen by
  a rescore on fresh seeds). Returns the file's path."""
  controller = controller_at(config, workdir, path, data_dir, "--select")
  out = os.path.join(workdir, rundir.CONTROLLER_FILE)
  controller_lib.save_controller(out, controller)
  return out


def score_and_ablate(config, workdir, path, ablate, data_dir=None,
                     log=print, first_seed=0):
  """Train-side scores of a controller file or ``snapshot:N`` (and its
  ablations), on ``config.score_seeds`` seeds from the ``first_seed``-th of
  the range."""
  controller = controller_at(config, workdir, path, data_dir)
  scorer = TrainSideScore(config.suite, config.score_seeds, data_dir,
                          os.path.join(workdir, "score_runs"),
                          tuple(config.get("score_workloads", ())),
                          first_seed=first_seed)
  variants = {"all inputs": ()}
  if ablate:
    variants.update({f"without {k}": v for k, v in ABLATION_GROUPS.items()})
  out_path = os.path.join(workdir, "ablation.csv")
  rows = layout.read_rows(out_path)
  for label, names in variants.items():
    score, ratios = scorer(without_features(controller, names) if names
                           else controller)
    rows.append(dict(controller=path, variant=label,
                     seeds=" ".join(map(str, scorer.seeds)), score=score,
                     **ratios))
    log(f"{label}: train-side score {score:.4f} {ratios}")
    _write_csv(out_path, rows)
  return rows


def _write_csv(path, rows):
  if rows:
    layout.atomic_write(path, layout.metrics_text(rows))


def _row(it, metrics, members, elapsed, counter):
  scalars = {k: float(np.asarray(v)) for k, v in metrics.items()
             if np.asarray(v).size == 1}
  row = dict(iteration=it, **scalars, time_s=elapsed,
             compiles=counter.compiles)
  returns = np.asarray(metrics["episode_returns"])
  drawn = np.asarray(metrics["members"])
  for combo in sorted({m.combination for m in members}):
    mask = np.asarray([members[i].combination == combo for i in drawn])
    if mask.any():
      row["return/" + "_".join(combo)] = float(returns[mask].mean())
  return row


def train(config, workdir, data_dir=None, stop_after_minutes=0.0, log=print,
          allow_changes=()):
  """Meta-trains (resuming from ``workdir``); returns the final state.

  Args:
    config: the generalist config.
    workdir: output and resume directory (``rundir.Run``).
    data_dir: directory with ``<dataset>.npz`` (else ``$LR_META_DATA_DIR``).
    stop_after_minutes: checkpoint and return after this much wall time.
    log: where progress lines go.
    allow_changes: config fields a resume may change (of
      ``rundir.SAFE_CHANGES``, e.g. ``num_iterations`` to train longer).

  Raises:
    rundir.WorkdirBusyError: another process trains in ``workdir``.
    rundir.ConfigMismatchError: ``workdir`` holds a run of another config,
      or of the earlier layout.
  """
  rundir.check_allow_changes(allow_changes)
  check_layout(workdir)
  with rundir.Run(workdir, config, allow_changes=allow_changes,
                  log=log) as run:
    return _train(config, run, data_dir, stop_after_minutes, log)


# The snapshot files of the earlier layout (one msgpack controller each).
OLD_SNAPSHOT = "iter_"


def check_layout(workdir: str) -> None:
  """Refuses to resume a directory of the earlier layout (its orbax
  checkpoints lack the digests ``rundir.Run`` verifies; moving them aside as
  corrupt would lose the run)."""
  snaps = os.path.join(workdir, rundir.SNAPSHOT_DIR)
  old = sorted(n for n in (os.listdir(snaps) if os.path.isdir(snaps) else ())
               if n.startswith(OLD_SNAPSHOT) and n.endswith(".msgpack"))
  if old:
    raise rundir.ConfigMismatchError(
        f"{workdir} holds a meta-training of the earlier layout ({snaps}/"
        f"{old[-1]} ...): it cannot be resumed; its controller.msgpack and "
        "snapshot files still load with lr_meta.optax.load_controller. Use "
        "another --workdir.")


def _train(config, run, data_dir, stop_after_minutes, log):
  counter = harness.compile_counter()
  members, envs, env_params, agent = build(config, data_dir)
  rundir.atomic_write(run.path("members.txt"),
                      dist_lib.describe(members) + "\n")
  state, start = run.restore(agent.init(jax.random.PRNGKey(config.seed)),
                             lambda s: s.params)
  if start == 0 and config.get("init_controller"):
    # A resumed run restores the warm-started params from its checkpoint.
    state = warm_start(config, envs[0], env_params[0], state,
                       config.init_controller)
  # The scores up to the restored checkpoint travel with it.
  scores = list((run.data or {}).get("scores", []))
  scores_path = run.path("scores.csv")
  _write_csv(scores_path, scores)
  offset = float(run.rows[-1]["time_s"]) if run.rows else 0.0
  scorer = (TrainSideScore(config.suite, config.score_seeds, data_dir,
                           run.path("score_runs"),
                           tuple(config.get("score_workloads", ())))
            if config.score_every else None)
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    writer = tensorboardX.SummaryWriter(run.path(rundir.TENSORBOARD_DIR))
  except ImportError:
    writer = None
  t0 = time.time()
  it = start
  while it < config.num_iterations:
    state, metrics = agent.update_iteration(state)
    it += 1
    row = _row(it, metrics, members, offset + time.time() - t0, counter)
    run.record(it, {k: v for k, v in row.items() if k != "iteration"},
               state.params)
    if writer is not None:
      for k, v in row.items():
        if k != "iteration":
          writer.add_scalar(k, v, it)
    log(f"iter {it}/{config.num_iterations} return "
        f"{row['episode_return']:.4f} compiles {counter.compiles} "
        f"{row['time_s']:.0f}s")
    stop = (stop_after_minutes and
            time.time() - t0 > 60 * stop_after_minutes)
    if it % config.checkpoint_every == 0 or it == config.num_iterations or stop:
      if scorer is not None and (it % config.score_every == 0 or
                                 it == config.num_iterations):
        score, ratios = scorer(controller_of(config, envs[0], env_params[0],
                                             state.params))
        scores.append(dict(iteration=it, time_s=row["time_s"], score=score,
                           **ratios))
        log(f"iter {it}: train-side score {score:.4f} {ratios}")
        if writer is not None:
          writer.add_scalar("train_side_score", score, it)
          for k, v in ratios.items():
            writer.add_scalar(f"train_side/{k}", v, it)
      run.save(it, state, state.params, data={"scores": scores})
      _write_csv(scores_path, scores)
      if writer is not None:
        writer.flush()
    if stop:
      log(f"Stopped after {stop_after_minutes} minutes at iteration {it}.")
      break
  if writer is not None:
    writer.close()
  best = select_snapshot(
      run.workdir, scores,
      lambda params: controller_of(config, envs[0], env_params[0], params),
      jax.device_get(state.params))
  if best is not None:
    log(f"Best train-side score at iteration {best}.")
  return state


def select_snapshot(workdir, scores, to_controller, template):
  """Writes the snapshot with the best train-side score as
  controller.msgpack (the latest one if nothing was scored); returns its
  iteration (None without snapshots).

  Args:
    workdir: the run directory.
    scores: the rows of scores.csv (``iteration``, ``score``).
    to_controller: learner params -> ``Controller``.
    template: learner params of the run's structure.
  """
  try:
    steps = rundir.snapshot_steps(workdir)
  except FileNotFoundError:
    return None
  best = (int(min(scores, key=lambda r: float(r["score"]))["iteration"])
          if scores else steps[-1])
  params = rundir.load_snapshot(workdir, best, template)
  controller_lib.save_controller(
      os.path.join(workdir, rundir.CONTROLLER_FILE), to_controller(params))
  return best


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError("--config and --workdir are required.")
  try:
    if _SELECT.value:
      with rundir.WorkdirLock(_WORKDIR.value):
        print(write_selected(_CONFIG.value, _WORKDIR.value, _SELECT.value,
                             _DATA_DIR.value))
      return
    if _SCORE.value:
      with rundir.WorkdirLock(_WORKDIR.value):
        score_and_ablate(_CONFIG.value, _WORKDIR.value, _SCORE.value,
                         _ABLATE.value, _DATA_DIR.value,
                         first_seed=_SCORE_FIRST_SEED.value)
      return
    train(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value, _STOP_AFTER.value,
          allow_changes=tuple(_ALLOW_CHANGE.value))
  except (rundir.WorkdirBusyError, rundir.ConfigMismatchError) as e:
    sys.exit(f"train_generalist: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.parse_flags)
