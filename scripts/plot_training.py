"""Training curves of one or more controller runs, side by side.

  python scripts/plot_training.py --workdir runs/a --workdir runs/b \
      [--label "K = 1" --label "K = 10"] \
      [--column episode_return --column mean_action] --out training.png

Reads each run directory's ``metrics.csv`` (``scripts/train_controller.py``,
``scripts/train_generalist.py``) and draws each column per training
iteration, one panel per column, every run in every panel; nothing is
clipped. The title names each run's task (its ``config.json``) unless
``--title`` is given.
"""

import os

from absl import app
from absl import flags

from lr_meta import plotting
from lr_meta import rundir

_WORKDIRS = flags.DEFINE_multi_string("workdir", None, "A run directory "
                                      "(repeat for several runs).")
_LABELS = flags.DEFINE_multi_string(
    "label", None, "A legend label per --workdir, in order (default: the "
    "directory's name).")
_COLUMNS = flags.DEFINE_multi_string(
    "column", ["episode_return", "mean_action"],
    "metrics.csv columns to draw, one panel each.")
_TITLE = flags.DEFINE_string("title", None, "Figure title (default: the "
                             "runs' tasks).")
_OUT = flags.DEFINE_string("out", None, "Output image (.png, .pdf, ...).")


def _task(workdir: str) -> str:
  """The run's task from its config.json (a distribution: its name)."""
  config = rundir.read_config(workdir)
  if "task" not in config:
    return f"{os.path.basename(os.path.normpath(workdir))}: task distribution"
  env = config.env
  steps = env.num_decisions * env.get("steps_per_decision", 1)
  return plotting.task_title(config.task, steps)


def main(argv):
  del argv
  workdirs = _WORKDIRS.value or []
  labels = _LABELS.value or [os.path.basename(os.path.normpath(w))
                             for w in workdirs]
  if len(labels) != len(workdirs):
    raise app.UsageError(f"{len(labels)} --label for {len(workdirs)} "
                         "--workdir; allowed: none or one per --workdir.")
  runs = []
  for workdir in workdirs:
    rows = rundir.read_metrics(workdir)
    if not rows:
      raise app.UsageError(f"--workdir={workdir!r} holds no metrics.csv "
                           "rows; allowed: a scripts/train_controller.py or "
                           "scripts/train_generalist.py run directory.")
    runs.append(rows)
  missing = [c for c in _COLUMNS.value
             if not any(c in rows[0] for rows in runs)]
  if missing:
    known = sorted({k for rows in runs for k in rows[0]})
    raise app.UsageError(f"--column {missing} not in any run's metrics.csv; "
                         f"allowed: {known}.")
  title = _TITLE.value or "\n".join(sorted({_task(w) for w in workdirs}))
  fig = plotting.training_curves_figure(list(zip(labels, runs)),
                                        _COLUMNS.value, title)
  fig.savefig(_OUT.value, dpi=100)
  print(f"Wrote {_OUT.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
