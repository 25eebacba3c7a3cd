"""scripts/search_optimizer.py: its run directory under faults, its tables.

The search runs with the toy scorer of tests/test_nos_search.py (no child
training), so a whole search takes seconds; the checkpoints are the real
ones (`lr_meta.rundir`).
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from lr_meta import baselines
from lr_meta import config as config_lib
from lr_meta import rundir
from lr_meta.nos import search as search_lib
from script_loader import load_script  # tests/script_loader.py
from test_nos_search import _space, ToyScorer

so = load_script("search_optimizer")

ITERATIONS = 6


def nos_config(num_iterations=ITERATIONS):
  """configs/nos.py with a short search, checkpoints every 2 iterations."""
  config = config_lib.load_config(
      pathlib.Path(__file__).resolve().parents[1] / "configs" / "nos.py")
  config.num_iterations = num_iterations
  config.checkpoint_every = 2
  config.ppo.batch_size = 8
  config.compare.num_seeds = 0
  return config


class _Scorer(ToyScorer):
  batch_mode = "none (toy rewards)"     # the search logs it


def toy_search(config, scorer=None, search_class=search_lib.Search):
  """What ``build_search`` builds, over the toy space and scorer."""
  ppo = search_lib.RuleSearchPPOConfig(**so._plain(config.ppo))  # pylint: disable=protected-access
  return search_class(_space(), ppo, scorer or _Scorer(), seed=config.seed)


def _use(monkeypatch, **kwargs):
  monkeypatch.setattr(so, "build_search",
                      lambda config, data_dir=None: toy_search(config,
                                                               **kwargs))


def _run(workdir, num_iterations=ITERATIONS, **kwargs):
  logs = []
  search, state = so.run_search(nos_config(num_iterations), str(workdir),
                                log=logs.append, **kwargs)
  return search, state, logs


def _strip(history):
  return [r._replace(seconds=0.0) for r in history]


def _csv_without_seconds(workdir):
  rows = rundir.read_metrics(str(workdir))
  return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _assert_same_search(workdir, search, state, straight):
  s_search, s_state, s_dir = straight
  for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                  jax.tree.leaves(jax.device_get(s_state))):
    np.testing.assert_array_equal(a, b)
  assert search.cache == s_search.cache
  assert _strip(search.history) == _strip(s_search.history)
  assert _csv_without_seconds(workdir) == _csv_without_seconds(s_dir)
  assert ((workdir / "leaderboard.md").read_text()
          == (s_dir / "leaderboard.md").read_text())
  assert rundir.snapshot_steps(str(workdir)) == [2, 4, 6]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """The uninterrupted search: (search, state, workdir)."""
  workdir = tmp_path_factory.mktemp("straight") / "run"
  with pytest.MonkeyPatch.context() as monkeypatch:
    _use(monkeypatch)
    search, state, _ = _run(workdir)
  return search, state, workdir


def test_uninterrupted_search_files(straight):
  search, state, workdir = straight
  assert int(state.iteration) == ITERATIONS
  assert [r.iteration for r in search.history] == list(range(1, 7))
  assert sorted(os.listdir(workdir / rundir.CHECKPOINT_DIR)) == ["4", "6"]
  assert len(rundir.read_metrics(str(workdir))) == ITERATIONS
  assert (workdir / "rewards.png").exists()
  # The leaderboard counts the diverged rules (none with the toy scorer).
  text = (workdir / "leaderboard.md").read_text()
  assert f"0 of the {len(search.cache)} rules scored diverged" in text
  assert "| diverged |" in text


# The search killed (SIGKILL, in a real process) while iteration 6 runs:
# checkpoint 4 is the last one written, iteration 5 is lost.
_KILLED = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_search_optimizer as t
from lr_meta.nos import search as search_lib

class Killed(search_lib.Search):
  def step(self, state):
    if int(state.iteration) == 5:
      os.kill(os.getpid(), signal.SIGKILL)
    return super().step(state)

t.so.build_search = lambda config, data_dir=None: t.toy_search(
    config, search_class=Killed)
t.so.run_search(t.nos_config(), {workdir!r})
"""


def test_killed_search_resumes_to_the_uninterrupted_one(
    straight, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  tests = str(pathlib.Path(__file__).resolve().parent)
  proc = subprocess.run(
      [sys.executable, "-c", _KILLED.format(tests=tests, workdir=str(workdir))],
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(
          [str(pathlib.Path(tests).parent), tests])))
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert len(rundir.read_metrics(str(workdir))) == 4
  _use(monkeypatch)
  search, state, logs = _run(workdir)
  assert re.fullmatch(r"Lock of pid \d+ .* is stale .*", logs[0]), logs
  assert "Resumed from checkpoint at iteration 4." in logs
  _assert_same_search(workdir, search, state, straight)


def test_tampered_rule_cache_falls_back_to_the_previous_checkpoint(
    straight, tmp_path, monkeypatch):
  """The cache is checkpoint data outside the arrays: it has a digest too."""
  _use(monkeypatch)
  workdir = tmp_path / "run"
  _run(workdir)
  # The checkpoint's JSON item: raise one cached reward.
  path = workdir / rundir.CHECKPOINT_DIR / "6" / "run" / "metadata"
  stored = json.loads(path.read_text())
  rule = next(iter(stored["data"]["cache"]))
  stored["data"]["cache"][rule]["reward"] = 1.0
  path.write_text(json.dumps(stored))
  search, state, logs = _run(workdir)
  assert re.fullmatch(r"Checkpoint at iteration 6 is corrupted \(content "
                      r"digest mismatch\); moved to .*", logs[1]), logs
  assert logs[2] == "Resuming from the newest intact checkpoint, iteration 4."
  _assert_same_search(workdir, search, state, straight)


class _NaNFromThirdBatch(_Scorer):
  """Rewards turn NaN at the third scored batch: the PPO update follows."""

  def score(self, rules, key):
    scores = super().score(rules, key)
    if self.calls >= 3:
      scores = scores._replace(reward=np.full_like(scores.reward, np.nan))
    return scores


def test_non_finite_controller_stops_before_it_is_saved(tmp_path,
                                                        monkeypatch):
  _use(monkeypatch, scorer=_NaNFromThirdBatch())
  workdir = tmp_path / "run"
  with pytest.raises(rundir.NonFiniteError,
                     match=r"Iteration 3 made the controller params "
                     r"non-finite .* The last good checkpoint and snapshot "
                     r"are iteration 2\."):
    _run(workdir)
  assert sorted(os.listdir(workdir / rundir.CHECKPOINT_DIR)) == ["2"]
  assert rundir.snapshot_steps(str(workdir)) == [2]
  assert len(rundir.read_metrics(str(workdir))) == 2


def test_resume_with_another_search_config_is_refused(straight, tmp_path,
                                                      monkeypatch):
  _use(monkeypatch)
  workdir = tmp_path / "run"
  _run(workdir, num_iterations=2)
  config = nos_config()
  config.ppo.learning_rate = 1e-3
  with pytest.raises(rundir.ConfigMismatchError,
                     match=r"num_iterations: 2 -> 6; ppo.learning_rate: "
                     r"0.003 -> 0.001"):
    so.run_search(config, str(workdir), log=lambda _: None)
  # Searching longer is a safe change, when asked for by name.
  search, state, logs = _run(workdir, allow_changes=("num_iterations",))
  assert "Resuming with num_iterations changed: 2 -> 6." in logs
  assert "Resumed from checkpoint at iteration 2." in logs
  _assert_same_search(workdir, search, state, straight)


def test_comparison_table_counts_diverged_seeds():
  text = so.comparison_markdown(
      ["SGD", "found #1"], ["g", "log(g - g)"],
      rewards=np.array([[0.5, 0.7], [0.0, 0.6]]),
      diverged=np.array([[False, False], [True, False]]))
  assert text.splitlines() == [
      "| optimizer | rule | reward mean (std) | diverged | seeds |",
      "|---|---|---:|---:|---:|",
      "| SGD | `g` | 0.6000 (0.1000) | 0 | 2 |",
      f"| found #1 | `log(g - g)` | 0.3000 (0.3000) {baselines.DIVERGED_MARK}"
      " | 1 | 2 |",
      "",
      baselines.DIVERGED_NOTE]
  clean = so.comparison_markdown(["SGD"], ["g"], np.array([[0.5, 0.7]]),
                                 np.zeros((1, 2), bool))
  assert baselines.DIVERGED_MARK not in clean


def test_leaderboard_shows_diverged_rules():
  rows = [dict(rule="g", reward=0.61, learning_rate=0.1, diverged=False,
               iteration=0),
          dict(rule="log(g - g)", reward=0.0, learning_rate=1e-5,
               diverged=True, iteration=2)]
  assert so.leaderboard_markdown(rows).splitlines()[2:] == [
      "| 1 | `g` | 0.6100 | 0.1 | no | 0 |",
      "| 2 | `log(g - g)` | 0.0000 | 1e-05 | yes | 2 |"]
