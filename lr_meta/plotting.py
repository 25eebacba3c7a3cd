"""Figure helpers shared by the scripts, the notebooks and the reports.

Learning rates and losses span decades, so their axes are logarithmic;
matplotlib then labels the ticks between decades as ``2x10^0``, which reads
badly next to the LRs users type (0.03, 0.1). ``log_scale`` labels every
tick it shows as a plain number. matplotlib is imported inside the
functions: importing this module costs nothing.
"""

import math

__all__ = ["log_scale", "plain_number"]


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
