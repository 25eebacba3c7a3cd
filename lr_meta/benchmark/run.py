"""One call from names to a finished report: ``run_suite``."""

import time
from typing import Any, Callable, Optional, Sequence

import jax

from lr_meta import distributed
from lr_meta.benchmark import harness
from lr_meta.benchmark import ledger as ledger_lib
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import report
from lr_meta.benchmark import workloads as workloads_lib


def run_suite(suite: str, methods: Sequence[str] = ("all",), *,
              num_seeds: int = 5, outdir: str,
              workloads: Optional[Sequence[str]] = None,
              data_dir: Optional[str] = None, strategy: Optional[str] = None,
              batch_mode: Optional[str] = None, max_batch: int = 64,
              command: str = "", progress_stream=None,
              progress_interval: float = 30.0,
              mesh: Optional[jax.sharding.Mesh] = None,
              log: Callable[[str], Any] = harness.warn,
              ledger: Optional[str] = None, ledger_note: str = "") -> dict:
  """Runs (or resumes) a benchmark and writes its report into ``outdir``.

  Args:
    suite: a suite name (``workloads.KNOWN_SUITES``).
    methods: method names and groups (``methods.resolve``); the references
      ``best_constant`` and ``cosine`` are always run.
    num_seeds: evaluation seeds per (workload, method).
    outdir: where the run cache and the report go; rerunning with the same
      outdir resumes.
    workloads: only these workloads of the suite (None: all of them).
    data_dir: data sets directory (default ``LR_META_DATA_DIR``).
    strategy, batch_mode, max_batch: execution (``lr_meta.runner``); the
      defaults are the measured choices for the backend.
    command: the command line, recorded in the report.
    mesh: ``lr_meta.distributed.global_mesh()`` to spread the runs over the
      processes of a multi-process job; process 0 alone writes ``outdir``.
    log: where one-line reports go (run cache cells that cannot be trusted
      and are recomputed, a stale lock taken over); default stderr.
    ledger: the held-out ledger to append to when a method that is not
      final meets a held-out workload (``lr_meta.benchmark.ledger``); None
      writes nothing.
    ledger_note: what the look is for or what was decided, for its row.

  Returns:
    The ``results.json`` dict.

  Raises:
    lr_meta.rundir.WorkdirBusyError: another process runs a benchmark in
      ``outdir`` (one per outdir, ``harness.outdir_lock``); the message
      names it. Nothing is read or written there then.
  """
  start = time.time()
  chosen = workloads_lib.suite_workloads(suite, workloads)
  resolved = methods_lib.resolve(methods)
  # A controller trained on a held-out workload's task is scored, but its
  # score there is not a transfer result: said once, and in the report.
  heldout = workloads_lib.select(chosen, workloads_lib.HELDOUT)
  contaminated = {m.name: workloads_lib.trained_on_heldout(heldout,
                                                           m.trained_on)
                  for m in resolved}
  contaminated = {k: v for k, v in contaminated.items() if v}
  for name, problems in contaminated.items():
    log(f"{name}: {'; '.join(problems)}: its held-out scores are not "
        "transfer results.")
  with harness.outdir_lock(outdir, log):   # the runs and the report
    runs = harness.run_benchmark(
        chosen, resolved, num_seeds=num_seeds, outdir=outdir,
        data_dir=data_dir, strategy=strategy, batch_mode=batch_mode,
        max_batch=max_batch, progress_stream=progress_stream,
        progress_interval=progress_interval, mesh=mesh, log=log)
    results = report.build_results(
        suite, chosen, resolved, runs.cells, runs.tuning,
        num_seeds=num_seeds, command=command,
        session=report.session_info(time.time() - start),
        run_costs=runs.run_costs, not_applicable=runs.not_applicable)
    results["trained_on_heldout"] = contaminated
    if distributed.is_main_process():
      report.write_report(results, outdir)
      if ledger:
        if ledger_lib.record_look(
            ledger, command=command or f"run_suite({suite!r})",
            methods=[m.name for m in resolved],
            heldout_workloads=[w.name for w in heldout], note=ledger_note):
          log(f"Held-out ledger: the look is entered in {ledger}.")
  return results
