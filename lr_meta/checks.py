"""Argument checks shared by every layer: one message shape for bad values.

The library's rule for bad input: the error names the bad value and what is
allowed (``name=value; allowed: ...``). The checks here are the ones several
layers need; a check used by one module stays in that module.
"""

from typing import Any, Optional

__all__ = ["check_int"]


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
