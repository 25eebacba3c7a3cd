"""The benchmark's report: ``results.json``, ``leaderboard.md``, figures.

``results.json`` holds every cell (per-seed metrics, validation-loss and LR
curves, wall and compile time), the tuning of every reference, the scores
and summaries; everything under a ``"cost"`` key is a measurement of time
(differs between runs), everything else is a function of the runs alone.
``leaderboard.md`` puts the summary over the held-out workloads first, the
self-tuning methods and the tuned references in separate tables, then one
table per workload. ``profile.png`` is the performance profile over the
held-out workloads; ``curves/<workload>.png`` the mean validation loss and
LR against steps.
"""

import collections
import dataclasses
import datetime
import os
from typing import List, Optional, Sequence

import numpy as np

from lr_meta import plotting
from lr_meta import tasks as tasks_lib
from lr_meta.benchmark import harness
from lr_meta.benchmark import methods as methods_lib
from lr_meta.benchmark import scoring
from lr_meta.benchmark import workloads as workloads_lib

RESULTS = "results.json"
LEADERBOARD = "leaderboard.md"
PROFILE = "profile.png"
CURVES_DIR = "curves"
_KIND_TITLES = {methods_lib.SELF_TUNING: "Self-tuning (one setting for every "
                                         "workload)",
                methods_lib.TUNED: "Tuned references (tuned per workload on "
                                   "the validation loss)"}


def _cell_json(cell: harness.Cell, method: methods_lib.Method) -> dict:
  r = cell.record
  return dict(
      workload=cell.workload, method=cell.method, kind=method.kind,
      family=method.family, setting=r["label"], seed=r["seed"],
      test_loss=r["test_loss"], test_accuracy=r["test_accuracy"],
      final_val_loss=r["final_val_loss"],
      final_val_accuracy=r["final_val_accuracy"], diverged=r["diverged"],
      diverged_at_step=r["diverged_at_step"], steps=r["steps"],
      val_loss=r["val_loss"], train_loss=r["train_loss"],
      learning_rate=r["learning_rate"], cost=r["cost"])


def _family_cost(run_costs) -> dict:
  out = collections.defaultdict(dict)
  for (workload, family), costs in run_costs.items():
    out[workload][family] = {
        "runs": len(costs),
        "wall_s": float(sum(c["wall_s"] for c in costs)),
        "compiles": int(sum(c["compiles"] for c in costs)),
        "program_compiles": int(sum(c["program_compiles"] for c in costs)),
        "compile_s": float(sum(c["compile_s"] for c in costs))}
  return dict(out)


BEST_REFERENCE = "best_reference"   # the normaliser's own summary row


def _normalizer(tuning_of_workload: dict) -> str:
  """The strongest tuned reference of a workload: the lowest tuning
  validation loss of its winner (never a test number)."""
  refs = {m: t for m, t in tuning_of_workload.items()
          if m in methods_lib.REFERENCES}
  if not refs:
    raise ValueError("no tuned reference ran on this workload; the "
                     f"references {methods_lib.REFERENCES} always run.")
  return min(refs, key=lambda m: (refs[m]["best_val_loss"],
                                  methods_lib.REFERENCES.index(m)))


def _workload_scores(w, per_method, normalizer):
  seed_scores = {
      name: scoring.apply_divergence(
          [c["test_loss"] for c in cs], [c["test_accuracy"] for c in cs],
          [c["diverged"] for c in cs], w.divergence_loss)
      for name, cs in per_method.items()}
  baseline = (methods_lib.DEFAULT_LR if methods_lib.DEFAULT_LR in seed_scores
              else normalizer)
  scores = scoring.score_workload(seed_scores, normalizer, baseline)
  # Time to target on each method's median validation curve over seeds
  # (a diverged seed is +inf there); the target is the normaliser's median
  # final validation loss, which its own curve reaches at the last step.
  curves = {name: scoring.median_curve(
      [[np.inf if c["diverged"] or v is None else v for v in c["val_loss"]]
       for c in cs]) for name, cs in per_method.items()}
  target = float(curves[normalizer][-1])
  times = {name: scoring.steps_to_target(cs[0]["steps"], curves[name],
                                         target)
           for name, cs in per_method.items()}
  ratios = scoring.step_ratios(times)
  out = {}
  for name, sc in scores.items():
    d = sc._asdict()
    if name == normalizer:
      d["p_reference"] = float("nan")   # itself: no test
    if name == baseline:
      d["p_baseline"] = float("nan")
    out[name] = dict(d, steps_to_target=times[name], step_ratio=ratios[name])
  return out, {"method": normalizer, "target_val_loss": target,
               "eval_seeds_disagree": scoring.seeds_disagree(
                   [np.inf if c["diverged"] else c["test_loss"]
                    for c in per_method[normalizer]])}


def _median_wall(cells) -> float:
  """Median wall time of a method's evaluation runs, leaving out the runs
  that paid a compile (their wall is mostly compiling)."""
  walls = [c["cost"]["wall_s"] for c in cells if not c["cost"]["compiles"]]
  walls = walls or [c["cost"]["wall_s"] for c in cells]
  return float(np.median(walls))


def probe_costs(w, per_method) -> dict:
  """What each method that probes pays on workload ``w``:
  ``{method: {probe_examples, probe_fraction, wall_vs_default}}``.

  ``probe_examples``: examples its probes forward in one run (recorded by
  the harness from the program); ``probe_fraction``: that over the run's
  training examples (batch size x steps); ``wall_vs_default``: the median
  wall time of its evaluation runs over ``default_lr``'s on the same
  workload (runs that compiled left out; NaN without ``default_lr``).
  """
  base = per_method.get(methods_lib.DEFAULT_LR)
  base_wall = _median_wall(base) if base else float("nan")
  out = {}
  for name, cells in per_method.items():
    examples = int(np.median([c["cost"].get("probe_examples", 0)
                              for c in cells]))
    if not examples:
      continue
    out[name] = {"probe_examples": examples,
                 "probe_fraction": examples / (w.batch_size * w.num_steps),
                 "wall_vs_default": _median_wall(cells) / base_wall}
  return out


def _side_summary(side, methods, scores, normalizers):
  """``{method: Summary + time area}`` over one side (module docstring of
  ``scoring``), with the normaliser's own row under ``BEST_REFERENCE``."""
  names = [m.name for m in methods]
  pairs = [(n, w.name) for n in names for w in side if n in scores[w.name]]
  adjusted = dict(zip(pairs, scoring.holm(
      [scores[w][n]["p_reference"] for n, w in pairs])))
  adjusted_base = dict(zip(pairs, scoring.holm(
      [scores[w][n]["p_baseline"] for n, w in pairs])))
  out = {}
  for n in names + [BEST_REFERENCE]:
    groups, outs, base_outs, ratios = [], [], [], []
    for w in side:
      ref = normalizers[w.name]["method"]
      name = ref if n == BEST_REFERENCE else n
      if name not in scores[w.name]:
        continue   # not applicable there (``methods.NotApplicable``)
      sc = scores[w.name][name]
      groups.append(sc["normalized_seeds"])
      ratios.append(sc["step_ratio"])
      if n == BEST_REFERENCE:
        continue
      ref_seeds = scores[w.name][ref]["normalized_seeds"]
      outs.append(scoring.corrected_outcome(
          sc["normalized_seeds"], ref_seeds, adjusted[(n, w.name)]))
      base = scores[w.name].get(methods_lib.DEFAULT_LR)
      base_outs.append(scoring.corrected_outcome(
          sc["normalized_seeds"], base["normalized_seeds"],
          adjusted_base[(n, w.name)]) if base else scoring.TIE)
    summary = scoring.summarize(groups, outs, base_outs)._asdict()
    summary["time_to_target_area"] = scoring.profile_area(ratios)
    out[n] = summary
  return out


def build_results(suite_name: str,
                  suite: Sequence[workloads_lib.Workload],
                  methods: Sequence[methods_lib.Method],
                  cells: Sequence[harness.Cell], tuning: dict, *,
                  num_seeds: int, command: str = "",
                  session: Optional[dict] = None,
                  run_costs: Optional[dict] = None,
                  not_applicable: Optional[dict] = None) -> dict:
  """Everything of one benchmark as a JSON-able dict (see module docstring).

  Args:
    not_applicable: ``{workload: {method: why}}``: a method is scored on
      the workloads it can run on; the summary says on how many.
    run_costs: ``{(workload, family): [cost of every distinct run]}``
      (tuning and evaluation), for the compile and wall-time table.
    session: this invocation's measurements (date, wall time).
  """
  by_name = {m.name: m for m in methods}
  cells_json = [_cell_json(c, by_name[c.method]) for c in cells]
  per = collections.defaultdict(lambda: collections.defaultdict(list))
  for c in cells_json:
    per[c["workload"]][c["method"]].append(c)
  scores, normalizers = {}, {}
  for w in suite:
    normalizer = _normalizer(tuning[w.name])
    scores[w.name], normalizers[w.name] = _workload_scores(
        w, per[w.name], normalizer)
    normalizers[w.name].update(
        setting=tuning[w.name][normalizer]["best"],
        tuning_val_loss=tuning[w.name][normalizer]["best_val_loss"],
        tuning_seeds_disagree=tuning[w.name][normalizer]["seeds_disagree"])
  probes = {w.name: probe_costs(w, per[w.name]) for w in suite}
  summary = {split: _side_summary(workloads_lib.select(suite, split),
                                  methods, scores, normalizers)
             for split in workloads_lib.SPLITS}
  heldout = workloads_lib.select(suite, workloads_lib.HELDOUT)
  norms = {m.name: [scores[w.name][m.name]["normalized"] for w in heldout
                    if m.name in scores[w.name]] for m in methods}
  finite = [v for vs in norms.values() for v in vs if np.isfinite(v)]
  taus = np.geomspace(min([0.9] + finite), min(max([2.0] + finite), 10.0),
                      120)
  step_taus = np.linspace(1.0, scoring.PROFILE_TAU_MAX, 121)
  profile = {"taus": taus.tolist(),
             "heldout": {name: scoring.performance_profile(v, taus).tolist()
                         for name, v in norms.items()},
             "step_taus": step_taus.tolist(),
             "heldout_steps": {
                 m.name: scoring.performance_profile(
                     [scores[w.name][m.name]["step_ratio"] for w in heldout
                      if m.name in scores[w.name]],
                     step_taus).tolist() for m in methods}}
  return harness.json_safe({
      "suite": suite_name, "command": command, "num_seeds": num_seeds,
      "tuning_seeds": list(harness.seeds_lib.seed_range(
          "benchmark_tuning", harness.NUM_TUNING_SEEDS)),
      "evaluation_seeds": list(harness.seeds_lib.seed_range(
          "benchmark_evaluation", num_seeds)),
      "workloads": {w.name: dict(dataclasses.asdict(w), summary=w.summary())
                    for w in suite},
      "methods": {m.name: {"kind": m.kind, "family": m.family,
                           "description": m.description} for m in methods},
      "tuning": tuning, "cells": cells_json, "scores": scores,
      "normalizers": normalizers, "summary": summary, "profile": profile,
      "not_applicable": not_applicable or {},
      "cost": {"session": session or {}, "probes": probes,
               "per_family": _family_cost(run_costs or {})},
  })


# -- leaderboard.md -----------------------------------------------------------


def _or_inf(x) -> float:
  return float("inf") if x is None else x


def _f(x, digits=4) -> str:
  if x is None or (isinstance(x, float) and not np.isfinite(x)):
    return "n/a"
  return f"{x:.{digits}f}"


def _p(x) -> str:
  if x is None or not np.isfinite(x):
    return "n/a"
  return f"{x:.2g}"


def _inf(x, digits=3) -> str:
  """A rank statistic: None is +inf (results.json stores inf as null)."""
  return "∞" if x is None else f"{x:.{digits}f}"


def _interval(s, stat) -> str:
  return (f"{_inf(s[stat])} [{_inf(s[stat + '_low'])}, "
          f"{_inf(s[stat + '_high'])}]")


def _summary_tables(results, split) -> List[str]:
  side = [n for n, w in results["workloads"].items() if w["split"] == split]
  words = {workloads_lib.HELDOUT: "held-out", workloads_lib.TRAIN: "train"}
  if not side:
    return [f"## Summary over the {words[split]} workloads", "",
            f"No {words[split]} workload in this run.", ""]
  summary = results["summary"][split]
  kinds = {n: m["kind"] for n, m in results["methods"].items()}
  kinds[BEST_REFERENCE] = methods_lib.TUNED
  rows = sorted((n for n in summary if summary[n]["num_workloads"]),
                key=lambda n: (_or_inf(summary[n]["median"]),
                               _or_inf(summary[n]["iqm"]), n))
  cis = {n: (_or_inf(summary[n]["median_low"]),
             _or_inf(summary[n]["median_high"])) for n in rows}
  n_seeds = results["num_seeds"]
  lines = [
      f"## Summary over the {len(side)} {words[split]} workloads", "",
      f"Workloads: {', '.join(f'`{n}`' for n in side)}. Normalized loss = "
      "a seed's test loss / the mean test loss of the workload's strongest "
      "tuned reference (chosen by tuning validation loss; "
      f"`{BEST_REFERENCE}` is that reference's own row), pooled over "
      f"{len(side)} workloads x {n_seeds} seeds; [95% bootstrap interval "
      "over workloads and seeds]. W/T/L: Mann-Whitney U, Holm-corrected over "
      "every method and workload of this side, p < 0.05. A diverged seed is "
      "counted apart and ranks worst (∞). Time to target: area under the "
      "steps-to-target performance profile up to a ratio of "
      f"{scoring.PROFILE_TAU_MAX:g} (1 = fastest everywhere). "
      "'Not distinguishable from' lists the methods whose median interval "
      "overlaps this one's.", "",
      "| # | method | kind | median norm. loss [95% CI] | IQM [95% CI] | "
      "W / T / L vs reference | W / T / L vs default LR | diverged seeds | "
      "time-to-target area | not distinguishable from |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for i, n in enumerate(rows):
    s = summary[n]
    same = [str(j + 1) for j, other in enumerate(rows) if other != n and
            scoring.intervals_overlap(cis[n], cis[other])]
    wtl = ("-" if n == BEST_REFERENCE else
           f"{s['wins']} / {s['ties']} / {s['losses']}")
    base = ("-" if n in (BEST_REFERENCE, methods_lib.DEFAULT_LR) else
            f"{s['baseline_wins']} / {s['baseline_ties']} / "
            f"{s['baseline_losses']}")
    cover = ("" if s["num_workloads"] == len(side) else
             f" ({s['num_workloads']} of {len(side)} workloads)")
    lines.append(
        f"| {i + 1} | `{n}`{cover} | {kinds[n]} | {_interval(s, 'median')} | "
        f"{_interval(s, 'iqm')} | {wtl} | {base} | "
        f"{s['diverged']} / {s['num_seeds']} | "
        f"{_f(s['time_to_target_area'], 3)} | "
        f"{', '.join(same) if same else 'none'} |")
  lines.append("")
  return lines


def _bits(loss) -> str:
  return "n/a" if loss is None else f"{loss / np.log(2):.4f}"


def score_table(header: str, scores: dict, settings: dict,
                kinds: dict, sequence: bool = False) -> List[str]:
  """Markdown lines: ``header``, then one row per method of one workload.

  Args:
    header: the sentence above the table (task, steps, seeds).
    scores: ``{method: WorkloadScore or its _asdict()}`` (optionally with
      ``steps_to_target``).
    settings: ``{method: the setting it ran with}``.
    kinds: ``{method: 'tuned' or 'self_tuning'}``; tuned rows first, each
      group by median normalised loss.
    sequence: a language model's workload: bits per character next to the
      loss (test loss / ln 2).
  """
  scores = {n: s._asdict() if hasattr(s, "_asdict") else s
            for n, s in scores.items()}
  extra = " bits/char |" if sequence else ""
  lines = [header, "",
           "| method | kind | setting | test loss (finite seeds) |" + extra +
           " test accuracy | diverged | median norm. loss | p vs reference "
           "| p vs baseline | steps to target |",
           "|---|---|---|---|---|---|---|---|---|---|" +
           ("---|" if sequence else "")]
  order = sorted(scores, key=lambda n: (kinds[n] != methods_lib.TUNED,
                                        _or_inf(scores[n]["normalized"]), n))
  for n in order:
    s = scores[n]
    steps = s.get("steps_to_target", "")
    steps = "never" if steps is None else (
        f"{steps:.0f}" if steps != "" else "")
    lines.append(
        f"| `{n}` | {kinds[n]} | {settings.get(n, '')} "
        f"| {_f(s['loss_mean'])} ({_f(s['loss_std'])}) "
        + (f"| {_bits(s['loss_mean'])} " if sequence else "") +
        f"| {_f(s['accuracy_mean'])} ({_f(s['accuracy_std'])}) "
        f"| {s['diverged']}/{s['num_seeds']} | {_inf(s['normalized'])} "
        f"| {_p(s['p_reference'])} | {_p(s['p_baseline'])} | {steps} |")
  return lines


def _workload_table(results, name) -> List[str]:
  w = results["workloads"][name]
  settings = {}
  for c in results["cells"]:
    if c["workload"] == name:
      settings[c["method"]] = c["setting"]
  norm = results["normalizers"][name]
  header = (f"{w['description']}: {w['summary']}. Normalized by "
            f"`{norm['method']}` ({norm['setting']}, tuning validation loss "
            f"{_f(norm['tuning_val_loss'])}); target validation loss "
            f"{_f(norm['target_val_loss'])} (its median final validation "
            "loss on the evaluation seeds; steps to target on each method's "
            "median validation curve); p: Mann-Whitney U, uncorrected; "
            "baseline: "
            f"`{methods_lib.DEFAULT_LR}`.")
  flags = []
  if norm["tuning_seeds_disagree"]:
    flags.append("the reference's tuning seeds disagree (spread > 10% or a "
                 "divergence)")
  if norm["eval_seeds_disagree"]:
    flags.append("the reference's evaluation seeds disagree (test-loss "
                 "spread > 10% or a divergence)")
  sequence = w["dataset"] in tasks_lib.SEQUENCE_DATASETS
  lines = [f"## `{name}` ({w['split']})", ""] + score_table(
      header, results["scores"][name], settings,
      {n: m["kind"] for n, m in results["methods"].items()}, sequence)
  tuning = results["tuning"].get(name, {})
  if tuning:
    lines += ["", "Tuning: " + "; ".join(
        f"`{m}` {len(t['grid'])} settings"
        + (f" ({t['extended_by']} added past an edge)"
           if t.get("extended_by") else "")
        + f" x {len(t['tuning_seeds'])} seeds, best {t['best']} "
        f"({t['cost']['wall_s']:.0f} s)" for m, t in tuning.items()) + "."]
  edge = [m for m, t in tuning.items() if t["best_at_grid_edge"]]
  if edge:
    flags.append("best setting still at the edge of its LR grid after "
                 f"extending it: {', '.join(f'`{m}`' for m in edge)}")
  if flags:
    lines.append("Flags: " + "; ".join(flags) + ".")
  for m, why in results.get("not_applicable", {}).get(name, {}).items():
    lines.append(f"Not applicable here: `{m}`: {why}.")
  lines.append("")
  return lines


def _cost_table(results) -> List[str]:
  per = results["cost"]["per_family"]
  lines = ["## Cost", "",
           "Per (workload, method family): distinct runs, their wall time, "
           "XLA compiles of training programs (all compiles, including "
           "small helpers) and compile time. Measured when each run was "
           "executed (a resumed benchmark keeps the first measurement).", "",
           "| workload | family | runs | wall s | program compiles (all) | "
           "compile s |", "|---|---|---|---|---|---|"]
  total_wall = total_compile = 0.0
  for workload, families in per.items():
    for family, c in families.items():
      total_wall += c["wall_s"]
      total_compile += c["compile_s"]
      lines.append(f"| `{workload}` | {family} | {c['runs']} | "
                   f"{c['wall_s']:.1f} | {c['program_compiles']} "
                   f"({c['compiles']}) | {c['compile_s']:.1f} |")
  session = results["cost"]["session"]
  lines += ["", f"Sum of run wall times {total_wall:.0f} s, of which "
                f"compiling {total_compile:.0f} s."]
  if session:
    lines.append(f"This invocation: {session.get('wall_s', 0):.0f} s wall "
                 f"({session.get('date', '')}).")
  return lines + [""]


def _probe_table(results) -> List[str]:
  probes = results["cost"].get("probes", {})
  names = sorted({m for per in probes.values() for m in per})
  if not names:
    return []
  lines = ["## What the probing methods pay", "",
           "Per workload where the method ran: the examples its validation "
           "probes forward in one run, as a share of the run's training "
           "examples, and the median wall time of its evaluation runs over "
           "`default_lr`'s (the same base optimizer without a controller; "
           "runs that compiled left out; wall times are as noisy as the "
           "machine's load). The scores above do not charge it.", "",
           "| method | workload | probe examples / run | share of training "
           "examples | wall time vs default LR |", "|---|---|---|---|---|"]
  for name in names:
    for workload, per in probes.items():
      if name in per:
        p = per[name]
        lines.append(f"| `{name}` | `{workload}` | {p['probe_examples']} | "
                     f"{p['probe_fraction']:.1%} | "
                     f"{_f(p['wall_vs_default'], 2)}x |")
  return lines + [""]


def leaderboard(results) -> str:
  """The Markdown leaderboard (summary first, then per-workload tables)."""
  session = results["cost"]["session"]
  lines = [f"# lr_meta self-tuning benchmark: suite `{results['suite']}`", "",
           f"{results['num_seeds']} evaluation seeds "
           f"{results['evaluation_seeds'][0]}.."
           f"{results['evaluation_seeds'][-1]}"
           f", tuning seeds {results['tuning_seeds']}; every score is "
           "relative to each workload's strongest tuned reference. Command: "
           f"`{results['command']}`"
           + (f", {session.get('date', '')}" if session else "") + ".", ""]
  for name, problems in results.get("trained_on_heldout", {}).items():
    lines += [f"**`{name}` is not held out from this suite**: "
              f"{'; '.join(problems)}.", ""]
  lines += _summary_tables(results, workloads_lib.HELDOUT)
  lines += _summary_tables(results, workloads_lib.TRAIN)
  lines += _probe_table(results)
  lines += ["## Methods", ""] + [
      f"- `{n}` ({m['kind']}): {m['description']}"
      for n, m in results["methods"].items()] + [""]
  for name in results["workloads"]:
    lines += _workload_table(results, name)
  lines += _cost_table(results)
  return "\n".join(lines)


# -- figures ------------------------------------------------------------------


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _style(results, name, i):
  plt = _pyplot()
  colors = plt.get_cmap("tab20").colors
  tuned = results["methods"][name]["kind"] == methods_lib.TUNED
  return dict(color=colors[i % len(colors)], linestyle="--" if tuned else "-",
              linewidth=1.2)


def plot_profile(results, path):
  """Performance profiles over the held-out workloads: of normalised loss,
  and of steps to the target (AlgoPerf's)."""
  plt = _pyplot()
  n = sum(w["split"] == workloads_lib.HELDOUT
          for w in results["workloads"].values())
  prof = results["profile"]
  fig, (ax, ax_steps) = plt.subplots(1, 2, figsize=(15, 5))
  for i, name in enumerate(prof["heldout"]):
    style = _style(results, name, i)
    ax.plot(prof["taus"], prof["heldout"][name], label=name,
            drawstyle="steps-post", **style)
    ax_steps.plot(prof["step_taus"], prof["heldout_steps"][name], label=name,
                  drawstyle="steps-post", **style)
  plotting.log_scale(ax, "x")
  ax.set(xlabel="tau (normalized test loss = method / best tuned reference)",
         ylabel="fraction of held-out workloads with normalized loss <= tau",
         ylim=(-0.02, 1.02),
         title=f"Suite {results['suite']!r}, {n} held-out workloads "
               "(dashed: tuned)")
  ax.axvline(1.0, color="grey", linewidth=0.8)
  ax_steps.set(xlabel="tau (steps to target / fastest method's)",
               ylabel="fraction of held-out workloads reached within tau",
               ylim=(-0.02, 1.02), title="Time to target (AlgoPerf profile)")
  ax_steps.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_curves(results, workload, path):
  """Mean validation loss and LR against steps on one workload."""
  plt = _pyplot()
  curves = collections.defaultdict(list)
  for c in results["cells"]:
    if c["workload"] == workload:
      curves[c["method"]].append(c)
  fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(14, 4.5))
  lowest, reference_start = np.inf, None
  for i, (name, cs) in enumerate(curves.items()):
    steps = cs[0]["steps"]
    style = _style(results, name, i)
    val = np.mean(np.array([c["val_loss"] for c in cs], float), axis=0)
    lowest = min(lowest, float(np.min(val)))
    if name == methods_lib.REFERENCE:
      reference_start = float(val[0])
    ax_loss.plot(steps, val, label=name, **style)
    # None (a method without a step size) reads as NaN. Runs that record
    # the LR of every update (``lr_steps``) draw it as a step function.
    lr = np.array([c["learning_rate"] for c in cs], float)
    count = np.isfinite(lr).sum(0)    # mean over the seeds that have one
    lr = np.where(count > 0, np.nansum(lr, 0) / np.maximum(count, 1), np.nan)
    if np.any(np.isfinite(lr) & (lr > 0)):
      ax_lr.plot(cs[0].get("lr_steps", steps), lr, label=name,
                 drawstyle="steps-post" if "lr_steps" in cs[0] else "default",
                 **style)
  # Diverged runs (capped losses) would flatten the rest: they leave the
  # plot above twice the reference's first validation loss.
  if reference_start is not None and np.isfinite(lowest):
    ax_loss.set_ylim(0.9 * lowest, 2.0 * max(reference_start, lowest))
  last = max(c["steps"][-1] for cs in curves.values() for c in cs)
  ax_loss.set(xlabel="step", ylabel="validation loss (mean over seeds)",
              title=f"{workload}: validation loss", xlim=(0, last))
  ax_lr.set(xlabel="step", ylabel="learning rate / step size (mean over "
                                  "seeds)",
            title=f"{workload}: learning rate", xlim=(0, last))
  plotting.log_scale(ax_loss, "y")
  plotting.log_scale(ax_lr, "y")
  ax_lr.legend(*ax_loss.get_legend_handles_labels(), fontsize=6,
               loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_report(results: dict, outdir: str):
  """Writes results.json, leaderboard.md, profile.png and curves/."""
  os.makedirs(os.path.join(outdir, CURVES_DIR), exist_ok=True)
  harness.write_json_atomic(os.path.join(outdir, RESULTS), results)
  with open(os.path.join(outdir, LEADERBOARD), "w") as f:
    f.write(leaderboard(results))
  plot_profile(results, os.path.join(outdir, PROFILE))
  for name in results["workloads"]:
    plot_curves(results, name, os.path.join(outdir, CURVES_DIR,
                                            f"{name}.png"))


def session_info(wall_s: float) -> dict:
  return {"date": datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%d %H:%M UTC"), "wall_s": float(wall_s)}
