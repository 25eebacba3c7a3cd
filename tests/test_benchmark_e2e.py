"""lr_meta.benchmark end to end on the tiny suite: report files, resume."""

import io
import json
import os
import subprocess
import sys

import jax
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
  # The compile counts below are the run's own: a test of another file on
  # the same xdist worker may have compiled the same programs already.
  jax.clear_caches()
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
  methods = ["best_constant", "cosine", "warmup_cosine", "step_decay"
             ] + METHODS
  assert list(results["methods"]) == methods
  # Schedule-free SGD runs on SGD workloads only (its LR rule reads the
  # default SGD LR): left out of the Adam workload, with the reason.
  assert list(results["not_applicable"]) == ["tiny_mnist1d_mlp_adam"]
  assert list(results["not_applicable"]["tiny_mnist1d_mlp_adam"]) == [
      "schedule_free_sgd"]
  assert len(results["cells"]) == (2 * len(methods) - 1) * NUM_SEEDS
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
  for name, t in results["tuning"]["tiny_mnist1d_mlp_adam"].items():
    # Grids of 6 LRs (step decay: x 2 periods x 2 factors), 3 seeds each,
    # plus the points added past an edge where a winner sat.
    first = 24 if name == "step_decay" else 6
    assert len(t["grid"]) == first + t["extended_by"]
    assert t["cost"]["runs"] == 3 * len(t["grid"])
    assert not t["best_at_grid_edge"] or t["extended_by"] > 0
  # The normaliser is the reference with the lowest tuning validation loss;
  # its own median normalised loss is about 1.
  for w, norm in results["normalizers"].items():
    tuning = results["tuning"][w]
    assert norm["method"] == min(
        ("best_constant", "cosine", "warmup_cosine", "step_decay"),
        key=lambda m: tuning[m]["best_val_loss"])
    assert results["scores"][w][norm["method"]]["p_reference"] is None
  board = (outdir / report.LEADERBOARD).read_text()
  assert board.index("held-out workloads") < board.index("train workloads")
  assert board.index("## Summary") < board.index("## `tiny_mnist1d_mlp_sgd`")
  assert "| # | method | kind | median norm. loss [95% CI] |" in board
  assert "`best_reference`" in board and "Normalized by `" in board
  # The controller's probe cost: 4 decisions of 200 examples on the 40
  # steps x 32 examples of the SGD workload, 62.5% of its training examples.
  probe = results["cost"]["probes"]["tiny_mnist1d_mlp_sgd"]
  assert list(probe) == ["controller:mnist1d_mlp_quickstart"]
  assert probe["controller:mnist1d_mlp_quickstart"]["probe_examples"] == 800
  assert probe["controller:mnist1d_mlp_quickstart"]["probe_fraction"] == (
      800 / (40 * 32))
  assert "## What the probing methods pay" in board


def test_killed_and_resumed_run_gives_the_same_results(full_run, tmp_path,
                                                       monkeypatch):
  _, uninterrupted = full_run
  put = harness.RunStore.put
  calls = []

  class Killed(Exception):
    pass

  first = sum(len(t["grid"]) * 3 for t in uninterrupted["tuning"][
      "tiny_mnist1d_mlp_sgd"].values())

  def dying_put(self, key, record):
    if len(calls) == first + 30:   # in the second workload's tuning
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
  jax.clear_caches()   # its own compiles only (as in full_run)
  results = benchmark.run_suite(
      "tiny", ["default_lr"], num_seeds=NUM_SEEDS, outdir=str(tmp_path),
      workloads=["tiny_mnist1d_mlp_adam"], batch_mode="vmap",
      progress_stream=io.StringIO())
  per = results["cost"]["per_family"]["tiny_mnist1d_mlp_adam"]
  # The tuning runs in batches of one width (grid extensions too), then
  # the 5 methods' evaluation runs padded to it: one compile.
  tuned = sum(len(t["grid"]) * 3 for t in results["tuning"][
      "tiny_mnist1d_mlp_adam"].values())
  assert per["schedule"]["program_compiles"] == 1
  assert per["schedule"]["runs"] == tuned + 5 * NUM_SEEDS
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


def test_a_controller_file_on_the_held_out_side_is_entered_in_the_ledger(
    tmp_path):
  # A controller file is a method under development: scoring it on a
  # held-out workload is a look, entered with the command and the note.
  shipped = os.path.join(os.path.dirname(benchmark.__file__), "..",
                         "pretrained", "mnist1d_mlp_quickstart.msgpack")
  candidate = tmp_path / "candidate.msgpack"
  candidate.write_bytes(open(shipped, "rb").read())
  ledger = tmp_path / "ledger.md"
  logged = []
  benchmark.run_suite(
      "tiny", ["default_lr", f"controller:{candidate}"], num_seeds=2,
      outdir=str(tmp_path / "out"), workloads=["tiny_mnist1d_mlp_adam"],
      command="python scripts/benchmark.py --suite=tiny ...",
      progress_stream=io.StringIO(), ledger=str(ledger),
      ledger_note="attempt 1 of a test", log=logged.append)
  rows = [l for l in ledger.read_text().splitlines() if l.startswith("| 20")]
  assert len(rows) == 1
  assert f"controller:{candidate} (not final)" in rows[0]
  assert "tiny_mnist1d_mlp_adam" in rows[0] and "attempt 1 of a test" in rows[0]
  assert "`python scripts/benchmark.py --suite=tiny ...`" in rows[0]
  assert any("Held-out ledger" in line for line in logged)
