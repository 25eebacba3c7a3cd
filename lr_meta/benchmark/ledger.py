"""The held-out ledger: every look at held-out results, appended as it happens.

Held-out means held out: a controller, observation or reward must never be
tuned on the benchmark's held-out workloads. A benchmark that runs (or reads
from its cache) a held-out cell of a method that is not final (a controller
file under development, ``'controller:<path>'``) appends one row to the
ledger (``docs/heldout_ledger.md`` in the repository): date, command,
methods, workloads and what the look is for or what was decided (the
``note``, ``--ledger_note`` on the command line). Final methods (the tuned
references, optax's LR-free optimizers, fixed schedules and the shipped
controllers) are scored as they are and add nothing.
"""

import datetime
import os
from typing import Optional, Sequence

from lr_meta import optax as lmo
from lr_meta.benchmark import methods as methods_lib

HEADER = ("| date | command | methods | what was looked at | decided |\n"
          "|---|---|---|---|---|\n")
TITLE = ("# Held-out ledger\n\nEvery look at held-out benchmark results of a "
         "method that is not final (``lr_meta.benchmark.ledger``).\n\n")


def is_final(method: str) -> bool:
  """A method whose held-out scores cannot shape it any more: everything but
  a learned controller read from a file (``'controller:<path>'``)."""
  if not method.startswith(methods_lib.CONTROLLER_PREFIX):
    return True
  return method[len(methods_lib.CONTROLLER_PREFIX):] in lmo.pretrained_names()


def _cell(text: str) -> str:
  return " ".join(str(text).split()).replace("|", "\\|")


def record_look(path: str, *, command: str, methods: Sequence[str],
                heldout_workloads: Sequence[str], note: str = "",
                date: Optional[str] = None) -> bool:
  """Appends a row when a non-final method met a held-out workload.

  Args:
    path: the ledger (created with its header when absent).
    command: the command that looked.
    methods: every method of the run (final ones are listed, not counted).
    heldout_workloads: the held-out workloads the run scored.
    note: what the look is for / what was decided ("not stated" if empty).
    date: ``YYYY-MM-DD`` (default: today, UTC).

  Returns:
    Whether a row was written.
  """
  open_methods = [m for m in methods if not is_final(m)]
  if not open_methods or not heldout_workloads:
    return False
  date = date or datetime.datetime.now(datetime.timezone.utc).strftime(
      "%Y-%m-%d")
  row = (f"| {date} | `{_cell(command)}` | {_cell(', '.join(open_methods))} "
         f"(not final) | held-out scores of {_cell(', '.join(heldout_workloads))}"
         f" | {_cell(note) or 'not stated'} |\n")
  new = not os.path.exists(path)
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    if new:
      f.write(TITLE + HEADER)
    f.write(row)
  return True
