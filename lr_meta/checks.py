"""Argument checks shared by every layer: one message shape for bad values.

The library's rule for bad input: the error names the bad value and what is
allowed (``name=value; allowed: ...``). The checks here are the ones several
layers need; a check used by one module stays in that module.
"""

import math
import numbers
from typing import Any, Optional, Sequence

__all__ = ["check_int", "check_finite", "check_positive_floats"]


def check_int(name: str, value: Any, low: int,
              what: Optional[str] = None) -> None:
  """Raises ``ValueError`` unless ``value`` is an integer ``>= low``.

  Args:
    name: how the caller's user spells the argument (``'config.num_seeds'``).
    value: the value to check; ``bool`` is refused although it is an ``int``.
    low: the smallest allowed value.
    what: optional words on what the number counts, appended in parentheses.
  """
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    suffix = f" ({what})" if what else ""
    raise ValueError(f"{name}={value!r}; allowed: an integer >= {low}"
                     f"{suffix}.")


def check_finite(name: str, value: Any) -> None:
  """Raises ``ValueError`` unless ``value`` is a finite real number."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not math.isfinite(value)):
    raise ValueError(f"{name}={value!r}; allowed: a finite number.")


def check_positive_floats(name: str, values: Sequence[Any]) -> None:
  """Raises ``ValueError`` unless ``values`` is a non-empty sequence of
  finite numbers > 0 (learning rates)."""
  try:
    items = tuple(values)
  except TypeError:
    items = None
  if not items or any(
      isinstance(v, bool) or not isinstance(v, numbers.Real)
      or not math.isfinite(v) or v <= 0 for v in items):
    raise ValueError(f"{name}={values!r}; allowed: a non-empty tuple of "
                     "finite numbers > 0.")
