"""Figure helpers shared by the scripts, the notebooks and the reports.

Learning rates and losses span decades, so their axes are logarithmic;
matplotlib then labels the ticks between decades as ``2x10^0``, which reads
badly next to the LRs users type (0.03, 0.1). ``log_scale`` labels every
tick it shows as a plain number. Every figure's title names its task and
its x axis shows the whole run. matplotlib is imported inside the
functions, so importing this module loads only numpy.
"""

import math
import os
from typing import Any, Sequence, Tuple

import numpy as np

__all__ = ["evaluation_figures", "log_scale", "plain_number",
           "schedule_figure", "task_title", "training_curves_figure"]


def plain_number(x: float) -> str:
  """A tick label: ``0.03``, ``0.1``, ``2``, ``1e-05`` (``'%g'``, 3 digits)."""
  if x == 0 or not math.isfinite(x):
    return f"{x:g}"
  return f"{x:.3g}"


def log_scale(ax, axis: str = "y") -> None:
  """Sets a log scale on ``ax``'s ``axis`` ('x' or 'y') with plain labels.

  Decades are labelled as numbers (``0.01``, ``0.1``, ``1``); when the axis
  spans less than about two decades, matplotlib's usual choice of minor
  ticks (2, 3, 5 times a decade, or all) is labelled too, also as numbers.
  """
  import matplotlib.ticker as ticker  # pylint: disable=g-import-not-at-top

  class PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, as plain numbers."""

    def _num_to_string(self, x, vmin, vmax):
      return plain_number(x)

  if axis not in ("x", "y"):
    raise ValueError(f"axis={axis!r}; allowed: 'x' or 'y'.")
  (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
  target = ax.yaxis if axis == "y" else ax.xaxis
  target.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
  target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False,
                                               minor_thresholds=(2, 0.5)))


def task_title(task_config, num_steps: int) -> str:
  """``'mnist1d mlp, momentum, batch 128, 300 steps'`` from a task config."""
  return (f"{task_config['dataset']} {task_config['model']}, "
          f"{task_config['optimizer']}, batch {task_config['batch_size']}, "
          f"{num_steps} steps")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def schedule_figure(learning_rates: Sequence[float], steps_per_decision: int,
                    lr0: float, title: str):
  """A controller's LR schedule over the whole run (a matplotlib Figure).

  Args:
    learning_rates: the LR of each decision window (the first is already the
      controller's: its first decision acts before the first step).
    steps_per_decision: K.
    lr0: the initial LR, marked at step 0.
    title: names the task.
  """
  plt = _pyplot()
  lrs = np.asarray(learning_rates, np.float64)
  num_steps = len(lrs) * steps_per_decision
  fig, ax = plt.subplots(figsize=(6, 3.5))
  ax.plot(np.arange(len(lrs) + 1) * steps_per_decision, np.append(lrs, lrs[-1]),
          drawstyle="steps-post", label="controller")
  ax.plot([0], [lr0], "ko", markersize=4, label=f"lr0 = {lr0:g}")
  ax.set(xlabel="step", ylabel="learning rate", xlim=(0, num_steps),
         title=title)
  log_scale(ax, "y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def evaluation_figures(methods: Sequence[Any], title: str, num_steps: int,
                       outdir: str) -> Tuple[str, str]:
  """``schedule.png`` and ``val_loss.png`` of an evaluation, in ``outdir``.

  Args:
    methods: rows with ``label``, ``controller``, ``lr_steps`` /
      ``learning_rates`` (the LR from each of those steps on),
      ``val_steps`` / ``val_mean`` / ``val_std`` and, for controllers,
      ``lr0`` (``lr_meta.evaluation.MethodResult``).
    title: the task (``task_title``), in both titles.
    num_steps: the run's steps: both x axes show the whole run.
    outdir: where the files go.

  Returns:
    The two paths.
  """
  plt = _pyplot()
  paths = (os.path.join(outdir, "schedule.png"),
           os.path.join(outdir, "val_loss.png"))
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for m in methods:
    steps = np.append(m.lr_steps, num_steps)     # the last LR to the end
    lrs = np.append(m.learning_rates, m.learning_rates[-1])
    line, = ax.plot(steps, lrs, drawstyle="steps-post", label=m.label)
    if m.controller:    # its first decision acts before the first step
      ax.plot([0], [m.lr0], "o", color=line.get_color(), markersize=4)
  ax.set(xlabel="step", ylabel="learning rate", xlim=(0, num_steps),
         title=f"LR schedules (dots: controllers' lr0; controllers: mean "
               f"over seeds)\n{title}")
  log_scale(ax, "y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(paths[0], dpi=100)
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for m in methods:
    ax.plot(m.val_steps, m.val_mean, label=m.label)
    ax.fill_between(m.val_steps, m.val_mean - m.val_std,
                    m.val_mean + m.val_std, alpha=0.2)
  ax.set(xlabel="step", ylabel="validation loss", xlim=(0, num_steps),
         title=f"Validation loss (mean ± std over seeds)\n{title}")
  log_scale(ax, "y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(paths[1], dpi=100)
  plt.close("all")
  return paths


def training_curves_figure(runs: Sequence[Tuple[str, Sequence[Any]]],
                           columns: Sequence[str], title: str):
  """Training scalars per iteration, one panel per column (a Figure).

  Args:
    runs: ``(label, rows)`` per run; ``rows`` as ``lr_meta.rundir.
      read_metrics`` returns them (dicts with ``iteration`` and the columns,
      values as strings or numbers). A run without a column is left out of
      that panel; empty or non-finite values are gaps.
    columns: the scalars to draw, e.g. ``('episode_return', 'mean_action')``.
    title: names the task(s), above the panels.

  Every panel's y range holds every finite point of every run (nothing is
  clipped) and its x axis runs from 0 to the longest run's last iteration.
  """
  plt = _pyplot()
  if not columns:
    raise ValueError("columns=(); allowed: one or more metrics.csv columns.")
  fig, axes = plt.subplots(len(columns), 1, sharex=True, squeeze=False,
                           figsize=(7, 2.4 * len(columns) + 0.8))
  last = 1
  for ax, column in zip(axes[:, 0], columns):
    for label, rows in runs:
      points = [(float(r["iteration"]), _as_float(r.get(column)))
                for r in rows if column in r]
      if not points:
        continue
      x, y = np.asarray(points, np.float64).T
      last = max(last, int(x.max()))
      ax.plot(x, y, label=label, linewidth=1.2)
    ax.set_ylabel(column.replace("_", " "))
    ax.margins(y=0.08)        # autoscaled to all points, with room
    ax.grid(alpha=0.3)
  axes[0, 0].set_title(title)
  axes[0, 0].legend(fontsize=7)
  axes[-1, 0].set(xlabel="training iteration", xlim=(0, last))
  fig.tight_layout()
  return fig


def _as_float(value) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return float("nan")
