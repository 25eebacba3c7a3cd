"""Sensitivity of the final training loss to the initial step size eta0.

The main figure of Daniel, Taylor & Nowozin (2016): for SGD and RMSProp,
final training loss against eta0 over several decades, with a static step
size and with the REPS-trained step-size controller (``LREnv`` action type
'daniel2016', started at the same eta0). How much of the spread across eta0
the controller removes is::

  spread(method) = max_eta0 mean_loss - min_eta0 mean_loss
  removed = 1 - spread(controller) / spread(static)

(means over seeds; also reported with the standard deviation across eta0
instead of the range). A diverged run counts as the chance-level loss
``log(num_classes)`` (its loss is otherwise the cap 1e3, which would swamp
the spread); diverged runs are counted in the table.

  python scripts/sensitivity.py --config configs/daniel2016_reps.py \
      --outdir runs/sensitivity

Writes sensitivity.png, sensitivity.md and sensitivity.csv to --outdir.
``--eval_config`` evaluates the trained controller on another task (e.g.
another architecture) to measure transfer, as Daniel et al. trained on small
random CNNs and tested on other networks.
Controller training uses the config's REPS settings with ``initial_lrs`` set
to the optimizer's eta0 grid (one eta0 drawn per training run); a config
with ``task_family`` (``configs/daniel2016_reps_random_cnns.py``) trains over
the family's random small CNNs and evaluates on its held-out ``task``.
``--controller_workdirs=sgd=DIR,rmsprop=DIR`` skips training and evaluates
the thetas that ``scripts/train_controller.py`` trained in the run directory
DIR (its latest snapshot; its config must be a REPS config for that
optimizer); ``--config`` is then the evaluation config.
Evaluation uses fresh seeds of the 'training_report' range
(``lr_meta.seeds``), never trained on.
"""

import csv
import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import experiment
from lr_meta import plotting
from lr_meta import rundir
from lr_meta import seeds as seeds_lib
from lr_meta.envs import rollout

_CONFIG = config_lib.DEFINE_config_file(
    "config", "configs/daniel2016_reps.py", "REPS controller config.")
_EVAL_CONFIG = config_lib.DEFINE_config_file(
    "eval_config", None, "Optional config whose task/env the trained "
    "controller is EVALUATED on (transfer, e.g. another architecture); "
    "default: the training config.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/sensitivity", "Output dir.")
_OPTIMIZERS = flags.DEFINE_list("optimizers", ["sgd", "rmsprop"],
                                "Inner optimizers.")
_SGD_ETA0S = flags.DEFINE_list("sgd_eta0s", ["1e-4", "1e-3", "1e-2", "1e-1",
                                             "1"], "eta0 grid for SGD.")
_RMSPROP_ETA0S = flags.DEFINE_list(
    "rmsprop_eta0s", ["1e-5", "1e-4", "1e-3", "1e-2", "1e-1"],
    "eta0 grid for RMSProp.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Evaluation seeds.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset directory.")
_CONTROLLER_WORKDIRS = flags.DEFINE_list(
    "controller_workdirs", [], "optimizer=DIR entries: evaluate the REPS "
    "thetas trained by scripts/train_controller.py into DIR instead of "
    "training here.")


def spread(means):
  """(range, std) across eta0 of the per-eta0 mean losses."""
  means = np.asarray(means, np.float64)
  return float(np.max(means) - np.min(means)), float(np.std(means))


def removed_fraction(static_means, controlled_means):
  """``1 - spread(controlled) / spread(static)`` for range and std."""
  (r_s, s_s), (r_c, s_c) = spread(static_means), spread(controlled_means)
  return 1.0 - r_c / r_s, 1.0 - s_c / s_s


def train_controller(config, env, env_params, strategy, log, data_dir=None):
  """REPS iterations (no checkpoints: minutes on CPU); returns theta mean."""
  agent = experiment.make_agent(config, env, env_params, strategy, data_dir)
  state = agent.init(jax.random.PRNGKey(config.seed))
  history = []
  for it in range(config.num_iterations):
    state, metrics = agent.update_iteration(state)
    history.append({k: float(v) for k, v in metrics.items()})
    log(f"  REPS iteration {it + 1}: mean return "
        f"{history[-1]['mean_return']:.4f}, max {history[-1]['max_return']:.4f}"
        f", KL {history[-1]['kl_weights']:.3f}")
  return agent, state, history


def parse_workdirs(entries):
  """``['sgd=DIR', ...]`` -> ``{'sgd': 'DIR', ...}``."""
  out = {}
  for entry in entries:
    opt_name, sep, workdir = entry.partition("=")
    if not sep or not opt_name or not workdir:
      raise ValueError(f"--controller_workdirs entry {entry!r}; allowed: "
                       "optimizer=DIR, e.g. sgd=runs/reps_sgd.")
    out[opt_name] = workdir
  return out


def load_trained_theta(workdir, opt_name):
  """``(theta, training config dict)`` from a train_controller workdir."""
  train_config = rundir.read_config(workdir).to_dict()
  if train_config.get("agent") != "reps":
    raise ValueError(f"{workdir}/config.json has agent="
                     f"{train_config.get('agent')!r}; allowed: 'reps'.")
  trained_opt = train_config["task"]["optimizer"]
  if trained_opt != opt_name:
    raise ValueError(f"{workdir} was trained with optimizer {trained_opt!r}"
                     f"; allowed for --optimizers entry {opt_name!r}: "
                     f"{opt_name!r}.")
  return jnp.asarray(rundir.load_snapshot(workdir)), train_config


def training_description(train_config):
  """How the controller was trained (for the table header)."""
  text = (f"REPS {train_config['num_iterations']} iterations x "
          f"{train_config['reps']['num_samples']} runs")
  family = train_config.get("task_family")
  if family:
    text += (f" over a family of {family['num_members']} random SmallCNNs "
             f"(filter ranges {tuple(map(tuple, family['filter_ranges']))}) "
             f"on random {family['subset_size']}-example "
             f"{family['dataset']} subsets (seed {family['seed']})")
  return text


def final_train_loss(task, env, env_params, agent, theta, eta0s, seeds,
                     strategy):
  """Final training loss (whole training subset) of static and controlled runs.

  Both use the same environment, seeds and eta0; the static run's action is
  0 (``lr_t = lr_{t-1} * exp(0)``), the controller's is ``theta . [obs, 1]``.
  All eta0 x seeds x {static, controller} runs go through ONE compiled
  ``run_episodes`` (vmapped; eta0 set per run with ``lr0s``).

  Returns:
    ``{method: {'loss': [E, S], 'diverged': [E], 'final_lr': [E]}}``.
  """
  e, n = len(eta0s), len(seeds)
  grid = np.repeat(np.asarray(eta0s, np.float32), n)           # [E * S]
  keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds] * e)
  controlled = jnp.repeat(jnp.array([False, True]), e * n)     # [2 E S]

  def act(params, obs, c):
    theta, controlled = params
    a, c = agent.policy_fn(theta, obs, c)
    return jnp.where(controlled[:, None], a, 0.0), c
  states, infos = rollout.run_episodes(
      env, env_params, act, (theta, controlled), jnp.concatenate([keys, keys]),
      lr0s=np.concatenate([grid, grid]), strategy=strategy)
  loss, _ = experiment.test_metrics(task, states, split="train")
  diverged = np.asarray(states.opt.diverged)
  loss = np.where(diverged, np.log(task.num_classes), loss)
  final_lr = np.asarray(infos["lr"])[-1]
  out = {}
  for i, name in enumerate(("static", "controller")):
    sl = slice(i * e * n, (i + 1) * e * n)
    out[name] = dict(loss=loss[sl].reshape(e, n),
                     diverged=diverged[sl].reshape(e, n).sum(1),
                     final_lr=np.median(final_lr[sl].reshape(e, n), 1))
  return out


def plot(results, path, task_text=""):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4),
                           squeeze=False)
  for ax, (opt_name, rows) in zip(axes[0], results.items()):
    eta0s = [r["eta0"] for r in rows]
    for method, style in (("static", "o--"), ("controller", "s-")):
      m = [np.mean(r[method]["loss"]) for r in rows]
      s = [np.std(r[method]["loss"]) for r in rows]
      label = "static step size" if method == "static" else "REPS controller"
      ax.errorbar(eta0s, m, yerr=s, fmt=style, capsize=3, label=label)
    plotting.log_scale(ax, "x")
    ax.set_xlabel("initial step size eta0")
    ax.set_ylabel("final training loss")
    ax.set_title(f"{opt_name.upper()}: sensitivity to eta0\n{task_text}")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def markdown(results, header):
  lines = [header, ""]
  for opt_name, rows in results.items():
    lines += [f"### {opt_name.upper()}", "",
              "| eta0 | static: final train loss | diverged | REPS: final "
              "train loss | diverged | REPS final LR (median) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
      st, co = r["static"], r["controller"]
      lines.append(
          f"| {r['eta0']:g} | {baselines.mean_std(st['loss'], st['diverged'])}"
          f" | {st['diverged']} | "
          f"{baselines.mean_std(co['loss'], co['diverged'])} | "
          f"{co['diverged']} | {co['final_lr']:.3g} |")
    sm = [np.mean(r["static"]["loss"]) for r in rows]
    cm = [np.mean(r["controller"]["loss"]) for r in rows]
    (rs, ss), (rc, sc) = spread(sm), spread(cm)
    fr, fs = removed_fraction(sm, cm)
    lines += ["", f"Spread across eta0 of the mean final training loss: "
              f"range {rs:.4f} static vs {rc:.4f} REPS (removed "
              f"{100 * fr:.1f}%); std {ss:.4f} vs {sc:.4f} (removed "
              f"{100 * fs:.1f}%).", ""]
  if any(r[m]["diverged"] for rows in results.values() for r in rows
         for m in ("static", "controller")):
    lines += [baselines.DIVERGED_NOTE, ""]
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every read at INFO
  t_start = time.time()
  os.makedirs(_OUTDIR.value, exist_ok=True)
  grids = {"sgd": _SGD_ETA0S.value, "rmsprop": _RMSPROP_ETA0S.value}
  trained_dirs = parse_workdirs(_CONTROLLER_WORKDIRS.value)
  seeds = list(seeds_lib.seed_range("training_report", _NUM_SEEDS.value))
  results, csv_rows = {}, []
  for opt_name in _OPTIMIZERS.value:
    if opt_name not in grids:
      raise ValueError(f"--optimizers contains {opt_name!r}; allowed: "
                       f"{tuple(grids)}.")
    if trained_dirs and opt_name not in trained_dirs:
      raise ValueError(f"--controller_workdirs has no entry for {opt_name!r}"
                       f"; given: {tuple(trained_dirs)}.")
    eta0s = tuple(float(x) for x in grids[opt_name])
    config = _CONFIG.value.copy_and_resolve_references()
    config.task.optimizer = opt_name
    config.env.initial_lrs = eta0s
    task, env, env_params, strategy = experiment.build(config,
                                                       _DATA_DIR.value)
    t0 = time.time()
    history = None
    if trained_dirs:
      theta, train_config = load_trained_theta(trained_dirs[opt_name],
                                               opt_name)
      print(f"{opt_name}: loaded theta from {trained_dirs[opt_name]}")
    else:
      print(f"{opt_name}: training REPS for {config.num_iterations} "
            f"iterations x {config.reps.num_samples} runs, eta0 in {eta0s}")
      _, state, history = train_controller(config, env, env_params,
                                           strategy, print, _DATA_DIR.value)
      theta, train_config = state.dist.mean, config
    train_s = time.time() - t0
    print(f"{opt_name}: theta = {np.round(np.asarray(theta), 4).tolist()} "
          f"({train_s:.0f} s)")
    eval_config = config
    if _EVAL_CONFIG.value is not None:
      # Transfer: the same theta on another task (obs and action do not
      # depend on the architecture, so the linear controller applies as is).
      eval_config = _EVAL_CONFIG.value.copy_and_resolve_references()
      eval_config.task.optimizer = opt_name
      eval_config.env.initial_lrs = eta0s
      task, env, env_params, strategy = experiment.build(eval_config,
                                                         _DATA_DIR.value)
    agent = experiment.evaluation_agent(eval_config, env, env_params, strategy)
    out = final_train_loss(task, env, env_params, agent, theta, eta0s,
                           seeds, strategy)
    rows = []
    for j, eta0 in enumerate(eta0s):
      rows.append(dict(eta0=eta0, **{
          m: dict(loss=out[m]["loss"][j], diverged=int(out[m]["diverged"][j]),
                  final_lr=float(out[m]["final_lr"][j]))
          for m in ("static", "controller")}))
      for method in ("static", "controller"):
        for seed, loss in zip(seeds, out[method]["loss"][j]):
          csv_rows.append(dict(optimizer=opt_name, eta0=eta0, method=method,
                               seed=seed, final_train_loss=float(loss)))
      print(f"  eta0={eta0:g}: static {np.mean(rows[-1]['static']['loss']):.4f}"
            f", REPS {np.mean(rows[-1]['controller']['loss']):.4f}")
    results[opt_name] = rows
    trained = "" if history is None else (
        f" (REPS training {train_s:.0f} s); REPS return first/last iteration "
        f"{history[0]['mean_return']:.4f} / {history[-1]['mean_return']:.4f}")
    print(f"{opt_name}: total {time.time() - t0:.0f} s{trained}")
  config = eval_config
  num_steps = config.env.num_decisions * config.env.steps_per_decision
  if train_config.get("task_family"):
    transfer = (" The controller was trained on the family only, never on "
                "the evaluation task above.")
  elif config is not train_config:
    transfer = (f" Controller TRAINED on {train_config['task']['dataset']} "
                f"{train_config['task']['model']} "
                f"{dict(train_config['task'].get('model_kwargs') or {})}, "
                f"{train_config['task']['num_train_examples']} training "
                "examples, and evaluated on the task above.")
  else:
    transfer = ""
  if trained_dirs:
    transfer += f" Thetas loaded from {trained_dirs}."
  header = (f"Final training loss (whole {config.task.num_train_examples}-"
            f"example training subset), mean (std) over {len(seeds)} fresh "
            f"seeds; {config.task.dataset} {config.task.model} "
            f"{dict(config.task.get('model_kwargs') or {})}, batch "
            f"{config.task.batch_size}, {num_steps} steps, a decision every "
            f"{config.env.steps_per_decision} steps; "
            f"{training_description(train_config)}.{transfer} Wall time "
            f"{time.time() - t_start:.0f} s.")
  text = markdown(results, header)
  with open(os.path.join(_OUTDIR.value, "sensitivity.md"), "w") as f:
    f.write(text)
  with open(os.path.join(_OUTDIR.value, "sensitivity.csv"), "w",
            newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
    w.writeheader()
    w.writerows(csv_rows)
  plot(results, os.path.join(_OUTDIR.value, "sensitivity.png"),
       f"{config.task.dataset} {config.task.model}, batch "
       f"{config.task.batch_size}, {num_steps} steps")
  print(text)


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.parse_flags)
