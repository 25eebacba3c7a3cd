"""lr_meta.benchmark end to end on the tiny suite: report files, resume."""

import io
import json
import os
import subprocess
import sys

import pytest

from lr_meta import benchmark
from lr_meta.benchmark import harness
from lr_meta.benchmark import report

METHODS = ["default_lr", "schedule_free_sgd",
           "controller:mnist1d_mlp_quickstart"]
NUM_SEEDS = 2


def _run(outdir):
  return benchmark.run_suite("tiny", METHODS, num_seeds=NUM_SEEDS,
                             outdir=str(outdir), command="test",
                             progress_stream=io.StringIO(),
                             progress_interval=0.0)


def _without_cost(obj):
  """Everything but the time measurements (``"cost"`` keys)."""
  if isinstance(obj, dict):
    return {k: _without_cost(v) for k, v in obj.items() if k != "cost"}
  if isinstance(obj, list):
    return [_without_cost(v) for v in obj]
  return obj


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  outdir = tmp_path_factory.mktemp("bench_full")
  return outdir, _run(outdir)


def test_tiny_suite_writes_every_report_file(full_run):
  outdir, results = full_run
  for name in (report.RESULTS, report.LEADERBOARD, report.PROFILE):
    assert os.path.getsize(outdir / name) > 0
  for w in benchmark.get_suite("tiny"):
    assert os.path.getsize(outdir / report.CURVES_DIR / f"{w.name}.png") > 0
  with open(outdir / report.RESULTS) as f:
    on_disk = json.load(f)
  assert _without_cost(on_disk) == _without_cost(
      json.loads(json.dumps(results)))
  methods = ["best_constant", "cosine"] + METHODS
  assert list(results["methods"]) == methods
  assert len(results["cells"]) == 2 * len(methods) * NUM_SEEDS
  cell = results["cells"][0]
  assert len(cell["val_loss"]) == len(cell["learning_rate"]) == 4
  assert set(cell["cost"]) >= {"wall_s", "compile_s", "compiles"}
  # One training program per (workload, family); every cosine grid point
  # (tuning) and the constant grid ran in the schedule family's program.
  per = results["cost"]["per_family"]
  assert {f: c["program_compiles"] for f, c in
          per["tiny_mnist1d_mlp_sgd"].items()} == {
              "schedule": 1, "schedule_free_sgd": 1,
              "controller:mnist1d_mlp_quickstart": 1}
  tuning = results["tuning"]["tiny_mnist1d_mlp_adam"]["cosine"]
  assert len(tuning["grid"]) == 6 and tuning["cost"]["runs"] == 12
  assert results["scores"]["tiny_mnist1d_mlp_adam"]["cosine"][
      "normalized"] == 1.0
  board = (outdir / report.LEADERBOARD).read_text()
  assert board.index("held-out workloads") < board.index("train workloads")
  assert board.index("## Summary") < board.index("## `tiny_mnist1d_mlp_sgd`")
  assert "### Self-tuning" in board and "### Tuned references" in board


def test_killed_and_resumed_run_gives_the_same_results(full_run, tmp_path,
                                                       monkeypatch):
  _, uninterrupted = full_run
  put = harness.RunStore.put
  calls = []

  class Killed(Exception):
    pass

  def dying_put(self, key, record):
    if len(calls) == 30:      # mid-way through the second workload's tuning
      raise Killed()
    calls.append(key)
    put(self, key, record)

  monkeypatch.setattr(harness.RunStore, "put", dying_put)
  with pytest.raises(Killed):
    _run(tmp_path)
  assert not (tmp_path / report.RESULTS).exists()
  resumed_calls = []

  def counting_put(self, key, record):
    resumed_calls.append(key)
    put(self, key, record)

  monkeypatch.setattr(harness.RunStore, "put", counting_put)
  resumed = _run(tmp_path)
  assert _without_cost(resumed) == _without_cost(uninterrupted)
  # The resumed invocation ran only what the killed one had not cached.
  total = sum(len(files) for _, _, files in os.walk(full_run[0] / "runs"))
  assert not set(resumed_calls) & set(calls)
  assert len(calls) + len(resumed_calls) == total


def test_vmap_batches_compile_once_per_family_and_agree(full_run, tmp_path):
  _, sequential = full_run
  results = benchmark.run_suite(
      "tiny", ["default_lr"], num_seeds=NUM_SEEDS, outdir=str(tmp_path),
      workloads=["tiny_mnist1d_mlp_adam"], batch_mode="vmap",
      progress_stream=io.StringIO())
  per = results["cost"]["per_family"]["tiny_mnist1d_mlp_adam"]
  # 24 tuning runs in one call, then 6 evaluation runs padded to 24.
  assert per["schedule"]["program_compiles"] == 1
  assert per["schedule"]["runs"] == 30
  want = {(c["method"], c["seed"]): c["test_loss"]
          for c in sequential["cells"]
          if c["workload"] == "tiny_mnist1d_mlp_adam"}
  for c in results["cells"]:
    assert c["test_loss"] == pytest.approx(want[(c["method"], c["seed"])],
                                           rel=1e-5)


def test_script_rejects_unknown_names(repo_root):
  out = subprocess.run(
      [sys.executable, str(repo_root / "scripts" / "benchmark.py"),
       "--suite=tiny", "--methods=prodigy,adamax"],
      capture_output=True, text=True, cwd=repo_root,
      env=dict(os.environ, PYTHONPATH=str(repo_root)))
  assert out.returncode != 0
  assert "Unknown method 'adamax'" in out.stderr
  assert "schedule_free_adamw" in out.stderr
