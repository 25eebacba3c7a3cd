"""Config files: loading by path, sibling configs, command-line flags.

A config file is a Python file with ``get_config()`` returning an
``ml_collections.ConfigDict`` (``configs/`` holds the shipped ones). It is
loaded by its path, never imported as a package module, so that no config
needs ``PYTHONPATH`` or a ``sys.path`` entry:

* ``load_config(path)`` runs a file's ``get_config()``;
* a config built on another one loads it with ``sibling(__file__, name)``
  (``configs/quickstart.py`` extends ``configs/xu2019_ppo.py`` this way);
* scripts define their config flags with ``DEFINE_config_file`` and run
  ``app.run(main, flags_parser=parse_flags)``: a missing file, an override
  naming no field (``--config.num_iteratons=3``, the line lists the valid
  field names) and an override of the wrong type (``--config.task.
  batch_size=abc``; ``--config.env.initial_lrs=(abc,)`` for a tuple of
  numbers) are one clear line naming the field, instead of a traceback.
  Values of the right type are range-checked where the config is used
  (``lr_meta.experiment.check_config`` and the objects it builds).
"""

import importlib.util
import os
import re
import sys
import types
from typing import Dict, List, Mapping, Optional, Sequence

from absl import flags
import ml_collections
from ml_collections import config_flags

__all__ = ["load_module", "load_config", "sibling", "field_error",
           "check_fields", "DEFINE_config_file", "parse_flags"]

_CONFIG_FLAGS = {}   # name -> default path of each DEFINE_config_file flag


def load_module(path: str) -> types.ModuleType:
  """The Python file at ``path`` (a config) as a module, once per file.

  Raises:
    FileNotFoundError: in one line naming the path, when there is no file.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} not found.")
  # One module per absolute path: a config loaded twice (by two siblings) is
  # one object, and two files named alike in two directories do not clash.
  name = "lr_meta_file_" + re.sub(r"\W", "_", path)
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


def load_config(path: str, *args) -> ml_collections.ConfigDict:
  """``get_config(*args)`` of the config file at ``path``."""
  module = load_module(path)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"Config file {path!r} defines no get_config().")
  return module.get_config(*args)


def sibling(anchor_file: str, name: str) -> types.ModuleType:
  """The config file ``name``.py next to ``anchor_file`` (a config's __file__).

  Example (``configs/quickstart.py``)::

    xu2019_ppo = config.sibling(__file__, "xu2019_ppo")
  """
  return load_module(os.path.join(os.path.dirname(os.path.abspath(
      anchor_file)), f"{name}.py"))


def field_error(config, dotted: str) -> Optional[str]:
  """Why ``config.<dotted>`` names no field (None when it does).

  The message names the first missing part and lists the valid names at
  that level.
  """
  node, done = config, []
  for part in dotted.split("."):
    keys = list(node.keys()) if isinstance(
        node, (ml_collections.ConfigDict, dict)) else None
    if keys is None or part not in keys:
      where = ".".join(["config"] + done)
      valid = ", ".join(sorted(keys)) if keys else "none (not a sub-config)"
      return f"{where} has no field {part!r}; valid: {valid}."
    node, done = node[part], done + [part]
  return None


def check_fields(config, schema: Mapping[str, Sequence[str]]):
  """Raises ValueError naming unknown field names and listing the valid ones.

  Args:
    config: a ConfigDict (or dict).
    schema: ``{part: valid field names}``; a part is '' (the top level) or a
      dotted path to a sub-config. Parts absent from ``config`` are skipped.
  """
  for part, valid in schema.items():
    node = config
    for key in filter(None, part.split(".")):
      node = node.get(key) if isinstance(
          node, (ml_collections.ConfigDict, dict)) else None
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      continue
    unknown = sorted(set(node.keys()) - set(valid))
    if unknown:
      where = ".".join(["config"] + list(filter(None, part.split("."))))
      raise ValueError(f"{where} has unknown fields {unknown}; valid: "
                       f"{', '.join(sorted(valid))}.")


def DEFINE_config_file(  # pylint: disable=invalid-name
    name: str, default: Optional[str] = None,
    help_string: str = "Config file.", flag_values=flags.FLAGS,
    sys_argv: Optional[Sequence[str]] = None) -> flags.FlagHolder:
  """An ``ml_collections`` config-file flag, checked by ``parse_flags``.

  Overrides (``--<name>.field=value``) work as in ``ml_collections``; run the
  script with ``app.run(main, flags_parser=parse_flags)`` so that a missing
  file, an override naming no field and an override of the wrong type are
  one line each. ``flag_values`` and ``sys_argv`` are ``ml_collections``'
  (another flag registry and command line than the process's, e.g. in
  tests).
  """
  holder = config_flags.DEFINE_config_file(
      name, default, help_string, flag_values=flag_values,
      sys_argv=None if sys_argv is None else list(sys_argv))
  _CONFIG_FLAGS[name] = default
  return holder


def _config_paths(argv: Sequence[str]) -> Dict[str, str]:
  """``{flag name: config path}`` of the config flags, given or default."""
  paths = {name: d for name, d in _CONFIG_FLAGS.items() if d}
  for i, arg in enumerate(argv):
    for name in _CONFIG_FLAGS:
      if arg == f"--{name}" and i + 1 < len(argv):
        paths[name] = argv[i + 1]
      elif arg.startswith(f"--{name}="):
        paths[name] = arg.split("=", 1)[1]
  return paths


def _overrides(argv: Sequence[str]):
  """``(argument, flag name, dotted field, the file's config)`` of every
  config override in ``argv`` whose config file loads."""
  paths = _config_paths(argv)
  for arg in argv:
    head = arg.split("=", 1)[0]
    name, _, dotted = head[2:].partition(".")
    if not arg.startswith("--") or name not in paths or not dotted:
      continue
    try:
      config = load_config(*paths[name].split(":", 1))
    except Exception:  # pylint: disable=broad-except
      continue   # a missing file is reported apart; a broken one by absl
    yield arg, name, dotted, config


def _flag_errors(argv: Sequence[str]) -> List[str]:
  """One message per missing config file or override naming no field."""
  out = []
  for name, path in _config_paths(argv).items():
    if not os.path.isfile(path.split(":", 1)[0]):
      out.append(f"--{name}: config file {path.split(':', 1)[0]!r} not "
                 "found.")
  for arg, _, dotted, config in _overrides(argv):
    message = field_error(config, dotted)
    if message:
      out.append(f"{arg.split('=', 1)[0]}: {message}")
  return out


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _kind_of_items(value) -> Optional[str]:
  """'numbers' or 'strings' for a non-empty tuple of one kind, else None."""
  if not isinstance(value, tuple) or not value:
    return None
  for kind, test in (("numbers", _is_number),
                     ("strings", lambda x: isinstance(x, str))):
    if all(test(x) for x in value):
      return kind
  return None


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def _override_type_errors(argv: Sequence[str], flag_values) -> List[str]:
  """One message per override of a tuple field whose items have another type.

  ``ml_collections`` checks scalar overrides against the field's type, but
  reads a tuple override it cannot parse (``(abc,)``, ``(0.1, inf)``) as a
  tuple of one string, which would fail far from the flag.
  """
  out = []
  for arg, name, dotted, config in _overrides(argv):
    kind = _kind_of_items(_get(config, dotted))
    value = _get(flag_values[name].value, dotted)
    if kind is not None and value and _kind_of_items(value) != kind:
      out.append(f"{arg}: config.{dotted} is a tuple of {kind} (as "
                 f"{_get(config, dotted)!r}); got {value!r}.")
  return out


def parse_flags(argv: Sequence[str], flag_values=flags.FLAGS) -> List[str]:
  """``app.run``'s flags parser with one-line config errors.

  As absl's default (``FATAL Flags parsing error: ...`` and exit status 1),
  and the same for a missing config file, for a config override naming no
  field, whose message lists the valid field names, and for an override of
  a tuple of numbers or strings whose items are not.
  """
  errors = _flag_errors(argv)
  if not errors:
    try:
      rest = flag_values(argv)
    except (flags.Error, AttributeError, KeyError) as e:
      errors = [str(e).strip().splitlines()[0]]
    else:
      errors = _override_type_errors(argv, flag_values)
      if not errors:
        return rest
  for line in errors:
    sys.stderr.write(f"FATAL Flags parsing error: {line}\n")
  sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)
