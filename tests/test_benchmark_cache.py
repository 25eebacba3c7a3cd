"""The benchmark's run cache survives damage and company (lr_meta.benchmark).

* A cell that is truncated, corrupted, of another run or computed under
  another version of the code is reported in one line naming the file and
  why, then recomputed; the recomputed results equal a clean run's.
* The key covers what decides a run: workload, program, setting (label and
  hyperparameters) and seed.
* One benchmark per outdir: a second process is refused, naming the holder.

The runs are the tiny suite's cheapest: ``default_lr`` (one setting, no
tuning) on one workload, 2 seeds.
"""

import dataclasses
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

import lr_meta
from lr_meta import benchmark
from lr_meta import rundir
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods as methods_lib
from lr_meta.tasks import optax_training

# Not the workload whose compile counts test_benchmark_e2e checks: a program
# compiled here would be found compiled there (one process, one jit cache).
WORKLOAD = "tiny_mnist1d_mlp_adam"
SGD = "tiny_mnist1d_mlp_sgd"   # lr0 0.1: the label constant(lr=0.1)
METHOD = "default_lr"
NUM_SEEDS = 2


def _run(outdir):
  """``(cells' records without cost, report lines, keys computed now)``."""
  lines, computed = [], []
  put = harness.RunStore.put

  def counting_put(self, key, record):
    computed.append(key)
    put(self, key, record)

  harness.RunStore.put = counting_put
  try:
    runs = harness.run_benchmark(
        [benchmark.get_workload(WORKLOAD)], [benchmark.get_method(METHOD)],
        num_seeds=NUM_SEEDS, outdir=str(outdir),
        progress_stream=io.StringIO(), log=lines.append)
  finally:
    harness.RunStore.put = put
  records = [{k: v for k, v in c.record.items() if k != "cost"}
             for c in runs.cells]
  return records, lines, computed


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
  outdir = tmp_path_factory.mktemp("clean")
  records, lines, computed = _run(outdir)
  assert lines == [] and len(computed) == NUM_SEEDS
  return outdir, records


def _copy(clean, tmp_path):
  """A copy of the clean run's cache: ``(outdir, [cell paths])``."""
  outdir = tmp_path / "bench"
  shutil.copytree(clean[0] / "runs", outdir / "runs")
  return outdir, sorted((outdir / "runs").rglob("*.json"))


def _flip_a_digit(path, field):
  """Changes one byte: a digit of ``field``'s number (valid JSON still)."""
  data = bytearray(path.read_bytes())
  at = data.index(f'"{field}": '.encode()) + len(field) + 4
  while not chr(data[at]).isdigit():
    at += 1
  data[at] = ord("0") + (data[at] - ord("0") + 1) % 10
  path.write_bytes(bytes(data))


def test_truncated_and_flipped_cells_are_reported_and_recomputed(clean,
                                                                 tmp_path):
  outdir, (cut, flipped) = _copy(clean, tmp_path)
  data = cut.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  _flip_a_digit(flipped, "test_loss")
  records, lines, computed = _run(outdir)
  assert records == clean[1]
  assert sorted(computed) == sorted([cut.stem, flipped.stem])
  reports = {line.split()[2]: line for line in lines}
  assert len(lines) == 2 and sorted(reports) == sorted([str(cut),
                                                        str(flipped)])
  assert reports[str(cut)].startswith(
      f"Run cache: {cut} is not valid JSON, truncated or corrupted (")
  assert reports[str(flipped)] == (f"Run cache: {flipped} fails its content "
                                   "digest (corrupted); recomputing that run.")
  # Rewritten: the next benchmark reads both, silently.
  assert _run(outdir)[1:] == ([], [])


@pytest.mark.parametrize("field", ["cache_version", "lr_meta_version"])
def test_a_cell_of_another_version_is_recomputed(clean, tmp_path, monkeypatch,
                                                 field):
  outdir, cells = _copy(clean, tmp_path)
  old = harness.cache_stamp()
  if field == "cache_version":
    monkeypatch.setattr(harness, "CACHE_VERSION", harness.CACHE_VERSION + 1)
  else:
    monkeypatch.setattr(lr_meta, "__version__", "99.0")
  new = harness.cache_stamp()
  assert new[field] != old[field]
  records, lines, computed = _run(outdir)
  assert records == clean[1]
  assert sorted(computed) == [c.stem for c in cells]
  assert sorted(lines) == [
      f"Run cache: {c} was computed under cache_version "
      f"{old['cache_version']!r}, lr_meta {old['lr_meta_version']!r} (this "
      f"code: cache_version {new['cache_version']}, lr_meta "
      f"{new['lr_meta_version']}); recomputing that run." for c in cells]
  stored = json.loads(cells[0].read_text())
  assert {k: stored[k] for k in new} == new


# -- the store alone: every kind of damage, one line each ----------------------


def _record(key):
  return {"key": key, "workload": "w", "family": "f", "label": "constant",
          "seed": 3, "final_val_loss": 0.5, "final_val_accuracy": 0.25,
          "test_loss": float("nan"), "test_accuracy": 0.125,
          "diverged": False, "diverged_at_step": None, "steps": [1, 2],
          "val_loss": [1.5, 0.5], "train_loss": [2.0, 1.0],
          "learning_rate": [0.1, 0.1], "cost": {"wall_s": 1.25}}


KEY = "ab" + "0" * 22
OTHER = "cd" + "1" * 22


def _store(tmp_path):
  lines = []
  store = harness.RunStore(str(tmp_path), log=lines.append)
  store.put(KEY, _record(KEY))
  return store, pathlib.Path(store._path(KEY)), lines


def test_a_clean_cell_is_read_back_with_its_stamp(tmp_path):
  store, path, lines = _store(tmp_path)
  assert store.get(KEY) == harness.json_safe(_record(KEY))
  assert set(_record(KEY)) == set(harness.RECORD_FIELDS)
  cell = json.loads(path.read_text())
  assert sorted(cell) == sorted(harness.CELL_FIELDS)
  assert cell["sha256"] == rundir.json_digest(cell["record"])
  assert store.get(OTHER) is None and lines == []


@pytest.mark.parametrize("damage,why", [
    (lambda c: [c], "holds a JSON list, not a run cell"),
    (lambda c: c["record"], "records no cache_version (written by an older "
     "lr_meta, or damaged)"),
    (lambda c: {k: v for k, v in c.items() if k != "sha256"},
     "has wrong fields (missing ['sha256'], unexpected [])"),
    (lambda c: dict(c, extra=1), "has wrong fields (missing [], unexpected "
     "['extra'])"),
    (lambda c: dict(c, key=OTHER), f"holds the key {OTHER!r}, not its file "
     "name's"),
    (lambda c: dict(c, record=dict(c["record"], key=OTHER)),
     "holds a record of another run"),
    (lambda c: dict(c, record={k: v for k, v in c["record"].items()
                               if k != "test_loss"}),
     "holds a record without the fields ['test_loss']"),
    (lambda c: dict(c, record=dict(c["record"], test_loss=0.75)),
     "fails its content digest (corrupted)"),
], ids=["list", "old_format", "missing_field", "extra_field", "other_key",
        "other_record", "record_field", "digest"])
def test_each_kind_of_bad_cell_is_one_line_naming_it(tmp_path, damage, why):
  store, path, lines = _store(tmp_path)
  path.write_text(json.dumps(damage(json.loads(path.read_text()))))
  assert store.get(KEY) is None
  assert lines == [f"Run cache: {path} {why}; recomputing that run."]


def test_a_cell_copied_under_another_name_is_refused(tmp_path):
  store, path, lines = _store(tmp_path)
  other = pathlib.Path(store._path(OTHER))
  other.parent.mkdir(parents=True)
  shutil.copy(path, other)
  assert store.get(OTHER) is None
  assert lines == [f"Run cache: {other} holds the key {KEY!r}, not its file "
                   "name's; recomputing that run."]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_byte_flip_is_reported_or_harmless(tmp_path, data):
  """Damage anywhere in a cell: reported (one line naming the file) and read
  as missing, or harmless (whitespace: the same record)."""
  store, path, lines = _store(tmp_path)
  good = path.read_bytes()
  if data.draw(st.booleans(), "truncate"):
    bad = good[:data.draw(st.integers(0, len(good) - 1), "length")]
  else:
    at = data.draw(st.integers(0, len(good) - 1), "offset")
    bad = bytearray(good)
    bad[at] ^= data.draw(st.integers(1, 255), "xor")
    bad = bytes(bad)
  path.write_bytes(bad)
  record = store.get(KEY)
  if record is None:
    assert len(lines) == 1 and lines[0].startswith(f"Run cache: {path} ")
  else:
    assert lines == [] and record == harness.json_safe(_record(KEY))


# -- the key ---------------------------------------------------------------------


def test_the_key_covers_workload_program_setting_and_seed():
  workload = benchmark.get_workload(SGD)
  program = optax_training.ScheduledOptimizer("sgd", ())
  hp = {"learning_rates": np.full(40, 0.1, np.float32)}
  base = harness.run_key(workload, program, "constant(lr=0.1)", 0, hp)
  assert base == harness.run_key(workload, program, "constant(lr=0.1)", 0,
                                 {"learning_rates": hp["learning_rates"]
                                  .copy()})
  variants = [
      (dataclasses.replace(workload, batch_size=16), program, "constant(lr="
       "0.1)", 0, hp),
      (dataclasses.replace(workload, initial_lr=0.2), program, "constant(lr="
       "0.1)", 0, hp),
      (dataclasses.replace(workload, num_steps=80), program, "constant(lr="
       "0.1)", 0, hp),
      (dataclasses.replace(workload, optimizer_kwargs=(("nesterov", True),)),
       program, "constant(lr=0.1)", 0, hp),
      (workload, optax_training.ScheduledOptimizer("adam", ()),
       "constant(lr=0.1)", 0, hp),
      (workload, optax_training.ScheduledOptimizer("sgd", (("momentum",
                                                             0.9),)),
       "constant(lr=0.1)", 0, hp),
      (workload, program, "cosine(lr=0.1)", 0, hp),
      (workload, program, "constant(lr=0.1)", 1, hp),
      # A label rounds its numbers (:g): the setting's arrays tell them apart.
      (workload, program, "constant(lr=0.1)", 0,
       {"learning_rates": np.full(40, 0.1000001, np.float32)}),
  ]
  keys = [harness.run_key(*v) for v in variants]
  assert len(set(keys + [base])) == len(variants) + 1
  # Its side and description do not decide a run: a workload moved to the
  # train side of another suite keeps its cells.
  moved = dataclasses.replace(workload, split="heldout", description="x")
  assert harness.run_key(moved, program, "constant(lr=0.1)", 0, hp) == base


def test_equal_labels_of_different_schedules_are_different_runs():
  workload = benchmark.get_workload(SGD)
  task = harness.workload_task(workload)
  default = benchmark.get_method(METHOD).build(workload, task)
  close = benchmark.get_method("schedule:constant(lr=0.1000001)").build(
      workload, task)
  (program, (a,)), (_, (b,)) = default, close
  assert a.label == b.label == "constant(lr=0.1)"
  assert (harness.grid_runs(workload, program, [a], [0])[0].key
          != harness.grid_runs(workload, program, [b], [0])[0].key)


def test_fingerprints_hold_no_object_addresses():
  """Keys are process-independent: the same run has the same key in the
  next process (functions by name, never a repr with an address)."""
  built = 0
  for name in (WORKLOAD, "tiny_mnist1d_mlp_sgd"):
    workload = benchmark.get_workload(name)
    task = harness.workload_task(workload)
    for method in methods_lib.resolve(["all"]):
      try:
        program, _ = method.build(workload, task)
      except methods_lib.NotApplicable:
        continue   # built on the other workload (SGD-only methods)
      built += 1
      text = json.dumps(harness.fingerprint(program))
      assert " at 0x" not in text and "<lambda>" not in text, (method.name,
                                                               text)
  assert built == 2 * len(methods_lib.resolve(["all"])) - 2


# -- one benchmark per outdir ------------------------------------------------------


def _busy_message(outdir):
  return (f"{outdir} is in use by pid {os.getpid()} on {os.uname().nodename} "
          "since ")


def test_a_second_benchmark_on_a_busy_outdir_is_refused(tmp_path):
  outdir = tmp_path / "bench"
  with rundir.WorkdirLock(str(outdir), advice=harness.OUTDIR_ADVICE):
    with pytest.raises(rundir.WorkdirBusyError) as e:
      benchmark.run_suite("tiny", [METHOD], num_seeds=NUM_SEEDS,
                          outdir=str(outdir), workloads=[WORKLOAD],
                          progress_stream=io.StringIO())
    message = str(e.value)
    assert message.startswith(_busy_message(outdir))
    assert message.endswith("; one benchmark per outdir (wait for it to "
                            "finish, or pass another --outdir).")
    with pytest.raises(rundir.WorkdirBusyError, match="one benchmark per"):
      _run(outdir)
  assert os.listdir(outdir) == ["lock"]   # nothing read or written


def test_the_script_refuses_a_busy_outdir_in_one_line(tmp_path, repo_root):
  outdir = tmp_path / "bench"
  with rundir.WorkdirLock(str(outdir)):
    out = subprocess.run(
        [sys.executable, str(repo_root / "scripts" / "benchmark.py"),
         "--suite=tiny", f"--methods={METHOD}", f"--workloads={WORKLOAD}",
         "--num_seeds=2", f"--outdir={outdir}"],
        capture_output=True, text=True, cwd=repo_root, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(repo_root)), check=False)
  assert out.returncode == 1, out.stderr
  assert "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: " + _busy_message(outdir)), last
  assert last.endswith("; one benchmark per outdir (wait for it to finish, "
                       "or pass another --outdir).")
  assert os.listdir(outdir) == ["lock"]
  assert (outdir / "lock").read_text() == ""   # released by the holder
