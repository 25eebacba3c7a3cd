"""Neural Optimizer Search (Bello et al. 2017): PPO controller writes rules.

  python scripts/search_optimizer.py --config configs/nos.py --workdir runs/nos

Writes to --workdir:
  checkpoint.msgpack  search state + rule cache + history (every
                      ``checkpoint_every`` iterations and at the end); a rerun
                      with the same workdir resumes the same search.
  rewards.csv         one row per iteration (mean / max / best-so-far reward,
                      EMA baseline, rules scored, entropy, seconds).
  rewards.png         the reward curve (the paper's Figure 4).
  leaderboard.md      the best rules as readable expressions, each usable as
                      ``lr_meta.optax.from_dsl(rule, learning_rate)``.
  comparison.md       the top rules re-scored on fresh seeds next to SGD,
                      Adam, RMSProp, PowerSign, AddSign (same sweep+training).

Multi-device: ``config.scoring.batch_mode = 'sharded'`` shards the rules x
learning rates over every device (``jax.devices()``); with
``config.distributed = True`` the script first calls
``jax.distributed.initialize()`` (coordinator from the environment, e.g.
SLURM / TPU pods) so the mesh spans all hosts.
"""

import csv
import os

from absl import app
from absl import flags
import jax
import numpy as np
import tqdm

from lr_meta import config as config_lib
from lr_meta import rundir
from lr_meta import seeds
from lr_meta.nos import controller as controller_lib
from lr_meta.nos import programs as programs_lib
from lr_meta.nos import search as search_lib

_CONFIG = config_lib.DEFINE_config_file("config", None, "NOS config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_change", [], "Config fields a resume may change, of "
    f"{rundir.SAFE_CHANGES} (e.g. num_iterations to search longer).")

CHECKPOINT = "checkpoint.msgpack"


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
  mesh = None
  if scoring.get("batch_mode") == "sharded":
    from lr_meta import tasks  # pylint: disable=g-import-not-at-top
    mesh = tasks.run_mesh()
  scorer = search_lib.Scorer(search_lib.ScoringConfig(**scoring),
                             data_dir=data_dir, mesh=mesh)
  ppo = search_lib.RuleSearchPPOConfig(**_plain(config.ppo))
  return search_lib.Search(space, ppo, scorer, seed=config.seed)


def run_search(config, workdir, data_dir=None, log=print, allow_changes=()):
  """Runs (or resumes) the search; returns (search, state).

  The workdir is held by one process and a resume needs the same config
  (``lr_meta.rundir.Run``); the search state itself is NOS's own checkpoint.
  """
  if config.distributed:
    jax.distributed.initialize()
  with rundir.Run(workdir, config, allow_changes=allow_changes, log=log):
    return _search(config, workdir, data_dir, log)


def _search(config, workdir, data_dir, log):
  search = build_search(config, data_dir)
  log(f"search space: {controller_lib.search_space_size(search.space):.3g} "
      f"rules of {search.space.num_groups} groups; devices: "
      f"{jax.device_count()}; batch mode: {search.scorer.batch_mode}")
  path = os.path.join(workdir, CHECKPOINT)
  if os.path.exists(path):
    state = search.restore(path)
    log(f"Resumed from {path} at iteration {int(state.iteration)}.")
  else:
    state = search.init()
  start = int(state.iteration)
  bar = tqdm.trange(start, config.num_iterations, desc="iterations",
                    initial=start, total=config.num_iterations)
  for it in bar:
    state, record = search.step(state)
    bar.set_postfix(mean=f"{record.mean_reward:.3f}",
                    best=f"{record.best_so_far:.3f}",
                    rules=record.num_unique_total)
    if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.num_iterations:
      search.save(path, state)
      write_curve(workdir, search.history)
  write_curve(workdir, search.history)
  write_leaderboard(workdir, search, config.leaderboard_size)
  return search, state


def write_curve(workdir, history):
  """rewards.csv and rewards.png (mean reward per batch, best so far)."""
  if not history:
    return
  with open(os.path.join(workdir, "rewards.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(history[0]._fields))
    writer.writeheader()
    writer.writerows(r._asdict() for r in history)
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
  ax.set_title("Neural Optimizer Search (cf. Bello et al. 2017, Fig. 4)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "rewards.png"), dpi=120)
  plt.close(fig)


def leaderboard_markdown(rows):
  lines = ["| rank | rule | reward (val acc) | best LR | found at iteration |",
           "|---:|---|---:|---:|---:|"]
  for i, row in enumerate(rows):
    lines.append(f"| {i + 1} | `{row['rule']}` | {row['reward']:.4f} | "
                 f"{row['learning_rate']:g} | {row['iteration']} |")
  return "\n".join(lines)


def write_leaderboard(workdir, search, k):
  rows = search.leaderboard(k)
  text = ("# Best rules found\n\nUse one with "
          "`lr_meta.optax.from_dsl(rule, learning_rate)`, e.g. "
          f"`from_dsl({rows[0]['rule']!r}, {rows[0]['learning_rate']:g})`.\n\n"
          if rows else "# No rules scored yet\n")
  with open(os.path.join(workdir, "leaderboard.md"), "w") as f:
    f.write(text + leaderboard_markdown(rows) + "\n")
  return rows


def compare(config, search, workdir, data_dir=None, log=print):
  """Top rules vs hand-designed ones, same scoring, fresh seeds.

  Each rule is scored (sweep + training, as in the search) with
  ``num_seeds`` seeds never used by the search; comparison.md has the mean
  and std of the reward.
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
  rewards = []
  for seed in range(config.compare.num_seeds):
    # Re-scoring seeds, never used by the search.
    key = jax.random.PRNGKey(seeds.seed_offset("evaluation") + config.seed
                             + seed)
    rewards.append(scorer.score(programs, key).reward)
  rewards = np.stack(rewards, 1)
  lines = ["| optimizer | rule | reward mean | std | seeds |",
           "|---|---|---:|---:|---:|"]
  for name, rule, r in zip(names, rules, rewards):
    lines.append(f"| {name} | `{rule}` | {r.mean():.4f} | {r.std():.4f} | "
                 f"{len(r)} |")
  text = "\n".join(lines)
  with open(os.path.join(workdir, "comparison.md"), "w") as f:
    f.write("# Found rules vs hand-designed rules (fresh seeds)\n\n"
            + text + "\n")
  log(text)
  return dict(zip(names, rewards.mean(1)))


def main(argv):
  del argv
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  config = _CONFIG.value
  try:
    search, _ = run_search(config, _WORKDIR.value, _DATA_DIR.value,
                           allow_changes=tuple(_ALLOW_CHANGE.value))
  except rundir.RunError as e:
    raise SystemExit(f"search_optimizer: {e}") from None
  print(open(os.path.join(_WORKDIR.value, "leaderboard.md")).read())
  if config.compare.num_seeds > 0:
    compare(config, search, _WORKDIR.value, _DATA_DIR.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=config_lib.parse_flags)
