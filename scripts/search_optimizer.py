"""Neural Optimizer Search (Bello et al. 2017): PPO controller writes rules.

  python scripts/search_optimizer.py --config configs/nos.py --workdir runs/nos

--workdir is a run directory (``lr_meta.rundir``: one process at a time, a
resume needs the same config, checkpoints verified by their digests, with
fallback to the newest intact one). It holds:
  checkpoints/<N>/    the search state (controller, its optimizer, baseline,
                      key), the rule cache and the history (every
                      ``checkpoint_every`` iterations and at the end); a rerun
                      with the same workdir resumes the same search.
  snapshots/<N>/      the rule-writing controller's params at each checkpoint.
  metrics.csv         one row per iteration (mean / max / best-so-far reward,
                      EMA baseline, rules scored, entropy, seconds).
  rewards.png         the reward curve (the paper's Figure 4).
  leaderboard.md      the best rules as readable expressions, each usable as
                      ``lr_meta.optax.from_dsl(rule, learning_rate)``.
  comparison.md       the top rules re-scored on fresh seeds next to SGD,
                      Adam, RMSProp, PowerSign, AddSign (same sweep+training).

Multi-device: ``config.scoring.batch_mode = 'sharded'`` shards the rules x
learning rates over every device (``jax.devices()``). Many processes
(``lr_meta.distributed``: ``--num_processes=P`` alone tries P local ones;
``--coordinator_address --num_processes --process_id`` on each host, or a
cluster JAX detects) split every batch of runs between them and make the
same controller updates; process 0 alone writes the workdir.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import distributed
from lr_meta import progress as progress_lib
from lr_meta import rundir
from lr_meta import seeds
from lr_meta.nos import controller as controller_lib
from lr_meta.rules import programs as programs_lib
from lr_meta.nos import search as search_lib

_CONFIG = config_lib.DEFINE_config_file("config", None, "NOS config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_change", [], "Config fields a resume may change, of "
    f"{rundir.SAFE_CHANGES} (e.g. num_iterations to search longer).")
distributed.define_flags()


def _plain(value):
  """ConfigDicts -> dicts, lists -> tuples (hashable dataclass fields)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_plain(v) for v in value)
  return value


def build_search(config, data_dir=None) -> search_lib.Search:
  """Search space, scorer and PPO config from a ConfigDict."""
  space = controller_lib.make_search_space(**_plain(config.space))
  scoring = _plain(config.scoring)
  mesh = distributed.job_mesh()
  if scoring.get("batch_mode") == "sharded":
    from lr_meta import tasks  # pylint: disable=g-import-not-at-top
    mesh = tasks.run_mesh()
  scorer = search_lib.Scorer(search_lib.ScoringConfig(**scoring),
                             data_dir=data_dir, mesh=mesh)
  ppo = search_lib.RuleSearchPPOConfig(**_plain(config.ppo))
  return search_lib.Search(space, ppo, scorer, seed=config.seed)


def run_search(config, workdir, data_dir=None, log=print, allow_changes=()):
  """Runs (or resumes) the search in run directory ``workdir``.

  Returns:
    ``(search, state)``: the `Search` (its cache and history included) and
    its `SearchState` after ``config.num_iterations`` iterations.

  Raises:
    lr_meta.rundir.RunError: the workdir is busy, holds another search, has
      no intact checkpoint, or an iteration made the controller non-finite.
  """
  with rundir.Run(workdir, config, allow_changes=allow_changes,
                  log=log) as run:
    search = build_search(config, data_dir)
    log(f"search space: {controller_lib.search_space_size(search.space):.3g} "
        f"rules of {search.space.num_groups} groups; devices: "
        f"{jax.device_count()}; batch mode: {search.scorer.batch_mode}")
    state, start = run.restore(search.init(), lambda s: s.params)
    if start:
      search.cache = run.data["cache"]
      search.history = [history_record(row) for row in run.rows]
    # The first iteration here compiles: left out of the ETA.
    progress = progress_lib.Progress(config.num_iterations, "iterations",
                                     initial=start, warmup=1)
    scoring = _plain(config.scoring)
    task_text = (f"{scoring.get('dataset')} {scoring.get('model')}, "
                 f"{scoring.get('train_steps')} training steps per rule")
    for it in range(start, config.num_iterations):
      state, record = search.step(state)
      run.record(it + 1, {k: v for k, v in record._asdict().items()
                          if k != "iteration"}, state.params)
      progress.update(1, f"mean {record.mean_reward:.3f}, best "
                      f"{record.best_so_far:.3f}, rules "
                      f"{record.num_unique_total}")
      if ((it + 1) % config.checkpoint_every == 0
          or it + 1 == config.num_iterations):
        run.save(it + 1, state, state.params, data={"cache": search.cache})
        if run.writes:
          write_curve(workdir, search.history, task_text)
    progress.close()
    if run.writes:
      write_curve(workdir, search.history, task_text)
      write_leaderboard(workdir, search, config.leaderboard_size)
  return search, state


def history_record(row) -> search_lib.Record:
  """A `search_lib.Record` from its metrics row (numbers stored as floats)."""
  types = search_lib.Record.__annotations__
  return search_lib.Record(**{k: types[k](v) for k, v in row.items()})


def write_curve(workdir, history, task_text=""):
  """rewards.png: mean reward per batch, its running mean, best so far;
  ``task_text`` names the scoring task in the title."""
  if not history:
    return
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  it = np.array([r.iteration for r in history])
  mean = np.array([r.mean_reward for r in history])
  window = min(10, len(mean))
  smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(it, mean, ".", alpha=0.4, label="mean reward of the batch")
  ax.plot(it[window - 1:], smooth, label=f"running mean ({window})")
  ax.plot(it, [r.best_so_far for r in history], label="best so far")
  ax.plot(it, [r.baseline for r in history], "--", label="EMA baseline")
  ax.set_xlabel("controller iteration")
  ax.set_ylabel("validation accuracy (reward)")
  ax.set_title("Neural Optimizer Search (cf. Bello et al. 2017, Fig. 4)\n"
               + task_text)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "rewards.png"), dpi=120)
  plt.close(fig)


def leaderboard_markdown(rows):
  """The leaderboard table: one row per rule (`Search.leaderboard`'s rows)."""
  lines = ["| rank | rule | reward (val acc) | best LR | diverged | "
           "found at iteration |", "|---:|---|---:|---:|---|---:|"]
  for i, row in enumerate(rows):
    lines.append(f"| {i + 1} | `{row['rule']}` | {row['reward']:.4f} | "
                 f"{row['learning_rate']:g} | "
                 f"{'yes' if row['diverged'] else 'no'} | "
                 f"{row['iteration']} |")
  return "\n".join(lines)


def write_leaderboard(workdir, search, k):
  rows = search.leaderboard(k)
  num_diverged = sum(bool(v["diverged"]) for v in search.cache.values())
  text = ("# Best rules found\n\nUse one with "
          "`lr_meta.optax.from_dsl(rule, learning_rate)`, e.g. "
          f"`from_dsl({rows[0]['rule']!r}, {rows[0]['learning_rate']:g})`.\n\n"
          f"{num_diverged} of the {len(search.cache)} rules scored diverged "
          f"(reward {search.scorer.config.min_reward:g}).\n\n"
          if rows else "# No rules scored yet\n")
  with open(os.path.join(workdir, "leaderboard.md"), "w") as f:
    f.write(text + leaderboard_markdown(rows) + "\n")
  return rows


def comparison_markdown(names, rules, rewards, diverged) -> str:
  """The comparison table: reward mean (std) over seeds, diverged seeds.

  Args:
    names, rules: per optimizer, its name and rule.
    rewards: (optimizers, seeds) rewards (a diverged seed's is the scoring's
      ``min_reward``).
    diverged: (optimizers, seeds) bool.
  """
  lines = ["| optimizer | rule | reward mean (std) | diverged | seeds |",
           "|---|---|---:|---:|---:|"]
  for name, rule, r, d in zip(names, rules, rewards, diverged):
    lines.append(f"| {name} | `{rule}` | {baselines.mean_std(r, d)} | "
                 f"{int(np.sum(d))} | {len(r)} |")
  if np.any(diverged):
    lines += ["", baselines.DIVERGED_NOTE]
  return "\n".join(lines)


def compare(config, search, workdir, data_dir=None, log=print):
  """Top rules vs hand-designed ones, same scoring, fresh seeds.

  Each rule is scored (sweep + training, as in the search) with
  ``num_seeds`` seeds never used by the search; comparison.md has the mean
  and std of the reward and the number of diverged seeds.
  """
  top = [row["rule"] for row in search.leaderboard(config.compare.top_k)]
  names = list(config.compare.names) + [f"found #{i + 1}"
                                        for i in range(len(top))]
  rules = list(config.compare.rules) + top
  programs = [programs_lib.to_program(r) for r in rules]
  scoring = dict(_plain(config.scoring))
  scoring["num_groups"] = max(max(len(p) for p in programs),
                              scoring["num_groups"])
  scorer = search_lib.Scorer(search_lib.ScoringConfig(**scoring),
                             data_dir=data_dir, mesh=search.scorer.mesh)
  scores = []
  for seed in range(config.compare.num_seeds):
    # Re-scoring seeds, never used by the search.
    key = jax.random.PRNGKey(seeds.seed_offset("evaluation") + config.seed
                             + seed)
    scores.append(scorer.score(programs, key))
  rewards = np.stack([s.reward for s in scores], 1)
  diverged = np.stack([s.diverged for s in scores], 1)
  text = comparison_markdown(names, rules, rewards, diverged)
  if distributed.is_main_process():
    with open(os.path.join(workdir, "comparison.md"), "w") as f:
      f.write("# Found rules vs hand-designed rules (fresh seeds)\n\n"
              + text + "\n")
  log(text)
  return dict(zip(names, rewards.mean(1)))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  distributed.initialize_or_launch(distributed.config_from_flags())
  config = _CONFIG.value
  try:
    search, _ = run_search(config, _WORKDIR.value, _DATA_DIR.value,
                           allow_changes=tuple(_ALLOW_CHANGE.value))
  except rundir.RunError as e:
    raise SystemExit(f"search_optimizer: {e}") from None
  if distributed.is_main_process():
    print(open(os.path.join(_WORKDIR.value, "leaderboard.md")).read())
  if config.compare.num_seeds > 0:
    compare(config, search, _WORKDIR.value, _DATA_DIR.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=config_lib.parse_flags)
