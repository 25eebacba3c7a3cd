"""Transfer: schedules tuned on one workload, run on others (Xu 2019 Table 2).

Xu, Dai, Kemp & Metz 2019, Table 2: a controller trained on CIFAR-10 is run
on Fashion-MNIST against the step-decay schedule hand-tuned on CIFAR-10 and
carried over. ``run_transfer`` does this for any controllers and any tuned
references of the benchmark:

1. the references are tuned on the ``source`` workload (its tuning seeds,
   by final validation loss, as the benchmark tunes them);
2. on every ``target`` workload, the controllers, each source winner as a
   fixed schedule (``'schedule:<spec>'``, re-expressed for the target's
   horizon) and the same references tuned on the target itself run on the
   evaluation seeds; the benchmark's report is written for them;
3. ``transfer_table`` puts, per target, each method's test loss next to the
   first controller's, with Welch's t-test.

Every run goes through the benchmark's run cache: rerunning resumes, and the
source and target runs share cached runs with ``scripts/benchmark.py`` runs
in the same ``outdir``.
"""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lr_meta import distributed
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import run as run_lib
from lr_meta.benchmark import scoring
from lr_meta.benchmark import workloads as workloads_lib

DEFAULT_REFERENCES = ("xu2019_step_decay", methods_lib.REFERENCE)


def source_winners(source: str, references: Sequence[str], *,
                   num_seeds: int, outdir: str,
                   data_dir: Optional[str] = None, **run_kwargs
                   ) -> Dict[str, str]:
  """``{reference: winning schedule label}`` tuned on the ``source`` workload.

  Raises:
    ValueError: a reference is not a tuned method.
  """
  workload = workloads_lib.get_workload(source)
  methods = [methods_lib.get_method(r) for r in references]
  untuned = [m.name for m in methods if m.kind != methods_lib.TUNED]
  if untuned:
    tuned = [n for n in methods_lib.STATIC_METHODS
             if methods_lib.METHODS[n].kind == methods_lib.TUNED]
    raise ValueError(f"references {untuned} are not tuned methods; "
                     f"allowed: {tuned}.")
  runs = harness.run_benchmark([workload], methods, num_seeds=num_seeds,
                               outdir=outdir, data_dir=data_dir, **run_kwargs)
  return {m.name: runs.tuning[workload.name][m.name]["best"]
          for m in methods}


def transferred_name(label: str) -> str:
  """The method name of a schedule carried over from another workload."""
  return methods_lib.SCHEDULE_PREFIX + label


def run_transfer(suite: str, source: str, targets: Sequence[str],
                 controllers: Sequence[str],
                 references: Sequence[str] = DEFAULT_REFERENCES, *,
                 num_seeds: int = 10, outdir: str,
                 data_dir: Optional[str] = None, command: str = "",
                 **run_kwargs) -> dict:
  """Tunes on ``source``, evaluates on ``targets`` (module docstring).

  Args:
    suite: the suite that holds the targets (its report layout).
    source: the workload the controllers were trained on (its references
      are tuned there).
    targets: workload names of ``suite`` to transfer to.
    controllers: method names ``'controller:<name or path>'``.
    references: tuned methods; each is tuned on the source (and carried
      over) and on each target.
    num_seeds: evaluation seeds (also of the source's own evaluation).
    outdir: the run cache and the report (``leaderboard.md`` of the targets,
      ``results.json`` with a ``transfer`` entry, ``transfer.md``).
    data_dir, command, run_kwargs: as ``run_suite``.

  Returns:
    The targets' ``results.json`` dict with ``transfer = {'source', 'winners',
    'controllers'}``.
  """
  for c in controllers:
    if not c.startswith(methods_lib.CONTROLLER_PREFIX):
      raise ValueError(f"controller {c!r}; allowed: "
                       f"'{methods_lib.CONTROLLER_PREFIX}<name or path>'.")
  workloads_lib.suite_workloads(suite, targets)   # names checked first
  winners = source_winners(source, references, num_seeds=num_seeds,
                           outdir=outdir, data_dir=data_dir, **run_kwargs)
  carried = [transferred_name(w) for w in winners.values()]
  results = run_lib.run_suite(
      suite, list(controllers) + carried + list(references),
      num_seeds=num_seeds, outdir=outdir, workloads=list(targets),
      data_dir=data_dir, command=command, **run_kwargs)
  results["transfer"] = {"source": source, "winners": winners,
                         "controllers": list(controllers)}
  if distributed.is_main_process():
    harness.write_json_atomic(os.path.join(outdir, "results.json"), results)
    with open(os.path.join(outdir, "transfer.md"), "w") as f:
      f.write(transfer_table(results))
  return results


def transfer_table(results: dict) -> str:
  """Markdown: per target, every method against the first controller."""
  info = results["transfer"]
  first = info["controllers"][0]
  origin = {transferred_name(label): f"{ref} tuned on {info['source']}: "
            f"{label}" for ref, label in info["winners"].items()}
  per = {}
  for c in results["cells"]:
    per.setdefault(c["workload"], {}).setdefault(c["method"], []).append(c)
  lines: List[str] = [
      f"Transfer from `{info['source']}` (references tuned there and carried "
      "over as fixed schedules). Test loss and accuracy: mean (std) over "
      f"seeds; p: Welch's t-test of the test loss against `{first}`.", ""]
  kind = {name: m["kind"] for name, m in results["methods"].items()}
  order = lambda name: (name not in info["controllers"], name not in origin,
                        kind[name] != methods_lib.TUNED)
  for workload, by_method in per.items():
    if first not in by_method:
      continue
    by_method = {n: by_method[n] for n in sorted(by_method, key=order)}
    ref_loss = [c["test_loss"] for c in by_method[first]]
    lines += [f"### {workload}", "",
              "| method | test loss | test accuracy | diverged | p (loss) |",
              "|---|---|---|---|---|"]
    for name, cells in by_method.items():
      loss = np.asarray([c["test_loss"] for c in cells], np.float64)
      acc = np.asarray([c["test_accuracy"] for c in cells], np.float64)
      label = origin.get(name, name)
      if kind[name] == methods_lib.TUNED:
        label = f"{name} tuned on {workload}: {cells[0]['setting']}"
      p = "" if name == first else f"{scoring.welch_p(loss, ref_loss):.2g}"
      lines.append(f"| {label} | {loss.mean():.4f} ({loss.std():.4f}) | "
                   f"{acc.mean():.4f} ({acc.std():.4f}) | "
                   f"{sum(bool(c['diverged']) for c in cells)} | {p} |")
    lines.append("")
  return "\n".join(lines)
