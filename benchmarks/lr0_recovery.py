"""How far a controller moves a badly chosen initial LR, on the TRAIN side.

  python benchmarks/lr0_recovery.py --controller=<name or .msgpack path> \
      [--suite=cpu] [--workloads=a,b,...] [--factors=0.0333,1,30] \
      [--num_seeds=3] [--outdir=runs/lr0_recovery]

For each train workload: the tuned peak, the peak LR of the best linear
warm-up + cosine over the workload's LR grid (the benchmark's
``warmup_cosine`` reference, its 3 tuning seeds, the grid extended past an
edge where the winner sits); then the controller started at
``factor x`` the workload's default LR on ``--num_seeds`` seeds. Per
(workload, factor) it prints the controller's largest and last LR as ratios
to the tuned peak (1 = found it; the LR is read at the validation points,
every tenth of the run) and its final validation loss relative to the
reference's (1 = as good). Issue 26, item 2: a too-small LR raised 10-30x,
a too-large one cut before it diverges. The held-out side is never read.
Runs are cached in ``--outdir`` (a rerun is free);
``recovery_<label>.json`` holds the table (the label: a shipped controller's
name, or a file's run directory, e.g. ``generalist_v2_a1``).
"""

import dataclasses
import os
import time

from absl import app
from absl import flags
import numpy as np

from lr_meta import seeds as seeds_lib
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods
from lr_meta.benchmark import workloads

_CONTROLLER = flags.DEFINE_string(
    "controller", None, "A shipped controller's name or a controller file.")
_SUITE = flags.DEFINE_string("suite", "cpu", "Benchmark suite (its train "
                             "side is used).")
_WORKLOADS = flags.DEFINE_list(
    "workloads", [], "Train workloads of --suite (default: its whole train "
    "side).")
_FACTORS = flags.DEFINE_list("factors", ["0.0333333", "1", "30"],
                             "Initial LRs as multiples of the default.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Seeds per factor.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/lr0_recovery",
                              "Run cache and recovery.json.")
_RANGE_TEST = flags.DEFINE_list(
    "range_test", [], "name=value arguments of lr_meta.optax.range_tested "
    "(e.g. fraction=0.05,span=300,shrink=0.1): an LR range test for the "
    "first calls, then the controller. Empty: the controller alone.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")


def tuned_peak(workload, task, store):
  """``(peak LR, mean final val loss)`` of the tuned warm-up + cosine."""
  method = methods.get_method(methods.WARMUP_COSINE)
  program, settings = method.build(workload, task)
  tuning_seeds = seeds_lib.seed_range("benchmark_tuning",
                                      harness.NUM_TUNING_SEEDS)
  run = lambda runs: harness.execute(task, workload, program, method.family,
                                     runs, store)
  records = run(harness.grid_runs(workload, program, settings, tuning_seeds))
  chosen, summary = harness.tune(workload, method, program, settings,
                                 records, run, tuning_seeds, time.time())
  return dict(chosen.point)["lr"], summary["best_val_loss"]


def parse_range_test(items) -> tuple:
  """``--range_test``'s ``name=value`` items as ``Controlled.range_test``
  (every setting named, defaults filled in); ``()`` for no items."""
  if not items:
    return ()
  given = {}
  for item in items:
    name, _, value = item.partition("=")
    if not value:
      raise app.UsageError(f"--range_test item {item!r}; allowed: name=value.")
    given[name] = value
  try:
    return methods.range_test_fields(**given)
  except ValueError as e:
    raise app.UsageError(f"--range_test: {e}") from e


def recovery(controller, workload, task, store, factor, seeds,
             range_test=()):
  """The controller from ``factor x`` the default LR: per-seed largest and
  last LR, final validation loss, divergence."""
  shifted = dataclasses.replace(workload,
                                initial_lr=workload.initial_lr * factor)
  program = dataclasses.replace(
      methods.controller_program(controller.spec, shifted, task),
      range_test=range_test)
  setting = methods.controller_setting(controller)
  runs = harness.grid_runs(shifted, program, [setting], seeds)
  records = harness.execute(task, shifted, program, "controller", runs, store)
  rows = [records[r.key] for r in runs]
  return dict(
      max_lr=[float(np.nanmax(r["learning_rate"])) for r in rows],
      last_lr=[float(r["learning_rate"][-1]) for r in rows],
      final_val_loss=[float(r["final_val_loss"]) for r in rows],
      diverged=[bool(r["diverged"]) for r in rows])


def _label(target: str) -> str:
  """A shipped controller's name, or the directory of a controller file."""
  if not os.path.isfile(target):
    return target
  return os.path.basename(os.path.dirname(os.path.abspath(target)))


def main(argv):
  del argv
  if not _CONTROLLER.value:
    raise app.UsageError("--controller is required.")
  train = workloads.train_side(_SUITE.value, _WORKLOADS.value)
  controller = methods.load_named_controller(_CONTROLLER.value)
  range_test = parse_range_test(_RANGE_TEST.value)
  factors = [float(f) for f in _FACTORS.value]
  seeds = seeds_lib.seed_range("benchmark_evaluation", _NUM_SEEDS.value)
  store = harness.RunStore(_OUTDIR.value)
  table = []
  print(f"{'workload':32s} {'factor':>8s} {'peak':>9s} {'max/peak':>9s} "
        f"{'last/peak':>9s} {'loss/ref':>9s} diverged")
  for w in train:
    task = harness.workload_task(w, _DATA_DIR.value)
    peak, ref_loss = tuned_peak(w, task, store)
    for f in factors:
      r = recovery(controller, w, task, store, f, seeds, range_test)
      row = dict(workload=w.name, factor=f, default_lr=w.initial_lr,
                 tuned_peak=peak, reference_val_loss=ref_loss,
                 max_over_peak=float(np.median(r["max_lr"]) / peak),
                 last_over_peak=float(np.median(r["last_lr"]) / peak),
                 loss_over_reference=float(
                     np.median(r["final_val_loss"]) / ref_loss),
                 **r)
      table.append(row)
      print(f"{w.name:32s} {f:8.3g} {peak:9.3g} {row['max_over_peak']:9.3g} "
            f"{row['last_over_peak']:9.3g} {row['loss_over_reference']:9.3f} "
            f"{sum(r['diverged'])}/{len(seeds)}")
  out = dict(controller=_CONTROLLER.value, range_test=dict(range_test),
             suite=_SUITE.value,
             seeds=list(seeds), factors=factors, rows=table)
  given = {item.partition("=")[0] for item in _RANGE_TEST.value}
  suffix = "".join(f"_{k}{v:g}" for k, v in range_test if k in given)
  path = os.path.join(_OUTDIR.value,
                      f"recovery_{_label(_CONTROLLER.value)}{suffix}.json")
  harness.write_json_atomic(path, out)
  print(f"Wrote {path}; medians over seeds.")


if __name__ == "__main__":
  app.run(main)
