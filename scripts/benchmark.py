"""The self-tuning learning-rate benchmark (lr_meta.benchmark).

  python scripts/benchmark.py --suite=cpu --methods=all --num_seeds=5 \
      --outdir=runs/bench

Tunes the references (constant, cosine, warm-up + cosine, Xu et al.'s step
decay) per workload, runs every self-tuning method (optax.contrib's
schedule-free, Prodigy, DoG, DoWG, Mechanic, D-Adaptation, COCOB,
reduce_on_plateau, the untuned base optimizer, every shipped learned
controller) with its one setting, and writes leaderboard.md, results.json,
profile.png and curves/ to --outdir. Every run is cached there: rerunning
the same command after a kill continues where it stopped; a cached run that
is damaged or was computed under another version of the code is reported in
one line and recomputed. One benchmark per --outdir: a second process on a
busy outdir stops with one line naming the one that holds it.

--methods takes names and the groups all, tuned, self_tuning, plus
controller:<pretrained name or .msgpack path>; --workloads restricts the
suite. Unknown names are errors that list the known ones. A controller file
(not a shipped controller) scored on a held-out workload is a look at
held-out results: it is entered in the held-out ledger (--heldout_ledger,
--ledger_note).

Many processes (``lr_meta.distributed``: ``--num_processes=P`` alone tries P
local ones; ``--coordinator_address --num_processes --process_id`` on each
host) split the runs of every phase; process 0 alone writes --outdir.
"""

import os
import sys

from absl import app
from absl import flags

from lr_meta import benchmark
from lr_meta import distributed
from lr_meta import rundir

_SUITE = flags.DEFINE_string(
    "suite", "tiny", f"Suite: one of {', '.join(benchmark.KNOWN_SUITES)}.")
_METHODS = flags.DEFINE_list(
    "methods", ["all"], "Methods and groups (all, tuned, self_tuning); the "
    "references best_constant and cosine always run.")
_WORKLOADS = flags.DEFINE_list(
    "workloads", None, "Only these workloads of the suite (default: all).")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 5, "Evaluation seeds.")
_OUTDIR = flags.DEFINE_string("outdir", "runs/bench", "Output directory "
                              "(run cache and report; reuse it to resume).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with <dataset>.npz (else $LR_META_DATA_DIR).")
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, ["scan", "chunk", "loop"],
    "Execution strategy (default: the measured one per model and backend).")
_BATCH_MODE = flags.DEFINE_enum(
    "batch_mode", None, ["vmap", "sequential"],
    "Runs one after another or vmapped (default: sequential on CPU).")
_MAX_BATCH = flags.DEFINE_integer(
    "max_batch", 64, "vmap mode: runs per compiled call (lower it for big "
    "models, e.g. ResNet-18, to fit the accelerator's memory).")
_PROGRESS_INTERVAL = flags.DEFINE_float(
    "progress_interval", 30.0, "Seconds between progress lines when stdout "
    "is not a terminal.")
_LEDGER = flags.DEFINE_string(
    "heldout_ledger", None, "The held-out ledger to append to when a "
    "controller file (a method that is not final) meets a held-out "
    "workload; default: the repository's docs/heldout_ledger.md, else "
    "<outdir>/heldout_ledger.md.")
_LEDGER_NOTE = flags.DEFINE_string(
    "ledger_note", "", "What this look at held-out results is for, or what "
    "was decided from it (its ledger row).")
distributed.define_flags()

_REPO_LEDGER = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "docs", "heldout_ledger.md")


def _ledger_path() -> str:
  if _LEDGER.value:
    return _LEDGER.value
  if os.path.exists(_REPO_LEDGER):
    return _REPO_LEDGER
  return os.path.join(_OUTDIR.value, "heldout_ledger.md")


def main(argv):
  del argv
  try:   # bad names fail here, before any data is loaded
    benchmark.suite_workloads(_SUITE.value, _WORKLOADS.value)
    benchmark.check_method_names(_METHODS.value)   # loads no controller
  except ValueError as e:
    sys.exit(f"error: {e}")
  distributed.initialize_or_launch(distributed.config_from_flags())
  command = " ".join(["python", "scripts/benchmark.py"] + [
      a for a in sys.argv[1:]
      if not a.startswith(("--data_dir", "--coordinator_address",
                           "--process_id"))])
  try:
    results = benchmark.run_suite(
        _SUITE.value, _METHODS.value, num_seeds=_NUM_SEEDS.value,
        outdir=_OUTDIR.value, workloads=_WORKLOADS.value,
        data_dir=_DATA_DIR.value, strategy=_STRATEGY.value,
        batch_mode=_BATCH_MODE.value, max_batch=_MAX_BATCH.value,
        command=command, progress_interval=_PROGRESS_INTERVAL.value,
        mesh=distributed.job_mesh(), ledger=_ledger_path(),
        ledger_note=_LEDGER_NOTE.value)
  except rundir.WorkdirBusyError as e:   # one benchmark per outdir
    sys.exit(f"error: {e}")
  session = results["cost"]["session"]
  if distributed.is_main_process():
    print(f"Wrote {_OUTDIR.value}/leaderboard.md, results.json, profile.png, "
          f"curves/ ({session['wall_s']:.0f} s).")


if __name__ == "__main__":
  app.run(main)
