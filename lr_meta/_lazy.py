"""Lazy package exports (PEP 562), so importing one module stays cheap.

A package ``__init__`` that re-exports names from heavy submodules (NOS
search pulls rlax and the task stack; the agents pull rlax, distrax and
flashbax) declares them instead of importing them::

  __getattr__, __dir__, __all__ = _lazy.attach(__name__, {
      "search": ("Search", "train_rules"),
      "controller": ("RuleController",),
  })

``lr_meta.nos.Search`` then imports ``lr_meta.nos.search`` on first
access, and ``import lr_meta.nos.controller`` no longer runs the search
module. A name can be
exported under another name with ``"alias=attr"``
(``"make_ppo_train=make_train"``). Submodules are reachable as attributes
too (``lr_meta.nos.search``); a dotted key names a module outside the
package (``"lr_meta.rules.compiler": ("from_dsl",)``).
"""

import importlib
from typing import Any, Callable, Iterable, Mapping


def _split(entry: str) -> tuple[str, str]:
  alias, _, attr = entry.partition("=")
  return alias, attr or alias


def attach(package: str, exports: Mapping[str, Iterable[str]]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
  """``(__getattr__, __dir__, __all__)`` for ``package``'s ``__init__``.

  Args:
    package: the package's ``__name__``.
    exports: ``{submodule: names}`` (a dotted key: an absolute module name);
      each name is ``"name"`` or ``"alias=name"`` (exported as ``alias``).

  Returns:
    The module-level ``__getattr__`` and ``__dir__`` hooks and the sorted
    ``__all__`` (the exported names; submodules are not listed).

  Raises:
    ValueError: a name exported twice.
  """
  where = {}
  for submodule, names in exports.items():
    for entry in names:
      alias, attr = _split(entry)
      if alias in where:
        raise ValueError(f"{package}: {alias!r} exported from both "
                         f"{where[alias][0]!r} and {submodule!r}.")
      where[alias] = (submodule, attr)
  submodules = frozenset(m for m in exports if "." not in m)
  names = sorted(where)

  def module(name: str):
    return importlib.import_module(name if "." in name else
                                   f"{package}.{name}")

  def __getattr__(name: str) -> Any:  # pylint: disable=invalid-name
    if name in where:
      submodule, attr = where[name]
      value = getattr(module(submodule), attr)
    elif name in submodules:
      value = module(name)
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    # Cache it: later lookups are plain module attributes.
    setattr(importlib.import_module(package), name, value)
    return value

  def __dir__() -> list[str]:  # pylint: disable=invalid-name
    return sorted(set(names) | submodules)

  return __getattr__, __dir__, list(names)
