"""Progress of long loops that reads well on a terminal and in a log file.

On a terminal, a tqdm bar; otherwise (output redirected to a file, a
notebook's captured stream, CI) one plain line every ``interval`` seconds
and one when the last unit is done, never the carriage returns a bar writes
into a log. The ETA is measured on the work actually done here: units may
weigh differently (runs of different lengths) and some may come free (a
resumed run's finished iterations, cached results).
"""

import sys
import time
from typing import Optional, TextIO

__all__ = ["Progress", "duration", "is_terminal"]


def duration(seconds: float) -> str:
  """``'1h02m03s'``, ``'2m03s'``; ``'?'`` when not finite."""
  if seconds != seconds or seconds in (float("inf"), float("-inf")):
    return "?"
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def is_terminal(stream: TextIO) -> bool:
  return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
  """``done`` of ``total`` units, elapsed time and an ETA.

  Args:
    total: units of the whole loop (iterations, runs).
    desc: what is counted, the prefix of every plain line (``[desc]``).
    total_work: the work of all units (e.g. steps) for the ETA; default
      ``total`` (every unit weighs 1).
    initial: units (and work) already done before this loop (a resume).
    stream: where to write (default ``sys.stdout``).
    interval: seconds between plain lines (the first update prints one).
    warmup: timed updates left out of the ETA's rate: the first iteration
      of a jitted loop includes its compilation (minutes, against seconds
      per later iteration), so counting it would overstate the ETA.
  """

  def __init__(self, total: int, desc: str, *,
               total_work: Optional[float] = None, initial: int = 0,
               stream: Optional[TextIO] = None, interval: float = 30.0,
               warmup: int = 0):
    self.total, self.desc = total, desc
    self.total_work = float(total if total_work is None else total_work)
    self.done, self.work = initial, float(initial)
    self.timed_work, self.timed_seconds = 0.0, 0.0
    self.warmup = warmup
    self.stream = stream or sys.stdout
    self.interval = interval
    self.start = self.last_update = time.time()
    self.last_line = 0.0      # the first update prints a line
    self.bar = None
    if is_terminal(self.stream):
      import tqdm  # pylint: disable=g-import-not-at-top
      self.bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                           file=self.stream, dynamic_ncols=True)

  def eta(self) -> float:
    """Seconds left at the measured rate of work (NaN before any)."""
    if self.timed_work <= 0:
      return float("nan")
    rate = self.timed_work / max(self.timed_seconds, 1e-9)
    return max(self.total_work - self.work, 0.0) / rate

  def line(self, info: str = "") -> str:
    return (f"[{self.desc}] {self.done}/{self.total} "
            f"({100 * self.done / max(self.total, 1):.0f}%), elapsed "
            f"{duration(time.time() - self.start)}, ETA "
            f"{duration(self.eta())}" + (f", {info}" if info else ""))

  def update(self, n: int = 1, info: str = "", *,
             work: Optional[float] = None, seconds: Optional[float] = None,
             cached: bool = False):
    """``n`` more units done.

    Args:
      n: units.
      info: shown after the counts (e.g. the last return).
      work: their work (default ``n``).
      seconds: the time they took (default: since the last update).
      cached: they came free (results from a cache); they count as done but
        do not speed up the ETA.
    """
    now = time.time()
    work = float(n if work is None else work)
    if not cached and self.warmup > 0:
      self.warmup -= 1
    elif not cached:
      self.timed_work += work
      self.timed_seconds += (now - self.last_update if seconds is None
                             else seconds)
    self.last_update = now
    self.done += n
    self.work += work
    if self.bar is not None:
      eta = self.eta()
      self.bar.set_postfix_str(
          info + (f" ETA {duration(eta)}" if eta == eta else ""),
          refresh=False)
      self.bar.update(n)
      return
    if now - self.last_line >= self.interval or self.done >= self.total:
      self.last_line = now
      print(self.line(info), file=self.stream, flush=True)

  def extend(self, n: int, work: Optional[float] = None):
    """``n`` more units (of ``work``, default ``n``) joined the loop, e.g.
    grid points added past an edge while it ran."""
    self.total += n
    self.total_work += float(n if work is None else work)
    if self.bar is not None:
      self.bar.total = self.total
      self.bar.refresh()

  def close(self, message: str = ""):
    """Ends the bar; ``message`` (if any) as a last line."""
    if self.bar is not None:
      self.bar.close()
    if message:
      print(f"[{self.desc}] {message}", file=self.stream, flush=True)
